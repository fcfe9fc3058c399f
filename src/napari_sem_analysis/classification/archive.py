"""Safe model files: a zip with ``meta.json`` and one payload, checked on reading."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

from .._validation import SEMAnalysisError

_FORMAT = "napari-sem-analysis-classifier"
_FORMAT_VERSION = 1
#: bounds on what an archive may declare, checked before anything is decompressed
MAX_META_BYTES = 1_000_000
MAX_PAYLOAD_BYTES = 4 * 1024**3
MAX_COMPRESSION_RATIO = 200  # deflate of weights/trees: ~1-10; a zip bomb: 1000+
_MAX_ENTRIES = 16


def _check_entry(path: Path, info: zipfile.ZipInfo, limit: int) -> None:
    """Refuse an entry whose declared size or compression ratio is implausible (before extracting it)."""
    if info.file_size > limit:
        raise SEMAnalysisError(
            f"{path.name}: {info.filename!r} declares {info.file_size:,} bytes, more than the limit of {limit:,}"
        )
    if info.file_size > 1_000_000 and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        raise SEMAnalysisError(
            f"{path.name}: {info.filename!r} would decompress {info.file_size / max(info.compress_size, 1):.0f}-fold "
            "(a zip bomb?); refused"
        )


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
            infos = zf.infolist()
            if len(infos) > _MAX_ENTRIES:
                raise SEMAnalysisError(f"{path.name} is not a napari-sem-analysis classifier file (too many entries)")
            by_name = {info.filename: info for info in infos}
            if "meta.json" not in by_name:
                raise SEMAnalysisError(f"{path.name} is not a napari-sem-analysis classifier file (no meta.json)")
            _check_entry(path, by_name["meta.json"], MAX_META_BYTES)
            meta = json.loads(zf.read("meta.json").decode("utf-8"))
            if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                raise SEMAnalysisError(f"{path.name} is not a napari-sem-analysis classifier file")
            payload_name = meta.get("payload")
            if not isinstance(payload_name, str) or payload_name not in by_name:
                raise SEMAnalysisError(
                    f"{path.name} is incomplete: the model data {str(payload_name)[:100]!r} is missing"
                )
            _check_entry(path, by_name[payload_name], MAX_PAYLOAD_BYTES)
            payload = zf.read(payload_name)
    except SEMAnalysisError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        OSError,
        EOFError,
        UnicodeDecodeError,
        ValueError,
        RecursionError,
        NotImplementedError,  # an unsupported compression method
    ) as exc:
        raise SEMAnalysisError(f"{path.name} is not a valid classifier file (corrupt or wrong format: {exc})") from None
    version = meta.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise SEMAnalysisError(f"{path.name}: invalid classifier description (format_version {str(version)[:40]!r})")
    if version > _FORMAT_VERSION:
        raise SEMAnalysisError(
            f"{path.name} was written by a newer version (format {meta.get('format_version')}); update the plugin"
        )
    if meta.get("classifier") != expected_class:
        raise SEMAnalysisError(f"{path.name} holds a {meta.get('classifier')!r} model, not an {expected_class}")
    _check_description(meta, path.name)
    if hashlib.sha256(payload).hexdigest() != meta.get("sha256"):
        raise SEMAnalysisError(f"{path.name} is corrupt or was modified: the model data does not match its checksum")
    return meta, payload


def _check_description(meta: dict, name: str) -> None:
    """Types and bounds of the fields a classifier file declares (before anything is built from them)."""

    def fail(what):
        raise SEMAnalysisError(f"{name}: invalid classifier description ({what})")

    def str_list(key, required, max_len):
        value = meta.get(key)
        if value is None and not required:
            return
        if not isinstance(value, list) or not all(isinstance(v, str) and len(v) <= 1000 for v in value):
            fail(f"{key} must be a list of strings")
        if len(value) > max_len:
            fail(f"{key}: more than {max_len} entries")

    str_list("class_names", True, 1000)
    str_list("feature_names", False, 100_000)
    if not isinstance(meta.get("features"), str):  # a feature-set name, or a list of column names
        str_list("features", False, 1000)
    elif len(meta["features"]) > 100:
        fail("features: an implausibly long name")
    bounds = {
        "n_estimators": (1, 100_000),
        "input_size": (16, 2048),
        "epochs": (1, 10_000),
        "batch_size": (1, 65_536),
        "width": (1, 256),
        "tile_size": (1, 1_000_000),
        "seed": (-(2**63), 2**63 - 1),
    }
    for key, (lo, hi) in bounds.items():
        value = meta.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            fail(f"{key} must be an integer in {lo}..{hi}, got {str(value)[:40]!r}")
    scales = meta.get("scales")
    if scales is not None and (
        not isinstance(scales, list)
        or not 1 <= len(scales) <= 16
        or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024 for v in scales)
    ):
        fail("scales must be a list of at most 16 integers in 1..1024")
    for key in ("arch", "model", "backend", "classifier"):
        if key in meta and not isinstance(meta[key], str):
            fail(f"{key} must be a string")
    fill = meta.get("fill_values")
    if fill is not None and (not isinstance(fill, list) or len(fill) > 100_000):
        fail("fill_values must be a list of numbers")
