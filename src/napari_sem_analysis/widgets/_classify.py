"""Classifier widgets: objects (pores, particles) and image tiles (rust / no rust, defect classes).

* :class:`ObjectClassifierWidget`: the user marks example objects by clicking
  them into one Points layer per class (or fills a ``class`` column of the
  Labels layer's features), trains an :class:`~napari_sem_analysis.ObjectClassifier`
  (cross-validated accuracy and confusion matrix shown), and predicts: the
  Labels layer's features get ``class`` and ``prob_<class>`` columns, and a
  Labels layer ``object classes`` shows the objects coloured by class.
* :class:`TileClassifierWidget`: trains an
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

import re
from pathlib import Path

import numpy as np
import pandas as pd
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

from .._validation import SEMAnalysisError, to_grayscale
from ._base import SEMWidget, StepCall, in_thread, layers_of
from ._common import as_array, layer_pixel_size, notify_error, notify_info, spatial_kwargs, write_layer

_CLASS_COLORS = [
    (0.12, 0.47, 0.71, 1.0),  # blue
    (1.00, 0.50, 0.05, 1.0),  # orange
    (0.84, 0.15, 0.16, 1.0),  # red
    (0.17, 0.63, 0.17, 1.0),  # green
    (0.58, 0.40, 0.74, 1.0),  # purple
    (0.55, 0.34, 0.29, 1.0),  # brown
    (0.89, 0.47, 0.76, 1.0),  # pink
    (0.74, 0.74, 0.13, 1.0),  # olive
    (0.09, 0.75, 0.81, 1.0),  # cyan
    (0.50, 0.50, 0.50, 1.0),  # grey
]

_MODELS = ["random_forest", "extra_trees", "gradient_boosting", "logistic_regression"]
_EXAMPLE_PREFIX = "examples: "
_MODEL_FILTER = "*.semclf"
_THREAD = "sem-classifier-work"  # the training/prediction thread's name


def class_color(i: int):
    """RGBA colour of class ``i`` (the same in every classifier layer)."""
    return _CLASS_COLORS[i % len(_CLASS_COLORS)]


def _parse_class_names(text: str) -> list[str]:
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    if len(names) < 2:
        raise SEMAnalysisError("give at least two class names, separated by commas")
    if len(set(names)) != len(names):
        raise SEMAnalysisError(f"class names must be distinct, got {names}")
    return names


def _prepare_torch():
    """Import torch in the GUI thread before a worker uses it.

    A first import of torch's extension modules from a worker thread is
    avoided; the CNN trainer itself never touches ``torch.optim`` (whose
    compiler-stack imports can crash a process with an LLVM-based OpenGL
    driver loaded).
    """
    import torch  # noqa: F401
    import torch.nn  # noqa: F401
    import torch.nn.functional  # noqa: F401


def _figure_canvas(container: Container):
    """A matplotlib canvas added to ``container``'s Qt layout (for confusion matrices)."""
    from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.6, 3.0), dpi=90)
    canvas = FigureCanvasQTAgg(fig)
    canvas.setMinimumHeight(260)
    container.native.layout().addWidget(canvas)
    return canvas


def _show_confusion(canvas, result):
    from ..classification import confusion_matrix_figure

    fig = canvas.figure
    fig.clear()
    ax = fig.add_subplot(1, 1, 1)
    confusion_matrix_figure(result.confusion_matrix, result.class_names, ax=ax, title=f"CV accuracy {result.accuracy:.2f}")
    canvas.draw_idle()


def _cv_text(result) -> str:
    kind = "grouped " if result.grouped else ""
    lines = [f"{result.n_splits}-fold {kind}CV accuracy: {result.accuracy:.3f} (balanced {result.balanced_accuracy:.3f})"]
    for name, row in result.per_class.iterrows():
        lines.append(f"  {name}: P {row['precision']:.2f}  R {row['recall']:.2f}  F1 {row['f1']:.2f}  n={int(row['support'])}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# object classifier
# ---------------------------------------------------------------------------


class _StepRecorder:
    """Records a classifier widget's prediction as a workflow step.

    A recipe step names the model *file*, so the step is recorded once the
    classifier that predicted is saved (or was loaded): at prediction time
    when the file is known, else when the user saves the model.
    """

    def __init__(self, widget):
        self.widget = widget
        self.model_file: Path | None = None  # the file holding the current classifier
        self.pending: tuple | None = None  # (classifier, function, params, inputs, output) not yet recorded
        self.told = False

    def trained(self):
        """A newly trained classifier is in no file yet."""
        self.model_file = None
        self.pending = None

    def stored(self, path, classifier):
        """The current classifier is in ``path`` (saved or loaded)."""
        self.model_file = Path(path).resolve()
        if self.pending is not None and self.pending[0] is classifier:
            self._record(*self.pending[1:])
            self.pending = None

    def predicted(self, classifier, function, params, inputs, output):
        if self.model_file is not None and self.widget.classifier is classifier:
            self._record(function, params, inputs, output)
            return
        self.pending = (classifier, function, params, inputs, output)
        if not self.told:
            self.told = True
            notify_info("save the model to add this prediction to the workflow (it names the model file)")

    def _record(self, function, params, inputs, output):
        self.widget.record(StepCall(function, {"model": str(self.model_file), **params}, inputs, output))


def _save_classifier(classifier, value):
    """Save a trained classifier to the file named in a path widget; the path, or None."""
    if classifier is None:
        notify_error("train or load a classifier first")
        return None
    path = Path(str(value))
    if not str(value) or path.is_dir():
        notify_error("choose a file name to save the model to")
        return None
    try:
        out = classifier.save(path)
    except (SEMAnalysisError, OSError) as exc:
        notify_error(exc)
        return None
    notify_info(f"model saved to {out}")
    return out


class ObjectClassifierWidget(SEMWidget):
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
        self._save_path = FileEdit(label="model file", mode="w", filter=_MODEL_FILTER)
        self._save = PushButton(text="Save model")
        self._load_path = FileEdit(label="load file", mode="r", filter=_MODEL_FILTER)
        self._load = PushButton(text="Load model")
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
                self._save_path,
                self._save,
                self._load_path,
                self._load,
            ]
        )
        self._canvas = _figure_canvas(self)
        self._add_points.changed.connect(self.add_example_layers)
        self._add_column.changed.connect(self.add_class_column)
        self._train.changed.connect(self.train)
        self._predict.changed.connect(self.predict)
        self._save.changed.connect(self.save_model)
        self._load.changed.connect(self.load_model)

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
        points = {layer.name[len(_EXAMPLE_PREFIX) :]: layer for layer in layers_of(self.viewer, "Points") if layer.name.startswith(_EXAMPLE_PREFIX)}
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
                    f"image {image_layer.name!r} {image.shape} and labels {labels_layer.name!r} {labels.shape} differ in shape"
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
        if self.classifier is None:
            notify_error("train or load a classifier first")
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

    def save_model(self, _event=None):
        out = _save_classifier(self.classifier, self._save_path.value)
        if out is not None:
            self._recorder.stored(out, self.classifier)
        return out

    def load_model(self, _event=None):
        from ..classification import ObjectClassifier

        path = Path(str(self._load_path.value))
        try:
            clf = ObjectClassifier.load(path)
        except SEMAnalysisError as exc:
            notify_error(exc)
            return None
        self.classifier = clf
        self._recorder.trained()
        self._recorder.stored(path, clf)
        self._classes.value = ", ".join(clf.class_names)
        self._model.value = clf.model
        if isinstance(clf.features, str):
            self._features.value = clf.features
        self._report.value = f"loaded {path.name}: {clf.model}, classes {', '.join(clf.class_names)}"
        return clf


def _feature_ids(feats: pd.DataFrame) -> np.ndarray:
    """Label value of each feature row (``index`` column, else ``label``, else the row number)."""
    if "index" in feats.columns:
        return feats["index"].to_numpy(int)
    if "label" in feats.columns:
        return feats["label"].to_numpy(int)
    return np.arange(len(feats))


# ---------------------------------------------------------------------------
# image / tile classifier
# ---------------------------------------------------------------------------


class TileClassifierWidget(SEMWidget):
    """Train an image/tile classifier and classify the tiles of an Image layer.

    Training data: a folder with one sub-folder per class, or Image layers
    (the class of each is its layer name), cut into tiles of *tile size*.
    Cross-validation is grouped: the tiles of one image stay in one fold.
    Training runs in a thread worker (progress in napari's activity dock,
    *Cancel* stops it). Prediction writes a Shapes layer ``tile classes``
    (rectangles coloured by class, probabilities in its features) and
    optionally a ``tile probability`` heat-map Image layer.
    """

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.classifier = None
        self.cv_result = None
        self._recorder = _StepRecorder(self)

        self._source = ComboBox(label="train from", choices=["folder", "image layers"], value="folder")
        self._folder = FileEdit(label="folder", mode="d")
        self._train_layers = self.layer_box("image layers (class = layer name)", "Image", widget=Select)
        self._backend = ComboBox(label="backend", choices=["features", "cnn"], value="features")
        self._model = ComboBox(label="model", choices=_MODELS, value="random_forest")
        self._tile = SpinBox(label="tile size (px)", min=16, max=4096, value=256)
        self._stride = SpinBox(label="stride (px, 0 = tile)", min=0, max=4096, value=0)
        self._epochs = SpinBox(label="CNN epochs", min=1, max=1000, value=20)
        self._input = SpinBox(label="CNN input size", min=16, max=1024, value=128)
        self._cv = CheckBox(text="cross-validate (grouped by source image)", value=True)
        self._train = PushButton(text="Train")
        self._cancel = PushButton(text="Cancel")
        self._progress = Label(value="")
        self._report = Label(value="not trained")
        self._image = self.layer_box("classify image", "Image", arg="image")
        self._heatmap = CheckBox(text="probability heat-map", value=False)
        # choices from the classifier (a callable, so that napari's reset_choices on layer changes keeps them)
        self._heat_class = ComboBox(label="heat-map class", choices=self._heat_class_choices)
        self._predict = PushButton(text="Classify tiles")
        self._save_path = FileEdit(label="model file", mode="w", filter=_MODEL_FILTER)
        self._save = PushButton(text="Save model")
        self._load_path = FileEdit(label="load file", mode="r", filter=_MODEL_FILTER)
        self._load = PushButton(text="Load model")
        self.extend(
            [
                self._source,
                self._folder,
                self._train_layers,
                self._backend,
                self._model,
                self._tile,
                self._stride,
                self._epochs,
                self._input,
                self._cv,
                self._train,
                self._cancel,
                self._progress,
                self._report,
                self._image,
                self._heatmap,
                self._heat_class,
                self._predict,
                self._save_path,
                self._save,
                self._load_path,
                self._load,
            ]
        )
        self._canvas = _figure_canvas(self)
        self._train.changed.connect(self.train)
        self._cancel.changed.connect(self.cancel)
        self._predict.changed.connect(self.predict)
        self._save.changed.connect(self.save_model)
        self._load.changed.connect(self.load_model)
        self._source.changed.connect(self._update_visibility)
        self._backend.changed.connect(self._update_visibility)
        self._update_visibility()

    def _heat_class_choices(self, _widget=None):
        clf = getattr(self, "classifier", None)
        return list(clf.class_names) if clf is not None and clf.class_names else []

    def _update_visibility(self, _event=None):
        folder = self._source.value == "folder"
        self._folder.visible = folder
        self._train_layers.visible = not folder
        cnn = self._backend.value == "cnn"
        self._model.visible = not cnn
        self._epochs.visible = cnn
        self._input.visible = cnn

    def _stride_value(self):
        return int(self._stride.value) or None

    def training_data(self):
        """(tiles, labels, groups, class_names) from the folder or the chosen layers."""
        from ..classification import extract_tiles, load_image_folder

        tile = int(self._tile.value)
        if self._source.value == "folder":
            folder = str(self._folder.value)
            if not folder or not Path(folder).is_dir():
                raise SEMAnalysisError("choose a folder with one sub-folder per class")
            data = load_image_folder(folder, tile_size=tile, stride=self._stride_value())
            return data.images, data.y, data.groups, data.class_names
        layers = list(self._train_layers.value or [])
        if len(layers) < 2:
            raise SEMAnalysisError("select at least two Image layers (the class of each is its name)")
        images = [to_grayscale(as_array(layer.data)) for layer in layers]
        # napari names a second layer "x" as "x [1]": both are class "x"
        names = [re.sub(r"\s*\[\d+\]$", "", layer.name) for layer in layers]
        for layer, im in zip(layers, images):
            if im.ndim != 2:
                raise SEMAnalysisError(f"layer {layer.name!r} is not a 2-D image")
        tiles, y, groups = extract_tiles(images, names, tile_size=tile, stride=self._stride_value())
        return tiles, y, groups, sorted(set(names))

    def _make_classifier(self, names):
        from ..classification import ImageClassifier

        if self._backend.value == "cnn":
            return ImageClassifier(
                "cnn", class_names=names, epochs=int(self._epochs.value), input_size=int(self._input.value)
            )
        return ImageClassifier("features", self._model.value, class_names=names)

    def train(self, _event=None):
        """Train in a thread worker (with grouped cross-validation when ticked)."""
        if self._running:
            notify_error("a run is already under way: wait for it or cancel it")
            return None
        try:
            tiles, y, groups, names = self.training_data()
            clf = self._make_classifier(names)
        except SEMAnalysisError as exc:
            notify_error(exc)
            return None
        if clf.backend == "cnn":
            _prepare_torch()
        do_cv = bool(self._cv.value)
        n_groups = len(set(groups.tolist()))

        def fit_all(progress, cancel):
            if not do_cv:
                clf.fit(tiles, y, groups=groups, progress=progress, cancel=cancel)
                return clf, None
            # features computed once; progress over every fold and the final training
            result = clf.fit_and_cross_validate(tiles, y, groups=groups, n_splits=5, progress=progress, cancel=cancel)
            return clf, result if result is not None else clf.cv_skipped_  # e.g. one source image per class

        def work():
            return (yield from in_thread(fit_all, cancelled=lambda: self._cancel_requested, name=_THREAD))

        def on_progress(item):
            if self._cancel_requested or item is None:
                return
            done, total = item
            self._progress.value = f"training: {done}/{total}"

        def done(out):
            trained, result = out
            self.classifier = trained
            self._recorder.trained()
            self._progress.value = "done"
            self._heat_class.reset_choices()
            head = f"{trained.backend} classifier on {len(tiles)} tiles from {n_groups} images"
            if result is None or isinstance(result, str):
                self.cv_result = None
                self._report.value = head + (f"\nno cross-validation: {result}" if result else "")
                self._canvas.figure.clear()
                self._canvas.draw_idle()
            else:
                self.cv_result = result
                self._report.value = head + "\n" + _cv_text(result)
                _show_confusion(self._canvas, result)

        self._progress.value = "training..."
        from ..classification import fold_count

        total = self.classifier_total(len(tiles), fold_count(y, groups, 5) if do_cv else None)
        return self.start(work, done, on_progress=on_progress, total=total, desc="training tile classifier")

    def classifier_total(self, n_tiles: int, n_folds: int | None = None) -> int:
        """Progress steps of a training run, as ``fit`` (``n_folds=None``) or
        ``fit_and_cross_validate`` (``n_folds`` folds, 0 when none are possible) count them."""
        if self._backend.value == "cnn":
            return int(self._epochs.value) * ((n_folds or 0) + 1)
        return n_tiles if n_folds is None else n_tiles + n_folds + 1

    def on_cancelled(self, desc: str) -> None:
        """The training or prediction was stopped by *Cancel*."""
        self._progress.value = "cancelled"

    def predict(self, _event=None):
        """Classify the tiles of the chosen Image layer (thread worker)."""
        if self.classifier is None:
            notify_error("train or load a classifier first")
            return None
        layer = self._image.value
        if layer is None:
            notify_error("choose an Image layer to classify")
            return None
        image = to_grayscale(as_array(layer.data))
        tile = int(self._tile.value)
        stride = self._stride_value()
        clf = self.classifier
        if image.ndim != 2:
            notify_error(f"layer {layer.name!r} is not a 2-D image")
            return None
        if tile > min(image.shape):
            notify_error(f"tile size {tile} px is larger than the image {image.shape}")
            return None

        if clf.backend == "cnn":
            _prepare_torch()

        def work():
            return (yield from in_thread(
                lambda progress, cancel: clf.predict_tiles(image, tile, stride, progress=progress, cancel=cancel),
                cancelled=lambda: self._cancel_requested,
                name=_THREAD,
            ))

        def done(table):
            self.write_tiles(layer, table, image.shape)
            params = {"tile_size": tile} if stride is None else {"tile_size": tile, "stride": stride}
            self._recorder.predicted(clf, "classify_tiles", params, {"image": layer.name}, "tile classes")

        return self.start(work, done, desc="classifying tiles")

    def write_tiles(self, layer, table: pd.DataFrame, shape):
        """Write the tile table as the ``tile classes`` Shapes layer (and heat-map)."""
        from ..classification import tile_probability_map

        names = list(self.classifier.class_names)
        rects = [
            np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)
            for y0, x0, y1, x1 in table[["y0", "x0", "y1", "x1"]].itertuples(index=False)
        ]
        index = {n: i for i, n in enumerate(names)}
        colors = np.array([class_color(index[c]) for c in table["class"]], dtype=float)
        faces = colors.copy()
        faces[:, 3] = 0.25
        shapes = write_layer(
            self.viewer,
            rects,
            name="tile classes",
            kind="shapes",
            like=layer,
            features=table.reset_index(drop=True),
            shape_type="rectangle",
            edge_width=2,
            metadata={"class_names": names},
        )
        shapes.edge_color = colors
        shapes.face_color = faces
        shapes.features = table.reset_index(drop=True)
        heat = None
        if self._heatmap.value:
            target = self._heat_class.value or names[-1]
            pmap = tile_probability_map(table, shape, names)[names.index(target)]
            heat = write_layer(
                self.viewer,
                pmap,
                name="tile probability",
                kind="image",
                like=layer,
                colormap="inferno",
                opacity=0.5,
                blending="additive",
                contrast_limits=(0.0, 1.0),
                metadata={"class": target},
            )
            heat.metadata["class"] = target
        counts = table["class"].value_counts()
        self._progress.value = "tiles: " + ", ".join(f"{counts.get(n, 0)} {n}" for n in names)
        return shapes, heat

    def save_model(self, _event=None):
        out = _save_classifier(self.classifier, self._save_path.value)
        if out is not None:
            self._recorder.stored(out, self.classifier)
        return out

    def load_model(self, _event=None):
        from ..classification import ImageClassifier

        path = Path(str(self._load_path.value))
        try:
            clf = ImageClassifier.load(path)
        except SEMAnalysisError as exc:
            notify_error(exc)
            return None
        self.classifier = clf
        self._recorder.trained()
        self._recorder.stored(path, clf)
        self._backend.value = clf.backend
        if clf.tile_size_:
            self._tile.value = clf.tile_size_
        self._heat_class.reset_choices()
        self._report.value = f"loaded {path.name}: {clf.backend}, classes {', '.join(clf.class_names)}"
        return clf
