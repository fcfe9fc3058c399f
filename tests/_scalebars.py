"""Synthetic SEM images with scale bars and labels of known length (tests and benchmarks).

Text is rendered with Pillow from TrueType fonts: matplotlib's bundled fonts
(always present where the package is installed) or any font file given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def mpl_font(name: str) -> str:
    """Path of a font bundled with matplotlib (e.g. ``"DejaVuSans.ttf"``, ``"STIXGeneral.ttf"``)."""
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name)


@dataclass
class Truth:
    pixel_size: float  # nm per pixel of the image
    bar_px: int  # bar length drawn (between tick centres for ticks)
    value: float
    unit: str  # normalised: nm, µm, mm
    label: str
    location: str  # band | image
    field_width: bool


_NICE = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500)
_NM = {"nm": 1.0, "µm": 1e3, "um": 1e3, "mm": 1e6}


def texture(rng, h: int, w: int, lo: int = 40, hi: int = 215) -> np.ndarray:
    """A particle-like SEM texture, grey values within ``[lo, hi]``."""
    from scipy import ndimage as ndi

    img = ndi.gaussian_filter(rng.normal(size=(h, w)), 6)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(int(rng.integers(10, 40))):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, 40)
        img += 1.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    img += 0.15 * rng.normal(size=(h, w))
    img = (img - img.min()) / (np.ptp(img) + 1e-9)
    return (lo + (hi - lo) * img).astype(np.uint8)


def _label_for(rng, pixel_size: float, w: int):
    """A round label whose bar is 40 px to 0.3 of the width, or None."""
    options = []
    for unit in ("nm", "µm", "mm"):
        for v in _NICE + (0.5, 0.2, 0.1, 1.5, 2.5):
            length = v * _NM[unit] / pixel_size
            if 40 <= length <= 0.3 * w and not (unit == "nm" and v >= 1000):
                options.append((v, unit))
    if not options:
        return None
    return options[int(rng.integers(len(options)))]


def _fmt(v: float) -> str:
    return f"{v:g}"


def draw_bar(
    draw: ImageDraw.ImageDraw,
    x0: int,
    y0: int,
    length: int,
    style: str,
    color: int,
    thick: int,
) -> tuple:
    """Draw a bar whose length (tick centre to tick centre for 'ticks') is ``length``."""
    if style == "ticks":
        t = max(thick, 2)
        tick_h = 4 * t + 6
        # ticks t wide centred on x0 and x0+length
        a = x0 - t // 2
        b = x0 + length - t // 2
        draw.rectangle([a, y0, a + t - 1, y0 + tick_h - 1], fill=color)
        draw.rectangle([b, y0, b + t - 1, y0 + tick_h - 1], fill=color)
        mid = y0 + tick_h // 2 - t // 2
        draw.rectangle([a, mid, b + t - 1, mid + t - 1], fill=color)
        return a, y0, b + t, y0 + tick_h
    h = thick if style == "line" else max(3 * thick, 6)
    draw.rectangle([x0, y0, x0 + length - 1, y0 + h - 1], fill=color)
    return x0, y0, x0 + length, y0 + h


def make_image(
    rng,
    font: str,
    *,
    text_px: int = 16,
    location: str = "band",
    polarity: str = "bright",
    style: str = "ticks",
    unit_text: str | None = None,
    space: bool = True,
    field_width: str | None = None,
    antialias: bool = True,
    size: tuple[int, int] = (480, 640),
    pixel_size: float | None = None,
    panel: bool = False,
    corner: str | None = None,
    field_width_scale: float = 1.0,
) -> tuple[np.ndarray, Truth]:
    """One synthetic micrograph with a scale bar and its label.

    ``location`` "band" adds an info band below the image (``polarity``
    "bright" = light text on a black band); "image" draws bar and label on
    the image in a corner (``polarity`` bright or dark ink, optionally on a
    ``panel``). ``field_width`` "zeiss" or "fei" prints the field width in
    the band.
    """
    h, w = size
    for _ in range(50):
        p = float(pixel_size or np.exp(rng.uniform(np.log(0.3), np.log(400))))
        choice = _label_for(rng, p, w)
        if choice:
            break
    else:
        raise RuntimeError("no label fits")
    value, unit = choice
    shown_unit = unit_text or unit
    if unit == "µm" and unit_text is None and rng.random() < 0.3:
        shown_unit = "um"
    if unit != "µm" or shown_unit not in ("um", "µm"):
        shown_unit = unit  # unit_text only chooses how µm is spelt
    label = f"{_fmt(value)}{' ' if space else ''}{shown_unit}"
    bar_px = round(value * _NM[unit] / p)
    fnt = ImageFont.truetype(font, text_px)
    img = texture(rng, h, w)
    ink = 255 if polarity == "bright" else 0
    thick = max(1, text_px // 8)
    if location == "band":
        bh = max(int(3.2 * text_px) + 8 * thick + 12, 40)
        band = Image.new("L", (w, bh), 255 - ink)
        d = ImageDraw.Draw(band)
        d.fontmode = "L" if antialias else "1"
        x_bar = int(w - bar_px - 30 - rng.integers(0, max(w // 6, 1)))
        # label above the bar, centred
        lb = d.textbbox((0, 0), label, font=fnt)
        lx = x_bar + bar_px // 2 - (lb[2] - lb[0]) // 2 - lb[0]
        d.text((lx, 4 - lb[1]), label, fill=ink, font=fnt)
        draw_bar(d, x_bar, 4 + (lb[3] - lb[1]) + 4, bar_px, style, ink, thick)
        words = ["EHT = 5.00 kV", "WD = 4.1 mm", "Mag = 20.00 K X", "Signal A = SE2"]
        x = 8
        fw_text = None
        fw = p * w * field_width_scale  # a scale != 1 prints a wrong field width
        if field_width == "zeiss":
            fw_text = f"Width = {fw / 1e3:.4g} µm" if fw >= 1e3 else f"Width = {fw:.4g} nm"
        elif field_width == "fei":
            fw_text = f"HFW {fw / 1e3:.4g} µm" if fw >= 1e3 else f"HFW {fw:.4g} nm"
        if fw_text:
            words.insert(int(rng.integers(0, 3)), fw_text)
        row = 0
        drawn = []
        for word in words:
            wb = d.textbbox((0, 0), word, font=fnt)
            if x + wb[2] - wb[0] > x_bar - 3 * text_px:
                if row == 1:
                    break
                row, x = 1, 8
            d.text(
                (x - wb[0], 6 + row * int(1.6 * text_px) - wb[1]),
                word,
                fill=ink,
                font=fnt,
            )
            x += wb[2] - wb[0] + 2 * text_px
            drawn.append(word)
        out = np.concatenate([img, np.asarray(band)], axis=0)
        return out, Truth(p, bar_px, value, unit, label, "band", fw_text in drawn)
    pil = Image.fromarray(img)
    d = ImageDraw.Draw(pil)
    d.fontmode = "L" if antialias else "1"
    lb = d.textbbox((0, 0), label, font=fnt)
    lw, lh = lb[2] - lb[0], lb[3] - lb[1]
    block_w = max(bar_px, lw) + 8
    block_h = lh + 6 + 5 * thick + 12
    corner = corner or ["br", "bl", "tr", "tl"][int(rng.integers(4))]
    m = 12
    bx = w - block_w - m if corner[1] == "r" else m
    by = h - block_h - m if corner[0] == "b" else m
    if panel:
        d.rectangle([bx - 6, by - 6, bx + block_w + 6, by + block_h + 6], fill=255 - ink)
    label_above = rng.random() < 0.7
    cx = bx + block_w // 2
    if label_above:
        d.text((cx - lw // 2 - lb[0], by - lb[1]), label, fill=ink, font=fnt)
        draw_bar(d, cx - bar_px // 2, by + lh + 6, bar_px, style, ink, thick)
    else:
        bb = draw_bar(d, cx - bar_px // 2, by, bar_px, style, ink, thick)
        d.text((cx - lw // 2 - lb[0], bb[3] + 5 - lb[1]), label, fill=ink, font=fnt)
    return np.asarray(pil), Truth(p, bar_px, value, unit, label, "image", False)


def band_with_label(
    font: str,
    label: str,
    *,
    text_px: int = 13,
    bar_px: int = 120,
    faint_point: float | None = None,
    seed: int = 0,
) -> np.ndarray:
    """A micrograph with a black info band holding ``label`` in white above a white bar.

    With ``faint_point`` (0-1) the label's decimal point is drawn at that
    fraction of the ink: a point that anti-aliasing or a small font has all
    but lost, so a threshold drops it and "1.5" reads as "15".
    """
    rng = np.random.default_rng(seed)
    img = texture(rng, 300, 480)
    band = Image.new("L", (480, 3 * text_px + 30), 0)
    d = ImageDraw.Draw(band)
    fnt = ImageFont.truetype(font, text_px)
    lb = d.textbbox((0, 0), label, font=fnt)
    x0, y0 = 300, 6
    d.text((x0 - lb[0], y0 - lb[1]), label, fill=255, font=fnt)
    if faint_point is not None and "." in label:
        head = label[: label.index(".")]
        a = x0 - lb[0] + int(np.floor(d.textlength(head, font=fnt)))
        b = x0 - lb[0] + int(np.ceil(d.textlength(head + ".", font=fnt)))
        arr = np.asarray(band).copy()
        arr[:, a:b] = (arr[:, a:b] * faint_point).astype(np.uint8)
        band = Image.fromarray(arr)
        d = ImageDraw.Draw(band)
    draw_bar(d, x0, y0 + lb[3] - lb[1] + 6, bar_px, "line", 255, 2)
    return np.concatenate([img, np.asarray(band)], axis=0)
