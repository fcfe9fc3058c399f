"""U-Net dock widgets: train from Image + Labels pairs, segment Image layers.

* :class:`TrainUNetWidget` (:mod:`._unet_train`) trains a network
  (:func:`napari_sem_analysis.unet.train_unet`) on Image + Labels pairs or
  folders of images and masks, with progress, a live loss / IoU plot and a
  Stop button that keeps the best model so far.
* :class:`PredictUNetWidget` (:mod:`._unet_predict`) segments an Image layer
  with a model file or the model just trained.
* :mod:`._unet_common`: the choices, the last trained model of each viewer,
  mask helpers and the loss plot shared by both.

This module gathers them under their historical import path.
"""

from __future__ import annotations

from ..io import IMAGE_SUFFIXES, read_training_folders  # noqa: F401  (reading lives in io)
from ..io import find_mask as _find_mask  # noqa: F401
from ..io import read_pixels as _read_image  # noqa: F401
from ._unet_common import (  # noqa: F401
    DEVICES,
    ENCODERS,
    last_trained_model,
    names_from_labels,
    remap_mask_values,
)
from ._unet_predict import PredictUNetWidget
from ._unet_train import TrainUNetWidget

__all__ = [
    "TrainUNetWidget",
    "PredictUNetWidget",
    "last_trained_model",
    "remap_mask_values",
    "names_from_labels",
    "ENCODERS",
    "DEVICES",
]
