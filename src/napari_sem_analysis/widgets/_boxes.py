"""The small input widgets of the dock widgets: layer lists, grey-image checks, lengths in px or nm.

Re-exported by ``widgets/_base.py``, where :class:`~napari_sem_analysis.widgets._base.SEMWidget` builds
its layer boxes and :class:`LengthBox` es from them.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import FloatSpinBox

from .._validation import SEMAnalysisError
from ._common import as_array

__all__ = ["LengthBox", "check_gray", "layers_of", "nice_value", "show_scale_bar", "wide"]


def layers_of(viewer, *kinds: str) -> list:
    """The viewer's layers of the given napari layer class names (``"Image"``, ``"Labels"``...)."""
    import napari

    classes = tuple(getattr(napari.layers, k) for k in kinds)
    return [layer for layer in viewer.layers if isinstance(layer, classes)]


def check_gray(layer) -> np.ndarray:
    """The data of a grayscale Image layer (SEMAnalysisError for none or an RGB layer)."""
    if layer is None:
        raise SEMAnalysisError("choose an image layer first")
    if getattr(layer, "rgb", False):
        raise SEMAnalysisError(f"layer {layer.name!r} is RGB; convert it to grayscale first")
    return as_array(layer.data)


_SCALE_BAR_SHOWN: set = set()


def show_scale_bar(viewer) -> bool:
    """Show napari's scale bar once a layer has a physical scale (nm); once per viewer, so the user can hide it."""
    key = id(viewer)
    if key in _SCALE_BAR_SHOWN:
        return False
    for layer in viewer.layers:
        units = [str(u) for u in getattr(layer, "units", ())]
        if units and units[-1] in ("nm", "nanometer") and float(layer.scale[-1]) != 1.0:
            viewer.scale_bar.visible = True
            _SCALE_BAR_SHOWN.add(key)
            return True
    return False


def wide(slider, width: int = 180):
    """Give a slider room (the default dock width leaves it a 40 px stub)."""
    native = getattr(slider, "native", None)
    if native is not None and hasattr(native, "setMinimumWidth"):
        native.setMinimumWidth(width)
    return slider


# --------------------------------------------------------------------------- lengths
_NICE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0)


def nice_value(value: float) -> float:
    """``value`` rounded to a round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8 x 10^k; within 12%).

    Default lengths given in px become round physical values: 128 px at
    7.344 nm/px is 1000 nm, not 940.03 nm.
    """
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        return v
    exp = np.floor(np.log10(v))
    mant = v / 10**exp
    best = min(_NICE, key=lambda n: abs(np.log(mant / n)))
    return float(f"{best * 10**exp:.6g}")


class LengthBox:
    """A length (or, with ``power=2``, an area) shown in nm when the layer has a scale, in px otherwise."""

    def __init__(
        self, label: str, default_px: float, *, minimum: float = 0.0, maximum: float = 1e9, step=1.0, power: int = 1
    ):
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
                # the default becomes a round physical value; a value the user typed is converted exactly
                value = value * pixel_size**self.power
                if abs(self.widget.value - self.default_px) <= 0.006 + 1e-3 * abs(self.default_px):
                    value = nice_value(value)  # the default (as shown, to the spin box's decimals)
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
