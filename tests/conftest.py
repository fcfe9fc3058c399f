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


@pytest.fixture
def errors(monkeypatch):
    """Collect the error notifications of every widget module (napari shows them in the GUI)."""
    import importlib
    import pkgutil

    import napari_sem_analysis.widgets as widgets

    seen: list[str] = []
    for info in pkgutil.iter_modules(widgets.__path__):
        module = importlib.import_module(f"{widgets.__name__}.{info.name}")
        if hasattr(module, "notify_error"):
            monkeypatch.setattr(module, "notify_error", lambda e: seen.append(str(e)))
    return seen


@pytest.fixture
def wait_run(qtbot):
    """``wait_run(widget, runs=None, timeout=60000)``: wait until the widget's runs have ended.

    ``runs``: until at least that many runs ended in total (``widget.completed``);
    None: until the current one ended. Uses only the widgets' public run state.
    """

    def wait(widget, runs: int | None = None, timeout: int = 60000):
        if runs is None:
            qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
        else:
            qtbot.waitUntil(lambda: widget.completed >= runs and not widget.running, timeout=timeout)

    return wait
