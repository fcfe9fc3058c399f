"""Instance segmentation metrics: predicted objects against reference objects.

What a particle or pore analysis reports is a count and a size
distribution, and both depend on every object being found once and whole.
:func:`evaluate_instances` compares a predicted label image with a reference
(hand-annotated) one object by object: objects are matched by their
intersection over union (IoU) and the usual instance scores (panoptic
quality, F1, average precision) are reported beside the errors of what the
user takes home: the count and the D10 / D50 / D90 of the equivalent
diameter.

The matching uses a sparse contingency table (one ``np.unique`` over the
pair codes of the overlapping pixels), so it is linear in the number of
pixels and needs no dense (n_pred x n_true) matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._validation import SEMAnalysisError, check_labels

#: IoU thresholds of the ``ap`` score (0.50, 0.55, ..., 0.95, as in COCO)
AP_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2))


def _as_labels(arr, name: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.dtype == bool:
        # a binary mask: its 4-connected components are the objects
        import cv2

        _, lab = cv2.connectedComponents(np.ascontiguousarray(a).view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
        return lab
    a = check_labels(a, name=name, ndim=(2, 3))
    return a


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered 1..n (0 stays 0), and n."""
    ids, inv = np.unique(labels.ravel(), return_inverse=True)
    if ids[0] != 0:
        inv = inv + 1
        n = len(ids)
    else:
        n = len(ids) - 1
    return inv.reshape(labels.shape).astype(np.int64), n


def _pairs(pred: np.ndarray, truth: np.ndarray):
    """Areas of both label sets and the sparse table of overlaps.

    Returns ``(area_pred, area_true, p, t, inter)``: areas indexed by the
    relabelled ids (index 0 unused), and for every pair of overlapping
    objects their ids and the number of shared pixels.
    """
    p, n_p = _relabel(pred)
    t, n_t = _relabel(truth)
    area_p = np.bincount(p.ravel(), minlength=n_p + 1)
    area_t = np.bincount(t.ravel(), minlength=n_t + 1)
    both = (p > 0) & (t > 0)
    code = t[both] * (n_p + 1) + p[both]
    codes, inter = np.unique(code, return_counts=True)
    return area_p, area_t, codes % (n_p + 1), codes // (n_p + 1), inter


def _match(ip: np.ndarray, it: np.ndarray, iou: np.ndarray, thr: float) -> np.ndarray:
    """Indices of the matched pairs at IoU >= ``thr`` (one-to-one).

    For ``thr`` > 0.5 a pair with IoU above ``thr`` is the only candidate of
    both its objects, so the matching is unique (and optimal). At exactly
    0.5 two pairs can tie; they are resolved greedily by IoU.
    """
    sel = np.flatnonzero(iou >= thr - 1e-12)
    if len(sel) == 0:
        return sel
    sel = sel[np.argsort(-iou[sel], kind="stable")]
    _, first_p = np.unique(ip[sel], return_index=True)
    sel = sel[np.sort(first_p)]
    _, first_t = np.unique(it[sel], return_index=True)
    return sel[np.sort(first_t)]


def _diameters(area: np.ndarray) -> np.ndarray:
    a = area[1:].astype(np.float64)
    return np.sqrt(4.0 * a[a > 0] / np.pi)


def _quantiles(d: np.ndarray) -> tuple[float, float, float]:
    if len(d) == 0:
        return (np.nan, np.nan, np.nan)
    return tuple(float(v) for v in np.quantile(d, (0.1, 0.5, 0.9)))


def _rel(a: float, b: float) -> float:
    if not np.isfinite(a) or not np.isfinite(b) or b == 0:
        return float("nan")
    return (a - b) / b


def _mean_abs(values) -> float:
    v = np.abs(np.asarray(values, np.float64))
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")


def _stats(pieces: list[tuple], pixel_size: float | None) -> dict:
    """Scores from the matched pairs of one or several images (pooled)."""
    n_pred = sum(len(ap) - 1 for ap, *_ in pieces)
    n_true = sum(len(at) - 1 for _, at, *_ in pieces)
    tp = {thr: 0 for thr in AP_THRESHOLDS}
    iou_sum = 0.0
    inter_px = 0
    fg_p = fg_t = 0
    d_pred, d_true = [], []
    for area_p, area_t, ip, it, inter in pieces:
        iou = inter / (area_p[ip] + area_t[it] - inter)
        for thr in AP_THRESHOLDS:
            m = _match(ip, it, iou, thr)
            tp[thr] += len(m)
            if thr == 0.5:
                iou_sum += float(iou[m].sum())
        inter_px += int(inter.sum())
        fg_p += int(area_p[1:].sum())
        fg_t += int(area_t[1:].sum())
        d_pred.append(_diameters(area_p))
        d_true.append(_diameters(area_t))
    tp50 = tp[0.5]
    fp, fn = n_pred - tp50, n_true - tp50
    precision = tp50 / n_pred if n_pred else (1.0 if n_true == 0 else 0.0)
    recall = tp50 / n_true if n_true else (1.0 if n_pred == 0 else 0.0)
    denom = tp50 + 0.5 * fp + 0.5 * fn
    rq = tp50 / denom if denom else 1.0
    sq = iou_sum / tp50 if tp50 else (1.0 if denom == 0 else 0.0)

    def acc(t):
        d = n_pred + n_true - t
        return t / d if d else 1.0

    ps = 1.0 if pixel_size is None else float(pixel_size)
    qp = _quantiles(np.concatenate(d_pred)) if d_pred else (np.nan,) * 3
    qt = _quantiles(np.concatenate(d_true)) if d_true else (np.nan,) * 3
    out = {
        "pq": sq * rq,
        "sq": sq,
        "rq": rq,
        "precision": precision,
        "recall": recall,
        "f1": rq,
        "ap": float(np.mean([acc(tp[thr]) for thr in AP_THRESHOLDS])),
        "ap50": acc(tp50),
        "ap75": acc(tp[0.75]),
        "dice": 2.0 * inter_px / (fg_p + fg_t) if fg_p + fg_t else 1.0,
        "count_error": (n_pred - n_true) / n_true if n_true else float("nan"),
        "d10_error": _rel(qp[0], qt[0]),
        "d50_error": _rel(qp[1], qt[1]),
        "d90_error": _rel(qp[2], qt[2]),
        "n_pred": n_pred,
        "n_true": n_true,
        "tp": tp50,
        "fp": fp,
        "fn": fn,
    }
    for _name, q, key in (("pred", qp, "d{}_pred"), ("true", qt, "d{}_true")):
        for v, pct in zip(q, (10, 50, 90)):
            out[key.format(pct)] = v * ps
    return out


def _without_small(lab: np.ndarray, min_size: float) -> np.ndarray:
    """Objects smaller than ``min_size`` px set to background."""
    if min_size <= 0 or not lab.any():
        return lab
    flat = lab.ravel()
    ids, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    keep = (counts >= min_size) & (ids != 0)
    return np.where(keep[inverse], flat, 0).reshape(lab.shape).astype(lab.dtype, copy=False)


def _one(pred, truth, name="", min_size: float = 0) -> tuple:
    p = _as_labels(pred, f"pred{name}")
    t = _as_labels(truth, f"truth{name}")
    if p.shape != t.shape:
        raise SEMAnalysisError(f"pred{name} shape {p.shape} differs from truth{name} shape {t.shape}")
    if min_size > 0:
        p, t = _without_small(p, min_size), _without_small(t, min_size)
    return _pairs(p, t)


def evaluate_instances(pred, truth, *, pixel_size: float | None = None, min_size: float = 0) -> dict:
    """Compare predicted instances with reference instances.

    Objects are matched one-to-one by intersection over union (IoU); at the
    main threshold, IoU >= 0.5, each object has at most one partner whose
    IoU with it is above 0.5, so the matching is unique. Matched pairs are
    true positives (TP), unmatched predictions false positives (FP),
    unmatched reference objects false negatives (FN).

    Scores (all at IoU 0.5 unless said otherwise):

    * ``precision`` = TP / (TP + FP), ``recall`` = TP / (TP + FN),
      ``f1`` = ``rq`` = TP / (TP + FP/2 + FN/2) (recognition quality);
    * ``sq`` (segmentation quality) = mean IoU of the matched pairs,
      ``pq`` (panoptic quality) = ``sq`` x ``rq`` (Kirillov et al. 2019);
    * ``ap50`` = TP / (TP + FP + FN) at IoU 0.5, ``ap75`` the same at 0.75,
      and ``ap`` its mean over the IoU thresholds 0.50, 0.55, ..., 0.95.
      This is the "average precision" of the cell / nucleus segmentation
      literature (Caicedo et al. 2019, StarDist's ``matching`` "accuracy",
      Cellpose), for label images without confidence scores; it is not
      COCO's area under a precision-recall curve, which needs a score per
      object. It is always lower than ``f1``: ap50 = f1 / (2 - f1);
    * ``dice``: pixel Dice of the foregrounds (objects vs background);
    * ``count_error`` = (N_pred - N_true) / N_true (signed, relative);
    * ``d10_error``, ``d50_error``, ``d90_error``: signed relative errors of
      the 10 / 50 / 90 % quantiles of the number-weighted distribution of
      the equivalent diameter sqrt(4 area / pi), e.g.
      (D50_pred - D50_true) / D50_true; the quantiles themselves are
      ``d50_pred``, ``d50_true``, ... (in nm with ``pixel_size``, else px);
    * counts: ``n_pred``, ``n_true``, ``tp``, ``fp``, ``fn``.

    Parameters
    ----------
    pred, truth : ndarray or sequence of ndarray
        Label images (0 = background, one id per object; ids need not be
        consecutive). A boolean array is labelled into its 4-connected
        components. Give two lists of the same length (image pairs) to get
        the scores pooled over all images: counts, matches and diameters of
        all images together (not the mean of per-image scores).
    pixel_size : float, optional
        nm per pixel, for the reported diameters (the errors are relative
        and do not need it).
    min_size : float
        Objects smaller than this many pixels, in the prediction and in
        the reference, are left out (set to background) before anything is
        matched or counted, e.g. specks of a hand annotation that no
        method is meant to find, or a size limit of the analysis. 0 (the
        default) keeps every object.

    Returns
    -------
    dict
        The scores above (floats; ``nan`` where undefined, e.g. the count
        error without reference objects). For lists, also ``per_image``
        (a list of the per-image dicts), ``mean_abs_count_error`` and
        ``mean_abs_d50_error`` (means over the images of the absolute
        per-image errors).
    """
    ps = None
    from ._validation import check_positive

    if pixel_size is not None:
        ps = check_positive(pixel_size, "pixel_size")
    min_size = float(check_positive(min_size, "min_size", allow_zero=True))
    if isinstance(pred, np.ndarray) or isinstance(truth, np.ndarray):
        if not (isinstance(pred, np.ndarray) and isinstance(truth, np.ndarray)):
            raise SEMAnalysisError("give pred and truth both as arrays or both as lists of arrays")
        return _stats([_one(pred, truth, min_size=min_size)], ps)
    if not isinstance(pred, Sequence) or not isinstance(truth, Sequence):
        raise SEMAnalysisError("pred and truth must be label images or lists of label images")
    if len(pred) != len(truth):
        raise SEMAnalysisError(f"{len(pred)} predictions but {len(truth)} references")
    if len(pred) == 0:
        raise SEMAnalysisError("no image pairs to evaluate")
    pieces = [_one(p, t, f"[{i}]", min_size) for i, (p, t) in enumerate(zip(pred, truth))]
    out = _stats(pieces, ps)
    per = [_stats([piece], ps) for piece in pieces]
    out["per_image"] = per
    out["mean_abs_count_error"] = _mean_abs([r["count_error"] for r in per])
    out["mean_abs_d50_error"] = _mean_abs([r["d50_error"] for r in per])
    return out
