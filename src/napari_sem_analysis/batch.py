"""Batch processing of folders of micrographs with a recipe, and an HTML report.

:func:`run_batch` applies a workflow recipe (a preset name or a recipe file)
to many images, serially, on local processes (``jobs=N``) or on a Dask
distributed cluster (``scheduler="local"`` or a scheduler address). For each
image it writes, under ``out_dir``::

    labels/<name>_labels.tif     the label image / class map (zlib TIFF)
    tables/<name>.csv            the per-object table
    tables/<name>_profile.csv    extra tables (e.g. the coating thickness profile)
    overlays/<name>.png          the outlines or classes over the image
    records/<name>.json          per-image summary; written last = image done

and at the end ``summary.csv`` (one row per input image), ``errors.csv``
(when some failed), ``recipe.yaml`` (the recipe used) and ``report.html``
(plots embedded as PNGs).

Every file is written through a temporary file and ``os.replace``, so an
interrupted run leaves no half-written results; the next run with
``resume=True`` (default) skips the images whose record exists. Existing
results are replaced only with ``overwrite=True``. Unreadable or corrupt
images are reported (``status == "error"``) and skipped while the others
complete. Workers compute; the calling process writes, so with a
distributed cluster only the input paths must be readable by the workers.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import html
import io
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from ._format import format_duration
from ._validation import SEMAnalysisError, check_positive
from .workflows import Workflow, load_recipe, write_atomic

__all__ = ["run_batch", "collect_inputs", "BatchResult", "process_image"]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")

# the figures shown first in the summary and plotted per image, per summary kind
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


# --------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------
def collect_inputs(inputs: str | os.PathLike | Iterable) -> list[Path]:
    """Expand files, folders (their image files) and glob patterns into a sorted file list."""
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
            )
            files.extend(found)
        elif p.is_file():
            files.append(p)
        elif any(ch in str(item) for ch in "*?["):
            files.extend(sorted(Path(f) for f in glob.glob(str(item)) if Path(f).is_file()))
        else:
            raise SEMAnalysisError(f"input {item} does not exist")
    seen, out = set(), []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append(f)
    if not out:
        hint = ""
        subdirs = sorted(
            d.name for item in inputs if Path(item).is_dir() for d in Path(item).iterdir() if d.is_dir()
        )
        if subdirs:
            hint = f" (folders are not searched recursively; subfolders: {', '.join(subdirs[:8])})"
        raise SEMAnalysisError(
            f"no image files ({' '.join(IMAGE_SUFFIXES)}) found in the inputs{hint}"
        )
    return out


def _output_names(files: Sequence[Path]) -> list[str]:
    """A unique, file-system-safe output name per input (stem, parent added on clashes)."""
    stems = [f.stem for f in files]
    names = []
    for f, s in zip(files, stems):
        name = s if stems.count(s) == 1 else f"{f.parent.name}_{s}"
        names.append("".join(c if c.isalnum() or c in "-_.#" else "_" for c in name))
    # still clashing (same parent names): add a counter
    seen: dict[str, int] = {}
    unique = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        unique.append(n if k == 0 else f"{n}_{k}")
    return unique


# --------------------------------------------------------------------------
# one image (runs in a worker)
# --------------------------------------------------------------------------
def _to_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(img, [0.5, 99.5])
    if hi <= lo:
        hi = lo + 1
    return (np.clip((img - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def outline_width(shape) -> int:
    """Outline width (px) of the overlay PNGs: 1 px up to 512 px images, then about 1 px per 500 px (max 6)."""
    return int(min(6, max(1, round(max(shape[-2:]) / 500))))


def make_overlay(image: np.ndarray, labels: np.ndarray | None, *, classes: bool = False) -> np.ndarray:
    """RGB uint8 picture of the image with object outlines (or classes) on top."""
    gray = _to_uint8(image)
    rgb = np.stack([gray] * 3, axis=-1)
    if labels is None or not labels.any():
        return rgb
    if classes:
        from skimage.color import label2rgb

        over = label2rgb(labels, image=gray, alpha=0.35, bg_label=0, image_alpha=1.0)
        return (np.clip(over, 0, 1) * 255).astype(np.uint8)
    from skimage.segmentation import find_boundaries

    edges = find_boundaries(labels, mode="inner")
    width = outline_width(labels.shape)
    if width > 1:  # outlines that stay visible at full size: thicker on larger images, inside each object
        import cv2

        k = 2 * width - 1  # the inner 1 px outline grown by width - 1 px: width px inside the object
        grown = cv2.dilate(edges.view(np.uint8), np.ones((k, k), np.uint8)).astype(bool)
        edges = grown & (labels > 0)
    rng = np.random.default_rng(1)
    colours = rng.integers(80, 256, size=(int(labels.max()) + 1, 3)).astype(np.uint8)
    colours[:, 1] = 255 - colours[:, 1] // 3  # keep outlines bright
    rgb[edges] = colours[labels[edges]]
    return rgb


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def _tiff_bytes(labels: np.ndarray, pixel_size: float | None) -> bytes:
    import tifffile

    lab = np.asarray(labels)
    lab = lab.astype(np.uint16) if lab.max(initial=0) < 65536 else lab.astype(np.int32)
    buf = io.BytesIO()
    meta = {"pixel_size_nm": pixel_size} if pixel_size else {}
    kwargs = {}
    if pixel_size:  # pixels per cm in the standard resolution tags: read_sem, Fiji and others read them
        kwargs = {"resolution": (1e7 / pixel_size, 1e7 / pixel_size), "resolutionunit": "CENTIMETER"}
    tifffile.imwrite(buf, lab, compression="zlib", metadata=meta, **kwargs)
    return buf.getvalue()


def _unit_suffix(unit: str) -> str:
    u = str(unit).strip().replace("^2", "2").replace("²", "2").replace("µ", "u")
    return "".join(c if c.isalnum() else "_" for c in u)


def table_with_units(table: pd.DataFrame) -> pd.DataFrame:
    """Columns renamed with their unit as in ``summary.csv`` (``area_nm2``, ``equivalent_diameter_nm``).

    Units come from ``table.attrs["units"]`` (set by :func:`measure`); columns
    without a physical unit (counts, ratios, grey values) and columns whose name
    already ends in their unit keep their names.
    """
    units = dict(table.attrs.get("units") or {})
    rename = {}
    for col in table.columns:
        unit = units.get(col)
        if not unit or unit in ("grey value", "1", "-"):
            continue
        suffix = _unit_suffix(unit)
        if suffix and not str(col).endswith(f"_{suffix}"):
            rename[col] = f"{col}_{suffix}"
    return table.rename(columns=rename)


def process_image(recipe: dict, path: str, *, pixel_size: float | None = None) -> dict:
    """Run ``recipe`` on the image at ``path``; return the results as plain data.

    Never raises for a bad image: the error goes into ``result["error"]``.
    This is the function that local processes and Dask workers run.
    """
    import logging

    t0 = time.perf_counter()
    out: dict[str, Any] = {"file": str(path), "status": "ok", "error": ""}
    # tifffile logs every bad tag of a corrupt file; the error is reported in the summary instead
    tiff_log = logging.getLogger("tifffile")
    level = tiff_log.level
    tiff_log.setLevel(logging.CRITICAL)
    try:
        wf = Workflow.from_dict(recipe)
        res = wf.run(path, pixel_size=pixel_size)
        classes = wf.summary in ("coating", "phases", "tiles")
        out["summary"] = {k: _plain(v) for k, v in res.summary.items()}
        out["table"] = table_with_units(res.table)
        out["extra_tables"] = dict(res.extra_tables)
        out["pixel_size"] = res.pixel_size
        if res.labels is not None:
            out["labels_tif"] = _tiff_bytes(res.labels, res.pixel_size)
            out["overlay_png"] = _png_bytes(make_overlay(res.image, res.labels, classes=classes))
        else:
            out["overlay_png"] = _png_bytes(make_overlay(res.image, None))
    except KeyboardInterrupt:
        raise
    except SEMAnalysisError as exc:
        out.update(status="error", error=str(exc))
    except Exception as exc:  # keep going: report, skip the file
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        out.update(status="error", error=f"{Path(path).name}: {tb}")
    finally:
        tiff_log.setLevel(level)
    out["seconds"] = time.perf_counter() - t0
    return out


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    return v


# --------------------------------------------------------------------------
# progress
# --------------------------------------------------------------------------
class Progress:
    """A text progress bar with elapsed time and ETA (to stderr)."""

    def __init__(self, total: int, *, enabled: bool = True, stream=None, width: int = 28):
        self.total = max(int(total), 0)
        self.done = 0
        self.failed = 0
        self.skipped = 0  # already done before this run (resume): not part of the rate
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self.start = time.perf_counter()

    def text(self) -> str:
        frac = self.done / self.total if self.total else 1.0
        filled = int(round(frac * self.width))
        elapsed = time.perf_counter() - self.start
        computed = self.done - self.skipped
        eta = elapsed / computed * (self.total - self.done) if computed > 0 else float("nan")
        eta_s = format_duration(eta)
        bad = f" {self.failed} failed" if self.failed else ""
        return (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
            f"{100 * frac:3.0f}% elapsed {format_duration(elapsed)} ETA {eta_s}{bad}"
        )

    def update(self, n: int = 1, *, failed: bool = False) -> None:
        self.done += n
        self.failed += int(failed)
        if self.enabled:
            end = "\n" if self.done >= self.total else ""
            print("\r" + self.text(), end=end, file=self.stream, flush=True)


# --------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------
@dataclass
class BatchResult:
    """What :func:`run_batch` returns."""

    summary: pd.DataFrame
    out_dir: Path
    report: Path | None
    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def _recipe_hash(recipe: dict, pixel_size: float | None = None) -> str:
    """Identifies what a result was computed with: the recipe and a ``--pixel-size`` override."""
    key: Any = recipe if pixel_size is None else {"recipe": recipe, "pixel_size": float(pixel_size)}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _paths(out_dir: Path, name: str) -> dict[str, Path]:
    return {
        "labels": out_dir / "labels" / f"{name}_labels.tif",
        "table": out_dir / "tables" / f"{name}.csv",
        "overlay": out_dir / "overlays" / f"{name}.png",
        "record": out_dir / "records" / f"{name}.json",
    }


def _write_result(out_dir: Path, name: str, res: dict, recipe_hash: str) -> dict:
    paths = _paths(out_dir, name)
    if "labels_tif" in res:
        write_atomic(paths["labels"], res["labels_tif"])
    table = res.get("table")
    if table is not None:
        write_atomic(paths["table"], table.to_csv(index=False).encode())
    for key, extra in (res.get("extra_tables") or {}).items():
        if isinstance(extra, pd.DataFrame):
            write_atomic(out_dir / "tables" / f"{name}_{key}.csv", extra.to_csv(index=False).encode())
    if "overlay_png" in res:
        write_atomic(paths["overlay"], res["overlay_png"])
    record = {
        "file": res["file"],
        "name": name,
        "status": "ok",
        "recipe": recipe_hash,
        "seconds": round(float(res.get("seconds", 0.0)), 3),
        "summary": res.get("summary", {}),
    }
    # the record is written last: its presence means the image is complete
    write_atomic(paths["record"], (json.dumps(record, indent=1, default=_json_default) + "\n").encode())
    return record


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(type(v).__name__)


def _read_record(path: Path, recipe_hash: str | None) -> dict | None:
    """The finished record at ``path`` (for ``recipe_hash``; any recipe if None), or None."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # unreadable record = not done
    if rec.get("status") != "ok":
        return None
    if recipe_hash is not None and rec.get("recipe") != recipe_hash:
        return None
    return rec


# --------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------
def _result_or_failure(future, args) -> dict:
    """The worker's result, or an error record when the worker itself failed (killed, lost...)."""
    try:
        return future.result()
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        return {"file": str(args[1]), "status": "error", "error": f"worker failed: {type(exc).__name__}: {exc}"}


def _run_serial(tasks, func: Callable, on_done: Callable) -> None:
    for key, args in tasks:
        on_done(key, func(*args))


def _run_processes(tasks, func: Callable, on_done: Callable, jobs: int) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(func, *args): (key, args) for key, args in tasks}
        try:
            for fut in as_completed(futures):
                key, args = futures[fut]
                on_done(key, _result_or_failure(fut, args))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _dask_client(scheduler, jobs: int):
    """(client, owned) for ``scheduler`` = "local", an address, a Client or a cluster."""
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, []
    if hasattr(scheduler, "scheduler_address") and not isinstance(scheduler, str):
        client = Client(scheduler)
        return client, [client]
    if scheduler in ("local", "", True):
        cluster = LocalCluster(
            n_workers=max(1, jobs), threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
        return client, [client, cluster]
    try:
        client = Client(str(scheduler), timeout="20s")
    except Exception as exc:
        raise SEMAnalysisError(f"cannot connect to the Dask scheduler at {scheduler}: {exc}") from exc
    return client, [client]


def _run_dask(tasks, func: Callable, on_done: Callable, scheduler, jobs: int) -> None:
    from distributed import as_completed

    client, owned = _dask_client(scheduler, jobs)
    try:
        futures = {}
        for key, args in tasks:
            # pure=False: each image is computed; retries for lost workers
            fut = client.submit(func, *args, pure=False, retries=1, key=f"sem-{key}-{time.time_ns()}")
            futures[fut] = (key, args)
        try:
            for fut in as_completed(list(futures)):
                key, args = futures[fut]
                on_done(key, _result_or_failure(fut, args))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    finally:
        for obj in owned:
            obj.close()


# --------------------------------------------------------------------------
# the batch
# --------------------------------------------------------------------------
def run_batch(
    recipe,
    inputs,
    out_dir,
    *,
    jobs: int = 1,
    scheduler=None,
    overwrite: bool = False,
    resume: bool = True,
    progress: bool = True,
    pixel_size: float | None = None,
    report: bool = True,
) -> BatchResult:
    """Run a recipe over many images; write per-image results, a summary and a report.

    Parameters
    ----------
    recipe : str, path, dict or Workflow
        Preset name (``"particles"``, ``"porosity"``, ``"coating"``,
        ``"phases"``) or recipe file.
    inputs : path, glob pattern or list of them
        Image files and/or folders (their ``.tif/.png/.jpg/.bmp`` files).
    out_dir : path
        Output folder (created).
    jobs : int
        Local worker processes (1 = in this process). With ``scheduler``,
        the number of workers of a ``"local"`` cluster.
    scheduler : None, "local", address, ``distributed.Client`` or cluster
        Run on Dask distributed: ``"local"`` starts a ``LocalCluster``; an
        address such as ``"tcp://10.0.0.5:8786"`` connects to a running
        scheduler (the workers must be able to read the input paths).
    overwrite : bool
        Recompute and replace existing results.
    resume : bool
        Skip images already finished in ``out_dir`` (with the same recipe).
        With ``resume=False`` and ``overwrite=False`` existing results are an
        error.
    progress : bool
        Show a progress bar with ETA on stderr.
    pixel_size : float, optional
        nm per pixel for every image, overriding the files' metadata.
    report : bool
        Write ``report.html``.

    Returns
    -------
    BatchResult
        ``summary`` (one row per input, ``status`` ok/error), paths, and
        the names processed, skipped and failed.
    """
    wf = load_recipe(recipe)
    wf.validate()
    recipe_dict = wf.to_dict()
    jobs = int(jobs)
    if jobs < 1:
        raise SEMAnalysisError(f"jobs must be >= 1, got {jobs}")
    if pixel_size is not None:
        pixel_size = check_positive(pixel_size, "pixel_size (nm)")
    rhash = _recipe_hash(recipe_dict, pixel_size)
    files = collect_inputs(inputs)
    names = _output_names(files)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SEMAnalysisError(f"output {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)

    # the recipe used: a different recipe in an existing folder needs overwrite
    recipe_file = out_dir / "recipe.yaml"
    existing_records = list((out_dir / "records").glob("*.json")) if (out_dir / "records").is_dir() else []
    if recipe_file.exists() and existing_records and not overwrite:
        try:
            old = load_recipe(recipe_file).to_dict()
        except SEMAnalysisError:
            old = None
        if old != recipe_dict:
            raise SEMAnalysisError(
                f"{out_dir} holds results of a different recipe; choose another folder or overwrite"
            )

    done: dict[str, dict] = {}
    todo: list[tuple[str, tuple]] = []
    for f, name in zip(files, names):
        rec_path = _paths(out_dir, name)["record"]
        if rec_path.exists() and not overwrite:
            rec = _read_record(rec_path, rhash)
            if rec is None and _read_record(rec_path, None) is not None:
                raise SEMAnalysisError(
                    f"{out_dir} holds results of a different recipe for {f.name} "
                    "(or ones computed with another --pixel-size); choose another folder or overwrite"
                )
            if rec is not None and resume:
                done[name] = rec
                continue
            if rec is not None and not resume:
                raise SEMAnalysisError(
                    f"{out_dir} already has results for {f.name}; use overwrite=True "
                    "(--overwrite) to replace them or resume=True to keep them"
                )
        todo.append((name, (recipe_dict, str(f)), ))
    # written once the folder is known to hold nothing of another recipe (a refused run changes nothing)
    wf.save(recipe_file)

    skipped = list(done)
    bar = Progress(len(files), enabled=progress)
    bar.done = bar.skipped = len(done)
    errors: dict[str, str] = {}
    processed: list[str] = []
    failed_rows: dict[str, dict] = {}
    name_of_file = {str(f): n for f, n in zip(files, names)}

    def on_done(name: str, res: dict) -> None:
        if res["status"] == "ok":
            done[name] = _write_result(out_dir, name, res, rhash)
            processed.append(name)
            bar.update()
        else:
            errors[name] = res["error"]
            failed_rows[name] = {"file": res["file"], "name": name, "status": "error", "error": res["error"]}
            bar.update(failed=True)

    tasks = [(name, (rd, path, pixel_size)) for name, (rd, path) in todo]
    func = _process_task
    if progress and bar.done:
        print(f"resuming: {bar.done} of {len(files)} images already done", file=sys.stderr)
    if tasks:
        if scheduler is not None:
            _run_dask(tasks, func, on_done, scheduler, jobs)
        elif jobs > 1 and len(tasks) > 1:
            _run_processes(tasks, func, on_done, min(jobs, len(tasks)))
        else:
            _run_serial(tasks, func, on_done)
    elif progress:
        bar.update(0)

    # summary: one row per input, in input order
    rows = []
    for f, name in zip(files, names):
        if name in done:
            rec = done[name]
            row = {"file": Path(rec["file"]).name, "name": name, "status": "ok"}
            row.update(rec.get("summary", {}))
            row["seconds"] = rec.get("seconds")
            row["error"] = ""
        else:
            row = dict(failed_rows.get(name, {"file": f.name, "name": name, "status": "error",
                                               "error": "not processed"}))
            row["file"] = Path(row["file"]).name
        rows.append(row)
    summary = _summary_frame(rows)
    summary = _order_columns(summary, wf.summary)
    write_atomic(out_dir / "summary.csv", summary.to_csv(index=False).encode())
    err_path = out_dir / "errors.csv"
    if errors:
        err = pd.DataFrame([{"file": failed_rows[n]["file"], "error": e} for n, e in errors.items()])
        write_atomic(err_path, err.to_csv(index=False).encode())
        if progress:
            for n, e in errors.items():
                print(f"skipped {n}: {e}", file=sys.stderr)
    elif err_path.exists():
        err_path.unlink()
    report_path = None
    if report:
        report_path = write_report(out_dir, summary, wf)
    return BatchResult(
        summary=summary,
        out_dir=out_dir,
        report=report_path,
        processed=processed,
        skipped=skipped,
        errors=errors,
    )


def _process_task(recipe: dict, path: str, pixel_size) -> dict:
    return process_image(recipe, path, pixel_size=pixel_size)


def _summary_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per image; columns whose values are all integers (counts) stay integers
    (nullable), so that failed images leave them empty instead of turning ``134`` into ``134.0``."""
    df = pd.DataFrame(rows)
    for col in df.columns:
        values = [r[col] for r in rows if r.get(col) is not None]
        values = [v for v in values if not (isinstance(v, float) and np.isnan(v))]
        if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                          for v in values):
            df[col] = pd.array([int(v) if isinstance(v, (int, np.integer)) else None
                                for v in (r.get(col) for r in rows)], dtype="Int64")
    return df


def _order_columns(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    first = ["file", "status"] + [c for c in KEY_COLUMNS.get(kind, []) if c in df]
    last = [c for c in ("name", "seconds", "error") if c in df]
    middle = [c for c in df.columns if c not in first and c not in last]
    return df[first + middle + last]


# --------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------
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
    from matplotlib.figure import Figure

    ok = summary[summary["status"] == "ok"] if "status" in summary else summary
    figs: list[tuple[str, Any]] = []
    labels = [str(n) for n in ok.get("name", ok.get("file", pd.Series(dtype=str)))]
    short = [n if len(n) <= 18 else n[:8] + "…" + n[-8:] for n in labels]

    # size distribution (pooled over images) from the per-object tables
    if kind in ("particles", "objects", "porosity") and len(ok):
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
        if values:
            v = np.concatenate(values)
            v = v[np.isfinite(v) & (v > 0)]
            if v.size:
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
                figs.append(("Size distribution", fig))

    # coating: coating and oxide thickness along the layer, one line per image
    if kind == "coating" and len(ok):
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
        if drawn:
            axes[0].set_title("Thickness along the layer")
            axes[1].set_xlabel("position along the layer (px)")
            if len(ok) <= 12:
                axes[0].legend(frameon=False, fontsize=6, ncol=2)
            figs.append(("Thickness along the layer", fig))

    # per-image figures
    if kind in ("phases", "tiles"):
        fr = [c for c in ok.columns if c.endswith("_fraction")]
        what = "Phase fractions" if kind == "phases" else "Tile classes"
        if fr and len(ok):
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
            figs.append((what, fig))
    else:
        cols = [c for c in KEY_COLUMNS.get(kind, []) if c in ok.columns]
        if not cols:
            cols = [c for c in ok.select_dtypes("number").columns if c not in ("seconds",)][:4]
        cols = [c for c in cols if ok[c].notna().any()][:4]
        if cols and len(ok):
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
            figs.append(("Per-image summary", fig))
    return figs


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
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
                     f"src='data:image/png;base64,{_fig_png(fig)}'>")
    if n_err:
        parts.append("<h2>Failed images</h2><ul>")
        for _, r in summary[summary["status"] != "ok"].iterrows():
            file, error = str(r["file"]), str(r.get("error", ""))
            if error.startswith(f"{file}: "):  # the reader's messages start with the file name
                error = error[len(file) + 2:]
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
