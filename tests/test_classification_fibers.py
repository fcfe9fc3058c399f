"""ImageClassifier on physical fibre features; specimen rules for folder cross-validation."""

import json
import zipfile

import numpy as np
import pytest

import napari_sem_analysis as sem
from napari_sem_analysis import SEMAnalysisError
from napari_sem_analysis.classification.folders import load_image_folder, specimens_from_paths


def _mats(n, beads, seed0):
    return [
        sem.sample_fibers(
            seed0 + i, shape=(160, 160), n_fibers=5, diameter=(5, 7), n_beads=beads, n_blobs=0, bead_factor=(3, 4)
        ).image
        for i in range(n)
    ]


def test_fibre_feature_classifier_separates_beaded_mats_and_records_its_feature_set(tmp_path):
    images = _mats(4, 0, 0) + _mats(4, 4, 10)
    y = ["clean"] * 4 + ["beaded"] * 4
    clf = sem.ImageClassifier(feature_set="fibers", n_estimators=50).fit(images, y)
    from napari_sem_analysis.fibers import FIBER_FEATURES

    assert clf.feature_names_ == list(FIBER_FEATURES)
    test = _mats(2, 0, 50) + _mats(2, 4, 60)
    assert list(clf.predict(test)) == ["clean", "clean", "beaded", "beaded"]
    path = clf.save(tmp_path / "fib.zip")
    back = sem.ImageClassifier.load(path)
    assert back.feature_set == "fibers"
    np.testing.assert_allclose(back.predict_proba(test), clf.predict_proba(test))
    # a file claiming another feature set than its features is refused
    with zipfile.ZipFile(path) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(entries["meta.json"])
    meta["feature_set"] = "texture"
    entries["meta.json"] = json.dumps(meta).encode()
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        for n, b in entries.items():
            z.writestr(n, b)
    with pytest.raises(SEMAnalysisError):
        sem.ImageClassifier.load(bad)


def test_feature_set_checked():
    with pytest.raises(SEMAnalysisError):
        sem.ImageClassifier(feature_set="colour")
    with pytest.raises(SEMAnalysisError):
        sem.ImageClassifier(backend="cnn", feature_set="fibers")


def _write(path, value=0):
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    tifffile.imwrite(path, (rng.random((32, 32)) * 255).astype(np.uint8))


def test_specimen_from_file_names(tmp_path):
    for cls, names in {"good": ["run_AB1_01", "run_AB1_02", "run_cd2-1_3"], "bad": ["run_ef3_1", "run_EF3_2"]}.items():
        for i, n in enumerate(names):
            _write(tmp_path / cls / f"{n}.tif", i)
    data = load_image_folder(tmp_path)
    assert sorted(set(data.specimens)) == ["ab1", "cd2", "ef3"]
    assert "run_" in data.specimen_rule and "3 specimens" in data.specimen_rule
    assert list(data.cv_groups) == list(data.specimens)
    # tiles keep their file's specimen
    tiles = load_image_folder(tmp_path, tile_size=16)
    assert len(tiles.specimens) == len(tiles.images) == 4 * 5
    # a regular expression, and no rule at all
    rx = load_image_folder(tmp_path, specimen=r"run_([A-Za-z]+)")
    assert sorted(set(rx.specimens)) == ["AB", "EF", "cd", "ef"]
    none = load_image_folder(tmp_path, specimen=None)
    assert none.specimens is None and list(none.cv_groups) == list(none.groups)
    with pytest.raises(SEMAnalysisError):
        load_image_folder(tmp_path, specimen=r"zzz(\d)")


def test_specimen_from_sub_folders(tmp_path):
    for cls in ("a", "b"):
        for spec in ("s1", "s2"):
            _write(tmp_path / cls / f"{cls}{spec}" / "img1.tif")
            _write(tmp_path / cls / f"{cls}{spec}" / "img2.tif", 1)
    data = load_image_folder(tmp_path)
    assert len(data.images) == 8
    assert sorted(set(data.specimens)) == ["as1", "as2", "bs1", "bs2"]
    assert data.specimen_rule.startswith("sub-folder")


def test_unique_file_names_fall_back_to_source_images(tmp_path):
    paths = [tmp_path / "a" / "x1.tif", tmp_path / "b" / "y2.tif"]
    spec, rule = specimens_from_paths(paths, tmp_path)
    assert spec is None and "source image" in rule
