"""Grey-level co-occurrence (GLCM) features of every region of a label image in one vectorised pass."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._validation import SEMAnalysisError, check_image
from .quantization import _pair_views, glcm_offsets, quantize
from .regions import _regions

GLCM_PROPERTIES = (
    "contrast",
    "dissimilarity",
    "homogeneity",
    "energy",
    "asm",
    "correlation",
    "entropy",
)
_ALL_GLCM_PROPERTIES = GLCM_PROPERTIES + ("mean", "variance")


# --------------------------------------------------------------------------
# GLCM
# --------------------------------------------------------------------------
def _mv(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Matrix-vector product without BLAS threads (they thrash on busy machines; these are small)."""
    return np.einsum("ij,j->i", m, v)


def _slots(present: np.ndarray):
    """Map label values to dense histogram rows: (lut or None, number of slots)."""
    max_lab = int(present[-1]) if present.size else 0
    if max_lab + 1 <= 2 * present.size + 1024:
        return None, max_lab + 1  # use label values directly
    if max_lab > 50_000_000:
        return "search", present.size + 1
    lut = np.full(max_lab + 1, present.size, np.int64)  # absent values -> an unused slot
    lut[present] = np.arange(present.size)
    return lut, present.size + 1


class _Codes:
    """Per-pixel integer codes ``slot << bits | level`` shared by all offsets."""

    def __init__(self, q: np.ndarray, lab: np.ndarray, present: np.ndarray, levels: int):
        self.levels = int(levels)
        self.bits = max(1, int(np.ceil(np.log2(self.levels))))
        lut, self.n_slots = _slots(present)
        self.rows = present if lut is None else np.arange(present.size)
        if lut is None:
            slot = lab.astype(np.int64)
        elif isinstance(lut, np.ndarray):
            slot = lut[lab]
        else:  # huge label values: map by binary search
            slot = np.searchsorted(present, lab).astype(np.int64)
            slot[lab == 0] = present.size
        if (self.n_slots << (2 * self.bits)) >= 2**62:
            raise SEMAnalysisError("too many labels for the GLCM codes; relabel them sequentially")
        slot <<= self.bits
        slot |= q
        # 32-bit codes when they fit: half the memory traffic in every pass
        if (self.n_slots << self.bits) < 2**31:
            slot = slot.astype(np.int32)
        self.code = slot
        self.lab = lab
        self.present = present
        self._hist_all = None
        self._lock = threading.Lock()

    def hist_all(self) -> np.ndarray:
        """Histogram of the codes of all object pixels (computed once, shared by the offsets)."""
        with self._lock:  # offsets may run in threads: compute it once
            if self._hist_all is None:
                self._hist_all = np.bincount(self.code[self.lab > 0], minlength=self.n_slots << self.bits)
        return self._hist_all

    def margin_hist(self, box, inv_codes) -> np.ndarray:
        """Histogram of the first (or second) pixels of the valid pairs.

        All object pixels, minus those outside ``box`` (their partner would be
        outside the image), minus ``inv_codes`` (partner in another region).
        """
        r0, r1, c0, c1 = box
        nb = self.n_slots << self.bits
        out = self.hist_all().copy()
        for rs, cs in (
            (slice(0, r0), slice(None)),
            (slice(r1, None), slice(None)),
            (slice(r0, r1), slice(0, c0)),
            (slice(r0, r1), slice(c1, None)),
        ):
            c = self.code[rs, cs]
            if c.size:
                out -= np.bincount(c[self.lab[rs, cs] > 0], minlength=nb)
        out -= np.bincount(inv_codes, minlength=nb)
        return out


# one long function on purpose: the pair masks and code arrays are large and reused in place
# (memory), and each property needs a different subset of them
def _glcm_one_offset(codes: _Codes, dr, dc, symmetric, props):
    """Per-region GLCM properties for one offset; dict prop -> (n_regions,) array.

    Linear properties come from dense per-region histograms of ``|i - j|`` and
    of the grey levels (``bincount`` over the pairs); ASM and entropy need the
    individual co-occurrence counts, obtained by sorting integer pair codes
    ``(region, i, j)`` and taking run lengths.
    """
    present = codes.present
    n_reg = present.size
    out = {p: np.full(n_reg, np.nan) for p in props}
    a_lab, b_lab = _pair_views(codes.lab, dr, dc)
    if a_lab is None or n_reg == 0:
        return out
    a_c, b_c = _pair_views(codes.code, dr, dc)
    need_moments = any(p in props for p in ("mean", "variance", "correlation"))
    need_counts = any(p in props for p in ("asm", "energy", "entropy"))
    same_label = a_lab == b_lab
    fg = a_lab > 0
    valid = same_label & fg
    ca = a_c[valid]
    cb = b_c[valid]
    del valid
    dense = codes.n_slots * (1 << codes.bits) ** 2 <= _DENSE_BINS
    if need_moments and ca.size and not dense:
        # level histograms of the first and second pixels of the valid pairs: the histogram
        # of all object pixels minus the (few) pixels whose partner is elsewhere
        h, w = codes.lab.shape
        np.logical_not(same_label, out=same_label)
        fg &= same_label
        inv_a = a_c[fg]
        np.greater(b_lab, 0, out=fg)
        fg &= same_label
        inv_b = b_c[fg]
        flat_a = codes.margin_hist((max(0, -dr), h - max(0, dr), max(0, -dc), w - max(0, dc)), inv_a)
        flat_b = codes.margin_hist((max(0, dr), h - max(0, -dr), max(0, dc), w - max(0, -dc)), inv_b)
        del inv_a, inv_b
    del same_label, fg
    if ca.size == 0:
        return out
    bits = codes.bits
    L = 1 << bits
    mask = L - 1
    n_bins = codes.n_slots * L
    rows = codes.rows
    if codes.n_slots * L * L <= _DENSE_BINS:
        return _glcm_dense(ca, cb, codes, symmetric, props)

    def hist(c):
        return np.bincount(c, minlength=n_bins).reshape(codes.n_slots, L)[rows].astype(np.float64)

    if need_moments:
        hist_a = flat_a.reshape(codes.n_slots, L)[rows].astype(np.float64)
        hist_b = flat_b.reshape(codes.n_slots, L)[rows].astype(np.float64)
    # |i - j| with the region's slot bits: (slot << bits) | |i - j|
    if symmetric:
        # order each pair (lo <= hi): the symmetric matrix only needs unordered pairs
        lo = np.minimum(ca, cb)
        hi = np.maximum(ca, cb, out=cb)
        del ca
        d = np.bitwise_and(lo, ~mask)
        d += hi
        d -= lo
    else:
        d = np.subtract(ca, cb)
        np.abs(d, out=d)
        slot_bits = np.right_shift(ca, bits)
        np.left_shift(slot_bits, bits, out=slot_bits)
        d |= slot_bits
        del slot_bits
    dh = hist(d)
    del d
    n = dh.sum(axis=1)
    has = n > 0
    k = np.arange(L, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_n = np.where(has, 1.0 / np.where(has, n, 1.0), np.nan)
        contrast = _mv(dh, k * k) * inv_n
        if "contrast" in props:
            out["contrast"] = contrast
        if "dissimilarity" in props:
            out["dissimilarity"] = _mv(dh, k) * inv_n
        if "homogeneity" in props:
            out["homogeneity"] = _mv(dh, 1.0 / (1.0 + k * k)) * inv_n
        if any(p in props for p in ("mean", "variance", "correlation")):
            if symmetric:
                mh = hist_a + hist_b
                mu_i = _mv(mh, k) * inv_n / 2.0
                var_i = ((k[None, :] - mu_i[:, None]) ** 2 * mh).sum(axis=1) * inv_n / 2.0
                var_j = var_i
                # sum P (i-mu)(j-mu) = var - contrast / 2 for a symmetric matrix
                cov = var_i - contrast / 2.0
            else:
                hi_, hj_ = hist_a, hist_b
                mu_i = _mv(hi_, k) * inv_n
                mu_j = _mv(hj_, k) * inv_n
                var_i = ((k[None, :] - mu_i[:, None]) ** 2 * hi_).sum(axis=1) * inv_n
                var_j = ((k[None, :] - mu_j[:, None]) ** 2 * hj_).sum(axis=1) * inv_n
                cov = (var_i + var_j + (mu_i - mu_j) ** 2 - contrast) / 2.0
            if "mean" in props:
                out["mean"] = mu_i
            if "variance" in props:
                out["variance"] = var_i
            if "correlation" in props:
                std_i, std_j = np.sqrt(var_i), np.sqrt(var_j)
                degenerate = (std_i < 1e-15) | (std_j < 1e-15)
                corr = cov / np.where(degenerate, 1.0, std_i * std_j)
                corr[degenerate] = 1.0
                corr[~has] = np.nan
                out["correlation"] = corr
        if need_counts:
            if symmetric:
                same = lo == hi
                diag = np.bincount(lo[same], minlength=n_bins).reshape(codes.n_slots, L)[rows].astype(np.float64)
                del same
                ca, cb = lo, hi
            s2, sl = _count_moments(ca, cb, codes)
            if symmetric:
                total = 2.0 * n
                s2_diag = (diag**2).sum(axis=1)
                n_diag = diag.sum(axis=1)
                asm = (2.0 * s2 + 2.0 * s2_diag) / total**2
                ent = np.log(total) - (2.0 * sl + 2.0 * np.log(2.0) * n_diag) / total
            else:
                total = n
                asm = s2 / total**2
                ent = np.log(total) - sl / total
            asm[~has] = np.nan
            ent[~has] = np.nan
            if "asm" in props:
                out["asm"] = asm
            if "energy" in props:
                out["energy"] = np.sqrt(asm)
            if "entropy" in props:
                out["entropy"] = ent
    return out


_DENSE_BINS = 1 << 22  # up to this many (region, i, j) bins: one dense bincount


def _glcm_dense(ca, cb, codes: _Codes, symmetric, props):
    """Few regions x levels: count every (region, i, j) with one bincount, then the
    properties from the dense matrices, as scikit-image's ``graycoprops`` does."""
    bits = codes.bits
    L = 1 << bits
    kt = np.int64 if codes.n_slots * L * L >= 2**31 else ca.dtype
    key = np.left_shift(ca.astype(kt, copy=False), bits)
    key |= np.bitwise_and(cb.astype(kt, copy=False), L - 1)
    C = np.bincount(key, minlength=codes.n_slots * L * L).reshape(codes.n_slots, L, L)[codes.rows]
    C = C[:, : codes.levels, : codes.levels].astype(np.float64)
    if symmetric:
        C += C.transpose(0, 2, 1).copy()
    return _dense_props(C, props)


def _glcm_whole_image(q: np.ndarray, levels: int, offsets, symmetric: bool, props) -> dict:
    """Properties of the whole image's GLCM per offset: prop -> (n_offsets,) array (NaN: no pairs).

    Up to 2048 levels: one bincount of the pair codes per offset; more
    levels: the region code path with a single region.
    """
    if levels * levels > _DENSE_BINS:
        lab = np.ones(q.shape, np.int32)
        codes = _Codes(q, lab, np.array([1]), levels)
        results = _map_offsets(lambda off: _glcm_one_offset(codes, off[0], off[1], symmetric, props), offsets, q.size)
        return {p: np.array([r[p][0] for r in results]) for p in props}

    def one(off):
        a, b = _pair_views(q, off[0], off[1])
        if a is None:
            return {p: np.full(1, np.nan) for p in props}
        key = a.astype(np.int32)
        key *= levels
        key += b
        C = np.bincount(key.ravel(), minlength=levels * levels).reshape(1, levels, levels).astype(np.float64)
        if symmetric:
            C += C.transpose(0, 2, 1).copy()
        # one matrix at a time, as for labelled regions: bit-identical to the region path
        return _dense_props(C, props)

    # sequential: the bincount holds the GIL, threads do not help here
    results = [one(off) for off in offsets]
    return {p: np.array([r[p][0] for r in results]) for p in props}


def _dense_props(P: np.ndarray, props) -> dict:
    """graycoprops for a stack of (unnormalised) matrices P (n, L, L); NaN for empty ones."""
    n, L, _ = P.shape
    total = P.sum(axis=(1, 2))
    has = total > 0
    P /= np.where(has, total, 1.0)[:, None, None]
    k = np.arange(L, dtype=np.float64)
    dd = (k[:, None] - k[None, :]) ** 2
    flat = P.reshape(n, -1)
    out = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        if "contrast" in props:
            out["contrast"] = _mv(flat, dd.ravel())
        if "dissimilarity" in props:
            out["dissimilarity"] = _mv(flat, np.sqrt(dd).ravel())
        if "homogeneity" in props:
            out["homogeneity"] = _mv(flat, (1.0 / (1.0 + dd)).ravel())
        if "asm" in props or "energy" in props:
            asm = np.einsum("ij,ij->i", flat, flat)
            out["asm"] = asm
            out["energy"] = np.sqrt(asm)
        if "entropy" in props:
            from scipy.special import xlogy

            out["entropy"] = -xlogy(flat, flat).sum(axis=1)
        if any(p in props for p in ("mean", "variance", "correlation")):
            pi = P.sum(axis=2)  # row marginal
            pj = P.sum(axis=1)
            mu_i = _mv(pi, k)
            mu_j = _mv(pj, k)
            var_i = ((k[None, :] - mu_i[:, None]) ** 2 * pi).sum(axis=1)
            var_j = ((k[None, :] - mu_j[:, None]) ** 2 * pj).sum(axis=1)
            out["mean"] = mu_i
            out["variance"] = var_i
            if "correlation" in props:
                a = np.einsum("nij,j->ni", P, k)  # sum_j P_ij j
                b = a - mu_j[:, None] * pi
                cov = ((k[None, :] - mu_i[:, None]) * b).sum(axis=1)
                std_i, std_j = np.sqrt(var_i), np.sqrt(var_j)
                degenerate = (std_i < 1e-15) | (std_j < 1e-15)
                corr = cov / np.where(degenerate, 1.0, std_i * std_j)
                corr[degenerate] = 1.0
                out["correlation"] = corr
    res = {}
    for p in props:
        v = np.asarray(out[p], dtype=np.float64).copy()
        v[~has] = np.nan
        res[p] = v
    return res


def _count_moments(ca, cb, codes: _Codes):
    """Per region: sum of c**2 and of c*log(c) over the distinct (i, j) pair counts c.

    ``ca``/``cb`` are the pair codes ``slot << bits | level``; the pairs are
    sorted by ``(slot, i, j)`` and the run lengths are the counts.
    """
    bits = codes.bits
    # ca and cb are scratch arrays here: build the key in place
    if (codes.n_slots << (2 * bits)) < 2**32:
        ca = ca.astype(np.uint32, copy=False) if ca.dtype != np.int32 else ca.view(np.uint32)
        cb = cb.astype(np.uint32, copy=False) if cb.dtype != np.int32 else cb.view(np.uint32)
        key = np.left_shift(ca, np.uint32(bits), out=ca)
        key |= np.bitwise_and(cb, np.uint32((1 << bits) - 1), out=cb)
    else:
        ca = ca.astype(np.int64, copy=False)
        key = np.left_shift(ca, bits, out=ca)
        key |= np.bitwise_and(cb.astype(np.int64, copy=False), (1 << bits) - 1)
    key.sort()
    n = key.size
    flags = np.empty(n, bool)
    flags[0] = True
    np.not_equal(key[1:], key[:-1], out=flags[1:])
    starts = np.flatnonzero(flags)
    del flags
    counts = np.empty(starts.size, np.int64)
    np.subtract(starts[1:], starts[:-1], out=counts[:-1])
    counts[-1] = n - starts[-1]
    cmax = int(counts.max())
    c = np.arange(cmax + 1, dtype=np.float64)
    clogc = c * np.log(np.maximum(c, 1.0))
    # entry (run) index where each region starts and ends; regions are contiguous
    rows = np.asarray(codes.rows, np.int64)
    bound_keys = np.r_[rows, codes.n_slots].astype(np.int64) << (2 * bits)
    bounds_pairs = np.searchsorted(key, bound_keys.astype(key.dtype))
    bounds = np.searchsorted(starts, bounds_pairs)
    first, last = bounds[:-1], bounds[1:]
    # a region's entries end where the next present region starts (absent slots have none)
    nonempty = last > first
    s2 = np.zeros(rows.size)
    sl = np.zeros(rows.size)
    if nonempty.any():
        idx = first[nonempty]
        s2[nonempty] = np.add.reduceat(counts * counts, idx).astype(np.float64)
        sl[nonempty] = np.add.reduceat(clogc[counts], idx)
    return s2, sl


#: images of at least this many pixels spread their offsets over threads
_THREADED_PIXELS = 1 << 20


def _map_offsets(fn, offsets, npix: int):
    """Apply ``fn`` to every offset; on large images, offsets run in threads (up to 4).

    Most of the work per offset (pair masks, fancy indexing, the sort of the
    pair codes) is numpy code that releases the GIL; the bincounts do not, so
    the gain is below the number of cores. Small images stay sequential.
    """
    workers = min(len(offsets), os.cpu_count() or 1, 4)
    if workers < 2 or npix < _THREADED_PIXELS:
        return [fn(o) for o in offsets]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, offsets))


def _check_props(properties, allowed):
    props = [str(p).lower() for p in ([properties] if isinstance(properties, str) else properties)]
    bad = [p for p in props if p not in allowed]
    if bad or not props:
        raise SEMAnalysisError(f"unknown texture properties {bad}; choose from {list(allowed)}")
    return props


def glcm_features(
    image,
    labels=None,
    *,
    distances=(1,),
    angles=(0, 45, 90, 135),
    levels: int | None = None,
    value_range=None,
    symmetric: bool = True,
    properties: Sequence[str] = GLCM_PROPERTIES,
    average: bool = True,
    tile_size=None,
    prefix: str = "glcm_",
) -> pd.DataFrame:
    """Grey-level co-occurrence (Haralick) texture features per region or per tile.

    Parameters
    ----------
    image : (M, N) ndarray
        Grey image.
    labels : (M, N) ndarray of int, optional
        Regions (0 is background). When None, the features are computed per
        tile of a regular grid when ``tile_size`` is given, else for the whole
        image (one row, label 1).
    distances : sequence of float
        Pair distances in pixels.
    angles : sequence of float
        Pair angles in **degrees** (0 = right, 90 = down, scikit-image's
        convention).
    levels : int, optional
        Grey levels (see :func:`quantize`); ``None``: 256 for uint8 (no
        quantisation), 64 otherwise.
    value_range : (low, high), optional
        Intensity range mapped to the levels (see :func:`quantize`).
    symmetric : bool
        Count each pair in both directions (scikit-image ``symmetric=True``).
    properties : sequence of str
        Any of ``contrast, dissimilarity, homogeneity, energy, asm,
        correlation, entropy, mean, variance``. ``entropy`` is
        ``-sum(P ln P)`` of the normalised matrix.
    average : bool
        Average each property over distances and angles (default). If False,
        one column per property, distance and angle
        (``glcm_contrast_d1_a45``).
    tile_size : int or (int, int), optional
        Tile size in pixels for per-tile features (only when ``labels`` is None).
    prefix : str
        Column-name prefix.

    Returns
    -------
    pandas.DataFrame
        One row per label (or tile) with ``label`` (and the tile position for
        tiles) and the feature columns. A region without any pixel pair at a
        given distance and angle gets NaN there (the average ignores it; a
        region without pairs at all gets NaN).

    Notes
    -----
    Per region, a pair counts only when both pixels lie in the region. The
    values equal ``graycoprops(graycomatrix(q, ..., symmetric, normed=True))``
    of scikit-image computed on each region alone (pixels outside the
    region set to an ignored level), with ``q`` from :func:`quantize`. All
    regions are computed together: the cost is a few passes over the image
    per offset, independent of the number of regions.
    """
    image = check_image(image)
    props = _check_props(properties, _ALL_GLCM_PROPERTIES)
    if labels is not None and tile_size is not None:
        raise SEMAnalysisError("give either labels or tile_size, not both")
    offsets = glcm_offsets(distances, angles)
    q, nlev = quantize(image, levels, value_range=value_range)
    whole = labels is None and tile_size is None
    if whole:  # the whole image is one region: no label codes needed
        lab, present, table = None, np.array([1]), pd.DataFrame({"label": [1]})
    else:
        lab, present, table = _regions(image.shape, labels, tile_size)
    n_reg = present.size
    per = {p: np.full((n_reg, len(offsets)), np.nan) for p in props}
    if whole:
        res = _glcm_whole_image(q, nlev, offsets, bool(symmetric), props)
        for p in props:
            per[p][0] = res[p]
    elif n_reg:
        codes = _Codes(q, lab, present, nlev)
        results = _map_offsets(
            lambda off: _glcm_one_offset(codes, off[0], off[1], bool(symmetric), props), offsets, q.size
        )
        for k, res in enumerate(results):
            for p in props:
                per[p][:, k] = res[p]
    cols = {}
    for p in props:
        if average:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                cols[f"{prefix}{p}"] = np.nanmean(per[p], axis=1) if n_reg else np.zeros(0)
        else:
            for k, (_dr, _dc, d, a) in enumerate(offsets):
                cols[f"{prefix}{p}_d{d:g}_a{a:g}"] = per[p][:, k]
    out = pd.concat([table.reset_index(drop=True), pd.DataFrame(cols)], axis=1)
    out.attrs["glcm"] = {
        "levels": nlev,
        "distances": [float(o[2]) for o in offsets[:: len(np.atleast_1d(angles))]],
        "angles": [float(a) for a in np.atleast_1d(angles)],
        "symmetric": bool(symmetric),
    }
    return out


def glcm_properties(
    image,
    *,
    distances=(1,),
    angles=(0, 45, 90, 135),
    levels: int | None = None,
    value_range=None,
    symmetric: bool = True,
    properties: Sequence[str] = GLCM_PROPERTIES,
) -> dict[str, np.ndarray]:
    """GLCM properties of a whole image as arrays, one value per distance and angle.

    The same numbers as :func:`glcm_features` with ``average=False`` for the
    whole image, without building a table: the fast form for feature vectors
    of many small images or tiles (e.g. :func:`napari_sem_analysis.image_features`).

    Parameters
    ----------
    image : (M, N) ndarray
        Grey image.
    distances, angles, levels, value_range, symmetric, properties
        As in :func:`glcm_features` (angles in degrees).

    Returns
    -------
    dict
        Property name -> ``(len(distances), len(angles))`` float array (NaN
        where the image has no pixel pair at that distance and angle).
    """
    image = check_image(image)
    props = _check_props(properties, _ALL_GLCM_PROPERTIES)
    offsets = glcm_offsets(distances, angles)
    q, nlev = quantize(image, levels, value_range=value_range)
    res = _glcm_whole_image(q, nlev, offsets, bool(symmetric), props)
    shape = (len(offsets) // len(np.atleast_1d(angles)), len(np.atleast_1d(angles)))
    return {p: res[p].reshape(shape) for p in props}
