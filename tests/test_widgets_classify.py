"""Classifier widgets in a real napari viewer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_classification import CLASSES, make_pores, texture

from napari_sem_analysis.widgets import _base, _classify
from napari_sem_analysis.widgets._classify import ObjectClassifierWidget, TileClassifierWidget


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


def test_object_widget_points_train_predict(pore_viewer, qtbot, errors, wait_run):
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
    wait_run(widget)
    assert widget.classifier is not None
    assert widget.cv_result is not None and widget.cv_result.accuracy >= 0.8
    assert "CV accuracy" in widget._report.value
    assert len(widget._canvas.figure.axes) == 1

    widget.predict()
    wait_run(widget, runs=2)
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
    wait_run(widget, runs=3)
    assert len(viewer.layers) == n_layers  # re-run updates the output layer
    assert errors == []


def test_object_widget_from_features_column_and_model_files(pore_viewer, qtbot, errors, tmp_path, wait_run):
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
    wait_run(widget)
    assert widget.classifier.model == "logistic_regression"
    widget.predict()
    wait_run(widget, runs=2)
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


def test_tile_widget_folder_train_predict(make_napari_viewer, qtbot, errors, texture_folder, wait_run):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(11)
    mosaic = np.concatenate([texture(0, rng, 128), texture(1, rng, 128)], axis=1)
    layer = viewer.add_image(mosaic, name="sample", scale=(2.0, 2.0), units=("nm", "nm"))
    widget = TileClassifierWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget._source.value = "folder"
    widget._folder.value = texture_folder
    # the image has 2 nm/px: the tile size is given in nm (128 nm = 64 px)
    assert widget._tile.widget.label == "tile size (nm)"
    widget._tile.value = 128
    assert widget.tile_px() == 64
    widget._cv.value = True
    widget.train()
    wait_run(widget)
    assert widget.classifier is not None and widget.classifier.class_names == ["blobs", "grain"]
    assert widget.cv_result is not None and widget.cv_result.grouped
    assert widget.cv_result.accuracy >= 0.9
    assert "grouped CV accuracy" in widget._report.value

    widget._image.value = layer
    widget._heatmap.value = True
    widget._heat_class.value = "grain"
    widget.predict()
    wait_run(widget, runs=2)
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
    # the heat-map does not wash out the class colours: translucent grey under the rectangles
    assert heat.blending == "translucent" and heat.opacity <= 0.6
    assert viewer.layers.index(heat) < viewer.layers.index(shapes)
    # legend: a swatch in each class colour and the class name
    for i, name in enumerate(["blobs", "grain"]):
        r, g, b = (int(round(255 * float(c))) for c in _classify.class_color(i)[:3])
        assert f"#{r:02x}{g:02x}{b:02x}" in widget._legend.value and name in widget._legend.value
    # per-image verdict: half the tiles of each class, in the widget and in the layer's metadata
    verdict = shapes.metadata["verdict"]
    assert verdict["fractions"] == {"blobs": 0.5, "grain": 0.5} and verdict["tiles"] == 8
    assert "blobs 50 %" in widget._verdict.value and "grain 50 %" in widget._verdict.value
    n_layers = len(viewer.layers)
    widget.predict()
    wait_run(widget, runs=3)
    assert len(viewer.layers) == n_layers
    np.testing.assert_array_equal(layer.data, mosaic)
    assert errors == []


def test_tile_widget_layers_cnn_cancel_and_files(make_napari_viewer, qtbot, errors, tmp_path, wait_run):
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
    wait_run(widget, timeout=120000)
    assert widget.classifier is not None and widget.classifier.backend == "cnn"
    trained = widget.classifier

    # a long training run is cancelled: the previous classifier stays
    widget._epochs.value = 500
    widget.train()
    qtbot.wait(300)
    widget.cancel()
    wait_run(widget, runs=2, timeout=60000)
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
    wait_run(widget2)
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


# ---------------------------------------------------------------------------
# added in review: the AM pore sample as a user opens it, annotation in the
# Feature table, heat-map class kept across layer changes
# ---------------------------------------------------------------------------


def test_object_widget_on_am_pore_sample(make_napari_viewer, qtbot, errors, tmp_path, wait_run):
    """File > Open Sample > AM pores, click 4 pores per class, train, predict, save, load."""
    import napari_sem_analysis as sem

    viewer = make_napari_viewer()
    viewer.open_sample("napari-sem-analysis", "am_pores")
    img_layer, lab_layer = viewer.layers[0], viewer.layers[1]
    truth_table = lab_layer.features.copy()  # the sample's ground truth: label, class
    labels_before, image_before = lab_layer.data.copy(), img_layer.data.copy()
    sample = sem.sample_am_pores()
    np.testing.assert_array_equal(labels_before, sample.labels)

    _, widget = viewer.window.add_plugin_dock_widget("napari-sem-analysis", "Object classifier")
    assert widget.class_names == ["gas", "keyhole", "lack-of-fusion"]  # the AM defaults
    widget._labels.value = lab_layer
    widget._image.value = img_layer
    points = widget.add_example_layers()
    assert tuple(points[0].scale) == tuple(lab_layer.scale)
    by_class = {k: [lab for lab, c in sample.classes.items() if c == k] for k in range(3)}
    for k, layer in enumerate(points):
        layer.data = np.array([_inside_point(labels_before, lab) for lab in by_class[k][:4]], float)
    widget.train()
    wait_run(widget)
    assert widget.cv_result is not None and widget.cv_result.confusion_matrix.sum() == 12
    ax = widget._canvas.figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == CLASSES
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(widget.cv_result.confusion_matrix.ravel().tolist())

    widget.predict()
    wait_run(widget, runs=2)
    feats = lab_layer.features
    # the sample's ground-truth classes are kept as the user's annotations, predictions fill 'class'
    truth = dict(zip(truth_table["label"], truth_table["class"]))
    assert dict(zip(feats["index"], feats["class_annotation"])) == truth
    acc = np.mean([p == truth[lab] for lab, p in zip(feats["index"], feats["class"])])
    assert acc >= 0.9  # 12 clicks classify the 150 pores
    out = viewer.layers["object classes"]
    for i in range(3):  # class colours: the same in the output layer and for the clicked examples
        np.testing.assert_allclose(out.colormap.map(np.array([i + 1]))[0], _classify.class_color(i), atol=1e-6)
        points[i].add([[5.0, 5.0]])  # what a click adds gets the class colour
        np.testing.assert_allclose(points[i].face_color[-1], _classify.class_color(i), atol=1e-2)
    assert out.colormap.map(np.array([0]))[0][3] == 0  # background transparent
    n_layers = len(viewer.layers)
    widget.predict()
    wait_run(widget, runs=3)
    assert len(viewer.layers) == n_layers
    assert dict(zip(lab_layer.features["index"], lab_layer.features["class_annotation"])) == truth
    np.testing.assert_array_equal(lab_layer.data, labels_before)
    np.testing.assert_array_equal(img_layer.data, image_before)

    widget._save_path.value = tmp_path / "am.semclf"
    assert widget.save_model() is not None
    _, widget2 = viewer.window.add_plugin_dock_widget("napari-sem-analysis", "Object classifier")
    widget2._load_path.value = tmp_path / "am.semclf"
    loaded = widget2.load_model()
    np.testing.assert_array_equal(
        loaded.predict(sem.measure(labels_before, image_before, pixel_size=sample.pixel_size)),
        lab_layer.features.sort_values("index")["class"].to_numpy(),
    )
    assert errors == []


def test_object_widget_annotate_in_feature_table(pore_viewer, qtbot, errors, wait_run):
    """'Add class column', type classes into the Feature table, train from that column."""
    from qtpy.QtCore import Qt

    from napari_sem_analysis.widgets._measure import FeatureTableWidget

    viewer, img_layer, lab_layer, classes = pore_viewer
    widget = ObjectClassifierWidget(viewer)
    widget._labels.value = lab_layer
    feats = widget.add_class_column()
    assert sorted(feats["index"]) == sorted(classes) and (feats["class"] == "").all()
    assert widget._source.value == "labels features 'class' column"

    table = FeatureTableWidget(viewer)
    table.set_layer(lab_layer)
    model = table.model
    col = list(model.df.columns).index("class")
    assert model.flags(model.index(0, col)) & Qt.ItemFlag.ItemIsEditable
    assert not model.flags(model.index(0, list(model.df.columns).index("index"))) & Qt.ItemFlag.ItemIsEditable
    # sort by index descending: edits must land on the object of the row shown, not the row number
    table._sort = ("index", False)
    table.apply_filter("")
    annotated = {}
    for row in range(len(model.df)):
        lab = int(model.df["index"].iloc[row])
        if lab % 3 == 0:
            name = CLASSES[classes[lab]]
            assert model.setData(model.index(row, col), f" {name} ", Qt.ItemDataRole.EditRole)
            annotated[lab] = name
    assert not model.setData(model.index(0, list(model.df.columns).index("index")), "7", Qt.ItemDataRole.EditRole)
    got = dict(zip(lab_layer.features["index"], lab_layer.features["class"]))
    assert {lab: v for lab, v in got.items() if v} == annotated
    assert model.data(model.index(0, col), Qt.ItemDataRole.EditRole) == got[int(model.df["index"].iloc[0])]
    assert widget.examples() == annotated
    widget.train()
    wait_run(widget)
    assert widget.classifier is not None and widget.cv_result.confusion_matrix.sum() == len(annotated)
    assert errors == []


def test_tile_widget_heat_class_survives_layer_changes(
    make_napari_viewer, qtbot, errors, texture_folder, tmp_path, wait_run
):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(2)
    layer = viewer.add_image(np.concatenate([texture(0, rng, 128), texture(1, rng, 128)], axis=1), name="sample")
    _, widget = viewer.window.add_plugin_dock_widget("napari-sem-analysis", "Image and tile classifier")
    widget._folder.value = texture_folder
    widget._tile.value = 64
    widget._cv.value = False
    widget.train()
    wait_run(widget)
    assert widget._heat_class.choices == ("blobs", "grain")
    widget._heat_class.value = "blobs"
    widget._heatmap.value = True
    widget._image.value = layer
    widget.predict()  # adds two layers: napari resets the docked widget's choices
    wait_run(widget, runs=2)
    viewer.add_image(np.zeros((8, 8)), name="other")
    assert widget._heat_class.choices == ("blobs", "grain") and widget._heat_class.value == "blobs"
    widget.predict()
    wait_run(widget, runs=3)
    heat = viewer.layers["tile probability"]
    assert heat.metadata["class"] == "blobs"
    assert heat.data[:, :128].mean() > 0.5 > heat.data[:, 128:].mean()
    # a loaded model brings its classes too
    widget._save_path.value = tmp_path / "t.semclf"
    widget.save_model()
    _, widget2 = viewer.window.add_plugin_dock_widget("napari-sem-analysis", "Image and tile classifier")
    widget2._load_path.value = tmp_path / "t.semclf"
    widget2.load_model()
    viewer.add_image(np.zeros((8, 8)), name="third")
    assert widget2._heat_class.choices == ("blobs", "grain")
    assert errors == []


# ---------------------------------------------------------------------------
# the classifier widgets record their predictions in the workflow
# ---------------------------------------------------------------------------


def test_object_widget_prediction_is_recorded_and_replays(pore_viewer, qtbot, errors, tmp_path, wait_run):
    from napari_sem_analysis.widgets._common import clear_recorded_steps, recorded_steps
    from napari_sem_analysis.widgets._workflow import WorkflowWidget
    from napari_sem_analysis.workflows import Workflow

    viewer, img_layer, lab_layer, classes = pore_viewer
    clear_recorded_steps(viewer)
    widget = ObjectClassifierWidget(viewer)
    widget._labels.value = lab_layer
    widget._image.value = img_layer
    ids = sorted(classes)
    lab_layer.features = pd.DataFrame({"index": ids, "class": [CLASSES[classes[lab]] for lab in ids]})
    widget._source.value = "labels features 'class' column"
    widget.train()
    wait_run(widget)
    widget.predict()
    wait_run(widget, runs=2)
    assert recorded_steps(viewer) == []  # the model is in no file yet: nothing a recipe could name
    widget._save_path.value = tmp_path / "pores.semclf"
    widget.save_model()
    steps = recorded_steps(viewer)
    assert steps == [
        {
            "function": "classify_objects",
            "params": {"model": str((tmp_path / "pores.semclf").resolve())},
            "inputs": {"labels": "pores labels", "image": "pores"},
            "output": "classes",
        }
    ]
    widget.predict()  # predicting again records the same step once
    wait_run(widget, runs=3)
    assert recorded_steps(viewer) == steps

    # the recorded recipe on another image gives what the classifier predicts there
    image2, labels2, _ = make_pores(seed=4, n_per_class=10)
    res = Workflow.from_steps(steps).run(image2, pixel_size=5.0, inputs={"pores labels": labels2})
    from napari_sem_analysis.classification import object_features

    expected = widget.classifier.predict(object_features(labels2, image2, pixel_size=5.0))
    assert list(res.table["class"]) == list(expected)
    assert sum(res.summary[f"count_{c}"] for c in CLASSES) == labels2.max()

    # replayed in the Workflow widget on the viewer's layers: the classes land in the result's features
    wwidget = WorkflowWidget(viewer)
    assert "classify_objects" in wwidget._text.value
    wwidget._image.value = img_layer
    worker = wwidget.run()
    with qtbot.waitSignal(worker.finished, timeout=60000):
        pass
    out = viewer.layers["recorded workflow result"]
    np.testing.assert_array_equal(out.data, lab_layer.data)
    got = dict(zip(out.features["label"], out.features["class"]))
    assert got == dict(zip(lab_layer.features["index"], lab_layer.features["class"]))

    # a newly trained classifier is not in that file: its predictions are not recorded under the old name
    clear_recorded_steps(viewer)
    widget.train()
    wait_run(widget, runs=4)
    widget.predict()
    wait_run(widget, runs=5)
    assert recorded_steps(viewer) == []
    assert errors == []


def test_tile_widget_prediction_is_recorded_and_runs_in_batch(
    make_napari_viewer, qtbot, errors, texture_folder, tmp_path, wait_run
):
    import tifffile

    from napari_sem_analysis.batch import run_batch
    from napari_sem_analysis.widgets._common import clear_recorded_steps, recorded_steps
    from napari_sem_analysis.widgets._workflow import WorkflowWidget

    viewer = make_napari_viewer()
    clear_recorded_steps(viewer)
    rng = np.random.default_rng(11)
    mosaic = np.concatenate([texture(0, rng, 128), texture(1, rng, 128)], axis=1)
    layer = viewer.add_image(mosaic, name="sample")
    widget = TileClassifierWidget(viewer)
    widget._folder.value = texture_folder
    widget._tile.value = 64
    widget._cv.value = False
    widget.train()
    wait_run(widget)
    widget._load_path.value = widget._save_path.value = tmp_path / "tiles.semclf"
    widget.save_model()
    widget._image.value = layer
    widget.predict()
    wait_run(widget, runs=2)
    steps = recorded_steps(viewer)
    assert steps == [
        {
            "function": "classify_tiles",
            "params": {"model": str((tmp_path / "tiles.semclf").resolve()), "tile_size": 64},
            "inputs": {"image": "sample"},
            "output": "tile classes",
        }
    ]
    # saved from the Workflow widget, run over a folder
    recipe = WorkflowWidget(viewer).save_recipe(tmp_path / "tiles.yaml")
    d = tmp_path / "images"
    d.mkdir()
    tifffile.imwrite(d / "m.tif", mosaic)
    run_batch(recipe, d, tmp_path / "out", progress=False, report=False)
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    shapes = viewer.layers["tile classes"]
    counts = shapes.features["class"].value_counts()
    assert summary.loc[0, "tiles"] == len(shapes.data) == 8
    assert summary.loc[0, "tiles_blobs"] == counts["blobs"] and summary.loc[0, "tiles_grain"] == counts["grain"]
    assert errors == []


def test_tile_widget_progress_covers_cross_validation(
    make_napari_viewer, qtbot, errors, texture_folder, monkeypatch, wait_run
):
    """With cross-validation ticked the progress bar counts the folds too and ends full."""
    seen = {"items": []}
    real = _base.start_worker

    def spy(owner, function, *args, on_yielded=None, total=0, **kwargs):
        seen["total"] = total

        def counted(item):
            if item is not None:
                seen["items"].append(item)
            if on_yielded is not None:
                on_yielded(item)

        return real(owner, function, *args, on_yielded=counted, total=total, **kwargs)

    monkeypatch.setattr(_base, "start_worker", spy)
    viewer = make_napari_viewer()
    widget = TileClassifierWidget(viewer)
    widget._folder.value = texture_folder  # 2 classes x 3 images, 4 tiles of 64 px each
    widget._tile.value = 64
    widget._cv.value = True
    widget.train()
    wait_run(widget)
    assert widget.cv_result is not None and widget.cv_result.n_splits == 3
    assert seen["total"] == 24 + 3 + 1  # tiles' features, 3 folds, final training
    assert seen["items"][-1] == (28, 28) and len(seen["items"]) == 28
    assert errors == []


def test_image_verdict_majority_and_mean_probability():
    from napari_sem_analysis._validation import SEMAnalysisError
    from napari_sem_analysis.widgets._tiles import image_verdict

    table = pd.DataFrame(
        {
            "class": ["a", "a", "b"],
            "prob_a": [0.55, 0.55, 0.0],
            "prob_b": [0.45, 0.45, 1.0],
        }
    )
    v = image_verdict(table, ["a", "b"])
    # two tiles of three say "a", but b's mean probability (0.633) is higher
    assert v["majority"] == "a" and v["mean_probability"] == "b"
    assert v["fractions"] == pytest.approx({"a": 2 / 3, "b": 1 / 3})
    with pytest.raises(SEMAnalysisError):
        image_verdict(table.iloc[:0], ["a", "b"])


def test_tile_widget_folder_prediction_table_csv_and_cancel(
    make_napari_viewer, qtbot, errors, texture_folder, tmp_path, wait_run
):
    from skimage.io import imsave

    viewer = make_napari_viewer()
    widget = TileClassifierWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget._folder.value = texture_folder
    assert widget._tile.widget.label == "tile size (px)"  # no image with a pixel size: px
    widget._tile.value = 64
    widget._cv.value = False
    widget.train()
    wait_run(widget)
    rng = np.random.default_rng(21)
    unseen = tmp_path / "unseen"
    unseen.mkdir()
    imsave(unseen / "a_blobs.png", texture(0, rng, 128), check_contrast=False)
    imsave(unseen / "b_grain.png", texture(1, rng, 128), check_contrast=False)
    mixed = np.concatenate([texture(0, rng, 128), texture(1, rng, 128), texture(1, rng, 128)], axis=1)
    imsave(unseen / "c_mixed.png", mixed, check_contrast=False)
    (unseen / "d_broken.png").write_bytes(b"not a png")
    (unseen / "notes.txt").write_text("skipped")
    widget._predict_folder.value = unseen
    widget.predict_folder()
    wait_run(widget, runs=2)
    table = widget.folder_table
    assert table["file"].tolist() == ["a_blobs.png", "b_grain.png", "c_mixed.png", "d_broken.png"]
    by_file = table.set_index("file")
    assert by_file.loc["a_blobs.png", "verdict"] == "blobs" and by_file.loc["b_grain.png", "verdict"] == "grain"
    assert by_file.loc["c_mixed.png", "verdict"] == "grain"
    assert by_file.loc["c_mixed.png", "fraction_grain"] == pytest.approx(4 / 6)
    assert by_file.loc["c_mixed.png", "tiles"] == 12  # 2 rows x 6 columns of 64 px tiles
    assert by_file.loc["d_broken.png", "error"] != ""  # an unreadable file is a row, not a crash
    assert widget._folder_view.rowCount() == 4
    widget._folder_csv.value = tmp_path / "verdicts.csv"
    out = widget.export_verdicts()
    back = pd.read_csv(out)
    assert back["verdict"].tolist()[:3] == ["blobs", "grain", "grain"]
    assert {"fraction_blobs", "fraction_grain", "mean_prob_grain"} <= set(back.columns)

    # cancel: the previous table stays
    many = tmp_path / "many"
    many.mkdir()
    for i in range(40):
        imsave(many / f"{i:02d}.png", texture(i % 2, rng, 256), check_contrast=False)
    previous = widget.folder_table
    widget._predict_folder.value = many
    widget.predict_folder()
    widget.cancel()
    wait_run(widget, runs=3)
    assert widget.folder_table is previous and widget._progress.value == "cancelled"
    # no folder: a message
    widget._predict_folder.value = tmp_path / "missing"
    assert widget.predict_folder() is None and "folder" in errors[-1]


def test_tile_widget_legend_and_verdict_fit_the_dock(make_napari_viewer, qtbot, errors, wait_run):
    """What the user reads after *Classify tiles* (the class legend, the image verdict, the report) wraps
    inside the dock at its default width: nothing is cut off at the dock's right edge."""
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QApplication

    from napari_sem_analysis.classification import ImageClassifier, extract_tiles

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    rng = np.random.default_rng(4)
    names = ["gamma-prime precipitates in a superalloy", "environmental barrier coating (oxide)"]
    images = [texture(0, rng, 128), texture(1, rng, 128)]
    for name, image in zip(names, images):
        viewer.add_image(image, name=name)
    _, widget = viewer.window.add_plugin_dock_widget("napari-sem-analysis", "Image and tile classifier")
    tiles, y, groups = extract_tiles(images, names, tile_size=64)
    widget.classifier = ImageClassifier("features", "random_forest", class_names=sorted(names)).fit(tiles, y)
    widget._tile.value = 64
    widget._image.value = viewer.layers[names[0]]
    widget._report.value = "features classifier on 8 tiles from 2 images, trained without cross-validation"
    widget.predict()
    wait_run(widget)
    QApplication.processEvents()
    assert all(n in widget._legend.value for n in names) and "image verdict" in widget._verdict.value
    scroll = widget.native
    viewport = scroll.viewport()
    # the dock's contents fit its width (the dock scrolls vertically only: wider contents are cut off)
    assert scroll.widget().minimumSizeHint().width() <= viewport.width()
    for label in (widget._legend, widget._verdict, widget._report):
        q = label.native
        left = q.mapTo(viewport, QPoint(0, 0)).x()
        assert left >= 0 and left + q.width() <= viewport.width(), label
        # the whole (wrapped) text is on the label: its height is what the text needs at this width
        assert q.wordWrap() and q.height() >= q.heightForWidth(q.width())
        assert q.minimumSizeHint().width() < viewport.width() // 2  # wraps instead of widening the dock
    # the legend and verdict span the dock (no empty label column before them)
    assert widget._legend.native.mapTo(viewport, QPoint(0, 0)).x() < 30
    assert errors == []
