"""Enhancement dock widget: CLAHE (with live preview), denoising, background correction.

The output goes to an Image layer named after the step (``CLAHE``,
``denoise``, ``background``), updated on re-run, with the input's scale and
units. Lengths are in nm when the input layer has a physical scale.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSlider, FloatSpinBox

from ._base import StepCall, StepWidget, check_gray, wide
from ._common import notify_error

STEP_OUTPUT = {"CLAHE": "CLAHE", "denoise": "denoise", "background": "background"}
STEP_FUNCTION = {"CLAHE": "clahe", "denoise": "denoise", "background": "correct_background"}


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
        self._image = self.layer_box("image", "Image")
        self._step = ComboBox(label="step", choices=list(STEP_OUTPUT), value="CLAHE")
        # CLAHE
        self._clip = wide(FloatSlider(label="clip limit", min=1.0, max=10.0, value=2.0, step=0.1))
        self._tile = self.length_box("tile_size", 128, minimum=0.0)
        self._preview = CheckBox(text="live preview", value=False)
        # denoise
        self._method = ComboBox(label="method", choices=["gaussian", "median", "bilateral", "nlm"], value="gaussian")
        self._size = self.length_box("size", 1.0, label="filter size", step=0.5)
        self._strength = FloatSpinBox(label="strength (0 = auto)", min=0, max=1e6, value=0, step=0.05)
        # background
        self._bg_method = ComboBox(
            label="background", choices=["gaussian", "rolling_ball", "polynomial"], value="gaussian"
        )
        self._bg_size = self.length_box("size", 50.0, label="background scale")
        self._mode = ComboBox(label="mode", choices=["subtract", "divide"], value="subtract")
        self._light = CheckBox(text="objects darker than background", value=False)
        self._groups = {
            "CLAHE": [self._clip, self._tile.widget, self._preview],
            "denoise": [self._method, self._size.widget, self._strength],
            "background": [self._bg_method, self._bg_size.widget, self._mode, self._light],
        }
        self.extend([self._image, self._step, *[w for g in self._groups.values() for w in g], *self.run_controls()])
        self._step.changed.connect(self._show_step)
        self._clip.changed.connect(self._live)
        self._tile.widget.changed.connect(self._live)
        self._preview.changed.connect(self._live)  # ticking it shows the preview at once
        self._preview.changed.connect(self._preview_toggled)
        self._reset()
        self._show_step()

    # ----------------------------------------------------------------- helpers
    def _show_step(self, _event=None):
        for step, widgets in self._groups.items():
            for w in widgets:
                w.visible = step == self._step.value

    def params(self) -> dict:
        """Keyword arguments of the chosen step (``clahe``, ``denoise`` or ``correct_background``)."""
        step = self._step.value
        unit = self.unit()
        if step == "CLAHE":
            return {"clip_limit": float(self._clip.value), "tile_size": self._tile.value, "unit": unit}
        if step == "denoise":
            p = {"method": self._method.value, "size": self._size.value, "unit": unit}
            if self._strength.value > 0:
                p["strength"] = float(self._strength.value)
            return p
        p = {"method": self._bg_method.value, "size": self._bg_size.value, "mode": self._mode.value, "unit": unit}
        if self._light.value:
            p["light_background"] = True
        return p

    def calls(self) -> list[StepCall]:
        if self._image.value is None:
            raise ValueError("choose an image layer first")
        step = self._step.value
        return [StepCall(STEP_FUNCTION[step], self.params(), {"image": self._image.value}, STEP_OUTPUT[step])]

    def write(self, result, calls):
        out = super().write(result, calls)
        lo, hi = float(np.min(result)), float(np.max(result))
        out.contrast_limits = (lo, hi if hi > lo else lo + 1.0)  # napari needs lo < hi
        return out

    # ----------------------------------------------------------------- actions
    def _preview_toggled(self, _event=None):
        if not self._preview.value:
            self.drop_previews()  # a preview layer goes away with the preview

    def _live(self, _event=None):
        """Live CLAHE preview on the current 2-D image (synchronous: CLAHE takes milliseconds)."""
        if self._step.value == "CLAHE":
            live_preview(self)


def live_preview(widget) -> bool:
    """Show ``widget``'s preview of its chosen 2-D image (its ``_image`` box) when *live preview* is ticked.

    Returns whether a preview was shown; a stack, or an error, is said in the status line instead.
    """
    layer = widget._image.value
    if not widget._preview.value or layer is None:
        return False
    try:
        data = check_gray(layer)
        if data.ndim != 2:
            widget._status.value = f"live preview: 2-D images only; press Run for the {data.ndim}-D stack"
            return False
        widget.preview()
        return True
    except Exception as exc:  # any failure of a preview is shown, never raised into Qt's event loop
        widget._status.value = f"preview: {exc}"
        notify_error(exc)
        return False
