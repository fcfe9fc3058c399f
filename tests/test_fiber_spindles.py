"""find_spindles: long, shallow swellings of fibres (below the bead factor), on masks and generated mats."""

import numpy as np
import pytest

import napari_sem_analysis as sem
from napari_sem_analysis import SEMAnalysisError


def _swollen_bar(shape, d, swellings, beads=()):
    """A horizontal fibre ``d`` px wide with smooth swellings ``(x0, amp, L)`` and round beads ``(x0, w)``."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    cy = shape[0] / 2 - 0.5  # between two rows: a fibre d px wide is d rows
    width = np.full(shape, float(d))
    for x0, amp, length in swellings:
        t = x - x0
        inside = np.abs(t) < length / 2
        width = np.where(inside, d * (1 + (amp - 1) * np.cos(np.pi * t / length) ** 2), width)
    mask = np.abs(y - cy) < width / 2
    for x0, w in beads:
        mask |= (x - x0) ** 2 + (y - cy) ** 2 <= (w / 2) ** 2
    return mask


def _stretch(amp, length, low=1.15):
    """Length of the part of a ``d (1 + (amp - 1) cos^2(pi t / L))`` swelling wider than ``low`` d."""
    return 2 * length / np.pi * np.arccos(np.sqrt((low - 1) / (amp - 1)))


def test_two_shallow_swellings_are_spindles_and_a_bead_is_not():
    swell = [(120, 1.5, 96), (340, 1.4, 120)]
    mask = _swollen_bar((80, 600), 12, swell, beads=[(510, 34)])
    r = sem.measure_fibers(mask=mask, pores=False)
    sp = sem.find_spindles(r)
    t = sp.table.sort_values("x")
    assert len(t) == 2
    for (x0, amp, length), (_, row) in zip(swell, t.iterrows(), strict=True):
        assert abs(row["x"] - x0) < 0.15 * length and abs(row["y"] - 39.5) < 2
        assert row["length"] == pytest.approx(_stretch(amp, length), rel=0.2)
        assert row["amplitude"] == pytest.approx(amp, abs=0.12)  # the smoothing lowers the peak a little
        assert row["baseline"] == pytest.approx(12, abs=1)
    assert r.summary["bead_count"] == 1  # the round bead is a bead, not a spindle
    assert np.all(r.centerline[sp.centerline > 0] > 0)  # spindle pixels lie on the centreline
    plain = sem.measure_fibers(mask=_swollen_bar((80, 600), 12, []), pores=False)
    assert len(sem.find_spindles(plain).table) == 0


def test_short_bump_and_narrow_angle_overlap_are_not_spindles():
    # a swelling shorter than 3 diameters is a bump, not a spindle
    bump = sem.measure_fibers(mask=_swollen_bar((80, 400), 12, [(200, 1.5, 36)]), pores=False)
    assert len(sem.find_spindles(bump).table) == 0
    # two fibres merging at a narrow angle widen the mask smoothly up to a crossing: not a swelling
    y, x = np.mgrid[:160, :480]
    mask = np.abs(y - 80) < 5
    t = np.deg2rad(5.0)
    mask |= np.abs((x - 300) * np.sin(t) + (y - 80) * np.cos(t)) < 5
    r = sem.measure_fibers(mask=mask, pores=False)
    assert len(sem.find_spindles(r).table) == 0


@pytest.mark.parametrize("seed", [3])
def test_generated_spindles_counted_with_their_length(seed):
    s = sem.sample_fibers(seed, shape=(256, 320), n_fibers=5, diameter=(9, 11), n_beads=0, n_blobs=0, n_spindles=3)
    truth = s.info["spindles"]
    assert len(truth) == 3
    r = sem.measure_fibers(s.image, max_diameter=40, pores=False)
    t = sem.find_spindles(r).table
    assert len(t) == 3 and r.summary["bead_count"] == 0  # spindles below the bead factor are not beads
    found = t[["y", "x"]].to_numpy()
    for y, x, w, length, d in truth:
        j = int(np.argmin(np.hypot(found[:, 0] - y, found[:, 1] - x)))
        assert np.hypot(found[j, 0] - y, found[j, 1] - x) < 0.25 * length
        assert t["length"].iloc[j] == pytest.approx(_stretch(w / d, length), rel=0.25)
    # the same mat without spindles has none
    clean = sem.sample_fibers(seed, shape=(256, 320), n_fibers=5, diameter=(9, 11), n_beads=0, n_blobs=0)
    assert len(sem.find_spindles(sem.measure_fibers(clean.image, max_diameter=40, pores=False)).table) == 0


def test_spindle_features_and_bad_input():
    from napari_sem_analysis.fibers import FIBER_FEATURES

    mask = _swollen_bar((80, 600), 12, [(120, 1.5, 96), (340, 1.4, 120)])
    f = sem.fiber_features(mask=mask)
    assert list(f) == list(FIBER_FEATURES)
    length_d = 600 / 12  # the centreline in fibre diameters (about)
    assert f["fib_spindles_per_length"] == pytest.approx(100 * 2 / length_d, rel=0.1)
    assert f["fib_spindle_length_fraction"] == pytest.approx((_stretch(1.5, 96) + _stretch(1.4, 120)) / 600, rel=0.2)
    assert 0.3 < f["fib_spindle_amplitude"] < 0.5
    plain = sem.fiber_features(mask=_swollen_bar((80, 600), 12, []))
    assert plain["fib_spindles_per_length"] == plain["fib_spindle_length_fraction"] == 0
    assert plain["fib_spindle_amplitude"] == 0
    with pytest.raises(SEMAnalysisError):
        sem.find_spindles(mask)
    r = sem.measure_fibers(mask=mask, pores=False)
    with pytest.raises(SEMAnalysisError):
        sem.find_spindles(r, low=0.9)
    with pytest.raises(SEMAnalysisError):
        sem.find_spindles(r, peak=(1.8, 1.25))


def _crossed(shape, d, swell, cross_deg, cross_d, x_cross, beads=()):
    """A horizontal fibre (``_swollen_bar``) crossed at ``x_cross`` by a straight fibre at ``cross_deg`` degrees."""
    mask = _swollen_bar(shape, d, swell, beads)
    y, x = np.mgrid[: shape[0], : shape[1]]
    t = np.deg2rad(cross_deg)
    mask |= np.abs((x - x_cross) * np.sin(t) + (y - (shape[0] / 2 - 0.5)) * np.cos(t)) < cross_d / 2
    return mask


@pytest.mark.parametrize("angle", [60.0, 90.0])
def test_spindle_with_a_fibre_across_it_is_found_through_the_crossing(angle):
    # the crossing fibre merges with the swelling's middle: the segments end there and
    # carry no closed swelling, the track through the crossing does
    mask = _crossed((240, 600), 12, [(300, 1.5, 96)], angle, 10, 300)
    r = sem.measure_fibers(mask=mask, pores=False)
    assert len(sem.find_spindles(r).table) == 0
    t = sem.find_spindles(r, through_crossings=True).table
    assert len(t) == 1
    row = t.iloc[0]
    assert abs(row["x"] - 300) < 0.25 * 96 and abs(row["y"] - 119.5) < 3
    assert row["baseline"] == pytest.approx(12, abs=1)
    assert row["length"] == pytest.approx(_stretch(1.5, 96), rel=0.25)
    assert 1.25 <= row["amplitude"] < 1.6  # the middle is hidden under the crossing: at most the true 1.5


@pytest.mark.parametrize("angle", [25.0, 60.0, 90.0])
def test_crossing_without_spindle_gives_none(angle):
    # a bare crossing (also at a narrow angle, where the two fibres overlap over a long stretch)
    mask = _crossed((240, 600), 12, [], angle, 12, 300)
    r = sem.measure_fibers(mask=mask, pores=False)
    assert len(sem.find_spindles(r, through_crossings=True).table) == 0
    assert len(sem.find_spindles(r, through_crossings=True, peak=(1.8, 3.5)).table) == 0


def test_wide_lens_merged_with_a_crossing_is_a_lens_not_a_bead():
    # a 2.5x lens that a fibre crosses: the bead test leaves it (its wide place reaches the
    # crossing), the track finds it with the lens range; a free bead stays a bead only
    mask = _crossed((240, 700), 10, [(250, 2.5, 90)], 70, 10, 250, beads=[(560, 30)])
    r = sem.measure_fibers(mask=mask, pores=False)
    assert r.summary["bead_count"] == 1 and abs(r.bead_table["x"].iloc[0] - 560) < 10
    lenses = sem.find_spindles(r, through_crossings=True, peak=(1.8, 3.5)).table
    assert len(lenses) == 1 and abs(lenses["x"].iloc[0] - 250) < 0.25 * 90
    assert len(sem.find_spindles(r, through_crossings=True).table) == 0  # not a shallow spindle


def test_generated_crossing_spindles_lie_on_crossings():
    kw = dict(shape=(512, 512), n_fibers=10, diameter=(8, 14), n_beads=0, n_blobs=0)
    s = sem.sample_fibers(3, n_crossing_spindles=3, **kw)
    truth = s.info["spindles"]
    assert len(truth) == 3 and s.info["crossing_spindles"] == [0, 1, 2]
    y, x = np.mgrid[:512, :512]
    for sy, sx, w, *_ in truth:
        near = np.hypot(y - sy, x - sx) <= w
        assert len(np.unique(s.labels[near & (s.labels > 0)])) >= 2  # another fibre crosses its middle
    # spindles placed the usual way stay clear of the other fibres; without them the mat is unchanged
    free = sem.sample_fibers(3, n_spindles=3, **kw)
    for sy, sx, w, *_ in free.info["spindles"]:
        near = np.hypot(y - sy, x - sx) <= w
        assert len(np.unique(free.labels[near & (free.labels > 0)])) == 1
    plain = sem.sample_fibers(3, **kw)
    assert plain.info["spindles"] == [] and plain.info["crossing_spindles"] == []
    assert (s.labels > 0).sum() > (plain.labels > 0).sum()  # the swellings are drawn
