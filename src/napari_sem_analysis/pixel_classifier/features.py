"""Multi-scale pixel features for the trainable pixel classifier.

Every feature is a 2-D float32 map computed with separable OpenCV filters:
a Gaussian at each scale (sigma, in pixels) and cheap 3-tap finite
differences on the smoothed image. The groups are

* ``intensity``: Gaussian-smoothed intensity (plus the raw image once);
* ``gradient``: gradient magnitude of the smoothed image (scale-normalised);
* ``laplacian``: Laplacian of Gaussian (scale-normalised);
* ``hessian``: the two Hessian eigenvalues (ridges, valleys, blobs);
* ``structure``: the two structure-tensor eigenvalues (gradients at sigma/2,
  averaged over a window of about sigma: edges and oriented texture);
* ``std``: local standard deviation over a window of about sigma (texture).

The averaging windows of ``structure`` and ``std`` are stack blurs (tent
filters with the standard deviation sigma, from sigma = 3 px), whose cost does not grow with
the scale; everything else uses exact Gaussians.

Features are computed on an image normalised to about [0, 1] by its own
0.5 / 99.5 percentiles (so images of other brightness, contrast or bit depth
can be classified with one model). Large images are processed in tiles with
a halo wide enough for every filter, so that tiled features equal those of
the whole image. :class:`FeatureCache` keeps computed tiles keyed by the
image content and the settings, so that retraining after a new stroke does
not recompute them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._validation import SEMAnalysisError, check_image, check_positive, to_grayscale

__all__ = [
    "DEFAULT_GROUPS",
    "DEFAULT_SCALES",
    "FEATURE_GROUPS",
    "FeatureCache",
    "FeatureSettings",
    "normalization_range",
    "pixel_features",
]

FEATURE_GROUPS = ("intensity", "gradient", "laplacian", "hessian", "structure", "std")
DEFAULT_GROUPS = FEATURE_GROUPS
DEFAULT_SCALES = (1.0, 2.0, 4.0, 8.0, 16.0)
_NORMALIZE = ("percentile", "dtype", "none")
_MAX_SCALES = 16
_MAX_SIGMA_PX = 256.0


@dataclass(frozen=True)
class FeatureSettings:
    """Which features at which scales (sigmas in pixels), and how intensities are normalised."""

    groups: tuple = DEFAULT_GROUPS
    scales: tuple = DEFAULT_SCALES
    normalize: str = "percentile"

    def __post_init__(self):
        groups = _check_groups(self.groups)
        scales = _check_scales(self.scales, "scales")
        if self.normalize not in _NORMALIZE:
            raise SEMAnalysisError(f"normalize must be one of {_NORMALIZE}, got {self.normalize!r}")
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "scales", scales)

    @property
    def names(self) -> list[str]:
        """Names of the features in stack order (scales in px)."""
        return feature_names(self.groups, self.scales)

    @property
    def n_features(self) -> int:
        return len(self.names)

    @property
    def halo(self) -> int:
        """Pixels of context each side of a tile that make tiled features exact."""
        return feature_halo(self.groups, self.scales)


def _check_groups(groups) -> tuple:
    if isinstance(groups, str):
        groups = FEATURE_GROUPS if groups in ("all", "default") else (groups,)
    try:
        groups = tuple(str(g) for g in groups)
    except TypeError:
        raise SEMAnalysisError(f"features must be a list of feature groups, got {groups!r}") from None
    bad = [g for g in groups if g not in FEATURE_GROUPS]
    if bad:
        raise SEMAnalysisError(f"unknown feature group(s) {bad}; choose from {list(FEATURE_GROUPS)}")
    if not groups:
        raise SEMAnalysisError("at least one feature group is needed")
    # canonical order, no duplicates
    return tuple(g for g in FEATURE_GROUPS if g in groups)


def _check_scales(scales, name: str) -> tuple:
    try:
        values = [float(s) for s in np.atleast_1d(np.asarray(scales, dtype=float))]
    except (TypeError, ValueError):
        raise SEMAnalysisError(f"{name} must be a list of numbers, got {scales!r}") from None
    if not values:
        raise SEMAnalysisError(f"{name} must not be empty")
    if len(values) > _MAX_SCALES:
        raise SEMAnalysisError(f"at most {_MAX_SCALES} {name} are supported, got {len(values)}")
    for v in values:
        check_positive(v, name)
    return tuple(sorted(set(values)))


def scales_to_px(scales, unit: str = "px", pixel_size: float | None = None) -> tuple:
    """Sigmas in pixels from sigmas in ``unit`` (``"px"`` or ``"nm"``)."""
    scales = _check_scales(scales, "scales")
    if unit in ("px", "pixel", "pixels"):
        px = scales
    elif unit == "nm":
        if pixel_size is None:
            raise SEMAnalysisError("the feature scales are given in nm but the image's pixel size is unknown")
        p = check_positive(pixel_size, "pixel_size")
        px = tuple(s / p for s in scales)
    else:
        raise SEMAnalysisError(f"scale unit must be 'px' or 'nm', got {unit!r}")
    for s in px:
        if s < 0.3:
            raise SEMAnalysisError(f"a feature scale of {s:.3g} px is below the pixel grid (>= 0.3 px needed)")
        if s > _MAX_SIGMA_PX:
            raise SEMAnalysisError(f"a feature scale of {s:.4g} px is too large (at most {_MAX_SIGMA_PX:g} px)")
    return tuple(round(s, 6) for s in px)


def _fmt(s: float) -> str:
    return f"{s:g}"


def feature_names(groups, scales, unit: str = "px") -> list[str]:
    """Feature names in stack order for ``groups`` at ``scales`` (in ``unit``)."""
    names = ["intensity raw"] if "intensity" in groups else []
    for s in scales:
        for g in groups:
            if g in ("hessian", "structure"):
                names += [f"{g} eig1 s={_fmt(s)} {unit}", f"{g} eig2 s={_fmt(s)} {unit}"]
            else:
                names.append(f"{g} s={_fmt(s)} {unit}")
    return names


def _radius(sigma: float) -> int:
    # OpenCV's Gaussian kernel size for float images: cvRound(sigma * 8 + 1) | 1
    ksize = int(np.floor(sigma * 8 + 1 + 0.5)) | 1
    return ksize // 2


_STACK_BLUR_FROM = 3.0  # windows below this sigma are exact Gaussians (cheap at that size)


def _window_radius(sigma: float) -> int:
    if sigma < _STACK_BLUR_FROM:
        return _radius(sigma)
    # a stack blur (tent filter) of radius r has a standard deviation of about (r + 1) / sqrt(6)
    return max(1, round(np.sqrt(6.0) * sigma - 1))


def feature_halo(groups, scales) -> int:
    """Context (px) needed around a tile so that its features equal the whole image's."""
    halo = 0
    for s in scales:
        r = _radius(s)
        if any(g in groups for g in ("gradient", "laplacian", "hessian")):
            r = max(r, _radius(s) + 2)
        if "std" in groups:
            r = max(r, _window_radius(s))
        if "structure" in groups:
            r = max(r, _radius(max(s / 2, 0.5)) + 1 + _window_radius(s))
        halo = max(halo, r)
    return halo + 1


# ---------------------------------------------------------------------------
# normalisation
# ---------------------------------------------------------------------------


def normalization_range(image, normalize: str = "percentile") -> tuple[float, float]:
    """Intensity range ``(lo, hi)`` mapped to [0, 1] before computing features.

    ``"percentile"``: the 0.5 and 99.5 percentiles of the image (of a strided
    subsample of at most ~1 Mpx); ``"dtype"``: the integer dtype's range
    (floats: 0..1); ``"none"``: (0, 1).
    """
    arr = np.asarray(image)
    if normalize == "none":
        return 0.0, 1.0
    if normalize == "dtype":
        if np.issubdtype(arr.dtype, np.integer):
            info = np.iinfo(arr.dtype)
            return float(info.min), float(info.max)
        return 0.0, 1.0
    if normalize != "percentile":
        raise SEMAnalysisError(f"normalize must be one of {_NORMALIZE}, got {normalize!r}")
    step = max(1, int(np.ceil(np.sqrt(arr.size / 1_000_000))))
    sample = arr[::step, ::step].astype(np.float32, copy=False)
    lo, hi = np.percentile(sample, (0.5, 99.5))
    if not hi > lo:
        lo, hi = float(sample.min()), float(sample.max())
        if not hi > lo:
            hi = lo + 1.0
    return float(lo), float(hi)


def image_key(image: np.ndarray) -> str:
    """Content hash of an image (shape, dtype and bytes)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.shape}{arr.dtype.str}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def prepare_image(image, name: str = "image") -> np.ndarray:
    """Check an image and return it 2-D (colour with equal channels taken as gray)."""
    arr = np.asarray(image) if image is not None else None
    if arr is not None and arr.ndim == 3 and arr.shape[-1] in (3, 4) and min(arr.shape[:2]) > 4:
        arr = to_grayscale(arr)
    arr = check_image(arr, name=name, ndim=(2,), min_size=2)
    return arr


# ---------------------------------------------------------------------------
# the filters
# ---------------------------------------------------------------------------

_D1 = np.array([-0.5, 0.0, 0.5], np.float32)
_D2 = np.array([1.0, -2.0, 1.0], np.float32)
_ONE = np.array([1.0], np.float32)


def _gauss(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def _window(img: np.ndarray, sigma: float) -> np.ndarray:
    """Local mean over a window of about ``sigma`` (stack blur: O(1) per pixel at any size)."""
    import cv2

    if sigma < _STACK_BLUR_FROM:
        return _gauss(img, sigma)
    k = 2 * _window_radius(sigma) + 1
    return cv2.stackBlur(img, (k, k))


def _sep(img: np.ndarray, kx: np.ndarray, ky: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.sepFilter2D(img, cv2.CV_32F, kx, ky, borderType=cv2.BORDER_REFLECT)


def _eig2(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (larger, smaller) of the symmetric 2x2 matrices [[a, c], [c, b]]."""
    mean = (a + b) * 0.5
    diff = (a - b) * 0.5
    root = np.sqrt(diff * diff + c * c)
    return mean + root, mean - root


def _feature_planes(img: np.ndarray, settings: FeatureSettings):
    """Yield the feature planes of a float32 image in :func:`feature_names` order."""
    groups = settings.groups
    if "intensity" in groups:
        yield img
    sq = img * img if "std" in groups else None
    smoothed: dict = {}

    def gauss(sigma):
        if sigma not in smoothed:
            smoothed[sigma] = _gauss(img, sigma)
        return smoothed[sigma]

    for s in settings.scales:
        g = gauss(s)
        needs_d1 = "gradient" in groups or "hessian" in groups
        gx = _sep(g, _D1, _ONE) if needs_d1 else None
        gy = _sep(g, _ONE, _D1) if needs_d1 else None
        gxx = gyy = None
        if "laplacian" in groups or "hessian" in groups:
            gxx = _sep(g, _D2, _ONE)
            gyy = _sep(g, _ONE, _D2)
        for group in groups:
            if group == "intensity":
                yield g
            elif group == "gradient":
                yield np.sqrt(gx * gx + gy * gy) * np.float32(s)
            elif group == "laplacian":
                yield (gxx + gyy) * np.float32(s * s)
            elif group == "hessian":
                gxy = _sep(gx, _ONE, _D1)
                s2 = np.float32(s * s)
                e1, e2 = _eig2(gxx * s2, gyy * s2, gxy * s2)
                yield e1
                yield e2
            elif group == "structure":
                gd = gauss(max(s / 2, 0.5))
                dx = _sep(gd, _D1, _ONE)
                dy = _sep(gd, _ONE, _D1)
                s2 = np.float32(s * s)
                jxx = _window(dx * dx, s) * s2
                jyy = _window(dy * dy, s) * s2
                jxy = _window(dx * dy, s) * s2
                e1, e2 = _eig2(jxx, jyy, jxy)
                yield e1
                yield e2
            elif group == "std":
                mean = _window(img, s)
                var = _window(sq, s) - mean * mean
                yield np.sqrt(np.maximum(var, 0, out=var))


def compute_features(
    image: np.ndarray,
    settings: FeatureSettings,
    lo_hi: tuple[float, float],
    box: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Features of ``image[y0:y1, x0:x1]`` as an (h, w, F) float32 array.

    The box is read with a halo of context (clipped at the image border) so
    that the result equals the features of the whole image cropped to the box.
    """
    h_img, w_img = image.shape
    y0, y1, x0, x1 = box if box is not None else (0, h_img, 0, w_img)
    halo = settings.halo
    py0, py1 = max(0, y0 - halo), min(h_img, y1 + halo)
    px0, px1 = max(0, x0 - halo), min(w_img, x1 + halo)
    lo, hi = lo_hi
    crop = image[py0:py1, px0:px1].astype(np.float32)
    crop -= np.float32(lo)
    crop *= np.float32(1.0 / (hi - lo))
    out = np.empty((y1 - y0, x1 - x0, settings.n_features), np.float32)
    iy, ix = y0 - py0, x0 - px0
    for i, plane in enumerate(_feature_planes(crop, settings)):
        out[..., i] = plane[iy : iy + (y1 - y0), ix : ix + (x1 - x0)]
    return out


def tile_boxes(shape, tile_size: int, region=None) -> list[tuple[int, int, int, int]]:
    """Tiles ``(y0, y1, x0, x1)`` of a fixed grid covering ``region`` (default: the whole image)."""
    h, w = shape
    ry0, ry1, rx0, rx1 = region if region is not None else (0, h, 0, w)
    boxes = []
    for y in range((ry0 // tile_size) * tile_size, ry1, tile_size):
        for x in range((rx0 // tile_size) * tile_size, rx1, tile_size):
            boxes.append((max(y, ry0), min(y + tile_size, ry1, h), max(x, rx0), min(x + tile_size, rx1, w)))
    return boxes


class FeatureCache:
    """Feature tiles kept by image content, settings and box, least-recently-used first out.

    Parameters
    ----------
    max_bytes : int
        Memory the cached feature tiles may take (default 1 GiB).
    """

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = int(max_bytes)
        self._tiles: OrderedDict = OrderedDict()
        self._ranges: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        with self._lock:
            self._tiles.clear()
            self._ranges.clear()
            self._bytes = 0

    @property
    def nbytes(self) -> int:
        return self._bytes

    def lo_hi(self, key: str, image: np.ndarray, normalize: str) -> tuple[float, float]:
        with self._lock:
            k = (key, normalize)
            if k not in self._ranges:
                self._ranges[k] = normalization_range(image, normalize)
                while len(self._ranges) > 64:
                    self._ranges.popitem(last=False)
            return self._ranges[k]

    def get(self, key: str, image: np.ndarray, settings: FeatureSettings, box, lo_hi) -> np.ndarray:
        k = (key, settings, tuple(int(v) for v in box))
        with self._lock:
            if k in self._tiles:
                self._tiles.move_to_end(k)
                self.hits += 1
                return self._tiles[k]
        feats = compute_features(image, settings, lo_hi, box)
        with self._lock:
            self.misses += 1
            if feats.nbytes <= self.max_bytes:
                self._tiles[k] = feats
                self._bytes += feats.nbytes
                while self._bytes > self.max_bytes and self._tiles:
                    _, old = self._tiles.popitem(last=False)
                    self._bytes -= old.nbytes
        return feats


def pixel_features(
    image,
    *,
    features=DEFAULT_GROUPS,
    scales: Sequence[float] = DEFAULT_SCALES,
    unit: str = "px",
    pixel_size: float | None = None,
    normalize: str = "percentile",
) -> tuple[np.ndarray, list[str]]:
    """The feature stack the pixel classifier sees, for display or other models.

    Parameters
    ----------
    image : array (Y, X)
        Grayscale image (colour with equal channels is taken as gray).
    features : sequence of str
        Feature groups, from ``FEATURE_GROUPS``.
    scales : sequence of float
        Gaussian sigmas, in ``unit``.
    unit : {"px", "nm"}
        Unit of ``scales``; ``"nm"`` needs ``pixel_size``.
    pixel_size : float, optional
        Pixel size in nm.
    normalize : {"percentile", "dtype", "none"}
        Intensity normalisation before filtering.

    Returns
    -------
    stack : ndarray (F, Y, X) float32
        One plane per feature (napari shows it as a stack).
    names : list of str
        Feature names (scales in px).
    """
    img = prepare_image(image)
    settings = FeatureSettings(features, scales_to_px(scales, unit, pixel_size), normalize)
    feats = compute_features(img, settings, normalization_range(img, normalize))
    return np.ascontiguousarray(np.moveaxis(feats, -1, 0)), settings.names
