"""Compute-device selection for the PyTorch parts (U-Net, CNN classifier).

torch is imported lazily inside the function.
"""

from __future__ import annotations

import sys

from ._validation import SEMAnalysisError


def _system_llvm_loaded() -> bool:
    """True when a shared LLVM library (e.g. Mesa's llvmpipe/radeonsi backend) is mapped into this process."""
    try:
        with open("/proc/self/maps", "rb") as fh:
            for line in fh:
                if b"libLLVM" in line:
                    return True
    except OSError:  # not Linux: no /proc; triton is Linux-only anyway
        return False
    return False


def avoid_triton_crash() -> bool:
    """Keep torch from loading triton into a process that already holds Mesa's LLVM.

    ``torch._dynamo`` (imported by ``torch.optim``, timm and
    segmentation-models-pytorch) imports ``triton`` when it is installed.
    triton's ``libtriton.so`` carries its own LLVM; loading it after the
    OpenGL driver has loaded the system ``libLLVM`` (Mesa llvmpipe under
    Xvfb or a VM, AMD radeonsi) crashes the whole process with a
    segmentation fault, i.e. napari dies when the user presses *Train*.

    When triton is not imported yet and a system LLVM is mapped, triton is
    marked as unavailable (``sys.modules["triton"] = None``): torch then
    behaves as without triton (nothing here uses ``torch.compile``). Called
    before anything that may import ``torch._dynamo``. Returns True when
    triton was blocked (now or earlier).
    """
    if "triton" in sys.modules:
        return sys.modules["triton"] is None
    if _system_llvm_loaded():
        sys.modules["triton"] = None
        return True
    return False


def select_device(device: str | None = "auto"):
    """Return a ``torch.device``: CUDA, then Apple MPS, then CPU for ``"auto"``.

    An explicit ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"cpu"`` is honoured
    when available; asking for an unavailable device raises
    :class:`SEMAnalysisError` with a clear message.

    Parameters
    ----------
    device : str or None
        ``"auto"`` (or None), ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    """
    avoid_triton_crash()
    import torch

    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise SEMAnalysisError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise SEMAnalysisError(f"unsupported device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
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
