"""Per-object features and :class:`ObjectClassifier` (pores, particles, precipitates)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import SEMAnalysisError, check_image, check_labels, check_positive, to_grayscale
from .archive import _read_archive, _write_archive
from .results import CVResult
from .sklearn_models import (
    _SKLEARN_MODELS,
    _check_classes,
    _dump_sklearn,
    _load_sklearn,
    _make_sklearn_model,
    _sklearn_proba,
)
from .validation import _cross_validate, _encode_labels

DEFAULT_PORE_CLASSES = ("gas", "keyhole", "lack-of-fusion")
# columns of a measurement table that describe position, not the object
_NON_FEATURE_PREFIXES = ("label", "centroid", "bbox", "coords", "weighted_centroid", "class", "prob_")
_NON_FEATURE_NAMES = {"y", "x", "row", "col", "z", "index", "orientation", "object", "image", "group"}


def object_features(labels, image=None, *, pixel_size: float | None = None) -> pd.DataFrame:
    """Per-object morphology (and intensity, with ``image``) table for classification.

    Uses :func:`napari_sem_analysis.measure` when that module is available,
    otherwise :func:`skimage.measure.regionprops_table` with rotation-invariant
    shape descriptors (area, perimeter, circularity, solidity, extent,
    eccentricity, axis lengths and ratio, Feret diameter, Euler number, Hu
    moments and, with an image, intensity mean/std/min/max).

    Returns a DataFrame with a ``label`` column, one row per object.

    Parameters
    ----------
    labels : ndarray of int
        2-D label image (0 = background).
    image : ndarray, optional
        The intensity image, for intensity features.
    pixel_size : float, optional
        Nanometres per pixel; sizes are then in nm.
    """
    labels = check_labels(labels)
    if image is not None:
        image = check_image(to_grayscale(np.asarray(image)))
        if image.shape != labels.shape:
            raise SEMAnalysisError(f"image shape {image.shape} differs from labels shape {labels.shape}")
    try:
        from .. import measurement  # noqa: F401

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
                raise SEMAnalysisError(
                    f"features must be a list of column names or one of {_FEATURE_SETS}, got {features!r}"
                )
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
    def fit(self, table, y) -> ObjectClassifier:
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
            return ObjectClassifier(self.features, self.model, names, n_estimators=self.n_estimators, seed=self.seed)

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
    def load(cls, path) -> ObjectClassifier:
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
