"""The plugin in a real napari viewer: reader, sample data, pixel-size widget, manifest."""

from __future__ import annotations

import numpy as np
import pytest

from _tiffs import with_band, zeiss_tiff

PLUGIN = "napari-sem-analysis"


def test_manifest_is_valid_and_complete():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution(PLUGIN)
    # every contributed command points at an importable python object
    manifest.validate_imports()
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert {"Pixel size and metadata", "Enhance", "Threshold", "Measure", "Train U-Net"} <= widgets
    samples = {s.key for s in manifest.contributions.sample_data}
    assert samples == {"particles", "porous_coating", "multiphase", "am_pores", "fiber_mat"}


def test_open_zeiss_file_in_napari(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(0)
    content = rng.integers(20, 230, (120, 160), dtype=np.uint8)
    path = tmp_path / "sample.tif"
    zeiss_tiff(path, with_band(content, 30), pixel_size_nm=7.344)
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin=PLUGIN)
    assert len(layers) == 1
    layer = layers[0]
    assert layer.data.shape == (120, 160)
    np.testing.assert_allclose(layer.scale, (7.344, 7.344))
    assert [str(u) for u in layer.units] == ["nanometer", "nanometer"]
    assert layer.metadata["detector"] == "InLens"
    assert layer.metadata["databar"].shape == (30, 160)


def test_reader_declines_other_files(tmp_path):
    from napari_sem_analysis._reader import napari_get_reader

    assert napari_get_reader(str(tmp_path / "x.czi")) is None
    assert napari_get_reader(str(tmp_path)) is None
    assert napari_get_reader(str(tmp_path / "x.tif")) is not None


def test_corrupt_file_gives_clear_error(make_napari_viewer, tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00 not really a tiff")
    viewer = make_napari_viewer()
    with pytest.raises(Exception) as err:
        viewer.open(bad, plugin=PLUGIN)
    assert "broken.tif" in str(err.value)
    assert len(viewer.layers) == 0


def test_open_real_bam_image(make_napari_viewer, shared_data):
    path = sorted((shared_data / "bam-tio2-sem" / "images").glob("*.tif"))[0]
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin=PLUGIN)
    assert len(layers) == 1
    assert layers[0].data.shape == (712, 1024)
    assert layers[0].scale[-1] == pytest.approx(7.344)
    assert str(layers[0].units[-1]) == "nanometer"


@pytest.mark.parametrize("key", ["particles", "porous_coating", "multiphase", "am_pores"])
def test_sample_data_in_viewer(make_napari_viewer, key):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, key)
    image, labels = viewer.layers
    assert image.data.ndim == 2 and labels.data.shape == image.data.shape
    assert image.scale[-1] > 0 and str(image.units[-1]) == "nanometer"
    np.testing.assert_allclose(labels.scale, image.scale)
    if key == "am_pores":
        assert set(labels.features["class"]) == {"gas", "keyhole", "lack-of-fusion"}


def test_pixel_size_widget_sets_scale(make_napari_viewer):
    from napari_sem_analysis.widgets._info import PixelSizeWidget

    viewer = make_napari_viewer()
    data = np.zeros((50, 60), np.uint8)
    image = viewer.add_image(data, name="img")
    labels = viewer.add_labels(np.zeros((50, 60), np.int32), name="lab")
    widget = PixelSizeWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert "unknown" in widget._info.value
    widget._size.value = 2.5
    widget._unit.value = "µm"
    widget.apply()
    np.testing.assert_allclose(image.scale, (2500, 2500))
    np.testing.assert_allclose(labels.scale, (2500, 2500))
    assert str(image.units[-1]) == "nanometer"
    assert image.metadata["pixel_size_source"] == "user"
    assert "2500 nm" in widget._info.value
    np.testing.assert_array_equal(image.data, data)


def test_pixel_size_widget_shows_metadata(make_napari_viewer, tmp_path):
    from napari_sem_analysis.widgets._info import PixelSizeWidget

    path = tmp_path / "z.tif"
    zeiss_tiff(path, np.full((64, 64), 100, np.uint8), pixel_size_nm=3.0)
    viewer = make_napari_viewer()
    viewer.open(path, plugin=PLUGIN)
    widget = PixelSizeWidget(viewer)
    assert "3 nm" in widget._info.value
    assert "InLens" in widget._info.value


def test_open_stack_in_napari(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(0)
    planes = rng.integers(20, 230, (3, 90, 120), dtype=np.uint8)
    path = tmp_path / "fib.tif"
    import tifffile

    tifffile.imwrite(path, np.stack([with_band(p, 20) for p in planes]), photometric="minisblack")
    viewer = make_napari_viewer()
    (layer,) = viewer.open(path, plugin=PLUGIN)
    np.testing.assert_array_equal(layer.data, planes)  # every slice, band cropped
    assert layer.metadata["n_planes"] == 3


def test_file_open_dialog_shows_the_reason(make_napari_viewer, tmp_path, monkeypatch):
    """File > Open of a corrupt file: napari's reader dialog shows our message (no traceback)."""
    from napari._qt.dialogs import qt_reader_dialog
    from napari.components import viewer_model
    from qtpy.QtWidgets import QLabel

    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00 not really a tiff")
    # the user chose this plugin for .tif files (without touching the saved settings)
    monkeypatch.setattr(viewer_model, "get_preferred_reader", lambda path: PLUGIN)
    shown = []

    def fake_exec(dialog):  # the user reads the dialog and presses Cancel
        shown.extend(label.text() for label in dialog.findChildren(QLabel))
        return 0

    monkeypatch.setattr(qt_reader_dialog.QtReaderDialog, "exec_", fake_exec)
    viewer = make_napari_viewer()
    viewer.window._qt_viewer._qt_open([str(bad)], stack=False)
    text = "\n".join(shown)
    assert "broken.tif: holds no image (corrupt or empty TIFF file)" in text
    assert "Traceback" not in text
    assert len(viewer.layers) == 0
