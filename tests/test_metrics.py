"""evaluate_instances against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sem_analysis as sem
from napari_sem_analysis import SEMAnalysisError


def _case():
    truth = np.zeros((50, 50), np.int32)
    truth[0:10, 0:10] = 1  # A
    truth[20:30, 20:30] = 2  # B
    truth[40:44, 0:4] = 3  # C (missed)
    pred = np.zeros_like(truth)
    pred[0:10, 0:8] = 7  # A': IoU 80/100 = 0.8
    pred[20:30, 25:35] = 3  # B': IoU 50/150 = 1/3, no match
    pred[40:44, 40:44] = 9  # D': false positive
    return pred, truth


def test_hand_computed_scores():
    pred, truth = _case()
    r = sem.evaluate_instances(pred, truth)
    # TP = 1 (A-A'), FP = 2 (B', D'), FN = 2 (B, C)
    assert (r["tp"], r["fp"], r["fn"], r["n_pred"], r["n_true"]) == (1, 2, 2, 3, 3)
    assert r["precision"] == pytest.approx(1 / 3)
    assert r["recall"] == pytest.approx(1 / 3)
    assert r["rq"] == pytest.approx(1 / 3) and r["f1"] == r["rq"]
    assert r["sq"] == pytest.approx(0.8)
    assert r["pq"] == pytest.approx(0.8 / 3)
    assert r["ap50"] == pytest.approx(1 / 5)
    # A' stays matched at IoU thresholds 0.50 .. 0.80 (7 of 10), none above
    assert r["ap"] == pytest.approx(7 * 0.2 / 10)
    assert r["ap75"] == pytest.approx(0.2)
    assert r["count_error"] == 0.0
    # pixel Dice: overlap 80 + 50, areas 100+80+100 (pred 80+100+16, truth 100+100+16)
    assert r["dice"] == pytest.approx(2 * 130 / (196 + 216))


def test_perfect_with_other_ids_and_merge():
    truth = np.zeros((40, 40), np.uint16)
    truth[0:10, 0:10] = 5
    truth[0:10, 10:15] = 6  # touches 5
    truth[30:38, 30:38] = 60000
    perm = truth.copy()
    perm[truth == 5], perm[truth == 6], perm[truth == 60000] = 2, 1, 3
    r = sem.evaluate_instances(perm.astype(np.int64), truth)
    assert r["pq"] == 1.0 and r["ap"] == 1.0 and r["count_error"] == 0 and r["d50_error"] == 0
    # a prediction that merges 5 and 6: IoU with 5 = 100/150 (match), with 6 = 50/150
    merged = (truth > 0).astype(np.int32)
    merged[30:38, 30:38] = 2
    r = sem.evaluate_instances(merged, truth)
    assert (r["tp"], r["fp"], r["fn"]) == (2, 0, 1)
    assert r["sq"] == pytest.approx((2 / 3 + 1) / 2)
    assert r["count_error"] == pytest.approx(-1 / 3)


def test_diameter_errors():
    truth = np.zeros((60, 60), np.int32)
    pred = np.zeros_like(truth)
    for i, y in enumerate((0, 20, 40)):
        truth[y : y + 10, 0:10] = i + 1
        pred[y : y + 9, 0:9] = i + 1  # every side 10 % shorter
    r = sem.evaluate_instances(pred, truth, pixel_size=2.0)
    for k in ("d10_error", "d50_error", "d90_error"):
        assert r[k] == pytest.approx(-0.1)
    assert r["d50_true"] == pytest.approx(2.0 * np.sqrt(400 / np.pi))


def test_pooled_is_not_mean_of_images():
    t1 = np.zeros((20, 20), np.int32)
    t1[2:8, 2:8] = 1
    p1 = t1.copy()  # perfect
    t2 = np.zeros((20, 20), np.int32)
    t2[0:5, 0:5], t2[10:15, 0:5], t2[0:5, 10:15] = 1, 2, 3
    p2 = np.zeros_like(t2)  # everything missed
    r = sem.evaluate_instances([p1, p2], [t1, t2])
    assert (r["tp"], r["fp"], r["fn"]) == (1, 0, 3)
    assert r["recall"] == pytest.approx(1 / 4)  # per-image mean would be 0.5
    assert r["count_error"] == pytest.approx((1 - 4) / 4)
    assert r["mean_abs_count_error"] == pytest.approx((0 + 1) / 2)
    assert len(r["per_image"]) == 2 and r["per_image"][0]["pq"] == 1.0 and r["per_image"][1]["pq"] == 0.0


def test_binary_truth_is_4_connected():
    mask = np.zeros((10, 10), bool)
    mask[0:3, 0:3] = True
    mask[3:6, 3:6] = True  # touches only diagonally: a separate object
    lab = np.zeros((10, 10), np.int32)
    lab[0:3, 0:3], lab[3:6, 3:6] = 1, 2
    r = sem.evaluate_instances(lab, mask)
    assert r["n_true"] == 2 and r["pq"] == 1.0


def test_bad_input():
    a = np.zeros((5, 5), np.int32)
    with pytest.raises(SEMAnalysisError, match="shape"):
        sem.evaluate_instances(a, np.zeros((5, 6), np.int32))
    with pytest.raises(SEMAnalysisError, match="references"):
        sem.evaluate_instances([a, a], [a])
    with pytest.raises(SEMAnalysisError):
        sem.evaluate_instances(a.astype(float), a)


def test_min_size_leaves_specks_out_of_both_sides():
    truth = np.zeros((20, 30), np.int32)
    truth[2:10, 2:10] = 1  # 64 px
    truth[12:14, 20:21] = 2  # a 2-px speck of the annotation
    pred = np.zeros_like(truth)
    pred[2:10, 2:10] = 5
    pred[15:17, 2:4] = 9  # a 4-px speck of the prediction
    full = sem.evaluate_instances(pred, truth)
    assert (full["n_true"], full["n_pred"], full["tp"], full["fp"], full["fn"]) == (2, 2, 1, 1, 1)
    r = sem.evaluate_instances(pred, truth, min_size=5)
    assert (r["n_true"], r["n_pred"], r["tp"], r["fp"], r["fn"]) == (1, 1, 1, 0, 0)
    assert r["pq"] == 1.0 and r["count_error"] == 0.0
    # pooled over lists the same way; the inputs are not modified
    lst = sem.evaluate_instances([pred, pred], [truth, truth], min_size=5)
    assert lst["n_true"] == 2 and lst["fn"] == 0 and truth[12, 20] == 2 and pred[15, 2] == 9
    with pytest.raises(SEMAnalysisError):
        sem.evaluate_instances(pred, truth, min_size=-1)
