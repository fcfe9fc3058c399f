"""The widget base: a widget for a registered step in a few lines (the example of docs/architecture.md)."""

from __future__ import annotations

import numpy as np
import pytest
from magicgui.widgets import CheckBox

from napari_sem_analysis import steps
from napari_sem_analysis.steps import register_step
from napari_sem_analysis.widgets._base import StepWidget
from napari_sem_analysis.widgets._common import recorded_steps


def toy_box_blur(image, *, size: float = 1.0, pixel_size=None, unit: str = "px", invert: bool = False):
    """Mean over a (2 size + 1)-pixel square (size in px, or nm with unit='nm')."""
    from scipy import ndimage as ndi

    px = size / pixel_size if unit == "nm" else size
    out = ndi.uniform_filter(np.asarray(image, float), 2 * int(round(px)) + 1)
    return out.max() - out if invert else out


class ToyBlurWidget(StepWidget):
    step = "toy_box_blur"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self._image = self.layer_box("image", "Image")
        self._size = self.length_box("size", 2.0)
        self._invert = CheckBox(text="invert", value=False)
        self.extend([self._image, self._size.widget, self._invert, *self.run_controls()])

    def params(self) -> dict:
        return {"size": self._size.value, "unit": self.unit(), "invert": bool(self._invert.value)}


@pytest.fixture
def toy_step(monkeypatch):
    monkeypatch.setattr(steps, "_REGISTRY", dict(steps._REGISTRY))
    register_step("toy_box_blur", toy_box_blur, writes="image", lengths=("size",))


def test_widget_on_the_base_runs_writes_and_records(make_napari_viewer, toy_step, errors, wait_run):
    rng = np.random.default_rng(0)
    img = rng.normal(100, 20, (40, 60))
    viewer = make_napari_viewer()
    layer = viewer.add_image(img, name="sem", scale=(4.0, 4.0), units=("nm", "nm"))
    widget = ToyBlurWidget(viewer)
    assert widget._size.widget.label == "size (nm)" and widget._size.value == 8.0  # 2 px at 4 nm/px
    finished = []
    widget.finished.connect(finished.append)
    assert widget.run() is not None and widget.running
    wait_run(widget)
    assert not errors and widget.completed == 1 and not widget.running
    out = viewer.layers["toy_box_blur"]
    np.testing.assert_allclose(out.data, toy_box_blur(img, size=2))
    assert tuple(out.scale) == (4.0, 4.0)
    assert finished and finished[0] is not None
    assert recorded_steps(viewer) == [
        {
            "function": "toy_box_blur",
            "params": {"size": 8.0, "unit": "nm", "invert": False},
            "inputs": {"image": "sem"},
            "output": "toy_box_blur",
        }
    ]
    # a re-run updates the same layer; wait() is the public wait for scripts
    widget._invert.value = True
    widget.run()
    assert widget.wait(60)
    assert viewer.layers["toy_box_blur"] is out and len(viewer.layers) == 2
    np.testing.assert_allclose(out.data, toy_box_blur(img, size=2, invert=True))
    np.testing.assert_array_equal(layer.data, img)  # the input is not modified


def test_widget_on_the_base_reports_bad_input_and_cancels(make_napari_viewer, toy_step, errors, wait_run):
    viewer = make_napari_viewer()
    widget = ToyBlurWidget(viewer)
    assert widget.run() is None and errors == ["choose an image layer first"]
    viewer.add_image(np.zeros((6, 200, 200)), name="stack")
    finished = []
    widget.finished.connect(finished.append)
    widget.run()
    widget.cancel()
    wait_run(widget)
    assert finished == [None] and "cancelled" in widget._status.value
    assert "toy_box_blur" not in [lyr.name for lyr in viewer.layers] and recorded_steps(viewer) == []
