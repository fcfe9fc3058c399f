"""Network construction: architectures, encoders, input-size divisor, mixed precision and local encoder weights."""

from __future__ import annotations

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
