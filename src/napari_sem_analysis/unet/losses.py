"""Training objective and metrics: class weights, cross-entropy + soft Dice, IoU from a confusion matrix."""

from __future__ import annotations

import numpy as np

from .._validation import SEMAnalysisError

_IGNORE = -100  # target value ignored by the losses and metrics


def _class_weights(spec, masks, n_classes: int, max_ratio: float = 50.0) -> list[float] | None:
    """Cross-entropy class weights: None, "auto" (inverse square root of frequency) or explicit values.

    "auto" counts the classes in the training masks (ignored pixels left
    out), weights each by ``1 / sqrt(frequency)`` (absent classes get the
    largest weight), limits the largest/smallest ratio to ``max_ratio`` and
    scales the weights so that their pixel-weighted mean is 1 (the loss keeps
    its scale). Rare classes such as thin cracks (0.3 % of the pixels) are
    otherwise almost invisible to the cross-entropy term.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec.strip().lower() in ("none", ""):
            return None
        if spec.strip().lower() != "auto":
            raise SEMAnalysisError(f"class_weights must be None, 'auto' or one weight per class, got {spec!r}")
        counts = np.zeros(n_classes, dtype=np.float64)
        for m in masks:
            v = m[m != _IGNORE]  # ignored pixels left out
            v = np.where(v >= n_classes, v - n_classes, v)  # weighted codes count as their class
            counts += np.bincount(v, minlength=n_classes)[:n_classes]
        if counts.sum() == 0:
            return None
        freq = counts / counts.sum()
        present = freq > 0
        w = np.ones(n_classes)
        w[present] = 1.0 / np.sqrt(freq[present])
        w = np.minimum(w, w[present].min() * max_ratio)
        w[~present] = w[present].max()
        w /= float(np.sum(freq * w))
        return [float(v) for v in w]
    w = [float(v) for v in spec]
    if len(w) != n_classes or not all(np.isfinite(v) and v >= 0 for v in w) or not any(v > 0 for v in w):
        raise SEMAnalysisError(f"class_weights needs {n_classes} non-negative values (not all 0), got {list(spec)}")
    return w


def _fold_heavy(target, n_classes: int):
    """Targets with the weighted codes (``class + n_classes``) read as their class, and where they were."""
    import torch

    heavy = target >= n_classes
    return torch.where(heavy, target - n_classes, target), heavy


def _dice_ce_loss(logits, target, n_classes: int, dice_weight: float, class_weights=None, heavy_weight: float = 1.0):
    """Cross-entropy (+ soft Dice) over the known pixels.

    A target value ``c + n_classes`` means class ``c`` with its cross-entropy
    weighted by ``heavy_weight`` (e.g. the pixels where two objects touch);
    the weighted mean is normalised by the sum of the weights, so the loss
    keeps its scale.
    """
    import torch
    import torch.nn.functional as F

    target, heavy = _fold_heavy(target, n_classes)
    if heavy_weight != 1.0 and bool(heavy.any()):
        pix = F.cross_entropy(logits, target, weight=class_weights, ignore_index=_IGNORE, reduction="none")
        boost = torch.where(heavy, torch.full_like(pix, float(heavy_weight)), torch.ones_like(pix))
        valid_t = target != _IGNORE
        base = class_weights[target.clamp_min(0)] if class_weights is not None else torch.ones_like(pix)
        norm = (base * boost * valid_t).sum().clamp_min(1e-12)
        ce = (pix * boost).sum() / norm
    else:
        ce = F.cross_entropy(logits, target, weight=class_weights, ignore_index=_IGNORE)
    if dice_weight <= 0:
        return ce
    valid = (target != _IGNORE).unsqueeze(1).float()
    prob = torch.softmax(logits, dim=1) * valid
    onehot = F.one_hot(target.clamp_min(0), n_classes).permute(0, 3, 1, 2).float() * valid
    dims = (0, 2, 3)
    inter = (prob * onehot).sum(dims)
    card = prob.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    dice = (2 * inter + 1.0) / (card + 1.0)
    if present.any():
        dice_loss = 1.0 - dice[present].mean()
    else:
        dice_loss = logits.sum() * 0.0
    return ce + dice_weight * dice_loss


def _iou_from_confusion(cm):
    diag = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - diag
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, diag / np.maximum(union, 1), np.nan)
    return iou
