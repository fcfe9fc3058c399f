"""Tile classifier dock widget: train an image/tile classifier and classify the tiles of an Image layer."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, FileEdit, Label, PushButton, Select, SpinBox

from .._validation import SEMAnalysisError, to_grayscale
from ._base import Cancelled, SEMWidget, in_thread
from ._classifier_common import (
    _MODELS,
    _THREAD,
    ModelFiles,
    _cv_text,
    _figure_canvas,
    _prepare_torch,
    _show_confusion,
    _StepRecorder,
    class_color,
)
from ._common import as_array, notify_error, write_layer
from ._layout import wrap_text


class TileClassifierWidget(ModelFiles, SEMWidget):
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
        self.folder_table: pd.DataFrame | None = None
        self._recorder = _StepRecorder(self)
        self._folder_view = None
        self.extend([*self._training_widgets(), *self._prediction_widgets(), *self._folder_widgets()])
        self.extend(self.model_file_widgets())
        # the texts wrap at the dock's width, over its whole width (they were cut off at the dock's edge)
        for label in (self._progress, self._report, self._legend, self._verdict):
            wrap_text(label)
        self._canvas = _figure_canvas(self)
        self._update_visibility()

    def _training_widgets(self) -> list:
        """Training data, classifier and tile size, Train / Cancel, progress and report."""
        self._source = ComboBox(label="train from", choices=["folder", "image layers"], value="folder")
        self._folder = FileEdit(label="folder", mode="d")
        # a short label: the label column sets how much room the boxes get in a narrow dock
        self._train_layers = self.layer_box("image layers", "Image", widget=Select)
        self._train_layers.tooltip = "one image (or more) per class: the class of each is its layer name"
        self._backend = ComboBox(label="backend", choices=["features", "cnn"], value="features")
        self._model = ComboBox(label="model", choices=_MODELS, value="random_forest")
        # the image box first: the tile size is shown in its unit (nm with a pixel size, px without)
        self._image = self.layer_box("classify image", "Image", arg="image")
        self._tile = self.length_box("tile_size", 256, label="tile size", minimum=1.0, maximum=1e7)
        self._stride = SpinBox(label="stride (px, 0 = tile)", min=0, max=4096, value=0)
        self._epochs = SpinBox(label="CNN epochs", min=1, max=1000, value=20)
        self._input = SpinBox(label="CNN input size", min=16, max=1024, value=128)
        self._cv = CheckBox(text="cross-validate (grouped by source image)", value=True)
        self._train = PushButton(text="Train")
        self._cancel = PushButton(text="Cancel")
        self._progress = Label(value="")
        self._report = Label(value="not trained")
        self._train.changed.connect(self.train)
        self._cancel.changed.connect(self.cancel)
        self._source.changed.connect(self._update_visibility)
        self._backend.changed.connect(self._update_visibility)
        return [
            self._source,
            self._folder,
            self._train_layers,
            self._backend,
            self._model,
            self._tile.widget,
            self._stride,
            self._epochs,
            self._input,
            self._cv,
            self._train,
            self._cancel,
            self._progress,
            self._report,
        ]

    def _prediction_widgets(self) -> list:
        """The image to classify, the heat-map choice, Classify tiles, the class legend and the verdict."""
        self._heatmap = CheckBox(text="probability heat-map", value=False)
        # choices from the classifier (a callable, so that napari's reset_choices on layer changes keeps them)
        self._heat_class = ComboBox(label="heat-map class", choices=self._heat_class_choices)
        self._predict = PushButton(text="Classify tiles")
        self._legend = Label(value="")
        self._verdict = Label(value="")
        self._predict.changed.connect(self.predict)
        return [self._image, self._heatmap, self._heat_class, self._predict, self._legend, self._verdict]

    def _folder_widgets(self) -> list:
        """Classify every image of a folder and export the verdicts."""
        self._predict_folder = FileEdit(label="predict folder", mode="d")
        self._predict_folder_btn = PushButton(text="Classify folder")
        self._folder_csv = FileEdit(label="verdicts CSV", mode="w", filter="*.csv")
        self._export = PushButton(text="Export verdicts CSV")
        self._predict_folder_btn.changed.connect(self.predict_folder)
        self._export.changed.connect(self.export_verdicts)
        return [self._predict_folder, self._predict_folder_btn, self._folder_csv, self._export]

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

    def tile_px(self, pixel_size: float | None = None) -> int:
        """The tile size in px: the box's value, converted from nm with ``pixel_size`` (default: the
        chosen image's) when the box shows nm."""
        value = self._tile.value
        if self.unit() == "nm":
            ps = pixel_size or self.pixel_size()
            if ps:
                value = value / ps
        return max(1, int(round(value)))

    def _set_tile_px(self, px: int) -> None:
        ps = self.pixel_size() if self.unit() == "nm" else None
        self._tile.value = px * ps if ps else px

    def _stride_value(self):
        return int(self._stride.value) or None

    def training_data(self):
        """(tiles, labels, groups, class_names) from the folder or the chosen layers."""
        from ..classification import extract_tiles, load_image_folder

        tile = self.tile_px()
        if self._source.value == "folder":
            folder = str(self._folder.value)
            if not folder or not Path(folder).is_dir():
                raise SEMAnalysisError("choose a folder with one sub-folder per class")
            data = load_image_folder(folder, tile_size=tile, stride=self._stride_value())
            # cross-validate by specimen when the file names or sub-folders name one
            self.specimen_rule = data.specimen_rule
            from napari.utils.notifications import show_info

            show_info(f"cross-validation groups: specimen from {data.specimen_rule}")
            return data.images, data.y, data.cv_groups, data.class_names
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
            self._show_legend()
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
        if not self.has_classifier():
            return None
        layer = self._image.value
        if layer is None:
            notify_error("choose an Image layer to classify")
            return None
        image = to_grayscale(as_array(layer.data))
        tile = self.tile_px()
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
            return (
                yield from in_thread(
                    lambda progress, cancel: clf.predict_tiles(image, tile, stride, progress=progress, cancel=cancel),
                    cancelled=lambda: self._cancel_requested,
                    name=_THREAD,
                )
            )

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
            # a separate, translucent grey-scale layer *under* the class rectangles: the class hues stay
            # readable (an additive colour map on top washed them out)
            heat = write_layer(
                self.viewer,
                pmap,
                name="tile probability",
                kind="image",
                like=layer,
                colormap="gray",
                opacity=0.5,
                blending="translucent",
                contrast_limits=(0.0, 1.0),
                metadata={"class": target},
            )
            heat.metadata["class"] = target
            heat.blending = "translucent"
            heat.colormap = "gray"
            layers = self.viewer.layers
            if layers.index(heat) > layers.index(shapes):
                layers.move(layers.index(heat), layers.index(shapes))
        verdict = image_verdict(table, names)
        shapes.metadata["verdict"] = verdict
        shapes.metadata["class_names"] = names
        self._verdict.value = verdict_text(verdict)
        self._show_legend()
        return shapes, heat

    def _show_legend(self) -> None:
        """The class colours (swatch and name) of the ``tile classes`` layer."""
        clf = self.classifier
        if clf is None or not clf.class_names:
            self._legend.value = ""
            return
        rows = []
        for i, name in enumerate(clf.class_names):
            r, g, b = (int(round(255 * float(c))) for c in class_color(i)[:3])
            rows.append(f'<span style="color:#{r:02x}{g:02x}{b:02x}; font-size:14pt">&#9632;</span> {_html(name)}')
        self._legend.value = "<b>classes</b><br>" + "<br>".join(rows)

    # -- folder-wide prediction -------------------------------------------------------
    def predict_folder(self, _event=None):
        """Classify every image of a folder (thread worker): a table of per-image verdicts."""
        from ..io import SUPPORTED_SUFFIXES, read_image

        if self._running:
            notify_error("a run is already under way: wait for it or cancel it")
            return None
        if not self.has_classifier():
            return None
        folder = Path(str(self._predict_folder.value or ""))
        if not str(self._predict_folder.value or "") or not folder.is_dir():
            notify_error("choose a folder of images to classify")
            return None
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
        if not files:
            notify_error(f"no images ({', '.join(SUPPORTED_SUFFIXES)}) in {folder}")
            return None
        clf = self.classifier
        names = list(clf.class_names)
        in_nm = self.unit() == "nm"
        nm_value = self._tile.value
        px_value = self.tile_px()
        stride = self._stride_value()
        if clf.backend == "cnn":
            _prepare_torch()

        def work():
            rows = []
            for i, path in enumerate(files):
                if self._cancel_requested:
                    raise Cancelled
                row = {"file": path.name}
                try:
                    image, ps = read_image(path)
                    image = to_grayscale(image)
                    tile = max(1, int(round(nm_value / ps))) if in_nm and ps else px_value
                    tile = min(tile, *image.shape[:2])
                    table = clf.predict_tiles(image, tile, stride)
                    verdict = image_verdict(table, names)
                    row.update(
                        tile_px=tile,
                        tiles=verdict["tiles"],
                        verdict=verdict["majority"],
                        mean_probability_class=verdict["mean_probability"],
                    )
                    row.update({f"fraction_{n}": verdict["fractions"][n] for n in names})
                    row.update({f"mean_prob_{n}": verdict["mean_probabilities"][n] for n in names})
                    row["error"] = ""
                except SEMAnalysisError as exc:  # an unreadable file: a row saying so, the others go on
                    row["error"] = str(exc)
                rows.append(row)
                yield (i + 1, len(files))
            return pd.DataFrame(rows)

        def on_progress(item):
            if item is not None and not self._cancel_requested:
                self._progress.value = f"classifying folder: {item[0]}/{item[1]} images"

        def done(table):
            self.folder_table = table
            self._progress.value = f"folder: {len(table)} images classified"
            self._show_folder_table(table)

        self._progress.value = "classifying folder..."
        return self.start(work, done, on_progress=on_progress, total=len(files), desc="classifying folder")

    def _show_folder_table(self, table: pd.DataFrame) -> None:
        from qtpy.QtWidgets import QTableWidget, QTableWidgetItem

        if self._folder_view is None:
            self._folder_view = QTableWidget()
            self._folder_view.setMinimumHeight(160)
            self.native.layout().addWidget(self._folder_view)
        view = self._folder_view
        view.clear()
        view.setRowCount(len(table))
        view.setColumnCount(len(table.columns))
        view.setHorizontalHeaderLabels([str(c) for c in table.columns])
        for r, row in enumerate(table.itertuples(index=False)):
            for c, value in enumerate(row):
                text = f"{value:.3f}" if isinstance(value, float) else str(value)
                view.setItem(r, c, QTableWidgetItem(text))

    def export_verdicts(self, _event=None):
        """Write the folder's verdict table as CSV (the path in *verdicts CSV*)."""
        if self.folder_table is None:
            notify_error("classify a folder first")
            return None
        path = str(self._folder_csv.value or "")
        if not path or Path(path).is_dir():
            notify_error("choose a CSV file to write")
            return None
        out = Path(path)
        if out.suffix.lower() != ".csv":
            out = out.with_suffix(".csv")
        try:
            self.folder_table.to_csv(out, index=False)
        except OSError as exc:
            notify_error(f"cannot write {out}: {exc}")
            return None
        self._progress.value = f"verdicts written to {out.name}"
        return out

    def _load_file(self, path):
        from ..classification import ImageClassifier

        return ImageClassifier.load(path)

    def _show_loaded(self, clf) -> str:
        self._backend.value = clf.backend
        if clf.tile_size_:
            self._set_tile_px(clf.tile_size_)
        self._heat_class.reset_choices()
        self._show_legend()
        return clf.backend


def _html(text: str) -> str:
    import html

    return html.escape(str(text))


def image_verdict(table: pd.DataFrame, class_names) -> dict:
    """The verdict on one image from its tile table.

    Parameters
    ----------
    table : pandas.DataFrame
        :meth:`ImageClassifier.predict_tiles` output (``class`` and ``prob_<name>`` columns).
    class_names : sequence of str

    Returns
    -------
    dict
        ``majority`` (the most frequent tile class; ties go to the higher mean
        probability), ``mean_probability`` (the class of highest mean tile
        probability), ``fractions`` and ``mean_probabilities`` (per class) and ``tiles``.
    """
    names = list(class_names)
    n = len(table)
    if n == 0:
        raise SEMAnalysisError("no tiles to give a verdict on")
    counts = table["class"].value_counts()
    fractions = {c: float(counts.get(c, 0)) / n for c in names}
    means = {c: float(table[f"prob_{c}"].mean()) if f"prob_{c}" in table else 0.0 for c in names}
    majority = max(names, key=lambda c: (fractions[c], means[c]))
    return {
        "majority": majority,
        "mean_probability": max(names, key=lambda c: means[c]),
        "fractions": fractions,
        "mean_probabilities": means,
        "tiles": int(n),
    }


def verdict_text(verdict: dict) -> str:
    """One line per verdict for the widget."""
    parts = ", ".join(f"{c} {100 * f:.0f} %" for c, f in verdict["fractions"].items())
    return (
        f"image verdict: {verdict['majority']} (majority of {verdict['tiles']} tiles: {parts}); "
        f"highest mean probability: {verdict['mean_probability']}"
    )
