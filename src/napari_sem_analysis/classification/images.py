""":class:`ImageClassifier`: whole images or tiles, with a ``features`` or a ``cnn`` backend."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .._validation import SEMAnalysisError, check_image, check_positive, to_grayscale
from .archive import _read_archive, _write_archive
from .cnn import _CNN, _check_arch, _cnn_shapes, _prepare_cnn_batch
from .features import FEATURE_SETS, _features_matrix
from .folders import load_image_folder
from .results import CVResult
from .sklearn_models import (
    _SKLEARN_MODELS,
    _check_classes,
    _dump_sklearn,
    _load_sklearn,
    _make_sklearn_model,
    _sklearn_proba,
)
from .tiles import tile_positions
from .validation import _cross_validate, _encode_labels, _splits


def _names_match_set(names: list[str], feature_set: str) -> bool:
    """Whether a stored feature list is what ``feature_set`` computes (fibre names start with ``fib_``)."""
    from ..fibers import FIBER_FEATURES

    fib = [n for n in names if n.startswith("fib_")]
    tex = [n for n in names if not n.startswith("fib_")]
    if feature_set == "fibers":
        return fib == list(FIBER_FEATURES) and not tex
    if feature_set == "texture":
        return not fib and bool(tex)
    return fib == list(FIBER_FEATURES) and bool(tex)


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
    feature_set : {"texture", "fibers", "all"}
        Feature backend: texture and intensity features
        (:func:`image_features`, the default), the physical fibre features
        of :func:`napari_sem_analysis.fiber_features` (bead density,
        diameter spread, alignment...: what makes a fibre mat defective,
        scale-free, so they carry over to new specimens), or both. Model
        files record the set and :meth:`load` checks it.
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
        feature_set: str = "texture",
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
        if feature_set not in FEATURE_SETS:
            raise SEMAnalysisError(f"feature_set must be one of {FEATURE_SETS}, got {feature_set!r}")
        if backend == "cnn" and feature_set != "texture":
            raise SEMAnalysisError("feature_set applies to the 'features' backend only")
        self.backend = backend
        self.feature_set = feature_set
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
            self.arch,
            n_classes,
            self.input_size,
            self.width,
            self.epochs,
            self.batch_size,
            self.lr,
            self.device,
            self.seed,
        )

    def _prepare(self, images, progress=None, cancel=None):
        if self.backend == "features":
            X, names = _features_matrix(images, self.scales, progress, cancel, feature_set=self.feature_set)
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
    def fit(
        self, images, y, *, groups=None, progress: Callable | None = None, cancel: Callable | None = None
    ) -> ImageClassifier:
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
    ) -> CVResult | None:
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
    def from_folder(
        cls, path, *, tile_size: int | None = None, stride: int | None = None, specimen="auto", **kwargs
    ) -> ImageClassifier:
        """Train a classifier on ``path/<class name>/*`` images (optionally cut into tiles).

        ``specimen``: the rule naming each image's specimen
        (:func:`load_image_folder`); the data, with ``cv_groups`` and the
        ``specimen_rule`` in words, are kept in ``folder_data_``.
        """
        data = load_image_folder(path, tile_size=tile_size, stride=stride, specimen=specimen)
        kwargs.setdefault("class_names", data.class_names)
        clf = cls(**kwargs).fit(data.images, data.y, groups=data.cv_groups)
        clf.folder_data_ = data
        return clf

    # -- files ---------------------------------------------------------
    def _meta(self) -> dict:
        return {
            "classifier": "ImageClassifier",
            "backend": self.backend,
            "model": self.model,
            "feature_set": self.feature_set,
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
    def load(cls, path, *, device: str = "auto") -> ImageClassifier:
        """Read a classifier written by :meth:`save`; refuses foreign, corrupt or tampered files."""
        name = Path(path).name
        meta, payload = _read_archive(path, "ImageClassifier")
        try:
            clf = cls(
                meta["backend"],
                meta.get("model", "random_forest"),
                [str(c) for c in meta["class_names"]],
                feature_set=str(meta.get("feature_set", "texture")),
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
            if not _names_match_set(clf.feature_names_, clf.feature_set):
                raise SEMAnalysisError(f"{name}: the feature list does not match feature_set {clf.feature_set!r}")
            _check_classes(est, clf.class_names, name)
            clf.estimator_ = est
            return clf
        try:
            _check_arch(clf.arch)
        except SEMAnalysisError as exc:
            raise SEMAnalysisError(f"{name}: {exc}") from None
        try:
            from safetensors.torch import load as load_st

            state = load_st(payload)
        except Exception as exc:
            raise SEMAnalysisError(f"{name}: the network weights are corrupt ({exc})") from None
        # compared with the described network built on the meta device: no large network is built
        # (and no memory taken) for weights that do not fit it
        expected = _cnn_shapes(clf.arch, len(clf.class_names), clf.width)
        if set(state) != set(expected) or any(tuple(state[k].shape) != expected[k] for k in expected):
            raise SEMAnalysisError(f"{name}: the network weights do not match the described architecture")
        inner = clf._make_inner(len(clf.class_names))
        net = inner.build()
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
        fs = f", feature_set={self.feature_set!r}" if self.backend == "features" else ""
        return f"ImageClassifier(backend={self.backend!r}{fs}, class_names={self.class_names}, {state})"
