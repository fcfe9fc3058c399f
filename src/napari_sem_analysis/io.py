"""Reading SEM images with their physical pixel size, and pairing image files.

All reading of image files lives here. :func:`read_sem` reads TIFF (FEI/Thermo Fisher, Zeiss, TESCAN, JEOL and
Hitachi, ImageJ or plain), PNG, JPEG and BMP files. It returns the image as
a 2-D array, the pixel size in nanometres from the instrument's metadata
(or a sidecar file), the instrument's information band ("data bar") cut off
the bottom, and the metadata the instrument wrote. :func:`read_image` is
its short form for the steps (2-D data and pixel size), :func:`read_pixels`
reads the stored values as they are (masks, training pairs) and
:func:`read_training_folders` pairs images with their masks by file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._validation import SEMAnalysisError, is_rgb, to_grayscale

TIFF_SUFFIXES = (".tif", ".tiff")
OTHER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SUPPORTED_SUFFIXES = TIFF_SUFFIXES + OTHER_SUFFIXES
#: the one list of image file suffixes (folders, batch inputs, training pairs)
IMAGE_SUFFIXES = SUPPORTED_SUFFIXES
_FORMAT_NAMES = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}

#: Largest image (pixels, all planes together) :func:`read_sem` decodes unless
#: told otherwise (``max_pixels=``): 2**28, e.g. 16384 x 16384 (256 MiB at 8 bit).
#: A file declares its size in a few bytes, so the size is checked before decoding.
MAX_PIXELS = 2**28
#: Most pages (planes) of a TIFF stack :func:`read_sem` reads (``max_pages=``).
MAX_PAGES = 10_000
#: Plausible pixel sizes of a micrograph in nm (1 pm .. 1 mm). A pixel size from
#: metadata outside this range is ignored with a warning; a user value is refused.
PIXEL_SIZE_RANGE_NM = (1e-3, 1e6)


class SEMReadWarning(UserWarning):
    """Something in a file was ignored or is doubtful; the image was read (the message names the file)."""


class SuspectImageWarning(SEMReadWarning):
    """The image may be wrong: pixel data missing, or a pixel size or image height in the metadata ignored."""


def _plain_reason(exc: BaseException) -> str:
    """An exception's text fit for a report: no file content (bytes literals), printable, short.

    tifffile and imagecodecs quote the first bytes of what they could not read; those bytes are the
    file's content and must not end up in errors.csv or report.html.
    """
    text = re.sub(r"""b(['"]).*?(?<!\\)\1""", "<bytes>", str(exc))
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return f"{type(exc).__name__}: {text[:160]}"


class SEMReadError(SEMAnalysisError):
    """A file could not be read as an SEM image (the message names the file)."""


@dataclass
class SEMImage:
    """An SEM image read by :func:`read_sem`.

    Attributes
    ----------
    data : ndarray
        The image, 2-D (info band removed when ``crop_databar``); 3-D
        ``(plane, row, column)`` for a stack read with ``all_planes=True``.
    pixel_size : float or None
        Nanometres per pixel, or None when unknown.
    databar : ndarray or None
        The cropped information band, or None when none was found/cropped.
    metadata : dict
        What the instrument wrote, with normalised keys where known
        (``instrument``, ``detector``, ``voltage_kv``, ``magnification``,
        ``working_distance_mm``, ``date``, ``time``, ``pixel_size_source``,
        ``databar_row``) and the raw key/values under ``raw``.
    path : Path or None
    pixel_size_source : str or None
        Where the pixel size came from: ``"metadata"`` (the file or a
        sidecar), ``"scale bar"`` (read from the image by
        :func:`~napari_sem_analysis.scalebar.read_scale_bar`), ``"user"``, or
        None when unknown.
    """

    data: np.ndarray
    pixel_size: float | None = None
    databar: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    pixel_size_source: str | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    def layer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a napari Image layer (scale, units, metadata)."""
        kwargs: dict[str, Any] = {"metadata": dict(self.metadata)}
        kwargs["metadata"]["pixel_size_nm"] = self.pixel_size
        if self.path is not None:
            kwargs["name"] = self.path.stem
        if self.pixel_size is not None:
            # a stack's plane axis has no known spacing: 1, in pixels
            lead = self.data.ndim - 2
            kwargs["scale"] = (1.0,) * lead + (self.pixel_size, self.pixel_size)
            kwargs["units"] = ("pixel",) * lead + ("nm", "nm")
        return kwargs


# the info band is found in _databar.py; pixel data are decoded in _decode.py (imported here, after the
# error types it raises)
from ._databar import detect_databar  # noqa: E402  (re-exported: sem.detect_databar, io.detect_databar)
from ._decode import (  # noqa: E402, F401  (re-exported: io._read_tiff ... stay importable)
    _apply_palette,
    _check_pixels,
    _count_ifds,
    _missing_segments,
    _palette_is_gray_ramp,
    _read_other,
    _read_tiff,
    _vendor_metadata,
)

# --------------------------------------------------------------------------
# public reader
# --------------------------------------------------------------------------


def read_sem(
    path,
    *,
    crop_databar: bool = True,
    pixel_size: float | None = None,
    grayscale: bool = True,
    all_planes: bool = False,
    max_pixels: int | None = None,
    max_pages: int | None = None,
    scale_bar: bool = True,
) -> SEMImage:
    """Read an SEM image with its pixel size and metadata.

    Parameters
    ----------
    path : str or Path
        A TIFF, PNG, JPEG or BMP file.
    crop_databar : bool
        Detect the instrument's information band at the bottom and cut it
        off (returned as ``databar``). FEI/Thermo files give the image height
        in their metadata; others are detected from the pixels.
    pixel_size : float, optional
        Pixel size in nm; overrides what the metadata says (or fills in when
        the file has none).
    grayscale : bool
        Convert colour images to 2-D (equal channels are taken as they are;
        others by luminance). With False colour images keep their channels.
    all_planes : bool
        A TIFF stack of equal grayscale planes (FIB-SEM slices, a series) is
        returned as a 3-D ``(plane, row, column)`` array, the info band found
        on the first plane cropped from every plane. With False (default)
        ``data`` is the first plane, ``metadata["n_planes"]`` says how many
        there are, and a warning names the file.
    max_pixels : int, optional
        Refuse files that declare more pixels (all planes together) than
        this, before decoding anything; default :data:`MAX_PIXELS`
        (2**28). Raise it for very large mosaics.
    max_pages : int, optional
        Most planes of a TIFF stack to read; default :data:`MAX_PAGES`.
        Only the first page is parsed unless ``all_planes``.
    scale_bar : bool
        Without a pixel size in the file, read it from the scale bar (in the
        info band or drawn on the image, see
        :func:`~napari_sem_analysis.scalebar.read_scale_bar`; used when the
        reading is confident, ``pixel_size_source="scale bar"``). With one,
        read the band's scale bar and warn when the two differ by more than
        2 %. The reading is in ``metadata["scale_bar"]``.

    Returns
    -------
    SEMImage

    Raises
    ------
    SEMReadError
        The file is missing, unreadable, corrupt, not an image or larger
        than ``max_pixels``; the message names the file.

    Warns
    -----
    UserWarning
        Metadata fields that could not be read (dropped, the image kept), a
        pixel size outside :data:`PIXEL_SIZE_RANGE_NM` (ignored), an image
        height in the metadata that does not fit the image (ignored), and
        missing or truncated strips (``metadata["missing_strips"]``: the
        image has blank rows). Each is also listed in
        ``metadata["read_warnings"]``.
    """
    import warnings

    path, suffix, pixel_size = _checked_read_args(path, pixel_size, max_pixels, max_pages)
    data, meta = _decode_file(path, suffix, all_planes=all_planes, max_pixels=max_pixels, max_pages=max_pages)
    read = _Read(path, data, dict(meta))
    _plane_and_channels(read, all_planes=all_planes, grayscale=grayscale)
    read.meta.setdefault("instrument", "unknown")
    full = read.data[0] if read.stack else read.data  # the first plane before the band is cut
    databar = _crop_info_band(read) if crop_databar and (read.data.ndim == 2 or read.stack) else None
    found, origin = _pixel_size_of(read, full, pixel_size, scale_bar=scale_bar)
    if read.notes:
        read.meta["read_warnings"] = [text for text, _ in read.notes]
        for text, category in read.notes:
            warnings.warn(text, category, stacklevel=2)
    return SEMImage(
        data=np.ascontiguousarray(read.data),
        pixel_size=float(found) if found else None,
        databar=databar,
        metadata=read.meta,
        path=path,
        pixel_size_source=origin,
    )


# --------------------------------------------------------------------------
# read_sem stages
# --------------------------------------------------------------------------


@dataclass
class _Read:
    """An image being read by :func:`read_sem`: its pixels, its metadata and the doubts noted so far."""

    path: Path
    data: np.ndarray
    meta: dict[str, Any]
    #: (message, warning class), warned in this order once the image is read
    notes: list[tuple[str, type]] = field(default_factory=list)
    stack: bool = False  # data is a (plane, row, column) stack


def _checked_read_args(path, pixel_size, max_pixels, max_pages) -> tuple[Path, str, float | None]:
    """``(path, suffix, pixel_size)`` once the file and the options are known to be fit to read."""
    path = Path(path)
    if not path.exists():
        raise SEMReadError(f"{path}: no such file")
    if path.is_dir():
        raise SEMReadError(f"{path}: is a folder, not an image file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SEMReadError(
            f"{path.name}: unsupported file type {suffix or '(none)'}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    for value, name in ((max_pixels, "max_pixels"), (max_pages, "max_pages")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
            raise SEMAnalysisError(f"{name} must be a positive integer, got {value!r}")
    if pixel_size is not None:
        try:
            pixel_size = float(pixel_size)
        except (TypeError, ValueError):
            raise SEMAnalysisError(f"pixel_size must be a number in nm, got {pixel_size!r}") from None
        lo, hi = PIXEL_SIZE_RANGE_NM
        if not np.isfinite(pixel_size) or not lo <= pixel_size <= hi:
            raise SEMAnalysisError(f"pixel_size must be between {lo:g} and {hi:g} nm, got {pixel_size!r}")
    return path, suffix, pixel_size


def _decode_file(path: Path, suffix: str, *, all_planes: bool, max_pixels, max_pages) -> tuple[np.ndarray, dict]:
    """The stored pixels and metadata; any failure of the decoders becomes one :class:`SEMReadError`."""
    try:
        if suffix in TIFF_SUFFIXES:
            data, meta = _read_tiff(path, all_pages=all_planes, max_pixels=max_pixels, max_pages=max_pages)
        else:
            data, meta = _read_other(path, max_pixels=max_pixels)
    except SEMReadError:
        raise
    except Exception as exc:  # tifffile/imagecodecs raise many types
        raise SEMReadError(
            f"{path.name}: cannot be read as an image, the file is corrupt, truncated or not "
            f"a {_FORMAT_NAMES.get(suffix, suffix)} file ({_plain_reason(exc)})"
        ) from exc
    data = np.asarray(data)
    if data.size == 0 or data.ndim < 2:
        raise SEMReadError(f"{path.name}: contains no 2-D image data (shape {data.shape})")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating) or data.dtype == bool):
        raise SEMReadError(f"{path.name}: unsupported pixel type {data.dtype} (need integer or float pixels)")
    return data, meta


def _plane_and_channels(read: _Read, *, all_planes: bool, grayscale: bool) -> None:
    """Note what the decoder dropped; keep the first plane (or the stack) and make colour grey."""
    import warnings

    path, meta = read.path, read.meta
    ignored = meta.pop("_ignored", None)
    if ignored:
        read.notes.append((f"{path.name}: unreadable metadata ignored: {', '.join(ignored)}", SEMReadWarning))
    if meta.get("missing_strips"):
        read.notes.append(
            (
                f"{path.name}: {meta['missing_strips']} strips/tiles of pixel data are missing or truncated; "
                "the image has blank regions",
                SuspectImageWarning,
            )
        )
    data = read.data
    n_planes = int(meta.get("n_planes", 1))
    read.stack = all_planes and n_planes > 1 and data.ndim == 3
    if n_planes > 1 and not read.stack:
        count = meta.pop("n_planes_note", None) or n_planes
        warnings.warn(
            f"{path.name} holds {count} images; read the first (all_planes=True reads the stack)",
            stacklevel=3,  # the caller of read_sem
        )
    if data.ndim == 3 and not is_rgb(data) and not read.stack:
        data = data[0]  # several samples per pixel that are no colour: the first
    if grayscale and is_rgb(data):
        if data.shape[-1] == 4:
            data = data[..., :3]
        data = to_grayscale(data)
    if data.dtype == bool:
        data = data.astype(np.uint8) * 255
    read.data = data


def _crop_info_band(read: _Read) -> np.ndarray | None:
    """Cut the info band off ``read.data`` (every plane of a stack); returns the band, or None."""
    first = read.data[0] if read.stack else read.data
    row = None
    rows = read.meta.get("image_rows")
    # the image height from the metadata is trusted only where the band below it is a plausible
    # info band (at most 40 % of the height); ResolutionY=1 must not cut the image to one row
    if isinstance(rows, int) and 0.6 * first.shape[0] <= rows < first.shape[0]:
        row = rows
    else:
        if isinstance(rows, int) and rows != first.shape[0]:
            read.notes.append(
                (
                    f"{read.path.name}: the metadata's image height ({rows} rows) does not fit the image "
                    f"({first.shape[0]} rows); ignored, the info band is detected from the pixels",
                    SuspectImageWarning,
                )
            )
        row = detect_databar(first)
    if row is None:
        return None
    databar = first[row:].copy()
    read.data = read.data[..., :row, :]
    read.meta["databar_row"] = int(row)
    return databar


def _pixel_size_of(read: _Read, full: np.ndarray, pixel_size: float | None, *, scale_bar: bool):
    """``(pixel size or None, where it came from)``: the user's, else the metadata's or the scale bar's.

    ``full`` is the (first) plane with its info band, where the scale bar is read. Sets
    ``metadata["pixel_size_source"]`` (and ``scale_bar``, ``pixel_size_ignored``).
    """
    meta = read.meta
    found = meta.pop("pixel_size_nm", None)
    lo, hi = PIXEL_SIZE_RANGE_NM
    if found is not None and not (isinstance(found, float) and lo <= found <= hi):
        read.notes.append(
            (
                f"{read.path.name}: the metadata's pixel size ({found!r} nm) is outside the plausible range "
                f"{lo:g}..{hi:g} nm; ignored",
                SuspectImageWarning,
            )
        )
        meta["pixel_size_ignored"] = repr(found)
        found = None
    source = meta.get("instrument") if found else None
    origin = "metadata" if found else None
    if scale_bar and pixel_size is None:
        from .scalebar import pixel_size_for_read

        from_bar, reading = pixel_size_for_read(full, found, name=read.path.name)
        if reading is not None and reading.pixel_size is not None:
            meta["scale_bar"] = reading.as_dict()
        if from_bar is not None:
            found, source, origin = from_bar, "scale bar", "scale bar"
    if pixel_size is not None:
        found, source, origin = pixel_size, "user", "user"
    meta["pixel_size_source"] = source
    return found, origin


# --------------------------------------------------------------------------
# short forms and file pairing
# --------------------------------------------------------------------------


def read_image(path, *, pixel_size: float | None = None) -> tuple[np.ndarray, float | None]:
    """Read an image file as ``(data_2d, pixel_size_nm_or_None)``.

    Uses :func:`read_sem` (pixel size from the file's metadata, instrument
    info band cropped).

    Parameters
    ----------
    path : str or Path
        An image file (see :data:`SUPPORTED_SUFFIXES`).
    pixel_size : float, optional
        Pixel size in nm; overrides the metadata.

    Returns
    -------
    data : ndarray
        The grayscale image.
    pixel_size : float or None
        nm per pixel, None when unknown.

    Raises
    ------
    SEMAnalysisError
        The file is missing or unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise SEMAnalysisError(f"{path} does not exist or is not a file")
    try:
        kwargs = {} if pixel_size is None else {"pixel_size": pixel_size}
        img = read_sem(path, **kwargs)
    except SEMAnalysisError:
        raise
    except Exception as exc:  # corrupt/unsupported files
        raise SEMAnalysisError(f"cannot read {path.name}: {_plain_reason(exc)}") from exc
    data = to_grayscale(np.asarray(img.data))
    px = img.pixel_size if pixel_size is None else float(pixel_size)
    return data, (None if px is None else float(px))


def read_pixels(path) -> np.ndarray:
    """The stored pixel values of an image file as a grayscale array.

    Unlike :func:`read_sem` nothing is cropped and palettes are not applied,
    so that a mask keeps its class ids and an image keeps the shape of its
    mask (training pairs).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ndarray
    """
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        arr = tifffile.imread(path)
    else:
        import imageio.v3 as iio

        arr = iio.imread(path)
    return to_grayscale(np.asarray(arr))


def find_mask(mask_dir: Path, stem: str) -> Path | None:
    """The mask file of the image called ``stem`` in ``mask_dir`` (or None).

    A mask matches ``X.tif`` when it is called ``X.*``, ``X_m.*``,
    ``X_mask.*``, ``X_MASK*`` or ``X_label*`` (first match in that order).
    """
    for pattern in (f"{stem}.*", f"{stem}_m.*", f"{stem}_mask.*", f"{stem}_MASK*", f"{stem}_label*"):
        hits = sorted(p for p in Path(mask_dir).glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES)
        if hits:
            return hits[0]
    return None


def read_training_folders(image_dir, mask_dir) -> tuple[list, list, list]:
    """Pairs of (image, mask, name) from two folders, matched by file name.

    Parameters
    ----------
    image_dir, mask_dir : str or Path
        Folders of images and of their masks (see :func:`find_mask`). Masks
        whose values are not 0..63 (e.g. 0/255) are mapped to class ids in
        order of their values.

    Returns
    -------
    images : list of ndarray
    masks : list of int32 ndarray
    names : list of str
        File names of the images.
    """
    image_dir, mask_dir = Path(image_dir), Path(mask_dir)
    if not image_dir.is_dir():
        raise SEMAnalysisError(f"images folder {image_dir} does not exist")
    if not mask_dir.is_dir():
        raise SEMAnalysisError(f"masks folder {mask_dir} does not exist")
    images, masks, names = [], [], []
    for p in sorted(image_dir.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or (image_dir == mask_dir and "_m" in p.stem.lower()):
            continue
        m = find_mask(mask_dir, p.stem) if image_dir != mask_dir else None
        if m is None or m == p:
            continue
        img = read_pixels(p)
        msk = np.asarray(read_pixels(m))
        if msk.shape != img.shape:
            raise SEMAnalysisError(f"{m.name} has shape {msk.shape} but {p.name} has shape {img.shape}")
        images.append(img)
        masks.append(msk)
        names.append(p.name)
    if not images:
        raise SEMAnalysisError(f"no image/mask pairs found in {image_dir} and {mask_dir}")
    values = np.unique(np.concatenate([np.unique(m) for m in masks]))
    if values.max() >= 64:  # e.g. 0/255 masks: values in order -> class ids
        masks = [np.searchsorted(values, m).astype(np.int32) for m in masks]
    else:
        masks = [m.astype(np.int32) for m in masks]
    return images, masks, names
