"""Measurement widgets in a real napari viewer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_sem_analysis.widgets import _measure
from napari_sem_analysis.widgets._common import recorded_steps
from napari_sem_analysis.widgets._measure import (
    POINTS_NAME,
    SHAPES_NAME,
    TILES_NAME,
    FeatureTableWidget,
    MeasureWidget,
    PlotWidget,
)

PS = 5.0  # nm per pixel
RADII = [6, 9, 12, 15]


def _scene(rng):
    shape = (100, 120)
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centres = [(25, 25), (25, 80), (70, 30), (70, 85)]
    for i, ((cy, cx), r) in enumerate(zip(centres, RADII), start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i * 2  # labels 2, 4, 6, 8
    image = (rng.normal(60, 10, shape) + 120 * (labels > 0)).clip(0, 255).astype(np.uint8)
    return image, labels


@pytest.fixture
def scene(make_napari_viewer, rng):
    image, labels = _scene(rng)
    viewer = make_napari_viewer()
    kw = {"scale": (PS, PS), "units": ("nm", "nm")}
    img_layer = viewer.add_image(image, name="sem", **kw)
    lab_layer = viewer.add_labels(labels, name="particles", **kw)
    return viewer, img_layer, lab_layer


def _measure_widget(viewer, img_layer, lab_layer):
    widget = MeasureWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget._labels.value = lab_layer
    widget._image.value = img_layer
    return widget


def test_measure_writes_features_points_shapes(scene, qtbot, errors, wait_run):
    viewer, img_layer, lab_layer = scene
    before = lab_layer.data.copy()
    image_before = img_layer.data.copy()
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget._texture.value = True
    widget._points.value = True
    widget._shapes.value = "outlines"
    widget.run()
    wait_run(widget)
    assert errors == []
    feats = lab_layer.features
    assert list(feats["index"]) == [2, 4, 6, 8] == list(feats["label"])
    counts = np.bincount(before.ravel())[[2, 4, 6, 8]]
    np.testing.assert_allclose(feats["area"], counts * PS * PS)  # nm^2
    np.testing.assert_allclose(feats["equivalent_diameter"], 2 * np.array(RADII) * PS, rtol=0.05)
    assert {"intensity_mean", "glcm_contrast", "glcm_entropy", "lbp_0"} <= set(feats.columns)
    assert lab_layer.metadata["measurement_units"]["area"] == "nm^2"
    np.testing.assert_array_equal(lab_layer.data, before)  # inputs untouched
    np.testing.assert_array_equal(img_layer.data, image_before)

    pts = viewer.layers[POINTS_NAME]
    assert tuple(pts.scale) == (PS, PS) and tuple(str(u) for u in pts.units) == ("nanometer", "nanometer")
    np.testing.assert_allclose(pts.data, [[25, 25], [25, 80], [70, 30], [70, 85]], atol=0.01)
    assert list(pts.features["label"]) == [2, 4, 6, 8]
    shp = viewer.layers[SHAPES_NAME]
    assert shp.nshapes == 4 and list(shp.features["label"]) == [2, 4, 6, 8]
    assert tuple(shp.scale) == (PS, PS)
    # each outline surrounds its disc
    for poly, (cy, _cx), r in zip(shp.data, [(25, 25), (25, 80), (70, 30), (70, 85)], RADII):
        assert np.ptp(poly[:, 0]) == pytest.approx(2 * r, abs=1.5) and poly[:, 0].mean() == pytest.approx(cy, abs=1)

    steps = [s for s in recorded_steps(viewer) if s["function"] == "measure"]
    assert steps and steps[0]["inputs"] == {"labels": "particles", "image": "sem"}
    assert "objects" in widget._summary.value
    table = widget.table_widget
    assert table is not None and len(table.visible_table) == 4

    # re-run with oriented boxes: the same layers are updated, not duplicated
    n_layers = len(viewer.layers)
    widget._shapes.value = "oriented boxes"
    widget._texture.value = False
    widget.run()
    wait_run(widget, runs=2)
    assert errors == []
    assert len(viewer.layers) == n_layers
    assert viewer.layers[SHAPES_NAME].nshapes == 4
    assert "glcm_contrast" not in lab_layer.features.columns
    assert len([s for s in recorded_steps(viewer) if s["function"] == "measure"]) == 1


def test_measure_keeps_user_columns_and_bad_input(scene, qtbot, errors, make_napari_viewer, wait_run):
    viewer, img_layer, lab_layer = scene
    lab_layer.features = pd.DataFrame({"index": [2, 4, 6, 8], "class": ["a", "b", "a", "b"]})
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget._show_table.value = False
    widget.run()
    wait_run(widget)
    assert list(lab_layer.features["class"]) == ["a", "b", "a", "b"]
    assert "area" in lab_layer.features.columns

    # shape mismatch: a notification, no worker, no crash
    small = viewer.add_image(np.zeros((10, 10), np.uint8), name="small")
    widget._image.value = small
    assert widget.run() is None
    assert errors and "different shapes" in errors[-1]

    # empty labels: an empty table with the right columns
    empty = viewer.add_labels(np.zeros((100, 120), np.int32), name="empty", scale=(PS, PS), units=("nm", "nm"))
    widget._labels.value = empty
    widget._image.value = img_layer
    widget._points.value = True
    widget._shapes.value = "outlines"
    n_err = len(errors)
    widget.run()
    wait_run(widget, runs=2)
    assert errors[n_err:] == []
    assert len(viewer.layers["measure centroids"].data) == 0
    assert viewer.layers["measure outlines"].nshapes == 0
    assert len(empty.features) == 0 or "area" in empty.features.columns
    assert widget.table is not None and len(widget.table) == 0 and "area" in widget.table.columns
    assert widget._summary.value == "no objects"

    # non-square pixels: refused (areas and lengths would be wrong), nothing written
    stretched = viewer.add_labels(lab_layer.data, name="stretched", scale=(PS, 2 * PS), units=("nm", "nm"))
    widget._labels.value = stretched
    assert widget.run() is None
    assert "non-square pixels" in errors[-1]
    assert len(stretched.features) == 0

    # no labels layer at all
    bare = MeasureWidget(make_napari_viewer())
    assert bare.run() is None
    assert "Labels layer" in errors[-1]


def test_feature_table_sort_filter_select_export(scene, qtbot, errors, tmp_path, wait_run):
    viewer, img_layer, lab_layer = scene
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget.run()
    wait_run(widget)
    table = widget.table_widget
    assert isinstance(table, FeatureTableWidget) and table.layer is lab_layer

    col = list(table.visible_table.columns).index("label")
    # napari's "index" column repeats the label: the user sees "label" only
    assert table.view.isColumnHidden(list(table.visible_table.columns).index("index"))
    assert not table.view.isColumnHidden(col)
    table._header_clicked(col)  # clicking a header sorts ascending, clicking again descending
    assert list(table.visible_table["label"]) == [2, 4, 6, 8]
    table._header_clicked(col)
    assert list(table.visible_table["label"]) == [8, 6, 4, 2]
    table.sort_by("area", ascending=False)
    assert list(table.visible_table["label"]) == [8, 6, 4, 2]
    table.apply_filter("area > 5000")  # nm^2: the disc of radius 6 px (~2825 nm^2) goes
    assert list(table.visible_table["label"]) == [8, 6, 4]
    table.apply_filter("equivalent_diameter > 100")  # discs of radius 12 and 15 px (120, 150 nm)
    assert list(table.visible_table["label"]) == [8, 6]
    table.apply_filter("not a query ((")
    assert errors and "not a valid query" in errors[-1]
    table.apply_filter("")
    assert len(table.visible_table) == 4

    # row -> viewer (through napari 0.9's viewer.scene.camera, not the deprecated viewer.camera)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table.select_row(1)  # label 6 (sorted by area, descending)
    assert not [w for w in caught if "viewer.camera" in str(w.message)]
    assert lab_layer.selected_label == 6 and lab_layer.show_selected_label
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    centre = np.asarray(camera.center)[-2:]
    np.testing.assert_allclose(centre, np.array([70, 30]) * PS, atol=PS)
    # viewer -> row
    lab_layer.selected_label = 2
    assert table.selected_rows() == [3]
    # unticking 'show only the selected object' shows every object again
    table._highlight.value = False
    assert not lab_layer.show_selected_label
    table._highlight.value = True
    assert lab_layer.show_selected_label
    # the headers say the units
    from qtpy.QtCore import Qt

    headers = [table.model.headerData(i, Qt.Orientation.Horizontal) for i in range(table.model.columnCount())]
    # one spelling on screen (nm², as in the widgets), ASCII-safe nm^2 in exported files
    assert "area [nm²]" in headers and "equivalent_diameter [nm]" in headers and "label" in headers

    csv = table.export_csv(tmp_path / "feat.csv")
    back = pd.read_csv(csv)
    assert "area [nm^2]" in back.columns and "equivalent_diameter [nm]" in back.columns
    assert len(back) == 4
    table.apply_filter("label > 4")
    pytest.importorskip("openpyxl")
    xlsx = table.export_excel(tmp_path / "feat.xlsx")
    back = pd.read_excel(xlsx)
    assert len(back) == 2 and list(back["label"]) == [8, 6]


def test_excel_export_without_openpyxl(scene, qtbot, monkeypatch, tmp_path, wait_run):
    import importlib.util

    from napari_sem_analysis import SEMAnalysisError

    viewer, img_layer, lab_layer = scene
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget.run()
    wait_run(widget)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openpyxl" else real(name, *a))
    with pytest.raises(SEMAnalysisError, match="openpyxl"):
        widget.table_widget.export_excel(tmp_path / "x.xlsx")
    assert not (tmp_path / "x.xlsx").exists()


def test_plot_widget(scene, qtbot, errors, tmp_path, wait_run):
    viewer, img_layer, lab_layer = scene
    plots = PlotWidget(viewer)
    viewer.window.add_dock_widget(plots)
    plots.set_layer(lab_layer)
    assert plots.plot("size distribution") is None  # not measured yet
    assert errors and "measure" in errors[-1]

    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget._show_table.value = False
    widget.run()
    wait_run(widget)
    plots.set_layer(lab_layer)
    assert (plots._x.value, plots._y.value) == ("equivalent_diameter", "circularity")
    fig = plots.plot("size distribution")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "equivalent_diameter [nm]"
    assert sum(p.get_height() for p in ax.patches) == 4
    fig = plots.plot("histogram", x="circularity")
    assert fig.axes[0].get_xlabel() == "circularity"
    fig = plots.plot("scatter", x="area", y="intensity_mean")
    assert fig.axes[0].collections[0].get_offsets().shape == (4, 2)
    out = plots.save_png(tmp_path / "plot.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    n_err = len(errors)
    assert plots.plot("scatter", x="area", y="nonexistent") is None
    assert len(errors) == n_err + 1


def test_tile_texture(scene, qtbot, errors, wait_run):
    viewer, img_layer, lab_layer = scene
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget._tile.value = 40 * PS  # 40 px tiles -> 3 x 3 grid on 100 x 120
    widget.run_tiles()
    wait_run(widget)
    assert errors == []
    layer = viewer.layers[TILES_NAME]
    assert layer.nshapes == 9 and tuple(layer.scale) == (PS, PS)
    feats = layer.features
    assert len(feats) == 9 and {"glcm_contrast", "glcm_entropy", "lbp_0", "tile_row"} <= set(feats.columns)
    # bright particles make the tiles with discs more contrasted than the empty middle-bottom one
    assert feats["glcm_contrast"].max() > feats["glcm_contrast"].min()
    widget._tile.value = 1.0  # below 2 px
    assert widget.run_tiles() is None
    assert "below 2 pixels" in errors[-1]


def test_table_follows_points_selection(scene, qtbot, errors, wait_run):
    viewer, img_layer, lab_layer = scene
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget._points.value = True
    widget.run()
    wait_run(widget)
    pts = viewer.layers[POINTS_NAME]
    table = widget.table_widget
    table.set_layer(pts)
    assert list(table.visible_table["label"]) == [2, 4, 6, 8]
    viewer.layers.selection.active = lab_layer
    table.select_row(2)
    assert set(pts.selected_data) == {2}
    # the selected point is drawn highlighted: napari shows it for the active layer only
    assert viewer.layers.selection.active is pts and pts._highlight_visible
    pts.selected_data = {3}
    assert table.selected_rows() == [3]
    table.sort_by("label", ascending=False)
    pts.selected_data = {0}  # label 2, now the last row
    assert table.selected_rows() == [3]


def test_measure_reuses_the_feature_table_the_user_docked(scene, qtbot, errors, wait_run):
    """Plugins > Feature table, then Measure: one table dock, showing the new features."""
    viewer, img_layer, lab_layer = scene
    table = FeatureTableWidget(viewer)
    viewer.window.add_dock_widget(table, name="Feature table (napari-sem-analysis)")
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget.run()
    wait_run(widget)
    assert errors == []
    assert widget.table_widget is table
    tables = [w for w in viewer.window.dock_widgets.values() if isinstance(w, FeatureTableWidget)]
    assert tables == [table]
    assert len(table.visible_table) == 4 and "area" in table.visible_table.columns


def test_size_plot_marks_the_same_d10_d50_d90_as_the_summary(scene, qtbot, errors, wait_run):
    from napari_sem_analysis import summarize

    viewer, img_layer, lab_layer = scene
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget._show_table.value = False
    widget.run()
    wait_run(widget)
    plots = PlotWidget(viewer)
    plots.set_layer(lab_layer)
    ax = plots.plot("size distribution").axes[0]
    marked = sorted(line.get_xdata()[0] for line in ax.lines)  # the three dashed D lines
    s = summarize(widget.table).loc["all"]
    np.testing.assert_allclose(marked, [s["d10"], s["d50"], s["d90"]], rtol=1e-12)
    assert f"{s['d50']:.1f}" in widget._summary.value and "nm" in widget._summary.value


def test_tile_table_export_has_pixel_units(scene, qtbot, errors, tmp_path, wait_run):
    viewer, img_layer, lab_layer = scene
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget._tile.value = 40 * PS
    widget.run_tiles()
    wait_run(widget)
    assert errors == []
    back = pd.read_csv(widget.table_widget.export_csv(tmp_path / "tiles.csv"))
    assert {"y [px]", "x [px]", "height [px]", "width [px]", "glcm_contrast"} <= set(back.columns)
    assert len(back) == 9 and back["width [px]"].max() == 40


def test_measuring_a_thresholded_mask_says_it_is_one_object(scene, qtbot, errors, wait_run):
    """Threshold writes a 0/1 Labels layer; measuring it directly gives one object, and the widget says so."""
    viewer, img_layer, lab_layer = scene
    mask = viewer.add_labels(
        (lab_layer.data > 0).astype(np.uint8), name="threshold", scale=(PS, PS), units=("nm", "nm")
    )
    widget = _measure_widget(viewer, img_layer, mask)
    widget._show_table.value = False
    widget.run()
    wait_run(widget)
    assert len(widget.table) == 1
    assert "1 object," in widget._summary.value
    assert "4 separate regions" in widget._summary.value and "Split touching objects" in widget._summary.value
    # real labels: no such warning
    widget._labels.value = lab_layer
    widget.run()
    wait_run(widget, runs=2)
    assert "4 objects" in widget._summary.value and "warning" not in widget._summary.value


def test_table_and_outlines_select_each_other(scene, qtbot, errors, wait_run):
    """Shapes of outlines: a row selects its outline, selecting an outline selects its row (also sorted)."""
    viewer, img_layer, lab_layer = scene
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget._shapes.value = "outlines"
    widget.run()
    wait_run(widget)
    assert errors == []
    shp = viewer.layers[SHAPES_NAME]
    table = widget.table_widget
    table.set_layer(shp)
    table.sort_by("area", ascending=False)  # rows: labels 8, 6, 4, 2 = shapes 3, 2, 1, 0
    viewer.layers.selection.active = lab_layer
    table.select_row(0)
    assert set(shp.selected_data) == {3}
    assert viewer.layers.selection.active is shp and shp._highlight_visible
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    np.testing.assert_allclose(np.asarray(camera.center)[-2:], np.array([70, 85]) * PS, atol=PS)
    shp.selected_data = {1}  # label 4
    assert table.selected_rows() == [2]
    assert table.visible_table.iloc[2]["label"] == 4


def test_tile_texture_rerun_updates_the_layer_and_leaves_the_image(scene, qtbot, errors, wait_run):
    viewer, img_layer, lab_layer = scene
    before = img_layer.data.copy()
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget._tile.value = 40 * PS
    widget.run_tiles()
    wait_run(widget)
    n_layers = len(viewer.layers)
    widget._tile.value = 20 * PS  # 5 x 6 tiles of 20 px on 100 x 120
    widget.run_tiles()
    wait_run(widget, runs=2)
    assert errors == []
    assert len(viewer.layers) == n_layers
    layer = viewer.layers[TILES_NAME]
    assert layer.nshapes == 30 and len(layer.features) == 30
    # each tile rectangle is where its features say (pixel corners)
    for rect, (_, row) in zip(layer.data, layer.features.iterrows()):
        assert rect[:, 0].min() == row["y"] - 0.5 and rect[:, 1].max() == row["x"] + row["width"] - 0.5
    np.testing.assert_array_equal(img_layer.data, before)


def test_tiles_too_many_for_a_shapes_layer_are_refused(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    img = viewer.add_image(np.zeros((600, 600), np.uint8), name="big")
    widget = MeasureWidget(viewer)
    widget._image.value = img
    widget._tile.value = 4  # px (no scale): 150 x 150 = 22,500 tiles
    assert widget.run_tiles() is None
    assert "22500 tiles" in errors[-1] and "at least 5 px" in errors[-1]
    assert TILES_NAME not in [ly.name for ly in viewer.layers]


def test_many_tiny_and_one_giant_label_in_the_widget(make_napari_viewer, qtbot, errors, rng, monkeypatch, wait_run):
    """100k one-pixel labels: table and points, outlines refused with a message; one giant label: one row."""
    infos = []
    monkeypatch.setattr(_measure, "notify_info", infos.append)
    viewer = make_napari_viewer()
    yy, xx = np.mgrid[:448, :448]
    on = (yy + xx) % 2 == 0
    tiny = np.zeros((448, 448), np.int32)
    tiny[on] = np.arange(1, on.sum() + 1)
    img_layer = viewer.add_image(rng.integers(0, 256, (448, 448)).astype(np.uint8), name="sem")
    lab_layer = viewer.add_labels(tiny, name="tiny")
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget._points.value = True
    widget._shapes.value = "outlines"
    widget.run()
    wait_run(widget)
    assert errors == []
    assert len(lab_layer.features) == 100_352 and (lab_layer.features["area"] == 1).all()
    assert len(viewer.layers[POINTS_NAME].data) == 100_352
    assert SHAPES_NAME not in [ly.name for ly in viewer.layers]
    assert "100352 objects" in widget._summary.value and "no Shapes layer" in widget._summary.value
    assert infos and "no Shapes layer" in infos[-1]
    assert len(widget.table_widget.visible_table) == 100_352

    giant = viewer.add_labels(np.ones((448, 448), np.int32), name="giant")
    widget._labels.value = giant
    widget.run()
    wait_run(widget, runs=2)
    assert errors == []
    assert len(giant.features) == 1 and giant.features["area"][0] == 448 * 448
    shp = viewer.layers[SHAPES_NAME]
    assert shp.nshapes == 1
    np.testing.assert_allclose([np.ptp(shp.data[0][:, 0]), np.ptp(shp.data[0][:, 1])], [447, 447], atol=1)
    assert len(viewer.layers[POINTS_NAME].data) == 1


def test_plot_feature_choices_follow_a_measurement_after_the_layer_was_chosen(scene, qtbot, errors, wait_run):
    """Plots opened on an unmeasured layer: measuring it fills the x/y feature boxes; a choice is kept."""
    viewer, img_layer, lab_layer = scene
    plots = PlotWidget(viewer)
    viewer.window.add_dock_widget(plots)
    plots.set_layer(lab_layer)
    assert plots._x.choices == ()
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget._show_table.value = False
    widget.run()
    wait_run(widget)
    assert (plots._x.value, plots._y.value) == ("equivalent_diameter", "circularity")
    plots._x.value = "feret_max"
    widget.run()  # re-measuring keeps the user's choice
    wait_run(widget, runs=2)
    assert plots._x.value == "feret_max"
    fig = plots.plot("scatter")
    assert fig.axes[0].get_xlabel() == "feret_max [nm]" and fig.axes[0].get_ylabel() == "circularity"


def test_measure_summary_wraps_inside_the_dock(make_napari_viewer, rng, errors, wait_run):
    """The summary the user reads after *Measure* (count, D10/D50/D90...) wraps at the dock's width
    instead of running past its right edge."""
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QApplication

    image, labels = _scene(rng)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    kw = {"scale": (PS, PS), "units": ("nm", "nm")}
    img_layer = viewer.add_image(image, name="sem", **kw)
    lab_layer = viewer.add_labels(labels, name="particles", **kw)
    widget = _measure_widget(viewer, img_layer, lab_layer)
    widget.run()
    wait_run(widget)
    QApplication.processEvents()
    assert errors == [] and "4 objects" in widget._summary.value.replace("\n", " ")
    scroll = widget.native
    viewport = scroll.viewport()
    q = widget._summary.native
    left = q.mapTo(viewport, QPoint(0, 0)).x()
    assert q.wordWrap() and left >= 0 and left + q.width() <= viewport.width()
    assert q.height() >= q.heightForWidth(q.width())  # the whole wrapped text is shown
    assert scroll.widget().minimumSizeHint().width() <= viewport.width()
