"""U-Net semantic segmentation: training, tiled inference and safe model files.

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

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ._device import avoid_triton_crash, describe_device, select_device
from ._validation import SEMAnalysisError, check_image, check_labels, is_rgb, to_grayscale

__all__ = [
    "train_unet",
    "UNetModel",
    "load_model",
    "predict_unet",
    "select_device",
    "ARCHITECTURES",
]

FORMAT_NAME = "napari-sem-analysis/unet"
FORMAT_VERSION = 1
_CONFIG_KEY = "napari_sem_analysis_unet_config"
_IGNORE = -100  # target value ignored by the losses and metrics

#: architecture names -> smp class names
ARCHITECTURES = {
    "unet": "Unet",
    "unet++": "UnetPlusPlus",
    "manet": "MAnet",
    "linknet": "Linknet",
    "fpn": "FPN",
    "pspnet": "PSPNet",
    "deeplabv3": "DeepLabV3",
    "deeplabv3+": "DeepLabV3Plus",
    "pan": "PAN",
    "upernet": "UPerNet",
    "segformer": "Segformer",
}
_ARCH_ALIASES = {"unetplusplus": "unet++", "unetpp": "unet++", "deeplabv3plus": "deeplabv3+"}
_UNET_LIKE = ("unet", "unet++", "manet")

_DEFAULT_DECODER = (256, 128, 64, 32, 16)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _as_2d(image, name: str) -> np.ndarray:
    arr = np.asarray(image)
    if is_rgb(arr):
        arr = to_grayscale(arr)
    return check_image(arr, name=name, ndim=(2,))


def _normalise_arch(architecture: str) -> str:
    key = str(architecture).strip().lower().replace("_", "").replace("-", "").replace(" ", "")
    key = _ARCH_ALIASES.get(key, key)
    if key not in ARCHITECTURES:
        raise SEMAnalysisError(f"unknown architecture {architecture!r}; choose one of {list(ARCHITECTURES)}")
    return key


def _check_encoder(encoder: str) -> None:
    avoid_triton_crash()  # smp -> timm -> torch._dynamo -> triton: crashes next to Mesa's LLVM
    import segmentation_models_pytorch as smp

    if encoder.startswith("tu-"):
        return
    if encoder not in smp.encoders.encoders:
        raise SEMAnalysisError(
            f"unknown encoder {encoder!r}; e.g. 'resnet18', 'resnet34', 'resnet50', "
            "'efficientnet-b0', 'mobilenet_v2' or a timm encoder as 'tu-<name>'"
        )


def _build_network(config: dict):
    avoid_triton_crash()
    import segmentation_models_pytorch as smp

    cls = getattr(smp, ARCHITECTURES[config["architecture"]])
    kwargs: dict[str, Any] = dict(
        encoder_name=config["encoder"],
        encoder_weights=None,
        in_channels=1,
        classes=int(config["n_classes"]),
    )
    depth = int(config.get("encoder_depth", 5))
    if config["architecture"] in _UNET_LIKE:
        kwargs["encoder_depth"] = depth
        kwargs["decoder_channels"] = tuple(config["decoder_channels"])
    elif depth != 5:
        kwargs["encoder_depth"] = depth
    try:
        return cls(**kwargs)
    except Exception as exc:  # smp raises assorted errors for bad combinations
        raise SEMAnalysisError(
            f"cannot build {config['architecture']} with encoder {config['encoder']!r} "
            f"(depth {depth}): {exc}"
        ) from exc


def _divisor(config: dict) -> int:
    """Tile/patch sizes must be multiples of this."""
    if config["architecture"] in _UNET_LIKE or config["architecture"] == "linknet":
        return 2 ** int(config.get("encoder_depth", 5))
    return 32


def _percentiles(image: np.ndarray, low: float, high: float, max_samples: int = 2_000_000):
    flat = image.reshape(-1)
    if flat.size > max_samples:
        step = int(math.ceil(flat.size / max_samples))
        flat = flat[::step]
    lo, hi = np.percentile(flat, [low, high])
    lo, hi = float(lo), float(hi)
    if not hi > lo:
        lo, hi = float(flat.min()), float(flat.max())
        if not hi > lo:
            hi = lo + 1.0
    return lo, hi


def _image_range(image: np.ndarray, norm: dict) -> tuple[float, float]:
    """The (low, high) intensity range that maps ``image`` to [0, 1]."""
    if norm["method"] == "percentile":
        return _percentiles(image, norm["low_percentile"], norm["high_percentile"])
    return float(norm["low"]), float(norm["high"])


def _normalise(image: np.ndarray, lo: float, hi: float, norm: dict) -> np.ndarray:
    out = (image.astype(np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(out, -1.0, 2.0, out=out)
    out -= np.float32(norm["mean"])
    out *= np.float32(1.0 / norm["std"])
    return out


def _amp_dtype(device):
    import torch

    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _json_clean(value):
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _json_clean(value.item())
    return value


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Evenly spaced tile origins covering ``length`` with at least ``overlap`` between tiles."""
    if length <= tile:
        return [0]
    n = int(math.ceil((length - overlap) / (tile - overlap)))
    return [int(round(v)) for v in np.linspace(0, length - tile, max(n, 2))]


def _ramp(n: int, overlap: int, lead: bool, trail: bool) -> np.ndarray:
    """1-D blending weight: cosine ramps over ``overlap`` pixels on sides with neighbours."""
    w = np.ones(n, dtype=np.float32)
    r = min(overlap, n // 2)
    if r > 0:
        ramp = 0.5 * (1.0 - np.cos(np.pi * (np.arange(r) + 0.5) / r))
        if lead:
            w[:r] = ramp
        if trail:
            w[n - r :] = ramp[::-1]
    return w


# --------------------------------------------------------------------------
# model object
# --------------------------------------------------------------------------


class UNetModel:
    """A trained segmentation network with everything needed to apply it.

    Create one with :func:`train_unet` or :func:`load_model`.

    Attributes
    ----------
    config : dict
        Architecture, encoder, number and names of classes, normalisation,
        pixel size trained at (nm or None) and training settings.
    history : list of dict
        One entry per epoch: ``epoch``, ``train_loss``, ``val_loss``,
        ``iou`` (per class), ``mean_iou``, ``lr``, ``seconds``.
    class_names : list of str
    n_classes : int
    pixel_size : float or None
        Pixel size (nm) of the training images, when known.
    best_epoch : int or None
        Epoch whose weights were kept (1-based).
    stopped_early : bool
        True when training ended before ``epochs`` (early stopping or a
        callback asking to stop).
    device_used : str or None
        Device of the last training or prediction run, e.g. ``"cpu"`` or
        ``"cuda (NVIDIA H100)"``.
    path : str or None
        File the model was saved to or loaded from.
    """

    def __init__(self, config: dict, state_dict: dict, history: list | None = None):
        self.config = dict(config)
        self.state_dict = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        self.history = list(history or [])
        self.device_used: str | None = config.get("device_used")
        self.path: str | None = None
        self._nets: dict = {}

    # -- properties ------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return int(self.config["n_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    @property
    def architecture(self) -> str:
        return self.config["architecture"]

    @property
    def encoder(self) -> str:
        return self.config["encoder"]

    @property
    def pixel_size(self) -> float | None:
        return self.config.get("pixel_size")

    @property
    def normalization(self) -> dict:
        return dict(self.config["normalization"])

    @property
    def best_epoch(self) -> int | None:
        return self.config.get("best_epoch")

    @property
    def stopped_early(self) -> bool:
        return bool(self.config.get("stopped_early", False))

    def __repr__(self) -> str:
        return (
            f"UNetModel(architecture={self.architecture!r}, encoder={self.encoder!r}, "
            f"classes={self.class_names}, pixel_size={self.pixel_size}, "
            f"epochs_trained={len(self.history)}, best_epoch={self.best_epoch})"
        )

    # -- network ---------------------------------------------------------
    def network(self, device="cpu"):
        """The torch module (eval mode) on ``device``; cached per device."""
        import torch

        dev = select_device(device)
        key = str(dev)
        net = self._nets.get(key)
        if net is None:
            net = _build_network(self.config)
            try:
                net.load_state_dict(self.state_dict, strict=True)
            except RuntimeError as exc:
                raise SEMAnalysisError(
                    f"the stored weights do not match the {self.architecture}/{self.encoder} network: "
                    f"{str(exc).splitlines()[0]}"
                ) from exc
            net.eval().to(dev)
            if dev.type == "cuda":
                net = net.to(memory_format=torch.channels_last)
            self._nets[key] = net
        return net

    # -- prediction ------------------------------------------------------
    def predict(
        self,
        image,
        *,
        tile_size: int | None = 512,
        overlap: int = 64,
        batch_size: int = 4,
        device="auto",
        return_probabilities: bool = False,
        callback: Callable[[dict], Any] | None = None,
        amp: bool = True,
    ):
        """Segment ``image`` into class labels.

        The image is cut into overlapping tiles that are blended with
        cosine weights, so that seams do not show and memory is bounded by
        the tile batch: only one row of tiles is held in memory (unless
        ``return_probabilities``), so very large images work on a CPU.

        Parameters
        ----------
        image : (Y, X) array, or a 3-D stack of such planes
            Any numeric dtype; colour images with equal channels are taken
            as grayscale. Normalised exactly as during training.
        tile_size : int or None
            Tile edge in pixels (rounded up to what the network needs).
            None segments the whole image in one forward pass.
        overlap : int
            Overlap between neighbouring tiles in pixels.
        batch_size : int
            Tiles per forward pass.
        device : str
            "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "mps".
        return_probabilities : bool
            Also return the (C, Y, X) float32 class probabilities.
        callback : callable, optional
            Called as ``callback(info)`` after each batch of tiles with
            ``info = {"stage": "predict", "done": i, "total": n,
            "progress": i / n}``. Returning True cancels: ``predict``
            then returns None.
        amp : bool
            Use mixed precision on CUDA.

        Returns
        -------
        labels : ndarray of uint8 (int32 for more than 255 classes)
            Same shape as ``image``.
        probabilities : (C, Y, X) float32 ndarray
            Only when ``return_probabilities`` is True; for a stack
            (Z, C, Y, X).
        """
        arr = np.asarray(image)
        if arr.ndim == 3 and not is_rgb(arr):
            labels, probs = [], []
            for i, plane in enumerate(arr):

                def plane_cb(info, i=i):
                    if callback is None:
                        return None
                    info = dict(info, plane=i, planes=len(arr))
                    info["progress"] = (i + info["progress"]) / len(arr)
                    return callback(info)

                res = self.predict(
                    plane,
                    tile_size=tile_size,
                    overlap=overlap,
                    batch_size=batch_size,
                    device=device,
                    return_probabilities=return_probabilities,
                    callback=plane_cb,
                    amp=amp,
                )
                if res is None:
                    return None
                if return_probabilities:
                    labels.append(res[0])
                    probs.append(res[1])
                else:
                    labels.append(res)
            if return_probabilities:
                return np.stack(labels), np.stack(probs)
            return np.stack(labels)
        img = _as_2d(arr, "image")
        return self._predict_2d(
            img,
            tile_size=tile_size,
            overlap=overlap,
            batch_size=batch_size,
            device=device,
            return_probabilities=return_probabilities,
            callback=callback,
            amp=amp,
        )

    def _predict_2d(self, img, *, tile_size, overlap, batch_size, device, return_probabilities, callback, amp):
        import torch

        batch_size = int(batch_size)
        if batch_size < 1:
            raise SEMAnalysisError(f"batch_size must be >= 1, got {batch_size}")
        overlap = int(overlap)
        if overlap < 0:
            raise SEMAnalysisError(f"overlap must be >= 0, got {overlap}")
        dev = select_device(device)
        net = self.network(dev)
        self.device_used = describe_device(dev)
        div = _divisor(self.config)
        H, W = img.shape
        C = self.n_classes

        def round_up(n):
            return int(math.ceil(n / div) * div)

        if tile_size is None:
            th, tw = round_up(H), round_up(W)
        else:
            tile_size = int(tile_size)
            if tile_size < div:
                raise SEMAnalysisError(f"tile_size must be at least {div} pixels, got {tile_size}")
            t = round_up(tile_size)
            th, tw = min(t, round_up(H)), min(t, round_up(W))
            if overlap >= min(th, tw) and (H > th or W > tw):
                raise SEMAnalysisError(
                    f"overlap ({overlap}) must be smaller than the tile size ({min(th, tw)})"
                )
        # images smaller than a tile are reflect-padded (and cropped back)
        pad_y, pad_x = max(0, th - H), max(0, tw - W)
        norm = self.config["normalization"]
        lo, hi = _image_range(img, norm)
        if pad_y or pad_x:
            mode = "reflect" if (pad_y < H and pad_x < W) else "symmetric"
            img = np.pad(img, ((0, pad_y), (0, pad_x)), mode=mode)
        Hp, Wp = img.shape
        ys = _tile_starts(Hp, th, overlap)
        xs = _tile_starts(Wp, tw, overlap)
        n_tiles = len(ys) * len(xs)
        wy = {y: _ramp(th, overlap, y > 0, y + th < Hp) for y in ys}
        wx = {x: _ramp(tw, overlap, x > 0, x + tw < Wp) for x in xs}

        out_dtype = np.uint8 if C <= 256 else np.int32
        labels = np.empty((H, W), dtype=out_dtype)
        probs_out = np.zeros((C, H, W), dtype=np.float32) if return_probabilities else None

        use_amp = bool(amp) and dev.type == "cuda"
        amp_dtype = _amp_dtype(dev) if use_amp else None
        channels_last = dev.type == "cuda"
        mean, std = float(norm["mean"]), float(norm["std"])
        scale = 1.0 / (hi - lo)

        # rolling accumulator over one band of tile rows (on the device)
        acc = torch.zeros((C, th, Wp), dtype=torch.float32, device=dev)
        wsum = torch.zeros((th, Wp), dtype=torch.float32, device=dev)
        origin = 0  # image row of acc[:, 0]

        def finalize(stop):
            nonlocal origin
            stop = min(stop, H)
            if stop <= origin:
                return
            n = stop - origin
            part = acc[:, :n, :W]
            labels[origin:stop] = part.argmax(0).to(torch.int32 if C > 256 else torch.uint8).cpu().numpy()
            if probs_out is not None:
                probs_out[:, origin:stop] = (part / wsum[:n, :W].clamp_min(1e-12)).cpu().numpy()

        def shift_to(y0):
            nonlocal origin
            d = y0 - origin
            if d <= 0:
                return
            finalize(y0)
            if d >= th:
                acc.zero_()
                wsum.zero_()
            else:
                acc[:, : th - d] = acc[:, d:].clone()
                acc[:, th - d :] = 0
                wsum[: th - d] = wsum[d:].clone()
                wsum[th - d :] = 0
            origin = y0

        wy_t = {y: torch.from_numpy(w).to(dev) for y, w in wy.items()}
        wx_t = {x: torch.from_numpy(w).to(dev) for x, w in wx.items()}
        done = 0
        with torch.inference_mode():
            for y0 in ys:
                shift_to(y0)
                band = torch.from_numpy(np.ascontiguousarray(img[y0 : y0 + th])).to(dev, non_blocking=True)
                band = band.to(torch.float32)
                band = ((band - lo) * scale).clamp_(-1.0, 2.0).sub_(mean).mul_(1.0 / std)
                wyt = wy_t[y0]
                for b0 in range(0, len(xs), batch_size):
                    bxs = xs[b0 : b0 + batch_size]
                    batch = torch.stack([band[:, x0 : x0 + tw] for x0 in bxs])[:, None]
                    if channels_last:
                        batch = batch.contiguous(memory_format=torch.channels_last)
                    if use_amp:
                        with torch.autocast(device_type="cuda", dtype=amp_dtype):
                            logits = net(batch)
                    else:
                        logits = net(batch)
                    prob = torch.softmax(logits.float(), dim=1)
                    for k, x0 in enumerate(bxs):
                        w = wyt[:, None] * wx_t[x0][None, :]
                        acc[:, :, x0 : x0 + tw] += prob[k] * w
                        wsum[:, x0 : x0 + tw] += w
                    done += len(bxs)
                    if callback is not None:
                        info = {"stage": "predict", "done": done, "total": n_tiles, "progress": done / n_tiles}
                        if callback(info):
                            return None
            finalize(H)
        if return_probabilities:
            return labels, probs_out
        return labels

    # -- files -----------------------------------------------------------
    def save(self, path) -> str:
        """Save to one ``safetensors`` file (weights + JSON configuration and history).

        Returns the path written. The suffix ``.safetensors`` is added when
        the path has no suffix.
        """
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".safetensors")
        config = _json_clean(dict(self.config))
        meta = {
            "format": FORMAT_NAME,
            "format_version": str(FORMAT_VERSION),
            _CONFIG_KEY: json.dumps(config),
            "history": json.dumps(_json_clean(self.history)),
        }
        tensors = {k: v.contiguous() for k, v in self.state_dict.items()}
        try:
            save_file(tensors, str(path), metadata=meta)
        except OSError as exc:
            raise SEMAnalysisError(f"cannot write model file {path}: {exc}") from exc
        self.path = str(path)
        return str(path)


# --------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------


def load_model(path) -> UNetModel:
    """Load a model saved with :meth:`UNetModel.save`.

    Only ``safetensors`` files are read: no pickle is ever unpickled, so a
    model file cannot run code. A file that is not a model of this plugin,
    a truncated file or a pickle gives a :class:`SEMAnalysisError`.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise SEMAnalysisError(f"model file {path} does not exist")
    if not path.is_file():
        raise SEMAnalysisError(f"{path} is not a file")
    with open(path, "rb") as fh:
        head = fh.read(9)
    # safetensors: an 8-byte little-endian header length, then the JSON header. The
    # length's first byte can be 0x80 (a header of 128 + 256k bytes), so a pickle is
    # only suspected when the file does not look like safetensors.
    n_header = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    looks_safetensors = len(head) == 9 and head[8:9] == b"{" and 2 <= n_header <= path.stat().st_size - 8
    if not looks_safetensors and (head[:2] == b"PK" or head[:1] == b"\x80"):
        raise SEMAnalysisError(
            f"{path.name} is a pickle/PyTorch checkpoint, not a napari-sem-analysis model file "
            "(safetensors). Pickle files are never loaded because they can execute code."
        )
    try:
        tensors = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT_NAME or _CONFIG_KEY not in meta:
                raise SEMAnalysisError(f"{path.name} is a safetensors file but not a napari-sem-analysis U-Net model")
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except SEMAnalysisError:
        raise
    except Exception as exc:  # SafetensorError, OSError, ...
        raise SEMAnalysisError(
            f"{path.name} is not a valid model file (not safetensors, or truncated/corrupt): {exc}"
        ) from exc
    try:
        version = int(meta.get("format_version", "0"))
        config = json.loads(meta[_CONFIG_KEY])
        history = json.loads(meta.get("history", "[]"))
    except (ValueError, TypeError) as exc:
        raise SEMAnalysisError(f"{path.name}: the model configuration is unreadable: {exc}") from exc
    if version > FORMAT_VERSION:
        raise SEMAnalysisError(
            f"{path.name} was written by a newer version (format {version}); update napari-sem-analysis"
        )
    for key in ("architecture", "encoder", "n_classes", "class_names", "normalization"):
        if key not in config:
            raise SEMAnalysisError(f"{path.name}: the model configuration lacks {key!r}")
    if config["architecture"] not in ARCHITECTURES:
        raise SEMAnalysisError(f"{path.name}: unknown architecture {config['architecture']!r}")
    model = UNetModel(config, tensors, history)
    model.path = str(path)
    model.network("cpu")  # checks that the weights fit the architecture
    return model


def predict_unet(image, *, model, tile_size: int | None = 512, overlap: int = 64, batch_size: int = 4, device="auto"):
    """Segment ``image`` with a U-Net model (a :class:`UNetModel` or a model file path).

    A function form of :meth:`UNetModel.predict` for recorded workflows.
    """
    if model is None:
        raise SEMAnalysisError("no U-Net model given (save the trained model to a file first)")
    if not isinstance(model, UNetModel):
        model = load_model(model)
    return model.predict(image, tile_size=tile_size, overlap=overlap, batch_size=batch_size, device=device)


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------


def _load_encoder_weights(net, path) -> int:
    """Load encoder weights from a local file (safetensors or a weights-only torch file)."""
    import torch

    if str(path).lower() in ("imagenet", "ssl", "swsl", "instagram", "advprop", "noisy-student"):
        raise SEMAnalysisError(
            f"encoder weights {str(path)!r} would have to be downloaded, which this plugin never does; "
            "give the path of a local weights file (.safetensors, or a weights-only .pth) instead"
        )
    path = Path(path)
    if not path.is_file():
        raise SEMAnalysisError(f"encoder weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SEMAnalysisError(f"cannot read encoder weights from {path.name} (safe loading only): {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise SEMAnalysisError(f"{path.name} does not hold a state dict of encoder weights")
    target = net.encoder.state_dict()
    loaded = {}
    for key, value in state.items():
        if not hasattr(value, "shape"):
            continue
        k = key
        for prefix in ("module.", "encoder.", "model."):
            if k.startswith(prefix):
                k = k[len(prefix) :]
        if k not in target and f"model.{k}" in target:
            k = f"model.{k}"  # timm universal encoders
        if k not in target:
            continue
        want = target[k].shape
        if value.shape == want:
            loaded[k] = value
        elif value.ndim == 4 and value.shape[1] == 3 and want[1] == 1 and value.shape[0] == want[0]:
            loaded[k] = value.sum(1, keepdim=True)  # RGB first conv -> 1 channel
    if not loaded:
        raise SEMAnalysisError(f"no weights in {path.name} match the {net.encoder.__class__.__name__} encoder")
    target.update(loaded)
    net.encoder.load_state_dict(target)
    return len(loaded)


def _class_weights(spec, masks, n_classes: int, max_ratio: float = 50.0) -> list[float] | None:
    """Cross-entropy class weights: None, "auto" (inverse square root of frequency) or explicit values.

    "auto" counts the classes in the training masks (ignored pixels left
    out), weights each by ``1 / sqrt(frequency)`` (absent classes get the
    largest weight), limits the largest/smallest ratio to ``max_ratio`` and
    scales the weights so that their pixel-weighted mean is 1 (the loss keeps
    its scale). Rare classes such as thin cracks (0.3 % of the pixels) are
    otherwise almost invisible to the cross-entropy term.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec.strip().lower() in ("none", ""):
            return None
        if spec.strip().lower() != "auto":
            raise SEMAnalysisError(f"class_weights must be None, 'auto' or one weight per class, got {spec!r}")
        counts = np.zeros(n_classes, dtype=np.float64)
        for m in masks:
            v = m[m != _IGNORE]  # ignored pixels left out
            counts += np.bincount(v, minlength=n_classes)[:n_classes]
        if counts.sum() == 0:
            return None
        freq = counts / counts.sum()
        present = freq > 0
        w = np.ones(n_classes)
        w[present] = 1.0 / np.sqrt(freq[present])
        w = np.minimum(w, w[present].min() * max_ratio)
        w[~present] = w[present].max()
        w /= float(np.sum(freq * w))
        return [float(v) for v in w]
    w = [float(v) for v in spec]
    if len(w) != n_classes or not all(np.isfinite(v) and v >= 0 for v in w) or not any(v > 0 for v in w):
        raise SEMAnalysisError(f"class_weights needs {n_classes} non-negative values (not all 0), got {list(spec)}")
    return w


def _dice_ce_loss(logits, target, n_classes: int, dice_weight: float, class_weights=None):
    import torch
    import torch.nn.functional as F

    ce = F.cross_entropy(logits, target, weight=class_weights, ignore_index=_IGNORE)
    if dice_weight <= 0:
        return ce
    valid = (target != _IGNORE).unsqueeze(1).float()
    prob = torch.softmax(logits, dim=1) * valid
    onehot = F.one_hot(target.clamp_min(0), n_classes).permute(0, 3, 1, 2).float() * valid
    dims = (0, 2, 3)
    inter = (prob * onehot).sum(dims)
    card = prob.sum(dims) + onehot.sum(dims)
    present = onehot.sum(dims) > 0
    dice = (2 * inter + 1.0) / (card + 1.0)
    if present.any():
        dice_loss = 1.0 - dice[present].mean()
    else:
        dice_loss = logits.sum() * 0.0
    return ce + dice_weight * dice_loss


class _PatchSampler:
    """Random augmented patches from normalised (float32) images and masks."""

    def __init__(self, images, masks, n_classes, patch, rng, augment, class_balance, scale_range):
        import cv2  # noqa: F401  (checked early)

        self.images, self.masks = images, masks
        self.patch, self.rng, self.augment = patch, rng, augment
        self.class_balance = class_balance
        self.scale_range = scale_range
        self.weights = np.array([m.size for m in masks], dtype=np.float64)
        self.weights /= self.weights.sum()
        # a few coordinates of every class in every image, for class-balanced crops
        self.coords: dict[int, list[tuple[int, np.ndarray]]] = {}
        for i, m in enumerate(masks):
            flat = m.reshape(-1)
            for c in range(n_classes):
                idx = np.flatnonzero(flat == c)
                if idx.size:
                    if idx.size > 4000:
                        idx = rng.choice(idx, 4000, replace=False)
                    self.coords.setdefault(c, []).append((i, idx))

    def _crop(self, img, msk, size, center=None):
        H, W = img.shape
        py, px = max(0, size - H), max(0, size - W)
        if py or px:
            img = np.pad(img, ((py // 2, py - py // 2), (px // 2, px - px // 2)), mode="reflect" if (py < H and px < W) else "symmetric")
            msk = np.pad(msk, ((py // 2, py - py // 2), (px // 2, px - px // 2)), constant_values=_IGNORE)
            if center is not None:
                center = (center[0] + py // 2, center[1] + px // 2)
            H, W = img.shape
        if center is None:
            y0 = int(self.rng.integers(0, H - size + 1))
            x0 = int(self.rng.integers(0, W - size + 1))
        else:
            jitter = self.rng.integers(-size // 4, size // 4 + 1, size=2)
            y0 = int(np.clip(center[0] - size // 2 + jitter[0], 0, H - size))
            x0 = int(np.clip(center[1] - size // 2 + jitter[1], 0, W - size))
        return img[y0 : y0 + size, x0 : x0 + size], msk[y0 : y0 + size, x0 : x0 + size]

    def sample(self):
        import cv2

        rng, p = self.rng, self.patch
        center = None
        if self.coords and rng.random() < self.class_balance:
            c = list(self.coords)[int(rng.integers(len(self.coords)))]
            i, idx = self.coords[c][int(rng.integers(len(self.coords[c])))]
            flat = int(idx[int(rng.integers(idx.size))])
            center = divmod(flat, self.masks[i].shape[1])
        else:
            i = int(rng.choice(len(self.images), p=self.weights))
        img, msk = self.images[i], self.masks[i]
        size = p
        if self.augment and self.scale_range != (1.0, 1.0):
            lo, hi = self.scale_range
            s = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            size = max(8, int(round(p * s)))
        a, m = self._crop(img, msk, size, center)
        if size != p:
            a = cv2.resize(a, (p, p), interpolation=cv2.INTER_LINEAR)
            m = cv2.resize(m.astype(np.int32), (p, p), interpolation=cv2.INTER_NEAREST)
        a = np.array(a, dtype=np.float32)
        m = np.array(m, dtype=np.int64)
        if self.augment:
            k = int(rng.integers(4))
            a, m = np.rot90(a, k), np.rot90(m, k)
            if rng.random() < 0.5:
                a, m = a[:, ::-1], m[:, ::-1]
            # brightness / contrast in normalised units, then noise
            a = a * np.float32(rng.uniform(0.8, 1.25)) + np.float32(rng.uniform(-0.25, 0.25))
            if rng.random() < 0.5:
                a = a + rng.normal(0.0, rng.uniform(0.0, 0.15), size=a.shape).astype(np.float32)
        return np.ascontiguousarray(a), np.ascontiguousarray(m)


def _split_validation(images, masks, val_fraction, rng, min_size):
    """Hold out whole images when there are enough, else a strip of every image."""
    n = len(images)
    if val_fraction <= 0:
        return images, masks, [], []
    n_val = int(round(n * val_fraction))
    if n >= 3 and n_val >= 1:
        order = rng.permutation(n)
        val_idx = set(order[:n_val].tolist())
        tr = [i for i in range(n) if i not in val_idx]
        return ([images[i] for i in tr], [masks[i] for i in tr],
                [images[i] for i in sorted(val_idx)], [masks[i] for i in sorted(val_idx)])
    ti, tm, vi, vm = [], [], [], []
    for img, msk in zip(images, masks):
        axis = 0 if img.shape[0] >= img.shape[1] else 1
        length = img.shape[axis]
        cut = int(round(length * (1 - val_fraction)))
        if length - cut < min_size // 2 or cut < min_size // 2:
            ti.append(img)
            tm.append(msk)
            continue
        sl_tr = (slice(0, cut), slice(None)) if axis == 0 else (slice(None), slice(0, cut))
        sl_va = (slice(cut, None), slice(None)) if axis == 0 else (slice(None), slice(cut, None))
        ti.append(img[sl_tr])
        tm.append(msk[sl_tr])
        vi.append(img[sl_va])
        vm.append(msk[sl_va])
    return ti, tm, vi, vm


def _val_tiles(images, masks, patch, max_tiles, rng):
    tiles_x, tiles_y = [], []
    for img, msk in zip(images, masks):
        H, W = img.shape
        Hp, Wp = int(math.ceil(H / patch) * patch), int(math.ceil(W / patch) * patch)
        py, px = Hp - H, Wp - W
        if py or px:
            img = np.pad(img, ((0, py), (0, px)), mode="reflect" if (py < H and px < W) else "symmetric")
            msk = np.pad(msk, ((0, py), (0, px)), constant_values=_IGNORE)
        for y in range(0, Hp, patch):
            for x in range(0, Wp, patch):
                m = msk[y : y + patch, x : x + patch]
                if np.all(m == _IGNORE):
                    continue
                tiles_x.append(img[y : y + patch, x : x + patch])
                tiles_y.append(m)
    if len(tiles_x) > max_tiles:
        keep = np.sort(rng.choice(len(tiles_x), max_tiles, replace=False))
        tiles_x = [tiles_x[i] for i in keep]
        tiles_y = [tiles_y[i] for i in keep]
    if not tiles_x:
        return None, None
    return np.stack(tiles_x).astype(np.float32), np.stack(tiles_y).astype(np.int64)


def _iou_from_confusion(cm):
    diag = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - diag
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, diag / np.maximum(union, 1), np.nan)
    return iou


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
) -> UNetModel:
    """Train a segmentation network on images with class masks.

    Parameters
    ----------
    images : list of (Y, X) arrays (or one array)
        Training images of any sizes; uint8/uint16/float. Colour images with
        equal channels are taken as grayscale.
    masks : list of (Y, X) integer arrays (or one array)
        Class ids 0..K-1 per pixel, same shapes as ``images``.
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
                "n_val_tiles": 0 if vx is None else int(len(vx)),
                "seed": int(seed),
                "seconds": time.perf_counter() - t_start,
            },
        }
    )
    model = UNetModel(config, best_state, history)
    model.device_used = describe_device(dev)
    return model
