"""Workflows: recipes (round trip), replay, presets, and the coating geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_sem_analysis as sem
from napari_sem_analysis import workflows as wfm
from napari_sem_analysis._validation import SEMAnalysisError
from napari_sem_analysis.coating import coating_layers, synthetic_coating
from napari_sem_analysis.workflows import Workflow, load_recipe, register_step, run_workflow


def disks_image(shape=(160, 200), centres=((40, 40), (40, 120), (110, 70), (110, 150)), radius=12, seed=0):
    """Bright disks on a dark noisy background: known count and diameter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    truth = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, start=1):
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = i
    img = np.where(truth > 0, 180.0, 60.0) + rng.normal(0, 6, shape)
    return np.clip(img, 0, 255).astype(np.uint8), truth


# stand-in steps under our control (also exercises register_step)
@register_step("t_bright")
def _t_bright(image, *, level: float = 120.0):
    return np.asarray(image) > level


@register_step("t_label")
def _t_label(mask, *, min_size: int = 0):
    lab, _ = ndi.label(mask)
    if min_size:
        sizes = np.bincount(lab.ravel())
        lab[sizes[lab] < min_size] = 0
        lab, _ = ndi.label(lab > 0)
    return lab.astype(np.int32)


_SEEN_PIXEL_SIZE = []


@register_step("t_needs_px")
def _t_needs_px(image, *, pixel_size=None):
    _SEEN_PIXEL_SIZE.append(pixel_size)
    return image


RECORDED = [  # as the widgets record them: inputs are napari layer names
    {"function": "t_bright", "params": {"level": 120}, "inputs": {"image": "my sample"}, "output": "mask"},
    {"function": "t_label", "params": {"min_size": 5}, "inputs": {"mask": "mask"}, "output": "objects"},
]


def test_replay_recorded_steps_gives_known_objects():
    img, truth = disks_image()
    wf = Workflow.from_steps(RECORDED, name="disks", summary="particles")
    assert wf.input_names() == ["my sample"]
    res = wf.run(img, pixel_size=10.0)
    assert res.labels.max() == 4
    np.testing.assert_array_equal(res.labels > 0, truth > 0)
    assert res.summary["count"] == 4
    # equivalent diameter of a digitised disk of radius 12 px, 10 nm/px: ~240 nm
    assert res.summary["median_equivalent_diameter_nm"] == pytest.approx(240, rel=0.03)
    assert len(res.table) == 4
    assert res.outputs["mask"].dtype == bool


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_recipe_round_trip(tmp_path, suffix):
    wf = Workflow.from_steps(RECORDED, name="disks", summary="particles", description="test")
    path = wf.save(tmp_path / f"recipe{suffix}")
    text = path.read_text()
    assert "t_bright" in text and "min_size" in text  # readable
    if suffix == ".json":
        assert json.loads(text)["steps"][0]["params"] == {"level": 120}
    back = Workflow.load(path)
    assert back == wf
    assert back.to_dict() == wf.to_dict()
    img, _ = disks_image()
    a, b = wf.run(img, pixel_size=5.0), back.run(img, pixel_size=5.0)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.summary == b.summary
    # load_recipe accepts the path, the dict, the step list and the workflow
    assert load_recipe(path) == wf
    assert load_recipe(wf.to_dict()) == wf
    assert load_recipe(wf) is wf


def test_recipe_pixel_size_calibrates_images_without_one(tmp_path):
    """A recipe's pixel_size (a calibration set by hand when recording) gives nm to images that carry
    none (a PNG export); a file's own metadata and an explicit pixel_size take precedence."""
    import imageio.v3 as iio
    import tifffile

    img, _ = disks_image()
    wf = Workflow.from_steps(RECORDED, summary="particles", pixel_size=5.0)
    back = Workflow.load(wf.save(tmp_path / "calibrated.yaml"))
    assert back.pixel_size == 5.0 and "pixel_size: 5.0" in (tmp_path / "calibrated.yaml").read_text()

    iio.imwrite(tmp_path / "export.png", img)  # no pixel size in a PNG
    res = back.run(tmp_path / "export.png")
    assert res.pixel_size == 5.0
    assert res.summary["median_equivalent_diameter_nm"] == pytest.approx(24 * 5.0, rel=0.03)
    assert back.run(img).pixel_size == 5.0  # a bare array has none either
    assert back.run(img, pixel_size=7.0).pixel_size == 7.0  # the explicit value wins
    tifffile.imwrite(tmp_path / "d.tif", img, imagej=True, resolution=(1 / 0.012, 1 / 0.012), metadata={"unit": "um"})
    assert back.run(tmp_path / "d.tif").pixel_size == pytest.approx(12.0)  # so does the file's metadata
    assert Workflow.from_steps(RECORDED).run(tmp_path / "export.png").pixel_size is None
    with pytest.raises(SEMAnalysisError, match="pixel_size"):
        Workflow.from_dict({"steps": RECORDED, "pixel_size": -2})


def test_recipe_params_numpy_types_are_saved_plainly(tmp_path):
    steps = [
        {
            "function": "t_bright",
            "params": {"level": np.float32(100.5), "xs": (1, 2)},
            "inputs": {"image": "image"},
            "output": "m",
        }
    ]
    wf = Workflow.from_steps(steps)
    back = Workflow.load(wf.save(tmp_path / "r.yml"))
    assert back.steps[0]["params"] == {"level": 100.5, "xs": [1, 2]}


def test_replay_with_real_api_functions_matches_direct_calls():
    img, _ = disks_image()
    steps = [
        {"function": "threshold", "params": {"method": "otsu"}, "inputs": {"image": "img"}, "output": "mask"},
        {"function": "split_touching", "params": {"min_distance": 5}, "inputs": {"mask": "mask"}, "output": "lab"},
    ]
    res = run_workflow(steps, img)
    direct = sem.split_touching(sem.threshold(img, method="otsu"), min_distance=5)
    np.testing.assert_array_equal(res.labels, direct)
    assert res.summary["count"] == 4


def test_pixel_size_is_passed_to_steps_that_take_it():
    img, _ = disks_image()
    _SEEN_PIXEL_SIZE.clear()
    steps = [{"function": "t_needs_px", "inputs": {"image": "image"}, "output": "x"}] + RECORDED[1:]
    steps[1] = dict(steps[1], inputs={"mask": "x"})
    run_workflow(steps, img > 120, pixel_size=7.5)
    assert _SEEN_PIXEL_SIZE == [7.5]
    # a value fixed in the recipe wins
    steps[0] = dict(steps[0], params={"pixel_size": 3.0})
    run_workflow(steps, img > 120, pixel_size=7.5)
    assert _SEEN_PIXEL_SIZE[-1] == 3.0


def test_run_on_path_reads_pixel_size_from_metadata(tmp_path):
    import tifffile

    img, _ = disks_image()
    tifffile.imwrite(tmp_path / "d.tif", img, imagej=True, resolution=(1 / 0.012, 1 / 0.012), metadata={"unit": "um"})
    res = run_workflow(Workflow.from_steps(RECORDED, summary="particles"), tmp_path / "d.tif")
    assert res.pixel_size == pytest.approx(12.0)
    assert res.name == "d"
    assert res.summary["median_equivalent_diameter_nm"] == pytest.approx(24 * 12.0, rel=0.03)


@pytest.mark.parametrize(
    "recipe, message",
    [
        ([{"function": "no_such_step", "inputs": {"image": "image"}, "output": "x"}], "unknown step"),
        ([{"function": "_private", "inputs": {"image": "image"}, "output": "x"}], "not a public"),
        ([{"params": {}}], "no 'function'"),
        (
            [
                {"function": "t_label", "inputs": {"mask": "later"}, "output": "x"},
                {"function": "t_bright", "inputs": {"image": "image"}, "output": "later"},
            ],
            "needs 'later'",
        ),
        ([], "at least one step"),
    ],
)
def test_bad_recipes_give_clear_errors(recipe, message):
    img, _ = disks_image()
    with pytest.raises(SEMAnalysisError, match=message):
        run_workflow(recipe, img > 100)


def test_bad_recipe_files(tmp_path):
    with pytest.raises(SEMAnalysisError, match="neither a preset"):
        load_recipe("no-such-preset")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [unclosed")
    with pytest.raises(SEMAnalysisError, match="cannot parse"):
        load_recipe(bad)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"version": 99, "steps": RECORDED}))
    with pytest.raises(SEMAnalysisError, match="newer"):
        load_recipe(newer)
    with pytest.raises(SEMAnalysisError, match=".yaml"):
        Workflow.from_steps(RECORDED).save(tmp_path / "recipe.txt")
    with pytest.raises(SEMAnalysisError):
        run_workflow(RECORDED, np.zeros((5, 5, 5, 5)))


@pytest.mark.parametrize("name", ["particles", "porosity", "coating", "phases"])
def test_presets_load_and_validate(name, tmp_path):
    wf = load_recipe(name)
    wf.validate()
    assert wf.summary == name
    assert load_recipe(wf.save(tmp_path / f"{name}.yaml")) == wf


def test_particles_preset_counts_sample_particles():
    s = sem.sample_particles(seed=1, shape=(256, 256), n_particles=20)
    res = run_workflow("particles", s.image, pixel_size=s.pixel_size)
    n_true = int(s.labels.max())
    assert abs(res.summary["count"] - n_true) <= max(2, 0.2 * n_true)
    true_d = np.median(2 * np.sqrt(np.bincount(s.labels.ravel())[1:] / np.pi)) * s.pixel_size
    assert res.summary["median_equivalent_diameter_nm"] == pytest.approx(true_d, rel=0.2)


def test_porosity_summary_on_known_pores():
    img = np.full((128, 128), 200, np.uint8)
    yy, xx = np.mgrid[:128, :128]
    img[(yy - 30) ** 2 + (xx - 30) ** 2 <= 100] = 20  # round pore
    img[80:84, 20:100] = 20  # elongated, irregular-class pore
    steps = [
        {"function": "t_bright", "params": {"level": 100}, "inputs": {"image": "image"}, "output": "solid"},
        {"function": "logical_not", "inputs": {"x": "solid"}, "output": "pores"},
    ]
    register_step("logical_not", lambda x: ~x)
    res = run_workflow({"steps": steps, "summary": "porosity"}, img, pixel_size=100.0)
    true_pct = 100 * (img == 20).mean()
    assert res.summary["porosity_percent"] == pytest.approx(true_pct)
    assert res.summary["pore_count"] == 2
    assert res.summary["pores_round"] == 1 and res.summary["pores_irregular"] == 1


def test_phases_summary_fractions():
    img = np.full((100, 100), 30.0)
    img[:, 25:50], img[:, 50:] = 120, 210
    img = np.clip(img + np.random.default_rng(0).normal(0, 5, img.shape), 0, 255).astype(np.uint8)
    steps = [{"function": "multi_threshold", "params": {"classes": 3}, "inputs": {"image": "image"}, "output": "ph"}]
    # summary "phases" follows from the last step (multi_threshold)
    res = run_workflow({"steps": steps, "options": {"class_names": ["pore", "matrix", "grain"]}}, img)
    assert res.summary["pore_fraction"] == pytest.approx(0.25, abs=0.01)
    assert res.summary["matrix_fraction"] == pytest.approx(0.25, abs=0.01)
    assert res.summary["grain_fraction"] == pytest.approx(0.5, abs=0.01)
    assert list(res.table["name"]) == ["pore", "matrix", "grain"]


def test_coating_geometry_on_synthetic_cross_section():
    img, truth = synthetic_coating(seed=3)
    res = coating_layers(img, pixel_size=20.0)
    s = res.summary
    assert s["coating_thickness_median_nm"] == pytest.approx(truth["coating_thickness"] * 20, abs=3 * 20)
    assert s["oxide_thickness_median_nm"] == pytest.approx(truth["oxide_thickness"] * 20, abs=3 * 20)
    assert s["crack_count"] == truth["crack_count"]
    xs = sorted(res.cracks["x"])
    np.testing.assert_allclose(xs, [60.5, 140.5, 200.5], atol=2)
    assert set(np.unique(res.labels)) == {0, 1, 2, 3}
    assert len(res.profile) == img.shape[1]
    assert 0 < s["oxide_fraction"] < 1
    # flipped image (coating at the bottom) gives the same figures
    flipped = coating_layers(img[::-1], pixel_size=20.0, coating_on="bottom")
    assert flipped.summary["crack_count"] == s["crack_count"]
    assert flipped.summary["oxide_thickness_median_nm"] == pytest.approx(s["oxide_thickness_median_nm"])


def test_coating_preset_and_bad_input():
    img, truth = synthetic_coating(seed=4, oxide_thickness=30, crack_xs=(100,))
    res = run_workflow("coating", img, pixel_size=10.0)
    assert res.summary["crack_count"] == 1
    assert res.summary["oxide_thickness_median_nm"] == pytest.approx(300, abs=30)
    assert "oxide_thickness_nm" in res.extra_tables["profile"]
    assert len(res.table) == 1
    with pytest.raises(SEMAnalysisError):
        coating_layers(np.full((64, 64), 7))
    with pytest.raises(SEMAnalysisError, match="coating_on"):
        coating_layers(img, coating_on="left")


@pytest.mark.parametrize(
    "function, params",
    [
        ("unet_predict", {}),
        ("predict_unet", {"tile_size": 256, "overlap": 32, "batch_size": 2}),  # as the U-Net widget records it
    ],
)
def test_unet_model_loaded_once_per_process(monkeypatch, function, params):
    import napari_sem_analysis.unet as unet

    loads = []

    class Fake:
        def predict(self, image, **kw):
            assert set(kw) <= {"tile_size", "overlap", "batch_size", "device"}
            return (np.asarray(image) > 100).astype(np.int32)

    def fake_load(path, **kw):
        loads.append(path)
        return Fake()

    monkeypatch.setattr(unet, "load_model", fake_load)
    wfm._cached_model.cache_clear()
    steps = [
        {
            "function": function,
            "params": {"model": "/models/m.safetensors", **params},
            "inputs": {"image": "image"},
            "output": "seg",
        }
    ]
    img, truth = disks_image()
    for _ in range(3):
        res = run_workflow(steps, img)
    assert loads == ["/models/m.safetensors"]
    assert res.summary["count"] == 4
    wfm._cached_model.cache_clear()


@pytest.mark.parametrize("seed", [0, 2])
def test_coating_preset_on_sample_without_oxide(seed):
    """The package's porous-coating sample: cracks in the coating, no oxide layer."""
    s = sem.sample_porous_coating(seed=seed)
    image = s.image[: s.labels.shape[0]]
    res = run_workflow("coating", image, pixel_size=s.pixel_size)
    assert res.summary["coating_thickness_mean_nm"] == pytest.approx(s.info["coating_thickness_nm"], rel=0.02)
    assert res.summary["oxide_thickness_median_nm"] == 0
    assert not res.summary["oxide_found"] and res.summary["crack_region"] == "coating"
    assert abs(res.summary["crack_count"] - s.info["n_cracks"]) <= 1
    # found cracks lie on drawn cracks (within 3 px)
    near = ndi.distance_transform_edt(s.labels != 5) <= 3
    assert near[res.labels == 3].mean() > 0.9


def test_unmelted_fraction_of_round_particles_vs_lamellae():
    from napari_sem_analysis.coating import _melt_fractions

    solid = np.zeros((200, 300), bool)
    yy, xx = np.mgrid[:200, :300]
    solid[(yy - 50) ** 2 + (xx - 50) ** 2 <= 15**2] = True  # round, unmelted particle
    solid[120:126, 20:280] = True  # flat splats (melted lamellae)
    solid[140:146, 20:280] = True
    round_area = ((yy - 50) ** 2 + (xx - 50) ** 2 <= 15**2).sum()
    f = _melt_fractions(solid, min_particle=8)
    assert f["unmelted_count"] == 1
    assert f["unmelted_fraction"] == pytest.approx(round_area / solid.sum())
    img, _ = synthetic_coating(seed=1)
    s = coating_layers(img, melt_analysis=True).summary
    assert 0 <= s["unmelted_fraction"] <= 1 and s["melted_fraction"] == pytest.approx(1 - s["unmelted_fraction"])


def test_progress_callback_and_iter_run():
    img, _ = disks_image()
    wf = Workflow.from_steps(RECORDED, summary="particles")
    calls = []
    res = wf.run(img, progress=lambda i, n, f: calls.append((i, n, f)))
    assert calls == [(0, 2, "t_bright"), (1, 2, "t_label"), (2, 2, "summary")]
    gen = wf.iter_run(img)
    assert [next(gen) for _ in range(3)] == calls
    with pytest.raises(StopIteration) as stop:
        next(gen)
    np.testing.assert_array_equal(stop.value.value.labels, res.labels)


def test_porosity_preset_on_am_pore_sample():
    s = sem.sample_am_pores(seed=0)
    res = run_workflow("porosity", s.image[: s.labels.shape[0]], pixel_size=s.pixel_size)
    assert res.summary["porosity_percent"] == pytest.approx(100 * (s.labels > 0).mean(), abs=0.5)
    assert abs(res.summary["pore_count"] - s.labels.max()) <= 3
    # lack-of-fusion pores (class 2) are the irregular ones; gas and keyhole pores are round
    n_lof = sum(1 for c in s.classes.values() if c == 2)
    assert abs(res.summary["pores_irregular"] - n_lof) <= 0.25 * n_lof
    assert set(res.table["pore_class"]) == {"round", "irregular"}


def test_porosity_recipe_with_trained_pore_classifier(tmp_path):
    """Pore classes from an ObjectClassifier step (the AM pore sample's true classes)."""
    s = sem.sample_am_pores(seed=0)
    image = s.image[: s.labels.shape[0]]
    truth = s.labels
    table = sem.measure(truth, image=image, pixel_size=s.pixel_size)
    y = [s.classes[int(v)] for v in table["label"]]
    clf = sem.ObjectClassifier(features="shape", class_names=list(s.class_names), n_estimators=50).fit(table, y)
    model = clf.save(tmp_path / "pores.zip")
    recipe = {
        "name": "am pores",
        "steps": [
            {"function": "segment_pores", "inputs": {"image": "image"}, "output": "pores"},
            {
                "function": "classify_objects",
                "params": {"model": str(model)},
                "inputs": {"labels": "pores", "image": "image"},
                "output": "classes",
            },
        ],
        "labels": "pores",
        "summary": "porosity",
    }
    other = sem.sample_am_pores(seed=1)
    res = run_workflow(recipe, other.image[: other.labels.shape[0]], pixel_size=other.pixel_size)
    counts = {name: res.summary.get(f"pores_{name}", 0) for name in s.class_names}
    true_counts = {name: sum(1 for c in other.classes.values() if c == i) for i, name in enumerate(s.class_names)}
    for name in s.class_names:
        assert abs(counts[name] - true_counts[name]) <= 0.2 * true_counts[name] + 2
    assert set(res.table["pore_class"]) <= set(s.class_names)


def test_recipe_measure_step_settings_define_the_table():
    """A recorded Measure step (texture off) gives the per-object table, not a default re-measure."""
    img, truth = disks_image()
    steps = RECORDED + [
        {
            "function": "measure",
            "params": {"texture": False, "intensity": True, "shape": True},
            "inputs": {"labels": "objects", "image": "my sample"},
            "output": "measurements",
        },
    ]
    res = run_workflow(Workflow.from_steps(steps, summary="particles"), img, pixel_size=10.0)
    direct = sem.measure(res.labels, image=img, pixel_size=10.0, texture=False)
    assert not [c for c in res.table.columns if c.startswith(("glcm_", "lbp_"))]
    pd_testing = __import__("pandas").testing
    pd_testing.assert_frame_equal(res.table.reset_index(drop=True), direct.reset_index(drop=True))
    assert res.table.attrs["units"]["area"] == "nm^2"
    # without the measure step the summary measures with the defaults (texture included)
    plain = run_workflow(Workflow.from_steps(RECORDED, summary="particles"), img, pixel_size=10.0)
    assert "glcm_contrast" in plain.table.columns
    # a measure step of other labels than the recipe's objects is not taken as their table
    other = steps[:-1] + [dict(steps[-1], inputs={"labels": "mask", "image": "my sample"})]
    res2 = run_workflow(Workflow.from_steps(other, summary="particles", labels="objects"), img, pixel_size=10.0)
    assert "glcm_contrast" in res2.table.columns


def test_porosity_classes_always_have_a_count():
    """Images without a class get 0 (not a missing value) so batch summaries have no gaps."""
    img = np.full((96, 96), 200, np.uint8)
    yy, xx = np.mgrid[:96, :96]
    img[(yy - 40) ** 2 + (xx - 40) ** 2 <= 100] = 20  # one round pore only
    register_step("logical_not", lambda x: ~x)
    steps = [
        {"function": "t_bright", "params": {"level": 100}, "inputs": {"image": "image"}, "output": "solid"},
        {"function": "logical_not", "inputs": {"x": "solid"}, "output": "pores"},
    ]
    res = run_workflow({"steps": steps, "summary": "porosity"}, img)
    assert res.summary["pores_round"] == 1 and res.summary["pores_irregular"] == 0


def test_classify_objects_reports_every_class(tmp_path):
    s = sem.sample_am_pores(seed=0)
    image = s.image[: s.labels.shape[0]]
    table = sem.measure(s.labels, image=image, pixel_size=s.pixel_size)
    y = [s.classes[int(v)] for v in table["label"]]
    clf = sem.ObjectClassifier(features="shape", class_names=list(s.class_names), n_estimators=20).fit(table, y)
    model = clf.save(tmp_path / "pores.zip")
    # one pore only: the other classes are counted as 0
    one = np.where(s.labels == 1, 1, 0).astype(np.int32)
    out = wfm.classify_objects(one, image, model=str(model), pixel_size=s.pixel_size)
    assert out.attrs["class_names"] == list(s.class_names)
    res = run_workflow(
        {
            "steps": [
                {"function": "t_label", "inputs": {"mask": "image"}, "output": "pores"},
                {
                    "function": "classify_objects",
                    "params": {"model": str(model)},
                    "inputs": {"labels": "pores", "image": "image"},
                    "output": "classes",
                },
            ],
            "labels": "pores",
            "summary": "porosity",
        },
        one.astype(bool),
        pixel_size=s.pixel_size,
    )
    counts = [res.summary[f"pores_{n}"] for n in s.class_names]
    assert sum(counts) == 1 and sorted(counts) == [0] * (len(counts) - 1) + [1]


# ---------------------------------------------------------------------------
# classifier steps (what the classifier widgets record)
# ---------------------------------------------------------------------------


def _two_texture_classifier(tmp_path, name="tex.semclf", seed=0):
    from test_classification import texture

    rng = np.random.default_rng(seed)
    tiles = [texture(k, rng, 32) for k in (0, 1) for _ in range(12)]
    y = [n for n in ("blobs", "grain") for _ in range(12)]
    clf = sem.ImageClassifier("features", n_estimators=30, scales=(1,)).fit(tiles, y)
    return clf, clf.save(tmp_path / name)


def test_classify_tiles_step_and_tiles_summary(tmp_path):
    from test_classification import texture

    clf, path = _two_texture_classifier(tmp_path)
    rng = np.random.default_rng(7)
    # a strip of 8 tiles of 32 px: the left half coarse blobs, the right half fine grain
    img = np.concatenate([texture(k, rng, 32) for k in (0, 0, 0, 0, 1, 1, 1, 1)], axis=1)
    steps = [
        {
            "function": "classify_tiles",
            "params": {"model": str(path), "tile_size": 32},
            "inputs": {"image": "sample"},
            "output": "tile classes",
        }
    ]
    wf = Workflow.from_steps(steps)
    assert wf.summary == "tiles"  # from the step
    res = run_workflow(wf, img, pixel_size=4.0)
    direct = clf.predict_tiles(img, 32)
    assert list(res.table["class"]) == list(direct["class"])
    assert res.summary["tiles"] == 8
    assert res.summary["tiles_blobs"] == (direct["class"] == "blobs").sum()
    assert res.summary["tiles_blobs"] == 4 and res.summary["grain_fraction"] == pytest.approx(0.5)
    # class map: 1 = blobs on the left half, 2 = grain on the right half
    assert (res.labels[:, :128] == 1).all() and (res.labels[:, 128:] == 2).all()


def test_objects_summary_counts_classes_and_recipe_summary_follows_the_segmentation(tmp_path):
    s = sem.sample_am_pores(seed=0)
    image = s.image[: s.labels.shape[0]]
    table = sem.measure(s.labels, image=image, pixel_size=s.pixel_size)
    y = [s.class_names[s.classes[int(v)]] for v in table["label"]]
    clf = sem.ObjectClassifier(features="shape", class_names=list(s.class_names), n_estimators=30).fit(table, y)
    model = clf.save(tmp_path / "pores.semclf")
    steps = [
        {"function": "segment_pores", "inputs": {"image": "image"}, "output": "pores"},
        {
            "function": "classify_objects",
            "params": {"model": str(model)},
            "inputs": {"labels": "pores", "image": "image"},
            "output": "classes",
        },
    ]
    assert Workflow.from_steps(steps).summary == "porosity"  # not "objects": classify_objects annotates
    # a Labels layer the user drew, classified (no segmentation step): the objects are that layer
    drawn = [dict(steps[1], inputs={"labels": "my labels", "image": "image"})]
    res = run_workflow(Workflow.from_steps(drawn), image, pixel_size=s.pixel_size, inputs={"my labels": s.labels})
    np.testing.assert_array_equal(res.labels, s.labels)
    expected = clf.predict(table)
    assert list(res.table["class"]) == list(expected)
    for name in s.class_names:
        assert res.summary[f"count_{name}"] == int((expected == name).sum())
    assert res.summary["count"] == s.labels.max()


def test_saved_again_classifier_is_reloaded(tmp_path):
    """A model file saved again under the same name (retrained in napari) is not served from the cache."""
    from test_classification import texture

    _, path = _two_texture_classifier(tmp_path, "m.semclf", seed=0)
    rng = np.random.default_rng(3)
    img = np.concatenate([texture(0, rng, 32), texture(1, rng, 32)], axis=1)
    steps = [
        {
            "function": "classify_tiles",
            "params": {"model": str(path), "tile_size": 32},
            "inputs": {"image": "image"},
            "output": "t",
        }
    ]
    first = run_workflow(steps, img)
    assert first.summary["tiles_blobs"] == 1
    # retrained with the class names swapped, saved to the same file
    tiles = [texture(k, rng, 32) for k in (0, 1) for _ in range(12)]
    y = [n for n in ("grain", "blobs") for _ in range(12)]
    import os
    import time

    before = os.stat(path).st_mtime_ns
    sem.ImageClassifier("features", n_estimators=30, scales=(1,)).fit(tiles, y).save(path)
    if os.stat(path).st_mtime_ns == before:  # coarse file-system clock
        time.sleep(0.01)
        os.utime(path, ns=(before + 10**7, before + 10**7))
    second = run_workflow(steps, img)
    assert list(second.table["class"]) == ["grain", "blobs"]
