"""Local binary pattern (LBP) histograms of every region of a label image."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .._validation import SEMAnalysisError, check_image, check_positive
from .regions import _region_index, _regions


# --------------------------------------------------------------------------
# LBP
# --------------------------------------------------------------------------
def _lbp_codes(image, P, R, method):
    from skimage.feature import local_binary_pattern

    P = int(check_positive(P, "P"))
    R = check_positive(R, "R")
    if P < 1 or P > 32:
        raise SEMAnalysisError(f"P must be 1..32, got {P}")
    if method not in ("uniform", "ror", "default", "nri_uniform"):
        raise SEMAnalysisError(f"unknown LBP method {method!r}")
    img = image
    if np.issubdtype(img.dtype, np.floating):
        img = img.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codes = local_binary_pattern(img, P, R, method=method)
    nbins = {"uniform": P + 2, "nri_uniform": P * (P - 1) + 3}.get(method, 2**P)
    return codes.astype(np.int64), nbins


def lbp_features(
    image,
    labels=None,
    *,
    P: int = 8,
    R: float = 1,
    method: str = "uniform",
    tile_size=None,
    prefix: str = "lbp_",
) -> pd.DataFrame:
    """Local-binary-pattern histograms per region or per tile.

    Parameters
    ----------
    image : (M, N) ndarray
    labels : (M, N) ndarray of int, optional
        Regions; when None, per tile (``tile_size``) or for the whole image.
    P, R : int, float
        Number of neighbours and radius in pixels
        (:func:`skimage.feature.local_binary_pattern`).
    method : str
        ``"uniform"`` (default, rotation-invariant uniform patterns, P + 2
        bins), ``"nri_uniform"``, ``"ror"`` or ``"default"``.
    tile_size : int or (int, int), optional
    prefix : str

    Returns
    -------
    pandas.DataFrame
        ``label`` and the normalised histogram ``lbp_0 ... lbp_{n-1}`` of the
        codes of the region's pixels (fractions summing to 1). Codes are
        computed on the whole image, so neighbours may lie outside the region.
    """
    image = check_image(image)
    if labels is not None and tile_size is not None:
        raise SEMAnalysisError("give either labels or tile_size, not both")
    whole = labels is None and tile_size is None
    if whole:  # the whole image is one region: no label codes needed
        lab, present, table = None, np.array([1]), pd.DataFrame({"label": [1]})
    else:
        lab, present, table = _regions(image.shape, labels, tile_size)
    codes, nbins = _lbp_codes(image, P, R, method)
    n_reg = present.size
    if whole:
        hist = np.bincount(codes.ravel(), minlength=nbins)[None, :nbins].astype(np.float64)
        hist = hist / max(hist.sum(), 1)
    elif n_reg:
        fg = lab > 0
        reg = _region_index(lab[fg].astype(np.int64), present)
        hist = np.bincount(reg * nbins + codes[fg], minlength=n_reg * nbins).reshape(n_reg, nbins)
        hist = hist / np.maximum(hist.sum(axis=1, keepdims=True), 1)
    else:
        hist = np.zeros((0, nbins))
    cols = pd.DataFrame(hist, columns=[f"{prefix}{k}" for k in range(nbins)])
    return pd.concat([table.reset_index(drop=True), cols], axis=1)
