"""Inputs of a batch run: files, folders and glob patterns -> the image files to process, without duplicates."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from ._validation import SEMAnalysisError
from .io import IMAGE_SUFFIXES

__all__ = ["scan_inputs", "collect_inputs"]


def _entry_kind(path: Path) -> str | None:
    """None for a regular file; otherwise why a folder entry is not read (links are never followed)."""
    import stat

    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"skipped: cannot be inspected ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        try:
            os.stat(path)
        except OSError:
            return "skipped: a dangling or looping symbolic link"
        return "skipped: a symbolic link (links in input folders are not followed)"
    if stat.S_ISREG(st.st_mode):
        return None
    if stat.S_ISFIFO(st.st_mode):
        return "skipped: a named pipe (FIFO), not a file"
    if stat.S_ISSOCK(st.st_mode):
        return "skipped: a socket, not a file"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return "skipped: a device, not a file"
    return "skipped: not a regular file"


def scan_inputs(inputs: str | os.PathLike | Iterable) -> tuple[list[Path], dict[str, str]]:
    """The image files of ``inputs`` and the entries skipped, with why.

    Files named explicitly are taken as they are. In folders and glob matches only regular files
    are read: symbolic links (which could point anywhere, e.g. at a system file), named pipes,
    sockets and devices are skipped and reported, never opened.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    files: list[Path] = []
    special: dict[str, str] = {}

    def consider(entry: Path) -> None:
        if entry.suffix.lower() not in IMAGE_SUFFIXES:
            return
        why = _entry_kind(entry)
        if why is None:
            files.append(entry)
        else:
            special[str(entry)] = why

    for item in inputs:
        p = Path(item)
        if p.is_dir():
            for entry in sorted(p.iterdir()):
                consider(entry)
        elif p.is_file():
            files.append(p)
        elif any(ch in str(item) for ch in "*?["):
            for entry in sorted(Path(f) for f in glob.glob(str(item))):
                consider(entry)
        elif p.is_symlink():
            raise SEMAnalysisError(f"input {item} is a dangling or looping symbolic link")
        else:
            raise SEMAnalysisError(f"input {item} does not exist")
    if not files and special:
        first = next(iter(special.items()))
        raise SEMAnalysisError(
            f"no readable image files in the inputs ({len(special)} skipped, e.g. {first[0]}: {first[1]})"
        )
    return _dedupe_inputs(inputs, files), special


def collect_inputs(inputs: str | os.PathLike | Iterable) -> list[Path]:
    """Expand files, folders (their image files) and glob patterns into a sorted file list."""
    return scan_inputs(inputs)[0]


def _dedupe_inputs(inputs, files: list[Path]) -> list[Path]:
    seen, out = set(), []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            out.append(f)
    if not out:
        hint = ""
        subdirs = sorted(d.name for item in inputs if Path(item).is_dir() for d in Path(item).iterdir() if d.is_dir())
        if subdirs:
            hint = f" (folders are not searched recursively; subfolders: {', '.join(subdirs[:8])})"
        raise SEMAnalysisError(f"no image files ({' '.join(IMAGE_SUFFIXES)}) found in the inputs{hint}")
    return out
