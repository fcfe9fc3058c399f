"""Pixel classifier files: a zip of ``meta.json`` and a skops dump of the forest, checked on reading.

Reading never unpickles or executes anything: the members are read with a
size bound, the forest's checksum is compared with the one in
``meta.json``, and the skops dump may hold only the types a scikit-learn
forest is made of. Foreign, corrupt, tampered or oversized files raise
:class:`SEMAnalysisError`.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from .._validation import SEMAnalysisError

_FORMAT = "napari-sem-analysis-pixel-classifier"
_FORMAT_VERSION = 1
_MAX_META_BYTES = 1 << 20
_MAX_PAYLOAD_BYTES = 1 << 30  # 1 GiB of forest
_MAX_ENTRIES = 8
_TRUSTED_SKOPS_TYPES = frozenset({"sklearn.tree._tree.Tree"})
_META, _PAYLOAD = "meta.json", "model.skops"


def write_archive(path, meta: dict, estimator) -> Path:
    """Write ``meta`` (plus format, version and checksum) and the skops dump of ``estimator`` to ``path``."""
    import skops.io as sio

    payload = sio.dumps(estimator)
    meta = dict(meta, format=_FORMAT, format_version=_FORMAT_VERSION, sha256=hashlib.sha256(payload).hexdigest())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_META, json.dumps(meta, indent=1))
        zf.writestr(_PAYLOAD, payload)
    return path


def read_archive(path: Path) -> tuple[dict, bytes]:
    """The checked description and the forest's bytes of a pixel classifier file."""
    if not path.is_file():
        raise SEMAnalysisError(f"model file {str(path)!r} does not exist")
    name = path.name
    try:
        members = _members(path, {_META: _MAX_META_BYTES, _PAYLOAD: _MAX_PAYLOAD_BYTES})
        meta = json.loads(members[_META].decode("utf-8"))
    except SEMAnalysisError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise SEMAnalysisError(
            f"{name} is not a valid pixel classifier file (corrupt or wrong format: {exc})"
        ) from None
    payload = members[_PAYLOAD]
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise SEMAnalysisError(f"{name} is not a napari-sem-analysis pixel classifier file")
    try:
        version = int(meta.get("format_version", 0))
    except (TypeError, ValueError):
        version = 0
    if version > _FORMAT_VERSION:
        raise SEMAnalysisError(f"{name} was written by a newer version (format {version}); update the plugin")
    if meta.get("classifier") != "PixelClassifier":
        raise SEMAnalysisError(f"{name} holds a {meta.get('classifier')!r} model, not a PixelClassifier")
    if hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
        raise SEMAnalysisError(f"{name} is corrupt or was modified: the model data does not match its checksum")
    return meta, payload


def _members(path: Path, limits: dict[str, int]) -> dict[str, bytes]:
    """The members of the zip named in ``limits``, each read with its size bound; nothing else is read."""
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        found = {info.filename: info for info in infos}
        if len(infos) > _MAX_ENTRIES or not set(limits) <= set(found):
            raise SEMAnalysisError(f"{path.name} is not a napari-sem-analysis pixel classifier file")
        return {member: _read_bounded(zf, found[member], limit, path.name) for member, limit in limits.items()}


def _read_bounded(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, name: str) -> bytes:
    if info.file_size > limit:
        raise SEMAnalysisError(f"{name} was refused: {info.filename} is {info.file_size} bytes (limit {limit})")
    with zf.open(info) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise SEMAnalysisError(f"{name} was refused: {info.filename} is larger than {limit} bytes")
    return data


def load_forest(payload: bytes, name: str):
    """The scikit-learn forest in a skops dump, refusing any type a forest is not made of."""
    import skops.io as sio

    try:
        untrusted = set(sio.get_untrusted_types(data=payload))
    except Exception as exc:  # noqa: BLE001 - skops raises various errors on garbage
        raise SEMAnalysisError(f"{name}: the model data is corrupt ({exc})") from None
    refused = sorted(untrusted - _TRUSTED_SKOPS_TYPES)
    if refused:
        raise SEMAnalysisError(
            f"{name} was refused: it contains types that are not part of a pixel classifier ({', '.join(refused)})"
        )
    try:
        est = sio.loads(payload, trusted=sorted(untrusted))
    except Exception as exc:  # noqa: BLE001 - any failure means a bad file
        raise SEMAnalysisError(f"{name}: the model could not be loaded ({exc})") from None
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    if type(est) not in (RandomForestClassifier, ExtraTreesClassifier):
        raise SEMAnalysisError(f"{name} was refused: it holds a {type(est).__name__}, not a forest")
    return est
