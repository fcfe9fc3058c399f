"""Instance targets for training and their inverse (maps -> instance labels).

A pixel classifier that only learns "particle or not" cannot separate
touching particles: nothing in its target says where one particle ends and
the next begins. :func:`instance_targets` turns an instance label image
(one id per object) into a three-class target that carries the separation:

* 0 = background,
* 1 = object interior,
* 2 = object boundary: the object's pixels that touch another object, the
  background or an unlabelled pixel (within ``boundary_width`` pixels),

with :data:`IGNORE` where nothing is known (unlabelled pixels, pixels
outside the annotated region), so that partial annotation can be used for
training. :func:`instances_from_maps` is the inverse: the connected
interiors become the seeds of a watershed that floods the foreground
(interior + boundary), which gives back one label per object, also where
objects touch. On the targets of a label image whose objects are at least
a few pixels wide, it recovers the objects exactly.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from ._validation import SEMAnalysisError, check_labels, check_positive
from .segmentation._common import _relabel

#: value of the target where the loss must not look (unlabelled / outside the region)
IGNORE = -1

#: class indices of the targets
BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


def instance_targets(
    labels,
    *,
    boundary_width: int = 2,
    unlabelled: int | None = None,
    background: int | None = None,
    region=None,
    distance: bool = False,
    core_fraction: float = 0.0,
):
    """Three-class training target (background / interior / boundary) of an instance label image.

    Parameters
    ----------
    labels : ndarray
        2-D instance labels: 0 background, one id per object. A boolean
        mask is labelled into its 4-connected components.
    boundary_width : int
        Width (px) of the boundary band inside each object, measured from
        every pixel that is not of the same object (4-neighbourhood steps).
    unlabelled : int, optional
        Label value that means "not annotated": those pixels get
        :data:`IGNORE`. ``unlabelled=0`` means that only painted pixels are
        known; the background must then be painted with the id
        ``background`` (or nothing is known about it).
    background : int, optional
        Label value painted as background (with ``unlabelled=0``).
    region : ndarray of bool, optional
        Annotated region (e.g. a rectangle); outside it every pixel is
        :data:`IGNORE`. Boundaries are still computed from the full labels.
    distance : bool
        Also return the normalised distance to the object border
        (0 outside objects, 1 at each object's innermost pixel).
    core_fraction : float
        With a value c in (0, 1), the interior class keeps only each
        object's core: the pixels farther from the object's border than c
        times the object's largest such distance (its inscribed radius);
        the rest of the object is boundary (and always at least
        ``boundary_width`` px of it). The interiors of touching objects then
        lie apart in proportion to their size, so large neighbours are not
        joined by their interiors. 0 (default): a band of
        ``boundary_width`` px only.

    Returns
    -------
    target : ndarray of int8
        0 background, 1 interior, 2 boundary, -1 (:data:`IGNORE`) unknown.
    dist : ndarray of float32
        Only with ``distance=True``.
    """
    lab = np.asarray(labels)
    if lab.dtype == bool:
        _, lab = cv2.connectedComponents(np.ascontiguousarray(lab).view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    lab = check_labels(lab, name="labels")
    bw = int(check_positive(boundary_width, "boundary_width", maximum=50))
    if bw < 1:
        raise SEMAnalysisError("boundary_width must be at least 1 px")
    core = _check_core_fraction(core_fraction)
    lab = lab.astype(np.int64)
    unknown = np.zeros(lab.shape, bool)
    bg = lab == 0
    if unlabelled is not None:
        unknown = lab == int(unlabelled)
        bg = np.zeros(lab.shape, bool) if int(unlabelled) == 0 else (lab == 0)
    if background is not None:
        if unlabelled is not None and int(background) == int(unlabelled):
            raise SEMAnalysisError("the background and unlabelled values must differ")
        bg = bg | (lab == int(background))
    obj = ~(unknown | bg)
    # pixels whose 4-neighbour belongs to something else (or the image border? no: objects
    # cut by the image border keep their interior up to the border)
    pad = np.pad(np.where(obj, lab, -1), 1, mode="edge")
    centre = pad[1:-1, 1:-1]
    edge = np.zeros(lab.shape, bool)
    for sl in (
        (slice(0, -2), slice(1, -1)),
        (slice(2, None), slice(1, -1)),
        (slice(1, -1), slice(0, -2)),
        (slice(1, -1), slice(2, None)),
    ):
        edge |= pad[sl] != centre
    edge &= obj
    if bw > 1:
        # grow the band inwards within each object
        band = edge.copy()
        k = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
        for _ in range(bw - 1):
            band = cv2.dilate(band.view(np.uint8), k).astype(bool) & obj
        edge = band
    target = np.zeros(lab.shape, np.int8)
    target[obj] = INTERIOR
    target[edge] = BOUNDARY
    dist = _border_distance(np.where(obj, lab, 0)) if (distance or core > 0) else None
    if core > 0:
        target[obj & (dist <= core)] = BOUNDARY
    target[unknown] = IGNORE
    if region is not None:
        reg = np.asarray(region, bool)
        if reg.shape != lab.shape:
            raise SEMAnalysisError(f"region shape {reg.shape} differs from labels shape {lab.shape}")
        target[~reg] = IGNORE
    if not distance:
        return target
    return target, dist


def _check_core_fraction(value) -> float:
    try:
        c = float(value)
    except (TypeError, ValueError):
        c = float("nan")
    if not (np.isfinite(c) and 0 <= c < 1):
        raise SEMAnalysisError(f"core_fraction must be in [0, 1), got {value!r}")
    return c


def contact_zone(labels, width: int = 3) -> np.ndarray:
    """Pixels within ``width`` px of two different objects: where touching objects meet.

    These are the pixels that decide whether two neighbouring objects come
    out as one or as two; they are a small fraction of an image, so a
    network trained with a plain per-pixel loss learns little about them.
    :func:`~napari_sem_analysis.train_unet` weights them in the loss
    (``contact_weight``), like the separation weights of the original U-Net
    (Ronneberger et al. 2015).

    Parameters
    ----------
    labels : ndarray
        2-D instance labels (0 background, one id per object).
    width : int
        Half-size (px) of the square neighbourhood: a pixel is in the zone
        when its (2 width + 1)-square holds pixels of two different objects.

    Returns
    -------
    zone : ndarray of bool
    """
    lab = check_labels(np.asarray(labels), name="labels").astype(np.int64)
    w = int(check_positive(width, "width", maximum=50))
    if w < 1 or lab.size == 0 or not lab.any():
        return np.zeros(lab.shape, bool)
    size = 2 * w + 1
    big = int(lab.max()) + 1  # (not int64's maximum: scipy passes cval as a float)
    hi = ndi.maximum_filter(lab, size=size, mode="constant", cval=0)
    lo = ndi.minimum_filter(np.where(lab > 0, lab, big), size=size, mode="constant", cval=big)
    return (hi > 0) & (lo < big) & (hi != lo)


def _border_distance(lab: np.ndarray) -> np.ndarray:
    """Distance to the object's border, normalised to 1 at each object's maximum."""
    out = np.zeros(lab.shape, np.float32)
    for i, sl in enumerate(ndi.find_objects(lab.astype(np.int64)), start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
        m = lab[sl] == i
        d = cv2.distanceTransform(np.pad(m, 1).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
        mx = float(d[m].max())
        if mx > 0:
            out[sl][m] = d[m] / mx
    return out


def instances_from_maps(
    interior,
    foreground,
    *,
    interior_threshold: float = 0.5,
    foreground_threshold: float = 0.5,
    min_seed_size: float = 4,
    min_size: float = 0,
    separate: bool = False,
    flood_foreground: bool = False,
) -> np.ndarray:
    """Instance labels from an interior map and a foreground map (seeded watershed).

    Seeds are the 8-connected components of ``interior > interior_threshold``
    (inside the foreground) of at least ``min_seed_size`` px. They flood the
    foreground (``foreground > foreground_threshold``) downhill on
    ``-interior`` (so the watershed lines fall where the interior map is
    lowest: on the predicted boundaries). Foreground components without any
    seed become one object each. Objects smaller than ``min_size`` px are
    merged into the neighbour they share most boundary with, or dropped
    when they have none (no slivers).

    Parameters
    ----------
    interior : ndarray
        2-D map, e.g. the interior probability (or the target class == 1).
    foreground : ndarray
        2-D map, e.g. interior + boundary probability (or target > 0).
    interior_threshold, foreground_threshold : float
    min_seed_size : float
        Seeds smaller than this (px) are ignored (noise in the interior map).
    min_size : float
        Smallest object (px).
    separate : bool
        Clear a one-pixel line between touching objects (4-connectivity), as
        in masks whose 4-connected components are the objects.
    flood_foreground : bool
        Flood downhill on ``-(interior + foreground)`` instead of
        ``-interior``: the lines then follow the dips of the foreground map
        too. Needed when the interior is only each object's core (targets
        made with ``core_fraction``), where the interior map is flat (near
        0) over the wide ring between the cores.

    Returns
    -------
    labels : ndarray of int32
        0 background, 1..N objects.
    """
    inner = np.asarray(interior, np.float32)
    fgm = np.asarray(foreground, np.float32)
    if inner.ndim != 2 or inner.shape != fgm.shape:
        raise SEMAnalysisError(f"interior {inner.shape} and foreground {fgm.shape} must be 2-D of one shape")
    if not (np.all(np.isfinite(inner)) and np.all(np.isfinite(fgm))):
        raise SEMAnalysisError("the maps contain NaN or infinite values")
    fg = fgm > foreground_threshold
    if not fg.any():
        return np.zeros(inner.shape, np.int32)
    seeds = (inner > interior_threshold) & fg
    n, markers, stats, _ = cv2.connectedComponentsWithStats(seeds.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_seed_size
    keep[0] = False
    lut = np.zeros(n, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    markers = lut[markers]
    from skimage.segmentation import watershed

    from .segmentation.watershed import _markers_for_unmarked

    # foreground components with no seed get one
    markers = _markers_for_unmarked(markers, [fg.view(np.uint8)])

    surface = -(inner + fgm) if flood_foreground else -inner
    labels = watershed(surface, markers, mask=fg).astype(np.int32)
    labels = _relabel(labels)
    if min_size > 0:
        from .segmentation.watershed import _merge_small

        labels = _merge_small(labels, float(min_size))
    if separate:
        from .segmentation.watershed import _separate

        labels = _separate(labels, 4)
    return labels


def instances_from_targets(target, **kwargs) -> np.ndarray:
    """Instance labels from a three-class map (as made by :func:`instance_targets`).

    ``target`` is either the class map (0 / 1 / 2; :data:`IGNORE` counts
    as background) or class probabilities of shape (3, Y, X). Keyword
    arguments go to :func:`instances_from_maps`.
    """
    t = np.asarray(target)
    if t.ndim == 3 and t.shape[0] == 3:
        return instances_from_maps(t[INTERIOR], t[INTERIOR] + t[BOUNDARY], **kwargs)
    if t.ndim != 2:
        raise SEMAnalysisError(f"target must be a 2-D class map or (3, Y, X) probabilities, got {t.shape}")
    return instances_from_maps((t == INTERIOR).astype(np.float32), (t > 0).astype(np.float32), **kwargs)
