"""Evaluate the trainable pixel classifier and write docs/evaluation/pixel_classifier.md.

Scribbles are made from the ground truth the way a user paints them: a few
short strokes per class (at most 40 px long, 3 px brush): 4 along the middle
of a class region (a piece of the skeleton of the region eroded by 2 px) and
2 just inside its edge (a piece of the eroded region's outline), the way one
paints the middle of a phase and then a stroke along a boundary the first
result got wrong; in all at most 1.5 % of the pixels. Scores are on whole images that were not
used for training:

1. ``nasa-superalloy``: scribbles on the 10 ``train`` images -> the 4 ``val``
   images (another specimen spot); per-class and mean IoU. Beside it:
   scikit-image's ``multiscale_basic_features`` + a random forest on the same
   scribbles, and a plain Otsu / multi-Otsu threshold.
2. ``bam-tio2-sem``: scribbles on the first half of the images -> the second
   half; Dice of the particles (the info band is cut off first). Otsu beside it.
3. ``nrcan-shale-sem``: scribbles on the first half of the tiles (grains vs
   matrix) -> the second half; IoU / Dice of the grains. Otsu beside it.
4. ``--live``: what the widget's live mode costs on 1 and 2 Mpx images (mosaics of
   the superalloy val images): the first Train (features computed), and a retrain +
   re-predict after one more stroke (features cached), of the whole image and of a
   1024x768 view, with the default forest and the live preview's lighter one; wall
   and CPU time. Every data set also gets a "live preview" line: the same features,
   ``--live-trees`` trees, to show what the preview gives up.
5. Timing: train + predict at 1, 4 and 16 Mpx (synthetic two-phase image,
   same scribble budget) for this classifier and for scikit-image's
   ``multiscale_basic_features`` + ``future.fit_segmenter`` / ``predict_segmenter``
   with the same number of features and the same forest, in one run.

With ``--unet`` two U-Net lines are added to every data set, trained on the same
training images (no validation split: every training image is used, as for the
pixel classifier) and scored on the same held-out images: one trained on the same
scribbles (unscribbled pixels are ``ignore_index``: they do not count in the loss,
and every patch is centred on a scribbled pixel), one on the full masks. Both use
a small network (``--unet-encoder tu-resnet10t``, depth 4, patch 128, batch 8,
random initialisation) and a wall-clock budget (``--unet-minutes``) on the CPU.

Every data set draws its scribbles from its own ``default_rng(0)``, so a set scores
the same whether it runs alone or with the others.

Usage::

    python benchmarks/eval_pixel_classifier.py [DATA_FOLDER] [--no-timing] [--sets superalloy,bam,shale]
        [--unet [--unet-minutes 3]] [--live] [--sizes 1 4 16] [--out docs/...md]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_sem_analysis.pixel_classifier import PixelClassifier  # noqa: E402

BUDGET = 0.015  # at most this fraction of the pixels is scribbled
UNET_IGNORE = 255  # U-Net target value of unscribbled pixels


# ---------------------------------------------------------------------------
# scribbles the way a user paints them
# ---------------------------------------------------------------------------


def make_scribbles(
    mask: np.ndarray, rng, *, strokes=4, length=40, budget=BUDGET, brush=1, erode=(2, 1), edge_strokes=2
) -> np.ndarray:
    """A few stroke-like scribbles per class of ``mask`` (classes 0..K-1 -> scribble values 1..K).

    ``strokes`` pieces of the skeleton of the eroded class region (the middle of the region), and
    ``edge_strokes`` pieces of the eroded region's outline (a stroke just inside a boundary), each
    at most ``length`` px long, drawn with a (2 brush + 1) px brush.
    """
    from scipy import ndimage as ndi
    from skimage.morphology import skeletonize

    out = np.zeros(mask.shape, np.uint8)
    classes = np.unique(mask)
    per_class = budget * mask.size / len(classes)
    disk = ndi.generate_binary_structure(2, 1)
    for c in classes:
        region = mask == c
        painted = np.zeros(mask.shape, bool)
        # erode so that strokes stay inside the region, as a careful user would
        core = region
        for it in erode:
            er = ndi.binary_erosion(region, disk, iterations=it)
            if er.sum() > 50:
                core = er
                break
        skel = skeletonize(core)
        outline = core & ~ndi.binary_erosion(core, disk)
        for curve, n_max in ((skel, strokes), (outline, edge_strokes)):
            if n_max:
                _strokes(curve, core, region, painted, rng, n_max, length, brush, per_class)
        out[painted] = int(c) + 1
    return out


def _strokes(skel, core, region, painted, rng, n_max, length, brush, per_class):
    """Add up to ``n_max`` strokes: connected pieces of ``skel`` in a window of ``length`` px around random points."""
    from scipy import ndimage as ndi

    pts = np.argwhere(skel)
    if len(pts) == 0:
        pts = np.argwhere(core)
    h, pad = length // 2, brush + 1
    n = 0
    for k in rng.permutation(len(pts))[: 20 * n_max]:  # a bounded number of tries
        if n >= n_max:
            break
        y, x = pts[k]
        y0, x0 = max(0, y - h - pad), max(0, x - h - pad)
        y1, x1 = min(skel.shape[0], y + h + pad + 1), min(skel.shape[1], x + h + pad + 1)
        seg = np.zeros((y1 - y0, x1 - x0), bool)
        seg[pad : -pad or None, pad : -pad or None] = skel[y0:y1, x0:x1][pad : -pad or None, pad : -pad or None]
        lab, _ = ndi.label(seg, structure=np.ones((3, 3)))
        seg = lab == lab[y - y0, x - x0] if lab[y - y0, x - x0] else np.zeros_like(seg)
        seg[y - y0, x - x0] = True
        stroke = ndi.binary_dilation(seg, np.ones((2 * brush + 1, 2 * brush + 1), bool)) & region[y0:y1, x0:x1]
        window = painted[y0:y1, x0:x1]
        if painted.sum() + (stroke & ~window).sum() > per_class:
            continue
        window |= stroke
        n += 1


# ---------------------------------------------------------------------------
# scores
# ---------------------------------------------------------------------------


def iou_per_class(pred_list, gt_list, classes) -> dict:
    inter = {c: 0 for c in classes}
    union = {c: 0 for c in classes}
    for p, g in zip(pred_list, gt_list):
        for c in classes:
            a, b = p == c, g == c
            inter[c] += int((a & b).sum())
            union[c] += int((a | b).sum())
    return {c: inter[c] / union[c] if union[c] else float("nan") for c in classes}


def dice(pred_list, gt_list) -> float:
    inter = sum(int((p & g).sum()) for p, g in zip(pred_list, gt_list))
    tot = sum(int(p.sum() + g.sum()) for p, g in zip(pred_list, gt_list))
    return 2 * inter / tot if tot else float("nan")


# ---------------------------------------------------------------------------
# baselines
# ---------------------------------------------------------------------------


def skimage_segmenter(train_imgs, train_scr, test_imgs, *, num_sigma=None, n_estimators=60, max_depth=16):
    """scikit-image's multiscale_basic_features + future.fit_segmenter (random forest)."""
    from functools import partial

    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    fn = partial(
        multiscale_basic_features,
        intensity=True,
        edges=True,
        texture=True,
        sigma_min=1,
        sigma_max=16,
        num_sigma=num_sigma,
        channel_axis=None,
    )
    feats = [fn(im.astype(np.float32) / max(float(im.max()), 1.0)) for im in train_imgs]
    X = np.concatenate([f[s > 0] for f, s in zip(feats, train_scr)])
    y = np.concatenate([s[s > 0] for s in train_scr])
    clf = RandomForestClassifier(n_estimators=n_estimators, max_depth=max_depth, n_jobs=-1, random_state=0)
    # fit_segmenter on one stacked "image" of the scribbled pixels (keeps skimage's code path)
    clf = fit_segmenter(y[:, None], X[:, None, :], clf)
    out = [predict_segmenter(fn(im.astype(np.float32) / max(float(im.max()), 1.0)), clf) for im in test_imgs]
    return out, feats[0].shape[-1]


def otsu_classes(img, n_classes):
    from skimage.filters import threshold_multiotsu, threshold_otsu

    if n_classes == 2:
        return (img > threshold_otsu(img)).astype(np.uint8) + 1
    th = threshold_multiotsu(img, classes=n_classes)
    return (np.digitize(img, th) + 1).astype(np.uint8)


def scribbles_to_unet(scr: np.ndarray) -> np.ndarray:
    """Scribbles (0 unlabelled, 1..K) -> U-Net targets (0..K-1, 255 = ignored)."""
    return np.where(scr > 0, scr.astype(np.int16) - 1, UNET_IGNORE).astype(np.uint8)


def unet_predictions(train_imgs, train_masks, test_imgs, n_classes, args, label, *, sparse: bool):
    """Train a small U-Net (scribbles when ``sparse``, else full masks) and predict the test images (0..K-1).

    Returns the predictions and a description (epochs, steps, training and prediction time).
    """
    from napari_sem_analysis.unet import train_unet

    t0 = time.perf_counter()
    c0 = time.process_time()
    done = {"epoch": 0}

    def budget(info):
        if info["stage"] == "epoch":
            done["epoch"] = info["epoch"]
            print(
                f"  [{label}] epoch {info['epoch']} loss {info['history'][-1]['train_loss']:.3f} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
        if args.unet_cpu_seconds:  # a budget of process CPU time: fair on a shared, loaded machine
            return time.process_time() - c0 > args.unet_cpu_seconds
        return time.perf_counter() - t0 > args.unet_minutes * 60

    model = train_unet(
        train_imgs,
        train_masks,
        n_classes=n_classes,
        encoder=args.unet_encoder,
        encoder_depth=args.unet_depth,
        decoder_channels=(128, 64, 32, 16)[: args.unet_depth],
        patch_size=args.unet_patch,
        batch_size=8,
        epochs=args.unet_epochs,
        steps_per_epoch=args.unet_steps,
        val_fraction=0.0,
        patience=None,
        ignore_index=UNET_IGNORE if sparse else None,
        class_balance=1.0 if sparse else 0.5,
        device="cpu",
        amp=False,
        callback=budget,
        seed=0,
    )
    t_train, c_train = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    preds = [np.asarray(model.predict(im, tile_size=512, overlap=64, device="cpu")) for im in test_imgs]
    t_pred = time.perf_counter() - t1
    info = (
        f"{len(model.history)} epochs x {args.unet_steps} steps, training {t_train:.0f} s wall / "
        f"{c_train:.0f} s CPU, prediction {t_pred:.1f} s"
    )
    print(f"  [{label}] {info}", flush=True)
    return preds, info


def add_unet_rows(rows, notes, train_imgs, scr, train_masks, test_imgs, n_classes, args, title):
    """Append U-Net rows (on the scribbles, on the full masks) as (name, predictions 0..K-1, seconds)."""
    for sparse, what in ((True, "same scribbles"), (False, "full masks")):
        t = time.perf_counter()
        targets = [scribbles_to_unet(s) for s in scr] if sparse else list(train_masks)
        preds, info = unet_predictions(
            train_imgs, targets, test_imgs, n_classes, args, f"{title} U-Net {what}", sparse=sparse
        )
        rows.append(
            (f"U-Net on the {what} ({args.unet_encoder}, depth {args.unet_depth})", preds, time.perf_counter() - t)
        )
        notes.append(f"U-Net on the {what}: {info}.")


# ---------------------------------------------------------------------------
# data sets
# ---------------------------------------------------------------------------


def _gray(a):
    a = np.asarray(a)
    return a[..., 0] if a.ndim == 3 else a


def load_superalloy(root: Path, split: str):
    import imageio.v3 as iio
    import tifffile

    imgs, masks = [], []
    for f in sorted((root / split / "images").glob("*.tif")):
        imgs.append(_gray(tifffile.imread(f)))
        masks.append(np.asarray(iio.imread(root / split / "masks" / f"{f.stem}_mask.png")))
    return imgs, masks


def _live_row(train_imgs, scr, test_imgs, args):
    """The widget's live preview: the same features, a forest of ``args.live_trees`` trees (features cached)."""
    t = time.perf_counter()
    clf = PixelClassifier(n_estimators=args.live_trees).fit(train_imgs, scr)
    pred = [clf.predict(im) - 1 for im in test_imgs]
    return f"PixelClassifier, live preview ({args.live_trees} trees)", pred, time.perf_counter() - t


def eval_superalloy(root: Path, lines: list, rng, args, skimage_baseline=True):
    tr_i, tr_m = load_superalloy(root, "train")
    va_i, va_m = load_superalloy(root, "val")
    scr = [make_scribbles(m, rng) for m in tr_m]
    frac = sum(int((s > 0).sum()) for s in scr) / sum(s.size for s in scr)
    names = ["matrix", "secondary γ'", "tertiary γ'"]
    rows, notes = [], []  # (name, predictions 0..2, seconds)
    t = time.perf_counter()
    clf = PixelClassifier().fit(tr_i, scr)
    pred = [clf.predict(im) - 1 for im in va_i]
    rows.append((f"PixelClassifier (default, {clf.n_features} features)", pred, time.perf_counter() - t))
    rows.append(_live_row(tr_i, scr, va_i, args))
    if skimage_baseline:
        t = time.perf_counter()
        sk_pred, nf = skimage_segmenter(tr_i, scr, va_i)
        rows.append(
            (
                f"skimage multiscale_basic_features + RF ({nf} features)",
                [p - 1 for p in sk_pred],
                time.perf_counter() - t,
            )
        )
    if args.unet:
        add_unet_rows(rows, notes, tr_i, scr, tr_m, va_i, 3, args, "superalloy")
    rows.append(("multi-Otsu (3 classes, per image)", [otsu_classes(im, 3) - 1 for im in va_i], float("nan")))
    lines += [
        "## NASA superalloy: train (10 images) -> val (4 images, another spot)",
        "",
        f"Scribbles: {frac * 100:.2f} % of the training pixels (a few strokes per class per image).",
        "",
        "| method | " + " | ".join(f"IoU {n}" for n in names) + " | mean IoU | time (s) |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for name, pred, dt in rows:
        iou = iou_per_class(pred, va_m, [0, 1, 2])
        vals = [iou[c] for c in (0, 1, 2)]
        lines.append(
            f"| {name} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | **{np.nanmean(vals):.3f}** | {dt:.1f} |"
        )
    lines += ["", *notes, ""] if notes else [""]
    imp = sorted(clf.feature_importances.items(), key=lambda kv: -kv[1])[:8]
    lines.append("Top features (mean decrease in impurity): " + ", ".join(f"{k} {v:.3f}" for k, v in imp) + ".")
    lines.append("")
    print("\n".join(lines[-len(rows) - len(notes) - 8 :]), flush=True)


def load_bam(root: Path):
    import tifffile

    imgs, masks = [], []
    for f in sorted((root / "images").glob("*.tif")):
        m = root / "masks" / f"{f.stem}_m.tif"
        if not m.exists():
            continue
        im = _gray(tifffile.imread(f))[:-60]
        imgs.append(im)
        masks.append((_gray(tifffile.imread(m))[:-60] > 0).astype(np.uint8))
    return imgs, masks


def load_shale(root: Path):
    import tifffile

    imgs, masks = [], []
    for f in sorted((root / "images").glob("*.tif")):
        stem, _, num = f.stem.rpartition("_")
        m = root / "masks" / f"{stem}_MASK_{num}.tif"
        if not m.exists():
            continue
        imgs.append(_gray(tifffile.imread(f)))
        masks.append((_gray(tifffile.imread(m)) > 0).astype(np.uint8))
    return imgs, masks


def eval_binary(title, imgs, masks, lines, rng, fg_name, args):
    half = len(imgs) // 2
    scr = [make_scribbles(m, rng) for m in masks[:half]]
    frac = sum(int((s > 0).sum()) for s in scr) / sum(s.size for s in scr)
    test = imgs[half:]
    gt = [m > 0 for m in masks[half:]]
    rows, notes = [], []  # (name, predictions 0/1, seconds)
    t = time.perf_counter()
    clf = PixelClassifier().fit(imgs[:half], scr)
    rows.append(("PixelClassifier (default)", [clf.predict(im) - 1 for im in test], time.perf_counter() - t))
    rows.append(_live_row(imgs[:half], scr, test, args))
    if args.unet:
        add_unet_rows(rows, notes, imgs[:half], scr, masks[:half], test, 2, args, title.split()[0])
    lines += [
        f"## {title}: first {half} images -> last {len(imgs) - half}",
        "",
        f"Scribbles: {frac * 100:.2f} % of the training pixels.",
        "",
        f"| method | Dice {fg_name} | IoU {fg_name} | time (s) |",
        "|---|---|---|---|",
    ]
    for name, pred, dt in rows:
        fg = [p == 1 for p in pred]
        iou = iou_per_class([p.astype(int) for p in fg], [g.astype(int) for g in gt], [1])[1]
        lines.append(f"| {name} | **{dice(fg, gt):.3f}** | {iou:.3f} | {dt:.1f} |")
    otsu = [otsu_classes(im, 2) == 2 for im in test]
    d_otsu = max(dice(otsu, gt), dice([~o for o in otsu], gt))
    lines += [
        f"| Otsu (per image, better polarity chosen with the ground truth) | {d_otsu:.3f} | - | - |",
        "",
        *notes,
        "",
    ]
    print("\n".join(lines[-len(rows) - len(notes) - 9 :]), flush=True)


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------


def synthetic(side: int, rng):
    from scipy import ndimage as ndi

    noise = ndi.gaussian_filter(rng.standard_normal((side // 4, side // 4)).astype(np.float32), 6)
    mask = np.kron((noise > 0).astype(np.uint8), np.ones((4, 4), np.uint8))[:side, :side]
    img = (100 + 60 * mask + rng.normal(0, 20, mask.shape)).clip(0, 255).astype(np.uint8)
    return img, mask


def timing(sizes, lines, rng):
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    lines += [
        "## Time to train and predict (CPU)",
        "",
        "Synthetic two-phase image, scribbles <= 1.5 % of the pixels (at most 10 000 pixels per class for",
        "both methods). Both use the same forest (60 trees, depth 16, all cores). scikit-image gets",
        "`num_sigma` chosen so that it has as many features as ours (4 per scale), sigmas 1..16.",
        "CPU = process time of all threads (less sensitive than wall time to other jobs on the machine).",
        "",
        (
            "| image | ours: features + train (s) | ours: predict (s) | ours total (s) |"
            " skimage total (s) | skimage / ours (wall) | ours CPU (s) | skimage CPU (s) | skimage / ours (CPU) |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mp in sizes:
        side = round(np.sqrt(mp * 1e6))
        img, mask = synthetic(side, rng)
        scr = make_scribbles(mask, rng, strokes=6, length=80)
        clf = PixelClassifier()
        clf.cache.clear()
        c0 = time.process_time()
        t0 = time.perf_counter()
        clf.fit(img, scr)
        t1 = time.perf_counter()
        clf.predict(img)
        t2 = time.perf_counter()
        c2 = time.process_time()
        nf = clf.n_features
        clf.cache.clear()
        # scikit-image with the same number of features (4 per sigma)
        num_sigma = max(1, round(nf / 4))
        c3 = time.process_time()
        t3 = time.perf_counter()
        feats = multiscale_basic_features(
            img.astype(np.float32) / 255, sigma_min=1, sigma_max=16, num_sigma=num_sigma, channel_axis=None
        )
        ys, xs = np.nonzero(scr)
        y = scr[ys, xs]
        sel = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:10_000] for c in np.unique(y)])
        lab = np.zeros_like(scr)
        lab[ys[sel], xs[sel]] = y[sel]
        rf = RandomForestClassifier(n_estimators=60, max_depth=16, n_jobs=-1, random_state=0)
        rf = fit_segmenter(lab, feats, rf)
        predict_segmenter(feats, rf)
        t4 = time.perf_counter()
        c4 = time.process_time()
        del feats
        ours, sk = t2 - t0, t4 - t3
        cpu_ours, cpu_sk = c2 - c0, c4 - c3
        lines.append(
            f"| {side}x{side} ({mp} Mpx) | {t1 - t0:.2f} | {t2 - t1:.2f} | **{ours:.2f}** | {sk:.2f} | "
            f"**{sk / ours:.1f}x** | {cpu_ours:.2f} | {cpu_sk:.2f} | **{cpu_sk / cpu_ours:.1f}x** |"
        )
        print(lines[-1], f"(features: ours {nf}, skimage {4 * num_sigma})", flush=True)
    lines.append("")


def _mosaic(tiles, rows, cols):
    return np.vstack([np.hstack(tiles[r * cols : (r + 1) * cols]) for r in range(rows)])


def live_images(data: Path):
    """1 and 2 Mpx images with masks: mosaics of the superalloy val images (synthetic when absent)."""
    root = data / "nasa-superalloy"
    if (root / "val").is_dir():
        imgs, masks = load_superalloy(root, "val")
        imgs = [im.astype(np.float32) / float(np.percentile(im, 99.5)) for im in imgs]  # uint8/uint16 mixed
        order = [0, 1, 2, 3, 1, 0, 3, 2]  # 512x512 tiles
        return "superalloy val mosaic", [
            (_mosaic([imgs[i] for i in order[:4]], 2, 2), _mosaic([masks[i] for i in order[:4]], 2, 2)),
            (_mosaic([imgs[i] for i in order], 2, 4), _mosaic([masks[i] for i in order], 2, 4)),
        ]
    rng = np.random.default_rng(0)
    return "synthetic two-phase", [synthetic(1000, rng), synthetic(1414, rng)]


def _clock(fn, before=None, repeat: int = 2):
    """The least wall and the least CPU seconds of ``repeat`` runs of ``fn()`` (``before()`` untimed before each)."""
    best = (np.inf, np.inf)
    for _ in range(repeat):
        if before is not None:
            before()
        c, t = time.process_time(), time.perf_counter()
        fn()
        best = (min(best[0], time.perf_counter() - t), min(best[1], time.process_time() - c))
    return best


def live_timing(data: Path, lines: list, live_trees: int, view=(768, 1024)):
    """What the widget does: the first Train (features computed) and a live update after one more stroke."""
    name, pairs = live_images(data)
    warm = np.random.default_rng(2)  # imports and thread pools start outside the timed calls
    wimg, wmask = synthetic(256, warm)
    PixelClassifier(n_estimators=5).fit(wimg, make_scribbles(wmask, warm)).predict(wimg)
    lines += [
        "## Live update (CPU)",
        "",
        f"Images: {name} (1 and 2 Mpx); scribbles as above, minus one stroke per class for the",
        "state before the new stroke. Wall and CPU (process time of all threads) in seconds, the faster of",
        "two runs each (the first Train: from an empty feature cache both times).",
        "",
        "| image | forest | first Train: features + train + predict all | after a stroke: train + predict all |"
        f" after a stroke: train + predict a {view[1]}x{view[0]} view |",
        "|---|---|---|---|---|",
    ]
    for img, mask in pairs:
        rng = np.random.default_rng(1)
        before = make_scribbles(mask, rng, strokes=3, edge_strokes=1)
        after = before.copy()
        extra = make_scribbles(mask, rng, strokes=1, edge_strokes=0, budget=0.002)
        after[(after == 0) & (extra > 0)] = extra[(after == 0) & (extra > 0)]
        h, w = img.shape
        y0, x0 = (h - view[0]) // 2, (w - view[1]) // 2
        region = (y0, y0 + view[0], x0, x0 + view[1])
        for trees in (60, live_trees):
            clf = PixelClassifier(n_estimators=trees)
            first = _clock(lambda: (clf.fit(img, before), clf.predict(img)), clf.cache.clear)  # noqa: B023
            whole = _clock(lambda: (clf.fit(img, after), clf.predict(img)))  # noqa: B023
            field = _clock(lambda: (clf.fit(img, after), clf.predict(img, region=region)))  # noqa: B023
            depth = np.mean([e.tree_.max_depth for e in clf.estimator_.estimators_])
            cells = " | ".join(f"{t:.2f} wall / {c:.2f} CPU" for t, c in (first, whole, field))
            lines.append(f"| {w}x{h} ({h * w / 1e6:.1f} Mpx) | {trees} trees (mean depth {depth:.1f}) | {cells} |")
            print(lines[-1], flush=True)
    clf.cache.clear()
    lines.append("")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--no-timing", action="store_true")
    ap.add_argument("--no-accuracy", action="store_true")
    ap.add_argument("--sets", default="superalloy,bam,shale", help="data sets to score (comma-separated)")
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 4, 16])
    ap.add_argument("--no-skimage", action="store_true", help="leave out the scikit-image baseline")
    ap.add_argument("--live", action="store_true", help="time the live update (1 and 2 Mpx)")
    ap.add_argument("--live-trees", type=int, default=20, help="forest size of the widget's live mode")
    ap.add_argument("--unet", action="store_true", help="add U-Nets trained on the scribbles and on full masks")
    ap.add_argument("--unet-minutes", type=float, default=3.0, help="training budget per U-Net (wall clock)")
    ap.add_argument(
        "--unet-cpu-seconds", type=float, default=None, help="training budget in process CPU seconds (instead)"
    )
    ap.add_argument("--unet-epochs", type=int, default=40, help="at most this many epochs per U-Net")
    ap.add_argument("--unet-steps", type=int, default=20, help="steps (batches of 8 patches) per epoch")
    ap.add_argument("--unet-encoder", default="tu-resnet10t")
    ap.add_argument("--unet-depth", type=int, default=4)
    ap.add_argument("--unet-patch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--out", default=None, help="write the markdown here (default: print only)")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    lines = [
        "# Pixel classifier (scribbles -> segmentation)",
        "",
        (
            f"Machine: {platform.machine()}, {os.cpu_count()}-core CPU, shared with other jobs (noisy timings); "
            "no GPU used."
        ),
        "",
        "Command: `python benchmarks/eval_pixel_classifier.py" + (" " + " ".join(argv) if argv else "") + "`",
        "",
    ]
    if not args.no_accuracy:
        if not data.is_dir():
            print(f"data folder {data} not found: accuracy part skipped")
        else:
            sets = set(args.sets.split(","))
            if "superalloy" in sets and (data / "nasa-superalloy").is_dir():
                eval_superalloy(data / "nasa-superalloy", lines, np.random.default_rng(0), args, not args.no_skimage)
            if "bam" in sets and (data / "bam-tio2-sem").is_dir():
                imgs, masks = load_bam(data / "bam-tio2-sem")
                eval_binary("BAM TiO2 particles", imgs, masks, lines, np.random.default_rng(0), "particles", args)
            if "shale" in sets and (data / "nrcan-shale-sem").is_dir():
                imgs, masks = load_shale(data / "nrcan-shale-sem")
                eval_binary(
                    "NRCan shale: grains vs matrix", imgs, masks, lines, np.random.default_rng(0), "grains", args
                )
    if args.live:
        live_timing(data, lines, args.live_trees)
    if not args.no_timing:
        timing([int(s) if float(s).is_integer() else s for s in args.sizes], lines, np.random.default_rng(0))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")
        print("wrote", args.out)


if __name__ == "__main__":
    main(sys.argv[1:])
