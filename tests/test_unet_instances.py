"""Instance U-Net: training from instance labels, decoding, seams, partial annotation, model file."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")

from _unet_helpers import _one_thread  # noqa: E402, F401  (autouse fixture)

import napari_sem_analysis as sem  # noqa: E402
from napari_sem_analysis._validation import SEMAnalysisError  # noqa: E402
from napari_sem_analysis.unet import load_model, train_unet  # noqa: E402

TINY = dict(encoder="tu-resnet10t", encoder_depth=3, decoder_channels=(32, 16, 8))


def domes(shape=(96, 96), seed=0, n=10, dark=False):
    """Touching particles: bright domes (dark pits with ``dark``) whose contacts show as a valley."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf)
    height = np.zeros(shape)
    k = 0
    while k < n:
        cy, cx = r.uniform(8, shape[0] - 8), r.uniform(8, shape[1] - 8)
        rad = r.uniform(7, 11)
        d = np.hypot(yy - cy, xx - cx) / rad
        k += 1
        sel = (d < 1) & (d < best)
        lab[sel], best[sel] = k, d[sel]
        height[sel] = np.sqrt(1 - d[sel] ** 2)
    img = 60 + 150 * height + r.normal(0, 8, shape)
    if dark:
        img = 255 - img
    # relabel consecutively (a disc can be hidden by later ones)
    ids = np.unique(lab)
    lut = np.zeros(lab.max() + 1, np.int32)
    lut[ids] = np.arange(len(ids))
    return img.clip(0, 255).astype(np.uint8), lut[lab]


def _train(pairs, **kw):
    return train_unet(
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        task="instances",
        **TINY,
        patch_size=64,
        epochs=kw.pop("epochs", 8),
        batch_size=4,
        steps_per_epoch=10,
        val_fraction=0,
        learning_rate=5e-3,
        patience=None,
        device="cpu",
        seed=0,
        **kw,
    )


@pytest.fixture(scope="module")
def inst_model():
    return _train([domes(seed=s) for s in range(4)])


def test_instance_model_separates_touching_particles(inst_model):
    model = inst_model
    assert model.task == "instances" and model.class_names == [
        "background",
        "interior",
        "boundary",
    ]
    img, truth = domes((128, 128), seed=42, n=16)
    labels = model.predict(img, device="cpu")
    assert labels.dtype == np.int32 and labels.shape == img.shape
    r = sem.evaluate_instances(labels, truth)
    assert r["pq"] > 0.6 and abs(r["count_error"]) < 0.25
    # a semantic reading (one label per connected foreground) would merge the touching ones
    from scipy import ndimage as ndi

    assert ndi.label(truth > 0)[1] < truth.max() - 3


def test_tiled_instances_equal_untiled(inst_model):
    img, _ = domes((160, 200), seed=7, n=24)
    full = inst_model.predict(img, tile_size=None, device="cpu")
    tiled = inst_model.predict(img, tile_size=64, overlap=24, device="cpu")
    # the watershed runs on the whole blended map: objects across seams keep one label
    r = sem.evaluate_instances(tiled, full)
    assert r["n_pred"] == r["n_true"] and r["tp"] == r["n_true"]
    assert r["sq"] > 0.97


def test_instance_model_file_round_trip_and_validation(inst_model, tmp_path):
    path = inst_model.save(tmp_path / "inst.safetensors")
    loaded = load_model(path)
    assert loaded.task == "instances" and loaded.config["instances"] == inst_model.config["instances"]
    img, _ = domes((96, 96), seed=5)
    assert np.array_equal(loaded.predict(img, device="cpu"), inst_model.predict(img, device="cpu"))
    # overrides of the decoding settings
    coarse = loaded.predict(img, device="cpu", instance_settings={"min_size": 10_000})
    assert coarse.max() <= 1
    with pytest.raises(SEMAnalysisError, match="unknown instance settings"):
        loaded.predict(img, device="cpu", instance_settings={"bogus": 1})
    # a file whose task or decoding settings are broken is refused
    from safetensors.torch import load_file, save_file

    from napari_sem_analysis.unet.model import _CONFIG_KEY, FORMAT_NAME

    tensors = load_file(path)
    for cfg_change, match in (
        ({"task": "panoptic"}, "unknown task"),
        ({"instances": {"separate": 1}}, "instance"),
    ):
        cfg = dict(loaded.config, **cfg_change)
        bad = tmp_path / "bad.safetensors"
        save_file(
            tensors,
            str(bad),
            metadata={
                "format": FORMAT_NAME,
                "format_version": "1",
                _CONFIG_KEY: json.dumps(cfg),
            },
        )
        with pytest.raises(SEMAnalysisError, match=match):
            load_model(bad)


def test_unlabelled_pixels_do_not_count_in_the_loss():
    from napari_sem_analysis.unet.instances import (
        TARGET_IGNORE,
        instance_training_masks,
    )
    from napari_sem_analysis.unet.losses import _IGNORE, _dice_ce_loss

    _, lab = domes(seed=1)
    painted = lab.copy()
    painted[:, 48:] = 999  # right half not annotated
    (target,), _cfg = instance_training_masks([painted], unlabelled=999)
    assert np.all(target[:, 48:] == TARGET_IGNORE) and np.all(target[:, :47] != TARGET_IGNORE)
    t = torch.from_numpy(np.where(target == TARGET_IGNORE, _IGNORE, target.astype(np.int64)))[None]
    logits = torch.randn(1, 3, *lab.shape, requires_grad=True)
    loss = _dice_ce_loss(logits, t, 3, 1.0)
    loss.backward()
    assert float(logits.grad[..., 48:].abs().max()) == 0.0
    assert float(logits.grad[..., :47].abs().max()) > 0.0


def test_contact_pixels_weigh_more_in_the_loss():
    from napari_sem_analysis.unet.instances import HEAVY_OFFSET, instance_training_masks
    from napari_sem_analysis.unet.losses import _dice_ce_loss

    _, lab = domes(seed=2)
    (coded,), _ = instance_training_masks([lab], contact_width=3)
    heavy = coded >= HEAVY_OFFSET
    assert heavy.any() and not heavy.all()
    plain = np.where(heavy, coded - HEAVY_OFFSET, coded).astype(np.int64)
    t_coded, t_plain = torch.from_numpy(coded.astype(np.int64))[None], torch.from_numpy(plain)[None]
    torch.manual_seed(0)
    logits = torch.randn(1, 3, *lab.shape)
    # weight 1: the codes are read as their classes
    assert torch.allclose(_dice_ce_loss(logits, t_coded, 3, 0.0), _dice_ce_loss(logits, t_plain, 3, 0.0))
    # weight 5: the weighted mean of the per-pixel cross-entropy, contacts counted 5 times
    pix = torch.nn.functional.cross_entropy(logits, t_plain, reduction="none")
    w = torch.where(torch.from_numpy(heavy)[None], 5.0, 1.0)
    expected = (pix * w).sum() / w.sum()
    assert torch.allclose(_dice_ce_loss(logits, t_coded, 3, 0.0, heavy_weight=5.0), expected)
    # a wrong call at a contact costs more than the same wrong call elsewhere
    at = tuple(np.argwhere(heavy & (plain == 2))[0])
    away = tuple(np.argwhere(~heavy & (plain == 2))[0])
    grads = []
    for y, x in (at, away):
        lg = torch.zeros(1, 3, *lab.shape, requires_grad=True)
        _dice_ce_loss(lg, t_coded, 3, 0.0, heavy_weight=5.0).backward()
        grads.append(float(lg.grad[0, :, y, x].abs().sum()))
    assert grads[0] > 4 * grads[1]


def test_train_unet_records_the_contact_weight_and_checks_it():
    pairs = [domes(seed=s) for s in range(2)]
    from napari_sem_analysis.unet.train import DEFAULT_CONTACT_WEIGHT

    assert DEFAULT_CONTACT_WEIGHT > 1  # contacts weigh more by default
    model = _train(pairs, epochs=1)
    assert model.config["training"]["contact_weight"] == DEFAULT_CONTACT_WEIGHT
    model = _train(pairs, epochs=1, contact_weight=1.0)
    assert model.config["training"]["contact_weight"] == 1.0
    img, lab = pairs[0]
    for bad in (0, -1, 1000, "heavy", float("nan")):
        with pytest.raises(SEMAnalysisError, match="contact_weight"):
            train_unet(img, lab, task="instances", contact_weight=bad, **TINY, patch_size=32, epochs=1, device="cpu")
    with pytest.raises(SEMAnalysisError, match="contact_weight is for task='instances'"):
        train_unet(img, lab > 0, contact_weight=5.0, **TINY, patch_size=32, epochs=1, device="cpu")


def test_train_unet_core_fraction_is_stored_and_checked():
    pairs = [domes(seed=s) for s in range(2)]
    assert _train(pairs, epochs=1).config["instances"]["core_fraction"] == 0.0
    model = _train(pairs, epochs=1, core_fraction=0.5)
    assert model.config["instances"]["core_fraction"] == 0.5
    img, lab = pairs[0]
    with pytest.raises(SEMAnalysisError, match="core_fraction must be in"):
        train_unet(img, lab, task="instances", core_fraction=1.5, **TINY, patch_size=32, epochs=1, device="cpu")
    with pytest.raises(SEMAnalysisError, match="core_fraction is for task='instances'"):
        train_unet(img, lab > 0, core_fraction=0.5, **TINY, patch_size=32, epochs=1, device="cpu")


def test_partial_annotation_and_dark_objects():
    # dark pits; only the left half of each training image is annotated and the right half,
    # full of unpainted pits, is marked unlabelled: if it counted as background the model
    # would learn to miss pits
    pairs = []
    for s in range(4):
        img, lab = domes(seed=10 + s, dark=True)
        painted = lab.copy()
        painted[:, 48:] = 65535
        pairs.append((img, painted))
    model = _train(pairs, unlabelled=65535)
    assert model.config["training"]["unlabelled"] == 65535
    img, truth = domes((128, 128), seed=43, n=16, dark=True)
    r = sem.evaluate_instances(model.predict(img, device="cpu"), truth)
    assert r["recall"] > 0.6 and r["pq"] > 0.55


def test_instance_options_validated():
    img, lab = domes(seed=0)
    with pytest.raises(SEMAnalysisError, match="task"):
        train_unet(img, lab, task="panoptic", **TINY, patch_size=32, epochs=1, device="cpu")
    with pytest.raises(SEMAnalysisError, match="unlabelled"):
        train_unet(img, lab > 0, unlabelled=0, **TINY, patch_size=32, epochs=1, device="cpu")
    with pytest.raises(SEMAnalysisError, match="no object"):
        train_unet(
            img,
            np.full_like(lab, 7),
            task="instances",
            unlabelled=7,
            **TINY,
            patch_size=32,
            epochs=1,
            device="cpu",
        )


def _unsure_maps(lab):
    """Class probabilities of a network that sees interiors only at 0.42 (boundaries at 0.85)."""
    from napari_sem_analysis.instances import instance_targets

    t = instance_targets(lab)
    probs = np.empty((3, *lab.shape), np.float32)
    probs[:, t == 0] = np.array([0.9, 0.05, 0.05], np.float32)[:, None]
    probs[:, t == 1] = np.array([0.05, 0.42, 0.53], np.float32)[:, None]
    probs[:, t == 2] = np.array([0.05, 0.1, 0.85], np.float32)[:, None]
    return probs


def test_decoding_tuned_where_fixed_thresholds_merge_touching_discs():
    from napari_sem_analysis.unet.instances import decode, instance_training_masks
    from napari_sem_analysis.unet.tuning import _tune_from_probabilities

    pairs = [domes((128, 128), seed=s, n=16) for s in (1, 2)]
    _, stored = instance_training_masks([p[1] for p in pairs])
    res = _tune_from_probabilities([_unsure_maps(p[1]) for p in pairs], [p[1] for p in pairs], stored)
    # at 0.5 no interior is a seed: every blob of touching discs is one object
    assert res["default_score"] < 0.5
    assert res["settings"]["interior_threshold"] < 0.42 and res["score"] > 0.9
    assert res["metric"] == "pq" and len(res["tried"]) > 20
    # the chosen settings carry over to another image with the same kind of maps
    _, truth = domes((128, 128), seed=9, n=16)
    fixed = sem.evaluate_instances(decode(_unsure_maps(truth), stored), truth)["pq"]
    tuned = sem.evaluate_instances(decode(_unsure_maps(truth), res["settings"]), truth)["pq"]
    assert tuned > fixed + 0.3


def test_tune_instance_decoding_on_a_model_stores_the_settings(inst_model, tmp_path):
    from napari_sem_analysis.unet import UNetModel

    model = UNetModel(inst_model.config, inst_model.state_dict, inst_model.history)
    img, truth = domes((96, 96), seed=21, n=12)
    grid = [{"interior_threshold": (0.3, 0.5, 0.7)}]
    kept = dict(model.config["instances"])
    res = sem.tune_instance_decoding(model, img, truth, grid=grid, apply=False, device="cpu")
    assert model.config["instances"] == kept and res["score"] >= res["default_score"]
    res = sem.tune_instance_decoding(model, [img], [truth], grid=grid, device="cpu")
    stored = model.config["instances"]
    assert stored["interior_threshold"] == res["settings"]["interior_threshold"]
    assert stored["tuned"]["n_images"] == 1 and stored["tuned"]["score"] == res["score"]
    loaded = load_model(model.save(tmp_path / "tuned"))
    assert loaded.config["instances"] == stored
    r = sem.evaluate_instances(loaded.predict(img, device="cpu"), truth)
    assert r["pq"] == pytest.approx(res["score"])
    with pytest.raises(SEMAnalysisError, match="metric"):
        sem.tune_instance_decoding(model, img, truth, metric="count", device="cpu")
    with pytest.raises(SEMAnalysisError, match="label images"):
        sem.tune_instance_decoding(model, [img, img], [truth], device="cpu")


def test_train_unet_tunes_decoding_on_its_validation_images():
    pairs = [domes(seed=30 + s) for s in range(3)]
    model = train_unet(
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        task="instances",
        **TINY,
        patch_size=32,
        epochs=1,
        batch_size=2,
        steps_per_epoch=2,
        val_fraction=0.34,
        device="cpu",
        tune_decoding=True,
    )
    tuned = model.config["instances"]["tuned"]
    assert tuned["n_images"] == 1 and tuned["score"] >= tuned["default_score"]
    with pytest.raises(SEMAnalysisError, match="validation"):
        _train(pairs[:1], epochs=1, tune_decoding=True)
    with pytest.raises(SEMAnalysisError, match="completely annotated"):
        _train(pairs[:1], epochs=1, tune_decoding=True, unlabelled=0)
