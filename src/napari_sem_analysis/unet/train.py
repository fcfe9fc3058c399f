"""Training a network on images with class masks (:func:`train_unet`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._device import avoid_triton_crash, describe_device, select_device
from .._validation import SEMAnalysisError, check_labels, is_rgb
from .loop import _fit, _LoopState, _Prepared, _Setup
from .losses import _IGNORE, _class_weights
from .model import UNetModel
from .network import (
    _DEFAULT_DECODER,
    _amp_dtype,
    _build_network,
    _check_encoder,
    _divisor,
    _load_encoder_weights,
    _normalise_arch,
)
from .normalization import _as_2d, _image_range, _normalise, _percentiles
from .sampling import _PatchSampler, _split_validation, _val_tiles


def train_unet(
    images,
    masks,
    *,
    n_classes: int | None = None,
    encoder: str = "resnet34",
    architecture: str = "unet",
    encoder_depth: int = 5,
    decoder_channels: Sequence[int] | None = None,
    patch_size: int = 256,
    epochs: int = 50,
    batch_size: int = 8,
    steps_per_epoch: int | None = None,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    val_fraction: float = 0.2,
    validation: tuple | None = None,
    patience: int | None = 10,
    monitor: str = "val_loss",
    augment: bool = True,
    scale_range: tuple[float, float] = (0.8, 1.25),
    class_balance: float = 0.5,
    class_weights: str | Sequence[float] | None = None,
    dice_weight: float = 1.0,
    ignore_index: int | None = None,
    normalization: str = "percentile",
    percentiles: tuple[float, float] = (0.5, 99.5),
    device="auto",
    amp: bool = True,
    callback: Callable[[dict], Any] | None = None,
    class_names: Sequence[str] | None = None,
    pixel_size: float | None = None,
    encoder_weights: str | Path | None = None,
    max_val_tiles: int = 64,
    seed: int = 0,
    task: str = "semantic",
    boundary_width: int = 2,
    unlabelled: int | None = None,
    background: int | None = None,
    regions=None,
    tune_decoding: bool = False,
    contact_weight: float | None = None,
    core_fraction: float = 0.0,
) -> UNetModel:
    """Train a segmentation network on images with class masks (or instance labels).

    Parameters
    ----------
    images : list of (Y, X) arrays (or one array)
        Training images of any sizes; uint8/uint16/float. Colour images with
        equal channels are taken as grayscale.
    masks : list of (Y, X) integer arrays (or one array)
        Class ids 0..K-1 per pixel, same shapes as ``images``. With
        ``task="instances"``: instance labels (0 background, one id per
        object).
    n_classes : int, optional
        Number of classes K (default: largest class id + 1, at least 2).
    encoder : str
        smp encoder, e.g. "resnet18", "resnet34", "efficientnet-b0",
        "mobilenet_v2" or a timm encoder as "tu-<name>".
    architecture : str
        "unet" (default), "unet++", "manet", "linknet", "fpn", "pspnet",
        "deeplabv3", "deeplabv3+", "pan", "upernet", "segformer".
    encoder_depth : int
        Encoder stages (3-5); fewer makes a smaller, faster network.
    decoder_channels : sequence of int, optional
        U-Net decoder widths (default (256, 128, 64, 32, 16)[:depth]).
    patch_size : int
        Edge of the square training patches (multiple of 2**encoder_depth).
    epochs : int
        Maximum number of epochs.
    batch_size : int
        Patches per optimisation step.
    steps_per_epoch : int, optional
        Default: about twice the training pixels over the pixels per batch,
        between 10 and 200.
    learning_rate, weight_decay : float
        AdamW settings; the learning rate follows a cosine schedule.
    val_fraction : float
        Part of the data held out for validation: whole images when there
        are three or more, else a strip at the end of every image. 0 trains
        without validation (the best epoch is then the lowest train loss).
    validation : (images, masks), optional
        Explicit validation data (``val_fraction`` is then ignored).
    patience : int or None
        Early stopping: stop when ``monitor`` has not improved for this many
        epochs. None disables early stopping.
    monitor : {"val_loss", "mean_iou"}
        Quantity that selects the best checkpoint.
    augment : bool
        Random flips, 90-degree rotations, brightness/contrast, noise and
        mild scaling (``scale_range``).
    class_balance : float
        Probability that a patch is centred on a pixel of a randomly chosen
        class (helps rare classes such as cracks).
    class_weights : None, "auto" or sequence of float
        Weights of the classes in the cross-entropy term. "auto" weights each
        class by the inverse square root of its pixel frequency in the
        training masks (at most 50x the most common class), so that rare
        classes such as cracks are not ignored; the weights used are stored
        in the model (``config["training"]["class_weights"]``).
    dice_weight : float
        Loss = cross-entropy + ``dice_weight`` * (1 - soft Dice).
    ignore_index : int, optional
        Mask value that marks unlabelled pixels (ignored by losses/metrics).
    normalization : {"percentile", "global"}
        "percentile": every image is scaled by its own ``percentiles``
        (robust to brightness/contrast changes between acquisitions);
        "global": one intensity range from all training images. Either way
        the same normalisation is stored in the model and used by predict.
    device : str
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "mps".
    amp : bool
        Mixed precision (bf16, else fp16) on CUDA.
    callback : callable, optional
        ``callback(info)`` after every step (``info["stage"] == "step"``) and
        every epoch (``"epoch"``, with ``"history"``); ``info`` has
        ``epoch``, ``epochs``, ``step``, ``steps``, ``progress`` (0-1),
        ``eta_s``, ``loss``. Returning True stops training; the best
        checkpoint so far is kept.
    class_names : sequence of str, optional
    pixel_size : float, optional
        Pixel size (nm) of the training images, stored in the model.
    encoder_weights : path, optional
        Local file with encoder weights (e.g. ImageNet); never downloaded.
    max_val_tiles : int
        At most this many validation tiles per epoch.
    seed : int
        Seed for patch sampling, the split and weight initialisation.
    task : {"semantic", "instances"}
        "instances": the masks are instance labels; the network learns
        background / object interior / object boundary
        (:func:`napari_sem_analysis.instance_targets`), and the model's
        ``predict`` returns instance labels (seeded watershed on the whole
        image's probabilities). The decoding settings are stored in the
        model (``config["instances"]``): thresholds 0.5, pieces smaller than
        0.1 x the median training object merged into a neighbour or dropped,
        and one-pixel gaps between touching objects when the training
        objects never touch (drawn with gaps).
    boundary_width : int
        Instances: width (px) of the boundary class inside each object.
    unlabelled : int, optional
        Instances: label value of pixels that are not annotated; they do not
        count in the loss. ``unlabelled=0`` when only objects (and, with
        ``background``, some background) were painted.
    background : int, optional
        Instances: label value painted as background (with ``unlabelled=0``).
    regions : list of bool arrays, optional
        Instances: per image, the annotated region; pixels outside do not
        count in the loss.
    tune_decoding : bool
        Instances: after training, choose the decoding settings (thresholds,
        smallest seed and object) that give the best panoptic quality on the
        validation images (:func:`napari_sem_analysis.tune_instance_decoding`)
        and store them in the model. Needs validation data (``val_fraction``
        > 0 or ``validation``) annotated completely (no ``unlabelled``,
        ``background`` or ``regions``).
    contact_weight : float, optional
        Instances: loss weight of the pixels within ``boundary_width + 1`` px
        of two different objects (:func:`napari_sem_analysis.contact_zone`),
        where touching objects are told apart; 1 weights them like any
        other pixel. Default: :data:`DEFAULT_CONTACT_WEIGHT` for instances.
    core_fraction : float
        Instances: with c in (0, 1) the interior class is each object's core
        (pixels farther from its border than c x its inscribed radius), the
        rest is boundary (``instance_targets(core_fraction=)``); seeds of
        touching objects then lie apart in proportion to their size.
        0: a ``boundary_width`` band only.

    Returns
    -------
    UNetModel
    """
    # every keyword parameter (the public signature stays flat) -> one checked settings object
    settings = _TrainSettings(**{k: v for k, v in locals().items() if k not in _NOT_SETTINGS})
    avoid_triton_crash()  # torch.optim imports torch._dynamo (and triton, when allowed)
    import torch

    data = _check_data(images, masks, validation)
    instance_cfg = _task_targets(settings, data)
    config = _model_config(settings, data)
    rng = np.random.default_rng(settings.seed)
    torch.manual_seed(settings.seed)
    dev = select_device(settings.device)
    tuning = _tuning_data(settings, data, rng)
    prepared = _prepare_data(settings, data, config, rng)
    setup = _setup_training(settings, config, prepared, dev)
    loop = _fit(settings, setup, prepared, callback)
    model = _finish(settings, config, prepared, setup, loop, instance_cfg)
    if tuning is not None:
        from .tuning import tune_instance_decoding

        tune_instance_decoding(model, *tuning, device=settings.device)
    return model


# --------------------------------------------------------------------------
# stages of train_unet, with small dataclasses between them
# --------------------------------------------------------------------------

_NOT_SETTINGS = ("images", "masks", "validation", "callback")

#: loss weight of the pixels where two objects meet (task="instances"; measured in
#: docs/evaluation/instances.md)
DEFAULT_CONTACT_WEIGHT = 10.0


@dataclass
class _TrainSettings:
    """The keyword parameters of :func:`train_unet` (see its docstring), as given."""

    n_classes: int | None
    encoder: str
    architecture: str
    encoder_depth: int
    decoder_channels: Sequence[int] | None
    patch_size: int
    epochs: int
    batch_size: int
    steps_per_epoch: int | None
    learning_rate: float
    weight_decay: float
    val_fraction: float
    patience: int | None
    monitor: str
    augment: bool
    scale_range: tuple[float, float]
    class_balance: float
    class_weights: str | Sequence[float] | None
    dice_weight: float
    ignore_index: int | None
    normalization: str
    percentiles: tuple[float, float]
    device: Any
    amp: bool
    class_names: Sequence[str] | None
    pixel_size: float | None
    encoder_weights: str | Path | None
    max_val_tiles: int
    seed: int
    task: str
    boundary_width: int
    unlabelled: int | None
    background: int | None
    regions: Any
    tune_decoding: bool
    contact_weight: float | None = None
    core_fraction: float = 0.0


@dataclass
class _TrainData:
    """Checked training (and optional explicit validation) images and masks."""

    images: list
    masks: list
    val_images: list | None = None
    val_masks: list | None = None
    #: instance labels before they become targets (task="instances")
    instance_labels: list | None = None
    val_instance_labels: list | None = None


def _as_list(images, masks):
    if isinstance(images, np.ndarray) and (images.ndim == 2 or is_rgb(images)):
        images = [images]
    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        masks = [masks]
    return images, masks


def _check_data(images, masks, validation) -> _TrainData:
    """Images as 2-D arrays and masks as labels, paired with equal shapes."""
    images, masks = _as_list(images, masks)
    images = [_as_2d(im, f"images[{i}]") for i, im in enumerate(images)]
    masks = [check_labels(m, name=f"masks[{i}]") for i, m in enumerate(masks)]
    if not images:
        raise SEMAnalysisError("no training images given")
    if len(images) != len(masks):
        raise SEMAnalysisError(f"{len(images)} images but {len(masks)} masks")
    for i, (im, m) in enumerate(zip(images, masks)):
        if im.shape != m.shape:
            raise SEMAnalysisError(f"image {i} has shape {im.shape} but its mask has shape {m.shape}")
    data = _TrainData(images, masks)
    if validation is not None:
        vi, vm = validation
        if isinstance(vi, np.ndarray) and (vi.ndim == 2 or is_rgb(vi)):
            vi, vm = [vi], [vm]
        data.val_images = [_as_2d(im, f"validation image {i}") for i, im in enumerate(vi)]
        data.val_masks = [check_labels(m, name=f"validation mask {i}") for i, m in enumerate(vm)]
        pairs = zip(data.val_images, data.val_masks)
        if len(data.val_images) != len(data.val_masks) or any(a.shape != b.shape for a, b in pairs):
            raise SEMAnalysisError("validation images and masks must pair up with equal shapes")
    return data


def _task_targets(s: _TrainSettings, data: _TrainData) -> dict | None:
    """``task="instances"``: instance labels -> background / interior / boundary targets (in ``data``).

    Returns the decoding settings stored in the model, or None for a semantic task.
    """
    if s.task not in ("semantic", "instances"):
        raise SEMAnalysisError(f"task must be 'semantic' or 'instances', got {s.task!r}")
    if s.task == "semantic":
        if s.unlabelled is not None or s.background is not None or s.regions is not None:
            raise SEMAnalysisError(
                "unlabelled, background and regions are for task='instances' (else use ignore_index)"
            )
        if s.contact_weight not in (None, 1.0):
            raise SEMAnalysisError("contact_weight is for task='instances'")
        if s.core_fraction not in (None, 0, 0.0):
            raise SEMAnalysisError("core_fraction is for task='instances'")
        s.contact_weight = 1.0
        return None
    from .instances import CLASS_NAMES, TARGET_IGNORE, instance_training_masks

    if s.ignore_index is not None:
        raise SEMAnalysisError("with task='instances' mark unannotated pixels with unlabelled=, not ignore_index=")
    if s.n_classes not in (None, 3):
        raise SEMAnalysisError("an instance model has 3 classes (background, interior, boundary)")
    if s.contact_weight is None:
        s.contact_weight = DEFAULT_CONTACT_WEIGHT
    try:
        cw = float(s.contact_weight)
    except (TypeError, ValueError):
        cw = float("nan")
    if not (np.isfinite(cw) and 0 < cw <= 100):
        raise SEMAnalysisError(f"contact_weight must be in (0, 100], got {s.contact_weight!r}")
    contact_width = int(s.boundary_width) + 1 if cw != 1.0 else 0
    kwargs = {
        "boundary_width": s.boundary_width,
        "unlabelled": s.unlabelled,
        "background": s.background,
        "contact_width": contact_width,
        "core_fraction": s.core_fraction,
    }
    data.instance_labels, data.val_instance_labels = data.masks, data.val_masks
    data.masks, instance_cfg = instance_training_masks(data.masks, regions=s.regions, **kwargs)
    if data.val_masks is not None:
        data.val_masks, _ = instance_training_masks(data.val_masks, **kwargs)
    s.ignore_index, s.n_classes, s.class_names = TARGET_IGNORE, 3, list(CLASS_NAMES)
    return instance_cfg


def _tuning_data(s: _TrainSettings, data: _TrainData, rng) -> tuple[list, list] | None:
    """``tune_decoding``: the validation images and their instance labels (None when not asked).

    Without explicit validation data, the split is the one :func:`_prepare_data`
    makes next: the same function on a copy of the random generator.
    """
    if not s.tune_decoding:
        return None
    if s.task != "instances":
        raise SEMAnalysisError("tune_decoding is for task='instances'")
    if s.unlabelled is not None or s.background is not None or s.regions is not None:
        raise SEMAnalysisError("tune_decoding needs completely annotated images (no unlabelled, background, regions)")
    from .instances import _objects

    if data.val_images is not None:
        return data.val_images, [_objects(m) for m in data.val_instance_labels]
    if float(s.val_fraction) <= 0:
        raise SEMAnalysisError("tune_decoding needs validation data: val_fraction > 0 or validation=")
    twin = np.random.default_rng()
    twin.bit_generator.state = rng.bit_generator.state
    split = _split_validation(data.images, data.instance_labels, float(s.val_fraction), twin, s.patch_size)
    if not split[2]:
        raise SEMAnalysisError("tune_decoding: the images are too small to hold out validation data")
    return split[2], [_objects(m) for m in split[3]]


def _check_classes(s: _TrainSettings, masks) -> tuple[int, list[str]]:
    """Number and names of the classes, checked against the mask values."""
    if s.task == "instances":  # targets made by _task_targets (weighted codes fold onto the 3 classes)
        return 3, list(s.class_names)
    ignore = s.ignore_index

    def valid_values(m):
        return m[m != ignore] if ignore is not None else m

    max_id = max(int(valid_values(m).max()) if valid_values(m).size else 0 for m in masks)
    n_classes = max(2, max_id + 1) if s.n_classes is None else s.n_classes
    n_classes = int(n_classes)
    if n_classes < 2:
        raise SEMAnalysisError(f"n_classes must be at least 2, got {n_classes}")
    if max_id >= n_classes:
        raise SEMAnalysisError(f"masks contain class id {max_id} but n_classes is {n_classes}")
    names = [f"class {i}" for i in range(n_classes)] if s.class_names is None else s.class_names
    names = [str(c) for c in names]
    if len(names) != n_classes:
        raise SEMAnalysisError(f"{len(names)} class names for {n_classes} classes")
    return n_classes, names


def _check_options(s: _TrainSettings) -> None:
    """The sizes and choices that do not depend on the data (normalised in place)."""
    s.epochs = int(s.epochs)
    s.batch_size = int(s.batch_size)
    if s.epochs < 1 or s.batch_size < 1:
        raise SEMAnalysisError("epochs and batch_size must be at least 1")
    if not 0 <= float(s.val_fraction) < 1:
        raise SEMAnalysisError(f"val_fraction must be in [0, 1), got {s.val_fraction}")
    if not 0 <= float(s.class_balance) <= 1:
        raise SEMAnalysisError(f"class_balance must be in [0, 1], got {s.class_balance}")
    s.scale_range = tuple(float(v) for v in s.scale_range)
    if len(s.scale_range) != 2 or not 0 < s.scale_range[0] <= s.scale_range[1]:
        raise SEMAnalysisError(f"scale_range must be (low, high) with 0 < low <= high, got {s.scale_range}")
    if s.monitor not in ("val_loss", "mean_iou"):
        raise SEMAnalysisError(f"monitor must be 'val_loss' or 'mean_iou', got {s.monitor!r}")
    if s.normalization not in ("percentile", "global"):
        raise SEMAnalysisError(f"normalization must be 'percentile' or 'global', got {s.normalization!r}")
    if s.pixel_size is not None:
        s.pixel_size = float(s.pixel_size)


def _model_config(s: _TrainSettings, data: _TrainData) -> dict[str, Any]:
    """The model configuration (architecture, encoder, classes) after checking every setting."""
    n_classes, class_names = _check_classes(s, data.masks)
    architecture = _normalise_arch(s.architecture)
    _check_encoder(s.encoder)
    depth = int(s.encoder_depth)
    if not 3 <= depth <= 5:
        raise SEMAnalysisError(f"encoder_depth must be 3, 4 or 5, got {depth}")
    decoder = _DEFAULT_DECODER[5 - depth :] if s.decoder_channels is None else s.decoder_channels
    decoder = [int(c) for c in decoder]
    if len(decoder) != depth:
        raise SEMAnalysisError(f"decoder_channels needs {depth} values, got {len(decoder)}")
    _check_options(s)
    config: dict[str, Any] = {
        "architecture": architecture,
        "encoder": s.encoder,
        "encoder_depth": depth,
        "decoder_channels": decoder,
        "n_classes": n_classes,
        "class_names": class_names,
        "pixel_size": s.pixel_size,
    }
    div = _divisor(config)
    s.patch_size = int(s.patch_size)
    if s.patch_size < div or s.patch_size % div:
        raise SEMAnalysisError(f"patch_size must be a positive multiple of {div}, got {s.patch_size}")
    return config


def _normalization(s: _TrainSettings, images) -> dict[str, Any]:
    """The intensity normalisation stored in the model (mean/std filled in later)."""
    lo_p, hi_p = float(s.percentiles[0]), float(s.percentiles[1])
    if not 0 <= lo_p < hi_p <= 100:
        raise SEMAnalysisError(f"percentiles must satisfy 0 <= low < high <= 100, got {s.percentiles}")
    if s.normalization == "percentile":
        norm: dict[str, Any] = {"method": "percentile", "low_percentile": lo_p, "high_percentile": hi_p}
    else:
        sample = np.concatenate([im.reshape(-1)[:: max(1, im.size // 500_000)] for im in images])
        lo, hi = _percentiles(sample, lo_p, hi_p)
        norm = {"method": "global", "low": lo, "high": hi, "low_percentile": lo_p, "high_percentile": hi_p}
    norm["mean"], norm["std"] = 0.0, 1.0
    return norm


def _prepare_data(s: _TrainSettings, data: _TrainData, config: dict, rng) -> _Prepared:
    """Normalise, split off validation data, standardise; the patch sampler and validation tiles."""
    norm = _normalization(s, data.images)

    def to_unit(ims):
        out = []
        for im in ims:
            lo, hi = _image_range(im, norm)
            out.append(_normalise(im, lo, hi, {"mean": 0.0, "std": 1.0}))
        return out

    def to_target(ms):
        out = []
        for m in ms:
            t = m.astype(np.int64)
            if s.ignore_index is not None:
                t[m == s.ignore_index] = _IGNORE
            out.append(t)
        return out

    unit_images, targets = to_unit(data.images), to_target(data.masks)
    if data.val_images is not None:
        tr_x, tr_y = unit_images, targets
        va_x, va_y = to_unit(data.val_images), to_target(data.val_masks)
    else:
        tr_x, tr_y, va_x, va_y = _split_validation(unit_images, targets, float(s.val_fraction), rng, s.patch_size)
    vals = np.concatenate([x.reshape(-1)[:: max(1, x.size // 200_000)] for x in tr_x])
    norm["mean"] = float(vals.mean())
    norm["std"] = float(max(vals.std(), 1e-3))
    config["normalization"] = norm
    # brightness/contrast augmentation is applied in standardised units
    tr_x = [(x - norm["mean"]) / norm["std"] for x in tr_x]
    va_x = [(x - norm["mean"]) / norm["std"] for x in va_x]
    n_classes = config["n_classes"]
    weights = _class_weights(s.class_weights, tr_y, n_classes)
    sampler = _PatchSampler(
        tr_x, tr_y, n_classes, s.patch_size, rng, s.augment, float(s.class_balance), tuple(s.scale_range)
    )
    vx, vy = _val_tiles(va_x, va_y, s.patch_size, int(s.max_val_tiles), rng) if va_x else (None, None)
    steps = s.steps_per_epoch
    if steps is None:
        px = sum(x.size for x in tr_x)
        steps = int(np.clip(math.ceil(2 * px / (s.patch_size**2 * s.batch_size)), 10, 200))
    return _Prepared(tr_x, tr_y, sampler, vx, vy, weights, int(steps), s.patch_size, s.epochs, s.batch_size, n_classes)


def _setup_training(s: _TrainSettings, config: dict, prep: _Prepared, dev) -> _Setup:
    """Network (with local encoder weights), AdamW, cosine schedule and mixed precision on ``dev``."""
    import torch

    net = _build_network(config)
    if s.encoder_weights is not None:
        _load_encoder_weights(net, s.encoder_weights)
        config["encoder_weights"] = Path(s.encoder_weights).name
    else:
        config["encoder_weights"] = None
    net.to(dev)
    channels_last = dev.type == "cuda"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    use_amp = bool(s.amp) and dev.type == "cuda"
    amp_dtype = _amp_dtype(dev) if use_amp else None
    scaler = torch.amp.GradScaler("cuda") if (use_amp and amp_dtype == torch.float16) else None
    opt = torch.optim.AdamW(net.parameters(), lr=float(s.learning_rate), weight_decay=float(s.weight_decay))
    total = prep.epochs * prep.steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )
    weights = prep.class_weights
    ce_weight = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=dev)
    heavy = float(s.contact_weight) if s.task == "instances" else 1.0
    return _Setup(
        net, opt, sched, scaler, dev, describe_device(dev), use_amp, amp_dtype, channels_last, ce_weight, heavy
    )


def _finish(
    s: _TrainSettings, config: dict, prep: _Prepared, setup: _Setup, state: _LoopState, instance_cfg: dict | None
) -> UNetModel:
    """The model with the best weights, the training settings and the history."""
    best = state.best_state
    if best is None:
        best = {k: v.detach().to("cpu", copy=True) for k, v in setup.net.state_dict().items()}
    config.update(
        {
            "task": s.task,
            "best_epoch": state.best_epoch,
            "stopped_early": bool(state.stopped or len(state.history) < prep.epochs),
            "monitor": s.monitor if prep.has_val else "train_loss",
            "device_used": describe_device(setup.dev),
            "training": {
                "patch_size": prep.patch_size,
                "epochs": prep.epochs,
                "batch_size": prep.batch_size,
                "steps_per_epoch": prep.steps_per_epoch,
                "learning_rate": float(s.learning_rate),
                "augment": bool(s.augment),
                "dice_weight": float(s.dice_weight),
                "class_balance": float(s.class_balance),
                "class_weights": prep.class_weights,
                "ignore_index": s.ignore_index,
                "n_train_images": len(prep.tr_x),
                "n_val_tiles": 0 if prep.vx is None else int(len(prep.vx)),
                "seed": int(s.seed),
                "seconds": time.perf_counter() - state.t_start,
            },
        }
    )
    if instance_cfg is not None:
        config["instances"] = instance_cfg
        config["training"]["ignore_index"] = None
        config["training"]["unlabelled"] = s.unlabelled
        config["training"]["background"] = s.background
        config["training"]["contact_weight"] = float(s.contact_weight)
    model = UNetModel(config, best, state.history)
    model.device_used = describe_device(setup.dev)
    return model
