"""Training a network on images with class masks (:func:`train_unet`)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._device import avoid_triton_crash, describe_device, select_device
from .._validation import SEMAnalysisError, check_labels, is_rgb
from .losses import _IGNORE, _class_weights, _dice_ce_loss, _iou_from_confusion
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

    Returns
    -------
    UNetModel
    """
    avoid_triton_crash()  # torch.optim imports torch._dynamo (and triton, when allowed)
    import torch

    # ---- inputs --------------------------------------------------------
    if isinstance(images, np.ndarray) and (images.ndim == 2 or is_rgb(images)):
        images = [images]
    if isinstance(masks, np.ndarray) and masks.ndim == 2:
        masks = [masks]
    images = [_as_2d(im, f"images[{i}]") for i, im in enumerate(images)]
    masks = [check_labels(m, name=f"masks[{i}]") for i, m in enumerate(masks)]
    if not images:
        raise SEMAnalysisError("no training images given")
    if len(images) != len(masks):
        raise SEMAnalysisError(f"{len(images)} images but {len(masks)} masks")
    for i, (im, m) in enumerate(zip(images, masks)):
        if im.shape != m.shape:
            raise SEMAnalysisError(f"image {i} has shape {im.shape} but its mask has shape {m.shape}")
    val_images = val_masks = None
    if validation is not None:
        vi, vm = validation
        if isinstance(vi, np.ndarray) and (vi.ndim == 2 or is_rgb(vi)):
            vi, vm = [vi], [vm]
        val_images = [_as_2d(im, f"validation image {i}") for i, im in enumerate(vi)]
        val_masks = [check_labels(m, name=f"validation mask {i}") for i, m in enumerate(vm)]
        if len(val_images) != len(val_masks) or any(a.shape != b.shape for a, b in zip(val_images, val_masks)):
            raise SEMAnalysisError("validation images and masks must pair up with equal shapes")

    if task not in ("semantic", "instances"):
        raise SEMAnalysisError(f"task must be 'semantic' or 'instances', got {task!r}")
    instance_cfg = None
    if task == "instances":
        from .instances import CLASS_NAMES, TARGET_IGNORE, instance_training_masks

        if ignore_index is not None:
            raise SEMAnalysisError("with task='instances' mark unannotated pixels with unlabelled=, not ignore_index=")
        if n_classes not in (None, 3):
            raise SEMAnalysisError("an instance model has 3 classes (background, interior, boundary)")
        masks, instance_cfg = instance_training_masks(
            masks, boundary_width=boundary_width, unlabelled=unlabelled, background=background, regions=regions
        )
        if val_masks is not None:
            val_masks, _ = instance_training_masks(
                val_masks, boundary_width=boundary_width, unlabelled=unlabelled, background=background
            )
        ignore_index, n_classes, class_names = TARGET_IGNORE, 3, list(CLASS_NAMES)
    elif unlabelled is not None or background is not None or regions is not None:
        raise SEMAnalysisError("unlabelled, background and regions are for task='instances' (else use ignore_index)")

    def valid_values(m):
        return m[m != ignore_index] if ignore_index is not None else m

    max_id = max(int(valid_values(m).max()) if valid_values(m).size else 0 for m in masks)
    if n_classes is None:
        n_classes = max(2, max_id + 1)
    n_classes = int(n_classes)
    if n_classes < 2:
        raise SEMAnalysisError(f"n_classes must be at least 2, got {n_classes}")
    if max_id >= n_classes:
        raise SEMAnalysisError(f"masks contain class id {max_id} but n_classes is {n_classes}")
    if class_names is None:
        class_names = [f"class {i}" for i in range(n_classes)]
    class_names = [str(c) for c in class_names]
    if len(class_names) != n_classes:
        raise SEMAnalysisError(f"{len(class_names)} class names for {n_classes} classes")
    architecture = _normalise_arch(architecture)
    _check_encoder(encoder)
    encoder_depth = int(encoder_depth)
    if not 3 <= encoder_depth <= 5:
        raise SEMAnalysisError(f"encoder_depth must be 3, 4 or 5, got {encoder_depth}")
    if decoder_channels is None:
        decoder_channels = _DEFAULT_DECODER[5 - encoder_depth :]
    decoder_channels = [int(c) for c in decoder_channels]
    if len(decoder_channels) != encoder_depth:
        raise SEMAnalysisError(f"decoder_channels needs {encoder_depth} values, got {len(decoder_channels)}")
    epochs = int(epochs)
    batch_size = int(batch_size)
    if epochs < 1 or batch_size < 1:
        raise SEMAnalysisError("epochs and batch_size must be at least 1")
    if not 0 <= float(val_fraction) < 1:
        raise SEMAnalysisError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if not 0 <= float(class_balance) <= 1:
        raise SEMAnalysisError(f"class_balance must be in [0, 1], got {class_balance}")
    scale_range = tuple(float(v) for v in scale_range)
    if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
        raise SEMAnalysisError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
    if monitor not in ("val_loss", "mean_iou"):
        raise SEMAnalysisError(f"monitor must be 'val_loss' or 'mean_iou', got {monitor!r}")
    if normalization not in ("percentile", "global"):
        raise SEMAnalysisError(f"normalization must be 'percentile' or 'global', got {normalization!r}")
    if pixel_size is not None:
        pixel_size = float(pixel_size)
    config: dict[str, Any] = {
        "architecture": architecture,
        "encoder": encoder,
        "encoder_depth": encoder_depth,
        "decoder_channels": decoder_channels,
        "n_classes": n_classes,
        "class_names": class_names,
        "pixel_size": pixel_size,
    }
    div = _divisor(config)
    patch_size = int(patch_size)
    if patch_size < div or patch_size % div:
        raise SEMAnalysisError(f"patch_size must be a positive multiple of {div}, got {patch_size}")

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    dev = select_device(device)
    dev_name = describe_device(dev)

    # ---- normalisation (stored in the model) -----------------------------
    lo_p, hi_p = float(percentiles[0]), float(percentiles[1])
    if not 0 <= lo_p < hi_p <= 100:
        raise SEMAnalysisError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    if normalization == "percentile":
        norm: dict[str, Any] = {"method": "percentile", "low_percentile": lo_p, "high_percentile": hi_p}
    else:
        sample = np.concatenate([im.reshape(-1)[:: max(1, im.size // 500_000)] for im in images])
        lo, hi = _percentiles(sample, lo_p, hi_p)
        norm = {"method": "global", "low": lo, "high": hi, "low_percentile": lo_p, "high_percentile": hi_p}
    norm["mean"], norm["std"] = 0.0, 1.0

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
            if ignore_index is not None:
                t[m == ignore_index] = _IGNORE
            out.append(t)
        return out

    unit_images, targets = to_unit(images), to_target(masks)
    if val_images is not None:
        tr_x, tr_y = unit_images, targets
        va_x, va_y = to_unit(val_images), to_target(val_masks)
    else:
        tr_x, tr_y, va_x, va_y = _split_validation(unit_images, targets, float(val_fraction), rng, patch_size)
    vals = np.concatenate([x.reshape(-1)[:: max(1, x.size // 200_000)] for x in tr_x])
    norm["mean"] = float(vals.mean())
    norm["std"] = float(max(vals.std(), 1e-3))
    config["normalization"] = norm
    tr_x = [(x - norm["mean"]) / norm["std"] for x in tr_x]
    va_x = [(x - norm["mean"]) / norm["std"] for x in va_x]
    # brightness/contrast augmentation is applied in standardised units
    weights = _class_weights(class_weights, tr_y, n_classes)
    ce_weight = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=dev)
    sampler = _PatchSampler(tr_x, tr_y, n_classes, patch_size, rng, augment, float(class_balance), tuple(scale_range))
    vx, vy = _val_tiles(va_x, va_y, patch_size, int(max_val_tiles), rng) if va_x else (None, None)
    has_val = vx is not None

    if steps_per_epoch is None:
        px = sum(x.size for x in tr_x)
        steps_per_epoch = int(np.clip(math.ceil(2 * px / (patch_size**2 * batch_size)), 10, 200))
    steps_per_epoch = int(steps_per_epoch)

    # ---- network ---------------------------------------------------------
    net = _build_network(config)
    if encoder_weights is not None:
        _load_encoder_weights(net, encoder_weights)
        config["encoder_weights"] = Path(encoder_weights).name
    else:
        config["encoder_weights"] = None
    net.to(dev)
    channels_last = dev.type == "cuda"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    use_amp = bool(amp) and dev.type == "cuda"
    amp_dtype = _amp_dtype(dev) if use_amp else None
    scaler = torch.amp.GradScaler("cuda") if (use_amp and amp_dtype == torch.float16) else None
    opt = torch.optim.AdamW(net.parameters(), lr=float(learning_rate), weight_decay=float(weight_decay))
    total_steps = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps))
    )

    def to_dev(x, y=None):
        xt = torch.from_numpy(x)[:, None].to(dev, non_blocking=True)
        if channels_last:
            xt = xt.contiguous(memory_format=torch.channels_last)
        yt = torch.from_numpy(y).to(dev, non_blocking=True) if y is not None else None
        return xt, yt

    def forward(xt):
        if use_amp:
            with torch.autocast(device_type="cuda", dtype=amp_dtype):
                return net(xt)
        return net(xt)

    def evaluate():
        net.eval()
        cm = np.zeros((n_classes, n_classes), dtype=np.int64)
        loss_sum, n = 0.0, 0
        with torch.inference_mode():
            for b in range(0, len(vx), batch_size):
                xt, yt = to_dev(vx[b : b + batch_size], vy[b : b + batch_size])
                logits = forward(xt).float()
                loss_sum += float(_dice_ce_loss(logits, yt, n_classes, dice_weight, ce_weight)) * len(xt)
                n += len(xt)
                pred = logits.argmax(1)
                valid = yt != _IGNORE
                idx = (yt[valid] * n_classes + pred[valid]).cpu().numpy()
                cm += np.bincount(idx, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
        net.train()
        return loss_sum / max(n, 1), _iou_from_confusion(cm)

    # ---- loop ------------------------------------------------------------
    history: list[dict] = []
    best_score, best_state, best_epoch = None, None, None
    since_best = 0
    stopped = False
    t_start = time.perf_counter()
    step_global = 0
    net.train()
    for epoch in range(1, epochs + 1):
        t_epoch = time.perf_counter()
        losses = []
        for step in range(1, steps_per_epoch + 1):
            batch = [sampler.sample() for _ in range(batch_size)]
            xb = np.stack([b[0] for b in batch])
            yb = np.stack([b[1] for b in batch])
            xt, yt = to_dev(xb, yb)
            opt.zero_grad(set_to_none=True)
            logits = forward(xt)
            loss = _dice_ce_loss(logits.float(), yt, n_classes, dice_weight, ce_weight)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            sched.step()
            step_global += 1
            losses.append(float(loss.detach()))
            if callback is not None:
                elapsed = time.perf_counter() - t_start
                info = {
                    "stage": "step",
                    "epoch": epoch,
                    "epochs": epochs,
                    "step": step,
                    "steps": steps_per_epoch,
                    "loss": losses[-1],
                    "progress": step_global / total_steps,
                    "eta_s": elapsed / step_global * (total_steps - step_global),
                    "device": dev_name,
                }
                if callback(info):
                    stopped = True
                    break
        if not losses or (stopped and len(losses) < steps_per_epoch and best_state is not None):
            break  # a partial epoch after a stop request is not evaluated
        entry: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": float(np.mean(losses)),
            "lr": float(opt.param_groups[0]["lr"]),
        }
        if has_val:
            vloss, iou = evaluate()
            entry["val_loss"] = vloss
            entry["iou"] = [None if not np.isfinite(v) else float(v) for v in iou]
            entry["mean_iou"] = float(np.nanmean(iou)) if np.any(np.isfinite(iou)) else None
        else:
            entry["val_loss"] = None
            entry["iou"] = None
            entry["mean_iou"] = None
        entry["seconds"] = time.perf_counter() - t_epoch
        history.append(entry)
        if not has_val:
            score = entry["train_loss"]
        elif monitor == "mean_iou":
            score = -(entry["mean_iou"] if entry["mean_iou"] is not None else 0.0)
        else:
            score = entry["val_loss"]
        if best_score is None or score < best_score - 1e-6:
            best_score, best_epoch, since_best = score, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
        else:
            since_best += 1
        if callback is not None and not stopped:
            elapsed = time.perf_counter() - t_start
            info = {
                "stage": "epoch",
                "epoch": epoch,
                "epochs": epochs,
                "step": steps_per_epoch,
                "steps": steps_per_epoch,
                "loss": entry["train_loss"],
                "history": [dict(h) for h in history],
                "best_epoch": best_epoch,
                "progress": step_global / total_steps,
                "eta_s": elapsed / step_global * (total_steps - step_global),
                "device": dev_name,
            }
            if callback(info):
                stopped = True
        if stopped:
            break
        if patience is not None and since_best >= int(patience):
            stopped = True
            break

    if best_state is None:
        best_state = {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
    config.update(
        {
            "task": task,
            "best_epoch": best_epoch,
            "stopped_early": bool(stopped or len(history) < epochs),
            "monitor": monitor if has_val else "train_loss",
            "device_used": describe_device(dev),
            "training": {
                "patch_size": patch_size,
                "epochs": epochs,
                "batch_size": batch_size,
                "steps_per_epoch": steps_per_epoch,
                "learning_rate": float(learning_rate),
                "augment": bool(augment),
                "dice_weight": float(dice_weight),
                "class_balance": float(class_balance),
                "class_weights": weights,
                "ignore_index": ignore_index,
                "n_train_images": len(tr_x),
                "n_val_tiles": 0 if vx is None else len(vx),
                "seed": int(seed),
                "seconds": time.perf_counter() - t_start,
            },
        }
    )
    if instance_cfg is not None:
        config["instances"] = instance_cfg
        config["training"]["ignore_index"] = None
        config["training"]["unlabelled"] = unlabelled
        config["training"]["background"] = background
    model = UNetModel(config, best_state, history)
    model.device_used = describe_device(dev)
    return model
