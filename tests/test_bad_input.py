"""Every public function on bad input: a clear SEMAnalysisError or a correct result, bounded memory.

A bounded fuzz-ish sweep (public functions x awkward arrays and parameters) plus the cases that used
to give raw exceptions, gigabytes or silently wrong results.
"""

from __future__ import annotations

import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

import napari_sem_analysis as sem
from napari_sem_analysis._validation import SEMAnalysisError

RNG = np.random.default_rng(0)
BASE = RNG.normal(120, 30, (40, 48)).clip(0, 255).astype(np.uint8)
MASK = np.zeros((40, 48), bool)
MASK[8:24, 6:22] = True
MASK[4:14, 30:42] = True
LABELS = np.zeros((40, 48), np.int32)
LABELS[8:24, 6:22] = 1
LABELS[4:14, 30:42] = 2

BAD_IMAGES = {
    "uint64_max": np.full((40, 48), np.iinfo(np.uint64).max, np.uint64),
    "uint64_wide": BASE.astype(np.uint64) * (2**56),
    "int64_extremes": np.where(BASE > 120, np.iinfo(np.int64).min, np.iinfo(np.int64).max).astype(np.int64),
    "float16": BASE.astype(np.float16),
    "float32_huge": BASE.astype(np.float32) * 1e37,
    "nan": np.where(BASE > 120, np.nan, 1.0),
    "1d": np.arange(10),
    "4d": np.zeros((2, 2, 8, 8)),
    "empty": np.zeros((0, 5)),
    "one_pixel": np.ones((1, 1), np.uint8),
    "bool": MASK,
    "object": np.array([["a", "b"], ["c", "d"]], dtype=object),
    "complex": BASE.astype(np.complex64),
    "string": "not an image",
    "none": None,
}
BAD_LABELS = {
    "uint64": LABELS.astype(np.uint64),
    "uint64_max": np.where(LABELS > 0, np.iinfo(np.uint64).max, 0).astype(np.uint64),
    "huge_id": np.where(LABELS > 0, 10**8, 0).astype(np.int64),
    "float": LABELS.astype(float),
    "negative": -LABELS,
    "1d": np.arange(5),
}
IMAGE_FUNCTIONS = {
    "clahe": lambda x: sem.clahe(x),
    "denoise": lambda x: sem.denoise(x),
    "correct_background": lambda x: sem.correct_background(x),
    "threshold": lambda x: sem.threshold(x),
    "threshold_sauvola": lambda x: sem.threshold(x, "sauvola"),
    "multi_threshold": lambda x: sem.multi_threshold(x),
    "clean_mask": lambda x: sem.clean_mask(x),
    "split_touching": lambda x: sem.split_touching(x),
    "split_touching_intensity": lambda x: sem.split_touching(MASK, intensity_image=x),
    "watershed_image": lambda x: sem.watershed_from_seeds(x, LABELS),
    "watershed_seeds": lambda x: sem.watershed_from_seeds(BASE, x),
    "segment_particles": lambda x: sem.segment_particles(x),
    "segment_pores": lambda x: sem.segment_pores(x),
    "measure_image": lambda x: sem.measure(LABELS, x),
    "glcm_features": lambda x: sem.glcm_features(x),
    "lbp_features": lambda x: sem.lbp_features(x),
    "texture_map": lambda x: sem.texture_map(x, window=7),
    "quantize": lambda x: sem.quantize(x),
    "detect_databar": lambda x: sem.detect_databar(x),
    "to_grayscale": lambda x: sem.to_grayscale(x),
    "extract_tiles": lambda x: sem.extract_tiles([x], tile_size=16),
}
LABEL_FUNCTIONS = {
    "measure": lambda lab: sem.measure(lab, BASE),
    "measure_shape_only": lambda lab: sem.measure(lab),
    "oriented_boxes": lambda lab: sem.oriented_boxes(lab),
    "object_outlines": lambda lab: sem.object_outlines(lab),
    "object_features": lambda lab: sem.object_features(lab, BASE),
    "glcm_features_labels": lambda lab: sem.glcm_features(BASE, lab),
}
BAD_CALLS = {
    "tile_labels_absurd_shape": lambda: sem.tile_labels((10**9, 10**9), 16),
    "tile_labels_negative_shape": lambda: sem.tile_labels((-5, 10), 16),
    "tile_labels_nan_tile": lambda: sem.tile_labels((50, 50), float("nan")),
    "superpixels_bogus_device": lambda: sem.superpixels(BASE, n_segments=10, device="bogus"),
    "select_device_bogus": lambda: sem.select_device("bogus"),
    "detect_databar_nan": lambda: sem.detect_databar(BASE, max_fraction=float("nan")),
    "detect_databar_fraction_5": lambda: sem.detect_databar(np.zeros((100, 100)), max_fraction=5),
    "summarize_string": lambda: sem.summarize("a table"),
    "summarize_string_column": lambda: sem.summarize(pd.DataFrame({"area": ["a", "b"]})),
    "summarize_dict": lambda: sem.summarize({"area": [1, 2]}),
    "threshold_window_nan": lambda: sem.threshold(BASE, "sauvola", window_size=float("nan")),
    "multi_threshold_classes": lambda: sem.multi_threshold(BASE, classes=10**6),
    "denoise_size_inf": lambda: sem.denoise(BASE, size=float("inf")),
    "correct_background_order": lambda: sem.correct_background(BASE, "polynomial", order=10**6),
    "watershed_seeds_outside": lambda: sem.watershed_from_seeds(BASE, [(500, 5)]),
    "watershed_mask_shape": lambda: sem.watershed_from_seeds(BASE, LABELS, mask=np.ones((3, 3), bool)),
    "superpixels_many": lambda: sem.superpixels(BASE, n_segments=10**9),
    "measure_shape_mismatch": lambda: sem.measure(LABELS, BASE[:10]),
    "glcm_levels": lambda: sem.glcm_features(BASE, levels=10**6),
    "quantize_levels": lambda: sem.quantize(BASE, 10**9),
    "lbp_points": lambda: sem.lbp_features(BASE, P=10**6),
    "tile_probability_map_shape": lambda: sem.tile_probability_map(pd.DataFrame(), (10**9, 10**9), ["a"]),
    "tile_probability_map_string": lambda: sem.tile_probability_map("x", (10, 10), ["a"]),
    "extract_tiles_huge": lambda: sem.extract_tiles([BASE], tile_size=10**9),
    "image_features_scale_0": lambda: sem.image_features(BASE, scales=(0,)),
    "image_features_levels": lambda: sem.image_features(BASE, levels=10**6),
    "object_outlines_tolerance_nan": lambda: sem.object_outlines(LABELS, tolerance=float("nan")),
}

# parameters that may be clamped to something sensible: a result or a clear error, nothing else
CLAMPED_CALLS = {
    "clahe_tile_huge": lambda: sem.clahe(BASE, tile_size=1e12),
    "texture_window": lambda: sem.texture_map(BASE, window=10**6),
    "watershed_seed_list": lambda: sem.watershed_from_seeds(BASE, [(5, 5), (30, 30)]),
}


def _clear_or_correct(call):
    """Run ``call``: success or SEMAnalysisError only; returns the peak traced memory in bytes."""
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                call()
            except SEMAnalysisError as exc:
                assert str(exc)  # a message the user can read
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


@pytest.mark.parametrize("func", list(IMAGE_FUNCTIONS))
def test_image_functions_on_bad_images(func):
    for name, image in BAD_IMAGES.items():
        try:
            peak = _clear_or_correct(lambda image=image: IMAGE_FUNCTIONS[func](image))
        except Exception as exc:  # noqa: BLE001 - the test reports which input broke which function
            pytest.fail(f"{func}({name}) raised {type(exc).__name__}: {exc}")
        assert peak < 200e6, f"{func}({name}) took {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("func", list(LABEL_FUNCTIONS))
def test_label_functions_on_bad_labels(func):
    for name, labels in BAD_LABELS.items():
        try:
            peak = _clear_or_correct(lambda labels=labels: LABEL_FUNCTIONS[func](labels))
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"{func}({name}) raised {type(exc).__name__}: {exc}")
        assert peak < 200e6, f"{func}({name}) took {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("call", list(BAD_CALLS))
def test_bad_parameters_give_clear_errors(call):
    with pytest.raises(SEMAnalysisError):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            BAD_CALLS[call]()


@pytest.mark.parametrize("call", list(CLAMPED_CALLS))
def test_clamped_parameters_give_a_result_or_a_clear_error(call):
    assert _clear_or_correct(CLAMPED_CALLS[call]) < 200e6


# -- results that must be right, not only free of raw exceptions ----------------


def test_uint64_labels_measure_like_int32():
    a = sem.measure(LABELS, BASE, texture=False)
    b = sem.measure(LABELS.astype(np.uint64), BASE, texture=False)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    boxes, _ = sem.oriented_boxes(LABELS.astype(np.uint64))
    np.testing.assert_array_equal(boxes, sem.oriented_boxes(LABELS)[0])


def test_object_outlines_with_a_huge_label_id_is_small_and_right():
    labels = np.where(LABELS == 2, 10**8, LABELS).astype(np.int64)
    tracemalloc.start()
    try:
        present, polys = sem.object_outlines(labels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6  # not one entry per id up to 10**8 (800 MB)
    assert list(present) == [1, 10**8]
    ref_present, ref_polys = sem.object_outlines(LABELS)
    for got, ref in zip(polys, ref_polys):
        np.testing.assert_allclose(got, ref)


def test_float16_images_give_the_float32_result():
    np.testing.assert_allclose(
        sem.denoise(BASE.astype(np.float16)), sem.denoise(BASE.astype(np.float32)), rtol=1e-3, atol=1e-2
    )
    np.testing.assert_array_equal(
        sem.segment_pores(BASE.astype(np.float16)), sem.segment_pores(BASE.astype(np.float32))
    )


def test_threshold_on_wide_integers_splits_like_the_float_image():
    wide = BASE.astype(np.uint64) * (2**40)
    np.testing.assert_array_equal(sem.threshold(wide), sem.threshold(BASE.astype(np.float64)))
    phases = sem.multi_threshold(wide)
    np.testing.assert_array_equal(phases, sem.multi_threshold(BASE.astype(np.float64)))


def test_seed_image_of_the_wrong_shape_is_not_read_as_coordinates():
    seeds = np.zeros((10, 10), np.int32)
    seeds[2, 2] = 1
    with pytest.raises(SEMAnalysisError, match="label image of the image's shape"):
        sem.watershed_from_seeds(BASE, seeds)
    # (N, 2) coordinates still work
    out = sem.watershed_from_seeds(MASK, [(15, 12), (8, 35)])
    assert out[15, 12] == 1 and out[8, 35] == 2


def test_split_touching_refuses_a_nan_intensity_image():
    with pytest.raises(SEMAnalysisError, match="intensity_image contains NaN"):
        sem.split_touching(MASK, intensity_image=np.full(MASK.shape, np.nan))
    with pytest.raises(SEMAnalysisError, match="intensity_image shape"):
        sem.split_touching(MASK, intensity_image=BASE[:5])
