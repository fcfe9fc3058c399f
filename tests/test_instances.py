"""Instance targets and their inverse on synthetic touching discs with known ids."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sem_analysis as sem
from napari_sem_analysis import SEMAnalysisError
from napari_sem_analysis.instances import (
    IGNORE,
    instance_targets,
    instances_from_maps,
    instances_from_targets,
)


def touching_discs(seed=0, shape=(120, 160)):
    """Rows of discs that overlap their neighbours by ~3 px; overlaps go to the nearer centre."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    best = np.full(shape, np.inf)
    k = 0
    for cy in (25, 60, 95):
        cx = 12.0
        r_prev = 0.0
        while True:
            r = rng.uniform(8, 13)
            cx = cx + r_prev + r - 3 if r_prev else cx + r
            if cx + r > shape[1] - 2:
                break
            y = cy + rng.uniform(-3, 3)
            d = np.hypot(yy - y, xx - cx) / r
            k += 1
            sel = (d < 1) & (d < best)
            lab[sel], best[sel] = k, d[sel]
            r_prev = r
    return lab


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("width", [1, 2, 3])
def test_targets_inverse_recovers_touching_discs(seed, width):
    lab = touching_discs(seed)
    t = instance_targets(lab, boundary_width=width)
    assert set(np.unique(t)) == {0, 1, 2}
    # touching discs: the boundary class lies between every pair of neighbours
    out = instances_from_targets(t)
    r = sem.evaluate_instances(out, lab)
    assert r["n_pred"] == r["n_true"] == lab.max()
    assert r["tp"] == r["n_true"] and r["pq"] > 0.97
    # the foreground is given back exactly
    assert np.array_equal(out > 0, lab > 0)
    # the foreground mask alone would merge them into one object per row
    merged = instances_from_maps((lab > 0).astype(float), (lab > 0).astype(float))
    assert merged.max() == 3


def test_core_fraction_keeps_each_objects_core_and_the_inverse_still_recovers_them():
    # a large disc touching a small one: the interiors are the cores, sized to each object
    yy, xx = np.mgrid[:80, :120]
    lab = np.zeros((80, 120), np.int32)
    lab[np.hypot(yy - 40, xx - 40) < 24] = 1
    small = (np.hypot(yy - 40, xx - 72) < 9) & (lab == 0)
    lab[small] = 2
    t0 = instance_targets(lab, boundary_width=2)
    t = instance_targets(lab, boundary_width=2, core_fraction=0.5)
    for i, r in ((1, 24), (2, 9)):
        core = (t == 1) & (lab == i)
        # the core's equivalent radius is about half the inscribed radius (beyond c x R from the border)
        req = np.sqrt(core.sum() / np.pi)
        assert 0.35 * r < req < 0.65 * r, (i, req)
        # the band of boundary_width px is still boundary, and the core lies within the plain interior
        assert not np.any(core & (t0 == 2))
    # the largest object's core lies well away from the contact: 2 x 0.5 x 24 px
    gap = np.where((t == 1) & (lab == 1))[1].max()
    assert 72 - 9 - gap >= 10
    out = instances_from_targets(t)
    r = sem.evaluate_instances(out, lab)
    assert r["tp"] == 2 and r["n_pred"] == 2 and np.array_equal(out > 0, lab > 0)
    with pytest.raises(SEMAnalysisError, match="core_fraction"):
        instance_targets(lab, core_fraction=1.0)
    with pytest.raises(SEMAnalysisError, match="core_fraction"):
        instance_targets(lab, core_fraction="half")


@pytest.mark.parametrize("seed", [0, 1])
def test_core_fraction_targets_inverse_recovers_touching_discs(seed):
    lab = touching_discs(seed)
    out = instances_from_targets(instance_targets(lab, boundary_width=2, core_fraction=0.5))
    r = sem.evaluate_instances(out, lab)
    assert r["tp"] == r["n_true"] == r["n_pred"] and r["pq"] > 0.95


def test_flooding_on_the_foreground_puts_the_line_where_core_interiors_meet():
    # with core interiors the interior map is flat over the ring between the cores; the foreground
    # map's dip where the objects meet must decide the line
    from napari_sem_analysis.instances import contact_zone
    from napari_sem_analysis.unet.instances import decode

    yy, xx = np.mgrid[:80, :120]
    lab = np.zeros((80, 120), np.int32)
    lab[np.hypot(yy - 40, xx - 40) < 24] = 1
    lab[(np.hypot(yy - 40, xx - 72) < 12) & (lab == 0)] = 2
    t = instance_targets(lab, boundary_width=2, core_fraction=0.5)
    interior = (t == 1).astype(np.float32)
    fg = (lab > 0).astype(np.float32)
    fg[contact_zone(lab, 1)] = 0.6
    plain = sem.evaluate_instances(instances_from_maps(interior, fg), lab)
    flooded = sem.evaluate_instances(instances_from_maps(interior, fg, flood_foreground=True), lab)
    assert flooded["tp"] == 2 and flooded["sq"] > 0.98
    assert plain["sq"] < flooded["sq"] - 0.05
    # a model trained with core_fraction decodes this way; one without keeps flooding on the interior
    probs = np.stack([1 - fg, interior, fg - interior])
    cfg = {"interior_threshold": 0.5, "foreground_threshold": 0.5, "min_seed_size": 4.0, "min_size": 0.0}
    cfg["separate"] = False
    core_model = decode(probs, dict(cfg, core_fraction=0.5))
    band_model = decode(probs, dict(cfg, core_fraction=0.0))
    np.testing.assert_array_equal(core_model, instances_from_maps(interior, fg, flood_foreground=True))
    np.testing.assert_array_equal(band_model, instances_from_maps(interior, fg))


def test_boundary_band_and_distance():
    lab = np.zeros((20, 30), np.int32)
    lab[5:15, 5:15] = 1
    lab[5:15, 15:25] = 2  # touching squares
    t, d = instance_targets(lab, boundary_width=1, distance=True)
    # the contact columns are boundary on both sides, the far interior is interior
    assert np.all(t[5:15, 14] == 2) and np.all(t[5:15, 15] == 2)
    assert t[10, 10] == 1 and t[0, 0] == 0
    assert d.max() == pytest.approx(1.0) and d[0, 0] == 0 and d[10, 10] > d[6, 10]


def test_partial_annotation_is_ignored():
    lab = touching_discs(0)
    painted = lab.copy()
    unl = 65535
    painted = painted.astype(np.int64)
    painted[:, 80:] = unl  # right half not annotated
    t = instance_targets(painted, unlabelled=unl)
    assert np.all(t[:, 80:] == IGNORE)
    assert np.array_equal(t[:, :79] >= 0, np.ones_like(t[:, :79], bool))
    # "0 = unlabelled": only painted objects and a painted background value are known
    only = np.where(lab > 0, lab + 1, 0)
    only[:10, :] = 1  # the background painted as id 1 in a strip
    t0 = instance_targets(only, unlabelled=0, background=1)
    assert np.all(t0[:10] == 0)
    assert np.all(t0[(only == 0)] == IGNORE)
    assert np.all(t0[lab > 0] > 0)
    # a region: outside it nothing is known
    region = np.zeros(lab.shape, bool)
    region[20:60, 20:100] = True
    tr = instance_targets(lab, region=region)
    assert np.all(tr[~region] == IGNORE) and np.array_equal(tr[region], instance_targets(lab)[region])


def test_decode_drops_small_and_separates():
    fg = np.zeros((30, 30), np.float32)
    fg[2:12, 2:22] = 1
    inner = np.zeros_like(fg)
    inner[4:10, 4:10], inner[4:10, 14:20] = 1, 1
    fg[20:22, 20:22] = 1  # a 4 px speck without neighbours
    out = instances_from_maps(inner, fg, min_size=10, separate=True)
    assert out.max() == 2
    # one-pixel gap between the two touching objects: 4-connected labelling gives them back
    from scipy import ndimage as ndi

    assert ndi.label(out > 0)[1] == 2


def test_bad_input():
    with pytest.raises(SEMAnalysisError):
        instance_targets(np.zeros((5, 5), float))
    with pytest.raises(SEMAnalysisError):
        instance_targets(np.zeros((5, 5), np.int32), region=np.ones((4, 4), bool))
    with pytest.raises(SEMAnalysisError):
        instances_from_maps(np.zeros((5, 5)), np.zeros((5, 6)))


def test_contact_zone_marks_where_objects_meet_and_nothing_else():
    lab = np.zeros((40, 70), np.int32)
    lab[5:25, 5:30] = 1
    lab[5:25, 31:55] = 2  # one-pixel gap at column 30: touching as drawn in hand masks
    lab[33:39, 62:69] = 3  # more than 2 x 3 px from the others
    zone = sem.contact_zone(lab, width=3)
    # the gap and the pixels that see both objects within 3 px: 2 px on either side of the gap
    assert zone[5:25, 28:33].all()
    assert not zone[:, :28].any() and not zone[:, 33:].any()
    # nothing on the objects' outer edges, nothing around the lone object
    assert zone[2:28, 30].all() and not zone[:2].any() and not zone[28:].any()
    assert not sem.contact_zone(lab == 1, width=3).any()  # one object alone touches nothing
    assert not sem.contact_zone(np.zeros((5, 5), np.int32)).any()
    with pytest.raises(SEMAnalysisError):
        sem.contact_zone(lab, width=0)


def test_contact_codes_in_the_training_targets_fold_back_to_the_classes():
    from napari_sem_analysis.unet.instances import HEAVY_OFFSET, instance_training_masks

    lab = touching_discs(seed=3)
    (plain,), _ = instance_training_masks([lab])
    (coded,), _ = instance_training_masks([lab], contact_width=3)
    heavy = coded >= HEAVY_OFFSET
    assert heavy.any() and np.array_equal(np.where(heavy, coded - HEAVY_OFFSET, coded), plain)
    assert np.array_equal(heavy, sem.contact_zone(lab, 3))


@pytest.mark.parametrize("bad", [1.0, -0.1, "0.5", True, float("nan")])
def test_a_model_files_core_fraction_is_checked(bad):
    # model files are untrusted: the stored core_fraction must be a number in [0, 1)
    from napari_sem_analysis.unet.instances import check_decode

    cfg = {"interior_threshold": 0.5, "foreground_threshold": 0.5, "min_seed_size": 4.0, "min_size": 0.0}
    cfg["separate"] = False
    assert check_decode(dict(cfg, core_fraction=0.5))["core_fraction"] == 0.5
    assert "core_fraction" not in check_decode(cfg)  # older files have none: the band decoding
    with pytest.raises(SEMAnalysisError, match="core_fraction"):
        check_decode(dict(cfg, core_fraction=bad))


def test_tuning_keeps_a_core_models_flooding():
    # the decoding search scores core models as they decode (flooding on the foreground too) and
    # hands the core_fraction back unchanged
    from napari_sem_analysis.instances import contact_zone
    from napari_sem_analysis.unet.instances import decode
    from napari_sem_analysis.unet.tuning import _tune_from_probabilities

    yy, xx = np.mgrid[:80, :120]
    lab = np.zeros((80, 120), np.int32)
    lab[np.hypot(yy - 40, xx - 40) < 24] = 1
    lab[(np.hypot(yy - 40, xx - 72) < 12) & (lab == 0)] = 2
    interior = (instance_targets(lab, boundary_width=2, core_fraction=0.5) == 1).astype(np.float32)
    fg = (lab > 0).astype(np.float32)
    fg[contact_zone(lab, 1)] = 0.6
    probs = np.stack([1 - fg, interior, fg - interior])
    cfg = {"interior_threshold": 0.5, "foreground_threshold": 0.5, "min_seed_size": 4.0, "min_size": 0.0}
    cfg.update(separate=False, core_fraction=0.5)
    res = _tune_from_probabilities([probs], [lab], cfg, grid=[{"min_seed_size": (4.0, 8.0)}], metric="pq")
    assert res["settings"]["core_fraction"] == 0.5
    expected = sem.evaluate_instances(decode(probs, cfg), lab)["pq"]
    assert res["default_score"] == pytest.approx(expected) and expected > 0.98
