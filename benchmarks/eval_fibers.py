"""Fibres and networks: accuracy on synthetic mats, local thickness vs PoreSpy, nanofibre quality.

Three parts (``--part``):

``synthetic``
    Fibre mats from :func:`sample_fibers` with known diameters, orientations
    and beads: diameter error of the median (constant-diameter mats, 3..24
    px), alignment and orientation error, bead precision / recall / F1.
``thickness``
    :func:`local_thickness` against PoreSpy's ``local_thickness`` on the
    nanoporous-gold image (ligaments and pores) and on synthetic shapes:
    max abs difference, fraction within 1 px, speed ratio in one run. Needs
    PoreSpy (``pip install --no-deps porespy`` plus numba, edt,
    connected-components-3d, deprecated; pyvista / pyevtk are stubbed, only
    PoreSpy's 3-D export uses them). Skipped when PoreSpy is missing.
``spindles``
    :func:`find_spindles` on mats from :func:`sample_fibers` with known
    long, shallow swellings (``n_spindles``): precision, recall, measured
    length against the length of the part wider than ``low`` x the fibre,
    and spindles found on the same mats drawn without them; along the
    centreline segments (the default) and along fibre tracks followed through
    the crossings (``through_crossings=True``), also on mats whose spindles lie
    where another fibre crosses them (``n_crossing_spindles``).
``nanofiber``
    Leave-one-specimen-out classification of ``nanofiber-sem`` (three quality
    classes, 7 specimens named by the file-name rule of
    ``load_image_folder``: the stem after the shared ``translated_`` up to
    the first ``_`` or ``-``, i.e. ppc9, ppc10, ppc3, ppc5, pan3, pp28, pp29)
    with physical fibre features, texture features and both; the ImageClassifier's
    random forest (300 trees, balanced class weights) and logistic regression, and
    a choice between the two made inside each training fold by an inner
    leave-specimen-out on the training specimens only. Also 4-fold grouped by
    micrograph. ``--jobs N`` computes the features in N processes.

Run from the repository root::

    PYTHONPATH=src python benchmarks/eval_fibers.py [DATA] [--part all]

``DATA`` defaults to ``../shared/data``; parts whose data are absent are skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------------
# synthetic fibre mats
# ---------------------------------------------------------------------------


def _bead_f1(truth, table, tol_factor: float = 0.6):
    """Greedy matching of detected bead centres to true ones within tol_factor x the true bead width."""
    gt = np.array([(b[0], b[1], b[2]) for b in truth], float).reshape(-1, 3)
    det = table[["y", "x"]].to_numpy(float).reshape(-1, 2)
    if not len(gt) or not len(det):
        tp = 0
    else:
        d = np.hypot(gt[:, None, 0] - det[None, :, 0], gt[:, None, 1] - det[None, :, 1])
        tp, used = 0, set()
        for i in np.argsort(d.min(axis=1)):
            for j in np.argsort(d[i]):
                if d[i, j] > tol_factor * gt[i, 2]:
                    break
                if j not in used:
                    used.add(j)
                    tp += 1
                    break
    p = tp / len(det) if len(det) else 1.0
    r = tp / len(gt) if len(gt) else 1.0
    return tp, len(det), len(gt), p, r, (2 * p * r / (p + r) if p + r else 0.0)


def part_synthetic(n_seeds: int = 3, first_seed: int = 100) -> None:
    from napari_sem_analysis import measure_fibers, sample_fibers

    print("\n== synthetic fibre mats (sample_fibers) ==")
    print("diameter: constant-diameter mats (16 fibres, no beads), median of the local diameters")
    print(f"{'true d (px)':>11} {'image: median':>14} {'err':>7} {'mask: median':>13} {'err':>7}")
    worst_big, worst_small = 0.0, 0.0
    for d in (3, 4, 6, 8, 12, 16, 24):
        meds_i, meds_m = [], []
        for seed in range(n_seeds):
            s = sample_fibers(seed, diameter=(d, d), n_beads=0, n_blobs=0, n_fibers=16, alignment=0.3)
            meds_i.append(measure_fibers(s.image, max_diameter=max(3 * d, 20), pores=False).summary["diameter_median"])
            meds_m.append(measure_fibers(mask=s.labels > 0, pores=False).summary["diameter_median"])
        ei = max(abs(m - d) for m in meds_i)
        em = max(abs(m - d) for m in meds_m)
        if d >= 8:
            worst_big = max(worst_big, ei / d)
        else:
            worst_small = max(worst_small, ei)
        print(f"{d:>11} {np.mean(meds_i):>14.2f} {ei:>7.2f} {np.mean(meds_m):>13.2f} {em:>7.2f}")
    print(f"worst |error| (image): {100 * worst_big:.1f} % of d for d >= 8 px; {worst_small:.2f} px below 8 px")
    print(
        f"\nmats with diameters 8-16 px, beads (spindles 2.6-3.6 x d) and blobs, alignment 0 / 0.5 / 0.8, "
        f"seeds {first_seed}..{first_seed + n_seeds - 1}"
    )
    print(
        f"{'seed':>4} {'align req':>9} {'align true':>10} {'meas':>6} {'orient true':>11} {'meas':>6} "
        f"{'d med true':>10} {'meas':>6} {'beads tp/det/true':>17} {'F1':>5} {'s':>5}"
    )
    tot = np.zeros(3)
    align_err = []
    for a in (0.0, 0.5, 0.8):
        for seed in range(n_seeds):
            s = sample_fibers(first_seed + seed, alignment=a)
            t0 = time.perf_counter()
            r = measure_fibers(s.image, max_diameter=50)
            dt = time.perf_counter() - t0
            tp, nd, ng, _, _, f1 = _bead_f1(s.info["beads"], r.bead_table)
            tot += (tp, nd, ng)
            S = r.summary
            align_err.append(abs(S["alignment"] - s.info["alignment"]))
            print(
                f"{seed:>4} {a:>9.1f} {s.info['alignment']:>10.3f} {S['alignment']:>6.3f} "
                f"{s.info['orientation_mean']:>11.1f} {S['orientation_mean']:>6.1f} "
                f"{s.info['diameter_median']:>10.2f} {S['diameter_median']:>6.2f} "
                f"{f'{tp}/{nd}/{ng}':>17} {f1:>5.2f} {dt:>5.1f}"
            )
    p, rcl = tot[0] / max(tot[1], 1), tot[0] / max(tot[2], 1)
    print(
        f"beads overall: precision {p:.3f}, recall {rcl:.3f}, F1 {2 * p * rcl / max(p + rcl, 1e-9):.3f}; "
        f"alignment |error| max {max(align_err):.3f}, mean {np.mean(align_err):.3f}"
    )


def _expected_stretch(amp: float, length: float, low: float = 1.15) -> float:
    """Length of the part of a ``d (1 + (amp - 1) cos^2(pi t / L))`` swelling wider than ``low`` d."""
    return 2 * length / np.pi * np.arccos(np.sqrt((low - 1) / (amp - 1))) if amp > low else 0.0


def part_spindles(n_seeds: int = 4, first_seed: int = 100) -> None:
    from napari_sem_analysis import find_spindles, measure_fibers, sample_fibers

    mat = dict(shape=(512, 512), n_fibers=10, diameter=(8, 14), n_beads=4, n_blobs=1)
    kinds = {
        "sparse": (dict(shape=(256, 320), n_fibers=5, diameter=(9, 11), n_beads=0, n_blobs=0), dict(n_spindles=4)),
        "mat": (mat, dict(n_spindles=4)),
        # spindles centred where another fibre crosses them (over or under): merged with it in the mask
        "crossed": (mat, dict(n_crossing_spindles=4)),
    }
    methods = {"segments": False, "tracks": True}  # find_spindles(through_crossings=...)
    print(f"\n== spindles (find_spindles) on generated mats, seeds {first_seed}..{first_seed + n_seeds - 1} ==")
    print(
        f"{'kind':<8} {'method':<9} {'seed':>4} {'true':>5} {'found':>6} {'matched':>8} {'on clean mat':>13} "
        f"{'length / expected':>30}"
    )
    for kind, (kw, extra) in kinds.items():
        tot = {m: np.zeros(4) for m in methods}
        ratios: dict = {m: [] for m in methods}
        for seed in range(first_seed, first_seed + n_seeds):
            s = sample_fibers(seed, **extra, **kw)
            r = measure_fibers(s.image, max_diameter=40, pores=False)
            rc = measure_fibers(sample_fibers(seed, **kw).image, max_diameter=40, pores=False)
            for method, through in methods.items():
                t = find_spindles(r, through_crossings=through).table
                n_clean = len(find_spindles(rc, through_crossings=through).table)
                found = t[["y", "x"]].to_numpy(float).reshape(-1, 2)
                used: set[int] = set()
                rs = []
                for y, x, w, length, d in s.info["spindles"]:
                    if not len(found):
                        break
                    dist = np.hypot(found[:, 0] - y, found[:, 1] - x)
                    for j in np.argsort(dist):
                        if dist[j] > 0.25 * length:
                            break
                        if j not in used:
                            used.add(int(j))
                            rs.append(t["length"].iloc[j] / _expected_stretch(w / d, length))
                            break
                ratios[method] += rs
                tot[method] += (len(s.info["spindles"]), len(t), len(used), n_clean)
                print(
                    f"{kind:<8} {method:<9} {seed:>4} {len(s.info['spindles']):>5} {len(t):>6} {len(used):>8} "
                    f"{n_clean:>13} {' '.join(f'{r:.2f}' for r in rs):>30}"
                )
        for method in methods:
            tt, rr = tot[method], ratios[method]
            p = tt[2] / max(tt[1], 1)
            rec = tt[2] / max(tt[0], 1)
            print(
                f"{kind} / {method}: precision {p:.3f}, recall {rec:.3f} ({int(tt[2])} of {int(tt[0])}); "
                f"spindles found on the mats without: {int(tt[3])}; length / expected: median "
                f"{np.median(rr) if rr else float('nan'):.2f}, range "
                f"{min(rr, default=float('nan')):.2f}-{max(rr, default=float('nan')):.2f}"
            )


# ---------------------------------------------------------------------------
# local thickness vs PoreSpy
# ---------------------------------------------------------------------------


def _import_porespy():
    # PoreSpy imports pyvista / pyevtk for 3-D export only; stub them when absent
    for name in ("pyvista", "pyevtk", "pyevtk.hl"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
    if not hasattr(sys.modules["pyevtk"], "hl"):
        sys.modules["pyevtk"].hl = sys.modules["pyevtk.hl"]
    if not hasattr(sys.modules["pyevtk.hl"], "imageToVTK"):
        sys.modules["pyevtk.hl"].imageToVTK = None
    try:
        import porespy
    except ImportError as exc:
        print(f"PoreSpy not importable ({exc}): thickness comparison skipped")
        return None
    return porespy


def _compare(name, mask, ps, rows):
    from napari_sem_analysis import local_thickness

    # PoreSpy gives radii (every integer size up to the largest by default); our diameters are
    # 2 r - 1 (disc spans in pixels), so compare radii r = (thickness + 1) / 2
    ours = {}
    for conv in ("exact", "integer"):
        t0 = time.perf_counter()
        th = local_thickness(mask, integer_radii=conv == "integer").thickness
        ours[conv] = (np.where(mask, (th + 1.0) / 2.0, 0.0), time.perf_counter() - t0)
    for method in ("bf", "dt"):
        t0 = time.perf_counter()
        ref_r = ps.filters.local_thickness(mask, method=method)
        t_ps = time.perf_counter() - t0
        for conv, (r_ours, t_ours) in ours.items():
            diff = np.abs(r_ours - ref_r)[mask]
            rows.append(
                (
                    name,
                    method,
                    conv,
                    int(mask.sum()),
                    float(diff.max()),
                    float(np.mean(diff <= 1.0 + 1e-6)),
                    float(np.mean(r_ours[mask])),
                    float(np.mean(ref_r[mask])),
                    t_ps,
                    t_ours,
                )
            )


def part_thickness(data: Path) -> None:
    from napari_sem_analysis import read_sem, threshold

    print("\n== local_thickness vs PoreSpy local_thickness (methods 'bf' and 'dt', every integer radius) ==")
    ps = _import_porespy()
    if ps is None:
        return
    rows: list = []
    ps.filters.local_thickness(np.ones((8, 8), bool) & (np.arange(8) > 0), method="bf")  # numba compile
    # synthetic shapes
    from scipy import ndimage as ndi

    yy, xx = np.mgrid[:256, :256]
    disc = (yy - 128) ** 2 + (xx - 128) ** 2 < 60**2
    bars = np.zeros((256, 256), bool)
    for i, w in enumerate((3, 6, 9, 14, 21)):
        bars[:, 10 + 48 * i : 10 + 48 * i + w] = True
    annulus = disc & ((yy - 128) ** 2 + (xx - 128) ** 2 >= 40**2)
    rng = np.random.default_rng(0)
    blobs = ndi.gaussian_filter(rng.random((512, 512)), 6) > 0.5
    for name, m in (("disc r=60", disc), ("bars 3-21 px", bars), ("annulus 40-60", annulus), ("random 512^2", blobs)):
        _compare(name, m, ps, rows)
    npg = data / "aquami-nanoporous-gold" / "Sample.tif"
    if npg.exists():
        img = read_sem(npg)
        mask = threshold(np.asarray(img.data), method="otsu")
        _compare("NPG ligaments", mask, ps, rows)
        _compare("NPG pores", ~mask, ps, rows)
    else:
        print(f"{npg} missing: nanoporous gold skipped")
    big = ndi.gaussian_filter(np.random.default_rng(1).random((4096, 4096)).astype(np.float32), 6) > 0.5
    t0 = time.perf_counter()
    from napari_sem_analysis import local_thickness

    local_thickness(big)
    print(f"4096 x 4096 random network (mean thickness ~22 px): local_thickness {time.perf_counter() - t0:.1f} s")
    print("\nradii in px (PoreSpy's unit); ours: exact radii (default) or integer_radii=True")
    print(
        f"{'mask':<16} {'PS method':<9} {'ours':<8} {'px':>8} {'max|dr|':>8} {'|dr|<=1':>8} "
        f"{'mean r ours':>11} {'mean r PS':>9} {'t PS s':>7} {'t ours s':>8} {'speed x':>7}"
    )
    for n, lab, conv, px, mx, frac, mo, mp, tp, to in rows:
        print(
            f"{n:<16} {lab:<9} {conv:<8} {px:>8} {mx:>8.2f} {frac:>8.4f} {mo:>11.2f} {mp:>9.2f} "
            f"{tp:>7.2f} {to:>8.2f} {tp / to:>7.1f}"
        )


# ---------------------------------------------------------------------------
# nanofibre quality, leave one specimen out
# ---------------------------------------------------------------------------


def _features_of(path: str):
    from napari_sem_analysis import fiber_features, image_features
    from napari_sem_analysis.io import read_image

    im, _ = read_image(path)
    t0 = time.perf_counter()
    ff = fiber_features(im)
    t1 = time.perf_counter()
    tf = image_features(im)
    return ff, tf, t1 - t0, time.perf_counter() - t1


def _nanofiber_features(folder: Path, cache: Path | None, jobs: int = 1):
    files = sorted(p for p in folder.glob("*/*") if p.suffix.lower() in (".tif", ".tiff", ".png"))
    if cache is not None and cache.exists():
        z = np.load(cache, allow_pickle=False)
        if list(z["files"]) == [str(f) for f in files]:
            return files, z["Xf"], list(z["nf"]), z["Xt"], list(z["nt"])
    if jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs) as ex:
            results = list(ex.map(_features_of, [str(f) for f in files]))
    else:
        results = [_features_of(str(f)) for f in files]
    for i, (f, (_, _, t_f, t_t)) in enumerate(zip(files, results, strict=True)):
        print(f"  [{i + 1}/{len(files)}] {f.parent.name}/{f.name}: fibre {t_f:.1f} s, texture {t_t:.1f} s")
    nf, nt = list(results[0][0]), list(results[0][1])
    Xf = np.asarray([[r[0][k] for k in nf] for r in results])
    Xt = np.asarray([[r[1][k] for k in nt] for r in results])
    if cache is not None:
        np.savez(cache, files=np.array([str(f) for f in files]), Xf=Xf, nf=np.array(nf), Xt=Xt, nt=np.array(nt))
    return files, Xf, nf, Xt, nt


_MODELS = ("random_forest", "logistic_regression")


def _fit_predict(model: str, Xtr, ytr, Xte, n_estimators=300):
    from napari_sem_analysis.classification.sklearn_models import _make_sklearn_model

    clf = _make_sklearn_model(model, 0, n_estimators)
    clf.fit(Xtr, ytr)
    return clf.predict(Xte)


def _inner_choice(X, y, groups) -> str:
    """The model with the best leave-one-group-out accuracy on the training specimens only."""
    scores = {}
    for model in _MODELS:
        hits = 0
        for g in np.unique(groups):
            t = groups == g
            if len(set(y[~t])) < 2:
                continue
            hits += int(np.sum(_fit_predict(model, X[~t], y[~t], X[t], 100) == y[t]))
        scores[model] = hits
    return max(_MODELS, key=lambda m: scores[m])  # ties: the first (random forest)


def _cv(X, y, groups, classes, model="random_forest"):
    """Predictions with each group held out; ``model="nested"`` picks the model inside each training fold."""
    pred = np.empty(len(y), dtype=object)
    chosen = []
    for g in np.unique(groups):
        test = groups == g
        m = _inner_choice(X[~test], y[~test], groups[~test]) if model == "nested" else model
        chosen.append(m)
        pred[test] = _fit_predict(m, X[~test], y[~test], X[test])
    cm = np.array([[np.sum((y == a) & (pred == b)) for b in classes] for a in classes])
    return float(np.mean(pred == y)), cm, chosen


def _print_cm(classes, cm) -> None:
    recall = cm.diagonal() / cm.sum(axis=1)
    precision = cm.diagonal() / np.maximum(cm.sum(axis=0), 1)
    print(
        "  per class:  "
        + "; ".join(f"{c} recall {r:.2f} precision {p:.2f}" for c, r, p in zip(classes, recall, precision, strict=True))
    )
    print("  confusion (rows true, columns predicted: " + ", ".join(classes) + ")")
    for c, row in zip(classes, cm, strict=True):
        print(f"    {c:<18} " + " ".join(f"{v:>3}" for v in row))


def part_nanofiber(data: Path, cache: Path | None, jobs: int = 1) -> None:
    folder = data / "nanofiber-sem"
    print("\n== nanofibre quality: leave one specimen out ==")
    if not folder.is_dir():
        print(f"{folder} missing: skipped")
        return
    files, Xf, nf, Xt, nt = _nanofiber_features(folder, cache, jobs)
    y = np.array([f.parent.name for f in files], dtype=object)
    from napari_sem_analysis.classification.folders import specimens_from_paths

    spec, rule = specimens_from_paths(files, folder, "filename")
    print(f"specimen rule: {rule}")
    classes = sorted(set(y))
    print("specimens (class: specimen x images):")
    for c in classes:
        print(f"  {c}: " + ", ".join(f"{s} x{np.sum((spec == s) & (y == c))}" for s in sorted(set(spec[y == c]))))
    rng = np.random.default_rng(0)
    # grouped by micrograph: 4 folds, each micrograph once in a test fold, classes stratified
    fold = np.empty(len(y), int)
    for c in classes:
        idx = np.flatnonzero(y == c)
        fold[idx] = rng.permutation(np.arange(len(idx)) % 4)
    sets = (("fibre (physical)", Xf), ("texture", Xt), ("fibre + texture", np.hstack([Xf, Xt])))
    for model in (*_MODELS, "nested"):
        print(
            f"\n-- model: {model}"
            + (" (chosen inside each training fold by inner leave-specimen-out)" if model == "nested" else "")
        )
        for name, X in sets:
            acc, cm, chosen = _cv(X, y, spec, classes, model)
            acc_m, _, _ = _cv(X, y, fold, classes, model)
            print(
                f"\n{name}: leave-specimen-out accuracy {acc:.3f} ({len(set(spec))} folds); "
                f"grouped by micrograph (4-fold) {acc_m:.3f}"
            )
            if model == "nested":
                print(
                    "  chosen per held-out specimen: "
                    + ", ".join(f"{g} {m}" for g, m in zip(np.unique(spec), chosen, strict=True))
                )
            _print_cm(classes, cm)
    print("\nfibre feature medians per class:")
    for k, n in enumerate(nf):
        print(f"  {n:<26} " + "  ".join(f"{c[:8]} {np.median(Xf[y == c, k]):7.3f}" for c in classes))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--part", choices=("all", "synthetic", "spindles", "thickness", "nanofiber"), default="all")
    ap.add_argument("--cache", default=None, help="npz file to cache the nanofibre features in")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=100, help="seed of the first bead mat (fresh mats: 200)")
    ap.add_argument("--jobs", type=int, default=1, help="processes for the nanofibre features")
    args = ap.parse_args(argv)
    data = Path(args.data)
    if args.part in ("all", "synthetic"):
        part_synthetic(args.seeds, args.first_seed)
    if args.part in ("all", "spindles"):
        part_spindles(args.seeds, args.first_seed)
    if args.part in ("all", "thickness"):
        part_thickness(data)
    if args.part in ("all", "nanofiber"):
        part_nanofiber(data, Path(args.cache) if args.cache else None, args.jobs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
