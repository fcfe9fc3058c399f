"""Per-label geometry of a label image: row index of every pixel, borders, perimeters, convex hulls.

The primitives :func:`~napari_sem_analysis.measurement.measure` builds its shape columns from
(vectorised over the labels; only the convex hulls are computed object by object with OpenCV),
and the two layer shapes drawn from them: :func:`oriented_boxes` and :func:`object_outlines`
(both re-exported by :mod:`napari_sem_analysis.measurement`).
"""

from __future__ import annotations

import numpy as np

from ._validation import check_labels, check_positive

__all__ = ["oriented_boxes", "object_outlines"]

# skimage.measure.perimeter (4-neighbourhood) weights, indexed by the border code
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + np.sqrt(2.0)) / 2.0


def _present_and_index(labels: np.ndarray):
    """Present labels (sorted, > 0) and a per-pixel row index (background -> n)."""
    flat = labels.ravel()
    mx = int(flat.max()) if flat.size else 0
    if mx == 0:
        return np.zeros(0, np.int64), None, 0
    if mx <= 4 * flat.size + 1_000_000:
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=mx + 1)
        present = np.flatnonzero(counts)
        present = present[present > 0]
    else:
        present = np.unique(flat)
        present = present[present > 0]
    n = present.size
    lut = np.full(mx + 1, n, np.int64) if mx <= 4 * flat.size + 1_000_000 else None
    if lut is not None:
        lut[present] = np.arange(n)
        idx = lut[flat]
    else:
        idx = np.searchsorted(present, flat)
        idx[flat == 0] = n
    return present.astype(np.int64), idx, n


def _border_mask(labels: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour of another label (or outside the image)."""
    pad = np.pad(labels, 1)
    c = pad[1:-1, 1:-1]
    interior = (c == pad[:-2, 1:-1]) & (c == pad[2:, 1:-1]) & (c == pad[1:-1, :-2]) & (c == pad[1:-1, 2:])
    return (labels > 0) & ~interior


def _perimeters(labels: np.ndarray, border: np.ndarray, lut_index, n: int) -> np.ndarray:
    """Per-label perimeter equal to ``skimage.measure.perimeter(region, 4)``."""
    h, w = labels.shape
    lab_p = np.pad(labels, 1)
    bor_p = np.pad(border, 1)
    wp = w + 2
    flat_lab = lab_p.ravel()
    flat_bor = bor_p.ravel()
    pos = np.flatnonzero(flat_bor)
    own = flat_lab[pos]
    code = np.ones(pos.size, np.int64)
    for off, weight in ((-1, 2), (1, 2), (-wp, 2), (wp, 2), (-wp - 1, 10), (-wp + 1, 10), (wp - 1, 10), (wp + 1, 10)):
        nb = pos + off
        code += weight * ((flat_lab[nb] == own) & flat_bor[nb])
    per_pixel = _PERIMETER_WEIGHTS[code]
    rows = lut_index(own)
    return np.bincount(rows, per_pixel, minlength=n + 1)[:n]


def _pad_polygons(polys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack polygons (k_i, 2) into (n, kmax, 2), repeating each last vertex; returns (array, k)."""
    k = np.array([len(p) for p in polys])
    kmax = int(k.max())
    out = np.empty((len(polys), kmax, 2))
    for i, p in enumerate(polys):
        out[i, : len(p)] = p
        out[i, len(p) :] = p[-1]
    return out, k


def _batched(sizes: np.ndarray, budget: int = 2_000_000, power: int = 2):
    """Groups of indices (sorted by size) whose padded (g, k**power) arrays stay small."""
    order = np.argsort(sizes, kind="stable")
    i = 0
    n = order.size
    while i < n:
        kmax = max(int(sizes[order[min(n - 1, i)]]), 1)
        g = max(1, budget // kmax**power)
        # the group's largest polygon sets its padding: shrink g until it fits
        while g > 1 and max(int(sizes[order[min(n - 1, i + g - 1)]]), 1) ** power * g > budget:
            g //= 2
        yield order[i : i + g]
        i += g


def _hull_stats(border: np.ndarray, labels: np.ndarray, present: np.ndarray, lut_index, want_boxes=False):
    """Feret diameters, convex pixel count (and optionally min-area boxes) per label.

    The Feret diameters are those of the convex hull of the pixel squares
    (corners at +-0.5); the convex area counts the pixel centres inside the
    convex hull of the object's pixel centres (Pick's theorem). Only the
    hulls are computed object by object (OpenCV); the rest is batched.
    """
    import cv2

    n = present.size
    rr, cc = np.nonzero(border)
    rows = lut_index(labels[rr, cc])
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    pts = np.stack([cc[order], rr[order]], axis=1).astype(np.int32)  # (x, y) for OpenCV
    bounds = np.searchsorted(rows, np.arange(n + 1))
    # pixel corners in half-pixel units (integers, exact)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.int32)
    convex_hull = cv2.convexHull
    centre_hulls = []
    corner_hulls = []
    for k in range(n):
        p = pts[bounds[k] : bounds[k + 1]]
        hull = convex_hull(p).reshape(-1, 2)
        centre_hulls.append(hull)
        cpts = (2 * hull[:, None, :] + corners).reshape(-1, 2)
        corner_hulls.append(convex_hull(cpts).reshape(-1, 2) / 2.0)

    # convex pixel count by Pick's theorem: A + B/2 + 1 (hull of integer points)
    conv = np.zeros(n)
    for grp in _batched(np.array([len(h) for h in centre_hulls]), 4_000_000, power=1):
        hc, _ = _pad_polygons([centre_hulls[i] for i in grp])
        nxt = np.roll(hc, -1, axis=1)
        area2 = np.abs((hc[..., 0] * nxt[..., 1] - hc[..., 1] * nxt[..., 0]).sum(axis=1))
        e = np.abs(nxt - hc).astype(np.int64)
        b = np.gcd(e[..., 0], e[..., 1]).sum(axis=1)
        conv[grp] = area2 / 2.0 + b / 2.0 + 1.0

    # Feret diameters of the pixel-corner hulls, batched by hull size
    fmax = np.zeros(n)
    fmin = np.zeros(n)
    sizes = np.array([len(h) for h in corner_hulls])
    for grp in _batched(sizes):
        poly, _ = _pad_polygons([corner_hulls[i] for i in grp])
        d = poly[:, :, None, :] - poly[:, None, :, :]
        fmax[grp] = np.sqrt((d**2).sum(-1).max(axis=(1, 2)))
        edge = np.roll(poly, -1, axis=1) - poly  # (g, k, 2)
        length = np.hypot(edge[..., 0], edge[..., 1])
        # distance of every vertex j from the line of edge i
        rel = poly[:, None, :, :] - poly[:, :, None, :]  # (g, i, j, 2)
        cross = np.abs(edge[:, :, None, 0] * rel[..., 1] - edge[:, :, None, 1] * rel[..., 0])
        with np.errstate(divide="ignore", invalid="ignore"):
            width = cross.max(axis=2) / length
        width[length == 0] = np.inf
        fmin[grp] = width.min(axis=1)
    boxes = None
    if want_boxes:
        boxes = np.zeros((n, 4, 2))
        for k, ch in enumerate(corner_hulls):
            box = cv2.boxPoints(cv2.minAreaRect(ch.astype(np.float32)))
            boxes[k] = box[:, ::-1]  # (row, col)
    return fmax, fmin, conv, boxes


# --------------------------------------------------------------------------
# geometry for layers
# --------------------------------------------------------------------------
def oriented_boxes(labels) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-area oriented bounding boxes of every object.

    Parameters
    ----------
    labels : ndarray of int
        2-D label image (0 = background).

    Returns
    -------
    present : (n,) ndarray of int
        The labels, sorted.
    boxes : (n, 4, 2) ndarray of float
        The four corners (row, col) of each box, in pixel coordinates,
        enclosing the pixel squares.
    """
    labels = check_labels(labels)
    present, idx, n = _present_and_index(labels)
    if n == 0:
        return present, np.zeros((0, 4, 2))
    border = _border_mask(labels)
    _, _, _, boxes = _hull_stats(border, labels, present, lambda v: np.searchsorted(present, v), want_boxes=True)
    return present, boxes


def object_outlines(labels, *, tolerance: float = 0.5) -> tuple[np.ndarray, list[np.ndarray]]:
    """Outline polygon (row, col) of every object (its largest outer contour).

    Uses OpenCV contour tracing on each object's bounding box; polygons are
    simplified with ``tolerance`` pixels (Douglas-Peucker).

    Parameters
    ----------
    labels : ndarray of int
        2-D label image (0 = background).
    tolerance : float
        Douglas-Peucker simplification tolerance in pixels.
    """
    import cv2
    from scipy import ndimage as ndi

    labels = check_labels(labels)
    tolerance = check_positive(tolerance, "tolerance", allow_zero=True, maximum=1e6)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size and ids[-1] > 2 * ids.size + 65536:
        # sparse ids (one object labelled 10**8): find_objects would list every id up to the largest
        compact = np.where(labels > 0, np.searchsorted(ids, labels) + 1, 0).astype(np.int32)
        present, polys = object_outlines(compact, tolerance=tolerance)
        return ids[np.asarray(present, dtype=np.int64) - 1], polys
    present, _, n = _present_and_index(labels)
    slices = ndi.find_objects(labels)
    polys = []
    for lab in present:
        sl = slices[lab - 1]
        crop = np.pad((labels[sl] == lab).astype(np.uint8), 1)
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        c = max(contours, key=cv2.contourArea)
        if tolerance > 0 and len(c) > 3:
            c = cv2.approxPolyDP(c, tolerance, True)
        c = c.reshape(-1, 2).astype(np.float64)
        poly = np.stack([c[:, 1] + sl[0].start - 1, c[:, 0] + sl[1].start - 1], axis=1)
        if poly.shape[0] < 3:  # tiny objects: use the pixel square(s)
            r0, r1, c0, c1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
            poly = np.array([[r0 - 0.5, c0 - 0.5], [r0 - 0.5, c1 - 0.5], [r1 - 0.5, c1 - 0.5], [r1 - 0.5, c0 - 0.5]])
        polys.append(poly)
    return present, polys
