"""U-Net semantic segmentation: training, tiled inference and safe model files.

Modules: :mod:`.network` (architectures, encoders), :mod:`.normalization`
(intensity scaling stored in the model), :mod:`.model` (:class:`UNetModel`
and its safetensors file), :mod:`.predict` (tiled, blended inference),
:mod:`.losses` (class weights, Dice + cross-entropy, IoU), :mod:`.sampling`
(augmented patches, validation split), :mod:`.train` (:func:`train_unet` and
its checks and data preparation), :mod:`.loop` (the epoch loop),
:mod:`.instances` (instance targets and decoding) and :mod:`.tuning`
(:func:`tune_instance_decoding`: decoding settings chosen on annotated images).

Architectures and encoders come from ``segmentation-models-pytorch`` (smp).
A user gives a few images with class masks, :func:`train_unet` trains a
network on random augmented patches, and the returned :class:`UNetModel`
segments images of any size with overlapping, smoothly blended tiles.

* torch and smp are imported lazily inside the functions that need them.
* Encoder weights are random by default (nothing is downloaded); ImageNet
  (or any) encoder weights are read only from a local file.
* Model files are a single ``safetensors`` file whose header holds the
  configuration as JSON (architecture, encoder, classes, normalisation,
  pixel size, training history). Loading never unpickles anything, so a
  model file cannot execute code.
* On CUDA, training and inference use mixed precision (bf16 where
  supported, else fp16) and the channels-last memory format.

Examples
--------
>>> from napari_sem_analysis import train_unet, load_model   # doctest: +SKIP
>>> model = train_unet([image], [mask], encoder="resnet18", epochs=20)  # doctest: +SKIP
>>> labels = model.predict(big_image, tile_size=512, overlap=64)  # doctest: +SKIP
>>> model.save("coating.safetensors")                          # doctest: +SKIP
>>> model = load_model("coating.safetensors")                  # doctest: +SKIP
"""

from __future__ import annotations

from .._device import select_device
from .losses import _IGNORE, _class_weights  # noqa: F401  (used by tests)
from .model import FORMAT_NAME, FORMAT_VERSION, UNetModel, load_model  # noqa: F401
from .network import ARCHITECTURES, _amp_dtype, _build_network  # noqa: F401  (used by tests, benchmarks)
from .predict import predict_unet
from .sampling import _PatchSampler  # noqa: F401  (used by tests)
from .train import train_unet
from .tuning import tune_instance_decoding

__all__ = [
    "train_unet",
    "UNetModel",
    "load_model",
    "predict_unet",
    "tune_instance_decoding",
    "select_device",
    "ARCHITECTURES",
]
