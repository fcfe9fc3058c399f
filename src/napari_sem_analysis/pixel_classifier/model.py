"""A trainable pixel classifier: paint a few strokes per class, segment the whole image.

:class:`PixelClassifier` learns from sparse scribbles (a label image in
which 0 means "not labelled" and 1..K are classes) on one or several
images. Each pixel is described by multi-scale filter responses
(:mod:`.features`); a random forest (scikit-learn, imported lazily) is
trained on the scribbled pixels only (extremely randomised trees by default), with at most ``max_samples_per_class``
pixels drawn per class. Prediction runs tile by tile (with a halo, so tiles
agree with the whole image) so that very large images need bounded memory,
and can be restricted to a ``region`` (the visible field) for live updates.

Feature tiles are cached by image content and settings
(:class:`~.features.FeatureCache`): retraining after another stroke only
re-fits the forest.

Model files are zip archives of ``meta.json`` and a skops dump restricted to
the types a forest is made of: loading never unpickles or executes code and
refuses foreign, tampered or oversized files.

Examples
--------
>>> import napari_sem_analysis as sem
>>> clf = sem.PixelClassifier(scales=(20, 40, 80, 160), scale_unit="nm")   # doctest: +SKIP
>>> clf.fit(image, scribbles, pixel_size=7.3)                              # doctest: +SKIP
>>> labels = clf.predict(other_image, pixel_size=7.3)                      # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .._validation import SEMAnalysisError, check_labels, check_positive
from .archive import load_forest, read_archive, write_archive
from .features import (
    DEFAULT_GROUPS,
    DEFAULT_SCALES,
    FeatureCache,
    FeatureSettings,
    _check_scales,
    feature_names,
    image_key,
    prepare_image,
    scales_to_px,
    tile_boxes,
)

__all__ = ["MODELS", "PixelClassifier"]

MODELS = ("random_forest", "extra_trees")
_MAX_CLASSES = 255

# one process-wide cache: features survive re-creating the classifier (e.g. changing the forest size)
_SHARED_CACHE = FeatureCache()


def _default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def _as_list(x) -> list:
    if isinstance(x, np.ndarray) and x.ndim == 2:
        return [x]
    if isinstance(x, (list, tuple)):
        return list(x)
    return [x]


def _unwrap(image):
    """Accept an array or an object with ``.data`` / ``.pixel_size`` (SEMImage)."""
    if hasattr(image, "data") and not isinstance(image, np.ndarray):
        return np.asarray(image.data), getattr(image, "pixel_size", None)
    return image, None


class PixelClassifier:
    """Pixel classifier trained from scribbles (a few painted strokes per class).

    Parameters
    ----------
    features : sequence of str
        Feature groups: any of ``"intensity"``, ``"gradient"``, ``"laplacian"``,
        ``"hessian"``, ``"structure"``, ``"std"`` (default: all).
    model : {"extra_trees", "random_forest"}
        The scikit-learn ensemble trained on the scribbled pixels. Extremely
        randomised trees are the default: as accurate as a random forest on
        the superalloy benchmark and several times faster to train.
    scales : sequence of float
        Gaussian sigmas of the features, in ``scale_unit``.
    scale_unit : {"px", "nm"}
        ``"nm"``: the scales are physical lengths, converted with each image's
        pixel size (so one model works at another magnification).
    n_estimators : int
        Number of trees.
    max_depth : int or None
        Depth limit of the trees (bounds prediction time).
    max_samples_per_class : int
        At most this many scribbled pixels per class are used for training
        (drawn at random; strokes of tens of thousands of pixels are thinned).
    normalize : {"percentile", "dtype", "none"}
        Intensity normalisation of each image before filtering.
    class_names : sequence of str, optional
        Names of classes 1..K (for display and the saved file).
    tile_size : int
        Tile edge (px) for feature computation and prediction.
    n_jobs : int, optional
        Threads for training and prediction (default: the CPU count, at most 8).
    seed : int
        Random seed (pixel sampling and the forest).
    """

    def __init__(
        self,
        features: Sequence[str] | str = DEFAULT_GROUPS,
        model: str = "extra_trees",
        *,
        scales: Sequence[float] = DEFAULT_SCALES,
        scale_unit: str = "px",
        n_estimators: int = 60,
        max_depth: int | None = 16,
        max_samples_per_class: int = 10_000,
        normalize: str = "percentile",
        class_names: Sequence[str] | None = None,
        tile_size: int = 1024,
        n_jobs: int | None = None,
        seed: int = 0,
    ):
        if model not in MODELS:
            raise SEMAnalysisError(f"model must be one of {MODELS}, got {model!r}")
        if scale_unit not in ("px", "nm"):
            raise SEMAnalysisError(f"scale_unit must be 'px' or 'nm', got {scale_unit!r}")
        # validates the groups, scales and normalisation
        self.features = FeatureSettings(features, _check_scales(scales, "scales"), normalize).groups
        self.model = model
        self.scales = _check_scales(scales, "scales")
        self.scale_unit = scale_unit
        self.n_estimators = int(check_positive(n_estimators, "n_estimators", maximum=2000))
        self.max_depth = None if max_depth is None else int(check_positive(max_depth, "max_depth", maximum=200))
        self.max_samples_per_class = int(check_positive(max_samples_per_class, "max_samples_per_class"))
        self.normalize = normalize
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.tile_size = int(check_positive(tile_size, "tile_size", maximum=1 << 14))
        if self.tile_size < 64:
            raise SEMAnalysisError(f"tile_size must be at least 64 px, got {tile_size}")
        self.n_jobs = _default_jobs() if n_jobs is None else int(check_positive(n_jobs, "n_jobs", maximum=256))
        self.seed = int(seed)
        self.cache = _SHARED_CACHE
        self.estimator_ = None
        self.classes_: np.ndarray | None = None
        self.n_training_pixels_: dict | None = None

    # ------------------------------------------------------------------ settings

    def settings_for(self, pixel_size: float | None = None) -> FeatureSettings:
        """Feature settings (sigmas in px) for an image of ``pixel_size`` nm."""
        return FeatureSettings(self.features, scales_to_px(self.scales, self.scale_unit, pixel_size), self.normalize)

    @property
    def feature_names(self) -> list[str]:
        """Names of the features, in the order the model sees them (scales in ``scale_unit``)."""
        return feature_names(self.features, self.scales, self.scale_unit)

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def feature_importances(self) -> dict[str, float]:
        """Mean decrease in impurity of each feature (sums to 1), by feature name."""
        self._require_fitted()
        imp = np.asarray(self.estimator_.feature_importances_, dtype=float)
        return dict(zip(self.feature_names, imp.tolist()))

    def _require_fitted(self):
        if self.estimator_ is None:
            raise SEMAnalysisError("the pixel classifier is not trained yet: call fit(images, scribbles) first")

    def _pixel_sizes(self, pixel_size, n: int) -> list:
        if isinstance(pixel_size, (list, tuple, np.ndarray)):
            sizes = list(pixel_size)
            if len(sizes) != n:
                raise SEMAnalysisError(f"{len(sizes)} pixel sizes for {n} images")
            return sizes
        return [pixel_size] * n

    # ------------------------------------------------------------------ training

    def _make_estimator(self):
        from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

        cls = RandomForestClassifier if self.model == "random_forest" else ExtraTreesClassifier
        return cls(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            max_features="sqrt",
            class_weight="balanced",
            n_jobs=self.n_jobs,
            random_state=self.seed,
        )

    def training_data(self, images, scribbles, *, pixel_size=None) -> tuple[np.ndarray, np.ndarray]:
        """Features and classes of the scribbled pixels (at most ``max_samples_per_class`` per class).

        Parameters
        ----------
        images : array or list of arrays
            One image (Y, X) or several.
        scribbles : array or list of arrays
            Label images of the same shapes: 0 unlabelled, 1..K classes.
        pixel_size : float or list of float, optional
            Pixel size(s) in nm (needed when ``scale_unit="nm"``).

        Returns
        -------
        X : ndarray (N, F) float32
        y : ndarray (N,) int
        """
        images = _as_list(images)
        scribbles = _as_list(scribbles)
        if len(images) != len(scribbles):
            raise SEMAnalysisError(f"{len(images)} images but {len(scribbles)} scribble images")
        if not images:
            raise SEMAnalysisError("no training images given")
        sizes = self._pixel_sizes(pixel_size, len(images))
        rng = np.random.default_rng(self.seed)
        # first pass: where the scribbles are, per class
        picks = []  # (image index, flat indices, classes)
        for i, (img, scr) in enumerate(zip(images, scribbles)):
            img, ps = _unwrap(img)
            img = prepare_image(img, name=f"image {i}")
            scr = check_labels(scr, name=f"scribbles {i}")
            if scr.shape != img.shape:
                raise SEMAnalysisError(f"scribbles {i} have shape {scr.shape} but image {i} has shape {img.shape}")
            flat = np.flatnonzero(scr)
            picks.append((img, ps if sizes[i] is None else sizes[i], flat, scr.ravel()[flat].astype(np.int64)))
        all_y = np.concatenate([p[3] for p in picks]) if picks else np.zeros(0, np.int64)
        classes = np.unique(all_y)
        if classes.size and classes.max() > _MAX_CLASSES:
            raise SEMAnalysisError(f"scribble classes must be 1..{_MAX_CLASSES}, got {int(classes.max())}")
        if classes.size < 2:
            raise SEMAnalysisError(
                "paint at least two classes (label 1, 2, ...) to train the pixel classifier; "
                f"found {'no' if classes.size == 0 else 'only one'} labelled class"
            )
        # subsample per class over all images together
        keep_masks = [np.zeros(p[2].size, bool) for p in picks]
        offsets = np.cumsum([0] + [p[2].size for p in picks])
        for c in classes:
            idx = np.flatnonzero(all_y == c)
            if idx.size > self.max_samples_per_class:
                idx = np.sort(rng.choice(idx, self.max_samples_per_class, replace=False))
            for j in range(len(picks)):
                sel = idx[(idx >= offsets[j]) & (idx < offsets[j + 1])] - offsets[j]
                keep_masks[j][sel] = True
        Xs, ys = [], []
        for (img, ps, flat, y), keep in zip(picks, keep_masks):
            if not keep.any():
                continue
            flat, y = flat[keep], y[keep]
            Xs.append(self._features_at(img, ps, flat))
            ys.append(y)
        return np.concatenate(Xs), np.concatenate(ys)

    def _features_at(self, img: np.ndarray, pixel_size, flat: np.ndarray) -> np.ndarray:
        settings = self.settings_for(pixel_size)
        key = image_key(img)
        lo_hi = self.cache.lo_hi(key, img, settings.normalize)
        w = img.shape[1]
        rows, cols = np.divmod(flat, w)
        out = np.empty((flat.size, settings.n_features), np.float32)
        for box in tile_boxes(img.shape, self.tile_size):
            y0, y1, x0, x1 = box
            inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
            if not inside.any():
                continue
            feats = self.cache.get(key, img, settings, box, lo_hi)
            out[inside] = feats[rows[inside] - y0, cols[inside] - x0]
        return out

    def fit(self, images, scribbles, *, pixel_size=None) -> PixelClassifier:
        """Train on the scribbled pixels of one or several images.

        Parameters
        ----------
        images : array (Y, X) or list of arrays
            Grayscale images (or ``SEMImage`` objects, whose pixel size is used).
        scribbles : array (Y, X) or list of arrays
            Integer label images of the same shapes: 0 = unlabelled, 1..K = classes.
        pixel_size : float or list of float, optional
            Pixel size(s) in nm; needed when ``scale_unit="nm"``.

        Returns
        -------
        PixelClassifier
            ``self``, trained.
        """
        X, y = self.training_data(images, scribbles, pixel_size=pixel_size)
        est = self._make_estimator()
        est.fit(X, y)
        self.estimator_ = est
        self.classes_ = np.asarray(est.classes_, dtype=np.int64)
        self.n_training_pixels_ = {int(c): int((y == c).sum()) for c in self.classes_}
        if self.class_names is not None and len(self.class_names) < int(self.classes_.max()):
            self.class_names = self.class_names + [
                f"class {k}" for k in range(len(self.class_names) + 1, int(self.classes_.max()) + 1)
            ]
        return self

    # ------------------------------------------------------------------ prediction

    def _region(self, region, shape) -> tuple[int, int, int, int]:
        h, w = shape
        if region is None:
            return 0, h, 0, w
        try:
            if len(region) == 2 and all(isinstance(r, slice) for r in region):
                ys, xs = region
                y0, y1, _ = ys.indices(h)
                x0, x1, _ = xs.indices(w)
            else:
                y0, y1, x0, x1 = (int(v) for v in region)
        except (TypeError, ValueError):
            raise SEMAnalysisError(f"region must be (slice_y, slice_x) or (y0, y1, x0, x1), got {region!r}") from None
        y0, y1 = max(0, y0), min(h, y1)
        x0, x1 = max(0, x0), min(w, x1)
        if y1 <= y0 or x1 <= x0:
            raise SEMAnalysisError(f"region {region!r} does not overlap the image of shape {shape}")
        return y0, y1, x0, x1

    def _predict_tiles(self, image, pixel_size=None, region=None, tile_size=None, progress=None, cancel=None, *, proba):
        self._require_fitted()
        image, ps = _unwrap(image)
        if pixel_size is None:
            pixel_size = ps
        img = prepare_image(image)
        settings = self.settings_for(pixel_size)
        y0, y1, x0, x1 = self._region(region, img.shape)
        key = image_key(img)
        lo_hi = self.cache.lo_hi(key, img, settings.normalize)
        tile = self.tile_size if tile_size is None else int(check_positive(tile_size, "tile_size"))
        n_cls = self.classes_.size
        if proba:
            out = np.zeros((y1 - y0, x1 - x0, n_cls), np.float32)
        else:
            dtype = np.uint8 if self.classes_.max() < 256 else np.uint16
            out = np.zeros((y1 - y0, x1 - x0), dtype)
        boxes = tile_boxes(img.shape, tile, (y0, y1, x0, x1))
        for i, box in enumerate(boxes):
            if cancel is not None and cancel():
                raise SEMAnalysisError("prediction cancelled")
            by0, by1, bx0, bx1 = box
            if tile == self.tile_size:
                # the cached grid tile holding this box (a region, e.g. the visible field, reuses it)
                gy0, gx0 = by0 - by0 % tile, bx0 - bx0 % tile
                grid = (gy0, min(gy0 + tile, img.shape[0]), gx0, min(gx0 + tile, img.shape[1]))
                feats = self.cache.get(key, img, settings, grid, lo_hi)[by0 - gy0 : by1 - gy0, bx0 - gx0 : bx1 - gx0]
            else:
                from .features import compute_features

                feats = compute_features(img, settings, lo_hi, box)
            X = feats.reshape(-1, feats.shape[-1])
            p = self.estimator_.predict_proba(X).astype(np.float32, copy=False)
            sl = (slice(by0 - y0, by1 - y0), slice(bx0 - x0, bx1 - x0))
            if proba:
                out[sl] = p.reshape(by1 - by0, bx1 - bx0, n_cls)
            else:
                out[sl] = self.classes_[np.argmax(p, axis=1)].reshape(by1 - by0, bx1 - bx0)
            if progress is not None:
                progress(i + 1, len(boxes))
        return out

    def predict(
        self,
        image,
        *,
        pixel_size: float | None = None,
        region=None,
        tile_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> np.ndarray:
        """Class of every pixel (the scribble values 1..K).

        Parameters
        ----------
        image : array (Y, X)
            Grayscale image (or ``SEMImage``).
        pixel_size : float, optional
            Pixel size in nm (needed when ``scale_unit="nm"``).
        region : (slice, slice) or (y0, y1, x0, x1), optional
            Predict only this window (e.g. the visible field); the result has
            the window's shape and equals the same window of a whole-image
            prediction.
        tile_size : int, optional
            Tile edge for this call (default ``self.tile_size``); memory grows
            with its square, not with the image.
        progress : callable(done, total), optional
            Called after each tile.
        cancel : callable() -> bool, optional
            Checked before each tile; True stops with :class:`SEMAnalysisError`.

        Returns
        -------
        labels : ndarray (Y, X) uint8 (uint16 above 255 classes)
        """
        return self._predict_tiles(image, pixel_size, region, tile_size, progress, cancel, proba=False)

    def predict_proba(self, image, **options) -> np.ndarray:
        """Class probabilities of every pixel.

        Parameters
        ----------
        image : array (Y, X)
            Grayscale image (or ``SEMImage``).
        **options
            ``pixel_size``, ``region``, ``tile_size``, ``progress``, ``cancel``:
            as for :meth:`predict`.

        Returns
        -------
        proba : ndarray (Y, X, K) float32
            Column ``k`` is the probability of class ``classes_[k]``.
        """
        return self._predict_tiles(image, proba=True, **options)

    # ------------------------------------------------------------------ files

    def _meta(self) -> dict:
        return {
            "classifier": "PixelClassifier",
            "model": self.model,
            "features": list(self.features),
            "scales": list(self.scales),
            "scale_unit": self.scale_unit,
            "normalize": self.normalize,
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "max_samples_per_class": self.max_samples_per_class,
            "tile_size": self.tile_size,
            "seed": self.seed,
            "classes": [int(c) for c in self.classes_],
            "class_names": self.class_names,
            "feature_names": self.feature_names,
            "n_training_pixels": {str(k): v for k, v in (self.n_training_pixels_ or {}).items()},
        }

    def save(self, path) -> Path:
        """Write the trained classifier to ``path`` (zip of JSON + a skops dump; no pickle).

        Parameters
        ----------
        path : str or Path
            File to write (``.pxclf`` is a good suffix; any name works).

        Returns
        -------
        Path
        """
        self._require_fitted()
        return write_archive(path, self._meta(), self.estimator_)

    @classmethod
    def load(cls, path) -> PixelClassifier:
        """Read a classifier written by :meth:`save`.

        Foreign, corrupt, tampered or oversized files raise
        :class:`SEMAnalysisError`; nothing in the file is executed.

        Parameters
        ----------
        path : str or Path
            A ``.pxclf`` file (a zip of ``meta.json`` and ``model.skops``).

        Returns
        -------
        PixelClassifier
            Trained, with the settings it was saved with.
        """
        path = Path(path)
        meta, payload = read_archive(path)
        name = path.name
        try:
            clf = cls(
                meta["features"],
                meta["model"],
                scales=meta["scales"],
                scale_unit=meta["scale_unit"],
                n_estimators=int(meta["n_estimators"]),
                max_depth=meta.get("max_depth"),
                max_samples_per_class=int(meta.get("max_samples_per_class", 10_000)),
                normalize=meta.get("normalize", "percentile"),
                class_names=meta.get("class_names"),
                tile_size=int(meta.get("tile_size", 1024)),
                seed=int(meta.get("seed", 0)),
            )
            classes = np.asarray([int(c) for c in meta["classes"]], dtype=np.int64)
            names = [str(n) for n in meta["feature_names"]]
        except SEMAnalysisError as exc:
            raise SEMAnalysisError(f"{name}: invalid classifier description ({exc})") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise SEMAnalysisError(f"{name}: invalid classifier description ({exc!r})") from None
        if classes.size < 2 or classes.size > _MAX_CLASSES or classes.min() < 1 or classes.max() > _MAX_CLASSES:
            raise SEMAnalysisError(f"{name}: invalid classifier description (classes {classes.tolist()[:10]})")
        if names != clf.feature_names:
            raise SEMAnalysisError(f"{name}: the feature list does not match the feature settings")
        est = load_forest(payload, name)
        if getattr(est, "n_features_in_", None) != len(names):
            raise SEMAnalysisError(f"{name}: the model does not match its feature list")
        est_classes = np.asarray(getattr(est, "classes_", []))
        if est_classes.shape != classes.shape or not np.array_equal(est_classes.astype(np.int64), classes):
            raise SEMAnalysisError(f"{name}: the model's classes do not match the file's description")
        if len(getattr(est, "estimators_", [])) != clf.n_estimators:
            raise SEMAnalysisError(f"{name}: the model does not hold the {clf.n_estimators} trees it claims")
        clf.estimator_ = est
        clf.classes_ = classes
        clf.n_training_pixels_ = {int(k): int(v) for k, v in dict(meta.get("n_training_pixels") or {}).items()}
        return clf

    def __repr__(self):
        state = "trained" if self.estimator_ is not None else "untrained"
        return (
            f"PixelClassifier(features={list(self.features)}, model={self.model!r}, "
            f"scales={list(self.scales)} {self.scale_unit}, {self.n_features} features, {state})"
        )
