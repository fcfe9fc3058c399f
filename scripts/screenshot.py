"""Make the README screenshot: napari with the plugin's widgets on a real, MIT-licensed micrograph.

The image is a Ni-base superalloy SEM micrograph from NASA's
pretrained-microscopy-models (MIT license; ``nasa-superalloy`` in the shared
data folder, see its README). The user's path is followed: open the image,
Threshold (dark precipitates), Split touching objects, Measure, then the
feature table and the size distribution. Without the image the synthetic
particle sample is used.

Run on a machine with a display, or headless under Xvfb:

    xvfb-run -a -s "-screen 0 1600x1200x24" python scripts/screenshot.py docs/images/screenshot.png [IMAGE]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

DEFAULT_IMAGE = Path(__file__).resolve().parents[1] / "../shared/data/nasa-superalloy/train/images/spot3_0d_3.tif"


def _wait(widget) -> None:
    from qtpy.QtWidgets import QApplication

    while widget.running:
        QApplication.processEvents()
        time.sleep(0.02)
    QApplication.processEvents()


def main(out="docs/images/screenshot.png", image_path=None) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-sem-analysis")
    viewer.window._qt_window.resize(1600, 1180)
    path = Path(image_path) if image_path else DEFAULT_IMAGE
    real = path.is_file()
    if real:
        viewer.open(str(path), plugin="napari-sem-analysis")
        image = viewer.layers[0]
    else:
        print(f"{path} not found: using the synthetic particle sample")
        viewer.open_sample("napari-sem-analysis", "particles")
        image = viewer.layers["particles"]
        viewer.layers.remove("particles ground truth")
    docked, docks = {}, []
    for name in ("Threshold", "Split touching objects", "Measure", "Feature table", "Plots"):
        dock, docked[name] = viewer.window.add_plugin_dock_widget("napari-sem-analysis", name)
        docks.append(dock)
    thresh, split, measure = docked["Threshold"], docked["Split touching objects"], docked["Measure"]
    thresh._image.value = image
    thresh._dark.value = real  # the gamma-prime precipitates are darker than the matrix
    thresh.run()
    _wait(thresh)
    split._mask.value = viewer.layers["threshold"]
    split._image.value = image
    if real:  # tuned as a user would for these precipitates: no edge term, 10 px between centres
        split._edge.value = 0.0
        split._weight.value = 0.0
        split._min_distance.widget.value = 10.0
    split.run()
    _wait(split)
    labels = viewer.layers["split"]
    labels.opacity = 0.5
    viewer.layers["threshold"].visible = False
    measure._labels.value = labels
    measure._image.value = image
    measure.run()
    _wait(measure)
    docked["Feature table"].set_layer(labels)
    docked["Plots"].set_layer(labels)
    docked["Plots"].plot("size distribution")
    viewer.layers.selection.active = labels
    from qtpy.QtCore import Qt

    # docks scroll: give the results (table, plot) the room
    viewer.window._qt_window.resizeDocks(docks, [80, 80, 60, 380, 500], Qt.Orientation.Vertical)
    for _ in range(30):
        QApplication.processEvents()
    viewer.reset_view()
    for _ in range(10):
        QApplication.processEvents()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(out, canvas_only=False, flash=False)
    print(f"wrote {out}: {labels.data.max()} objects measured on {image.name}")
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
