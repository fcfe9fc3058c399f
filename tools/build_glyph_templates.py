"""Build the glyph templates of the scale-bar text reader.

    python tools/build_glyph_templates.py [--out src/napari_sem_analysis/data/glyph_templates.npz]

Renders every character the reader knows in several free fonts (DejaVu,
Liberation, Noto, STIX: their licenses allow redistributing rendered glyphs), sizes
and with and without anti-aliasing, segments each rendering with the reader's
own segmentation (so the line metrics match those at run time), and stores the
glyph features with their characters. Small anti-aliased label characters are
also rendered cut at 0.7 of the ink (thin strokes, as the reader sees text
drawn on the image); renderings that give the same features twice are kept once. The fonts are needed only here (Debian:
fonts-dejavu-core fonts-liberation fonts-noto-core); the package ships the .npz.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_sem_analysis import _glyphs

CHARS = "0123456789.,=:-()/%µ" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "abcdefghijklmnopqrstuvwxyz"
FONT_DIR = Path("/usr/share/fonts/truetype")
TRAIN_FONTS = [
    "dejavu/DejaVuSans.ttf",
    "dejavu/DejaVuSans-Bold.ttf",
    "dejavu/DejaVuSansCondensed.ttf",
    "dejavu/DejaVuSerif.ttf",
    "dejavu/DejaVuSansMono.ttf",
    "liberation/LiberationSans-Regular.ttf",
    "liberation/LiberationSans-Bold.ttf",
    "liberation/LiberationSansNarrow-Regular.ttf",
    "liberation/LiberationSerif-Regular.ttf",
    "liberation/LiberationMono-Regular.ttf",
    "noto/NotoSans-Regular.ttf",
    "noto/NotoSans-Bold.ttf",
    "noto/NotoSerif-Regular.ttf",
    "matplotlib:STIXGeneral.ttf",
]
SIZES = (11, 14, 18, 24, 34)
# small anti-aliased text is also stored as the reader sees it when the grey levels are cut above
# half-way (thin strokes, as of a label drawn on the image), for the characters of scale-bar
# labels only (thin renderings of other letters look like the stems of a broken 'm')
CUTS = (0.7,)
CUT_SIZES = (11, 12, 13, 15, 16)
CUT_CHARS = "0123456789.nmuµ"
# each character between two digits, as in "20 nm" or "= 7.520 µm"
CONTEXTS = ("8{} 8", "8 {}4")


def render(text: str, font: ImageFont.FreeTypeFont, antialias: bool, cut: float = 0.5) -> np.ndarray:
    left, top, right, bottom = font.getbbox(text)
    img = Image.new("L", (right - left + 20, bottom - top + 20), 0)
    draw = ImageDraw.Draw(img)
    draw.fontmode = "L" if antialias else "1"
    draw.text((10 - left, 10 - top), text, fill=255, font=font)
    return np.asarray(img) > cut * 255


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out",
        default=str(REPO / "src" / "napari_sem_analysis" / "data" / "glyph_templates.npz"),
    )
    args = parser.parse_args(argv)
    feats, chars, skipped = [], [], 0
    for name in TRAIN_FONTS:
        if name.startswith("matplotlib:"):
            import matplotlib

            path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name.split(":", 1)[1]
        else:
            path = FONT_DIR / name
        if not path.is_file():
            print(f"missing font {path}: install fonts-dejavu-core fonts-liberation fonts-noto-core")
            return 1
        variants = [(size, aa, 0.5) for size in SIZES for aa in (True, False)]
        variants += [(size, True, cut) for size in CUT_SIZES for cut in CUTS if (size, True, cut) not in variants]
        for size, aa, cut in variants:
            font = ImageFont.truetype(str(path), size)
            for ch in CHARS if cut == 0.5 else CUT_CHARS:
                for ctx in CONTEXTS:
                    text = ctx.format(ch)
                    chunks = _glyphs.segment(render(text, font, aa, cut))
                    if len(chunks) != 1 or len(chunks[0][0]) != 3:
                        skipped += 1
                        continue
                    _boxes, _top, _base, f = chunks[0]
                    feats.append(f[1])
                    chars.append(ch)
    feats = np.asarray(feats, np.float32)
    scale = 2000.0
    q = np.clip(np.round(feats * scale), -32768, 32767).astype(np.int16)
    # the same glyph rendered twice (a cut that changes nothing): keep one
    _, keep = np.unique(
        np.concatenate([q, np.array([[ord(c)] for c in chars], np.int16)], 1), axis=0, return_index=True
    )
    keep = np.sort(keep)
    print(f"{len(chars) - len(keep)} duplicate renderings dropped")
    q, chars = q[keep], [chars[i] for i in keep]
    np.savez_compressed(args.out, features=q, chars=np.array(chars), scale=np.float32(scale))
    size = Path(args.out).stat().st_size
    print(f"{len(chars)} templates ({skipped} renderings skipped), {size / 1e3:.0f} kB -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
