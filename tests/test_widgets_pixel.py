"""Pixel classifier widget in a real viewer: live update after painted strokes, save/load, recipe step."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sem_analysis.steps import call_step
from napari_sem_analysis.widgets import _pixel
from napari_sem_analysis.widgets._common import recorded_steps
from napari_sem_analysis.widgets._pixel import PixelClassifierWidget


@pytest.fixture
def pixel_errors(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(_pixel, "notify_error", lambda e: seen.append(str(e)))
    return seen


def _two_phase(rng, shape=(96, 128)):
    truth = np.ones(shape, np.uint8)
    truth[:, shape[1] // 2 :] = 2
    img = (90 + 70 * (truth == 2) + rng.normal(0, 15, shape)).clip(0, 255).astype(np.uint8)
    return img, truth


def _stroke(layer, label, x, ys):
    for y in ys:
        layer.paint((y, x), label)


def _widget(viewer):
    w = PixelClassifierWidget(viewer)
    w._scales.value = "1, 2, 4"
    w._trees.value = 10
    return w


def test_live_update_after_painted_strokes(make_napari_viewer, wait_run, pixel_errors, qtbot):
    rng = np.random.default_rng(1)
    img, truth = _two_phase(rng)
    viewer = make_napari_viewer()
    image_layer = viewer.add_image(img, name="sem", scale=(2.0, 2.0), units=("nm", "nm"))
    w = _widget(viewer)
    w._scales.value = "2, 4, 8"  # nm at 2 nm/px
    scr = w.new_scribble_layer()
    assert scr.data.shape == img.shape and tuple(scr.scale) == (2.0, 2.0)
    assert w._scales.label == "scales (nm)"
    w._live.value = True
    scr.brush_size = 3
    _stroke(scr, 1, 30, range(20, 70, 2))  # one class only: nothing to train yet
    qtbot.wait(20)
    assert not w.running and "pixel classes" not in viewer.layers
    _stroke(scr, 2, 100, [20])  # the second class: a run starts, the GUI does not wait for it
    qtbot.waitUntil(lambda: w.running, timeout=5000)
    _stroke(scr, 2, 100, range(22, 70, 2))  # painted during the run: merged into one later run
    wait_run(w, runs=2, timeout=120000)
    assert not pixel_errors
    # the strokes painted during the first run were used by a second one, not one run per stroke
    assert 2 <= w.completed < 25
    out = viewer.layers["pixel classes"]
    assert tuple(out.scale) == (2.0, 2.0)
    inner = np.ones(img.shape, bool)
    inner[:, 54:74] = False
    assert (out.data[inner] == truth[inner]).mean() > 0.97
    assert list(out.features["label"]) == [1, 2]
    assert w.classifier.n_training_pixels_[2] == int((scr.data == 2).sum())
    assert "importance" in w._importances.value
    np.testing.assert_array_equal(image_layer.data, img)  # input untouched


def test_save_after_live_preview_writes_the_whole_forest(make_napari_viewer, wait_run, pixel_errors, tmp_path):
    from napari_sem_analysis.pixel_classifier import load_pixel_classifier

    rng = np.random.default_rng(3)
    img, _ = _two_phase(rng)
    viewer = make_napari_viewer()
    viewer.add_image(img, name="sem")
    w = _widget(viewer)
    w._trees.value = _pixel.LIVE_TREES + 5
    scr = w.new_scribble_layer()
    scr.data[20:70, 28:32] = 1
    scr.data[20:70, 96:100] = 2
    assert w.run(live=True) is not None
    wait_run(w)
    assert w.classifier.n_estimators == _pixel.LIVE_TREES  # the preview is the lighter forest
    path = w.save(tmp_path / "full.pxclf")
    assert not pixel_errors and path.is_file()
    assert load_pixel_classifier(path).n_estimators == _pixel.LIVE_TREES + 5


def test_train_save_load_and_recipe_step(make_napari_viewer, wait_run, pixel_errors, tmp_path):
    rng = np.random.default_rng(2)
    img, truth = _two_phase(rng)
    viewer = make_napari_viewer()
    viewer.add_image(img, name="sem")
    w = _widget(viewer)
    assert w.save(tmp_path / "none.pxclf") is None and pixel_errors  # nothing trained yet
    pixel_errors.clear()
    scr = w.new_scribble_layer()
    scr.data[20:70, 28:32] = 1
    scr.data[20:70, 96:100] = 2
    w._proba.value = True
    assert w.run() is not None
    wait_run(w)
    assert not pixel_errors
    labels = np.array(viewer.layers["pixel classes"].data)
    proba = viewer.layers["pixel probabilities"].data
    assert proba.shape == (2, *img.shape)
    path = w.save(tmp_path / "phases.pxclf")
    assert path.is_file()
    rec = [s for s in recorded_steps(viewer) if s["function"] == "pixel_classify"]
    assert rec and rec[-1]["params"] == {"model": str(path)}
    # the recipe step gives the widget's result
    np.testing.assert_array_equal(call_step("pixel_classify", {"image": img}, {"model": str(path)}), labels)
    # a second widget loads the file and predicts the same
    viewer.layers.remove("pixel classes")
    w2 = PixelClassifierWidget(viewer)
    assert w2.load(path) is not None
    wait_run(w2)
    np.testing.assert_array_equal(viewer.layers["pixel classes"].data, labels)
    # a bad file is refused with a message
    bad = tmp_path / "bad.pxclf"
    bad.write_bytes(b"junk")
    assert w2.load(bad) is None and pixel_errors


def test_show_features(make_napari_viewer, pixel_errors):
    rng = np.random.default_rng(3)
    img, _ = _two_phase(rng, (40, 50))
    viewer = make_napari_viewer()
    viewer.add_image(img, name="sem")
    w = _widget(viewer)
    w._groups.value = ["intensity", "std"]
    layer = w.show_features()
    assert layer.data.shape == (1 + 2 * 3, 40, 50)
    assert layer.metadata["feature_names"][0] == "intensity raw"
    assert not pixel_errors


def test_live_visible_field_on_large_images(make_napari_viewer, monkeypatch):
    viewer = make_napari_viewer()
    layer = viewer.add_image(np.zeros((100, 120), np.uint8), name="sem")
    w = PixelClassifierWidget(viewer)
    assert w.visible_region(layer, (100, 120)) is None  # small images: always the whole image
    monkeypatch.setattr(_pixel, "LIVE_WHOLE_IMAGE_PIXELS", 100)
    layer.corner_pixels = np.array([[10, 20], [39, 59]])
    region = w.visible_region(layer, (100, 120))
    assert region == (10, 40, 20, 60)
    full = w._paste(np.full((30, 40), 2, np.uint8), region, (100, 120))
    assert full.shape == (100, 120) and full[10:40, 20:60].min() == 2 and full.sum() == 2 * 30 * 40
