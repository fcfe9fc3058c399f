"""The quick start's main job: `napari-sem-analysis demo`, headless and in napari."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_sem_analysis import _demo


def test_headless_demo_measures_the_sample_close_to_its_ground_truth(tmp_path, capsys):
    assert _demo.main(["--headless", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pixel_size_nm"] == 5.0 and summary["info_band_row"] == 512
    # what the user reads off the demo: count and sizes agree with the sample's ground truth
    assert summary["particle_count"] == pytest.approx(summary["true_particle_count"], rel=0.1)
    assert summary["d50_nm"] == pytest.approx(summary["true_d50_nm"], rel=0.1)
    assert summary["d10_nm"] == pytest.approx(summary["true_d10_nm"], rel=0.2)
    assert summary["area_fraction"] == pytest.approx(summary["true_area_fraction"], rel=0.15)
    assert f"D50 equivalent diameter: {summary['d50_nm']:.1f} nm" in printed

    labels = tifffile.imread(tmp_path / "particles_labels.tif")
    table = pd.read_csv(tmp_path / "particles_measurements.csv")
    assert labels.shape == (512, 512)
    assert len(table) == summary["particle_count"] == len(np.unique(labels)) - 1
    assert {"area", "equivalent_diameter", "glcm_contrast"} <= set(table.columns)
    assert (tmp_path / "particles_overlay.png").stat().st_size > 10_000


def test_gui_demo_loads_the_sample_and_docks_the_widgets(make_napari_viewer):
    viewer = make_napari_viewer(show=True)  # shown: the docks get their real sizes
    _demo.run_gui(block=False, viewer=viewer, size=(1500, 940))  # a laptop's screen
    image = viewer.layers["particles"]
    assert tuple(image.scale) == (5.0, 5.0) and str(image.units[0]) == "nanometer"
    docked = " ".join(viewer.window.dock_widgets)
    for name in _demo.DOCK_WIDGETS:
        assert name in docked
    # the main job has run: labels with measurements, the preset's count; the ground truth is hidden
    labels = viewer.layers["split"]
    import napari_sem_analysis as sem

    # on the micrograph-like demo sample the widget chain with its defaults gives the preset's particles
    # (it used to find one fragment more: the Threshold widget rounded its smoothed image to 8 bits)
    preset = sem.segment_particles(image.data, pixel_size=5.0)
    assert labels.data.max() == preset.max()
    np.testing.assert_array_equal(labels.data > 0, preset > 0)
    assert len(labels.features) == labels.data.max() and "equivalent_diameter" in labels.features
    assert not viewer.layers["particles ground truth"].visible
    assert viewer.window._qt_window.minimumSizeHint().height() < 1100

    # what the newcomer reads: the table shows rows and the size distribution is on screen, not scrolled away
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    window = viewer.window._qt_window
    table = viewer.window.dock_widgets["Feature table (napari-sem-analysis)"]
    plots = viewer.window.dock_widgets["Plots (napari-sem-analysis)"]
    assert window.height() <= 1000 and window.width() <= 1500
    rows = _shown(table.view, table.native).height() // max(1, table.view.rowHeight(0))
    assert rows >= 4, f"only {rows} table rows visible"
    shown = _shown(plots.canvas, plots.native)
    assert shown.height() >= 0.9 * plots.canvas.height() and shown.height() >= 220, "the plot is cut off"
    assert plots.figure.axes and plots.figure.axes[0].get_title() == f"n = {labels.data.max()}"
    # nothing cut off at the dock's right edge (the docks scroll vertically only): contents fit their width
    for name in ("Threshold", "Feature table", "Plots"):
        scroll = viewer.window.dock_widgets[f"{name} (napari-sem-analysis)"].native
        assert scroll.widget().minimumSizeHint().width() <= scroll.viewport().width(), name


def _shown(widget, scroll):
    """The part of ``widget`` inside the visible part (viewport) of its dock's scroll area."""
    from qtpy.QtCore import QPoint, QRect

    viewport = scroll.viewport()
    return QRect(widget.mapTo(viewport, QPoint(0, 0)), widget.size()).intersected(viewport.rect())
