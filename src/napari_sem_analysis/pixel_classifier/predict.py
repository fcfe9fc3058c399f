"""The ``pixel_classify`` recipe step: a saved :class:`PixelClassifier` applied to an image.

The model file is loaded once per process (and again when the file
changes), so a recipe run over a folder reads it once.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from .._validation import SEMAnalysisError

__all__ = ["load_pixel_classifier", "pixel_classify"]


def _stamp(path: str):
    try:
        st = os.stat(path)
    except OSError:
        raise SEMAnalysisError(f"model file {path!r} does not exist") from None
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=4)
def _load_at(path: str, _stamp):
    from .model import PixelClassifier

    return PixelClassifier.load(path)


def load_pixel_classifier(path):
    """A saved :class:`PixelClassifier`, loaded once per process (again when the file changes).

    Parameters
    ----------
    path : str or Path
        File written by :meth:`PixelClassifier.save`.

    Returns
    -------
    PixelClassifier
        The same object on every call while the file's size and time stamp stay the same.
    """
    path = os.fspath(Path(path))
    return _load_at(path, _stamp(path))


def pixel_classify(
    image,
    *,
    model: str,
    pixel_size: float | None = None,
    probabilities: bool = False,
    tile_size: int | None = None,
) -> np.ndarray:
    """Classify every pixel of ``image`` with a saved pixel classifier.

    Parameters
    ----------
    image : array (Y, X)
        Grayscale image.
    model : str or Path
        File written by :meth:`PixelClassifier.save`.
    pixel_size : float, optional
        Pixel size in nm (needed when the model's scales are in nm).
    probabilities : bool
        Return the class probabilities (Y, X, K) instead of the classes.
    tile_size : int, optional
        Tile edge for prediction (bounded memory on large images).

    Returns
    -------
    ndarray
        Class map (Y, X) with the scribble values 1..K, or probabilities.
    """
    if not model:
        raise SEMAnalysisError("pixel_classify needs a model file (model=...)")
    clf = load_pixel_classifier(model)
    if probabilities:
        return clf.predict_proba(image, pixel_size=pixel_size, tile_size=tile_size)
    return clf.predict(image, pixel_size=pixel_size, tile_size=tile_size)


load_pixel_classifier.cache_clear = _load_at.cache_clear  # type: ignore[attr-defined]
