"""Enhancement dock widget: CLAHE (with live preview), denoising, background correction.

The output goes to an Image layer named after the step (``CLAHE``,
``denoise``, ``background``), updated on re-run, with the input's scale and
units. Lengths are in nm when the input layer has a physical scale.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSlider, FloatSpinBox, Label, PushButton

from ._common import as_array, layer_pixel_size, notify_error, record_step, start_worker, write_layer

STEP_OUTPUT = {"CLAHE": "CLAHE", "denoise": "denoise", "background": "background"}
STEP_FUNCTION = {"CLAHE": "clahe", "denoise": "denoise", "background": "correct_background"}


# --------------------------------------------------------------------------- shared helpers
def layers_of(viewer, *kinds: str):
    import napari

    classes = tuple(getattr(napari.layers, k) for k in kinds)
    return [layer for layer in viewer.layers if isinstance(layer, classes)]


class _Failure:
    def __init__(self, error):
        self.error = error


class Cancelled(Exception):
    """Raised inside a worker's computation when the user pressed Cancel."""


_CANCELLED = object()


def run_in_worker(owner, work, done, *, desc: str, total: int = 0):
    """Run the generator function ``work()`` in a thread worker.

    Every ``yield`` advances the progress bar and is a point where
    ``owner.cancel()`` can stop it; its return value goes to ``done`` in the
    GUI thread. Exceptions become notifications (never a crash).
    A cancelled run never writes its result, also when the computation
    ended before it saw the request; computations that take a
    ``callback`` can stop between iterations with :func:`cancel_check`.
    ``owner._running`` / ``owner._completed`` let tests wait for the end.
    """
    owner._running = True
    owner._cancel_requested = False

    def wrapped():
        try:
            result = yield from work()
            return result
        except Cancelled:
            return _CANCELLED
        except Exception as exc:  # shown as a notification
            return _Failure(exc)

    def finish():
        # ``finished`` comes last, after ``returned`` (which a cancelled worker
        # never emits, also when its computation ran to the end)
        if owner._cancel_requested:
            owner._status.value = f"{desc}: cancelled"
        owner._running = False
        owner._completed += 1

    def returned(result):
        try:
            if result is _CANCELLED or owner._cancel_requested:
                return
            if isinstance(result, _Failure):
                owner._status.value = f"{desc}: failed"
                notify_error(result.error)
            else:
                done(result)
        except Exception as exc:
            notify_error(exc)

    return start_worker(owner, wrapped, on_returned=returned, on_finished=finish, total=total, desc=desc)


def cancel_check(owner):
    """A callback for long computations: raises :class:`Cancelled` once ``owner.cancel()`` was called."""

    def check(*_args):
        if getattr(owner, "_cancel_requested", False):
            raise Cancelled()

    return check


def planes(data: np.ndarray, func):
    """Generator: apply ``func`` to a 2-D image or to each plane of a stack (yields per plane)."""
    if data.ndim == 3 and data.shape[-1] not in (3, 4):
        out = []
        for plane in data:
            out.append(func(plane))
            yield
        return np.stack(out)
    result = func(data)
    yield
    return result


class LengthBox:
    """A length (or, with ``power=2``, an area) shown in nm when the layer has a scale, in px otherwise."""

    def __init__(self, label: str, default_px: float, *, minimum: float = 0.0, maximum: float = 1e9, step=1.0,
                 power: int = 1):
        self.name = label
        self.default_px = default_px
        self.power = int(power)
        self._suffix = "²" if self.power == 2 else ""
        self.widget = FloatSpinBox(
            label=f"{label} (px{self._suffix})", min=minimum, max=maximum, value=default_px, step=step
        )
        self.unit = "px"
        self.pixel_size = None

    def sync(self, pixel_size):
        """Show the length in nm (``pixel_size`` nm/px) or in px (None).

        A length in px becomes the same length in nm (x pixel size; an area
        x pixel size²) when the layer gets a scale; a length in nm stays the
        same physical length when the pixel size changes; without a scale it
        falls back to its default in px.
        """
        unit = "px" if pixel_size is None else "nm"
        if unit != self.unit:
            value = self.widget.value
            if unit == "nm":
                value = value * pixel_size**self.power
            else:
                value = self.default_px
            self.unit = unit  # before setting the value: its change signal may sync again
            self.pixel_size = pixel_size
            self._set_decimals(pixel_size)
            self.widget.max = max(self.widget.max, value * 10)
            self.widget.value = value
        elif unit == "nm" and pixel_size != self.pixel_size:
            self.pixel_size = pixel_size
            self._set_decimals(pixel_size)
        self.widget.label = f"{self.name} ({unit}{self._suffix})"

    def _set_decimals(self, pixel_size):
        # enough decimals to show one pixel's length (or area) to 3 significant digits
        native = getattr(self.widget, "native", None)
        if native is None or not hasattr(native, "setDecimals"):
            return
        decimals = 2
        if pixel_size:
            decimals = int(min(6, max(2, 2 - np.floor(np.log10(pixel_size**self.power)))))
        native.setDecimals(decimals)

    @property
    def value(self):
        return float(self.widget.value)

    @value.setter
    def value(self, v):
        self.widget.value = v


class StepWidget(Container):
    """Base: input-layer combo boxes refreshed with the layer list, cancel, run counters.

    The lengths follow the pixel size of the input layer (``_unit_layer``):
    they switch between px and nm when another layer is chosen and when the
    layer's scale or units change (e.g. set by hand in the pixel-size widget).
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self._worker = None
        self._running = False
        self._completed = 0
        self._cancel_requested = False
        self._watched = None
        self._status = Label(value="")
        self._boxes: list[ComboBox] = []
        self._lengths: list[LengthBox] = []
        self.viewer.layers.events.inserted.connect(self._reset)
        self.viewer.layers.events.removed.connect(self._reset)

    def _reset(self, _event=None):
        for box in self._boxes:
            box.reset_choices()
        self._sync_units()

    def _unit_layer(self):
        """The layer whose pixel size the lengths are given in (None: px)."""
        return None

    def _pixel_size(self):
        return layer_pixel_size(self._unit_layer())

    def _watch(self, layer):
        """Follow ``layer``'s scale and units (and stop following the previous one)."""
        if layer is self._watched:
            return
        if self._watched is not None:
            for name in ("scale", "units"):
                emitter = getattr(self._watched.events, name, None)
                if emitter is not None:
                    emitter.disconnect(self._sync_units)
        self._watched = layer
        if layer is not None:
            for name in ("scale", "units"):
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.connect(self._sync_units)

    def _sync_units(self, _event=None):
        self._watch(self._unit_layer())
        ps = self._pixel_size()
        for length in self._lengths:
            length.sync(ps)

    def _unit(self):
        # lengths are re-synced first, so that their values and the unit agree
        self._sync_units()
        return "px" if self._pixel_size() is None else "nm"

    def cancel(self, _event=None):
        """Stop the running step; its result is not written."""
        if self._worker is not None and self._running:
            self._cancel_requested = True
            self._worker.quit()


# --------------------------------------------------------------------------- widget
class EnhanceWidget(StepWidget):
    """CLAHE, denoising and background correction of an Image layer.

    *CLAHE* has a live preview: with *preview* ticked, dragging the clip
    limit slider updates the ``CLAHE`` layer at once. *Run* processes the
    whole layer (stacks plane by plane) in a thread worker that can be
    cancelled, writes the output layer and records the step for workflows.
    """

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._image = ComboBox(label="image", choices=lambda w: layers_of(self.viewer, "Image"))
        self._boxes = [self._image]
        self._step = ComboBox(label="step", choices=list(STEP_OUTPUT), value="CLAHE")
        # CLAHE
        self._clip = FloatSlider(label="clip limit", min=1.0, max=10.0, value=2.0, step=0.1)
        self._tile = LengthBox("tile size", 128, minimum=0.0)
        self._preview = CheckBox(text="live preview", value=True)
        # denoise
        self._method = ComboBox(label="method", choices=["gaussian", "median", "bilateral", "nlm"], value="gaussian")
        self._size = LengthBox("filter size", 1.0, step=0.5)
        self._strength = FloatSpinBox(label="strength (0 = auto)", min=0, max=1e6, value=0, step=0.05)
        # background
        self._bg_method = ComboBox(label="background", choices=["gaussian", "rolling_ball", "polynomial"], value="gaussian")
        self._bg_size = LengthBox("background scale", 50.0)
        self._mode = ComboBox(label="mode", choices=["subtract", "divide"], value="subtract")
        self._light = CheckBox(text="objects darker than background", value=False)
        self._lengths = [self._tile, self._size, self._bg_size]
        self._run_btn = PushButton(text="Run")
        self._cancel_btn = PushButton(text="Cancel")
        self._groups = {
            "CLAHE": [self._clip, self._tile.widget, self._preview],
            "denoise": [self._method, self._size.widget, self._strength],
            "background": [self._bg_method, self._bg_size.widget, self._mode, self._light],
        }
        self.extend(
            [self._image, self._step, *[w for g in self._groups.values() for w in g],
             self._run_btn, self._cancel_btn, self._status]
        )
        self._step.changed.connect(self._show_step)
        self._image.changed.connect(self._sync_units)
        self._clip.changed.connect(self._live)
        self._tile.widget.changed.connect(self._live)
        self._preview.changed.connect(self._live)  # ticking it shows the preview at once
        self._run_btn.changed.connect(self.run)
        self._cancel_btn.changed.connect(self.cancel)
        self._reset()
        self._show_step()

    # ----------------------------------------------------------------- helpers
    def _unit_layer(self):
        return self._image.value

    def _show_step(self, _event=None):
        for step, widgets in self._groups.items():
            for w in widgets:
                w.visible = step == self._step.value

    def params(self) -> tuple[str, dict]:
        """(API function name, keyword arguments) for the current settings."""
        step = self._step.value
        unit = self._unit()
        if step == "CLAHE":
            return "clahe", {"clip_limit": float(self._clip.value), "tile_size": self._tile.value, "unit": unit}
        if step == "denoise":
            p = {"method": self._method.value, "size": self._size.value, "unit": unit}
            if self._strength.value > 0:
                p["strength"] = float(self._strength.value)
            return "denoise", p
        p = {"method": self._bg_method.value, "size": self._bg_size.value, "mode": self._mode.value, "unit": unit}
        if self._light.value:
            p["light_background"] = True
        return "correct_background", p

    def _compute(self, data, function, params):
        from .. import enhancement

        func = getattr(enhancement, function)
        ps = self._pixel_size()
        kwargs = dict(params)
        if ps is not None:
            kwargs["pixel_size"] = ps
        if function == "clahe":
            return lambda plane: func(plane, **kwargs)
        if function == "denoise":
            method = kwargs.pop("method")
            return lambda plane: func(plane, method, **kwargs)
        method = kwargs.pop("method")
        return lambda plane: func(plane, method, **kwargs)

    def _write(self, layer, result, function, params):
        name = STEP_OUTPUT[self._step.value]
        out = write_layer(self.viewer, result, name=name, kind="image", like=layer, metadata={"step": function, "params": params})
        lo, hi = float(np.min(result)), float(np.max(result))
        out.contrast_limits = (lo, hi if hi > lo else lo + 1.0)  # napari needs lo < hi
        record_step(self.viewer, function, params=params, inputs={"image": layer.name}, output=name)
        self._status.value = f"{name}: done"
        return out

    # ----------------------------------------------------------------- actions
    def _live(self, _event=None):
        """Live CLAHE preview on the current 2-D image (synchronous: CLAHE takes milliseconds)."""
        if not self._preview.value or self._step.value != "CLAHE":
            return
        layer = self._image.value
        if layer is None:
            return
        if getattr(layer, "rgb", False):
            notify_error(f"layer {layer.name!r} is RGB; convert it to grayscale first")
            return
        data = as_array(layer.data)
        if data.ndim != 2:
            self._status.value = f"live preview: 2-D images only; press Run for the {data.ndim}-D stack"
            return
        function, params = self.params()
        try:
            result = self._compute(data, function, params)(data)
        except Exception as exc:
            self._status.value = f"preview: {exc}"
            notify_error(exc)
            return
        self._write(layer, result, function, params)

    def run(self, _event=None):
        layer = self._image.value
        if layer is None:
            notify_error("choose an image layer first")
            return None
        if getattr(layer, "rgb", False):
            notify_error(f"layer {layer.name!r} is RGB; convert it to grayscale first")
            return None
        data = as_array(layer.data)
        function, params = self.params()
        try:
            func = self._compute(data, function, params)
        except Exception as exc:
            notify_error(exc)
            return None
        n = data.shape[0] if data.ndim == 3 else 1
        self._status.value = f"{function}: running..."
        return run_in_worker(
            self,
            lambda: planes(data, func),
            lambda result: self._write(layer, result, function, params),
            desc=function,
            total=n,
        )
