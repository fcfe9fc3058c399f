"""Feature table dock widget: a layer's features as a sortable, filterable table linked to the viewer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, Label, LineEdit, PushButton

from .._validation import SEMAnalysisError
from ._base import SEMWidget
from ._common import layer_pixel_size, notify_error, notify_info
from ._layout import add_row

_UNITS_KEY = "measurement_units"  # layer.metadata key: column -> unit of the features


def _camera(viewer):
    """The viewer's camera: ``viewer.scene.camera`` (napari >= 0.9), else ``viewer.camera``."""
    camera = getattr(getattr(viewer, "scene", None), "camera", None)
    return camera if camera is not None else viewer.camera


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
        self.extend([self._layer_box, self._filter, self._highlight, self._center, self._count])
        add_row(self, self._csv_btn, self._xlsx_btn)  # one row: the table below keeps the height

        self.model = _table_model_class()()
        self.model.on_edit = self._cell_edited
        self.view = QTableView()
        self.view.setModel(self.model)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setSortingEnabled(False)
        self.view.horizontalHeader().setSectionsClickable(True)
        self.view.horizontalHeader().sectionClicked.connect(self._header_clicked)
        self.view.setMinimumHeight(200)  # a useful table (about 6 rows) even in a crowded dock column
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
        self._select_first(self._view_df[col].to_numpy(), int(self._layer.selected_label))

    def _item_picked(self, _event=None):
        """Points/Shapes selection in the viewer -> the row of the (first) selected item."""
        if self._syncing or self._layer is None:
            return
        selected = sorted(int(i) for i in getattr(self._layer, "selected_data", ()) or ())
        if not selected:
            return
        self._select_first(self._view_df.index.to_numpy(), selected[0])

    def _select_first(self, keys: np.ndarray, key) -> None:
        """Select the first shown row whose ``keys`` entry is ``key`` (without echoing it back to the layer)."""
        hits = np.flatnonzero(keys == key)
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
