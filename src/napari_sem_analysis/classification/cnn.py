"""The CNN backend of :class:`ImageClassifier`: network, augmentation, training loop and prediction."""

from __future__ import annotations

import numpy as np

from .._validation import SEMAnalysisError, check_image, to_grayscale
from .features import _to_unit_float
from .validation import _Cancelled


def _build_cnn(arch: str, n_classes: int, width: int):
    import torch.nn as nn

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


class _AdamW:
    """AdamW written out in plain tensor operations.

    ``torch.optim`` imports torch's compiler stack (torch._dynamo, triton) on
    first use; inside a napari process whose OpenGL driver also bundles LLVM
    (Mesa llvmpipe) loading triton can crash the process. This optimiser
    needs nothing beyond basic tensor arithmetic.
    """

    def __init__(self, params, *, weight_decay=1e-4, betas=(0.9, 0.999), eps=1e-8):
        import torch

        self.params = [p for p in params if p.requires_grad]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.weight_decay = weight_decay
        self.betas = betas
        self.eps = eps
        self.t = 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self, lr: float):
        import torch

        self.t += 1
        b1, b2 = self.betas
        c1 = 1 - b1**self.t
        c2 = 1 - b2**self.t
        with torch.no_grad():
            for p, m, v in zip(self.params, self.m, self.v):
                if p.grad is None:
                    continue
                g = p.grad
                p.mul_(1 - lr * self.weight_decay)
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v / c2).sqrt_().add_(self.eps)
                p.addcdiv_(m, denom, value=-lr / c1)


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

        from .._device import select_device

        dev = select_device(self.device)
        net = self.build().to(dev)
        gen = torch.Generator().manual_seed(self.seed)
        xt = torch.from_numpy(X)
        yt = torch.from_numpy(y.astype(np.int64))
        counts = np.bincount(y, minlength=self.n_classes).astype(np.float32)
        weights = torch.from_numpy(np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / self.n_classes, 0.0).astype(np.float32)).to(dev)
        opt = _AdamW(net.parameters(), weight_decay=1e-4)
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
                opt.zero_grad()
                loss.backward()
                opt.step(_one_cycle_lr(step, total_steps, self.lr))
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
