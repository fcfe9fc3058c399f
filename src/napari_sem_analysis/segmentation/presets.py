"""Recipes used by the batch presets: :func:`segment_particles` and :func:`segment_pores`."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from .._validation import (
    SEMAnalysisError,
    check_image,
    check_positive,
    to_pixels,
)
from .cleanup import clean_mask
from .thresholds import GLOBAL_METHODS, threshold
from .watershed import split_touching

#: The splitting settings of the ``particles`` preset (:func:`segment_particles`), shared with
#: :func:`split_particles` and the *Split touching objects* widget, so that the widget's defaults give
#: the preset's objects.
PARTICLE_SPLIT: dict = {
    "split_fraction": 0.25,
    "edge_quantile": 0.5,
    "boundary_weight": 0.5,
    "merge_fraction": 0.0,
    "merge_slivers": True,
    "separate": True,
}
#: The smallest particle of the preset: a disk of this diameter (px).
PARTICLE_MIN_DIAMETER_PX = 4.0


def _default_scale(shape) -> float:
    return max(1.0, min(shape) / 1000.0)


def segment_particles(
    image,
    *,
    pixel_size: float | None = None,
    dark_particles: bool = False,
    denoise_size: float | None = None,
    threshold_method: str = "li",
    threshold_offset: float = 0.0,
    min_particle_diameter: float | None = None,
    split: bool = True,
    split_min_distance: float | None = None,
    split_fraction: float = PARTICLE_SPLIT["split_fraction"],
    edge_quantile: float | None = PARTICLE_SPLIT["edge_quantile"],
    boundary_weight: float = PARTICLE_SPLIT["boundary_weight"],
    merge_fraction: float = PARTICLE_SPLIT["merge_fraction"],
    merge_slivers: bool = PARTICLE_SPLIT["merge_slivers"],
    separate: bool = PARTICLE_SPLIT["separate"],
) -> np.ndarray:
    """Instance labels of particles in an SEM image: the classical recipe.

    Recipe (evaluated on the BAM TiO2 micrographs, see
    ``docs/evaluation/classical.md``):

    1. Gaussian denoising, sigma = ``denoise_size`` (default 1 px).
    2. Global threshold (Li's minimum cross-entropy by default, which keeps
       the darker flanks of the particles better than Otsu) of bright
       particles on a darker substrate (``dark_particles=True`` for the
       opposite).
    3. Clean-up: opening with a 1 px disk, hole filling, removal of objects
       smaller than a disk of diameter ``min_particle_diameter``
       (default 4 px).
    4. Splitting of touching and overlapping particles by a marker-controlled
       watershed (:func:`split_touching`): the pixels on visible edges
       (Sobel gradient above the ``edge_quantile`` quantile inside the mask)
       are removed, the distance map of what remains (the particle cores)
       gives one marker per core (maxima at least ``split_min_distance``
       apart; by default ``split_fraction`` x the median particle radius
       measured on the mask itself, so no size needs to be given), and the
       flooded surface mixes the gradient (weight ``boundary_weight``) with
       the negated distance map so that the lines follow the visible edges.
    5. Instances smaller than the minimum particle are merged into a
       neighbour; rim slivers (``merge_slivers=True``) are merged into the
       particle they belong to: a piece smaller than 0.3 x the neighbour it
       shares most boundary with (and than 0.15 x the median particle area)
       that shares at least 45% of its perimeter with that neighbour and
       whose union with it is convex (solidity >= 0.85), i.e. a piece that
       completes the neighbour's outline rather than a small particle
       sitting on it. Touching instances are then separated by one-pixel
       background lines (``separate=True``), so that 4-connected labelling
       of the output mask gives back the same particles.

    Parameters
    ----------
    image : ndarray
        2-D grayscale SEM image, info band already cropped (3-D stacks
        plane by plane).
    pixel_size : float, optional
        nm per pixel. When given, ``denoise_size``, ``min_particle_diameter``
        and ``split_min_distance`` are in nm; otherwise in px.
    dark_particles : bool
    denoise_size : float, optional
        Gaussian sigma (nm or px; default 1 px).
    threshold_method : str
        Any global method of :func:`threshold`.
    threshold_offset : float
        Added to the threshold (intensity units).
    min_particle_diameter : float, optional
        Smaller objects are removed (nm or px; default 4 px).
    split : bool
        Split touching particles (False: 4-connected components of the mask).
    split_min_distance : float, optional
        Fixed marker distance (nm or px) instead of the adaptive one.
    split_fraction : float
        Adaptive marker distance as a fraction of the median particle radius.
    edge_quantile : float or None
        Gradient quantile above which pixels count as edges for the markers
        (None: markers from the plain distance map).
    boundary_weight : float
        Weight of the gradient in the watershed surface (0..1; 0 = pure
        distance transform).
    merge_fraction : float
        Pieces smaller than this fraction of the median particle area
        (pi r², r from the mask) are merged into a neighbour whatever their
        shape. 0 (default) keeps every piece above the minimum particle size
        and leaves sliver removal to ``merge_slivers``, which looks at shape
        and contact and so keeps small particles that sit next to large ones
        (as on the BAM TiO2 images, where a size-only rule hurt the counts).
    merge_slivers : bool
        Merge rim slivers into their particle (step 5). On the synthetic
        ``sample_particles`` image this brings the count from 78 (18 rim
        fragments of 14-84 px) to 61 (true: 60). On the BAM TiO2 images it
        also merges over-split pieces of overlapping particles: mean Dice
        0.914 -> 0.917 and count within 20% unchanged (14/20), but the mean
        absolute count error rises from 14.4% to 17.9%, since the recipe
        also under-splits some clusters there and the two errors had partly
        cancelled (see ``docs/evaluation/classical.md``). False gives the
        earlier output.
    separate : bool
        One-pixel gaps between touching particles.

    Returns
    -------
    labels : ndarray of int32
    """
    arr = np.asarray(image)
    if _is_stack(arr):
        kw = _keyword_args(segment_particles, locals())
        return np.stack([segment_particles(p, **kw) for p in arr]).astype(np.int32)
    arr, units = _preset_input(arr, threshold_method, pixel_size)
    img, mask, min_area = _particle_mask(
        arr, units, denoise_size, threshold_method, threshold_offset, dark_particles, min_particle_diameter
    )
    if not split:
        _, lab = cv2.connectedComponents(mask.view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
        return lab
    return _split_particles(
        mask,
        img,
        units,
        min_area,
        split_min_distance=split_min_distance,
        split_fraction=split_fraction,
        edge_quantile=edge_quantile,
        boundary_weight=boundary_weight,
        merge_fraction=merge_fraction,
        merge_slivers=merge_slivers,
        separate=separate,
    )


# --------------------------------------------------------------------------
# stages of the recipes
# --------------------------------------------------------------------------


def _keyword_args(func, values: dict) -> dict:
    """The keyword-only arguments of ``func`` as found in ``values`` (its ``locals()``): to call it again per plane."""
    import inspect

    params = inspect.signature(func).parameters.values()
    return {p.name: values[p.name] for p in params if p.kind is p.KEYWORD_ONLY}


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of a float32 image (reflected borders); unchanged for sigma 0."""
    if sigma > 0:
        ks = int(2 * np.ceil(3 * sigma) + 1)
        img = cv2.GaussianBlur(img, (ks, ks), sigma, borderType=cv2.BORDER_REFLECT)
    return img


def _is_stack(arr: np.ndarray) -> bool:
    """A 3-D stack of planes (not one colour image)."""
    return arr.ndim == 3 and not (arr.shape[-1] in (3, 4) and min(arr.shape[:2]) > 4)


@dataclass
class _Units:
    """Sizes of a recipe in nm (with a pixel size) or px, converted to px."""

    ps: float | None
    unit: str

    def px(self, value, default_px: float, name: str) -> float:
        if value is None:
            return default_px
        return to_pixels(value, self.ps, unit=self.unit, name=name)


def _preset_input(arr: np.ndarray, threshold_method: str, pixel_size) -> tuple[np.ndarray, _Units]:
    """The checked 2-D image and the unit of the sizes."""
    arr = check_image(arr, allow_constant=False)
    if threshold_method not in GLOBAL_METHODS:
        raise SEMAnalysisError(f"threshold_method must be one of {GLOBAL_METHODS}, got {threshold_method!r}")
    unit = "px" if pixel_size is None else "nm"
    ps = None if pixel_size is None else check_positive(pixel_size, "pixel_size")
    return arr, _Units(ps, unit)


def _particle_mask(arr, units: _Units, denoise_size, threshold_method, threshold_offset, dark_particles, min_diameter):
    """Steps 1-3 of :func:`segment_particles`: (denoised float32 image, clean mask, smallest area px²)."""
    img = _blur(arr.astype(np.float32), units.px(denoise_size, 1.0, "denoise_size"))
    mask = threshold(img, threshold_method, dark_objects=dark_particles, offset=threshold_offset)
    dmin = units.px(min_diameter, PARTICLE_MIN_DIAMETER_PX, "min_particle_diameter")
    min_area = np.pi * (dmin / 2) ** 2
    mask = clean_mask(mask, opening=1, min_size=min_area, fill_holes=True, allow_empty=True)
    if not mask.any():
        raise SEMAnalysisError("no particles found: the clean mask is empty")
    return img, mask, min_area


def split_particles(
    mask,
    intensity_image=None,
    *,
    min_size: float | None = None,
    split_min_distance: float | None = None,
    split_fraction: float = PARTICLE_SPLIT["split_fraction"],
    edge_quantile: float | None = PARTICLE_SPLIT["edge_quantile"],
    boundary_weight: float = PARTICLE_SPLIT["boundary_weight"],
    merge_fraction: float = PARTICLE_SPLIT["merge_fraction"],
    merge_slivers: bool = PARTICLE_SPLIT["merge_slivers"],
    separate: bool = PARTICLE_SPLIT["separate"],
    smooth_image: float = 1.0,
    pixel_size: float | None = None,
    unit: str = "px",
) -> np.ndarray:
    """Split the touching particles of a mask as the ``particles`` preset does (steps 4-5 of :func:`segment_particles`).

    Markers at least ``split_min_distance`` apart (default: ``split_fraction``
    x the median particle radius measured on the mask), the visible edges of
    ``intensity_image`` (smoothed by a Gaussian of sigma ``smooth_image`` px)
    used as in :func:`split_touching`, pieces smaller than ``min_size`` merged
    into a neighbour (or dropped when isolated), rim slivers merged into
    their particle and touching particles separated by one-pixel lines.
    With the defaults, a mask made like the preset's gives the preset's labels.

    Parameters
    ----------
    mask : ndarray
        2-D binary mask (non-zero = particle; 3-D stacks plane by plane).
    intensity_image : ndarray, optional
        The grayscale image the mask was made from (edges between particles).
    min_size : float, optional
        Smallest particle area (px², or nm² with ``unit="nm"``); default a disk
        of :data:`PARTICLE_MIN_DIAMETER_PX` px.
    split_min_distance : float, optional
        Fixed marker distance (px or nm) instead of the adaptive one.
    split_fraction, edge_quantile, boundary_weight, merge_fraction, merge_slivers, separate
        As in :func:`segment_particles` (defaults: :data:`PARTICLE_SPLIT`).
    smooth_image : float
        Gaussian sigma (px) applied to ``intensity_image`` (the preset
        denoises by 1 px before thresholding; 0 = as given).
    pixel_size : float, optional
        nm per pixel (for ``unit="nm"``).
    unit : {"px", "nm"}

    Returns
    -------
    labels : ndarray of int32
    """
    from ._common import _check_mask
    from .components import area_in_pixels

    arr = np.asarray(mask)
    if arr.ndim == 3:
        kw = _keyword_args(split_particles, locals())
        planes = [np.asarray(intensity_image)[i] if intensity_image is not None else None for i in range(len(arr))]
        return np.stack([split_particles(p, im, **kw) for p, im in zip(arr, planes)]).astype(np.int32)
    m = _check_mask(arr)
    if not m.any():
        raise SEMAnalysisError("the mask is empty: nothing to split")
    if unit not in ("px", "nm"):
        raise SEMAnalysisError(f"unit must be 'px' or 'nm', got {unit!r}")
    units = _Units(None if pixel_size is None else check_positive(pixel_size, "pixel_size"), unit)
    if min_size is None:
        ms = np.pi * (PARTICLE_MIN_DIAMETER_PX / 2) ** 2
    else:
        ms = area_in_pixels(min_size, pixel_size, unit, "min_size")
    use_edges = intensity_image is not None and (edge_quantile is not None or boundary_weight > 0)
    img = None
    if use_edges:
        img = check_image(intensity_image).astype(np.float32)
        if img.shape != m.shape:
            raise SEMAnalysisError(f"intensity_image shape {img.shape} differs from mask shape {m.shape}")
        img = _blur(img, check_positive(smooth_image, "smooth_image", allow_zero=True, maximum=100))
    return _split_particles(
        m,
        img,
        units,
        ms,
        split_min_distance=split_min_distance,
        split_fraction=split_fraction,
        edge_quantile=edge_quantile if use_edges else None,
        boundary_weight=boundary_weight if use_edges else 0.0,
        merge_fraction=merge_fraction,
        merge_slivers=merge_slivers,
        separate=separate,
    )


def _split_particles(
    mask,
    img,
    units: _Units,
    min_area: float,
    *,
    split_min_distance,
    split_fraction,
    edge_quantile,
    boundary_weight,
    merge_fraction,
    merge_slivers,
    separate,
) -> np.ndarray:
    """Steps 4-5 of :func:`segment_particles`: watershed split, merging of small pieces and slivers."""
    if split_min_distance is not None:
        md = units.px(split_min_distance, 5.0, "split_min_distance")
    else:
        md = _adaptive_min_distance(mask, check_positive(split_fraction, "split_fraction", maximum=10))
    r_med = _adaptive_min_distance(mask, 1.0)
    merge = check_positive(merge_fraction, "merge_fraction", allow_zero=True, maximum=1)
    merge_area = max(min_area, merge * np.pi * r_med**2)
    use_edges = edge_quantile is not None or boundary_weight > 0
    labels = split_touching(
        mask,
        min_distance=md,
        smooth=1.0,
        intensity_image=img if use_edges else None,
        edge_quantile=edge_quantile,
        boundary_weight=boundary_weight,
        min_size=merge_area,
        merge_slivers=merge_slivers,
        separate=separate,
        connectivity=4,
    )
    return labels


def _adaptive_min_distance(mask: np.ndarray, fraction: float) -> float:
    """``fraction`` x the median radius of the particles, from the maxima of the distance map."""
    dist = cv2.distanceTransform(mask.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    n, comp = cv2.connectedComponents(mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    if n <= 1:
        return 3.0
    maxima = ndi.maximum(dist, comp, index=np.arange(1, n))
    # weight clusters less: the radius of isolated particles is the typical one
    r = float(np.median(maxima))
    return max(2.0, fraction * r)


def segment_pores(
    image,
    *,
    pixel_size: float | None = None,
    denoise_size: float | None = None,
    threshold_method: str = "otsu",
    threshold_offset: float = 0.0,
    min_pore_diameter: float | None = None,
    fill_holes: bool = False,
    split: bool = False,
) -> np.ndarray:
    """Instance labels of dark pores in a bright matrix (porosity analysis).

    Recipe: median filter (radius ``denoise_size``, default 1 px) to remove
    shot noise without blurring pore edges; global threshold of dark
    objects (Otsu by default); opening with a 1 px disk; removal of pores
    smaller than a disk of diameter ``min_pore_diameter`` (default 3 px);
    8-connected labelling (or a distance-transform split with
    ``split=True`` for touching round pores).

    Parameters
    ----------
    image : ndarray
        2-D grayscale image (3-D stacks plane by plane).
    pixel_size : float, optional
        nm per pixel; when given the sizes are in nm.
    denoise_size, min_pore_diameter : float, optional
        nm (with ``pixel_size``) or px.
    threshold_method : str
        Any global method of :func:`threshold`.
    threshold_offset : float
    fill_holes : bool
        Fill bright islands inside pores.
    split : bool

    Returns
    -------
    labels : ndarray of int32
        0 = matrix, 1..N pores. The porosity is ``(labels > 0).mean()``.
    """
    arr = np.asarray(image)
    if _is_stack(arr):
        kw = _keyword_args(segment_pores, locals())
        return np.stack([segment_pores(p, **kw) for p in arr]).astype(np.int32)
    arr, units = _preset_input(arr, threshold_method, pixel_size)
    r = units.px(denoise_size, 1.0, "denoise_size")
    dmin = units.px(min_pore_diameter, 3.0, "min_pore_diameter")
    img = arr
    if r >= 0.5:
        from ..enhancement import denoise

        img = denoise(arr, "median", size=max(1, round(r)))
    mask = threshold(img, threshold_method, dark_objects=True, offset=threshold_offset)
    mask = clean_mask(mask, opening=1, min_size=np.pi * (dmin / 2) ** 2, fill_holes=fill_holes, allow_empty=True)
    if not mask.any():
        raise SEMAnalysisError("no pores found: the clean mask is empty")
    if split:
        return split_touching(mask, min_distance=max(2.0, dmin / 2), min_size=np.pi * (dmin / 2) ** 2)
    _, lab = cv2.connectedComponents(mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return lab
