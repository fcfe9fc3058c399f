"""Make the README screenshot: napari with the plugin's widgets and a segmented sample.

Run on a machine with a display, or headless under Xvfb:

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshot.py docs/images/screenshot.png
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(out="docs/images/screenshot.png") -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    import napari_sem_analysis as sem

    viewer = napari.Viewer(title="napari-sem-analysis")
    viewer.window._qt_window.resize(1500, 900)
    viewer.open_sample("napari-sem-analysis", "particles")
    image = viewer.layers["particles"]
    viewer.layers.remove("particles ground truth")
    labels = sem.segment_particles(image.data, pixel_size=sample_pixel_size(image))
    table = sem.measure(labels, image.data, pixel_size=sample_pixel_size(image), texture=False)
    lab = viewer.add_labels(labels, name="particles", scale=image.scale, units=image.units, features=table, opacity=0.45)
    viewer.scale_bar.visible = True
    viewer.scale_bar.unit = "nm"
    for name in ("Threshold", "Measure", "Feature table"):
        try:
            viewer.window.add_plugin_dock_widget("napari-sem-analysis", name)
        except Exception as exc:  # pragma: no cover
            print(f"could not dock {name}: {exc}")
    for _ in range(20):
        QApplication.processEvents()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(out, canvas_only=False, flash=False)
    print(f"wrote {out} ({len(lab.features)} particles)")
    viewer.close()


def sample_pixel_size(layer) -> float:
    return float(layer.scale[-1])


if __name__ == "__main__":
    main(*sys.argv[1:])
