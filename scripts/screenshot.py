"""Make the README screenshot: napari with the plugin's widgets and a segmented sample.

Run on a machine with a display, or headless under Xvfb:

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshot.py docs/images/screenshot.png
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(out="docs/images/screenshot.png") -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    import napari_sem_analysis as sem

    viewer = napari.Viewer(title="napari-sem-analysis")
    viewer.window._qt_window.resize(1600, 1100)
    viewer.open_sample("napari-sem-analysis", "particles")
    image = viewer.layers["particles"]
    viewer.layers.remove("particles ground truth")
    ps = sample_pixel_size(image)
    labels = sem.segment_particles(image.data, pixel_size=ps)
    lab = viewer.add_labels(labels, name="particle labels", scale=image.scale, units=image.units, opacity=0.45)
    canvas = getattr(viewer, "canvas", None)  # napari >= 0.9 moved the scale bar to the canvas overlays
    scale_bar = canvas.overlays.scale_bar if canvas is not None else viewer.scale_bar
    scale_bar.visible = True
    docked = {}
    for name in ("Measure", "Feature table", "Plots"):
        try:
            docked[name] = viewer.window.add_plugin_dock_widget("napari-sem-analysis", name)[1]
        except Exception as exc:  # pragma: no cover
            print(f"could not dock {name}: {exc}")
    measure = docked.get("Measure")
    if measure is not None:
        # the user's path: choose the layers in the Measure widget and press Measure
        measure._labels.value = lab
        measure._image.value = image
        worker = measure.run()
        while worker is not None and measure._running:
            QApplication.processEvents()
            time.sleep(0.05)
    plots = docked.get("Plots")
    if plots is not None:
        plots.set_layer(lab)
        plots.plot("size distribution")
    for _ in range(30):
        QApplication.processEvents()
    viewer.reset_view()  # fit the whole image in the canvas left by the docks
    for _ in range(10):
        QApplication.processEvents()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(out, canvas_only=False, flash=False)
    print(f"wrote {out} ({len(lab.features)} particles measured)")
    viewer.close()


def sample_pixel_size(layer) -> float:
    return float(layer.scale[-1])


if __name__ == "__main__":
    main(*sys.argv[1:])
