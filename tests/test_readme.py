"""The README's Python example runs as written (on a sample written as a Zeiss TIFF)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from _tiffs import zeiss_tiff

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block() -> str:
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no Python example"
    return blocks[0]


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    import napari_sem_analysis as sem

    sample = sem.sample_particles()
    zeiss_tiff(tmp_path / "particles.tif", sample.raw, pixel_size_nm=sample.pixel_size)
    monkeypatch.chdir(tmp_path)
    code = _python_block().replace("epochs=20", "epochs=1, steps_per_epoch=2, batch_size=2, patch_size=64")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)

    img, table, pred = namespace["img"], namespace["table"], namespace["pred"]
    assert img.pixel_size == sample.pixel_size and img.data.shape == sample.labels.shape
    assert len(table) > 0 and "area" in table.columns
    assert Path("particles.csv").exists() and Path("particles.semunet").exists() and Path("pores.semclf").exists()
    assert pred.shape == img.data.shape and set(np.unique(pred)) <= {0, 1}
    assert "count" in capsys.readouterr().out


def test_readme_pictures_exist_and_are_small():
    """Every picture the README shows is in the repository, a real PNG and small (the repository stays light)."""
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text())
    assert {"docs/images/screenshot.png", "docs/images/screenshot_pores.png"} <= set(pictures)
    for rel in pictures:
        path = README.parent / rel
        assert path.is_file(), rel
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", rel
        assert path.stat().st_size < 300_000, f"{rel}: {path.stat().st_size // 1024} kB"
    # the screenshot shows a real micrograph whose license allows it, and says which
    assert "MIT license" in README.read_text().split("## What it does")[0]
    assert "scripts/screenshot.py" in README.read_text()
