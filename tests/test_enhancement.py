"""Enhancement core: CLAHE, denoising, background correction."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from napari_sem_analysis import SEMAnalysisError
from napari_sem_analysis.enhancement import clahe, correct_background, denoise, estimate_noise


def _scene(rng, shape=(128, 160), dtype=np.uint8, noise=8.0):
    """Dark disks-on-gradient image with known clean version."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    clean = np.full(shape, 60.0)
    for cy, cx, r in [(40, 40, 15), (80, 110, 20), (100, 30, 10)]:
        clean[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 160.0
    noisy = clean + rng.normal(0, noise, shape)
    if dtype == np.uint16:
        clean, noisy = clean * 200, noisy * 200
    if np.issubdtype(dtype, np.integer):
        noisy = np.clip(np.round(noisy), 0, np.iinfo(dtype).max).astype(dtype)
    else:
        noisy = noisy.astype(dtype)
    return clean, noisy


# --------------------------------------------------------------------------- CLAHE
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_clahe_matches_opencv_and_keeps_dtype(rng, dtype):
    _, img = _scene(rng, (256, 256), dtype)
    out = clahe(img, clip_limit=3.0, tile_size=64)
    ref = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4)).apply(img)
    assert out.dtype == dtype and out.shape == img.shape
    np.testing.assert_array_equal(out, ref)
    assert img.std() < out.std()  # contrast was stretched


def test_clahe_float_is_rescaled_and_returned_as_float(rng):
    _, img = _scene(rng, (64, 64), np.float64)
    img = img / 1000.0 - 3.0  # arbitrary float range
    out = clahe(img, tile_size=32)
    assert out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 and out.max() > 0.9
    # the disks stay brighter than the background
    disk = img > img.mean()
    assert out[disk].mean() > out[~disk].mean() + 0.2


@pytest.mark.parametrize("shape", [(1, 7), (3, 3), (5, 300), (20, 20)])
def test_clahe_images_smaller_than_a_tile(shape, rng):
    img = rng.integers(0, 255, shape).astype(np.uint8)
    out = clahe(img, tile_size=128)
    assert out.shape == shape and out.dtype == np.uint8


def test_clahe_stack_plane_by_plane_and_nm(rng):
    _, a = _scene(rng, (96, 96))
    b = 255 - a
    stack = np.stack([a, b])
    out = clahe(stack, tile_size=480, unit="nm", pixel_size=10.0)  # 48 px tiles
    assert out.shape == stack.shape
    np.testing.assert_array_equal(out[1], clahe(b, tile_size=48))


@pytest.mark.parametrize(
    "bad, kwargs, match",
    [
        (np.full((32, 32), 7, np.uint8), {}, "constant"),
        (np.zeros((16, 16, 3), np.uint8) + np.arange(3, dtype=np.uint8), {}, "colour"),
        (np.where(np.eye(8) > 0, np.nan, 1.0), {}, "NaN"),
        (np.arange(64, dtype=np.uint8).reshape(8, 8), {"clip_limit": -1}, "clip_limit"),
        (np.arange(64, dtype=np.uint8).reshape(8, 8), {"tile_size": 100, "unit": "nm"}, "pixel size"),
        (np.arange(64, dtype=np.uint8).reshape(8, 8), {"tile_size": 1}, "tile_size"),
    ],
)
def test_clahe_bad_input(bad, kwargs, match):
    with pytest.raises(SEMAnalysisError, match=match):
        clahe(bad, **kwargs)


# --------------------------------------------------------------------------- denoise
@pytest.mark.parametrize("method", ["gaussian", "median", "bilateral", "nlm"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_denoise_reduces_error_and_keeps_dtype(rng, method, dtype):
    clean, noisy = _scene(rng, dtype=dtype)
    out = denoise(noisy, method)
    assert out.dtype == noisy.dtype and out.shape == noisy.shape
    err_before = np.abs(noisy.astype(float) - clean).mean()
    err_after = np.abs(out.astype(float) - clean).mean()
    assert err_after < 0.8 * err_before


def test_denoise_gaussian_matches_scipy_and_nm(rng):
    from scipy import ndimage as ndi

    _, img = _scene(rng, dtype=np.float32)
    out = denoise(img, "gaussian", size=20.0, unit="nm", pixel_size=10.0)  # sigma 2 px
    ref = ndi.gaussian_filter(img, 2.0, mode="reflect", truncate=3.0)
    np.testing.assert_allclose(out[10:-10, 10:-10], ref[10:-10, 10:-10], atol=1e-3)


def test_denoise_median_matches_scipy(rng):
    from scipy import ndimage as ndi

    _, img = _scene(rng, dtype=np.uint16)
    out = denoise(img, "median", size=3)  # 7x7: scipy path for uint16
    np.testing.assert_array_equal(out[5:-5, 5:-5], ndi.median_filter(img, 7)[5:-5, 5:-5])


def test_estimate_noise(rng):
    img = 100 + rng.normal(0, 5.0, (200, 200))
    assert estimate_noise(img) == pytest.approx(5.0, rel=0.1)


def test_denoise_bad_input(rng):
    _, img = _scene(rng)
    with pytest.raises(SEMAnalysisError, match="method"):
        denoise(img, "wavelet")
    with pytest.raises(SEMAnalysisError, match="larger than the image"):
        denoise(img, "gaussian", size=1000)
    with pytest.raises(SEMAnalysisError, match="size"):
        denoise(img, "median", size=-2)
    with pytest.raises(SEMAnalysisError, match="NaN"):
        denoise(np.array([[np.inf, 1.0], [1.0, 1.0]]))


# --------------------------------------------------------------------------- background
@pytest.mark.parametrize("method", ["gaussian", "rolling_ball", "polynomial"])
def test_correct_background_removes_gradient(rng, method):
    h, w = 160, 200
    yy, xx = np.mgrid[:h, :w]
    shading = 40.0 * xx / w + 20.0 * yy / h  # slow charging gradient
    clean, _ = _scene(rng, (h, w), np.float32, noise=0)
    img = np.clip(clean + shading, 0, 255).astype(np.uint8)
    out = correct_background(img, method, size=40)
    assert out.dtype == np.uint8
    background = clean < 100
    # left-right difference of the background level (was 40 grey levels)
    left = out[:, :40][background[:, :40]].mean()
    right = out[:, -40:][background[:, -40:]].mean()
    before = img[:, -40:][background[:, -40:]].mean() - img[:, :40][background[:, :40]].mean()
    # a Gaussian background is biased by the objects themselves: looser bound
    assert abs(right - left) < (0.5 if method == "gaussian" else 0.25) * before
    # objects stay brighter than the background
    assert out[clean > 100].mean() - out[background].mean() > 60


def test_correct_background_divide_and_return(rng):
    h, w = 100, 100
    xx = np.mgrid[:h, :w][1]
    img = (100.0 * (1 + xx / w)).astype(np.float32)  # multiplicative shading
    out, bg = correct_background(img, "polynomial", order=1, mode="divide", return_background=True)
    assert out.dtype == np.float32 and bg.shape == img.shape
    assert out.std() < 0.05 * img.std()


def test_correct_background_bad_input(rng):
    _, img = _scene(rng)
    with pytest.raises(SEMAnalysisError, match="constant"):
        correct_background(np.zeros((50, 50), np.uint8))
    with pytest.raises(SEMAnalysisError, match="method"):
        correct_background(img, "magic")
    with pytest.raises(SEMAnalysisError, match="mode"):
        correct_background(img, mode="multiply")
    with pytest.raises(SEMAnalysisError, match="order"):
        correct_background(img, "polynomial", order=9)


@pytest.mark.parametrize("method", ["gaussian", "rolling_ball"])
def test_correct_background_absurd_scale_is_refused_at_once(rng, method):
    # a scale of a million pixels on a 20 px image used to build a filter of
    # millions of pixels (the run never ended); now a clear error
    _, img = _scene(rng, shape=(20, 24))
    with pytest.raises(SEMAnalysisError, match="more than twice the image size"):
        correct_background(img, method, size=1e6)
    with pytest.raises(SEMAnalysisError, match="finite"):
        correct_background(img, method, size=np.inf)
    assert correct_background(img, method, size=40).shape == img.shape  # up to twice the size is fine


def test_stack_errors_name_the_plane(rng):
    _, img = _scene(rng)
    stack = np.stack([img, np.full_like(img, 7)])
    with pytest.raises(SEMAnalysisError, match="plane 1 of 2: image is constant"):
        clahe(stack)
