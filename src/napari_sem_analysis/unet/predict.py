"""Tiled inference: overlapping tiles blended with cosine weights, one band of tile rows in memory."""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass
class _TilePlan:
    """Where the tiles of one (padded) image go and how they are blended."""

    H: int  # image size before padding
    W: int
    th: int  # tile size
    tw: int
    ys: list  # tile origins
    xs: list
    wy: dict  # blending ramps per origin
    wx: dict


def _check_batching(batch_size, overlap) -> tuple[int, int]:
    batch_size = int(batch_size)
    if batch_size < 1:
        raise SEMAnalysisError(f"batch_size must be >= 1, got {batch_size}")
    overlap = int(overlap)
    if overlap < 0:
        raise SEMAnalysisError(f"overlap must be >= 0, got {overlap}")
    return batch_size, overlap


def _tile_size(shape, tile_size, overlap: int, div: int) -> tuple[int, int]:
    """Tile height and width: multiples of ``div``, at most the (rounded-up) image."""
    H, W = shape

    def round_up(n):
        return int(math.ceil(n / div) * div)

    if tile_size is None:
        return round_up(H), round_up(W)
    tile_size = int(tile_size)
    if tile_size < div:
        raise SEMAnalysisError(f"tile_size must be at least {div} pixels, got {tile_size}")
    t = round_up(tile_size)
    th, tw = min(t, round_up(H)), min(t, round_up(W))
    if overlap >= min(th, tw) and (H > th or W > tw):
        raise SEMAnalysisError(f"overlap ({overlap}) must be smaller than the tile size ({min(th, tw)})")
    return th, tw


def _plan_tiles(img: np.ndarray, tile_size, overlap: int, div: int) -> tuple[np.ndarray, _TilePlan]:
    """Pad ``img`` to at least one tile (reflected) and lay out the overlapping tiles."""
    H, W = img.shape
    th, tw = _tile_size(img.shape, tile_size, overlap, div)
    # images smaller than a tile are reflect-padded (and cropped back)
    pad_y, pad_x = max(0, th - H), max(0, tw - W)
    if pad_y or pad_x:
        mode = "reflect" if (pad_y < H and pad_x < W) else "symmetric"
        img = np.pad(img, ((0, pad_y), (0, pad_x)), mode=mode)
    Hp, Wp = img.shape
    ys = _tile_starts(Hp, th, overlap)
    xs = _tile_starts(Wp, tw, overlap)
    wy = {y: _ramp(th, overlap, y > 0, y + th < Hp) for y in ys}
    wx = {x: _ramp(tw, overlap, x > 0, x + tw < Wp) for x in xs}
    return img, _TilePlan(H, W, th, tw, ys, xs, wy, wx)


class _BandAccumulator:
    """Blended class probabilities over one band of tile rows (on the device).

    Rows above the current band are final: their labels (and probabilities)
    are written out and the band moves down, so memory holds one band only.
    """

    def __init__(self, n_classes: int, plan: _TilePlan, width: int, dev, return_probabilities: bool):
        import torch

        self.plan, self.C = plan, n_classes
        self.labels = np.empty((plan.H, plan.W), dtype=np.uint8 if n_classes <= 256 else np.int32)
        self.probs = np.zeros((n_classes, plan.H, plan.W), np.float32) if return_probabilities else None
        self.acc = torch.zeros((n_classes, plan.th, width), dtype=torch.float32, device=dev)
        self.wsum = torch.zeros((plan.th, width), dtype=torch.float32, device=dev)
        self.origin = 0  # image row of acc[:, 0]

    def finalize(self, stop: int) -> None:
        """Write out the rows from the band's origin up to ``stop``."""
        import torch

        stop = min(stop, self.plan.H)
        if stop <= self.origin:
            return
        n, W = stop - self.origin, self.plan.W
        part = self.acc[:, :n, :W]
        out_dtype = torch.int32 if self.C > 256 else torch.uint8
        self.labels[self.origin : stop] = part.argmax(0).to(out_dtype).cpu().numpy()
        if self.probs is not None:
            self.probs[:, self.origin : stop] = (part / self.wsum[:n, :W].clamp_min(1e-12)).cpu().numpy()

    def shift_to(self, y0: int) -> None:
        """Move the band down to start at image row ``y0`` (rows above are finalised)."""
        d = y0 - self.origin
        if d <= 0:
            return
        self.finalize(y0)
        th, acc, wsum = self.plan.th, self.acc, self.wsum
        if d >= th:
            acc.zero_()
            wsum.zero_()
        else:
            acc[:, : th - d] = acc[:, d:].clone()
            acc[:, th - d :] = 0
            wsum[: th - d] = wsum[d:].clone()
            wsum[th - d :] = 0
        self.origin = y0

    def add(self, prob, x0: int, weight) -> None:
        tw = self.plan.tw
        self.acc[:, :, x0 : x0 + tw] += prob * weight
        self.wsum[:, x0 : x0 + tw] += weight


def _predict_2d(model, img, *, tile_size, overlap, batch_size, device, return_probabilities, callback, amp):
    """Tiled prediction of one 2-D image: plan the tiles, run them band by band, blend."""
    import torch

    batch_size, overlap = _check_batching(batch_size, overlap)
    dev = select_device(device)
    net = model.network(dev)
    model.device_used = describe_device(dev)
    norm = model.config["normalization"]
    lo, hi = _image_range(img, norm)  # of the image before padding
    img, plan = _plan_tiles(img, tile_size, overlap, _divisor(model.config))
    acc = _BandAccumulator(model.n_classes, plan, img.shape[1], dev, return_probabilities)
    use_amp = bool(amp) and dev.type == "cuda"
    amp_dtype = _amp_dtype(dev) if use_amp else None
    mean, std = float(norm["mean"]), float(norm["std"])
    scale = 1.0 / (hi - lo)
    wy_t = {y: torch.from_numpy(w).to(dev) for y, w in plan.wy.items()}
    wx_t = {x: torch.from_numpy(w).to(dev) for x, w in plan.wx.items()}
    n_tiles, done = len(plan.ys) * len(plan.xs), 0
    th, tw = plan.th, plan.tw
    with torch.inference_mode():
        for y0 in plan.ys:
            acc.shift_to(y0)
            band = torch.from_numpy(np.ascontiguousarray(img[y0 : y0 + th])).to(dev, non_blocking=True)
            band = band.to(torch.float32)
            band = ((band - lo) * scale).clamp_(-1.0, 2.0).sub_(mean).mul_(1.0 / std)
            for b0 in range(0, len(plan.xs), batch_size):
                bxs = plan.xs[b0 : b0 + batch_size]
                batch = torch.stack([band[:, x0 : x0 + tw] for x0 in bxs])[:, None]
                if dev.type == "cuda":  # channels-last on CUDA
                    batch = batch.contiguous(memory_format=torch.channels_last)
                if use_amp:
                    with torch.autocast(device_type="cuda", dtype=amp_dtype):
                        logits = net(batch)
                else:
                    logits = net(batch)
                prob = torch.softmax(logits.float(), dim=1)
                for k, x0 in enumerate(bxs):
                    acc.add(prob[k], x0, wy_t[y0][:, None] * wx_t[x0][None, :])
                done += len(bxs)
                if callback is not None:
                    info = {"stage": "predict", "done": done, "total": n_tiles, "progress": done / n_tiles}
                    if callback(info):
                        return None
        acc.finalize(plan.H)
    if return_probabilities:
        return acc.labels, acc.probs
    return acc.labels


def predict_unet(image, *, model, tile_size: int | None = 512, overlap: int = 64, batch_size: int = 4, device="auto"):
    """Segment ``image`` with a U-Net model (a :class:`UNetModel` or a model file path).

    A function form of :meth:`UNetModel.predict` for recorded workflows.

    Parameters
    ----------
    image : ndarray
        2-D image.
    model : UNetModel or str or Path
        The model, or the path of a model file.
    tile_size : int or None
        Tile size in pixels for tiled prediction; None predicts the whole image at once.
    overlap : int
        Overlap between tiles in pixels.
    batch_size : int
        Tiles per forward pass.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    """
    if model is None:
        raise SEMAnalysisError("no U-Net model given (save the trained model to a file first)")
    from .model import UNetModel, load_model

    if not isinstance(model, UNetModel):
        model = load_model(model)
    return model.predict(image, tile_size=tile_size, overlap=overlap, batch_size=batch_size, device=device)
