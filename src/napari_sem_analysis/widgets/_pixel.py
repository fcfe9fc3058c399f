"""Pixel classifier widget: paint a few strokes per class, see the whole image classified.

Choose the image and a scribble Labels layer (*New scribble layer* makes
one), paint label 1, 2, ... on a few places of each phase and press *Train
and predict*. With *live* on, every painted stroke retrains the forest and
re-predicts in a thread worker: the GUI never waits, and strokes painted
while a run is under way are gathered into one next run (stale updates are
dropped). A live update is a preview: it trains a lighter forest (at most
``LIVE_TREES`` trees) and, on images above ``LIVE_WHOLE_IMAGE_PIXELS``,
predicts only the visible field; *Train and predict* always trains the full
forest and predicts the whole image. Features are cached per image, so a
retrain only re-fits the forest. The result is a Labels layer (``pixel classes``; probabilities as an
image stack on request); the feature importances are listed; *Save* writes
the classifier (after a live preview it first refits the full forest on the
cached features, so the file holds what *Train and predict* gives; a safe
zip, no pickle) and records the ``pixel_classify`` step so that a recipe runs the trained classifier over a folder.
"""

from __future__ import annotations

import contextlib

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    LineEdit,
    PushButton,
    Select,
    SpinBox,
)

from .._validation import SEMAnalysisError
from ._base import SEMWidget, StepCall, check_gray, layers_of
from ._common import as_array, notify_error, write_layer

__all__ = ["PixelClassifierWidget"]

_RESULT = "pixel classes"
# live mode on larger images re-predicts only the visible field after a stroke (Train predicts all)
LIVE_WHOLE_IMAGE_PIXELS = 1_000_000
# live mode trains at most this many trees (prediction time grows with the trees; Train uses them all)
LIVE_TREES = 20
_PROBA = "pixel probabilities"


def _parse_scales(text: str) -> tuple:
    try:
        values = tuple(float(v) for v in str(text).replace(";", ",").split(",") if v.strip())
    except ValueError:
        raise SEMAnalysisError(f"scales must be numbers separated by commas, got {text!r}") from None
    if not values:
        raise SEMAnalysisError("give at least one feature scale")
    return values


def _stack_spatial(layer) -> dict:
    """Scale and units for a (planes, Y, X) stack over a 2-D layer."""
    if layer is None:
        return {}
    return {"scale": (1.0, *tuple(layer.scale)[-2:]), "units": ("pixel", *tuple(str(u) for u in layer.units)[-2:])}


class PixelClassifierWidget(SEMWidget):
    """Train a pixel classifier from scribbles; optionally live after every stroke."""

    step = "pixel_classify"

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        from ..pixel_classifier import FEATURE_GROUPS

        self._image = self.layer_box("image", "Image")
        self._scribbles = self.layer_box("scribbles", "Labels", arg="scribbles")
        self._new_btn = PushButton(text="New scribble layer")
        self._new_btn.changed.connect(lambda *_: self.new_scribble_layer())
        self._groups = Select(label="features", choices=list(FEATURE_GROUPS), value=list(FEATURE_GROUPS))
        self._scales = LineEdit(label="scales (px)", value="1, 2, 4, 8, 16")
        self._model = ComboBox(label="model", choices=["extra_trees", "random_forest"], value="extra_trees")
        self._trees = SpinBox(label="trees", min=5, max=500, value=60)
        self._live = CheckBox(label="live (retrain after each stroke)", value=False)
        self._proba = CheckBox(label="probabilities", value=False)
        self._train_btn = PushButton(text="Train and predict")
        self._train_btn.changed.connect(lambda *_: self.run())
        self._features_btn = PushButton(text="Show features")
        self._features_btn.changed.connect(lambda *_: self.show_features())
        self._importances = Label(value="")
        self._save_path = FileEdit(label="model file", mode="w", filter="*.pxclf")
        self._save_btn = PushButton(text="Save")
        self._save_btn.changed.connect(lambda *_: self.save(self._save_path.value))
        self._load_path = FileEdit(label="load", mode="r", filter="*.pxclf")
        self._load_btn = PushButton(text="Load and predict")
        self._load_btn.changed.connect(lambda *_: self.load(self._load_path.value))
        self.extend(
            [
                self._image,
                self._scribbles,
                self._new_btn,
                self._groups,
                self._scales,
                self._model,
                self._trees,
                self._live,
                self._proba,
                Container(widgets=[self._train_btn, self._features_btn], layout="horizontal", labels=False),
                self._status,
                self._importances,
                self._save_path,
                self._save_btn,
                self._load_path,
                self._load_btn,
            ]
        )
        self.classifier = None
        self.model_path: str | None = None
        self._pending = False
        self._paint_scheduled = False
        self._hooked = None
        self._scribbles.changed.connect(self._hook)
        self._image.changed.connect(self._sync_scale_label)
        self._live.changed.connect(self._on_live)
        self._hook()
        self._sync_scale_label()

    # -- layers ------------------------------------------------------------------
    def new_scribble_layer(self):
        """Add an empty Labels layer shaped like the image (with its scale) and choose it."""
        layer = self._image.value
        if layer is None:
            notify_error("choose an image layer first")
            return None
        data = check_gray(layer)
        shape = data.shape[-2:] if data.ndim == 3 else data.shape
        scr = self.viewer.add_labels(
            np.zeros(shape, np.uint8), name="scribbles", scale=tuple(layer.scale)[-2:], units=tuple(layer.units)[-2:]
        )
        scr.brush_size = 5
        scr.mode = "paint"
        scr.selected_label = 1
        self._scribbles.reset_choices()
        self._scribbles.value = scr
        return scr

    def _hook(self, _event=None):
        """Follow the chosen scribble layer's paint events (for live mode)."""
        layer = self._scribbles.value
        if layer is self._hooked:
            return
        if self._hooked is not None:
            with contextlib.suppress(TypeError, ValueError, RuntimeError):  # the old layer may be gone
                self._hooked.events.paint.disconnect(self._on_paint)
        self._hooked = layer
        if layer is not None:
            layer.events.paint.connect(self._on_paint)

    def _sync_scale_label(self, _event=None):
        self._scales.label = f"scales ({self.unit()})"
        ps = self.pixel_size()
        if ps is not None and self._scales.value == "1, 2, 4, 8, 16":
            self._scales.value = ", ".join(f"{s * ps:.3g}" for s in (1, 2, 4, 8, 16))
        elif ps is None and self._scales.label.endswith("(px)") and not self._scales.value:
            self._scales.value = "1, 2, 4, 8, 16"

    def _on_live(self, value):
        if value:
            self.request()

    def _on_paint(self, _event=None):
        # napari emits ``paint`` before it writes the stroke into the data: look after this event
        if self._live.value and not self._paint_scheduled:
            from qtpy.QtCore import QTimer

            self._paint_scheduled = True
            QTimer.singleShot(0, self._after_paint)

    def _after_paint(self):
        self._paint_scheduled = False
        if self._live.value:
            self.request()

    # -- the classifier ------------------------------------------------------------
    def make_classifier(self, live: bool = False):
        """A classifier with the widget's settings (re-used while they do not change).

        ``live``: at most ``LIVE_TREES`` trees (the preview after a stroke).
        """
        from ..pixel_classifier import PixelClassifier

        groups = list(self._groups.value) or None
        if not groups:
            raise SEMAnalysisError("choose at least one feature group")
        unit = self.unit()
        trees = min(int(self._trees.value), LIVE_TREES) if live else int(self._trees.value)
        settings = (tuple(groups), _parse_scales(self._scales.value), unit, self._model.value, trees)
        clf = self.classifier
        if clf is None or getattr(self, "_settings", None) != settings:
            clf = PixelClassifier(
                features=groups, model=self._model.value, scales=settings[1], scale_unit=unit, n_estimators=trees
            )
            self._settings = settings
        return clf

    def request(self):
        """Retrain and predict now, or right after the run under way (strokes in between are merged)."""
        if self.running:
            self._pending = True
            return None
        return self.run(live=self._live.value)

    def run(self, _event=None, *, live: bool = False):
        """Train on the scribbles and predict the image in a thread worker; returns the worker or None.

        ``live``: the preview after a stroke (a lighter forest; on large images only the visible field).
        """
        try:
            image_layer = self._image.value
            image, scribbles = self._checked_inputs()
            if len(np.unique(scribbles)) < 3:
                raise SEMAnalysisError("paint at least two classes (labels 1 and 2) in the scribble layer")
            clf = self.make_classifier(live=live)
            ps = self.pixel_size()
            proba = bool(self._proba.value)
            region = self.visible_region(image_layer, image.shape) if live else None
        except SEMAnalysisError as exc:
            if not live:
                notify_error(exc)
            else:
                self._status.value = str(exc)
            return None
        self._pending = False

        def work():
            def job(progress, cancel):
                clf.fit(image, scribbles, pixel_size=ps)
                labels = clf.predict(image, pixel_size=ps, region=region, progress=progress, cancel=cancel)
                p = None
                if proba and region is None:
                    p = clf.predict_proba(image, pixel_size=ps, cancel=cancel)
                return clf, labels, p

            from ._base import in_thread

            return (yield from in_thread(job, lambda: self._cancel_requested, name="pixel-classifier"))

        def done(result):
            self.classifier = result[0]
            if region is not None:
                result = (result[0], self._paste(result[1], region, image.shape), result[2])
            self.write(result, image_layer, live=live)

        def finished(_value=None):
            self.finished.disconnect(finished)
            if self._pending and self._live.value:
                self.request()

        self._status.value = "pixel classifier: training..."
        self.finished.connect(finished)
        return self.start(work, done, desc="pixel classifier")

    def _checked_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """The chosen 2-D image and a copy of the scribbles (the user keeps painting), checked."""
        scr_layer = self._scribbles.value
        if scr_layer is None:
            raise SEMAnalysisError("choose or create a scribble Labels layer first")
        image = check_gray(self._image.value)
        if image.ndim != 2:
            raise SEMAnalysisError("the pixel classifier works on 2-D images; choose one plane")
        scribbles = np.array(as_array(scr_layer.data), copy=True)
        if scribbles.shape != image.shape:
            raise SEMAnalysisError(f"the scribble layer has shape {scribbles.shape} but the image has {image.shape}")
        return image, scribbles

    def visible_region(self, image_layer, shape) -> tuple | None:
        """The visible field ``(y0, y1, x0, x1)`` of a large image (live mode predicts only that), or None."""
        if int(np.prod(shape)) <= LIVE_WHOLE_IMAGE_PIXELS:
            return None
        try:
            corners = np.asarray(image_layer.corner_pixels)[:, -2:]
        except (AttributeError, IndexError, TypeError, ValueError):
            return None
        y0, x0 = (int(v) for v in np.maximum(corners[0], 0))
        y1, x1 = (int(v) + 1 for v in corners[1])
        y1, x1 = min(y1, shape[0]), min(x1, shape[1])
        if y1 <= y0 or x1 <= x0 or (y1 - y0) * (x1 - x0) >= int(np.prod(shape)):
            return None
        return y0, y1, x0, x1

    def _paste(self, labels, region, shape):
        """The visible field's classes pasted into the previous result (zeros where never predicted)."""
        old = self.viewer.layers[_RESULT].data if _RESULT in self.viewer.layers else None
        full = np.array(old, copy=True) if old is not None and old.shape == shape else np.zeros(shape, labels.dtype)
        y0, y1, x0, x1 = region
        full[y0:y1, x0:x1] = labels
        return full

    def write(self, result, image_layer, *, live: bool = False):
        clf, labels, proba = result
        layer = write_layer(
            self.viewer,
            labels,
            name=_RESULT,
            kind="labels",
            like=image_layer,
            metadata={"step": self.step, "classes": [int(c) for c in clf.classes_]},
        )
        layer.features = {
            "label": [int(c) for c in clf.classes_],
            "training_pixels": [int((clf.n_training_pixels_ or {}).get(int(c), 0)) for c in clf.classes_],
            "area_fraction": [float((labels == c).mean()) for c in clf.classes_],
        }
        if proba is not None:
            write_layer(
                self.viewer,
                np.moveaxis(proba, -1, 0),
                name=_PROBA,
                kind="image",
                metadata={"classes": [int(c) for c in clf.classes_]},
                **_stack_spatial(image_layer),
            )
        top = sorted(clf.feature_importances.items(), key=lambda kv: -kv[1])[:6]
        self._importances.value = "importance: " + "; ".join(f"{k} {v:.2f}" for k, v in top)
        n = sum((clf.n_training_pixels_ or {}).values())
        self._status.value = f"pixel classifier: {len(clf.classes_)} classes from {n} scribbled pixels"
        if live and clf.n_estimators < int(self._trees.value):
            self._status.value += f" (live preview: {clf.n_estimators} trees; Train and predict uses all)"
        if self.model_path:
            self._record()
        return layer

    # -- features ------------------------------------------------------------------
    def show_features(self):
        """Add the feature stack the classifier sees as an image layer (one plane per feature)."""
        from ..pixel_classifier import pixel_features

        try:
            clf = self.make_classifier()
            image = check_gray(self._image.value)
            stack, _ = pixel_features(
                image, features=clf.features, scales=clf.scales, unit=clf.scale_unit, pixel_size=self.pixel_size()
            )
        except SEMAnalysisError as exc:
            notify_error(exc)
            return None
        return write_layer(
            self.viewer,
            stack,
            name="pixel features",
            kind="image",
            metadata={"feature_names": clf.feature_names},
            **_stack_spatial(self._image.value),
        )

    # -- files -------------------------------------------------------------------------
    def save(self, path):
        """Save the trained classifier and record the ``pixel_classify`` step; the path or None."""
        try:
            if self.classifier is None or self.classifier.estimator_ is None:
                raise SEMAnalysisError("train the classifier first")
            if not path or str(path) in ("", "."):
                raise SEMAnalysisError("choose a file to save the classifier to")
            if self.classifier.n_estimators < int(self._trees.value):
                self._fit_full_forest()
            out = self.classifier.save(path)
        except (SEMAnalysisError, OSError) as exc:
            notify_error(exc)
            return None
        self.model_path = str(out)
        self._status.value = f"saved {out.name}"
        self._record()
        return out

    def _fit_full_forest(self):
        """Refit with the widget's whole forest after a live preview (a lighter one), so a saved file and
        the batch use what *Train and predict* would; the features are cached, so only the trees are fitted."""
        image, scribbles = self._checked_inputs()
        clf = self.make_classifier(live=False)
        clf.fit(image, scribbles, pixel_size=self.pixel_size())
        self.classifier = clf

    def load(self, path):
        """Load a saved classifier and predict the chosen image with it (in a worker)."""
        from ..pixel_classifier import PixelClassifier

        try:
            clf = PixelClassifier.load(path)
            image_layer = self._image.value
            image = check_gray(image_layer)
        except SEMAnalysisError as exc:
            notify_error(exc)
            return None
        self.classifier = clf
        self._settings = None  # a loaded model is kept until Train is pressed
        self.model_path = str(path)
        self._live.value = False
        ps = self.pixel_size()
        proba = bool(self._proba.value)

        def work():
            def job(progress, cancel):
                labels = clf.predict(image, pixel_size=ps, progress=progress, cancel=cancel)
                p = clf.predict_proba(image, pixel_size=ps, cancel=cancel) if proba else None
                return clf, labels, p

            from ._base import in_thread

            return (yield from in_thread(job, lambda: self._cancel_requested, name="pixel-classifier"))

        return self.start(work, lambda r: self.write(r, image_layer), desc="pixel classifier")

    def _record(self):
        image_layer = self._image.value
        if image_layer is None or not self.model_path:
            return
        self.record(StepCall(self.step, {"model": self.model_path}, {"image": image_layer}, _RESULT))

    def unit_layer(self):
        return self._image.value

    def layers(self):  # pragma: no cover - convenience for scripts
        return layers_of(self.viewer, "Image"), layers_of(self.viewer, "Labels")
