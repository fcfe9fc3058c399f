"""Workflow widget in a real viewer: recorded steps, save/load, replay, presets, errors."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sem_analysis.coating import synthetic_coating
from napari_sem_analysis.widgets import _workflow
from napari_sem_analysis.widgets._common import clear_recorded_steps, record_step
from napari_sem_analysis.widgets._workflow import LOADED, WorkflowWidget
from napari_sem_analysis.workflows import Workflow


def _disks(centres, radius=9, shape=(120, 160), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for cy, cx in centres:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return np.clip(np.where(mask, 190.0, 50.0) + rng.normal(0, 5, shape), 0, 255).astype(np.uint8)


@pytest.fixture
def errors(errors, monkeypatch):
    """The shared error collector (conftest.py), with the info notifications silenced."""
    monkeypatch.setattr(_workflow, "notify_info", lambda m: None)
    return errors


def _record(viewer):
    # what the threshold and split widgets record after a user runs them on layer "tuned"
    record_step(viewer, "threshold", params={"method": "otsu"}, inputs={"image": "tuned"}, output="tuned mask")
    record_step(
        viewer, "split_touching", params={"min_distance": 4}, inputs={"mask": "tuned mask"}, output="tuned objects"
    )


def _run(widget, wait_run):
    worker = widget.run()
    assert worker is not None
    wait_run(widget, timeout=30000)


def test_recorded_steps_save_load_and_replay(make_napari_viewer, qtbot, tmp_path, errors, wait_run):
    viewer = make_napari_viewer()
    viewer.add_image(_disks([(30, 30), (30, 100)]), name="tuned")
    new = _disks([(30, 30), (90, 40), (60, 120)], seed=1)
    target = viewer.add_image(new, name="new image", scale=(8.0, 8.0), units=("nm", "nm"))
    clear_recorded_steps(viewer)
    _record(viewer)
    widget = WorkflowWidget(viewer)
    assert "threshold" in widget._text.value and "split_touching" in widget._text.value

    path = widget.save_recipe(tmp_path / "tuned.yaml")
    assert path is not None and Workflow.load(path).steps[1]["params"] == {"min_distance": 4}

    widget._clear_btn.changed.emit(True)  # the "Clear recorded steps" button
    assert "No steps recorded" in widget._text.value
    wf = widget.load_recipe(path)
    assert wf is not None and widget._source.value == LOADED and "split_touching" in widget._text.value

    widget._image.value = target
    before = new.copy()
    _run(widget, wait_run)
    out = viewer.layers["recorded workflow result"]
    assert out.data.max() == 3  # three disks in the new image
    assert tuple(out.scale) == (8.0, 8.0) and tuple(str(u) for u in out.units) == ("nanometer", "nanometer")
    assert out.metadata["summary"]["count"] == 3
    assert out.metadata["summary"]["median_equivalent_diameter_nm"] == pytest.approx(19 * 8, rel=0.1)
    np.testing.assert_array_equal(target.data, before)  # input untouched
    assert "count: 3" in widget._result.value
    feats = out.features
    assert len(feats) == 3 and list(feats["index"]) == list(feats["label"]) == [1, 2, 3]
    n_layers = len(viewer.layers)
    _run(widget, wait_run)  # re-run updates the same layer
    assert len(viewer.layers) == n_layers
    assert not errors


def test_preset_on_image_layer(make_napari_viewer, qtbot, errors, wait_run):
    viewer = make_napari_viewer()
    img, truth = synthetic_coating(seed=2)
    layer = viewer.add_image(img, name="cross-section", scale=(20.0, 20.0), units=("nm", "nm"))
    widget = WorkflowWidget(viewer)
    widget._source.value = "coating"
    assert "coating_layers" in widget._text.value
    widget._image.value = layer
    _run(widget, wait_run)
    out = viewer.layers["coating result"]
    assert set(np.unique(out.data)) == {0, 1, 2, 3}
    assert out.metadata["summary"]["crack_count"] == truth["crack_count"]
    assert not errors


def test_errors_are_notifications(make_napari_viewer, tmp_path, errors):
    viewer = make_napari_viewer()
    clear_recorded_steps(viewer)
    widget = WorkflowWidget(viewer)
    assert widget.run() is None  # no image layer
    viewer.add_image(_disks([(30, 30)]), name="img")
    assert widget.run() is None  # nothing recorded
    assert widget.save_recipe(tmp_path / "r.yaml") is None
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps:\n  - function: no_such_function\n")
    assert widget.load_recipe(bad) is None
    assert widget.save_recipe(tmp_path) is None  # a folder, not a file
    assert len(errors) == 5
    assert "No steps recorded" in errors[1] and "no_such_function" in errors[3]


def test_steps_recorded_by_real_widgets_replay_on_new_image(make_napari_viewer, qtbot, errors, wait_run):
    """Threshold + split widgets on one image, then the recorded recipe on another."""
    from napari_sem_analysis.widgets._segment import SplitWidget, ThresholdWidget

    viewer = make_napari_viewer()
    clear_recorded_steps(viewer)
    tuned = viewer.add_image(_disks([(30, 30), (30, 100), (90, 60)]), name="tuned")
    th = ThresholdWidget(viewer)
    th._image.value = tuned
    th._method.value = "otsu"
    th._preview.value = False
    th.run()
    wait_run(th, runs=1, timeout=20000)
    sp = SplitWidget(viewer)
    sp.reset_choices()
    sp._mask.value = viewer.layers["threshold"]
    sp.run()
    wait_run(sp, runs=1, timeout=20000)
    assert viewer.layers["split"].data.max() == 3

    widget = WorkflowWidget(viewer)
    assert [s["function"] for s in Workflow.from_dict(__import__("yaml").safe_load(widget._text.value)).steps] == [
        "denoise",
        "threshold",
        "clean_mask",
        "split_particles",
    ]  # the Threshold widget smooths first
    new = viewer.add_image(_disks([(30, 30), (90, 40), (60, 120), (95, 130)], seed=3), name="new")
    widget._image.value = new
    _run(widget, wait_run)
    out = viewer.layers["recorded workflow result"]
    assert out.data.max() == 4
    # the Threshold defaults (1 px smoothing and opening) and the split's 1 px gaps change a few edge pixels
    assert ((out.data > 0) == (viewer.layers["new"].data > 120)).mean() > 0.999
    assert not errors


def test_recipe_recorded_with_several_widgets_replays_on_the_command_line(
    make_napari_viewer, qtbot, tmp_path, errors, wait_run
):
    """Enhance (denoise, nm), Threshold, Split and Measure (texture off) in the viewer; the saved
    recipe run by ``napari-sem-analysis batch`` on the same image gives the viewer's objects and table."""
    import pandas as pd
    import tifffile

    from napari_sem_analysis import cli
    from napari_sem_analysis.widgets._enhance import EnhanceWidget
    from napari_sem_analysis.widgets._measure import MeasureWidget
    from napari_sem_analysis.widgets._segment import SplitWidget, ThresholdWidget

    px = 8.0
    img = _disks([(30, 30), (30, 52), (90, 60), (60, 125)], radius=12, seed=4)  # two touching disks
    path = tmp_path / "images" / "sample.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, img, imagej=True, resolution=(1000 / px, 1000 / px), metadata={"unit": "um"})

    viewer = make_napari_viewer()
    clear_recorded_steps(viewer)
    layer = viewer.add_image(img, name="sample", scale=(px, px), units=("nm", "nm"))

    def wait(w):
        wait_run(w, runs=1, timeout=30000)

    en = EnhanceWidget(viewer)
    en._preview.value = False
    en._image.value = layer
    en._step.value = "denoise"
    en._method.value = "gaussian"
    en._size.widget.value = 2 * px  # nm: 2 px
    en.run()
    wait(en)
    th = ThresholdWidget(viewer)
    th.reset_choices()
    th._preview.value = False
    th._image.value = viewer.layers["denoise"]
    th._method.value = "otsu"
    th.run()
    wait(th)
    sp = SplitWidget(viewer)
    sp.reset_choices()
    sp._mask.value = viewer.layers["threshold"]
    sp._min_distance.widget.value = 6 * px
    sp.run()
    wait(sp)
    me = MeasureWidget(viewer)
    me.reset_choices()
    me._labels.value = viewer.layers["split"]
    me._image.value = layer
    me._texture.value = False
    me._show_table.value = False
    me.run()
    qtbot.waitUntil(lambda: "area" in viewer.layers["split"].features.columns, timeout=30000)
    viewer_labels = np.asarray(viewer.layers["split"].data)
    viewer_table = viewer.layers["split"].features
    assert viewer_labels.max() == 4  # the touching pair was split

    widget = WorkflowWidget(viewer)
    recipe = widget.save_recipe(tmp_path / "tuned.yaml")
    assert recipe is not None
    assert [s["function"] for s in Workflow.load(recipe).steps] == [
        "denoise",
        "denoise",
        "threshold",
        "clean_mask",
        "split_particles",
        "measure",
    ]

    out = tmp_path / "out"
    assert cli.main(["batch", str(recipe), str(path.parent), "--out", str(out), "-q"]) == 0
    np.testing.assert_array_equal(tifffile.imread(out / "labels" / "sample_labels.tif"), viewer_labels)
    table = pd.read_csv(out / "tables" / "sample.csv")
    assert not [c for c in table.columns if c.startswith(("glcm_", "lbp_"))]  # the Measure settings
    np.testing.assert_allclose(table["area_nm2"], viewer_table["area"])
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[0, "count"] == 4 and summary.loc[0, "pixel_size_nm"] == pytest.approx(px)
    assert not errors


class _FakeViewer:  # record_step keys the records by viewer (weakly)
    pass


def test_recorded_steps_reordered_and_unused_previews_dropped():
    """Threshold on the image, then CLAHE, then Threshold again on the CLAHE layer: the
    re-recorded threshold keeps its first place, yet the recipe runs CLAHE first; a
    denoise preview that nothing used is left out; the result equals the direct calls."""
    import napari_sem_analysis as sem

    v = _FakeViewer()
    record_step(v, "threshold", params={"method": "otsu"}, inputs={"image": "raw"}, output="threshold")
    record_step(v, "denoise", params={"method": "median", "size": 2}, inputs={"image": "raw"}, output="denoise")
    record_step(v, "clahe", params={"clip_limit": 0.02}, inputs={"image": "raw"}, output="CLAHE")
    record_step(v, "threshold", params={"method": "otsu"}, inputs={"image": "CLAHE"}, output="threshold")
    record_step(v, "split_touching", params={"min_distance": 4}, inputs={"mask": "threshold"}, output="split")
    steps = _workflow.recipe_steps(_workflow.recorded_steps(v))
    assert [s["function"] for s in steps] == ["clahe", "threshold", "split_touching"]
    img = _disks([(30, 30), (90, 40), (60, 120)], seed=2)
    res = Workflow.from_steps(steps).run(img)
    direct = sem.split_touching(sem.threshold(sem.clahe(img, clip_limit=0.02), method="otsu"), min_distance=4)
    np.testing.assert_array_equal(res.labels, direct)
    assert res.labels.max() == 3
    # an enhancement that is the last step is kept (nothing else to run)
    w = _FakeViewer()
    record_step(w, "denoise", params={"method": "median"}, inputs={"image": "raw"}, output="denoise")
    assert [s["function"] for s in _workflow.recipe_steps(_workflow.recorded_steps(w))] == ["denoise"]


def test_rerun_writing_the_same_layer_replaces_the_record():
    """Split with seeds, then without: the recipe holds the step that made the layer last."""
    v = _FakeViewer()
    record_step(v, "threshold", params={"method": "otsu"}, inputs={"image": "raw"}, output="threshold")
    record_step(v, "split_touching", params={"min_distance": 4}, inputs={"mask": "threshold"}, output="split")
    record_step(v, "watershed_from_seeds", params={}, inputs={"mask": "threshold", "seeds": "pts"}, output="split")
    record_step(v, "split_touching", params={"min_distance": 7}, inputs={"mask": "threshold"}, output="split")
    steps = _workflow.recorded_steps(v)
    assert [(s["function"], s["params"]) for s in steps] == [
        ("threshold", {"method": "otsu"}),
        ("split_touching", {"min_distance": 7}),
    ]


def test_pixel_size_set_by_hand_goes_into_the_recipe_for_files_without_one(
    make_napari_viewer, qtbot, tmp_path, errors, monkeypatch
):
    """A PNG export has no pixel size: the user sets it in *Pixel size and metadata*, tunes the steps and
    saves the recipe; the recipe carries the calibration, so the batch over more such PNGs is in nm."""
    import imageio.v3 as iio
    import pandas as pd

    from napari_sem_analysis import cli
    from napari_sem_analysis.widgets import _info
    from napari_sem_analysis.widgets._info import PixelSizeWidget

    monkeypatch.setattr(_info, "notify_info", lambda m: None)
    viewer = make_napari_viewer()
    clear_recorded_steps(viewer)
    layer = viewer.add_image(_disks([(30, 30), (30, 100)]), name="tuned")
    calib = PixelSizeWidget(viewer)
    calib._layer.value = layer
    calib._size.value = 6.5
    calib._unit.value = "nm"
    calib._apply.changed.emit(True)  # the "Set pixel size" button
    assert tuple(layer.scale) == (6.5, 6.5)
    _record(viewer)
    widget = WorkflowWidget(viewer)
    recipe = widget.save_recipe(tmp_path / "calibrated.yaml")
    assert recipe is not None and Workflow.load(recipe).pixel_size == 6.5
    assert "pixel_size: 6.5" in widget._text.value  # the user sees it in the recipe text

    images = tmp_path / "pngs"
    images.mkdir()
    for i in range(2):
        iio.imwrite(images / f"export_{i}.png", _disks([(30, 30), (90, 40), (60, 120)], seed=i))
    assert cli.main(["batch", str(recipe), str(images), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert list(summary["count"]) == [3, 3]
    assert list(summary["pixel_size_nm"]) == [6.5, 6.5]
    assert summary["median_equivalent_diameter_nm"].to_numpy() == pytest.approx(19 * 6.5, rel=0.1)

    # an image whose scale was not set by hand (e.g. from its own metadata) gives the recipe no calibration
    clear_recorded_steps(viewer)
    viewer.layers.remove(layer)
    viewer.add_image(_disks([(30, 30)]), name="tuned", scale=(8.0, 8.0), units=("nm", "nm"))
    _record(viewer)
    assert widget.current_workflow().pixel_size is None
    assert not errors
