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
    import numpy as np
    from skimage.color import label2rgb
    from skimage.segmentation import find_boundaries
    import imageio.v3 as iio

    rgb = label2rgb(labels, image=image, bg_label=0, alpha=0.25)
    rgb[find_boundaries(labels, mode="outer")] = (1.0, 1.0, 0.0)
    iio.imwrite(path, (np.clip(rgb, 0, 1) * 255).astype(np.uint8))


def run_gui(block: bool = True, viewer=None):
    """Open napari (or use ``viewer``) with the sample loaded and the plugin's widgets docked."""
    import napari

    if viewer is None:
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
        print(f"ran the particle analysis headless on the built-in sample; results in {out}/")
        print(f"  pixel size {summary['pixel_size_nm']:g} nm, info band cropped at row {summary['info_band_row']}")
        print(f"  particles: {summary['particle_count']} found ({summary['true_particle_count']} in the ground truth)")
        for key in ("d10", "d50", "d90"):
            print(f"  {key.upper()} equivalent diameter: {summary[key + '_nm']:.1f} nm (truth {summary['true_' + key + '_nm']:.1f} nm)")
        print(f"  area fraction: {100 * summary['area_fraction']:.1f} % (truth {100 * summary['true_area_fraction']:.1f} %)")
        return 0
    run_gui()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
