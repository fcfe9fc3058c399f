"""The CNN backend of :class:`ImageClassifier`: network, augmentation, training loop and prediction."""

from __future__ import annotations

import numpy as np

from .._validation import SEMAnalysisError, check_image, to_grayscale
from .features import _to_unit_float
from .validation import _Cancelled

#: networks an :class:`ImageClassifier` may use: "small" (built here) and timm models built locally
#: (never downloaded). A model file naming anything else (``hf-hub:org/name``, a large ViT) is refused.
CNN_ARCHS = (
    "small",
    "resnet10t",
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "convnext_atto",
    "convnext_nano",
    "convnext_tiny",
    "regnety_008",
    "densenet121",
)


def _check_arch(arch) -> str:
    if not isinstance(arch, str) or arch not in CNN_ARCHS:
        raise SEMAnalysisError(f"unknown CNN architecture {str(arch)[:100]!r}; choose one of {', '.join(CNN_ARCHS)}")
    return arch


def _cnn_shapes(arch: str, n_classes: int, width: int) -> dict[str, tuple]:
    """Parameter shapes of the network, built on torch's meta device (no memory, no weights)."""
    import torch

    with torch.device("meta"):
        net = _build_cnn(arch, n_classes, width)
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def _build_cnn(arch: str, n_classes: int, width: int):
    import torch.nn as nn

    _check_arch(arch)
    if arch == "small":
        chans = [width, width * 2, width * 4, width * 8]
        layers: list = [nn.BatchNorm2d(1)]
        c_in = 1
        for c in chans:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.Conv2d(c, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(c_in, n_classes)]
        return nn.Sequential(*layers)
    from .._device import avoid_triton_crash

    avoid_triton_crash()  # timm -> torch._dynamo -> triton: crashes next to Mesa's LLVM
    try:
        import timm
    except ImportError:
        raise SEMAnalysisError("the timm package is needed for arch other than 'small'") from None
    try:
        # never downloads: pretrained weights are not fetched at run time
        return timm.create_model(arch, pretrained=False, in_chans=1, num_classes=n_classes)
    except Exception as exc:
        raise SEMAnalysisError(f"unknown CNN architecture {arch!r}: {exc}") from None


def _prepare_cnn_batch(images, size: int) -> np.ndarray:
    """Stack images as float32 (N, 1, size, size): unit range, resized when needed."""
    from skimage.transform import resize

    out = np.empty((len(images), 1, size, size), np.float32)
    for i, im in enumerate(images):
        im = _to_unit_float(check_image(to_grayscale(np.asarray(im)), name=f"image {i}", min_size=4))
        if im.shape != (size, size):
            im = resize(im, (size, size), order=1, anti_aliasing=True, preserve_range=True)
        out[i, 0] = im
    return out


def _augment(xb, gen):
    """Random flips, 90-degree rotations and brightness/contrast on a (B, 1, H, W) tensor."""
    import torch

    b = xb.shape[0]
    flip = torch.rand(b, generator=gen) < 0.5
    if flip.any():
        xb[flip] = xb[flip].flip(-1)
    k = torch.randint(0, 4, (b,), generator=gen)
    for r in range(1, 4):
        sel = k == r
        if sel.any():
            xb[sel] = torch.rot90(xb[sel], r, dims=(-2, -1))
    contrast = (0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=gen)).to(xb.device)
    bright = (0.1 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)).to(xb.device)
    mean = xb.mean(dim=(-2, -1), keepdim=True)
    return (xb - mean) * contrast + mean + bright


def _one_cycle_lr(step: int, total: int, max_lr: float) -> float:
    """One-cycle schedule: linear warm-up over 30 % of the steps, then cosine decay."""
    warm = max(1, int(0.3 * total))
    if step < warm:
        return max_lr * (0.04 + 0.96 * step / warm)
    frac = (step - warm) / max(1, total - warm)
    return max_lr * (1e-3 + (1 - 1e-3) * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0))))


class _CNN:
    """Trainer/predictor around a torch module (used by ImageClassifier)."""

    def __init__(self, arch, n_classes, input_size, width, epochs, batch_size, lr, device, seed):
        self.arch = arch
        self.n_classes = n_classes
        self.input_size = input_size
        self.width = width
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.device = device
        self.seed = seed
        self.net = None

    def build(self):
        import torch

        torch.manual_seed(self.seed)
        self.net = _build_cnn(self.arch, self.n_classes, self.width)
        return self.net

    def fit(self, X: np.ndarray, y: np.ndarray, progress=None, cancel=None):
        import torch
        import torch.nn.functional as F

        from .._device import avoid_triton_crash, select_device

        dev = select_device(self.device)
        net = self.build().to(dev)
        gen = torch.Generator().manual_seed(self.seed)
        xt = torch.from_numpy(X)
        yt = torch.from_numpy(y.astype(np.int64))
        counts = np.bincount(y, minlength=self.n_classes).astype(np.float32)
        weights = torch.from_numpy(
            np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / self.n_classes, 0.0).astype(np.float32)
        ).to(dev)
        avoid_triton_crash()  # torch.optim imports torch._dynamo (and triton, when allowed)
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=self.lr, weight_decay=1e-4)
        steps_per_epoch = max(1, int(np.ceil(len(X) / self.batch_size)))
        total_steps = self.epochs * steps_per_epoch
        step = 0
        net.train()
        for epoch in range(self.epochs):
            order = torch.randperm(len(X), generator=gen)
            for s in range(steps_per_epoch):
                if cancel is not None and cancel():
                    raise _Cancelled()
                idx = order[s * self.batch_size : (s + 1) * self.batch_size]
                if len(idx) < 2 and len(X) >= 2:  # BatchNorm needs two samples
                    idx = order[:2]
                xb = _augment(xt[idx].clone(), gen).to(dev)
                yb = yt[idx].to(dev)
                loss = F.cross_entropy(net(xb), yb, weight=weights)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                for group in opt.param_groups:
                    group["lr"] = float(_one_cycle_lr(step, total_steps, self.lr))
                opt.step()
                step += 1
            if progress is not None:
                progress(epoch + 1, self.epochs)
        net.eval()
        self.net = net.cpu() if dev.type != "cpu" else net
        return self

    def predict_proba(self, X: np.ndarray, tta: bool = True) -> np.ndarray:
        import torch

        from .._device import select_device

        dev = select_device(self.device)
        net = self.net.to(dev).eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(X), 64):
                xb = torch.from_numpy(X[s : s + 64]).to(dev)
                if tta:  # average over the 8 flips/rotations the model was trained with
                    p = 0
                    for flip in (False, True):
                        xf = xb.flip(-1) if flip else xb
                        for r in range(4):
                            p = p + torch.softmax(net(torch.rot90(xf, r, dims=(-2, -1))), dim=1)
                    p = p / 8
                else:
                    p = torch.softmax(net(xb), dim=1)
                out.append(p.cpu().numpy())
        if dev.type != "cpu":
            self.net = net.cpu()
        return np.concatenate(out, axis=0).astype(np.float64)
