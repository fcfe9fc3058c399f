"""Evaluate the classifiers and write docs/evaluation/classification.md.

1. ``nanofiber-sem`` (3 quality classes, 8 source micrographs each): grouped
   cross-validation of the image/tile classifier, feature backend and CNN
   backend. Every micrograph is cut into tiles; all tiles of one micrograph
   stay in one fold (``groups``). Accuracy is reported per tile and per
   micrograph (mean of its tiles' probabilities). For contrast, the same
   tiles are also scored with an ungrouped (leaky) split.
2. Synthetic additive-manufacturing pores (``sample_am_pores``: gas, keyhole,
   lack-of-fusion): object classifier on morphology features, 5-fold CV on the
   ground-truth objects, on objects segmented from the image by a threshold,
   and trained on one sample / tested on two others. An area-only baseline
   shows how much the shape adds.

Usage::

    python benchmarks/eval_classifiers.py [DATA_FOLDER] [--cnn-epochs 12] [--cnn-folds 4]

``DATA_FOLDER`` defaults to ``../shared/data`` beside the repository; the real
data part is skipped when it is absent. Runs on CPU unless CUDA is present
(the CNN then trains there).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from napari_sem_analysis.classification import (  # noqa: E402
    ImageClassifier,
    ObjectClassifier,
    load_image_folder,
    object_features,
)


def cm_table(result) -> str:
    names = result.class_names
    lines = ["| true \\ predicted | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name, row in zip(names, result.confusion_matrix):
        lines.append(f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |")
    return "\n".join(lines)


def per_class_table(result) -> str:
    lines = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for name, row in result.per_class.iterrows():
        lines.append(
            f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {int(row['support'])} |"
        )
    return "\n".join(lines)


def sample_prefix(path) -> str:
    """Specimen name from a nanofiber file name: translated_PP28_01_1.tif -> pp28."""
    stem = Path(path).stem
    stem = stem[len("translated_") :] if stem.startswith("translated_") else stem
    return stem.split("_")[0].rstrip("-").lower()


def image_level(result, groups, y) -> tuple[float, np.ndarray]:
    """Accuracy per source image: mean of its tiles' out-of-fold probabilities."""
    probs = pd.DataFrame(result.probabilities).groupby(groups).mean()
    truth = pd.Series(np.asarray(y, dtype=object)).groupby(groups).first()
    pred = np.asarray(result.class_names, dtype=object)[probs.to_numpy().argmax(axis=1)]
    return float((pred == truth.to_numpy()).mean()), pred


def eval_nanofiber(folder: Path, args, out: list[str]):
    data = load_image_folder(folder, tile_size=args.tile)
    n_img = len(data.paths)
    out.append("## nanofiber-sem: image/tile classifier (grouped cross-validation)\n")
    out.append(
        f"{n_img} micrographs ({', '.join(data.class_names)}; 700x1024 px), each cut into "
        f"{args.tile}x{args.tile} tiles ({len(data.images)} tiles, {len(data.images) // n_img} per micrograph). "
        "Splits are stratified and **grouped by micrograph**: all tiles of one micrograph are in the same "
        "fold, so no tile of a test micrograph was seen in training. *Tile accuracy* scores every tile; "
        "*micrograph accuracy* averages the tile probabilities of each micrograph.\n"
    )
    rows = []
    results = {}
    for model in args.models:
        t0 = time.perf_counter()
        clf = ImageClassifier("features", model, class_names=data.class_names)
        res = clf.cross_validate(data.images, data.y, groups=data.groups, n_splits=args.folds)
        dt = time.perf_counter() - t0
        acc_img, _ = image_level(res, data.groups, data.y)
        rows.append((f"features + {model}", res.n_splits, res.accuracy, res.balanced_accuracy, acc_img, dt))
        results[f"features + {model}"] = res
        print(f"features {model}: tile {res.accuracy:.3f}, image {acc_img:.3f} ({dt:.0f} s)", flush=True)
    # stricter: group by specimen (file-name prefix, e.g. PP28_01 and PP28_02 are the same specimen)
    specimen = [sample_prefix(p) for p in data.paths]
    spec_groups = np.array([specimen[g] for g in data.groups], dtype=object)
    clf = ImageClassifier("features", args.models[0], class_names=data.class_names)
    try:
        strict = clf.cross_validate(data.images, data.y, groups=spec_groups, n_splits=args.folds)
        strict_img, _ = image_level(strict, data.groups, data.y)
        print(
            f"specimen-grouped features {args.models[0]}: tile {strict.accuracy:.3f}, image {strict_img:.3f}",
            flush=True,
        )
    except Exception as exc:  # too few specimens per class
        strict, strict_img = None, None
        print(f"specimen-grouped CV not possible: {exc}")
    # leaky split for contrast (tiles of a micrograph on both sides)
    clf = ImageClassifier("features", args.models[0], class_names=data.class_names)
    leaky = clf.cross_validate(data.images, data.y, groups=None, n_splits=args.folds)
    print(f"leaky (ungrouped) features {args.models[0]}: tile {leaky.accuracy:.3f}", flush=True)

    cnn_note = ""
    if args.cnn_epochs > 0:
        from napari_sem_analysis._device import describe_device, select_device

        device = describe_device(select_device("auto"))
        t0 = time.perf_counter()
        clf = ImageClassifier(
            "cnn",
            class_names=data.class_names,
            input_size=args.cnn_input,
            epochs=args.cnn_epochs,
            width=16,
            batch_size=32,
            seed=0,
        )
        res = clf.cross_validate(data.images, data.y, groups=data.groups, n_splits=args.cnn_folds)
        dt = time.perf_counter() - t0
        acc_img, _ = image_level(res, data.groups, data.y)
        name = f"CNN (small, {args.cnn_epochs} epochs)"
        rows.append((name, res.n_splits, res.accuracy, res.balanced_accuracy, acc_img, dt))
        results[name] = res
        cnn_note = (
            f"The CNN is the built-in 4-block network (width 16, ~0.3 M parameters) trained from scratch on the "
            f"{args.tile}-px tiles resized to {args.cnn_input} px, with flips, 90-degree rotations and "
            f"brightness/contrast augmentation and 8-fold test-time averaging; {args.cnn_epochs} epochs per fold on "
            f"**{device}** ({platform.processor() or platform.machine()}, shared 2-core machine, no GPU in this "
            f"session), {res.n_splits} folds to keep the run short. It is not tuned: more epochs (on a GPU) would "
            "likely help.\n"
        )
        print(f"cnn: tile {res.accuracy:.3f}, image {acc_img:.3f} ({dt:.0f} s)", flush=True)

    out.append("| classifier | folds | tile accuracy | tile balanced acc. | micrograph accuracy | time (s) |")
    out.append("|---|---|---|---|---|---|")
    for name, k, acc, bacc, acc_img, dt in rows:
        out.append(f"| {name} | {k} | {acc:.3f} | {bacc:.3f} | {acc_img:.3f} | {dt:.0f} |")
    if strict is not None:
        out.append(
            f"| features + {args.models[0]}, grouped by specimen | {strict.n_splits} | {strict.accuracy:.3f} | "
            f"{strict.balanced_accuracy:.3f} | {strict_img:.3f} | – |"
        )
    out.append(
        f"| *leaky split (ungrouped), features + {args.models[0]}* | {leaky.n_splits} | *{leaky.accuracy:.3f}* | "
        f"*{leaky.balanced_accuracy:.3f}* | – | – |"
    )
    out.append("")
    specs = sorted(set(specimen), key=str.lower)
    out.append(
        f"Caveats: with 24 micrographs one micrograph is 0.042 of micrograph accuracy. The file names show "
        f"{len(specs)} specimens ({', '.join(specs)}), each of one class, so micrographs of one specimen are "
        "related; the *grouped by specimen* line keeps each specimen in one fold (only "
        f"{strict.n_splits if strict is not None else '?'} folds are possible, each class has 2-3 specimens): "
        "it measures generalisation to an unseen specimen, which is harder and the fairer figure for new "
        "material.\n"
    )
    out.append(
        "The ungrouped line is shown only to make the point of grouping: when tiles of the same micrograph "
        "land on both sides of the split, the score is inflated. Times include feature extraction on the "
        "shared CPU.\n"
    )
    if cnn_note:
        out.append(cnn_note)
    best = results[f"features + {args.models[0]}"]
    out.append(f"Per-class figures, features + {args.models[0]} (tiles):\n")
    out.append(per_class_table(best) + "\n")
    out.append(cm_table(best) + "\n")
    for name, res in results.items():
        if name.startswith("CNN"):
            out.append(f"Per-class figures, {name} (tiles):\n")
            out.append(per_class_table(res) + "\n")
            out.append(cm_table(res) + "\n")
    return rows


def segmented_pores(sample):
    """Threshold the image (pores are dark) and label; class of each object from the overlapping truth."""
    from skimage.filters import threshold_otsu
    from skimage.measure import label
    from skimage.morphology import remove_small_objects

    img = sample.image.astype(float)
    mask = img < threshold_otsu(img)
    mask = remove_small_objects(mask, max_size=8)
    seg = label(mask).astype(np.int32)
    truth = sample.labels
    ids, cls = [], []
    for lab in range(1, int(seg.max()) + 1):
        over = truth[seg == lab]
        over = over[over > 0]
        if over.size == 0:
            continue
        gt = int(np.bincount(over).argmax())
        ids.append(lab)
        cls.append(sample.class_names[sample.classes[gt]])
    return seg, dict(zip(ids, cls))


def eval_pores(args, out: list[str]):
    from napari_sem_analysis.sample_data import sample_am_pores

    out.append("## Synthetic AM pores: object classifier (morphology features)\n")
    samples = [sample_am_pores(seed=s, n_pores=args.n_pores) for s in (0, 1, 2)]
    names = list(samples[0].class_names)

    def table_of(sample, labels=None, classes=None):
        labels = sample.labels if labels is None else labels
        t = object_features(labels, sample.image, pixel_size=sample.pixel_size)
        if classes is None:
            y = np.array([names[sample.classes[int(l)]] for l in t["label"]])
        else:
            keep = t["label"].isin(list(classes))
            t = t[keep].reset_index(drop=True)
            y = np.array([classes[int(l)] for l in t["label"]])
        return t, y

    rows = []
    t0, y0 = table_of(samples[0])
    clf = ObjectClassifier("shape", class_names=names)
    res = clf.cross_validate(t0, y0, n_splits=5)
    rows.append(("ground-truth objects, 5-fold CV (sample seed 0)", len(y0), res.accuracy, res.balanced_accuracy))
    main = res
    res_lr = ObjectClassifier("shape", model="logistic_regression", class_names=names).cross_validate(
        t0, y0, n_splits=5
    )
    rows.append(("same, logistic regression", len(y0), res_lr.accuracy, res_lr.balanced_accuracy))
    area = ObjectClassifier(["area"], class_names=names).cross_validate(t0, y0, n_splits=5)
    rows.append(("baseline: area only, 5-fold CV", len(y0), area.accuracy, area.balanced_accuracy))

    clf.fit(t0, y0)
    for seed, s in enumerate(samples[1:], start=1):
        t, y = table_of(s)
        acc = float((clf.predict(t) == y).mean())
        rows.append((f"trained on seed 0, tested on seed {seed}", len(y), acc, float("nan")))
    seg, classes = segmented_pores(samples[0])
    ts, ys = table_of(samples[0], seg, classes)
    res_seg = ObjectClassifier("shape", class_names=names).cross_validate(ts, ys, n_splits=5)
    rows.append(
        ("objects segmented by Otsu threshold, 5-fold CV", len(ys), res_seg.accuracy, res_seg.balanced_accuracy)
    )

    out.append(
        f"`sample_am_pores(seed, n_pores={args.n_pores})` (1024x1024 px, 500 nm/px) gives gas, keyhole and "
        "lack-of-fusion pores with known classes. Features: the `shape` preset of `ObjectClassifier` "
        "(morphology columns of `measure`: area, equivalent diameter, perimeter, circularity, aspect ratio, "
        "Feret diameters, axes, solidity, eccentricity; no position, no orientation), random forest.\n"
    )
    out.append("| setting | objects | accuracy | balanced accuracy |")
    out.append("|---|---|---|---|")
    for name, n, acc, bacc in rows:
        b = "–" if np.isnan(bacc) else f"{bacc:.3f}"
        out.append(f"| {name} | {n} | {acc:.3f} | {b} |")
    out.append("")
    out.append("Per-class figures, ground-truth objects, 5-fold CV:\n")
    out.append(per_class_table(main) + "\n")
    out.append(cm_table(main) + "\n")
    return rows, area


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(REPO / "docs" / "evaluation" / "classification.md"))
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--folds", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["random_forest", "logistic_regression"])
    parser.add_argument("--cnn-epochs", type=int, default=12)
    parser.add_argument("--cnn-folds", type=int, default=4)
    parser.add_argument("--cnn-input", type=int, default=128)
    parser.add_argument("--n-pores", type=int, default=150)
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args(argv)

    out = [
        "# Classification: evaluation\n",
        "Written by `benchmarks/eval_classifiers.py` "
        f"({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}). All accuracies are cross-validated "
        "(out-of-fold); splits on real images are grouped by source micrograph.\n",
    ]
    t_start = time.perf_counter()
    folder = Path(args.data) / "nanofiber-sem"
    if args.skip_real or not folder.is_dir():
        out.append(f"## nanofiber-sem\n\nskipped ({folder} not present, or --skip-real).\n")
        print(f"skipping real data: {folder} not found")
    else:
        eval_nanofiber(folder, args, out)
    eval_pores(args, out)
    out.append(f"Total run time: {time.perf_counter() - t_start:.0f} s.\n")
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
