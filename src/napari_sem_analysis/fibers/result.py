"""The result of :func:`measure_fibers`: tables, summary and label images."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FiberResult:
    """Result of :func:`measure_fibers`.

    Attributes
    ----------
    segments : pandas.DataFrame
        One row per fibre segment (between junctions / end points): ``label``,
        ``length``, ``diameter_mean``, ``diameter_sd``, ``diameter_median``,
        ``orientation`` (degrees), ``n_beads``, ``centroid_y``,
        ``centroid_x`` (pixels). Lengths and diameters in nm when a pixel
        size was given, else in pixels.
    summary : dict
        Image summaries; see :func:`measure_fibers`.
    fibers : ndarray (int32)
        Fibre mask labelled by the nearest centreline segment.
    centerline : ndarray (int32)
        The centreline labelled by segment (0 elsewhere).
    beads : ndarray (int32)
        One label per bead.
    bead_table : pandas.DataFrame
        ``label``, ``y``, ``x`` (pixels), ``diameter`` (nm or px), ``kind``
        (``"spindle"`` on a fibre or ``"blob"``).
    diameter_map : ndarray (float32)
        Local diameter at each centreline pixel (nm or px; NaN where not
        measured, 0 off the centreline).
    mask : ndarray (bool)
        The fibre mask that was measured.
    pixel_size : float or None
    """

    segments: object
    summary: dict
    fibers: np.ndarray
    centerline: np.ndarray
    beads: np.ndarray
    bead_table: object
    diameter_map: np.ndarray
    mask: np.ndarray
    pixel_size: float | None = None
    info: dict = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        """The fibre segment labels (``fibers``), for recipes and the batch."""
        return self.fibers

    def flat_summary(self) -> dict:
        """The scalar summary figures (no histogram), for tables and the batch."""
        return {k: v for k, v in self.summary.items() if not isinstance(v, tuple)}
