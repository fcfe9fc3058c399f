"""U-Net widgets in a real napari viewer (CPU, tiny timm encoder)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")

from _unet_helpers import _one_thread, disks  # noqa: E402, F401  (_one_thread: autouse fixture)
from _unet_helpers import setup_train as _setup_train  # noqa: E402

from napari_sem_analysis.unet import load_model, train_unet  # noqa: E402
from napari_sem_analysis.widgets import _unet  # noqa: E402
from napari_sem_analysis.widgets._common import recorded_steps  # noqa: E402
from napari_sem_analysis.widgets._unet import PredictUNetWidget, TrainUNetWidget  # noqa: E402

TIMEOUT = 90_000


def _add_pair(viewer, seed, scale=(5.0, 5.0)):
    img, mask = disks(seed=seed)
    il = viewer.add_image(img, name=f"img{seed}", scale=scale, units=("nm", "nm"))
    ll = viewer.add_labels(mask, name=f"mask{seed}", scale=scale, units=("nm", "nm"))
    return il, ll


def test_train_from_layer_pairs_save_and_predict(make_napari_viewer, qtbot, tmp_path, errors, wait_run):
    viewer = make_napari_viewer()
    pairs = [_add_pair(viewer, s) for s in range(3)]
    before = [(p[0].data.copy(), p[1].data.copy()) for p in pairs]
    w = TrainUNetWidget(viewer)
    viewer.window.add_dock_widget(w)
    for il, ll in pairs:
        w._image.value, w._labels.value = il, ll
        w.add_pair()
    assert len(w._pairs) == 3 and "img2 + mask2" in w._pairs_label.value
    _setup_train(w, epochs=2)
    w._class_names.value = "matrix, particle"
    w.train()
    wait_run(w, timeout=TIMEOUT)
    assert not errors
    model = w.model
    assert model is not None and len(model.history) == 2
    assert model.class_names == ["matrix", "particle"]
    assert model.pixel_size == pytest.approx(5.0)  # from the layer's scale in nm
    assert w._progress.value == 1000 and "trained 2 epoch" in w._status.value
    assert "on cpu" in w._status.value  # the device used is shown
    assert len(w._plot.ax_loss.get_lines()) == 2  # train and validation loss curves
    iou_line = w._plot.ax_iou.get_lines()
    assert len(iou_line) == 1  # and the validation mean IoU
    np.testing.assert_allclose(iou_line[0].get_ydata(), [h["mean_iou"] for h in model.history])
    assert all(np.array_equal(il.data, bi) and np.array_equal(ll.data, bl) for (il, ll), (bi, bl) in zip(pairs, before))
    assert _unet.last_trained_model(viewer) is model

    # save from the widget
    w._save_path.value = tmp_path / "model.safetensors"
    w.save()
    assert (tmp_path / "model.safetensors").is_file() and not errors
    assert load_model(tmp_path / "model.safetensors").class_names == ["matrix", "particle"]

    # predict with the model just trained, with probabilities
    p = PredictUNetWidget(viewer)
    viewer.window.add_dock_widget(p)
    assert p._source.value == "last trained"
    target = pairs[1][0]
    p._image.value = target
    p._tile.value, p._overlap.value, p._device.value = 64, 16, "cpu"
    p._probs.value = True
    n_layers = len(viewer.layers)
    p.run()
    wait_run(p, timeout=TIMEOUT)
    assert not errors
    out = viewer.layers["img1 U-Net"]
    assert out.data.shape == target.data.shape
    np.testing.assert_array_equal(out.data, model.predict(target.data, tile_size=64, overlap=16, device="cpu"))
    assert tuple(out.scale) == tuple(target.scale)
    assert [str(u) for u in out.units] == ["nanometer", "nanometer"]
    assert list(out.features["class_name"]) == ["matrix", "particle"]
    probs = viewer.layers["img1 U-Net probabilities"]
    assert probs.data.shape == (2, *target.data.shape)
    assert tuple(probs.scale) == (1.0, 5.0, 5.0)
    assert len(viewer.layers) == n_layers + 2
    steps = recorded_steps(viewer)
    assert steps[-1]["function"] == "predict_unet"
    assert steps[-1]["params"]["model"] == str(tmp_path / "model.safetensors")
    assert steps[-1]["inputs"] == {"image": "img1"}

    assert "on cpu" in p._status.value
    np.testing.assert_array_equal(target.data, before[1][0])  # the input image is not modified

    # a re-run updates the same layers (with fresh data) instead of adding copies
    out.data = np.zeros_like(out.data)
    probs.data = np.zeros_like(probs.data)
    p.run()
    wait_run(p, timeout=TIMEOUT)
    assert len(viewer.layers) == n_layers + 2
    assert viewer.layers["img1 U-Net"] is out and viewer.layers["img1 U-Net probabilities"] is probs
    np.testing.assert_array_equal(out.data, model.predict(target.data, tile_size=64, overlap=16, device="cpu"))
    assert probs.data.max() > 0.5
    np.testing.assert_array_equal(target.data, before[1][0])


def test_stop_keeps_best_model(make_napari_viewer, qtbot, errors, wait_run):
    viewer = make_napari_viewer()
    il, ll = _add_pair(viewer, 0)
    w = TrainUNetWidget(viewer)
    _setup_train(w, epochs=500)
    w._image.value, w._labels.value = il, ll
    w.train()
    qtbot.waitUntil(lambda: w._latest is not None and w._latest.get("stage") == "epoch", timeout=TIMEOUT)
    w._refresh_progress()  # what the timer shows while training runs
    assert "ETA" in w._status.value and "on cpu" in w._status.value
    assert 0 < w._progress.value < 1000
    assert len(w._plot.ax_loss.get_lines()) >= 1  # live loss curve after the first epoch
    w._stop.native.click()
    wait_run(w, timeout=TIMEOUT)
    assert not errors
    assert w.model is not None and w.model.stopped_early
    assert 1 <= len(w.model.history) < 500
    assert w.model.best_epoch is not None
    assert "stopped by user" in w._status.value
    assert w._train.enabled and not w._stop.enabled


def test_train_from_folders(make_napari_viewer, qtbot, tmp_path, errors, wait_run):
    import tifffile

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for s in range(2):
        img, mask = disks(seed=s)
        tifffile.imwrite(tmp_path / "images" / f"a{s}.tif", img)
        tifffile.imwrite(tmp_path / "masks" / f"a{s}_m.tif", (mask * 255).astype(np.uint8))
    viewer = make_napari_viewer()
    w = TrainUNetWidget(viewer)
    w._source.value = "folders"
    assert w._image.native.isHidden() and not w._image_dir.native.isHidden()
    w._image_dir.value = tmp_path / "images"
    w._mask_dir.value = tmp_path / "masks"
    _setup_train(w, epochs=1)
    w._balance.value = True  # weight the rarer class (particles) in the cross-entropy
    w.train()
    wait_run(w, timeout=TIMEOUT)
    assert not errors
    assert w.model is not None and w.model.n_classes == 2  # 0/255 masks -> classes 0, 1
    weights = w.model.config["training"]["class_weights"]
    assert weights is not None and weights[1] > weights[0]

    # a folder without pairs gives a notification, not a crash
    w._mask_dir.value = tmp_path / "images"
    w.train()
    wait_run(w, timeout=TIMEOUT)
    assert errors and "no image/mask pairs" in errors[-1]


def test_predict_from_file_cancel_and_errors(make_napari_viewer, qtbot, tmp_path, errors, wait_run):
    img, mask = disks((64, 64), seed=3)
    model = train_unet(
        img,
        mask,
        encoder="tu-resnet10t",
        encoder_depth=3,
        decoder_channels=(16, 8, 8),
        patch_size=32,
        epochs=1,
        batch_size=2,
        steps_per_epoch=2,
        val_fraction=0,
        device="cpu",
    )
    path = model.save(tmp_path / "m.safetensors")
    viewer = make_napari_viewer()
    big, _ = disks((256, 256), seed=9, n=30)
    layer = viewer.add_image(big, name="big")
    p = PredictUNetWidget(viewer)
    assert p._source.value == "file"

    # no model file chosen -> notification, nothing added
    p._image.value = layer
    p.run()
    assert errors and "model file" in errors[-1]
    # a file that is not a model -> notification
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    p._model_file.value = junk
    p.run()
    assert "not a valid model file" in errors[-1]
    assert len(viewer.layers) == 1

    p._model_file.value = path
    p._tile.value, p._overlap.value, p._batch.value, p._device.value = 32, 8, 1, "cpu"
    p.run()
    p.cancel()  # cancelled before the first batch of tiles finishes
    wait_run(p, timeout=TIMEOUT)
    assert p._status.value == "cancelled" and len(viewer.layers) == 1

    n_err = len(errors)
    p._tile.value, p._overlap.value, p._batch.value = 128, 32, 4
    p.run()
    wait_run(p, timeout=TIMEOUT)
    assert len(errors) == n_err
    out = viewer.layers["big U-Net"]
    np.testing.assert_array_equal(out.data, load_model(path).predict(big, tile_size=128, overlap=32, device="cpu"))
    assert "big U-Net probabilities" not in [lyr.name for lyr in viewer.layers]


def test_train_bad_input_notifies(make_napari_viewer, errors):
    viewer = make_napari_viewer()
    w = TrainUNetWidget(viewer)
    w.train()  # no layers at all
    assert errors and "Labels layer" in errors[-1]
    viewer.add_image(np.zeros((40, 40), np.uint8), name="a")
    viewer.add_labels(np.zeros((30, 30), np.int32), name="b")
    w._fit.value = False  # with it, the mask would be fitted to the image
    w.add_pair()
    assert "same shape" in errors[-1] and not w._pairs
    w.save()
    assert "train one first" in errors[-1]
    assert w._worker is None


LIVE_APP = r"""
import json, sys, time
import numpy as np
import napari
from qtpy.QtWidgets import QApplication


def pump(cond, timeout):
    t0 = time.time()
    while not cond():
        QApplication.processEvents()
        time.sleep(0.02)
        if time.time() - t0 > timeout:
            raise TimeoutError("worker did not finish")


r = np.random.default_rng(0)
yy, xx = np.mgrid[:96, :96]
mask = np.zeros((96, 96), np.int32)
for _ in range(8):
    cy, cx = r.integers(0, 96, size=2)
    mask[(yy - cy) ** 2 + (xx - cx) ** 2 < r.integers(5, 12) ** 2] = 1
img = (70 + 110 * mask + r.normal(0, 20, mask.shape)).clip(0, 255).astype(np.uint8)

viewer = napari.Viewer(show=True)  # the OpenGL canvas (Mesa's LLVM under Xvfb) is up first
il = viewer.add_image(img, name="sem", scale=(5.0, 5.0))
ll = viewer.add_labels(mask.copy(), name="mask", scale=(5.0, 5.0))
pump(lambda: True, 1)
for _ in range(30):
    QApplication.processEvents()
res = {"torch_before": "torch" in sys.modules, "triton_before": "triton" in sys.modules}
_, w = viewer.window.add_plugin_dock_widget("napari-sem-analysis", "Train U-Net")
w._encoder.value = "tu-resnet10t"
w._patch.value, w._epochs.value, w._batch.value = 64, 2, 2
w._image.value, w._labels.value = il, ll
w._train.native.click()
pump(lambda: not w.running, 240)
res["epochs"] = None if w.model is None else len(w.model.history)
res["status"] = str(w._status.value)
from napari_sem_analysis import _device
res["llvm_loaded"] = _device._system_llvm_loaded()
res["triton_blocked"] = "triton" in sys.modules and sys.modules["triton"] is None
_, p = viewer.window.add_plugin_dock_widget("napari-sem-analysis", "U-Net segmentation")
p._source.value = "last trained"
p._image.value = il
p._tile.value, p._overlap.value = 64, 16
p._run.native.click()
pump(lambda: not p.running, 120)
out = viewer.layers["sem U-Net"]
res["scale"] = [float(v) for v in out.scale]
res["same_as_api"] = bool(np.array_equal(out.data, w.model.predict(img, tile_size=64, overlap=16)))
res["inputs_untouched"] = bool(np.array_equal(il.data, img) and np.array_equal(ll.data, mask))
viewer.close()
print("RESULT " + json.dumps(res), flush=True)
"""


def test_train_and_predict_in_a_fresh_napari_process():
    """The user's path: napari is open (OpenGL up), the widgets are docked, Train and Segment are clicked.

    Runs in its own process because the other tests import torch and
    segmentation-models-pytorch (and with them triton) before any viewer
    exists, which hides the crash this guards against: loading triton's
    LLVM after Mesa's LLVM killed napari with a segmentation fault.
    """
    import json
    import os
    import subprocess
    import sys

    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        pytest.skip("needs a display (run under xvfb)")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", LIVE_APP], capture_output=True, text=True, timeout=420, env=env
    )
    assert proc.returncode == 0, f"exit code {proc.returncode}\n{proc.stderr[-4000:]}"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads(line[0][len("RESULT ") :])
    assert not res["torch_before"] and not res["triton_before"]  # nothing of torch loaded before the viewer
    assert res["epochs"] == 2 and "trained 2 epoch" in res["status"] and "on cpu" in res["status"]
    assert res["triton_blocked"] == res["llvm_loaded"]
    assert res["scale"] == [5.0, 5.0]
    assert res["same_as_api"] and res["inputs_untouched"]
