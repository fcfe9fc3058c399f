"""Helpers shared by the segmentation modules: mask checks, structuring elements, relabelling."""

from __future__ import annotations

import cv2
import numpy as np

from .._validation import (
    SEMAnalysisError,
)


def _check_mask(mask, name: str = "mask") -> np.ndarray:
    """A 2-D boolean mask from a boolean, integer or float array (nonzero = inside); bad input raises."""
    if mask is None:
        raise SEMAnalysisError(f"{name} is missing")
    arr = np.asarray(mask)
    if arr.dtype != bool:
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise SEMAnalysisError(f"{name} must be a boolean or label image, got dtype {arr.dtype}")
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise SEMAnalysisError(f"{name} contains NaN or infinite values")
        arr = arr > 0
    if arr.ndim != 2:
        raise SEMAnalysisError(f"{name} must be a 2-D mask, got shape {arr.shape}")
    if arr.size == 0:
        raise SEMAnalysisError(f"{name} is empty (shape {arr.shape})")
    return arr


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def _as_float01(arr: np.ndarray) -> np.ndarray:
    """float32 image in [0, 1] (integers by dtype range like img_as_float... here by min..max)."""
    a = arr.astype(np.float32)
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo if hi > lo else 1.0)


def _relabel(labels: np.ndarray) -> np.ndarray:
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[labels]
