"""The named stages of the long core functions (train_unet, tiled prediction, coating_layers,
measure, segment_particles), each on a small input with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sem_analysis._validation import SEMAnalysisError


def test_tile_plan_covers_the_padded_image_with_blending_weights():
    from napari_sem_analysis.unet.predict import _plan_tiles

    img = np.zeros((150, 300), np.float32)
    padded, plan = _plan_tiles(img, tile_size=100, overlap=20, div=32)
    assert (plan.H, plan.W) == (150, 300) and (plan.th, plan.tw) == (128, 128)  # rounded up to the divisor
    assert padded.shape == img.shape  # larger than a tile: nothing to pad
    weight = np.zeros(padded.shape)
    for y in plan.ys:
        for x in plan.xs:
            weight[y : y + plan.th, x : x + plan.tw] += plan.wy[y][:, None] * plan.wx[x][None, :]
    assert weight.min() > 0  # every pixel is covered with a positive weight
    small, splan = _plan_tiles(np.zeros((40, 50), np.float32), tile_size=None, overlap=0, div=32)
    assert small.shape == (64, 64) and splan.ys == [0] and splan.xs == [0]  # reflect-padded to one tile
    with pytest.raises(SEMAnalysisError, match="overlap"):
        _plan_tiles(img, tile_size=64, overlap=64, div=32)


def test_unet_training_data_stage_checks_pairs():
    from napari_sem_analysis.unet.train import _check_data

    img = np.zeros((32, 32), np.uint8)
    data = _check_data(img, np.zeros((32, 32), np.int32), None)  # single arrays become lists
    assert len(data.images) == 1 and data.val_images is None
    with pytest.raises(SEMAnalysisError, match="2 images but 1 masks"):
        _check_data([img, img], [np.zeros((32, 32), np.int32)], None)
    with pytest.raises(SEMAnalysisError, match="validation"):
        _check_data([img], [np.zeros((32, 32), np.int32)], ([img], [np.zeros((16, 16), np.int32)]))


@pytest.mark.parametrize("method", ["step", "changepoint"])
def test_coating_step_row_finds_the_step(method):
    from napari_sem_analysis.coating import _step_row

    prof = np.r_[np.full(30, 50.0), np.full(25, 120.0)]
    assert _step_row(prof, 5, method) == 30
    assert _step_row(np.ones(6), 5, method) is None  # too short for two sides of k rows


def test_coating_body_edges_and_oxide_layer():
    from napari_sem_analysis.coating import _coating_body, _oxide_layer, _OxideSearch, synthetic_coating

    img, truth = synthetic_coating(seed=1, crack_xs=())
    img = img.astype(np.float64)
    layers = _coating_body(img)
    assert np.nanmedian(layers.top) == pytest.approx(truth["coating_top"], abs=2)
    assert np.nanmedian(layers.bottom) == pytest.approx(truth["coating_bottom"] - 1, abs=2)
    _oxide_layer(img, layers, _OxideSearch(96, 12, "step", 0.06 * img.shape[0], 0.3, 0.025))
    thickness = np.nanmedian(layers.interface - layers.bottom - 1)
    assert thickness == pytest.approx(truth["oxide_thickness"], abs=3)
    assert not (layers.coating_mask & layers.oxide_mask).any()


def test_measure_moment_stage_of_a_rectangle():
    from napari_sem_analysis.measurement import _LabelSums, _moment_columns, _present_and_index

    labels = np.zeros((40, 60), np.int32)
    labels[10:20, 5:45] = 7  # 10 x 40 rectangle
    present, idx, n = _present_and_index(labels)
    cols = _moment_columns(_LabelSums(present, idx, n), labels.shape, ps=2.0)
    assert list(present) == [7]
    assert cols["area"][0] == 400 * 4.0  # px² * (nm/px)²
    assert (cols["centroid_y"][0], cols["centroid_x"][0]) == (14.5 * 2, 24.5 * 2)
    # the ellipse of equal second moments: axes 4 * sqrt(variance) = 4 * sqrt((L² - 1) / 12)
    assert cols["major_axis"][0] == pytest.approx(4 * np.sqrt((40**2 - 1) / 12) * 2)
    assert cols["minor_axis"][0] == pytest.approx(4 * np.sqrt((10**2 - 1) / 12) * 2)
    assert abs(cols["orientation"][0]) == pytest.approx(90.0)  # major axis along the columns


def test_particle_recipe_stages():
    from napari_sem_analysis.segmentation.presets import _particle_mask, _preset_input, _split_particles

    yy, xx = np.mgrid[:80, :120]
    img = np.full((80, 120), 40, np.uint8)
    for cy, cx in ((40, 40), (40, 58)):  # two touching discs of radius 12
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 144] = 200
    arr, units = _preset_input(img, "otsu", pixel_size=2.0)
    assert units.unit == "nm" and units.px(8.0, 1.0, "size") == 4.0 and units.px(None, 1.0, "size") == 1.0
    with pytest.raises(SEMAnalysisError, match="threshold_method"):
        _preset_input(img, "sauvola", None)
    smooth, mask, min_area = _particle_mask(arr, units, None, "otsu", 0.0, False, None)
    assert mask.sum() == pytest.approx(np.sum(img > 100), rel=0.05) and min_area == pytest.approx(np.pi * 4)
    labels = _split_particles(
        mask,
        smooth,
        units,
        min_area,
        split_min_distance=None,
        split_fraction=0.25,
        edge_quantile=0.5,
        boundary_weight=0.5,
        merge_fraction=0.0,
        merge_slivers=True,
        separate=True,
    )
    assert labels.max() == 2  # the touching pair is split in two
