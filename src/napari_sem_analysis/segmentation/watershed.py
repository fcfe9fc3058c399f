"""Watershed splitting of touching objects, sliver merging and seeded watershed."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from .._validation import (
    SEMAnalysisError,
    check_image,
    check_labels,
    check_positive,
    per_plane,
    to_pixels,
)
from ._common import _check_mask, _disk, _relabel
from .cleanup import clean_mask


def _watershed(surface: np.ndarray, markers: np.ndarray, mask: np.ndarray | None, compactness: float = 0.0):
    from skimage.segmentation import watershed

    return watershed(surface, markers, mask=mask, compactness=compactness).astype(np.int32)


def _peaks(dist: np.ndarray, min_distance: int, min_height: float) -> np.ndarray:
    """Marker image (int32 labels) of the regional maxima of ``dist`` within ``min_distance``."""
    k = _disk(max(1, min_distance))
    dil = cv2.dilate(dist, k)
    peaks = (dist >= dil) & (dist > min_height)
    n, markers = cv2.connectedComponents(peaks.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return markers


def _gradient(img: np.ndarray) -> np.ndarray:
    f = img.astype(np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1)
    return np.sqrt(gx * gx + gy * gy)


@per_plane
def split_touching(
    mask,
    *,
    min_distance: float = 5,
    h: float | None = None,
    smooth: float = 1.0,
    intensity_image=None,
    edge_quantile: float | None = None,
    boundary_weight: float = 0.0,
    min_size: float = 0,
    merge_slivers: bool = True,
    separate: bool = False,
    connectivity: int = 4,
    pixel_size: float | None = None,
    unit: str = "px",
) -> np.ndarray:
    """Split touching objects of a binary mask into instances (distance-transform watershed).

    Each object is flooded from the maxima of its (smoothed) Euclidean
    distance transform. Markers are either local maxima at least
    ``min_distance`` apart (default) or, with ``h``, the h-maxima: maxima
    that rise at least ``h`` above the saddle to any higher maximum (h in
    ``unit``; robust against irregular outlines).

    With an ``intensity_image`` the split can also use the edges visible
    between overlapping particles (which the outline alone cannot show):

    * ``edge_quantile``: pixels whose gradient magnitude is above this
      quantile (of the gradients inside the mask) are removed before the
      distance transform, so every particle's low-gradient core gets its
      own marker;
    * ``boundary_weight``: the flooded surface mixes the normalised gradient
      magnitude (weight ``boundary_weight``) with the negated distance map,
      so watershed lines follow the visible edges.

    Parameters
    ----------
    mask : ndarray
        2-D boolean mask (or a label image; non-zero = object).
    min_distance : float
        Minimum distance between two markers, in ``unit``: about the
        radius of the smallest object that should get its own label.
    h : float, optional
        Use h-maxima markers with this dynamic (in ``unit``) instead.
    smooth : float
        Gaussian sigma (px) applied to the distance map before finding maxima.
    intensity_image : ndarray, optional
        The (denoised) grayscale image the mask was made from.
    edge_quantile : float, optional
        0..1, see above (needs ``intensity_image``).
    boundary_weight : float
        0..1, see above (needs ``intensity_image``).
    min_size : float
        Instances smaller than this area (px² or nm²) are merged into the
        neighbour they share most boundary with (or dropped when isolated).
    merge_slivers : bool
        No slivers (default): pieces smaller than a disc of diameter
        ``min_distance`` (at least 4 px) are merged into the neighbour they
        share most boundary with, or dropped when they touch nothing; rim
        slivers are merged into the object they belong
        to: a piece smaller than 0.3 x the neighbour it shares most boundary
        with (and than 0.15 x the median object area, from the median
        radius of the mask's objects) that shares at least 45 % of its
        perimeter with that neighbour and whose union with it is convex
        (solidity >= 0.85). A small round object touching a big one keeps
        its label.
    separate : bool
        Clear a one-pixel line between touching instances so that they do
        not touch (``connectivity`` 4 or 8 decides which neighbours count).
    connectivity : {4, 8}
    pixel_size : float, optional
    unit : {"px", "nm"}

    Returns
    -------
    labels : ndarray of int32
        0 = background, 1..N instances.
    """
    m = _check_mask(mask)
    if not m.any():
        raise SEMAnalysisError("the mask is empty: nothing to split")
    md = to_pixels(min_distance, pixel_size, unit=unit, name="min_distance")
    if md > max(m.shape):
        raise SEMAnalysisError(f"min_distance ({md:.0f} px) is larger than the image {m.shape}")
    smooth = check_positive(smooth, "smooth", allow_zero=True, maximum=100)
    ms = to_pixels(min_size, pixel_size, unit=unit, name="min_size", power=2)
    if ms > m.size:
        raise SEMAnalysisError(f"min_size ({ms:.0f} px²) is larger than the whole image ({m.size} px)")
    if connectivity not in (4, 8):
        raise SEMAnalysisError(f"connectivity must be 4 or 8, got {connectivity!r}")
    bw = check_positive(boundary_weight, "boundary_weight", allow_zero=True, maximum=1.0)
    grad = _split_gradient(m, intensity_image, edge_quantile, bw)
    u8 = np.ascontiguousarray(m).view(np.uint8)
    dist = cv2.distanceTransform(u8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    core, cdist = _split_core(m, dist, grad, edge_quantile, ms, smooth)
    if h is not None:
        hh = to_pixels(h, pixel_size, unit=unit, name="h")
        if hh <= 0:
            raise SEMAnalysisError(f"h must be > 0, got {h!r}")
        from skimage.morphology import h_maxima

        # quantise to 1/8 px so that h-maxima on integers is exact enough
        qd = np.round(cdist * 8).astype(np.int32)
        peaks = h_maxima(qd, int(round(hh * 8))).astype(bool) & core
        _, markers = cv2.connectedComponents(peaks.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    else:
        markers = _peaks(cdist, max(1, int(round(md))), 0.5)
    # objects (and particle cores) without a marker, because a larger neighbour's
    # peak suppressed theirs, get their own
    regions = [u8] if core is m else [np.ascontiguousarray(core).view(np.uint8), u8]
    markers = _markers_for_unmarked(markers, regions)
    if grad is not None and bw > 0:
        gmax = float(grad[m].max()) or 1.0
        dmax = float(dist.max()) or 1.0
        surface = bw * grad / gmax - (1 - bw) * dist / dmax
    else:
        surface = -dist
    labels = _relabel(_watershed(surface, markers, m))
    return _split_cleanup(labels, ms, md, merge_slivers, u8, dist, separate, connectivity)


def _split_gradient(m, intensity_image, edge_quantile, bw):
    """The gradient magnitude of the intensity image, when the split uses edges (else None)."""
    if intensity_image is not None:  # checked even where unused: NaN or a wrong shape is a mistake
        img = check_image(intensity_image, name="intensity_image")
        if img.shape != m.shape:
            raise SEMAnalysisError(f"intensity_image shape {img.shape} differs from mask shape {m.shape}")
    if intensity_image is not None and (bw > 0 or edge_quantile is not None):
        return _gradient(img)
    if edge_quantile is not None or bw > 0:
        raise SEMAnalysisError("edge_quantile and boundary_weight need an intensity_image")
    return None


def _split_core(m, dist, grad, edge_quantile, ms, smooth):
    """The region the markers come from (the mask, or its low-gradient cores) and its smoothed distance map."""
    core = m
    if grad is not None and edge_quantile is not None:
        q = check_positive(edge_quantile, "edge_quantile", maximum=1.0)
        t = float(np.quantile(grad[m], q))
        core = m & (grad <= t)
        core = clean_mask(core, min_size=max(4.0, ms), fill_holes=True, allow_empty=True)
        if not core.any():
            core = m
        cdist = cv2.distanceTransform(np.ascontiguousarray(core).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    else:
        cdist = dist
    if smooth > 0:
        ks = int(2 * np.ceil(3 * smooth) + 1)
        cdist = cv2.GaussianBlur(cdist, (ks, ks), smooth) * core
    return core, cdist


def _markers_for_unmarked(markers: np.ndarray, regions: list) -> np.ndarray:
    """Every 8-connected component of each region without a marker gets one (the whole component)."""
    for region in regions:
        ncomp, comp = cv2.connectedComponents(region, connectivity=8, ltype=cv2.CV_32S)
        has = np.zeros(ncomp, bool)
        has[comp[markers > 0]] = True
        missing = ~has
        missing[0] = False
        if missing.any():
            extra = missing[comp]
            nmk = int(markers.max())
            markers = markers.copy()
            markers[extra] = comp[extra] + nmk
    return markers


def _split_cleanup(labels, ms, md, merge_slivers, u8, dist, separate, connectivity):
    """Small pieces merged (``min_size``, slivers) and touching instances separated, as asked."""
    if ms > 0:
        labels = _merge_small(labels, ms)
        if not labels.any():
            raise SEMAnalysisError(
                f"every object is smaller than min_size ({ms:.0f} px²): nothing is left; lower min_size"
            )
    if merge_slivers and labels.any():
        labels = _merge_small(labels, max(4.0, np.pi * (md / 2) ** 2))
        if labels.max() > 1:
            labels = _merge_slivers(labels, max_area=_SLIVER_AREA * np.pi * _median_radius(u8, dist) ** 2)
    if separate:
        labels = _separate(labels, connectivity)
    return labels


def _median_radius(u8: np.ndarray, dist: np.ndarray) -> float:
    """Median over the mask's connected objects of their largest inscribed radius (px)."""
    n, comp = cv2.connectedComponents(u8, connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return 3.0
    return max(2.0, float(np.median(ndi.maximum(dist, comp, index=np.arange(1, n)))))


def _merge_small(labels: np.ndarray, min_size: float, *, drop_isolated: bool = True) -> np.ndarray:
    """Merge instances smaller than ``min_size`` into a neighbour.

    A small instance joins the large neighbour it shares most boundary with;
    one with only small neighbours joins the biggest of them when that one
    is bigger (so chains resolve over the iterations without swaps). An
    instance with no neighbour at all is dropped (``drop_isolated``) or kept.
    Only the pixels of small instances are visited after the first size
    count: sizes only grow, so the small instances of an iteration are among
    those of the previous one, and the sizes follow from the merge mapping.
    """
    labels = np.asarray(labels)
    H, W = labels.shape
    Wp = W + 2
    lp = np.zeros((H + 2, Wp), np.int32)  # a border of 0: neighbours by flat offsets
    lp[1:-1, 1:-1] = labels
    flat = lp.ravel()
    sizes = np.bincount(flat)
    n = len(sizes)
    idx = None
    for _ in range(10):
        small = sizes < min_size
        small[0] = False
        if not small.any():
            break
        if idx is None:
            idx = np.flatnonzero(small[flat])
            src_all = flat[idx]
        else:
            keep = small[src_all]
            idx, src_all = idx[keep], src_all[keep]
        keys = []
        src64 = src_all.astype(np.int64) * n
        for off in (1, -1, Wp, -Wp):
            nb = flat[idx + off]
            sel = (nb != src_all) & (nb > 0)
            keys.append(src64[sel] + nb[sel])
        keys = np.concatenate(keys)
        mapping = np.arange(n, dtype=np.int32)
        changed = False
        if len(keys):
            key, counts = np.unique(keys, return_counts=True)
            src, dst = key // n, key % n
            big = ~small[dst]
            # large neighbours by shared boundary first, then bigger small neighbours by size
            score = np.where(
                big,
                1e12 + counts,
                np.where((sizes[dst] > sizes[src]) | ((sizes[dst] == sizes[src]) & (dst < src)), sizes[dst], -1.0),
            )
            order = np.lexsort((-score, src))
            src, dst, score = src[order], dst[order], score[order]
            first = np.r_[True, src[1:] != src[:-1]]
            sel = first & (score >= 0)
            mapping[src[sel]] = dst[sel]
            changed = bool(sel.any())
        has_neighbour = np.zeros(n, bool)
        has_neighbour[keys // n] = True
        isolated = small & ~has_neighbour
        if drop_isolated and isolated.any():
            mapping[isolated] = 0
            changed = True
        if not changed:
            break
        src_all = mapping[src_all]
        flat[idx] = src_all  # only small instances change
        sizes = np.bincount(mapping, weights=sizes, minlength=n).astype(np.int64)
    # relabel 1..N in order (the ids present are those with pixels)
    lut = np.zeros(n, np.int32)
    ids = np.flatnonzero(sizes)
    ids = ids[ids > 0]
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[lp[1:-1, 1:-1]]


# a sliver is a piece smaller than _SLIVER_RATIO x its main neighbour (and than
# _SLIVER_AREA x the median particle area) that shares at least _SLIVER_CONTACT of
# its outline with that neighbour, and whose union with it is convex (solidity at
# least _SLIVER_SOLIDITY): it completes the outline of the neighbour rather than
# sitting on it as a particle of its own
_SLIVER_RATIO = 0.3
_SLIVER_CONTACT = 0.45
_SLIVER_SOLIDITY = 0.85
_SLIVER_AREA = 0.15


def _hull_area(mask: np.ndarray) -> float:
    """Area of the convex hull of the pixel squares of ``mask`` (px²)."""
    ys, xs = np.nonzero(mask)
    pts = np.c_[xs, ys].astype(np.int32)
    pts = np.concatenate([pts, pts + (1, 0), pts + (0, 1), pts + (1, 1)])
    return float(cv2.contourArea(cv2.convexHull(pts)))


def _merge_slivers(
    labels: np.ndarray,
    *,
    max_area: float = np.inf,
    max_ratio: float = _SLIVER_RATIO,
    min_contact: float = _SLIVER_CONTACT,
    min_solidity: float = _SLIVER_SOLIDITY,
    max_iter: int = 5,
) -> np.ndarray:
    """Merge rim slivers into the neighbour they share most boundary with.

    A piece is a sliver of its main neighbour (the one it shares most
    boundary with, 4-connected pixel edges) when all of these hold:

    * its area is below ``max_ratio`` x the neighbour's and below ``max_area``;
    * the shared boundary is at least ``min_contact`` of its own perimeter
      (image border included), i.e. it hugs the neighbour; a small round
      particle touching a big one shares only a short contact;
    * the union of the two is convex: area / convex-hull area at least
      ``min_solidity`` (a sliver completes the neighbour's outline; two
      particles side by side leave concave notches).

    Pieces are merged into neighbours that are not slivers themselves;
    repeated until nothing changes (at most ``max_iter`` rounds).
    """
    labels = np.array(labels, dtype=np.int32, copy=True)
    for _ in range(max_iter):
        n = int(labels.max()) + 1
        if n <= 2:
            break
        area = np.bincount(labels.ravel(), minlength=n)
        p = np.pad(labels, 1)
        a = np.concatenate([p[:, :-1].ravel(), p[:-1, :].ravel()]).astype(np.int64)
        b = np.concatenate([p[:, 1:].ravel(), p[1:, :].ravel()]).astype(np.int64)
        d = a != b
        a, b = a[d], b[d]
        perimeter = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
        both = (a > 0) & (b > 0)
        if not both.any():
            break
        src = np.r_[a[both], b[both]]
        dst = np.r_[b[both], a[both]]
        key, counts = np.unique(src * n + dst, return_counts=True)
        src, dst = key // n, key % n
        order = np.lexsort((-counts, src))
        src, dst, counts = src[order], dst[order], counts[order]
        first = np.r_[True, src[1:] != src[:-1]]
        src, dst, counts = src[first], dst[first], counts[first]
        cand = (area[src] < max_ratio * area[dst]) & (area[src] < max_area) & (counts >= min_contact * perimeter[src])
        if cand.any():
            boxes = ndi.find_objects(labels)
            for k in np.flatnonzero(cand):
                s, t = int(src[k]), int(dst[k])
                box = tuple(
                    slice(min(u.start, v.start), max(u.stop, v.stop)) for u, v in zip(boxes[s - 1], boxes[t - 1])
                )
                sub = labels[box]
                if (area[s] + area[t]) < min_solidity * _hull_area((sub == s) | (sub == t)):
                    cand[k] = False
        if not cand.any():
            break
        is_sliver = np.zeros(n, bool)
        is_sliver[src[cand]] = True
        ok = cand & ~is_sliver[dst]
        if not ok.any():
            break
        mapping = np.arange(n, dtype=np.int32)
        mapping[src[ok]] = dst[ok]
        labels = mapping[labels]
    return _relabel(labels)


def _separate(labels: np.ndarray, connectivity: int = 4) -> np.ndarray:
    """Set to 0 the pixels that touch a different (non-zero) label, so instances do not touch.

    Of each touching pair of pixels only the one with the larger label is
    cleared, which keeps the lines one pixel wide.
    """
    H, W = labels.shape
    edge = np.zeros(labels.shape, bool)
    shifts = [(0, 1), (1, 0)] if connectivity == 4 else [(0, 1), (1, 0), (1, 1), (1, -1)]
    for dy, dx in shifts:
        ar, br = slice(0, H - dy), slice(dy, H)
        ac, bc = slice(max(0, -dx), W - max(0, dx)), slice(max(0, dx), W - max(0, -dx))
        a, b = labels[ar, ac], labels[br, bc]
        d = (a != b) & (a > 0) & (b > 0)
        edge[ar, ac] |= d & (a > b)
        edge[br, bc] |= d & (b > a)
    out = labels.copy()
    out[edge] = 0
    return out


def watershed_from_seeds(
    image_or_mask,
    seeds,
    *,
    mask=None,
    compactness: float = 0.0,
    smooth: float = 1.0,
) -> np.ndarray:
    """Watershed flooding from user-given seeds (e.g. points clicked in napari).

    Parameters
    ----------
    image_or_mask : ndarray
        Either a binary mask (bool, or two values): the flooded surface is
        its negated distance transform and the result stays inside the mask;
        or a grayscale image: the flooded surface is its gradient magnitude
        (Sobel of a Gaussian-smoothed image) and the whole image is labelled
        unless ``mask`` is given.
    seeds : array-like
        ``(N, 2)`` array of (row, col) coordinates (napari Points data order),
        or a label image of the same shape with one label per seed region.
    mask : ndarray, optional
        Restrict the result to this mask.
    compactness : float
        Compact watershed parameter (0 = classic watershed).
    smooth : float
        Gaussian sigma (px) before the gradient / distance.

    Returns
    -------
    labels : ndarray of int32
        With point seeds, label ``i + 1`` grows from ``seeds[i]``; seeds
        falling outside the mask get no region.
    """
    arr = np.asarray(image_or_mask)
    if arr.dtype == bool:
        is_mask = True
    else:
        arr = check_image(arr)
        vals = np.unique(arr) if arr.size <= 4_000_000 else np.unique(arr[::5, ::5])
        is_mask = len(vals) <= 2 and vals.min() == 0
    if arr.ndim != 2:
        raise SEMAnalysisError(f"image_or_mask must be 2-D, got shape {arr.shape}")
    m = None if mask is None else _check_mask(mask)
    if m is not None and m.shape != arr.shape:
        raise SEMAnalysisError(f"mask shape {m.shape} differs from image shape {arr.shape}")
    s = np.asarray(seeds)
    if not (np.issubdtype(s.dtype, np.number) or s.dtype == bool) or np.issubdtype(s.dtype, np.complexfloating):
        raise SEMAnalysisError(f"seeds must be numbers (a label image or (row, col) coordinates), got {s.dtype}")
    if s.ndim == 2 and s.shape != arr.shape and (s.shape[1] not in (2, 3) or s.dtype == bool):
        # a seed *image* of another shape is not a list of coordinates
        raise SEMAnalysisError(
            f"seeds must be a label image of the image's shape {arr.shape} or an (N, 2) array of "
            f"(row, col) coordinates, got shape {s.shape}"
        )
    if s.ndim == 2 and s.shape == arr.shape and (np.issubdtype(s.dtype, np.integer) or s.dtype == bool):
        markers = check_labels(s, name="seeds").astype(np.int32)
        if not markers.any():
            raise SEMAnalysisError("the seed label image is empty")
    else:
        if s.size == 0:
            raise SEMAnalysisError("no seeds given")
        if s.ndim != 2 or s.shape[1] < 2:
            raise SEMAnalysisError(f"seeds must be an (N, 2) array of (row, col) coordinates, got shape {s.shape}")
        if not np.all(np.isfinite(s)):
            raise SEMAnalysisError("seed coordinates contain NaN or infinite values")
        rc = np.round(s[:, -2:]).astype(np.int64)
        inside = (rc[:, 0] >= 0) & (rc[:, 0] < arr.shape[0]) & (rc[:, 1] >= 0) & (rc[:, 1] < arr.shape[1])
        if not inside.all():
            bad = np.flatnonzero(~inside)
            raise SEMAnalysisError(
                f"{len(bad)} seed(s) lie outside the image of shape {arr.shape} (first: {s[bad[0]].tolist()})"
            )
        markers = np.zeros(arr.shape, np.int32)
        markers[rc[:, 0], rc[:, 1]] = np.arange(1, len(rc) + 1, dtype=np.int32)
    smooth = check_positive(smooth, "smooth", allow_zero=True, maximum=100)
    if is_mask:
        region = arr > 0 if m is None else (arr > 0) & m
        if not region.any():
            raise SEMAnalysisError("the mask is empty")
        dist = cv2.distanceTransform(np.ascontiguousarray(region).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        if smooth > 0:
            ks = int(2 * np.ceil(3 * smooth) + 1)
            dist = cv2.GaussianBlur(dist, (ks, ks), smooth)
        surface = -dist
        markers = np.where(region, markers, 0)
        if not markers.any():
            raise SEMAnalysisError("no seed lies inside the mask")
        return _watershed(surface, markers, region, compactness)
    img = arr.astype(np.float32)
    if smooth > 0:
        ks = int(2 * np.ceil(3 * smooth) + 1)
        img = cv2.GaussianBlur(img, (ks, ks), smooth)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1)
    surface = np.sqrt(gx * gx + gy * gy)
    if m is not None:
        markers = np.where(m, markers, 0)
    return _watershed(surface, markers, m, compactness)
