"""Classical segmentation: thresholds, mask clean-up, watershed splitting, SLIC superpixels.

Core functions on numpy arrays (no Qt, no napari). Lengths are in pixels by
default, or in nm with ``unit="nm"`` and a ``pixel_size`` (nm per pixel);
areas (``min_size``, ``max_hole_size``) are in px² or nm² accordingly.
3-D (Z, Y, X) stacks are processed plane by plane.

The two recipes used by the batch presets are :func:`segment_particles`
(bright particles on a darker substrate -> instance labels) and
:func:`segment_pores` (dark pores in a bright matrix -> instance labels).

Modules: :mod:`.thresholds`, :mod:`.cleanup`, :mod:`.watershed`,
:mod:`.superpixels` (with the SLIC kernels in :mod:`.slic`) and
:mod:`.presets` (the two recipes); shared helpers in :mod:`._common`.
"""

from __future__ import annotations

from .cleanup import clean_mask
from .components import label_components
from .presets import PARTICLE_SPLIT, segment_particles, segment_pores, split_particles
from .superpixels import superpixels
from .thresholds import GLOBAL_METHODS, LOCAL_METHODS, THRESHOLD_METHODS, multi_threshold, threshold
from .watershed import _merge_slivers, split_touching, watershed_from_seeds  # noqa: F401  (_merge_slivers: tests)

__all__ = [
    "threshold",
    "multi_threshold",
    "clean_mask",
    "split_touching",
    "watershed_from_seeds",
    "label_components",
    "split_particles",
    "PARTICLE_SPLIT",
    "superpixels",
    "segment_particles",
    "segment_pores",
]
