"""Fibres widget in a real viewer: layers with features, re-run, network width, export, plots."""

from __future__ import annotations

import numpy as np
import pandas as pd

import napari_sem_analysis as sem
from napari_sem_analysis.widgets._common import recorded_steps
from napari_sem_analysis.widgets._fibers import FibersWidget


def test_fibres_widget_writes_layers_and_exports(make_napari_viewer, errors, wait_run, tmp_path):
    s = sem.sample_fibers(4, shape=(256, 256), n_fibers=8, diameter=(8, 8), n_beads=3, n_blobs=0)
    viewer = make_napari_viewer()
    image = viewer.add_image(s.image, name="mat", scale=(20.0, 20.0), units=("nm", "nm"))
    before = image.data.copy()
    widget = FibersWidget(viewer)
    widget._max_d.value = 30
    widget._width.value = True
    widget.run()
    wait_run(widget)
    assert not errors, errors
    fib = viewer.layers["fibres"]
    assert fib.data.max() == len(fib.features) and set(fib.features["label"]) == set(np.unique(fib.data[fib.data > 0]))
    assert tuple(fib.scale) == (20.0, 20.0)
    # diameters in nm: 8 px fibres at 20 nm / px
    assert abs(np.median(fib.features["diameter_median"].dropna()) - 160) < 20
    beads = viewer.layers["beads"]
    assert len(beads.data) == len(beads.features) >= 2 and "diameter" in beads.features
    assert "centreline" in viewer.layers and "fibre width" in viewer.layers and "pore width" in viewer.layers
    assert "alignment" in widget._summary.value
    assert np.array_equal(image.data, before)  # input untouched
    # the rose plot and histogram are drawn
    assert len(widget.figure.axes) == 2
    # re-running updates the layers instead of adding copies
    n_layers = len(viewer.layers)
    widget._bead.value = 2.5
    widget.run()
    wait_run(widget)
    assert len(viewer.layers) == n_layers
    # the step is recorded for recipes
    assert any(step["function"] == "measure_fibers" for step in recorded_steps(viewer))
    path = widget.export_table(tmp_path / "fib.csv")
    table = pd.read_csv(path)
    assert "diameter_median (nm)" in table.columns and len(table) == len(fib.features)
    summary = pd.read_csv(tmp_path / "fib_summary.csv")
    assert summary.loc[0, "bead_count"] == widget.result["fibers"].summary["bead_count"]


def test_fibres_widget_on_a_mask_and_bad_input(make_napari_viewer, errors, wait_run):
    viewer = make_napari_viewer()
    widget = FibersWidget(viewer)
    widget.run()  # nothing chosen: a clear error, no crash
    assert errors and "image" in errors[-1]
    yy, xx = np.mgrid[:128, :128]
    mask = (np.abs(yy - 64) < 5).astype(np.uint8)
    viewer.add_image(np.random.default_rng(0).random((128, 128)), name="img")
    viewer.add_labels(mask, name="mask")
    widget._reset()
    widget._mask.value = viewer.layers["mask"]
    widget.run()
    wait_run(widget)
    fib = widget.result["fibers"]
    assert len(fib.segments) == 1 and abs(fib.summary["diameter_median"] - 9) < 0.6


def test_fibre_sample_in_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sem-analysis", "fiber_mat")
    image, labels, beads = viewer.layers
    assert image.data.ndim == 2 and labels.data.shape == image.data.shape
    assert str(image.units[-1]) == "nanometer"
    np.testing.assert_allclose(beads.scale, image.scale)
    assert len(beads.data) == len(beads.features) > 0 and set(beads.features["kind"]) <= {"spindle", "blob"}
