"""Instance widgets in a real napari viewer: Train / Segment U-Net with task "instances", Compare with reference."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sem_analysis as sem
from napari_sem_analysis.widgets._compare import CompareWidget

TIMEOUT = 120_000


def domes(shape=(96, 96), seed=0, n=10):
    """Touching bright domes (contacts show as a valley) and their instance labels."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf)
    height = np.zeros(shape)
    for k in range(1, n + 1):
        cy, cx = r.uniform(8, shape[0] - 8), r.uniform(8, shape[1] - 8)
        d = np.hypot(yy - cy, xx - cx) / r.uniform(7, 11)
        sel = (d < 1) & (d < best)
        lab[sel], best[sel] = k, d[sel]
        height[sel] = np.sqrt(1 - d[sel] ** 2)
    img = (60 + 150 * height + r.normal(0, 8, shape)).clip(0, 255).astype(np.uint8)
    return img, lab


def test_compare_with_reference_table(make_napari_viewer, errors, wait_run):
    viewer = make_napari_viewer()
    _, truth = domes((80, 90), seed=3)
    pred = truth.copy()
    pred[pred == 2] = 0  # one object missed
    pl = viewer.add_labels(pred, name="found", scale=(5.0, 5.0), units=("nm", "nm"))
    rl = viewer.add_labels(truth, name="reference", scale=(5.0, 5.0), units=("nm", "nm"))
    w = CompareWidget(viewer)
    w._labels.value, w._reference.value = pl, rl
    w.run()
    wait_run(w)
    assert not errors
    want = sem.evaluate_instances(pred, truth, pixel_size=5.0)
    assert w.result["pq"] == pytest.approx(want["pq"]) and w.result["fn"] == 1
    data = {row[0]: row[1] for row in w._table.data.to_list()}
    assert data["panoptic quality (PQ)"] == f"{want['pq']:.3f}"
    assert data["missed"] == "1" and data["D50 reference"].endswith("nm")
    assert "PQ" in w._status.value
    assert np.array_equal(pl.data, pred) and np.array_equal(rl.data, truth)  # inputs untouched
    # a binary reference: its 4-connected objects are the reference objects
    ml = viewer.add_labels((truth > 0).astype(np.uint8), name="mask")
    w._reference.value = ml
    w._mask.value = True
    w.run()
    wait_run(w)
    assert w.result["n_true"] == sem.evaluate_instances(pred, truth > 0)["n_true"]
    # objects under a size left out of both sides, as evaluate_instances(min_size=) does
    areas = np.bincount(truth.ravel())[1:]
    cut = int(np.sort(areas)[2]) + 1  # the three smallest reference objects fall below it
    w._mask.value = False
    w._reference.value = rl
    w._min_size.value = cut
    w.run()
    wait_run(w)
    want = sem.evaluate_instances(pred, truth, pixel_size=5.0, min_size=cut)
    assert w.result["n_true"] == want["n_true"] == truth.max() - 3
    w._min_size.value = 0
    # shapes that differ are reported, not raised
    viewer.add_labels(np.zeros((10, 10), np.int32), name="small")
    w._reference.value = viewer.layers["small"]
    w.run()
    assert errors and "same shape" in errors[-1]


def test_train_and_segment_instances(make_napari_viewer, errors, wait_run):
    torch = pytest.importorskip("torch")
    pytest.importorskip("segmentation_models_pytorch")
    from napari_sem_analysis.widgets._unet import PredictUNetWidget, TrainUNetWidget

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        viewer = make_napari_viewer()
        img, lab = domes(seed=0)
        il = viewer.add_image(img, name="img", scale=(5.0, 5.0), units=("nm", "nm"))
        ll = viewer.add_labels(lab, name="instances", scale=(5.0, 5.0), units=("nm", "nm"))
        before = lab.copy()
        w = TrainUNetWidget(viewer)
        viewer.window.add_dock_widget(w)
        w._image.value, w._labels.value = il, ll
        assert w._contact.native.isHidden()  # semantic task: no contacts
        w._task.value = "instances"
        # shown / hidden with the task (isHidden: independent of the headless window)
        assert w._n_classes.native.isHidden() and w._background.native.isHidden()
        w._sparse.value = True
        assert not w._background.native.isHidden()
        w._background.value = 0
        p = w._parameters()
        assert p["task"] == "instances" and p["unlabelled"] == 0 and p["background"] is None
        # decoding tuned on the validation images only when they are fully annotated
        assert w._tune.native.isHidden() and not p["tune_decoding"]
        w._sparse.value = False
        assert not w._tune.native.isHidden() and w._parameters()["tune_decoding"]
        # the contact weight: shown for instances only, passed on and recorded in the model
        assert not w._contact.native.isHidden()
        w._contact.value = 8.0
        w._encoder.value = "tu-resnet10t"
        w._patch.value, w._epochs.value, w._batch.value, w._val.value = 64, 2, 2, 0.0
        w._device.value = "cpu"
        w.train()
        wait_run(w, timeout=TIMEOUT)
        assert not errors
        assert w.model is not None and w.model.task == "instances"
        assert w.model.config["training"]["contact_weight"] == 8.0
        assert np.array_equal(ll.data, before)
        pw = PredictUNetWidget(viewer)
        pw._source.value = "last trained"
        pw._image.value = il
        pw._tile.value, pw._overlap.value, pw._device.value = 64, 16, "cpu"
        pw.run()
        wait_run(pw, timeout=TIMEOUT)
        assert not errors
        out = viewer.layers["img U-Net"]
        assert out.data.dtype == np.int32 and tuple(out.scale) == (5.0, 5.0)
        ids = np.unique(out.data)
        ids = ids[ids > 0]
        # one feature row per object, ready for Measure
        assert list(out.features["label"]) == list(ids)
        assert "objects" in pw._status.value
        table = sem.measure(out.data, pixel_size=5.0)
        assert len(table) == len(ids)
    finally:
        torch.set_num_threads(n)
