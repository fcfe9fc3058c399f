"""Object, image and tile classifiers with honest (grouped) validation.

Two classifiers share one design:

* :class:`ObjectClassifier` classifies segmented objects (pores, particles,
  precipitates) from a per-object feature table (the output of
  :func:`napari_sem_analysis.measure`, or :func:`object_features`).
* :class:`ImageClassifier` classifies whole images or tiles of images, with a
  ``"features"`` backend (GLCM, LBP, intensity statistics, FFT band powers and
  edge density fed to a scikit-learn model) or a ``"cnn"`` backend (a small
  convolutional network, or a timm encoder with a classification head,
  trained in PyTorch with flips, 90-degree rotations and brightness/contrast
  augmentation; CUDA is used when present).

Validation is grouped: tiles and augmented copies of one source image are
kept in the same fold (``groups=``), so that accuracy is not inflated by
near-duplicates leaking across the split. :meth:`cross_validate` returns a
:class:`CVResult` with accuracy, per-class precision/recall/F1 and the
confusion matrix (:func:`confusion_matrix_figure` draws it).

Model files never execute code when loaded: a model file is a zip archive
holding ``meta.json`` and either a skops dump (scikit-learn models; only an
allow-list of types is accepted) or a safetensors file (PyTorch weights).
Wrong, corrupt or tampered files raise :class:`SEMAnalysisError`.

scikit-learn, skops, torch and matplotlib are imported lazily.

Modules: :mod:`.objects` (object features, :class:`ObjectClassifier`),
:mod:`.images` (:class:`ImageClassifier`), :mod:`.features` (image
features), :mod:`.cnn` (the CNN backend), :mod:`.tiles`, :mod:`.folders`
(labelled image folders), :mod:`.validation` (grouped splits, CV loop),
:mod:`.results` (:class:`CVResult`, confusion matrix), :mod:`.archive` and
:mod:`.sklearn_models` (safe model files).
"""

from __future__ import annotations

from .features import image_features
from .folders import ImageFolderData, load_image_folder
from .images import ImageClassifier
from .objects import DEFAULT_PORE_CLASSES, ObjectClassifier, object_features
from .results import CVResult, confusion_matrix_figure
from .tiles import extract_tiles, tile_positions, tile_probability_map
from .validation import fold_count

__all__ = [
    "ObjectClassifier",
    "ImageClassifier",
    "CVResult",
    "ImageFolderData",
    "image_features",
    "object_features",
    "extract_tiles",
    "tile_positions",
    "tile_probability_map",
    "load_image_folder",
    "confusion_matrix_figure",
    "DEFAULT_PORE_CLASSES",
]
