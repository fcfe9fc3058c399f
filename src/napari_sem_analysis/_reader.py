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
        mask = read_mask_layer(p)
        if mask is not None:
            layers.append(mask)
            continue
        image = read_sem(p, all_planes=True)
        kwargs = image.layer_kwargs()
        kwargs["metadata"]["databar"] = image.databar
        kwargs["metadata"]["path"] = str(image.path)
        kwargs["colormap"] = "gray"
        layers.append((image.data, kwargs, "image"))
    return layers


#: file-name endings of masks saved next to their image (``X.tif`` and ``X_m.tif`` / ``X_mask.png``)
MASK_SUFFIXES = ("_m", "_mask", "_MASK", "_Mask")


def mask_image_path(path) -> Path | None:
    """The image a mask file belongs to (``X_m.tif`` / ``X_mask.*`` -> ``X.*`` in the same folder), or None."""
    p = Path(path)
    for end in MASK_SUFFIXES:
        if p.stem.endswith(end) and len(p.stem) > len(end):
            base = p.stem[: -len(end)]
            for suffix in SUPPORTED_SUFFIXES:
                for cand in (p.with_name(base + suffix), p.with_name(base + suffix.upper())):
                    if cand.is_file() and cand != p:
                        return cand
    return None


def read_mask_layer(path):
    """A mask file next to its image as a Labels layer tuple with the image's scale and crop (or None).

    The mask is cropped like the image (the image's info band cut off) and
    gets its pixel size, so that it lies on the image and pairs with it for
    training. 0/255 masks become 0/1.
    """
    import numpy as np

    image_path = mask_image_path(path)
    if image_path is None:
        return None
    mask = read_sem(path, crop_databar=False)
    image = read_sem(image_path)
    data = np.asarray(mask.data)
    h, w = image.data.shape[-2:]
    if data.shape[-2] >= h and data.shape[-1] == w:
        data = data[..., :h, :]  # cropped as the image was (info band at the bottom)
    values = np.unique(data)
    if values.size <= 64 and values.max() >= 64:  # 0/255 and the like: class ids in order
        data = np.searchsorted(values, data)
    kwargs = {"name": Path(path).stem, "metadata": {"path": str(path), "image": str(image_path)}}
    if image.pixel_size is not None:
        kwargs["scale"] = (image.pixel_size, image.pixel_size)
        kwargs["units"] = ("nm", "nm")
    return (data.astype(np.int32), kwargs, "labels")
