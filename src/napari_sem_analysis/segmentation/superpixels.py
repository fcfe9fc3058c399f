"""SLIC superpixels (:func:`superpixels`): parameters, kernel choice, connectivity."""

from __future__ import annotations

import numpy as np

from .._validation import (
    SEMAnalysisError,
    check_image,
    check_positive,
    to_pixels,
)
from ._common import _as_float01, _check_mask, _relabel
from .slic import _slic_grid, _slic_numpy
from .watershed import (
    _merge_small,
)


def superpixels(
    image,
    *,
    n_segments: int | None = None,
    region_size: float | None = None,
    region_size_nm: float | None = None,
    compactness: float = 0.1,
    max_iter: int = 10,
    mask=None,
    enforce_connectivity: bool = True,
    min_size_factor: float = 0.25,
    pixel_size: float | None = None,
    unit: str = "px",
    device: str = "cpu",
    callback=None,
) -> np.ndarray:
    """SLIC superpixels of a grayscale image (vectorised; CPU or CUDA via PyTorch).

    Simple linear iterative clustering on (intensity, y, x): every pixel is
    assigned to the closest of the cluster centres of its own and the eight
    neighbouring grid cells, with distance
    ``((I - I_c) / compactness)**2 + (d / S)**2`` (``S`` = grid step,
    intensity rescaled to [0, 1]), as in scikit-image's ``slic``; centres are
    then moved to the mean of their pixels, ``max_iter`` times. Regions that
    end up in several pieces are split, and pieces smaller than
    ``min_size_factor * S**2`` are merged into a neighbour.

    Parameters
    ----------
    image : ndarray
        2-D grayscale image (3-D stacks plane by plane; labels are then
        offset so that every plane has its own ids).
    n_segments : int, optional
        Approximate number of superpixels (default: from ``region_size``, or 1000).
    region_size : float, optional
        Grid step S in ``unit`` (px or nm).
    region_size_nm : float, optional
        Grid step in nm (needs ``pixel_size``); same as ``region_size`` with ``unit="nm"``.
    compactness : float
        Balance of intensity against space (higher = more regular squares).
        The intensity is rescaled to [0, 1]: 0.01-1 are typical.
    max_iter : int
        Number of k-means iterations.
    mask : ndarray, optional
        Only pixels inside the mask are labelled (0 elsewhere).
    enforce_connectivity : bool
    min_size_factor : float
        Smallest piece kept, as a fraction of S².
    pixel_size : float, optional
        nm per pixel.
    unit : {"px", "nm"}
    device : str
        ``"cpu"`` (numpy, up to 4 threads), ``"cuda"``/``"mps"`` (the same
        algorithm in PyTorch on the GPU), ``"auto"`` (a GPU when available,
        else numpy) or ``"torch-cpu"`` (the PyTorch code on the CPU; used by
        the tests to exercise the GPU code path).
    callback : callable, optional
        Called as ``callback(iteration, max_iter)`` after each k-means
        iteration (of each plane); an exception it raises stops the
        computation and is passed on (the widget's Cancel uses this).

    Returns
    -------
    labels : ndarray of int32
        1..N (0 outside ``mask``).
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and not (arr.shape[-1] in (3, 4) and min(arr.shape[:2]) > 4):
        out = []
        offset = 0
        for i, plane in enumerate(arr):
            lab = superpixels(
                plane,
                n_segments=n_segments,
                region_size=region_size,
                region_size_nm=region_size_nm,
                compactness=compactness,
                max_iter=max_iter,
                mask=None if mask is None else np.asarray(mask)[i],
                enforce_connectivity=enforce_connectivity,
                min_size_factor=min_size_factor,
                pixel_size=pixel_size,
                unit=unit,
                device=device,
                callback=callback,
            )
            out.append(np.where(lab > 0, lab + offset, 0))
            offset += int(lab.max())
        return np.stack(out).astype(np.int32)
    arr = check_image(arr, allow_constant=False)
    use_torch = _use_torch(device)  # a bad device is refused before any work
    step = _grid_step(arr.shape, n_segments, region_size, region_size_nm, pixel_size, unit)
    comp = check_positive(compactness, "compactness", maximum=1e6)
    max_iter = int(check_positive(max_iter, "max_iter", maximum=1000))
    m = None if mask is None else _checked_mask(mask, arr.shape)
    img01 = _as_float01(arr)
    if use_torch:
        labels = _slic_grid(img01, int(round(step)), comp, max_iter, m, device=device, callback=callback)
    else:
        labels = _slic_numpy(img01, int(round(step)), comp, max_iter, m, callback=callback)
    if enforce_connectivity:
        labels = _enforce_connectivity(labels, min_size_factor * step * step)
    if m is not None:
        labels[~m] = 0
        labels = _relabel(labels)
    return labels


def _grid_step(shape, n_segments, region_size, region_size_nm, pixel_size, unit) -> float:
    """The SLIC grid step S in pixels, from ``region_size`` (px or nm) or ``n_segments`` (default 1000)."""
    h, w = shape
    if region_size_nm is not None:
        if region_size is not None:
            raise SEMAnalysisError("give region_size or region_size_nm, not both")
        region_size, unit = region_size_nm, "nm"
    if region_size is not None and n_segments is not None:
        raise SEMAnalysisError("give n_segments or region_size, not both")
    if region_size is not None:
        step = to_pixels(region_size, pixel_size, unit=unit, name="region_size")
    else:
        n = 1000 if n_segments is None else n_segments
        try:
            n = int(n)
        except (TypeError, ValueError):
            raise SEMAnalysisError(f"n_segments must be an integer, got {n_segments!r}") from None
        if n < 1:
            raise SEMAnalysisError(f"n_segments must be >= 1, got {n_segments!r}")
        step = np.sqrt(h * w / n)
    if step < 2:
        raise SEMAnalysisError(f"superpixels of {step:.2g} px are too small (need at least 2 px per side)")
    if step > max(h, w):
        raise SEMAnalysisError(f"superpixel size ({step:.0f} px) is larger than the image ({h}x{w} px)")
    return step


def _checked_mask(mask, shape) -> np.ndarray:
    """The mask as booleans, of the image's shape and not empty."""
    m = _check_mask(mask)
    if m.shape != shape:
        raise SEMAnalysisError(f"mask shape {m.shape} differs from image shape {shape}")
    if not m.any():
        raise SEMAnalysisError("the mask is empty")
    return m


def _use_torch(device) -> bool:
    """torch for CUDA/MPS (and an explicit torch CPU request), numpy otherwise."""
    if device is None or str(device) == "cpu":
        return False
    if str(device) == "torch-cpu":
        return True
    from .._device import select_device

    return select_device(device).type != "cpu"


def _enforce_connectivity(labels: np.ndarray, min_size: float) -> np.ndarray:
    """Give every connected piece its own label, then merge pieces smaller than ``min_size``."""
    from skimage.measure import label as cc_label

    pieces = cc_label(labels + 1, connectivity=1, background=0).astype(np.int32)
    return _merge_small(pieces, min_size, drop_isolated=False)
