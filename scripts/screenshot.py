"""Make the README screenshots: napari with the plugin's widgets on real, MIT-licensed micrographs.

The image is a Ni-base superalloy SEM micrograph from NASA's
pretrained-microscopy-models (MIT license; ``nasa-superalloy`` in the shared
data folder, see its README). The user's path is followed: open the image,
Threshold (dark precipitates), Split touching objects, Measure, then the
feature table and the size distribution. Without the image the synthetic
particle sample is used. ``--pores``: the pores of the MIT-licensed
nanoporous-gold micrograph (``aquami-nanoporous-gold``), with Label connected
components instead of Split, in nm from the Zeiss metadata.

Run on a machine with a display, or headless under Xvfb:

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshot.py docs/images/screenshot.png [IMAGE]
    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshot.py --pores docs/images/screenshot_pores.png
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


def _measure_and_show(viewer, docked, measure, image, labels):
    """Measure ``labels`` and show them with their table and size distribution (the threshold hidden)."""
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


def main(out="docs/images/screenshot.png", image_path=None) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-sem-analysis")
    viewer.window._qt_window.resize(1600, 1000)  # a laptop's screen
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
    docked, docks = {}, {}
    for name in ("Threshold", "Split touching objects", "Measure", "Feature table", "Plots"):
        docks[name], docked[name] = viewer.window.add_plugin_dock_widget("napari-sem-analysis", name)
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
    _measure_and_show(viewer, docked, measure, image, labels)
    # as the demo shows them: the forms tabbed (Split in front: the step tuned here), the results get the room
    from napari_sem_analysis._demo import arrange_docks

    arrange_docks(viewer.window._qt_window, docks)
    docks["Split touching objects"].raise_()
    for _ in range(30):
        QApplication.processEvents()
    viewer.reset_view()
    for _ in range(10):
        QApplication.processEvents()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    _save_small_png(shot, out)
    print(f"wrote {out} ({Path(out).stat().st_size // 1024} kB): {labels.data.max()} objects measured on {image.name}")
    viewer.close()


def _save_small_png(rgba, out) -> None:
    """A 256-colour PNG (a screenshot of a dark UI and a grey micrograph stays legible; ~4x smaller)."""
    from PIL import Image

    img = Image.fromarray(rgba[..., :3])
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)


PORES_IMAGE = Path(__file__).resolve().parents[1] / "../shared/data/aquami-nanoporous-gold/Sample.tif"


def pores(out="docs/images/screenshot_pores.png", image_path=None) -> None:
    """The pores of nanoporous gold: Threshold (dark pores), Label connected components, Measure.

    The image (MIT license, from the aquami package; ``aquami-nanoporous-gold``
    in the shared data folder) is a Zeiss TIFF: the reader crops its info band
    and takes the pixel size from its metadata, so everything is in nm.
    """
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_sem_analysis._demo import arrange_docks

    path = Path(image_path) if image_path else PORES_IMAGE
    if not path.is_file():
        print(f"{path} not found: no pores screenshot")
        return
    viewer = napari.Viewer(title="napari-sem-analysis")
    viewer.window._qt_window.resize(1600, 1000)  # a laptop's screen
    viewer.open(str(path), plugin="napari-sem-analysis")
    image = viewer.layers[0]
    forms = ("Threshold", "Label connected components", "Measure")
    docks, docked = {}, {}
    for name in (*forms, "Feature table", "Plots"):
        docks[name], docked[name] = viewer.window.add_plugin_dock_widget("napari-sem-analysis", name)
    thresh, components, measure = (docked[n] for n in forms)
    thresh._image.value = image
    thresh._dark.value = True  # the pores are dark
    thresh.run()
    _wait(thresh)
    components._mask.value = viewer.layers["threshold"]
    components.run()
    _wait(components)
    labels = viewer.layers["components"]
    _measure_and_show(viewer, docked, measure, image, labels)
    arrange_docks(viewer.window._qt_window, docks, forms=forms)
    for _ in range(30):
        QApplication.processEvents()
    viewer.reset_view()
    for _ in range(10):
        QApplication.processEvents()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    _save_small_png(viewer.screenshot(canvas_only=False, flash=False), out)
    print(f"wrote {out} ({Path(out).stat().st_size // 1024} kB): {labels.data.max()} pores measured on {image.name}")
    viewer.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--pores"]:
        pores(*sys.argv[2:])
    else:
        main(*sys.argv[1:])
