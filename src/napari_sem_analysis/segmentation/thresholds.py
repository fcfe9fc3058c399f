"""Global and local thresholds (:func:`threshold`) and multi-level Otsu (:func:`multi_threshold`)."""

from __future__ import annotations

import cv2
import numpy as np

from .._validation import (
    SEMAnalysisError,
    check_finite,
    check_image,
    per_plane,
    to_pixels,
)

GLOBAL_METHODS = ("otsu", "li", "yen", "triangle", "isodata", "mean", "minimum")
LOCAL_METHODS = ("sauvola", "niblack", "local_mean")
THRESHOLD_METHODS = GLOBAL_METHODS + LOCAL_METHODS


def _histogram_safe(arr: np.ndarray) -> np.ndarray:
    """Wide integer images as float64: skimage histograms integers by value (uint64 max: an IndexError,
    int64 extremes: a 2**64-bin histogram)."""
    if np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize >= 4:
        return arr.astype(np.float64)
    return arr


#: Li's iteration on a float image can flip for ever between two values closer than a grey level
#: but further apart than scikit-image's tolerance (seen on a NASA superalloy micrograph blurred in
#: float32: 170.53012 <-> 170.5302); after this many steps the last two values are averaged
LI_MAX_ITER = 200


class _LiCycle(Exception):
    pass


def _threshold_li(arr: np.ndarray) -> float:
    """scikit-image's ``threshold_li``, stopped after ``LI_MAX_ITER`` steps (the mean of the last two)."""
    from skimage.filters import threshold_li

    seen: list[float] = []

    def step(t):
        seen.append(float(t))
        if len(seen) > LI_MAX_ITER:
            raise _LiCycle

    try:
        return float(threshold_li(arr, iter_callback=step))
    except _LiCycle:
        return float(np.mean(seen[-2:]))


def _local_stats(img: np.ndarray, w: int):
    """Local mean and standard deviation over a w x w window (box filters)."""
    mean = cv2.boxFilter(img, cv2.CV_64F, (w, w), borderType=cv2.BORDER_REFLECT)
    sq = cv2.boxFilter(img * img, cv2.CV_64F, (w, w), borderType=cv2.BORDER_REFLECT)
    std = np.sqrt(np.maximum(sq - mean * mean, 0))
    return mean, std


@per_plane
def threshold(
    image,
    method: str = "otsu",
    *,
    dark_objects: bool = False,
    window_size: float = 51,
    k: float | None = None,
    offset: float = 0.0,
    pixel_size: float | None = None,
    unit: str = "px",
    return_threshold: bool = False,
):
    """Binary mask of the objects by a global or local threshold.

    Parameters
    ----------
    image : ndarray
        2-D grayscale image (3-D stacks plane by plane).
    method : str
        Global: ``otsu``, ``li``, ``yen``, ``triangle``, ``isodata``,
        ``mean``, ``minimum`` (scikit-image's algorithms). Local (a threshold
        per pixel from a ``window_size`` neighbourhood): ``sauvola``,
        ``niblack``, ``local_mean``.
    dark_objects : bool
        The objects are darker than the background (pores, cracks): the mask
        is ``image <= t`` instead of ``image > t``.
    window_size : float
        Side of the local window in ``unit`` (local methods only; made odd).
    k : float, optional
        Sauvola / Niblack parameter (default 0.2, scikit-image's formulas:
        Niblack ``T = m - k s``, Sauvola ``T = m (1 + k (s / R - 1))``).
    offset : float
        Added to the threshold (in image intensity units).
    pixel_size : float, optional
        nm per pixel, for ``unit="nm"``.
    unit : {"px", "nm"}
    return_threshold : bool
        Also return the threshold (a float for global methods, an array for
        local ones).

    Returns
    -------
    mask : ndarray of bool
    """
    arr = _histogram_safe(check_image(image, allow_constant=False))
    if method not in THRESHOLD_METHODS:
        raise SEMAnalysisError(f"method must be one of {THRESHOLD_METHODS}, got {method!r}")
    offset = check_finite(offset, "offset")
    if k is not None:
        k = check_finite(k, "k")
        if abs(k) > 10:
            raise SEMAnalysisError(f"k must be between -10 and 10 (typically 0.1-0.5), got {k!r}")
    if method in GLOBAL_METHODS:
        from skimage import filters

        if method == "otsu" and arr.dtype == np.uint8:
            t, _ = cv2.threshold(np.ascontiguousarray(arr), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
            t = float(t) + 0.0
        else:
            func = _threshold_li if method == "li" else getattr(filters, f"threshold_{method}")
            try:
                t = float(func(arr))
            except RuntimeError as err:  # e.g. minimum: histogram not bimodal
                raise SEMAnalysisError(f"threshold method {method!r} failed on this image: {err}") from None
        t += float(offset)
        # cv2's Otsu returns the last value of the lower class; the others
        # follow skimage's convention "object = image > t".
        mask = arr <= t if dark_objects else arr > t
    else:
        w = int(round(to_pixels(window_size, pixel_size, unit=unit, name="window_size")))
        w = w + 1 if w % 2 == 0 else w
        if w < 3:
            raise SEMAnalysisError(f"window_size must be at least 3 pixels, got {w}")
        if w > min(arr.shape):
            raise SEMAnalysisError(f"window_size ({w} px) is larger than the image ({arr.shape[0]}x{arr.shape[1]} px)")
        img = arr.astype(np.float64)
        mean, std = _local_stats(img, w)
        if method == "local_mean":
            t = mean
        elif method == "niblack":
            # scikit-image's convention: T = m - k * s
            kk = 0.2 if k is None else float(k)
            t = mean - kk * std
        else:  # sauvola
            kk = 0.2 if k is None else float(k)
            if np.issubdtype(arr.dtype, np.integer):  # scikit-image: half the dtype range
                info = np.iinfo(arr.dtype)
                r = 0.5 * (float(info.max) - float(info.min))
            else:
                r = 0.5 * (float(img.max()) - float(img.min())) or 1.0
            t = mean * (1 + kk * (std / r - 1))
        t = t + float(offset)
        mask = img <= t if dark_objects else img > t
    if not mask.any():
        raise SEMAnalysisError(
            f"threshold ({method}) selected no pixels; try another method, dark_objects="
            f"{not dark_objects}, or a different offset"
        )
    if mask.all():
        raise SEMAnalysisError(f"threshold ({method}) selected every pixel; try another method or a different offset")
    if return_threshold:
        return mask, t
    return mask


@per_plane
def multi_threshold(image, classes: int = 3, *, return_thresholds: bool = False):
    """Phase map by multi-level Otsu: labels 1..``classes`` from darkest to brightest.

    Parameters
    ----------
    image : ndarray
        2-D grayscale image (3-D stacks plane by plane).
    classes : int
        Number of phases (2-7).
    return_thresholds : bool
        Also return the ``classes - 1`` thresholds.

    Returns
    -------
    labels : ndarray of uint8
        1 = darkest phase ... ``classes`` = brightest; the phase fractions
        are ``np.bincount(labels.ravel())[1:] / labels.size``.
    """
    arr = _histogram_safe(check_image(image, allow_constant=False))
    try:
        n = int(classes)
    except (TypeError, ValueError):
        raise SEMAnalysisError(f"classes must be an integer, got {classes!r}") from None
    if n != classes or not 2 <= n <= 7:
        raise SEMAnalysisError(f"classes must be an integer between 2 and 7, got {classes!r}")
    from skimage.filters import threshold_multiotsu

    nbins = 256 if arr.dtype == np.uint8 else 1024
    n_values = len(np.unique(arr)) if arr.size <= 4_000_000 else len(np.unique(arr[::7, ::7]))
    if n_values < n:
        raise SEMAnalysisError(f"the image has only {n_values} distinct values; cannot split it into {n} classes")
    try:
        ts = threshold_multiotsu(arr, classes=n, nbins=nbins)
    except ValueError as err:
        raise SEMAnalysisError(f"multi-level Otsu failed: {err}") from None
    labels = (np.digitize(arr, bins=ts) + 1).astype(np.uint8)
    if return_thresholds:
        return labels, ts
    return labels
