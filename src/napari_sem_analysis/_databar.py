"""The instrument's information band ("data bar") at the bottom of an SEM image, found from the pixels.

:func:`detect_databar` is re-exported by :mod:`napari_sem_analysis.io`, where :func:`~napari_sem_analysis.io.read_sem`
cuts the band off (FEI/Thermo files give the image height in their metadata instead).
"""

from __future__ import annotations

import numpy as np

from ._validation import SEMAnalysisError

__all__ = ["detect_databar"]


def detect_databar(image: np.ndarray, *, max_fraction: float = 0.3, min_rows: int = 4) -> int | None:
    """Find the first row of the instrument's information band at the bottom.

    SEM instruments print a band of text and a scale bar on a uniform dark or
    light strip below the image. A row belongs to the band when at least half
    of its pixels share the band's background value; the band is the run of
    such rows (short gaps allowed, for large text) that reaches the last row
    and starts within the bottom ``max_fraction`` of the image, below a row
    that is not uniform (real image content), with a sharp edge (the
    background share jumps by at least one half there), and it holds some
    text (pixels of another value). Binary masks and uniform padding strips
    are therefore not cut.

    Parameters
    ----------
    image : ndarray
        The 2-D image, band included.
    max_fraction : float
        The band must start within this bottom fraction of the image.
    min_rows : int
        Fewest rows a band may have.

    Returns
    -------
    int or None
        Index of the first band row, or None when there is no band.
    """
    try:
        max_fraction, min_rows = float(max_fraction), int(min_rows)
    except (TypeError, ValueError, OverflowError):
        raise SEMAnalysisError(
            f"max_fraction and min_rows must be numbers, got {max_fraction!r}, {min_rows!r}"
        ) from None
    if not 0 < max_fraction <= 1:  # also refuses NaN
        raise SEMAnalysisError(f"max_fraction must be in (0, 1], got {max_fraction!r}")
    if min_rows < 1:
        raise SEMAnalysisError(f"min_rows must be >= 1, got {min_rows!r}")
    img = np.asarray(image)
    if img.ndim != 2 or img.shape[0] < 16:
        return None
    h = img.shape[0]
    band_value = _band_value(img)
    lo = int(h * (1 - max_fraction))
    frac = (img[lo:] == band_value).mean(axis=1)
    is_band = frac >= 0.5
    if not is_band[-1] and not is_band[-4:].any():
        return None
    start = _band_run_start(is_band, max_gap=max(6, h // 40))
    if start is None:
        return None
    row = lo + start
    if h - row < min_rows:
        return None
    return row if _is_info_band(img, row, band_value) else None


def _band_value(img: np.ndarray):
    """The grey value of the band's background: the mode of the last row (of the last rows if text covers it)."""
    bottom = img[-1]
    values, counts = np.unique(bottom, return_counts=True)
    band_value = values[counts.argmax()]
    if counts.max() < 0.5 * bottom.size:
        # the last row may be text-covered: use the mode of the last rows
        values, counts = np.unique(img[-8:], return_counts=True)
        band_value = values[counts.argmax()]
    return band_value


def _band_run_start(is_band: np.ndarray, *, max_gap: int) -> int | None:
    """First row of the run of band rows (gaps up to ``max_gap`` rows) that ends at the last row.

    None when there is none, or when the run reaches the top of the search window (then it is not a band).
    """
    start = None
    gap = 0
    for i in range(len(is_band) - 1, -1, -1):
        if is_band[i]:
            start = i
            gap = 0
        else:
            gap += 1
            if gap > max_gap:
                return start
    return None


def _is_info_band(img: np.ndarray, row: int, band_value) -> bool:
    """Whether the rows from ``row`` down look like an info band (not a mask, padding or a dark region)."""
    # content above must not be uniform at the band value
    above = img[max(row - 8, 0) : row]
    if above.size and (above == band_value).mean() > 0.5:
        return False

    # the band starts with a sharp edge: its first rows are (almost) all
    # background, the rows above (almost) none. A mask or a dark region whose
    # background share grows gradually towards the bottom is image content.
    def share(rows):
        return float((rows == band_value).mean()) if rows.size else 0.0

    if share(img[row : row + 3]) - share(img[max(row - 3, 0) : row]) < 0.5:
        return False
    # an info band carries text or a scale bar; a strip of one value alone
    # (padding, a saturated or masked-out region) is not one
    return not (img[row:] != band_value).mean() < 0.002
