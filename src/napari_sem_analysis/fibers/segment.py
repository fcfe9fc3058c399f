"""Stage 1: the fibre mask of a micrograph (background removal, Otsu threshold, tubeness filter)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .._validation import SEMAnalysisError, check_image, check_positive, to_grayscale

_EIGHT = np.ones((3, 3), bool)


def _unit(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.float32)
    lo, hi = np.percentile(img, (0.5, 99.5))
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((img - lo) / (hi - lo), 0, 1)


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    if values.size == 0 or values.min() == values.max():
        return float(values.max()) if values.size else 0.0
    return float(threshold_otsu(values))


def _background(u: np.ndarray, dmax: float) -> np.ndarray:
    """Smooth background under bright fibres: a grey opening wider than the widest fibre, smoothed.

    Computed on a block-minimum copy (blocks of about a twelfth of the opening) and
    interpolated back, so that its cost does not grow with the fibre width.
    """
    k = max(3, round(1.5 * dmax))
    f = max(1, k // 12)
    h, w = u.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    padded = np.pad(u, ((0, hp - h), (0, wp - w)), mode="edge")
    sub = padded.reshape(hp // f, f, wp // f, f).min(axis=(1, 3))
    size = max(3, (k // f) | 1)
    bg = ndi.gaussian_filter(ndi.grey_opening(sub, size=(size, size)), max(1.0, k / (2.0 * f)))
    if f > 1:
        bg = ndi.zoom(bg, f, order=1, mode="nearest")[:h, :w]
        if bg.shape != u.shape:  # zoom rounding
            bg = np.pad(bg, ((0, h - bg.shape[0]), (0, w - bg.shape[1])), mode="edge")
    return bg.astype(np.float32)


def _foreground(img: np.ndarray, dmax: float, smooth: float, bg=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-range image, its foreground (image minus background) and the background."""
    u = _unit(img)
    if smooth > 0:
        u = ndi.gaussian_filter(u, smooth)
    if bg is None:
        bg = _background(u, dmax)
    return u, (u - bg).astype(np.float32), bg


def segment_fibers(
    image, *, method: str = "ridge", max_diameter: float | None = None, smooth: float = 1.0
) -> np.ndarray:
    """Fibre mask of a micrograph with bright fibres on a darker background.

    Parameters
    ----------
    image : array-like (2-D)
    method : {"ridge", "threshold"}
        ``"threshold"``: Otsu threshold of the image minus a smooth
        background. ``"ridge"``: the same, plus faint fibres found by a
        multi-scale Sato tubeness filter, kept where the image exceeds half
        the intensity threshold.
    max_diameter : float, optional
        Largest fibre diameter expected (pixels); sets the background scale
        and the tubeness scales. Default: a tenth of the smaller image side.
    smooth : float
        Gaussian smoothing (pixels) before thresholding.

    Returns
    -------
    ndarray (bool)
    """
    img = check_image(to_grayscale(np.asarray(image)), min_size=16, allow_constant=False)
    if method not in ("ridge", "threshold"):
        raise SEMAnalysisError(f"method must be 'ridge' or 'threshold', got {method!r}")
    dmax = float(max_diameter) if max_diameter is not None else min(img.shape) / 10.0
    dmax = check_positive(dmax, "max_diameter", maximum=max(img.shape))
    u, fg, _ = _foreground(img, dmax, smooth)
    t = _otsu(fg.ravel()[:: max(1, fg.size // 500_000)])
    mask = fg > t
    if method == "ridge":
        from skimage.filters import sato

        sig_hi = max(1.0, dmax / 4.0)
        sigmas = np.unique(np.round(np.geomspace(1.0, sig_hi, num=max(2, int(np.log2(sig_hi)) + 2)), 2))
        ridge = sato(u, sigmas=sigmas, black_ridges=False)
        rt = _otsu(ridge.ravel()[:: max(1, ridge.size // 500_000)])
        mask |= (ridge > rt) & (fg > 0.5 * t)
    # drop specks much smaller than a short piece of thin fibre; fill pits and smooth
    # 1-pixel burrs, which would give the centreline loops and spurs
    mask = ndi.binary_opening(mask, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool))
    mask = _fill_small_holes(mask, max(16.0, (0.25 * dmax) ** 2))
    return _remove_small(mask, 16)


def _fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    lab, n = ndi.label(~mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    small = sizes <= max_area
    small[0] = False
    # holes touching the border are open background, not holes
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    small[border] = False
    return mask | small[lab]


def _remove_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    lab, n = ndi.label(mask, _EIGHT)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[lab]
