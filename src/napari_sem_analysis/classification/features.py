"""Image features: intensity statistics, GLCM, LBP, FFT band powers and edge density (:func:`image_features`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._validation import SEMAnalysisError, check_image, to_grayscale
from .validation import _Cancelled


def _to_unit_float(image) -> np.ndarray:
    """Image as float32 in about [0, 1] (integers by their dtype range)."""
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        hi = float(arr.max()) if arr.size else 1.0
        # uint16 SEM images often use only 12 bits: scale by the smallest power of two >= max
        top = 2.0 ** np.ceil(np.log2(max(hi, 1.0) + 1)) - 1
        top = min(top, float(info.max))
        return (arr.astype(np.float32) - min(0, info.min)) / max(top, 1.0)
    return arr.astype(np.float32)


def _stretch(img: np.ndarray, levels: int) -> np.ndarray:
    lo, hi = np.percentile(img, (1, 99))
    if hi <= lo:
        return np.zeros(img.shape, np.uint8)
    q = (img - lo) / (hi - lo)
    return np.clip(q * (levels - 1) + 0.5, 0, levels - 1).astype(np.uint8)


def _radial_bands(img: np.ndarray, n_bands: int = 8) -> np.ndarray:
    """Fraction of (mean-removed) spectral power in log-spaced radial frequency bands + anisotropy."""
    h, w = img.shape
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    f = np.fft.fftshift(np.abs(np.fft.fft2((img - img.mean()) * win)) ** 2)
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    r = np.sqrt(fy**2 + fx**2)
    # fixed bands in cycles per pixel, so that images of different sizes are comparable
    edges = np.geomspace(1.0 / 128, 0.5, n_bands + 1)
    total = f[(r > 0) & (r <= 0.5)].sum() + 1e-12
    bands = [f[(r >= lo) & (r < hi)].sum() / total for lo, hi in zip(edges[:-1], edges[1:])]
    # anisotropy: how unevenly power spreads over orientations (4 sectors)
    theta = np.mod(np.arctan2(fy, fx), np.pi)
    sectors = [f[(theta >= a) & (theta < a + np.pi / 4) & (r > edges[1])].sum() for a in np.arange(4) * np.pi / 4]
    sectors = np.asarray(sectors) / (np.sum(sectors) + 1e-12)
    return np.concatenate([bands, [sectors.std() * 4]])


_GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")


def _glcm_columns(q: np.ndarray, prefix: str, glcm_distances, levels: int) -> dict:
    """GLCM properties of the quantised image: mean over four angles per distance (+ spread for two)."""
    from ..texture import glcm_properties

    # value_range (0, levels) keeps the levels of q as they are
    glcm = glcm_properties(
        q,
        distances=tuple(glcm_distances),
        angles=(0, 45, 90, 135),
        levels=levels,
        value_range=(0, levels),
        properties=_GLCM_PROPS,
    )
    out: dict[str, float] = {}
    for prop in _GLCM_PROPS:
        for i, d in enumerate(glcm_distances):
            vals = np.nan_to_num(glcm[prop][i])
            out[f"{prefix}glcm_{prop}_d{d}"] = float(vals.mean())
            if prop in ("contrast", "correlation"):
                out[f"{prefix}glcm_{prop}_d{d}_aniso"] = float(vals.std())
    return out


def _texture_features(img: np.ndarray, prefix: str, glcm_distances, levels: int) -> dict:
    from skimage.feature import local_binary_pattern
    from skimage.filters import sobel

    q = _stretch(img, levels)
    out = _glcm_columns(q, prefix, glcm_distances, levels)
    # LBP (uniform, rotation invariant), two radii
    for p, rad in ((8, 1), (16, 2)):
        lbp = local_binary_pattern(q, p, rad, method="uniform")
        hist = np.bincount(lbp.astype(np.int64).ravel(), minlength=p + 2)[: p + 2].astype(float)
        hist /= max(hist.sum(), 1)
        for i, v in enumerate(hist):
            out[f"{prefix}lbp{p}r{rad}_{i}"] = float(v)
    # edge density
    grad = sobel(img)
    out[f"{prefix}edge_mean"] = float(grad.mean())
    out[f"{prefix}edge_std"] = float(grad.std())
    gs = sobel(q.astype(np.float32) / (levels - 1))
    out[f"{prefix}edge_density"] = float((gs > 0.1).mean())
    out[f"{prefix}edge_density_strong"] = float((gs > 0.25).mean())
    for i, v in enumerate(_radial_bands(img)):
        out[f"{prefix}fft_{i}"] = float(v)
    return out


def _int_list(values, name: str, lo: int, hi: int) -> tuple[int, ...]:
    try:
        out = tuple(values)
    except TypeError:
        raise SEMAnalysisError(f"{name} must be a list of integers, got {values!r}") from None
    if (
        not out
        or len(out) > 16
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and lo <= v <= hi for v in out)
    ):
        raise SEMAnalysisError(f"{name} must be 1 to 16 integers in {lo}..{hi}, got {values!r}")
    return tuple(int(v) for v in out)


def image_features(
    image,
    *,
    scales: Sequence[int] = (1, 2, 4),
    glcm_distances: Sequence[int] = (1, 2, 4),
    levels: int = 32,
) -> dict:
    """Texture and intensity features of one image or tile.

    Intensity statistics (mean, std, percentiles, skewness, kurtosis,
    histogram entropy), GLCM properties (contrast, dissimilarity,
    homogeneity, energy, correlation; mean and spread over four angles),
    uniform LBP histograms (8 points radius 1, 16 points radius 2), Sobel
    edge strength and edge density, and FFT radial band powers with an
    orientation-anisotropy measure. Texture is computed on a 1-99 percentile
    stretched copy at each of ``scales`` (block-mean downsampling factors).

    Parameters
    ----------
    image : ndarray
        2-D image or tile.
    scales : sequence of int
        Block-mean downsampling factors at which texture is computed.
    glcm_distances : sequence of int
        Pixel distances of the GLCM.
    levels : int
        Gray levels the image is quantised to for the GLCM.

    Returns
    -------
    dict
        Feature name -> value (the same names for every image).
    """
    from scipy import stats
    from skimage.transform import downscale_local_mean

    img = check_image(to_grayscale(np.asarray(image)), min_size=8)
    scales, glcm_distances = _int_list(scales, "scales", 1, 64), _int_list(glcm_distances, "glcm_distances", 1, 256)
    if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or not 2 <= levels <= 256:
        raise SEMAnalysisError(f"levels must be an integer in 2..256, got {levels!r}")
    img = _to_unit_float(img)
    out: dict[str, float] = {}
    v = img.ravel()
    pct = np.percentile(v, (1, 5, 25, 50, 75, 95, 99))
    out["int_mean"] = float(v.mean())
    out["int_std"] = float(v.std())
    for p, val in zip((1, 5, 25, 50, 75, 95, 99), pct):
        out[f"int_p{p}"] = float(val)
    out["int_iqr"] = float(pct[4] - pct[2])
    with np.errstate(all="ignore"):
        out["int_skew"] = float(np.nan_to_num(stats.skew(v)))
        out["int_kurtosis"] = float(np.nan_to_num(stats.kurtosis(v)))
    hist, _ = np.histogram(v, bins=64, range=(float(pct[0]), float(pct[-1]) + 1e-6))
    hist = hist / max(hist.sum(), 1)
    out["int_entropy"] = float(-(hist[hist > 0] * np.log2(hist[hist > 0])).sum())
    for s in scales:
        s = int(s)
        im = img if s == 1 else downscale_local_mean(img, (s, s)).astype(np.float32)
        if min(im.shape) < 8:
            im = img  # too small to downsample: repeat full resolution for a fixed feature set
        out.update(_texture_features(im, f"s{s}_", glcm_distances, int(levels)))
    return out


FEATURE_SETS = ("texture", "fibers", "all")


def feature_vector(image, *, feature_set: str = "texture", scales: Sequence[int] = (1, 2, 4)) -> dict:
    """The features of one image for a feature set.

    ``"texture"``: :func:`image_features`. ``"fibers"``: the physical fibre
    features of :func:`napari_sem_analysis.fiber_features` (bead density,
    diameter spread, ...; scale-free). ``"all"``: both.
    """
    if feature_set not in FEATURE_SETS:
        raise SEMAnalysisError(f"feature_set must be one of {FEATURE_SETS}, got {feature_set!r}")
    out: dict = {}
    if feature_set in ("texture", "all"):
        out.update(image_features(image, scales=scales))
    if feature_set in ("fibers", "all"):
        from ..fibers import fiber_features

        img = check_image(to_grayscale(np.asarray(image)), min_size=16)
        out.update(fiber_features(img))
    return out


def _features_matrix(images, scales, progress=None, cancel=None, feature_set: str = "texture"):
    rows = []
    names = None
    n = len(images)
    for i, im in enumerate(images):
        if cancel is not None and cancel():
            raise _Cancelled()
        f = feature_vector(im, feature_set=feature_set, scales=scales)
        if names is None:
            names = list(f)
        rows.append([f[k] for k in names])
        if progress is not None:
            progress(i + 1, n)
    return np.asarray(rows, dtype=np.float64), names
