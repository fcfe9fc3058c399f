"""Classifier widgets: objects (pores, particles) and image tiles (rust / no rust, defect classes).

* :class:`ObjectClassifierWidget`: the user marks example objects by clicking
  them into one Points layer per class (or fills a ``class`` column of the
  Labels layer's features), trains an :class:`~napari_sem_analysis.ObjectClassifier`
  (cross-validated accuracy and confusion matrix shown), and predicts: the
  Labels layer's features get ``class`` and ``prob_<class>`` columns, and a
  Labels layer ``object classes`` shows the objects coloured by class.
* :class:`TileClassifierWidget` (in ``_tiles``): trains an
  :class:`~napari_sem_analysis.ImageClassifier` (feature or CNN backend) from
  a folder with one sub-folder per class, or from tiles of Image layers
  (class = layer name), in a thread worker with progress and cancel; predicts
  the tiles of an Image layer into a Shapes layer ``tile classes`` (rectangles
  coloured by class, probabilities in its features) and optionally a
  ``tile probability`` heat-map Image layer.

Both record their predictions in the viewer's workflow (steps
``classify_objects`` / ``classify_tiles``, naming the model file) once the
model is saved or loaded, so that the Workflow widget and
``napari-sem-analysis batch`` replay them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from magicgui.widgets import ComboBox, Label, LineEdit, PushButton

from .._validation import SEMAnalysisError, to_grayscale
from ._base import SEMWidget, layers_of
from ._classifier_common import (
    _EXAMPLE_PREFIX,
    _MODELS,
    ModelFiles,
    _cv_text,
    _figure_canvas,
    _parse_class_names,
    _show_confusion,
    _StepRecorder,
    class_color,
)
from ._common import (
    as_array,
    layer_pixel_size,
    notify_error,
    notify_info,
    spatial_kwargs,
    write_layer,
)
from ._layout import wrap_text


class ObjectClassifierWidget(ModelFiles, SEMWidget):
    """Train and apply an object classifier on a Labels layer.

    Examples come from one Points layer per class (``examples: <class>``,
    created with *Add example layers*; click inside objects), or from a
    ``class`` column in the Labels layer's features. Training shows
    cross-validated accuracy, per-class precision/recall/F1 and a confusion
    matrix. Prediction writes ``class`` and ``prob_<class>`` into the Labels
    layer's features and a Labels layer ``object classes`` coloured by class.
    """

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.classifier = None
        self.cv_result = None
        self._recorder = _StepRecorder(self)

        self._labels = self.layer_box("labels", "Labels")
        self._image = self.layer_box("image (intensity)", "Image", optional=True, arg="image")
        self._classes = LineEdit(label="classes", value="gas, keyhole, lack-of-fusion")
        self._add_points = PushButton(text="Add example layers (one per class)")
        self._source = ComboBox(
            label="examples from", choices=["points layers", "labels features 'class' column"], value="points layers"
        )
        self._add_column = PushButton(text="Add 'class' column (type classes in the Feature table)")
        self._model = ComboBox(label="model", choices=_MODELS, value="random_forest")
        self._features = ComboBox(
            label="features", choices=["shape", "shape+intensity", "shape+texture", "all"], value="shape"
        )
        self._train = PushButton(text="Train")
        self._predict = PushButton(text="Predict")
        self._report = Label(value="not trained")
        self.extend(
            [
                self._labels,
                self._image,
                self._classes,
                self._add_points,
                self._source,
                self._add_column,
                self._model,
                self._features,
                self._train,
                self._report,
                self._predict,
                *self.model_file_widgets(),
            ]
        )
        wrap_text(self._report)
        self._canvas = _figure_canvas(self)
        self._add_points.changed.connect(self.add_example_layers)
        self._add_column.changed.connect(self.add_class_column)
        self._train.changed.connect(self.train)
        self._predict.changed.connect(self.predict)

    @property
    def class_names(self) -> list[str]:
        return _parse_class_names(self._classes.value)

    # -- examples ------------------------------------------------------
    def add_example_layers(self, _event=None):
        """Add an empty Points layer per class (``examples: <class>``), if missing."""
        try:
            names = self.class_names
        except SEMAnalysisError as exc:
            notify_error(exc)
            return []
        labels = self._labels.value
        spatial = spatial_kwargs(labels)
        layers = []
        existing = {layer.name: layer for layer in layers_of(self.viewer, "Points")}
        for i, name in enumerate(names):
            lname = _EXAMPLE_PREFIX + name
            if lname in existing:
                layers.append(existing[lname])
                continue
            ndim = labels.ndim if labels is not None else 2
            layer = self.viewer.add_points(
                np.empty((0, ndim)),
                name=lname,
                face_color=[class_color(i)],
                border_color="white",
                size=8,
                **spatial,
            )
            layer.current_face_color = class_color(i)
            layer.mode = "add"
            layers.append(layer)
        return layers

    def add_class_column(self, _event=None):
        """Give the Labels layer's features an empty ``class`` column to annotate.

        Existing features (e.g. measurements) are kept; without features a
        table with one row per object (``index``) is made. The column is then
        edited in the *Feature table* (double-click a cell, type a class name)
        and used with *examples from: labels features 'class' column*.
        """
        labels_layer = self._labels.value
        if labels_layer is None:
            notify_error("choose a Labels layer first")
            return None
        feats = pd.DataFrame(labels_layer.features).reset_index(drop=True)
        if "class" in feats.columns:
            notify_info(f"{labels_layer.name!r} already has a 'class' column")
        else:
            if len(feats) == 0 or not ({"index", "label"} & set(feats.columns)):
                ids = np.unique(as_array(labels_layer.data))
                ids = ids[ids > 0]
                base = pd.DataFrame({"index": ids.astype(int)})
                feats = base if len(feats) != len(ids) else pd.concat([base, feats], axis=1)
            feats["class"] = ""
            labels_layer.features = feats
            notify_info(
                f"added a 'class' column to {labels_layer.name!r}: type class names into it in the Feature table"
            )
        self._source.value = "labels features 'class' column"
        return labels_layer.features

    def _examples_from_points(self, labels_layer) -> dict[int, str]:
        labels = as_array(labels_layer.data)
        found: dict[int, str] = {}
        conflicts = set()
        points = {
            layer.name[len(_EXAMPLE_PREFIX) :]: layer
            for layer in layers_of(self.viewer, "Points")
            if layer.name.startswith(_EXAMPLE_PREFIX)
        }
        for name in self.class_names:
            layer = points.get(name)
            if layer is None or len(layer.data) == 0:
                continue
            for p in np.asarray(layer.data):
                world = layer.data_to_world(p)
                idx = np.round(np.asarray(labels_layer.world_to_data(world))).astype(int)
                if np.any(idx < 0) or np.any(idx >= np.asarray(labels.shape)):
                    continue
                lab = int(labels[tuple(idx)])
                if lab == 0:
                    continue
                if lab in found and found[lab] != name:
                    conflicts.add(lab)
                found[lab] = name
        for lab in conflicts:
            found.pop(lab)
        if conflicts:
            notify_info(f"{len(conflicts)} object(s) were marked with two classes and were ignored")
        return found

    def _examples_from_features(self, labels_layer) -> dict[int, str]:
        feats = labels_layer.features
        col = "class_annotation" if "class_annotation" in feats.columns else "class"
        if col not in feats.columns:
            raise SEMAnalysisError(
                f"the layer {labels_layer.name!r} has no 'class' column in its features: "
                "press \"Add 'class' column\" and type classes in the Feature table"
            )
        ids = _feature_ids(feats)
        names = set(self.class_names)
        found = {}
        for lab, value in zip(ids, feats[col].tolist()):
            if isinstance(value, str) and value in names and lab > 0:
                found[int(lab)] = value
        return found

    def examples(self) -> dict[int, str]:
        """The training examples: label value -> class name."""
        labels_layer = self._labels.value
        if labels_layer is None:
            raise SEMAnalysisError("choose a Labels layer first")
        if self._source.value == "points layers":
            return self._examples_from_points(labels_layer)
        return self._examples_from_features(labels_layer)

    # -- features ------------------------------------------------------
    def _read_inputs(self):
        """(labels, image or None, pixel size) read from the chosen layers (GUI thread)."""
        labels_layer = self._labels.value
        if labels_layer is None:
            raise SEMAnalysisError("choose a Labels layer first")
        image_layer = self._image.value
        labels = as_array(labels_layer.data)
        image = None
        if image_layer is not None:
            image = to_grayscale(as_array(image_layer.data))
            if image.shape != labels.shape:
                raise SEMAnalysisError(
                    f"image {image_layer.name!r} {image.shape} and labels {labels_layer.name!r} "
                    f"{labels.shape} differ in shape"
                )
        return labels, image, layer_pixel_size(labels_layer)

    @staticmethod
    def _table(labels, image, pixel_size):
        from ..classification import object_features

        return object_features(labels, image, pixel_size=pixel_size)

    # -- actions -------------------------------------------------------
    def train(self, _event=None):
        """Train on the examples (thread worker); shows CV accuracy and the confusion matrix."""
        from ..classification import ObjectClassifier

        try:
            names = self.class_names
            examples = self.examples()
            if not examples:
                raise SEMAnalysisError("no examples: click objects into the 'examples: <class>' points layers")
            used = {c for c in examples.values()}
            if len(used) < 2:
                raise SEMAnalysisError("give examples of at least two classes")
            labels_layer = self._labels.value
            inputs = self._read_inputs()
        except SEMAnalysisError as exc:
            notify_error(exc)
            return None
        model = self._model.value
        feature_set = self._features.value

        def work():
            table = self._table(*inputs)
            t = table.set_index("label", drop=False)
            ids = [lab for lab in examples if lab in t.index]
            sub = t.loc[ids].reset_index(drop=True)
            y = np.array([examples[lab] for lab in ids])
            clf = ObjectClassifier(feature_set, model=model, class_names=names)
            counts = pd.Series(y).value_counts()
            result = None
            if counts.min() >= 2 and len(counts) >= 2:
                result = clf.cross_validate(sub, y, n_splits=5)
            clf.fit(sub, y)
            return clf, result, len(ids)

        def done(out):
            clf, result, n = out
            self.classifier = clf
            self._recorder.trained()
            self.cv_result = result
            if result is None:
                self._report.value = f"trained on {n} examples (too few per class for cross-validation)"
                self._canvas.figure.clear()
                self._canvas.draw_idle()
            else:
                self._report.value = f"trained on {n} examples\n" + _cv_text(result)
                _show_confusion(self._canvas, result)
            labels_layer.metadata["classifier_classes"] = list(clf.class_names)

        return self.start(work, done, desc="training object classifier")

    def predict(self, _event=None):
        """Classify every object; write features and the ``object classes`` layer."""
        if not self.has_classifier():
            return None
        labels_layer = self._labels.value
        if labels_layer is None:
            notify_error("choose a Labels layer first")
            return None
        try:
            inputs = self._read_inputs()
        except SEMAnalysisError as exc:
            notify_error(exc)
            return None
        clf = self.classifier
        step_inputs = {"labels": labels_layer.name}
        if self._image.value is not None:
            step_inputs["image"] = self._image.value.name

        def work():
            return clf.predict_table(self._table(*inputs))

        def done(out):
            self._write_predictions(labels_layer, inputs[0], out, clf)
            # replayed by the workflow's classify_objects step (measure with its defaults, as here)
            self._recorder.predicted(clf, "classify_objects", {}, step_inputs, "classes")

        return self.start(work, done, desc="classifying objects")

    def _write_predictions(self, labels_layer, labels, out: pd.DataFrame, clf):
        names = list(clf.class_names)
        self._write_features(labels_layer, out, names)
        class_index = {name: i + 1 for i, name in enumerate(names)}
        lut = np.zeros(int(labels.max()) + 1, dtype=np.int32)
        lut[out["label"].to_numpy(int)] = [class_index[c] for c in out["class"]]
        class_map = lut[labels]
        from napari.utils.colormaps import DirectLabelColormap

        colors = {None: (0, 0, 0, 0), 0: (0, 0, 0, 0)}
        colors.update({i + 1: class_color(i) for i in range(len(names))})
        feats = pd.DataFrame({"index": np.arange(len(names) + 1), "class": ["background", *names]})
        layer = write_layer(
            self.viewer,
            class_map,
            name="object classes",
            kind="labels",
            like=labels_layer,
            features=feats,
            colormap=DirectLabelColormap(color_dict=colors),
            metadata={"class_names": names},
        )
        counts = out["class"].value_counts()
        notify_info("classified: " + ", ".join(f"{counts.get(n, 0)} {n}" for n in names))
        return layer

    @staticmethod
    def _write_features(labels_layer, out: pd.DataFrame, names):
        feats = labels_layer.features.copy() if len(labels_layer.features.columns) else pd.DataFrame()
        pred = out[["label", "class", *[f"prob_{n}" for n in names]]].copy()
        if len(feats) and ("label" in feats.columns or "index" in feats.columns):
            feats = feats.copy()
            ids = _feature_ids(feats)
            feats["label"] = ids
            if "class" in feats.columns and not labels_layer.metadata.get("class_predicted", False):
                # keep the user's own annotations before overwriting the column
                feats["class_annotation"] = feats["class"]
            drop = [c for c in feats.columns if c == "class" or str(c).startswith("prob_")]
            feats = feats.drop(columns=drop).merge(pred, on="label", how="outer")
        else:
            feats = pred
        feats["index"] = feats["label"].astype(int)
        feats = feats.sort_values("index").reset_index(drop=True)
        labels_layer.features = feats
        labels_layer.metadata["class_predicted"] = True

    def _load_file(self, path):
        from ..classification import ObjectClassifier

        return ObjectClassifier.load(path)

    def _show_loaded(self, clf) -> str:
        self._classes.value = ", ".join(clf.class_names)
        self._model.value = clf.model
        if isinstance(clf.features, str):
            self._features.value = clf.features
        return clf.model


def _feature_ids(feats: pd.DataFrame) -> np.ndarray:
    """Label value of each feature row (``index`` column, else ``label``, else the row number)."""
    if "index" in feats.columns:
        return feats["index"].to_numpy(int)
    if "label" in feats.columns:
        return feats["label"].to_numpy(int)
    return np.arange(len(feats))


from ._tiles import TileClassifierWidget  # noqa: E402  (the tile classifier, re-exported)

__all__ = ["ObjectClassifierWidget", "TileClassifierWidget", "class_color"]
