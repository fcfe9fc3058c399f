"""Labelled image folders (one sub-folder per class) -> images, labels and source groups."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._validation import SEMAnalysisError
from ..io import IMAGE_SUFFIXES, read_image
from .tiles import tile_positions


@dataclass
class ImageFolderData:
    """Images read from a folder with one sub-folder per class.

    ``groups`` gives the source image of each entry (tiles of one file share
    a group). ``specimens`` gives the specimen of each entry when a rule
    could derive one (see :func:`load_image_folder`), else None;
    ``specimen_rule`` says in words which rule was used, for the user.
    """

    images: list
    y: np.ndarray
    groups: np.ndarray
    paths: list
    class_names: list
    specimens: np.ndarray | None = None
    specimen_rule: str = ""

    @property
    def cv_groups(self) -> np.ndarray:
        """The groups to cross-validate with: the specimen when known, else the source file."""
        return self.specimens if self.specimens is not None else self.groups


def _stem_token(stem: str, prefix: str) -> str:
    rest = stem[len(prefix) :] if prefix and stem.startswith(prefix) else stem
    return re.split(r"[_\-\s.]", rest, maxsplit=1)[0].lower() or rest.lower()


def specimens_from_paths(paths, root, rule: str | None = "auto") -> tuple[np.ndarray | None, str]:
    """Derive the specimen of each file: a sub-folder, a file-name rule or a regular expression.

    Parameters
    ----------
    paths : list of Path
        Files under ``root/<class>/`` (or ``root/<class>/<specimen>/``).
    root : Path
    rule : {"auto", "subfolder", "filename"}, a regular expression, or None
        ``"subfolder"``: the folder between the class folder and the file.
        ``"filename"``: the file name after the prefix that all files share
        (e.g. ``translated_``), up to the first ``_``, ``-``, space or dot,
        case-insensitive: ``translated_PPC9_03_24.tif`` -> ``ppc9``. A
        regular expression: its first group (or whole match) on the file
        name stem. ``"auto"``: sub-folders when every file is in one, else
        the file-name rule when it finds at least two specimens and fewer
        specimens than files. None: no specimens.

    Returns
    -------
    (ndarray of str or None, str)
        The specimens, and the rule in words.
    """
    if rule is None or not len(paths):
        return None, "none: cross-validation groups by source image"
    root = Path(root)
    depth = [len(Path(p).relative_to(root).parts) for p in paths]
    if rule in ("auto", "subfolder"):
        if all(d >= 3 for d in depth):
            spec = np.array([Path(p).relative_to(root).parts[1] for p in paths], dtype=object)
            return spec, "sub-folder: root/<class>/<specimen>/<image>"
        if rule == "subfolder":
            raise SEMAnalysisError("specimen='subfolder' needs every image in root/<class>/<specimen>/")
    if rule in ("auto", "filename"):
        stems = [Path(p).stem for p in paths]
        prefix = os.path.commonprefix(stems)
        # keep the shared prefix to whole words (up to its last separator)
        cut = max(prefix.rfind(c) for c in "_- .")
        prefix = prefix[: cut + 1] if cut >= 0 else ""
        spec = np.array([_stem_token(s, prefix) for s in stems], dtype=object)
        n = len(set(spec))
        if rule == "filename" or 2 <= n < len(paths):
            shown = f" after the shared prefix {prefix!r}" if prefix else ""
            return spec, f"file name{shown} up to the first '_' or '-' (case-insensitive): {n} specimens"
        return None, "none found (every file name differs): cross-validation groups by source image"
    try:
        pattern = re.compile(rule)
    except (re.error, TypeError) as exc:
        raise SEMAnalysisError(f"specimen rule {rule!r} is not a valid regular expression ({exc})") from None
    spec = []
    for p in paths:
        m = pattern.search(Path(p).stem)
        if m is None:
            raise SEMAnalysisError(f"specimen rule {rule!r} does not match the file name {Path(p).name!r}")
        spec.append(m.group(1) if m.groups() else m.group(0))
    return np.array(spec, dtype=object), f"regular expression {rule!r} on the file name"


def load_image_folder(
    path, *, tile_size: int | None = None, stride: int | None = None, specimen: str | None = "auto"
) -> ImageFolderData:
    """Read ``path/<class name>/*.tif|png|jpg`` (one sub-folder per class).

    With ``tile_size`` every image is cut into tiles (``groups`` then tells
    which file each tile came from). Images may also sit one level deeper,
    in ``path/<class name>/<specimen>/``. ``specimen`` is the rule that
    names the specimen of each image (see :func:`specimens_from_paths`);
    the result's ``specimen_rule`` says which one applied, and
    ``cv_groups`` groups by specimen when one was found, so that
    cross-validation tells how a classifier does on new specimens.

    Parameters
    ----------
    path : str or Path
        Folder with one sub-folder per class.
    tile_size : int, optional
        Cut every image into tiles of this size.
    stride : int, optional
        Step between tiles (default ``tile_size``).
    specimen : str or None
        Rule naming the specimen of each image (see :func:`specimens_from_paths`);
        ``"auto"`` picks one, None uses none.
    """
    root = Path(path)
    if not root.is_dir():
        raise SEMAnalysisError(f"{str(root)!r} is not a folder")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    images, y, groups, paths, names = [], [], [], [], []
    for d in class_dirs:
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        for sub in sorted(x for x in d.iterdir() if x.is_dir() and not x.name.startswith(".")):
            files += sorted(f for f in sub.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
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
    groups = np.asarray(groups, np.int64)
    spec_files, rule = specimens_from_paths(paths, root, specimen)
    spec = None if spec_files is None else np.asarray(spec_files, dtype=object)[groups]
    return ImageFolderData(images, np.asarray(y, dtype=object), groups, paths, names, spec, rule)
