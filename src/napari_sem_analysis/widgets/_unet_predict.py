"""Segment with U-Net dock widget: an Image layer segmented with a model file or the model just trained.

:class:`PredictUNetWidget` writes a Labels layer (class ids, or instance
labels ready for Measure for an instance model) and optionally a
probability Image layer, with the input's scale; progress and cancel.
"""

from __future__ import annotations

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, Label, ProgressBar, PushButton, SpinBox

from .._validation import SEMAnalysisError, to_grayscale
from ._base import SEMWidget, StepCall, in_thread
from ._common import as_array, layer_pixel_size, notify_error, notify_info, write_layer
from ._unet_common import DEVICES, _message, _optional_path, last_trained_model


class PredictUNetWidget(SEMWidget):
    """Segment an Image layer with a U-Net (a model file or the one just trained)."""

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        from qtpy.QtCore import QTimer

        self._latest: dict | None = None
        self._model_cache: tuple[str, float, object] | None = None
        self._source = ComboBox(label="model", choices=["last trained", "file"], value="file")
        self._model_file = FileEdit(label="model file", mode="r", filter="*.safetensors *.semunet")
        self._model_info = Label(value="")
        self._image = self.layer_box("image", "Image")
        self._tile = SpinBox(label="tile size", min=32, max=8192, step=32, value=512)
        self._overlap = SpinBox(label="overlap", min=0, max=2048, step=8, value=64)
        self._batch = SpinBox(label="tiles per batch", min=1, max=256, value=4)
        self._device = ComboBox(label="device", choices=DEVICES, value="auto")
        self._probs = CheckBox(text="also write class probabilities", value=False)
        self._run = PushButton(text="Segment")
        self._cancel = PushButton(text="Cancel")
        self._cancel.enabled = False
        self._progress = ProgressBar(label="progress", min=0, max=1000, value=0)
        self._status = Label(value="")
        self.extend(
            [
                self._source,
                self._model_file,
                self._model_info,
                self._image,
                self._tile,
                self._overlap,
                self._batch,
                self._device,
                self._probs,
                self._run,
                self._cancel,
                self._progress,
                self._status,
            ]
        )
        self._run.changed.connect(self.run)
        self._cancel.changed.connect(self.cancel)
        self._source.changed.connect(self._source_changed)
        self.finished.connect(self._restore)
        self._timer = QTimer()
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._refresh_progress)
        if last_trained_model(self.viewer) is not None:
            self._source.value = "last trained"
        self._source_changed()

    def _source_changed(self, _event=None):
        self._model_file.visible = self._source.value == "file"

    def _get_model(self):
        from ..unet import load_model

        if self._source.value == "last trained":
            model = last_trained_model(self.viewer)
            if model is None:
                raise SEMAnalysisError("No model has been trained in this viewer yet: train one or choose a file")
            return model
        path = _optional_path(self._model_file.value)
        if path is None:
            raise SEMAnalysisError("Choose a model file (.safetensors)")
        if not path.is_file():
            raise SEMAnalysisError(f"model file {path} does not exist")
        stamp = path.stat().st_mtime
        if self._model_cache and self._model_cache[0] == str(path) and self._model_cache[1] == stamp:
            return self._model_cache[2]
        model = load_model(path)
        self._model_cache = (str(path), stamp, model)
        return model

    def run(self, _event=None):
        """Segment the chosen image in a thread worker."""
        if self.running:
            notify_error("A segmentation is already running: wait for it or cancel it")
            return
        layer = self._image.value
        if layer is None:
            notify_error("Choose an Image layer first")
            return
        try:
            model = self._get_model()
        except SEMAnalysisError as exc:
            notify_error(exc)
            return
        data = as_array(layer.data)
        if layer.rgb:
            data = to_grayscale(data)
        px = layer_pixel_size(layer)
        self._model_info.value = f"{model.architecture}/{model.encoder}, classes: {', '.join(model.class_names)}"
        if px and model.pixel_size and abs(px / model.pixel_size - 1) > 0.25:
            notify_info(
                f"{layer.name} has {px:.3g} nm/px but the model was trained at {model.pixel_size:.3g} nm/px; "
                "results may suffer (resample the image)"
            )
        params = dict(
            tile_size=int(self._tile.value),
            overlap=int(self._overlap.value),
            batch_size=int(self._batch.value),
            device=self._device.value,
            return_probabilities=bool(self._probs.value),
        )

        def predict(progress, cancel):
            # the model calls back after every batch of tiles; True stops it
            return model.predict(data, callback=lambda info: self._on_progress(info) or cancel(), **params)

        def work():
            return (yield from in_thread(predict, cancelled=lambda: self._cancel_requested, name="sem-unet-predict"))

        self._latest = None
        self._progress.value = 0
        self._status.value = "segmenting..."
        self._run.enabled = False
        self._cancel.enabled = True

        def done(result):
            self._write(result, layer, model, params)

        self._timer.start()
        self.start(work, done, desc="U-Net segmentation")

    def _on_progress(self, info: dict) -> bool:
        self._latest = info
        return self._cancel_requested

    def cancel(self, _event=None):
        """Stop the segmentation (within a moment; nothing is written)."""
        if self.running:
            super().cancel()
            self._status.value = "cancelling..."

    def on_cancelled(self, desc: str) -> None:
        self._status.value = "cancelled"
        notify_info("U-Net segmentation cancelled")

    def on_failed(self, desc: str, error: BaseException) -> None:
        self._status.value = f"failed: {_message(error)}"
        notify_error(_message(error))

    def _refresh_progress(self):
        info = self._latest
        if info is not None:
            self._progress.value = int(round(1000 * info["progress"]))

    def _restore(self, _result=None):
        """After every run: the buttons and the progress timer back to idle."""
        self._timer.stop()
        self._run.enabled = True
        self._cancel.enabled = False

    def _write(self, result, layer, model, params):
        self._timer.stop()
        if result is None:  # the model stopped early without a cancel request
            self.on_cancelled("U-Net segmentation")
            return
        probs = None
        if params["return_probabilities"]:
            labels, probs = result
        else:
            labels = result
        name = f"{layer.name} U-Net"
        meta = {"class_names": model.class_names, "model": model.path, "device": model.device_used}
        out = write_layer(self.viewer, labels, name=name, kind="labels", like=layer, metadata=meta)
        import pandas as pd

        instances = getattr(model, "task", "semantic") == "instances"
        if instances:
            # instance labels, ready for Measure: one row per object
            meta["task"] = "instances"
            areas = np.bincount(labels.reshape(-1))
            ids = np.flatnonzero(areas)
            ids = ids[ids > 0]
            out.features = pd.DataFrame({"index": ids, "label": ids, "area_px": areas[ids]})
        else:
            counts = np.bincount(labels.reshape(-1), minlength=model.n_classes)[: model.n_classes]
            out.features = pd.DataFrame(
                {
                    "index": np.arange(model.n_classes),
                    "class_name": model.class_names,
                    "area_fraction": counts / max(1, labels.size),
                }
            )
        if probs is not None:
            pname = f"{layer.name} U-Net probabilities"
            axis = probs.ndim - 3  # class axis sits before (Y, X)
            scale = list(layer.scale)
            translate = list(layer.translate)
            scale.insert(axis, 1.0)
            translate.insert(axis, 0.0)
            units = [str(u) for u in getattr(layer, "units", ())] or None
            if units:
                units.insert(axis, "pixel")
            player = write_layer(
                self.viewer,
                probs,
                name=pname,
                kind="image",
                colormap="magma",
                contrast_limits=(0.0, 1.0),
                metadata={"class_names": model.class_names},
            )
            player.scale = scale
            player.translate = translate
            if units:
                try:
                    player.units = units
                except Exception:  # older napari without units
                    pass
        if instances:
            self._status.value = (
                f"{labels.shape[-1]}x{labels.shape[-2]} px segmented on {model.device_used}: {len(ids)} objects"
            )
        else:
            self._status.value = (
                f"{labels.shape[-1]}x{labels.shape[-2]} px segmented on {model.device_used}: "
                + ", ".join(f"{n} {c / max(1, labels.size):.1%}" for n, c in zip(model.class_names, counts))
            )
        # the step's registry name as recipes know it (an alias of unet_predict giving class maps)
        step_params = {"model": model.path, **{k: params[k] for k in ("tile_size", "overlap", "batch_size")}}
        self.record(StepCall("predict_unet", step_params, {"image": layer}, name))
