"""Scale-bar bars: find bars (lines, lines with end ticks, filled boxes) in a binary mask,
drop strokes of text, and pair a bar with a label (used by :mod:`napari_sem_analysis.scalebar`)."""

from __future__ import annotations

import numpy as np


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
