"""Per-object measurements in physical units and summary statistics.

:func:`measure` computes, for every label of a 2-D label image, size and
shape descriptors (area, equivalent diameter, perimeter, circularity, Feret
diameters, ellipse axes, orientation, solidity, eccentricity, centroid),
intensity statistics and, optionally, GLCM and LBP texture features.
Everything is vectorised over the labels (``np.bincount`` moments, one pass
for the perimeter); only the convex hull of each object (for the Feret
diameters and the solidity) is computed object by object with OpenCV.

Lengths are in nm and areas in nm^2 when a pixel size (nm per pixel) is
given, in pixels otherwise; the unit of every column is in
``table.attrs["units"]``.

:func:`summarize` (in :mod:`napari_sem_analysis.summary`, re-exported here)
turns a table into counts, number density, area fraction and the D10/D50/D90
of the equivalent diameter, overall and per class.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._validation import SEMAnalysisError, check_image, check_labels, check_positive
from .summary import _weighted_quantiles, summarize  # noqa: F401  (re-exported: summaries live in summary.py)

SHAPE_COLUMNS = (
    "area",
    "equivalent_diameter",
    "perimeter",
    "circularity",
    "aspect_ratio",
    "feret_max",
    "feret_min",
    "major_axis",
    "minor_axis",
    "orientation",
    "solidity",
    "eccentricity",
    "centroid_y",
    "centroid_x",
)
INTENSITY_COLUMNS = ("intensity_mean", "intensity_std", "intensity_min", "intensity_max")
_LENGTH_COLUMNS = (
    "equivalent_diameter",
    "perimeter",
    "feret_max",
    "feret_min",
    "major_axis",
    "minor_axis",
    "centroid_y",
    "centroid_x",
)

__all__ = [
    "measure",
    "summarize",
    "mask_warning",
    "object_outlines",
    "oriented_boxes",
    "SHAPE_COLUMNS",
    "INTENSITY_COLUMNS",
]

# skimage.measure.perimeter (4-neighbourhood) weights, indexed by the border code
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + np.sqrt(2.0)) / 2.0


def _present_and_index(labels: np.ndarray):
    """Present labels (sorted, > 0) and a per-pixel row index (background -> n)."""
    flat = labels.ravel()
    mx = int(flat.max()) if flat.size else 0
    if mx == 0:
        return np.zeros(0, np.int64), None, 0
    if mx <= 4 * flat.size + 1_000_000:
        counts = np.bincount(flat.astype(np.intp, copy=False), minlength=mx + 1)
        present = np.flatnonzero(counts)
        present = present[present > 0]
    else:
        present = np.unique(flat)
        present = present[present > 0]
    n = present.size
    lut = np.full(mx + 1, n, np.int64) if mx <= 4 * flat.size + 1_000_000 else None
    if lut is not None:
        lut[present] = np.arange(n)
        idx = lut[flat]
    else:
        idx = np.searchsorted(present, flat)
        idx[flat == 0] = n
    return present.astype(np.int64), idx, n


def _border_mask(labels: np.ndarray) -> np.ndarray:
    """Object pixels with a 4-neighbour of another label (or outside the image)."""
    pad = np.pad(labels, 1)
    c = pad[1:-1, 1:-1]
    interior = (c == pad[:-2, 1:-1]) & (c == pad[2:, 1:-1]) & (c == pad[1:-1, :-2]) & (c == pad[1:-1, 2:])
    return (labels > 0) & ~interior


def _perimeters(labels: np.ndarray, border: np.ndarray, lut_index, n: int) -> np.ndarray:
    """Per-label perimeter equal to ``skimage.measure.perimeter(region, 4)``."""
    h, w = labels.shape
    lab_p = np.pad(labels, 1)
    bor_p = np.pad(border, 1)
    wp = w + 2
    flat_lab = lab_p.ravel()
    flat_bor = bor_p.ravel()
    pos = np.flatnonzero(flat_bor)
    own = flat_lab[pos]
    code = np.ones(pos.size, np.int64)
    for off, weight in ((-1, 2), (1, 2), (-wp, 2), (wp, 2), (-wp - 1, 10), (-wp + 1, 10), (wp - 1, 10), (wp + 1, 10)):
        nb = pos + off
        code += weight * ((flat_lab[nb] == own) & flat_bor[nb])
    per_pixel = _PERIMETER_WEIGHTS[code]
    rows = lut_index(own)
    return np.bincount(rows, per_pixel, minlength=n + 1)[:n]


def _pad_polygons(polys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Stack polygons (k_i, 2) into (n, kmax, 2), repeating each last vertex; returns (array, k)."""
    k = np.array([len(p) for p in polys])
    kmax = int(k.max())
    out = np.empty((len(polys), kmax, 2))
    for i, p in enumerate(polys):
        out[i, : len(p)] = p
        out[i, len(p) :] = p[-1]
    return out, k


def _batched(sizes: np.ndarray, budget: int = 2_000_000, power: int = 2):
    """Groups of indices (sorted by size) whose padded (g, k**power) arrays stay small."""
    order = np.argsort(sizes, kind="stable")
    i = 0
    n = order.size
    while i < n:
        kmax = max(int(sizes[order[min(n - 1, i)]]), 1)
        g = max(1, budget // kmax**power)
        # the group's largest polygon sets its padding: shrink g until it fits
        while g > 1 and max(int(sizes[order[min(n - 1, i + g - 1)]]), 1) ** power * g > budget:
            g //= 2
        yield order[i : i + g]
        i += g


def _hull_stats(border: np.ndarray, labels: np.ndarray, present: np.ndarray, lut_index, want_boxes=False):
    """Feret diameters, convex pixel count (and optionally min-area boxes) per label.

    The Feret diameters are those of the convex hull of the pixel squares
    (corners at +-0.5); the convex area counts the pixel centres inside the
    convex hull of the object's pixel centres (Pick's theorem). Only the
    hulls are computed object by object (OpenCV); the rest is batched.
    """
    import cv2

    n = present.size
    rr, cc = np.nonzero(border)
    rows = lut_index(labels[rr, cc])
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    pts = np.stack([cc[order], rr[order]], axis=1).astype(np.int32)  # (x, y) for OpenCV
    bounds = np.searchsorted(rows, np.arange(n + 1))
    # pixel corners in half-pixel units (integers, exact)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.int32)
    convex_hull = cv2.convexHull
    centre_hulls = []
    corner_hulls = []
    for k in range(n):
        p = pts[bounds[k] : bounds[k + 1]]
        hull = convex_hull(p).reshape(-1, 2)
        centre_hulls.append(hull)
        cpts = (2 * hull[:, None, :] + corners).reshape(-1, 2)
        corner_hulls.append(convex_hull(cpts).reshape(-1, 2) / 2.0)

    # convex pixel count by Pick's theorem: A + B/2 + 1 (hull of integer points)
    conv = np.zeros(n)
    for grp in _batched(np.array([len(h) for h in centre_hulls]), 4_000_000, power=1):
        hc, _ = _pad_polygons([centre_hulls[i] for i in grp])
        nxt = np.roll(hc, -1, axis=1)
        area2 = np.abs((hc[..., 0] * nxt[..., 1] - hc[..., 1] * nxt[..., 0]).sum(axis=1))
        e = np.abs(nxt - hc).astype(np.int64)
        b = np.gcd(e[..., 0], e[..., 1]).sum(axis=1)
        conv[grp] = area2 / 2.0 + b / 2.0 + 1.0

    # Feret diameters of the pixel-corner hulls, batched by hull size
    fmax = np.zeros(n)
    fmin = np.zeros(n)
    sizes = np.array([len(h) for h in corner_hulls])
    for grp in _batched(sizes):
        poly, _ = _pad_polygons([corner_hulls[i] for i in grp])
        d = poly[:, :, None, :] - poly[:, None, :, :]
        fmax[grp] = np.sqrt((d**2).sum(-1).max(axis=(1, 2)))
        edge = np.roll(poly, -1, axis=1) - poly  # (g, k, 2)
        length = np.hypot(edge[..., 0], edge[..., 1])
        # distance of every vertex j from the line of edge i
        rel = poly[:, None, :, :] - poly[:, :, None, :]  # (g, i, j, 2)
        cross = np.abs(edge[:, :, None, 0] * rel[..., 1] - edge[:, :, None, 1] * rel[..., 0])
        with np.errstate(divide="ignore", invalid="ignore"):
            width = cross.max(axis=2) / length
        width[length == 0] = np.inf
        fmin[grp] = width.min(axis=1)
    boxes = None
    if want_boxes:
        boxes = np.zeros((n, 4, 2))
        for k, ch in enumerate(corner_hulls):
            box = cv2.boxPoints(cv2.minAreaRect(ch.astype(np.float32)))
            boxes[k] = box[:, ::-1]  # (row, col)
    return fmax, fmin, conv, boxes


def mask_warning(labels, present=None) -> str | None:
    """A message when ``labels`` is a mask (one label value) made of several separate regions.

    Such an image (a thresholded mask: every object pixel is 1) is measured
    as *one* object; a user who wants one row per particle must label the
    mask first. Returns None for real label images.
    """
    labels = np.asarray(labels)
    if present is None:
        present = np.unique(labels[labels > 0]) if labels.size else np.zeros(0)
    if len(present) != 1:
        return None
    from scipy import ndimage as ndi

    n_parts = int(ndi.label(labels > 0)[1])  # 4-connected parts
    if n_parts <= 1:
        return None
    return (
        f"the labels hold one label ({int(present[0])}) over {n_parts} separate regions: "
        "they are measured as ONE object. To measure every particle, label the mask first "
        "(scipy.ndimage.label or skimage.measure.label; in napari: Split touching objects)"
    )


def _empty_table(columns, units, attrs) -> pd.DataFrame:
    table = pd.DataFrame({c: pd.Series(dtype=np.int64 if c == "label" else np.float64) for c in columns})
    table.attrs.update(attrs)
    table.attrs["units"] = {c: units.get(c, "") for c in columns}
    return table


def measure(
    labels,
    image=None,
    *,
    pixel_size: float | None = None,
    texture: bool = True,
    intensity: bool = True,
    shape: bool = True,
    classes=None,
    glcm_levels: int | None = None,
    glcm_distances: Sequence[float] = (1,),
    glcm_angles: Sequence[float] = (0, 45, 90, 135),
    value_range=None,
    lbp_P: int = 8,
    lbp_R: float = 1,
) -> pd.DataFrame:
    """Measure every object of a label image.

    Parameters
    ----------
    labels : (M, N) ndarray of int
        Objects (0 is background). Labels need not be consecutive.
    image : (M, N) ndarray, optional
        Grey image for the intensity and texture features.
    pixel_size : float, optional
        Pixel size in nm. Lengths are then in nm, areas in nm^2;
        otherwise in pixels.
    texture : bool
        Add GLCM features (``glcm_contrast, glcm_dissimilarity,
        glcm_homogeneity, glcm_energy, glcm_asm, glcm_correlation,
        glcm_entropy``, averaged over ``glcm_distances`` and ``glcm_angles``)
        and the uniform LBP histogram ``lbp_0 ... lbp_{P+1}``
        (:mod:`napari_sem_analysis.texture`). Needs ``image``.
    intensity : bool
        Add ``intensity_mean, intensity_std, intensity_min, intensity_max``
        (needs ``image``).
    shape : bool
        Add the convex-hull descriptors (Feret diameters, solidity, aspect
        ratio); the cheaper moment descriptors are always computed.
    classes : ndarray or mapping, optional
        A class per object, added as a ``class`` column: either a class map
        of the image's shape (each object takes the most frequent non-zero
        class under it, 0 when none) or a mapping ``label -> class``.
    glcm_levels, glcm_distances, glcm_angles, value_range
        GLCM options (see :func:`napari_sem_analysis.glcm_features`); angles
        in degrees.
    lbp_P, lbp_R
        LBP neighbours and radius.

    Returns
    -------
    pandas.DataFrame
        One row per label, sorted by label. Columns: ``label, area,
        equivalent_diameter, perimeter, circularity, aspect_ratio, feret_max,
        feret_min, major_axis, minor_axis, orientation, solidity,
        eccentricity, centroid_y, centroid_x`` then the intensity and
        texture columns. ``table.attrs`` holds ``units`` (column -> unit),
        ``pixel_size``, ``unit`` ("nm" or "px"), ``image_shape`` and
        ``image_area`` (the field of view, in area units) for
        :func:`summarize`. An image without objects gives an empty table
        with the same columns. A mask (one label value over several
        separate regions, e.g. a thresholded image) is measured as one
        object, with a ``UserWarning`` saying so: label it first to get one
        row per particle.

    Notes
    -----
    * ``perimeter`` equals :func:`skimage.measure.perimeter` (4-connected
      border, weighted steps) of each object; ``circularity`` is
      ``4 pi area / perimeter^2`` (about 1 for a disc, pi/4 for a square,
      clipped to 1).
    * ``major_axis``/``minor_axis``/``eccentricity``/``orientation`` are
      those of the ellipse with the same second moments, as in
      :func:`skimage.measure.regionprops`; ``orientation`` is in degrees,
      the angle between the image's row axis (0) and the major axis, in
      (-90, 90].
    * ``feret_max``/``feret_min`` are the largest and smallest caliper
      widths of the object's pixel squares (convex hull of the pixel
      corners): a square of side s gives s*sqrt(2) and s.
    * ``aspect_ratio`` is ``major_axis / minor_axis`` (NaN for objects one
      pixel thick).
    * ``solidity`` is ``area / convex area``, the convex area being the
      number of pixel centres in the convex hull of the object's pixel
      centres (1 for digital discs and squares).
    """
    labels = check_labels(labels)
    if pixel_size is not None:
        pixel_size = check_positive(pixel_size, "pixel_size")
    if image is not None:
        image = check_image(image)
        if image.shape != labels.shape:
            raise SEMAnalysisError(
                f"labels of shape {labels.shape} and image of shape {image.shape} differ; "
                "they must cover the same pixels"
            )
    if (texture or intensity) and image is None:
        texture = intensity = False
    for name, val in (("glcm_levels", glcm_levels),):
        if val is not None and (int(val) != val or not 2 <= int(val) <= 65536):
            raise SEMAnalysisError(f"{name} must be an integer from 2 to 65536, got {val!r}")
    layout = _layout(labels, pixel_size, intensity=intensity, texture=texture, lbp_P=lbp_P, classes=classes)
    present, idx, n = _present_and_index(labels)
    if n == 0:
        return _empty_table(layout.columns, layout.units, layout.attrs)
    message = mask_warning(labels, present)
    if message is not None:
        warnings.warn(message, UserWarning, stacklevel=2)
    sums = _LabelSums(present, idx, n)
    ps = layout.ps
    data = {"label": present}
    data.update(_moment_columns(sums, labels.shape, ps))
    data.update(_outline_columns(labels, sums, ps, shape=shape))
    data = {c: data[c] for c in ("label", *SHAPE_COLUMNS)}  # the column order of the table
    if intensity:
        data.update(_intensity_columns(image, sums))
    table = pd.DataFrame(data)
    if texture:
        from .texture import GLCM_PROPERTIES, glcm_features, lbp_features

        g = glcm_features(
            image,
            labels,
            distances=glcm_distances,
            angles=glcm_angles,
            levels=glcm_levels,
            value_range=value_range,
            properties=GLCM_PROPERTIES,
        )
        lb = lbp_features(image, labels, P=lbp_P, R=lbp_R)
        table = pd.concat([table, g.drop(columns="label"), lb.drop(columns="label")], axis=1)
        layout.attrs["glcm"] = g.attrs.get("glcm")
    if classes is not None:
        table["class"] = _object_classes(classes, labels, present, idx, n)
    table = table[layout.columns]
    table.attrs.update(layout.attrs)
    table.attrs["units"] = {c: layout.units.get(c, "") for c in layout.columns}
    return table


# --------------------------------------------------------------------------
# stages of measure
# --------------------------------------------------------------------------


@dataclass
class _Layout:
    """Columns, units and table attributes of a measurement table."""

    columns: list
    units: dict
    attrs: dict
    ps: float  # length of a pixel in the table's unit (1 without pixel size)
    unit: str


def _layout(labels, pixel_size, *, intensity: bool, texture: bool, lbp_P: int, classes) -> _Layout:
    ps = 1.0 if pixel_size is None else float(pixel_size)
    unit = "px" if pixel_size is None else "nm"
    columns = ["label", *SHAPE_COLUMNS]
    if intensity:
        columns += INTENSITY_COLUMNS
    if texture:
        from .texture import GLCM_PROPERTIES

        columns += [f"glcm_{p}" for p in GLCM_PROPERTIES] + [f"lbp_{k}" for k in range(int(lbp_P) + 2)]
    if classes is not None:
        columns.append("class")
    units = {c: unit for c in _LENGTH_COLUMNS}
    units["area"] = f"{unit}^2"
    units["orientation"] = "deg"
    if intensity:
        units.update({c: "grey value" for c in INTENSITY_COLUMNS})
    attrs = {
        "pixel_size": pixel_size,
        "unit": unit,
        "image_shape": tuple(int(s) for s in labels.shape),
        "image_area": float(labels.size) * ps * ps,
    }
    return _Layout(columns, units, attrs, ps, unit)


class _LabelSums:
    """Per-label sums over the pixels (``np.bincount`` on the row index of every pixel)."""

    def __init__(self, present: np.ndarray, idx: np.ndarray, n: int):
        self.present, self.idx, self.n = present, idx, n
        self.counts = np.bincount(idx, minlength=n + 1)[:n].astype(np.float64)

    def sum(self, weights) -> np.ndarray:
        return np.bincount(self.idx, weights, minlength=self.n + 1)[: self.n]

    def lut_index(self, values):
        return np.searchsorted(self.present, values)


def _moment_columns(sums: _LabelSums, shape, ps: float) -> dict:
    """Area, centroid and the ellipse of equal second moments (axes, orientation, eccentricity)."""
    h, w = shape
    idx, counts = sums.idx, sums.counts
    rr = np.broadcast_to(np.arange(h, dtype=np.float64)[:, None], (h, w)).ravel()
    cc = np.broadcast_to(np.arange(w, dtype=np.float64)[None, :], (h, w)).ravel()
    mr = sums.sum(rr) / counts
    mc = sums.sum(cc) / counts
    # central second moments, shifted by the centroid of each label for accuracy
    dr = rr - np.r_[mr, 0.0][idx]
    dc = cc - np.r_[mc, 0.0][idx]
    vr = sums.sum(dr * dr) / counts
    vc = sums.sum(dc * dc) / counts
    cov = sums.sum(dr * dc) / counts
    del dr, dc, rr, cc
    half_tr = (vr + vc) / 2.0
    root = np.sqrt(((vr - vc) / 2.0) ** 2 + cov**2)
    l1 = np.maximum(half_tr + root, 0.0)
    l2 = np.maximum(half_tr - root, 0.0)
    major = 4.0 * np.sqrt(l1)
    minor = 4.0 * np.sqrt(l2)
    # skimage: orientation = 0.5 * atan2(-2 b, c - a), a = var_c, b = -cov, c = var_r
    with np.errstate(divide="ignore", invalid="ignore"):
        orient = np.where(
            vc - vr == 0,
            np.where(-cov < 0, np.pi / 4.0, -np.pi / 4.0),
            0.5 * np.arctan2(2.0 * cov, vr - vc),
        )
        orient = np.where(orient <= -np.pi / 2 + 1e-12, np.pi / 2, orient)  # axes: -90 == 90 deg
        ecc = np.where(l1 > 0, np.sqrt(np.clip(1.0 - l2 / np.where(l1 > 0, l1, 1.0), 0.0, 1.0)), 0.0)
        aspect = np.where(minor > 0, major / np.where(minor > 0, minor, 1.0), np.nan)
    return {
        "area": counts * ps * ps,
        "equivalent_diameter": np.sqrt(4.0 * counts / np.pi) * ps,
        "aspect_ratio": aspect,
        "major_axis": major * ps,
        "minor_axis": minor * ps,
        "orientation": np.rad2deg(orient),
        "eccentricity": ecc,
        "centroid_y": mr * ps,
        "centroid_x": mc * ps,
    }


def _outline_columns(labels: np.ndarray, sums: _LabelSums, ps: float, *, shape: bool) -> dict:
    """Perimeter and circularity; with ``shape`` the convex-hull descriptors (Feret, solidity)."""
    n, area_px = sums.n, sums.counts
    border = _border_mask(labels)
    perim = _perimeters(labels, border, sums.lut_index, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        circ = np.where(
            perim > 0, np.minimum(4.0 * np.pi * area_px / np.where(perim > 0, perim, 1.0) ** 2, 1.0), np.nan
        )
    out = {"perimeter": perim * ps, "circularity": circ}
    if shape:
        fmax, fmin, conv, _ = _hull_stats(border, labels, sums.present, sums.lut_index)
        out["feret_max"] = fmax * ps
        out["feret_min"] = fmin * ps
        out["solidity"] = area_px / np.maximum(conv, area_px)
    else:
        out["feret_max"] = out["feret_min"] = np.full(n, np.nan)
        out["solidity"] = np.full(n, np.nan)
    return out


def _intensity_columns(image: np.ndarray, sums: _LabelSums) -> dict:
    """Mean, standard deviation, minimum and maximum grey value of every object."""
    idx, n = sums.idx, sums.n
    val = image.ravel().astype(np.float64)
    mean = sums.sum(val) / sums.counts
    dv = val - np.r_[mean, 0.0][idx]
    std = np.sqrt(sums.sum(dv * dv) / sums.counts)
    del dv
    fg = idx < n
    grouped = pd.Series(val[fg]).groupby(idx[fg], sort=True)
    return {
        "intensity_mean": mean,
        "intensity_std": std,
        "intensity_min": grouped.min().to_numpy(np.float64),
        "intensity_max": grouped.max().to_numpy(np.float64),
    }


def _object_classes(classes, labels, present, idx, n):
    if isinstance(classes, dict) or hasattr(classes, "to_dict") and not isinstance(classes, np.ndarray):
        mapping = dict(classes)
        return [mapping.get(int(v), mapping.get(v)) for v in present]
    cls = np.asarray(classes)
    if cls.shape != labels.shape:
        raise SEMAnalysisError(f"class map of shape {cls.shape} does not match labels of shape {labels.shape}")
    if not np.issubdtype(cls.dtype, np.integer) or (cls.size and cls.min() < 0):
        raise SEMAnalysisError("the class map must hold non-negative integers")
    nc = int(cls.max()) + 1
    flat = cls.ravel().astype(np.int64)
    fg = (idx < n) & (flat > 0)
    hist = np.bincount(idx[fg] * nc + flat[fg], minlength=n * nc).reshape(n, nc)
    out = hist.argmax(axis=1)
    out[hist.max(axis=1) == 0] = 0
    return out


# --------------------------------------------------------------------------
# geometry for layers
# --------------------------------------------------------------------------
def oriented_boxes(labels) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-area oriented bounding boxes of every object.

    Parameters
    ----------
    labels : ndarray of int
        2-D label image (0 = background).

    Returns
    -------
    present : (n,) ndarray of int
        The labels, sorted.
    boxes : (n, 4, 2) ndarray of float
        The four corners (row, col) of each box, in pixel coordinates,
        enclosing the pixel squares.
    """
    labels = check_labels(labels)
    present, idx, n = _present_and_index(labels)
    if n == 0:
        return present, np.zeros((0, 4, 2))
    border = _border_mask(labels)
    _, _, _, boxes = _hull_stats(border, labels, present, lambda v: np.searchsorted(present, v), want_boxes=True)
    return present, boxes


def object_outlines(labels, *, tolerance: float = 0.5) -> tuple[np.ndarray, list[np.ndarray]]:
    """Outline polygon (row, col) of every object (its largest outer contour).

    Uses OpenCV contour tracing on each object's bounding box; polygons are
    simplified with ``tolerance`` pixels (Douglas-Peucker).

    Parameters
    ----------
    labels : ndarray of int
        2-D label image (0 = background).
    tolerance : float
        Douglas-Peucker simplification tolerance in pixels.
    """
    import cv2
    from scipy import ndimage as ndi

    labels = check_labels(labels)
    tolerance = check_positive(tolerance, "tolerance", allow_zero=True, maximum=1e6)
    ids = np.unique(labels)
    ids = ids[ids > 0]
    if ids.size and ids[-1] > 2 * ids.size + 65536:
        # sparse ids (one object labelled 10**8): find_objects would list every id up to the largest
        compact = np.where(labels > 0, np.searchsorted(ids, labels) + 1, 0).astype(np.int32)
        present, polys = object_outlines(compact, tolerance=tolerance)
        return ids[np.asarray(present, dtype=np.int64) - 1], polys
    present, _, n = _present_and_index(labels)
    slices = ndi.find_objects(labels)
    polys = []
    for lab in present:
        sl = slices[lab - 1]
        crop = np.pad((labels[sl] == lab).astype(np.uint8), 1)
        contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        c = max(contours, key=cv2.contourArea)
        if tolerance > 0 and len(c) > 3:
            c = cv2.approxPolyDP(c, tolerance, True)
        c = c.reshape(-1, 2).astype(np.float64)
        poly = np.stack([c[:, 1] + sl[0].start - 1, c[:, 0] + sl[1].start - 1], axis=1)
        if poly.shape[0] < 3:  # tiny objects: use the pixel square(s)
            r0, r1, c0, c1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
            poly = np.array([[r0 - 0.5, c0 - 0.5], [r0 - 0.5, c1 - 0.5], [r1 - 0.5, c1 - 0.5], [r1 - 0.5, c0 - 0.5]])
        polys.append(poly)
    return present, polys
