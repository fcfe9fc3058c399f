"""Tiling images for tile classification and the per-pixel probability map of tile predictions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._validation import MAX_SHAPE_PIXELS, SEMAnalysisError, check_image, check_positive, check_shape, to_grayscale


def tile_positions(shape, tile_size: int, stride: int | None = None) -> list[tuple[int, int, int, int, int, int]]:
    """Tile grid over an image of ``shape``: list of (row, col, y0, x0, y1, x1).

    Tiles start every ``stride`` pixels (default ``tile_size``); a last tile
    aligned with the image edge is added where the grid does not reach it.
    """
    h, w = int(shape[0]), int(shape[1])
    t = int(check_positive(tile_size, "tile_size"))
    s = int(check_positive(stride if stride is not None else t, "stride"))
    if t > h or t > w:
        raise SEMAnalysisError(f"tile_size {t} is larger than the image ({h}x{w})")

    def starts(n):
        st = list(range(0, n - t + 1, s))
        if st[-1] + t < n:
            st.append(n - t)
        return st

    out = []
    for r, y0 in enumerate(starts(h)):
        for c, x0 in enumerate(starts(w)):
            out.append((r, c, y0, x0, y0 + t, x0 + t))
    return out


def extract_tiles(images, y=None, *, tile_size: int = 256, stride: int | None = None):
    """Cut images into tiles for training; returns ``(tiles, tile_labels, groups)``.

    ``groups[i]`` is the index of the source image of tile ``i``: pass it as
    ``groups=`` to :meth:`ImageClassifier.cross_validate` so that tiles of one
    image stay in one fold. ``tile_labels`` is None when ``y`` is None.

    Parameters
    ----------
    images : sequence of ndarray
        2-D images.
    y : sequence, optional
        One class label per image, given to each of its tiles.
    tile_size : int
        Tile height and width in pixels.
    stride : int, optional
        Step between tiles (default ``tile_size``, no overlap).
    """
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]
    tiles, labels, groups = [], [], []
    for i, im in enumerate(images):
        im = check_image(to_grayscale(np.asarray(im)), name=f"image {i}")
        for _, _, y0, x0, y1, x1 in tile_positions(im.shape, tile_size, stride):
            tiles.append(im[y0:y1, x0:x1])
            groups.append(i)
            if y is not None:
                labels.append(y[i])
    return tiles, (np.asarray(labels) if y is not None else None), np.asarray(groups, dtype=np.int64)


def tile_probability_map(tiles: pd.DataFrame, shape, class_names: Sequence[str]) -> np.ndarray:
    """Per-pixel class probabilities (K, Y, X) averaged over the tiles that cover each pixel.

    Parameters
    ----------
    tiles : pandas.DataFrame
        One row per tile with its box ``y0``, ``x0``, ``y1``, ``x1`` and a
        ``prob_<class name>`` column per class.
    shape : tuple of int
        Shape (Y, X) of the image the tiles were cut from.
    class_names : sequence of str
        The classes, in the order of the output planes.
    """
    if not isinstance(tiles, pd.DataFrame):
        raise SEMAnalysisError(f"tiles must be a table (DataFrame) of tiles, got {type(tiles).__name__}")
    if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names):
        raise SEMAnalysisError("class_names must be a list of strings")
    h, w = check_shape(shape)
    k = len(class_names)
    if k * h * w > MAX_SHAPE_PIXELS:
        raise SEMAnalysisError(f"{k} class maps of {h} x {w} pixels are too large")
    acc = np.zeros((k, h, w), np.float32)
    cnt = np.zeros((h, w), np.float32)
    cols = [f"prob_{n}" for n in class_names]
    missing = [c for c in cols if c not in tiles.columns]
    if missing:
        raise SEMAnalysisError(f"the tile table lacks the columns {missing}")
    for row in tiles[["y0", "x0", "y1", "x1", *cols]].itertuples(index=False):
        y0, x0, y1, x1 = (int(v) for v in row[:4])
        acc[:, y0:y1, x0:x1] += np.asarray(row[4:], np.float32)[:, None, None]
        cnt[y0:y1, x0:x1] += 1
    return acc / np.maximum(cnt, 1)[None]
