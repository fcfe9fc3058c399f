"""The quick-start demo: the main job on built-in sample data.

With a display, napari opens with the plugin's widgets docked and a sample
SEM image loaded. Without one (or with ``--headless``), the same analysis
runs without a GUI and writes its results to a folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

DOCK_WIDGETS = ("Threshold", "Split touching objects", "Measure", "Feature table", "Plots")


def _has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def run_headless(out_dir) -> dict:
    """Segment and measure the particle sample; write labels, table, overlay and summary.

    Returns the summary (also written to ``summary.json``): particle count,
    D10/D50/D90 of the equivalent diameter in nm and the area fraction, with
    the same figures from the sample's ground truth for comparison.
    """
    import numpy as np
    import tifffile

    import napari_sem_analysis as sem
    from napari_sem_analysis.io import detect_databar

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sample = sem.sample_particles()
    raw = sample.raw
    row = detect_databar(raw)
    image = raw[:row] if row else raw
    ps = sample.pixel_size
    labels = sem.segment_particles(image, pixel_size=ps)
    table = sem.measure(labels, image, pixel_size=ps, texture=True)
    found = sem.summarize(table).loc["all"]
    truth = sem.summarize(sem.measure(sample.labels, pixel_size=ps, texture=False, intensity=False)).loc["all"]
    tifffile.imwrite(out / "particles_labels.tif", labels.astype(np.uint32), compression="zlib")
    table.to_csv(out / "particles_measurements.csv", index=False)
    _overlay_png(image, labels, out / "particles_overlay.png")
    summary = {
        "image": "sample_particles (synthetic SEM, ground truth known)",
        "info_band_row": None if row is None else int(row),
        "pixel_size_nm": float(ps),
        "particle_count": int(found["count"]),
        "true_particle_count": int(truth["count"]),
    }
    for key in ("d10", "d50", "d90"):
        summary[f"{key}_nm"] = round(float(found[key]), 1)
        summary[f"true_{key}_nm"] = round(float(truth[key]), 1)
    summary["area_fraction"] = round(float(found["area_fraction"]), 4)
    summary["true_area_fraction"] = round(float(truth["area_fraction"]), 4)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _overlay_png(image, labels, path) -> None:
    import imageio.v3 as iio
    import numpy as np
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries

    rgb = label2rgb(labels, image=image, bg_label=0, alpha=0.25)
    rgb[find_boundaries(labels, mode="outer")] = (1.0, 1.0, 0.0)
    iio.imwrite(path, (np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def _wait(widget) -> None:
    import time

    from qtpy.QtWidgets import QApplication

    while widget.running:
        QApplication.processEvents()
        time.sleep(0.02)
    QApplication.processEvents()


#: the forms of the main job, tabbed in one dock: the results below them get the room
FORMS = ("Threshold", "Split touching objects", "Measure")
RESULTS = ("Feature table", "Plots")


def arrange_docks(window, docks: dict, *, width: int = 560, forms: tuple = FORMS) -> None:
    """Lay out the docks for reading the results: the ``forms`` (default :data:`FORMS`) as tabs of one dock
    (Threshold in front), the feature table and the plot under them, each about a third of the height,
    and the dock column ``width`` px wide.

    ``window``: napari's ``QMainWindow``; ``docks``: display name -> napari's dock widget.
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    forms = [docks[n] for n in forms if n in docks]
    results = [docks[n] for n in RESULTS if n in docks]
    for dock in forms[1:]:
        window.tabifyDockWidget(forms[0], dock)
    if forms:
        forms[0].raise_()
    QApplication.processEvents()
    column = forms[:1] + results
    if not column:
        return
    height = max(300, window.height() - 120)
    shares = ([0.16, 0.39, 0.45] if len(results) == 2 else [0.3] + [0.7 / len(results)] * len(results)) if forms else []
    shares = shares or [1 / len(results)] * len(results)
    window.resizeDocks(column, [int(height * f) for f in shares], Qt.Orientation.Vertical)
    window.resizeDocks(column[:1], [min(width, window.width() // 3)], Qt.Orientation.Horizontal)
    QApplication.processEvents()


def run_gui(block: bool = True, viewer=None, analyse: bool = True, size: tuple[int, int] | None = None):
    """Open napari (or use ``viewer``) with the sample loaded, the main job run and its results shown.

    The widgets are docked and pointed at the sample (never at its ground
    truth); with ``analyse`` the Threshold -> Split -> Measure chain runs
    with its defaults (those of the ``particles`` preset), and the feature
    table and size distribution show the result. The window is sized to fit
    the screen (the docks scroll), or ``size`` (width, height) px; the forms
    are tabbed so that the table and the plot get the room (:func:`arrange_docks`).
    """
    import napari

    if viewer is None:
        viewer = napari.Viewer(title="napari-sem-analysis demo")
    window = viewer.window._qt_window
    screen = window.screen().availableGeometry() if window.screen() is not None else None
    if size is not None:
        window.resize(*size)
    elif screen is not None:
        window.resize(min(1500, screen.width()), min(1000, screen.height() - 60))
    # the micrograph-like sample (size dispersion, clusters, edge brightening, shadows, uneven illumination)
    from napari.layers import Layer

    from .sample_data import _layers, sample_sem_particles

    for data, kwargs, kind in _layers(sample_sem_particles(), "particles ground truth"):
        viewer.add_layer(Layer.create(data, kwargs, kind))
    image = next(layer for layer in viewer.layers if layer.name == "particles")
    truth = next((layer for layer in viewer.layers if layer.name != "particles"), None)
    if truth is not None:
        truth.visible = False
    docked, docks = {}, {}
    for name in DOCK_WIDGETS:
        try:
            docks[name], docked[name] = viewer.window.add_plugin_dock_widget("napari-sem-analysis", name)
        except Exception as exc:  # noqa: BLE001  (a widget that fails must not stop the demo)
            print(f"could not dock {name!r}: {exc}", file=sys.stderr)
    arrange_docks(window, docks)
    thresh, split = docked.get("Threshold"), docked.get("Split touching objects")
    measure, table, plots = docked.get("Measure"), docked.get("Feature table"), docked.get("Plots")
    if thresh is not None:
        thresh._image.value = image
    if analyse and thresh is not None and split is not None:
        thresh.run()
        _wait(thresh)
        split._mask.value = viewer.layers["threshold"]
        split._image.value = image
        split.run()
        _wait(split)
        labels = viewer.layers["split"]
        viewer.layers["threshold"].visible = False
        labels.opacity = 0.5
        if measure is not None:
            measure._labels.value = labels
            measure._image.value = image
            measure.run()
            _wait(measure)
        if table is not None and hasattr(table, "set_layer"):
            table.set_layer(labels)
        if plots is not None:
            plots.set_layer(labels)
            plots.plot("size distribution")
        viewer.layers.selection.active = labels
    viewer.reset_view()
    if block:
        napari.run()
    return viewer


def main(args=None) -> int:
    if args is None or isinstance(args, (list, tuple)):
        parser = argparse.ArgumentParser(prog="napari-sem-analysis demo")
        parser.add_argument("--headless", action="store_true")
        parser.add_argument("--out", default="results/demo")
        args = parser.parse_args(args)
    headless = bool(getattr(args, "headless", False)) or not _has_display()
    if headless:
        summary = run_headless(getattr(args, "out", None) or "results/demo")
        out = getattr(args, "out", None) or "results/demo"
        print(f"ran the particle analysis headless on the built-in sample; results in {out}/")
        print(f"  pixel size {summary['pixel_size_nm']:g} nm, info band cropped at row {summary['info_band_row']}")
        print(f"  particles: {summary['particle_count']} found ({summary['true_particle_count']} in the ground truth)")
        for key in ("d10", "d50", "d90"):
            print(
                f"  {key.upper()} equivalent diameter: {summary[key + '_nm']:.1f} nm (truth "
                f"{summary['true_' + key + '_nm']:.1f} nm)"
            )
        print(
            f"  area fraction: {100 * summary['area_fraction']:.1f} % (truth "
            f"{100 * summary['true_area_fraction']:.1f} %)"
        )
        return 0
    run_gui()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
