"""Pixel-size and metadata widget: see and set the physical scale of a layer."""

from __future__ import annotations

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, PushButton

from ._base import SEMWidget
from ._common import layer_pixel_size, notify_error, notify_info

_UNITS_NM = {"nm": 1.0, "µm": 1e3, "mm": 1e6}


class PixelSizeWidget(SEMWidget):
    """Show an image layer's pixel size and SEM metadata, and set it by hand.

    The pixel size read from the instrument's metadata is shown; a user can
    override it (e.g. for files without metadata, or after a calibration).
    Setting it changes the layer's ``scale`` and ``units`` (to nm), and
    optionally those of every layer of the same shape (labels, outputs).
    """

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._layer = self.layer_box("image", "Image")
        self._info = Label(value="")
        self._size = FloatSpinBox(label="pixel size", min=0.0, max=1e7, step=0.001, value=1.0)
        self._unit = ComboBox(label="unit", choices=list(_UNITS_NM), value="nm")
        self._all = CheckBox(text="apply to all layers of the same shape", value=True)
        self._apply = PushButton(text="Set pixel size")
        self.extend([self._layer, self._info, self._size, self._unit, self._all, self._apply])
        self._layer.changed.connect(self._refresh)
        self._apply.changed.connect(self.apply)
        self._refresh()

    def _refresh(self, _event=None):
        layer = self._layer.value
        if layer is None:
            self._info.value = "no image layer"
            return
        px = layer_pixel_size(layer)
        meta = layer.metadata or {}
        lines = [f"pixel size: {px:.4g} nm" if px else "pixel size: unknown (pixels)"]
        source = meta.get("pixel_size_source")
        if source:
            lines.append(f"from: {source}")
        for key, name in (
            ("instrument", "instrument"),
            ("detector", "detector"),
            ("voltage_kv", "kV"),
            ("magnification", "magnification"),
            ("working_distance_mm", "WD (mm)"),
            ("date", "date"),
        ):
            if meta.get(key) not in (None, ""):
                lines.append(f"{name}: {meta[key]}")
        self._info.value = "\n".join(lines)
        if px:
            self._size.value = px
            self._unit.value = "nm"

    def apply(self, _event=None):
        layer = self._layer.value
        if layer is None:
            notify_error("Choose an image layer first")
            return
        value = float(self._size.value)
        if value <= 0:
            notify_error("The pixel size must be greater than 0")
            return
        nm = value * _UNITS_NM[self._unit.value]
        targets = [layer]
        if self._all.value:
            shape = layer.data.shape[-2:]
            import napari

            targets += [
                other
                for other in self.viewer.layers
                if other is not layer and (
                    getattr(other.data, "shape", (None,))[-2:] == shape
                    # points and shapes drawn on the image (e.g. seeds) follow it
                    or (isinstance(other, (napari.layers.Points, napari.layers.Shapes)) and other.ndim == layer.ndim)
                )
            ]
        for target in targets:
            ndim = target.ndim
            target.scale = (*tuple(target.scale)[: ndim - 2], nm, nm)
            target.units = (*tuple(str(u) for u in target.units)[: ndim - 2], "nm", "nm")
            target.metadata["pixel_size_nm"] = nm
            target.metadata["pixel_size_source"] = "user"
        self.viewer.reset_view()
        from ._base import show_scale_bar

        show_scale_bar(self.viewer)
        notify_info(f"Pixel size set to {nm:.4g} nm on {len(targets)} layer(s)")
        self._refresh()
