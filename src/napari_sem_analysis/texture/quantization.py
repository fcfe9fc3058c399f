"""Quantising an image to gray levels and the pixel offsets of a co-occurrence matrix."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .._validation import SEMAnalysisError, check_image, check_positive


def quantize(image, levels: int | None = None, *, value_range=None) -> tuple[np.ndarray, int]:
    """Map an image to integer grey levels ``0 .. levels-1``.

    Parameters
    ----------
    image : ndarray
        2-D grey image (any integer or float dtype).
    levels : int, optional
        Number of grey levels. ``None`` means 256 for uint8 images (no
        quantisation) and 64 for other images.
    value_range : (float, float), optional
        Intensities mapped to the lowest and highest level. By default a uint8
        image uses ``(0, 256)`` (``levels=256`` is the identity and
        ``levels=n`` gives ``v * n // 256``) and other images their own
        minimum and maximum. Give a fixed range to compare images.

    Returns
    -------
    q : ndarray of uint16
        The quantised image.
    levels : int
    """
    image = check_image(image)
    if levels is None:
        levels = 256 if image.dtype == np.uint8 else 64
    if isinstance(levels, bool) or int(levels) != levels or not 2 <= int(levels) <= 65536:
        raise SEMAnalysisError(f"levels must be an integer from 2 to 65536, got {levels!r}")
    levels = int(levels)
    if image.dtype == np.uint8 and value_range is None:
        if levels > 256:
            raise SEMAnalysisError(f"levels={levels} exceeds the 256 grey values of a uint8 image")
        if levels == 256:
            return image.astype(np.uint16), levels
        return ((image.astype(np.uint32) * levels) >> 8).astype(np.uint16), levels
    if value_range is None:
        lo, hi = float(image.min()), float(image.max())
        if hi == lo:
            return np.zeros(image.shape, np.uint16), levels
        if np.issubdtype(image.dtype, np.integer):
            hi = hi + 1.0  # integer values: v in [lo, hi] -> bins of equal width
    else:
        try:
            lo, hi = (float(v) for v in value_range)
        except (TypeError, ValueError):
            raise SEMAnalysisError(f"value_range must be (low, high), got {value_range!r}") from None
        if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
            raise SEMAnalysisError(f"value_range must be (low, high) with low < high, got {value_range!r}")
    if lo == 0 and hi == levels and np.issubdtype(image.dtype, np.integer):
        return np.clip(image, 0, levels - 1).astype(np.uint16), levels  # already levels: identity
    scaled = (image.astype(np.float64) - lo) * (levels / (hi - lo))
    q = np.clip(np.floor(scaled), 0, levels - 1)
    return q.astype(np.uint16), levels


def glcm_offsets(distances: Iterable[float], angles: Iterable[float]) -> list[tuple[int, int, float, float]]:
    """Pixel offsets ``(d_row, d_col, distance, angle)`` as scikit-image computes them.

    Angles are in degrees; ``0`` is to the right, ``90`` is one row down
    (scikit-image's convention: ``d_row = round(sin(a) d)``,
    ``d_col = round(cos(a) d)``, rounding half away from zero).
    """
    distances = list(np.atleast_1d(np.asarray(distances, dtype=float)))
    angles = list(np.atleast_1d(np.asarray(angles, dtype=float)))
    if not distances or not angles:
        raise SEMAnalysisError("distances and angles must not be empty")
    out = []
    for d in distances:
        check_positive(d, "distance")
        for a in angles:
            if not np.isfinite(a):
                raise SEMAnalysisError(f"angle must be finite, got {a!r}")
            rad = np.deg2rad(a)
            r = np.sin(rad) * d
            c = np.cos(rad) * d
            dr = int(np.sign(r) * np.floor(abs(r) + 0.5))
            dc = int(np.sign(c) * np.floor(abs(c) + 0.5))
            out.append((dr, dc, float(d), float(a)))
    return out


def _pair_views(arr: np.ndarray, dr: int, dc: int):
    """Views (first, second) of ``arr`` so that second[k] is first[k] shifted by (dr, dc)."""
    h, w = arr.shape
    r0, r1 = max(0, -dr), h - max(0, dr)
    c0, c1 = max(0, -dc), w - max(0, dc)
    if r1 <= r0 or c1 <= c0:
        return None, None
    return arr[r0:r1, c0:c1], arr[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
