"""Image enhancement for SEM micrographs: CLAHE, denoising, background correction.

All functions take a 2-D grayscale image (uint8, uint16 or float) and return
an image of the same shape. Integer dtypes are preserved; float input is
processed in float (or rescaled internally where OpenCV needs integers) and
returned as float. 3-D (Z, Y, X) stacks are processed plane by plane.

Lengths (tile size, filter size, background scale) are in pixels by default,
or in nm with ``unit="nm"`` and a ``pixel_size`` (nm per pixel).
"""

from __future__ import annotations

import cv2
import numpy as np

from ._validation import SEMAnalysisError, check_image, check_positive, per_plane, to_pixels

__all__ = ["clahe", "denoise", "correct_background"]

_DENOISE_METHODS = ("gaussian", "median", "bilateral", "nlm")
_BACKGROUND_METHODS = ("gaussian", "rolling_ball", "polynomial")


def _check_dtype(arr: np.ndarray, name: str = "image") -> np.ndarray:
    if arr.dtype in (np.uint8, np.uint16) or np.issubdtype(arr.dtype, np.floating):
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        # other integer types (int16, int32, uint32...): convert to float, result is float
        return arr.astype(np.float32)
    raise SEMAnalysisError(f"{name} has unsupported dtype {arr.dtype}")


def _float_to_uint16(arr: np.ndarray):
    """Rescale a float image to the full uint16 range; return (u16, lo, hi)."""
    lo = float(arr.min())
    hi = float(arr.max())
    span = hi - lo if hi > lo else 1.0
    u16 = np.round((arr.astype(np.float64) - lo) * (65535.0 / span)).astype(np.uint16)
    return u16, lo, hi


def _from_uint16(u16: np.ndarray, lo: float, hi: float, dtype) -> np.ndarray:
    span = hi - lo if hi > lo else 1.0
    out = u16.astype(np.float32) * np.float32(span / 65535.0) + np.float32(lo)
    return out.astype(dtype if np.issubdtype(dtype, np.floating) else np.float32, copy=False)


def _check_not_constant(arr: np.ndarray, name: str = "image") -> None:
    """Raise for a constant image.

    A strided sample of a few thousand pixels settles it for almost every real
    image; only when the sample is flat is the whole image scanned (one fast
    OpenCV pass instead of min() and max()).
    """
    flat = arr.reshape(-1)
    if flat.size > 8192 and np.any(flat[:: flat.size // 4096] != flat[0]):
        return
    if arr.ndim == 2 and arr.dtype in (np.uint8, np.uint16, np.float32, np.float64):
        lo, hi, _, _ = cv2.minMaxLoc(arr if arr.flags.c_contiguous else np.ascontiguousarray(arr))
    else:
        lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        raise SEMAnalysisError(f"{name} is constant (every pixel is {lo:g})")


# --------------------------------------------------------------------------- CLAHE
@per_plane
def clahe(
    image,
    *,
    clip_limit: float = 2.0,
    tile_size: float = 128,
    pixel_size: float | None = None,
    unit: str = "px",
) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (OpenCV-backed).

    Parameters
    ----------
    image : ndarray
        2-D grayscale image (or a 3-D stack, processed plane by plane).
        uint8 and uint16 are processed natively and keep their dtype; float
        input is rescaled to its own min..max, equalised, and returned as
        float32 in [0, 1] (like :func:`skimage.exposure.equalize_adapthist`).
    clip_limit : float
        OpenCV contrast limit: how many times the mean histogram bin count a
        bin may reach before it is clipped (1 = no contrast enhancement,
        2-4 typical, 40 is OpenCV's default).
    tile_size : float
        Edge length of one contextual tile, in ``unit``. The image is divided
        into ``round(height / tile_size) x round(width / tile_size)`` tiles
        (at least 1). Images smaller than one tile are processed as a single
        tile.
    pixel_size : float, optional
        nm per pixel, needed when ``unit="nm"``.
    unit : {"px", "nm"}

    Returns
    -------
    ndarray
        Same shape; same dtype for uint8/uint16, float32 in [0, 1] for float input.
    """
    arr = _check_dtype(check_image(image))
    _check_not_constant(arr)
    clip = check_positive(clip_limit, "clip_limit", maximum=1000)
    tile = to_pixels(tile_size, pixel_size, unit=unit, name="tile_size")
    if tile < 2:
        raise SEMAnalysisError(f"tile_size must be at least 2 pixels, got {tile:.3g} px")
    h, w = arr.shape
    grid = (max(1, int(round(w / tile))), max(1, int(round(h / tile))))  # OpenCV wants (cols, rows)
    op = cv2.createCLAHE(clipLimit=clip, tileGridSize=grid)
    if arr.dtype in (np.uint8, np.uint16):
        return _apply_clahe(op, arr, grid)
    u16, _, _ = _float_to_uint16(arr)
    out = _apply_clahe(op, u16, grid)
    return out.astype(np.float32) / np.float32(65535.0)


def _apply_clahe(op, arr: np.ndarray, grid) -> np.ndarray:
    h, w = arr.shape
    # OpenCV pads to a multiple of the tile grid by reflection, which needs
    # at least 2 pixels per axis; replicate-pad tiny images and crop back.
    if h < 2 or w < 2:
        padded = cv2.copyMakeBorder(arr, 0, max(0, 2 - h), 0, max(0, 2 - w), cv2.BORDER_REPLICATE)
        return op.apply(padded)[:h, :w]
    if not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr)
    return op.apply(arr)


# --------------------------------------------------------------------------- denoise
@per_plane
def denoise(
    image,
    method: str = "gaussian",
    *,
    size: float | None = None,
    strength: float | None = None,
    pixel_size: float | None = None,
    unit: str = "px",
    keep_dtype: bool = True,
) -> np.ndarray:
    """Reduce noise with a Gaussian, median, bilateral or non-local-means filter.

    Parameters
    ----------
    image : ndarray
        2-D grayscale image (3-D stacks processed plane by plane).
    method : {"gaussian", "median", "bilateral", "nlm"}
        * ``gaussian``: Gaussian blur, ``size`` = sigma (default 1 px).
        * ``median``: median filter, ``size`` = radius (default 1 px -> 3x3).
        * ``bilateral``: edge-preserving bilateral filter, ``size`` = spatial
          sigma (default 2 px); ``strength`` = intensity sigma as a fraction of
          the image's intensity range (default 0.1).
        * ``nlm``: OpenCV fast non-local means, ``size`` = patch radius
          (default 3 px -> 7x7 patches, search window 3x the patch);
          ``strength`` = filter strength h in the image's intensity units
          (default: 1.0 x the noise sigma estimated from the image).
    size : float, optional
        Filter size in ``unit`` (see above).
    strength : float, optional
        Method-specific strength (bilateral and nlm only).
    pixel_size : float, optional
        nm per pixel, needed when ``unit="nm"``.
    unit : {"px", "nm"}
    keep_dtype : bool
        True (default): the result has the image's dtype (an 8-bit image stays
        8-bit, rounded). False: the Gaussian is computed and returned in float32
        without rounding, as the ``particles`` preset smooths before thresholding
        (other methods: their result as float32).

    Returns
    -------
    ndarray
        Same shape and dtype (float input returns float32/float64 as given);
        float32 with ``keep_dtype=False``.
    """
    arr = _check_dtype(check_image(image))
    if method not in _DENOISE_METHODS:
        raise SEMAnalysisError(f"method must be one of {_DENOISE_METHODS}, got {method!r}")
    defaults = {"gaussian": 1.0, "median": 1.0, "bilateral": 2.0, "nlm": 3.0}
    s = defaults[method] if size is None else to_pixels(size, pixel_size, unit=unit, name="size")
    if s <= 0:
        raise SEMAnalysisError(f"size must be > 0, got {size!r}")
    if s > max(arr.shape):
        raise SEMAnalysisError(f"filter size {s:.3g} px is larger than the image ({arr.shape[0]}x{arr.shape[1]} px)")
    is_float = np.issubdtype(arr.dtype, np.floating)
    if not keep_dtype:
        if method == "gaussian":
            arr = arr.astype(np.float32)  # no rounding of the smoothed 8/16-bit image
        else:
            return denoise(arr, method, size=s, strength=strength).astype(np.float32, copy=False)
    if method == "gaussian":
        work = arr.astype(np.float32) if arr.dtype == np.float64 else arr
        ksize = int(2 * np.ceil(3 * s) + 1)
        out = cv2.GaussianBlur(work, (ksize, ksize), sigmaX=s, sigmaY=s, borderType=cv2.BORDER_REFLECT)
        return out.astype(arr.dtype, copy=False)
    if method == "median":
        r = max(1, int(round(s)))
        k = 2 * r + 1
        if arr.dtype == np.uint8 or (k <= 5 and arr.dtype in (np.uint16, np.float32)):
            return cv2.medianBlur(np.ascontiguousarray(arr), k)
        from scipy import ndimage as ndi

        return ndi.median_filter(arr, size=k, mode="reflect")
    if method == "bilateral":
        frac = 0.1 if strength is None else check_positive(strength, "strength")
        lo, hi = float(arr.min()), float(arr.max())
        sigma_color = frac * (hi - lo if hi > lo else 1.0)
        d = int(2 * np.ceil(2 * s) + 1)
        if arr.dtype == np.uint8:
            return cv2.bilateralFilter(arr, d, sigma_color, s)
        out = cv2.bilateralFilter(arr.astype(np.float32), d, sigma_color, s)
        if is_float:
            return out.astype(arr.dtype, copy=False)
        return np.clip(np.round(out), 0, np.iinfo(arr.dtype).max).astype(arr.dtype)
    # non-local means
    r = max(1, int(round(s)))
    template = 2 * r + 1
    search = 3 * template if (3 * template) % 2 == 1 else 3 * template + 1
    if arr.dtype == np.uint8:
        work, lo, hi = arr, 0.0, 255.0
    elif arr.dtype == np.uint16:
        work, lo, hi = arr, 0.0, 65535.0
    else:
        work, lo, hi = _float_to_uint16(arr)
    if strength is None:
        h = max(estimate_noise(work), 1e-3)
    else:
        h = check_positive(strength, "strength")
        if is_float:  # strength given in the float image's units
            h = h * 65535.0 / ((hi - lo) or 1.0)
    if work.dtype == np.uint8:
        out = cv2.fastNlMeansDenoising(work, None, h=h, templateWindowSize=template, searchWindowSize=search)
    else:
        out = cv2.fastNlMeansDenoising(work, [float(h)], None, template, search, cv2.NORM_L1)
    if is_float:
        return _from_uint16(out, lo, hi, arr.dtype)
    return out


def estimate_noise(image) -> float:
    """Standard deviation of white Gaussian noise in a 2-D image (Immerkaer, 1996).

    The image is convolved with a Laplacian-difference kernel that cancels
    smooth structure; the mean absolute response is proportional to the
    noise sigma.
    """
    arr = np.asarray(image, dtype=np.float32)
    if min(arr.shape) < 3:
        return float(arr.std())
    k = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    resp = cv2.filter2D(arr, -1, k, borderType=cv2.BORDER_REFLECT)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2.0) * np.abs(resp).mean() / 6.0)


# --------------------------------------------------------------------------- background
def _downscale_factor(shape, scale_px: float) -> int:
    """Downsampling factor so that a background of scale ``scale_px`` stays well sampled."""
    return int(max(1, min(scale_px / 8.0, min(shape) / 16.0)))


@per_plane
def correct_background(
    image,
    method: str = "gaussian",
    *,
    size: float = 50,
    mode: str = "subtract",
    light_background: bool = False,
    order: int = 2,
    pixel_size: float | None = None,
    unit: str = "px",
    return_background: bool = False,
):
    """Remove slow shading and charging gradients.

    The background is estimated at a scale much larger than the objects and
    removed by subtraction (the mean background level is added back, so the
    result keeps the image's brightness) or by division (flat-field).

    Parameters
    ----------
    image : ndarray
        2-D grayscale image (3-D stacks processed plane by plane).
    method : {"gaussian", "rolling_ball", "polynomial"}
        * ``gaussian``: a large-scale Gaussian blur (sigma = ``size``).
        * ``rolling_ball``: the surface under a ball of radius ``size``
          rolled under the intensity landscape (scikit-image's rolling ball,
          computed on a downsampled image for speed); objects brighter than
          the background are preserved exactly. For dark objects on a bright
          background set ``light_background=True``.
        * ``polynomial``: a least-squares 2-D polynomial surface of degree
          ``order`` (typical for charging gradients and detector tilt).
    size : float
        Background scale in ``unit``: should be larger than the largest object.
    mode : {"subtract", "divide"}
    light_background : bool
        The objects are darker than the background (rolling ball only).
    order : int
        Polynomial degree (polynomial only, 1-4).
    pixel_size : float, optional
        nm per pixel, needed when ``unit="nm"``.
    unit : {"px", "nm"}
    return_background : bool
        Also return the estimated background (float32).

    Returns
    -------
    corrected : ndarray
        Same shape and dtype as ``image`` (integers clipped to the dtype's range).
    background : ndarray, optional
        Only with ``return_background=True``.
    """
    arr = _check_dtype(check_image(image, allow_constant=False))
    if method not in _BACKGROUND_METHODS:
        raise SEMAnalysisError(f"method must be one of {_BACKGROUND_METHODS}, got {method!r}")
    if mode not in ("subtract", "divide"):
        raise SEMAnalysisError(f"mode must be 'subtract' or 'divide', got {mode!r}")
    s = to_pixels(size, pixel_size, unit=unit, name="size")
    h, w = arr.shape
    if method != "polynomial":
        if s < 1:
            raise SEMAnalysisError(f"size must be at least 1 pixel, got {s:.3g} px")
        if s > 2 * max(h, w):
            # a background that much larger than the image is a constant: the
            # step would do nothing (and the filter would be huge)
            raise SEMAnalysisError(
                f"background scale {s:.3g} px is more than twice the image size ({h}x{w} px); "
                "use a scale a few times the largest object"
            )
    img = arr.astype(np.float32)
    if method == "polynomial":
        order = int(order)
        if not 0 <= order <= 4:
            raise SEMAnalysisError(f"order must be between 0 and 4, got {order}")
        bg = _polynomial_background(img, order)
    else:
        f = _downscale_factor(img.shape, s)
        small = cv2.resize(img, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA) if f > 1 else img
        ss = s / f
        if method == "gaussian":
            ksize = int(2 * np.ceil(3 * ss) + 1)
            bg_small = cv2.GaussianBlur(small, (ksize, ksize), sigmaX=ss, borderType=cv2.BORDER_REFLECT)
        else:
            from skimage.restoration import rolling_ball

            work = -small if light_background else small
            bg_small = rolling_ball(work, radius=max(ss, 1.0))
            if light_background:
                bg_small = -bg_small
            bg_small = bg_small.astype(np.float32)
        bg = cv2.resize(bg_small, (w, h), interpolation=cv2.INTER_LINEAR) if f > 1 else bg_small
    level = float(bg.mean())
    if mode == "subtract":
        out = img - bg + level
    else:
        out = img / np.maximum(bg, 1e-6 * max(abs(level), 1e-6)) * level
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        out = np.clip(np.round(out), info.min, info.max).astype(arr.dtype)
    else:
        out = out.astype(arr.dtype, copy=False)
    if return_background:
        return out, bg.astype(np.float32)
    return out


def _polynomial_background(img: np.ndarray, order: int) -> np.ndarray:
    h, w = img.shape
    step = max(1, int(np.sqrt(h * w / 40000)))  # fit on <= ~40k samples
    ys, xs = np.mgrid[0:h:step, 0:w:step]
    yn = ys.ravel() / max(h - 1, 1) * 2 - 1
    xn = xs.ravel() / max(w - 1, 1) * 2 - 1
    terms = [(i, j) for i in range(order + 1) for j in range(order + 1 - i)]
    a = np.stack([xn**i * yn**j for i, j in terms], axis=1)
    coef, *_ = np.linalg.lstsq(a, img[::step, ::step].ravel().astype(np.float64), rcond=None)
    yy = (np.arange(h) / max(h - 1, 1) * 2 - 1)[:, None]
    xx = (np.arange(w) / max(w - 1, 1) * 2 - 1)[None, :]
    bg = np.zeros((h, w), np.float64)
    for c, (i, j) in zip(coef, terms):
        bg += c * (xx**i) * (yy**j)
    return bg.astype(np.float32)
