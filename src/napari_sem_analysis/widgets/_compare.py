"""Compare with reference: instance labels against reference labels, as a table of scores.

A user validating a segmentation (a preset, a Split, a U-Net) against a few
hand-annotated images picks the Labels layer to check and the reference
Labels layer; :func:`napari_sem_analysis.evaluate_instances` matches the
objects (IoU >= 0.5) and the table shows PQ, precision, recall, F1, AP,
pixel Dice, the count and the D10 / D50 / D90 errors (stacks: pooled over
the planes). Nothing is written into the layers.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, SpinBox, Table

from .._validation import SEMAnalysisError
from ._base import SEMWidget
from ._common import as_array, layer_pixel_size

#: rows of the table: (key of evaluate_instances, label, kind)
ROWS = [
    ("pq", "panoptic quality (PQ)", "score"),
    ("sq", "segmentation quality (mean IoU of matches)", "score"),
    ("rq", "recognition quality (F1 at IoU 0.5)", "score"),
    ("precision", "precision", "score"),
    ("recall", "recall", "score"),
    ("ap50", "AP50 = TP / (TP + FP + FN)", "score"),
    ("ap", "AP (mean over IoU 0.50:0.95)", "score"),
    ("dice", "pixel Dice", "score"),
    ("count_error", "count error", "percent"),
    ("d10_error", "D10 error", "percent"),
    ("d50_error", "D50 error", "percent"),
    ("d90_error", "D90 error", "percent"),
    ("n_pred", "objects found", "count"),
    ("n_true", "objects in the reference", "count"),
    ("tp", "matched (IoU >= 0.5)", "count"),
    ("fp", "false positives", "count"),
    ("fn", "missed", "count"),
    ("d50_pred", "D50 found", "size"),
    ("d50_true", "D50 reference", "size"),
]


def _planes(arr: np.ndarray) -> list[np.ndarray]:
    return list(arr) if arr.ndim == 3 else [arr]


class CompareWidget(SEMWidget):
    """Labels vs reference labels -> a table of instance scores (``evaluate_instances``)."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._labels = self.layer_box("labels", "Labels")
        self._reference = self.layer_box("reference", "Labels")
        self._mask = CheckBox(text="reference is a mask (objects = 4-connected components)", value=False)
        self._mask.tooltip = "e.g. hand-drawn 0/255 masks with gaps between touching objects"
        self._min_size = SpinBox(label="leave out objects under (px)", min=0, max=10**7, value=0)
        self._min_size.tooltip = (
            "objects smaller than this, in both layers, are set aside before matching and counting "
            "(e.g. specks of a hand annotation); 0 keeps every object"
        )
        self._table = Table(value={"metric": [], "value": []})
        self.result: dict | None = None
        self.extend(
            [
                self._labels,
                self._reference,
                self._mask,
                self._min_size,
                *self.run_controls("Compare", cancel=False),
                self._table,
            ]
        )

    def run(self, _event=None):
        """Compare the chosen layers (in a worker); the table and :attr:`result` show the scores."""
        if self.running:
            return
        try:
            lab, ref = self._labels.value, self._reference.value
            if lab is None or ref is None:
                raise SEMAnalysisError("choose the Labels layer to check and the reference Labels layer")
            a, b = as_array(lab.data), as_array(ref.data)
            if a.shape != b.shape:
                raise SEMAnalysisError(f"{lab.name} {a.shape} and {ref.name} {b.shape} do not have the same shape")
            if self._mask.value:
                b = b > 0
            pixel_size = layer_pixel_size(ref) or layer_pixel_size(lab)
            min_size = int(self._min_size.value)
        except SEMAnalysisError as exc:
            self.on_failed("Compare", exc)
            return

        def work():
            from ..metrics import evaluate_instances

            pa, pb = _planes(a), _planes(b)
            if len(pa) == 1:
                return evaluate_instances(pa[0], pb[0], pixel_size=pixel_size, min_size=min_size)
            return evaluate_instances(pa, pb, pixel_size=pixel_size, min_size=min_size)

        self._status.value = "comparing..."
        self.start(work, lambda r: self._show(r, lab, ref, pixel_size), desc="Compare")

    def _show(self, result: dict, lab, ref, pixel_size):
        self.result = result
        unit = "nm" if pixel_size else "px"
        names, values = [], []
        for key, label, kind in ROWS:
            v = result.get(key)
            if v is None or (isinstance(v, float) and not np.isfinite(v)):
                text = "n/a"
            elif kind == "score":
                text = f"{v:.3f}"
            elif kind == "percent":
                text = f"{100 * v:+.1f} %"
            elif kind == "size":
                text = f"{v:.3g} {unit}"
            else:
                text = str(int(v))
            names.append(label)
            values.append(text)
        self._table.value = {"metric": names, "value": values}
        self._status.value = (
            f"{lab.name} vs {ref.name}: PQ {result['pq']:.3f}, {result['n_pred']} found / {result['n_true']} "
            f"in the reference"
        )
