"""Choosing an instance model's decoding settings on annotated images (:func:`tune_instance_decoding`).

An instance model's network gives class probabilities (background,
interior, boundary); the instance labels come from a seeded watershed on
them (:func:`napari_sem_analysis.instances.instances_from_maps`) whose
thresholds are 0.5 after training. Whether 0.5 is right depends on how
sure the network is: a network that sees the interiors of touching
particles only at probability 0.4 merges them at 0.5. The settings are
cheap to choose on annotated images: the probabilities are predicted once
per image, and only the decoding (a watershed per setting) is repeated
over a small grid, scored with :func:`napari_sem_analysis.evaluate_instances`.

Tune on images that were not used to train the network (its validation
images), never on the images you want to report scores on.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._validation import SEMAnalysisError

#: scores of :func:`evaluate_instances` that can be maximised (higher is better)
METRICS = ("pq", "sq", "rq", "f1", "ap", "ap50", "ap75", "dice")

#: thresholds tried first (interior x foreground), then the sizes
_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
_SEED_SIZES = (1.0, 2.0, 4.0, 8.0, 16.0)
_SIZE_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


def default_grid(settings: dict) -> list[dict[str, Sequence]]:
    """The stages of the search around a model's stored decoding ``settings``.

    Stage 1: interior x foreground threshold; stage 2: seed size x smallest
    object (0.25-4 x the stored ``min_size``). The stages are searched one
    after the other (each keeps the best of the previous), twice.
    """
    base = float(settings.get("min_size", 0.0)) or 4.0
    sizes = sorted({round(base * f, 1) for f in _SIZE_FACTORS})
    return [
        {"interior_threshold": _THRESHOLDS, "foreground_threshold": _THRESHOLDS},
        {"min_seed_size": _SEED_SIZES, "min_size": tuple(sizes)},
    ]


def _key(settings: dict) -> tuple:
    return tuple(sorted((k, float(v) if not isinstance(v, bool) else v) for k, v in settings.items()))


def _tune_from_probabilities(
    probabilities: list[np.ndarray],
    labels: list[np.ndarray],
    settings: dict,
    *,
    grid: list[dict[str, Sequence]] | None = None,
    metric: str = "pq",
    rounds: int = 2,
    callback: Callable[[dict], Any] | None = None,
) -> dict:
    """Search the decoding settings that maximise ``metric`` over (3, Y, X) probabilities and reference labels.

    The search starts from ``settings`` (the stored ones) and keeps a
    change only when it scores strictly higher, so ties keep what was there.
    Returns ``{"settings", "score", "default_score", "metric", "tried"}``.
    """
    from ..metrics import evaluate_instances
    from .instances import _DECODE_KEYS, _TRAINED_KEYS, check_decode, decode

    if metric not in METRICS:
        raise SEMAnalysisError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    checked = check_decode(settings, "instance settings")
    base = {k: v for k, v in checked.items() if k in _DECODE_KEYS | _TRAINED_KEYS}
    stages = default_grid(base) if grid is None else grid
    for stage in stages:
        bad = set(stage) - _DECODE_KEYS
        if bad:
            raise SEMAnalysisError(f"unknown instance settings {sorted(bad)}; known: {sorted(_DECODE_KEYS)}")
    cache: dict[tuple, float] = {}

    def score(cand: dict) -> float:
        key = _key(cand)
        if key not in cache:
            check_decode(cand, "instance settings")
            preds = [decode(p, cand) for p in probabilities]
            cache[key] = float(evaluate_instances(preds, list(labels))[metric])
            if callback is not None:
                callback({"stage": "tune", "tried": len(cache), "settings": dict(cand), "score": cache[key]})
        return cache[key]

    best, best_score = dict(base), score(base)
    default_score = best_score
    for _ in range(max(1, int(rounds))):
        before = dict(best)
        for stage in stages:
            names = list(stage)
            for values in itertools.product(*(stage[n] for n in names)):
                cand = dict(best, **dict(zip(names, values)))
                s = score(cand)
                if s > best_score + 1e-12:
                    best, best_score = cand, s
        if best == before:
            break
    tried = [{"settings": dict(k), "score": v} for k, v in cache.items()]
    return {
        "settings": best,
        "score": best_score,
        "default_score": default_score,
        "metric": metric,
        "tried": tried,
    }


def instance_probabilities(
    model, image, *, tile_size: int | None = 512, overlap: int = 64, batch_size: int = 4, device="auto"
) -> np.ndarray:
    """The (3, Y, X) blended class probabilities of an instance model on a 2-D image (no decoding)."""
    from .normalization import _as_2d
    from .predict import _predict_2d

    img = _as_2d(np.asarray(image), "image")
    _, probs = _predict_2d(
        model,
        img,
        tile_size=tile_size,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        return_probabilities=True,
        callback=None,
        amp=True,
    )
    return probs


def tune_instance_decoding(
    model,
    images,
    labels,
    *,
    metric: str = "pq",
    grid: list[dict[str, Sequence]] | None = None,
    apply: bool = True,
    tile_size: int | None = 512,
    overlap: int = 64,
    batch_size: int = 4,
    device="auto",
    callback: Callable[[dict], Any] | None = None,
) -> dict:
    """Choose an instance model's decoding settings on annotated images.

    The network runs once per image; the seeded-watershed decoding is then
    repeated over a small grid of settings (thresholds of the interior and
    foreground maps, smallest seed, smallest object) and every candidate is
    scored with :func:`napari_sem_analysis.evaluate_instances` pooled over
    all images. The search starts from the model's stored settings and
    keeps a change only when it scores strictly higher.

    Use images that the network was not trained on (e.g. its validation
    images, as ``train_unet(..., tune_decoding=True)`` does), and never the
    images you report scores on.

    Parameters
    ----------
    model : UNetModel
        A model trained with ``task="instances"``.
    images : (Y, X) array or list of them
        Annotated images.
    labels : array or list of arrays
        Their reference instance labels (0 background, one id per object);
        a boolean mask is taken as its 4-connected components. Every object
        must be annotated (unannotated objects would count as false
        detections).
    metric : str
        Score to maximise: "pq" (panoptic quality, default), "sq", "rq",
        "f1", "ap", "ap50", "ap75" or "dice".
    grid : list of dict, optional
        Stages of the search, each a mapping of setting name to the values
        to try (all combinations of a stage are tried, the stages one after
        the other, twice). Default: :func:`default_grid` of the stored
        settings.
    apply : bool
        Store the chosen settings in ``model.config["instances"]`` (and so
        in the model file when it is saved), with a ``"tuned"`` entry
        recording the metric, the scores and the number of images.
    tile_size, overlap, batch_size, device
        As for :meth:`UNetModel.predict`.
    callback : callable, optional
        Called as ``callback(info)`` after each candidate, with
        ``info = {"stage": "tune", "tried": n, "settings": ..., "score": ...}``.

    Returns
    -------
    dict
        ``settings`` (the chosen decoding settings), ``score`` and
        ``default_score`` (the metric with the chosen and with the stored
        settings), ``metric``, ``tried`` (every candidate with its score).
    """
    if getattr(model, "task", None) != "instances":
        raise SEMAnalysisError("tune_instance_decoding needs a model trained with task='instances'")
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        labels = [labels]
    images, labels = list(images), list(labels)
    if not images:
        raise SEMAnalysisError("no images given to tune the decoding on")
    if len(images) != len(labels):
        raise SEMAnalysisError(f"{len(images)} images but {len(labels)} label images")
    for i, (im, lab) in enumerate(zip(images, labels)):
        if np.shape(im)[:2] != np.shape(lab):
            raise SEMAnalysisError(f"image {i} has shape {np.shape(im)} but its labels {np.shape(lab)}")
    kw = dict(tile_size=tile_size, overlap=overlap, batch_size=batch_size, device=device)
    probs = [instance_probabilities(model, im, **kw) for im in images]
    result = _tune_from_probabilities(
        probs, labels, model.config["instances"], grid=grid, metric=metric, callback=callback
    )
    if apply:
        cfg = dict(model.config["instances"])
        cfg.update(result["settings"])
        cfg["tuned"] = {
            "metric": metric,
            "score": result["score"],
            "default_score": result["default_score"],
            "n_images": len(images),
        }
        model.config["instances"] = cfg
    return result
