"""Stage 3: local fibre diameters from sub-pixel profiles along the normal of the centreline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .graph import _Graph


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
    return _side_widths(values, ys, xs, ny, nx, tmax, step, inner).sum(axis=1)


def _side_widths(values: np.ndarray, ys, xs, ny, nx, tmax: float, step: float = 0.5, inner=None) -> np.ndarray:
    """The two half widths (along +normal, along -normal) of :func:`_profile_widths`, shape (n, 2)."""
    m = values.astype(np.float32)
    ts = np.arange(0.0, tmax + step, step, dtype=np.float32)
    out = np.full((len(ys), 2), np.nan, np.float32)
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
        rows = np.arange(e - s)
        for side, prof in enumerate(profs):
            below = prof < lv[:, None]
            below[:, -1] = True
            k = np.argmax(below, axis=1)
            ok = (k > 0) & (prof[rows, k] < lv)
            k1 = np.maximum(k - 1, 0)
            p0 = prof[rows, k1]
            p1 = prof[rows, k]
            frac = np.where(p0 > p1, (p0 - lv) / np.maximum(p0 - p1, 1e-6), 0.0)
            out[s:e, side] = np.where(ok, ts[k1] + frac * step, np.nan)
    return out


@dataclass
class _Widths:
    """Local width at each centreline pixel (px, NaN where not measured) and where it counts.

    ``valid``: finite and away from junctions (a fibre's width, not a crossing's);
    ``near_bead``: a wide place here would reach a junction (a crossing, not a bead).
    """

    widths: np.ndarray
    valid: np.ndarray
    near_bead: np.ndarray


def _local_widths(fmask: np.ndarray, dist: np.ndarray, g: _Graph, profile_source) -> _Widths:
    """Sub-pixel widths along the normal: half maximum of ``profile_source``, or the mask's 0.5 crossings."""
    h, w = fmask.shape
    ys, xs = g.ys, g.xs
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
    if g.crossing.any():
        dj, (iy, ix) = ndi.distance_transform_edt(~g.crossing, return_indices=True)
        dj_ = dj[ys, xs]
        rj = dist[iy[ys, xs], ix[ys, xs]]
        near = dj_ < 2.0 * rj + 3.0
        # a wide place whose own disc reaches a junction is a crossing, not a bead
        near_bead = dj_ < dist[ys, xs] + 2.0 * rj + 3.0
    else:
        near = near_bead = np.zeros(len(ys), bool)
    return _Widths(widths, np.isfinite(widths) & ~near, near_bead)
