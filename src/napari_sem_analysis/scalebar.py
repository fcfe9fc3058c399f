"""Read the pixel size from a micrograph's scale bar and info band.

:func:`read_scale_bar` finds the scale bar (in the instrument's info band or
drawn on the image), reads its label ("200 nm", "0.5 µm", "1mm"...) and, where
the band states it, the field width (Zeiss ``Width = 7.520 µm``, FEI/Thermo
``HFW 12.7 µm``), and returns the pixel size in nm with a confidence. The
text is read offline by a small glyph reader of this package
(:mod:`napari_sem_analysis._glyphs`); no OCR engine or model download.

A reading is cross-checked (bar against field width, plausible pixel size,
label grammar, a round label value); a doubtful reading comes with a low
confidence, and nothing found gives ``pixel_size=None``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._scalebar_bars import _bars, _in_line_text_removed, _pair
from ._scalebar_label import _is_round, _label_candidates, _width_candidates, parse_length
from ._validation import SEMAnalysisError, is_rgb, to_grayscale

__all__ = [
    "CONFIDENT",
    "PIXEL_SIZE_RANGE",
    "ScaleBarReading",
    "parse_length",
    "pixel_size_for_read",
    "read_scale_bar",
]

CONFIDENT = 0.5  # readings at or above this confidence are trusted
PIXEL_SIZE_RANGE = (0.005, 50_000.0)  # plausible nm per pixel (sub-Å TEM to 50 µm)


@dataclass
class ScaleBarReading:
    """What :func:`read_scale_bar` found.

    Attributes
    ----------
    pixel_size : float or None
        Nanometres per pixel (from the field width when the band states one,
        otherwise from the bar and its label), None when nothing was read.
    confidence : float
        0-1; readings below :data:`CONFIDENT` (0.5) should not be trusted
        without a look.
    location : str or None
        ``"band"`` (the instrument's info band) or ``"image"`` (a bar drawn on
        the image).
    bar_length_px : float or None
        Length of the bar in pixels (between the tick centres for a bar with
        end ticks).
    bar_box, label_box : tuple or None
        ``(row0, col0, row1, col1)`` of the bar and its label in the input
        image (end exclusive).
    bar_style : str or None
        ``"line"``, ``"ticks"`` (line with end ticks) or ``"box"``.
    label_text : str or None
        The label as read, e.g. ``"200 nm"``.
    label_value, label_unit : float, str or None
        The label's number and unit (``"nm"``, ``"µm"``, ``"mm"``...).
    label_nm : float or None
        The label's length in nm.
    pixel_size_bar : float or None
        ``label_nm / bar_length_px``.
    field_width_text : str or None
        The field-width text as read, e.g. ``"Width = 7.520 µm"``.
    field_width_nm : float or None
    pixel_size_width : float or None
        ``field_width_nm / image_width``.
    image_width : int
        Width in pixels of the image the field width refers to.
    notes : list of str
        Why the confidence is what it is.
    """

    pixel_size: float | None = None
    confidence: float = 0.0
    location: str | None = None
    bar_length_px: float | None = None
    bar_box: tuple[int, int, int, int] | None = None
    bar_style: str | None = None
    label_text: str | None = None
    label_value: float | None = None
    label_unit: str | None = None
    label_nm: float | None = None
    label_box: tuple[int, int, int, int] | None = None
    pixel_size_bar: float | None = None
    field_width_text: str | None = None
    field_width_nm: float | None = None
    pixel_size_width: float | None = None
    image_width: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        """True when a pixel size was read."""
        return self.pixel_size is not None

    @property
    def confident(self) -> bool:
        """True when a pixel size was read with confidence >= :data:`CONFIDENT`."""
        return self.pixel_size is not None and self.confidence >= CONFIDENT

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for metadata and workflow records)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------


def _band_ink(band: np.ndarray) -> np.ndarray:
    """Ink strength of the band: distance from its background over the ink contrast
    (the 99th percentile of the distances), 0 = background, >= 1 = full ink."""
    values, counts = np.unique(band, return_counts=True)
    bg = values[counts.argmax()]
    d = np.abs(band.astype(np.float64) - float(bg))
    if not (d > 0).any():
        return np.zeros(band.shape)
    return d / max(float(np.percentile(d[d > 0], 99)), 1e-9)


def _score(reading: ScaleBarReading, quality: float, fixed: int) -> None:
    """Set pixel size and confidence from the bar and width readings."""
    notes = reading.notes
    lo, hi = PIXEL_SIZE_RANGE
    px_bar = reading.pixel_size_bar
    px_w = reading.pixel_size_width
    if px_bar is not None and not lo <= px_bar <= hi:
        notes.append(f"bar gives an implausible pixel size {px_bar:.4g} nm")
        px_bar = reading.pixel_size_bar = None
    if px_w is not None and not lo <= px_w <= hi:
        notes.append(f"field width gives an implausible pixel size {px_w:.4g} nm")
        px_w = reading.pixel_size_width = None
    if px_bar is None and px_w is None:
        reading.pixel_size = None
        reading.confidence = 0.0
        return
    if px_bar is not None:
        conf = 0.3 + 0.6 * quality
        if not _is_round(reading.label_value or 0):
            conf *= 0.5
            notes.append(f"label value {reading.label_value:g} is not a round number")
        if fixed:
            conf *= 0.8**fixed
            notes.append(f"{fixed} label character(s) read as look-alikes")
        if not re.search(r"\d", reading.label_text or ""):
            conf *= 0.5
        if reading.bar_length_px is not None and reading.bar_length_px < 15:
            conf *= 0.8
            notes.append(f"short bar ({reading.bar_length_px:.0f} px)")
    if px_w is not None and px_bar is not None:
        tol = 1.5 / max(reading.bar_length_px or 1, 1) + 0.01
        rel = abs(px_bar - px_w) / px_w
        # a field width read with an ambiguous digit whose runner-up the bar also agrees with
        rivals = [v for v in reading.__dict__.get("_width_rivals", ()) if abs(px_bar - v) / v <= tol]
        if rel <= tol and rivals:
            reading.pixel_size = px_w
            reading.confidence = min(float(conf), _AMBIGUOUS_CAP)
            notes.append(
                f"bar and field width agree ({100 * rel:.1f} %), but so would the width read with an ambiguous "
                f"digit ({rivals[0] * reading.image_width:.4g} nm): the bar cannot tell them apart"
            )
        elif rel <= tol:
            reading.pixel_size = px_w
            reading.confidence = float(max(conf, 0.9) + 0.08 * quality)
            notes.append(f"bar and field width agree ({100 * rel:.1f} %)")
        else:
            reading.pixel_size = px_w
            reading.confidence = 0.15
            notes.append(f"bar ({px_bar:.4g} nm/px) and field width ({px_w:.4g} nm/px) disagree by {100 * rel:.0f} %")
    elif px_w is not None:
        reading.pixel_size = px_w
        reading.confidence = 0.35 + 0.4 * reading.__dict__.pop("_wq", 0.0)
        notes.append("field width only (no scale bar found to check it)")
        if reading.__dict__.get("_width_rivals"):
            reading.confidence = min(reading.confidence, _AMBIGUOUS_CAP)
            notes.append("a digit of the field width is ambiguous")
    else:
        reading.pixel_size = px_bar
        reading.confidence = float(conf)
    reading.confidence = float(np.clip(reading.confidence, 0.0, 1.0))


# a field width with an ambiguous digit that the bar cannot confirm: not confident
_AMBIGUOUS_CAP = 0.45

# passes after the plain ones read the text magnified; what they alone read is capped below
# CONFIDENT unless the field width or a plain pass (not doubtful) agrees with it
_MAGNIFIED_CAP = 0.45


def _zoomed_text(ink: np.ndarray, cut: float, *, exclude, keep, max_components: int, zoom: int = 2):
    """Read the text of an ink-strength map magnified ``zoom`` times (grey levels
    interpolated, then cut at ``cut``): thin anti-aliased strokes (serif and
    monospaced fonts at 11-15 px) that break when cut at their own size stay
    whole. The glyph boxes come back in the coordinates of ``ink``."""
    import cv2

    from . import _glyphs

    big = cv2.resize(ink.astype(np.float32), None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR) > cut
    ex = [tuple(v * zoom for v in e) for e in exclude] if exclude else None
    kp = None if keep is None else (lambda cbox, n: keep(tuple(v // zoom for v in cbox), n))
    chunks = _glyphs.read_text(big, exclude=ex, keep=kp, max_components=max_components)
    for ch in chunks:
        for g in ch.glyphs:
            for part in [g, *(g.alt or [])]:
                r0, c0, r1, c1 = part.box
                part.box = (r0 // zoom, c0 // zoom, -(-r1 // zoom), -(-c1 // zoom))
        ch.baseline /= zoom
        ch.height /= zoom
    return chunks


def _read_region(
    mask,
    offset,
    *,
    image_width,
    location,
    max_bar_width,
    want_width,
    target=None,
    ink=None,
    zoom_cut=None,
    prior=(),
) -> list[ScaleBarReading]:
    """Bars in ``mask`` and the labels (and field width) read near them.

    ``ink`` (ink strength 0-1 of the same region) shows decimal points the mask
    lost; with ``zoom_cut`` the text is read from ``ink`` magnified (see
    :func:`_zoomed_text`) and the readings are capped below :data:`CONFIDENT`
    unless one of ``prior`` (plain passes) or the field width agrees.
    """
    from . import _glyphs

    bars = _in_line_text_removed(mask, _bars(mask, max_width=max_bar_width))
    keep = None
    if target is not None:
        # only the bar at ``target`` (region coordinates; at another cut its box may grow a pixel)
        near = [(max(abs(u - v) for u, v in zip(b[0], target)), b) for b in bars]
        near = [nb for nb in near if nb[0] <= 2]
        bars = [min(near, key=lambda nb: nb[0])[1]] if near else []
        if not bars:
            return []

        def keep(cbox, n):
            return n <= 12 and _pair(target, cbox, 0) is not None

    text_options = dict(exclude=[b[0] for b in bars], keep=keep, max_components=5000 if target is None else 1500)
    if zoom_cut is not None:
        cut, zoom = zoom_cut if isinstance(zoom_cut, tuple) else (zoom_cut, 2)
        chunks = _zoomed_text(ink, cut, zoom=zoom, **text_options)
    else:
        chunks = _glyphs.read_text(mask, **text_options)
    labels = _label_candidates(chunks, offset, trim=target is not None, ink=ink)
    widths = _width_candidates(chunks) if want_width else []
    wbest = max(widths, key=lambda w: w[5]) if widths else None
    readings = []
    for bar in bars:
        r = _bar_reading(bar, labels, offset, location=location, image_width=image_width, width=wbest)
        if r is not None:
            if zoom_cut is not None:
                _cap_magnified(r, prior)
            readings.append(r)
    if not readings and wbest is not None:
        r = ScaleBarReading(location=location, image_width=image_width)
        _set_width(r, wbest, image_width)
        r.__dict__["_wq"] = wbest[5] * (0.6 if wbest[4] else 1.0)
        _score(r, 0.0, 0)
        readings.append(r)
    return readings


def _bar_reading(bar, labels, offset, *, location, image_width, width) -> ScaleBarReading | None:
    """The reading of one bar with the label nearest to it (None when no label is near)."""
    box, style, length = bar
    gbox = (box[0] + offset[0], box[1] + offset[1], box[2] + offset[0], box[3] + offset[1])
    best = None
    for lab in labels:
        d = _pair(gbox, lab[0], length)
        if d is not None and (best is None or d < best[0]):
            best = (d, lab)
    if best is None:
        return None
    lbox, text, (value, unit, nm, fixed, _doubtful), quality = best[1]
    r = ScaleBarReading(
        location=location,
        bar_length_px=length,
        bar_box=gbox,
        bar_style=style,
        label_text=text,
        label_value=value,
        label_unit=unit,
        label_nm=nm,
        label_box=lbox,
        pixel_size_bar=nm / length,
        image_width=image_width,
    )
    if width is not None:
        _set_width(r, width, image_width)
    _score(r, quality, fixed)
    r.__dict__["_quality"] = quality
    return r


def _cap_magnified(r: ScaleBarReading, prior) -> None:
    """Cap a reading of the magnified pass below CONFIDENT unless the field width or a plain
    pass that read the same label (not doubtful) for the same bar agrees with it."""
    r.notes.append("label read magnified")
    if r.confidence < CONFIDENT or (r.pixel_size_width is not None and r.confidence >= 0.9):
        return
    for p in prior:
        if (
            p.label_nm is not None
            and abs(p.label_nm - (r.label_nm or 0)) <= 1e-9 * p.label_nm
            and abs((p.bar_length_px or 0) - (r.bar_length_px or 0)) <= 1
            and p.__dict__.get("_quality", 0.0) > 0
        ):
            r.notes.append(f"a plain pass read the same label ({p.label_text!r})")
            return
    r.confidence = min(r.confidence, _MAGNIFIED_CAP)
    r.notes.append("only the magnified pass read it: not confident")


def _set_width(r: ScaleBarReading, w, image_width: int) -> None:
    text, _value, _unit, nm, _fixed, _q, rivals = w
    r.field_width_text = text
    r.field_width_nm = nm
    r.pixel_size_width = nm / image_width
    r.__dict__["_width_rivals"] = [v / image_width for v in rivals]


def _as_2d(image) -> np.ndarray:
    arr = np.asarray(image)
    if is_rgb(arr):
        arr = to_grayscale(arr[..., :3])
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if arr.ndim != 2 or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise SEMAnalysisError(
            f"read_scale_bar needs a 2-D grayscale or RGB image, got shape {arr.shape} ({arr.dtype})"
        )
    if min(arr.shape) < 8:
        raise SEMAnalysisError(f"image of shape {arr.shape} is too small to hold a scale bar")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    return arr


def _looks_like_band(img: np.ndarray) -> bool:
    h, w = img.shape
    if h > 0.35 * w:
        return False
    _values, counts = np.unique(img, return_counts=True)
    return counts.max() >= 0.6 * img.size


def _image_readings(img: np.ndarray, *, image_width: int) -> list[ScaleBarReading]:
    """Bars drawn on the image: saturated bright or dark bars with a label near them."""
    f = img.astype(np.float64)
    lo, hi = float(f.min()), float(f.max())
    if hi - lo <= 0:
        return []
    out: list[ScaleBarReading] = []
    w = img.shape[1]
    for polarity in ("bright", "dark"):
        mask = f >= hi - 0.06 * (hi - lo) if polarity == "bright" else f <= lo + 0.06 * (hi - lo)
        if mask.mean() > 0.5:
            continue
        bars = _bars(mask, max_width=0.6 * w, min_width=max(10, w // 100))
        bars.sort(key=lambda b: -b[2])
        for box, _, _length in bars[:20]:
            out += _read_near_bar(f, mask, box, polarity, (lo, hi), image_width=image_width)
            if any(r.confident for r in out):
                return out
    return out


def _read_near_bar(f, mask, box, polarity, lohi, *, image_width) -> list[ScaleBarReading]:
    """Read the label near one bar found on the image (``box`` in ``mask``)."""
    h, w = f.shape
    lo, hi = lohi
    bw = box[3] - box[1]
    r0 = max(box[0] - int(0.6 * bw) - 20, 0)
    r1 = min(box[2] + int(0.6 * bw) + 20, h)
    c0 = max(box[1] - int(1.2 * bw) - 20, 0)
    c1 = min(box[3] + int(1.2 * bw) + 20, w)
    # text is anti-aliased and its surroundings unknown (texture or a
    # panel): read at a few cuts between the ink and the surroundings
    win = f[r0:r1, c0:c1]
    ink = hi if polarity == "bright" else lo
    # the background around the bar (a panel or the image) outside the ink
    bh = box[2] - box[0]
    rows = slice(max(box[0] - bh - 10, 0), min(box[2] + bh + 10, h))
    near = f[rows, box[1] : box[3]][~mask[rows, box[1] : box[3]]]
    bg = float(np.median(near)) if near.size else float(np.median(win))
    other = lo if polarity == "bright" else hi
    strength = np.clip((win - bg) / (ink - bg), 0.0, 1.0) if ink != bg else (win == ink).astype(np.float64)
    target = (box[0] - r0, box[1] - c0, box[2] - r0, box[3] - c0)
    passes = []
    for cut, zoom in ((0.5, 0), (0.3, 0), (None, 0), (0.5, 2), (0.3, 2), (0.2, 2), (0.4, 3)):
        if zoom:  # the bar from the mask it was found in, the text magnified from the grey levels
            passes.append((mask[r0:r1, c0:c1], (cut, zoom)))
        elif cut is None:  # half-way between the ink and the other extreme
            passes.append((win >= (ink + other) / 2 if polarity == "bright" else win <= (ink + other) / 2, None))
        else:
            passes.append((strength >= cut, None))
    return _run_passes(
        passes,
        (r0, c0),
        image_width=image_width,
        location="image",
        max_bar_width=0.6 * w,
        want_width=False,
        target=target,
        ink=strength,
    )


def _run_passes(passes, offset, **options) -> list[ScaleBarReading]:
    """Read a region at each ``(mask, zoom_cut)`` of ``passes`` in turn (see :func:`_read_region`;
    ``zoom_cut`` None = a plain pass) until one gives a confident reading."""
    out: list[ScaleBarReading] = []
    plain: list[ScaleBarReading] = []
    for mask, zoom_cut in passes:
        found = _read_region(mask, offset, zoom_cut=zoom_cut, prior=plain, **options)
        out += found
        if zoom_cut is None:
            plain += found
        if any(r.confident for r in out):
            break
    return out


def read_scale_bar(image_or_databar, *, image_width: int | None = None, search_image: bool = True) -> ScaleBarReading:
    """Read the pixel size from a scale bar and the info band's field width.

    Parameters
    ----------
    image_or_databar : ndarray or SEMImage
        The whole micrograph (2-D or RGB, with its info band), the info band
        alone, or an :class:`~napari_sem_analysis.io.SEMImage` (its
        ``databar`` is searched first, then its image).
    image_width : int, optional
        Width in pixels of the image that a field width refers to; defaults
        to the width of the input (the band is as wide as the image).
    search_image : bool
        Also look for a bar drawn on the image when the band holds none.

    Returns
    -------
    ScaleBarReading
        ``pixel_size`` in nm (None when nothing was read), ``confidence``
        0-1, the bar and label found and the field width; boxes are in the
        coordinates of the input (for an ``SEMImage``: of its data with the
        band appended below).

    Raises
    ------
    SEMAnalysisError
        The input is no 2-D grayscale or RGB image, or smaller than 8 pixels.
    """
    from .io import SEMImage, detect_databar

    if isinstance(image_or_databar, SEMImage):
        sem = image_or_databar
        data = np.asarray(sem.data)
        if data.ndim == 3 and not is_rgb(data):
            data = data[0]
        if sem.databar is not None and np.asarray(sem.databar).shape[-1] == data.shape[-1]:
            img = _as_2d(np.concatenate([_as_2d(data), _as_2d(sem.databar)], axis=0))
        else:
            img = _as_2d(data)
    else:
        img = _as_2d(image_or_databar)
    _h, w = img.shape
    width = int(image_width) if image_width else w
    if width <= 0:
        raise SEMAnalysisError(f"image_width must be > 0, got {image_width!r}")

    row = detect_databar(img)
    if row is None and _looks_like_band(img):
        row = 0
    readings: list[ScaleBarReading] = []
    if row is not None:
        band = img[row:]
        ink = _band_ink(band)
        # thin anti-aliased text needs the lower cut; the last passes read the text magnified
        readings += _run_passes(
            [(ink > 0.5, None), (ink > 0.3, None), (ink > 0.5, 0.5), (ink > 0.3, 0.3)],
            (row, 0),
            image_width=width,
            location="band",
            max_bar_width=0.6 * w,
            want_width=True,
            ink=ink,
        )
    if search_image and not any(r.confident for r in readings):
        content = img[:row] if row else img
        if content.shape[0] >= 8:
            readings += _image_readings(content, image_width=width)
    if not readings:
        return ScaleBarReading(image_width=width, notes=["no scale bar or field width found"])
    best = max(readings, key=lambda r: (r.confidence, r.pixel_size is not None))
    for key in [k for k in best.__dict__ if k.startswith("_")]:
        del best.__dict__[key]
    return best


def pixel_size_for_read(
    image: np.ndarray,
    pixel_size: float | None,
    *,
    name: str = "image",
    search_image: bool = True,
) -> tuple[float | None, ScaleBarReading | None]:
    """What :func:`~napari_sem_analysis.io.read_sem` does with the scale bar.

    Without a pixel size (``pixel_size`` None) the scale bar is read (band,
    then the image when ``search_image``) and its pixel size returned when
    the reading is confident; a doubtful reading is returned with pixel size
    None and a warning. With a pixel size from the metadata the band alone is
    read and a warning is given when a confident reading disagrees by more
    than 2 %.

    Returns
    -------
    tuple
        ``(pixel size from the scale bar or None, the reading or None)``.
    """
    import warnings

    try:
        reading = read_scale_bar(image, search_image=search_image and pixel_size is None)
    except SEMAnalysisError:
        return None, None
    if pixel_size is None:
        if reading.confident:
            return reading.pixel_size, reading
        if reading.pixel_size is not None:
            warnings.warn(
                f"{name}: no pixel size in the file; the scale bar reads {reading.pixel_size:.4g} nm/px but with low "
                f"confidence ({reading.confidence:.2f}: {'; '.join(reading.notes)}), so it is not used: check it "
                "(Pixel size widget) or pass pixel_size",
                stacklevel=3,
            )
        return None, reading
    if reading.confident:
        rel = abs(reading.pixel_size - pixel_size) / pixel_size
        if rel > 0.02:
            what = f"field width {reading.field_width_text!r}" if reading.field_width_text else "scale bar"
            if reading.label_text and reading.field_width_text:
                what = f"scale bar {reading.label_text!r} and {what}"
            elif reading.label_text:
                what = f"scale bar {reading.label_text!r}"
            warnings.warn(
                f"{name}: the pixel size in the metadata ({pixel_size:.4g} nm) and the one from the {what} "
                f"({reading.pixel_size:.4g} nm) differ by {100 * rel:.1f} % (a wrong magnification entry or a "
                "resampled export?); using the metadata's, pass pixel_size to override",
                stacklevel=3,
            )
    return None, reading
