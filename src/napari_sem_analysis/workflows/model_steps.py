"""Steps that wrap saved models (U-Net, object and tile classifiers), each loaded once per process.

They are registered in :mod:`napari_sem_analysis.steps` (``unet_predict``,
``predict_unet``, ``classify_objects``, ``classify_tiles``); a model file
saved again under the same name is loaded again.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._validation import SEMAnalysisError, to_grayscale
from ._data import _labels_of


def _file_stamp(path: str):
    """(mtime, size) of a model file: a model saved again under the same name is loaded again."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _cached_model(path: str, device: str):
    return _cached_model_at(path, device, _file_stamp(path))


@functools.lru_cache(maxsize=4)
def _cached_model_at(path: str, device: str, _stamp):
    from ..unet import load_model

    kwargs = {} if device == "auto" else {"device": device}
    try:
        return load_model(path, **kwargs)
    except TypeError:
        return load_model(path)


def unet_predict(image, *, model: str, device: str = "auto", instances: bool = True, **predict_kwargs):
    """Segment with a saved U-Net; the model is loaded once per process (worker).

    With ``instances=True`` a two-class (background/object) prediction is
    turned into objects by connected components, so that it can be counted
    and measured; multi-class predictions are returned as class maps.
    """
    m = _cached_model(os.fspath(model), device)
    pred = np.asarray(m.predict(image, device=device, **predict_kwargs))
    two_class = pred.ndim == 2 and pred.dtype != bool and np.issubdtype(pred.dtype, np.integer) and pred.max() <= 1
    if instances and two_class:
        pred = pred.astype(bool)
    if instances and pred.dtype == bool:
        from scipy import ndimage as ndi

        return ndi.label(pred)[0].astype(np.int32)
    return pred


def _cached_classifier(path: str, kind: str = "object"):
    """A saved ObjectClassifier (``kind="object"``) or ImageClassifier (``"image"``), loaded once
    per process and again when the file changes."""
    return _cached_classifier_at(path, kind, _file_stamp(path))


@functools.lru_cache(maxsize=8)
def _cached_classifier_at(path: str, kind: str, _stamp):
    from ..classification import ImageClassifier, ObjectClassifier

    return (ImageClassifier if kind == "image" else ObjectClassifier).load(path)


_cached_model.cache_clear = _cached_model_at.cache_clear  # type: ignore[attr-defined]
_cached_classifier.cache_clear = _cached_classifier_at.cache_clear  # type: ignore[attr-defined]


def classify_objects(labels, image=None, *, model: str, pixel_size=None, **measure_kwargs):
    """Class of every object from a saved :class:`ObjectClassifier` (loaded once per process).

    The objects are measured with :func:`measure` (``measure_kwargs``, e.g.
    ``texture=True``, as when the classifier was trained). Returns a
    ``pandas.Series`` of class names indexed by label value; name the step's
    output ``classes`` and the porosity summary counts the pores per class.
    """
    from ..measurement import measure

    labels = _labels_of(np.asarray(labels))
    if labels is None:
        raise SEMAnalysisError("classify_objects needs a label image")
    table = measure(labels, image=image, pixel_size=pixel_size, **measure_kwargs)
    clf = _cached_classifier(os.fspath(model))
    if len(table) == 0:
        out = pd.Series([], dtype=object, name="class")
    else:
        out = pd.Series(clf.predict(table), index=table["label"].to_numpy(), name="class")
    out.attrs["class_names"] = [str(c) for c in getattr(clf, "class_names", None) or []]
    return out


@dataclass
class TileClasses:
    """Output of the ``classify_tiles`` step.

    ``labels`` is the class map (1..K = ``class_names``, each pixel the class
    of highest probability averaged over the tiles covering it), ``table``
    the per-tile table of :meth:`ImageClassifier.predict_tiles`.
    """

    labels: np.ndarray
    table: pd.DataFrame
    class_names: list


def classify_tiles(image, *, model: str, tile_size: int | None = None, stride: int | None = None) -> TileClasses:
    """Classify the tiles of an image with a saved :class:`ImageClassifier` (loaded once per process).

    Use with ``summary: tiles``: tile counts and fractions per class
    (e.g. rust / no rust) for every image of a batch.
    """
    from ..classification import tile_probability_map

    img = to_grayscale(np.asarray(image))
    clf = _cached_classifier(os.fspath(model), "image")
    if tile_size is not None:
        tile_size = min(int(tile_size), *img.shape[:2])
    table = clf.predict_tiles(img, tile_size, stride)
    names = [str(c) for c in clf.class_names]
    pmap = tile_probability_map(table, img.shape, names)
    labels = (pmap.argmax(axis=0) + 1).astype(np.int32)
    return TileClasses(labels=labels, table=table, class_names=names)
