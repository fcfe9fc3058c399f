"""docs/architecture.md names only files and folders that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_sem_analysis"


def _named_paths(text: str) -> list[str]:
    """Every `...` span that looks like a path: ends in .py or / and holds no space."""
    return [m for m in re.findall(r"`([^`\s]+)`", text) if m.endswith((".py", "/"))]


def test_architecture_doc_names_existing_paths():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    paths = _named_paths(text)
    assert len(paths) > 20  # the table really lists the modules
    package_dirs = [PACKAGE, *[d for d in PACKAGE.iterdir() if d.is_dir()]]
    missing = []
    for p in paths:
        if (ROOT / p).exists() or (PACKAGE / p).exists():
            continue
        # a bare file name inside a subpackage row (e.g. `glcm.py` after `texture/`)
        if "/" not in p.rstrip("/") and any((d / p).exists() for d in package_dirs):
            continue
        missing.append(p)
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_named_paths_parser():
    assert _named_paths("`io.py`, `texture/`, `python x.py`, `read_sem`") == ["io.py", "texture/"]
