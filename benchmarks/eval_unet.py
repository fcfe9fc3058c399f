"""Evaluate U-Net training on the real micrographs in the shared data folder.

* nasa-superalloy: train on ``train/`` -> per-class and mean IoU on ``val/``
  (classes: matrix, secondary gamma', tertiary gamma').
* nasa-ebc: train on ``train/`` -> oxide and crack IoU on ``val/``.
* bam-tio2-sem: train on the first half of the images -> particle Dice on
  the second half, next to the classical particle recipe
  (``segment_particles`` with its defaults, the evaluated recipe of the
  classical-segmentation issue) and a plain Otsu threshold on the same half.

Model selection uses a validation split taken from the training part only
(``val_fraction``); the ``val``/test images are used for the final figures
only.

Short CPU runs (the defaults) use a small encoder and a time budget per
data set; a full GPU run is e.g.::

    python benchmarks/eval_unet.py --device cuda --encoder resnet34 --depth 5 \
        --epochs 150 --steps 50 --minutes 20 --patch 384 --batch 16

Usage::

    nice -n 10 python benchmarks/eval_unet.py [DATA] [--sets superalloy ebc bam] [--json out.json]
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

from napari_sem_analysis._validation import to_grayscale  # noqa: E402
from napari_sem_analysis.unet import train_unet  # noqa: E402


def imread(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    try:
        import tifffile

        if path.suffix.lower() in (".tif", ".tiff"):
            return tifffile.imread(path)
    except ImportError:
        pass
    return iio.imread(path)


def find_mask(mask_dir: Path, stem: str) -> Path | None:
    for pattern in (f"{stem}.*", f"{stem}_m.*", f"{stem}_mask.*", f"{stem}_MASK*"):
        hits = sorted(mask_dir.glob(pattern))
        if hits:
            return hits[0]
    return None


def load_pairs(folder: Path):
    images, masks, names = [], [], []
    for p in sorted((folder / "images").iterdir()):
        if p.suffix.lower() not in (".tif", ".tiff", ".png"):
            continue
        m = find_mask(folder / "masks", p.stem)
        if m is None:
            continue
        img = to_grayscale(imread(p))
        msk = imread(m)
        if msk.ndim == 3:
            msk = msk[..., 0]
        images.append(img)
        masks.append(msk.astype(np.int32))
        names.append(p.name)
    return images, masks, names


def confusion(pred, truth, n):
    idx = truth.astype(np.int64).reshape(-1) * n + pred.astype(np.int64).reshape(-1)
    return np.bincount(idx, minlength=n * n).reshape(n, n)


def iou_from_cm(cm):
    d = np.diag(cm).astype(float)
    u = cm.sum(0) + cm.sum(1) - d
    return np.where(u > 0, d / np.maximum(u, 1), np.nan)


def budget_callback(minutes: float, label: str, verbose: bool):
    t0 = time.perf_counter()

    def cb(info):
        if info["stage"] == "epoch" and verbose:
            h = info["history"][-1]
            iou = h.get("mean_iou")
            print(
                f"  [{label}] epoch {h['epoch']:3d} train {h['train_loss']:.3f} "
                f"val {h['val_loss'] if h['val_loss'] is None else round(h['val_loss'], 3)} "
                f"mIoU {iou if iou is None else round(iou, 3)} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        return (time.perf_counter() - t0) > minutes * 60

    return cb


def train(images, masks, args, label, **kw):
    t0 = time.perf_counter()
    model = train_unet(
        images,
        masks,
        encoder=args.encoder,
        encoder_depth=args.depth,
        patch_size=args.patch,
        epochs=args.epochs,
        batch_size=args.batch,
        steps_per_epoch=args.steps,
        val_fraction=args.val_fraction,
        patience=args.patience,
        device=args.device,
        callback=budget_callback(args.minutes, label, not args.quiet),
        seed=args.seed,
        class_weights=None if args.class_weights == "none" else args.class_weights,
        **kw,
    )
    return model, time.perf_counter() - t0


def eval_segmentation(model, images, masks, n, args):
    cm = np.zeros((n, n), dtype=np.int64)
    t0 = time.perf_counter()
    for img, msk in zip(images, masks):
        pred = model.predict(img, tile_size=args.tile, overlap=args.overlap, batch_size=4, device=args.device)
        cm += confusion(pred, msk, n)
    return iou_from_cm(cm), time.perf_counter() - t0


def run_superalloy(data: Path, args):
    root = data / "nasa-superalloy"
    tr_x, tr_y, _ = load_pairs(root / "train")
    va_x, va_y, _ = load_pairs(root / "val")
    names = ["matrix", "secondary gamma'", "tertiary gamma'"]
    model, t_train = train(tr_x, tr_y, args, "superalloy", n_classes=3, class_names=names)
    iou, t_pred = eval_segmentation(model, va_x, va_y, 3, args)
    return {
        "set": "nasa-superalloy",
        "train_images": len(tr_x),
        "test_images": len(va_x),
        "iou": dict(zip(names, map(float, iou))),
        "mean_iou": float(np.nanmean(iou)),
        "epochs": len(model.history),
        "best_epoch": model.best_epoch,
        "train_s": t_train,
        "predict_s": t_pred,
        "device": model.device_used,
    }


def run_ebc(data: Path, args):
    root = data / "nasa-ebc"
    tr_x, tr_y, _ = load_pairs(root / "train")
    va_x, va_y, _ = load_pairs(root / "val")
    names = ["background", "oxide", "crack"]
    model, t_train = train(tr_x, tr_y, args, "ebc", n_classes=3, class_names=names)
    iou, t_pred = eval_segmentation(model, va_x, va_y, 3, args)
    return {
        "set": "nasa-ebc",
        "train_images": len(tr_x),
        "test_images": len(va_x),
        "iou": dict(zip(names, map(float, iou))),
        "mean_iou": float(np.nanmean(iou)),
        "epochs": len(model.history),
        "best_epoch": model.best_epoch,
        "train_s": t_train,
        "predict_s": t_pred,
        "device": model.device_used,
        "class_weights": model.config["training"]["class_weights"],
        "history": model.history,
    }


def dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    s = a.sum() + b.sum()
    return 2.0 * np.logical_and(a, b).sum() / s if s else 1.0


def run_bam(data: Path, args):
    from napari_sem_analysis.io import read_sem
    from napari_sem_analysis.segmentation import segment_particles, threshold

    root = data / "bam-tio2-sem"
    images, masks, pixels, pixel = [], [], [], None
    for p in sorted((root / "images").glob("*.tif")):
        m = find_mask(root / "masks", p.stem)
        if m is None:
            continue
        sem = read_sem(p)
        img = sem.data
        msk = (imread(m) > 0).astype(np.int32)[: img.shape[0], : img.shape[1]]
        images.append(img)
        masks.append(msk)
        pixels.append(sem.pixel_size)
        pixel = sem.pixel_size
    half = len(images) // 2
    model, t_train = train(
        images[:half], masks[:half], args, "bam", n_classes=2, class_names=["background", "particle"], pixel_size=pixel
    )
    d_unet, d_classical, d_otsu = [], [], []
    t0 = time.perf_counter()
    for img, msk in zip(images[half:], masks[half:]):
        pred = model.predict(img, tile_size=args.tile, overlap=args.overlap, batch_size=4, device=args.device)
        d_unet.append(dice(pred == 1, msk))
    t_pred = time.perf_counter() - t0
    for img, msk, ps in zip(images[half:], masks[half:], pixels[half:]):
        d_classical.append(dice(segment_particles(img, pixel_size=ps) > 0, msk))
        d_otsu.append(dice(threshold(img, "otsu"), msk))
    return {
        "set": "bam-tio2-sem",
        "train_images": half,
        "test_images": len(images) - half,
        "dice_unet": float(np.mean(d_unet)),
        "dice_classical_recipe": float(np.mean(d_classical)),
        "dice_otsu": float(np.mean(d_otsu)),
        "epochs": len(model.history),
        "best_epoch": model.best_epoch,
        "train_s": t_train,
        "predict_s": t_pred,
        "device": model.device_used,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--sets", nargs="+", default=["superalloy", "ebc", "bam"], choices=["superalloy", "ebc", "bam"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--encoder", default="resnet18")
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--patch", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--steps", type=int, default=10, help="steps per epoch")
    ap.add_argument("--minutes", type=float, default=7.0, help="training time budget per data set")
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--val-fraction", type=float, default=0.2)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--class-weights",
        default="none",
        choices=["none", "auto"],
        help="cross-entropy class weights ('auto': inverse square root of the class frequency)",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if not data.is_dir():
        print(f"data folder {data} not found; nothing to evaluate")
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    runs = {"superalloy": run_superalloy, "ebc": run_ebc, "bam": run_bam}
    results = []
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "quiet")}
    print("settings:", settings, flush=True)
    for name in args.sets:
        print(f"== {name}", flush=True)
        res = runs[name](data, args)
        print(json.dumps({k: v for k, v in res.items() if k != "history"}, indent=1), flush=True)
        results.append(res)
    if args.json:
        Path(args.json).write_text(json.dumps({"settings": settings, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
