"""Labels and grouped splits: label encoding, fold count, (stratified) group k-fold, the CV loop."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._validation import SEMAnalysisError
from .results import _metrics


class _Cancelled(Exception):
    pass


def _encode_labels(y, class_names) -> tuple[np.ndarray, list]:
    """Map labels (names or integer indices) to indices 0..K-1."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise SEMAnalysisError(f"y must be 1-D, got shape {y.shape}")
    if y.size == 0:
        raise SEMAnalysisError("y is empty: give at least one example per class")
    if y.dtype.kind in "iu":
        if class_names is None:
            values = sorted(set(y.tolist()))
            class_names = [str(v) for v in values]
            lookup = {v: i for i, v in enumerate(values)}
            return np.array([lookup[v] for v in y.tolist()], dtype=np.int64), class_names
        class_names = [str(c) for c in class_names]
        if y.min() < 0 or y.max() >= len(class_names):
            raise SEMAnalysisError(
                f"integer class labels must be in 0..{len(class_names) - 1} for class_names {class_names}"
            )
        return y.astype(np.int64), class_names
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise SEMAnalysisError("y must hold class names or integer class indices, not fractions or NaN")
        return _encode_labels(y.astype(np.int64), class_names)
    names = [str(v) for v in y.tolist()]
    if class_names is None:
        class_names = sorted(set(names))
    class_names = [str(c) for c in class_names]
    lookup = {c: i for i, c in enumerate(class_names)}
    unknown = sorted(set(names) - set(lookup))
    if unknown:
        raise SEMAnalysisError(f"labels {unknown} are not among class_names {class_names}")
    return np.array([lookup[n] for n in names], dtype=np.int64), class_names


def _groups_per_class(y_idx, groups) -> list[int]:
    """How many distinct groups (source images) each class has, in class order."""
    return [len(set(groups[y_idx == c].tolist())) for c in np.unique(y_idx)]


def fold_count(y, groups, n_splits: int) -> int:
    """The number of folds :meth:`cross_validate` will use for labels ``y`` (0: not possible)."""
    y_idx = np.unique(np.asarray(y), return_inverse=True)[1].reshape(-1)
    if np.unique(y_idx).size < 2:
        return 0
    if groups is None:
        k = min(int(n_splits), int(np.bincount(y_idx).min()))
    else:
        k = min(int(n_splits), min(_groups_per_class(y_idx, np.asarray(groups))))
    return k if k >= 2 else 0


def _splits(y_idx, groups, n_splits, seed):
    """Stratified (grouped when ``groups`` is given) train/test index pairs."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    n = len(y_idx)
    counts = np.bincount(y_idx)
    counts = counts[counts > 0]
    if len(counts) < 2:
        raise SEMAnalysisError("cross-validation needs examples of at least two classes")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise SEMAnalysisError(f"groups must have one entry per sample ({n}), got shape {groups.shape}")
        # the number of groups of the rarest class limits the number of folds
        per_class_groups = _groups_per_class(y_idx, groups)
        k = min(int(n_splits), min(per_class_groups))
        if k < 2:
            raise SEMAnalysisError(
                "grouped cross-validation needs at least two groups (source images) per class; "
                f"got {dict(zip(np.unique(y_idx).tolist(), per_class_groups))}"
            )
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(n), y_idx, groups)), k
    k = min(int(n_splits), int(counts.min()))
    if k < 2:
        raise SEMAnalysisError("cross-validation needs at least two examples of every class")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(n), y_idx)), k


def _cross_validate(
    make, fit_fn, proba_fn, X, y_idx, class_names, groups, n_splits, seed, progress=None, cancel=None, splits=None
):
    if splits is None:
        splits, k = _splits(y_idx, groups, n_splits, seed)
    else:
        k = len(splits)
    n = len(y_idx)
    proba = np.zeros((n, len(class_names)))
    folds = np.full(n, -1, dtype=np.int64)
    for i, (train, test) in enumerate(splits):
        if cancel is not None and cancel():
            raise _Cancelled()
        model = make()
        fit_fn(model, _take(X, train), y_idx[train])
        proba[test] = proba_fn(model, _take(X, test))
        folds[test] = i
        if progress is not None:
            progress(i + 1, k)
    pred = proba.argmax(axis=1)
    return _metrics(y_idx, pred, proba, class_names, k, groups is not None, folds)


def _take(X, idx):
    if isinstance(X, pd.DataFrame):
        return X.iloc[idx]
    if isinstance(X, np.ndarray):
        return X[idx]
    return [X[i] for i in idx]
