"""Recipe summaries: the per-object table and per-image figures of a workflow's result.

A summary is a function ``f(result, **options) -> (table, summary_dict)``
registered under a name with :func:`register_summary` (``objects``,
``particles``, ``porosity``, ``phases``, ``tiles``, ``coating`` ship with
the package); a recipe names its summary, or gets the one of its last step
(registry field ``summary``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .._validation import SEMAnalysisError
from .model_steps import TileClasses

if TYPE_CHECKING:
    from .recipes import WorkflowResult

_SUMMARIES: dict[str, Callable] = {}


def register_summary(name: str, function: Callable | None = None):
    """Register a summary function ``f(context) -> (table, summary_dict)``.

    ``context`` is a :class:`WorkflowResult` whose ``labels``, ``image``,
    ``pixel_size`` and ``outputs`` are filled in; the function returns the
    per-object table (a DataFrame) and a flat dict of per-image figures.
    """

    def deco(func: Callable) -> Callable:
        _SUMMARIES[name] = func
        return func

    if function is not None:
        return deco(function)
    return deco


def summary_function(name: str) -> Callable:
    try:
        return _SUMMARIES[name]
    except KeyError:
        raise SEMAnalysisError(f"unknown summary {name!r}; known: {', '.join(sorted(_SUMMARIES))}") from None


def _result_table(result: WorkflowResult) -> pd.DataFrame:
    """The recipe's own measurements of the labels, else :func:`measure` with its defaults."""
    if result.object_table is not None:
        return result.object_table
    return _object_table(result.labels, result.image, result.pixel_size)


def _object_table(labels, image, pixel_size) -> pd.DataFrame:
    """Per-object table from :func:`napari_sem_analysis.measure` (basic table if unavailable)."""
    try:
        from ..measurement import measure
    except ImportError:
        measure = None
    if measure is not None:
        return measure(labels, image=image, pixel_size=pixel_size)
    from skimage.measure import regionprops_table  # pragma: no cover

    t = pd.DataFrame(regionprops_table(labels, properties=("label", "area", "centroid")))
    t["equivalent_diameter"] = 2 * np.sqrt(t["area"] / np.pi)
    if pixel_size:
        t["equivalent_diameter_nm"] = t["equivalent_diameter"] * pixel_size
    return t


def object_sizes(labels: np.ndarray) -> np.ndarray:
    """Pixel areas of the labels (object order = sorted label ids)."""
    counts = np.bincount(labels.ravel())
    return counts[1:][counts[1:] > 0]


def _size_summary(labels, pixel_size, prefix="") -> dict:
    areas = object_sizes(labels).astype(float)
    d_px = 2 * np.sqrt(areas / np.pi)
    unit = "nm" if pixel_size else "px"
    d = d_px * (pixel_size or 1.0)
    out = {f"{prefix}count": int(areas.size)}
    if areas.size:
        out[f"median_equivalent_diameter_{unit}"] = float(np.median(d))
        out[f"mean_equivalent_diameter_{unit}"] = float(np.mean(d))
        out[f"d10_{unit}"] = float(np.percentile(d, 10))
        out[f"d90_{unit}"] = float(np.percentile(d, 90))
    else:
        for key in ("median_equivalent_diameter", "mean_equivalent_diameter", "d10", "d90"):
            out[f"{key}_{unit}"] = float("nan")
    out["area_fraction"] = float((labels > 0).mean())
    out["pixel_size_nm"] = float(pixel_size) if pixel_size else float("nan")
    return out


@register_summary("objects")
def summarize_objects(result: WorkflowResult, **_):
    """Generic summary: per-object measurements, count and size distribution."""
    if result.labels is None:
        return pd.DataFrame(), {}
    table = _result_table(result)
    summary = _size_summary(result.labels, result.pixel_size)
    classes = result.outputs.get("classes")
    if isinstance(classes, pd.Series) and "label" in table:  # a classify_objects step named "classes"
        table = table.copy()
        table["class"] = table["label"].map(classes).astype(str)
        counts = table["class"].value_counts()
        names = [str(c) for c in classes.attrs.get("class_names", [])]
        for name in [*names, *(c for c in counts.index if c not in names)]:
            summary[f"count_{name}"] = int(counts.get(name, 0))
    return table, summary


@register_summary("particles")
def summarize_particles(result: WorkflowResult, **_):
    """Particle analysis: count and equivalent-diameter distribution (nm)."""
    return summarize_objects(result)


@register_summary("porosity")
def summarize_porosity(result: WorkflowResult, *, round_circularity: float = 0.7, **_):
    """Porosity %, pore size distribution and pore classes.

    Pore classes come from an ``ObjectClassifier`` step output named
    ``classes`` when the recipe has one; otherwise pores are split by shape
    into ``round`` (circularity >= ``round_circularity``, typical of gas
    pores) and ``irregular`` (lack-of-fusion-like) pores.
    """
    labels = result.labels
    if labels is None:
        return pd.DataFrame(), {}
    table = _result_table(result)
    summary = _size_summary(labels, result.pixel_size)
    summary["pore_count"] = summary.pop("count")
    summary["porosity_percent"] = 100.0 * summary.pop("area_fraction")
    classes = result.outputs.get("classes")
    all_classes: list[str] = []
    if isinstance(classes, pd.Series) and "label" in table:  # from classify_objects: by label
        cls = table["label"].map(classes).astype(str)
        all_classes = [str(c) for c in classes.attrs.get("class_names", [])]
    elif classes is not None and len(classes) == len(table):
        cls = pd.Series(np.asarray(classes), index=table.index).astype(str)
    else:
        all_classes = ["round", "irregular"]
        from skimage.measure import regionprops

        circ = {}
        for rp in regionprops(labels):
            per = rp.perimeter
            circ[rp.label] = 4 * np.pi * rp.area / per**2 if per > 0 else 1.0
        label_col = table["label"] if "label" in table else pd.Series(sorted(circ), index=table.index)
        c = label_col.map(circ).astype(float).clip(upper=1.0)
        table["circularity_shape"] = c
        cls = pd.Series(np.where(c >= round_circularity, "round", "irregular"), index=table.index)
    table["pore_class"] = cls
    counts = cls.value_counts()
    # every known class gets its count, 0 included, so that images without a class have no gap
    for name in [*all_classes, *(c for c in counts.index if c not in all_classes)]:
        summary[f"pores_{name}"] = int(counts.get(name, 0))
    return table, summary


@register_summary("phases")
def summarize_phases(result: WorkflowResult, *, class_names: Sequence[str] | None = None, **_):
    """Area fraction of each phase of a class map (labels 1..N)."""
    labels = result.labels
    if labels is None:
        return pd.DataFrame(), {}
    n = int(labels.max())
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    total = labels.size
    names = list(class_names or [])
    rows = []
    summary: dict[str, Any] = {"phases": n}
    for k in range(1, n + 1):
        name = names[k - 1] if k - 1 < len(names) else f"phase_{k}"
        frac = counts[k] / total
        row = {"phase": k, "name": name, "pixels": int(counts[k]), "area_fraction": float(frac)}
        if result.pixel_size:
            row["area_um2"] = counts[k] * (result.pixel_size / 1000.0) ** 2
        rows.append(row)
        summary[f"{name}_fraction"] = float(frac)
    summary["pixel_size_nm"] = float(result.pixel_size) if result.pixel_size else float("nan")
    return pd.DataFrame(rows), summary


@register_summary("tiles")
def summarize_tiles(result: WorkflowResult, **_):
    """Tile classes (``classify_tiles`` step): tiles per class and their fraction of all tiles."""
    found = [v for v in result.outputs.values() if isinstance(v, TileClasses)]
    if not found:
        raise SEMAnalysisError("the tiles summary needs a 'classify_tiles' step")
    tc = found[-1]
    table = tc.table.reset_index(drop=True)
    counts = table["class"].value_counts()
    n = len(table)
    summary: dict[str, Any] = {"tiles": int(n)}
    for name in tc.class_names:
        summary[f"tiles_{name}"] = int(counts.get(name, 0))
    for name in tc.class_names:
        summary[f"{name}_fraction"] = float(counts.get(name, 0) / n) if n else float("nan")
    summary["pixel_size_nm"] = float(result.pixel_size) if result.pixel_size else float("nan")
    return table, summary


@register_summary("fibers")
def summarize_fibers(result: WorkflowResult, **_):
    """Fibre mats: one row per fibre segment; diameter, alignment, junction and bead figures.

    Reads the ``measure_fibers`` output (a ``FiberResult``) of the recipe;
    lengths in nm when the pixel size is known.
    """
    fib = next((v for v in reversed(list(result.outputs.values())) if hasattr(v, "flat_summary")), None)
    if fib is None:
        return pd.DataFrame(), {}
    return fib.segments.copy(), fib.flat_summary()


@register_summary("coating")
def summarize_coating(result: WorkflowResult, **_):
    """Coating cross-section figures from the ``coating_layers`` step."""
    from ..coating import CoatingResult

    found = [v for v in result.outputs.values() if isinstance(v, CoatingResult)]
    if not found:
        raise SEMAnalysisError("the coating summary needs a 'coating_layers' step")
    cr = found[-1]
    result.extra_tables["profile"] = cr.profile
    return cr.cracks, dict(cr.summary)
