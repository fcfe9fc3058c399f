"""Plots dock widget: matplotlib plots of a layer's features (size distribution, histogram, scatter)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, PushButton, SpinBox

from .._validation import SEMAnalysisError
from ._base import SEMWidget
from ._common import notify_error, notify_info
from ._layout import add_row
from ._table import _axis_label, _units_of


class PlotWidget(SEMWidget):
    """Plots of a layer's features (matplotlib): size distribution, histogram, scatter; save as PNG."""

    KINDS = ("size distribution", "histogram", "scatter")

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self._layer_box = self.layer_box("layer", "Labels", "Points", "Shapes")
        self._kind = ComboBox(label="plot", choices=list(self.KINDS), value="size distribution")
        self._x = ComboBox(label="x feature", choices=lambda w: self._numeric_columns())
        self._y = ComboBox(label="y feature", choices=lambda w: self._numeric_columns())
        self._bins = SpinBox(label="bins", min=2, max=500, value=30)
        self._log = CheckBox(text="log x", value=False)
        self._plot_btn = PushButton(text="Plot")
        self._save_btn = PushButton(text="Save PNG")
        # only the settings of the chosen plot are shown, the buttons in one row: the plot keeps the room
        self.extend([self._layer_box, self._kind, self._x, self._y, self._bins])
        add_row(self, self._log, self._plot_btn, self._save_btn)
        self._kind.changed.connect(self._show_settings)
        self._show_settings()
        self.figure = Figure(figsize=(4.5, 3.4), dpi=100)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(240)  # in a scrolling dock it would otherwise be squeezed to nothing
        self.native.layout().addWidget(self.canvas)
        self._watched = None  # the layer whose features we follow
        self._layer_box.changed.connect(self._layer_changed)
        self._plot_btn.changed.connect(lambda *_: self.plot())
        self._save_btn.changed.connect(self._ask_png)
        self._reset()

    def _show_settings(self, _event=None):
        kind = self._kind.value
        self._x.visible = kind in ("histogram", "scatter")
        self._y.visible = kind == "scatter"
        self._bins.visible = kind != "scatter"

    def _reset(self, _event=None):
        super()._reset()
        self._x.reset_choices()
        self._y.reset_choices()

    def _layer_changed(self, _value=None):
        layer = self._layer_box.value
        if layer is not self._watched:
            # follow the layer's features: measuring it after choosing it fills the feature boxes
            if self._watched is not None:
                try:
                    self._watched.events.features.disconnect(self._features_changed)
                except (TypeError, ValueError, RuntimeError):
                    pass
            self._watched = layer
            if layer is not None and hasattr(layer.events, "features"):
                layer.events.features.connect(self._features_changed)
        self._choose_features(keep=False)

    def _features_changed(self, _event=None):
        self._choose_features(keep=True)

    def _choose_features(self, keep: bool):
        """Refresh the feature choices; keep the chosen ones if they still exist, else prefer
        the size (x) and the circularity (y)."""
        previous = (self._x.value, self._y.value) if keep else (None, None)
        self._x.reset_choices()
        self._y.reset_choices()
        cols = self._numeric_columns()
        for box, old, preferred in (
            (self._x, previous[0], ("equivalent_diameter", "area")),
            (self._y, previous[1], ("circularity", "intensity_mean")),
        ):
            for name in (old, *preferred):
                if name is not None and name in cols:
                    box.value = name
                    break

    def _frame(self) -> pd.DataFrame:
        layer = self._layer_box.value
        return pd.DataFrame() if layer is None else pd.DataFrame(layer.features)

    def _numeric_columns(self):
        df = self._frame()
        return [c for c in df.columns if c not in ("index",) and pd.api.types.is_numeric_dtype(df[c])]

    def set_layer(self, layer):
        self._reset()
        self._layer_box.value = layer
        self._layer_changed()

    def plot(self, kind: str | None = None, x: str | None = None, y: str | None = None):
        """Draw the plot; returns the matplotlib Figure (None on bad input, with a notification)."""
        try:
            return self._plot(kind, x, y)
        except SEMAnalysisError as exc:
            notify_error(exc)
            return None

    def _plot(self, kind, x, y):
        kind = kind or self._kind.value
        if kind not in self.KINDS:
            raise SEMAnalysisError(f"unknown plot {kind!r}")
        df = self._frame()
        if len(df) == 0:
            raise SEMAnalysisError("the chosen layer has no features: measure it first")
        units = _units_of(self._layer_box.value)
        fig = self.figure
        fig.clear()
        ax = fig.add_subplot(1, 1, 1)
        bins = int(self._bins.value)
        if kind == "size distribution":
            col = "equivalent_diameter"
            if col not in df.columns:
                raise SEMAnalysisError("no 'equivalent_diameter' column: measure the objects first")
            v = df[col].to_numpy(float)
            v = v[np.isfinite(v)]
            if v.size == 0:
                raise SEMAnalysisError("no finite equivalent diameters to plot")
            edges = (
                np.geomspace(max(v.min(), 1e-9), v.max() * 1.0001, bins + 1)
                if self._log.value and v.min() > 0
                else bins
            )
            ax.hist(v, bins=edges, color="#4C72B0", alpha=0.85)
            # the same D10/D50/D90 as summarize() and the Measure widget's summary line
            from ..measurement import _weighted_quantiles

            d10, d50, d90 = _weighted_quantiles(v, np.ones(v.size), (0.1, 0.5, 0.9))
            for d, name in ((d10, "D10"), (d50, "D50"), (d90, "D90")):
                ax.axvline(d, color="k", ls="--", lw=1)
                ax.text(d, ax.get_ylim()[1] * 0.95, name, rotation=90, va="top", ha="right", fontsize=8)
            ax2 = ax.twinx()
            srt = np.sort(v)
            ax2.plot(srt, np.arange(1, srt.size + 1) / srt.size * 100, color="#C44E52")
            ax2.set_ylabel("cumulative %")
            ax2.set_ylim(0, 100)
            ax.set_xlabel(_axis_label(col, units))
            ax.set_ylabel("count")
            ax.set_title(f"n = {v.size}")
        elif kind == "histogram":
            x = x or self._x.value
            if x is None or x not in df.columns:
                raise SEMAnalysisError(f"choose a feature to plot (got {x!r})")
            v = pd.to_numeric(df[x], errors="coerce").to_numpy(float)
            v = v[np.isfinite(v)]
            ax.hist(v, bins=bins, color="#55A868")
            ax.set_xlabel(_axis_label(x, units))
            ax.set_ylabel("count")
        else:
            x = x or self._x.value
            y = y or self._y.value
            for c in (x, y):
                if c is None or c not in df.columns:
                    raise SEMAnalysisError(f"choose two features to plot (got {x!r}, {y!r})")
            ax.scatter(df[x].to_numpy(float), df[y].to_numpy(float), s=8, alpha=0.7)
            ax.set_xlabel(_axis_label(x, units))
            ax.set_ylabel(_axis_label(y, units))
        if self._log.value:
            ax.set_xscale("log")
        fig.tight_layout()
        self.canvas.draw_idle()
        return fig

    def save_png(self, path, dpi: int = 150) -> Path:
        """Save the current plot as a PNG file."""
        path = Path(path)
        self.figure.savefig(path, dpi=dpi, format="png")
        return path

    def _ask_png(self, _event=None):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, "Save plot", "", "PNG (*.png)")
        if not path:
            return
        try:
            self.save_png(path)
            notify_info(f"saved {path}")
        except Exception as exc:
            notify_error(exc)
