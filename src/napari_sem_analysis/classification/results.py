"""Cross-validation results (:class:`CVResult`) and the confusion-matrix figure."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .._validation import SEMAnalysisError


@dataclass
class CVResult:
    """Cross-validation result.

    Attributes
    ----------
    accuracy : float
        Fraction of samples predicted correctly (out-of-fold).
    balanced_accuracy : float
        Mean per-class recall.
    per_class : pandas.DataFrame
        Precision, recall, F1 and support per class (index: class names).
    confusion_matrix : ndarray (K, K)
        Counts; rows are true classes, columns predicted classes.
    class_names : list of str
    y_true, y_pred : ndarray of str
        Out-of-fold true and predicted class names, in input order.
    probabilities : ndarray (N, K)
        Out-of-fold class probabilities.
    n_splits : int
    grouped : bool
        True when the splits kept each group in one fold.
    folds : ndarray of int
        Test fold of each sample.
    """

    accuracy: float
    balanced_accuracy: float
    per_class: pd.DataFrame
    confusion_matrix: np.ndarray
    class_names: list
    y_true: np.ndarray
    y_pred: np.ndarray
    probabilities: np.ndarray
    n_splits: int
    grouped: bool
    folds: np.ndarray = field(repr=False, default=None)

    def summary(self) -> str:
        """A short text report (accuracy and per-class table)."""
        kind = "grouped " if self.grouped else ""
        lines = [
            f"{self.n_splits}-fold {kind}cross-validation: accuracy {self.accuracy:.3f}, "
            f"balanced accuracy {self.balanced_accuracy:.3f}",
            self.per_class.round(3).to_string(),
        ]
        return "\n".join(lines)

    def figure(self, **kwargs):
        """Confusion-matrix figure (see :func:`confusion_matrix_figure`)."""
        return confusion_matrix_figure(self.confusion_matrix, self.class_names, **kwargs)


def _metrics(y_true_idx, y_pred_idx, proba, class_names, n_splits, grouped, folds) -> CVResult:
    k = len(class_names)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true_idx, y_pred_idx), 1)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    per_class = pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support},
        index=pd.Index(list(class_names), name="class"),
    )
    present = support > 0
    names = np.asarray(class_names, dtype=object)
    return CVResult(
        accuracy=float(tp.sum() / max(cm.sum(), 1)),
        balanced_accuracy=float(recall[present].mean()) if present.any() else 0.0,
        per_class=per_class,
        confusion_matrix=cm,
        class_names=list(class_names),
        y_true=names[y_true_idx],
        y_pred=names[y_pred_idx],
        probabilities=proba,
        n_splits=int(n_splits),
        grouped=bool(grouped),
        folds=folds,
    )


def confusion_matrix_figure(confusion, class_names=None, *, normalize: bool = False, title: str | None = None, ax=None):
    """Draw a confusion matrix with matplotlib.

    Parameters
    ----------
    confusion : ndarray (K, K) or CVResult
        Counts, rows true class, columns predicted class.
    class_names : sequence of str, optional
    normalize : bool
        Show row-normalised fractions (recall per class) instead of counts.
    title : str, optional
    ax : matplotlib Axes, optional
        Draw into this axes; otherwise a new figure is made.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(confusion, CVResult):
        class_names = class_names or confusion.class_names
        if title is None:
            title = f"accuracy {confusion.accuracy:.3f}"
        confusion = confusion.confusion_matrix
    cm = np.asarray(confusion, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise SEMAnalysisError(f"confusion matrix must be square, got shape {cm.shape}")
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise SEMAnalysisError(f"{len(names)} class names for a {k}x{k} confusion matrix")
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm

    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(1.2 + 0.9 * k, 1.0 + 0.8 * k), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=max(shown.max(), 1e-9))
    ax.set_xticks(range(k), names, rotation=30, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    thresh = shown.max() / 2 if shown.size else 0
    for i in range(k):
        for j in range(k):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", color="white" if shown[i, j] > thresh else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
