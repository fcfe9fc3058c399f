"""Data in and out of recipes: images read for a run, step outputs as labels, files written atomically,
parameters as plain JSON/YAML types."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._validation import SEMAnalysisError, to_grayscale


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    Readers never see a half-written file: the file either has its old
    content or the complete new one.
    """
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


# --------------------------------------------------------------------------
# reading images
# --------------------------------------------------------------------------
from ..io import read_image  # noqa: E402  (reading lives in io; re-exported here)


def _as_image(image_or_path, pixel_size):
    """(data, pixel_size, name) from a path, an SEMImage-like object or an array."""
    if isinstance(image_or_path, (str, os.PathLike)):
        data, px = read_image(image_or_path, pixel_size=pixel_size)
        return data, px, Path(image_or_path).stem
    if hasattr(image_or_path, "data") and not isinstance(image_or_path, np.ndarray):
        data = to_grayscale(np.asarray(image_or_path.data))
        px = pixel_size if pixel_size is not None else getattr(image_or_path, "pixel_size", None)
        path = getattr(image_or_path, "path", None)
        name = Path(path).stem if path else getattr(image_or_path, "name", "image")
        return data, (None if px is None else float(px)), name
    data = to_grayscale(np.asarray(image_or_path))
    return data, (None if pixel_size is None else float(pixel_size)), "image"


def _labels_of(value):
    """An integer label image from a step output (array, bool mask, or object with .labels)."""
    if value is None:
        return None
    if hasattr(value, "labels") and not isinstance(value, np.ndarray):
        value = value.labels
    if isinstance(value, np.ndarray) and value.ndim == 2:
        if value.dtype == bool:
            from scipy import ndimage as ndi

            return ndi.label(value)[0].astype(np.int32)
        if np.issubdtype(value.dtype, np.integer):
            if value.size and value.max() <= 1:  # a 0/1 mask (e.g. a 2-class U-Net map): objects
                from scipy import ndimage as ndi

                return ndi.label(value > 0)[0].astype(np.int32)
            return value
    return None


def _jsonable(value):
    """Convert numpy scalars/arrays and tuples to plain JSON/YAML types."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise SEMAnalysisError(f"recipe parameter {value!r} ({type(value).__name__}) cannot be saved")
