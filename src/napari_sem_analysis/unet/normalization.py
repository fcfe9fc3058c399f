"""Intensity normalisation shared by training and prediction (stored in the model file)."""

from __future__ import annotations

import math

import numpy as np

from .._validation import check_image, is_rgb, to_grayscale


def _as_2d(image, name: str) -> np.ndarray:
    arr = np.asarray(image)
    if is_rgb(arr):
        arr = to_grayscale(arr)
    return check_image(arr, name=name, ndim=(2,))


def _percentiles(image: np.ndarray, low: float, high: float, max_samples: int = 2_000_000):
    flat = image.reshape(-1)
    if flat.size > max_samples:
        step = int(math.ceil(flat.size / max_samples))
        flat = flat[::step]
    lo, hi = np.percentile(flat, [low, high])
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        lo, hi = float(flat.min()), float(flat.max())
        if not hi > lo:
            hi = lo + 1.0
    return lo, hi


def _image_range(image: np.ndarray, norm: dict) -> tuple[float, float]:
    """The (low, high) intensity range that maps ``image`` to [0, 1]."""
    if norm["method"] == "percentile":
        return _percentiles(image, norm["low_percentile"], norm["high_percentile"])
    return float(norm["low"]), float(norm["high"])


def _normalise(image: np.ndarray, lo: float, hi: float, norm: dict) -> np.ndarray:
    out = (image.astype(np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(out, -1.0, 2.0, out=out)
    out -= np.float32(norm["mean"])
    out *= np.float32(1.0 / norm["std"])
    return out
