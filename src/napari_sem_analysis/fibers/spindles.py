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

    Returns
    -------
    Spindles
        The spindle table and their centreline pixels.
    """
    import pandas as pd

    if not isinstance(result, FiberResult) or "widths_px" not in result.info:
        raise SEMAnalysisError("find_spindles needs the FiberResult of measure_fibers")
    if not (low > 1.0 and low <= peak[0] < peak[1] and min_length > 0 and min_rise >= 0 and smooth > 0):
        raise SEMAnalysisError(
            f"need 1 < low <= peak[0] < peak[1], min_length > 0, min_rise >= 0 and smooth > 0; got low={low!r}, "
            f"peak={peak!r}, min_length={min_length!r}, min_rise={min_rise!r}, smooth={smooth!r}"
        )
    scale = 1.0 if result.pixel_size is None else float(result.pixel_size)
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
            top = float(np.max(rel[a:b]))
            length = float(s[b - 1] - s[a]) + mean_step
            if length < min_length * base or not peak[0] <= top < peak[1] or (top - 1.0) * base < min_rise:
                continue
            j = a + int(np.argmax(rel[a:b]))
            out_lab[py[a:b], px[a:b]] = len(rows) + 1
            seg = int(result.centerline[py[j], px[j]])
            rows.append((float(py[j]), float(px[j]), length * scale, length / base, top, base * scale, seg))
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
