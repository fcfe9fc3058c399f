"""Tiled inference: overlapping tiles blended with cosine weights, one band of tile rows in memory."""

from __future__ import annotations

import math

import numpy as np

from .._device import describe_device, select_device
from .._validation import SEMAnalysisError
from .network import _amp_dtype, _divisor
from .normalization import _image_range


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


def _predict_2d(model, img, *, tile_size, overlap, batch_size, device, return_probabilities, callback, amp):
    import torch

    batch_size = int(batch_size)
    if batch_size < 1:
        raise SEMAnalysisError(f"batch_size must be >= 1, got {batch_size}")
    overlap = int(overlap)
    if overlap < 0:
        raise SEMAnalysisError(f"overlap must be >= 0, got {overlap}")
    dev = select_device(device)
    net = model.network(dev)
    model.device_used = describe_device(dev)
    div = _divisor(model.config)
    H, W = img.shape
    C = model.n_classes

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
    norm = model.config["normalization"]
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


def predict_unet(image, *, model, tile_size: int | None = 512, overlap: int = 64, batch_size: int = 4, device="auto"):
    """Segment ``image`` with a U-Net model (a :class:`UNetModel` or a model file path).

    A function form of :meth:`UNetModel.predict` for recorded workflows.
    """
    if model is None:
        raise SEMAnalysisError("no U-Net model given (save the trained model to a file first)")
    from .model import UNetModel, load_model

    if not isinstance(model, UNetModel):
        model = load_model(model)
    return model.predict(image, tile_size=tile_size, overlap=overlap, batch_size=batch_size, device=device)
