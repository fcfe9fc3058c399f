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
from .label_geometry import (  # noqa: F401  (re-exported: the per-label geometry lives in label_geometry.py)
    _border_mask,
    _hull_stats,
    _perimeters,
    _present_and_index,
    object_outlines,
    oriented_boxes,
)
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
