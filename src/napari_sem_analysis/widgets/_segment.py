"""Classical segmentation dock widgets: threshold (live preview), watershed split, SLIC superpixels.

Each widget runs steps of the registry (:mod:`napari_sem_analysis.steps`) on
its input layers through :class:`~._base.StepWidget`, which writes a Labels
layer named after the step (updated on re-run, with the input's scale and
units) and records the steps for workflows. Lengths are in nm when the input
layer has a scale. This module holds only what is special about each step.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSlider, FloatSpinBox, SpinBox

from .._validation import SEMAnalysisError
from ._base import StepCall, StepWidget, cancel_check, check_gray
from ._common import as_array, notify_error, write_layer

GLOBAL = ["otsu", "li", "yen", "triangle", "isodata", "mean", "minimum"]
LOCAL = ["sauvola", "niblack", "local_mean"]
_THRESHOLD_KEYS = ("method", "dark_objects", "offset", "window_size", "k")
_CLEAN_KEYS = ("min_size", "fill_holes", "opening", "unit")


# --------------------------------------------------------------------------- threshold
class ThresholdWidget(StepWidget):
    """Global, local or multi-level threshold of an Image layer, with clean-up.

    With *live preview* ticked, changing the method, the offset slider or
    the clean-up options updates the output Labels layer at once (2-D
    images). The output is ``threshold`` (1 = object) or, for multi-level
    Otsu, ``phases`` (1..N from dark to bright).
    """

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._image = self.layer_box("image", "Image")
        self._method = ComboBox(label="method", choices=[*GLOBAL, *LOCAL, "multi-otsu"], value="otsu")
        self._dark = CheckBox(text="dark objects", value=False)
        self._offset = FloatSlider(label="offset", min=-128, max=128, value=0, step=1)
        self._window = self.length_box("window_size", 51, label="window", of="threshold")
        self._k = FloatSpinBox(label="k", min=-2, max=2, value=0.2, step=0.05)
        self._classes = SpinBox(label="classes", min=2, max=7, value=3)
        self._opening = self.length_box("opening", 0.0, label="opening radius", of="clean_mask")
        self._min_size = self.length_box("min_size", 4.0, label="min size", maximum=1e12, of="clean_mask")
        self._fill = CheckBox(text="fill holes", value=True)
        self._preview = CheckBox(text="live preview", value=True)
        self.extend(
            [self._image, self._method, self._dark, self._offset, self._window.widget, self._k, self._classes,
             self._opening.widget, self._min_size.widget, self._fill, self._preview, *self.run_controls()]
        )
        self._image.changed.connect(self._image_changed)
        self._method.changed.connect(self._show)
        for w in (self._method, self._dark, self._offset, self._window.widget, self._k, self._classes,
                  self._opening.widget, self._min_size.widget, self._fill, self._preview):
            w.changed.connect(self._live)
        self._previewed = False
        self._reset()
        self._offset_range()
        self._show()

    def _image_changed(self, _event=None):
        self._offset_range()
        if self._previewed:  # a preview is on screen: show it for the new image
            self._live()

    def _offset_range(self):
        layer = self._image.value
        if layer is not None and not getattr(layer, "rgb", False):
            # the offset slider spans the image's intensity range; NaN/inf pixels
            # (refused by the threshold itself, with a message) must not break it
            data = as_array(layer.data)
            finite = data if not np.issubdtype(data.dtype, np.floating) else data[np.isfinite(data)]
            span = float(finite.max()) - float(finite.min()) if finite.size else 0.0
            span = span if np.isfinite(span) and span > 0 else 1.0
            self._offset.min, self._offset.max = -span / 2, span / 2
            self._offset.step = max(span / 256, 1e-6)

    def _show(self, _event=None):
        m = self._method.value
        self._window.widget.visible = m in LOCAL
        self._k.visible = m in ("sauvola", "niblack")
        self._classes.visible = m == "multi-otsu"
        for w in (self._dark, self._offset, self._opening.widget, self._min_size.widget, self._fill):
            w.visible = m != "multi-otsu"

    def params(self) -> dict:
        """The settings: threshold and clean-up keyword arguments (``classes`` for multi-Otsu)."""
        m = self._method.value
        unit = self.unit()
        if m == "multi-otsu":
            return {"classes": int(self._classes.value)}
        p = {"method": m, "dark_objects": bool(self._dark.value), "offset": float(self._offset.value)}
        if m in LOCAL:
            p.update(window_size=self._window.value)
            if m in ("sauvola", "niblack"):
                p["k"] = float(self._k.value)
        p.update(min_size=float(self._min_size.value), fill_holes=bool(self._fill.value),
                 opening=self._opening.value, unit=unit)
        return p

    def calls(self) -> list[StepCall]:
        """``multi_threshold``, or ``threshold`` (to ``threshold raw``) then ``clean_mask``."""
        layer = self._image.value
        p = self.params()
        if "classes" in p:
            return [StepCall("multi_threshold", p, {"image": layer}, "phases")]
        t = {k: p[k] for k in _THRESHOLD_KEYS if k in p}
        if "window_size" in t:
            t["unit"] = p["unit"]
        clean = {k: p[k] for k in _CLEAN_KEYS}
        return [StepCall("threshold", t, {"image": layer}, "threshold raw"),
                StepCall("clean_mask", clean, {"mask": "threshold raw"}, "threshold")]

    def write(self, result, calls):
        result = np.asarray(result).astype(np.uint8)
        multi = calls[0].step == "multi_threshold"
        if not multi and not result.any():
            raise SEMAnalysisError("the clean-up removed every object; lower min size or opening")
        fractions = np.bincount(result.ravel(), minlength=2)[1:] / result.size
        out = write_layer(self.viewer, result, name=calls[-1].output, kind="labels", like=calls[0].inputs["image"],
                          metadata={"fractions": fractions.tolist()})
        if multi:
            self._status.value = "phase fractions: " + ", ".join(f"{100 * f:.1f}%" for f in fractions)
        else:
            self._status.value = f"object area fraction: {100 * fractions[0]:.1f}%"
        return out

    def _live(self, _event=None):
        if not self._preview.value:
            return
        layer = self._image.value
        if layer is None:
            return
        try:
            data = check_gray(layer)
            if data.ndim != 2:
                self._status.value = f"live preview: 2-D images only; press Run for the {data.ndim}-D stack"
                return
            self.preview()
            self._previewed = True
        except Exception as exc:
            self._status.value = f"preview: {exc}"
            notify_error(exc)


# --------------------------------------------------------------------------- split
class SplitWidget(StepWidget):
    """Split touching objects of a Labels (mask) layer by a distance-transform watershed.

    Optional: an Image layer (the split then also follows the visible edges
    between particles), and/or a Points layer of seeds clicked by the user
    (one object grows from each point, :func:`watershed_from_seeds`: over
    the mask's distance map, or over the image's edges inside the mask when
    an image is chosen too). Output Labels layer ``split``.
    """

    step = "split_touching"
    output = "split"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._mask = self.layer_box("mask", "Labels")
        self._image = self.layer_box("image (edges)", "Image", optional=True, arg="intensity_image")
        self._seeds = self.layer_box("seeds", "Points", optional=True)
        self._min_distance = self.length_box("min_distance", 5.0, label="min distance", step=0.5)
        self._edge = FloatSpinBox(label="edge quantile (0 = off)", min=0, max=1, value=0.5, step=0.05)
        self._weight = FloatSpinBox(label="edge weight", min=0, max=1, value=0.5, step=0.05)
        self._min_size = self.length_box("min_size", 0.0, label="min size", maximum=1e12)
        self._separate = CheckBox(text="separate touching objects", value=False)
        self.extend([self._mask, self._image, self._seeds, self._min_distance.widget, self._edge, self._weight,
                     self._min_size.widget, self._separate, *self.run_controls()])
        self._reset()

    def params(self) -> dict:
        p = {"min_distance": self._min_distance.value, "min_size": float(self._min_size.value),
             "separate": bool(self._separate.value), "unit": self.unit()}
        if self._image.value is not None:
            if self._edge.value > 0:
                p["edge_quantile"] = float(self._edge.value)
            p["boundary_weight"] = float(self._weight.value)
        return p

    def calls(self) -> list[StepCall]:
        """``split_touching`` of the mask, or ``watershed_from_seeds`` when a seeds layer is chosen."""
        mask, image, seeds = self._mask.value, self._image.value, self._seeds.value
        if mask is None:
            raise SEMAnalysisError("choose a labels (mask) layer first")
        if seeds is None:
            inputs = {"mask": mask, **({"intensity_image": image} if image is not None else {})}
            return [StepCall("split_touching", self.params(), inputs, "split")]
        # flood the image's edges from the seeds inside the mask, or the mask's distance map
        inputs = {"image_or_mask": image, "seeds": seeds, "mask": mask} if image is not None else {
            "image_or_mask": mask, "seeds": seeds}
        return [StepCall("watershed_from_seeds", {}, inputs, "split")]

    def read(self, calls) -> dict:
        layer = self._mask.value
        mask = as_array(layer.data) > 0
        if not mask.any():
            raise SEMAnalysisError(f"layer {layer.name!r} is empty: nothing to split")
        data = {layer.name: mask}
        image_layer, seeds_layer = self._image.value, self._seeds.value
        if image_layer is not None:
            image = check_gray(image_layer)
            if image.shape != mask.shape:
                raise SEMAnalysisError(
                    f"image {image_layer.name!r} {image.shape} and mask {layer.name!r} {mask.shape} differ in shape"
                )
            data[image_layer.name] = image
        if seeds_layer is not None:
            if mask.ndim != 2:
                raise SEMAnalysisError("seeded watershed works on 2-D layers")
            if len(seeds_layer.data) == 0:
                raise SEMAnalysisError(f"points layer {seeds_layer.name!r} has no points")
            world = np.array([seeds_layer.data_to_world(p) for p in np.asarray(seeds_layer.data)])
            data[seeds_layer.name] = np.array([layer.world_to_data(w) for w in world])[:, -2:]
        return data

    def plane_function(self, calls, pixel_size):
        func = super().plane_function(calls, pixel_size)
        mask_name = self._mask.value.name

        def run(arrays):
            mask = arrays[mask_name]
            return func(arrays) if mask.any() else np.zeros(mask.shape, np.int32)  # empty planes of a stack

        return run

    def write(self, result, calls):
        result = np.asarray(result).astype(np.int32)
        out = write_layer(self.viewer, result, name="split", kind="labels", like=self._mask.value)
        self._status.value = f"{len(np.unique(result)) - 1} objects"
        return out


# --------------------------------------------------------------------------- superpixels
class SuperpixelWidget(StepWidget):
    """SLIC superpixels of an Image layer (region size in nm when the layer has a scale).

    Optional mask (a Labels layer: only its non-zero pixels are labelled).
    Runs in a thread worker (CUDA when available with device "auto").
    Output Labels layer ``superpixels``.
    """

    step = "superpixels"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._image = self.layer_box("image", "Image")
        self._mask = self.layer_box("mask", "Labels", optional=True)
        self._region = self.length_box("region_size", 32.0, label="region size", minimum=2.0)
        self._compactness = FloatSpinBox(label="compactness", min=0.001, max=1000, value=0.1, step=0.01)
        self._iters = SpinBox(label="iterations", min=1, max=100, value=10)
        self._device = ComboBox(label="device", choices=["cpu", "auto"], value="cpu")
        self.extend([self._image, self._mask, self._region.widget, self._compactness, self._iters, self._device,
                     *self.run_controls()])
        self._reset()

    def params(self) -> dict:
        return {"region_size": self._region.value, "compactness": float(self._compactness.value),
                "max_iter": int(self._iters.value), "unit": self.unit(), "device": self._device.value}

    def read(self, calls) -> dict:
        image = check_gray(self._image.value)
        data = {self._image.value.name: image}
        mask_layer = self._mask.value
        if mask_layer is not None:
            mask = as_array(mask_layer.data) > 0
            if mask.shape != image.shape:
                raise SEMAnalysisError(f"mask {mask_layer.name!r} {mask.shape} and image {image.shape} differ in shape")
            data[mask_layer.name] = mask
        return data

    def compute(self, calls, data, pixel_size):
        # Cancel stops between k-means iterations (not recorded: a run-time callback)
        live = [StepCall(c.step, {**c.params, "callback": cancel_check(self)}, c.inputs, c.output) for c in calls]
        func = self.plane_function(live, pixel_size)
        image = data[self._image.value.name]
        if image.ndim == 3:
            out, offset = [], 0
            for i in range(image.shape[0]):
                lab = func({k: v[i] for k, v in data.items()})
                out.append(np.where(lab > 0, lab + offset, 0))
                offset += int(lab.max())
                yield
            return np.stack(out).astype(np.int32)
        yield
        return func(data)

    def write(self, result, calls):
        out = write_layer(self.viewer, result, name="superpixels", kind="labels", like=self._image.value)
        self._status.value = f"{len(np.unique(result[result > 0]))} superpixels"
        return out
