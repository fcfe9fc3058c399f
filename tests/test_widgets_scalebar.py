"""Pixel size widget in a real viewer: detect the scale bar, calibrate from a line, batch of PNG exports in nm."""

from __future__ import annotations

import numpy as np
import pytest
from _scalebars import make_image, mpl_font

from napari_sem_analysis.widgets import _info
from napari_sem_analysis.widgets._common import clear_recorded_steps, record_step
from napari_sem_analysis.widgets._info import (
    BAND_LAYER,
    LINE_LAYER,
    SCALE_BAR_LAYER,
    PixelSizeWidget,
)
from napari_sem_analysis.widgets._workflow import WorkflowWidget


def _disks(centres, radius=12, shape=(480, 640), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for cy, cx in centres:
        mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return np.clip(np.where(mask, 190.0, 50.0) + rng.normal(0, 5, shape), 0, 255).astype(np.uint8)


def _export(seed, centres, pixel_size):
    """A PNG-like export: disks on the image, a Zeiss-like band with a scale bar and the field width."""
    img, truth = make_image(
        np.random.default_rng(seed),
        mpl_font("DejaVuSans.ttf"),
        text_px=16,
        location="band",
        field_width="zeiss",
        pixel_size=pixel_size,
    )
    img[:480] = _disks(centres, seed=seed)
    return img, truth


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setattr(_info, "notify_info", lambda m: None)


def _record(viewer, name):
    record_step(viewer, "threshold", params={"method": "otsu"}, inputs={"image": name}, output="mask")
    record_step(viewer, "split_touching", params={"min_distance": 4}, inputs={"mask": "mask"}, output="objects")


def test_detect_scale_bar_shows_what_it_found_and_applies_on_confirm(make_napari_viewer, quiet, errors, wait_run):
    img, truth = _export(1, [(100, 100), (200, 300)], pixel_size=4.0)
    viewer = make_napari_viewer()
    clear_recorded_steps(viewer)
    image = viewer.add_image(img, name="export")
    labels = viewer.add_labels(np.zeros(img.shape, np.int32), name="objects")
    points = viewer.add_points(np.array([[100.0, 100.0]]), name="picked")
    widget = PixelSizeWidget(viewer)
    widget._layer.value = image
    assert widget.detect() is not None
    wait_run(widget)
    shapes = viewer.layers[SCALE_BAR_LAYER]
    assert list(shapes.features["what"]) == ["bar", "label"]
    assert list(shapes.shape_type) == ["rectangle", "rectangle"]
    # the bar box spans the bar drawn (its length in px plus the end ticks)
    (r0, c0), (_, c1) = shapes.data[0].min(0), shapes.data[0].max(0)
    assert abs((c1 - c0) - truth.bar_px) <= 4 and r0 > 480
    assert shapes.features["text"][1] == truth.label
    # proposed, not yet applied
    assert widget._size.value == pytest.approx(truth.pixel_size, rel=0.01)
    assert tuple(image.scale) == (1.0, 1.0)
    widget._apply.changed.emit(True)  # the user confirms: "Set pixel size"
    px = widget._size.value
    for layer in (image, labels, points):
        np.testing.assert_allclose(layer.scale, (px, px))
    assert image.metadata["pixel_size_source"] == "scale bar"
    assert image.metadata["pixel_size_calibration"]["label"] == truth.label
    np.testing.assert_array_equal(image.data, img)  # input untouched
    # the workflow records the confirmed calibration
    _record(viewer, "export")
    assert WorkflowWidget(viewer).current_workflow().pixel_size == pytest.approx(px)
    assert not errors


def test_a_bar_in_the_cut_off_band_is_shown_over_the_band_and_its_exact_size_is_kept(
    make_napari_viewer, quiet, errors, wait_run
):
    # as read_sem opens an export: the image without its info band, the band kept in the metadata
    img, truth = _export(3, [(120, 200)], pixel_size=3.7123)
    viewer = make_napari_viewer()
    image = viewer.add_image(img[:480], name="export", metadata={"databar": img[480:]})
    widget = PixelSizeWidget(viewer)
    widget._layer.value = image
    widget.detect()
    wait_run(widget)
    assert widget._layer.value is image  # the band layer does not take the image's place
    band = viewer.layers[BAND_LAYER]
    np.testing.assert_array_equal(band.data, img[480:])
    np.testing.assert_allclose(band.translate, (480.0, 0.0))
    # the boxes lie in the band, over the bar
    shapes = viewer.layers[SCALE_BAR_LAYER]
    assert shapes.data[0][:, 0].min() > 480
    assert viewer.layers.index(shapes) > viewer.layers.index(band)
    found = widget._detected_nm
    assert found == pytest.approx(truth.pixel_size, rel=0.01)
    widget._apply.changed.emit(True)  # "Set pixel size" with the proposed value, rounded in the box
    assert image.metadata["pixel_size_source"] == "scale bar"
    np.testing.assert_allclose(image.scale, (found, found), rtol=1e-12)  # not the box's rounding
    np.testing.assert_allclose(band.scale, (found, found), rtol=1e-12)
    np.testing.assert_allclose(band.translate, (480 * found, 0.0), rtol=1e-9)
    assert not errors


def test_detect_without_a_scale_bar_says_so(make_napari_viewer, quiet, errors, wait_run):
    viewer = make_napari_viewer()
    image = viewer.add_image(_disks([(50, 50)], shape=(120, 160)), name="plain")
    widget = PixelSizeWidget(viewer)
    widget._layer.value = image
    widget.detect()
    wait_run(widget)
    assert any("No scale bar" in e for e in errors)
    assert SCALE_BAR_LAYER not in viewer.layers
    assert tuple(image.scale) == (1.0, 1.0)


def test_calibrate_from_a_drawn_line_goes_to_the_layers_and_the_recipe(make_napari_viewer, quiet, errors):
    viewer = make_napari_viewer()
    clear_recorded_steps(viewer)
    image = viewer.add_image(_disks([(50, 50)], shape=(200, 300)), name="tuned")
    shapes_drawn = viewer.add_shapes([np.array([[10.0, 10.0], [40.0, 40.0]])], shape_type="rectangle", name="roi")
    widget = PixelSizeWidget(viewer)
    widget._layer.value = image
    line_layer = widget.draw_line()
    assert line_layer.name == LINE_LAYER and line_layer.mode == "add_line"
    line_layer.add(np.array([[150.0, 20.0], [150.0, 145.0]]), shape_type="line")  # 125 px over the bar
    widget._line_length.value = 0.5
    widget._line_unit.value = "µm"
    widget._calibrate.changed.emit(True)
    assert tuple(image.scale) == pytest.approx((4.0, 4.0))
    assert str(image.units[-1]) == "nanometer"
    np.testing.assert_allclose(shapes_drawn.scale, (4.0, 4.0))  # Shapes drawn on the image follow
    assert image.metadata["pixel_size_source"] == "user"
    assert image.metadata["pixel_size_calibration"] == {"method": "line", "length": 0.5, "unit": "µm", "line_px": 125.0}
    _record(viewer, "tuned")
    assert WorkflowWidget(viewer).current_workflow().pixel_size == pytest.approx(4.0)
    # the line is measured in image pixels also once the layers have a scale
    widget._line_length.value = 250
    widget._line_unit.value = "nm"
    widget._calibrate.changed.emit(True)
    assert tuple(image.scale) == pytest.approx((2.0, 2.0))
    assert not errors


def test_calibrate_without_a_line_is_an_error_message(make_napari_viewer, quiet, errors):
    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((40, 50), np.uint8), name="img")
    widget = PixelSizeWidget(viewer)
    widget._layer.value = image
    assert widget.calibrate_from_line() is None
    assert any("Draw a line" in e for e in errors)
    assert tuple(image.scale) == (1.0, 1.0)


def test_batch_of_png_exports_is_measured_in_nm_from_their_scale_bars(make_napari_viewer, tmp_path, quiet, errors):
    """PNG exports carry no metadata: each file's scale bar (and band field width) gives its pixel size."""
    import imageio.v3 as iio
    import pandas as pd

    from napari_sem_analysis import cli

    viewer = make_napari_viewer()
    clear_recorded_steps(viewer)
    viewer.add_image(_disks([(100, 100)]), name="tuned")
    _record(viewer, "tuned")
    recipe = WorkflowWidget(viewer).save_recipe(tmp_path / "recipe.yaml")
    assert recipe is not None
    folder = tmp_path / "pngs"
    folder.mkdir()
    truths = {}
    for i, px in enumerate((3.0, 7.5)):
        img, truth = _export(10 + i, [(100, 100), (200, 300), (300, 500)], pixel_size=px)
        iio.imwrite(folder / f"export_{i}.png", img)
        truths[f"export_{i}"] = truth
    assert cli.main(["batch", str(recipe), str(folder), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert list(summary["count"]) == [3, 3]
    assert sorted(summary["file"]) == ["export_0.png", "export_1.png"]
    for _, row in summary.iterrows():
        truth = truths[row["file"].removesuffix(".png")]
        assert row["pixel_size_nm"] == pytest.approx(truth.pixel_size, rel=0.01)
        assert row["median_equivalent_diameter_nm"] == pytest.approx(25 * truth.pixel_size, rel=0.1)
    assert not errors
