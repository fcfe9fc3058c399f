"""Decoding the pixel data of image files for :func:`~napari_sem_analysis.io.read_sem`.

TIFF pages (counted before any is parsed, so a huge stack costs nothing), palettes, strips or
tiles missing from a truncated file, the pixel-count limit checked before decoding, and the
other formats (PNG, JPEG, BMP) through Pillow. The limits are read from :mod:`.io` at call
time, so ``io.MAX_PIXELS`` / ``io.MAX_PAGES`` stay the one place to change them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import io as _io
from ._validation import SEMAnalysisError
from ._vendor_metadata import (
    _fei_metadata,
    _resolution_metadata,
    _sidecar_metadata,
    _tescan_metadata,
    _zeiss_metadata,
)
from .io import SEMReadError


def _palette_is_gray_ramp(data: np.ndarray, colormap: np.ndarray) -> bool:
    """True when the pixels use palette entries that are the identity gray ramp.

    Zeiss writes a gray palette with a few colour entries reserved for
    overlays; the pixel indices are then the gray values themselves.
    """
    cmap = np.asarray(colormap, dtype=np.float64)
    if cmap.ndim != 2 or cmap.shape[0] != 3:
        return False
    ramp = np.arange(cmap.shape[1]) * (65535.0 / max(cmap.shape[1] - 1, 1))
    gray = np.all(np.abs(cmap - ramp) <= 257, axis=0)
    idx = np.clip(data, 0, cmap.shape[1] - 1)
    return gray[idx].mean() >= 0.99


def _apply_palette(data: np.ndarray, colormap: np.ndarray) -> np.ndarray:
    cmap = np.asarray(colormap)
    rgb = cmap[:, np.clip(data, 0, cmap.shape[1] - 1)]
    rgb = np.moveaxis(rgb, 0, -1)
    if rgb.dtype == np.uint16 or rgb.max() > 255:
        rgb = (rgb.astype(np.uint32) >> 8).astype(np.uint8)
    return rgb.astype(np.uint8)


def _count_ifds(fh, limit: int) -> int:
    """Number of pages (IFDs) of an open TIFF, counted up to ``limit + 1`` from the IFD chain alone.

    Only the chain of IFD offsets is followed (a few bytes per page); loops stop the count.
    """
    import struct

    fh.seek(0)
    head = fh.read(16)
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None:
        return 0
    magic = struct.unpack(order + "H", head[2:4])[0]
    if magic == 43:  # BigTIFF
        fmt_off, fmt_n, n_size, entry = "Q", "Q", 8, 20
        offset = struct.unpack(order + "Q", head[8:16])[0]
    else:
        fmt_off, fmt_n, n_size, entry = "I", "H", 2, 12
        offset = struct.unpack(order + "I", head[4:8])[0]
    off_size = struct.calcsize(fmt_off)
    seen: set[int] = set()
    count = 0
    while offset and offset not in seen and count <= limit:
        seen.add(offset)
        fh.seek(offset)
        raw = fh.read(n_size)
        if len(raw) < n_size:
            break
        n = struct.unpack(order + fmt_n, raw)[0]
        count += 1
        fh.seek(offset + n_size + n * entry)
        raw = fh.read(off_size)
        if len(raw) < off_size:
            break
        offset = struct.unpack(order + fmt_off, raw)[0]
    return count


def _check_pixels(path: Path, shape, max_pixels: int, what: str = "image") -> None:
    n = 1
    for d in shape:
        n *= int(d)
    if n > max_pixels:
        dims = " x ".join(str(int(d)) for d in shape)
        raise SEMReadError(
            f"{path.name}: the {what} declares {dims} = {n:,} pixels, more than the limit of "
            f"{int(max_pixels):,} (read_sem(..., max_pixels=...) or io.MAX_PIXELS raise it)"
        )


def _missing_segments(page, file_size: int) -> tuple[int, int]:
    """(missing or truncated strips/tiles, all strips/tiles) of a page, from its offsets alone."""
    offsets = page.dataoffsets or ()
    counts = page.databytecounts or ()
    bad = sum(1 for o, c in zip(offsets, counts) if not o or not c or o + c > file_size)
    return bad, len(offsets)


def _vendor_metadata(tif, page, path: Path) -> dict[str, Any]:
    """Instrument metadata; an unreadable block is dropped with a note, never the image."""
    try:
        if tif.is_fei and tif.fei_metadata:
            return _fei_metadata(tif.fei_metadata)
        if tif.is_sem and tif.sem_metadata:
            return _zeiss_metadata(tif.sem_metadata)
        if 50431 in page.tags:  # TESCAN
            value = page.tags[50431].value
            text = value.decode("latin-1", "replace") if isinstance(value, bytes) else str(value)
            return _tescan_metadata(text)
    except Exception as exc:  # noqa: BLE001 - garbage in a metadata tag: keep the image without it
        return {"_ignored": [f"instrument metadata ({type(exc).__name__})"]}
    return {}


def _read_tiff(
    path: Path,
    all_pages: bool = False,
    *,
    max_pixels: int | None = None,
    max_pages: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    max_pixels = int(_io.MAX_PIXELS if max_pixels is None else max_pixels)
    max_pages = int(_io.MAX_PAGES if max_pages is None else max_pages)
    file_size = path.stat().st_size
    with tifffile.TiffFile(path) as tif:
        n_pages = _count_ifds(tif.filehandle, max_pages)
        if n_pages == 0:
            raise SEMReadError(f"{path.name}: holds no image (corrupt or empty TIFF file)")
        page = tif.pages[0]
        meta: dict[str, Any] = {}
        data = _first_page(path, page, file_size, max_pixels, meta)
        n_planes = _equal_planes(tif, page, data, n_pages)
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
            if not _palette_is_gray_ramp(data, page.colormap):
                data = _apply_palette(data, page.colormap)
                n_planes = 1  # colour-palette stacks: the first plane only
        if all_pages and n_planes > 1:
            data = _read_stack(
                tif, page, path, data, n_planes, file_size, meta, max_pixels=max_pixels, max_pages=max_pages
            )
            n_planes = data.shape[0]
        meta = _file_metadata(tif, page, path, meta)
        if n_planes > 1:
            meta["n_planes"] = n_planes
            if n_planes > max_pages:
                meta["n_planes_note"] = f"more than {max_pages:,}"
    return data, meta


def _first_page(path: Path, page, file_size: int, max_pixels: int, meta: dict[str, Any]) -> np.ndarray:
    """The first page's pixels (colour channels last); its declared size is checked before decoding."""
    import tifffile

    # the declared size is checked before anything is decoded (tiles are decoded whole)
    _check_pixels(path, page.shape, max_pixels)
    if page.is_tiled:
        _check_pixels(
            path,
            (page.tiledepth, page.tilelength, page.tilewidth, page.samplesperpixel),
            max_pixels,
            what="tile",
        )
    bad, total = _missing_segments(page, file_size)
    data = page.asarray()
    if bad:
        meta["missing_strips"] = f"{bad} of {total}"
    if data.ndim == 3 and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and page.samplesperpixel == data.shape[0]:
        data = np.moveaxis(data, 0, -1)  # planar colour: channels last
    return data


def _equal_planes(tif, page, data: np.ndarray, n_pages: int) -> int:
    """How many planes the file holds: ``n_pages`` when the second page is a plane like the first, else 1.

    A stack of equal grayscale planes (FIB-SEM slices, a time series): the pages after the first are
    only counted (from the IFD chain), and parsed only when the stack is read.
    """
    import tifffile

    if n_pages <= 1 or data.ndim != 2:
        return 1
    try:
        second = tif.pages[1]
    except Exception:  # noqa: BLE001 - a broken second page: the first image is still good
        return 1
    if isinstance(second, (tifffile.TiffPage, tifffile.TiffFrame)) and (
        second.shape == page.shape and second.dtype == page.dtype
    ):
        return n_pages
    return 1


def _read_stack(
    tif,
    page,
    path: Path,
    first: np.ndarray,
    n_planes: int,
    file_size: int,
    meta: dict[str, Any],
    *,
    max_pixels: int,
    max_pages: int,
) -> np.ndarray:
    """The ``(plane, row, column)`` stack: ``first`` (the pixels of ``page``) and the following planes equal to it."""
    if n_planes > max_pages:
        raise SEMReadError(
            f"{path.name}: the stack has more than {max_pages:,} planes "
            "(read_sem(..., max_pages=...) or io.MAX_PAGES raise the limit)"
        )
    _check_pixels(path, (n_planes,) + tuple(page.shape), max_pixels, what="stack")
    bad, total = _missing_segments(page, file_size)
    planes = [first]
    for i in range(1, n_planes):
        p = tif.pages[i]
        if p.shape != page.shape or p.dtype != page.dtype:
            break  # the stack ends where the planes stop being equal
        b, t = _missing_segments(p, file_size)
        bad, total = bad + b, total + t
        planes.append(p.asarray())
    if bad:
        meta["missing_strips"] = f"{bad} of {total}"
    return np.stack(planes)


def _file_metadata(tif, page, path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` with the instrument's metadata, else a sidecar file's, else the resolution tags' pixel size."""
    meta.update(_vendor_metadata(tif, page, path))
    if "pixel_size_nm" not in meta:
        try:
            side = _sidecar_metadata(path)
        except (OSError, ValueError, TypeError) as exc:  # an unreadable sidecar: ignored, noted
            side = {"_ignored": [f"sidecar file ({type(exc).__name__})"]}
        if side:
            ignored = meta.get("_ignored", []) + side.get("_ignored", [])
            meta = {**meta, **side} if meta else side
            if ignored:
                meta["_ignored"] = ignored
    if "pixel_size_nm" not in meta:
        try:
            res = _resolution_metadata(page, tif.imagej_metadata)
        except Exception as exc:  # noqa: BLE001 - garbage resolution tags: the image is kept
            res = {}
            meta.setdefault("_ignored", []).append(f"resolution tags ({type(exc).__name__})")
        if res:
            meta.update({k: v for k, v in res.items() if k not in meta or k == "pixel_size_nm"})
    desc = page.description if hasattr(page, "description") else ""
    if desc and "raw" not in meta:
        meta["description"] = desc[:2000]
    return meta


def _read_other(path: Path, *, max_pixels: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    import cv2

    max_pixels = int(_io.MAX_PIXELS if max_pixels is None else max_pixels)
    try:  # the declared size, from the header alone (Pillow opens lazily)
        from PIL import Image

        with Image.open(path) as im:
            size = im.size
    except SEMAnalysisError:
        raise
    except Exception:  # noqa: BLE001
        size = None  # OpenCV below decides whether the file is readable
    if size is not None:
        _check_pixels(path, (size[1], size[0]), max_pixels)
    buffer = np.fromfile(str(path), dtype=np.uint8)
    data = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
    if data is None:
        raise SEMReadError(f"{path.name}: not a readable image (corrupt or unsupported format)")
    if data.ndim == 3 and data.shape[-1] == 3:
        data = data[..., ::-1]
    elif data.ndim == 3 and data.shape[-1] == 4:
        data = data[..., [2, 1, 0, 3]]
    meta = _sidecar_metadata(path)
    return np.ascontiguousarray(data), meta
