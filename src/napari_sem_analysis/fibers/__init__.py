"""Fibre mats: fibre diameter, orientation, junctions, beads and mesh pores.

:func:`measure_fibers` measures electrospun (nano)fibre micrographs the way
DiameterJ and OrientationJ do in Fiji, in one call on a numpy array. Its
stages live in one module each:

1. **Segmentation** (``segment.py``, unless a mask is given): the image minus
   a smooth background is thresholded (Otsu); with ``method="ridge"`` (the
   default) a multi-scale tubeness (Sato) filter adds faint fibres that the
   intensity threshold misses, at half the intensity threshold.
2. **Centreline** (``graph.py``): the skeleton of the mask, with spurs
   shorter than the local fibre radius pruned; junctions (3+ neighbours),
   end points, segments between them with their length and orientation.
3. **Local diameter** (``widths.py``) at each centreline pixel: the width
   along the local normal (from the structure tensor of the distance map),
   read with sub-pixel edges from profiles of the image or the mask. Pixels
   near a junction are left out of the diameter statistics (the width there
   is the crossing's, not a fibre's).
4. **Beads** (``beads.py``): stretches of the centreline wider than
   ``bead_factor`` times their segment's fibre diameter (spindles), and
   compact blobs that carry no fibre. ``spindles.py`` finds the long,
   shallow swellings below the bead factor (:func:`find_spindles`), read
   from the same width profiles along each segment, or (``tracks.py``,
   ``through_crossings=True``) along each fibre followed through its
   crossings, so that a swelling merged with a crossing fibre is measured.
5. **Summary** (``measure.py``): per-segment table, diameter statistics,
   alignment (length-weighted ``1 - circular variance`` of doubled segment
   angles: 0 random, 1 all parallel), mean orientation, junction and bead
   densities, bead size, mesh pore size (local thickness of the background).

``features.py`` turns a measurement into the scale-free physical features
used to classify fibre quality (:func:`fiber_features`).

Angles are degrees counter-clockwise from the image's +x axis with y up
(as a user reads the micrograph), in [0, 180).
"""

from __future__ import annotations

from .features import FIBER_FEATURES, fiber_features
from .graph import centerline
from .measure import measure_fibers
from .result import FiberResult
from .segment import segment_fibers
from .spindles import Spindles, find_spindles

__all__ = [
    "FIBER_FEATURES",
    "FiberResult",
    "Spindles",
    "centerline",
    "fiber_features",
    "find_spindles",
    "measure_fibers",
    "segment_fibers",
]
