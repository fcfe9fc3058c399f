"""Enhancement and classical segmentation widgets in a real napari viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sem_analysis.enhancement import clahe, denoise
from napari_sem_analysis.segmentation import clean_mask, threshold
from napari_sem_analysis.widgets import _segment
from napari_sem_analysis.widgets._common import recorded_steps
from napari_sem_analysis.widgets._enhance import EnhanceWidget
from napari_sem_analysis.widgets._segment import SplitWidget, SuperpixelWidget, ThresholdWidget

SCALE = {"scale": (5.0, 5.0), "units": ("nm", "nm")}


def _disks(shape, centres, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, 1):
        lab[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (lab == 0)] = i
    return lab


@pytest.fixture
def particles():
    rng = np.random.default_rng(1)
    truth = _disks((120, 150), [(40, 40), (40, 66), (90, 110), (90, 30)], 14)
    img = np.clip(np.where(truth > 0, 170, 60) + rng.normal(0, 8, truth.shape), 0, 255).astype(np.uint8)
    return img, truth


def _layer(viewer, name):
    return next(layer for layer in viewer.layers if layer.name == name)


# --------------------------------------------------------------------------- enhance
def test_enhance_clahe_live_preview_and_denoise_run(make_napari_viewer, qtbot, particles, errors, wait_run):
    img, _ = particles
    viewer = make_napari_viewer()
    layer = viewer.add_image(img.copy(), name="sem", **SCALE)
    widget = EnhanceWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget._tile.widget.label.endswith("(nm)")
    assert widget._tile.value == 600.0  # 128 px shown as a round physical value (not 640.00 nm)
    widget._clip.value = 2.5
    assert "CLAHE" not in [lyr.name for lyr in viewer.layers]  # no preview until asked
    widget._preview.value = True

    # dragging the slider updates the CLAHE layer immediately
    widget._tile.widget.value = 200.0  # 40 px tiles
    widget._clip.value = 3.0
    out = _layer(viewer, "CLAHE")
    np.testing.assert_array_equal(out.data, clahe(img, clip_limit=3.0, tile_size=40))
    assert tuple(out.scale) == (5.0, 5.0) and tuple(str(u) for u in out.units) == ("nanometer", "nanometer")
    widget._clip.value = 4.0
    assert sum(lyr.name == "CLAHE" for lyr in viewer.layers) == 1  # updated, not duplicated
    np.testing.assert_array_equal(out.data, clahe(img, clip_limit=4.0, tile_size=40))

    # denoise in a worker; sizes in nm
    widget._step.value = "denoise"
    widget._method.value = "median"
    widget._size.widget.value = 10.0  # 2 px radius
    widget.run()
    wait_run(widget)
    den = _layer(viewer, "denoise")
    np.testing.assert_array_equal(den.data, denoise(img, "median", size=2))
    widget.run()
    wait_run(widget, runs=2)
    assert sum(lyr.name == "denoise" for lyr in viewer.layers) == 1
    np.testing.assert_array_equal(layer.data, img)  # input untouched
    steps = {s["function"]: s for s in recorded_steps(viewer)}
    assert steps["clahe"]["params"]["clip_limit"] == 4.0 and steps["clahe"]["params"]["unit"] == "nm"
    assert steps["denoise"]["inputs"] == {"image": "sem"}
    assert not errors


def test_enhance_background_and_bad_input(make_napari_viewer, qtbot, errors, wait_run):
    viewer = make_napari_viewer()
    widget = EnhanceWidget(viewer)
    widget.run()  # no layer at all
    assert errors and "image layer" in errors[-1]
    viewer.add_image(np.full((40, 40), 9, np.uint8), name="flat")
    widget._reset()
    widget._preview.value = True  # preview on a constant image: notification, no layer
    assert "constant" in errors[-1]
    assert "CLAHE" not in [lyr.name for lyr in viewer.layers]
    widget._step.value = "background"
    n = len(errors)
    widget.run()
    wait_run(widget)
    assert len(errors) == n + 1 and "constant" in errors[-1]
    # a real shaded image works, stacks plane by plane
    xx = np.mgrid[:64, :64][1]
    stack = np.stack([(50 + xx).astype(np.uint8), (80 + xx // 2).astype(np.uint8)])
    viewer.add_image(stack, name="stack")
    widget._image.value = _layer(viewer, "stack")
    widget._bg_method.value = "polynomial"
    widget.run()
    wait_run(widget, runs=2)
    bg = _layer(viewer, "background")
    assert bg.data.shape == stack.shape
    assert bg.data[0].std() < 0.2 * stack[0].std()


# --------------------------------------------------------------------------- threshold
def test_threshold_widget_preview_multi_and_errors(make_napari_viewer, qtbot, particles, errors, wait_run):
    img, truth = particles
    viewer = make_napari_viewer()
    viewer.add_image(img, name="sem", **SCALE)
    widget = ThresholdWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert [lyr.name for lyr in viewer.layers] == ["sem"]  # no preview layer until asked
    widget._preview.value = True
    widget._min_size.value = 500.0  # nm² = 20 px²
    out = _layer(viewer, "threshold")
    smooth = denoise(img, "gaussian", size=1.0, keep_dtype=False)  # the defaults: the particles preset's mask
    expected = clean_mask(threshold(smooth, "li"), opening=1, min_size=20, fill_holes=True, max_hole_size=100)
    np.testing.assert_array_equal(out.data > 0, expected)
    assert ((out.data > 0) == (truth > 0)).mean() > 0.97
    assert tuple(out.scale) == (5.0, 5.0)
    # local method with a window in nm
    widget._method.value = "local_mean"
    widget._window.widget.value = 255.0  # 51 px
    np.testing.assert_array_equal(
        out.data > 0,
        clean_mask(
            threshold(smooth, "local_mean", window_size=51), opening=1, min_size=20, fill_holes=True, max_hole_size=100
        ),
    )
    # recorded as denoise + threshold + clean_mask
    funcs = [s["function"] for s in recorded_steps(viewer)]
    assert funcs == ["denoise", "threshold", "clean_mask"]
    # multi-level Otsu via the worker
    widget._method.value = "multi-otsu"
    widget._classes.value = 2
    widget.run()
    wait_run(widget)
    phases = _layer(viewer, "phases")
    assert set(np.unique(phases.data)) == {1, 2}
    assert "%" in widget._status.value
    # absurd clean-up: everything removed -> notification, layer unchanged
    widget._method.value = "otsu"
    assert "phases" in [lyr.name for lyr in viewer.layers]  # made by Run: kept
    before = out.data.copy()
    widget._min_size.value = 1e9
    assert errors and ("removed every object" in errors[-1] or "larger than the whole image" in errors[-1])
    np.testing.assert_array_equal(out.data, before)


def test_threshold_widget_rgb_and_constant(make_napari_viewer, qtbot, errors, wait_run):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((30, 30, 3), np.uint8) + np.arange(3, dtype=np.uint8), name="rgb", rgb=True)
    widget = ThresholdWidget(viewer)
    widget.run()
    assert "RGB" in errors[-1]
    viewer.add_image(np.ones((30, 30)), name="flat")
    widget._image.value = _layer(viewer, "flat")
    widget.run()
    wait_run(widget)
    assert "constant" in errors[-1]
    assert "threshold" not in [lyr.name for lyr in viewer.layers]


# --------------------------------------------------------------------------- split
def test_split_widget_distance_and_seeds(make_napari_viewer, qtbot, particles, errors, wait_run):
    img, truth = particles
    viewer = make_napari_viewer()
    viewer.add_image(img, name="sem", **SCALE)
    mask_layer = viewer.add_labels((truth > 0).astype(np.uint8), name="mask", **SCALE)
    widget = SplitWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget._min_distance.widget.label.endswith("(nm)")
    widget._min_distance.widget.value = 35.0  # 7 px
    widget.run()
    wait_run(widget)
    out = _layer(viewer, "split")
    assert out.data.max() == 4 and tuple(out.scale) == (5.0, 5.0)
    np.testing.assert_array_equal(mask_layer.data, truth > 0)  # input untouched
    step = recorded_steps(viewer)[-1]
    assert step["function"] == "split_particles" and step["params"]["split_min_distance"] == 35.0
    # seeds from a Points layer (world coordinates -> data coordinates)
    pts = viewer.add_points(np.array([[40, 40], [40, 66], [90, 110]]) * 5.0, name="seeds")
    widget._reset()
    widget._seeds.value = pts
    widget.run()
    wait_run(widget, runs=2)
    assert set(np.unique(out.data)) == {0, 1, 2, 3}
    assert np.bincount(out.data[truth == 2]).argmax() == 2
    step = recorded_steps(viewer)[-1]
    assert step["function"] == "watershed_from_seeds" and step["inputs"]["seeds"] == "seeds"
    # an empty mask gives a notification
    viewer.add_labels(np.zeros((20, 20), np.uint8), name="empty")
    widget._seeds.value = None
    widget._mask.value = _layer(viewer, "empty")
    widget.run()
    assert "empty" in errors[-1]


# --------------------------------------------------------------------------- superpixels
def test_superpixel_widget(make_napari_viewer, qtbot, particles, errors, wait_run):
    img, truth = particles
    viewer = make_napari_viewer()
    viewer.add_image(img, name="sem", **SCALE)
    widget = SuperpixelWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget._region.widget.label.endswith("(nm)")
    widget._region.widget.value = 100.0  # 20 px
    widget.run()
    wait_run(widget)
    out = _layer(viewer, "superpixels")
    assert out.data.shape == img.shape and tuple(out.scale) == (5.0, 5.0)
    n = len(np.unique(out.data))
    assert 0.6 * 45 < n < 1.6 * 45  # ~ (120/20) * (150/20)
    step = recorded_steps(viewer)[-1]
    assert step["function"] == "superpixels" and step["params"]["region_size"] == 100.0
    widget._region.widget.value = 1e6  # absurd: larger than the image
    widget.run()
    wait_run(widget, runs=2)
    assert "larger than the image" in errors[-1]


def test_superpixel_widget_cancel(make_napari_viewer, qtbot, errors, wait_run):
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (12, 384, 384)).astype(np.uint8)
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="stack")
    widget = SuperpixelWidget(viewer)
    widget._region.widget.value = 8.0
    widget.run()
    widget.cancel()  # stops at the next plane
    wait_run(widget)
    assert "superpixels" not in [lyr.name for lyr in viewer.layers]
    assert not errors


# --------------------------------------------------------------------------- audit: units, odd layers, cancel
def test_lengths_follow_a_pixel_size_set_by_hand(make_napari_viewer, particles, errors):
    """Setting the pixel size after the widgets are open: lengths switch to nm, same physical size."""
    from napari_sem_analysis.widgets._info import PixelSizeWidget

    img, truth = particles
    viewer = make_napari_viewer()
    layer = viewer.add_image(img, name="png without metadata")
    viewer.add_labels((truth > 0).astype(np.uint8), name="mask")
    enhance, split = EnhanceWidget(viewer), SplitWidget(viewer)
    thresh = ThresholdWidget(viewer)
    assert enhance._tile.widget.label.endswith("(px)") and enhance._tile.value == 128
    # the preset's smallest particle: a 4 px disk
    assert thresh._min_size.widget.label.endswith("(px²)") and thresh._min_size.value == pytest.approx(12.57)
    info = PixelSizeWidget(viewer)
    info._size.value = 0.543  # a sub-nm pixel, as in the nanoporous gold image
    info.apply()  # sets image and mask (same shape)
    assert enhance._tile.widget.label.endswith("(nm)")
    assert split._min_distance.widget.label.endswith("(nm)")
    # areas follow too, in nm², as round physical values close to the px defaults (within 12%)
    assert thresh._min_size.widget.label.endswith("(nm²)") and split._min_size.widget.label.endswith("(nm²)")
    cparams = thresh.params()
    assert cparams["unit"] == "nm" and cparams["min_size"] == 4.0  # 12.57 px² = 3.7 nm² -> 4 nm²
    params = enhance.params()
    assert params["unit"] == "nm"
    assert params["tile_size"] == 70.0  # 128 px = 69.5 nm -> 70 nm
    assert "split_min_distance" not in split.params()  # auto: from the particles' size
    # a value the user typed is kept exactly
    enhance._tile.widget.value = 69.504
    assert enhance.params()["tile_size"] == pytest.approx(69.504)
    # the preview then uses those 128 px tiles
    enhance._preview.value = True
    enhance._clip.value = 3.0
    np.testing.assert_array_equal(_layer(viewer, "CLAHE").data, clahe(img, clip_limit=3.0, tile_size=128))
    np.testing.assert_allclose(_layer(viewer, "CLAHE").scale, layer.scale)
    assert not errors


def test_threshold_widget_with_nan_layer_and_stack(make_napari_viewer, qtbot, errors, wait_run):
    rng = np.random.default_rng(2)
    viewer = make_napari_viewer()
    nan = rng.random((40, 40)).astype(np.float32)
    nan[5, 5] = np.nan
    viewer.add_image(nan, name="nan")  # used to break the widget's construction
    widget = ThresholdWidget(viewer)
    widget._preview.value = True
    assert "NaN" in errors[-1]
    assert "threshold" not in [lyr.name for lyr in viewer.layers]
    # a stack: the preview says to press Run; Run thresholds plane by plane
    stack = rng.normal(60, 5, (3, 50, 60))
    stack[:, 10:30, 10:40] += 100
    stack[1, 35:45, 5:15] += 100
    viewer.add_image(stack, name="stack", scale=(1.0, 5.0, 5.0), units=("pixel", "nm", "nm"))
    widget._image.value = _layer(viewer, "stack")
    widget._method.value = "otsu"
    assert "press Run" in widget._status.value
    widget.run()
    wait_run(widget)
    out = _layer(viewer, "threshold")
    expected = np.stack(
        [
            clean_mask(
                threshold(denoise(p, "gaussian", size=1.0), "otsu"), opening=1, min_size=12.57, max_hole_size=100
            )
            for p in stack
        ]
    )
    np.testing.assert_array_equal(out.data > 0, expected)
    assert tuple(out.scale) == (1.0, 5.0, 5.0)


def test_preview_follows_a_new_image_choice(make_napari_viewer, particles, errors):
    img, _ = particles
    viewer = make_napari_viewer()
    viewer.add_image(img, name="a")
    viewer.add_image(img[::-1].copy(), name="b")
    widget = ThresholdWidget(viewer)
    widget._image.value = _layer(viewer, "a")
    widget._smooth.value = 0.0
    widget._opening.value = 0.0
    widget._min_size.value = 0.0
    widget._fill.value = False
    widget._preview.value = True  # a preview is on screen now
    out = _layer(viewer, "threshold")
    widget._image.value = _layer(viewer, "b")
    np.testing.assert_array_equal(out.data > 0, threshold(img[::-1], "li"))
    # unticking the preview takes its layer away
    widget._preview.value = False
    assert "threshold" not in [lyr.name for lyr in viewer.layers]
    assert not errors


def test_enhance_preview_rgb_and_absurd_background(make_napari_viewer, qtbot, errors, wait_run):
    rng = np.random.default_rng(3)
    viewer = make_napari_viewer()
    viewer.add_image(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8), name="rgb", rgb=True)
    widget = EnhanceWidget(viewer)
    widget._preview.value = True
    assert "RGB" in errors[-1]
    viewer.add_image(rng.integers(0, 255, (30, 30), dtype=np.uint8), name="small")
    widget._image.value = _layer(viewer, "small")
    widget._step.value = "background"
    widget._bg_size.widget.value = 1e6  # px: the run used to never end
    widget.run()
    wait_run(widget)
    assert "more than twice the image size" in errors[-1]
    assert "background" not in [lyr.name for lyr in viewer.layers]


def test_superpixel_cancel_stops_a_single_image_mid_run(make_napari_viewer, qtbot, errors, monkeypatch, wait_run):
    rng = np.random.default_rng(0)
    viewer = make_napari_viewer()
    viewer.add_image(rng.integers(0, 255, (256, 256)).astype(np.uint8), name="big")
    calls = []
    original = _segment.cancel_check

    def clicking(owner):
        check = original(owner)

        def callback(*args):
            calls.append(args)
            if len(calls) == 1:
                owner.cancel()  # the user clicks Cancel while the first iteration runs
            check(*args)

        return callback

    monkeypatch.setattr(_segment, "cancel_check", clicking)
    widget = SuperpixelWidget(viewer)
    widget._region.widget.value = 8.0
    widget._iters.value = 100
    widget.run()
    wait_run(widget)
    assert len(calls) == 1  # stopped after the first of 101 iterations
    assert "superpixels" not in [lyr.name for lyr in viewer.layers]
    assert "cancelled" in widget._status.value
    assert not errors
    # and a run that is not cancelled still writes its layer
    widget._iters.value = 2
    widget.run()
    wait_run(widget, runs=2)
    assert _layer(viewer, "superpixels").data.max() > 0


def test_seeded_split_follows_the_image_edges_when_an_image_is_chosen(make_napari_viewer, qtbot, errors, wait_run):
    # a small dim particle overlapping a big bright one: the mask is one blob,
    # the true boundary is the small particle's outline, visible in the image
    yy, xx = np.mgrid[:80, :110]
    big = (yy - 40) ** 2 + (xx - 40) ** 2 <= 20**2
    small = (yy - 40) ** 2 + (xx - 66) ** 2 <= 12**2
    truth = np.where(small, 2, np.where(big, 1, 0))
    img = np.choose(truth, [30, 200, 110]).astype(np.uint8)
    viewer = make_napari_viewer()
    viewer.add_image(img, name="sem", **SCALE)
    viewer.add_labels((truth > 0).astype(np.uint8), name="mask", **SCALE)
    seeds = viewer.add_points(np.array([[40, 35], [40, 70]]) * 5.0, name="seeds")
    widget = SplitWidget(viewer)
    widget._seeds.value = seeds
    assert widget._image.value is _layer(viewer, "sem")  # the image is chosen by default
    widget._image.value = None
    widget.run()  # mask only: the line follows the distance map
    wait_run(widget)
    out = _layer(viewer, "split")
    mask_only = (out.data == truth)[truth > 0].mean()
    widget._image.value = _layer(viewer, "sem")
    widget.run()
    wait_run(widget, runs=2)
    with_image = (out.data == truth)[truth > 0].mean()
    assert with_image > 0.99 and with_image > mask_only
    assert out.data[truth == 0].max() == 0  # stays inside the mask
    step = recorded_steps(viewer)[-1]
    assert step["inputs"] == {"image_or_mask": "sem", "seeds": "seeds", "mask": "mask"}
    assert not errors


def test_denoise_of_a_constant_image_is_shown(make_napari_viewer, qtbot, errors, wait_run):
    # a flat result used to fail on napari's contrast limits (lo == hi)
    viewer = make_napari_viewer()
    viewer.add_image(np.full((30, 30), 7, np.uint8), name="flat")
    widget = EnhanceWidget(viewer)
    widget._step.value = "denoise"
    widget.run()
    wait_run(widget)
    assert not errors
    out = _layer(viewer, "denoise")
    np.testing.assert_array_equal(out.data, 7)
    assert out.contrast_limits[0] < out.contrast_limits[1]
