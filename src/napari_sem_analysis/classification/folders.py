"""Labelled image folders (one sub-folder per class) -> images, labels and source groups."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validation import SEMAnalysisError
from ..io import IMAGE_SUFFIXES, read_image
from .tiles import tile_positions


@dataclass
class ImageFolderData:
    """Images read from a folder with one sub-folder per class.

    ``groups`` gives the source image of each entry (tiles of one file share a group).
    """

    images: list
    y: np.ndarray
    groups: np.ndarray
    paths: list
    class_names: list


def load_image_folder(path, *, tile_size: int | None = None, stride: int | None = None) -> ImageFolderData:
    """Read ``path/<class name>/*.tif|png|jpg`` (one sub-folder per class).

    With ``tile_size`` every image is cut into tiles (``groups`` then tells
    which file each tile came from).
    """
    root = Path(path)
    if not root.is_dir():
        raise SEMAnalysisError(f"{str(root)!r} is not a folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    images, y, groups, paths, names = [], [], [], [], []
    for d in class_dirs:
        files = sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            continue
        names.append(d.name)
        for f in files:
            im, _ = read_image(f)
            g = len(paths)
            paths.append(f)
            if tile_size:
                for _, _, y0, x0, y1, x1 in tile_positions(im.shape, tile_size, stride):
                    images.append(im[y0:y1, x0:x1])
                    y.append(d.name)
                    groups.append(g)
            else:
                images.append(im)
                y.append(d.name)
                groups.append(g)
    if len(names) < 2:
        raise SEMAnalysisError(f"{str(root)!r} needs at least two sub-folders (one per class) with images")
    return ImageFolderData(images, np.asarray(y, dtype=object), np.asarray(groups, np.int64), paths, names)
