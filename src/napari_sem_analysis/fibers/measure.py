"""Stage 5 and the whole measurement: :func:`measure_fibers` runs the stages and summarises them."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .._validation import SEMAnalysisError, check_image, check_positive, to_grayscale
from ..thickness import _inside_distance
from .beads import _bead_table, _Beads, _find_beads
from .graph import _centreline_graph, _Geometry, _Graph, _segment_geometry
from .result import FiberResult
from .segment import _foreground, segment_fibers
from .stats import _circular_stats, _segment_stats
from .widths import _local_widths, _Widths


def measure_fibers(
    image=None,
    *,
    mask=None,
    pixel_size: float | None = None,
    method: str = "ridge",
    max_diameter: float | None = None,
    bead_factor: float = 1.8,
    min_segment_length: float = 0.0,
    pores: bool = True,
) -> FiberResult:
    """Measure fibre diameters, orientations, junctions and beads of a fibre mat.

    Parameters
    ----------
    image : array-like (2-D), optional
        The micrograph (bright fibres). Needed unless ``mask`` is given.
    mask : array-like (2-D, bool or labels), optional
        A fibre mask to measure instead of segmenting ``image`` (e.g. from a
        U-Net).
    pixel_size : float, optional
        nm per pixel: lengths and diameters in nm, densities per µm².
        Without it: pixels and densities per 10⁶ px².
    method : {"ridge", "threshold"}
        Segmentation of ``image``; see :func:`segment_fibers`.
    max_diameter : float, optional
        Largest fibre (or bead) diameter expected, in pixels (segmentation
        scale). Default: a tenth of the smaller image side.
    bead_factor : float
        A stretch of centreline wider than ``bead_factor`` x its segment's
        median diameter is a bead; so is a compact blob at least that much
        wider than the median fibre.
    min_segment_length : float
        Segments shorter than this (pixels) are left out of the segment
        table and orientation statistics (diameters still count).
    pores : bool
        Measure the mesh pore size (local thickness of the background).

    Returns
    -------
    FiberResult
        ``segments`` table, ``summary`` dict, ``fibers`` / ``centerline`` /
        ``beads`` label images, ``bead_table`` and ``diameter_map``. The
        summary has ``diameter_mean``, ``diameter_median``, ``diameter_sd``,
        ``diameter_cv``, ``diameter_p10``, ``diameter_p90``,
        ``diameter_histogram`` (counts, edges: 30 bins from 0 to 1.1 x the
        99.5th percentile, wider readings in the last), ``alignment`` (0 random ..
        1 parallel), ``orientation_mean`` (degrees), ``total_length``,
        ``n_segments``, ``n_junctions``, ``junction_density``,
        ``bead_count``, ``bead_density``, ``bead_diameter_mean``,
        ``bead_area_fraction``, ``fiber_area_fraction``,
        ``pore_size_median``, ``pore_size_mean``, ``unit`` and
        ``density_unit``. Diameters are length weighted (one value per
        centreline pixel away from junctions).
    """
    if pixel_size is not None:
        pixel_size = check_positive(pixel_size, "pixel_size")
    bead_factor = check_positive(bead_factor, "bead_factor")
    if bead_factor <= 1.0:
        raise SEMAnalysisError(f"bead_factor must be > 1, got {bead_factor!r}")
    fmask, profile_source = _input_mask(image, mask, method, max_diameter)
    scale = 1.0 if pixel_size is None else float(pixel_size)
    dist = _inside_distance(fmask).astype(np.float32)
    g = _centreline_graph(fmask, dist)
    wd = _local_widths(fmask, dist, g, profile_source)
    geo = _segment_geometry(g)
    bd = _find_beads(fmask, dist, g, wd, bead_factor)
    bead_table = _bead_table(bd.rows, scale)
    segments, seg_keep = _segment_table(g, wd, geo, bd, scale, min_segment_length)
    summary = _summary(fmask, g, wd, geo, bd, bead_table, seg_keep, pixel_size, pores)
    wmap = np.zeros(fmask.shape, np.float32)
    wmap[g.ys, g.xs] = np.where(wd.valid, wd.widths, np.nan) * scale
    return FiberResult(
        segments=segments,
        summary=summary,
        fibers=bd.fibers,
        centerline=np.where(g.skel, g.seg, 0).astype(np.int32),
        beads=bd.image,
        bead_table=bead_table,
        diameter_map=wmap,
        mask=fmask,
        pixel_size=pixel_size,
        info={
            "widths_px": wd.widths,
            "valid": wd.valid,
            "segment_of_pixel": g.segid,
            "ref_px": bd.ref,
            "profile": profile_source,  # background-free image the widths were read from (None: the mask)
        },
    )


def _input_mask(image, mask, method: str, max_diameter) -> tuple[np.ndarray, np.ndarray | None]:
    """The fibre mask to measure and, when we segmented the image ourselves, the profile source.

    The profile source is the background-free image, its level away from the
    fibres taken as zero, so that half maximum is half way up from it.
    """
    if mask is not None:
        from ..thickness import _check_mask

        fmask = _check_mask(mask)
        if image is not None:
            img = check_image(to_grayscale(np.asarray(image)))
            if img.shape != fmask.shape:
                raise SEMAnalysisError(f"mask shape {fmask.shape} does not match image shape {img.shape}")
        if min(fmask.shape) < 16:
            raise SEMAnalysisError(f"mask of shape {fmask.shape} is smaller than 16 pixels")
        return fmask, None
    if image is None:
        raise SEMAnalysisError("give an image or a mask")
    fmask = segment_fibers(image, method=method, max_diameter=max_diameter)
    img = check_image(to_grayscale(np.asarray(image)))
    dmax = float(max_diameter) if max_diameter is not None else min(img.shape) / 10.0
    fg = _foreground(img, dmax, 0.7)[1]
    # the opening follows the lower envelope of the noise: take the background level
    # away from the fibres as zero, so that half maximum is half way up from it
    away = ~ndi.binary_dilation(fmask, iterations=3)
    return fmask, fg - (float(np.median(fg[away])) if away.any() else 0.0)


def _segment_table(g: _Graph, wd: _Widths, geo: _Geometry, bd: _Beads, scale: float, min_length: float):
    """One row per segment at least ``min_length`` px long, and the ids of those segments."""
    import pandas as pd

    nseg = g.nseg
    idx = np.arange(1, nseg + 1)
    seg_med, seg_mean, seg_sd = _segment_stats(g.segid, wd.widths, wd.valid, nseg)
    n_beads_seg = np.bincount([r[4] for r in bd.rows if r[4] > 0], minlength=nseg + 1)
    keep = (geo.length[1:] >= min_length) if nseg else np.zeros(0, bool)
    segments = pd.DataFrame(
        {
            "label": idx[keep],
            "length": geo.length[1:][keep] * scale,
            "diameter_mean": seg_mean[1:][keep] * scale,
            "diameter_sd": seg_sd[1:][keep] * scale,
            "diameter_median": seg_med[1:][keep] * scale,
            "orientation": np.rad2deg(geo.theta[1:][keep]) % 180.0,
            "n_beads": n_beads_seg[1:][keep],
            "centroid_y": geo.my[1:][keep],
            "centroid_x": geo.mx[1:][keep],
        }
    )
    return segments, idx[keep]


def _diameter_summary(vals: np.ndarray) -> dict:
    """Mean, median, SD, CV, 10th / 90th percentiles and a 30-bin histogram of the local diameters.

    The histogram runs from 0 to 1.1 x the 99.5th percentile, so that a few
    very wide readings (beads, blobs at crossings) do not squeeze the fibres
    into one or two bins; wider readings are counted in the last bin (the
    counts add up to every reading).
    """
    if not vals.size:
        out = {f"diameter_{k}": float("nan") for k in ("mean", "median", "sd", "cv", "p10", "p90")}
        out["diameter_histogram"] = (np.zeros(30, int), np.linspace(0, 1, 31))
        return out
    p10, med, p90 = np.percentile(vals, (10, 50, 90))
    mean, sd = float(vals.mean()), float(vals.std())
    return {
        "diameter_mean": mean,
        "diameter_median": float(med),
        "diameter_sd": sd,
        "diameter_cv": sd / mean if mean > 0 else float("nan"),
        "diameter_p10": float(p10),
        "diameter_p90": float(p90),
        "diameter_histogram": _histogram(vals),
    }


def _histogram(vals: np.ndarray, bins: int = 30) -> tuple[np.ndarray, np.ndarray]:
    hi = 1.1 * float(np.percentile(vals, 99.5))
    if not hi > 0:
        hi = float(vals.max()) if vals.max() > 0 else 1.0
    return np.histogram(np.minimum(vals, hi), bins=bins, range=(0.0, hi))


def _summary(fmask, g: _Graph, wd: _Widths, geo: _Geometry, bd: _Beads, bead_table, seg_keep, pixel_size, pores):
    """The image summary (see :func:`measure_fibers`)."""
    h, w = fmask.shape
    scale = 1.0 if pixel_size is None else float(pixel_size)
    area_px = float(h * w)
    if pixel_size is None:
        area_unit, density_unit = area_px / 1e6, "per 10^6 px^2"
    else:
        area_unit, density_unit = area_px * scale * scale / 1e6, "per um^2"
    summary = _diameter_summary(wd.widths[wd.valid] * scale)
    align, omean = _circular_stats(geo.theta[seg_keep], geo.length[seg_keep])
    n_beads = len(bd.rows)
    fib_area = float(fmask.sum())
    summary.update(
        alignment=align,
        orientation_mean=omean,
        total_length=float(geo.length[1:].sum() * scale),
        n_segments=int(len(seg_keep)),
        n_junctions=g.n_junctions,
        junction_density=g.n_junctions / area_unit,
        bead_count=n_beads,
        bead_density=n_beads / area_unit,
        bead_diameter_mean=float(bead_table["diameter"].mean()) if n_beads else 0.0,
        bead_area_fraction=float((bd.image > 0).sum()) / fib_area if fib_area else 0.0,
        fiber_area_fraction=fib_area / area_px,
    )
    if pores and (~fmask).any():
        from ..thickness import local_thickness

        lt = local_thickness(~fmask)
        summary["pore_size_median"] = lt.summary["median"] * scale
        summary["pore_size_mean"] = lt.summary["mean"] * scale
    else:
        summary["pore_size_median"] = summary["pore_size_mean"] = float("nan")
    summary["unit"] = "px" if pixel_size is None else "nm"
    summary["density_unit"] = density_unit
    return summary
