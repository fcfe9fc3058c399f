"""Statistics shared by the stages: circular statistics, per-segment quantiles, median, mean and SD."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _circular_stats(angles_rad: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """Length-weighted alignment (resultant of doubled angles) and mean orientation (degrees)."""
    if angles_rad.size == 0 or weights.sum() <= 0:
        return float("nan"), float("nan")
    res = np.sum(weights * np.exp(2j * angles_rad)) / weights.sum()
    return float(abs(res)), float(np.rad2deg(np.angle(res) / 2.0) % 180.0)


@dataclass
class _Runs:
    """Valid values sorted by segment id, then by value: segment ``idx[i]`` holds ``sw[starts[i]:ends[i]]``."""

    sv: np.ndarray
    sw: np.ndarray
    idx: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    @property
    def nz(self) -> np.ndarray:
        return self.ends > self.starts


def _sorted_runs(segid: np.ndarray, values: np.ndarray, valid: np.ndarray, nseg: int) -> _Runs | None:
    """The finite ``values[valid]`` grouped by segment id and sorted (None when there are none)."""
    ok = valid & np.isfinite(values)
    if not ok.any():
        return None
    sv, sw = segid[ok], values[ok].astype(np.float64)
    order = np.lexsort((sw, sv))
    sv, sw = sv[order], sw[order]
    idx = np.arange(1, nseg + 1)
    return _Runs(sv, sw, idx, np.searchsorted(sv, idx, "left"), np.searchsorted(sv, idx, "right"))


def _segment_quantile(segid: np.ndarray, values: np.ndarray, valid: np.ndarray, nseg: int, q: float):
    """The ``q`` quantile (0..1, lower value) of ``values[valid]`` per segment id (NaN where none)."""
    out = np.full(nseg + 1, np.nan)
    r = _sorted_runs(segid, values, valid, nseg)
    if r is None:
        return out
    nz = r.nz
    pos = r.starts + np.floor(q * (r.ends - r.starts - 1)).astype(int)
    out[r.idx[nz]] = r.sw[pos[nz]]
    return out


def _segment_stats(segid: np.ndarray, values: np.ndarray, valid: np.ndarray, nseg: int):
    """Median, mean and SD of ``values[valid]`` per segment id (NaN where a segment has none)."""
    med = np.full(nseg + 1, np.nan)
    r = _sorted_runs(segid, values, valid, nseg)
    if r is None:
        return med, med.copy(), med.copy()
    nz = r.nz
    lo = (r.starts + r.ends - 1) // 2
    hi = np.minimum((r.starts + r.ends) // 2, len(r.sw) - 1)
    med[r.idx[nz]] = 0.5 * (r.sw[lo[nz]] + r.sw[hi[nz]])
    c = np.bincount(r.sv, minlength=nseg + 1).astype(float)
    s1 = np.bincount(r.sv, r.sw, minlength=nseg + 1)
    s2 = np.bincount(r.sv, r.sw * r.sw, minlength=nseg + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = s1 / c
        mean = np.where(c > 0, m1, np.nan)
        sd = np.where(c > 0, np.sqrt(np.maximum(s2 / c - m1 * m1, 0)), np.nan)
    return med, mean, sd
