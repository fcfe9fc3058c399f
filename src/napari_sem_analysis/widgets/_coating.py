"""Coating cross-section dock widget: thickness profile, oxide, cracks, melt fraction, class-map legend.

Runs the ``coating_layers`` step of the registry (the step of the ``coating``
preset, with its settings) on an Image layer and shows what a coating
engineer reports: coating and oxide thickness (mean, SD, min/max and the
profile along the layer, plotted), the oxide fraction, the crack count and
lengths, and (optionally) the melted / unmelted fraction of a thermal-spray
coating. The class map is written as a Labels layer ``coating`` with fixed
colours, a legend in the widget, and features that describe its own values
(one row per class: 0 other, 1 coating, 2 oxide, 3 crack). The crack table
goes to a Points layer ``cracks`` (one point per crack, its length in the
features).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, Label

from ._base import StepCall, StepWidget, check_gray
from ._common import write_layer

#: colours of the coating class map (RGBA 0..1): other, coating, oxide, crack
CLASS_COLORS = {
    0: (0.0, 0.0, 0.0, 0.0),
    1: (0.25, 0.55, 1.0, 1.0),
    2: (1.0, 0.6, 0.1, 1.0),
    3: (1.0, 0.1, 0.3, 1.0),
}


def coating_class_features(labels: np.ndarray) -> pd.DataFrame:
    """Features of a coating class map, one row per class value (0..3): name and area fraction."""
    from ..coating import CLASS_NAMES

    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64), minlength=len(CLASS_NAMES))[: len(CLASS_NAMES)]
    total = max(int(np.asarray(labels).size), 1)
    return pd.DataFrame(
        {"index": np.arange(len(CLASS_NAMES)), "class": list(CLASS_NAMES), "area_fraction": counts / total}
    )


def _hex(rgba) -> str:
    return "#" + "".join(f"{int(round(255 * c)):02x}" for c in rgba[:3])


def legend_html() -> str:
    """The class-map legend: a coloured square and the class name per class."""
    from ..coating import CLASS_NAMES

    return "  ".join(
        f"<span style='color:{_hex(CLASS_COLORS[i])}'>&#9632;</span> {i} {name}"
        for i, name in enumerate(CLASS_NAMES)
        if i > 0
    )


def _fmt(v, unit="") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.4g}{(' ' + unit) if unit else ''}"


def summary_lines(summary: dict, cracks: pd.DataFrame) -> list[str]:
    """Readable lines of the coating summary (thickness mean ± SD (min-max), oxide, cracks, melt)."""
    unit = "nm" if "coating_thickness_mean_nm" in summary else "px"
    lines = []
    for name in ("coating_thickness", "oxide_thickness"):
        mean = summary.get(f"{name}_mean_{unit}")
        lines.append(
            f"{name.replace('_', ' ')}: {_fmt(mean, unit)} ± {_fmt(summary.get(f'{name}_std_{unit}'))} "
            f"(min {_fmt(summary.get(f'{name}_min_{unit}'))}, max {_fmt(summary.get(f'{name}_max_{unit}'))})"
        )
    frac = summary.get("oxide_fraction")
    lines.append(f"oxide fraction: {_fmt(100 * frac if frac is not None else None)} %")
    n = int(summary.get("crack_count", 0))
    total = summary.get(f"crack_length_total_{unit}", 0.0)
    lines.append(f"cracks: {n}, total length {_fmt(total, unit)}")
    col = f"length_{unit}"
    if n and col in cracks:
        lengths = ", ".join(_fmt(v) for v in cracks[col].to_numpy()[:12])
        lines.append(f"crack lengths ({unit}): {lengths}{' ...' if n > 12 else ''}")
    if "unmelted_fraction" in summary:
        lines.append(
            f"melted {_fmt(100 * summary['melted_fraction'])} %, unmelted {_fmt(100 * summary['unmelted_fraction'])} %"
            f" ({summary.get('unmelted_count', 0)} unmelted particles)"
        )
    return lines


class CoatingWidget(StepWidget):
    """Coating and oxide thickness, oxide fraction, cracks and melt fraction of a cross-section."""

    step = "coating_layers"
    output = "coating"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._image = self.layer_box("image", "Image")
        self._side = ComboBox(label="coating on", choices=["top", "bottom"], value="top")
        self._melt = CheckBox(text="melted / unmelted fraction (thermal spray)", value=False)
        self._legend = Label(value=legend_html())
        self._report = Label(value="")
        self._report.native.setWordWrap(True)
        self.extend([self._image, self._side, self._melt, *self.run_controls(), self._legend, self._report])
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4.2, 2.6), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(220)
        self.native.layout().addWidget(self.canvas)
        self.last_result = None
        self._reset()

    def params(self) -> dict:
        """The ``coating`` preset's settings, with the side of the coating and the melt analysis."""
        from ..workflows import PRESETS

        preset = dict(PRESETS["coating"]["steps"][0]["params"])
        preset.update(coating_on=self._side.value)
        if self._melt.value:
            preset["melt_analysis"] = True
        return preset

    def calls(self) -> list[StepCall]:
        layer = self._image.value
        check_gray(layer)
        return [StepCall("coating_layers", self.params(), {"image": layer}, "coating")]

    def write(self, result, calls):
        from napari.utils.colormaps import DirectLabelColormap

        layer_in = self._image.value
        labels = np.asarray(result.labels, np.int32)
        colors = {None: (0, 0, 0, 0), **CLASS_COLORS}
        out = write_layer(
            self.viewer,
            labels,
            name="coating",
            kind="labels",
            like=layer_in,
            features=coating_class_features(labels),
            colormap=DirectLabelColormap(color_dict=colors),
            metadata={"summary": dict(result.summary), "class_names": ["other", "coating", "oxide", "crack"]},
        )
        cracks = result.cracks
        if len(cracks) and {"y", "x"} <= set(cracks.columns):
            write_layer(
                self.viewer,
                cracks[["y", "x"]].to_numpy(float),
                name="cracks",
                kind="points",
                like=layer_in,
                features=cracks.reset_index(drop=True),
                size=8,
                face_color="transparent",
                border_color="red",
            )
        self.last_result = result
        self._report.value = "<br>".join(summary_lines(result.summary, cracks))
        self._status.value = f"coating: done, {int(result.summary.get('crack_count', 0))} cracks"
        self._plot(result)
        return out

    def _plot(self, result):
        prof = result.profile
        unit = "nm" if any(c.endswith("_nm") for c in prof.columns) else "px"
        fig = self.figure
        fig.clear()
        ax = fig.add_subplot(1, 1, 1)
        x = prof["x"].to_numpy(float)
        ps = result.summary.get("pixel_size_nm")
        if unit == "nm" and ps and np.isfinite(ps):
            x = x * ps / 1000.0
            ax.set_xlabel("position along the layer [µm]")
        else:
            ax.set_xlabel("position along the layer [px]")
        ax.plot(x, prof[f"coating_thickness_{unit}"], color=_hex(CLASS_COLORS[1]), label="coating")
        ax.plot(x, prof[f"oxide_thickness_{unit}"], color=_hex(CLASS_COLORS[2]), label="oxide")
        ax.set_ylabel(f"thickness [{unit}]")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        self.canvas.draw_idle()
