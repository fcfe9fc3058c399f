"""Scale-free physical features of a fibre mat, for classifying its quality."""

from __future__ import annotations

import numpy as np

from .measure import measure_fibers
from .result import FiberResult

FIBER_FEATURES = (
    "fib_diameter_cv",
    "fib_diameter_iqr_rel",
    "fib_diameter_p90_rel",
    "fib_diameter_p10_rel",
    "fib_within_segment_cv",
    "fib_beads_per_length",
    "fib_bead_area_fraction",
    "fib_bead_size_rel",
    "fib_swelling_fraction",
    "fib_thickness_cv",
    "fib_thickness_p95_rel",
    "fib_alignment",
    "fib_junctions_per_length",
    "fib_area_fraction",
    "fib_pore_size_rel",
    "fib_segment_length_rel",
    "fib_spindles_per_length",
    "fib_spindle_length_fraction",
    "fib_spindle_amplitude",
)


def fiber_features(image=None, *, mask=None, result: FiberResult | None = None, **kwargs) -> dict:
    """Scale-free physical features of a fibre micrograph, for classification.

    What makes a mat "defective" is beads and uneven fibres, whatever the
    magnification: every feature is a ratio or a count per fibre length in
    units of the median fibre diameter, so images of other specimens at
    other magnifications are comparable without a pixel size. The last three
    describe long, shallow swellings below the bead factor
    (:func:`~napari_sem_analysis.fibers.spindles.find_spindles`): spindles per
    100 diameters of fibre length, the fraction of the centreline length they
    take, and their mean peak width over their fibre's minus 1.

    Parameters
    ----------
    image : array-like (2-D), optional
    mask : array-like, optional
        Passed to :func:`measure_fibers`.
    result : FiberResult, optional
        A measurement to reuse instead of measuring again.
    **kwargs
        Passed to :func:`measure_fibers` (``method``, ``max_diameter``,
        ``bead_factor``).

    Returns
    -------
    dict
        ``FIBER_FEATURES`` name -> float, always the same names in the same
        order (NaN-free: 0 where a quantity is undefined).
    """
    from ..thickness import local_thickness
    from .spindles import find_spindles

    r = result if result is not None else measure_fibers(image, mask=mask, pores=True, **kwargs)
    s = r.summary
    k = 1.0 if r.pixel_size is None else float(r.pixel_size)
    widths = r.info["widths_px"][r.info["valid"]]
    widths = widths[np.isfinite(widths)]
    med = float(np.median(widths)) if widths.size else float("nan")

    def ratio(a, b):
        a, b = float(a), float(b)
        return a / b if np.isfinite(a) and np.isfinite(b) and b > 0 else 0.0

    if widths.size:
        p10, p25, p75, p90 = np.percentile(widths, (10, 25, 75, 90))
    else:
        p10 = p25 = p75 = p90 = float("nan")
    seg = r.segments
    if len(seg):
        wl = seg["length"].to_numpy(float)
        cv = (seg["diameter_sd"] / seg["diameter_mean"]).to_numpy(float)
        okc = np.isfinite(cv) & (wl > 0)
        within = float(np.sum(cv[okc] * wl[okc]) / np.sum(wl[okc])) if okc.any() else 0.0
        seg_len = float(np.median(wl)) / k
    else:
        within, seg_len = 0.0, float("nan")
    length_d = ratio(s["total_length"] / k, med)  # fibre length in median diameters
    all_w = r.info["widths_px"]
    ref = r.info["ref_px"][r.info["segment_of_pixel"]] if len(all_w) else np.zeros(0)
    fin = np.isfinite(all_w)
    swell = float(np.mean(all_w[fin] > 1.5 * ref[fin])) if fin.any() else 0.0
    lt = local_thickness(r.mask).thickness[r.mask] if r.mask.any() else np.zeros(1)
    sp = find_spindles(r).table
    sp_len = float(sp["length"].sum()) / k if len(sp) else 0.0
    feats = {
        "fib_diameter_cv": ratio(s["diameter_sd"], s["diameter_mean"]),
        "fib_diameter_iqr_rel": ratio(p75 - p25, med),
        "fib_diameter_p90_rel": ratio(p90, med),
        "fib_diameter_p10_rel": ratio(p10, med),
        "fib_within_segment_cv": within,
        "fib_beads_per_length": ratio(100.0 * s["bead_count"], length_d),
        "fib_bead_area_fraction": float(s["bead_area_fraction"]),
        "fib_bead_size_rel": ratio(s["bead_diameter_mean"] / k, med),
        "fib_swelling_fraction": swell,
        "fib_thickness_cv": ratio(lt.std(), lt.mean()),
        "fib_thickness_p95_rel": ratio(np.percentile(lt, 95), med),
        "fib_alignment": float(s["alignment"]) if np.isfinite(s["alignment"]) else 0.0,
        "fib_junctions_per_length": ratio(100.0 * s["n_junctions"], length_d),
        "fib_area_fraction": float(s["fiber_area_fraction"]),
        "fib_pore_size_rel": ratio(s["pore_size_median"] / k, med),
        "fib_segment_length_rel": ratio(seg_len, med),
        "fib_spindles_per_length": ratio(100.0 * len(sp), length_d),
        "fib_spindle_length_fraction": ratio(sp_len, s["total_length"] / k),
        "fib_spindle_amplitude": float(sp["amplitude"].mean() - 1.0) if len(sp) else 0.0,
    }
    return {n: float(np.nan_to_num(feats[n])) for n in FIBER_FEATURES}
