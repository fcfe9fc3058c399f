"""Connected components of a mask: one label per separate object (no splitting)."""

from __future__ import annotations

import cv2
import numpy as np

from .._validation import SEMAnalysisError, check_positive, to_pixels
from ._common import _check_mask
from .cleanup import _remove_small


def label_components(
    mask,
    *,
    connectivity: int = 8,
    min_size: float = 0,
    pixel_size: float | None = None,
    unit: str = "px",
) -> np.ndarray:
    """One label per connected object of a binary mask (pores of a network, separate particles).

    Unlike :func:`split_touching`, touching objects are not split: every set
    of connected mask pixels is one object. Fast (one pass) on large masks.

    Parameters
    ----------
    mask : ndarray
        2-D binary mask, or a label image (non-zero = object); 3-D stacks are
        labelled plane by plane, with labels unique across the stack.
    connectivity : {4, 8}
        4: pixels touching only at a corner are separate objects; 8: they are one.
    min_size : float
        Objects smaller than this area (px², or nm² with ``unit="nm"``) are dropped.
    pixel_size : float, optional
        nm per pixel, for ``unit="nm"``.
    unit : {"px", "nm"}

    Returns
    -------
    labels : ndarray of int32
        0 = background, 1..N objects (numbered in raster order).

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((5, 7), bool); m[1:3, 1:3] = True; m[1:4, 4:6] = True
    >>> int(label_components(m).max())
    2
    """
    arr = np.asarray(mask)
    if arr.ndim == 3:
        out, offset = [], 0
        for i, plane in enumerate(arr):
            try:
                lab = label_components(
                    plane, connectivity=connectivity, min_size=min_size, pixel_size=pixel_size, unit=unit
                )
            except SEMAnalysisError as err:
                raise SEMAnalysisError(f"plane {i} of {len(arr)}: {err}") from err
            out.append(np.where(lab > 0, lab + offset, 0))
            offset += int(lab.max())
        return np.stack(out).astype(np.int32)
    if connectivity not in (4, 8):
        raise SEMAnalysisError(f"connectivity must be 4 or 8, got {connectivity!r}")
    m = _check_mask(arr)
    ms = area_in_pixels(min_size, pixel_size, unit, "min_size")
    if ms > m.size:
        raise SEMAnalysisError(f"min_size ({ms:.0f} px²) is larger than the whole image ({m.size} px)")
    if ms > 0:
        m = _remove_small(m, ms, connectivity)
    _, labels = cv2.connectedComponents(
        np.ascontiguousarray(m).view(np.uint8), connectivity=connectivity, ltype=cv2.CV_32S
    )
    return labels.astype(np.int32, copy=False)


def area_in_pixels(value, pixel_size: float | None, unit: str, name: str) -> float:
    """An area given in px² (``unit="px"``) or nm² (``unit="nm"``) as px²."""
    v = check_positive(value, name, allow_zero=True)
    side = to_pixels(float(np.sqrt(v)), pixel_size, unit=unit, name=name)
    return float(side) ** 2
