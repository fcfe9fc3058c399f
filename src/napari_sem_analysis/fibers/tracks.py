"""Fibre tracks: each fibre followed through its crossings, with a width profile all along it.

The centreline graph of a dense mat cuts every fibre at every crossing, and a
swelling that another fibre crosses (or that merges with it in the mask)
becomes a knot of short segments whose widths are the crossing's, not the
fibre's. :func:`_fiber_tracks` joins the segments of one fibre across its
crossings: a segment end is joined to the end of another segment that lies
ahead of it on the same straight line (the line fitted to the segment's last
few diameters, past the bend a skeleton makes next to a junction), within
``max_angle`` degrees and half a fibre diameter of it, with fibre mask all
along the gap. Inside the gap the track is the straight line between the
two ends, as electrospun fibres are straight over a few diameters.

Along a track the width is read across the track's own direction (the
tangent of the smoothed track, not the structure tensor of the merged mask)
and counts only where the **two half widths agree**: a swelling widens both
sides alike, while a fibre touching or merging with this one on one side
widens that side only (and one crossing at a narrow angle first one side,
then the other). Where another fibre crosses, both half widths run along it
and the reading is far wider than any swelling; :func:`find_spindles` drops
those readings and bridges them, so that the two flanks of a swelling with
a fibre across its middle still make one swelling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..thickness import _inside_distance
from .result import FiberResult
from .widths import _side_widths


@dataclass
class _Track:
    """One fibre followed through its crossings: points in order (1 px apart or so) and what they are.

    ``seg``: the centreline segment of each point (0 inside a bridged crossing);
    ``width``: the width across the track where its two half widths agree
    (px, NaN elsewhere or where not measured); ``sides``: both half widths.
    """

    y: np.ndarray
    x: np.ndarray
    seg: np.ndarray
    width: np.ndarray
    sides: np.ndarray


def _end_lines(paths, ys, xs, dist, d_ref: float, min_len: float):
    """For each end of each long enough segment: (segment, end, point, outward direction, line point).

    The direction is the principal axis of the segment's pixels from about a
    radius to ``3 d_ref`` in from the end (the skeleton bends towards a
    junction over about a radius), pointing out of the segment.
    """
    ends = []
    for sid, path in enumerate(paths, start=1):
        if len(path) < max(min_len, 3):
            continue
        for e in (0, 1):
            p = path if e == 0 else path[::-1]
            ey, ex = float(ys[p[0]]), float(xs[p[0]])
            skip = min(int(dist[int(ey), int(ex)]) + 1, len(p) // 3)
            sel = p[skip : skip + int(3 * d_ref) + 3]
            if len(sel) < 3:
                sel = p[: max(3, len(p) // 2)]
            py, px = ys[sel].astype(float), xs[sel].astype(float)
            my, mx = py.mean(), px.mean()
            cov = np.cov(np.stack([py - my, px - mx]))
            _, vec = np.linalg.eigh(cov)
            u = vec[:, 1]
            if (ey - my) * u[0] + (ex - mx) * u[1] < 0:
                u = -u
            ends.append((sid, e, np.array([ey, ex]), u, np.array([my, mx])))
    return ends


def _links(ends, mask: np.ndarray, seg_w: np.ndarray, d_ref: float, max_angle: float, max_gap: float) -> dict:
    """Pairs of segment ends that continue each other across a crossing (greedy by cost, each end once).

    ``seg_w``: the fibre width of each segment id; a fibre does not change its
    width by half across a crossing, so ends of segments whose widths differ
    by more than 1.5x are not joined.
    """
    tol = 0.5 * d_ref + 2.0
    cos_max = np.cos(np.deg2rad(max_angle))
    from scipy.spatial import cKDTree

    cands = []
    h, w = mask.shape
    if len(ends) < 2:
        return {}
    pairs = cKDTree(np.array([e[2] for e in ends])).query_pairs(max_gap, output_type="ndarray")
    for a, b in pairs:
        sa, _, pa, ua, ma = ends[a]
        sb, _, pb, ub, mb = ends[b]
        if sa == sb:
            continue
        v = pb - pa
        gap = float(np.hypot(*v))
        if gap > max_gap or -float(ua @ ub) < cos_max:
            continue
        if float(v @ ua) < -2.0 or float(-v @ ub) < -2.0:  # each lies ahead of the other
            continue
        off_b = abs(float((pb - ma)[0] * ua[1] - (pb - ma)[1] * ua[0]))
        off_a = abs(float((pa - mb)[0] * ub[1] - (pa - mb)[1] * ub[0]))
        if max(off_a, off_b) > tol:
            continue
        wa, wb = float(seg_w[sa]), float(seg_w[sb])
        if np.isfinite(wa) and np.isfinite(wb) and max(wa, wb) > 1.5 * max(min(wa, wb), 1e-6):
            continue
        n = max(int(np.ceil(gap)), 1)
        t = np.linspace(0.0, 1.0, n + 1)
        gy = np.clip(np.round(pa[0] + t * v[0]).astype(int), 0, h - 1)
        gx = np.clip(np.round(pa[1] + t * v[1]).astype(int), 0, w - 1)
        if mask[gy, gx].mean() < 0.9:  # fibre all along the gap
            continue
        angle = np.degrees(np.arccos(np.clip(-float(ua @ ub), -1.0, 1.0)))
        cands.append((angle / max_angle + (off_a + off_b) / (2 * tol) + gap / max_gap, a, b))
    cands.sort()
    link: dict = {}
    parent = list(range(len(ends) + 1))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # union of segments, so that no track closes on itself
    seg_root = {}
    for _, a, b in cands:
        if a in link or b in link:
            continue
        sa, sb = ends[a][0], ends[b][0]
        ra, rb = root(seg_root.setdefault(sa, len(seg_root))), root(seg_root.setdefault(sb, len(seg_root)))
        if ra == rb:
            continue
        parent[ra] = rb
        link[a], link[b] = b, a
    return link


def _chains(ends, link: dict, paths) -> list[list[tuple[int, bool]]]:
    """Tracks as lists of (segment id, reversed?) joined end to end."""
    end_of = {(s, e): k for k, (s, e, *_rest) in enumerate(ends)}
    seen: set[int] = set()
    chains = []
    segs = sorted({s for s, *_ in ends})

    def walk(sid, entry_end):
        chain = []
        while sid is not None and sid not in seen:
            seen.add(sid)
            chain.append((sid, entry_end == 1))  # entered at its last pixel: walk it reversed
            out_end = 1 - entry_end
            k = end_of.get((sid, out_end))
            if k is None or k not in link:
                break
            nxt = ends[link[k]]
            sid, entry_end = nxt[0], nxt[1]
        return chain

    for sid in segs:  # start at segments with a free end
        for e in (0, 1):
            k = end_of.get((sid, e))
            if sid not in seen and (k is None or k not in link):
                chains.append(walk(sid, e))
    for sid in segs:
        if sid not in seen:
            chains.append(walk(sid, 0))
    return chains


def _fiber_tracks(
    result: FiberResult,
    *,
    max_angle: float = 20.0,
    max_gap: float = 4.0,
    min_length: float = 1.5,
    smooth_px: float = 2.0,
    max_turn: float = 30.0,
) -> list[_Track]:
    """Each fibre of ``result`` followed through its crossings, with its width profile (see the module).

    ``max_gap`` (the longest crossing bridged) and ``min_length`` (the
    shortest segment tracked: shorter ones are the links a skeleton makes
    inside a crossing) are in median fibre diameters. A track is cut where
    it turns by more than ``max_turn`` degrees within a diameter either
    side (two fibres meeting in a V, as at the image border, make one
    skeleton segment with a hairpin).
    """
    from .spindles import _ordered_segments

    mask = np.asarray(result.mask, bool)
    ys, xs, paths = _ordered_segments(result.centerline)
    widths = np.asarray(result.info["widths_px"], float)
    ok = np.asarray(result.info["valid"], bool) & np.isfinite(widths)
    if not ok.any() or not len(paths):
        return []
    d_ref = float(np.median(widths[ok]))
    dist = _inside_distance(mask).astype(np.float32)
    ends = _end_lines(paths, ys, xs, dist, d_ref, min_length * d_ref)
    seg_w = np.asarray(result.info["ref_px"], float)
    link = _links(ends, mask, seg_w, d_ref, max_angle, max_gap * d_ref + 4.0)
    profile = result.info.get("profile")
    source = mask if profile is None else profile
    tmax = float(min(2.0 * dist.max() + 4.0, max(mask.shape)))
    tracks = []
    for chain in _chains(ends, link, paths):
        py, px, pseg = [], [], []
        for sid, rev in chain:
            p = paths[sid - 1][::-1] if rev else paths[sid - 1]
            # the last radius or so at each end bends towards the junction: the straight
            # line across the crossing replaces it (as it does in _end_lines)
            k0, k1 = (min(int(dist[ys[q], xs[q]]) + 1, len(p) // 3) for q in (p[0], p[-1]))
            p = p[k0 : len(p) - k1]
            cy, cx = ys[p].astype(float), xs[p].astype(float)
            if py:  # the straight line across the crossing from the last point to this segment's first
                y0, x0 = py[-1][-1], px[-1][-1]
                n = int(np.ceil(np.hypot(cy[0] - y0, cx[0] - x0)))
                if n > 1:
                    t = np.arange(1, n) / n
                    py.append(y0 + t * (cy[0] - y0))
                    px.append(x0 + t * (cx[0] - x0))
                    pseg.append(np.zeros(n - 1, int))
            py.append(cy)
            px.append(cx)
            pseg.append(np.full(len(p), sid))
        ty, tx, tseg = np.concatenate(py), np.concatenate(px), np.concatenate(pseg)
        for piece in _straight_pieces(ty, tx, d_ref, max_turn):
            if len(piece) < 4:
                continue
            tracks.append(_measure_track(ty[piece], tx[piece], tseg[piece], source, profile, dist, tmax, smooth_px))
    return tracks


def _straight_pieces(ty: np.ndarray, tx: np.ndarray, d_ref: float, max_turn: float) -> list[np.ndarray]:
    """Indices of the pieces of a track between its sharp turns."""
    n = len(ty)
    k = max(int(round(d_ref)), 2)
    if n < 2 * k + 1:
        return [np.arange(n)]
    sy = ndi.gaussian_filter1d(ty, 0.5 * d_ref, mode="nearest")
    sx = ndi.gaussian_filter1d(tx, 0.5 * d_ref, mode="nearest")
    ang = np.arctan2(np.gradient(sy), np.gradient(sx))
    turn = np.zeros(n, bool)
    diff = np.abs(np.angle(np.exp(1j * (ang[2 * k :] - ang[: -2 * k]))))
    turn[k:-k] = diff > np.deg2rad(max_turn)
    from .spindles import _runs

    return [np.arange(a, b) for a, b in _runs(~turn)]


def _measure_track(ty, tx, tseg, source, profile, dist, tmax: float, smooth_px: float) -> _Track:
    """Smooth the track, read both half widths across its direction; the width where they agree.

    A width counts only where the two half widths agree within 1.5 px plus a
    tenth of the width: a swelling widens both sides alike, while a fibre
    touching or merging on one side (or crossing at a narrow angle, which
    widens first one side, then the other) does not.
    """
    h, w = dist.shape
    sy = ndi.gaussian_filter1d(ty, smooth_px, mode="nearest")
    sx = ndi.gaussian_filter1d(tx, smooth_px, mode="nearest")
    gy, gx = np.gradient(sy), np.gradient(sx)
    norm = np.hypot(gy, gx)
    norm[norm == 0] = 1.0
    ny, nx = gx / norm, -gy / norm
    iy = np.clip(np.round(sy).astype(int), 0, h - 1)
    ix = np.clip(np.round(sx).astype(int), 0, w - 1)
    sides = _side_widths(
        source,
        sy.astype(np.float32),
        sx.astype(np.float32),
        ny.astype(np.float32),
        nx.astype(np.float32),
        tmax,
        inner=None if profile is None else np.maximum(dist[iy, ix], 1.0),
    ).astype(float)
    full = sides.sum(axis=1)  # NaN where either side was not measured
    agree = np.abs(sides[:, 0] - sides[:, 1]) <= 1.5 + 0.1 * full
    return _Track(sy, sx, tseg, np.where(agree, full, np.nan), sides)
