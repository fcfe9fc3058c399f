"""A small offline reader for the text of scale-bar labels and info bands.

SEM info bands and scale-bar labels use few characters (digits, ``.``, ``,``,
``=``, ``:``, ``µ``, unit letters, the words ``Width``, ``HFW``, ``Mag``...)
printed horizontally in one plain font. This module reads such text from a
binary mask without any OCR engine or downloaded model:

1. connected components of the mask are grouped into text *chunks*
   (components that share a line and lie close together), and components
   stacked in one column (``=``, ``:``, ``i``) are merged into glyphs;
2. each glyph is described by its shape (the crop resampled to 12x12) and by
   its size and position relative to the chunk's line (which tells ``o``
   from ``O``, ``.`` from ``'``, ``µ`` from ``u``);
3. the glyph is classified by its nearest neighbour among templates rendered
   from several free fonts (DejaVu, Liberation, Noto) at several sizes,
   stored in ``data/glyph_templates.npz`` (built by
   ``tools/build_glyph_templates.py``; no font is needed at run time).

Each glyph comes with a margin (how much nearer the best class is than the
nearest class that means something else), from which the caller derives a
confidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

import numpy as np

SHAPE = 12  # glyph images are resampled to SHAPE x SHAPE
N_GEOM = 4  # geometry features: log aspect, height, top, bottom (line units)
GEOM_WEIGHT = 3.0

# characters that a parser may treat as the same (case, 0/O, 1/l/I): their
# distance does not count against a reading's margin
_EQUIV = [
    set("0Oo"),
    set("1lI|i"),
    set("xX"),
    set("cC"),
    set("sS"),
    set("vV"),
    set("wW"),
    set("zZ"),
    set("kK"),
    set("pP"),
    set("uUµ"),
    set(".,"),
    set("5S"),
]
_EQUIV_OF: dict[str, set] = {}
for _group in _EQUIV:
    for _c in _group:
        _EQUIV_OF.setdefault(_c, set()).update(_group)


@dataclass
class Glyph:
    """One character read: its box ``(row0, col0, row1, col1)`` (end exclusive)."""

    box: tuple[int, int, int, int]
    char: str = "?"
    margin: float = 0.0
    distance: float = np.inf
    second: str = "?"  # the nearest class that does not mean the same as ``char``
    # a wide glyph kept whole: its best split into two glyphs (two touching digits, ``00`` read
    # ``m``), for a caller whose grammar the whole glyph does not fit; None when there is none
    alt: list[Glyph] | None = None
    cut: bool = False  # cut out of a wider glyph by a split (part of its shape may be lost)


@dataclass
class TextChunk:
    """A run of glyphs on one line, close together (a word group / phrase)."""

    glyphs: list[Glyph] = field(default_factory=list)
    baseline: float = 0.0
    height: float = 0.0

    @property
    def box(self) -> tuple[int, int, int, int]:
        b = np.array([g.box for g in self.glyphs])
        return (
            int(b[:, 0].min()),
            int(b[:, 1].min()),
            int(b[:, 2].max()),
            int(b[:, 3].max()),
        )

    @property
    def text(self) -> str:
        """The characters read, with a space where the gap is a word gap."""
        out = []
        for i, g in enumerate(self.glyphs):
            if i:
                gap = g.box[1] - self.glyphs[i - 1].box[3]
                if gap > 0.3 * self.height:
                    out.append(" ")
            out.append(g.char)
        return "".join(out)


# --------------------------------------------------------------------------
# segmentation
# --------------------------------------------------------------------------


def _components(mask: np.ndarray, max_components: int = 5000) -> list[tuple[int, int, int, int, int]]:
    """Boxes (r0, c0, r1, c1, label) of the 8-connected components of ``mask``."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    if n == 0 or n > max_components:
        return []
    out = []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        out.append((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop, i))
    return out


def group_chunks(boxes: list[tuple[int, int, int, int]], *, gap_factor: float = 1.2) -> list[list[int]]:
    """Group component boxes into chunks: same line and horizontally close.

    Two components join when their rows overlap by at least half the smaller
    height and the horizontal gap between them is below ``gap_factor`` times
    the larger height. Returns lists of indices into ``boxes``.
    """
    n = len(boxes)
    if n == 0:
        return []
    b = np.asarray(boxes, dtype=np.float64)
    r0, c0, r1, c1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    h = r1 - r0
    overlap = np.minimum(r1[:, None], r1[None, :]) - np.maximum(r0[:, None], r0[None, :])
    vert = overlap >= 0.5 * np.minimum(h[:, None], h[None, :])
    gap = np.maximum(c0[:, None], c0[None, :]) - np.minimum(c1[:, None], c1[None, :])
    near = gap <= gap_factor * np.maximum(h[:, None], h[None, :])
    adj = vert & near
    # union-find over the adjacency
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    ii, jj = np.nonzero(np.triu(adj, 1))
    for i, j in zip(ii.tolist(), jj.tolist()):
        a, c = find(i), find(j)
        if a != c:
            parent[a] = c
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _merge_columns(
    boxes: list[tuple[int, int, int, int]],
) -> list[tuple[int, int, int, int]]:
    """Merge boxes stacked in one column (``=``, ``:``, ``i``) into one, left to right."""
    order = sorted(boxes, key=lambda b: (b[1], b[0]))
    merged: list[list[int]] = []
    for b in order:
        if merged:
            m = merged[-1]
            ov = min(m[3], b[3]) - max(m[1], b[1])
            narrow = min(m[3] - m[1], b[3] - b[1])
            vert_ov = min(m[2], b[2]) - max(m[0], b[0])
            if ov >= 0.5 * narrow and vert_ov <= 0.5 * min(m[2] - m[0], b[2] - b[0]):
                merged[-1] = [
                    min(m[0], b[0]),
                    min(m[1], b[1]),
                    max(m[2], b[2]),
                    max(m[3], b[3]),
                ]
                continue
        merged.append(list(b))
    return [tuple(m) for m in merged]


def _line_metrics(boxes: list[tuple[int, int, int, int]]) -> tuple[float, float]:
    """(top, baseline) of a line of glyph boxes: medians over its tall glyphs."""
    b = np.asarray(boxes, dtype=np.float64)
    h = b[:, 2] - b[:, 0]
    tall = h >= 0.6 * h.max()
    baseline = float(np.median(b[tall, 2]))
    top = float(np.min(b[tall, 0]))
    if baseline - top < 2:
        top = baseline - max(h.max(), 2.0)
    return top, baseline


def glyph_features(mask: np.ndarray, box, top: float, baseline: float) -> np.ndarray:
    """Feature vector of the glyph in ``mask[box]`` on a line (top, baseline)."""
    import cv2

    r0, c0, r1, c1 = box
    crop = mask[r0:r1, c0:c1].astype(np.float32)
    big = max(crop.shape)
    # pad the short side to a square: keeps thin glyphs ('1', '.', '-') thin
    pad_r = (big - crop.shape[0]) // 2
    pad_c = (big - crop.shape[1]) // 2
    sq = np.zeros((big, big), np.float32)
    sq[pad_r : pad_r + crop.shape[0], pad_c : pad_c + crop.shape[1]] = crop
    interp = cv2.INTER_AREA if big >= SHAPE else cv2.INTER_LINEAR
    img = cv2.resize(sq, (SHAPE, SHAPE), interpolation=interp)
    if img.max() > 0:
        img = img / img.max()
    H = max(baseline - top, 1.0)
    h, w = r1 - r0, c1 - c0
    geom = np.array(
        [np.log(max(w, 1) / max(h, 1)) / 2, h / H, (r0 - top) / H, (r1 - baseline) / H],
        dtype=np.float32,
    )
    return np.concatenate([img.ravel(), GEOM_WEIGHT * geom])


def segment(
    mask: np.ndarray,
    *,
    exclude=None,
    gap_factor: float = 1.2,
    keep=None,
    max_components: int = 5000,
) -> list[tuple[list, float, float, np.ndarray]]:
    """Chunks of glyph boxes in a binary text mask.

    Returns a list of ``(glyph_boxes, top, baseline, features)`` per chunk.
    ``exclude`` is a list of component boxes (bars, frames) to leave out;
    ``keep(box, n_glyphs)`` may reject a chunk before its glyphs are described.
    """
    mask = np.asarray(mask, bool)
    comps = _components(mask, max_components=max_components)
    boxes = []
    for r0, c0, r1, c1, _ in comps:
        if exclude and any(r0 >= e[0] and c0 >= e[1] and r1 <= e[2] and c1 <= e[3] for e in exclude):
            continue
        h, w = r1 - r0, c1 - c0
        if h > 0.5 * mask.shape[0] + 40 or w > 0.5 * mask.shape[1] + 40 or h > 200:
            continue  # no character is that large
        boxes.append((r0, c0, r1, c1))
    out = []
    for idx in group_chunks(boxes, gap_factor=gap_factor):
        gboxes = _merge_columns([boxes[i] for i in idx])
        if len(gboxes) > 200:
            continue
        if keep is not None:
            b = np.asarray(gboxes)
            cbox = (
                int(b[:, 0].min()),
                int(b[:, 1].min()),
                int(b[:, 2].max()),
                int(b[:, 3].max()),
            )
            if not keep(cbox, len(gboxes)):
                continue
        top, baseline = _line_metrics(gboxes)
        feats = np.stack([glyph_features(mask, b, top, baseline) for b in gboxes])
        out.append((gboxes, top, baseline, feats))
    return out


# --------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _templates() -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Templates sorted by class: features, squared norms, classes, class starts, equivalence mask."""
    ref = resources.files("napari_sem_analysis").joinpath("data", "glyph_templates.npz")
    with ref.open("rb") as fh:
        z = np.load(fh, allow_pickle=False)
        feats = z["features"].astype(np.float32) / np.float32(z["scale"])
        chars = np.array([str(c) for c in z["chars"]])
    order = np.argsort(chars, kind="stable")
    feats, chars = np.ascontiguousarray(feats[order]), chars[order]
    classes, starts = np.unique(chars, return_index=True)
    classes = [str(c) for c in classes]
    same = np.array([[b in _EQUIV_OF.get(a, {a}) for b in classes] for a in classes])
    return feats, (feats * feats).sum(1), classes, starts, same


def classify(features: np.ndarray) -> list[tuple[str, float, float, str]]:
    """Nearest-template class of each glyph: ``(char, margin, distance, second)``.

    ``margin`` is ``1 - d_best / d_other`` with ``d_other`` the distance to the
    nearest template of a class that does not mean the same (see ``_EQUIV``),
    ``second`` that class.
    """
    templ, norms, classes, starts, same = _templates()
    x = np.asarray(features, np.float32)
    d2 = (x * x).sum(1)[:, None] + norms[None, :] - 2 * x @ templ.T
    per_class = np.sqrt(np.maximum(np.minimum.reduceat(d2, starts, axis=1), 0))
    best = per_class.argmin(1)
    out = []
    for i, b in enumerate(best.tolist()):
        d1 = float(per_class[i, b])
        differ = np.flatnonzero(~same[b])
        others = per_class[i][differ]
        other = float(others.min()) if others.size else np.inf
        second = classes[int(differ[others.argmin()])] if others.size else "?"
        margin = 1.0 - d1 / other if np.isfinite(other) and other > 0 else 1.0
        out.append((classes[b], float(margin), d1, second))
    return out


def read_text(mask: np.ndarray, **segment_options) -> list[TextChunk]:
    """Read the text in a binary mask (True = ink) as chunks of glyphs.

    ``segment_options`` (``exclude``, ``gap_factor``, ``keep``, ``max_components``) are those of
    :func:`segment`.
    """
    chunks = []
    segs = segment(mask, **segment_options)
    # one nearest-template search for every glyph of every chunk (the template matrix is large:
    # reading it once instead of once per chunk is most of the time saved)
    all_res = classify(np.concatenate([f for *_, f in segs])) if segs else []
    start = 0
    for gboxes, top, baseline, feats in segs:
        res = all_res[start : start + len(feats)]
        start += len(feats)
        glyphs = [Glyph(tuple(int(v) for v in b), c, m, d, s) for b, (c, m, d, s) in zip(gboxes, res)]
        height = baseline - top
        out: list[Glyph] = []
        for g in glyphs:
            if g.box[3] - g.box[1] > 0.7 * height:
                # a sure wide glyph gets its split as ``alt`` only after a digit or first on its line
                # (where a number's digits may touch); elsewhere it costs time and serves nothing
                number = not out or out[-1].char in _NUMBER_CHARS
                out += _split_touching(mask, g, top, baseline, want_alt=number)
            else:
                out.append(g)
        chunks.append(TextChunk(out, baseline, height))
    return chunks


_NUMBER_CHARS = set("0123456789OolI.,")


def _split_touching(
    mask: np.ndarray, glyph: Glyph, top: float, baseline: float, *, want_alt: bool = True
) -> list[Glyph]:
    """Two glyphs that touch (tight or serif fonts: "nm", "00") read as one wide glyph: split
    it at the thinnest column near its middle when both halves read more surely than the whole.
    A glyph kept whole gets its best split as ``alt`` (a sure glyph, margin >= 0.15, is never
    split here: ``00`` of a serif font read ``m`` is one; a caller whose grammar wants digits
    there may try ``alt``; not computed for a sure glyph without ``want_alt``)."""
    if glyph.margin >= 0.15 and not want_alt:
        return [glyph]
    r0, c0, r1, c1 = glyph.box
    crop = mask[r0:r1, c0:c1]
    w = c1 - c0
    height = max(baseline - top, 1.0)
    lo, hi = int(0.25 * w), int(0.75 * w)
    if hi - lo < 1:
        return [glyph]
    cols = crop.sum(0)[lo:hi]
    splits = []
    # the thinnest columns, and the middle (two touching digits of one width: ``00``, whose
    # thinnest columns run through the holes)
    cuts = (lo + np.flatnonzero(cols == cols.min()))[:4].tolist()
    cuts += [c for c in (w // 2, (w + 1) // 2) if c not in cuts]
    for cut in cuts:
        parts = []
        for a, b in ((0, cut), (cut, w)):
            sub = crop[:, a:b]
            rows = np.flatnonzero(sub.any(1))
            if rows.size == 0 or b - a < 0.2 * height:
                break
            parts.append((r0 + int(rows[0]), c0 + a, r0 + int(rows[-1]) + 1, c0 + b))
        if len(parts) == 2:
            splits.append(parts)
    best = None
    if splits:  # all candidate cuts in one template search
        boxes = [box for parts in splits for box in parts]
        res_all = classify(np.stack([glyph_features(mask, box, top, baseline) for box in boxes]))
        for k, parts in enumerate(splits):
            res = res_all[2 * k : 2 * k + 2]
            score = min(r[1] for r in res)
            if best is None or score > best[0]:
                best = (score, [Glyph(box, c, m, d, s, cut=True) for box, (c, m, d, s) in zip(parts, res)])
    if best is not None and glyph.margin < 0.15 and best[0] > glyph.margin + 0.05:
        return best[1]
    if best is not None:
        glyph.alt = best[1]
    return [glyph]
