"""The batch report: ``report.html`` with the summary table and figures (self-contained, PNGs embedded)."""

from __future__ import annotations

import base64
import html
import io
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .workflows import write_atomic

if TYPE_CHECKING:
    from .workflows import Workflow

# the key per-image columns of each summary kind (first in summary.csv, plotted in the report)
KEY_COLUMNS = {
    "particles": ["count", "median_equivalent_diameter_nm", "median_equivalent_diameter_px"],
    "objects": ["count", "median_equivalent_diameter_nm", "median_equivalent_diameter_px"],
    "porosity": ["porosity_percent", "pore_count", "median_equivalent_diameter_nm"],
    "coating": [
        "oxide_thickness_median_nm",
        "oxide_thickness_median_px",
        "coating_thickness_median_nm",
        "coating_thickness_median_px",
        "crack_count",
        "oxide_fraction",
    ],
    "phases": [],
    "tiles": ["tiles"],
}


def _fig_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _floats(column: pd.Series) -> np.ndarray:
    return pd.to_numeric(column, errors="coerce").astype(float).to_numpy()


def _diameter_column(columns) -> str | None:
    cols = list(columns)
    for pref in ("equivalent_diameter_nm", "equivalent_diameter_um", "equivalent_diameter"):
        if pref in cols:
            return pref
    for c in cols:
        if "equivalent_diameter" in c:
            return c
    return None


def _bar_width(n: int) -> float:
    return float(min(max(6.4, 0.3 * n + 2), 16.0))


def _image_ticks(ax, names) -> None:
    """Image names under the bars (only when there are few enough to read)."""
    if len(names) <= 60:
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xlabel(f"image (1 to {len(names)}, in summary.csv order)")


def report_figures(out_dir: Path, summary: pd.DataFrame, kind: str) -> list[tuple[str, Any]]:
    """The report's matplotlib figures as ``(title, Figure)``."""
    ok = summary[summary["status"] == "ok"] if "status" in summary else summary
    figs: list[tuple[str, Any]] = []
    if not len(ok):
        return figs
    if kind in ("particles", "objects", "porosity"):
        figs += _size_figure(out_dir, ok)
    if kind == "coating":
        figs += _thickness_figure(out_dir, ok)
    labels = [str(n) for n in ok.get("name", ok.get("file", pd.Series(dtype=str)))]
    short = [n if len(n) <= 18 else n[:8] + "…" + n[-8:] for n in labels]
    if kind in ("phases", "tiles"):
        figs += _fraction_figure(ok, kind, short)
    else:
        figs += _per_image_figure(ok, kind, short)
    return figs


def _size_figure(out_dir: Path, ok: pd.DataFrame) -> list[tuple[str, Any]]:
    """Size distribution pooled over the images, from the per-object tables."""
    from matplotlib.figure import Figure

    values, col_used = [], None
    for name in ok["name"]:
        t = out_dir / "tables" / f"{name}.csv"
        try:
            head = pd.read_csv(t, nrows=0).columns
            col = _diameter_column(head)
            if col is None:
                continue
            col_used = col_used or col
            values.append(pd.read_csv(t, usecols=[col])[col].to_numpy(dtype=float))
        except (OSError, ValueError):
            continue
    if not values:
        return []
    v = np.concatenate(values)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return []
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    ax.hist(v, bins=min(60, max(10, int(np.sqrt(v.size)))), color="#3b7dd8", edgecolor="white")
    ax.axvline(np.median(v), color="k", ls="--", lw=1, label=f"median {np.median(v):.4g}")
    base, _, unit = col_used.rpartition("_")
    if unit in ("nm", "um", "px"):
        xlabel = f"{base.replace('_', ' ')} ({unit})"
    else:
        xlabel = col_used.replace("_", " ")
        px = ok["pixel_size_nm"] if "pixel_size_nm" in ok else pd.Series(dtype=float)
        xlabel += " (nm)" if px.notna().all() and len(px) else " (px)"
    ax.set_xlabel(xlabel)
    ax.set_ylabel("objects")
    ax.set_title(f"Size distribution ({v.size} objects, {len(values)} images)")
    ax.legend(frameon=False)
    return [("Size distribution", fig)]


def _thickness_figure(out_dir: Path, ok: pd.DataFrame) -> list[tuple[str, Any]]:
    """Coating and oxide thickness along the layer, one line per image (12 at most)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 5.2))
    axes = fig.subplots(2, 1, sharex=True)
    drawn = False
    for name in list(ok["name"])[:12]:
        try:
            prof = pd.read_csv(out_dir / "tables" / f"{name}_profile.csv")
        except (OSError, ValueError):
            continue
        for ax, what in zip(axes, ("coating_thickness_", "oxide_thickness_")):
            col = next((c for c in prof.columns if c.startswith(what)), None)
            if col is not None:
                ax.plot(prof["x"], prof[col], lw=1, label=str(name)[:20])
                ax.set_ylabel(col.replace("_", " "), fontsize=8)
                drawn = True
    if not drawn:
        return []
    axes[0].set_title("Thickness along the layer")
    axes[1].set_xlabel("position along the layer (px)")
    if len(ok) <= 12:
        axes[0].legend(frameon=False, fontsize=6, ncol=2)
    return [("Thickness along the layer", fig)]


def _fraction_figure(ok: pd.DataFrame, kind: str, short: list[str]) -> list[tuple[str, Any]]:
    """Stacked bars of the phase (or tile class) fractions of every image."""
    from matplotlib.figure import Figure

    fr = [c for c in ok.columns if c.endswith("_fraction")]
    what = "Phase fractions" if kind == "phases" else "Tile classes"
    if not fr:
        return []
    fig = Figure(figsize=(_bar_width(len(ok)), 3.6))
    ax = fig.subplots()
    bottom = np.zeros(len(ok))
    for c in fr:
        vals = _floats(ok[c])
        ax.bar(range(len(ok)), vals, bottom=bottom, label=c.replace("_fraction", ""))
        bottom += np.nan_to_num(vals)
    _image_ticks(ax, short)
    ax.set_ylabel("area fraction" if kind == "phases" else "fraction of tiles")
    ax.set_title(f"{what} per image")
    ax.legend(frameon=False, fontsize=8, ncol=len(fr))
    return [(what, fig)]


def _per_image_figure(ok: pd.DataFrame, kind: str, short: list[str]) -> list[tuple[str, Any]]:
    """Bars of the recipe's key figures (up to 4) per image, with their median."""
    from matplotlib.figure import Figure

    cols = [c for c in KEY_COLUMNS.get(kind, []) if c in ok.columns]
    if not cols:
        cols = [c for c in ok.select_dtypes("number").columns if c not in ("seconds",)][:4]
    cols = [c for c in cols if ok[c].notna().any()][:4]
    if not cols:
        return []
    fig = Figure(figsize=(_bar_width(len(ok)), 2.3 * len(cols)))
    axes = np.atleast_1d(fig.subplots(len(cols), 1, sharex=True))
    for ax, c in zip(axes, cols):
        vals = _floats(ok[c])
        ax.bar(range(len(ok)), vals, color="#d8843b")
        ax.set_ylabel(c.replace("_", " "), fontsize=8)
        med = np.nanmedian(vals) if np.isfinite(vals).any() else np.nan
        if np.isfinite(med):
            ax.axhline(med, color="k", lw=0.8, ls="--")
    _image_ticks(axes[-1], short)
    axes[0].set_title("Per-image summary")
    fig.tight_layout()
    return [("Per-image summary", fig)]


def write_report(out_dir, summary: pd.DataFrame, workflow: Workflow) -> Path:
    """Write ``report.html`` (self-contained: plots embedded as base64 PNGs)."""
    out_dir = Path(out_dir)
    figs = report_figures(out_dir, summary, workflow.summary)
    n_ok = int((summary["status"] == "ok").sum()) if "status" in summary else len(summary)
    n_err = len(summary) - n_ok
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>napari-sem-analysis report: {html.escape(workflow.name)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "th{background:#eee}.err{color:#b00}img{max-width:100%}</style></head><body>",
        f"<h1>Batch report: {html.escape(workflow.name)}</h1>",
        f"<p>{html.escape(workflow.description or '')}</p>",
        f"<p>{n_ok} images analysed, {n_err} failed. Created {time.strftime('%Y-%m-%d %H:%M:%S')}"
        f" in <code>{html.escape(str(out_dir.resolve()))}</code>.</p>",
    ]
    for title, fig in figs:
        parts.append(
            f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{_fig_png(fig)}'>"
        )
    if n_err:
        parts.append("<h2>Failed images</h2><ul>")
        for _, r in summary[summary["status"] != "ok"].iterrows():
            file, error = str(r["file"]), str(r.get("error", ""))
            if error.startswith(f"{file}: "):  # the reader's messages start with the file name
                error = error[len(file) + 2 :]
            parts.append(f"<li class='err'>{html.escape(file)}: {html.escape(error)}</li>")
        parts.append("</ul>")
    show = summary.drop(columns=[c for c in ("error",) if c in summary and not n_err])
    for c in show.columns:  # integer counts of failed images: an empty cell, not "<NA>"
        if isinstance(show[c].dtype, pd.Int64Dtype):
            show[c] = show[c].astype(object).where(show[c].notna(), "")
    parts.append("<h2>Summary per image</h2>")
    parts.append(show.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="", border=0))
    parts.append("<h2>Recipe</h2><pre>" + html.escape(workflow.to_yaml()) + "</pre>")
    parts.append("</body></html>")
    path = out_dir / "report.html"
    write_atomic(path, "\n".join(parts).encode("utf-8"))
    return path
