"""Measurement widgets: measure objects and texture, browse the feature table, plot features.

* :class:`MeasureWidget`: choose a Labels layer and (optionally) an Image
  layer and the feature groups; :func:`napari_sem_analysis.measure` runs in a
  thread worker; the table goes into the Labels layer's ``features`` (with an
  ``index`` column = label value, so napari shows the features of the object
  under the mouse), optionally into a Points layer at the centroids and a
  Shapes layer of outlines or oriented bounding boxes, both carrying the
  features. *Tile texture* computes GLCM/LBP features per tile of a regular
  grid into a Shapes layer of the tiles.
* :class:`FeatureTableWidget` (in ``_table``): a sortable, filterable table of a layer's
  features; selecting a row selects (and highlights) that object in the
  viewer and picking an object in the viewer selects its row; export to CSV
  and to Excel (when openpyxl is installed), with units in the headers.
* :class:`PlotWidget` (in ``_plots``): matplotlib plots of a layer's features: size
  distribution (histogram with D10/D50/D90 and the cumulative curve), any
  feature's histogram, scatter of two features; saved as PNG.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FloatSpinBox,
    Label,
    PushButton,
    SpinBox,
)

from .._validation import SEMAnalysisError, to_grayscale
from ._base import StepCall, StepWidget
from ._common import as_array, layer_pixel_size, notify_error, notify_info, write_layer
from ._layout import wrap_text
from ._plots import PlotWidget
from ._table import _UNITS_KEY, FeatureTableWidget

__all__ = ["MeasureWidget", "FeatureTableWidget", "PlotWidget", "POINTS_NAME", "SHAPES_NAME", "TILES_NAME"]

POINTS_NAME = "measure centroids"
SHAPES_NAME = "measure outlines"
TILES_NAME = "texture tiles"
#: most shapes (outlines, boxes, tiles) written to a Shapes layer: napari builds
#: Shapes layers at roughly 4,000 polygons per second on the GUI thread, so 100,000
#: objects would freeze the viewer for about half a minute
MAX_SHAPES = 20_000
#: outlines and tiles: a Shapes layer of unfilled 1 px outlines
_OUTLINE_STYLE = {"kind": "shapes", "face_color": "transparent", "edge_width": 1}


def _too_many_shapes(n: int, what: str) -> str:
    return (
        f"{n} {what}: more than the {MAX_SHAPES} shapes a Shapes layer can show without "
        "freezing napari, so no Shapes layer was written"
    )


def _merge_features(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """New measurements, keeping columns of the old features that are not measurements (e.g. class)."""
    new = new.copy()
    new.insert(0, "index", new["label"].to_numpy())
    if old is None or len(old) == 0 or "index" not in old.columns:
        return new
    from ..measurement import INTENSITY_COLUMNS, SHAPE_COLUMNS

    ours = {"label", *SHAPE_COLUMNS, *INTENSITY_COLUMNS}
    keep = [
        c for c in old.columns if c not in new.columns and c not in ours and not str(c).startswith(("glcm_", "lbp_"))
    ]
    if not keep:
        return new
    extra = old[["index", *keep]].drop_duplicates("index")
    return new.merge(extra, on="index", how="left")


# ---------------------------------------------------------------------------
# measure
# ---------------------------------------------------------------------------
def _write_feature_layer(viewer, data, *, name: str, kind: str, like, features: pd.DataFrame, units: dict, **style):
    """Write (or update) a points/shapes layer with one row of ``features`` per shape, and their units."""
    layer = write_layer(viewer, data, name=name, kind=kind, like=like, features=features, **style)
    layer.features = features
    layer.metadata[_UNITS_KEY] = units
    return layer


def _docked_table(viewer):
    """A Feature table the user already docked (Plugins menu), so Measure reuses it."""
    try:
        docked = viewer.window.dock_widgets
    except Exception:  # headless viewers, older napari
        return None
    for widget in docked.values():
        if isinstance(widget, FeatureTableWidget):
            return widget
    return None


class MeasureWidget(StepWidget):
    """Measure the objects of a Labels layer (morphology in nm, intensity, texture).

    Results go into the Labels layer's ``features``; optional Points layer
    ``measure centroids`` and Shapes layer ``measure outlines`` (outlines or
    oriented bounding boxes) carry the same features. The feature table dock
    opens on the result. *Tile texture* writes GLCM/LBP features per tile of
    the Image layer into the Shapes layer ``texture tiles``.

    Shapes layers hold at most :data:`MAX_SHAPES` objects or tiles (napari
    builds them slowly on the GUI thread); beyond that the table, features and
    Points layer are still written and the summary says why no Shapes layer
    was. Layers with non-square pixels are refused.
    """

    step = "measure"
    output = "measurements"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.table: pd.DataFrame | None = None
        self.tile_table: pd.DataFrame | None = None
        self.table_widget: FeatureTableWidget | None = None

        self._labels = self.layer_box("labels", "Labels")
        self._image = self.layer_box("image", "Image", optional=True)
        self._shape = CheckBox(text="shape (Feret, solidity)", value=True)
        self._intensity = CheckBox(text="intensity", value=True)
        self._texture = CheckBox(text="texture (GLCM, LBP)", value=False)
        self._levels = SpinBox(label="GLCM levels (0 = auto)", min=0, max=256, value=0)
        self._points = CheckBox(text="points at centroids", value=False)
        self._shapes = ComboBox(label="shapes", choices=["none", "outlines", "oriented boxes"], value="none")
        self._show_table = CheckBox(text="open feature table", value=True)
        self._run_btn = PushButton(text="Measure")
        self._tile = FloatSpinBox(label="tile size (nm, px if no scale)", min=1, max=1e9, value=64, step=1)
        self._tile_btn = PushButton(text="Tile texture")
        self._summary = Label(value="")
        self.extend(
            [
                self._labels,
                self._image,
                self._shape,
                self._intensity,
                self._texture,
                self._levels,
                self._points,
                self._shapes,
                self._show_table,
                self._run_btn,
                self._summary,
                self._tile,
                self._tile_btn,
            ]
        )
        wrap_text(self._summary)  # the summary wraps at the dock's width instead of being cut off
        self._run_btn.changed.connect(self.run)
        self._tile_btn.changed.connect(self.run_tiles)

    # -- per object -------------------------------------------------------
    def pixel_size(self) -> float | None:
        """nm per pixel of the labels layer, else of the image layer."""
        ps = layer_pixel_size(self._labels.value)
        if ps is None and self._image.value is not None:
            ps = layer_pixel_size(self._image.value)
        return ps

    def params(self) -> dict:
        with_image = self._image.value is not None
        return {
            "texture": bool(self._texture.value) and with_image,
            "intensity": bool(self._intensity.value) and with_image,
            "shape": bool(self._shape.value),
            "glcm_levels": int(self._levels.value) or None,
        }

    def calls(self) -> list[StepCall]:
        if self._labels.value is None:
            raise SEMAnalysisError("choose a Labels layer to measure")
        return super().calls()

    def read(self, calls) -> dict:
        """The labels (a copy: the user may edit the layer while we work) and the grayscale image."""
        labels_layer, image_layer = self._labels.value, self._image.value
        labels = as_array(labels_layer.data)
        if labels.ndim != 2:
            raise SEMAnalysisError(f"the Labels layer must be 2-D, got shape {labels.shape}")
        data = {labels_layer.name: labels.copy()}
        if image_layer is not None:
            image = as_array(image_layer.data)
            if image_layer.rgb:
                image = to_grayscale(image)
            if image.shape != labels.shape:
                raise SEMAnalysisError(
                    f"the labels ({labels.shape}) and the image ({image.shape}) have different shapes"
                )
            data[image_layer.name] = image
        source = labels_layer if layer_pixel_size(labels_layer) is not None else image_layer
        if source is not None and layer_pixel_size(source) is not None:
            sy, sx = (float(v) for v in source.scale[-2:])
            if not np.isclose(sy, sx, rtol=1e-6):
                raise SEMAnalysisError(
                    f"the layer {source.name!r} has non-square pixels (scale {sy:g} x {sx:g}); "
                    "measurements need square pixels: resample the image first"
                )
        return data

    def progress_total(self, data) -> int:
        return 2

    def compute(self, calls, data, pixel_size):
        """The table (the registry's ``measure`` step), then the outlines or boxes to draw."""
        from ..measurement import mask_warning, object_outlines, oriented_boxes

        labels = data[self._labels.value.name]
        shapes = self._shapes.value
        table = self.plane_function(calls, pixel_size)(data)
        if len(table) == 1:  # a thresholded mask measured as one object: say so in the widget too
            table.attrs["mask_warning"] = mask_warning(labels)
        yield 1
        geometry = None
        if shapes != "none" and len(table) > MAX_SHAPES:
            table.attrs["shapes_skipped"] = (
                _too_many_shapes(len(table), "objects") + " (the Points layer can show them)"
            )
        elif shapes == "outlines":
            geometry = object_outlines(labels)[1]
        elif shapes == "oriented boxes":
            geometry = list(oriented_boxes(labels)[1])
        yield 2
        return table, geometry

    def write(self, result, calls):
        table, geometry = result
        labels_layer = calls[0].inputs["labels"]
        ps = calls[0].pixel_size
        self.table = table
        units = dict(table.attrs.get("units", {}))
        feats = _merge_features(labels_layer.features, table)
        labels_layer.features = feats
        labels_layer.metadata[_UNITS_KEY] = units
        scale = ps if ps is not None else 1.0
        if self._points.value:
            pts = np.stack([table["centroid_y"].to_numpy() / scale, table["centroid_x"].to_numpy() / scale], axis=1)
            _write_feature_layer(
                self.viewer,
                pts,
                name=POINTS_NAME,
                kind="points",
                like=labels_layer,
                features=feats,
                units=units,
                size=3,
                face_color="yellow",
            )
        if geometry is not None:
            _write_feature_layer(
                self.viewer,
                geometry,
                name=SHAPES_NAME,
                like=labels_layer,
                features=feats,
                units=units,
                shape_type="polygon",
                edge_color="cyan",
                **_OUTLINE_STYLE,
            )
        self._summary.value = _summary_text(table)
        if table.attrs.get("shapes_skipped"):
            notify_info(table.attrs["shapes_skipped"])
        if self._show_table.value:
            self.show_table(labels_layer)

    def show_table(self, layer=None):
        """Open (or refresh) the feature-table dock on ``layer``."""
        layer = layer if layer is not None else self._labels.value
        if self.table_widget is None:
            self.table_widget = _docked_table(self.viewer)
        if self.table_widget is None:
            self.table_widget = FeatureTableWidget(self.viewer)
            try:
                self.viewer.window.add_dock_widget(self.table_widget, name="Feature table", area="right")
            except Exception:  # headless viewers without a window
                pass
        self.table_widget.set_layer(layer)
        return self.table_widget

    # -- per tile -----------------------------------------------------------
    def _tile_pixels(self, image, ps) -> int:
        """The tile size in px (SEMAnalysisError when too small or too many tiles for a Shapes layer)."""
        tile_px = int(round(self._tile.value / ps)) if ps is not None else int(round(self._tile.value))
        if tile_px < 2:
            raise SEMAnalysisError(f"tile size {self._tile.value} is below 2 pixels")
        h, w = image.shape
        n_tiles = -(-h // tile_px) * -(-w // tile_px)
        if n_tiles > MAX_SHAPES:
            smallest = tile_px
            while -(-h // smallest) * -(-w // smallest) > MAX_SHAPES:
                smallest += 1
            size = f"{smallest * ps:g} nm" if ps is not None else f"{smallest} px"
            raise SEMAnalysisError(f"{_too_many_shapes(n_tiles, 'tiles')}; choose a tile size of at least {size}")
        return tile_px

    def run_tiles(self, _event=None):
        """GLCM + LBP features per tile of the Image layer, as a Shapes layer of tiles."""
        image_layer = self._image.value
        try:
            if image_layer is None:
                raise SEMAnalysisError("choose an Image layer for the tile texture")
            image = as_array(image_layer.data)
            if image_layer.rgb:
                image = to_grayscale(image)
            if image.ndim != 2:
                raise SEMAnalysisError(f"the Image layer must be 2-D, got shape {image.shape}")
            tile_px = self._tile_pixels(image, layer_pixel_size(image_layer))
        except SEMAnalysisError as exc:
            notify_error(exc)
            return None
        call = StepCall(
            "glcm_features",
            {"tile_size": tile_px, "levels": int(self._levels.value) or None},
            {"image": image_layer},
            TILES_NAME,
        )

        def work():
            from ..texture import lbp_features

            g = call.entry({"image": image}, call.params)
            yield 1
            lb = lbp_features(image, tile_size=tile_px)
            yield 2
            return pd.concat([g, lb.drop(columns=list(g.columns[:7]))], axis=1)

        def done(table):
            self._write_tiles(image_layer, table)
            self.record(call)

        return self.start(work, done, desc="tile texture", total=2)

    def _write_tiles(self, image_layer, table):
        self.tile_table = table
        rects = [
            np.array([[y - 0.5, x - 0.5], [y - 0.5, x + w - 0.5], [y + h - 0.5, x + w - 0.5], [y + h - 0.5, x - 0.5]])
            for y, x, h, w in table[["y", "x", "height", "width"]].to_numpy()
        ]
        feats = table.copy()
        # tile position and size are in pixels; the texture features have no unit
        units = {c: "px" for c in ("y", "x", "height", "width")}
        layer = _write_feature_layer(
            self.viewer,
            rects,
            name=TILES_NAME,
            like=image_layer,
            features=feats,
            units=units,
            shape_type="rectangle",
            edge_color="magenta",
            **_OUTLINE_STYLE,
        )
        if self._show_table.value:
            self.show_table(layer)


def _summary_text(table: pd.DataFrame) -> str:
    from ..measurement import summarize

    if len(table) == 0:
        return "no objects"
    s = summarize(table).loc["all"]
    unit = table.attrs.get("unit", "px")
    count = int(s["count"])
    text = (
        f"{count} object{'s' if count != 1 else ''}, area fraction {s['area_fraction']:.3f}, "
        f"D10/D50/D90 {s['d10']:.1f}/{s['d50']:.1f}/{s['d90']:.1f} {unit}"
    )
    if table.attrs.get("mask_warning"):
        text += "\nwarning: " + table.attrs["mask_warning"]
    if table.attrs.get("shapes_skipped"):
        text += "\n" + table.attrs["shapes_skipped"]
    return text
