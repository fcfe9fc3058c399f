"""What a batch run writes: the locked output folder, per-image file names, encoded results and records.

Every file is written through :func:`~napari_sem_analysis.workflows.write_atomic` (a temporary file and
``os.replace``); an image's record is written last, so its presence means the image is complete.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ._validation import SEMAnalysisError
from .workflows import write_atomic

__all__ = ["make_overlay", "outline_width", "table_with_units"]


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
# one image, encoded (in the worker)
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


# --------------------------------------------------------------------------
# per-image files and records (in the calling process)
# --------------------------------------------------------------------------
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
