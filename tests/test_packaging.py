"""Packaging: a light import, and the npe2 manifest shipped in (and found from) the wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def test_import_is_light():
    code = (
        "import sys, json, napari_sem_analysis as s;"
        "s.read_sem; s.sample_particles;"
        "print(json.dumps(sorted(m for m in ('torch','napari','PyQt6','PyQt5','PySide6','qtpy','sklearn',"
        "'segmentation_models_pytorch') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_public_api_names_resolve():
    import napari_sem_analysis as sem

    missing = []
    for name in sem._API:
        try:
            getattr(sem, name)
        except (AttributeError, ImportError) as exc:
            missing.append(f"{name}: {exc}")
    assert not missing


@pytest.mark.slow
def test_wheel_contains_manifest_and_npe2_finds_it(tmp_path):
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheel_dir.glob("napari_sem_analysis-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "napari_sem_analysis/napari.yaml" in names
        shipped = yaml.safe_load(zf.read("napari_sem_analysis/napari.yaml"))
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "napari.manifest" in zf.read(entry_points).decode()
    assert shipped == yaml.safe_load((REPO / "napari.yaml").read_text())

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = (
        "import importlib.metadata as md, json, npe2;"
        "d = md.distribution('napari-sem-analysis');"
        "m = npe2.PluginManifest.from_distribution('napari-sem-analysis');"
        "import napari_sem_analysis;"
        "print(json.dumps([str(d.locate_file('')), m.name, len(m.contributions.widgets),"
        " napari_sem_analysis.__file__]))"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=tmp_path
    )
    location, name, n_widgets, module_file = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(location).resolve() == target.resolve()
    assert Path(module_file).resolve().is_relative_to(target.resolve())
    assert name == "napari-sem-analysis"
    assert n_widgets == len(shipped["contributions"]["widgets"])
    validate_cmd = [sys.executable, "-m", "npe2", "validate", "napari-sem-analysis"]
    validate = subprocess.run(validate_cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert validate.returncode == 0, validate.stdout + validate.stderr
