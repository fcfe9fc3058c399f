"""Reading SEM images with their physical pixel size.

:func:`read_sem` reads TIFF (FEI/Thermo Fisher, Zeiss, TESCAN, JEOL and
Hitachi, ImageJ or plain), PNG, JPEG and BMP files. It returns the image as
a 2-D array, the pixel size in nanometres from the instrument's metadata
(or a sidecar file), the instrument's information band ("data bar") cut off
the bottom, and the metadata the instrument wrote.
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
_FORMAT_NAMES = {".tif": "TIFF", ".tiff": "TIFF", ".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}

# length units as instruments write them -> nanometres
_NM_PER = {
    "m": 1e9,
    "mm": 1e6,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "nm": 1.0,
    "pm": 1e-3,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "cm": 1e7,
    "inch": 2.54e7,
}


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


def _to_nm(value, unit: str | None) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(v) or v <= 0:
        return None
    factor = _NM_PER.get((unit or "m").strip().lower())
    if factor is None:
        return None
    return v * factor


# --------------------------------------------------------------------------
# vendor metadata
# --------------------------------------------------------------------------


def _zeiss_metadata(md: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"instrument": "Zeiss"}

    def val(key):
        item = md.get(key)
        if isinstance(item, tuple) and len(item) >= 2:
            return item[1:]
        return None

    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        v = val(key)
        if v and len(v) >= 2:
            nm = _to_nm(v[0], v[1])
            if nm:
                out["pixel_size_nm"] = nm
                break
    for norm, keys in {
        "detector": ("dp_detector_channel", "dp_implied_detector"),
        "magnification": ("ap_mag",),
        "date": ("ap_date",),
        "time": ("ap_time",),
        "serial": ("sv_serial_number",),
    }.items():
        for key in keys:
            v = val(key)
            if v:
                out[norm] = str(v[0]).strip()
                break
    v = val("ap_actualkv")
    if v:
        kv = float(v[0]) * (1e-3 if len(v) > 1 and str(v[1]).strip() == "V" else 1.0)
        out["voltage_kv"] = kv
    v = val("ap_wd")
    if v:
        out["working_distance_mm"] = (_to_nm(v[0], v[1] if len(v) > 1 else "mm") or 0) / 1e6
    out["raw"] = {
        k: " ".join(str(x) for x in item[1:]) if isinstance(item, tuple) else str(item)
        for k, item in md.items()
        if k
    }
    return out


def _fei_metadata(md: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"instrument": "FEI/Thermo Fisher"}
    scan = md.get("Scan", {}) or md.get("EScan", {})
    px = scan.get("PixelWidth")
    if px:
        out["pixel_size_nm"] = _to_nm(px, "m")
    beam = md.get("Beam", {})
    ebeam = md.get("EBeam", {})
    hv = beam.get("HV") or ebeam.get("HV")
    if hv:
        out["voltage_kv"] = float(hv) / 1e3
    det = md.get("Detectors", {})
    if det.get("Name"):
        out["detector"] = str(det["Name"])
    wd = md.get("Stage", {}).get("WorkingDistance") or ebeam.get("WD")
    if wd:
        out["working_distance_mm"] = float(wd) * 1e3
    user = md.get("User", {})
    for key in ("Date", "Time"):
        if user.get(key):
            out[key.lower()] = str(user[key])
    hfw = scan.get("HorFieldsize") or ebeam.get("HFW")
    canvas = md.get("Image", {}).get("MagCanvasRealWidth")
    if hfw and canvas:
        try:
            out["magnification"] = f"{float(canvas) / float(hfw):.0f} x"
        except (TypeError, ValueError, ZeroDivisionError):
            pass
    res_y = md.get("Image", {}).get("ResolutionY") or scan.get("ResolutionY")
    if res_y:
        try:
            out["image_rows"] = int(res_y)
        except (TypeError, ValueError):
            pass
    if md.get("System", {}).get("SystemType"):
        out["system"] = str(md["System"]["SystemType"])
    out["raw"] = {
        f"{section}.{key}": str(value)
        for section, values in md.items()
        if isinstance(values, dict)
        for key, value in values.items()
    }
    return out


def _parse_ini(text: str) -> dict[str, str]:
    """Parse ``key=value`` (or JEOL ``$KEY value``) lines into a flat dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip().strip("\x00")
        if not line or line.startswith(("[", "#", ";")):
            continue
        if "=" in line:
            key, _, value = line.partition("=")
        elif line.startswith("$"):
            key, _, value = line.lstrip("$").partition(" ")
        else:
            continue
        out[key.strip()] = value.strip()
    return out


def _tescan_metadata(text: str) -> dict[str, Any]:
    kv = _parse_ini(text)
    out: dict[str, Any] = {"instrument": "TESCAN", "raw": kv}
    if "PixelSizeX" in kv:
        out["pixel_size_nm"] = _to_nm(kv["PixelSizeX"], "m")
    if kv.get("HV"):
        out["voltage_kv"] = float(kv["HV"]) / 1e3
    if kv.get("WD"):
        out["working_distance_mm"] = float(kv["WD"]) * 1e3
    for norm, key in (("detector", "Detector"), ("magnification", "Magnification"), ("date", "Date"), ("time", "Time")):
        if kv.get(key):
            out[norm] = kv[key]
    return out


def _jeol_metadata(text: str) -> dict[str, Any]:
    kv = _parse_ini(text)
    out: dict[str, Any] = {"instrument": "JEOL", "raw": kv}
    # pixel size = scale-marker length / scale-bar length in pixels
    bar = kv.get("$SM_MICRON_BAR") or kv.get("SM_MICRON_BAR")
    marker = kv.get("$SM_MICRON_MARKER") or kv.get("SM_MICRON_MARKER")
    if bar and marker:
        m = re.match(r"\s*([\d.]+)\s*([a-zA-Zµμ]+)", marker)
        if m:
            length = _to_nm(m.group(1), m.group(2))
            if length and float(bar) > 0:
                out["pixel_size_nm"] = length / float(bar)
    if kv.get("CM_ACCEL_VOLT"):
        out["voltage_kv"] = float(kv["CM_ACCEL_VOLT"].split()[0])
    if kv.get("CM_MAG"):
        out["magnification"] = kv["CM_MAG"]
    if kv.get("CM_DATE"):
        out["date"] = kv["CM_DATE"]
    if kv.get("CM_TIME"):
        out["time"] = kv["CM_TIME"]
    if kv.get("CM_SIGNAL"):
        out["detector"] = kv["CM_SIGNAL"]
    if kv.get("SM_WD"):
        out["working_distance_mm"] = float(kv["SM_WD"].split()[0])
    return out


def _hitachi_metadata(text: str) -> dict[str, Any]:
    kv = _parse_ini(text)
    out: dict[str, Any] = {"instrument": "Hitachi", "raw": kv}
    if kv.get("PixelSize"):
        out["pixel_size_nm"] = _to_nm(kv["PixelSize"], "nm")
    if kv.get("AcceleratingVoltage"):
        m = re.match(r"([\d.]+)\s*(\w*)", kv["AcceleratingVoltage"])
        if m:
            out["voltage_kv"] = float(m.group(1)) / (1e3 if m.group(2).lower() == "volt" else 1.0)
    for norm, key in (("magnification", "Magnification"), ("date", "Date"), ("time", "Time"), ("detector", "SignalName")):
        if kv.get(key):
            out[norm] = kv[key]
    if kv.get("WorkingDistance"):
        m = re.match(r"([\d.]+)\s*(\w*)", kv["WorkingDistance"])
        if m:
            out["working_distance_mm"] = (_to_nm(m.group(1), m.group(2) or "um") or 0) / 1e6
    return out


def _sidecar_metadata(path: Path) -> dict[str, Any]:
    """Metadata from a sidecar next to ``path`` (TESCAN .hdr, JEOL/Hitachi .txt)."""
    for suffix in (".hdr", ".txt"):
        for candidate in (path.with_suffix(suffix), path.with_name(path.name + suffix)):
            if not candidate.is_file() or candidate.stat().st_size > 1_000_000:
                continue
            text = candidate.read_text(errors="replace")
            if "PixelSizeX" in text or "[MAIN]" in text:
                return _tescan_metadata(text)
            if "$CM_" in text or "$$SM_" in text:
                return _jeol_metadata(text)
            if "PixelSize" in text or "InstructName" in text:
                return _hitachi_metadata(text)
    return {}


def _resolution_metadata(page, imagej: dict | None) -> dict[str, Any]:
    """Pixel size from the TIFF resolution tags (ImageJ and other programs)."""
    tags = page.tags
    if "XResolution" not in tags:
        return {}
    num, den = tags["XResolution"].value
    if not num or not den or num / den <= 1:
        return {}
    per_unit = num / den
    unit_tag = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
    unit_code = int(unit_tag)
    if imagej and imagej.get("unit"):
        unit = str(imagej["unit"]).replace("\\u00B5", "µ")
    elif unit_code == 2:
        unit = "inch"
    elif unit_code == 3:
        unit = "cm"
    else:
        return {}
    nm = _to_nm(1.0 / per_unit, unit)
    # a default screen resolution (72 or 96 dpi) is no physical pixel size:
    # SEM pixels are far smaller than 50 um
    if nm is None or (not (imagej and imagej.get("unit")) and nm > 5e4):
        return {}
    return {"pixel_size_nm": nm, "instrument": "TIFF resolution tags"}


# --------------------------------------------------------------------------
# pixel data
# --------------------------------------------------------------------------


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


def _read_tiff(path: Path, all_pages: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if len(tif.pages) == 0:
            raise SEMReadError(f"{path.name}: holds no image (corrupt or empty TIFF file)")
        page = tif.pages[0]
        data = page.asarray()
        meta: dict[str, Any] = {}
        if (
            data.ndim == 3
            and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
            and page.samplesperpixel == data.shape[0]
        ):
            data = np.moveaxis(data, 0, -1)  # planar colour: channels last
        # a stack of equal grayscale planes (FIB-SEM slices, a time series)
        series = tif.series[0] if tif.series else None
        n_planes = 1
        if series is not None and len(series.shape) == 3 and series.shape[1:] == data.shape and data.ndim == 2:
            n_planes = int(series.shape[0])
        if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
            if not _palette_is_gray_ramp(data, page.colormap):
                data = _apply_palette(data, page.colormap)
                n_planes = 1  # colour-palette stacks: the first plane only
        if all_pages and n_planes > 1:
            data = series.asarray()
        if tif.is_fei and tif.fei_metadata:
            meta = _fei_metadata(tif.fei_metadata)
        elif tif.is_sem and tif.sem_metadata:
            meta = _zeiss_metadata(tif.sem_metadata)
        elif 50431 in page.tags:  # TESCAN
            value = page.tags[50431].value
            text = value.decode("latin-1", "replace") if isinstance(value, bytes) else str(value)
            meta = _tescan_metadata(text)
        if "pixel_size_nm" not in meta:
            side = _sidecar_metadata(path)
            if side:
                meta = {**meta, **side} if meta else side
        if "pixel_size_nm" not in meta:
            res = _resolution_metadata(page, tif.imagej_metadata)
            if res:
                meta.update({k: v for k, v in res.items() if k not in meta or k == "pixel_size_nm"})
        desc = page.description if hasattr(page, "description") else ""
        if desc and "raw" not in meta:
            meta["description"] = desc[:2000]
        if n_planes > 1:
            meta["n_planes"] = n_planes
    return data, meta


def _read_other(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import cv2

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


# --------------------------------------------------------------------------
# data bar
# --------------------------------------------------------------------------


def detect_databar(image: np.ndarray, *, max_fraction: float = 0.3, min_rows: int = 4) -> int | None:
    """Find the first row of the instrument's information band at the bottom.

    SEM instruments print a band of text and a scale bar on a uniform dark or
    light strip below the image. A row belongs to the band when at least half
    of its pixels share the band's background value; the band is the run of
    such rows (short gaps allowed, for large text) that reaches the last row
    and starts within the bottom ``max_fraction`` of the image, below a row
    that is not uniform (real image content), with a sharp edge (the
    background share jumps by at least one half there), and it holds some
    text (pixels of another value). Binary masks and uniform padding strips
    are therefore not cut.

    Returns
    -------
    int or None
        Index of the first band row, or None when there is no band.
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.shape[0] < 16:
        return None
    h = img.shape[0]
    bottom = img[-1]
    values, counts = np.unique(bottom, return_counts=True)
    band_value = values[counts.argmax()]
    if counts.max() < 0.5 * bottom.size:
        # the last row may be text-covered: use the mode of the last rows
        values, counts = np.unique(img[-8:], return_counts=True)
        band_value = values[counts.argmax()]
    lo = int(h * (1 - max_fraction))
    frac = (img[lo:] == band_value).mean(axis=1)
    is_band = frac >= 0.5
    if not is_band[-1] and not is_band[-4:].any():
        return None
    max_gap = max(6, h // 40)
    start = None
    gap = 0
    for i in range(len(is_band) - 1, -1, -1):
        if is_band[i]:
            start = i
            gap = 0
        else:
            gap += 1
            if gap > max_gap:
                break
    else:
        # the band run reaches the top of the search window: not a band
        return None
    if start is None:
        return None
    row = lo + start
    if h - row < min_rows:
        return None
    # content above must not be uniform at the band value
    above = img[max(row - 8, 0) : row]
    if above.size and (above == band_value).mean() > 0.5:
        return None
    # the band starts with a sharp edge: its first rows are (almost) all
    # background, the rows above (almost) none. A mask or a dark region whose
    # background share grows gradually towards the bottom is image content.
    def share(rows):
        return float((rows == band_value).mean()) if rows.size else 0.0

    if share(img[row : row + 3]) - share(img[max(row - 3, 0) : row]) < 0.5:
        return None
    # an info band carries text or a scale bar; a strip of one value alone
    # (padding, a saturated or masked-out region) is not one
    if (img[row:] != band_value).mean() < 0.002:
        return None
    return row


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
        The file is missing, unreadable, corrupt or not an image; the
        message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise SEMReadError(f"{path}: no such file")
    if path.is_dir():
        raise SEMReadError(f"{path}: is a folder, not an image file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SEMReadError(
            f"{path.name}: unsupported file type {suffix or '(none)'}; "
            f"supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    try:
        if suffix in TIFF_SUFFIXES:
            data, meta = _read_tiff(path, all_pages=all_planes)
        else:
            data, meta = _read_other(path)
    except SEMReadError:
        raise
    except Exception as exc:  # tifffile/imagecodecs raise many types
        raise SEMReadError(
            f"{path.name}: cannot be read as an image, the file is corrupt, truncated or not "
            f"a {_FORMAT_NAMES.get(suffix, suffix)} file ({type(exc).__name__}: {exc})"
        ) from exc

    data = np.asarray(data)
    if data.size == 0 or data.ndim < 2:
        raise SEMReadError(f"{path.name}: contains no 2-D image data (shape {data.shape})")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating) or data.dtype == bool):
        raise SEMReadError(f"{path.name}: unsupported pixel type {data.dtype} (need integer or float pixels)")
    n_planes = int(meta.get("n_planes", 1))
    stack = all_planes and n_planes > 1 and data.ndim == 3
    if n_planes > 1 and not stack:
        import warnings

        warnings.warn(
            f"{path.name} holds {n_planes} images; read the first (all_planes=True reads the stack)",
            stacklevel=2,
        )
    if data.ndim == 3 and not is_rgb(data) and not stack:
        data = data[0]  # several samples per pixel that are no colour: the first
    if grayscale and is_rgb(data):
        if data.shape[-1] == 4:
            data = data[..., :3]
        data = to_grayscale(data)
    if data.dtype == bool:
        data = data.astype(np.uint8) * 255

    meta = dict(meta)
    meta.setdefault("instrument", "unknown")
    databar = None
    full = data[0] if stack else data  # the first plane before the band is cut
    if crop_databar and (data.ndim == 2 or stack):
        first = data[0] if stack else data
        row = None
        rows = meta.get("image_rows")
        if isinstance(rows, int) and 0 < rows < first.shape[0]:
            row = rows
        else:
            row = detect_databar(first)
        if row is not None:
            databar = first[row:].copy()
            data = data[..., :row, :]
            meta["databar_row"] = int(row)

    found = meta.pop("pixel_size_nm", None)
    source = meta.get("instrument") if found else None
    origin = "metadata" if found else None
    if scale_bar and pixel_size is None:
        from .scalebar import pixel_size_for_read

        from_bar, reading = pixel_size_for_read(full, found, name=path.name)
        if reading is not None and reading.pixel_size is not None:
            meta["scale_bar"] = reading.as_dict()
        if from_bar is not None:
            found, source, origin = from_bar, "scale bar", "scale bar"
    if pixel_size is not None:
        try:
            pixel_size = float(pixel_size)
        except (TypeError, ValueError):
            raise SEMAnalysisError(f"pixel_size must be a number in nm, got {pixel_size!r}") from None
        if not np.isfinite(pixel_size) or pixel_size <= 0:
            raise SEMAnalysisError(f"pixel_size must be > 0 nm, got {pixel_size!r}")
        found, source, origin = pixel_size, "user", "user"
    meta["pixel_size_source"] = source
    return SEMImage(
        data=np.ascontiguousarray(data),
        pixel_size=float(found) if found else None,
        databar=databar,
        metadata=meta,
        path=path,
        pixel_size_source=origin,
    )
