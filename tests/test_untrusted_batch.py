"""Recipes, input folders and the batch on untrusted input: no writes outside --out, bounded recipes,
links not followed, no file content in reports, a locked output folder, clear output errors, workers
that do not outlive the batch."""

from __future__ import annotations

import errno
import inspect
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_sem_analysis import batch, cli
from napari_sem_analysis._validation import SEMAnalysisError
from napari_sem_analysis.batch import process_image, run_batch
from napari_sem_analysis.steps import STEPS
from napari_sem_analysis.workflows import Workflow

RECIPE = {
    "name": "bright disks",
    "steps": [{"function": "threshold", "params": {"method": "otsu"}, "inputs": {"image": "image"}, "output": "mask"}],
    "summary": "particles",
}
SECRET = "TOPSECRET-do-not-echo-4711"


def _disks(seed=0, shape=(96, 128)):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = ((yy - 40) ** 2 + (xx - 40) ** 2 <= 100) | ((yy - 60) ** 2 + (xx - 95) ** 2 <= 144)
    return np.clip(np.where(mask, 190.0, 50.0) + rng.normal(0, 5, shape), 0, 255).astype(np.uint8)


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    for i in range(2):
        tifffile.imwrite(d / f"img{i}.tif", _disks(i))
    return d


# -- recipes ---------------------------------------------------------------------


@pytest.mark.parametrize("function", ["run_batch", "run_workflow", "train_unet", "load_recipe", "read_sem"])
def test_recipe_steps_are_registered_steps_only(function):
    with pytest.raises(SEMAnalysisError, match=f"unknown step function '{function}'"):
        Workflow.from_dict({"steps": [{"function": function, "params": {}}]}).validate()


def test_a_recipe_cannot_write_into_another_folder(images, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "summary.csv").write_text("file,count\nkeep.tif,3\n")
    (victim / "errors.csv").write_text("file,error\n")
    evil = {
        "steps": [
            {
                "function": "run_batch",
                "params": {"recipe": "particles", "inputs": str(images), "out_dir": str(victim), "overwrite": True},
            }
        ]
    }
    path = tmp_path / "evil.yaml"
    path.write_text(_yaml(evil))
    with pytest.raises(SEMAnalysisError, match="unknown step function 'run_batch'"):
        run_batch(path, images, tmp_path / "out", progress=False)
    assert (victim / "summary.csv").read_text() == "file,count\nkeep.tif,3\n"
    assert (victim / "errors.csv").exists()


def _yaml(data) -> str:
    import yaml

    return yaml.safe_dump(data)


WRITE_PARAMETER_NAMES = {"out", "out_dir", "output", "output_dir", "path", "save", "save_path", "filename", "dest"}


def test_no_registered_step_takes_a_place_to_write():
    for step in STEPS:
        params = set(inspect.signature(step.load()).parameters)
        assert not params & WRITE_PARAMETER_NAMES, (step.name, params & WRITE_PARAMETER_NAMES)
        assert not [p for p in params if p.endswith(("_dir", "_path", "_file", "_folder"))], step.name


def test_yaml_alias_bomb_is_refused_fast_and_small(tmp_path):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    lines.append("steps: [{function: threshold, params: {method: otsu, junk: *i}}]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines))
    assert path.stat().st_size < 1000
    tracemalloc.start()
    try:
        with pytest.raises(SEMAnalysisError, match="anchors/aliases"):
            Workflow.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20e6


def test_recipe_files_have_a_size_cap(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# padding\n" * 200_000 + _yaml(RECIPE))
    with pytest.raises(SEMAnalysisError, match="recipes are at most"):
        Workflow.load(path)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_segments": 100, "max_iter": 10**6}, "max_iter must be at most"),
        ({"n_segments": 100, "compactness": float("inf")}, "not a finite number"),
        ({"n_segments": 100, "compactness": float("nan")}, "not a finite number"),
        ({"n_segments": 10**12}, "n_segments must be at most"),
    ],
)
def test_recipe_parameters_are_bounded(params, message):
    with pytest.raises(SEMAnalysisError, match=message):
        Workflow.from_dict({"steps": [{"function": "superpixels", "params": params}]})


def test_recipe_params_must_be_a_mapping():
    with pytest.raises(SEMAnalysisError, match="'params' must map"):
        Workflow.from_dict({"steps": [{"function": "threshold", "params": "rm -rf /"}]})


# -- input folders ---------------------------------------------------------------


def test_links_and_special_entries_are_reported_not_followed(images, tmp_path):
    outside = tmp_path / "system-file"
    outside.write_text(SECRET + "\n" * 10)
    os.symlink(outside, images / "secret.tif")
    os.symlink(tmp_path / "nowhere", images / "gone.tif")
    os.symlink(images / "loop.tif", images / "loop.tif")
    os.mkfifo(images / "pipe.tif")  # reading it would block the batch for ever
    (images / "fake.tif").write_text(SECRET)  # a regular file holding text, not a TIFF
    out = tmp_path / "out"
    res = run_batch(RECIPE, images, out, progress=False)
    assert set(res.processed) == {"img0", "img1"}
    assert set(Path(p).name for p in res.special) == {"secret.tif", "gone.tif", "loop.tif", "pipe.tif"}
    assert "symbolic link" in res.special[str(images / "secret.tif")]
    assert "dangling or looping" in res.special[str(images / "gone.tif")]
    assert "named pipe" in res.special[str(images / "pipe.tif")]
    errors = pd.read_csv(out / "errors.csv")
    assert {"secret.tif", "gone.tif", "loop.tif", "pipe.tif", "fake.tif"} <= set(errors["file"])
    for name in ("errors.csv", "summary.csv", "report.html"):
        assert "TOPS" not in (out / name).read_text(), name


def test_process_image_error_never_quotes_file_bytes(tmp_path):
    fake = tmp_path / "fake.tif"
    fake.write_text(SECRET)
    res = process_image(RECIPE, str(fake))
    assert res["status"] == "error" and "fake.tif" in res["error"]
    assert "TOPS" not in res["error"]


# -- suspect images ----------------------------------------------------------------


def _zero_strip(path, index):
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags["StripByteCounts"]
        fmt = {3: "<H", 4: "<I", 16: "<Q"}[int(tag.dtype)]
        where = tag.valueoffset + index * struct.calcsize(fmt)
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, where, 0)
    path.write_bytes(bytes(raw))


def test_images_with_missing_strips_are_marked_suspect(images, tmp_path):
    holes = images / "holes.tif"
    tifffile.imwrite(holes, _disks(5), rowsperstrip=8)
    _zero_strip(holes, 2)
    res = process_image(RECIPE, str(holes))  # the warning is not silenced on the way
    assert res["status"] == "ok" and "missing or truncated" in res["suspect"]
    out = tmp_path / "out"
    result = run_batch(RECIPE, images, out, progress=False)
    assert list(result.suspect) == ["holes"]
    summary = pd.read_csv(out / "summary.csv").set_index("name")
    assert "missing or truncated" in summary.loc["holes", "suspect"]
    assert pd.isna(summary.loc["img0", "suspect"])


# -- the output folder -------------------------------------------------------------


def test_a_second_run_into_a_locked_folder_fails_clearly(images, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    lock = batch._lock_output(out)  # as a running batch holds it
    try:
        with pytest.raises(SEMAnalysisError, match="another batch run is writing to"):
            run_batch(RECIPE, images, out, progress=False)
        assert not (out / "recipe.yaml").exists()
        assert cli.main(["batch", "particles", str(images), "--out", str(out), "-q"]) == cli.EXIT_USAGE
        assert "another batch run" in capsys.readouterr().err
    finally:
        lock.close()
    assert run_batch(RECIPE, images, out, progress=False).processed


def test_a_different_recipe_into_a_used_folder_needs_overwrite(images, tmp_path):
    out = tmp_path / "out"
    run_batch(RECIPE, images, out, progress=False)
    other = dict(RECIPE, steps=[dict(RECIPE["steps"][0], params={"method": "li"})])
    with pytest.raises(SEMAnalysisError, match="different recipe"):
        run_batch(other, images, out, progress=False)
    assert run_batch(other, images, out, progress=False, overwrite=True).processed


@pytest.mark.parametrize("code, text", [(errno.ENOSPC, "No space left"), (errno.EROFS, "Read-only file system")])
def test_full_or_read_only_output_has_its_own_exit_code(images, tmp_path, monkeypatch, capsys, code, text):
    def failing(path, data):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(batch, "write_atomic", failing)
    rc = cli.main(["batch", "particles", str(images), "--out", str(tmp_path / "out"), "-q"])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_OUTPUT == 3
    assert text in err and "cannot write" in err and "Traceback" not in err


def test_cli_help_documents_the_exit_codes_and_the_scheduler_trust(capsys):
    with pytest.raises(SystemExit):
        cli.main(["batch", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "3 the output folder cannot be written" in text
    assert "pickles" in text and "trust" in text


# -- worker processes ----------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks the Linux process table")
def test_pool_workers_exit_when_the_batch_process_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import multiprocessing as mp, os, time
            from concurrent.futures import ProcessPoolExecutor
            from napari_sem_analysis.batch import _worker_init

            if __name__ == "__main__":
                pool = ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"), initializer=_worker_init)
                pids = {pool.submit(os.getpid).result() for _ in range(6)}
                for _ in range(4):
                    pool.submit(time.sleep, 60)  # busy workers, as in a batch
                time.sleep(0.5)
                print(" ".join(map(str, sorted(pids))), flush=True)
                time.sleep(120)
            """
        )
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(Path(batch.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert pids
        assert all(_alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.2)
        assert not any(_alive(p) for p in pids), "pool workers outlived the killed batch process"
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            state = next(line for line in fh if line.startswith("State:"))
    except (OSError, StopIteration):
        return False
    return " Z " not in state and "zombie" not in state


@pytest.mark.parametrize("value", ["1e308", "1e-320"])
def test_absurd_pixel_size_override_is_a_usage_error(images, tmp_path, capsys, value):
    rc = cli.main(["batch", "particles", str(images), "--out", str(tmp_path / "out"), "-q", "--pixel-size", value])
    assert rc == cli.EXIT_USAGE
    assert "pixel_size (nm) must be" in capsys.readouterr().err
    assert not (tmp_path / "out" / "summary.csv").exists()


def test_saved_recipes_never_use_aliases_and_load_back(tmp_path):
    shared = {"method": "otsu"}  # the same object twice: plain YAML would write &id001 / *id001
    wf = Workflow.from_dict(
        {
            "steps": [
                {"function": "threshold", "params": shared, "output": "mask"},
                {"function": "threshold", "params": shared, "output": "mask2"},
            ]
        }
    )
    wf.options = {"a": [1, 2], "b": None}
    wf.options["b"] = wf.options["a"]
    path = wf.save(tmp_path / "r.yaml")
    assert "&" not in path.read_text() and "*" not in path.read_text()
    assert Workflow.load(path) == wf
