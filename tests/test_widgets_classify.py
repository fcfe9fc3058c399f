"""Classifier widgets in a real napari viewer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from test_classification import CLASSES, make_pores, texture

from napari_sem_analysis.widgets import _classify
from napari_sem_analysis.widgets._classify import ObjectClassifierWidget, TileClassifierWidget


@pytest.fixture
def errors(monkeypatch):
    """Collect error notifications (napari would show them in the GUI)."""
    seen = []
    monkeypatch.setattr(_classify, "notify_error", lambda e: seen.append(str(e)))
    return seen


def _wait(qtbot, widget, runs=1, timeout=60000):
    """Wait until the widget has finished ``runs`` thread-worker runs in total."""
    qtbot.waitUntil(lambda: widget._completed >= runs and not widget._running, timeout=timeout)


def _inside_point(labels, lab):
    ys, xs = np.nonzero(labels == lab)
    i = len(ys) // 2
    return ys[i], xs[i]


# ---------------------------------------------------------------------------
# object classifier widget
# ---------------------------------------------------------------------------


@pytest.fixture
def pore_viewer(make_napari_viewer):
    image, labels, classes = make_pores(seed=2, n_per_class=12)
    viewer = make_napari_viewer()
    kw = {"scale": (5.0, 5.0), "units": ("nm", "nm")}
    img_layer = viewer.add_image(image, name="pores", **kw)
    lab_layer = viewer.add_labels(labels, name="pores labels", **kw)
    return viewer, img_layer, lab_layer, classes


def test_object_widget_points_train_predict(pore_viewer, qtbot, errors):
    viewer, img_layer, lab_layer, classes = pore_viewer
    labels_before = lab_layer.data.copy()
    widget = ObjectClassifierWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget._labels.value = lab_layer
    widget._image.value = img_layer
    assert widget.class_names == CLASSES

    points = widget.add_example_layers()
    assert [p.name for p in points] == [f"examples: {c}" for c in CLASSES]
    assert all(tuple(p.scale) == (5.0, 5.0) for p in points)
    # click 5 objects of each class (points are in the layer's data coordinates = pixels)
    by_class = {k: [lab for lab, c in classes.items() if c == k] for k in range(3)}
    for k, layer in enumerate(points):
        layer.data = np.array([_inside_point(labels_before, lab) for lab in by_class[k][:5]], float)
    assert widget.examples() == {lab: CLASSES[k] for k in range(3) for lab in by_class[k][:5]}

    widget.train()
    _wait(qtbot, widget)
    assert widget.classifier is not None
    assert widget.cv_result is not None and widget.cv_result.accuracy >= 0.8
    assert "CV accuracy" in widget._report.value
    assert len(widget._canvas.figure.axes) == 1

    widget.predict()
    _wait(qtbot, widget, runs=2)
    feats = lab_layer.features
    assert {"class", "prob_gas", "prob_keyhole", "prob_lack-of-fusion"} <= set(feats.columns)
    truth = {lab: CLASSES[c] for lab, c in classes.items()}
    pred = dict(zip(feats["index"].astype(int), feats["class"]))
    acc = np.mean([pred[lab] == truth[lab] for lab in truth])
    assert acc >= 0.85
    np.testing.assert_allclose(feats[["prob_gas", "prob_keyhole", "prob_lack-of-fusion"]].sum(axis=1), 1.0)
    out = viewer.layers["object classes"]
    assert tuple(out.scale) == (5.0, 5.0)
    # every object painted with its predicted class (1-based index into the class names)
    for lab in list(truth)[:10]:
        values = np.unique(out.data[labels_before == lab])
        assert values.tolist() == [CLASSES.index(pred[lab]) + 1]
    assert (out.data[labels_before == 0] == 0).all()
    np.testing.assert_array_equal(lab_layer.data, labels_before)  # input untouched
    n_layers = len(viewer.layers)
    widget.predict()
    _wait(qtbot, widget, runs=3)
    assert len(viewer.layers) == n_layers  # re-run updates the output layer
    assert errors == []


def test_object_widget_from_features_column_and_model_files(pore_viewer, qtbot, errors, tmp_path):
    viewer, img_layer, lab_layer, classes = pore_viewer
    widget = ObjectClassifierWidget(viewer)
    widget._labels.value = lab_layer
    widget._image.value = None
    ids = sorted(classes)
    annotated = {lab: CLASSES[classes[lab]] for lab in ids[::2]}  # every second object annotated
    lab_layer.features = pd.DataFrame({"index": ids, "class": [annotated.get(l, "") for l in ids]})
    widget._source.value = "labels features 'class' column"
    assert widget.examples() == annotated
    widget._model.value = "logistic_regression"
    widget.train()
    _wait(qtbot, widget)
    assert widget.classifier.model == "logistic_regression"
    widget.predict()
    _wait(qtbot, widget, runs=2)
    feats = lab_layer.features
    # the user's annotations are kept, the predictions fill 'class'
    kept = dict(zip(feats["index"], feats["class_annotation"]))
    assert all(kept[lab] == name for lab, name in annotated.items())
    assert feats["class"].isin(CLASSES).all()

    widget._save_path.value = tmp_path / "pores.semclf"
    assert widget.save_model() is not None
    widget2 = ObjectClassifierWidget(viewer)
    widget2._classes.value = "a, b"
    widget2._load_path.value = tmp_path / "pores.semclf"
    assert widget2.load_model() is not None
    assert widget2.class_names == CLASSES and widget2._model.value == "logistic_regression"
    junk = tmp_path / "junk.semclf"
    junk.write_text("not a model")
    widget2._load_path.value = junk
    assert widget2.load_model() is None
    assert errors and "not a valid classifier file" in errors[-1]


def test_object_widget_bad_input_notifies(pore_viewer, qtbot, errors):
    viewer, img_layer, lab_layer, classes = pore_viewer
    widget = ObjectClassifierWidget(viewer)
    widget._labels.value = lab_layer
    assert widget.predict() is None
    assert "train or load" in errors[-1]
    assert widget.train() is None  # no examples clicked
    assert "no examples" in errors[-1]
    widget._classes.value = "only-one"
    assert widget.train() is None
    assert "at least two class names" in errors[-1]
    widget._classes.value = "gas, keyhole, lack-of-fusion"
    widget._source.value = "labels features 'class' column"
    assert widget.train() is None
    assert "no 'class' column" in errors[-1]
    assert "object classes" not in [l.name for l in viewer.layers]


# ---------------------------------------------------------------------------
# tile classifier widget
# ---------------------------------------------------------------------------


@pytest.fixture
def texture_folder(tmp_path):
    from skimage.io import imsave

    rng = np.random.default_rng(5)
    root = tmp_path / "textures"
    for kind, name in enumerate(["blobs", "grain"]):
        (root / name).mkdir(parents=True)
        for i in range(3):
            imsave(root / name / f"{i}.png", texture(kind, rng, 128), check_contrast=False)
    return root


def test_tile_widget_folder_train_predict(make_napari_viewer, qtbot, errors, texture_folder):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(11)
    mosaic = np.concatenate([texture(0, rng, 128), texture(1, rng, 128)], axis=1)
    layer = viewer.add_image(mosaic, name="sample", scale=(2.0, 2.0), units=("nm", "nm"))
    widget = TileClassifierWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget._source.value = "folder"
    widget._folder.value = texture_folder
    widget._tile.value = 64
    widget._cv.value = True
    widget.train()
    _wait(qtbot, widget)
    assert widget.classifier is not None and widget.classifier.class_names == ["blobs", "grain"]
    assert widget.cv_result is not None and widget.cv_result.grouped
    assert widget.cv_result.accuracy >= 0.9
    assert "grouped CV accuracy" in widget._report.value

    widget._image.value = layer
    widget._heatmap.value = True
    widget._heat_class.value = "grain"
    widget.predict()
    _wait(qtbot, widget, runs=2)
    shapes = viewer.layers["tile classes"]
    assert len(shapes.data) == 2 * 4
    feats = shapes.features
    assert {"row", "col", "y0", "x0", "y1", "x1", "class", "prob_blobs", "prob_grain"} <= set(feats.columns)
    assert (feats.loc[feats.x1 <= 128, "class"] == "blobs").all()
    assert (feats.loc[feats.x0 >= 128, "class"] == "grain").all()
    assert tuple(shapes.scale) == (2.0, 2.0)
    # rectangles lie on the tiles, coloured by class
    first = np.asarray(shapes.data[0])
    assert first.min(axis=0).tolist() == [feats.y0[0], feats.x0[0]]
    colors = np.asarray(shapes.edge_color)
    grain = feats["class"].to_numpy() == "grain"
    assert np.allclose(colors[grain], colors[grain][0]) and not np.allclose(colors[grain][0], colors[~grain][0])
    heat = viewer.layers["tile probability"]
    assert heat.data.shape == mosaic.shape and tuple(heat.scale) == (2.0, 2.0)
    assert heat.data[:, 128:].mean() > 0.5 > heat.data[:, :128].mean()
    n_layers = len(viewer.layers)
    widget.predict()
    _wait(qtbot, widget, runs=3)
    assert len(viewer.layers) == n_layers
    np.testing.assert_array_equal(layer.data, mosaic)
    assert errors == []


def test_tile_widget_layers_cnn_cancel_and_files(make_napari_viewer, qtbot, errors, tmp_path):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(3)
    a = viewer.add_image(texture(0, rng, 96), name="blobs")
    b = viewer.add_image(texture(1, rng, 96), name="grain")
    c = viewer.add_image(texture(1, rng, 96), name="grain")  # napari renames it "grain [1]"
    widget = TileClassifierWidget(viewer)
    widget._source.value = "image layers"
    widget._train_layers.value = [a, b, c]
    widget._tile.value = 32
    widget._backend.value = "cnn"
    widget._input.value = 32
    widget._epochs.value = 3
    widget._cv.value = False
    tiles, y, groups, names = widget.training_data()
    assert names == ["blobs", "grain"] and len(tiles) == 27 and len(set(groups.tolist())) == 3
    widget.train()
    _wait(qtbot, widget, timeout=120000)
    assert widget.classifier is not None and widget.classifier.backend == "cnn"
    trained = widget.classifier

    # a long training run is cancelled: the previous classifier stays
    widget._epochs.value = 500
    widget.train()
    qtbot.wait(300)
    widget.cancel()
    _wait(qtbot, widget, runs=2, timeout=60000)
    assert widget.classifier is trained
    assert widget._progress.value == "cancelled"
    # the training itself stops too (not only the progress reporting)
    import threading

    qtbot.waitUntil(
        lambda: not any(t.name == "sem-classifier-work" and t.is_alive() for t in threading.enumerate()),
        timeout=20000,
    )

    widget._save_path.value = tmp_path / "cnn.semclf"
    assert widget.save_model() is not None
    widget2 = TileClassifierWidget(viewer)
    widget2._load_path.value = tmp_path / "cnn.semclf"
    loaded = widget2.load_model()
    assert loaded is not None and widget2._backend.value == "cnn" and widget2._tile.value == 32
    widget2._image.value = a
    widget2.predict()
    _wait(qtbot, widget2)
    assert len(viewer.layers["tile classes"].data) == 9
    assert errors == []

    # bad input: tiles larger than the image, no folder
    widget2._tile.value = 512
    assert widget2.predict() is None
    assert "larger than the image" in errors[-1]
    widget2._source.value = "folder"
    widget2._folder.value = tmp_path / "missing"
    assert widget2.train() is None
    assert "folder" in errors[-1]
