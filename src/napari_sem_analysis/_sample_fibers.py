"""Synthetic electrospun fibre mats with beads: :func:`sample_fibers`.

Re-exported by :mod:`napari_sem_analysis.sample_data` (``sem.sample_fibers``).
The generator runs in stages, each drawing from the same random generator in
a fixed order (so a seed always gives the same mat):

1. :func:`_draw_fibers`: straight fibres (centre, angle, diameter), near-parallel
   ones kept apart;
2. :func:`_place_beads`: spindles on fibres, away from crossings and borders;
3. :func:`_place_blobs`: round blobs free between the fibres;
4. :func:`_place_spindles`: long, shallow swellings on fibres (none by default,
   so that the mats of the other stages do not change), and
   :func:`_place_crossing_spindles`: the same where another fibre crosses them;
5. :func:`_render_mat`: fibres drawn deepest first, beads, noise, SEM rendering;
6. :func:`_truth_info`: the known answers (diameters, angles, alignment, beads, spindles).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage as ndi

if TYPE_CHECKING:  # pragma: no cover
    from .sample_data import SyntheticSample

__all__ = ["sample_fibers"]


@dataclass
class _Mat:
    """What the stages share: the fibres and the beads placed so far."""

    shape: tuple[int, int]
    fibers: list[tuple[float, float, float, float]]  # cy, cx, angle (rad), diameter (px)
    lengths: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dists: list[np.ndarray] = field(default_factory=list)  # distance of each pixel to each fibre's axis
    beads: list[tuple[float, float, float, str]] = field(default_factory=list)  # y, x, width, kind
    shapes: list[tuple[int, np.ndarray, float]] = field(default_factory=list)  # fibre (-1: blob), footprint, width
    spindles: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # y, x, peak w, L, fibre d
    crossing_spindles: list[int] = field(default_factory=list)  # indices into spindles of those at a crossing


def _line_distance(shape, cy, cx, angle):
    """Distance of every pixel centre to the infinite line through (cy, cx) at ``angle`` (image rows down)."""
    y, x = np.ogrid[: shape[0], : shape[1]]
    # direction (dx, dy) = (cos, -sin): angle counter-clockwise from +x with y up
    return np.abs((x - cx) * np.sin(angle) + (y - cy) * np.cos(angle))


def _line_length_in(shape, cy, cx, angle) -> float:
    """Length of the chord of the image rectangle along the line through (cy, cx) at ``angle``."""
    h, w = shape
    dx, dy = np.cos(angle), -np.sin(angle)
    ts = []
    for p0, d, lo, hi in ((cx, dx, 0.0, w - 1.0), (cy, dy, 0.0, h - 1.0)):
        if abs(d) < 1e-12:
            if not lo <= p0 <= hi:
                return 0.0
            ts.append((-np.inf, np.inf))
        else:
            a, b = (lo - p0) / d, (hi - p0) / d
            ts.append((min(a, b), max(a, b)))
    t0, t1 = max(ts[0][0], ts[1][0]), min(ts[0][1], ts[1][1])
    return float(max(t1 - t0, 0.0))


def _weighted_median(values, weights) -> float:
    order = np.argsort(values)
    v, wt = np.asarray(values, float)[order], np.asarray(weights, float)[order]
    c = np.cumsum(wt)
    return float(v[np.searchsorted(c, 0.5 * c[-1])])


def _von_mises_kappa(alignment: float) -> float:
    """Concentration of a von Mises distribution of doubled angles with resultant length ``alignment``."""
    a = float(np.clip(alignment, 0.0, 0.995))
    return 0.0 if a < 1e-3 else (a * (2 - a * a) / (1 - a * a) if a < 0.85 else 1.0 / (2 * (1 - a)))


def _draw_fibers(rng, shape, n_fibers: int, dmin: float, dmax: float, orientation: float, alignment: float):
    """Straight fibres (cy, cx, angle, diameter); near-parallel ones stay clear of each other."""
    h, w = shape
    kappa = _von_mises_kappa(alignment)
    mu = np.deg2rad(orientation)
    fibers: list[tuple[float, float, float, float]] = []
    attempts = 0
    while len(fibers) < n_fibers and attempts < n_fibers * 100:
        attempts += 1
        ang = (rng.vonmises(2 * mu, kappa) / 2.0) if kappa > 0 else rng.uniform(0, np.pi)
        ang = float(np.mod(ang, np.pi))
        d = float(rng.uniform(dmin, dmax))
        cy, cx = rng.uniform(0.1 * h, 0.9 * h), rng.uniform(0.1 * w, 0.9 * w)
        ok = True
        for fy, fx, fa, fd in fibers:
            dang = abs((ang - fa + np.pi / 2) % np.pi - np.pi / 2)
            if dang < np.deg2rad(20):
                # near-parallel: the new line must stay clear of the other inside the image
                sep = abs((cx - fx) * np.sin(fa) + (cy - fy) * np.cos(fa))
                span = np.hypot(h, w)
                if sep - span * np.sin(dang) < (d + fd) / 2 + 6:
                    ok = False
                    break
        if ok:
            fibers.append((cy, cx, ang, d))
    return fibers


def _place_beads(rng, mat: _Mat, n_beads: int, bead_factor: tuple[float, float]) -> None:
    """Spindles on randomly chosen fibres, away from other fibres, other beads and the border."""
    from .sample_data import _disk_distance

    h, w = mat.shape
    n = len(mat.fibers)
    tries = 0
    while len(mat.beads) < n_beads and tries < n_beads * 200 and n:
        tries += 1
        i = int(rng.integers(n))
        cy, cx, ang, d = mat.fibers[i]
        t = rng.uniform(-0.5, 0.5) * mat.lengths[i]
        by, bx = cy - t * np.sin(ang), cx + t * np.cos(ang)
        bw = d * float(rng.uniform(*bead_factor))
        bl = bw * float(rng.uniform(1.6, 2.2))
        margin = bl / 2 + 8
        if not (margin < by < h - margin and margin < bx < w - margin):
            continue
        iy, ix = int(round(by)), int(round(bx))
        clear = all(mat.dists[j][iy, ix] > (bl / 2 + mat.fibers[j][3] / 2 + 8) for j in range(n) if j != i)
        clear &= all(np.hypot(by - y, bx - x) > (bl + wb) for y, x, wb, _ in mat.beads)
        if not clear:
            continue
        # _disk_distance turns clockwise on the image (rows down); the fibre angle is counter-clockwise (y up)
        foot = _disk_distance(mat.shape, by, bx, bw / 2, bl / 2, -ang) <= 1.0
        mat.shapes.append((i, foot, bw))
        mat.beads.append((float(by), float(bx), float(bw), "spindle"))


def _place_blobs(rng, mat: _Mat, n_blobs: int, dmin: float, dmax: float) -> None:
    """Round blobs lying free between the fibres."""
    from .sample_data import _disk_distance

    h, w = mat.shape
    n = len(mat.fibers)
    blobs = 0
    tries = 0
    while blobs < n_blobs and tries < n_blobs * 300 and n:
        tries += 1
        bw = float(rng.uniform(2.5, 4.0)) * 0.5 * (dmin + dmax)
        by, bx = rng.uniform(bw, h - bw), rng.uniform(bw, w - bw)
        iy, ix = int(round(by)), int(round(bx))
        if any(mat.dists[j][iy, ix] < bw / 2 + mat.fibers[j][3] / 2 + 8 for j in range(n)):
            continue
        if any(np.hypot(by - y, bx - x) < (bw + wb) for y, x, wb, _ in mat.beads):
            continue
        foot = _disk_distance(mat.shape, by, bx, bw / 2, bw / 2, 0.0) <= 1.0
        mat.shapes.append((-1, foot, bw))
        mat.beads.append((float(by), float(bx), float(bw), "blob"))
        blobs += 1


def _place_spindles(rng, mat: _Mat, n_spindles: int, factor: tuple[float, float], length: tuple[float, float]) -> None:
    """Smooth swellings on fibres: width ``d (1 + (a - 1) cos^2(pi t / L))`` for ``|t| < L / 2`` along the fibre.

    ``a`` (the peak width over the fibre's) is drawn from ``factor`` and the
    length ``L`` from ``length`` (in fibre diameters). Each lies away from the
    other fibres (by a diameter past its ends), the beads, the blobs, the
    other spindles and the border.
    """
    h, w = mat.shape
    n = len(mat.fibers)
    tries = 0
    y, x = np.ogrid[:h, :w]
    while len(mat.spindles) < n_spindles and tries < n_spindles * 200 and n:
        tries += 1
        i = int(rng.integers(n))
        cy, cx, ang, d = mat.fibers[i]
        t = rng.uniform(-0.5, 0.5) * mat.lengths[i]
        sy, sx = cy - t * np.sin(ang), cx + t * np.cos(ang)
        amp = float(rng.uniform(*factor))
        sl = d * float(rng.uniform(*length))
        margin = sl / 2 + 2 * d + 8
        if not (margin < sy < h - margin and margin < sx < w - margin):
            continue
        if not _spindle_clear(mat, (i,), sy, sx, ang, d, amp, sl, margin):
            continue
        _add_spindle(mat, i, y, x, sy, sx, ang, d, amp, sl)


def _spindle_clear(mat: _Mat, own: tuple, sy, sx, ang, d, amp, sl, margin) -> bool:
    """A spindle at (sy, sx) on a fibre of angle ``ang`` stays clear of every fibre not in ``own``,
    of the beads and of the other spindles."""
    for k in range(len(mat.fibers)):
        if k in own:
            continue
        ky, kx, ka, kd = mat.fibers[k]
        k0 = (sx - kx) * np.sin(ka) + (sy - ky) * np.cos(ka)  # signed distance to fibre k's axis
        sin_d = np.sin(ka - ang)
        # fibre k must cross the spindle's fibre a diameter past the spindle's ends (and never touch it)
        reach = sl / 2 + d + 4 + (d + kd) / 2 / max(abs(sin_d), 1e-6)
        if abs(k0) <= amp * d / 2 + kd / 2 + 6 or (abs(sin_d) > 1e-6 and abs(k0 / sin_d) <= reach):
            return False
    if not all(np.hypot(sy - by, sx - bx) > margin + wb for by, bx, wb, _ in mat.beads):
        return False
    return all(np.hypot(sy - py, sx - px) > margin + pl / 2 for py, px, _, pl, _ in mat.spindles)


def _add_spindle(mat: _Mat, i: int, y, x, sy, sx, ang, d, amp, sl) -> None:
    """Draw the spindle's footprint on fibre ``i`` and record it."""
    along = (x - sx) * np.cos(ang) - (y - sy) * np.sin(ang)  # direction (cos, -sin): y up
    inside = np.abs(along) < sl / 2
    width = d * (1.0 + (amp - 1.0) * np.cos(np.pi * along / sl) ** 2)
    foot = inside & (mat.dists[i] <= width / 2)
    mat.shapes.append((i, foot, amp * d))
    mat.spindles.append((float(sy), float(sx), float(amp * d), float(sl), float(d)))


def _place_crossing_spindles(
    rng, mat: _Mat, n_spindles: int, factor: tuple[float, float], length: tuple[float, float]
) -> None:
    """Swellings (as :func:`_place_spindles`) centred where another fibre crosses, 35-90 degrees to them.

    The crossing fibre lies over or under the swelling (depth order as drawn);
    every other fibre, bead, blob and spindle stays clear of it.
    """
    h, w = mat.shape
    n = len(mat.fibers)
    pairs = []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            dang = abs((mat.fibers[i][2] - mat.fibers[j][2] + np.pi / 2) % np.pi - np.pi / 2)
            if dang >= np.deg2rad(35):
                pairs.append((i, j))
    placed, tries = 0, 0
    y, x = np.ogrid[:h, :w]
    while placed < n_spindles and tries < n_spindles * 200 and pairs:
        tries += 1
        i, j = pairs[int(rng.integers(len(pairs)))]
        cy, cx, ang, d = mat.fibers[i]
        fy, fx, fa, fd = mat.fibers[j]
        # where fibre j's axis crosses fibre i's: t along i, direction (cos, -sin) (y up)
        f0 = (cx - fx) * np.sin(fa) + (cy - fy) * np.cos(fa)
        t = -f0 / np.sin(fa - ang)
        sy, sx = cy - t * np.sin(ang), cx + t * np.cos(ang)
        amp = float(rng.uniform(*factor))
        sl = d * float(rng.uniform(*length))
        margin = sl / 2 + 2 * d + 8
        if not (margin < sy < h - margin and margin < sx < w - margin):
            continue
        if not _spindle_clear(mat, (i, j), sy, sx, ang, d, amp, sl, margin):
            continue
        _add_spindle(mat, i, y, x, sy, sx, ang, d, amp, sl)
        mat.crossing_spindles.append(len(mat.spindles) - 1)
        placed += 1


def _render_mat(rng, mat: _Mat, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image and labels: deepest fibre first, each its own brightness, slightly brighter at its edges."""
    from .sample_data import _sem_render

    n = len(mat.fibers)
    labels = np.zeros(mat.shape, np.int32)
    signal = np.full(mat.shape, 0.12)
    for k in np.argsort(depth):
        cy, cx, ang, d = mat.fibers[k]
        r = d / 2
        cover = np.clip(r - mat.dists[k] + 0.5, 0.0, 1.0)
        level = 0.45 + 0.35 * depth[k] / max(n - 1, 1)
        profile = level * (0.85 + 0.15 * np.clip(mat.dists[k] / r, 0, 1) ** 2)
        signal = signal * (1 - cover) + profile * cover
        labels[cover >= 0.5] = k + 1
        for i, foot, _ in mat.shapes:
            if i == k:
                signal[foot] = level
                labels[foot] = k + 1
    for i, foot, _ in mat.shapes:
        if i < 0:
            signal[foot] = 0.7
            labels[foot] = n + 1
    signal += ndi.gaussian_filter(rng.normal(0, 0.02, mat.shape), 2)
    return _sem_render(signal, rng, blur=0.7, dose=60), labels


def _truth_info(mat: _Mat) -> dict:
    """The known answers: per-fibre diameters / angles / lengths, length-weighted summaries, beads."""
    angles = np.array([f[2] for f in mat.fibers])
    diams = np.array([f[3] for f in mat.fibers])
    lengths = mat.lengths
    wl = lengths / max(lengths.sum(), 1e-9)
    res = np.sum(wl * np.exp(2j * angles))
    return {
        "diameters": diams.tolist(),
        "angles": np.rad2deg(angles).tolist(),
        "lengths": lengths.tolist(),
        "diameter_median": _weighted_median(diams, lengths),
        "diameter_mean": float(np.sum(wl * diams)),
        "alignment": float(abs(res)),
        "orientation_mean": float(np.rad2deg(np.angle(res) / 2) % 180),
        "beads": mat.beads,
        "spindles": mat.spindles,
        "crossing_spindles": mat.crossing_spindles,
        "n_fibers": len(mat.fibers),
    }


def sample_fibers(
    seed: int = 0,
    *,
    shape=(768, 768),
    n_fibers: int = 24,
    diameter: tuple[float, float] = (8.0, 16.0),
    orientation: float = 30.0,
    alignment: float = 0.0,
    n_beads: int = 12,
    n_blobs: int = 3,
    bead_factor: tuple[float, float] = (2.6, 3.6),
    pixel_size: float = 20.0,
    n_spindles: int = 0,
    spindle_factor: tuple[float, float] = (1.35, 1.65),
    spindle_length: tuple[float, float] = (6.0, 8.0),
    n_crossing_spindles: int = 0,
) -> SyntheticSample:
    """An electrospun fibre mat: straight fibres of known diameters and orientations, with beads.

    Fibres are straight cylinders across the image, drawn in random depth
    order (deeper ones darker), their diameters uniform in ``diameter``
    (pixels) and their orientations drawn from a von Mises distribution of
    doubled angles around ``orientation`` (degrees counter-clockwise from
    the +x axis, y up) whose concentration gives about the requested
    ``alignment`` (0 random .. 1 all parallel). Near-parallel fibres are kept
    apart, so that every crossing is a clear junction. Beads are spindles on
    fibres, ``bead_factor`` times the fibre diameter wide and placed away from
    crossings; ``n_blobs`` round blobs lie free between fibres.

    Parameters
    ----------
    seed : int
        Random seed; the same seed gives the same sample.
    shape : tuple of int
        Image shape (rows, columns).
    n_fibers : int
        Number of fibres drawn.
    diameter : tuple of float
        Range (min, max) of fibre diameters in pixels.
    orientation : float
        Mean fibre orientation, degrees counter-clockwise from +x.
    alignment : float
        0 (random orientations) .. 1 (all parallel).
    n_beads, n_blobs : int
        Number of beads on fibres and of loose blobs.
    bead_factor : tuple of float
        Range of bead diameters as multiples of the fibre diameter.
    pixel_size : float
        Nanometres per pixel stated in the sample.
    n_spindles : int
        Number of long, shallow swellings on fibres (slight defects, below
        the bead factor): the fibre widens smoothly to ``spindle_factor``
        times its diameter and back over ``spindle_length`` diameters.
    spindle_factor : tuple of float
        Range of the spindles' peak width as multiples of the fibre diameter.
    spindle_length : tuple of float
        Range of the spindles' length in fibre diameters.
    n_crossing_spindles : int
        Number of further spindles centred where another fibre crosses their
        fibre at 35-90 degrees (over or under it, as the depth order falls),
        so that the mask merges the swelling with the crossing.

    Returns
    -------
    SyntheticSample
        ``labels``: fibre ``i + 1`` for fibre ``i`` (the top-most where they
        cross), beads and blobs included. ``info`` holds per-fibre
        ``diameters`` and ``angles`` (degrees) and in-image ``lengths``
        (pixels), the length-weighted ``diameter_median`` / ``diameter_mean``
        (pixels), the length-weighted ``alignment`` (1 - circular variance of
        doubled angles) and ``orientation_mean``, ``beads``: a list of
        ``(y, x, width_px, kind)`` with kind ``"spindle"`` or ``"blob"``, and
        ``spindles``: a list of ``(y, x, peak_width_px, length_px,
        fibre_diameter_px)`` of the shallow swellings, and
        ``crossing_spindles`` the indices into ``spindles`` of those placed at
        a crossing.
    """
    from .sample_data import SyntheticSample

    rng = np.random.default_rng(seed)
    dmin, dmax = float(diameter[0]), float(diameter[1])
    if not 1.0 <= dmin <= dmax:
        from ._validation import SEMAnalysisError

        raise SEMAnalysisError(f"diameter must be (min, max) with 1 <= min <= max, got {diameter!r}")
    shape = tuple(shape)
    mat = _Mat(shape, _draw_fibers(rng, shape, n_fibers, dmin, dmax, orientation, alignment))
    depth = rng.permutation(len(mat.fibers))  # 0 = deepest
    mat.lengths = np.array([_line_length_in(shape, cy, cx, ang) for cy, cx, ang, _ in mat.fibers])
    mat.dists = [_line_distance(shape, cy, cx, ang) for cy, cx, ang, _ in mat.fibers]
    _place_beads(rng, mat, n_beads, bead_factor)
    _place_blobs(rng, mat, n_blobs, dmin, dmax)
    _place_spindles(rng, mat, n_spindles, spindle_factor, spindle_length)
    if n_crossing_spindles:  # (draws nothing otherwise: every earlier mat stays the same)
        _place_crossing_spindles(rng, mat, n_crossing_spindles, spindle_factor, spindle_length)
    image, labels = _render_mat(rng, mat, depth)
    return SyntheticSample(image=image, labels=labels, pixel_size=pixel_size, name="fibers", info=_truth_info(mat))
