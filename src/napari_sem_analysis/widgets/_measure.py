"""Measurement widgets: measure objects and texture, browse the feature table, plot features.

* :class:`MeasureWidget`: choose a Labels layer and (optionally) an Image
  layer and the feature groups; :func:`napari_sem_analysis.measure` runs in a
  thread worker; the table goes into the Labels layer's ``features`` (with an
  ``index`` column = label value, so napari shows the features of the object
  under the mouse), optionally into a Points layer at the centroids and a
  Shapes layer of outlines or oriented bounding boxes, both carrying the
  features. *Tile texture* computes GLCM/LBP features per tile of a regular
  grid into a Shapes layer of the tiles.
* :class:`FeatureTableWidget`: a sortable, filterable table of a layer's
  features; selecting a row selects (and highlights) that object in the
  viewer and picking an object in the viewer selects its row; export to CSV
  and to Excel (when openpyxl is installed), with units in the headers.
* :class:`PlotWidget`: matplotlib plots of a layer's features: size
  distribution (histogram with D10/D50/D90 and the cumulative curve), any
  feature's histogram, scatter of two features; saved as PNG.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, Label, LineEdit, PushButton, SpinBox

from .._validation import SEMAnalysisError, to_grayscale
from ._base import SEMWidget, StepCall, StepWidget
from ._common import as_array, layer_pixel_size, notify_error, notify_info, write_layer

POINTS_NAME = "measure centroids"
SHAPES_NAME = "measure outlines"
TILES_NAME = "texture tiles"
_UNITS_KEY = "measurement_units"
#: most shapes (outlines, boxes, tiles) written to a Shapes layer: napari builds
#: Shapes layers at roughly 4,000 polygons per second on the GUI thread, so 100,000
#: objects would freeze the viewer for about half a minute
MAX_SHAPES = 20_000


def _camera(viewer):
    """The viewer's camera: ``viewer.scene.camera`` (napari >= 0.9), else ``viewer.camera``."""
    camera = getattr(getattr(viewer, "scene", None), "camera", None)
    return camera if camera is not None else viewer.camera


def _too_many_shapes(n: int, what: str) -> str:
    return (
        f"{n} {what}: more than the {MAX_SHAPES} shapes a Shapes layer can show without "
        "freezing napari, so no Shapes layer was written"
    )


def _units_of(layer) -> dict:
    if layer is None:
        return {}
    return dict(layer.metadata.get(_UNITS_KEY, {}) or {})


def _axis_label(column: str, units: dict, *, ascii_only: bool = False) -> str:
    """``column [unit]``. Areas read ``nm²`` on screen (widgets, table headers, plots) and
    ``nm^2`` in exported files (ASCII-safe CSV/Excel headers, as in ``table.attrs["units"]``)."""
    unit = str(units.get(column, "") or "")
    if not ascii_only:
        unit = unit.replace("^2", "²").replace("^3", "³")
    return f"{column} [{unit}]" if unit else column


def _merge_features(old: pd.DataFrame | None, new: pd.DataFrame) -> pd.DataFrame:
    """New measurements, keeping columns of the old features that are not measurements (e.g. class)."""
    new = new.copy()
    new.insert(0, "index", new["label"].to_numpy())
    if old is None or len(old) == 0 or "index" not in old.columns:
        return new
    from ..measurement import INTENSITY_COLUMNS, SHAPE_COLUMNS

    ours = {"label", *SHAPE_COLUMNS, *INTENSITY_COLUMNS}
    keep = [
        c
        for c in old.columns
        if c not in new.columns and c not in ours and not str(c).startswith(("glcm_", "lbp_"))
    ]
    if not keep:
        return new
    extra = old[["index", *keep]].drop_duplicates("index")
    return new.merge(extra, on="index", how="left")


# ---------------------------------------------------------------------------
# measure
# ---------------------------------------------------------------------------
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
            table.attrs["shapes_skipped"] = _too_many_shapes(len(table), "objects") + " (the Points layer can show them)"
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
            layer = write_layer(
                self.viewer,
                pts,
                name=POINTS_NAME,
                kind="points",
                like=labels_layer,
                features=feats,
                size=3,
                face_color="yellow",
            )
            layer.features = feats
            layer.metadata[_UNITS_KEY] = units
        if geometry is not None:
            layer = write_layer(
                self.viewer,
                geometry,
                name=SHAPES_NAME,
                kind="shapes",
                like=labels_layer,
                features=feats,
                shape_type="polygon",
                edge_color="cyan",
                face_color="transparent",
                edge_width=1,
            )
            layer.features = feats
            layer.metadata[_UNITS_KEY] = units
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
        call = StepCall("glcm_features", {"tile_size": tile_px, "levels": int(self._levels.value) or None},
                        {"image": image_layer}, TILES_NAME)

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
        layer = write_layer(
            self.viewer,
            rects,
            name=TILES_NAME,
            kind="shapes",
            like=image_layer,
            features=feats,
            shape_type="rectangle",
            edge_color="magenta",
            face_color="transparent",
            edge_width=1,
        )
        layer.features = feats
        layer.metadata[_UNITS_KEY] = units
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


# ---------------------------------------------------------------------------
# feature table
# ---------------------------------------------------------------------------
def _table_model_class():
    from qtpy.QtCore import QAbstractTableModel, QModelIndex, Qt

    class DataFrameModel(QAbstractTableModel):
        """Qt model of a DataFrame (the visible, filtered and sorted rows).

        Read-only except the class annotation columns (``EDITABLE``): an edit
        there calls ``on_edit(row, column, text)`` with the row's index label.
        """

        EDITABLE = ("class", "class_annotation")

        def __init__(self, parent=None):
            super().__init__(parent)
            self.df = pd.DataFrame()
            self.units: dict = {}
            self.on_edit = None

        def flags(self, index):
            flags = super().flags(index)
            if index.isValid() and self.on_edit is not None and str(self.df.columns[index.column()]) in self.EDITABLE:
                flags |= Qt.ItemFlag.ItemIsEditable
            return flags

        def setData(self, index, value, role=Qt.ItemDataRole.EditRole):
            if not index.isValid() or role != Qt.ItemDataRole.EditRole or self.on_edit is None:
                return False
            column = str(self.df.columns[index.column()])
            if column not in self.EDITABLE:
                return False
            self.on_edit(self.df.index[index.row()], column, str(value).strip())
            return True

        def set_frame(self, df: pd.DataFrame, units: dict | None = None):
            self.beginResetModel()
            self.df = df
            if units is not None:
                self.units = dict(units)
            self.endResetModel()

        def rowCount(self, parent=QModelIndex()):
            return 0 if parent.isValid() else len(self.df)

        def columnCount(self, parent=QModelIndex()):
            return 0 if parent.isValid() else self.df.shape[1]

        def data(self, index, role=Qt.ItemDataRole.DisplayRole):
            if not index.isValid() or role not in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.EditRole):
                return None
            v = self.df.iat[index.row(), index.column()]
            if v is None or (isinstance(v, float) and not np.isfinite(v) and role == Qt.ItemDataRole.EditRole):
                return ""
            if isinstance(v, (float, np.floating)):
                return "" if not np.isfinite(v) else f"{v:.6g}"
            return str(v)

        def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
            if role != Qt.ItemDataRole.DisplayRole:
                return None
            if orientation == Qt.Orientation.Horizontal:  # the column name and its unit
                return _axis_label(str(self.df.columns[section]), self.units) if section < self.df.shape[1] else None
            return str(section + 1)

    return DataFrameModel


class FeatureTableWidget(SEMWidget):
    """A layer's features as a sortable, filterable table linked to the viewer.

    * choose the layer (Labels, Points or Shapes with features);
    * sort by clicking a column header;
    * filter with a pandas query, e.g. ``area > 5000 and circularity > 0.8``;
    * selecting a row selects that object (Labels: ``selected_label`` with
      only the selected label shown; Points/Shapes: the selected item) and
      centres the view on it; picking a label in the viewer selects its row;
    * export the visible rows to CSV or Excel (units in the column headers);
    * double-click a cell of a ``class`` (or ``class_annotation``) column to
      type an object's class: the object classifier trains from that column.
    """

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        from qtpy.QtWidgets import QAbstractItemView, QTableView

        self._df = pd.DataFrame()
        self._view_df = pd.DataFrame()
        self._sort: tuple[str, bool] | None = None
        self._layer = None
        self._syncing = False
        self._connections: list = []

        self._layer_box = self.layer_box("layer", "Labels", "Points", "Shapes")
        self._filter = LineEdit(label="filter (pandas query)", value="")
        self._highlight = CheckBox(text="show only the selected object", value=True)
        self._center = CheckBox(text="centre view on selection", value=True)
        self._count = Label(value="")
        self._csv_btn = PushButton(text="Export CSV")
        self._xlsx_btn = PushButton(text="Export Excel")
        self._xlsx_btn.enabled = importlib.util.find_spec("openpyxl") is not None
        if not self._xlsx_btn.enabled:
            self._xlsx_btn.tooltip = "install openpyxl to export Excel files"
        self.extend([self._layer_box, self._filter, self._highlight, self._center, self._count, self._csv_btn, self._xlsx_btn])

        self.model = _table_model_class()()
        self.model.on_edit = self._cell_edited
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setSortingEnabled(False)
        self.view.horizontalHeader().setSectionsClickable(True)
        self.view.horizontalHeader().sectionClicked.connect(self._header_clicked)
        self.view.setMinimumHeight(250)
        self.native.layout().addWidget(self.view)
        self.view.selectionModel().selectionChanged.connect(self._row_selected)

        self._layer_box.changed.connect(lambda v: self.set_layer(v))
        self._filter.changed.connect(lambda v: self.apply_filter(v))
        self._highlight.changed.connect(self._highlight_changed)
        self._csv_btn.changed.connect(self._ask_csv)
        self._xlsx_btn.changed.connect(self._ask_excel)
        self._reset()

    # -- data -------------------------------------------------------------
    @property
    def layer(self):
        return self._layer

    @property
    def visible_table(self) -> pd.DataFrame:
        """The rows shown (filtered and sorted)."""
        return self._view_df

    def set_layer(self, layer):
        """Show ``layer``'s features (and follow its changes and selection)."""
        if self._layer is not None:
            for ev, cb in self._connections:
                try:
                    ev.disconnect(cb)
                except (TypeError, ValueError, RuntimeError):
                    pass
        self._connections = []
        self._layer = layer
        if layer is not None:
            if self._layer_box.value is not layer:
                self._reset()
                try:
                    self._layer_box.value = layer
                except ValueError:
                    pass
            events = [(layer.events.features, self._refresh)]
            if hasattr(layer.events, "selected_label"):
                events.append((layer.events.selected_label, self._label_picked))
            sel = getattr(layer, "selected_data", None)
            if hasattr(sel, "events") and hasattr(sel.events, "changed"):  # Points
                events.append((sel.events.changed, self._item_picked))
            elif hasattr(layer.events, "highlight"):  # Shapes
                events.append((layer.events.highlight, self._item_picked))
            for ev, cb in events:
                ev.connect(cb)
            self._connections = events
        self._refresh()

    def _cell_edited(self, row, column: str, text: str):
        """Write an edited class annotation back into the layer's features."""
        layer = self._layer
        if layer is None:
            return
        feats = pd.DataFrame(layer.features).reset_index(drop=True)
        if column not in feats.columns or not 0 <= int(row) < len(feats):
            return
        values = feats[column].astype(object).where(feats[column].notna(), "")
        values.iloc[int(row)] = text
        feats[column] = values
        layer.features = feats  # the features event refreshes the table

    def _refresh(self, _event=None):
        df = pd.DataFrame() if self._layer is None else pd.DataFrame(self._layer.features)
        self._df = df.reset_index(drop=True)
        self.apply_filter(self._filter.value)

    def apply_filter(self, expression: str = ""):
        """Keep the rows matching a pandas query (empty: all rows)."""
        df = self._df
        expression = (expression or "").strip()
        if expression:
            try:
                df = df.query(expression)
            except Exception as exc:
                notify_error(f"filter {expression!r} is not a valid query: {exc}")
                return
        if self._sort is not None and self._sort[0] in df.columns:
            df = df.sort_values(self._sort[0], ascending=self._sort[1], kind="stable")
        self._view_df = df
        self.model.set_frame(df, _units_of(self._layer))
        # napari's "index" column (label value -> feature row) repeats "label": hide it from view
        twin = "index" in df.columns and "label" in df.columns and df["index"].equals(df["label"])
        for i, c in enumerate(df.columns):
            self.view.setColumnHidden(i, bool(twin and c == "index"))
        self._count.value = f"{len(df)} of {len(self._df)} rows"

    def sort_by(self, column: str, ascending: bool = True):
        if column not in self._df.columns:
            raise SEMAnalysisError(f"no column {column!r}")
        self._sort = (column, bool(ascending))
        self.apply_filter(self._filter.value)

    def _header_clicked(self, section: int):
        col = str(self._view_df.columns[section])
        ascending = not (self._sort is not None and self._sort[0] == col and self._sort[1])
        self.sort_by(col, ascending)

    # -- selection sync -------------------------------------------------------
    def _id_column(self):
        for c in ("label", "index"):
            if c in self._view_df.columns:
                return c
        return None

    def select_row(self, row: int):
        """Select visible row ``row`` (and its object in the viewer)."""
        self.view.selectRow(int(row))

    def _row_selected(self, *_):
        if self._syncing:
            return
        rows = self.view.selectionModel().selectedRows()
        if not rows or self._layer is None:
            return
        r = rows[0].row()
        rec = self._view_df.iloc[r]
        self._syncing = True
        try:
            import napari

            layer = self._layer
            if isinstance(layer, napari.layers.Labels):
                col = self._id_column()
                if col is not None:
                    layer.selected_label = int(rec[col])
                    layer.show_selected_label = bool(self._highlight.value)
            else:
                pos = int(self._view_df.index[r])
                layer.selected_data = {pos}
                # napari draws the selection of the active Points/Shapes layer only
                self.viewer.layers.selection.active = layer
                layer.refresh()
            if self._center.value and "centroid_y" in rec and "centroid_x" in rec:
                ps = layer_pixel_size(layer)
                data_pt = np.array([rec["centroid_y"], rec["centroid_x"]], float) / (ps or 1.0)
                world = np.asarray(layer.data_to_world(data_pt))
                _camera(self.viewer).center = tuple(world[-2:])
        finally:
            self._syncing = False

    def _highlight_changed(self, value):
        """Unticking 'show only the selected object' shows every label again (and ticking it
        shows only the selected one, when a row is selected)."""
        import napari

        layer = self._layer
        if isinstance(layer, napari.layers.Labels):
            layer.show_selected_label = bool(value) and bool(self.selected_rows())

    def _label_picked(self, _event=None):
        if self._syncing or self._layer is None:
            return
        col = self._id_column()
        if col is None:
            return
        lab = int(self._layer.selected_label)
        hits = np.flatnonzero(self._view_df[col].to_numpy() == lab)
        if hits.size == 0:
            return
        self._syncing = True
        try:
            self.view.selectRow(int(hits[0]))
        finally:
            self._syncing = False

    def _item_picked(self, _event=None):
        """Points/Shapes selection in the viewer -> the row of the (first) selected item."""
        if self._syncing or self._layer is None:
            return
        selected = sorted(int(i) for i in getattr(self._layer, "selected_data", ()) or ())
        if not selected:
            return
        hits = np.flatnonzero(self._view_df.index.to_numpy() == selected[0])
        if hits.size == 0:
            return
        self._syncing = True
        try:
            self.view.selectRow(int(hits[0]))
        finally:
            self._syncing = False

    def selected_rows(self) -> list[int]:
        return [i.row() for i in self.view.selectionModel().selectedRows()]

    # -- export ------------------------------------------------------------------
    def _export_frame(self) -> pd.DataFrame:
        units = _units_of(self._layer)
        df = self._view_df
        return df.rename(columns={c: _axis_label(c, units, ascii_only=True) for c in df.columns})

    def export_csv(self, path) -> Path:
        """Write the visible rows to a CSV file (units in the headers)."""
        path = Path(path)
        self._export_frame().to_csv(path, index=False)
        return path

    def export_excel(self, path) -> Path:
        """Write the visible rows to an .xlsx file (needs openpyxl)."""
        if importlib.util.find_spec("openpyxl") is None:
            raise SEMAnalysisError("Excel export needs openpyxl (pip install openpyxl)")
        path = Path(path)
        self._export_frame().to_excel(path, index=False, sheet_name="features")
        return path

    def _ask(self, fn, caption, filt):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, caption, "", filt)
        if not path:
            return
        try:
            fn(path)
            notify_info(f"saved {path}")
        except Exception as exc:
            notify_error(exc)

    def _ask_csv(self, _event=None):
        self._ask(self.export_csv, "Export CSV", "CSV (*.csv)")

    def _ask_excel(self, _event=None):
        self._ask(self.export_excel, "Export Excel", "Excel (*.xlsx)")


# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------
class PlotWidget(SEMWidget):
    """Plots of a layer's features (matplotlib): size distribution, histogram, scatter; save as PNG."""

    KINDS = ("size distribution", "histogram", "scatter")

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self._layer_box = self.layer_box("layer", "Labels", "Points", "Shapes")
        self._kind = ComboBox(label="plot", choices=list(self.KINDS), value="size distribution")
        self._x = ComboBox(label="x feature", choices=lambda w: self._numeric_columns())
        self._y = ComboBox(label="y feature", choices=lambda w: self._numeric_columns())
        self._bins = SpinBox(label="bins", min=2, max=500, value=30)
        self._log = CheckBox(text="log x", value=False)
        self._plot_btn = PushButton(text="Plot")
        self._save_btn = PushButton(text="Save PNG")
        self.extend([self._layer_box, self._kind, self._x, self._y, self._bins, self._log, self._plot_btn, self._save_btn])
        self.figure = Figure(figsize=(4.5, 3.4), dpi=100)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(300)
        self.canvas.setMinimumHeight(260)  # in a scrolling dock it would otherwise be squeezed to nothing
        self.native.layout().addWidget(self.canvas)
        self._watched = None  # the layer whose features we follow
        self._layer_box.changed.connect(self._layer_changed)
        self._plot_btn.changed.connect(lambda *_: self.plot())
        self._save_btn.changed.connect(self._ask_png)
        self._reset()

    def _reset(self, _event=None):
        super()._reset()
        self._x.reset_choices()
        self._y.reset_choices()

    def _layer_changed(self, _value=None):
        layer = self._layer_box.value
        if layer is not self._watched:
            # follow the layer's features: measuring it after choosing it fills the feature boxes
            if self._watched is not None:
                try:
                    self._watched.events.features.disconnect(self._features_changed)
                except (TypeError, ValueError, RuntimeError):
                    pass
            self._watched = layer
            if layer is not None and hasattr(layer.events, "features"):
                layer.events.features.connect(self._features_changed)
        self._choose_features(keep=False)

    def _features_changed(self, _event=None):
        self._choose_features(keep=True)

    def _choose_features(self, keep: bool):
        """Refresh the feature choices; keep the chosen ones if they still exist, else prefer
        the size (x) and the circularity (y)."""
        previous = (self._x.value, self._y.value) if keep else (None, None)
        self._x.reset_choices()
        self._y.reset_choices()
        cols = self._numeric_columns()
        for box, old, preferred in (
            (self._x, previous[0], ("equivalent_diameter", "area")),
            (self._y, previous[1], ("circularity", "intensity_mean")),
        ):
            for name in (old, *preferred):
                if name is not None and name in cols:
                    box.value = name
                    break

    def _frame(self) -> pd.DataFrame:
        layer = self._layer_box.value
        return pd.DataFrame() if layer is None else pd.DataFrame(layer.features)

    def _numeric_columns(self):
        df = self._frame()
        return [c for c in df.columns if c not in ("index",) and pd.api.types.is_numeric_dtype(df[c])]

    def set_layer(self, layer):
        self._reset()
        self._layer_box.value = layer
        self._layer_changed()

    def plot(self, kind: str | None = None, x: str | None = None, y: str | None = None):
        """Draw the plot; returns the matplotlib Figure (None on bad input, with a notification)."""
        try:
            return self._plot(kind, x, y)
        except SEMAnalysisError as exc:
            notify_error(exc)
            return None

    def _plot(self, kind, x, y):
        kind = kind or self._kind.value
        if kind not in self.KINDS:
            raise SEMAnalysisError(f"unknown plot {kind!r}")
        df = self._frame()
        if len(df) == 0:
            raise SEMAnalysisError("the chosen layer has no features: measure it first")
        units = _units_of(self._layer_box.value)
        fig = self.figure
        fig.clear()
        ax = fig.add_subplot(1, 1, 1)
        bins = int(self._bins.value)
        if kind == "size distribution":
            col = "equivalent_diameter"
            if col not in df.columns:
                raise SEMAnalysisError("no 'equivalent_diameter' column: measure the objects first")
            v = df[col].to_numpy(float)
            v = v[np.isfinite(v)]
            if v.size == 0:
                raise SEMAnalysisError("no finite equivalent diameters to plot")
            edges = np.geomspace(max(v.min(), 1e-9), v.max() * 1.0001, bins + 1) if self._log.value and v.min() > 0 else bins
            ax.hist(v, bins=edges, color="#4C72B0", alpha=0.85)
            # the same D10/D50/D90 as summarize() and the Measure widget's summary line
            from ..measurement import _weighted_quantiles

            d10, d50, d90 = _weighted_quantiles(v, np.ones(v.size), (0.1, 0.5, 0.9))
            for d, name in ((d10, "D10"), (d50, "D50"), (d90, "D90")):
                ax.axvline(d, color="k", ls="--", lw=1)
                ax.text(d, ax.get_ylim()[1] * 0.95, name, rotation=90, va="top", ha="right", fontsize=8)
            ax2 = ax.twinx()
            srt = np.sort(v)
            ax2.plot(srt, np.arange(1, srt.size + 1) / srt.size * 100, color="#C44E52")
            ax2.set_ylabel("cumulative %")
            ax2.set_ylim(0, 100)
            ax.set_xlabel(_axis_label(col, units))
            ax.set_ylabel("count")
            ax.set_title(f"n = {v.size}")
        elif kind == "histogram":
            x = x or self._x.value
            if x is None or x not in df.columns:
                raise SEMAnalysisError(f"choose a feature to plot (got {x!r})")
            v = pd.to_numeric(df[x], errors="coerce").to_numpy(float)
            v = v[np.isfinite(v)]
            ax.hist(v, bins=bins, color="#55A868")
            ax.set_xlabel(_axis_label(x, units))
            ax.set_ylabel("count")
        else:
            x = x or self._x.value
            y = y or self._y.value
            for c in (x, y):
                if c is None or c not in df.columns:
                    raise SEMAnalysisError(f"choose two features to plot (got {x!r}, {y!r})")
            ax.scatter(df[x].to_numpy(float), df[y].to_numpy(float), s=8, alpha=0.7)
            ax.set_xlabel(_axis_label(x, units))
            ax.set_ylabel(_axis_label(y, units))
        if self._log.value and kind != "size distribution":
            ax.set_xscale("log")
        elif self._log.value:
            ax.set_xscale("log")
        fig.tight_layout()
        self.canvas.draw_idle()
        return fig

    def save_png(self, path, dpi: int = 150) -> Path:
        """Save the current plot as a PNG file."""
        path = Path(path)
        self.figure.savefig(path, dpi=dpi, format="png")
        return path

    def _ask_png(self, _event=None):
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getSaveFileName(self.native, "Save plot", "", "PNG (*.png)")
        if not path:
            return
        try:
            self.save_png(path)
            notify_info(f"saved {path}")
        except Exception as exc:
            notify_error(exc)
