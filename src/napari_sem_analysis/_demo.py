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

DOCK_WIDGETS = ("Pixel size and metadata", "Enhance", "Threshold", "Split touching objects", "Measure", "Feature table")


def _has_display() -> bool:
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def run_headless(out_dir) -> dict:
    """Segment and measure the particle sample; write labels, table, overlay and summary."""
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
    labels = sem.segment_particles(image, pixel_size=sample.pixel_size)
    table = sem.measure(labels, image, pixel_size=sample.pixel_size, texture=True)
    summary = sem.summarize(table, image_shape=image.shape, pixel_size=sample.pixel_size) if _accepts(
        sem.summarize, "image_shape"
    ) else sem.summarize(table)
    tifffile.imwrite(out / "particles_labels.tif", labels.astype(np.uint32), compression="zlib")
    table.to_csv(out / "particles_measurements.csv", index=False)
    _overlay_png(image, labels, out / "particles_overlay.png")
    summary = {k: (v.item() if hasattr(v, "item") else v) for k, v in dict(summary).items() if np.isscalar(v) or hasattr(v, "item")}
    summary.update(
        {
            "info_band_row": row,
            "pixel_size_nm": sample.pixel_size,
            "true_particle_count": int(sample.labels.max()),
            "found_particle_count": int(len(table)),
        }
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


def _accepts(func, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _overlay_png(image, labels, path) -> None:
    import numpy as np
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries
    import imageio.v3 as iio

    rgb = label2rgb(labels, image=image, bg_label=0, alpha=0.25)
    rgb[find_boundaries(labels, mode="outer")] = (1.0, 1.0, 0.0)
    iio.imwrite(path, (np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def run_gui(block: bool = True):
    """Open napari with the sample loaded and the plugin's widgets docked."""
    import napari

    viewer = napari.Viewer(title="napari-sem-analysis demo")
    viewer.open_sample("napari-sem-analysis", "particles")
    for name in DOCK_WIDGETS:
        try:
            viewer.window.add_plugin_dock_widget("napari-sem-analysis", name)
        except Exception as exc:  # a widget that fails must not stop the demo
            print(f"could not dock {name!r}: {exc}", file=sys.stderr)
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
        print(f"no display: ran the particle analysis headless; results in {out}/")
        for key in ("found_particle_count", "true_particle_count", "count", "d50_nm", "area_fraction"):
            if key in summary:
                print(f"  {key}: {summary[key]}")
        return 0
    run_gui()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
