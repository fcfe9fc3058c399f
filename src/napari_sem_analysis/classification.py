"""Object, image and tile classifiers with honest (grouped) validation.

Two classifiers share one design:

* :class:`ObjectClassifier` classifies segmented objects (pores, particles,
  precipitates) from a per-object feature table (the output of
  :func:`napari_sem_analysis.measure`, or :func:`object_features`).
* :class:`ImageClassifier` classifies whole images or tiles of images, with a
  ``"features"`` backend (GLCM, LBP, intensity statistics, FFT band powers and
  edge density fed to a scikit-learn model) or a ``"cnn"`` backend (a small
  convolutional network, or a timm encoder with a classification head,
  trained in PyTorch with flips, 90-degree rotations and brightness/contrast
  augmentation; CUDA is used when present).

Validation is grouped: tiles and augmented copies of one source image are
kept in the same fold (``groups=``), so that accuracy is not inflated by
near-duplicates leaking across the split. :meth:`cross_validate` returns a
:class:`CVResult` with accuracy, per-class precision/recall/F1 and the
confusion matrix (:func:`confusion_matrix_figure` draws it).

Model files never execute code when loaded: a model file is a zip archive
holding ``meta.json`` and either a skops dump (scikit-learn models; only an
allow-list of types is accepted) or a safetensors file (PyTorch weights).
Wrong, corrupt or tampered files raise :class:`SEMAnalysisError`.

scikit-learn, skops, torch and matplotlib are imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ._validation import SEMAnalysisError, check_image, check_labels, check_positive, to_grayscale

__all__ = [
    "ObjectClassifier",
    "ImageClassifier",
    "CVResult",
    "ImageFolderData",
    "image_features",
    "object_features",
    "extract_tiles",
    "tile_positions",
    "tile_probability_map",
    "load_image_folder",
    "confusion_matrix_figure",
    "DEFAULT_PORE_CLASSES",
]

DEFAULT_PORE_CLASSES = ("gas", "keyhole", "lack-of-fusion")

_FORMAT = "napari-sem-analysis-classifier"
_FORMAT_VERSION = 1

_SKLEARN_MODELS = ("random_forest", "extra_trees", "gradient_boosting", "logistic_regression")

# types a skops dump of one of our models may contain beyond skops' defaults
_TRUSTED_SKOPS_TYPES = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    }
)

# columns of a measurement table that describe position, not the object
_NON_FEATURE_PREFIXES = ("label", "centroid", "bbox", "coords", "weighted_centroid", "class", "prob_")
_NON_FEATURE_NAMES = {"y", "x", "row", "col", "z", "index", "orientation", "object", "image", "group"}


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


@dataclass
class CVResult:
    """Cross-validation result.

    Attributes
    ----------
    accuracy : float
        Fraction of samples predicted correctly (out-of-fold).
    balanced_accuracy : float
        Mean per-class recall.
    per_class : pandas.DataFrame
        Precision, recall, F1 and support per class (index: class names).
    confusion_matrix : ndarray (K, K)
        Counts; rows are true classes, columns predicted classes.
    class_names : list of str
    y_true, y_pred : ndarray of str
        Out-of-fold true and predicted class names, in input order.
    probabilities : ndarray (N, K)
        Out-of-fold class probabilities.
    n_splits : int
    grouped : bool
        True when the splits kept each group in one fold.
    folds : ndarray of int
        Test fold of each sample.
    """

    accuracy: float
    balanced_accuracy: float
    per_class: pd.DataFrame
    confusion_matrix: np.ndarray
    class_names: list
    y_true: np.ndarray
    y_pred: np.ndarray
    probabilities: np.ndarray
    n_splits: int
    grouped: bool
    folds: np.ndarray = field(repr=False, default=None)

    def summary(self) -> str:
        """A short text report (accuracy and per-class table)."""
        kind = "grouped " if self.grouped else ""
        lines = [
            f"{self.n_splits}-fold {kind}cross-validation: accuracy {self.accuracy:.3f}, "
            f"balanced accuracy {self.balanced_accuracy:.3f}",
            self.per_class.round(3).to_string(),
        ]
        return "\n".join(lines)

    def figure(self, **kwargs):
        """Confusion-matrix figure (see :func:`confusion_matrix_figure`)."""
        return confusion_matrix_figure(self.confusion_matrix, self.class_names, **kwargs)


def _metrics(y_true_idx, y_pred_idx, proba, class_names, n_splits, grouped, folds) -> CVResult:
    k = len(class_names)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true_idx, y_pred_idx), 1)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    per_class = pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support},
        index=pd.Index(list(class_names), name="class"),
    )
    present = support > 0
    names = np.asarray(class_names, dtype=object)
    return CVResult(
        accuracy=float(tp.sum() / max(cm.sum(), 1)),
        balanced_accuracy=float(recall[present].mean()) if present.any() else 0.0,
        per_class=per_class,
        confusion_matrix=cm,
        class_names=list(class_names),
        y_true=names[y_true_idx],
        y_pred=names[y_pred_idx],
        probabilities=proba,
        n_splits=int(n_splits),
        grouped=bool(grouped),
        folds=folds,
    )


def confusion_matrix_figure(confusion, class_names=None, *, normalize: bool = False, title: str | None = None, ax=None):
    """Draw a confusion matrix with matplotlib.

    Parameters
    ----------
    confusion : ndarray (K, K) or CVResult
        Counts, rows true class, columns predicted class.
    class_names : sequence of str, optional
    normalize : bool
        Show row-normalised fractions (recall per class) instead of counts.
    title : str, optional
    ax : matplotlib Axes, optional
        Draw into this axes; otherwise a new figure is made.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(confusion, CVResult):
        class_names = class_names or confusion.class_names
        if title is None:
            title = f"accuracy {confusion.accuracy:.3f}"
        confusion = confusion.confusion_matrix
    cm = np.asarray(confusion, dtype=float)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise SEMAnalysisError(f"confusion matrix must be square, got shape {cm.shape}")
    k = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise SEMAnalysisError(f"{len(names)} class names for a {k}x{k} confusion matrix")
    shown = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm

    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(1.2 + 0.9 * k, 1.0 + 0.8 * k), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    ax.imshow(shown, cmap="Blues", vmin=0, vmax=max(shown.max(), 1e-9))
    ax.set_xticks(range(k), names, rotation=30, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    thresh = shown.max() / 2 if shown.size else 0
    for i in range(k):
        for j in range(k):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", color="white" if shown[i, j] > thresh else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# labels and splits
# ---------------------------------------------------------------------------


def _encode_labels(y, class_names) -> tuple[np.ndarray, list]:
    """Map labels (names or integer indices) to indices 0..K-1."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise SEMAnalysisError(f"y must be 1-D, got shape {y.shape}")
    if y.size == 0:
        raise SEMAnalysisError("y is empty: give at least one example per class")
    if y.dtype.kind in "iu":
        if class_names is None:
            values = sorted(set(y.tolist()))
            class_names = [str(v) for v in values]
            lookup = {v: i for i, v in enumerate(values)}
            return np.array([lookup[v] for v in y.tolist()], dtype=np.int64), class_names
        class_names = [str(c) for c in class_names]
        if y.min() < 0 or y.max() >= len(class_names):
            raise SEMAnalysisError(
                f"integer class labels must be in 0..{len(class_names) - 1} for class_names {class_names}"
            )
        return y.astype(np.int64), class_names
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise SEMAnalysisError("y must hold class names or integer class indices, not fractions or NaN")
        return _encode_labels(y.astype(np.int64), class_names)
    names = [str(v) for v in y.tolist()]
    if class_names is None:
        class_names = sorted(set(names))
    class_names = [str(c) for c in class_names]
    lookup = {c: i for i, c in enumerate(class_names)}
    unknown = sorted(set(names) - set(lookup))
    if unknown:
        raise SEMAnalysisError(f"labels {unknown} are not among class_names {class_names}")
    return np.array([lookup[n] for n in names], dtype=np.int64), class_names


def _groups_per_class(y_idx, groups) -> list[int]:
    """How many distinct groups (source images) each class has, in class order."""
    return [len(set(groups[y_idx == c].tolist())) for c in np.unique(y_idx)]


def fold_count(y, groups, n_splits: int) -> int:
    """The number of folds :meth:`cross_validate` will use for labels ``y`` (0: not possible)."""
    y_idx = np.unique(np.asarray(y), return_inverse=True)[1].reshape(-1)
    if np.unique(y_idx).size < 2:
        return 0
    if groups is None:
        k = min(int(n_splits), int(np.bincount(y_idx).min()))
    else:
        k = min(int(n_splits), min(_groups_per_class(y_idx, np.asarray(groups))))
    return k if k >= 2 else 0


def _splits(y_idx, groups, n_splits, seed):
    """Stratified (grouped when ``groups`` is given) train/test index pairs."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    n = len(y_idx)
    counts = np.bincount(y_idx)
    counts = counts[counts > 0]
    if len(counts) < 2:
        raise SEMAnalysisError("cross-validation needs examples of at least two classes")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise SEMAnalysisError(f"groups must have one entry per sample ({n}), got shape {groups.shape}")
        # the number of groups of the rarest class limits the number of folds
        per_class_groups = _groups_per_class(y_idx, groups)
        k = min(int(n_splits), min(per_class_groups))
        if k < 2:
            raise SEMAnalysisError(
                "grouped cross-validation needs at least two groups (source images) per class; "
                f"got {dict(zip(np.unique(y_idx).tolist(), per_class_groups))}"
            )
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(n), y_idx, groups)), k
    k = min(int(n_splits), int(counts.min()))
    if k < 2:
        raise SEMAnalysisError("cross-validation needs at least two examples of every class")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(n), y_idx)), k


def _cross_validate(
    make, fit_fn, proba_fn, X, y_idx, class_names, groups, n_splits, seed, progress=None, cancel=None, splits=None
):
    if splits is None:
        splits, k = _splits(y_idx, groups, n_splits, seed)
    else:
        k = len(splits)
    n = len(y_idx)
    proba = np.zeros((n, len(class_names)))
    folds = np.full(n, -1, dtype=np.int64)
    for i, (train, test) in enumerate(splits):
        if cancel is not None and cancel():
            raise _Cancelled()
        model = make()
        fit_fn(model, _take(X, train), y_idx[train])
        proba[test] = proba_fn(model, _take(X, test))
        folds[test] = i
        if progress is not None:
            progress(i + 1, k)
    pred = proba.argmax(axis=1)
    return _metrics(y_idx, pred, proba, class_names, k, groups is not None, folds)


def _take(X, idx):
    if isinstance(X, pd.DataFrame):
        return X.iloc[idx]
    if isinstance(X, np.ndarray):
        return X[idx]
    return [X[i] for i in idx]


# ---------------------------------------------------------------------------
# scikit-learn models
# ---------------------------------------------------------------------------


def _make_sklearn_model(model: str, seed: int, n_estimators: int):
    if model == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(
            n_estimators=n_estimators, class_weight="balanced", random_state=seed, n_jobs=1
        )
    if model == "extra_trees":
        from sklearn.ensemble import ExtraTreesClassifier

        return ExtraTreesClassifier(
            n_estimators=n_estimators, class_weight="balanced", random_state=seed, n_jobs=1
        )
    if model == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=n_estimators, random_state=seed, class_weight="balanced")
    if model == "logistic_regression":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
    raise SEMAnalysisError(f"model must be one of {_SKLEARN_MODELS}, got {model!r}")


def _sklearn_proba(estimator, X, n_classes) -> np.ndarray:
    """Probabilities with one column per class, also for classes absent in training."""
    p = estimator.predict_proba(X)
    out = np.zeros((p.shape[0], n_classes))
    out[:, np.asarray(estimator.classes_, dtype=np.int64)] = p
    return out


# ---------------------------------------------------------------------------
# safe model files
# ---------------------------------------------------------------------------


def _write_archive(path, meta: dict, payload_name: str, payload: bytes) -> Path:
    path = Path(path)
    meta = dict(meta)
    meta["format"] = _FORMAT
    meta["format_version"] = _FORMAT_VERSION
    meta["payload"] = payload_name
    meta["sha256"] = hashlib.sha256(payload).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.json", json.dumps(meta, indent=1))
        zf.writestr(payload_name, payload)
    return path


def _read_archive(path, expected_class: str) -> tuple[dict, bytes]:
    path = Path(path)
    if not path.is_file():
        raise SEMAnalysisError(f"model file {str(path)!r} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "meta.json" not in names:
                raise SEMAnalysisError(f"{path.name} is not a napari-sem-analysis classifier file (no meta.json)")
            meta = json.loads(zf.read("meta.json").decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                raise SEMAnalysisError(f"{path.name} is not a napari-sem-analysis classifier file")
            payload_name = meta.get("payload")
            if payload_name not in names:
                raise SEMAnalysisError(f"{path.name} is incomplete: the model data {payload_name!r} is missing")
            payload = zf.read(payload_name)
    except SEMAnalysisError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise SEMAnalysisError(f"{path.name} is not a valid classifier file (corrupt or wrong format: {exc})") from None
    if int(meta.get("format_version", 0)) > _FORMAT_VERSION:
        raise SEMAnalysisError(
            f"{path.name} was written by a newer version (format {meta.get('format_version')}); update the plugin"
        )
    if meta.get("classifier") != expected_class:
        raise SEMAnalysisError(
            f"{path.name} holds a {meta.get('classifier')!r} model, not an {expected_class}"
        )
    if hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
        raise SEMAnalysisError(f"{path.name} is corrupt or was modified: the model data does not match its checksum")
    return meta, payload


def _dump_sklearn(estimator) -> bytes:
    import skops.io as sio

    return sio.dumps(estimator)


def _check_classes(estimator, class_names, name: str) -> None:
    """The model's class indices must index into the file's class names."""
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return
    try:
        idx = np.asarray(classes, dtype=np.int64)
    except (TypeError, ValueError):
        raise SEMAnalysisError(f"{name}: the model's classes are not class indices") from None
    if idx.size and (idx.min() < 0 or idx.max() >= len(class_names)):
        raise SEMAnalysisError(
            f"{name}: the model knows {idx.size} classes but the file names {len(class_names)} ({class_names})"
        )


def _load_sklearn(payload: bytes, name: str):
    """Load a skops dump, accepting only the types our models are made of."""
    import skops.io as sio

    try:
        untrusted = set(sio.get_untrusted_types(data=payload))
    except Exception as exc:  # skops raises various errors on garbage
        raise SEMAnalysisError(f"{name}: the scikit-learn model data is corrupt ({exc})") from None
    refused = sorted(untrusted - _TRUSTED_SKOPS_TYPES)
    if refused:
        raise SEMAnalysisError(
            f"{name} was refused: it contains types that are not part of a napari-sem-analysis model "
            f"({', '.join(refused)}); it may have been tampered with"
        )
    try:
        return sio.loads(payload, trusted=sorted(untrusted))
    except Exception as exc:
        raise SEMAnalysisError(f"{name}: the scikit-learn model could not be loaded ({exc})") from None


# ---------------------------------------------------------------------------
# object classifier
# ---------------------------------------------------------------------------


def object_features(labels, image=None, *, pixel_size: float | None = None) -> pd.DataFrame:
    """Per-object morphology (and intensity, with ``image``) table for classification.

    Uses :func:`napari_sem_analysis.measure` when that module is available,
    otherwise :func:`skimage.measure.regionprops_table` with rotation-invariant
    shape descriptors (area, perimeter, circularity, solidity, extent,
    eccentricity, axis lengths and ratio, Feret diameter, Euler number, Hu
    moments and, with an image, intensity mean/std/min/max).

    Returns a DataFrame with a ``label`` column, one row per object.
    """
    labels = check_labels(labels)
    if image is not None:
        image = check_image(to_grayscale(np.asarray(image)))
        if image.shape != labels.shape:
            raise SEMAnalysisError(f"image shape {image.shape} differs from labels shape {labels.shape}")
    try:
        from . import measurement  # noqa: F401

        measure_fn = getattr(measurement, "measure", None)
    except ImportError:
        measure_fn = None
    if measure_fn is not None:
        try:
            kwargs = {"pixel_size": pixel_size} if pixel_size is not None else {}
            table = measure_fn(labels, image, **kwargs) if image is not None else measure_fn(labels, **kwargs)
            if isinstance(table, pd.DataFrame) and "label" in table.columns:
                return table.reset_index(drop=True)
        except Exception:  # fall back to our own table if measure's API differs
            pass
    return _regionprops_features(labels, image)


def _regionprops_features(labels, image=None) -> pd.DataFrame:
    from skimage.measure import regionprops_table

    props = [
        "label",
        "area",
        "perimeter",
        "solidity",
        "extent",
        "eccentricity",
        "axis_major_length",
        "axis_minor_length",
        "feret_diameter_max",
        "euler_number",
        "moments_hu",
        "area_convex",
        "equivalent_diameter_area",
    ]
    if image is not None:
        props += ["intensity_mean", "intensity_max", "intensity_min", "intensity_std"]
    table = pd.DataFrame(regionprops_table(labels, intensity_image=image, properties=props))
    area = table["area"].to_numpy(float)
    perim = np.maximum(table["perimeter"].to_numpy(float), 1e-9)
    table["circularity"] = np.clip(4 * np.pi * area / perim**2, 0, 1.5)
    table["aspect_ratio"] = table["axis_major_length"] / np.maximum(table["axis_minor_length"], 1e-9)
    table["convexity_defect"] = 1.0 - table["solidity"]
    table["feret_ratio"] = table["feret_diameter_max"] / np.maximum(table["equivalent_diameter_area"], 1e-9)
    return table


_FEATURE_SETS = ("all", "shape", "shape+intensity", "shape+texture")
_TEXTURE_PREFIXES = ("glcm", "lbp", "texture", "haralick")


def _feature_kind(name: str) -> str:
    low = name.lower()
    if low.startswith("int_") or low.startswith("intensity") or low.startswith("mean_intensity"):
        return "intensity"
    if low.startswith(_TEXTURE_PREFIXES):
        return "texture"
    return "shape"


def _select_feature_set(table: pd.DataFrame, feature_set: str) -> list[str]:
    cols = _feature_columns(table)
    if feature_set == "all":
        return cols
    kinds = set(feature_set.split("+"))
    return [c for c in cols if _feature_kind(c) in kinds]


def _feature_columns(table: pd.DataFrame) -> list[str]:
    cols = []
    for c in table.columns:
        name = str(c)
        low = name.lower()
        if low in _NON_FEATURE_NAMES or any(low.startswith(p) for p in _NON_FEATURE_PREFIXES):
            continue
        if pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c]):
            cols.append(name)
        elif pd.api.types.is_bool_dtype(table[c]):
            cols.append(name)
    return cols


class ObjectClassifier:
    """Classify segmented objects from their measured features.

    Parameters
    ----------
    features : sequence of str or str, optional
        Columns of the measurement table to use, or a preset: ``"all"``,
        ``"shape"`` (morphology only), ``"shape+intensity"``,
        ``"shape+texture"`` (intensity columns start with ``intensity``,
        texture columns with ``glcm``/``lbp``). Default (None, = ``"all"``):
        every numeric column except identifiers and positions (``label``,
        ``centroid*``, ``bbox*``, ``orientation``, ``class``, ``prob_*``).
        With few examples, ``"shape"`` generalises best.
    model : {"random_forest", "extra_trees", "gradient_boosting", "logistic_regression"}
    class_names : sequence of str, optional
        Class names; integer labels given to :meth:`fit` index into them.
        Default: the sorted distinct labels.
    n_estimators : int
        Trees (forests) or boosting iterations.
    seed : int
        Random seed (training is deterministic).

    Examples
    --------
    >>> clf = ObjectClassifier(class_names=["gas", "keyhole", "lack-of-fusion"])
    >>> clf.fit(table, y)                      # doctest: +SKIP
    >>> clf.cross_validate(table, y).accuracy  # doctest: +SKIP
    """

    def __init__(
        self,
        features: Sequence[str] | None = None,
        model: str = "random_forest",
        class_names: Sequence[str] | None = None,
        *,
        n_estimators: int = 200,
        seed: int = 0,
    ):
        if model not in _SKLEARN_MODELS:
            raise SEMAnalysisError(f"model must be one of {_SKLEARN_MODELS}, got {model!r}")
        if isinstance(features, str):
            if features not in _FEATURE_SETS:
                raise SEMAnalysisError(f"features must be a list of column names or one of {_FEATURE_SETS}, got {features!r}")
            self.features = features
        else:
            self.features = [str(f) for f in features] if features is not None else None
        self.model = model
        self.class_names = [str(c) for c in class_names] if class_names is not None else None
        if self.class_names is not None and len(set(self.class_names)) != len(self.class_names):
            raise SEMAnalysisError(f"class_names must be distinct, got {self.class_names}")
        self.n_estimators = int(check_positive(n_estimators, "n_estimators"))
        self.seed = int(seed)
        self.feature_names_: list[str] | None = None
        self.fill_values_: np.ndarray | None = None
        self.estimator_ = None

    # -- helpers -------------------------------------------------------
    def _check_table(self, table) -> pd.DataFrame:
        if isinstance(table, np.ndarray):
            raise SEMAnalysisError("table must be a pandas DataFrame of per-object features (see measure)")
        if not isinstance(table, pd.DataFrame):
            try:
                table = pd.DataFrame(table)
            except Exception:
                raise SEMAnalysisError("table must be a pandas DataFrame of per-object features") from None
        if len(table) == 0:
            raise SEMAnalysisError("the feature table has no rows (no objects)")
        return table

    def _matrix(self, table: pd.DataFrame, *, fitting: bool = False) -> np.ndarray:
        if fitting:
            if self.features is None:
                cols = _feature_columns(table)
            elif isinstance(self.features, str):
                cols = _select_feature_set(table, self.features)
            else:
                cols = list(self.features)
            if not cols:
                raise SEMAnalysisError("the feature table has no numeric feature columns")
        else:
            cols = self.feature_names_
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise SEMAnalysisError(f"the feature table lacks the columns {missing} the classifier uses")
        try:
            X = np.array(table[cols].to_numpy(dtype=np.float64), dtype=np.float64, copy=True)
        except (TypeError, ValueError):
            raise SEMAnalysisError(f"feature columns {cols} must be numeric") from None
        X[~np.isfinite(X)] = np.nan
        if fitting:
            self.feature_names_ = list(cols)
            with np.errstate(all="ignore"):
                fill = np.nanmedian(X, axis=0) if len(X) else np.zeros(X.shape[1])
            self.fill_values_ = np.where(np.isfinite(fill), fill, 0.0)
        bad = np.isnan(X)
        if bad.any():
            X[bad] = np.take(self.fill_values_, np.nonzero(bad)[1])
        return X

    def _require_fitted(self):
        if self.estimator_ is None:
            raise SEMAnalysisError("the classifier is not trained yet: call fit() or load() first")

    # -- API -----------------------------------------------------------
    def fit(self, table, y) -> "ObjectClassifier":
        """Train on a per-object table and one class label (name or index) per row."""
        table = self._check_table(table)
        y_idx, names = _encode_labels(y, self.class_names)
        if len(y_idx) != len(table):
            raise SEMAnalysisError(f"{len(y_idx)} labels for {len(table)} objects")
        if len(np.unique(y_idx)) < 2:
            raise SEMAnalysisError("training needs examples of at least two classes")
        self.class_names = names
        X = self._matrix(table, fitting=True)
        est = _make_sklearn_model(self.model, self.seed, self.n_estimators)
        est.fit(X, y_idx)
        self.estimator_ = est
        return self

    def predict_proba(self, table) -> np.ndarray:
        """Class probabilities, shape (n_objects, n_classes), columns in ``class_names`` order."""
        self._require_fitted()
        X = self._matrix(self._check_table(table))
        return _sklearn_proba(self.estimator_, X, len(self.class_names))

    def predict(self, table) -> np.ndarray:
        """Predicted class name of every object."""
        p = self.predict_proba(table)
        return np.asarray(self.class_names, dtype=object)[p.argmax(axis=1)]

    def predict_table(self, table) -> pd.DataFrame:
        """``table`` with a ``class`` column and one ``prob_<name>`` column per class added."""
        table = self._check_table(table)
        p = self.predict_proba(table)
        out = table.copy()
        out["class"] = np.asarray(self.class_names, dtype=object)[p.argmax(axis=1)]
        for i, name in enumerate(self.class_names):
            out[f"prob_{name}"] = p[:, i]
        return out

    def cross_validate(self, table, y, *, groups=None, n_splits: int = 5, progress: Callable | None = None) -> CVResult:
        """Stratified k-fold cross-validation (grouped when ``groups`` is given).

        ``groups`` (e.g. the source image of each object) keeps all objects of
        one group in the same fold. The classifier itself is not changed.
        """
        table = self._check_table(table)
        y_idx, names = _encode_labels(y, self.class_names)
        if len(y_idx) != len(table):
            raise SEMAnalysisError(f"{len(y_idx)} labels for {len(table)} objects")

        def make():
            return ObjectClassifier(
                self.features, self.model, names, n_estimators=self.n_estimators, seed=self.seed
            )

        return _cross_validate(
            make,
            lambda m, X, yy: m.fit(X, yy),
            lambda m, X: m.predict_proba(X),
            table.reset_index(drop=True),
            y_idx,
            names,
            groups,
            n_splits,
            self.seed,
            progress,
        )

    def save(self, path) -> Path:
        """Write the trained classifier to ``path`` (a zip of JSON + skops, no pickle)."""
        self._require_fitted()
        meta = {
            "classifier": "ObjectClassifier",
            "model": self.model,
            "class_names": self.class_names,
            "features": self.features,
            "feature_names": self.feature_names_,
            "fill_values": [float(v) for v in self.fill_values_],
            "n_estimators": self.n_estimators,
            "seed": self.seed,
        }
        return _write_archive(path, meta, "model.skops", _dump_sklearn(self.estimator_))

    @classmethod
    def load(cls, path) -> "ObjectClassifier":
        """Read a classifier written by :meth:`save`; refuses foreign or tampered files."""
        meta, payload = _read_archive(path, "ObjectClassifier")
        try:
            clf = cls(
                meta.get("features"),
                meta["model"],
                meta["class_names"],
                n_estimators=int(meta.get("n_estimators", 200)),
                seed=int(meta.get("seed", 0)),
            )
            clf.feature_names_ = [str(c) for c in meta["feature_names"]]
            clf.fill_values_ = np.asarray(meta["fill_values"], dtype=np.float64)
        except (SEMAnalysisError, KeyError, TypeError, ValueError) as exc:
            raise SEMAnalysisError(f"{Path(path).name}: invalid classifier description ({exc})") from None
        if clf.class_names is None or len(clf.class_names) < 2:
            raise SEMAnalysisError(f"{Path(path).name}: invalid classifier description (fewer than two classes)")
        est = _load_sklearn(payload, Path(path).name)
        n_features = getattr(est, "n_features_in_", None)
        if n_features is not None and n_features != len(clf.feature_names_):
            raise SEMAnalysisError(f"{Path(path).name}: the model does not match its feature list")
        if len(clf.fill_values_) != len(clf.feature_names_):
            raise SEMAnalysisError(f"{Path(path).name}: the model does not match its feature list")
        _check_classes(est, clf.class_names, Path(path).name)
        clf.estimator_ = est
        return clf

    def __repr__(self):
        state = "trained" if self.estimator_ is not None else "untrained"
        return f"ObjectClassifier(model={self.model!r}, class_names={self.class_names}, {state})"


# ---------------------------------------------------------------------------
# image features
# ---------------------------------------------------------------------------


def _to_unit_float(image) -> np.ndarray:
    """Image as float32 in about [0, 1] (integers by their dtype range)."""
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if np.issubdtype(arr.dtype, np.integer):
        info = np.iinfo(arr.dtype)
        hi = float(arr.max()) if arr.size else 1.0
        # uint16 SEM images often use only 12 bits: scale by the smallest power of two >= max
        top = 2.0 ** np.ceil(np.log2(max(hi, 1.0) + 1)) - 1
        top = min(top, float(info.max))
        return (arr.astype(np.float32) - min(0, info.min)) / max(top, 1.0)
    return arr.astype(np.float32)


def _stretch(img: np.ndarray, levels: int) -> np.ndarray:
    lo, hi = np.percentile(img, (1, 99))
    if hi <= lo:
        return np.zeros(img.shape, np.uint8)
    q = (img - lo) / (hi - lo)
    return np.clip(q * (levels - 1) + 0.5, 0, levels - 1).astype(np.uint8)


def _radial_bands(img: np.ndarray, n_bands: int = 8) -> np.ndarray:
    """Fraction of (mean-removed) spectral power in log-spaced radial frequency bands + anisotropy."""
    h, w = img.shape
    win = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    f = np.fft.fftshift(np.abs(np.fft.fft2((img - img.mean()) * win)) ** 2)
    fy = np.fft.fftshift(np.fft.fftfreq(h))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(w))[None, :]
    r = np.sqrt(fy**2 + fx**2)
    # fixed bands in cycles per pixel, so that images of different sizes are comparable
    edges = np.geomspace(1.0 / 128, 0.5, n_bands + 1)
    total = f[(r > 0) & (r <= 0.5)].sum() + 1e-12
    bands = [f[(r >= lo) & (r < hi)].sum() / total for lo, hi in zip(edges[:-1], edges[1:])]
    # anisotropy: how unevenly power spreads over orientations (4 sectors)
    theta = np.mod(np.arctan2(fy, fx), np.pi)
    sectors = [f[(theta >= a) & (theta < a + np.pi / 4) & (r > edges[1])].sum() for a in np.arange(4) * np.pi / 4]
    sectors = np.asarray(sectors) / (np.sum(sectors) + 1e-12)
    return np.concatenate([bands, [sectors.std() * 4]])


_GLCM_PROPS = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation")


def _texture_features(img: np.ndarray, prefix: str, glcm_distances, levels: int) -> dict:
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
    from skimage.filters import sobel

    out: dict[str, float] = {}
    q = _stretch(img, levels)
    angles = [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    glcm = graycomatrix(q, distances=list(glcm_distances), angles=angles, levels=levels, symmetric=True, normed=True)
    for prop in _GLCM_PROPS:
        vals = graycoprops(glcm, prop)  # (distances, angles)
        vals = np.nan_to_num(vals)
        for i, d in enumerate(glcm_distances):
            out[f"{prefix}glcm_{prop}_d{d}"] = float(vals[i].mean())
            if prop in ("contrast", "correlation"):
                out[f"{prefix}glcm_{prop}_d{d}_aniso"] = float(vals[i].std())
    # LBP (uniform, rotation invariant), two radii
    for p, rad in ((8, 1), (16, 2)):
        lbp = local_binary_pattern(q, p, rad, method="uniform")
        hist = np.bincount(lbp.astype(np.int64).ravel(), minlength=p + 2)[: p + 2].astype(float)
        hist /= max(hist.sum(), 1)
        for i, v in enumerate(hist):
            out[f"{prefix}lbp{p}r{rad}_{i}"] = float(v)
    # edge density
    grad = sobel(img)
    out[f"{prefix}edge_mean"] = float(grad.mean())
    out[f"{prefix}edge_std"] = float(grad.std())
    gs = sobel(q.astype(np.float32) / (levels - 1))
    out[f"{prefix}edge_density"] = float((gs > 0.1).mean())
    out[f"{prefix}edge_density_strong"] = float((gs > 0.25).mean())
    for i, v in enumerate(_radial_bands(img)):
        out[f"{prefix}fft_{i}"] = float(v)
    return out


def image_features(
    image,
    *,
    scales: Sequence[int] = (1, 2, 4),
    glcm_distances: Sequence[int] = (1, 2, 4),
    levels: int = 32,
) -> dict:
    """Texture and intensity features of one image or tile.

    Intensity statistics (mean, std, percentiles, skewness, kurtosis,
    histogram entropy), GLCM properties (contrast, dissimilarity,
    homogeneity, energy, correlation; mean and spread over four angles),
    uniform LBP histograms (8 points radius 1, 16 points radius 2), Sobel
    edge strength and edge density, and FFT radial band powers with an
    orientation-anisotropy measure. Texture is computed on a 1-99 percentile
    stretched copy at each of ``scales`` (block-mean downsampling factors).

    Returns
    -------
    dict
        Feature name -> value (the same names for every image).
    """
    from scipy import stats
    from skimage.transform import downscale_local_mean

    img = check_image(to_grayscale(np.asarray(image)), min_size=8)
    img = _to_unit_float(img)
    out: dict[str, float] = {}
    v = img.ravel()
    pct = np.percentile(v, (1, 5, 25, 50, 75, 95, 99))
    out["int_mean"] = float(v.mean())
    out["int_std"] = float(v.std())
    for p, val in zip((1, 5, 25, 50, 75, 95, 99), pct):
        out[f"int_p{p}"] = float(val)
    out["int_iqr"] = float(pct[4] - pct[2])
    with np.errstate(all="ignore"):
        out["int_skew"] = float(np.nan_to_num(stats.skew(v)))
        out["int_kurtosis"] = float(np.nan_to_num(stats.kurtosis(v)))
    hist, _ = np.histogram(v, bins=64, range=(float(pct[0]), float(pct[-1]) + 1e-6))
    hist = hist / max(hist.sum(), 1)
    out["int_entropy"] = float(-(hist[hist > 0] * np.log2(hist[hist > 0])).sum())
    for s in scales:
        s = int(s)
        im = img if s == 1 else downscale_local_mean(img, (s, s)).astype(np.float32)
        if min(im.shape) < 8:
            im = img  # too small to downsample: repeat full resolution for a fixed feature set
        out.update(_texture_features(im, f"s{s}_", glcm_distances, int(levels)))
    return out


def _features_matrix(images, scales, progress=None, cancel=None) -> tuple[np.ndarray, list[str]]:
    rows = []
    names = None
    n = len(images)
    for i, im in enumerate(images):
        if cancel is not None and cancel():
            raise _Cancelled()
        f = image_features(im, scales=scales)
        if names is None:
            names = list(f)
        rows.append([f[k] for k in names])
        if progress is not None:
            progress(i + 1, n)
    return np.asarray(rows, dtype=np.float64), names


class _Cancelled(Exception):
    pass


# ---------------------------------------------------------------------------
# tiles
# ---------------------------------------------------------------------------


def tile_positions(shape, tile_size: int, stride: int | None = None) -> list[tuple[int, int, int, int, int, int]]:
    """Tile grid over an image of ``shape``: list of (row, col, y0, x0, y1, x1).

    Tiles start every ``stride`` pixels (default ``tile_size``); a last tile
    aligned with the image edge is added where the grid does not reach it.
    """
    h, w = int(shape[0]), int(shape[1])
    t = int(check_positive(tile_size, "tile_size"))
    s = int(check_positive(stride if stride is not None else t, "stride"))
    if t > h or t > w:
        raise SEMAnalysisError(f"tile_size {t} is larger than the image ({h}x{w})")

    def starts(n):
        st = list(range(0, n - t + 1, s))
        if st[-1] + t < n:
            st.append(n - t)
        return st

    out = []
    for r, y0 in enumerate(starts(h)):
        for c, x0 in enumerate(starts(w)):
            out.append((r, c, y0, x0, y0 + t, x0 + t))
    return out


def extract_tiles(images, y=None, *, tile_size: int = 256, stride: int | None = None):
    """Cut images into tiles for training; returns ``(tiles, tile_labels, groups)``.

    ``groups[i]`` is the index of the source image of tile ``i``: pass it as
    ``groups=`` to :meth:`ImageClassifier.cross_validate` so that tiles of one
    image stay in one fold. ``tile_labels`` is None when ``y`` is None.
    """
    if isinstance(images, np.ndarray) and images.ndim == 2:
        images = [images]
    tiles, labels, groups = [], [], []
    for i, im in enumerate(images):
        im = check_image(to_grayscale(np.asarray(im)), name=f"image {i}")
        for _, _, y0, x0, y1, x1 in tile_positions(im.shape, tile_size, stride):
            tiles.append(im[y0:y1, x0:x1])
            groups.append(i)
            if y is not None:
                labels.append(y[i])
    return tiles, (np.asarray(labels) if y is not None else None), np.asarray(groups, dtype=np.int64)


def tile_probability_map(tiles: pd.DataFrame, shape, class_names: Sequence[str]) -> np.ndarray:
    """Per-pixel class probabilities (K, Y, X) averaged over the tiles that cover each pixel."""
    h, w = int(shape[0]), int(shape[1])
    k = len(class_names)
    acc = np.zeros((k, h, w), np.float32)
    cnt = np.zeros((h, w), np.float32)
    cols = [f"prob_{n}" for n in class_names]
    missing = [c for c in cols if c not in tiles.columns]
    if missing:
        raise SEMAnalysisError(f"the tile table lacks the columns {missing}")
    for row in tiles[["y0", "x0", "y1", "x1", *cols]].itertuples(index=False):
        y0, x0, y1, x1 = (int(v) for v in row[:4])
        acc[:, y0:y1, x0:x1] += np.asarray(row[4:], np.float32)[:, None, None]
        cnt[y0:y1, x0:x1] += 1
    return acc / np.maximum(cnt, 1)[None]


# ---------------------------------------------------------------------------
# image folders
# ---------------------------------------------------------------------------

_IMAGE_EXTS = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"}


@dataclass
class ImageFolderData:
    """Images read from a folder with one sub-folder per class.

    ``groups`` gives the source image of each entry (tiles of one file share a group).
    """

    images: list
    y: np.ndarray
    groups: np.ndarray
    paths: list
    class_names: list


def _read_gray(path: Path) -> np.ndarray:
    try:
        from .io import read_sem

        return np.asarray(to_grayscale(np.asarray(read_sem(path).data)))
    except ImportError:
        pass
    except SEMAnalysisError:
        raise
    except Exception:
        pass
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            arr = tifffile.imread(path)
        else:
            from skimage.io import imread

            arr = imread(path)
    except Exception as exc:
        raise SEMAnalysisError(f"could not read {path}: {exc}") from None
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    return np.asarray(to_grayscale(arr))


def load_image_folder(path, *, tile_size: int | None = None, stride: int | None = None) -> ImageFolderData:
    """Read ``path/<class name>/*.tif|png|jpg`` (one sub-folder per class).

    With ``tile_size`` every image is cut into tiles (``groups`` then tells
    which file each tile came from).
    """
    root = Path(path)
    if not root.is_dir():
        raise SEMAnalysisError(f"{str(root)!r} is not a folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    images, y, groups, paths, names = [], [], [], [], []
    for d in class_dirs:
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in _IMAGE_EXTS)
        if not files:
            continue
        names.append(d.name)
        for f in files:
            im = _read_gray(f)
            g = len(paths)
            paths.append(f)
            if tile_size:
                for _, _, y0, x0, y1, x1 in tile_positions(im.shape, tile_size, stride):
                    images.append(im[y0:y1, x0:x1])
                    y.append(d.name)
                    groups.append(g)
            else:
                images.append(im)
                y.append(d.name)
                groups.append(g)
    if len(names) < 2:
        raise SEMAnalysisError(f"{str(root)!r} needs at least two sub-folders (one per class) with images")
    return ImageFolderData(images, np.asarray(y, dtype=object), np.asarray(groups, np.int64), paths, names)


# ---------------------------------------------------------------------------
# CNN backend
# ---------------------------------------------------------------------------


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

        from ._device import select_device

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

        from ._device import select_device

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


# ---------------------------------------------------------------------------
# image classifier
# ---------------------------------------------------------------------------


class ImageClassifier:
    """Classify whole images or tiles (e.g. rust / no rust, SEM categories, defect classes).

    Parameters
    ----------
    backend : {"features", "cnn"}
        ``"features"``: texture/intensity features (:func:`image_features`)
        and a scikit-learn model. ``"cnn"``: a convolutional network trained
        in PyTorch with augmentation (flips, 90-degree rotations,
        brightness/contrast) and test-time averaging over the 8 symmetries.
    model : str
        Feature backend: ``"random_forest"`` (default), ``"extra_trees"``,
        ``"gradient_boosting"`` or ``"logistic_regression"``.
    class_names : sequence of str, optional
    scales : sequence of int
        Feature backend: downsampling factors at which texture is measured.
    arch : str
        CNN backend: ``"small"`` (a 4-block CNN, default) or a timm model name
        such as ``"resnet18"`` (built without pretrained weights: nothing is
        downloaded).
    input_size : int
        CNN input size; images/tiles of another size are resized.
    epochs, batch_size, lr, width : CNN training options.
    device : str
        ``"auto"`` (CUDA, then MPS, then CPU), ``"cuda"``, ``"cpu"``...
    seed : int
    """

    def __init__(
        self,
        backend: str = "features",
        model: str = "random_forest",
        class_names: Sequence[str] | None = None,
        *,
        scales: Sequence[int] = (1, 2, 4),
        n_estimators: int = 300,
        arch: str = "small",
        input_size: int = 128,
        epochs: int = 30,
        batch_size: int = 32,
        lr: float = 3e-3,
        width: int = 16,
        device: str = "auto",
        seed: int = 0,
    ):
        if backend not in ("features", "cnn"):
            raise SEMAnalysisError(f"backend must be 'features' or 'cnn', got {backend!r}")
        if backend == "features" and model not in _SKLEARN_MODELS:
            raise SEMAnalysisError(f"model must be one of {_SKLEARN_MODELS}, got {model!r}")
        self.backend = backend
        self.model = model
        self.class_names = [str(c) for c in class_names] if class_names is not None else None
        self.scales = tuple(int(check_positive(s, "scales")) for s in scales)
        self.n_estimators = int(check_positive(n_estimators, "n_estimators"))
        self.arch = str(arch)
        self.input_size = int(check_positive(input_size, "input_size", maximum=2048))
        if self.input_size < 16:
            raise SEMAnalysisError("input_size must be at least 16")
        self.epochs = int(check_positive(epochs, "epochs", maximum=10000))
        self.batch_size = int(check_positive(batch_size, "batch_size"))
        self.lr = check_positive(lr, "lr")
        self.width = int(check_positive(width, "width", maximum=256))
        self.device = device
        self.seed = int(seed)
        self.tile_size_: int | None = None
        self.feature_names_: list[str] | None = None
        self.estimator_ = None  # sklearn estimator or _CNN
        self.cv_skipped_: str | None = None

    # -- helpers -------------------------------------------------------
    @staticmethod
    def _check_images(images) -> list:
        if isinstance(images, np.ndarray) and images.ndim == 2:
            images = [images]
        try:
            images = list(images)
        except TypeError:
            raise SEMAnalysisError("images must be a list of 2-D arrays") from None
        if not images:
            raise SEMAnalysisError("no images given")
        return images

    def _make_inner(self, n_classes: int):
        if self.backend == "features":
            return _make_sklearn_model(self.model, self.seed, self.n_estimators)
        return _CNN(
            self.arch, n_classes, self.input_size, self.width, self.epochs, self.batch_size, self.lr, self.device, self.seed
        )

    def _prepare(self, images, progress=None, cancel=None):
        if self.backend == "features":
            X, names = _features_matrix(images, self.scales, progress, cancel)
            return X, names
        return _prepare_cnn_batch(images, self.input_size), None

    def _fit_inner(self, inner, X, y_idx, progress=None, cancel=None):
        if self.backend == "features":
            inner.fit(X, y_idx)
        else:
            inner.fit(X, y_idx, progress=progress, cancel=cancel)
        return inner

    def _proba_inner(self, inner, X, n_classes):
        if self.backend == "features":
            return _sklearn_proba(inner, X, n_classes)
        return inner.predict_proba(X)

    def _require_fitted(self):
        if self.estimator_ is None:
            raise SEMAnalysisError("the classifier is not trained yet: call fit() or load() first")

    # -- API -----------------------------------------------------------
    def fit(self, images, y, *, groups=None, progress: Callable | None = None, cancel: Callable | None = None) -> "ImageClassifier":
        """Train on a list of 2-D images (or tiles) with one class label each.

        ``groups`` is accepted for symmetry with :meth:`cross_validate` and
        not used in training. ``progress(done, total)`` is called while
        working; ``cancel()`` returning True stops training.
        """
        images, y_idx, names = self._check_training(images, y)
        X, feat_names = self._prepare(images, progress if self.backend == "features" else None, cancel)
        inner = self._make_inner(len(names))
        self._fit_inner(inner, X, y_idx, progress if self.backend == "cnn" else None, cancel)
        self._set_trained(inner, names, feat_names, images)
        return self

    def _check_training(self, images, y):
        images = self._check_images(images)
        y_idx, names = _encode_labels(y, self.class_names)
        if len(y_idx) != len(images):
            raise SEMAnalysisError(f"{len(y_idx)} labels for {len(images)} images")
        if len(np.unique(y_idx)) < 2:
            raise SEMAnalysisError("training needs examples of at least two classes")
        return images, y_idx, names

    def _set_trained(self, inner, names, feat_names, images):
        shapes = {np.asarray(im).shape[:2] for im in images}
        tile = None
        if len(shapes) == 1:
            h, w = next(iter(shapes))
            tile = int(h) if h == w else None
        self.class_names = names
        self.feature_names_ = feat_names
        self.tile_size_ = tile
        self.estimator_ = inner

    def fit_and_cross_validate(
        self,
        images,
        y,
        *,
        groups=None,
        n_splits: int = 5,
        progress: Callable | None = None,
        cancel: Callable | None = None,
    ) -> "CVResult | None":
        """Grouped cross-validation, then training on all images, reporting progress over both.

        The same as :meth:`cross_validate` followed by :meth:`fit`, but the
        features are computed once and ``progress(done, total)`` counts the
        whole job (feature extraction, every fold, the final training; CNN:
        every epoch). Returns the :class:`CVResult`, or None when the data
        allow no cross-validation (e.g. one source image of a class); the
        reason is then in ``cv_skipped_``. The classifier is trained in
        both cases.
        """
        images, y_idx, names = self._check_training(images, y)
        self.cv_skipped_ = None
        try:
            splits, k = _splits(y_idx, groups, n_splits, self.seed)
        except SEMAnalysisError as exc:
            splits, k = None, 0
            self.cv_skipped_ = str(exc)
        cnn = self.backend == "cnn"
        per_fit = self.epochs if cnn else 1
        total = (0 if cnn else len(images)) + (k + 1) * per_fit
        count = [0]

        def tick(*_):
            count[0] += 1
            if progress is not None:
                progress(min(count[0], total), total)

        X, feat_names = self._prepare(images, None if cnn else tick, cancel)
        result = None
        if splits is not None:
            result = self._run_cv(
                X, y_idx, names, groups, n_splits, tick if cnn else None, None if cnn else tick, cancel, splits
            )
        inner = self._make_inner(len(names))
        self._fit_inner(inner, X, y_idx, tick if cnn else None, cancel)
        self._set_trained(inner, names, feat_names, images)
        if not cnn:
            tick()
        return result

    def predict_proba(self, images) -> np.ndarray:
        """Class probabilities (n_images, n_classes), columns in ``class_names`` order."""
        self._require_fitted()
        images = self._check_images(images)
        X, _ = self._prepare(images)
        return self._proba_inner(self.estimator_, X, len(self.class_names))

    def predict(self, images) -> np.ndarray:
        """Predicted class name of every image."""
        p = self.predict_proba(images)
        return np.asarray(self.class_names, dtype=object)[p.argmax(axis=1)]

    def cross_validate(
        self,
        images,
        y,
        *,
        groups=None,
        n_splits: int = 5,
        progress: Callable | None = None,
        cancel: Callable | None = None,
    ) -> CVResult:
        """Stratified k-fold cross-validation, grouped by ``groups``.

        Give the source image of every tile or augmented copy as ``groups``:
        all samples of a group are then kept in one fold, so near-duplicates
        never appear on both sides of a split. Features are computed once
        for the feature backend; the CNN is retrained for every fold.
        """
        images = self._check_images(images)
        y_idx, names = _encode_labels(y, self.class_names)
        if len(y_idx) != len(images):
            raise SEMAnalysisError(f"{len(y_idx)} labels for {len(images)} images")
        X, _ = self._prepare(images, cancel=cancel)
        return self._run_cv(X, y_idx, names, groups, n_splits, None, progress, cancel)

    def _run_cv(self, X, y_idx, names, groups, n_splits, fit_progress, fold_progress, cancel, splits=None):
        """Grouped cross-validation of this classifier's model on prepared inputs ``X``."""
        return _cross_validate(
            lambda: self._make_inner(len(names)),
            lambda m, Xs, yy: self._fit_inner(m, Xs, yy, fit_progress, cancel),
            lambda m, Xs: self._proba_inner(m, Xs, len(names)),
            X,
            y_idx,
            names,
            groups,
            n_splits,
            self.seed,
            fold_progress,
            cancel,
            splits=splits,
        )

    def predict_tiles(
        self,
        image,
        tile_size: int | None = None,
        stride: int | None = None,
        *,
        progress: Callable | None = None,
        cancel: Callable | None = None,
    ) -> pd.DataFrame:
        """Classify the tiles of one image.

        Parameters
        ----------
        image : ndarray (Y, X)
        tile_size : int, optional
            Default: the tile size used in training (when training images were
            square and of one size), else the CNN input size / 256.
        stride : int, optional
            Default ``tile_size`` (no overlap).

        Returns
        -------
        pandas.DataFrame
            One row per tile: ``row, col, y0, x0, y1, x1, class`` and
            ``prob_<class name>`` for every class.
        """
        self._require_fitted()
        img = check_image(to_grayscale(np.asarray(image)))
        if tile_size is None:
            tile_size = self.tile_size_ or (self.input_size if self.backend == "cnn" else 256)
            tile_size = min(tile_size, *img.shape)
        pos = tile_positions(img.shape, tile_size, stride)
        tiles = [img[y0:y1, x0:x1] for _, _, y0, x0, y1, x1 in pos]
        if self.backend == "features":
            X, _ = _features_matrix(tiles, self.scales, progress, cancel)
        else:
            X = _prepare_cnn_batch(tiles, self.input_size)
        p = self._proba_inner(self.estimator_, X, len(self.class_names))
        table = pd.DataFrame(pos, columns=["row", "col", "y0", "x0", "y1", "x1"])
        table["class"] = np.asarray(self.class_names, dtype=object)[p.argmax(axis=1)]
        for i, name in enumerate(self.class_names):
            table[f"prob_{name}"] = p[:, i]
        return table

    @classmethod
    def from_folder(cls, path, *, tile_size: int | None = None, stride: int | None = None, **kwargs) -> "ImageClassifier":
        """Train a classifier on ``path/<class name>/*`` images (optionally cut into tiles)."""
        data = load_image_folder(path, tile_size=tile_size, stride=stride)
        kwargs.setdefault("class_names", data.class_names)
        return cls(**kwargs).fit(data.images, data.y, groups=data.groups)

    # -- files ---------------------------------------------------------
    def _meta(self) -> dict:
        return {
            "classifier": "ImageClassifier",
            "backend": self.backend,
            "model": self.model,
            "class_names": self.class_names,
            "scales": list(self.scales),
            "n_estimators": self.n_estimators,
            "arch": self.arch,
            "input_size": self.input_size,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "width": self.width,
            "seed": self.seed,
            "tile_size": self.tile_size_,
            "feature_names": self.feature_names_,
        }

    def save(self, path) -> Path:
        """Write the trained classifier (zip of JSON + skops or safetensors; no pickle)."""
        self._require_fitted()
        if self.backend == "features":
            return _write_archive(path, self._meta(), "model.skops", _dump_sklearn(self.estimator_))
        from safetensors.torch import save

        state = {k: v.detach().cpu().contiguous() for k, v in self.estimator_.net.state_dict().items()}
        return _write_archive(path, self._meta(), "model.safetensors", save(state))

    @classmethod
    def load(cls, path, *, device: str = "auto") -> "ImageClassifier":
        """Read a classifier written by :meth:`save`; refuses foreign, corrupt or tampered files."""
        name = Path(path).name
        meta, payload = _read_archive(path, "ImageClassifier")
        try:
            clf = cls(
                meta["backend"],
                meta.get("model", "random_forest"),
                [str(c) for c in meta["class_names"]],
                scales=[int(s) for s in meta.get("scales", (1, 2, 4))],
                n_estimators=int(meta.get("n_estimators", 300)),
                arch=str(meta.get("arch", "small")),
                input_size=int(meta.get("input_size", 128)),
                epochs=int(meta.get("epochs", 30)),
                batch_size=int(meta.get("batch_size", 32)),
                lr=float(meta.get("lr", 3e-3)),
                width=int(meta.get("width", 16)),
                device=device,
                seed=int(meta.get("seed", 0)),
            )
            tile = meta.get("tile_size")
            clf.tile_size_ = int(tile) if tile is not None else None
            fn = meta.get("feature_names")
            clf.feature_names_ = [str(c) for c in fn] if fn is not None else None
        except SEMAnalysisError as exc:
            raise SEMAnalysisError(f"{name}: invalid classifier description ({exc})") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise SEMAnalysisError(f"{name}: invalid classifier description ({exc})") from None
        if len(clf.class_names) < 2:
            raise SEMAnalysisError(f"{name}: invalid classifier description (fewer than two classes)")
        if clf.backend == "features":
            est = _load_sklearn(payload, name)
            n_features = getattr(est, "n_features_in_", None)
            if clf.feature_names_ is None or (n_features is not None and n_features != len(clf.feature_names_)):
                raise SEMAnalysisError(f"{name}: the model does not match its feature list")
            _check_classes(est, clf.class_names, name)
            clf.estimator_ = est
            return clf
        try:
            from safetensors.torch import load as load_st

            state = load_st(payload)
        except Exception as exc:
            raise SEMAnalysisError(f"{name}: the network weights are corrupt ({exc})") from None
        inner = clf._make_inner(len(clf.class_names))
        net = inner.build()
        expected = net.state_dict()
        if set(state) != set(expected) or any(tuple(state[k].shape) != tuple(expected[k].shape) for k in expected):
            raise SEMAnalysisError(f"{name}: the network weights do not match the described architecture")
        try:
            net.load_state_dict(state)
        except Exception as exc:
            raise SEMAnalysisError(f"{name}: the network weights could not be loaded ({exc})") from None
        net.eval()
        inner.net = net
        clf.estimator_ = inner
        return clf

    def __repr__(self):
        state = "trained" if self.estimator_ is not None else "untrained"
        return f"ImageClassifier(backend={self.backend!r}, class_names={self.class_names}, {state})"
