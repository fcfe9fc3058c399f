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

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._validation import SEMAnalysisError, is_rgb, to_grayscale

# nm per unit of a scale-bar label
_UNIT_NM = {"pm": 1e-3, "nm": 1.0, "µm": 1e3, "mm": 1e6, "m": 1e9}
CONFIDENT = 0.5  # readings at or above this confidence are trusted
PIXEL_SIZE_RANGE = (0.005, 50_000.0)  # plausible nm per pixel (sub-Å TEM to 50 µm)

_NUM = r"(\d+(?:[.,]\d+)?|[.,]\d+)"
_UNIT = r"(pm|nm|µm|um|mm|m)"
_LABEL_RE = re.compile(rf"^{_NUM}\s*{_UNIT}$")
_WIDTH_RE = re.compile(rf"(?:width|hfw|fov|field\s*width)\s*[=:]?\s*{_NUM}\s*{_UNIT}(?![a-z])")


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
# text parsing
# --------------------------------------------------------------------------

_DIGIT_LIKE = {"O": "0", "o": "0", "D": "0", "l": "1", "I": "1", "|": "1", "i": "1"}


def _number(text: str) -> tuple[float | None, int]:
    """Parse a number read by the glyph reader; also count look-alike fixes."""
    fixed = 0
    chars = []
    for ch in text:
        if ch in _DIGIT_LIKE:
            chars.append(_DIGIT_LIKE[ch])
            fixed += 1
        else:
            chars.append(ch)
    s = "".join(chars).replace(",", ".")
    if s.count(".") > 1:
        return None, fixed
    try:
        return float(s), fixed
    except ValueError:
        return None, fixed


def _unit(text: str) -> tuple[str | None, int]:
    """A scale-bar unit (nm, µm, mm) and how many characters were look-alikes."""
    t = text.lower().replace("μ", "µ")
    if t in ("um", "µm"):
        return "µm", int(text[0] == "U")
    if t == "pm":  # a µ read as its look-alike p (a picometre scale bar is no SEM's)
        return "µm", 1
    if t in ("nm", "mm"):
        return t, int(text != t)
    return None, 0


def _squeeze(text: str) -> str:
    """Join digits split by a reader space (narrow '1') and drop spaces around '.'."""
    text = re.sub(r"(?<=[\dOolI.,])\s+(?=[\dOolI.,])(?![a-zA-Z]{3})", "", text)
    return re.sub(r"(?<=\d)\s+(?=[.,]\d)", "", text)


def parse_length(text: str) -> tuple[float, str, float] | None:
    """Parse a scale-bar label such as ``"200 nm"``, ``"0.5 µm"``, ``"1mm"``.

    Parameters
    ----------
    text : str

    Returns
    -------
    tuple or None
        ``(value, unit, length_nm)`` with the unit normalised (``"um"`` ->
        ``"µm"``), or None when the text is no length label.
    """
    parsed = _parse_label(text)
    return None if parsed is None else parsed[:3]


def _parse_label(text: str):
    t = _squeeze(text.strip())
    m = re.match(r"^([\dOolI|.,]+)\s*([a-zA-Zµμ]{1,2})$", t)
    if not m:
        return None
    value, f1 = _number(m.group(1))
    unit, f2 = _unit(m.group(2))
    if value is None or unit is None or value <= 0:
        return None
    return value, unit, value * _UNIT_NM[unit], f1 + f2


def _parse_width(text: str):
    t = _squeeze(text).lower().replace("μ", "µ")
    t = t.replace("wldth", "width").replace("widlh", "width").replace("w1dth", "width")
    m = re.search(r"(?:width|hfw|fov)\s*[=:]?\s*([\dool|.,]+)\s*(pm|nm|µm|um|mm|m)(?![a-z])", t)
    if not m:
        return None
    value, fixed = _number(m.group(1).upper().replace("L", "l"))
    if value is None or value <= 0:
        return None
    unit = "µm" if m.group(2) == "um" else m.group(2)
    return value, unit, value * _UNIT_NM[unit], fixed, m.start(1), m.end(2)


def _is_round(value: float) -> bool:
    """Scale-bar values are round: 1-9, 1.5, 2.5, 7.5 times a power of ten."""
    if value <= 0:
        return False
    exp = np.floor(np.log10(value))
    mant = value / 10**exp
    return any(abs(mant - m) < 1e-6 * m for m in (1, 2, 3, 4, 5, 6, 7, 8, 9, 1.5, 2.5, 7.5))


# --------------------------------------------------------------------------
# bars
# --------------------------------------------------------------------------


def _bar_shape(sub: np.ndarray) -> tuple[str, float] | None:
    """Classify a component crop as a scale bar: (style, length in px) or None."""
    h, w = sub.shape
    if w < 8 or h > w + 3:
        return None
    rows = sub.sum(1)
    full = rows >= 0.9 * w
    if not full.any():
        return None
    fill = sub.mean()
    if fill >= 0.9 and w >= 3 * h:
        return ("line" if h <= 4 else "box"), float(w)
    # a line with end ticks: full rows form the line, the end columns are taller
    t = int(full.sum())
    cols = sub.sum(0)
    if t > max(0.34 * h, 6):
        return None
    tall = cols >= t + 2
    if not (tall[0] and tall[-1]):
        return None
    left = int(np.argmin(tall)) if not tall.all() else w
    right = int(np.argmin(tall[::-1])) if not tall.all() else w
    if left == 0 or right == 0 or left > w / 4 or right > w / 4:
        return None
    mid = cols[left : w - right]
    if mid.size == 0 or mid.max() > t + 1 or mid.min() < max(t - 1, 1):
        return None
    if abs(int(cols[0]) - int(cols[-1])) > max(2, 0.3 * cols[0]):
        return None  # ticks of different heights: not a scale bar
    return "ticks", float(w - (left + right) / 2)


def _bars(mask: np.ndarray, *, max_width: float, min_width: int = 8) -> list[tuple[tuple, str, float]]:
    """Scale-bar candidates in a mask: ``(box, style, length_px)``."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    out = []
    if n == 0:
        return out
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        h = sl[0].stop - sl[0].start
        w = sl[1].stop - sl[1].start
        if w < min_width or w > max_width or h > w + 3:
            continue
        sub = lab[sl] == i
        shape = _bar_shape(sub)
        if shape:
            out.append(((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop), *shape))
    return out


def _in_line_text_removed(mask: np.ndarray, bars):
    """Drop bar candidates that are strokes of text ('=', '-', '_'): they have
    glyphs beside them on their line and are not much longer than those are tall."""
    from . import _glyphs

    if not bars:
        return bars
    boxes = [c[:4] for c in _glyphs._components(mask, max_components=20000)]
    if not boxes:
        return bars
    groups = _glyphs.group_chunks(boxes)
    group_of = {}
    for gi, idx in enumerate(groups):
        for i in idx:
            group_of[boxes[i]] = gi
    keep = []
    for bar in bars:
        box = tuple(bar[0])
        gi = group_of.get(box)
        if gi is None:
            keep.append(bar)
            continue
        beside = [boxes[i] for i in groups[gi] if boxes[i] != box and (boxes[i][3] <= box[1] or boxes[i][1] >= box[3])]
        if not beside or bar[2] >= 3 * np.median([b[2] - b[0] for b in beside]):
            keep.append(bar)
    return keep


# --------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------


def _band_mask(band: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """Ink of the band: pixels farther than ``fraction`` of the ink contrast from its background."""
    values, counts = np.unique(band, return_counts=True)
    bg = values[counts.argmax()]
    d = np.abs(band.astype(np.float64) - float(bg))
    if not (d > 0).any():
        return np.zeros(band.shape, bool)
    ink = np.percentile(d[d > 0], 99)
    return d > max(fraction * ink, 1e-9)


def _glyph_quality(glyphs) -> float:
    if not glyphs:
        return 0.0
    return float(np.clip(min(g.margin for g in glyphs) / 0.12, 0.0, 1.0))


def _join_number_unit(chunks):
    """Also offer a number chunk joined with a unit chunk right of it on its
    line (wide letter spacing, e.g. monospaced fonts, splits "200 nm")."""
    from ._glyphs import TextChunk

    out = list(chunks)
    for a in chunks:
        if not re.fullmatch(r"[\dOolI.,\s]+", a.text):
            continue
        for b in chunks:
            if b is a or not re.fullmatch(r"[a-zA-Zµ]{1,2}", b.text):
                continue
            gap = b.box[1] - a.box[3]
            overlap = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])
            if 0 < gap <= 2.5 * a.height and overlap >= 0.5 * min(a.height, b.height):
                out.append(TextChunk(a.glyphs + b.glyphs, a.baseline, a.height))
    return out


def _label_candidates(chunks, offset, *, trim: bool = False):
    """Chunks that read as a length label; with ``trim`` the longest run of
    glyphs of a chunk that does (specks of texture may join a label drawn on
    the image), not starting inside a number."""
    out = []
    numberish = set("0123456789.,OolI|")
    for ch in _join_number_unit(chunks):
        glyphs, doubtful = _clean_label_glyphs(ch.glyphs, ch.height)
        if not glyphs:
            continue
        n = len(glyphs)
        spans = [(0, n)]
        if trim:
            spans += sorted(
                ((a, b) for a in range(n) for b in range(a + 2, n + 1) if (a, b) != (0, n)),
                key=lambda ab: ab[0] - ab[1],
            )
        for a, b in spans:
            if a > 0 and glyphs[a - 1].char in numberish:
                continue
            sub = glyphs[a:b]
            text = _squeeze(_chunk_text(sub, ch.height))
            parsed = _parse_label(text)
            if parsed is None:
                continue
            bx = np.array([g.box for g in sub])
            box = (
                int(bx[:, 0].min()) + offset[0],
                int(bx[:, 1].min()) + offset[1],
                int(bx[:, 2].max()) + offset[0],
                int(bx[:, 3].max()) + offset[1],
            )
            quality = 0.0 if doubtful else _glyph_quality(sub)
            out.append((box, text, parsed, quality))
            break
    return out


def _clean_label_glyphs(glyphs, height: float) -> tuple[list, bool]:
    """Drop specks from a would-be label and read a small mark on the baseline
    between two digits, with room for it, as the decimal point. Returns the
    glyphs and whether a speck between two digits was dropped (the number is
    then doubtful)."""
    from dataclasses import replace

    digitish = set("0123456789OolI")
    out = []
    doubtful = False
    for i, g in enumerate(glyphs):
        gh, gw = g.box[2] - g.box[0], g.box[3] - g.box[1]
        if gh >= 0.3 * height or gw >= 0.35 * height:
            out.append(g)
            continue
        prev = glyphs[i - 1] if i else None
        nxt = glyphs[i + 1] if i + 1 < len(glyphs) else None
        between = prev is not None and nxt is not None and prev.char in digitish and nxt.char in digitish
        if (
            between
            and nxt.box[1] - prev.box[3] >= 0.4 * height
            and abs(g.box[2] - prev.box[2]) <= 0.2 * height
            and g.char in ".,-_"
        ):
            out.append(replace(g, char="."))
        elif between:
            doubtful = True
    # a wide gap between two digits: a decimal point may be missing
    for a, b in itertools.pairwise(out):
        if a.char in digitish and b.char in digitish and b.box[1] - a.box[3] > 0.45 * height:
            doubtful = True
    return out, doubtful


def _chunk_text(glyphs, height: float) -> str:
    out = []
    for i, g in enumerate(glyphs):
        if i and g.box[1] - glyphs[i - 1].box[3] > 0.3 * height:
            out.append(" ")
        out.append(g.char)
    return "".join(out)


def _width_candidates(chunks):
    out = []
    for ch in chunks:
        text = ch.text
        parsed = _parse_width(text)
        if parsed is None:
            continue
        value, unit, nm, fixed, _, _ = parsed
        digits = [g for g in ch.glyphs if g.char not in " "]
        out.append((text, value, unit, nm, fixed, _glyph_quality(digits)))
    return out


def _pair(bar_box, label_box, bar_len) -> float | None:
    """Distance score of a label to a bar (None when too far to belong)."""
    br = (bar_box[0] + bar_box[2]) / 2
    bc = (bar_box[1] + bar_box[3]) / 2
    lr = (label_box[0] + label_box[2]) / 2
    lc = (label_box[1] + label_box[3]) / 2
    lh = label_box[2] - label_box[0]
    lw = label_box[3] - label_box[1]
    dv = abs(lr - br) - (bar_box[2] - bar_box[0] + lh) / 2
    dh = abs(lc - bc) - (bar_box[3] - bar_box[1] + lw) / 2
    if dv > 4 * lh + 4 or dh > 3 * lh + 4:
        return None
    if bar_len and bar_len < 1.5 * lh:
        return None  # a scale bar is longer than its label is tall ('=' or '-' strokes are not)
    if dh > 0 and dv > lh:
        return None  # diagonal: neither above/below nor beside
    return max(dv, 0) / max(lh, 1) + max(dh, 0) / max(lh, 1)


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
        if rel <= tol:
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
    else:
        reading.pixel_size = px_bar
        reading.confidence = float(conf)
    reading.confidence = float(np.clip(reading.confidence, 0.0, 1.0))


def _read_region(
    mask, offset, *, image_width, location, max_bar_width, want_width, target=None
) -> list[ScaleBarReading]:
    from . import _glyphs

    bars = _in_line_text_removed(mask, _bars(mask, max_width=max_bar_width))
    keep = None
    if target is not None:
        # only the bar at ``target`` (region coordinates) and short chunks near it
        bars = [b for b in bars if tuple(b[0]) == tuple(target)]
        if not bars:
            return []

        def keep(cbox, n):
            return n <= 12 and _pair(target, cbox, 0) is not None

    chunks = _glyphs.read_text(
        mask,
        exclude=[b[0] for b in bars],
        keep=keep,
        max_components=5000 if target is None else 1500,
    )
    labels = _label_candidates(chunks, offset, trim=target is not None)
    widths = _width_candidates(chunks) if want_width else []
    readings = []
    wbest = max(widths, key=lambda w: w[5]) if widths else None
    for box, style, length in bars:
        gbox = (
            box[0] + offset[0],
            box[1] + offset[1],
            box[2] + offset[0],
            box[3] + offset[1],
        )
        best = None
        for lab in labels:
            d = _pair(gbox, lab[0], length)
            if d is not None and (best is None or d < best[0]):
                best = (d, lab)
        if best is None:
            continue
        lbox, text, (value, unit, nm, fixed), quality = best[1]
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
        if wbest is not None:
            _set_width(r, wbest, image_width)
        _score(r, quality, fixed)
        readings.append(r)
    if not readings and wbest is not None:
        r = ScaleBarReading(location=location, image_width=image_width)
        _set_width(r, wbest, image_width)
        r.__dict__["_wq"] = wbest[5] * (0.6 if wbest[4] else 1.0)
        _score(r, 0.0, 0)
        readings.append(r)
    return readings


def _set_width(r: ScaleBarReading, w, image_width: int) -> None:
    text, _value, _unit, nm, _fixed, _q = w
    r.field_width_text = text
    r.field_width_nm = nm
    r.pixel_size_width = nm / image_width


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
    out = []
    h, w = img.shape
    for polarity in ("bright", "dark"):
        mask = f >= hi - 0.06 * (hi - lo) if polarity == "bright" else f <= lo + 0.06 * (hi - lo)
        if mask.mean() > 0.5:
            continue
        bars = _bars(mask, max_width=0.6 * w, min_width=max(10, w // 100))
        bars.sort(key=lambda b: -b[2])
        for box, _, _length in bars[:20]:
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
            near = f[max(box[0] - bh - 10, 0) : min(box[2] + bh + 10, h), box[1] : box[3]]
            near = near[~mask[max(box[0] - bh - 10, 0) : min(box[2] + bh + 10, h), box[1] : box[3]]]
            bg = float(np.median(near)) if near.size else float(np.median(win))
            other = lo if polarity == "bright" else hi
            for cut in (
                ink + 0.5 * (bg - ink),
                ink + 0.7 * (bg - ink),
                (ink + other) / 2,
            ):
                sub = win >= cut if polarity == "bright" else win <= cut
                out += _read_region(
                    sub,
                    (r0, c0),
                    image_width=image_width,
                    location="image",
                    max_bar_width=0.6 * w,
                    want_width=False,
                    target=(box[0] - r0, box[1] - c0, box[2] - r0, box[3] - c0),
                )
                if any(r.confident for r in out):
                    return out
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
        for fraction in (0.5, 0.3):  # thin anti-aliased text needs the lower cut
            readings += _read_region(
                _band_mask(band, fraction),
                (row, 0),
                image_width=width,
                location="band",
                max_bar_width=0.6 * w,
                want_width=True,
            )
            if any(r.confident for r in readings):
                break
    if search_image and not any(r.confident for r in readings):
        content = img[:row] if row else img
        if content.shape[0] >= 8:
            readings += _image_readings(content, image_width=width)
    if not readings:
        return ScaleBarReading(image_width=width, notes=["no scale bar or field width found"])
    best = max(readings, key=lambda r: (r.confidence, r.pixel_size is not None))
    best.__dict__.pop("_wq", None)
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
