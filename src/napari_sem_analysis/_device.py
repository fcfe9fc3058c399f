"""Compute-device selection for the PyTorch parts (U-Net, CNN classifier).

torch is imported lazily inside the function.
"""

from __future__ import annotations

from ._validation import SEMAnalysisError


def select_device(device: str | None = "auto"):
    """Return a ``torch.device``: CUDA, then Apple MPS, then CPU for ``"auto"``.

    An explicit ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"`` is honoured
    when available; asking for an unavailable device raises
    :class:`SEMAnalysisError` with a clear message.
    """
    import torch

    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SEMAnalysisError("CUDA was requested but no CUDA GPU is available; use device='cpu' or 'auto'")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise SEMAnalysisError("MPS was requested but is not available; use device='cpu' or 'auto'")
    return dev


def describe_device(device) -> str:
    """A short human-readable name for a device, e.g. ``'cuda (NVIDIA H100)'`` or ``'cpu'``."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return dev.type
