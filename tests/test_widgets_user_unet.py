"""Issue 15: U-Net training as a user meets it (masks next to images, 0/255 masks, Stop, names, plot)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")

from _unet_helpers import _one_thread, disks  # noqa: E402, F401  (_one_thread: autouse fixture)
from _unet_helpers import setup_train as _setup  # noqa: E402

from napari_sem_analysis.widgets._unet import TrainUNetWidget  # noqa: E402

TIMEOUT = 300_000


def test_a_0_255_mask_trains_two_classes_named_from_the_layer(make_napari_viewer, errors, wait_run):
    img, mask = disks()
    viewer = make_napari_viewer()
    il = viewer.add_image(img, name="sem")
    ll = viewer.add_labels((mask * 255).astype(np.uint8), name="particles mask")  # what Convert to Labels gives
    ll.metadata["class_names"] = ["matrix", "particle"]
    w = TrainUNetWidget(viewer)
    _setup(w, epochs=1)
    w._image.value, w._labels.value = il, ll
    w.train()
    wait_run(w, timeout=TIMEOUT)
    assert not errors
    assert w.model.config["n_classes"] == 2 and w.model.class_names == ["matrix", "particle"]
    # the live plot: markers (one epoch is visible) and the IoU label on the right axis
    lines = w._plot.ax_loss.get_lines()
    assert lines and lines[0].get_marker() not in (None, "None", "")
    assert w._plot.ax_iou.yaxis.get_label_position() == "right"


def test_sparse_labels_train_only_the_painted_classes(make_napari_viewer, errors, wait_run):
    img, mask = disks(seed=1)
    sparse = np.zeros_like(mask)
    sparse[(mask == 0) & (np.arange(96)[None, :] < 30)] = 1  # some background, painted 1
    sparse[(mask == 1) & (np.arange(96)[:, None] < 60)] = 2  # some particles, painted 2
    viewer = make_napari_viewer()
    il = viewer.add_image(img, name="sem")
    ll = viewer.add_labels(sparse, name="painted")
    w = TrainUNetWidget(viewer)
    _setup(w, epochs=1)
    w._sparse.value = True
    w._class_names.value = "background, particle"
    w._image.value, w._labels.value = il, ll
    w.train()
    wait_run(w, timeout=TIMEOUT)
    assert not errors
    assert w.model.class_names == ["background", "particle"]  # no "unlabelled" class
    pred = w.model.predict(img, tile_size=64, overlap=16, device="cpu")
    assert set(np.unique(pred)) <= {0, 1}


def test_stop_never_replaces_a_better_model(make_napari_viewer, qtbot, errors, wait_run):
    viewer = make_napari_viewer()
    w = TrainUNetWidget(viewer)
    _setup(w, epochs=4)
    for seed in (0, 1, 2):  # several pairs: a validation split, scored by mean IoU
        img, mask = disks(seed=seed)
        w._image.value = viewer.add_image(img, name=f"sem{seed}")
        w._labels.value = viewer.add_labels(mask, name=f"mask{seed}")
        w.add_pair()
    w.train()
    wait_run(w, timeout=TIMEOUT)
    good = w.model
    good_iou = good.history[good.best_epoch - 1]["mean_iou"]
    # a second run stopped in its first epoch: its best is worse, the good model stays
    w._epochs.value = 500
    w.train()
    qtbot.waitUntil(lambda: w._latest is not None, timeout=TIMEOUT)
    w._stop.native.click()
    wait_run(w, timeout=TIMEOUT)
    stopped = w.latest_run_model
    assert stopped is not good and len(stopped.history) == 1
    stopped_iou = stopped.history[stopped.best_epoch - 1]["mean_iou"]
    assert stopped_iou < good_iou  # what this test is about (4 epochs against a part of one)
    assert w.model is good
    from napari_sem_analysis.widgets._unet import last_trained_model

    assert last_trained_model(viewer) is good
    assert "earlier model is kept" in w._status.value
    assert not errors


def test_a_mask_of_another_size_is_fitted_when_pairing(make_napari_viewer, errors):
    img, mask = disks()
    viewer = make_napari_viewer()
    il = viewer.add_image(img[:80], name="sem", scale=(2.0, 2.0), units=("nm", "nm"))  # info band cropped
    ll = viewer.add_labels(mask, name="sem_m")  # the full frame
    w = TrainUNetWidget(viewer)
    w._image.value, w._labels.value = il, ll
    w.add_pair()
    fitted = next(lyr for lyr in viewer.layers if lyr.name == "sem_m fitted")
    np.testing.assert_array_equal(fitted.data, mask[:80])
    assert tuple(fitted.scale) == (2.0, 2.0)
    assert len(w._pairs) == 1 and w._pairs[0][1] is fitted
    w._fit.value = False
    w.clear_pairs()
    w._labels.value = ll
    w.add_pair()
    assert errors and "fit masks" in errors[-1]


def test_reader_opens_a_mask_next_to_its_image_as_labels(tmp_path):
    import tifffile

    from napari_sem_analysis._reader import napari_get_reader

    img, mask = disks()
    full = np.vstack([img, np.full((16, 96), 255, np.uint8)])  # an info band below the image
    full[-10:-6, 5:40] = 0
    tifffile.imwrite(tmp_path / "a.tif", full)
    tifffile.imwrite(tmp_path / "a_m.tif", np.vstack([mask * 255, np.zeros((16, 96), np.int32)]).astype(np.uint8))
    image_layer = napari_get_reader(str(tmp_path / "a.tif"))(str(tmp_path / "a.tif"))[0]
    data, kwargs, kind = napari_get_reader(str(tmp_path / "a_m.tif"))(str(tmp_path / "a_m.tif"))[0]
    assert kind == "labels" and data.shape == image_layer[0].shape
    assert set(np.unique(data)) == {0, 1}
    np.testing.assert_array_equal(data, mask[: data.shape[0]])
