"""Shared test fixtures.

Widget tests use pytest-qt's ``make_napari_viewer`` (napari's pytest plugin)
under Xvfb (pytest-xvfb starts a virtual display when there is none).
Tests on the real micrographs take the folder from ``SEM_SHARED_DATA``
(default ``../shared/data`` beside the repository) and skip when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    return Path(os.environ.get("SEM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real micrographs; skips the test when it is absent."""
    path = _shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real-data folder {path} not present (set SEM_SHARED_DATA)")
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(0)
