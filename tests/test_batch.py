"""Batch processing: folders with a corrupt file, resume, no overwrite, Dask, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_sem_analysis import cli
from napari_sem_analysis._validation import SEMAnalysisError
from napari_sem_analysis.batch import collect_inputs, run_batch
from napari_sem_analysis.workflows import Workflow, register_step, run_workflow

PIXEL_NM = 12.0
RADII = {"a": 8, "b": 10, "c": 12, "d": 9}
COUNTS = {"a": 3, "b": 4, "c": 2, "d": 5}

# threshold (a public API function) -> connected components: works in worker processes too
RECIPE = {
    "name": "bright disks",
    "steps": [{"function": "threshold", "params": {"method": "otsu"}, "inputs": {"image": "image"}, "output": "mask"}],
    "summary": "particles",
}


def _disks(n, radius, seed):
    rng = np.random.default_rng(seed)
    shape = (128, 64 * n)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, bool)
    for i in range(n):
        mask |= (yy - 60) ** 2 + (xx - (32 + 64 * i)) ** 2 <= radius**2
    img = np.where(mask, 190.0, 50.0) + rng.normal(0, 5, shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    for seed, name in enumerate(sorted(RADII)):
        img = _disks(COUNTS[name], RADII[name], seed)
        # pixel size in the file's metadata (ImageJ resolution, um)
        tifffile.imwrite(
            d / f"{name}.tif",
            img,
            imagej=True,
            resolution=(1000 / PIXEL_NM, 1000 / PIXEL_NM),
            metadata={"unit": "um"},
        )
    (d / "corrupt.tif").write_bytes(b"II*\x00" + b"\x00garbage" * 20)
    (d / "notes.txt").write_text("not an image")
    return d


def _expected_diameter(name):
    r = RADII[name]
    yy, xx = np.mgrid[-r - 1 : r + 2, -r - 1 : r + 2]
    area = ((yy**2 + xx**2) <= r * r).sum()  # the digitised disk drawn in _disks
    return 2 * np.sqrt(area / np.pi) * PIXEL_NM


def _no_temp_files(out):
    return not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_batch_folder_with_one_corrupt_file(folder, tmp_path):
    out = tmp_path / "out"
    res = run_batch(RECIPE, folder, out, progress=False)
    s = res.summary
    assert list(s["file"]) == ["a.tif", "b.tif", "c.tif", "corrupt.tif", "d.tif"]  # .txt ignored
    ok = s[s["status"] == "ok"].set_index("name")
    assert sorted(ok.index) == ["a", "b", "c", "d"]
    bad = s[s["status"] == "error"]
    assert list(bad["file"]) == ["corrupt.tif"] and "corrupt" in bad["error"].iloc[0]
    assert res.errors.keys() == {"corrupt"}
    for name in RADII:
        assert ok.loc[name, "count"] == COUNTS[name]
        assert ok.loc[name, "pixel_size_nm"] == pytest.approx(PIXEL_NM)  # from metadata
        assert ok.loc[name, "median_equivalent_diameter_nm"] == pytest.approx(_expected_diameter(name), rel=0.02)
        # per-image outputs; labels equal a direct run of the recipe
        labels = tifffile.imread(out / "labels" / f"{name}_labels.tif")
        direct = run_workflow(RECIPE, folder / f"{name}.tif")
        np.testing.assert_array_equal(labels, direct.labels)
        table = pd.read_csv(out / "tables" / f"{name}.csv")
        assert len(table) == COUNTS[name]
        from PIL import Image

        overlay = np.asarray(Image.open(out / "overlays" / f"{name}.png"))
        assert overlay.shape == labels.shape + (3,)
    # summary.csv on disk = returned summary; columns the user relies on come first
    disk = pd.read_csv(out / "summary.csv")
    assert list(disk.columns[:4]) == ["file", "status", "count", "median_equivalent_diameter_nm"]
    assert len(disk) == 5
    assert "corrupt.tif" in (out / "errors.csv").read_text()
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2 and "corrupt.tif" in html
    assert Workflow.load(out / "recipe.yaml") == Workflow.from_dict(RECIPE)
    assert _no_temp_files(out)
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    mode = stat.S_IMODE((out / "summary.csv").stat().st_mode)
    assert mode == 0o666 & ~umask  # atomic writes keep the usual file permissions


class _Interrupt:
    armed = False
    calls = 0
    limit = 2


@register_step("t_interrupt_after")
def _interrupt_after(mask):
    if _Interrupt.armed:
        _Interrupt.calls += 1
        if _Interrupt.calls > _Interrupt.limit:
            raise KeyboardInterrupt
    return mask


def test_resume_after_interruption(folder, tmp_path):
    out = tmp_path / "out"
    recipe = dict(
        RECIPE,
        steps=RECIPE["steps"] + [{"function": "t_interrupt_after", "inputs": {"mask": "mask"}, "output": "mask2"}],
    )
    _Interrupt.armed, _Interrupt.calls = True, 0
    try:
        with pytest.raises(KeyboardInterrupt):
            run_batch(recipe, folder, out, progress=False)
    finally:
        _Interrupt.armed = False
    done = sorted(p.stem for p in (out / "records").glob("*.json"))
    assert done == ["a", "b"]  # finished before the interruption, complete
    assert not (out / "summary.csv").exists()
    assert _no_temp_files(out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.parent.name in ("labels", "records")}

    res = run_batch(recipe, folder, out, progress=False)
    assert sorted(res.skipped) == ["a", "b"]
    assert sorted(res.processed) == ["c", "d"]  # the corrupt file is tried again and fails again
    assert list(res.errors) == ["corrupt"]
    for p, t in before.items():
        assert p.stat().st_mtime_ns == t  # finished images not redone
    ok = res.summary[res.summary["status"] == "ok"].set_index("name")
    assert [ok.loc[n, "count"] for n in "abcd"] == [COUNTS[n] for n in "abcd"]


def test_no_overwrite_unless_asked(folder, tmp_path):
    out = tmp_path / "out"
    files = [folder / "a.tif", folder / "b.tif"]
    run_batch(RECIPE, files, out, progress=False, report=False)
    rec = out / "records" / "a.json"
    first = rec.stat().st_mtime_ns
    with pytest.raises(SEMAnalysisError, match="overwrite"):
        run_batch(RECIPE, files, out, progress=False, resume=False)
    other = dict(RECIPE, steps=[dict(RECIPE["steps"][0], params={"method": "li"})])
    with pytest.raises(SEMAnalysisError, match="different recipe"):
        run_batch(other, files, out, progress=False)
    (out / "recipe.yaml").unlink()  # even without the saved recipe, the records tell
    with pytest.raises(SEMAnalysisError, match="different recipe"):
        run_batch(other, files, out, progress=False)
    assert rec.stat().st_mtime_ns == first
    assert not (out / "recipe.yaml").exists()  # the refused run wrote nothing
    again = run_batch(RECIPE, files, out, progress=False, report=False)  # the original recipe resumes
    assert sorted(again.skipped) == ["a", "b"] and rec.stat().st_mtime_ns == first
    res = run_batch(other, files, out, progress=False, overwrite=True, report=False)
    assert sorted(res.processed) == ["a", "b"] and rec.stat().st_mtime_ns != first
    assert json.loads(rec.read_text())["status"] == "ok"


def _comparable(summary):
    return summary.drop(columns=["seconds"]).reset_index(drop=True)


def test_local_cluster_run_equals_serial_run(folder, tmp_path):
    distributed = pytest.importorskip("distributed")
    serial = run_batch(RECIPE, folder, tmp_path / "serial", progress=False, report=False)
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        dask = run_batch(RECIPE, folder, tmp_path / "dask", scheduler=client, progress=False, report=False)
        assert len(client.scheduler_info()["workers"]) == 2
    pd.testing.assert_frame_equal(_comparable(serial.summary), _comparable(dask.summary))
    for name in RADII:
        a = tifffile.imread(tmp_path / "serial" / "labels" / f"{name}_labels.tif")
        b = tifffile.imread(tmp_path / "dask" / "labels" / f"{name}_labels.tif")
        np.testing.assert_array_equal(a, b)
        assert (tmp_path / "serial" / "tables" / f"{name}.csv").read_bytes() == (
            tmp_path / "dask" / "tables" / f"{name}.csv"
        ).read_bytes()


def test_local_processes_equal_serial_run(folder, tmp_path):
    files = [folder / "a.tif", folder / "c.tif", folder / "corrupt.tif"]
    serial = run_batch(RECIPE, files, tmp_path / "serial", progress=False, report=False)
    par = run_batch(RECIPE, files, tmp_path / "par", jobs=2, progress=False, report=False)
    pd.testing.assert_frame_equal(_comparable(serial.summary), _comparable(par.summary))


def test_collect_inputs(folder):
    files = collect_inputs([folder, str(folder / "a.*"), folder / "b.tif"])
    assert [f.name for f in files] == ["a.tif", "b.tif", "c.tif", "corrupt.tif", "d.tif"]
    with pytest.raises(SEMAnalysisError, match="does not exist"):
        collect_inputs([folder / "missing"])


def test_same_file_names_in_two_folders_do_not_collide(folder, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.tif").write_bytes((folder / "d.tif").read_bytes())
    res = run_batch(RECIPE, [folder / "a.tif", other / "a.tif"], tmp_path / "out", progress=False, report=False)
    assert sorted(res.summary["name"]) == ["images_a", "other_a"]
    assert list(res.summary["count"]) == [COUNTS["a"], COUNTS["d"]]


def test_progress_bar_shows_eta(folder, tmp_path, capsys):
    run_batch(RECIPE, [folder / "a.tif", folder / "b.tif"], tmp_path / "out", report=False)
    err = capsys.readouterr().err
    assert "2/2" in err and "ETA" in err and "100%" in err


def test_cli_batch(folder, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    Workflow.from_dict(RECIPE).save(recipe)
    out = tmp_path / "out"
    rc = cli.main(["batch", str(recipe), str(folder), "--out", str(out), "--pixel-size", "5", "-q"])
    assert rc == 1  # one corrupt file: reported, the others written
    cap = capsys.readouterr()
    assert "4 of 5 images done" in cap.out and "errors.csv" in cap.err
    s = pd.read_csv(out / "summary.csv")
    assert (s.loc[s["status"] == "ok", "pixel_size_nm"] == 5.0).all()  # --pixel-size overrides metadata
    # all good files: exit code 0; resume: nothing redone
    rc = cli.main(["batch", str(recipe), str(folder / "a.tif"), "--out", str(out), "--pixel-size", "5", "-q"])
    assert rc == 0 and "0 now, 1 already" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["batch", "no-such-recipe", "x", "--out", "o"], "neither a preset"),
        (["batch", "particles", "/no/such/folder", "--out", "o"], "does not exist"),
        (["batch", "particles", ".", "--out", "o", "--jobs", "0"], "--jobs"),
        (["batch", "particles", ".", "--out", "o", "--pixel-size", "-3"], "--pixel-size"),
    ],
)
def test_cli_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_usage_and_presets(capsys):
    assert cli.main([]) == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["batch", "particles"])  # missing INPUT and --out: argparse usage error
    assert e.value.code == 2
    assert cli.main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("particles", "porosity", "coating", "phases"):
        assert name in out


def test_cli_demo_calls_demo_main(monkeypatch, tmp_path):
    import napari_sem_analysis._demo as demo

    seen = []
    monkeypatch.setattr(demo, "main", lambda args: seen.append(args) or 0)
    assert cli.main(["demo", "--headless", "--out", str(tmp_path)]) == 0
    assert seen == [["--headless", "--out", str(tmp_path)]]


def test_coating_preset_batch_writes_profiles_and_report(tmp_path):
    from napari_sem_analysis.coating import synthetic_coating

    d = tmp_path / "sections"
    d.mkdir()
    truths = {}
    for seed, cracks in enumerate([(60, 140), (40, 120, 200)]):
        img, truth = synthetic_coating(seed=seed, crack_xs=cracks)
        tifffile.imwrite(d / f"s{seed}.tif", img)
        truths[f"s{seed}"] = truth
    res = run_batch("coating", d, tmp_path / "out", progress=False, pixel_size=50.0)
    ok = res.summary.set_index("name")
    for name, truth in truths.items():
        assert ok.loc[name, "crack_count"] == truth["crack_count"]
        assert ok.loc[name, "oxide_thickness_median_nm"] == pytest.approx(truth["oxide_thickness"] * 50, abs=150)
        prof = pd.read_csv(tmp_path / "out" / "tables" / f"{name}_profile.csv")
        assert len(prof) == 256 and "oxide_thickness_nm" in prof
        assert len(pd.read_csv(tmp_path / "out" / "tables" / f"{name}.csv")) == truth["crack_count"]
        classes = tifffile.imread(tmp_path / "out" / "labels" / f"{name}_labels.tif")
        assert set(np.unique(classes)) == {0, 1, 2, 3}
    assert "Thickness along the layer" in (tmp_path / "out" / "report.html").read_text()


def test_a_failing_worker_is_reported_not_fatal(folder, tmp_path, monkeypatch):
    """A worker process that dies (here: raises outside the per-image guard) fails only its image."""
    import napari_sem_analysis.batch as batch

    real = batch._process_task

    def flaky(recipe, path, pixel_size):
        if path.endswith("b.tif"):
            raise RuntimeError("worker lost")
        return real(recipe, path, pixel_size)

    monkeypatch.setattr(batch, "_process_task", flaky)
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        res = run_batch(
            RECIPE,
            [folder / "a.tif", folder / "b.tif"],
            tmp_path / "out",
            scheduler=client,
            progress=False,
            report=False,
        )
    assert sorted(res.processed) == ["a"]
    assert "worker lost" in res.errors["b"]


def test_cli_scheduler_local_uses_a_process_cluster(folder, tmp_path, capsys):
    pytest.importorskip("distributed")
    recipe = tmp_path / "recipe.json"
    Workflow.from_dict(RECIPE).save(recipe)
    files = [str(folder / "a.tif"), str(folder / "d.tif")]
    rc = cli.main(
        [
            "batch",
            str(recipe),
            *files,
            "--out",
            str(tmp_path / "out"),
            "--scheduler",
            "local",
            "--jobs",
            "1",
            "-q",
            "--no-report",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    s = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("name")
    assert s.loc["a", "count"] == COUNTS["a"] and s.loc["d", "count"] == COUNTS["d"]


def test_outputs_carry_their_units(folder, tmp_path):
    """Per-object tables name their units, label TIFFs keep the pixel size, counts stay integers."""
    import napari_sem_analysis as sem

    out = tmp_path / "out"
    run_batch(RECIPE, [folder / "a.tif", folder / "corrupt.tif"], out, progress=False)
    table = pd.read_csv(out / "tables" / "a.csv")
    assert {"area_nm2", "equivalent_diameter_nm", "perimeter_nm", "orientation_deg"} <= set(table.columns)
    assert "area" not in table.columns and "circularity" in table.columns  # unitless columns keep their names
    labels = tifffile.imread(out / "labels" / "a_labels.tif")
    areas = np.bincount(labels.ravel())[1:]
    np.testing.assert_allclose(np.sort(table["area_nm2"]), np.sort(areas) * PIXEL_NM**2)
    # the labels read back (read_sem, Fiji...) with their pixel size
    assert sem.read_sem(out / "labels" / "a_labels.tif").pixel_size == pytest.approx(PIXEL_NM)
    # a failed image leaves the counts empty, not 3 -> 3.0
    lines = (out / "summary.csv").read_text().splitlines()
    header = lines[0].split(",")
    row_a = dict(zip(header, next(line for line in lines if line.startswith("a.tif")).split(",")))
    assert row_a["count"] == str(COUNTS["a"])
    assert f"<td>{COUNTS['a']}</td>" in (out / "report.html").read_text()
    from napari_sem_analysis.batch import report_figures

    figs = dict(report_figures(out, pd.read_csv(out / "summary.csv"), "particles"))
    assert figs["Size distribution"].axes[0].get_xlabel() == "equivalent diameter (nm)"


def test_eta_on_resume_counts_only_images_computed_now():
    from napari_sem_analysis.batch import Progress

    bar = Progress(20, enabled=False)
    bar.done = bar.skipped = 10  # finished in an earlier run
    bar.start -= 10.0  # this run: 10 s for one image
    bar.update()
    assert "11/20" in bar.text() and "ETA 01:30" in bar.text()  # 9 images left at 10 s each


def test_folder_without_images_says_why(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(SEMAnalysisError, match="not searched recursively; subfolders: images, masks"):
        collect_inputs(tmp_path)


def test_another_pixel_size_is_not_silently_resumed(folder, tmp_path):
    """Results computed at one --pixel-size are not passed off as results at another one."""
    out = tmp_path / "out"
    files = [folder / "a.tif"]
    run_batch(RECIPE, files, out, progress=False, report=False)  # pixel size from the metadata
    with pytest.raises(SEMAnalysisError, match="pixel-size"):
        run_batch(RECIPE, files, out, progress=False, report=False, pixel_size=3.0)
    res = run_batch(RECIPE, files, out, progress=False, report=False, pixel_size=3.0, overwrite=True)
    assert res.processed == ["a"] and res.summary["pixel_size_nm"].tolist() == [3.0]
    again = run_batch(RECIPE, files, out, progress=False, report=False, pixel_size=3.0)
    assert again.skipped == ["a"] and again.summary["pixel_size_nm"].tolist() == [3.0]
    with pytest.raises(SEMAnalysisError, match="pixel_size"):
        run_batch(RECIPE, files, tmp_path / "o2", progress=False, pixel_size=float("nan"))


def test_report_of_failed_images_reads_cleanly(folder, tmp_path):
    out = tmp_path / "out"
    run_batch(RECIPE, [folder / "a.tif", folder / "corrupt.tif"], out, progress=False)
    html = (out / "report.html").read_text()
    assert "&lt;NA&gt;" not in html  # the failed image's empty count cell
    item = next(line for line in html.splitlines() if line.startswith("<li class='err'>"))
    assert item.startswith("<li class='err'>corrupt.tif: ") and item.count("corrupt.tif") == 1


def test_tile_classifier_recipe_over_a_folder(tmp_path):
    """Rust / no rust style: a saved tile classifier in a recipe, tiles per class for every image."""
    from test_classification import texture

    import napari_sem_analysis as sem

    rng = np.random.default_rng(0)
    tiles = [texture(k, rng, 32) for k in (0, 1) for _ in range(12)]
    y = [n for n in ("blobs", "grain") for _ in range(12)]
    model = sem.ImageClassifier("features", n_estimators=30, scales=(1,)).fit(tiles, y).save(tmp_path / "t.semclf")
    d = tmp_path / "images"
    d.mkdir()
    layout = {"mostly_blobs": (0, 0, 0, 1), "mostly_grain": (1, 1, 1, 0)}
    for name, kinds in layout.items():
        tifffile.imwrite(d / f"{name}.tif", np.concatenate([texture(k, rng, 32) for k in kinds], axis=1))
    recipe = {
        "name": "tiles",
        "steps": [
            {
                "function": "classify_tiles",
                "params": {"model": str(model), "tile_size": 32},
                "inputs": {"image": "image"},
                "output": "tile classes",
            }
        ],
    }
    out = tmp_path / "out"
    res = run_batch(recipe, d, out, progress=False)
    s = pd.read_csv(out / "summary.csv").set_index("name")
    assert s.loc["mostly_blobs", "tiles_blobs"] == 3 and s.loc["mostly_grain", "tiles_grain"] == 3
    assert s.loc["mostly_blobs", "blobs_fraction"] == pytest.approx(0.75)
    assert list(s.columns[:2]) == ["file", "status"] and "tiles" in s.columns
    table = pd.read_csv(out / "tables" / "mostly_grain.csv")
    assert list(table["class"]) == ["grain", "grain", "grain", "blobs"]
    assert {"row", "col", "y0", "x0", "y1", "x1", "prob_blobs", "prob_grain"} <= set(table.columns)
    classes = tifffile.imread(out / "labels" / "mostly_grain_labels.tif")
    assert (classes[:, :96] == 2).all() and (classes[:, 96:] == 1).all()
    assert "Tile classes" in (out / "report.html").read_text() and not res.errors


def test_particles_preset_on_real_bam_micrographs(shared_data, tmp_path, capsys):
    """The command line over real Zeiss TiO2 micrographs (and one corrupt file), against the hand-drawn masks."""
    from scipy import ndimage as ndi

    root = shared_data / "bam-tio2-sem"
    stems = ["1908248", "1908256", "1908276"]
    d = tmp_path / "in"
    d.mkdir()
    for s in stems:
        # copied: symbolic links in input folders are skipped (they could point anywhere)
        (d / f"{s}.tif").write_bytes((root / "images" / f"{s}.tif").read_bytes())
    (d / "broken.tif").write_bytes((root / "images" / "1908260.tif").read_bytes()[:3000])  # truncated
    out = tmp_path / "out"
    assert cli.main(["batch", "particles", str(d), "--out", str(out), "-q"]) == 1
    s = pd.read_csv(out / "summary.csv").set_index("name")
    assert s.loc["broken", "status"] == "error"
    for stem in stems:
        row = s.loc[stem]
        assert row["status"] == "ok" and row["pixel_size_nm"] == pytest.approx(7.344, rel=1e-3)  # Zeiss tag
        labels = tifffile.imread(out / "labels" / f"{stem}_labels.tif")
        mask = tifffile.imread(root / "masks" / f"{stem}_m.tif")[: labels.shape[0]] > 0  # info band cropped
        true_lab, n_true = ndi.label(mask)  # 4-connected: one label per drawn particle
        d_true = np.median(2 * np.sqrt(np.bincount(true_lab.ravel())[1:] / np.pi)) * 7.344
        assert row["count"] == pytest.approx(n_true, rel=0.25)
        assert row["median_equivalent_diameter_nm"] == pytest.approx(d_true, rel=0.2)
        assert len(pd.read_csv(out / "tables" / f"{stem}.csv")) == row["count"]
    html = (out / "report.html").read_text()
    assert "Size distribution" in html and "broken.tif" in html
