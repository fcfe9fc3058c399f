"""Safe model files: a zip with ``meta.json`` and one payload, checked on reading."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from .._validation import SEMAnalysisError

_FORMAT = "napari-sem-analysis-classifier"
_FORMAT_VERSION = 1


def _write_archive(path, meta: dict, payload_name: str, payload: bytes) -> Path:
    path = Path(path)
    meta = dict(meta)
    meta["format"] = _FORMAT
    meta["format_version"] = _FORMAT_VERSION
    meta["payload"] = payload_name
    meta["sha256"] = hashlib.sha256(payload).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.json", json.dumps(meta, indent=1))
        zf.writestr(payload_name, payload)
    return path


def _read_archive(path, expected_class: str) -> tuple[dict, bytes]:
    path = Path(path)
    if not path.is_file():
        raise SEMAnalysisError(f"model file {str(path)!r} does not exist")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "meta.json" not in names:
                raise SEMAnalysisError(f"{path.name} is not a napari-sem-analysis classifier file (no meta.json)")
            meta = json.loads(zf.read("meta.json").decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                raise SEMAnalysisError(f"{path.name} is not a napari-sem-analysis classifier file")
            payload_name = meta.get("payload")
            if payload_name not in names:
                raise SEMAnalysisError(f"{path.name} is incomplete: the model data {payload_name!r} is missing")
            payload = zf.read(payload_name)
    except SEMAnalysisError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise SEMAnalysisError(f"{path.name} is not a valid classifier file (corrupt or wrong format: {exc})") from None
    if int(meta.get("format_version", 0)) > _FORMAT_VERSION:
        raise SEMAnalysisError(
            f"{path.name} was written by a newer version (format {meta.get('format_version')}); update the plugin"
        )
    if meta.get("classifier") != expected_class:
        raise SEMAnalysisError(
            f"{path.name} holds a {meta.get('classifier')!r} model, not an {expected_class}"
        )
    if hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
        raise SEMAnalysisError(f"{path.name} is corrupt or was modified: the model data does not match its checksum")
    return meta, payload
