"""Summary statistics of a measurement table: counts, number density, area fraction and the
D10/D50/D90 of the equivalent diameter, overall and per class (:func:`summarize`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ._validation import SEMAnalysisError, check_positive


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, qs) -> list[float]:
    order = np.argsort(values)
    v, wt = values[order], weights[order]
    cw = np.cumsum(wt)
    if cw[-1] <= 0:
        return [np.nan for _ in qs]
    # midpoint interpolation of the cumulative distribution
    p = (cw - 0.5 * wt) / cw[-1]
    return [float(np.interp(q, p, v)) for q in qs]


def summarize(
    table: pd.DataFrame,
    *,
    image_area: float | None = None,
    by: str | None = "class",
    weight: str = "number",
    size_column: str = "equivalent_diameter",
) -> pd.DataFrame:
    """Summary statistics of a measurement table.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`measure` (needs ``area`` and the ``size_column``).
    image_area : float, optional
        Field-of-view area in the table's area unit. Default:
        ``table.attrs["image_area"]`` (set by :func:`measure`).
    by : str or None
        Column to group by (default ``"class"``, used when present). One row
        ``"all"`` is always added.
    weight : {"number", "area"}
        Size distribution weighted by count (default) or by object area.
    size_column : str
        The size whose D10/D50/D90 are reported.

    Returns
    -------
    pandas.DataFrame
        Indexed by group (``"all"`` first), with ``count``,
        ``number_density`` (objects per area unit, e.g. per nm^2),
        ``number_density_per_um2`` (when the unit is nm),
        ``area_fraction`` (objects' area / field of view: porosity for
        pores), ``mean_area``, ``mean_size``, ``std_size``, ``d10``, ``d50``,
        ``d90`` (of ``size_column``). ``attrs["units"]`` gives the units.
    """
    if not isinstance(table, pd.DataFrame):
        raise SEMAnalysisError("summarize expects the DataFrame returned by measure()")
    for col in ("area", size_column):
        if col not in table.columns:
            raise SEMAnalysisError(f"the table has no {col!r} column")
    if weight not in ("number", "area"):
        raise SEMAnalysisError(f"weight must be 'number' or 'area', got {weight!r}")
    if image_area is None:
        image_area = table.attrs.get("image_area")
    if image_area is not None:
        image_area = check_positive(image_area, "image_area")
    unit = table.attrs.get("unit", "px")
    groups: list[tuple[object, pd.DataFrame]] = [("all", table)]
    if by is not None and by in table.columns:
        for key, sub in table.groupby(by, sort=True):
            groups.append((key, sub))
    rows = []
    for key, sub in groups:
        size = sub[size_column].to_numpy(np.float64)
        area = sub["area"].to_numpy(np.float64)
        ok = np.isfinite(size)
        w = np.ones(ok.sum()) if weight == "number" else area[ok]
        d10, d50, d90 = _weighted_quantiles(size[ok], w, (0.1, 0.5, 0.9)) if ok.any() else (np.nan,) * 3
        row = {
            "group": key,
            "count": int(len(sub)),
            "number_density": len(sub) / image_area if image_area else np.nan,
            "area_fraction": area.sum() / image_area if image_area else np.nan,
            "mean_area": float(area.mean()) if len(sub) else np.nan,
            "mean_size": float(size[ok].mean()) if ok.any() else np.nan,
            "std_size": float(size[ok].std(ddof=1)) if ok.sum() > 1 else np.nan,
            "d10": d10,
            "d50": d50,
            "d90": d90,
        }
        if unit == "nm":
            row["number_density_per_um2"] = row["number_density"] * 1e6
        rows.append(row)
    out = pd.DataFrame(rows).set_index("group")
    out.attrs["units"] = {
        "number_density": f"1/{unit}^2",
        "number_density_per_um2": "1/um^2",
        "area_fraction": "",
        "mean_area": f"{unit}^2",
        "mean_size": unit,
        "std_size": unit,
        "d10": unit,
        "d50": unit,
        "d90": unit,
    }
    out.attrs["weight"] = weight
    out.attrs["size_column"] = size_column
    return out
