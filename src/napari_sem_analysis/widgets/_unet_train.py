"""Train U-Net dock widget: a network trained from Image + Labels pairs or folders, in a thread worker.

:class:`TrainUNetWidget` trains a network (:func:`napari_sem_analysis.unet.train_unet`)
on one or more Image + Labels pairs from the viewer, or on folders of
images and masks, in a thread worker with a progress bar, ETA, a live loss
/ IoU plot and a Stop button that keeps the best model so far. The model
can be saved to a ``.safetensors`` file.
"""

from __future__ import annotations

import time

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)

from .._format import format_duration
from .._validation import SEMAnalysisError, to_grayscale
from ..io import read_training_folders
from ._base import SEMWidget
from ._common import as_array, layer_pixel_size, notify_error, notify_info, write_layer
from ._unet_common import (
    _LAST_MODEL,
    DEVICES,
    ENCODERS,
    _best_score,
    _message,
    _optional_path,
    _Plot,
    names_from_labels,
    remap_mask_values,
)


class TrainUNetWidget(SEMWidget):
    """Train a U-Net on Image + Labels pairs (or folders of images and masks).

    Pairs are added with "Add pair" (the current image and labels choice is
    used when none was added). Labels hold class ids 0..K-1; tick
    "0 = unlabelled" for sparse annotations painted with ids 1..K (pixels
    left at 0 are then ignored and the output uses the painted ids).

    Task "instances": the Labels hold one id per object (0 background; a
    0/1 mask is split into its 4-connected objects) and the model then
    segments objects, touching ones separated. With "0 = unlabelled" only
    the painted objects are known, plus the background painted with the
    "background id"; unpainted pixels do not count in the loss.
    """

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        self.model = None
        self._pairs: list[tuple] = []
        self._latest: dict | None = None
        self._stop_requested = False
        self._shown_epochs = 0
        self._t0 = 0.0
        self._make_data_inputs()
        self._make_training_settings()
        self._make_run_controls()
        self.extend(
            [
                self._source,
                self._image,
                self._labels,
                self._fit,
                self._add,
                self._clear,
                self._pairs_label,
                self._image_dir,
                self._mask_dir,
                self._task,
                self._sparse,
                self._background,
                self._tune,
                self._contact,
                self._n_classes,
                self._class_names,
                self._arch,
                self._encoder,
                self._weights,
                self._balance,
                self._patch,
                self._epochs,
                self._batch,
                self._val,
                self._patience,
                self._device,
                self._train,
                self._stop,
                self._progress,
                self._status,
            ]
        )
        self._plot = _Plot()
        self.native.layout().addWidget(self._plot.canvas)
        self.extend([self._save_path, self._save])

        self._connect()

    def _make_data_inputs(self):
        """Where the training data comes from: layer pairs or folders, and the task."""
        self._source = ComboBox(label="training data", choices=["layers", "folders"], value="layers")
        self._image = self.layer_box("image", "Image")
        self._labels = self.layer_box("labels", "Labels")
        self._add = PushButton(text="Add pair")
        self._clear = PushButton(text="Clear pairs")
        self._pairs_label = Label(value="pairs: (current image + labels)")
        self._image_dir = FileEdit(label="images folder", mode="d")
        self._mask_dir = FileEdit(label="masks folder", mode="d")
        self._task = ComboBox(label="task", choices=["semantic", "instances"], value="semantic")
        self._task.tooltip = (
            "semantic: a class per pixel; instances: one label per object, touching objects separated "
            "(train from Labels with one id per object)"
        )
        self._fit = CheckBox(text="fit masks to their image (crop / scale)", value=True)
        self._fit.tooltip = "a mask of another size is cropped like the image (info band) or resized when paired"
        self._sparse = CheckBox(text="0 = unlabelled (sparse annotation)", value=False)
        self._background = SpinBox(label="background id (0 = none)", min=0, max=2**31 - 1, value=0)
        self._background.tooltip = "instances with 0 = unlabelled: the label id you painted the background with"
        self._tune = CheckBox(text="tune decoding on the validation images", value=True)
        self._tune.tooltip = (
            "instances: after training, choose the thresholds and smallest object size that separate the "
            "validation images' objects best (panoptic quality); needs a validation fraction > 0 and full annotation"
        )

        from ..unet.train import DEFAULT_CONTACT_WEIGHT

        self._contact = FloatSpinBox(label="contact weight", min=1.0, max=100.0, step=1.0, value=DEFAULT_CONTACT_WEIGHT)
        self._contact.tooltip = (
            "instances: how much more the pixels where two objects meet count in the loss (1 = like any "
            "other pixel); higher separates touching objects more eagerly"
        )

    def _make_training_settings(self):
        """Classes, network and training options."""
        from ..unet import ARCHITECTURES

        self._n_classes = SpinBox(label="classes (0 = auto)", min=0, max=255, value=0)
        self._class_names = LineEdit(label="class names", value="")
        self._class_names.tooltip = "comma-separated, optional"
        self._arch = ComboBox(label="architecture", choices=list(ARCHITECTURES), value="unet")
        self._encoder = ComboBox(label="encoder", choices=ENCODERS, value="resnet34")
        self._weights = FileEdit(label="encoder weights (optional)", mode="r", filter="*.safetensors *.pth *.pt")
        self._balance = CheckBox(text="weight rare classes (e.g. cracks)", value=False)
        self._balance.tooltip = (
            "cross-entropy weights from the inverse square root of each class's pixel frequency "
            "(class_weights='auto'): helps thin or rare classes that the network would otherwise ignore"
        )
        self._patch = SpinBox(label="patch size", min=32, max=2048, step=32, value=256)
        self._epochs = SpinBox(label="epochs", min=1, max=10000, value=50)
        self._batch = SpinBox(label="batch size", min=1, max=256, value=8)
        self._val = FloatSpinBox(label="validation fraction", min=0.0, max=0.9, step=0.05, value=0.2)
        self._patience = SpinBox(label="early-stop patience", min=0, max=1000, value=10)
        self._patience.tooltip = "epochs without improvement before stopping (0 = never stop early)"
        self._device = ComboBox(label="device", choices=DEVICES, value="auto")

    def _make_run_controls(self):
        """Train / Stop, progress, status and saving."""
        self._train = PushButton(text="Train")
        self._stop = PushButton(text="Stop (keep best)")
        self._stop.enabled = False
        self._progress = ProgressBar(label="progress", min=0, max=1000, value=0)
        self._status = Label(value="")
        self._save_path = FileEdit(label="save model as", mode="w", filter="*.safetensors *.semunet")
        self._save = PushButton(text="Save model")

    def _connect(self):
        from qtpy.QtCore import QTimer

        self._source.changed.connect(self._source_changed)
        self._task.changed.connect(self._task_changed)
        self._sparse.changed.connect(self._task_changed)
        self._add.changed.connect(self.add_pair)
        self._clear.changed.connect(self.clear_pairs)
        self._train.changed.connect(self.train)
        self._stop.changed.connect(self.stop)
        self._save.changed.connect(self.save)
        self.finished.connect(self._restore)
        self._timer = QTimer()
        self._timer.setInterval(250)
        self._timer.timeout.connect(self._refresh_progress)
        self._source_changed()
        self._task_changed()

    def _task_changed(self, _event=None):
        instances = self._task.value == "instances"
        self._n_classes.visible = self._class_names.visible = not instances
        self._background.visible = instances and bool(self._sparse.value)
        self._tune.visible = instances and not self._sparse.value
        self._contact.visible = instances

    # -- inputs ------------------------------------------------------------
    def _reset(self, _event=None):
        super()._reset()
        alive = set(map(id, self.viewer.layers))
        self._pairs = [p for p in self._pairs if id(p[0]) in alive and id(p[1]) in alive]
        self._show_pairs()

    def _source_changed(self, _event=None):
        layers = self._source.value == "layers"
        for w in (self._image, self._labels, self._fit, self._add, self._clear, self._pairs_label):
            w.visible = layers
        for w in (self._image_dir, self._mask_dir):
            w.visible = not layers

    def _show_pairs(self):
        if not self._pairs:
            self._pairs_label.value = "pairs: (current image + labels)"
        else:
            self._pairs_label.value = "pairs:\n" + "\n".join(f"  {i.name} + {lb.name}" for i, lb in self._pairs)

    def add_pair(self, _event=None):
        """Add the current image + labels choice to the training pairs."""
        img, lab = self._image.value, self._labels.value
        if img is None or lab is None:
            notify_error("Choose an Image layer and a Labels layer first")
            return
        if tuple(img.data.shape[-2:]) != tuple(lab.data.shape[-2:]) or img.data.ndim != lab.data.ndim:
            if not self._fit.value or img.data.ndim != 2 or lab.data.ndim != 2:
                notify_error(
                    f"{img.name} {img.data.shape} and {lab.name} {lab.data.shape} do not have the same "
                    "shape (tick 'fit masks to their image' to crop or scale the mask)"
                )
                return
            lab = self.fit_mask(img, lab)
        if any(a is img and b is lab for a, b in self._pairs):
            return
        self._pairs.append((img, lab))
        self._show_pairs()

    def fit_mask(self, img, lab):
        """A Labels layer ``<mask> fitted``: ``lab`` cropped (info band) or scaled to ``img``'s shape and scale.

        A mask with the image's width and more rows is cropped at the bottom,
        as the image's info band was; any other size is resized (nearest
        neighbour, class ids kept).
        """
        import cv2

        mask = as_array(lab.data)
        h, w = img.data.shape[-2:]
        if mask.shape[1] == w and mask.shape[0] >= h:
            fitted, how = mask[:h], f"cropped to {h} rows"
        else:
            fitted = cv2.resize(mask.astype(np.int32).astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
            how = f"scaled from {mask.shape} to {(h, w)}"
        out = write_layer(self.viewer, fitted.astype(np.int32), name=f"{lab.name} fitted", kind="labels", like=img)
        notify_info(f"{lab.name}: {how} to pair with {img.name}")
        return out

    def clear_pairs(self, _event=None):
        self._pairs = []
        self._show_pairs()

    def _layer_data(self):
        pairs = list(self._pairs)
        if not pairs:
            img, lab = self._image.value, self._labels.value
            if img is None or lab is None:
                raise SEMAnalysisError("Choose an Image layer and a Labels layer (or add pairs) first")
            if (
                self._fit.value
                and img.data.ndim == 2
                and lab.data.ndim == 2
                and tuple(img.data.shape) != tuple(lab.data.shape)
            ):
                lab = self.fit_mask(img, lab)
            pairs = [(img, lab)]
        images, masks = [], []
        for img, lab in pairs:
            a, m = as_array(img.data), as_array(lab.data)
            if img.rgb:
                a = to_grayscale(a)
            if a.shape != m.shape:
                raise SEMAnalysisError(f"{img.name} {a.shape} and {lab.name} {m.shape} do not have the same shape")
            if a.ndim == 3:  # stacks: every plane is one training image
                images.extend(list(a))
                masks.extend(list(m))
            else:
                images.append(a)
                masks.append(m)
        if not any(np.any(m) for m in masks) and self._sparse.value:
            raise SEMAnalysisError("the labels are empty: paint some classes first")
        masks = remap_mask_values(masks)  # 0/255 -> 0/1, as in folder mode
        self._names_hint = names_from_labels(pairs[0][1])
        return images, masks, layer_pixel_size(pairs[0][0])

    def _parameters(self) -> dict:
        common = dict(
            architecture=self._arch.value,
            encoder=self._encoder.value,
            encoder_weights=_optional_path(self._weights.value),
            patch_size=int(self._patch.value),
            epochs=int(self._epochs.value),
            batch_size=int(self._batch.value),
            val_fraction=float(self._val.value),
            patience=int(self._patience.value) or None,
            device=self._device.value,
            class_weights="auto" if self._balance.value else None,
        )
        if self._task.value == "instances":
            return dict(
                task="instances",
                unlabelled=0 if self._sparse.value else None,
                background=(int(self._background.value) or None) if self._sparse.value else None,
                tune_decoding=bool(self._tune.value) and not self._sparse.value and float(self._val.value) > 0,
                contact_weight=float(self._contact.value),
                **common,
            )
        names = [s.strip() for s in str(self._class_names.value).split(",") if s.strip()]
        n = int(self._n_classes.value) or None
        if names and n is None:
            n = len(names)
        return dict(
            n_classes=n,
            class_names=names or None,
            ignore_index=0 if self._sparse.value else None,
            **common,
        )

    # -- training ----------------------------------------------------------
    def train(self, _event=None):
        """Start training in a thread worker."""
        if self.running:
            notify_error("Training is already running: stop it first")
            return
        try:
            params = self._parameters()
            if self._source.value == "layers":
                images, masks, pixel_size = self._layer_data()
                folders = None
            else:
                images = masks = pixel_size = None
                folders = (str(self._image_dir.value), str(self._mask_dir.value))
        except SEMAnalysisError as exc:
            notify_error(exc)
            return
        if params.get("task") == "instances":
            pass  # instance labels: 0 = unlabelled is passed to train_unet as unlabelled=0
        elif params["ignore_index"] == 0 and masks is not None:
            # sparse: painted ids 1..K are the classes (0..K-1 in the model); unpainted pixels are
            # ignored, and "unlabelled" is not a class the network can predict
            k = max(int(np.max(m)) for m in masks)
            if k < 2:
                notify_error("with 0 = unlabelled, paint at least two classes (ids 1 and 2)")
                return
            masks = [np.where(m > 0, m - 1, k).astype(np.int32) for m in masks]
            params["ignore_index"] = k
            params["n_classes"] = k
            names = params["class_names"]
            hint = getattr(self, "_names_hint", None)
            if names is None and hint is not None and len(hint) == k + 1:
                names = hint[1:]  # the layer's names, without its unlabelled 0
            params["class_names"] = names if names is not None and len(names) == k else None
        elif params["class_names"] is None and masks is not None:
            hint = getattr(self, "_names_hint", None)
            k = params["n_classes"] or max(2, max(int(np.max(m)) for m in masks) + 1)
            if hint is not None and len(hint) == k:
                params["class_names"] = hint
        if params.get("task") != "instances" and params["class_names"] is None:
            notify_info('No class names given: name them in "class names" (comma-separated) to see them in results')

        def work():
            from ..unet import train_unet

            nonlocal images, masks
            if folders is not None:
                images, masks, _ = read_training_folders(*folders)
            return train_unet(images, masks, pixel_size=pixel_size, callback=self._on_progress, **params)

        self._stop_requested = False
        self._latest = None
        self._shown_epochs = 0
        self._t0 = time.perf_counter()
        self._plot.clear()
        self._progress.value = 0
        self._status.value = "starting..."
        self._train.enabled = False
        self._stop.enabled = True
        self._timer.start()
        self.start(work, self._trained, desc="Training U-Net")

    def _on_progress(self, info: dict) -> bool:
        # runs in the worker thread: only store, the timer shows it
        self._latest = info
        return self._stop_requested

    def stop(self, _event=None):
        """Stop training after the current step; the best model so far is kept."""
        if self.running:
            self._stop_requested = True
            self._status.value = "stopping (keeping the best model)..."

    def _refresh_progress(self):
        info = self._latest
        if info is None:
            return
        self._progress.value = int(round(1000 * min(1.0, info.get("progress", 0.0))))
        text = (
            f"epoch {info['epoch']}/{info['epochs']}, step {info['step']}/{info['steps']}, "
            f"loss {info['loss']:.3f}, ETA {format_duration(info.get('eta_s'), '?')} on {info.get('device', '?')}"
        )
        if not self._stop_requested:
            self._status.value = text
        hist = info.get("history")
        if hist is not None and len(hist) != self._shown_epochs:
            self._shown_epochs = len(hist)
            self._plot.update(hist)

    def _trained(self, model):
        self._timer.stop()
        previous = self.model
        new, old = _best_score(model), _best_score(previous)
        self.latest_run_model = model
        if (
            self._stop_requested
            and previous is not None
            and new is not None
            and old is not None
            and new[0] == old[0]
            and new[1] < old[1]
            and previous.class_names == model.class_names
        ):
            # a stopped run that did worse never replaces the better model trained before
            self._status.value = (
                f"stopped; this run's best ({new[0]} {abs(new[1]):.3f}) is worse than the earlier model's "
                f"({abs(old[1]):.3f}): the earlier model is kept (this run's: latest_run_model)"
            )
            self._progress.value = 1000
            notify_info("U-Net: " + self._status.value)
            return
        self.model = model
        _LAST_MODEL[self.viewer] = model
        self._plot.update(model.history)
        best = model.history[model.best_epoch - 1] if model.best_epoch else None
        msg = f"trained {len(model.history)} epoch(s) in {time.perf_counter() - self._t0:.0f} s on {model.device_used}"
        if best is not None:
            if best.get("mean_iou") is not None:
                msg += f"; best epoch {model.best_epoch}: val mean IoU {best['mean_iou']:.3f}"
            else:
                msg += f"; best epoch {model.best_epoch}"
        tuned = (model.config.get("instances") or {}).get("tuned")
        if tuned:
            msg += f"; decoding tuned on validation: PQ {tuned['default_score']:.2f} -> {tuned['score']:.2f}"
        if self._stop_requested:
            msg += " (stopped by user, best model kept)"
        self._status.value = msg
        self._progress.value = 1000
        notify_info("U-Net " + msg)

    def on_failed(self, desc: str, error: BaseException) -> None:
        self._status.value = f"failed: {_message(error)}"
        notify_error(_message(error))

    def _restore(self, _result=None):
        """After every run: the buttons and the progress timer back to idle."""
        self._timer.stop()
        self._train.enabled = True
        self._stop.enabled = False

    # -- saving ------------------------------------------------------------
    def save(self, _event=None):
        """Save the trained model to the chosen ``.safetensors`` file."""
        if self.model is None:
            notify_error("No model yet: train one first")
            return
        path = _optional_path(self._save_path.value)
        if path is None:
            notify_error("Choose a file to save the model to")
            return
        try:
            written = self.model.save(path)
        except SEMAnalysisError as exc:
            notify_error(exc)
            return
        notify_info(f"U-Net model saved to {written}")
