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
def errors(monkeypatch):
    seen = []
    monkeypatch.setattr(_workflow, "notify_error", lambda e: seen.append(str(e)))
    monkeypatch.setattr(_workflow, "notify_info", lambda m: None)
    return seen


def _record(viewer):
    # what the threshold and split widgets record after a user runs them on layer "tuned"
    record_step(viewer, "threshold", params={"method": "otsu"}, inputs={"image": "tuned"}, output="tuned mask")
    record_step(viewer, "split_touching", params={"min_distance": 4}, inputs={"mask": "tuned mask"},
                output="tuned objects")


def _run(widget, qtbot):
    worker = widget.run()
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=30000):
        pass


def test_recorded_steps_save_load_and_replay(make_napari_viewer, qtbot, tmp_path, errors):
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
    _run(widget, qtbot)
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
    _run(widget, qtbot)  # re-run updates the same layer
    assert len(viewer.layers) == n_layers
    assert not errors


def test_preset_on_image_layer(make_napari_viewer, qtbot, errors):
    viewer = make_napari_viewer()
    img, truth = synthetic_coating(seed=2)
    layer = viewer.add_image(img, name="cross-section", scale=(20.0, 20.0), units=("nm", "nm"))
    widget = WorkflowWidget(viewer)
    widget._source.value = "coating"
    assert "coating_layers" in widget._text.value
    widget._image.value = layer
    _run(widget, qtbot)
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


def test_steps_recorded_by_real_widgets_replay_on_new_image(make_napari_viewer, qtbot, errors):
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
    qtbot.waitUntil(lambda: th._completed > 0 and not th._running, timeout=20000)
    sp = SplitWidget(viewer)
    sp.reset_choices()
    sp._mask.value = viewer.layers["threshold"]
    sp.run()
    qtbot.waitUntil(lambda: sp._completed > 0 and not sp._running, timeout=20000)
    assert viewer.layers["split"].data.max() == 3

    widget = WorkflowWidget(viewer)
    assert [s["function"] for s in Workflow.from_dict(__import__("yaml").safe_load(widget._text.value)).steps] == [
        "threshold", "clean_mask", "split_touching"]
    new = viewer.add_image(_disks([(30, 30), (90, 40), (60, 120), (95, 130)], seed=3), name="new")
    widget._image.value = new
    _run(widget, qtbot)
    out = viewer.layers["recorded workflow result"]
    assert out.data.max() == 4
    np.testing.assert_array_equal(out.data > 0, viewer.layers["new"].data > 120)
    assert not errors
