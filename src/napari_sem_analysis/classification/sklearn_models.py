"""scikit-learn models: construction, probabilities and skops (de)serialisation with an allow-list."""

from __future__ import annotations

import numpy as np

from .._validation import SEMAnalysisError

_SKLEARN_MODELS = ("random_forest", "extra_trees", "gradient_boosting", "logistic_regression")
# types a skops dump of one of our models may contain beyond skops' defaults
_TRUSTED_SKOPS_TYPES = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    }
)


def _make_sklearn_model(model: str, seed: int, n_estimators: int):
    if model == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_estimators=n_estimators, class_weight="balanced", random_state=seed, n_jobs=1)
    if model == "extra_trees":
        from sklearn.ensemble import ExtraTreesClassifier

        return ExtraTreesClassifier(n_estimators=n_estimators, class_weight="balanced", random_state=seed, n_jobs=1)
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
