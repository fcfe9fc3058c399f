"""Shared pieces of the U-Net widgets: choices, the last trained model, mask helpers, the loss plot."""

from __future__ import annotations

import weakref
from pathlib import Path

import numpy as np

from .._validation import SEMAnalysisError

ENCODERS = [
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet-b0",
    "efficientnet-b2",
    "mobilenet_v2",
    "tu-resnet10t",
]
DEVICES = ["auto", "cpu", "cuda", "mps"]

# the model most recently trained in each viewer (for the predict widget)
_LAST_MODEL: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def last_trained_model(viewer):
    """The model most recently trained with :class:`TrainUNetWidget` in ``viewer`` (or None)."""
    try:
        return _LAST_MODEL.get(viewer)
    except TypeError:
        return None


def _optional_path(value) -> Path | None:
    if value is None:
        return None
    s = str(value).strip()
    if s in ("", "."):
        return None
    p = Path(s)
    return None if p.is_dir() else p


def remap_mask_values(masks: list, *, keep_zero: bool = False) -> list:
    """Masks whose values are not class ids (e.g. 0/255 from *Convert to Labels*) as ids 0..K-1.

    Values >= 64 are taken as grey levels: the distinct values, in order,
    become the class ids (0/255 -> 0/1), so that a binary mask trains two
    classes and not 256. Smaller values are kept as they are.
    """
    values = np.unique(np.concatenate([np.unique(np.asarray(m)) for m in masks]))
    if values.size and values.max() >= 64:
        if values.size > 64:
            raise SEMAnalysisError(
                f"the masks have {values.size} different values (up to {values.max()}): give class ids 0..K-1"
            )
        return [np.searchsorted(values, np.asarray(m)).astype(np.int32) for m in masks]
    return [np.asarray(m).astype(np.int32) for m in masks]


def names_from_labels(layer) -> list[str] | None:
    """Class names a Labels layer carries: ``metadata["class_names"]`` or a ``class``/``name`` feature."""
    if layer is None:
        return None
    names = layer.metadata.get("class_names") if hasattr(layer, "metadata") else None
    if names:
        return [str(n) for n in names]
    feats = getattr(layer, "features", None)
    if feats is not None and len(feats):
        for col in ("class_name", "class", "name"):
            if col in feats and "index" in feats:
                order = feats.sort_values("index")
                return [str(v) for v in order[col].tolist()]
    return None


def _best_score(model) -> tuple[str, float] | None:
    """``(what, score)`` of a model's best epoch, higher is better: val mean IoU, else -val loss, else -train loss."""
    if model is None or not getattr(model, "best_epoch", None):
        return None
    entry = model.history[model.best_epoch - 1]
    if entry.get("mean_iou") is not None:
        return "val mean IoU", float(entry["mean_iou"])
    if entry.get("val_loss") is not None:
        return "val loss", -float(entry["val_loss"])
    return "train loss", -float(entry["train_loss"])


def _message(exc: BaseException) -> str:
    """An error as the U-Net widgets show it (the type named, but for SEMAnalysisError)."""
    return str(exc) if isinstance(exc, SEMAnalysisError) else f"{type(exc).__name__}: {exc}"


def _optional_curve(ax, history: list[dict], key: str, fmt: str, color: str, label: str) -> bool:
    """Plot ``key`` of every epoch (gaps where it is None) when some epoch has it; True when plotted."""
    if not any(h.get(key) is not None for h in history):
        return False
    values = [np.nan if h.get(key) is None else h[key] for h in history]
    ax.plot([h["epoch"] for h in history], values, fmt, ms=3, color=color, label=label)
    return True


class _Plot:
    """A small matplotlib canvas with the loss and IoU curves."""

    def __init__(self):
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.2, 2.4), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(180)
        self.ax_loss = self.figure.add_subplot(1, 1, 1)
        self.ax_iou = self.ax_loss.twinx()
        self.clear()

    def clear(self):
        for ax in (self.ax_loss, self.ax_iou):
            ax.clear()
        self.ax_loss.set_xlabel("epoch", fontsize=8)
        self.ax_loss.set_ylabel("loss", fontsize=8)
        self.ax_iou.set_ylabel("mean IoU", fontsize=8)
        # ax.clear() puts the twin's label and ticks back on the left: the IoU axis is the right one
        self.ax_iou.yaxis.set_label_position("right")
        self.ax_iou.yaxis.tick_right()
        self.canvas.draw_idle()

    def update(self, history: list[dict]):
        self.clear()
        if not history:
            return
        ep = [h["epoch"] for h in history]
        # markers: one epoch is a visible point, not an empty line
        self.ax_loss.plot(ep, [h["train_loss"] for h in history], "o-", ms=3, color="tab:blue", label="train loss")
        _optional_curve(self.ax_loss, history, "val_loss", "s-", "tab:orange", "val loss")
        if _optional_curve(self.ax_iou, history, "mean_iou", "^--", "tab:green", "val mean IoU"):
            self.ax_iou.set_ylim(0, 1)
        lines = self.ax_loss.get_lines() + self.ax_iou.get_lines()
        self.ax_loss.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="center right")
        for ax in (self.ax_loss, self.ax_iou):
            ax.tick_params(labelsize=7)
        self.canvas.draw_idle()
