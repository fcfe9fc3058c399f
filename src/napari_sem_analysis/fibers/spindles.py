"""Spindles: long, shallow swellings of a fibre, too shallow to be beads.

A bead (``beads.py``) is a short swelling at least ``bead_factor`` (1.8) times
as wide as its fibre. Slightly defective electrospun mats show another
defect: the fibre widens smoothly to 1.25-1.8 times its diameter and narrows
again over several diameters of length. :func:`find_spindles` follows each
centreline segment, reads its width profile (the local widths that
:func:`measure_fibers` already measured), smooths it along the fibre and
keeps the stretches that rise above ``low`` times the segment's baseline,
peak between ``peak[0]`` and ``peak[1]`` times it, are at least
``min_length`` baseline diameters long, widen the fibre by at least
``min_rise`` pixels (what the width profile of a noisy micrograph resolves)
and fall back to the baseline on both sides within the segment (a stretch
that ends at a crossing is most often a deeper fibre merging with this one
at a narrow angle, and one that is wide from crossing to crossing a thick
fibre or two merged ones, not a swelling).

All lengths but ``min_rise`` are in baseline diameters, so the same
constants hold at every magnification.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .._validation import SEMAnalysisError
from .result import FiberResult

_OFFSETS = ((0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (1, -1), (-1, 1), (-1, -1))  # orthogonal first


@dataclass
class Spindles:
    """Spindles found on a fibre mat by :func:`find_spindles`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per spindle: ``label``, ``y``, ``x`` (its widest point, px),
        ``length`` (along the centreline; nm with a pixel size, else px),
        ``length_rel`` (in baseline diameters), ``amplitude`` (peak width /
        baseline width), ``baseline`` (the fibre's width, nm or px) and
        ``segment`` (centreline segment label).
    centerline : ndarray (int32)
        The centreline pixels of each spindle, labelled as in ``table``.
    """

    table: object
    centerline: np.ndarray


def _ordered_segments(centerline: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Centreline pixels (ys, xs, as ``np.nonzero``) and, per segment, their indices in path order.

    Junction pixels are not on any segment, so every pixel of a segment has at
    most two neighbours in it: a segment is a path (or a loop), walked from
    one of its ends.
    """
    ys, xs = np.nonzero(centerline)
    n = len(ys)
    if not n:
        return ys, xs, []
    h, w = centerline.shape
    idx = np.full((h + 2, w + 2), -1, np.int64)
    idx[ys + 1, xs + 1] = np.arange(n)
    lab = np.pad(centerline, 1)
    seg = centerline[ys, xs]
    nb = np.full((n, 8), -1, np.int64)
    for k, (oy, ox) in enumerate(_OFFSETS):
        same = lab[ys + 1 + oy, xs + 1 + ox] == seg
        nb[same, k] = idx[ys[same] + 1 + oy, xs[same] + 1 + ox]
    deg = (nb >= 0).sum(axis=1)
    order = np.argsort(seg, kind="stable")
    bounds = np.searchsorted(seg[order], np.arange(1, int(seg.max()) + 2))
    visited = np.zeros(n, bool)
    paths = []
    nb_list = nb.tolist()
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        members = order[a:b]
        if not len(members):
            paths.append(np.zeros(0, np.int64))
            continue
        ends = members[deg[members] <= 1]
        cur = int(ends[0]) if len(ends) else int(members[0])
        path = []
        while cur >= 0:
            visited[cur] = True
            path.append(cur)
            nxt = -1
            for j in nb_list[cur]:
                if j >= 0 and not visited[j]:
                    nxt = j
                    break
            cur = nxt
        paths.append(np.asarray(path, np.int64))
    return ys, xs, paths


def _smooth(values: np.ndarray, ok: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of ``values`` where ``ok`` (normalised convolution); NaN elsewhere."""
    v = np.where(ok, values, 0.0)
    m = ok.astype(float)
    num = ndi.gaussian_filter1d(v, sigma, mode="constant")
    den = ndi.gaussian_filter1d(m, sigma, mode="constant")
    out = np.full(len(values), np.nan)
    good = ok & (den > 1e-6)
    out[good] = num[good] / den[good]
    return out


def _runs(flag: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of the runs of True in ``flag`` (stop exclusive)."""
    d = np.diff(np.concatenate([[0], flag.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


def find_spindles(
    result: FiberResult,
    *,
    low: float = 1.15,
    peak: tuple[float, float] = (1.25, 1.8),
    min_length: float = 3.0,
    min_rise: float = 2.0,
    smooth: float = 0.5,
    through_crossings: bool = False,
) -> Spindles:
    """Long, shallow swellings along the fibres of a :func:`measure_fibers` result.

    Along each centreline segment the local widths (away from crossings, beads
    and the image border) are smoothed with a Gaussian of ``smooth`` baseline
    diameters; the baseline is the lower quartile of the smoothed profile. A
    spindle is a stretch where the smoothed width stays above ``low`` x
    baseline for at least ``min_length`` baseline diameters, reaches between
    ``peak[0]`` and ``peak[1]`` x baseline (above ``peak[1]`` it is a bead's
    or a crossing's width), at least ``min_rise`` pixels wider than the
    baseline, and falls back below ``low`` x baseline on both sides within
    the segment.

    Parameters
    ----------
    result : FiberResult
        A measurement from :func:`measure_fibers`.
    low : float
        Relative width above which the fibre counts as swollen (> 1).
    peak : tuple of float
        Range (min, max) of the spindle's peak relative width.
    min_length : float
        Shortest spindle, in baseline diameters.
    min_rise : float
        Smallest widening at the spindle's peak, in pixels (on thin fibres
        a few tenths of the width are within the noise of the profile).
    smooth : float
        Gaussian sigma of the smoothing along the fibre, in baseline diameters.
    through_crossings : bool
        Follow each fibre through its crossings (``tracks.py``: segment ends
        joined across a crossing when they lie on one straight line) and read
        its width across its own direction, where its two half widths agree
        (a fibre touching one side widens that side only). Readings where
        another fibre's centreline lies across the profile, or wider than
        ``peak[1]`` x the track's lower-quartile width (with half a diameter
        around them), are bridged with the larger of the widths either side,
        so that a swelling that another fibre crosses, or that merges with
        one in the mask, is still measured; it must show a measured swelling
        of at least half a diameter on both sides of what is bridged. Spindles
        are closed within the track (not the segment), each track has its own
        baseline, and beads (with a diameter around them) are left out.
        ``segment`` in the table is the segment at the widest point (0 inside
        a crossing). With ``peak=(1.8, 3.5)`` this finds the wide lenses
        that the bead test leaves where they merge with a crossing.

    Returns
    -------
    Spindles
        The spindle table and their centreline pixels.
    """
    if not isinstance(result, FiberResult) or "widths_px" not in result.info:
        raise SEMAnalysisError("find_spindles needs the FiberResult of measure_fibers")
    if not (low > 1.0 and low <= peak[0] < peak[1] and min_length > 0 and min_rise >= 0 and smooth > 0):
        raise SEMAnalysisError(
            f"need 1 < low <= peak[0] < peak[1], min_length > 0, min_rise >= 0 and smooth > 0; got low={low!r}, "
            f"peak={peak!r}, min_length={min_length!r}, min_rise={min_rise!r}, smooth={smooth!r}"
        )
    scale = 1.0 if result.pixel_size is None else float(result.pixel_size)
    if through_crossings:
        rows, out_lab = _track_spindles(result, low, peak, min_length, min_rise, smooth, scale)
        return _spindles(rows, out_lab)
    ys, xs, paths = _ordered_segments(result.centerline)
    widths = np.asarray(result.info["widths_px"], float)
    valid = np.asarray(result.info["valid"], bool) & np.isfinite(widths)
    h, w = result.centerline.shape
    border = np.minimum(np.minimum(ys, h - 1 - ys), np.minimum(xs, w - 1 - xs))
    out_lab = np.zeros(result.centerline.shape, np.int32)
    rows = []
    for path in paths:
        if len(path) < 4:
            continue
        py, px = ys[path], xs[path]
        step = np.hypot(np.diff(py), np.diff(px))
        s = np.concatenate([[0.0], np.cumsum(step)])
        wv = widths[path]
        ok = valid[path]
        if ok.sum() < 4:
            continue
        rough = float(np.percentile(wv[ok], 25))
        # the widths the border cuts are not the fibre's (about a diameter from the edge)
        ok &= border[path] >= rough + 2.0
        if ok.sum() < 4:
            continue
        mean_step = float(s[-1] / (len(s) - 1))
        ws = _smooth(wv, ok, max(smooth * rough / mean_step, 0.5))
        base = float(np.nanpercentile(ws, 25))
        if not base > 0:
            continue
        rel = ws / base
        swollen = ok & (rel > low)
        for a, b in _runs(swollen):
            # closed: the fibre is back near its baseline just past both ends, in this segment
            if not (a > 0 and ok[a - 1] and b < len(path) and ok[b]):
                continue
            shape = _swelling(rel, s, a, b, mean_step, base, min_length, peak, min_rise)
            if shape is None:
                continue
            top, length, j = shape
            out_lab[py[a:b], px[a:b]] = len(rows) + 1
            seg = int(result.centerline[py[j], px[j]])
            rows.append((float(py[j]), float(px[j]), length * scale, length / base, top, base * scale, seg))
    return _spindles(rows, out_lab)


def _swelling(rel, s, a, b, mean_step, base, min_length, peak, min_rise):
    """(peak width ratio, length, index of the peak) of the run ``a:b`` when it is a spindle, else None."""
    top = float(np.max(rel[a:b]))
    length = float(s[b - 1] - s[a]) + mean_step
    if length < min_length * base or not peak[0] <= top < peak[1] or (top - 1.0) * base < min_rise:
        return None
    return top, length, a + int(np.argmax(rel[a:b]))


def _spindles(rows: list, out_lab: np.ndarray) -> Spindles:
    import pandas as pd

    table = pd.DataFrame(
        {
            "label": np.arange(1, len(rows) + 1, dtype=int),
            "y": [r[0] for r in rows],
            "x": [r[1] for r in rows],
            "length": [r[2] for r in rows],
            "length_rel": [r[3] for r in rows],
            "amplitude": [r[4] for r in rows],
            "baseline": [r[5] for r in rows],
            "segment": np.array([r[6] for r in rows], dtype=int),
        }
    )
    return Spindles(table, out_lab)


def _bridge(s: np.ndarray, values: np.ndarray, ok: np.ndarray, max_gap: float) -> tuple[np.ndarray, np.ndarray]:
    """``values`` across runs of not ``ok`` up to ``max_gap`` long: the larger of the values either side.

    The width under a crossing is not seen; a swelling there is at least as
    wide as its flanks next to the crossing (each side: the median of the
    last three values measured), so the gap takes the larger of the two.
    """
    out = np.where(ok, values, np.nan)
    filled = ok.copy()
    idx = np.flatnonzero(ok)
    for a, b in _runs(~ok):
        if a > 0 and b < len(ok) and s[b] - s[a - 1] <= max_gap:
            left = idx[idx < a][-3:]
            right = idx[idx >= b][:3]
            out[a:b] = max(float(np.median(values[left])), float(np.median(values[right])))
            filled[a:b] = True
    return out, filled


def _track_spindles(
    result: FiberResult, low, peak, min_length, min_rise, smooth, scale, tracks=None, others=None
) -> tuple[list, np.ndarray]:
    """:func:`find_spindles` along the tracks of ``tracks.py`` (``through_crossings=True``).

    ``tracks`` / ``others``: reuse those of an earlier call on the same result.
    """
    from .tracks import _fiber_tracks

    h, w = result.centerline.shape
    out_lab = np.zeros((h, w), np.int32)
    rows: list = []
    bead_far = ndi.distance_transform_edt(np.asarray(result.beads) == 0) if np.any(result.beads) else None
    if tracks is None:
        tracks = _fiber_tracks(result)
    if others is None:
        others = _Others(result, tracks)
    for t_id, tr in enumerate(tracks):
        n = len(tr.y)
        step = np.hypot(np.diff(tr.y), np.diff(tr.x))
        s = np.concatenate([[0.0], np.cumsum(step)])
        iy = np.clip(np.round(tr.y).astype(int), 0, h - 1)
        ix = np.clip(np.round(tr.x).astype(int), 0, w - 1)
        wv = tr.width
        ok = np.isfinite(wv)
        if ok.sum() < 4:
            continue
        rough = float(np.percentile(wv[ok], 25))
        if not rough > 0:
            continue
        # the image border cuts the profiles; beads and their tapers are beads, not spindles
        border = np.minimum(np.minimum(tr.y, h - 1 - tr.y), np.minimum(tr.x, w - 1 - tr.x))
        ok &= border >= rough + 2.0
        if bead_far is not None:
            ok &= bead_far[iy, ix] > rough
        # crossings: a reading far wider than a spindle (dropped with half a diameter
        # around it), and where another fibre's centreline comes within the two fibres'
        # half widths (it lies across the profile)
        zone = others.near(t_id, tr, np.full(n, 0.5 * rough + 1.0))
        cross = np.isfinite(wv) & (wv >= peak[1] * rough) & ~zone
        ok &= ~zone
        if cross.any():
            sc = s[cross]
            j = np.searchsorted(sc, s)
            d_prev = np.abs(s - sc[np.clip(j - 1, 0, len(sc) - 1)])
            d_next = np.abs(sc[np.clip(j, 0, len(sc) - 1)] - s)
            ok &= np.minimum(d_prev, d_next) > 0.5 * rough
        if ok.sum() < 4:
            continue
        mean_step = float(s[-1] / max(n - 1, 1))
        bridged, filled = _bridge(s, wv, ok, 4.0 * rough)
        ws = _smooth(np.nan_to_num(bridged), filled, max(smooth * rough / mean_step, 0.5))
        base = float(np.nanpercentile(ws[ok], 25))
        if not base > 0:
            continue
        rel = ws / base
        swollen = filled & (rel > low)
        for a, b in _runs(swollen):
            # closed: back near the baseline just past both ends, on this track
            if not (a > 0 and filled[a - 1] and b < n and filled[b]):
                continue
            # measured, not only bridged: a measured swelling (half a diameter at least) on
            # both sides of what the stretch bridges (next to a bare crossing, fibres merging
            # at narrow angles widen the track on one side of the crossing only)
            seen = ok[a:b] & (rel[a:b] > low)
            hidden = np.flatnonzero(~ok[a:b])
            first, last = (hidden[0], hidden[-1] + 1) if hidden.size else ((b - a) // 2, (b - a) // 2)
            if min(seen[:first].sum(), seen[last:].sum()) * mean_step < 0.5 * base:
                continue
            shape = _swelling(rel, s, a, b, mean_step, base, min_length, peak, min_rise)
            if shape is None:
                continue
            top, length, j = shape
            out_lab[iy[a:b], ix[a:b]] = len(rows) + 1
            y_j, x_j = float(tr.y[j]), float(tr.x[j])
            rows.append((y_j, x_j, length * scale, length / base, top, base * scale, int(tr.seg[j])))
    return rows, out_lab


class _Others:
    """The centrelines of the other fibres, to tell where another fibre lies across a track.

    Points: every centreline pixel (segment ``s``, half width ``ref_px[s] / 2``)
    and the bridged points of every track (its median half width).
    """

    def __init__(self, result: FiberResult, tracks) -> None:
        from scipy.spatial import cKDTree

        ys, xs = np.nonzero(result.centerline)
        seg = result.centerline[ys, xs].astype(np.int64)
        ref = np.asarray(result.info["ref_px"], float)
        med = float(np.nanmedian(ref[1:])) if len(ref) > 1 and np.isfinite(ref[1:]).any() else 0.0
        # a segment's half width: its track's (lower quartile of the widths along it), else
        # its own reference width, at most the mat's median (short links inside a crossing
        # or a swelling are as wide as the crossing)
        seg_half = 0.5 * np.fmin(np.where(np.isfinite(ref), ref, med), med)
        track_of_seg = np.full(len(ref), -1, np.int64)
        py, px, pt, ph = [ys.astype(float)], [xs.astype(float)], [], []
        for k, tr in enumerate(tracks):
            wk = tr.width[np.isfinite(tr.width)]
            hk = 0.5 * float(np.percentile(wk, 25)) if wk.size else 0.0
            on = np.unique(tr.seg[tr.seg > 0])
            track_of_seg[on] = k
            seg_half[on] = hk
            gap = tr.seg == 0
            py.append(tr.y[gap])
            px.append(tr.x[gap])
            pt.append(np.full(int(gap.sum()), k))
            ph.append(np.full(int(gap.sum()), hk))
        ph.insert(0, seg_half[seg])
        self.track = np.concatenate([track_of_seg[seg], *pt]) if len(seg) or pt else np.zeros(0, np.int64)
        self.half = np.concatenate(ph)
        pts = np.stack([np.concatenate(py), np.concatenate(px)], axis=1)
        self.tree = cKDTree(pts) if len(pts) else None
        self.max_half = float(self.half.max(initial=0.0))

    def near(self, t_id: int, tr, half: np.ndarray) -> np.ndarray:
        """Points of track ``t_id`` whose profile (``half`` px either side, across the track) touches another fibre.

        It touches where a centreline point of another fibre lies within that
        fibre's half width of the profile's line segment.
        """
        out = np.zeros(len(tr.y), bool)
        if self.tree is None:
            return out
        half = np.where(np.isfinite(half), half, 0.0)
        gy, gx = np.gradient(tr.y), np.gradient(tr.x)
        norm = np.maximum(np.hypot(gy, gx), 1e-9)
        gy, gx = gy / norm, gx / norm
        pts = np.stack([tr.y, tr.x], axis=1)
        hits = self.tree.query_ball_point(pts, half + self.max_half)
        counts = np.fromiter((len(h_) for h_ in hits), np.int64, len(hits))
        if not counts.sum():
            return out
        i = np.repeat(np.arange(len(hits)), counts)
        idx = np.concatenate([np.asarray(h_, np.int64) for h_ in hits if len(h_)])
        keep = self.track[idx] != t_id
        i, idx = i[keep], idx[keep]
        dy, dx = self.tree.data[idx, 0] - pts[i, 0], self.tree.data[idx, 1] - pts[i, 1]
        along = dy * gy[i] + dx * gx[i]
        lateral = np.maximum(np.abs(dx * gy[i] - dy * gx[i]) - half[i], 0.0)
        touch = np.hypot(along, lateral) <= self.half[idx]
        out[np.unique(i[touch])] = True
        return out
