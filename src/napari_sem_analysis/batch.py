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

import hashlib
import io
import json
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._format import format_duration
from ._validation import SEMAnalysisError, check_positive
from .batch_inputs import _dedupe_inputs, _entry_kind, collect_inputs, scan_inputs  # noqa: F401  (re-exported)
from .batch_report import KEY_COLUMNS, report_figures, write_report  # noqa: F401  (re-exported)
from .io import PIXEL_SIZE_RANGE_NM, SuspectImageWarning
from .workflows import Workflow, load_recipe, write_atomic

__all__ = ["run_batch", "collect_inputs", "BatchResult", "process_image"]


def _plain_error(text: str) -> str:
    """An error message fit for errors.csv and report.html: no quoted file bytes, printable, bounded."""
    import re

    text = re.sub(r"""b(['"]).*?(?<!\\)\1""", "<bytes>", str(text))
    return "".join(ch if ch.isprintable() else "?" for ch in text)[:500]


class BatchOutputError(SEMAnalysisError):
    """The output folder cannot be written (read-only, full, gone): the CLI exits with code 3."""


def _lock_output(out_dir: Path):
    """Hold an exclusive lock on ``out_dir`` for this run; a second run into it fails clearly.

    Returns the open lock file (closing it releases the lock). ``flock`` locks are released by the
    system when the process dies, so a killed run leaves no stale lock.
    """
    lock_path = out_dir / ".napari-sem-analysis.lock"
    fh = open(lock_path, "a+")  # noqa: SIM115 - held for the whole run
    busy = f"another batch run is writing to {out_dir}; wait for it to finish or choose another folder"
    try:
        import fcntl
    except ImportError:  # Windows: lock the first byte
        import msvcrt

        try:
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            fh.close()
            raise SEMAnalysisError(busy) from None
        return fh
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        raise SEMAnalysisError(busy) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def _worker_init() -> None:
    """Pool worker start-up: exit when the parent (the batch) dies, instead of running on.

    Linux: the kernel sends SIGKILL when the parent exits (``prctl(PR_SET_PDEATHSIG)``). Elsewhere,
    and as a check for a parent that died before this ran, a daemon thread polls the parent's pid.
    """
    import threading

    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent or parent == 1:
        os._exit(1)

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


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
    if res.get("suspect"):
        record["suspect"] = res["suspect"]
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
    # workers exit when this process dies (even by SIGKILL) instead of running on for minutes
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as pool:
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
        cluster = LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True, dashboard_address=None)
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
