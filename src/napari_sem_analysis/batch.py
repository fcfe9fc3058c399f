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

The stages live beside this module: ``batch_inputs`` (files, folders, globs -> images),
``batch_outputs`` (output folder lock, names, encoded results, records), ``batch_executors``
(serial, local processes, Dask) and ``batch_report`` (``report.html``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._format import format_duration
from ._validation import SEMAnalysisError, check_positive
from .batch_executors import _run_dask, _run_processes, _run_serial, _worker_init  # noqa: F401  (re-exported)
from .batch_inputs import _dedupe_inputs, _entry_kind, collect_inputs, scan_inputs  # noqa: F401  (re-exported)
from .batch_outputs import (  # noqa: F401  (re-exported: tests and callers import them from batch)
    BatchOutputError,
    _lock_output,
    _output_names,
    _paths,
    _plain_error,
    _png_bytes,
    _read_record,
    _tiff_bytes,
    _write_result,
    make_overlay,
    outline_width,
    table_with_units,
)
from .batch_report import KEY_COLUMNS, report_figures, write_report  # noqa: F401  (re-exported)
from .io import PIXEL_SIZE_RANGE_NM, SuspectImageWarning
from .workflows import Workflow, load_recipe, write_atomic

__all__ = ["run_batch", "collect_inputs", "BatchResult", "process_image"]


# --------------------------------------------------------------------------
# one image (runs in a worker)
# --------------------------------------------------------------------------
FROM_SCALE_BAR = "from-scale-bar"  # pixel_size: read each image's own scale bar


def _scale_bar_pixel_size(path) -> float:
    """nm per pixel from the image's scale bar (and band field width); an error when not read confidently."""
    from .io import read_sem
    from .scalebar import read_scale_bar

    img = read_sem(path, crop_databar=False, scale_bar=False)
    reading = read_scale_bar(img.data)
    if not reading.confident:
        why = "; ".join(reading.notes) or "nothing read"
        raise SEMAnalysisError(
            f"{Path(path).name}: no scale bar read with confidence ({why}); give --pixel-size in nm instead"
        )
    return float(reading.pixel_size)


def process_image(recipe: dict, path: str, *, pixel_size: float | str | None = None) -> dict:
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
        if pixel_size == FROM_SCALE_BAR:
            pixel_size = _scale_bar_pixel_size(path)
        # doubts about the image (missing pixel data, a pixel size ignored) mark it suspect
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SuspectImageWarning)
            res = wf.run(path, pixel_size=pixel_size)
        doubts = [str(w.message) for w in caught if issubclass(w.category, SuspectImageWarning)]
        for w in caught:  # the rest as they would have been shown
            if not issubclass(w.category, SuspectImageWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        if doubts:
            out["suspect"] = _plain_error("; ".join(doubts))
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
# the result
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
    #: folder entries not read (symbolic links, pipes, devices...) -> why
    special: dict[str, str] = field(default_factory=dict)
    #: images read with doubts (missing pixel data, metadata ignored) -> why
    suspect: dict[str, str] = field(default_factory=dict)


def _recipe_hash(recipe: dict, pixel_size: float | None = None) -> str:
    """Identifies what a result was computed with: the recipe and a ``--pixel-size`` override."""
    if pixel_size is not None and pixel_size != FROM_SCALE_BAR:
        pixel_size = float(pixel_size)
    key: Any = recipe if pixel_size is None else {"recipe": recipe, "pixel_size": pixel_size}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


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
    pixel_size : float or "from-scale-bar", optional
        nm per pixel for every image, overriding the files' metadata; or
        ``"from-scale-bar"``: each image's own scale bar (and info band field
        width, see :func:`~napari_sem_analysis.scalebar.read_scale_bar`),
        an image whose bar is not read with confidence is an error row.
    report : bool
        Write ``report.html``.

    Returns
    -------
    BatchResult
        ``summary`` (one row per input, ``status`` ok/error), paths, and
        the names processed, skipped and failed.
    """
    plan = _plan(recipe, inputs, out_dir, jobs, pixel_size, overwrite)
    try:
        return _run_plan(
            plan, scheduler=scheduler, jobs=jobs, overwrite=overwrite, resume=resume, progress=progress, report=report
        )
    except OSError as exc:
        # a read-only or full disk, a folder removed under the run: one clear message (CLI exit code 3)
        where = getattr(exc, "filename", None) or plan.out_dir
        raise BatchOutputError(f"cannot write the results to {where}: {exc.strerror or exc}") from exc
    finally:
        plan.lock.close()


def _run_plan(
    plan: _Plan, *, scheduler, jobs: int, overwrite: bool, resume: bool, progress: bool, report: bool
) -> BatchResult:
    """:func:`run_batch` once the output folder is planned and locked."""
    done, todo = _pending(plan, overwrite, resume)
    # written once the folder is known to hold nothing of another recipe (a refused run changes nothing)
    plan.workflow.save(plan.out_dir / "recipe.yaml")
    state = _RunState(plan, done=done, skipped=list(done), bar=Progress(len(plan.files), enabled=progress))
    state.bar.done = state.bar.skipped = len(done)
    if progress and state.bar.done:
        print(f"resuming: {state.bar.done} of {len(plan.files)} images already done", file=sys.stderr)
    tasks = [(name, (plan.recipe, str(path), plan.pixel_size)) for name, path in todo]
    if tasks:
        _execute(tasks, state.on_done, scheduler, jobs)
    elif progress:
        state.bar.update(0)
    summary = _write_summary(plan, state, progress)
    return BatchResult(
        summary=summary,
        out_dir=plan.out_dir,
        report=write_report(plan.out_dir, summary, plan.workflow) if report else None,
        processed=state.processed,
        skipped=state.skipped,
        errors=state.errors,
        special=plan.special,
        suspect=state.suspect,
    )


# --------------------------------------------------------------------------
# run_batch stages
# --------------------------------------------------------------------------
@dataclass
class _Plan:
    """What a batch run works on: the checked recipe, the input files and their output names."""

    workflow: Workflow
    recipe: dict
    recipe_hash: str
    files: list[Path]
    names: list[str]
    out_dir: Path
    pixel_size: float | None
    special: dict[str, str]  # folder entries not read (links, pipes, devices) -> why
    lock: Any  # the open lock file of out_dir (closing it releases the lock)


def _plan(recipe, inputs, out_dir, jobs, pixel_size, overwrite) -> _Plan:
    """Check the recipe and the options, find the inputs, create the output folder."""
    wf = load_recipe(recipe)
    wf.validate()
    recipe_dict = wf.to_dict()
    if int(jobs) < 1:
        raise SEMAnalysisError(f"jobs must be >= 1, got {jobs}")
    if pixel_size is not None and pixel_size != FROM_SCALE_BAR:
        pixel_size = check_positive(pixel_size, "pixel_size (nm)", maximum=PIXEL_SIZE_RANGE_NM[1])
        if pixel_size < PIXEL_SIZE_RANGE_NM[0]:  # 1e308 or 1e-320 nm would fill every output with inf/0
            raise SEMAnalysisError(f"pixel_size (nm) must be at least {PIXEL_SIZE_RANGE_NM[0]:g}, got {pixel_size!r}")
    files, special = scan_inputs(inputs)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SEMAnalysisError(f"output {out_dir} exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock_output(out_dir)
    except OSError as exc:
        raise BatchOutputError(f"cannot write to the output folder {out_dir}: {exc.strerror or exc}") from exc
    plan = _Plan(
        wf,
        recipe_dict,
        _recipe_hash(recipe_dict, pixel_size),
        files,
        _output_names(files),
        out_dir,
        pixel_size,
        special,
        lock,
    )
    # the recipe used: a different recipe in an existing folder needs overwrite
    recipe_file = out_dir / "recipe.yaml"
    existing_records = list((out_dir / "records").glob("*.json")) if (out_dir / "records").is_dir() else []
    if recipe_file.exists() and existing_records and not overwrite:
        try:
            old = load_recipe(recipe_file).to_dict()
        except SEMAnalysisError:
            old = None
        if old != recipe_dict:
            lock.close()
            raise SEMAnalysisError(f"{out_dir} holds results of a different recipe; choose another folder or overwrite")
    return plan


def _pending(plan: _Plan, overwrite: bool, resume: bool) -> tuple[dict[str, dict], list[tuple[str, Path]]]:
    """``(done, todo)``: records of images finished earlier (resume) and ``(name, file)`` still to do."""
    done: dict[str, dict] = {}
    todo: list[tuple[str, Path]] = []
    for f, name in zip(plan.files, plan.names):
        rec_path = _paths(plan.out_dir, name)["record"]
        if rec_path.exists() and not overwrite:
            rec = _read_record(rec_path, plan.recipe_hash)
            if rec is None and _read_record(rec_path, None) is not None:
                raise SEMAnalysisError(
                    f"{plan.out_dir} holds results of a different recipe for {f.name} "
                    "(or ones computed with another --pixel-size); choose another folder or overwrite"
                )
            if rec is not None and resume:
                done[name] = rec
                continue
            if rec is not None and not resume:
                raise SEMAnalysisError(
                    f"{plan.out_dir} already has results for {f.name}; use overwrite=True "
                    "(--overwrite) to replace them or resume=True to keep them"
                )
        todo.append((name, f))
    return done, todo


@dataclass
class _RunState:
    """Results gathered while the images are processed (in the calling process)."""

    plan: _Plan
    done: dict[str, dict]
    skipped: list[str]
    bar: Progress
    errors: dict[str, str] = field(default_factory=dict)
    processed: list[str] = field(default_factory=list)
    failed_rows: dict[str, dict] = field(default_factory=dict)
    suspect: dict[str, str] = field(default_factory=dict)

    def on_done(self, name: str, res: dict) -> None:
        """One image finished: write its results (or remember its error) and advance the bar."""
        if res["status"] == "ok":
            self.done[name] = _write_result(self.plan.out_dir, name, res, self.plan.recipe_hash)
            self.processed.append(name)
            self.bar.update()
        else:
            error = _plain_error(res["error"])  # never file content in errors.csv or the report
            self.errors[name] = error
            self.failed_rows[name] = {"file": res["file"], "name": name, "status": "error", "error": error}
            self.bar.update(failed=True)


def _execute(tasks, on_done: Callable, scheduler, jobs: int) -> None:
    """Process the tasks here, in worker processes or on Dask (``on_done`` called here for each)."""
    func = _process_task
    if scheduler is not None:
        _run_dask(tasks, func, on_done, scheduler, jobs)
    elif jobs > 1 and len(tasks) > 1:
        _run_processes(tasks, func, on_done, min(jobs, len(tasks)))
    else:
        _run_serial(tasks, func, on_done)


def _write_summary(plan: _Plan, state: _RunState, progress: bool) -> pd.DataFrame:
    """``summary.csv`` (one row per input, in input order) and ``errors.csv``; returns the summary."""
    rows = []
    for f, name in zip(plan.files, plan.names):
        if name in state.done:
            rec = state.done[name]
            row = {"file": Path(rec["file"]).name, "name": name, "status": "ok"}
            row.update(rec.get("summary", {}))
            row["seconds"] = rec.get("seconds")
            row["error"] = ""
            if rec.get("suspect"):
                state.suspect[name] = rec["suspect"]
                row["suspect"] = rec["suspect"]
        else:
            missing = {"file": f.name, "name": name, "status": "error", "error": "not processed"}
            row = dict(state.failed_rows.get(name, missing))
            row["file"] = Path(row["file"]).name
        rows.append(row)
    summary = _order_columns(_summary_frame(rows), plan.workflow.summary)
    write_atomic(plan.out_dir / "summary.csv", summary.to_csv(index=False).encode())
    err_path = plan.out_dir / "errors.csv"
    if state.errors or plan.special:
        err = pd.DataFrame(
            [{"file": Path(state.failed_rows[n]["file"]).name, "error": e} for n, e in state.errors.items()]
            + [{"file": Path(p).name, "error": why} for p, why in plan.special.items()]
        )
        write_atomic(err_path, err.to_csv(index=False).encode())
        if progress:
            for n, e in state.errors.items():
                print(f"skipped {n}: {e}", file=sys.stderr)
    for p, why in plan.special.items():
        print(f"{p}: {why}", file=sys.stderr)
    for n, why in state.suspect.items():
        print(f"suspect {n}: {why}", file=sys.stderr)
    if not (state.errors or plan.special) and err_path.exists():
        err_path.unlink()
    return summary


def _process_task(recipe: dict, path: str, pixel_size) -> dict:
    return process_image(recipe, path, pixel_size=pixel_size)


def _summary_frame(rows: list[dict]) -> pd.DataFrame:
    """One row per image; columns whose values are all integers (counts) stay integers
    (nullable), so that failed images leave them empty instead of turning ``134`` into ``134.0``."""
    df = pd.DataFrame(rows)
    for col in df.columns:
        values = [r[col] for r in rows if r.get(col) is not None]
        values = [v for v in values if not (isinstance(v, float) and np.isnan(v))]
        if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in values):
            df[col] = pd.array(
                [int(v) if isinstance(v, (int, np.integer)) else None for v in (r.get(col) for r in rows)],
                dtype="Int64",
            )
    return df


def _order_columns(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    first = ["file", "status"] + [c for c in KEY_COLUMNS.get(kind, []) if c in df]
    last = [c for c in ("name", "seconds", "error") if c in df]
    middle = [c for c in df.columns if c not in first and c not in last]
    return df[first + middle + last]
