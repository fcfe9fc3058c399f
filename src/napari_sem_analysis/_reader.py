"""npe2 reader contribution: SEM images as Image layers in physical units."""

from __future__ import annotations

from pathlib import Path

from .io import SUPPORTED_SUFFIXES, read_sem


def napari_get_reader(path):
    """Return a reader for one SEM image file, or None if we cannot read it."""
    if isinstance(path, (list, tuple)):
        if not path:
            return None
        if not all(Path(p).suffix.lower() in SUPPORTED_SUFFIXES for p in path):
            return None
    elif Path(path).suffix.lower() not in SUPPORTED_SUFFIXES or Path(path).is_dir():
        return None
    return read_sem_layers


def read_sem_layers(path):
    """Read one or more SEM files into napari layer data tuples.

    Each file becomes an Image layer with ``scale`` = pixel size and
    ``units`` = nm when the pixel size is known, the instrument metadata in
    ``layer.metadata`` and the cropped info band under
    ``metadata["databar"]``.
    """
    paths = path if isinstance(path, (list, tuple)) else [path]
    layers = []
    for p in paths:
        image = read_sem(p, all_planes=True)
        kwargs = image.layer_kwargs()
        kwargs["metadata"]["databar"] = image.databar
        kwargs["metadata"]["path"] = str(image.path)
        kwargs["colormap"] = "gray"
        layers.append((image.data, kwargs, "image"))
    return layers
