"""Stage 4: beads, i.e. spindles on fibres (much wider than their fibre) and compact blobs carrying no fibre."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from .graph import _Graph
from .segment import _EIGHT
from .stats import _segment_quantile
from .widths import _Widths


@dataclass
class _Beads:
    """Beads found: one row ``(y, x, width_px, kind, segment)`` and one label in ``image`` per bead.

    ``fibers`` is the fibre mask labelled by the nearest centreline segment
    (computed here because each spindle takes the mask pixels nearest to it);
    ``ref`` is the reference fibre width of each segment id (px).
    """

    image: np.ndarray
    fibers: np.ndarray
    ref: np.ndarray
    global_median: float
    rows: list = field(default_factory=list)


def _bead_reference(wd: _Widths, g: _Graph) -> tuple[np.ndarray, float]:
    """The fibre width a bead is judged against, per segment id, and the median width of the mat."""
    global_med = float(np.nanmedian(np.where(wd.valid, wd.widths, np.nan))) if wd.valid.any() else float("nan")
    # beads must be judged against the fibre, not the bead: the lower quartile of a
    # segment's widths is the fibre even where a bead takes half the segment
    # (also of all its widths, those near crossings included: a bead can take all of a
    # short segment between two crossings but for the stretches next to them)
    seg_ref = np.fmin(
        _segment_quantile(g.segid, wd.widths, wd.valid, g.nseg, 0.25),
        _segment_quantile(g.segid, wd.widths, np.ones_like(wd.valid), g.nseg, 0.25),
    )
    ref = np.where(np.isfinite(seg_ref), seg_ref, global_med)
    if np.isfinite(global_med):
        ref = np.minimum(ref, 2.0 * global_med)
    return ref, global_med


def _spindle_pixels(dist: np.ndarray, g: _Graph, wd: _Widths, ref: np.ndarray, bead_factor: float) -> np.ndarray:
    """Centreline pixels whose inscribed disc is much wider than their segment's fibre."""
    # the inscribed disc, not the normal profile (which runs along crossing fibres)
    disc = 2.0 * dist[g.ys, g.xs] - 1.0
    r = ref[g.segid]
    # (and at least 4 px wider: thin digital lines and their crossings are not beads)
    wide = (disc > np.maximum(bead_factor * r, r + 4.0)) & ~wd.near_bead
    # as for particles, a bead cut by the image border is not counted: its disc, grown
    # by its radius, must lie in the image (fibres leaving the image obliquely, or
    # crossing just outside it, look wide there)
    h, w = g.seg.shape
    wide &= 2.0 * dist[g.ys, g.xs] <= np.minimum(np.minimum(g.ys, h - 1 - g.ys), np.minimum(g.xs, w - 1 - g.xs)) + 1.0
    bead_pix = np.zeros(g.seg.shape, bool)
    bead_pix[g.ys[wide], g.xs[wide]] = True
    return bead_pix


def _label_fibres(fmask: np.ndarray, g: _Graph, spindles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each mask pixel takes its nearest centreline pixel's segment (and spindle) label."""
    if not g.nseg:
        zero = np.zeros(fmask.shape, np.int32)
        return zero, zero.copy()
    _, (ny_i, nx_i) = ndi.distance_transform_edt(g.seg == 0, return_indices=True)
    fibers = np.where(fmask, g.seg[ny_i, nx_i], 0).astype(np.int32)
    return fibers, np.where(fmask, spindles[ny_i, nx_i], 0)


def _find_blobs(fmask: np.ndarray, dist: np.ndarray, g: _Graph, bd: _Beads, bead_factor: float) -> None:
    """Compact components much wider than the median fibre, with no junction and little centreline."""
    comp, ncomp = ndi.label(fmask, _EIGHT)
    if not ncomp or not np.isfinite(bd.global_median):
        return
    cidx = np.arange(1, ncomp + 1)
    area = ndi.sum(np.ones_like(dist), comp, cidx)
    rmax = np.asarray(ndi.maximum(dist, comp, cidx), float)
    sk_len = np.bincount(comp[g.skel], minlength=ncomp + 1)[1:]
    has_junction = np.bincount(comp[g.crossing], minlength=ncomp + 1)[1:] > 0
    disc_area = np.pi * (rmax - 0.5) ** 2
    blob = (
        (2 * rmax - 1 > bead_factor * bd.global_median)
        & (sk_len <= 3.0 * rmax)
        & ~has_junction
        & (area <= 2.5 * np.maximum(disc_area, 1))
    )
    for c_ in cidx[blob]:
        sel = comp == c_
        if bd.image[sel].any():
            continue
        cy, cx = ndi.center_of_mass(sel)
        bd.image[sel] = len(bd.rows) + 1
        bd.rows.append((float(cy), float(cx), float(2 * np.sqrt(sel.sum() / np.pi)), "blob", 0))


def _find_beads(fmask: np.ndarray, dist: np.ndarray, g: _Graph, wd: _Widths, bead_factor: float) -> _Beads:
    """Spindles and blobs; the fibre widths next to a spindle (its tapers) leave ``wd.valid``."""
    ref, global_med = _bead_reference(wd, g)
    bead_pix = _spindle_pixels(dist, g, wd, ref, bead_factor)
    gap = max(2, int(round(global_med))) if np.isfinite(global_med) else 2
    spindles, n_sp = ndi.label(ndi.binary_dilation(bead_pix, _EIGHT, iterations=gap) & g.skel, _EIGHT)
    ys, xs = g.ys, g.xs
    # fibre diameters leave out the beads and their tapers
    if n_sp:
        db, (by_i, bx_i) = ndi.distance_transform_edt(~bead_pix, return_indices=True)
        zone = db[ys, xs] < dist[by_i[ys, xs], bx_i[ys, xs]] + ref[g.segid]
        wd.valid &= ~zone
    fibers, nearest = _label_fibres(fmask, g, spindles)
    bd = _Beads(np.zeros(fmask.shape, np.int32), fibers, ref, global_med)
    disc = 2.0 * dist[ys, xs] - 1.0
    on_spindle = spindles[ys, xs]
    for k in range(1, n_sp + 1):
        sel = on_spindle == k
        if not sel.any():
            continue
        ww = disc[sel]
        j = int(np.argmax(ww))
        bd.image[nearest == k] = len(bd.rows) + 1
        bd.rows.append((float(ys[sel][j]), float(xs[sel][j]), float(ww[j]), "spindle", int(g.segid[sel][j])))
    _find_blobs(fmask, dist, g, bd, bead_factor)
    return bd


def _bead_table(rows: list, scale: float):
    """``label``, ``y``, ``x`` (px), ``diameter`` (nm or px), ``kind`` of each bead."""
    import pandas as pd

    return pd.DataFrame(
        {
            "label": np.arange(1, len(rows) + 1, dtype=int),
            "y": [r[0] for r in rows],
            "x": [r[1] for r in rows],
            "diameter": [r[2] * scale for r in rows],
            "kind": [r[3] for r in rows],
        }
    )
