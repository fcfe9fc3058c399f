"""Scale-bar label text: parse a length label or a field width, and find the chunks of
text read by :mod:`napari_sem_analysis._glyphs` that are one (used by
:mod:`napari_sem_analysis.scalebar`)."""

from __future__ import annotations

import itertools
import re
from functools import lru_cache

import numpy as np

# nm per unit of a scale-bar label
_UNIT_NM = {"pm": 1e-3, "nm": 1.0, "µm": 1e3, "mm": 1e6, "m": 1e9}

_DIGIT_LIKE = {"O": "0", "o": "0", "D": "0", "l": "1", "I": "1", "|": "1", "i": "1", "S": "5", "s": "5"}
_BROKEN_DIGITS = (("(X)", "00"), ("()", "0"))
# an 'm' whose thin arches broke at the threshold: its stems read as '1', 'l', 'I', ')'
_BROKEN_M = re.compile(r"^(?:rn|n[1lI|)]|[1lI|)(]{3,5})$")


def _number(text: str) -> tuple[float | None, int]:
    """Parse a number read by the glyph reader; also count look-alike fixes."""
    fixed = 0
    for broken, digits in _BROKEN_DIGITS:  # a thin '0' broken into its two sides
        fixed += 2 * text.count(broken)
        text = text.replace(broken, digits)
    chars = []
    for ch in text:
        if ch in _DIGIT_LIKE:
            chars.append(_DIGIT_LIKE[ch])
            fixed += 1
        else:
            chars.append(ch)
    s = "".join(chars).replace(",", ".")
    if s.count(".") > 1 or not s:
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
    if len(text) > 2 and t[0] in "nµum" and _BROKEN_M.match(text[1:]):
        unit, fixed = _unit(text[0] + "m")
        return unit, fixed + 2
    return None, 0


def _squeeze(text: str) -> str:
    """Join digits split by a reader space (narrow '1') and drop spaces around '.'."""
    text = re.sub(r"(?<=[\dOolISs.,])\s+(?=[\dOolISs.,])(?![a-zA-Z]{3})", "", text)
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
    """``(value, unit, nm, look-alikes fixed, doubtful)`` of a label, or None.

    A number with a leading zero and no decimal point ("05 µm") lost its point:
    it is read as "0.5 µm" and marked doubtful.
    """
    t = _squeeze(text.strip())
    m = re.match(r"^([\dOolISs|.,()X]+)\s*([a-zA-Zµμ]{1,2}|[nµμuU] [mM]|[nµμum](?:[1lI|)(]{2,5}|rn|n[1lI|)]))$", t)
    if not m:
        return None
    number, doubtful = m.group(1), False
    if re.match(r"^[0Oo][\dOolI|]", number):
        number, doubtful = number[0] + "." + number[1:], True
    value, f1 = _number(number)
    unit, f2 = _unit(m.group(2).replace(" ", ""))
    f2 += " " in m.group(2)  # a unit split by a gap ("n m")
    if value is None or unit is None or value <= 0:
        return None
    return value, unit, value * _UNIT_NM[unit], f1 + f2, doubtful


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
        if not re.fullmatch(r"[\dOolISs.,\s]+", a.text):
            continue
        for b in chunks:
            if b is a or not re.fullmatch(r"[a-zA-Zµ]{1,2}", b.text):
                continue
            gap = b.box[1] - a.box[3]
            overlap = min(a.box[2], b.box[2]) - max(a.box[0], b.box[0])
            if 0 < gap <= 2.5 * a.height and overlap >= 0.5 * min(a.height, b.height):
                out.append(TextChunk(a.glyphs + b.glyphs, a.baseline, a.height))
    return out


def _label_candidates(chunks, offset, *, trim: bool = False, ink=None):
    """Chunks that read as a length label: ``(box, text, parsed, quality)``.

    With ``trim`` the longest run of glyphs of a chunk that does (specks of
    texture may join a label drawn on the image), not starting inside a
    number. ``ink`` (the grey levels as ink strength 0-1, in the chunks'
    coordinates) lets a decimal point that the mask lost be seen: such a
    number is doubtful (quality 0)."""
    out = []
    for ch in _join_number_unit(chunks):
        for variant, split in _split_variants(ch.glyphs):
            if _chunk_label(ch, variant, chunks, offset, out, trim=trim, ink=ink, split=split):
                break
    return out


def _split_variants(glyphs):
    """The glyphs of a chunk as read, then with one (or two) wide glyphs replaced by their best
    split into two (:attr:`Glyph.alt`: ``100nm`` with a touching ``00`` read ``1mnm``), for a chunk
    that reads as no label as it is. Yields ``(glyphs, split)``."""
    yield glyphs, False
    wide = [k for k, g in enumerate(glyphs) if g.alt]
    for r in (1, 2):
        for ks in itertools.combinations(wide[:6], r):
            out = []
            for k, g in enumerate(glyphs):
                out += g.alt if k in ks else [g]
            yield out, True


def _chunk_label(ch, glyphs_in, chunks, offset, out, *, trim, ink, split) -> bool:
    """Append the label candidate read from ``glyphs_in`` (the glyphs of chunk ``ch``) to ``out``;
    True when one was found. A label read with a glyph split by force (``split``) is doubtful."""
    numberish = set("0123456789.,OolI|()X")
    glyphs, doubtful = _clean_label_glyphs(glyphs_in, ch.height, ch.baseline, ink)
    doubtful = doubtful or split or _number_left_of(ch, chunks)
    if not glyphs:
        return False
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
        merged = _merged_unit(sub) or _merged_digit(sub) or _ink_inside(sub, ch, chunks)
        point = _point_before(ch.glyphs, sub[0], ch.height)
        quality = 0.0 if doubtful or parsed[4] or merged or point else _glyph_quality(sub)
        out.append((box, text, parsed, quality))
        return True
    return False


# the unit letters are x-height letters: in the glyph templates (each letter rendered between two
# digits, every template font and size) their top lies 0.14 digit heights or more below the digits'
# top, and they are at most 0.9 ('n', 'u', 'µ') or 1.7 ('m') digit heights wide
_UNIT_LETTER_MAX_WIDTH = {"n": 1.2, "u": 1.2, "µ": 1.2, "m": 2.0}


def _merged_unit(glyphs) -> bool:
    """Whether a letter of a label's unit is likely two characters merged into one blob: it reaches
    up to the top of the label's digits (a digit touching it: ``20nm`` with ``0n`` read as one
    ``m``) or is wider than that letter ever is (``mm`` or ``nm`` read as one ``m``), or it was cut
    out of such a blob and read with a margin below 0.12. The unit read is then a guess (the
    reading is made doubtful)."""
    n = 0
    while n < len(glyphs) and glyphs[n].char in "0123456789OolI|.,()X":
        n += 1
    digits = [g for g in glyphs[:n] if g.char in "0123456789OlI|"]  # full-height characters
    if not digits:
        return False
    top = float(np.median([g.box[0] for g in digits]))
    height = float(np.median([g.box[2] for g in digits])) - top
    if height < 3:
        return False
    for g in glyphs[n:]:
        max_width = _UNIT_LETTER_MAX_WIDTH.get(g.char)
        if max_width is None:
            continue
        if g.cut and g.margin < 0.12:
            # cut out of a touching pair and not read surely: 'n' and 'u' halves look alike
            # (STIX '20nm', '0n' split into '0' and a 'u' at margin 0.06: '20um', 0.58)
            return True
        if g.box[0] <= top + 0.1 * height or g.box[3] - g.box[1] > max_width * height:
            return True
    return False


def _point_before(glyphs, first, height: float) -> bool:
    """Whether the glyph of ``glyphs`` (a chunk as read, specks included) just left of a label's
    first digit ``first`` is a small flat mark on the baseline right before it: a decimal point
    (read as ``.``, ``-`` or ``_``, or dropped as a speck) whose number lost its head (``0.5 um``
    with a broken ``0`` read ``5 um``). A point is no smaller than a tenth of the digit height
    each way (a pixel of texture next to 12 px digits is no point)."""
    if first.char not in "0123456789":
        return False
    left = [g for g in glyphs if g.box[3] <= first.box[1] + 1 and g.box[1] < first.box[1]]
    if not left:
        return False
    mark = max(left, key=lambda g: g.box[3])
    mh, mw = mark.box[2] - mark.box[0], mark.box[3] - mark.box[1]
    gap = first.box[1] - mark.box[3]
    return (
        0.1 * height <= mh <= 0.3 * height
        and 0.1 * height <= mw <= 0.6 * height
        and abs(mark.box[2] - first.box[2]) <= 0.2 * height
        and gap <= 0.6 * height
    )


@lru_cache(maxsize=1)
def _digit_widths() -> dict[str, float]:
    """Median width of each digit over the glyph templates, in digit heights."""
    from . import _glyphs

    feats, _norms, classes, starts, _same = _glyphs._templates()
    ends = [*starts[1:], len(feats)]
    out = {}
    for c, a, b in zip(classes, starts, ends):
        if c in "023456789":  # '1' is left out: its width depends on the font's serifs
            geom = feats[a:b, -_glyphs.N_GEOM :] / _glyphs.GEOM_WEIGHT
            out[c] = float(np.median(np.exp(2 * geom[:, 0]) * geom[:, 1]))
    return out


def _merged_digit(glyphs) -> bool:
    """Whether a digit is likely merged with a neighbouring mark (a decimal point touching it:
    ``766.4`` read ``7664``): it is wider, for what the templates say of each digit, than the
    number's digits are (their median; three digits or more, same font) by a quarter and by 2
    pixels or more. With fewer digits one broken thin digit would make the other look wide."""
    widths = _digit_widths()
    digits = [(g.box[3] - g.box[1], widths[g.char]) for g in glyphs if g.char in widths]
    if len(digits) < 3:
        return False
    scale = float(np.median([w / typical for w, typical in digits]))
    return any(w > 1.25 * scale * typical and w - scale * typical >= 2 for w, typical in digits)


def _ink_inside(glyphs, ch, chunks) -> bool:
    """Whether another chunk of text lies on the line of the label ``glyphs`` (of chunk ``ch``)
    between its first and last glyph: a number and a unit joined across a gap
    (:func:`_join_number_unit`) with the ink between them read apart (a broken digit: ``2.5 um``
    read ``2 um``)."""
    bx = np.array([g.box for g in glyphs])
    r0, c0, r1, c1 = bx[:, 0].min(), bx[:, 1].min(), bx[:, 2].max(), bx[:, 3].max()
    for a in chunks:
        if not a.glyphs or any(g in ch.glyphs for g in a.glyphs):
            continue
        b = a.box
        overlap = min(b[2], r1) - max(b[0], r0)
        if b[1] >= c0 and b[3] <= c1 and overlap >= 0.5 * (b[2] - b[0]):
            return True
    return False


def _number_left_of(ch, chunks) -> bool:
    """Whether a chunk ending in a digit or a point stands on the line of ``ch`` just left of it: wide
    letter spacing (monospaced fonts) may have split the label's number (``2.`` and ``5µm``)."""
    if not ch.glyphs or ch.glyphs[0].char not in set("0123456789OolI"):
        return False
    box = ch.box
    for a in chunks:
        if not a.glyphs or a.glyphs[-1].char not in set("0123456789.,"):
            continue
        gap = box[1] - a.box[3]
        overlap = min(a.box[2], box[2]) - max(a.box[0], box[0])
        if 0 < gap <= 1.5 * ch.height and overlap >= 0.5 * min(a.box[2] - a.box[0], box[2] - box[0]):
            return True
    return False


def _clean_label_glyphs(glyphs, height: float, baseline: float = 0.0, ink=None) -> tuple[list, bool]:
    """Drop specks from a would-be label and read a small mark on the baseline
    between two digits, with room for it, as the decimal point. Returns the
    glyphs and whether the number is doubtful: a speck between two digits was
    dropped, or two digits stand far apart or (seen in ``ink``) have a faint
    mark on the baseline between them (a decimal point may be missing)."""
    from dataclasses import replace

    digitish = set("0123456789OolI()")
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
        elif (
            prev is not None
            and prev.char in digitish
            and abs(g.box[2] - prev.box[2]) <= 0.2 * height
            and g.box[1] - prev.box[3] <= 0.8 * height
        ):
            doubtful = True  # a point on the baseline right after the number: its decimals were lost
    for a, b in itertools.pairwise(out):
        if a.char in digitish and b.char in digitish:
            gap = b.box[1] - a.box[3]
            if gap > 0.45 * height or _faint_point(ink, a.box, b.box, baseline, height):
                doubtful = True
            elif height <= 8.5 and gap >= 2:
                doubtful = True  # small text: a decimal point of a pixel may be lost in the gap
    return out, doubtful


def _faint_point(ink, left, right, baseline: float, height: float) -> bool:
    """A mark on the baseline between two glyph boxes in the ink map (0-1): a
    decimal point the mask lost. Seen as a peak of the ink on the baseline
    rows, column by column from the left glyph's last column to the right
    glyph's first, that stands above the ink on both sides of it (the glyphs'
    own anti-aliasing only falls off away from them) and above the ink higher
    up in the gap."""
    if ink is None:
        return False
    c0, c1 = max(left[3] - 1, 0), min(right[1] + 1, ink.shape[1])
    r1 = min(int(round(baseline)) + 1, ink.shape[0])
    r0 = max(int(round(baseline - 0.3 * height)), 0)
    top = max(int(round(baseline - height)), 0)
    if c1 - c0 < 3 or r1 - r0 < 1 or r0 <= top:
        return False
    low = ink[r0:r1, c0:c1].max(0)
    high = ink[top:r0, c0:c1].max(0)
    for k in range(1, len(low) - 1):
        v = low[k]
        if v >= 0.15 and v >= low[:k].min() + 0.1 and v >= low[k + 1 :].min() + 0.1 and v >= high[k] + 0.1:
            return True
    return False


def _chunk_text(glyphs, height: float) -> str:
    out = []
    for i, g in enumerate(glyphs):
        if i and g.box[1] - glyphs[i - 1].box[3] > 0.3 * height:
            out.append(" ")
        out.append(g.char)
    return "".join(out)


# a digit of the field width read with a margin below this is ambiguous: the runner-up digit
# (``6`` read ``8``) is another field width the bar must tell apart
AMBIGUOUS_MARGIN = 0.1


def _width_candidates(chunks):
    """Chunks that read as a field width: ``(text, value, unit, nm, fixed, quality, rivals)``,
    ``rivals`` the field widths in nm read with one ambiguous digit (margin below
    :data:`AMBIGUOUS_MARGIN`) replaced by its runner-up digit."""
    from dataclasses import replace

    from ._glyphs import TextChunk

    out = []
    for ch in chunks:
        text = ch.text
        parsed = _parse_width(text)
        if parsed is None:
            continue
        value, unit, nm, fixed, _, _ = parsed
        digits = [g for g in ch.glyphs if g.char not in " "]
        quality = 0.0 if _merged_digit(digits) else _glyph_quality(digits)
        rivals = []
        for k, g in enumerate(ch.glyphs):
            if g.char in "0123456789" and g.second in "0123456789" and g.margin < AMBIGUOUS_MARGIN:
                glyphs = [*ch.glyphs[:k], replace(g, char=g.second), *ch.glyphs[k + 1 :]]
                other = _parse_width(TextChunk(glyphs, ch.baseline, ch.height).text)
                if other is not None and abs(other[2] - nm) > 1e-9 * nm:
                    rivals.append(other[2])
        out.append((text, value, unit, nm, fixed, quality, rivals))
    return out
