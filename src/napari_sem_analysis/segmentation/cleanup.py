"""Binary mask clean-up: opening/closing, small objects, holes (:func:`clean_mask`)."""

from __future__ import annotations

import cv2
import numpy as np

from .._validation import (
    SEMAnalysisError,
    per_plane,
    to_pixels,
)
from ._common import _check_mask, _disk


def _remove_small(mask: np.ndarray, min_size: float, connectivity: int = 8) -> np.ndarray:
    if min_size <= 0:
        return mask
    n, lab, stats, _ = cv2.connectedComponentsWithStats(
        mask.view(np.uint8), connectivity=connectivity, ltype=cv2.CV_32S
    )
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    keep[0] = False
    return keep[lab]


def _fill_holes(mask: np.ndarray, max_hole_size: float | None) -> np.ndarray:
    inv = np.ascontiguousarray(~mask).view(np.uint8)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4, ltype=cv2.CV_32S)
    hole = np.ones(n, bool)
    hole[0] = False
    # components touching the border are background, not holes
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    hole[border] = False
    if max_hole_size is not None:
        hole &= stats[:, cv2.CC_STAT_AREA] <= max_hole_size
    return mask | hole[lab]


@per_plane
def clean_mask(
    mask,
    *,
    min_size: float = 0,
    fill_holes: bool = True,
    max_hole_size: float | None = None,
    opening: float = 0,
    closing: float = 0,
    connectivity: int = 8,
    pixel_size: float | None = None,
    unit: str = "px",
    allow_empty: bool = False,
) -> np.ndarray:
    """Clean a binary mask: morphological opening/closing, small objects, holes.

    Steps in order: opening (removes thin spurs and isolated noise pixels),
    closing (bridges one-pixel gaps), removal of objects smaller than
    ``min_size``, filling of holes (regions of background not connected to
    the image border) up to ``max_hole_size``.

    Parameters
    ----------
    mask : ndarray
        2-D boolean (or 0/non-zero) mask.
    min_size : float
        Smallest object area kept, in px² (or nm² with ``unit="nm"``).
    fill_holes : bool
        Fill enclosed holes.
    max_hole_size : float, optional
        Only holes up to this area are filled (px² or nm²); all if None.
    opening, closing : float
        Radius of the disk for opening / closing, in ``unit`` (0 = skip).
    connectivity : {4, 8}
        Connectivity of objects for ``min_size``.
    pixel_size : float, optional
    unit : {"px", "nm"}
    allow_empty : bool
        Return an empty mask for an empty input or when the clean-up removes
        every object, instead of raising.

    Returns
    -------
    ndarray of bool

    Raises
    ------
    SEMAnalysisError
        Bad parameters; an empty mask, or a clean-up that removes every
        object (unless ``allow_empty``).
    """
    m = _check_mask(mask)
    if connectivity not in (4, 8):
        raise SEMAnalysisError(f"connectivity must be 4 or 8, got {connectivity!r}")
    ms = to_pixels(min_size, pixel_size, unit=unit, name="min_size", power=2)
    hs = (
        None
        if max_hole_size is None
        else to_pixels(max_hole_size, pixel_size, unit=unit, name="max_hole_size", power=2)
    )
    ro = int(round(to_pixels(opening, pixel_size, unit=unit, name="opening")))
    rc = int(round(to_pixels(closing, pixel_size, unit=unit, name="closing")))
    if max(ro, rc) > max(m.shape):
        raise SEMAnalysisError(f"opening/closing radius ({max(ro, rc)} px) is larger than the mask {m.shape}")
    if ms > m.size:
        raise SEMAnalysisError(f"min_size ({ms:.0f} px²) is larger than the whole image ({m.size} px)")
    if not allow_empty and not m.any():
        raise SEMAnalysisError("the mask is empty: nothing to clean")
    u8 = np.ascontiguousarray(m).view(np.uint8)
    if ro > 0:
        u8 = cv2.morphologyEx(u8, cv2.MORPH_OPEN, _disk(ro))
    if rc > 0:
        u8 = cv2.morphologyEx(u8, cv2.MORPH_CLOSE, _disk(rc), borderType=cv2.BORDER_REPLICATE)
    out = u8.astype(bool)
    out = _remove_small(out, ms, connectivity)
    if fill_holes:
        out = _fill_holes(out, hs)
    if not allow_empty and not out.any():
        raise SEMAnalysisError(
            f"the clean-up removed every object (opening {ro} px, min_size {ms:.0f} px²); lower them"
        )
    return out
