"""Dense texture maps: one GLCM feature per pixel over a sliding window, in O(pixels)."""

from __future__ import annotations

import numpy as np

from .._validation import SEMAnalysisError, check_image, check_positive
from .glcm import glcm_features
from .quantization import _pair_views, glcm_offsets, quantize

#: texture_map features computed exactly in O(pixels) with integral images
LINEAR_MAP_FEATURES = ("contrast", "dissimilarity", "homogeneity", "mean", "variance", "correlation")
#: texture_map features computed on a grid of windows and interpolated
BLOCK_MAP_FEATURES = ("asm", "energy", "entropy")


# --------------------------------------------------------------------------
# dense maps
# --------------------------------------------------------------------------
def _window_bounds(n: int, window: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """For every position, [start, stop) of the first pixels of the pairs in its window."""
    half = window // 2
    x = np.arange(n)
    lo = np.clip(x - half, 0, n)
    hi = np.clip(x - half + window, 0, n)
    start = lo + max(0, -shift)
    stop = np.maximum(hi - max(0, shift), start)
    return start, stop


def _box_sums(values: np.ndarray, rows, cols) -> np.ndarray:
    """Sum of ``values`` over per-pixel rectangles [r0, r1) x [c0, c1) (integral image)."""
    import cv2

    r0, r1 = rows
    c0, c1 = cols
    s = cv2.integral(np.ascontiguousarray(values, dtype=np.float64), sdepth=cv2.CV_64F)
    top = s[r0]
    bot = s[r1]
    return (bot[:, c1] - bot[:, c0]) - (top[:, c1] - top[:, c0])


def texture_map(
    image,
    feature: str = "contrast",
    *,
    window: int = 15,
    distance: float = 1,
    angles=(0, 45, 90, 135),
    levels: int | None = None,
    value_range=None,
    symmetric: bool = True,
) -> np.ndarray:
    """Dense per-pixel GLCM texture image over a sliding window.

    Parameters
    ----------
    image : (M, N) ndarray
    feature : str
        ``contrast``, ``dissimilarity``, ``homogeneity``, ``mean``,
        ``variance``, ``correlation`` (exact for every pixel, O(pixels)
        independent of ``window``: window sums of pair values with integral
        images), or ``asm``, ``energy``, ``entropy`` (not linear in the
        matrix: computed exactly on windows centred on a grid with a step of
        ``window // 2`` and interpolated bilinearly; O(pixels) as well).
    window : int
        Window side in pixels (>= 2). The window of pixel (r, c) covers rows
        ``r - window//2 .. r - window//2 + window - 1`` (clipped at the
        image border), likewise for columns.
    distance : float
        Pair distance in pixels (< window).
    angles : sequence of float
        Angles in degrees; the feature is averaged over them.
    levels, value_range : see :func:`quantize`
    symmetric : bool

    Returns
    -------
    (M, N) ndarray of float32
        For the linear features, pixel (r, c) holds exactly what
        :func:`glcm_features` (and scikit-image) gives for the window's crop.
    """
    image = check_image(image)
    feature = str(feature).lower()
    if feature not in LINEAR_MAP_FEATURES + BLOCK_MAP_FEATURES:
        raise SEMAnalysisError(
            f"unknown texture feature {feature!r}; choose from {list(LINEAR_MAP_FEATURES + BLOCK_MAP_FEATURES)}"
        )
    if isinstance(window, bool) or int(window) != window or int(window) < 2:
        raise SEMAnalysisError(f"window must be an integer >= 2, got {window!r}")
    window = int(window)
    if check_positive(distance, "distance") >= window:
        raise SEMAnalysisError(f"distance ({distance}) must be smaller than the window ({window})")
    q, nlev = quantize(image, levels, value_range=value_range)
    if feature in BLOCK_MAP_FEATURES:
        return _block_texture_map(q, nlev, feature, window, distance, angles, symmetric)
    h, w = q.shape
    qf = q.astype(np.float64)
    acc = np.zeros((h, w), np.float64)
    n_ok = np.zeros((h, w), np.float64)
    for dr, dc, _d, _a in glcm_offsets([distance], angles):
        one = _offset_map(qf, dr, dc, window, feature, symmetric)
        if one is None:
            continue
        val, ok = one
        acc += val
        n_ok += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        out = acc / n_ok
    return out.astype(np.float32)


def _offset_map(qf: np.ndarray, dr: int, dc: int, window: int, feature: str, symmetric: bool):
    """A linear feature of every pixel's window for one pixel offset: ``(values, window has pairs)``.

    None when no pair of pixels fits the image at this offset.
    """
    h, w = qf.shape
    rows = _window_bounds(h, window, dr)
    cols = _window_bounds(w, window, dc)
    n = ((rows[1] - rows[0])[:, None] * (cols[1] - cols[0])[None, :]).astype(np.float64)
    ok = n > 0
    a, b = _pair_views(qf, dr, dc)
    if a is None:
        return None
    # value of the pair whose first pixel is p, stored at p (zero where the partner is outside)
    r_sl = slice(max(0, -dr), h - max(0, dr))
    c_sl = slice(max(0, -dc), w - max(0, dc))

    def box(v):
        """Window sums of a pair value (stored at each pair's first pixel)."""
        full = np.zeros((h, w), np.float64)
        full[r_sl, c_sl] = v
        return _box_sums(full, rows, cols)

    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(ok, 1.0 / np.where(ok, n, 1.0), np.nan)
        d = a - b
        if feature == "contrast":
            val = box(d * d) * inv
        elif feature == "dissimilarity":
            val = box(np.abs(d)) * inv
        elif feature == "homogeneity":
            val = box(1.0 / (1.0 + d * d)) * inv
        else:
            val = _moment_feature(box, inv, a, b, feature, symmetric)
    return np.where(ok, val, 0.0), ok


def _moment_feature(box, inv, a, b, feature: str, symmetric: bool):
    """``mean``, ``variance`` or ``correlation`` of the windows from window sums of pair moments."""
    if symmetric:
        s1 = box(a + b)
        s2 = box(a * a + b * b)
        mu = s1 * inv / 2.0
        var = np.maximum(s2 * inv / 2.0 - mu * mu, 0.0)
        var_i = var_j = var
        if feature == "correlation":
            cov = box(a * b) * inv - mu * mu
    else:
        si = box(a) * inv
        sj = box(b) * inv
        mu = si
        var_i = np.maximum(box(a * a) * inv - si * si, 0.0)
        var_j = np.maximum(box(b * b) * inv - sj * sj, 0.0)
        if feature == "correlation":
            cov = box(a * b) * inv - si * sj
    if feature == "mean":
        return mu
    if feature == "variance":
        return var_i
    si_, sj_ = np.sqrt(var_i), np.sqrt(var_j)
    # single-pass moments: treat variances at rounding level as zero
    tol = 1e-9 * np.maximum(mu * mu, 1.0)
    degenerate = (var_i <= tol) | (var_j <= tol)
    return np.where(degenerate, 1.0, cov / np.where(degenerate, 1.0, si_ * sj_))


def _block_texture_map(q, nlev, feature, window, distance, angles, symmetric):
    """Non-linear GLCM features on windows centred on a grid, then bilinear interpolation."""
    import cv2

    h, w = q.shape
    step = max(1, window // 2)
    cy = np.arange(0, h, step)
    cx = np.arange(0, w, step)
    if cy[-1] != h - 1:
        cy = np.r_[cy, h - 1]
    if cx[-1] != w - 1:
        cx = np.r_[cx, w - 1]
    half = window // 2
    grid = np.zeros((cy.size, cx.size), np.float64)
    # windows overlap (step < window): process them in groups of non-overlapping windows,
    # each group as one label image handled in one vectorised pass
    stride = -(-window // step)
    for oy in range(stride):
        for ox in range(stride):
            ys, xs = cy[oy::stride], cx[ox::stride]
            if ys.size == 0 or xs.size == 0:
                continue
            # the windows of one group do not overlap: label image = row band x column band
            row_band = np.full(h, -1, np.int64)
            for a, y in enumerate(ys):
                row_band[max(0, y - half) : y - half + window] = a
            col_band = np.full(w, -1, np.int64)
            for b, x in enumerate(xs):
                col_band[max(0, x - half) : x - half + window] = b
            inside = (row_band[:, None] >= 0) & (col_band[None, :] >= 0)
            lab = np.where(inside, row_band[:, None] * xs.size + col_band[None, :] + 1, 0).astype(np.int32)
            res = glcm_features(
                q,
                lab,
                distances=[distance],
                angles=angles,
                levels=nlev,
                value_range=(0, nlev),
                symmetric=symmetric,
                properties=[feature],
            )
            vals = np.full(ys.size * xs.size, np.nan)
            vals[res["label"].to_numpy() - 1] = res[f"glcm_{feature}"].to_numpy()
            grid[oy::stride, ox::stride] = vals.reshape(ys.size, xs.size)
    # bilinear interpolation from the grid of centres to every pixel
    yy = np.interp(np.arange(h), cy, np.arange(cy.size)).astype(np.float32)
    xx = np.interp(np.arange(w), cx, np.arange(cx.size)).astype(np.float32)
    map_x, map_y = np.meshgrid(xx, yy)
    out = cv2.remap(grid.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out
