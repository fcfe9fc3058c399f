"""The trained model object and its safe ``safetensors`` file format."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .._device import select_device
from .._validation import SEMAnalysisError, is_rgb
from .network import _build_network, _check_config, _expected_shapes
from .normalization import _as_2d
from .predict import _predict_2d

FORMAT_NAME = "napari-sem-analysis/unet"
FORMAT_VERSION = 1
_CONFIG_KEY = "napari_sem_analysis_unet_config"
_MAX_CONFIG_CHARS = 1_000_000
_MAX_HISTORY_CHARS = 20_000_000


def _json_clean(value):
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, dict):
        return {str(k): _json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _json_clean(value.item())
    return value


class UNetModel:
    """A trained segmentation network with everything needed to apply it.

    Create one with :func:`train_unet` or :func:`load_model`.

    Attributes
    ----------
    config : dict
        Architecture, encoder, number and names of classes, normalisation,
        pixel size trained at (nm or None) and training settings.
    history : list of dict
        One entry per epoch: ``epoch``, ``train_loss``, ``val_loss``,
        ``iou`` (per class), ``mean_iou``, ``lr``, ``seconds``.
    class_names : list of str
    n_classes : int
    pixel_size : float or None
        Pixel size (nm) of the training images, when known.
    best_epoch : int or None
        Epoch whose weights were kept (1-based).
    stopped_early : bool
        True when training ended before ``epochs`` (early stopping or a
        callback asking to stop).
    device_used : str or None
        Device of the last training or prediction run, e.g. ``"cpu"`` or
        ``"cuda (NVIDIA H100)"``.
    path : str or None
        File the model was saved to or loaded from.
    """

    def __init__(self, config: dict, state_dict: dict, history: list | None = None):
        self.config = dict(config)
        self.state_dict = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        self.history = list(history or [])
        self.device_used: str | None = config.get("device_used")
        self.path: str | None = None
        self._nets: dict = {}
        self._shapes_checked = False  # load_model compares the weights' shapes before reading them

    # -- properties ------------------------------------------------------
    @property
    def n_classes(self) -> int:
        return int(self.config["n_classes"])

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    @property
    def architecture(self) -> str:
        return self.config["architecture"]

    @property
    def encoder(self) -> str:
        return self.config["encoder"]

    @property
    def pixel_size(self) -> float | None:
        return self.config.get("pixel_size")

    @property
    def normalization(self) -> dict:
        return dict(self.config["normalization"])

    @property
    def best_epoch(self) -> int | None:
        return self.config.get("best_epoch")

    @property
    def task(self) -> str:
        """``"semantic"`` (class labels) or ``"instances"`` (instance labels)."""
        return self.config.get("task", "semantic")

    @property
    def stopped_early(self) -> bool:
        return bool(self.config.get("stopped_early", False))

    def __repr__(self) -> str:
        return (
            f"UNetModel(architecture={self.architecture!r}, encoder={self.encoder!r}, "
            f"classes={self.class_names}, pixel_size={self.pixel_size}, "
            f"epochs_trained={len(self.history)}, best_epoch={self.best_epoch})"
        )

    # -- network ---------------------------------------------------------
    def network(self, device="cpu"):
        """The torch module (eval mode) on ``device``; cached per device."""
        import torch

        dev = select_device(device)
        key = str(dev)
        net = self._nets.get(key)
        if net is None:
            # the weights are compared with the described network before it is built for real:
            # a small file must not make a large network allocate memory
            expected = {} if self._shapes_checked else _expected_shapes(self.config)
            mismatch = expected and (
                sorted(set(expected) ^ set(self.state_dict))
                or [k for k in expected if tuple(self.state_dict[k].shape) != expected[k]]
            )
            if mismatch:
                raise SEMAnalysisError(
                    f"the stored weights do not match the {self.architecture}/{self.encoder} network "
                    f"(e.g. {mismatch[0]!r})"
                )
            net = _build_network(self.config)
            try:
                net.load_state_dict(self.state_dict, strict=True)
            except RuntimeError as exc:
                raise SEMAnalysisError(
                    f"the stored weights do not match the {self.architecture}/{self.encoder} network: "
                    f"{str(exc).splitlines()[0]}"
                ) from exc
            net.eval().to(dev)
            if dev.type == "cuda":
                net = net.to(memory_format=torch.channels_last)
            self._nets[key] = net
        return net

    # -- prediction ------------------------------------------------------
    def predict(
        self,
        image,
        *,
        tile_size: int | None = 512,
        overlap: int = 64,
        batch_size: int = 4,
        device="auto",
        return_probabilities: bool = False,
        callback: Callable[[dict], Any] | None = None,
        amp: bool = True,
        instance_settings: dict | None = None,
    ):
        """Segment ``image`` into class labels (or instance labels for an instance model).

        The image is cut into overlapping tiles that are blended with
        cosine weights, so that seams do not show and memory is bounded by
        the tile batch: only one row of tiles is held in memory (unless
        ``return_probabilities``), so very large images work on a CPU.

        Parameters
        ----------
        image : (Y, X) array, or a 3-D stack of such planes
            Any numeric dtype; colour images with equal channels are taken
            as grayscale. Normalised exactly as during training.
        tile_size : int or None
            Tile edge in pixels (rounded up to what the network needs).
            None segments the whole image in one forward pass.
        overlap : int
            Overlap between neighbouring tiles in pixels.
        batch_size : int
            Tiles per forward pass.
        device : str
            "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "mps".
        return_probabilities : bool
            Also return the (C, Y, X) float32 class probabilities.
        callback : callable, optional
            Called as ``callback(info)`` after each batch of tiles with
            ``info = {"stage": "predict", "done": i, "total": n,
            "progress": i / n}``. Returning True cancels: ``predict``
            then returns None.
        amp : bool
            Use mixed precision on CUDA.
        instance_settings : dict, optional
            Instance models only: overrides of the stored decoding settings
            (``interior_threshold``, ``foreground_threshold``,
            ``min_seed_size``, ``min_size`` in px, ``separate``).

        Returns
        -------
        labels : ndarray of uint8 (int32 for more than 255 classes)
            Same shape as ``image``. For an instance model
            (``task == "instances"``): int32 instance labels, 0 background,
            1..N objects, from a seeded watershed on the blended class
            probabilities of the whole image (interiors are the seeds,
            interior + boundary the foreground), so objects across tile
            seams get one label.
        probabilities : (C, Y, X) float32 ndarray
            Only when ``return_probabilities`` is True; for a stack
            (Z, C, Y, X).
        """
        arr = np.asarray(image)
        if arr.ndim == 3 and not is_rgb(arr):
            labels, probs = [], []
            for i, plane in enumerate(arr):

                def plane_cb(info, i=i):
                    if callback is None:
                        return None
                    info = dict(info, plane=i, planes=len(arr))
                    info["progress"] = (i + info["progress"]) / len(arr)
                    return callback(info)

                res = self.predict(
                    plane,
                    tile_size=tile_size,
                    overlap=overlap,
                    batch_size=batch_size,
                    device=device,
                    return_probabilities=return_probabilities,
                    callback=plane_cb,
                    amp=amp,
                    instance_settings=instance_settings,
                )
                if res is None:
                    return None
                if return_probabilities:
                    labels.append(res[0])
                    probs.append(res[1])
                else:
                    labels.append(res)
            if return_probabilities:
                return np.stack(labels), np.stack(probs)
            return np.stack(labels)
        img = _as_2d(arr, "image")
        instances = self.task == "instances"
        res = _predict_2d(
            self,
            img,
            tile_size=tile_size,
            overlap=overlap,
            batch_size=batch_size,
            device=device,
            return_probabilities=return_probabilities or instances,
            callback=callback,
            amp=amp,
        )
        if not instances or res is None:
            return res
        from .instances import decode

        labels = decode(res[1], self.config["instances"], instance_settings)
        return (labels, res[1]) if return_probabilities else labels

    # -- files -----------------------------------------------------------
    def save(self, path) -> str:
        """Save to one ``safetensors`` file (weights + JSON configuration and history).

        Returns the path written. The suffix ``.safetensors`` is added when
        the path has no suffix.
        """
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix == "":
            path = path.with_suffix(".safetensors")
        config = _json_clean(dict(self.config))
        meta = {
            "format": FORMAT_NAME,
            "format_version": str(FORMAT_VERSION),
            _CONFIG_KEY: json.dumps(config),
            "history": json.dumps(_json_clean(self.history)),
        }
        tensors = {k: v.contiguous() for k, v in self.state_dict.items()}
        try:
            save_file(tensors, str(path), metadata=meta)
        except OSError as exc:
            raise SEMAnalysisError(f"cannot write model file {path}: {exc}") from exc
        self.path = str(path)
        return str(path)


def _read_config(meta: dict, name: str) -> tuple[dict, list]:
    """The configuration and history of a model file's metadata, bounded and checked."""
    if len(meta[_CONFIG_KEY]) > _MAX_CONFIG_CHARS or len(meta.get("history", "")) > _MAX_HISTORY_CHARS:
        raise SEMAnalysisError(f"{name}: the model configuration is implausibly large")
    try:
        version = int(meta.get("format_version", "0"))
        config = json.loads(meta[_CONFIG_KEY])
        history = json.loads(meta.get("history", "[]"))
    except (ValueError, TypeError, RecursionError) as exc:
        raise SEMAnalysisError(f"{name}: the model configuration is unreadable: {exc}") from exc
    if version > FORMAT_VERSION:
        raise SEMAnalysisError(f"{name} was written by a newer version (format {version}); update napari-sem-analysis")
    _check_config(config, name)
    return config, history if isinstance(history, list) else []


def _check_task(config: dict, name: str) -> None:
    """The model's task ("semantic" or "instances") and, for instances, its decoding settings."""
    from .instances import TASKS, check_decode

    task = config.get("task", "semantic")
    if task not in TASKS:
        raise SEMAnalysisError(f"{name}: unknown task {str(task)[:100]!r} (known: {', '.join(TASKS)})")
    if task == "instances":
        if config["n_classes"] != 3:
            raise SEMAnalysisError(f"{name}: an instance model has 3 classes, not {config['n_classes']}")
        config["instances"] = check_decode(config.get("instances"), name)


def load_model(path) -> UNetModel:
    """Load a model saved with :meth:`UNetModel.save`.

    Only ``safetensors`` files are read: no pickle is ever unpickled, so a
    model file cannot run code. A file that is not a model of this plugin,
    a truncated file or a pickle gives a :class:`SEMAnalysisError`.

    Parameters
    ----------
    path : str or Path
        A ``.safetensors`` file written by :meth:`UNetModel.save`.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise SEMAnalysisError(f"model file {path} does not exist")
    if not path.is_file():
        raise SEMAnalysisError(f"{path} is not a file")
    with open(path, "rb") as fh:
        head = fh.read(9)
    # safetensors: an 8-byte little-endian header length, then the JSON header. The
    # length's first byte can be 0x80 (a header of 128 + 256k bytes), so a pickle is
    # only suspected when the file does not look like safetensors.
    n_header = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    looks_safetensors = len(head) == 9 and head[8:9] == b"{" and 2 <= n_header <= path.stat().st_size - 8
    if not looks_safetensors and (head[:2] == b"PK" or head[:1] == b"\x80"):
        raise SEMAnalysisError(
            f"{path.name} is a pickle/PyTorch checkpoint, not a napari-sem-analysis model file "
            "(safetensors). Pickle files are never loaded because they can execute code."
        )
    try:
        tensors = {}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != FORMAT_NAME or _CONFIG_KEY not in meta:
                raise SEMAnalysisError(f"{path.name} is a safetensors file but not a napari-sem-analysis U-Net model")
            config, history = _read_config(meta, path.name)
            _check_task(config, path.name)
            # the stored shapes (from the header) must be those of the described network, checked on
            # torch's meta device before any weight is read or any network is built
            expected = _expected_shapes(config)
            stored = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
            mismatch = sorted(set(expected) ^ set(stored)) or [k for k in expected if stored[k] != expected[k]]
            if mismatch:
                raise SEMAnalysisError(
                    f"{path.name}: the stored weights do not match the {config['architecture']}/"
                    f"{config['encoder']} network (e.g. {mismatch[0]!r})"
                )
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except SEMAnalysisError:
        raise
    except Exception as exc:  # SafetensorError, OSError, ...
        raise SEMAnalysisError(
            f"{path.name} is not a valid model file (not safetensors, or truncated/corrupt): {exc}"
        ) from exc
    model = UNetModel(config, tensors, history)
    model._shapes_checked = True
    model.path = str(path)
    model.network("cpu")  # checks that the weights fit the architecture
    return model
