"""Network construction: architectures, encoders, input-size divisor, mixed precision and local encoder weights."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .._device import avoid_triton_crash
from .._validation import SEMAnalysisError

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
#: an encoder is named by a plain registry name: no ``hf-hub:``, no ``org/name``, no URL, no path
_ENCODER_NAME = re.compile(r"(tu-)?[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}")
#: the largest network a model file may describe (parameters); checked on the meta device
MAX_PARAMETERS = 300_000_000
MAX_DECODER_CHANNELS = 2048
MAX_CLASSES = 1000


def _normalise_arch(architecture: str) -> str:
    key = str(architecture).strip().lower().replace("_", "").replace("-", "").replace(" ", "")
    key = _ARCH_ALIASES.get(key, key)
    if key not in ARCHITECTURES:
        raise SEMAnalysisError(f"unknown architecture {architecture!r}; choose one of {list(ARCHITECTURES)}")
    return key


def _check_encoder(encoder: str) -> None:
    """Allow only encoders built locally: smp's registry, or ``tu-<name>`` of timm's local registry.

    Names that would make timm or the Hugging Face hub fetch a configuration (``tu-hf-hub:org/name``,
    URLs, paths) are refused before timm is called, so neither training nor loading a model file
    ever opens a network connection.
    """
    hint = (
        "e.g. 'resnet18', 'resnet34', 'resnet50', 'efficientnet-b0', 'mobilenet_v2' "
        "or a timm encoder as 'tu-<name>' (built locally, never downloaded)"
    )
    if not isinstance(encoder, str) or not _ENCODER_NAME.fullmatch(encoder):
        raise SEMAnalysisError(f"unknown encoder {str(encoder)[:100]!r}: not a local encoder name; {hint}")
    avoid_triton_crash()  # smp -> timm -> torch._dynamo -> triton: crashes next to Mesa's LLVM
    if encoder.startswith("tu-"):
        import timm

        if not timm.is_model(encoder[3:]):  # the local registry only
            raise SEMAnalysisError(f"unknown encoder {encoder!r}: timm has no model {encoder[3:]!r}; {hint}")
        return
    import segmentation_models_pytorch as smp

    if encoder not in smp.encoders.encoders:
        raise SEMAnalysisError(f"unknown encoder {encoder!r}; {hint}")


def _check_config(config, name: str = "model") -> dict:
    """Check a U-Net configuration read from a file: allowed names, bounded sizes, right types.

    Everything that decides how much memory the network takes is bounded here, before anything
    is built.
    """
    if not isinstance(config, dict):
        raise SEMAnalysisError(f"{name}: the model configuration is not a mapping")
    for key in ("architecture", "encoder", "n_classes", "class_names", "normalization"):
        if key not in config:
            raise SEMAnalysisError(f"{name}: the model configuration lacks {key!r}")
    if config["architecture"] not in ARCHITECTURES:
        raise SEMAnalysisError(f"{name}: unknown architecture {str(config['architecture'])[:100]!r}")
    try:
        _check_encoder(config["encoder"])
    except SEMAnalysisError as exc:
        raise SEMAnalysisError(f"{name}: {exc}") from None

    def bounded_int(key, lo, hi, default=None):
        value = config.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise SEMAnalysisError(f"{name}: {key} must be an integer in {lo}..{hi}, got {str(value)[:100]!r}")
        return value

    n_classes = bounded_int("n_classes", 1, MAX_CLASSES)
    names = config["class_names"]
    if not isinstance(names, list) or not all(isinstance(c, str) and len(c) <= 1000 for c in names):
        raise SEMAnalysisError(f"{name}: class_names must be a list of strings")
    if len(names) != n_classes:
        raise SEMAnalysisError(f"{name}: {len(names)} class names for {n_classes} classes")
    depth = bounded_int("encoder_depth", 1, 5, 5)
    if config["architecture"] in _UNET_LIKE:
        channels = config.get("decoder_channels")
        if (
            not isinstance(channels, list)
            or len(channels) != depth
            or not all(
                isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= MAX_DECODER_CHANNELS for c in channels
            )
        ):
            raise SEMAnalysisError(
                f"{name}: decoder_channels must be {depth} integers in 1..{MAX_DECODER_CHANNELS}, "
                f"got {str(channels)[:100]}"
            )
    if not isinstance(config["normalization"], dict):
        raise SEMAnalysisError(f"{name}: normalization must be a mapping")
    px = config.get("pixel_size")
    if px is not None and (isinstance(px, bool) or not isinstance(px, (int, float)) or not 0 < px < 1e9):
        raise SEMAnalysisError(f"{name}: pixel_size must be a positive number of nm or null")
    return config


def _network_kwargs(config: dict) -> dict[str, Any]:
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
    return kwargs


def _expected_shapes(config: dict) -> dict[str, tuple]:
    """Parameter shapes of the network ``config`` describes, built on torch's meta device (no memory)."""
    import torch

    avoid_triton_crash()
    import segmentation_models_pytorch as smp

    cls = getattr(smp, ARCHITECTURES[config["architecture"]])
    try:
        with torch.device("meta"):
            net = cls(**_network_kwargs(config))
    except Exception as exc:  # noqa: BLE001 - smp raises assorted errors for bad combinations
        raise SEMAnalysisError(
            f"cannot build {config['architecture']} with encoder {config['encoder']!r}: {exc}"
        ) from exc
    n_params = sum(p.numel() for p in net.parameters())
    if n_params > MAX_PARAMETERS:
        raise SEMAnalysisError(
            f"the {config['architecture']}/{config['encoder']} network would have {n_params:,} parameters, "
            f"more than the limit of {MAX_PARAMETERS:,}"
        )
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _build_network(config: dict):
    avoid_triton_crash()
    import segmentation_models_pytorch as smp

    cls = getattr(smp, ARCHITECTURES[config["architecture"]])
    kwargs = _network_kwargs(config)
    depth = kwargs.get("encoder_depth", 5)
    try:
        return cls(**kwargs)
    except Exception as exc:  # smp raises assorted errors for bad combinations
        raise SEMAnalysisError(
            f"cannot build {config['architecture']} with encoder {config['encoder']!r} (depth {depth}): {exc}"
        ) from exc


def _divisor(config: dict) -> int:
    """Tile/patch sizes must be multiples of this."""
    if config["architecture"] in _UNET_LIKE or config["architecture"] == "linknet":
        return 2 ** int(config.get("encoder_depth", 5))
    return 32


def _amp_dtype(device):
    import torch

    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


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
