"""Instance task of the U-Net: training targets from instance labels and decoding of predictions.

With ``task="instances"`` the network learns three classes (background,
object interior, object boundary; :func:`napari_sem_analysis.instances.instance_targets`)
from instance label images, and :meth:`UNetModel.predict` turns the blended
class probabilities of the whole image into instance labels with a seeded
watershed (:func:`napari_sem_analysis.instances.instances_from_maps`), so an
object cut by a tile seam still gets one label. The decoding parameters are
stored in the model's configuration (``config["instances"]``).
"""

from __future__ import annotations

import numpy as np

from .._validation import SEMAnalysisError

#: target value of ignored pixels while the masks are uint8 (mapped to the loss's ignore value)
TARGET_IGNORE = 255
CLASS_NAMES = ["background", "interior", "boundary"]
#: target code of a pixel of class c at a contact between objects: c + HEAVY_OFFSET (weighted in the loss)
HEAVY_OFFSET = len(CLASS_NAMES)
TASKS = ("semantic", "instances")
_DECODE_KEYS = {
    "interior_threshold",
    "foreground_threshold",
    "min_seed_size",
    "min_size",
    "separate",
}
#: settings fixed by training that the decoding reads (kept, never tuned)
_TRAINED_KEYS = {"core_fraction"}


def _touching(lab: np.ndarray) -> bool:
    """True when two different objects are 4-adjacent somewhere."""
    a, b = lab[:, :-1], lab[:, 1:]
    if np.any((a != b) & (a > 0) & (b > 0)):
        return True
    a, b = lab[:-1, :], lab[1:, :]
    return bool(np.any((a != b) & (a > 0) & (b > 0)))


def _objects(m: np.ndarray) -> np.ndarray:
    """A 0/1 mask as its 4-connected objects; a label image unchanged."""
    if m.size and int(m.max()) <= 1:
        import cv2

        _, lab = cv2.connectedComponents(np.ascontiguousarray(m > 0).view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
        return lab
    return m


def instance_training_masks(
    masks, *, boundary_width=2, unlabelled=None, background=None, regions=None, contact_width=0, core_fraction=0.0
):
    """Three-class uint8 targets (255 = ignored) of instance label images, and the decoding settings.

    With ``contact_width`` > 0 the pixels within that many px of two
    different objects (:func:`napari_sem_analysis.instances.contact_zone`)
    get the code ``class + 3`` (:data:`HEAVY_OFFSET`): the loss reads them as
    their class with the ``contact_weight`` of training.

    A mask holding only 0 and 1 (without ``unlabelled`` / ``background``)
    is taken as objects = its 4-connected components (e.g. hand-drawn masks with gaps between touching objects).

    The decoding settings learnt from the labels: ``min_size`` (0.1 x the
    median object area, at least 4 px: smaller predicted pieces are merged
    into a neighbour or dropped) and ``separate`` (True when no two objects
    touch in the training labels, i.e. they are drawn with gaps, so that
    predictions are drawn the same way).
    """
    from ..instances import IGNORE, contact_zone, instance_targets

    if regions is not None:
        if isinstance(regions, np.ndarray) and regions.ndim == 2:
            regions = [regions]
        if len(regions) != len(masks):
            raise SEMAnalysisError(f"{len(regions)} regions for {len(masks)} label images")
    out, areas, touching = [], [], False
    if unlabelled is None and background is None:
        masks = [_objects(m) for m in masks]
    for i, m in enumerate(masks):
        reg = None if regions is None else regions[i]
        if reg is not None and np.asarray(reg).shape != m.shape:
            raise SEMAnalysisError(f"region {i} has shape {np.asarray(reg).shape}, its labels {m.shape}")
        t = instance_targets(
            m,
            boundary_width=boundary_width,
            unlabelled=unlabelled,
            background=background,
            region=reg,
            core_fraction=core_fraction,
        )
        known = m.astype(np.int64)
        if unlabelled is not None:
            known = np.where(m == unlabelled, 0, known)
        if background is not None:
            known = np.where(m == background, 0, known)
        if reg is not None:
            known = np.where(np.asarray(reg, bool), known, 0)
        _, counts = np.unique(known[known > 0], return_counts=True)
        areas.append(counts)
        touching = touching or _touching(known)
        u = t.astype(np.int16)
        if contact_width:
            u[contact_zone(known, int(contact_width)) & (t != IGNORE)] += HEAVY_OFFSET
        u[t == IGNORE] = TARGET_IGNORE
        out.append(u.astype(np.uint8))
    areas = np.concatenate(areas) if areas else np.zeros(0)
    if areas.size == 0:
        raise SEMAnalysisError("the label images hold no object: paint at least a few objects (ids > 0)")
    if all(np.all(t == TARGET_IGNORE) for t in out):
        raise SEMAnalysisError("every pixel is unlabelled: nothing to learn from")
    decode = {
        "interior_threshold": 0.5,
        "foreground_threshold": 0.5,
        "min_seed_size": 4.0,
        "min_size": float(max(4.0, 0.1 * np.median(areas))),
        "separate": not touching,
        "boundary_width": int(boundary_width),
        "core_fraction": float(core_fraction),
    }
    return out, decode


def check_decode(cfg, where: str = "the model") -> dict:
    """Validate the stored decoding settings of an instance model."""
    if not isinstance(cfg, dict):
        raise SEMAnalysisError(f"{where}: the instance settings are missing or not a mapping")
    out = dict(cfg)
    for key in ("interior_threshold", "foreground_threshold"):
        v = out.get(key)
        if not isinstance(v, (int, float)) or not 0 <= float(v) < 1:
            raise SEMAnalysisError(f"{where}: instance setting {key} must be in [0, 1), got {v!r}")
    for key in ("min_seed_size", "min_size"):
        v = out.get(key)
        if not isinstance(v, (int, float)) or not 0 <= float(v) <= 1e7:
            raise SEMAnalysisError(f"{where}: instance setting {key} must be a size in px, got {v!r}")
    if not isinstance(out.get("separate"), bool):
        raise SEMAnalysisError(f"{where}: instance setting separate must be true or false")
    core = out.get("core_fraction", 0.0)
    if not isinstance(core, (int, float)) or isinstance(core, bool) or not 0 <= float(core) < 1:
        raise SEMAnalysisError(f"{where}: instance setting core_fraction must be in [0, 1), got {core!r}")
    return out


def decode(probs: np.ndarray, cfg: dict, overrides: dict | None = None) -> np.ndarray:
    """Instance labels (int32) from (3, Y, X) class probabilities."""
    from ..instances import instances_from_maps

    params = {k: v for k, v in cfg.items() if k in _DECODE_KEYS}
    if overrides:
        bad = set(overrides) - _DECODE_KEYS
        if bad:
            raise SEMAnalysisError(f"unknown instance settings {sorted(bad)}; known: {sorted(_DECODE_KEYS)}")
        params.update(overrides)
        check_decode(params, "instance settings")
    # interiors that are only the objects' cores: flood on interior + foreground (docs/evaluation/instances.md)
    params["flood_foreground"] = float(cfg.get("core_fraction", 0.0) or 0.0) > 0
    return instances_from_maps(probs[1], probs[1] + probs[2], **params)
