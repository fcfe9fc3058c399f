"""Stage 2: the centreline graph (skeleton, junctions, segments) and the segments' geometry."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .segment import _EIGHT


def _neighbours(skel: np.ndarray) -> np.ndarray:
    k = np.ones((3, 3), np.int32)
    k[1, 1] = 0
    return ndi.convolve(skel.astype(np.int32), k, mode="constant") * skel


def _graph(skel: np.ndarray):
    """Junction pixels, end points and segment labels (junction pixels removed) of a skeleton."""
    deg = _neighbours(skel)
    junction = skel & (deg >= 3)
    endpoint = skel & (deg == 1)
    seg, n = ndi.label(skel & ~junction, _EIGHT)
    return junction, endpoint, seg, n


def centerline(mask: np.ndarray, dist: np.ndarray, *, spur_factor: float = 1.5, passes: int = 3) -> np.ndarray:
    """Skeleton of ``mask`` with spurs shorter than ``spur_factor`` x the local radius pruned."""
    from skimage.morphology import skeletonize

    skel = skeletonize(mask)
    for _ in range(passes):
        junction, endpoint, seg, n = _graph(skel)
        if n == 0 or not junction.any():
            break
        idx = np.arange(n + 1)
        size = np.bincount(seg.ravel(), minlength=n + 1)
        has_end = np.bincount(seg[endpoint], minlength=n + 1) > 0
        touches = np.bincount(seg[ndi.binary_dilation(junction, _EIGHT) & (seg > 0)], minlength=n + 1) > 0
        # the radius where the spur meets its junction: the largest distance on the spur
        rad = ndi.maximum(dist, seg, idx)
        rad = np.asarray(rad, float)
        spur = has_end & touches & (size <= spur_factor * rad + 2)
        spur[0] = False
        if not spur.any():
            break
        skel = skel & ~spur[seg]
        skel = skeletonize(skel)
    return skel


@dataclass
class _Graph:
    """The centreline: skeleton, junction pixels, segment labels and the segment of each centreline pixel.

    ``crossing``: the junction pixels where three or more branches meet (not
    the knots of two or three junction pixels that a skeleton makes inside a
    bead, with only the fibre's two branches leaving them).
    """

    skel: np.ndarray
    junction: np.ndarray
    seg: np.ndarray
    nseg: int
    n_junctions: int
    ys: np.ndarray
    xs: np.ndarray
    segid: np.ndarray
    crossing: np.ndarray


def _centreline_graph(fmask: np.ndarray, dist: np.ndarray) -> _Graph:
    """Pruned skeleton of ``fmask`` split into segments at its junctions."""
    skel = centerline(fmask, dist)
    junction, _, seg, nseg = _graph(skel)
    crossing = _crossings(junction, seg, nseg)
    _, n_junctions = ndi.label(crossing, _EIGHT)
    ys, xs = np.nonzero(seg)
    return _Graph(skel, junction, seg, nseg, int(n_junctions), ys, xs, seg[ys, xs], crossing)


def _crossings(junction: np.ndarray, seg: np.ndarray, nseg: int) -> np.ndarray:
    """The junction pixels of knots (junctions with their 1-2 pixel links) that three or more branches leave."""
    tiny = np.bincount(seg.ravel(), minlength=nseg + 1) <= 2
    tiny[0] = False
    knot, n = ndi.label(junction | tiny[seg], _EIGHT)
    if n == 0:
        return junction
    around = ndi.grey_dilation(knot, footprint=_EIGHT)
    touch = (seg > 0) & ~tiny[seg] & (around > 0)
    pairs = np.unique(np.stack([around[touch], seg[touch]]), axis=1)
    branches = np.bincount(pairs[0], minlength=n + 1)
    return junction & (branches >= 3)[knot]


@dataclass
class _Geometry:
    """Per segment id (index 0 unused): centroid, orientation (radians, CCW from +x, y up), length (px)."""

    my: np.ndarray
    mx: np.ndarray
    theta: np.ndarray
    length: np.ndarray


def _segment_geometry(g: _Graph) -> _Geometry:
    """Orientation by PCA of each segment's pixels; length from its 8-connected links."""
    nseg, segid, ys, xs, seg = g.nseg, g.segid, g.ys, g.xs, g.seg
    h, w = seg.shape
    cnt = np.bincount(segid, minlength=nseg + 1).astype(float)
    my = np.bincount(segid, ys, minlength=nseg + 1) / np.maximum(cnt, 1)
    mx = np.bincount(segid, xs, minlength=nseg + 1) / np.maximum(cnt, 1)
    dy = ys - my[segid]
    dx = xs - mx[segid]
    syy = np.bincount(segid, dy * dy, minlength=nseg + 1)
    sxx = np.bincount(segid, dx * dx, minlength=nseg + 1)
    sxy = np.bincount(segid, dx * -dy, minlength=nseg + 1)  # y up
    theta = 0.5 * np.arctan2(2 * sxy, sxx - syy)  # radians, CCW from +x, y up
    length = np.zeros(nseg + 1)
    padded = np.pad(seg, 1)

    def shifted(oy: int, ox: int) -> np.ndarray:
        return padded[1 + oy : 1 + oy + h, 1 + ox : 1 + ox + w]

    for oy, ox in ((0, 1), (1, 0), (1, 1), (1, -1)):
        link = (seg > 0) & (shifted(oy, ox) == seg)
        step = 1.0
        if oy and ox:
            # a diagonal link with an orthogonal detour is not counted twice
            link &= (shifted(0, ox) != seg) & (shifted(oy, 0) != seg)
            step = float(np.sqrt(2.0))
        length += step * np.bincount(seg[link], minlength=nseg + 1)
    length += 1.0  # the pixel itself: a 1-pixel segment has length 1
    length[0] = 0
    return _Geometry(my, mx, theta, length)
