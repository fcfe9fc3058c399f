"""U-Net inference speed: megapixels per second and tiling overhead.

A ResNet-34 U-Net (random weights: speed does not depend on training) segments
a ``--size`` x ``--size`` uint8 image with :meth:`UNetModel.predict` (tiles of
``--tile`` px overlapping by ``--overlap`` px, cosine blending, argmax), on
the CPU and on CUDA when present. The tiling overhead is the ratio of that
time to one untiled forward pass of the same pixels (the bare network on the
whole image at once, no normalisation, softmax or blending); ``--untiled-max``
limits the untiled reference to sizes that fit in memory.

Usage::

    nice -n 10 python benchmarks/bench_unet.py --size 2048            # CPU-friendly
    python benchmarks/bench_unet.py --device cuda --size 8192 --tile 1024 --batch 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_sem_analysis._device import describe_device, select_device  # noqa: E402
from napari_sem_analysis.unet import UNetModel, _build_network  # noqa: E402


def make_model(encoder: str, n_classes: int) -> UNetModel:
    import torch

    torch.manual_seed(0)
    config = {
        "architecture": "unet",
        "encoder": encoder,
        "encoder_depth": 5,
        "decoder_channels": [256, 128, 64, 32, 16],
        "n_classes": n_classes,
        "class_names": [f"class {i}" for i in range(n_classes)],
        "pixel_size": None,
        "normalization": {
            "method": "percentile",
            "low_percentile": 0.5,
            "high_percentile": 99.5,
            "mean": 0.5,
            "std": 0.25,
        },
    }
    net = _build_network(config)
    return UNetModel(config, net.state_dict())


def make_image(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 16 + 1, size // 16 + 1)).astype(np.uint8)
    img = np.kron(small, np.ones((16, 16), np.uint8))[:size, :size]
    return np.clip(img.astype(np.int16) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)


def sync(dev):
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()


def time_tiled(model, img, dev, args):
    model.predict(
        img[: args.tile * 2, : args.tile * 2],
        tile_size=args.tile,
        overlap=args.overlap,
        batch_size=args.batch,
        device=dev,
    )  # warm-up (cudnn autotune, allocations)
    times = []
    for _ in range(args.repeat):
        sync(dev)
        t0 = time.perf_counter()
        labels = model.predict(img, tile_size=args.tile, overlap=args.overlap, batch_size=args.batch, device=dev)
        sync(dev)
        times.append(time.perf_counter() - t0)
    assert labels.shape == img.shape
    return min(times)


def time_untiled(model, img, dev, args):
    import torch

    net = model.network(dev)
    x = torch.from_numpy(img).to(dev)[None, None].float().sub_(127.5).div_(64.0)
    if dev.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    amp = dev.type == "cuda"
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if amp else None

    def fwd(inp):
        with torch.inference_mode():
            if amp:
                with torch.autocast("cuda", dtype=dtype):
                    return net(inp)
            return net(inp)

    fwd(x[..., : args.tile, : args.tile])  # warm-up
    times = []
    for _ in range(args.repeat):
        sync(dev)
        t0 = time.perf_counter()
        out = fwd(x)
        sync(dev)
        times.append(time.perf_counter() - t0)
        del out
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=None, help="image edge (default 8192 on CUDA, 2048 on CPU)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--device", nargs="+", default=None, help="devices (default: cpu and cuda when present)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--untiled-max", type=int, default=None, help="largest edge for the untiled reference")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    model = make_model(args.encoder, args.classes)
    results = []
    for name in devices:
        dev = select_device(name)
        size = args.size or (8192 if dev.type == "cuda" else 2048)
        img = make_image(size)
        mp = size * size / 1e6
        t_tiled = time_tiled(model, img, dev, args)
        res = {
            "device": describe_device(dev),
            "threads": torch.get_num_threads() if dev.type == "cpu" else None,
            "encoder": args.encoder,
            "size": size,
            "tile": args.tile,
            "overlap": args.overlap,
            "batch": args.batch,
            "tiled_s": round(t_tiled, 3),
            "tiled_mp_per_s": round(mp / t_tiled, 3),
        }
        untiled_max = args.untiled_max or (8192 if dev.type == "cuda" else 2048)
        if size <= untiled_max:
            try:
                t_full = time_untiled(model, img, dev, args)
                res["untiled_forward_s"] = round(t_full, 3)
                res["untiled_mp_per_s"] = round(mp / t_full, 3)
                res["tiling_overhead"] = round(t_tiled / t_full, 3)
            except (RuntimeError, MemoryError) as exc:  # out of memory
                res["untiled_forward_s"] = f"failed: {str(exc).splitlines()[0]}"
        print(json.dumps(res), flush=True)
        results.append(res)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
