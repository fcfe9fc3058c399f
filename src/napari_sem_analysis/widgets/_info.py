"""Pixel-size and metadata widget: see and set the physical scale of a layer.

Three ways to a pixel size: type it; *Detect scale bar* (reads the bar and its
label, and the info band's field width, with
:func:`~napari_sem_analysis.scalebar.read_scale_bar`, and shows what it found
as a Shapes layer to confirm before *Set pixel size*); or *Calibrate from
line* (a line drawn over a feature of known length, e.g. the scale bar, and
its length typed with a unit).
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, PushButton

from ._base import SEMWidget
from ._common import find_layer, layer_pixel_size, notify_error, notify_info

_UNITS_NM = {"nm": 1.0, "µm": 1e3, "mm": 1e6}
SCALE_BAR_LAYER = "scale bar found"
#: the info band the reader cut off, shown below the image when the scale bar was found in it
BAND_LAYER = "info band (cut off by the reader)"
LINE_LAYER = "calibration line"


def _to_image_pixels(shapes, image, points: np.ndarray) -> np.ndarray:
    """Points of a Shapes layer (its data coordinates) in ``image``'s pixel coordinates."""
    nd = points.shape[1]
    s_scale = np.asarray(shapes.scale)[-nd:]
    s_trans = np.asarray(shapes.translate)[-nd:]
    i_scale = np.asarray(image.scale)[-nd:]
    i_trans = np.asarray(image.translate)[-nd:]
    world = points * s_scale + s_trans
    return (world - i_trans) / i_scale


class PixelSizeWidget(SEMWidget):
    """Show an image layer's pixel size and SEM metadata, and set it.

    The pixel size read from the instrument's metadata is shown; a user can
    override it (files without metadata, or after a calibration): by hand,
    from the scale bar (*Detect scale bar*, then *Set pixel size*), or from a
    line of known length (*Calibrate from line*). Setting it changes the
    layer's ``scale`` and ``units`` (to nm), and optionally those of every
    layer of the same shape and of the Points and Shapes layers drawn on it.
    The calibration is kept in the layer's metadata
    (``pixel_size_source``: ``"user"`` or ``"scale bar"``), from which the
    Workflow widget saves it into the recipe, so a batch over the same
    instrument's exports reuses it.
    """

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._layer = self.layer_box("image", "Image")
        self._info = Label(value="")
        self._size = FloatSpinBox(label="pixel size", min=0.0, max=1e7, step=0.001, value=1.0)
        self._unit = ComboBox(label="unit", choices=list(_UNITS_NM), value="nm")
        self._all = CheckBox(text="apply to all layers of the same shape", value=True)
        self._apply = PushButton(text="Set pixel size")
        self._detect = PushButton(text="Detect scale bar")
        self._draw = PushButton(text="Draw calibration line")
        self._line_length = FloatSpinBox(label="line length", min=0.0, max=1e9, step=0.1, value=1.0)
        self._line_unit = ComboBox(label="line unit", choices=list(_UNITS_NM), value="µm")
        self._calibrate = PushButton(text="Calibrate from line")
        self.reading = None  # the last scale-bar reading (ScaleBarReading)
        self._detected_nm = None  # pixel size the last detection proposed
        self.extend(
            [
                self._layer,
                self._info,
                self._size,
                self._unit,
                self._all,
                self._apply,
                self._detect,
                self._draw,
                self._line_length,
                self._line_unit,
                self._calibrate,
            ]
        )
        self._layer.changed.connect(self._refresh)
        self._apply.changed.connect(self.apply)
        self._detect.changed.connect(self.detect)
        self._draw.changed.connect(self.draw_line)
        self._calibrate.changed.connect(self.calibrate_from_line)
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

    # --- setting the scale ------------------------------------------------------------
    def _targets(self, layer) -> list:
        """``layer`` and, when asked, the layers of its shape and the Points/Shapes drawn on it."""
        targets = [layer]
        if not self._all.value:
            return targets
        shape = layer.data.shape[-2:]
        old_scale = tuple(np.asarray(layer.scale)[-2:])
        for other in self.viewer.layers:
            if other is layer:
                continue
            kind = type(other).__name__
            if kind in ("Points", "Shapes", "Vectors"):
                # drawn on the image: they share its current scale
                if np.allclose(np.asarray(other.scale)[-2:], old_scale):
                    targets.append(other)
            elif getattr(other.data, "shape", (None,))[-2:] == shape:
                targets.append(other)
        return targets

    def set_pixel_size(self, nm: float, *, source: str = "user", calibration: dict | None = None) -> list:
        """Give the chosen image layer (and, when asked, its companions) a pixel size of ``nm``.

        Returns the layers changed.
        """
        layer = self._layer.value
        if layer is None:
            raise ValueError("Choose an image layer first")
        if not (np.isfinite(nm) and nm > 0):
            raise ValueError(f"The pixel size must be a positive number of nm, got {nm}")
        targets = self._targets(layer)
        for target in targets:
            ndim = target.ndim
            target.scale = (*tuple(target.scale)[: ndim - 2], nm, nm)
            target.units = (*tuple(str(u) for u in target.units)[: ndim - 2], "nm", "nm")
            target.metadata["pixel_size_nm"] = nm
            target.metadata["pixel_size_source"] = source
            if calibration is not None:
                target.metadata["pixel_size_calibration"] = dict(calibration)
        self._place_band(layer)
        self.viewer.reset_view()
        from ._base import show_scale_bar

        show_scale_bar(self.viewer)
        notify_info(f"Pixel size set to {nm:.4g} nm ({source}) on {len(targets)} layer(s)")
        self._refresh()
        return targets

    def apply(self, _event=None):
        """Set the pixel size typed (or proposed by *Detect scale bar*)."""
        if self._layer.value is None:
            notify_error("Choose an image layer first")
            return
        value = float(self._size.value)
        if value <= 0:
            notify_error("The pixel size must be greater than 0")
            return
        factor = _UNITS_NM[self._unit.value]
        nm = value * factor
        # the box shows the detected size rounded to its step: that is still the detected size
        tolerance = 0.5 * float(self._size.step) * factor + 1e-9 * nm
        detected = self._detected_nm is not None and abs(nm - self._detected_nm) <= tolerance
        if detected and self.reading is not None:
            nm = float(self._detected_nm)
            r = self.reading
            calibration = {
                "method": "scale bar",
                "label": r.label_text,
                "bar_length_px": r.bar_length_px,
                "field_width": r.field_width_text,
                "confidence": round(float(r.confidence), 3),
            }
            self.set_pixel_size(nm, source="scale bar", calibration=calibration)
        else:
            self.set_pixel_size(nm, source="user")

    # --- scale bar ----------------------------------------------------------------------
    @staticmethod
    def _plane(layer) -> np.ndarray:
        data = np.asarray(layer.data)
        if data.ndim == 3 and not (layer.rgb and data.shape[-1] in (3, 4)):
            data = data[0]
        return data

    def _band(self, layer) -> np.ndarray | None:
        """The info band the reader cut off the layer's image, when it kept it and it fits below."""
        data = self._plane(layer)
        band = (layer.metadata or {}).get("databar")
        if band is None:
            return None
        band = np.asarray(band)
        if band.ndim == data.ndim and band.shape[1:] == data.shape[1:] and band.dtype == data.dtype:
            return band
        return None

    def _full_image(self, layer) -> np.ndarray:
        """The layer's 2-D image with the info band the reader cut off, when it kept it."""
        data = self._plane(layer)
        band = self._band(layer)
        return data if band is None else np.concatenate([data, band], axis=0)

    def _place_band(self, layer) -> None:
        """Keep the band layer right below ``layer``'s image, at its scale."""
        band_layer = find_layer(self.viewer, BAND_LAYER)
        if band_layer is None or layer is None:
            return
        scale = np.asarray(layer.scale)[-2:]
        rows = self._plane(layer).shape[0]
        band_layer.scale = tuple(scale)
        band_layer.translate = tuple(np.asarray(layer.translate)[-2:] + np.array([rows * scale[0], 0.0]))
        band_layer.units = tuple(str(u) for u in layer.units)[-2:]

    def _show_band(self, layer) -> None:
        """Show the cut-off info band below the image, so the boxes found in it lie over the bar."""
        band = self._band(layer)
        if band is None:
            return
        existing = find_layer(self.viewer, BAND_LAYER)
        if existing is not None:
            self.viewer.layers.remove(existing)
        kwargs = {"name": BAND_LAYER, "rgb": bool(layer.rgb)}
        if not layer.rgb:
            kwargs.update(colormap="gray", contrast_limits=tuple(layer.contrast_limits))
        self.viewer.add_image(band, **kwargs)
        self._place_band(layer)

    def detect(self, _event=None):
        """Read the scale bar (in a worker), show bar and label as a Shapes layer, propose the pixel size."""
        layer = self._layer.value
        if layer is None:
            notify_error("Choose an image layer first")
            return None
        image = self._full_image(layer)

        def work():
            from ..scalebar import read_scale_bar

            yield
            return read_scale_bar(image)

        return self.start(work, self._show_reading, desc="Reading the scale bar")

    def _show_reading(self, reading):
        self.reading = reading
        layer = self._layer.value
        if reading is None or layer is None:
            return
        if reading.pixel_size is None:
            self._detected_nm = None
            notify_error("No scale bar found: draw a line over it and use 'Calibrate from line'")
            return
        boxes, what, text = [], [], []
        for kind, box, label in (
            ("bar", reading.bar_box, f"{reading.bar_length_px:.0f} px" if reading.bar_length_px else ""),
            ("label", reading.label_box, reading.label_text or ""),
        ):
            if box is None:
                continue
            r0, c0, r1, c1 = box
            boxes.append(np.array([[r0 - 0.5, c0 - 0.5], [r1 - 0.5, c1 - 0.5]]))
            what.append(kind)
            text.append(label)
        features = {"what": what, "text": text}
        kwargs = {
            "shape_type": "rectangle",
            "edge_color": "yellow",
            "face_color": "transparent",
            "edge_width": 2,
            "features": features,
            "scale": tuple(np.asarray(layer.scale)[-2:]),
            "translate": tuple(np.asarray(layer.translate)[-2:]),
        }
        kwargs["units"] = tuple(str(u) for u in layer.units)[-2:]
        existing = find_layer(self.viewer, SCALE_BAR_LAYER)
        if existing is not None:
            self.viewer.layers.remove(existing)
        rows = self._plane(layer).shape[0]
        if any(b[:, 0].max() > rows - 0.5 for b in boxes):
            # found in the band the reader cut off: show the band below the image, under the boxes
            self._show_band(layer)
        if boxes:
            shapes = self.viewer.add_shapes(boxes, name=SCALE_BAR_LAYER, **kwargs)
            shapes.text = {"string": "{text}", "color": "yellow", "anchor": "upper_left"}
            self.viewer.reset_view()
        self._detected_nm = float(reading.pixel_size)
        self._size.value = reading.pixel_size
        self._unit.value = "nm"
        lines = [f"scale bar: {reading.pixel_size:.4g} nm/px (confidence {reading.confidence:.2f})"]
        if reading.label_text:
            lines.append(f"label {reading.label_text!r} over {reading.bar_length_px:.0f} px")
        if reading.field_width_text:
            lines.append(f"{reading.field_width_text}")
        lines += reading.notes
        lines.append("check the boxes, then 'Set pixel size'")
        self._info.value = "\n".join(lines)
        if reading.confident:
            notify_info(f"Scale bar read: {reading.pixel_size:.4g} nm/px; check it, then 'Set pixel size'")
        else:
            notify_error(
                f"Scale bar read with low confidence ({reading.confidence:.2f}): {reading.pixel_size:.4g} nm/px; "
                "check it, or calibrate from a line"
            )

    # --- line calibration ---------------------------------------------------------------
    def draw_line(self, _event=None):
        """Add (or select) the Shapes layer to draw the calibration line in, in line mode."""
        layer = self._layer.value
        shapes = find_layer(self.viewer, LINE_LAYER)
        if shapes is None:
            kwargs = {}
            if layer is not None:
                kwargs = {
                    "scale": tuple(np.asarray(layer.scale)[-2:]),
                    "translate": tuple(np.asarray(layer.translate)[-2:]),
                }
            shapes = self.viewer.add_shapes(name=LINE_LAYER, edge_color="cyan", edge_width=2, ndim=2, **kwargs)
        self.viewer.layers.selection.active = shapes
        shapes.mode = "add_line"
        return shapes

    def _line_length_px(self, layer) -> float:
        shapes = find_layer(self.viewer, LINE_LAYER)
        if shapes is None:
            selected = [
                lay
                for lay in self.viewer.layers.selection
                if type(lay).__name__ == "Shapes" and lay.name != SCALE_BAR_LAYER
            ]
            shapes = selected[0] if selected else None
        if shapes is None or len(shapes.data) == 0:
            raise ValueError("Draw a line first ('Draw calibration line', then click its two ends)")
        lines = [
            (d, t)
            for d, t in zip(shapes.data, shapes.shape_type, strict=False)
            if t in ("line", "path") and len(d) >= 2
        ]
        if not lines:
            raise ValueError(f"The layer {shapes.name!r} holds no line: draw one with the line tool")
        pts = _to_image_pixels(shapes, layer, np.asarray(lines[-1][0], float)[:, -2:])
        return float(np.sum(np.linalg.norm(np.diff(pts, axis=0), axis=1)))

    def calibrate_from_line(self, _event=None):
        """Pixel size = the typed length / the length of the last line drawn (in image pixels); applied."""
        layer = self._layer.value
        if layer is None:
            notify_error("Choose an image layer first")
            return None
        try:
            length_px = self._line_length_px(layer)
            if length_px < 2:
                raise ValueError(f"The line is {length_px:.1f} px long: draw a longer one")
            length = float(self._line_length.value)
            if length <= 0:
                raise ValueError("Type the line's length (greater than 0)")
            nm = length * _UNITS_NM[self._line_unit.value] / length_px
            calibration = {
                "method": "line",
                "length": length,
                "unit": self._line_unit.value,
                "line_px": round(length_px, 3),
            }
            self.set_pixel_size(nm, source="user", calibration=calibration)
        except ValueError as exc:
            notify_error(str(exc))
            return None
        return nm
