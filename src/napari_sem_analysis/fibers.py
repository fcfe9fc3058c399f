"""Fibre mats: fibre diameter, orientation, junctions, beads and mesh pores.

:func:`measure_fibers` measures electrospun (nano)fibre micrographs the way
DiameterJ and OrientationJ do in Fiji, in one call on a numpy array:

1. **Segmentation** (unless a mask is given): the image minus a smooth
   background is thresholded (Otsu); with ``method="ridge"`` (the default)
   a multi-scale tubeness (Sato) filter adds faint fibres that the intensity
   threshold misses, at half the intensity threshold.
2. **Centreline**: the skeleton of the mask, with spurs shorter than the
   local fibre radius pruned; junctions (3+ neighbours) and end points.
3. **Local diameter** at each centreline pixel: the width of the mask
   along the local normal (from the structure tensor of the distance map),
   read with sub-pixel edges from profiles of the mask. Pixels near a
   junction are left out of the diameter statistics (the width there is
   the crossing's, not a fibre's).
4. **Segments** between junctions and end points: length, mean and SD
   diameter, orientation.
5. **Beads**: stretches of the centreline wider than ``bead_factor`` times
   their segment's median diameter (spindles), and compact blobs that carry
   no fibre.
6. **Summary**: diameter statistics, alignment (length-weighted
   ``1 - circular variance`` of doubled segment angles: 0 random, 1 all
   parallel), mean orientation, junction and bead densities, bead size,
   mesh pore size (local thickness of the background).

Angles are degrees counter-clockwise from the image's +x axis with y up
(as a user reads the micrograph), in [0, 180).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ._validation import SEMAnalysisError, check_image, check_positive, to_grayscale
from .thickness import _inside_distance

__all__ = ["FIBER_FEATURES", "FiberResult", "fiber_features", "measure_fibers"]

_EIGHT = np.ones((3, 3), bool)


@dataclass
class FiberResult:
    """Result of :func:`measure_fibers`.

    Attributes
    ----------
    segments : pandas.DataFrame
        One row per fibre segment (between junctions / end points): ``label``,
        ``length``, ``diameter_mean``, ``diameter_sd``, ``diameter_median``,
        ``orientation`` (degrees), ``n_beads``, ``centroid_y``,
        ``centroid_x`` (pixels). Lengths and diameters in nm when a pixel
        size was given, else in pixels.
    summary : dict
        Image summaries; see :func:`measure_fibers`.
    fibers : ndarray (int32)
        Fibre mask labelled by the nearest centreline segment.
    centerline : ndarray (int32)
        The centreline labelled by segment (0 elsewhere).
    beads : ndarray (int32)
        One label per bead.
    bead_table : pandas.DataFrame
        ``label``, ``y``, ``x`` (pixels), ``diameter`` (nm or px), ``kind``
        (``"spindle"`` on a fibre or ``"blob"``).
    diameter_map : ndarray (float32)
        Local diameter at each centreline pixel (nm or px; NaN where not
        measured, 0 off the centreline).
    mask : ndarray (bool)
        The fibre mask that was measured.
    pixel_size : float or None
    """

    segments: object
    summary: dict
    fibers: np.ndarray
    centerline: np.ndarray
    beads: np.ndarray
    bead_table: object
    diameter_map: np.ndarray
    mask: np.ndarray
    pixel_size: float | None = None
    info: dict = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        """The fibre segment labels (``fibers``), for recipes and the batch."""
        return self.fibers

    def flat_summary(self) -> dict:
        """The scalar summary figures (no histogram), for tables and the batch."""
        return {k: v for k, v in self.summary.items() if not isinstance(v, tuple)}


# ---------------------------------------------------------------------------
# stage 1: segmentation
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# stage 2: centreline graph
# ---------------------------------------------------------------------------


def _neighbours(skel: np.ndarray) -> np.ndarray:
    k = np.ones((3, 3), np.int32)
    k[1, 1] = 0
    return ndi.convolve(skel.astype(np.int32), k, mode="constant") * skel


def _graph(skel: np.ndarray):
    """Junction pixels, end points and segment labels (junction pixels removed) of a skeleton."""
    deg = _neighbours(skel)
    junction = skel & (deg >= 3)
    endpoint = skel & (deg == 1)
    seg, n = ndi.label(skel & ~junction, _EIGHT)
    return junction, endpoint, seg, n


def centerline(mask: np.ndarray, dist: np.ndarray, *, spur_factor: float = 1.5, passes: int = 3) -> np.ndarray:
    """Skeleton of ``mask`` with spurs shorter than ``spur_factor`` x the local radius pruned."""
    from skimage.morphology import skeletonize

    skel = skeletonize(mask)
    for _ in range(passes):
        junction, endpoint, seg, n = _graph(skel)
        if n == 0 or not junction.any():
            break
        idx = np.arange(n + 1)
        size = np.bincount(seg.ravel(), minlength=n + 1)
        has_end = np.bincount(seg[endpoint], minlength=n + 1) > 0
        touches = np.bincount(seg[ndi.binary_dilation(junction, _EIGHT) & (seg > 0)], minlength=n + 1) > 0
        # the radius where the spur meets its junction: the largest distance on the spur
        rad = ndi.maximum(dist, seg, idx)
        rad = np.asarray(rad, float)
        spur = has_end & touches & (size <= spur_factor * rad + 2)
        spur[0] = False
        if not spur.any():
            break
        skel = skel & ~spur[seg]
        skel = skeletonize(skel)
    return skel


# ---------------------------------------------------------------------------
# stage 3: local diameter from sub-pixel mask profiles along the normal
# ---------------------------------------------------------------------------


def _normals(dist: np.ndarray, sigma: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Unit normal (ny, nx) field: the dominant gradient direction of the distance map."""
    d = ndi.gaussian_filter(dist.astype(np.float32), 1.0)
    gy = ndi.sobel(d, 0)
    gx = ndi.sobel(d, 1)
    jxx = ndi.gaussian_filter(gx * gx, sigma)
    jyy = ndi.gaussian_filter(gy * gy, sigma)
    jxy = ndi.gaussian_filter(gx * gy, sigma)
    theta = 0.5 * np.arctan2(2 * jxy, jxx - jyy)
    return np.sin(theta), np.cos(theta)


def _profile_widths(values: np.ndarray, ys, xs, ny, nx, tmax: float, step: float = 0.5, inner=None) -> np.ndarray:
    """Width through (ys, xs) along (ny, nx): distance between the level crossings either side.

    For a mask (``inner`` None) the level is 0.5. Otherwise ``values`` is a
    background-free image and the level is half the profile's peak within
    ``inner`` pixels of the centre: the full width at half maximum, which
    follows each fibre's own brightness (and its bright SEM edges).
    """
    m = values.astype(np.float32)
    ts = np.arange(0.0, tmax + step, step, dtype=np.float32)
    out = np.full(len(ys), np.nan, np.float32)
    chunk = max(1, 1_000_000 // len(ts))
    for s in range(0, len(ys), chunk):
        e = min(len(ys), s + chunk)
        profs = []
        for sign in (1.0, -1.0):
            cy = ys[s:e, None] + sign * ny[s:e, None] * ts[None, :]
            cx = xs[s:e, None] + sign * nx[s:e, None] * ts[None, :]
            prof = ndi.map_coordinates(m, [cy.ravel(), cx.ravel()], order=1, mode="nearest")
            profs.append(prof.reshape(cy.shape))
        if inner is None:
            lv = np.full(e - s, 0.5, np.float32)
        else:
            within = ts[None, :] <= np.maximum(inner[s:e, None], step)
            peak = np.maximum(
                np.where(within, profs[0], -np.inf).max(axis=1), np.where(within, profs[1], -np.inf).max(axis=1)
            )
            lv = np.maximum(0.5 * peak, 1e-6).astype(np.float32)
        total = np.zeros(e - s, np.float32)
        rows = np.arange(e - s)
        for prof in profs:
            below = prof < lv[:, None]
            below[:, -1] = True
            k = np.argmax(below, axis=1)
            ok = (k > 0) & (prof[rows, k] < lv)
            k1 = np.maximum(k - 1, 0)
            p0 = prof[rows, k1]
            p1 = prof[rows, k]
            frac = np.where(p0 > p1, (p0 - lv) / np.maximum(p0 - p1, 1e-6), 0.0)
            total += np.where(ok, ts[k1] + frac * step, np.nan)
        out[s:e] = total
    return out


# ---------------------------------------------------------------------------
# the measurement
# ---------------------------------------------------------------------------


def _circular_stats(angles_rad: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Length-weighted alignment (resultant of doubled angles) and mean orientation (degrees)."""
    if angles_rad.size == 0 or weights.sum() <= 0:
        return float("nan"), float("nan")
    res = np.sum(weights * np.exp(2j * angles_rad)) / weights.sum()
    return float(abs(res)), float(np.rad2deg(np.angle(res) / 2.0) % 180.0)


def _weighted_percentile(values, weights, q):
    order = np.argsort(values)
    v, w = values[order], weights[order]
    c = np.cumsum(w)
    if c[-1] <= 0:
        return float("nan")
    return float(v[min(np.searchsorted(c, q / 100.0 * c[-1]), len(v) - 1)])


def _segment_quantile(segid: np.ndarray, values: np.ndarray, valid: np.ndarray, nseg: int, q: float):
    """The ``q`` quantile (0..1, lower value) of ``values[valid]`` per segment id (NaN where none)."""
    out = np.full(nseg + 1, np.nan)
    ok = valid & np.isfinite(values)
    if not ok.any():
        return out
    sv, sw = segid[ok], values[ok].astype(np.float64)
    order = np.lexsort((sw, sv))
    sv, sw = sv[order], sw[order]
    idx = np.arange(1, nseg + 1)
    starts = np.searchsorted(sv, idx, "left")
    ends = np.searchsorted(sv, idx, "right")
    nz = ends > starts
    pos = starts + np.floor(q * (ends - starts - 1)).astype(int)
    out[idx[nz]] = sw[pos[nz]]
    return out


def _segment_stats(segid: np.ndarray, values: np.ndarray, valid: np.ndarray, nseg: int):
    """Median, mean and SD of ``values[valid]`` per segment id (NaN where a segment has none)."""
    med = np.full(nseg + 1, np.nan)
    mean = np.full(nseg + 1, np.nan)
    sd = np.full(nseg + 1, np.nan)
    ok = valid & np.isfinite(values)
    if not ok.any():
        return med, mean, sd
    sv, sw = segid[ok], values[ok].astype(np.float64)
    order = np.lexsort((sw, sv))
    sv, sw = sv[order], sw[order]
    idx = np.arange(1, nseg + 1)
    starts = np.searchsorted(sv, idx, "left")
    ends = np.searchsorted(sv, idx, "right")
    nz = ends > starts
    lo = (starts + ends - 1) // 2
    hi = np.minimum((starts + ends) // 2, len(sw) - 1)
    med[idx[nz]] = 0.5 * (sw[lo[nz]] + sw[hi[nz]])
    c = np.bincount(sv, minlength=nseg + 1).astype(float)
    s1 = np.bincount(sv, sw, minlength=nseg + 1)
    s2 = np.bincount(sv, sw * sw, minlength=nseg + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = s1 / c
        mean = np.where(c > 0, m1, np.nan)
        sd = np.where(c > 0, np.sqrt(np.maximum(s2 / c - m1 * m1, 0)), np.nan)
    return med, mean, sd


def measure_fibers(
    image=None,
    *,
    mask=None,
    pixel_size: float | None = None,
    method: str = "ridge",
    max_diameter: float | None = None,
    bead_factor: float = 1.8,
    min_segment_length: float = 0.0,
    pores: bool = True,
) -> FiberResult:
    """Measure fibre diameters, orientations, junctions and beads of a fibre mat.

    Parameters
    ----------
    image : array-like (2-D), optional
        The micrograph (bright fibres). Needed unless ``mask`` is given.
    mask : array-like (2-D, bool or labels), optional
        A fibre mask to measure instead of segmenting ``image`` (e.g. from a
        U-Net).
    pixel_size : float, optional
        nm per pixel: lengths and diameters in nm, densities per µm².
        Without it: pixels and densities per 10⁶ px².
    method : {"ridge", "threshold"}
        Segmentation of ``image``; see :func:`segment_fibers`.
    max_diameter : float, optional
        Largest fibre (or bead) diameter expected, in pixels (segmentation
        scale). Default: a tenth of the smaller image side.
    bead_factor : float
        A stretch of centreline wider than ``bead_factor`` x its segment's
        median diameter is a bead; so is a compact blob at least that much
        wider than the median fibre.
    min_segment_length : float
        Segments shorter than this (pixels) are left out of the segment
        table and orientation statistics (diameters still count).
    pores : bool
        Measure the mesh pore size (local thickness of the background).

    Returns
    -------
    FiberResult
        ``segments`` table, ``summary`` dict, ``fibers`` / ``centerline`` /
        ``beads`` label images, ``bead_table`` and ``diameter_map``. The
        summary has ``diameter_mean``, ``diameter_median``, ``diameter_sd``,
        ``diameter_cv``, ``diameter_p10``, ``diameter_p90``,
        ``diameter_histogram`` (counts, edges), ``alignment`` (0 random ..
        1 parallel), ``orientation_mean`` (degrees), ``total_length``,
        ``n_segments``, ``n_junctions``, ``junction_density``,
        ``bead_count``, ``bead_density``, ``bead_diameter_mean``,
        ``bead_area_fraction``, ``fiber_area_fraction``,
        ``pore_size_median``, ``pore_size_mean``, ``unit`` and
        ``density_unit``. Diameters are length weighted (one value per
        centreline pixel away from junctions).
    """
    import pandas as pd

    if pixel_size is not None:
        pixel_size = check_positive(pixel_size, "pixel_size")
    bead_factor = check_positive(bead_factor, "bead_factor")
    if bead_factor <= 1.0:
        raise SEMAnalysisError(f"bead_factor must be > 1, got {bead_factor!r}")
    profile_source = None
    if mask is not None:
        from .thickness import _check_mask

        fmask = _check_mask(mask)
        if image is not None:
            img = check_image(to_grayscale(np.asarray(image)))
            if img.shape != fmask.shape:
                raise SEMAnalysisError(f"mask shape {fmask.shape} does not match image shape {img.shape}")
        if min(fmask.shape) < 16:
            raise SEMAnalysisError(f"mask of shape {fmask.shape} is smaller than 16 pixels")
    else:
        if image is None:
            raise SEMAnalysisError("give an image or a mask")
        fmask = segment_fibers(image, method=method, max_diameter=max_diameter)
        img = check_image(to_grayscale(np.asarray(image)))
        dmax = float(max_diameter) if max_diameter is not None else min(img.shape) / 10.0
        fg = _foreground(img, dmax, 0.7)[1]
        # the opening follows the lower envelope of the noise: take the background level
        # away from the fibres as zero, so that half maximum is half way up from it
        away = ~ndi.binary_dilation(fmask, iterations=3)
        profile_source = fg - (float(np.median(fg[away])) if away.any() else 0.0)
    h, w = fmask.shape
    scale = 1.0 if pixel_size is None else float(pixel_size)
    dist = _inside_distance(fmask).astype(np.float32)

    # --- centreline graph
    skel = centerline(fmask, dist)
    junction, _, seg, nseg = _graph(skel)
    _, n_junctions = ndi.label(junction, _EIGHT)

    # --- local diameters along the normal
    ys, xs = np.nonzero(seg)
    ny_f, nx_f = _normals(dist)
    tmax = float(min(2.0 * dist.max() + 4.0, max(h, w)))
    # sub-pixel widths: half-maximum of the foreground profile when we segmented the image
    # ourselves (each fibre against its own brightness), else the mask's 0.5 crossings
    widths = _profile_widths(
        fmask if profile_source is None else profile_source,
        ys.astype(np.float32),
        xs.astype(np.float32),
        ny_f[ys, xs],
        nx_f[ys, xs],
        tmax,
        inner=None if profile_source is None else dist[ys, xs],
    )
    # the normal can miss near bends: the width is at least the inscribed disc's
    if profile_source is None:
        widths = np.where(np.isfinite(widths), np.maximum(widths, 2 * dist[ys, xs] - 1), np.nan)
    # leave out pixels near junctions: there the width is the crossing's
    if junction.any():
        dj, (iy, ix) = ndi.distance_transform_edt(~junction, return_indices=True)
        dj_ = dj[ys, xs]
        rj = dist[iy[ys, xs], ix[ys, xs]]
        near = dj_ < 2.0 * rj + 3.0
        # a wide place whose own disc reaches a junction is a crossing, not a bead
        near_bead = dj_ < dist[ys, xs] + 2.0 * rj + 3.0
    else:
        near = near_bead = np.zeros(len(ys), bool)
    valid = np.isfinite(widths) & ~near
    segid = seg[ys, xs]

    # --- segment geometry: PCA orientation, link length
    idx = np.arange(1, nseg + 1)
    cnt = np.bincount(segid, minlength=nseg + 1).astype(float)
    my = np.bincount(segid, ys, minlength=nseg + 1) / np.maximum(cnt, 1)
    mx = np.bincount(segid, xs, minlength=nseg + 1) / np.maximum(cnt, 1)
    dy = ys - my[segid]
    dx = xs - mx[segid]
    syy = np.bincount(segid, dy * dy, minlength=nseg + 1)
    sxx = np.bincount(segid, dx * dx, minlength=nseg + 1)
    sxy = np.bincount(segid, dx * -dy, minlength=nseg + 1)  # y up
    theta = 0.5 * np.arctan2(2 * sxy, sxx - syy)  # radians, CCW from +x, y up
    length = np.zeros(nseg + 1)
    padded = np.pad(seg, 1)

    def shifted(oy: int, ox: int) -> np.ndarray:
        return padded[1 + oy : 1 + oy + h, 1 + ox : 1 + ox + w]

    for oy, ox in ((0, 1), (1, 0), (1, 1), (1, -1)):
        link = (seg > 0) & (shifted(oy, ox) == seg)
        step = 1.0
        if oy and ox:
            # a diagonal link with an orthogonal detour is not counted twice
            link &= (shifted(0, ox) != seg) & (shifted(oy, 0) != seg)
            step = float(np.sqrt(2.0))
        length += step * np.bincount(seg[link], minlength=nseg + 1)
    length += 1.0  # the pixel itself: a 1-pixel segment has length 1
    length[0] = 0

    # --- per-segment diameters and beads
    wv = np.where(valid, widths, np.nan)
    global_med = float(np.nanmedian(wv)) if valid.any() else float("nan")
    # beads must be judged against the fibre, not the bead: the lower quartile of a
    # segment's widths is the fibre even where a bead takes half the segment
    seg_ref = _segment_quantile(segid, widths, valid, nseg, 0.25)
    ref = np.where(np.isfinite(seg_ref), seg_ref, global_med)
    if np.isfinite(global_med):
        ref = np.minimum(ref, 2.0 * global_med)
    # a bead is where the inscribed disc (not the normal profile, which runs along
    # crossing fibres) is much wider than the fibre
    disc = 2.0 * dist[ys, xs] - 1.0
    # (and at least 4 px wider: thin digital lines and their crossings are not beads)
    wide = (disc > np.maximum(bead_factor * ref[segid], ref[segid] + 4.0)) & ~near_bead
    bead_pix = np.zeros((h, w), bool)
    bead_pix[ys[wide], xs[wide]] = True
    gap = max(2, int(round(global_med))) if np.isfinite(global_med) else 2
    bead_lab_c, n_sp = ndi.label(ndi.binary_dilation(bead_pix, _EIGHT, iterations=gap) & skel, _EIGHT)
    # fibre diameters leave out the beads and their tapers
    if n_sp:
        db, (by_i, bx_i) = ndi.distance_transform_edt(~bead_pix, return_indices=True)
        zone = db[ys, xs] < dist[by_i[ys, xs], bx_i[ys, xs]] + ref[segid]
        valid &= ~zone
    seg_med, seg_mean, seg_sd = _segment_stats(segid, widths, valid, nseg)
    # fibre labels: each mask pixel takes its nearest centreline pixel's segment
    if nseg:
        _, (ny_i, nx_i) = ndi.distance_transform_edt(seg == 0, return_indices=True)
        fibers = np.where(fmask, seg[ny_i, nx_i], 0).astype(np.int32)
        nearest_bead = np.where(fmask, bead_lab_c[ny_i, nx_i], 0)
    else:
        fibers = np.zeros((h, w), np.int32)
        nearest_bead = np.zeros((h, w), np.int32)
    rows = []
    beads = np.zeros((h, w), np.int32)
    wmap = np.zeros((h, w), np.float32)
    wmap[ys, xs] = np.where(valid, widths, np.nan)
    for k in range(1, n_sp + 1):
        sel = bead_lab_c[ys, xs] == k
        if not sel.any():
            continue
        ww = disc[sel]
        j = int(np.argmax(ww))
        beads[nearest_bead == k] = len(rows) + 1
        rows.append((float(ys[sel][j]), float(xs[sel][j]), float(ww[j]), "spindle", int(segid[sel][j])))
    # compact blobs carrying no fibre
    comp, ncomp = ndi.label(fmask, _EIGHT)
    if ncomp and np.isfinite(global_med):
        cidx = np.arange(1, ncomp + 1)
        area = ndi.sum(np.ones_like(dist), comp, cidx)
        rmax = np.asarray(ndi.maximum(dist, comp, cidx), float)
        sk_len = np.bincount(comp[skel], minlength=ncomp + 1)[1:]
        has_junction = np.bincount(comp[junction], minlength=ncomp + 1)[1:] > 0
        disc_area = np.pi * (rmax - 0.5) ** 2
        blob = (
            (2 * rmax - 1 > bead_factor * global_med)
            & (sk_len <= 3.0 * rmax)
            & ~has_junction
            & (area <= 2.5 * np.maximum(disc_area, 1))
        )
        for c_ in cidx[blob]:
            sel = comp == c_
            if beads[sel].any():
                continue
            cy, cx = ndi.center_of_mass(sel)
            beads[sel] = len(rows) + 1
            rows.append((float(cy), float(cx), float(2 * np.sqrt(sel.sum() / np.pi)), "blob", 0))
    bead_table = pd.DataFrame(
        {
            "label": np.arange(1, len(rows) + 1, dtype=int),
            "y": [r[0] for r in rows],
            "x": [r[1] for r in rows],
            "diameter": [r[2] * scale for r in rows],
            "kind": [r[3] for r in rows],
        }
    )
    n_beads_seg = np.bincount([r[4] for r in rows if r[4] > 0], minlength=nseg + 1)

    # --- segment table
    keep = (length[1:] >= min_segment_length) if nseg else np.zeros(0, bool)
    segments = pd.DataFrame(
        {
            "label": idx[keep],
            "length": length[1:][keep] * scale,
            "diameter_mean": seg_mean[1:][keep] * scale,
            "diameter_sd": seg_sd[1:][keep] * scale,
            "diameter_median": seg_med[1:][keep] * scale,
            "orientation": np.rad2deg(theta[1:][keep]) % 180.0,
            "n_beads": n_beads_seg[1:][keep],
            "centroid_y": my[1:][keep],
            "centroid_x": mx[1:][keep],
        }
    )

    # --- summary
    area_px = float(h * w)
    if pixel_size is None:
        area_unit, density_unit = area_px / 1e6, "per 10^6 px^2"
    else:
        area_unit, density_unit = area_px * scale * scale / 1e6, "per um^2"
    vals = widths[valid] * scale
    summary: dict = {}
    if vals.size:
        p10, med, p90 = np.percentile(vals, (10, 50, 90))
        mean, sd = float(vals.mean()), float(vals.std())
        summary.update(
            diameter_mean=mean,
            diameter_median=float(med),
            diameter_sd=sd,
            diameter_cv=sd / mean if mean > 0 else float("nan"),
            diameter_p10=float(p10),
            diameter_p90=float(p90),
            diameter_histogram=np.histogram(vals, bins=30),
        )
    else:
        for k in ("mean", "median", "sd", "cv", "p10", "p90"):
            summary[f"diameter_{k}"] = float("nan")
        summary["diameter_histogram"] = (np.zeros(30, int), np.linspace(0, 1, 31))
    seg_keep = idx[keep]
    align, omean = _circular_stats(theta[seg_keep], length[seg_keep])
    bead_area = float((beads > 0).sum())
    fib_area = float(fmask.sum())
    summary.update(
        alignment=align,
        orientation_mean=omean,
        total_length=float(length[1:].sum() * scale),
        n_segments=int(len(segments)),
        n_junctions=int(n_junctions),
        junction_density=n_junctions / area_unit,
        bead_count=int(len(rows)),
        bead_density=len(rows) / area_unit,
        bead_diameter_mean=float(bead_table["diameter"].mean()) if len(rows) else 0.0,
        bead_area_fraction=bead_area / fib_area if fib_area else 0.0,
        fiber_area_fraction=fib_area / area_px,
    )
    if pores and (~fmask).any():
        from .thickness import local_thickness

        lt = local_thickness(~fmask)
        summary["pore_size_median"] = lt.summary["median"] * scale
        summary["pore_size_mean"] = lt.summary["mean"] * scale
    else:
        summary["pore_size_median"] = summary["pore_size_mean"] = float("nan")
    summary["unit"] = "px" if pixel_size is None else "nm"
    summary["density_unit"] = density_unit
    wmap[ys, xs] *= scale
    return FiberResult(
        segments=segments,
        summary=summary,
        fibers=fibers,
        centerline=np.where(skel, seg, 0).astype(np.int32),
        beads=beads,
        bead_table=bead_table,
        diameter_map=wmap,
        mask=fmask,
        pixel_size=pixel_size,
        info={"widths_px": widths, "valid": valid, "segment_of_pixel": segid, "ref_px": ref},
    )


# ---------------------------------------------------------------------------
# physical features for classification
# ---------------------------------------------------------------------------

FIBER_FEATURES = (
    "fib_diameter_cv",
    "fib_diameter_iqr_rel",
    "fib_diameter_p90_rel",
    "fib_diameter_p10_rel",
    "fib_within_segment_cv",
    "fib_beads_per_length",
    "fib_bead_area_fraction",
    "fib_bead_size_rel",
    "fib_swelling_fraction",
    "fib_thickness_cv",
    "fib_thickness_p95_rel",
    "fib_alignment",
    "fib_junctions_per_length",
    "fib_area_fraction",
    "fib_pore_size_rel",
    "fib_segment_length_rel",
)


def fiber_features(image=None, *, mask=None, result: FiberResult | None = None, **kwargs) -> dict:
    """Scale-free physical features of a fibre micrograph, for classification.

    What makes a mat "defective" is beads and uneven fibres, whatever the
    magnification: every feature is a ratio or a count per fibre length in
    units of the median fibre diameter, so images of other specimens at
    other magnifications are comparable without a pixel size.

    Parameters
    ----------
    image : array-like (2-D), optional
    mask : array-like, optional
        Passed to :func:`measure_fibers`.
    result : FiberResult, optional
        A measurement to reuse instead of measuring again.
    **kwargs
        Passed to :func:`measure_fibers` (``method``, ``max_diameter``,
        ``bead_factor``).

    Returns
    -------
    dict
        ``FIBER_FEATURES`` name -> float, always the same names in the same
        order (NaN-free: 0 where a quantity is undefined).
    """
    from .thickness import local_thickness

    r = result if result is not None else measure_fibers(image, mask=mask, pores=True, **kwargs)
    s = r.summary
    k = 1.0 if r.pixel_size is None else float(r.pixel_size)
    widths = r.info["widths_px"][r.info["valid"]]
    widths = widths[np.isfinite(widths)]
    med = float(np.median(widths)) if widths.size else float("nan")

    def ratio(a, b):
        a, b = float(a), float(b)
        return a / b if np.isfinite(a) and np.isfinite(b) and b > 0 else 0.0

    if widths.size:
        p10, p25, p75, p90 = np.percentile(widths, (10, 25, 75, 90))
    else:
        p10 = p25 = p75 = p90 = float("nan")
    seg = r.segments
    if len(seg):
        wl = seg["length"].to_numpy(float)
        cv = (seg["diameter_sd"] / seg["diameter_mean"]).to_numpy(float)
        okc = np.isfinite(cv) & (wl > 0)
        within = float(np.sum(cv[okc] * wl[okc]) / np.sum(wl[okc])) if okc.any() else 0.0
        seg_len = float(np.median(wl)) / k
    else:
        within, seg_len = 0.0, float("nan")
    length_d = ratio(s["total_length"] / k, med)  # fibre length in median diameters
    all_w = r.info["widths_px"]
    ref = r.info["ref_px"][r.info["segment_of_pixel"]] if len(all_w) else np.zeros(0)
    fin = np.isfinite(all_w)
    swell = float(np.mean(all_w[fin] > 1.5 * ref[fin])) if fin.any() else 0.0
    lt = local_thickness(r.mask).thickness[r.mask] if r.mask.any() else np.zeros(1)
    feats = {
        "fib_diameter_cv": ratio(s["diameter_sd"], s["diameter_mean"]),
        "fib_diameter_iqr_rel": ratio(p75 - p25, med),
        "fib_diameter_p90_rel": ratio(p90, med),
        "fib_diameter_p10_rel": ratio(p10, med),
        "fib_within_segment_cv": within,
        "fib_beads_per_length": ratio(100.0 * s["bead_count"], length_d),
        "fib_bead_area_fraction": float(s["bead_area_fraction"]),
        "fib_bead_size_rel": ratio(s["bead_diameter_mean"] / k, med),
        "fib_swelling_fraction": swell,
        "fib_thickness_cv": ratio(lt.std(), lt.mean()),
        "fib_thickness_p95_rel": ratio(np.percentile(lt, 95), med),
        "fib_alignment": float(s["alignment"]) if np.isfinite(s["alignment"]) else 0.0,
        "fib_junctions_per_length": ratio(100.0 * s["n_junctions"], length_d),
        "fib_area_fraction": float(s["fiber_area_fraction"]),
        "fib_pore_size_rel": ratio(s["pore_size_median"] / k, med),
        "fib_segment_length_rel": ratio(seg_len, med),
    }
    return {n: float(np.nan_to_num(feats[n])) for n in FIBER_FEATURES}
