"""Classical segmentation dock widgets: threshold (live preview), watershed split, SLIC superpixels.

Each widget reads its input layers, calls the core functions of
:mod:`napari_sem_analysis.segmentation`, writes a Labels layer named after
the step (updated on re-run, with the input's scale and units) and records
the step for workflows. Lengths are in nm when the input layer has a scale.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSlider, FloatSpinBox, PushButton, SpinBox

from .._validation import SEMAnalysisError
from ._common import as_array, notify_error, record_step, write_layer
from ._enhance import LengthBox, StepWidget, cancel_check, layers_of, planes, run_in_worker

GLOBAL = ["otsu", "li", "yen", "triangle", "isodata", "mean", "minimum"]
LOCAL = ["sauvola", "niblack", "local_mean"]


def _check_gray(layer):
    if layer is None:
        raise SEMAnalysisError("choose an image layer first")
    if getattr(layer, "rgb", False):
        raise SEMAnalysisError(f"layer {layer.name!r} is RGB; convert it to grayscale first")
    return as_array(layer.data)


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
        self._image = ComboBox(label="image", choices=lambda w: layers_of(self.viewer, "Image"))
        self._boxes = [self._image]
        self._method = ComboBox(label="method", choices=[*GLOBAL, *LOCAL, "multi-otsu"], value="otsu")
        self._dark = CheckBox(text="dark objects", value=False)
        self._offset = FloatSlider(label="offset", min=-128, max=128, value=0, step=1)
        self._window = LengthBox("window", 51)
        self._k = FloatSpinBox(label="k", min=-2, max=2, value=0.2, step=0.05)
        self._classes = SpinBox(label="classes", min=2, max=7, value=3)
        self._opening = LengthBox("opening radius", 0.0)
        self._min_size = LengthBox("min size", 4.0, maximum=1e12, power=2)
        self._fill = CheckBox(text="fill holes", value=True)
        self._preview = CheckBox(text="live preview", value=True)
        self._run_btn = PushButton(text="Run")
        self._cancel_btn = PushButton(text="Cancel")
        self._lengths = [self._window, self._opening, self._min_size]
        self.extend(
            [self._image, self._method, self._dark, self._offset, self._window.widget, self._k, self._classes,
             self._opening.widget, self._min_size.widget, self._fill, self._preview, self._run_btn, self._cancel_btn,
             self._status]
        )
        self._image.changed.connect(self._image_changed)
        self._method.changed.connect(self._show)
        for w in (self._method, self._dark, self._offset, self._window.widget, self._k, self._classes,
                  self._opening.widget, self._min_size.widget, self._fill, self._preview):
            w.changed.connect(self._live)
        self._run_btn.changed.connect(self.run)
        self._cancel_btn.changed.connect(self.cancel)
        self._previewed = False
        self._reset()
        self._offset_range()
        self._show()

    def _unit_layer(self):
        return self._image.value

    def _image_changed(self, _event=None):
        self._sync_units()
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

    def steps(self) -> list[tuple[str, dict]]:
        """The API calls of the current settings: [(function, params), ...]."""
        m = self._method.value
        unit = self._unit()
        if m == "multi-otsu":
            return [("multi_threshold", {"classes": int(self._classes.value)})]
        p = {"method": m, "dark_objects": bool(self._dark.value), "offset": float(self._offset.value)}
        if m in LOCAL:
            p.update(window_size=self._window.value, unit=unit)
            if m in ("sauvola", "niblack"):
                p["k"] = float(self._k.value)
        clean = {"min_size": float(self._min_size.value), "fill_holes": bool(self._fill.value),
                 "opening": self._opening.value, "unit": unit}
        return [("threshold", p), ("clean_mask", clean)]

    def _func(self, steps):
        from .. import segmentation

        ps = self._pixel_size()

        def f(plane):
            out = plane
            for name, params in steps:
                kw = dict(params)
                if name in ("threshold", "clean_mask") and ps is not None:
                    kw["pixel_size"] = ps
                if name == "threshold":
                    out = segmentation.threshold(out, kw.pop("method"), **kw)
                elif name == "clean_mask":
                    out = segmentation.clean_mask(out, **kw)
                else:
                    out = segmentation.multi_threshold(out, **kw)
            return out.astype(np.uint8)

        return f

    def _write(self, layer, result, steps):
        multi = steps[0][0] == "multi_threshold"
        name = "phases" if multi else "threshold"
        if not multi and not result.any():
            raise SEMAnalysisError("the clean-up removed every object; lower min size or opening")
        fractions = np.bincount(result.ravel(), minlength=2)[1:] / result.size
        write_layer(self.viewer, result, name=name, kind="labels", like=layer, metadata={"fractions": fractions.tolist()})
        if multi:
            record_step(self.viewer, "multi_threshold", params=steps[0][1], inputs={"image": layer.name}, output=name)
            self._status.value = "phase fractions: " + ", ".join(f"{100 * f:.1f}%" for f in fractions)
        else:
            record_step(self.viewer, "threshold", params=steps[0][1], inputs={"image": layer.name}, output="threshold raw")
            record_step(self.viewer, "clean_mask", params=steps[1][1], inputs={"mask": "threshold raw"}, output=name)
            self._status.value = f"object area fraction: {100 * fractions[0]:.1f}%"

    def _live(self, _event=None):
        if not self._preview.value:
            return
        layer = self._image.value
        if layer is None:
            return
        try:
            data = _check_gray(layer)
            if data.ndim != 2:
                self._status.value = f"live preview: 2-D images only; press Run for the {data.ndim}-D stack"
                return
            steps = self.steps()
            self._write(layer, self._func(steps)(data), steps)
            self._previewed = True
        except Exception as exc:
            self._status.value = f"preview: {exc}"
            notify_error(exc)

    def run(self, _event=None):
        try:
            layer = self._image.value
            data = _check_gray(layer)
            steps = self.steps()
            func = self._func(steps)
        except Exception as exc:
            notify_error(exc)
            return None
        return run_in_worker(self, lambda: planes(data, func), lambda r: self._write(layer, r, steps),
                             desc="threshold", total=data.shape[0] if data.ndim == 3 else 1)


# --------------------------------------------------------------------------- split
class SplitWidget(StepWidget):
    """Split touching objects of a Labels (mask) layer by a distance-transform watershed.

    Optional: an Image layer (the split then also follows the visible edges
    between particles), and/or a Points layer of seeds clicked by the user
    (one object grows from each point, :func:`watershed_from_seeds`: over
    the mask's distance map, or over the image's edges inside the mask when
    an image is chosen too). Output Labels layer ``split``.
    """

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._mask = ComboBox(label="mask", choices=lambda w: layers_of(self.viewer, "Labels"))
        self._image = ComboBox(label="image (edges)", choices=lambda w: [None, *layers_of(self.viewer, "Image")], value=None)
        self._seeds = ComboBox(label="seeds", choices=lambda w: [None, *layers_of(self.viewer, "Points")], value=None)
        self._boxes = [self._mask, self._image, self._seeds]
        self._min_distance = LengthBox("min distance", 5.0, step=0.5)
        self._edge = FloatSpinBox(label="edge quantile (0 = off)", min=0, max=1, value=0.5, step=0.05)
        self._weight = FloatSpinBox(label="edge weight", min=0, max=1, value=0.5, step=0.05)
        self._min_size = LengthBox("min size", 0.0, maximum=1e12, power=2)
        self._separate = CheckBox(text="separate touching objects", value=False)
        self._run_btn = PushButton(text="Run")
        self._cancel_btn = PushButton(text="Cancel")
        self._lengths = [self._min_distance, self._min_size]
        self.extend([self._mask, self._image, self._seeds, self._min_distance.widget, self._edge, self._weight,
                     self._min_size.widget, self._separate, self._run_btn, self._cancel_btn, self._status])
        self._mask.changed.connect(self._sync_units)
        self._run_btn.changed.connect(self.run)
        self._cancel_btn.changed.connect(self.cancel)
        self._reset()

    def _unit_layer(self):
        return self._mask.value

    def params(self) -> dict:
        p = {"min_distance": self._min_distance.value, "min_size": float(self._min_size.value),
             "separate": bool(self._separate.value), "unit": self._unit()}
        if self._image.value is not None:
            if self._edge.value > 0:
                p["edge_quantile"] = float(self._edge.value)
            p["boundary_weight"] = float(self._weight.value)
        return p

    def run(self, _event=None):
        from .. import segmentation

        try:
            layer = self._mask.value
            if layer is None:
                raise SEMAnalysisError("choose a labels (mask) layer first")
            mask = as_array(layer.data) > 0
            if not mask.any():
                raise SEMAnalysisError(f"layer {layer.name!r} is empty: nothing to split")
            seeds_layer = self._seeds.value
            image_layer = self._image.value
            ps = self._pixel_size()
            if seeds_layer is not None:
                if mask.ndim != 2:
                    raise SEMAnalysisError("seeded watershed works on 2-D layers")
                if len(seeds_layer.data) == 0:
                    raise SEMAnalysisError(f"points layer {seeds_layer.name!r} has no points")
                world = np.array([seeds_layer.data_to_world(p) for p in np.asarray(seeds_layer.data)])
                pts = np.array([layer.world_to_data(w) for w in world])[:, -2:]
                function, params = "watershed_from_seeds", {}
                if image_layer is not None:
                    # flood the image's edges from the seeds, inside the mask
                    surface = _check_gray(image_layer)
                    if surface.shape != mask.shape:
                        raise SEMAnalysisError(
                            f"image {image_layer.name!r} {surface.shape} and mask {layer.name!r} {mask.shape} differ in shape"
                        )
                    inputs = {"image_or_mask": image_layer.name, "seeds": seeds_layer.name, "mask": layer.name}
                    seed_args = (surface, pts)
                    seed_kw = {"mask": mask}
                else:
                    inputs = {"image_or_mask": layer.name, "seeds": seeds_layer.name}
                    seed_args, seed_kw = (mask, pts), {}

                def work():
                    yield
                    return segmentation.watershed_from_seeds(*seed_args, **seed_kw)
            else:
                params = self.params()
                kw = dict(params)
                if ps is not None:
                    kw["pixel_size"] = ps
                intensity = None
                inputs = {"mask": layer.name}
                if image_layer is not None:
                    intensity = _check_gray(image_layer)
                    if intensity.shape != mask.shape:
                        raise SEMAnalysisError(
                            f"image {image_layer.name!r} {intensity.shape} and mask {layer.name!r} {mask.shape} differ in shape"
                        )
                    inputs["intensity_image"] = image_layer.name
                else:
                    kw.pop("edge_quantile", None)
                    kw.pop("boundary_weight", None)
                function = "split_touching"

                def work():
                    if mask.ndim == 3:
                        out = []
                        for i, plane in enumerate(mask):
                            extra = {} if intensity is None else {"intensity_image": intensity[i]}
                            out.append(segmentation.split_touching(plane, **kw, **extra) if plane.any()
                                       else np.zeros(plane.shape, np.int32))
                            yield
                        return np.stack(out)
                    yield
                    extra = {} if intensity is None else {"intensity_image": intensity}
                    return segmentation.split_touching(mask, **kw, **extra)
        except Exception as exc:
            notify_error(exc)
            return None

        def done(result):
            write_layer(self.viewer, result.astype(np.int32), name="split", kind="labels", like=layer)
            record_step(self.viewer, function, params=params, inputs=inputs, output="split")
            self._status.value = f"{len(np.unique(result)) - 1} objects"

        return run_in_worker(self, work, done, desc=function, total=mask.shape[0] if mask.ndim == 3 else 1)


# --------------------------------------------------------------------------- superpixels
class SuperpixelWidget(StepWidget):
    """SLIC superpixels of an Image layer (region size in nm when the layer has a scale).

    Optional mask (a Labels layer: only its non-zero pixels are labelled).
    Runs in a thread worker (CUDA when available with device "auto").
    Output Labels layer ``superpixels``.
    """

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._image = ComboBox(label="image", choices=lambda w: layers_of(self.viewer, "Image"))
        self._mask = ComboBox(label="mask", choices=lambda w: [None, *layers_of(self.viewer, "Labels")], value=None)
        self._boxes = [self._image, self._mask]
        self._region = LengthBox("region size", 32.0, minimum=2.0)
        self._compactness = FloatSpinBox(label="compactness", min=0.001, max=1000, value=0.1, step=0.01)
        self._iters = SpinBox(label="iterations", min=1, max=100, value=10)
        self._device = ComboBox(label="device", choices=["cpu", "auto"], value="cpu")
        self._run_btn = PushButton(text="Run")
        self._cancel_btn = PushButton(text="Cancel")
        self._lengths = [self._region]
        self.extend([self._image, self._mask, self._region.widget, self._compactness, self._iters, self._device,
                     self._run_btn, self._cancel_btn, self._status])
        self._image.changed.connect(self._sync_units)
        self._run_btn.changed.connect(self.run)
        self._cancel_btn.changed.connect(self.cancel)
        self._reset()

    def _unit_layer(self):
        return self._image.value

    def params(self) -> dict:
        return {"region_size": self._region.value, "compactness": float(self._compactness.value),
                "max_iter": int(self._iters.value), "unit": self._unit(), "device": self._device.value}

    def run(self, _event=None):
        from .. import segmentation

        try:
            layer = self._image.value
            data = _check_gray(layer)
            mask_layer = self._mask.value
            mask = None
            inputs = {"image": layer.name}
            if mask_layer is not None:
                mask = as_array(mask_layer.data) > 0
                if mask.shape != data.shape:
                    raise SEMAnalysisError(f"mask {mask_layer.name!r} {mask.shape} and image {data.shape} differ in shape")
                inputs["mask"] = mask_layer.name
            params = self.params()
            kw = dict(params)
            ps = self._pixel_size()
            if ps is not None:
                kw["pixel_size"] = ps
        except Exception as exc:
            notify_error(exc)
            return None

        kw["callback"] = cancel_check(self)  # Cancel stops between k-means iterations

        def work():
            if data.ndim == 3:
                out, offset = [], 0
                for i, plane in enumerate(data):
                    lab = segmentation.superpixels(plane, mask=None if mask is None else mask[i], **kw)
                    out.append(np.where(lab > 0, lab + offset, 0))
                    offset += int(lab.max())
                    yield
                return np.stack(out).astype(np.int32)
            yield
            return segmentation.superpixels(data, mask=mask, **kw)

        def done(result):
            write_layer(self.viewer, result, name="superpixels", kind="labels", like=layer)
            record_step(self.viewer, "superpixels", params=params, inputs=inputs, output="superpixels")
            self._status.value = f"{len(np.unique(result[result > 0]))} superpixels"

        return run_in_worker(self, work, done, desc="superpixels", total=data.shape[0] if data.ndim == 3 else 1)
