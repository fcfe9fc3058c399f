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
from ..segmentation.presets import PARTICLE_MIN_DIAMETER_PX, PARTICLE_SPLIT
from ._base import StepCall, StepWidget, cancel_check, check_gray, wide
from ._common import as_array, write_layer
from ._enhance import live_preview

GLOBAL = ["otsu", "li", "yen", "triangle", "isodata", "mean", "minimum"]
LOCAL = ["sauvola", "niblack", "local_mean"]
_THRESHOLD_KEYS = ("method", "dark_objects", "offset", "window_size", "k")
_CLEAN_KEYS = ("min_size", "fill_holes", "max_hole_size", "opening", "unit")
#: holes up to this area (px) are filled by default: specks inside particles, not the pores of a network
MAX_HOLE_PX = 100.0


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
        # defaults: the mask of the ``particles`` preset (1 px Gaussian, Li, 1 px opening, 4 px particles)
        self._smooth = self.length_box("size", 1.0, label="smooth (Gaussian sigma)", of="denoise", step=0.5)
        self._smooth.widget.tooltip = "Gaussian blur before thresholding (0 = none), as the particles preset does"
        self._method = ComboBox(label="method", choices=[*GLOBAL, *LOCAL, "multi-otsu"], value="li")
        self._dark = CheckBox(text="dark objects", value=False)
        self._offset = wide(FloatSlider(label="offset (grey levels)", min=-128, max=128, value=0, step=1))
        self._offset.tooltip = "added to the threshold, in the image's grey levels"
        self._window = self.length_box("window_size", 51, label="window", of="threshold")
        self._k = FloatSpinBox(label="k (Sauvola/Niblack)", min=-2, max=2, value=0.2, step=0.05)
        self._classes = SpinBox(label="classes", min=2, max=7, value=3)
        self._opening = self.length_box("opening", 1.0, label="opening radius", of="clean_mask")
        self._min_size = self.length_box(
            "min_size",
            float(np.pi * (PARTICLE_MIN_DIAMETER_PX / 2) ** 2),
            label="min size",
            maximum=1e12,
            of="clean_mask",
        )
        self._fill = CheckBox(text="fill holes up to the max hole size", value=True)
        self._max_hole = self.length_box(
            "max_hole_size", MAX_HOLE_PX, label="max hole size", maximum=1e12, of="clean_mask"
        )
        self._max_hole.widget.tooltip = (
            "only holes up to this area are filled (0 = every hole): the pores of a network stay open"
        )
        self._preview = CheckBox(text="live preview", value=False)
        settings = [
            self._smooth.widget,
            self._method,
            self._dark,
            self._offset,
            self._window.widget,
            self._k,
            self._classes,
            self._opening.widget,
            self._min_size.widget,
            self._fill,
            self._max_hole.widget,
            self._preview,
        ]
        self.extend([self._image, *settings, *self.run_controls()])
        self._image.changed.connect(self._image_changed)
        self._method.changed.connect(self._show)
        self._fill.changed.connect(self._show)
        for w in settings:  # every setting updates the live preview
            w.changed.connect(self._live)
        self._preview.changed.connect(self._preview_toggled)
        self._previewed = False
        self._reset()
        self._offset_range()
        self._show()

    def _preview_toggled(self, _event=None):
        if not self._preview.value:
            self.drop_previews()  # the preview layers go away with the preview
            self._previewed = False

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
        for w in (
            self._dark,
            self._offset,
            self._opening.widget,
            self._min_size.widget,
            self._fill,
            self._max_hole.widget,
        ):
            w.visible = m != "multi-otsu"
        self._max_hole.widget.enabled = bool(self._fill.value)

    def params(self) -> dict:
        """The settings: threshold and clean-up keyword arguments (``classes`` for multi-Otsu)."""
        m = self._method.value
        unit = self.unit()
        if m == "multi-otsu":
            return {"classes": int(self._classes.value), "smooth": self._smooth.value, "unit": unit}
        p = {"method": m, "dark_objects": bool(self._dark.value), "offset": float(self._offset.value)}
        if m in LOCAL:
            p.update(window_size=self._window.value)
            if m in ("sauvola", "niblack"):
                p["k"] = float(self._k.value)
        p.update(
            min_size=float(self._min_size.value),
            fill_holes=bool(self._fill.value),
            max_hole_size=(self._max_hole.value or None) if self._fill.value else None,
            opening=self._opening.value,
            unit=unit,
            smooth=self._smooth.value,
        )
        return p

    def calls(self) -> list[StepCall]:
        """(``denoise``), ``multi_threshold``, or ``threshold`` (to ``threshold raw``) then ``clean_mask``."""
        layer = self._image.value
        p = self.params()
        smooth = p.pop("smooth", 0.0)
        first: list[StepCall] = []
        source = layer
        if smooth and smooth > 0:
            first = [
                StepCall(
                    "denoise",
                    # float32, unrounded: the preset thresholds the smoothed image without rounding it to 8 bits
                    {"method": "gaussian", "size": smooth, "unit": p["unit"], "keep_dtype": False},
                    {"image": layer},
                    "threshold smoothed",
                )
            ]
            source = "threshold smoothed"
        if "classes" in p:
            return [*first, StepCall("multi_threshold", {"classes": p["classes"]}, {"image": source}, "phases")]
        t = {k: p[k] for k in _THRESHOLD_KEYS if k in p}
        if "window_size" in t:
            t["unit"] = p["unit"]
        clean = {k: p[k] for k in _CLEAN_KEYS if p.get(k) is not None}
        return [
            *first,
            StepCall("threshold", t, {"image": source}, "threshold raw"),
            StepCall("clean_mask", clean, {"mask": "threshold raw"}, "threshold"),
        ]

    def read(self, calls) -> dict:
        data = super().read(calls)
        image = data[self._image.value.name]
        # checked before smoothing, which would hide a constant image behind rounding noise
        from .._validation import check_image

        for plane in image if image.ndim == 3 else [image]:
            check_image(plane, allow_constant=False)
        return data

    def write(self, result, calls):
        result = np.asarray(result).astype(np.uint8)
        multi = calls[-1].step == "multi_threshold"
        self.drop_previews(keep=calls[-1].output)  # e.g. no "phases" preview left once back to a threshold
        if not multi and not result.any():
            raise SEMAnalysisError("the clean-up removed every object; lower min size or opening")
        fractions = np.bincount(result.ravel(), minlength=2)[1:] / result.size
        out = write_layer(
            self.viewer,
            result,
            name=calls[-1].output,
            kind="labels",
            like=self._image.value,
            metadata={"fractions": fractions.tolist()},
        )
        if multi:
            self._status.value = "phase fractions: " + ", ".join(f"{100 * f:.1f}%" for f in fractions)
        else:
            self._status.value = f"object area fraction: {100 * fractions[0]:.1f}%"
            if calls[-1].params.get("fill_holes") and calls[-1].params.get("max_hole_size"):
                hole = calls[-1].params["max_hole_size"]
                self._status.value += f" (holes up to {hole:g} {calls[-1].params.get('unit', 'px')}² filled)"
        return out

    def _live(self, _event=None):
        if live_preview(self):
            self._previewed = True


# --------------------------------------------------------------------------- split
class SplitWidget(StepWidget):
    """Split touching objects of a Labels (mask) layer by a distance-transform watershed.

    Optional: an Image layer (the split then also follows the visible edges
    between particles), and/or a Points layer of seeds clicked by the user
    (one object grows from each point, :func:`watershed_from_seeds`: over
    the mask's distance map, or over the image's edges inside the mask when
    an image is chosen too). Output Labels layer ``split``.
    """

    step = "split_particles"
    output = "split"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        # defaults: the splitting of the ``particles`` preset (PARTICLE_SPLIT), so that
        # Threshold -> Split with the defaults gives the preset's particles
        self._mask = self.layer_box("mask", "Labels")
        self._image = self.layer_box("image (edges)", "Image", optional=True, arg="intensity_image")
        self._seeds = self.layer_box("seeds", "Points", optional=True)
        self._min_distance = self.length_box("split_min_distance", 0.0, label="min distance (0 = auto)", step=0.5)
        self._min_distance.widget.tooltip = (
            f"distance between two particle centres; 0 = {PARTICLE_SPLIT['split_fraction']:g} x the median "
            "particle radius measured on the mask"
        )
        self._edge = FloatSpinBox(
            label="edge quantile (0 = off)", min=0, max=1, value=PARTICLE_SPLIT["edge_quantile"], step=0.05
        )
        self._weight = FloatSpinBox(
            label="edge weight (0..1)", min=0, max=1, value=PARTICLE_SPLIT["boundary_weight"], step=0.05
        )
        self._min_size = self.length_box(
            "min_size", float(np.pi * (PARTICLE_MIN_DIAMETER_PX / 2) ** 2), label="min size", maximum=1e12
        )
        self._min_size.widget.tooltip = "smaller pieces are merged into their neighbour (or dropped when alone)"
        self._slivers = CheckBox(text="merge rim slivers into their particle", value=PARTICLE_SPLIT["merge_slivers"])
        self._separate = CheckBox(text="separate touching objects", value=PARTICLE_SPLIT["separate"])
        self.extend(
            [
                self._mask,
                self._image,
                self._seeds,
                self._min_distance.widget,
                self._edge,
                self._weight,
                self._min_size.widget,
                self._slivers,
                self._separate,
                *self.run_controls(),
            ]
        )
        self._reset()
        images = [c for c in self._image.choices if c is not None]
        if images:  # the edges of the image the mask was made from
            self._image.value = images[0]

    def params(self) -> dict:
        p = {
            "min_size": float(self._min_size.value),
            "merge_slivers": bool(self._slivers.value),
            "separate": bool(self._separate.value),
            "unit": self.unit(),
        }
        if self._min_distance.value > 0:
            p["split_min_distance"] = self._min_distance.value
        if self._image.value is not None:
            p["edge_quantile"] = float(self._edge.value) if self._edge.value > 0 else None
            p["boundary_weight"] = float(self._weight.value)
        return p

    def calls(self) -> list[StepCall]:
        """``split_particles`` of the mask, or ``watershed_from_seeds`` when a seeds layer is chosen."""
        mask, image, seeds = self._mask.value, self._image.value, self._seeds.value
        if mask is None:
            raise SEMAnalysisError("choose a labels (mask) layer first")
        if seeds is None:
            inputs = {"mask": mask, **({"intensity_image": image} if image is not None else {})}
            return [StepCall("split_particles", self.params(), inputs, "split")]
        # flood the image's edges from the seeds inside the mask, or the mask's distance map
        inputs = (
            {"image_or_mask": image, "seeds": seeds, "mask": mask}
            if image is not None
            else {"image_or_mask": mask, "seeds": seeds}
        )
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


# --------------------------------------------------------------------------- connected components
class ComponentsWidget(StepWidget):
    """One label per connected object of a mask (pores of a network): no splitting, fast.

    Output Labels layer ``components``; the step ``label_components`` is
    recorded for workflows.
    """

    step = "label_components"
    output = "components"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._mask = self.layer_box("mask", "Labels")
        self._connectivity = ComboBox(
            label="connectivity", choices=[("4 (sides)", 4), ("8 (sides and corners)", 8)], value=8
        )
        self._min_size = self.length_box("min_size", 0.0, label="min size", maximum=1e12)
        self.extend([self._mask, self._connectivity, self._min_size.widget, *self.run_controls()])
        self._reset()

    def params(self) -> dict:
        return {
            "connectivity": int(self._connectivity.value),
            "min_size": float(self._min_size.value),
            "unit": self.unit(),
        }

    def read(self, calls) -> dict:
        layer = self._mask.value
        return {layer.name: as_array(layer.data) > 0}

    def write(self, result, calls):
        out = super().write(np.asarray(result, np.int32), calls)
        self._status.value = f"{int(np.asarray(result).max())} objects"
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
        self.extend(
            [
                self._image,
                self._mask,
                self._region.widget,
                self._compactness,
                self._iters,
                self._device,
                *self.run_controls(),
            ]
        )
        self._reset()

    def params(self) -> dict:
        return {
            "region_size": self._region.value,
            "compactness": float(self._compactness.value),
            "max_iter": int(self._iters.value),
            "unit": self.unit(),
            "device": self._device.value,
        }

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
