"""The step registry: one entry per step, read by recipes, the CLI and the widgets."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sem_analysis as sem
from napari_sem_analysis import cli, steps
from napari_sem_analysis._validation import SEMAnalysisError
from napari_sem_analysis.steps import Step, find_step, get_step, register_step
from napari_sem_analysis.workflows import PRESETS, Workflow, run_workflow


def toy_invert(image, *, maximum: float | None = None, pixel_size=None):
    """Invert the grey levels (the worked example of docs/architecture.md)."""
    image = np.asarray(image, dtype=float)
    return (image.max() if maximum is None else maximum) - image


@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry, so that the steps a test registers do not leak."""
    monkeypatch.setattr(steps, "_REGISTRY", dict(steps._REGISTRY))
    return steps._REGISTRY


def test_a_registered_step_runs_in_a_recipe_and_is_listed(registry, capsys):
    register_step("toy_invert", toy_invert, writes="image", filter=True)
    entry = get_step("toy_invert")
    assert entry.takes == ("image",) and entry.writes == "image" and entry.filter
    assert entry.description == "Invert the grey levels (the worked example of docs/architecture.md)."
    image = np.zeros((40, 50), np.uint8)
    image[10:20, 10:30] = 200  # one bright object: dark after inverting
    recipe = [
        {"function": "toy_invert", "params": {"maximum": 255}, "inputs": {"image": "image"}, "output": "inverted"},
        {
            "function": "threshold",
            "params": {"method": "otsu", "dark_objects": True},
            "inputs": {"image": "inverted"},
            "output": "mask",
        },
    ]
    result = run_workflow(recipe, image)
    assert result.summary["count"] == 1
    np.testing.assert_array_equal(result.outputs["inverted"], 255.0 - image)
    assert result.labels.sum() == 10 * 20
    assert cli.main(["steps"]) == 0
    listing = capsys.readouterr().out
    line = next(row for row in listing.splitlines() if row.strip().startswith("toy_invert"))
    assert "image -> image" in line and "Invert the grey levels" in line


def test_a_table_entry_names_its_function_by_dotted_path(registry):
    entry = steps._add(Step("toy_path", "napari_sem_analysis.enhancement:clahe", writes="image"))
    assert entry.load() is sem.clahe
    assert steps._add(Step("toy_short", "enhancement:denoise")).load() is sem.denoise
    with pytest.raises(SEMAnalysisError, match="cannot load"):
        steps._add(Step("toy_missing", "enhancement:no_such_function")).load()


def test_every_preset_step_and_widget_step_is_registered():
    for recipe in PRESETS.values():
        Workflow.from_dict(recipe).validate()
    for name in (
        "clahe",
        "denoise",
        "correct_background",
        "threshold",
        "clean_mask",
        "multi_threshold",
        "split_touching",
        "watershed_from_seeds",
        "superpixels",
        "measure",
        "glcm_features",
        "classify_objects",
        "classify_tiles",
        "unet_predict",
        "predict_unet",
        "coating_layers",
    ):
        assert callable(get_step(name).load()), name


def test_only_registered_steps_run():
    with pytest.raises(SEMAnalysisError, match="unknown step"):
        get_step("run_batch")  # a public API function, but not a step
    with pytest.raises(SEMAnalysisError, match="not a public"):
        get_step("_private")
    assert find_step("no_such_step") is None


def test_predict_unet_is_an_alias_of_unet_predict_giving_class_maps():
    alias = get_step("predict_unet")
    assert alias.target is get_step("unet_predict")
    assert alias.load() is get_step("unet_predict").load()
    assert dict(alias.defaults) == {"instances": False}
    assert sem.predict_unet.__module__.startswith("napari_sem_analysis.unet")  # the public function is the unet one


def test_summaries_and_filters_come_from_the_registry():
    assert Workflow([{"function": "segment_pores"}]).summary == "porosity"
    assert Workflow([{"function": "multi_threshold"}]).summary == "phases"
    # classify_objects only annotates: the summary follows the step before it
    steps_ = [
        {"function": "segment_pores", "output": "pores"},
        {"function": "classify_objects", "params": {"model": "m.semclf"}, "inputs": {"labels": "pores"}},
    ]
    assert Workflow(steps_).summary == "porosity"
    assert get_step("clahe").filter and not get_step("threshold").filter


def test_lengths_and_areas_convert_to_pixels():
    clean = get_step("clean_mask")
    out = clean.in_pixels({"min_size": 100.0, "opening": 10.0, "fill_holes": True, "unit": "nm"}, 2.0)
    assert out == {"min_size": 25.0, "opening": 5.0, "fill_holes": True, "unit": "px"}
    assert clean.in_pixels({"min_size": 4}, None) == {"min_size": 4}  # already in px
    with pytest.raises(SEMAnalysisError, match="pixel size is unknown"):
        clean.in_pixels({"min_size": 4, "unit": "nm"}, None)
