"""Input checks shared by the core functions.

Every public function validates its input with these helpers so that bad
input gives one clear :class:`SEMAnalysisError` (a ``ValueError``) that the
widgets can show as a napari notification.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np


class SEMAnalysisError(ValueError):
    """A clear, user-facing error about input data or parameters."""


def is_rgb(image: np.ndarray) -> bool:
    """Return True when ``image`` looks like a colour image (Y, X, 3|4)."""
    return image.ndim == 3 and image.shape[-1] in (3, 4) and min(image.shape[:2]) > 4


def to_grayscale(image: np.ndarray) -> np.ndarray:
    """Convert an (Y, X, 3|4) colour image to 2-D.

    Equal channels (grayscale saved as colour, common for SEM) are taken as
    they are, keeping the dtype; otherwise the luminance (ITU-R 601) is used.

    Parameters
    ----------
    image : ndarray
        A 2-D image (returned as it is) or an (Y, X, 3|4) colour image.
    """
    image = np.asarray(image)
    if not is_rgb(image):
        return image
    rgb = image[..., :3]
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return np.ascontiguousarray(rgb[..., 0])
    gray = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    if np.issubdtype(image.dtype, np.integer):
        gray = np.clip(np.round(gray), 0, np.iinfo(image.dtype).max).astype(image.dtype)
    return gray


def check_image(
    image,
    *,
    name: str = "image",
    ndim: tuple[int, ...] = (2,),
    min_size: int = 1,
    allow_constant: bool = True,
) -> np.ndarray:
    """Validate an image array and return it as a numpy array.

    Raises :class:`SEMAnalysisError` for colour images, wrong dimensionality,
    empty arrays, NaN/inf values, non-numeric dtypes and (optionally)
    constant images.
    """
    if image is None:
        raise SEMAnalysisError(f"{name} is missing")
    arr = np.asarray(image)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise SEMAnalysisError(f"{name} has unsupported dtype {arr.dtype}")
    if arr.dtype == np.float16:  # OpenCV, scipy and skimage reject or mishandle half floats
        arr = arr.astype(np.float32)
    if is_rgb(arr) and 3 not in ndim:
        raise SEMAnalysisError(
            f"{name} is a colour (RGB) image of shape {arr.shape}; convert it to "
            "grayscale first (napari_sem_analysis.to_grayscale)"
        )
    if arr.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise SEMAnalysisError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.size == 0:
        raise SEMAnalysisError(f"{name} is empty (shape {arr.shape})")
    if min(arr.shape[-2:]) < min_size:
        raise SEMAnalysisError(f"{name} of shape {arr.shape} is smaller than the required {min_size} pixels")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise SEMAnalysisError(f"{name} contains NaN or infinite values")
    if not allow_constant and arr.min() == arr.max():
        raise SEMAnalysisError(f"{name} is constant (every pixel is {arr.flat[0]})")
    return arr


def check_labels(labels, *, name: str = "labels", ndim: tuple[int, ...] = (2,)) -> np.ndarray:
    """Validate a label image (non-negative integers) and return it."""
    arr = np.asarray(labels)
    if arr.dtype == bool:
        arr = arr.astype(np.int32)
    if not np.issubdtype(arr.dtype, np.integer):
        raise SEMAnalysisError(f"{name} must be an integer label image, got dtype {arr.dtype}")
    if arr.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise SEMAnalysisError(f"{name} must be {want}, got shape {arr.shape}")
    if arr.size and arr.min() < 0:
        raise SEMAnalysisError(f"{name} contains negative values")
    if arr.dtype == np.uint64:  # scipy/skimage index with signed integers
        if arr.size and arr.max() > np.iinfo(np.int64).max:
            raise SEMAnalysisError(f"{name} holds label ids above {np.iinfo(np.int64).max} (max {arr.max()})")
        arr = arr.astype(np.int64)
    return arr


#: the largest image (pixels) a function may be asked to allocate from a shape alone
MAX_SHAPE_PIXELS = 2**31


def check_shape(shape, name: str = "shape") -> tuple[int, int]:
    """Check a 2-D image shape ``(rows, cols)``: positive integers, at most :data:`MAX_SHAPE_PIXELS` in all."""
    try:
        h, w = (int(v) for v in tuple(shape)[:2])
        if len(tuple(shape)) < 2 or any(float(v) != int(v) for v in tuple(shape)[:2]):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise SEMAnalysisError(f"{name} must be (rows, columns) integers, got {shape!r}") from None
    if h < 1 or w < 1:
        raise SEMAnalysisError(f"{name} must be positive, got {shape!r}")
    if h * w > MAX_SHAPE_PIXELS:
        raise SEMAnalysisError(f"{name} {h} x {w} is larger than {MAX_SHAPE_PIXELS:,} pixels")
    return h, w


def check_finite(value, name: str) -> float:
    """Check that a parameter is a finite number and return it as a float."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise SEMAnalysisError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v):
        raise SEMAnalysisError(f"{name} must be a finite number, got {value!r}")
    return v


def check_positive(value, name: str, *, allow_zero: bool = False, maximum=None) -> float:
    """Check that a parameter is a finite positive number (absurd values rejected)."""
    v = check_finite(value, name)
    if v < 0 or (v == 0 and not allow_zero):
        raise SEMAnalysisError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    if maximum is not None and v > maximum:
        raise SEMAnalysisError(f"{name} must be at most {maximum}, got {value!r}")
    return v


def to_pixels(value: float, pixel_size: float | None, *, unit: str = "px", name: str = "size", power: int = 1) -> float:
    """Convert a length (``power=1``) or an area (``power=2``) to pixels.

    Parameters
    ----------
    value : float
        The length or area (>= 0).
    pixel_size : float or None
        nm per pixel; needed when ``unit`` is ``"nm"``.
    unit : {"px", "nm"}
        ``"px"``: returned unchanged; ``"nm"``: divided by ``pixel_size ** power``
        (an area is then in nm²).
    name : str
        Name used in error messages.
    power : int
        1 for lengths, 2 for areas.

    Returns
    -------
    float
        px (lengths) or px² (areas).
    """
    v = check_positive(value, name, allow_zero=True)
    if unit in ("px", "pixel", "pixels"):
        return v
    if unit != "nm":
        raise SEMAnalysisError(f"unit must be 'px' or 'nm', got {unit!r}")
    if pixel_size is None:
        raise SEMAnalysisError(f"{name} is given in nm{'²' if power == 2 else ''} but the pixel size is unknown")
    return v / check_positive(pixel_size, "pixel_size") ** power


def per_plane(func: Callable) -> Callable:
    """Decorate a 2-D image function so that 3-D stacks are processed plane by plane.

    The first positional argument is the image. A 3-D (Z, Y, X) input is split
    into planes, ``func`` is called on each, and the results are stacked.
    """

    @functools.wraps(func)
    def wrapper(image, *args, **kwargs):
        arr = np.asarray(image)
        if arr.ndim == 3 and not is_rgb(arr):
            out = []
            for i, plane in enumerate(arr):
                try:
                    out.append(func(plane, *args, **kwargs))
                except SEMAnalysisError as err:
                    # say which plane of the stack the problem is in
                    raise SEMAnalysisError(f"plane {i} of {len(arr)}: {err}") from err
            return np.stack(out)
        return func(image, *args, **kwargs)

    return wrapper
