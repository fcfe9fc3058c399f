"""Texture features: grey-level co-occurrence (GLCM) and local binary patterns (LBP).

All regions of a label image (or all tiles of a regular grid) are handled in
one vectorised pass over the pixel pairs: the co-occurrence counts of every
region are obtained at once by sorting integer codes
``(region, level_i, level_j)``, never by looping over regions. The results
equal scikit-image's :func:`skimage.feature.graycomatrix` +
:func:`skimage.feature.graycoprops` computed region by region (a pixel pair
counts for a region only when both of its pixels lie in that region).

Dense texture maps (:func:`texture_map`) use integral images, so features
that are linear in the co-occurrence matrix (contrast, dissimilarity,
homogeneity, mean, variance, correlation) cost O(pixels) whatever the window
size.

The capabilities live in one module each: :mod:`.quantization` (gray levels,
pair offsets), :mod:`.regions` (label/tile regions), :mod:`.glcm`,
:mod:`.lbp` and :mod:`.maps` (dense texture maps); this package re-exports
their public names.
"""

from __future__ import annotations

from .glcm import GLCM_PROPERTIES, glcm_features, glcm_properties
from .lbp import lbp_features
from .maps import BLOCK_MAP_FEATURES, LINEAR_MAP_FEATURES, texture_map
from .quantization import glcm_offsets, quantize
from .regions import tile_labels

__all__ = [
    "GLCM_PROPERTIES",
    "quantize",
    "glcm_offsets",
    "glcm_features",
    "glcm_properties",
    "lbp_features",
    "texture_map",
    "tile_labels",
]
