"""Fibres widget: fibre diameters, orientation and beads of a fibre mat; network width.

:class:`FibersWidget` runs the ``measure_fibers`` step of the registry on an
Image layer (or on a fibre mask the user gives, e.g. from the U-Net) and
writes:

* ``fibres`` (Labels): the fibre mask labelled by segment, with the segment
  table (length, mean / SD / median diameter, orientation, beads) as
  features;
* ``centreline`` (Labels): the centreline, labelled by segment;
* ``beads`` (Points): one point per bead, sized by its diameter, with
  ``diameter`` and ``kind`` features;
* with *network width*: ``fibre width`` and ``pore width`` (Images), the local
  thickness maps of the fibres and of the pores between them (the
  ``local_thickness`` step; for ligaments and pores of any two-phase network
  give a mask and tick it).

The panel shows the summary, a diameter histogram and an orientation rose
plot; *Export table* writes the segment table and the summary to CSV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton

from .._validation import SEMAnalysisError
from ._base import StepCall, StepWidget, cancel_check, check_gray
from ._common import as_array, notify_error, write_layer

__all__ = ["FibersWidget"]


def _canvas(container: Container):
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 2.2), tight_layout=True)
    canvas = FigureCanvasQTAgg(fig)
    canvas.setMinimumHeight(200)
    container.native.layout().addWidget(canvas)
    return fig, canvas


class FibersWidget(StepWidget):
    """Measure a fibre mat: fibre / centreline / bead layers, histogram and rose plot, table export."""

    step = "measure_fibers"
    output = "fibres"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.result = None
        self._image = self.layer_box("image", "Image")
        self._mask = self.layer_box("mask (optional)", "Labels", optional=True, arg="mask")
        self._method = ComboBox(label="segmentation", choices=["ridge", "threshold"], value="ridge")
        self._max_d = FloatSpinBox(label="max diameter (px, 0 auto)", min=0, max=10000, value=0, step=1)
        self._bead = FloatSpinBox(label="bead factor", min=1.1, max=10, value=1.8, step=0.1)
        self._width = CheckBox(text="network width (local thickness maps)", value=False)
        self._summary = Label(value="")
        self._export_path = FileEdit(label="table", mode="w", filter="*.csv", value="fibres.csv")
        self._export = PushButton(text="Export table")
        self._export.changed.connect(self._export_clicked)
        self.extend(
            [
                self._image,
                self._mask,
                self._method,
                self._max_d,
                self._bead,
                self._width,
                *self.run_controls(),
                self._summary,
                self._export_path,
                self._export,
            ]
        )
        self.figure, self.canvas = _canvas(self)
        self._reset()

    def unit_layer(self):
        return self._image.value

    # -- what to run --------------------------------------------------------------
    def params(self) -> dict:
        p = {"method": self._method.value, "bead_factor": float(self._bead.value)}
        if self._max_d.value > 0:
            p["max_diameter"] = float(self._max_d.value)
        return p

    def calls(self) -> list[StepCall]:
        image, mask = self._image.value, self._mask.value
        if image is None and mask is None:
            raise SEMAnalysisError("choose an image layer (or a fibre mask) first")
        inputs = {"image": image} if mask is None else {"image": image, "mask": mask}
        params = self.params()
        if mask is not None:
            params.pop("method", None)
        calls = [StepCall(self.step, params, {k: v for k, v in inputs.items() if v is not None}, self.output)]
        if self._width.value:
            calls.append(
                StepCall("local_thickness", {}, {"mask": mask if mask is not None else self.output}, "fibre width")
            )
        return calls

    def read(self, calls):
        data = {}
        first = calls[0]
        for arg, src in first.inputs.items():
            data[arg] = check_gray(src) if arg == "image" else as_array(src.data)
            if data[arg].ndim != 2:
                raise SEMAnalysisError(f"the {arg} layer must be 2-D (got shape {data[arg].shape})")
        return data

    def progress_total(self, data) -> int:
        return 3 if self._width.value else 1

    # -- computing (worker thread) -------------------------------------------------
    def compute(self, calls, data, pixel_size):
        cancel = cancel_check(self)
        fib = calls[0].entry({k: data[k] for k in calls[0].inputs}, calls[0].params, pixel_size=pixel_size)
        yield
        out = {"fibers": fib}
        if len(calls) > 1:
            from ..thickness import local_thickness

            cancel()
            out["fibre width"] = local_thickness(fib.mask, pixel_size=pixel_size)
            yield
            cancel()
            out["pore width"] = local_thickness(~fib.mask, pixel_size=pixel_size)
            yield
        return out

    # -- writing (GUI thread) ------------------------------------------------------
    def write(self, result, calls):
        fib = result["fibers"]
        self.result = result
        like = self._image.value or self._mask.value
        seg = fib.segments.copy()
        feats = seg.assign(index=seg["label"])
        write_layer(
            self.viewer,
            fib.fibers,
            name="fibres",
            kind="labels",
            like=like,
            features=feats,
            metadata={"step": "measure_fibers", "params": calls[0].params, "summary": fib.flat_summary()},
            opacity=0.5,
        )
        layer = self.viewer.layers["fibres"]
        layer.features = feats
        write_layer(
            self.viewer,
            fib.centerline,
            name="centreline",
            kind="labels",
            like=like,
            metadata={"step": "measure_fibers"},
        )
        bt = fib.bead_table
        pts = bt[["y", "x"]].to_numpy(float) if len(bt) else np.zeros((0, 2))
        px = 1.0 if fib.pixel_size is None else float(fib.pixel_size)
        sizes = (bt["diameter"].to_numpy(float) / px) if len(bt) else np.zeros(0)
        bfeats = bt.drop(columns=["y", "x"]).reset_index(drop=True)
        write_layer(
            self.viewer,
            pts,
            name="beads",
            kind="points",
            like=like,
            features=bfeats,
            metadata={"step": "measure_fibers"},
            face_color="transparent",
            border_color="red",
            size=sizes if len(sizes) else 10,
        )
        beads = self.viewer.layers["beads"]
        beads.features = bfeats
        if len(sizes):
            beads.size = sizes
        for name in ("fibre width", "pore width"):
            if name in result:
                write_layer(
                    self.viewer,
                    result[name].thickness,
                    name=name,
                    kind="image",
                    like=like,
                    metadata={"step": "local_thickness", "summary": result[name].summary},
                    colormap="turbo",
                    blending="additive",
                    visible=name == "fibre width",
                )
        self._show_summary(fib, result)
        self.plot(fib)
        self._status.value = f"fibres: {len(seg)} segments, {fib.summary['bead_count']} beads"
        return layer

    def _show_summary(self, fib, result):
        s = fib.summary
        u = s["unit"]
        lines = [
            f"diameter {s['diameter_median']:.3g} {u} median, {s['diameter_mean']:.3g} ± {s['diameter_sd']:.3g} "
            f"(CV {s['diameter_cv']:.2f})",
            f"alignment {s['alignment']:.2f}, orientation {s['orientation_mean']:.0f}°",
            f"junctions {s['n_junctions']} ({s['junction_density']:.3g} {s['density_unit']}), "
            f"beads {s['bead_count']} ({s['bead_density']:.3g} {s['density_unit']})",
            f"mesh pore size {s['pore_size_median']:.3g} {u} (median)",
        ]
        for name in ("fibre width", "pore width"):
            if name in result:
                lines.append(f"{name} {result[name].summary['median']:.3g} {u} (median local thickness)")
        self._summary.value = "\n".join(lines)

    def plot(self, fib):
        """Diameter histogram and orientation rose (length weighted) of a measurement."""
        fig = self.figure
        fig.clear()
        ax = fig.add_subplot(1, 2, 1)
        counts, edges = fib.summary["diameter_histogram"]
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="tab:blue")
        ax.set_xlabel(f"diameter ({fib.summary['unit']})")
        ax.set_ylabel("centreline px")
        rose = fig.add_subplot(1, 2, 2, projection="polar")
        seg = fib.segments
        if len(seg):
            theta = np.deg2rad(seg["orientation"].to_numpy(float))
            w = seg["length"].to_numpy(float)
            bins = np.linspace(0, 2 * np.pi, 37)
            both = np.concatenate([theta, theta + np.pi])
            h, _ = np.histogram(both, bins=bins, weights=np.concatenate([w, w]))
            rose.bar(bins[:-1], h, width=np.diff(bins), align="edge", color="tab:orange")
        rose.set_yticklabels([])
        rose.set_title(f"alignment {fib.summary['alignment']:.2f}", fontsize=9)
        self.canvas.draw_idle()
        return fig

    # -- export -------------------------------------------------------------------
    def export_table(self, path) -> Path:
        """Write the segment table to ``path`` (CSV) and the summary next to it (``*_summary.csv``)."""
        import pandas as pd

        if self.result is None:
            raise SEMAnalysisError("run the measurement first")
        fib = self.result["fibers"]
        path = Path(path)
        if path.suffix.lower() != ".csv":
            path = path.with_suffix(".csv")
        unit = fib.summary["unit"]
        table = fib.segments.rename(
            columns={c: f"{c} ({unit})" for c in ("length", "diameter_mean", "diameter_sd", "diameter_median")}
        )
        table = table.rename(columns={"orientation": "orientation (deg)"})
        table.to_csv(path, index=False)
        summary = pd.DataFrame([fib.flat_summary()])
        summary.to_csv(path.with_name(path.stem + "_summary.csv"), index=False)
        self._status.value = f"table written to {path.name}"
        return path

    def _export_clicked(self, _event=None):
        try:
            self.export_table(self._export_path.value)
        except Exception as exc:  # shown to the user
            notify_error(exc)
