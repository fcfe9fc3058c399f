"""Regions a texture is computed over: label images or a regular grid of tiles, coded for one vectorised pass."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._validation import SEMAnalysisError, check_labels, check_positive, check_shape


def tile_labels(shape: Sequence[int], tile_size) -> tuple[np.ndarray, pd.DataFrame]:
    """Label image of a regular grid of tiles and a table of the tiles.

    Tiles are numbered from 1 row by row; partial tiles at the right and
    bottom edges are kept. The table has ``label``, ``tile_row``,
    ``tile_col``, ``y``, ``x``, ``height``, ``width`` (pixels).

    Parameters
    ----------
    shape : sequence of int
        Shape (rows, columns) of the image to tile.
    tile_size : int or (int, int)
        Tile height and width in pixels.
    """
    h, w = check_shape(shape)
    if np.ndim(tile_size) == 0:
        th = tw = tile_size
    else:
        th, tw = tile_size
    th = int(check_positive(th, "tile_size"))
    tw = int(check_positive(tw, "tile_size"))
    if th < 1 or tw < 1:
        raise SEMAnalysisError(f"tile_size must be at least 1 pixel, got {tile_size!r}")
    nr, nc = -(-h // th), -(-w // tw)
    rows = (np.arange(h) // th).astype(np.int32)
    cols = (np.arange(w) // tw).astype(np.int32)
    labels = rows[:, None] * nc + cols[None, :] + 1
    tr, tc = np.divmod(np.arange(nr * nc), nc)
    y, x = tr * th, tc * tw
    table = pd.DataFrame(
        {
            "label": np.arange(1, nr * nc + 1),
            "tile_row": tr,
            "tile_col": tc,
            "y": y,
            "x": x,
            "height": np.minimum(th, h - y),
            "width": np.minimum(tw, w - x),
        }
    )
    return labels.astype(np.int32), table


def _regions(image_shape, labels, tile_size):
    """Return (labels, present label values, base table)."""
    if labels is None:
        if tile_size is None:
            labels = np.ones(image_shape, np.int32)
            return labels, np.array([1]), pd.DataFrame({"label": [1]})
        labels, table = tile_labels(image_shape, tile_size)
        return labels, table["label"].to_numpy(), table
    labels = check_labels(labels)
    if labels.shape != tuple(image_shape):
        raise SEMAnalysisError(f"labels of shape {labels.shape} do not match the image of shape {tuple(image_shape)}")
    present = _present_labels(labels)
    return labels, present, pd.DataFrame({"label": present})


def _present_labels(labels: np.ndarray) -> np.ndarray:
    if labels.size == 0:
        return np.zeros(0, np.int64)
    mx = int(labels.max())
    if mx == 0:
        return np.zeros(0, np.int64)
    if mx <= 4 * labels.size + 1_000_000:
        counts = np.bincount(labels.ravel().astype(np.intp, copy=False), minlength=mx + 1)
        present = np.flatnonzero(counts)
    else:
        present = np.unique(labels)
    return present[present > 0].astype(np.int64)


def _region_index(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Position of each label value in ``present`` (sorted)."""
    return np.searchsorted(present, values)
