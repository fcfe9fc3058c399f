"""measure_fibers on synthetic fibre mats with known diameters, orientations and beads."""

import numpy as np
import pytest

import napari_sem_analysis as sem
from napari_sem_analysis import SEMAnalysisError


def _bar_mask(shape, angle_deg, width):
    """A straight band of ``width`` px through the image centre at ``angle_deg`` (CCW from +x, y up)."""
    y, x = np.mgrid[: shape[0], : shape[1]]
    a = np.deg2rad(angle_deg)
    offset = 0.5 if width % 2 == 0 else 0.0  # an integer number of rows when axis-aligned
    cy, cx = shape[0] / 2 + offset, shape[1] / 2 + offset
    return np.abs((x - cx) * np.sin(a) + (y - cy) * np.cos(a)) < width / 2


@pytest.mark.parametrize("angle", [0, 30, 90, 135])
def test_single_fibre_diameter_and_orientation(angle):
    mask = _bar_mask((160, 160), angle, 10)
    r = sem.measure_fibers(mask=mask, pores=False)
    assert r.summary["diameter_median"] == pytest.approx(10, abs=0.5)
    assert r.summary["diameter_cv"] < 0.06
    assert len(r.segments) == 1
    seg = r.segments.iloc[0]
    assert abs((seg["orientation"] - angle + 90) % 180 - 90) < 2
    # the centreline spans the image: its length is the chord of the band
    assert seg["length"] > 0.9 * 160
    assert r.summary["alignment"] == pytest.approx(1.0, abs=1e-6)
    assert r.summary["bead_count"] == 0 and r.summary["n_junctions"] == 0


def test_pixel_size_gives_nm_and_densities_per_um2():
    mask = _bar_mask((128, 128), 45, 8) | _bar_mask((128, 128), 135, 8)
    px = sem.measure_fibers(mask=mask, pores=False)
    nm = sem.measure_fibers(mask=mask, pixel_size=20.0, pores=False)
    assert nm.summary["diameter_median"] == pytest.approx(20 * px.summary["diameter_median"])
    assert nm.segments["length"].sum() == pytest.approx(20 * px.segments["length"].sum())
    assert nm.summary["unit"] == "nm" and nm.summary["density_unit"] == "per um^2"
    # one crossing: one junction; (128 * 20 nm)^2 = 6.5536 um^2
    assert px.summary["n_junctions"] == 1
    assert nm.summary["junction_density"] == pytest.approx(1 / 6.5536)


def test_crossing_fibres_are_perpendicular_segments_with_zero_alignment():
    mask = _bar_mask((200, 200), 0, 9) | _bar_mask((200, 200), 90, 9)
    r = sem.measure_fibers(mask=mask, pores=False)
    assert len(r.segments) == 4
    assert r.summary["alignment"] < 0.05  # two equal perpendicular families cancel
    assert r.summary["diameter_median"] == pytest.approx(9, abs=0.5)
    # labels: every fibre pixel belongs to a segment; the centreline lies inside the mask
    assert np.all((r.fibers > 0) == mask)
    assert np.all(mask[r.centerline > 0])


def test_spindle_bead_is_found_and_left_out_of_the_diameter():
    mask = _bar_mask((120, 240), 0, 8)
    y, x = np.mgrid[:120, :240]
    mask |= ((x - 120) / 24.0) ** 2 + ((y - 60) / 13.0) ** 2 <= 1  # a bead 26 px wide
    r = sem.measure_fibers(mask=mask, pores=False)
    assert r.summary["bead_count"] == 1
    b = r.bead_table.iloc[0]
    assert abs(b["x"] - 120) < 6 and abs(b["y"] - 60) < 3
    assert b["diameter"] == pytest.approx(26, abs=2)
    assert r.beads[60, 120] > 0 and r.beads[60, 10] == 0
    assert r.summary["diameter_median"] == pytest.approx(8, abs=0.5)


def test_bead_filling_a_short_segment_between_crossings_is_found():
    # a spindle that takes most of the fibre between two crossings: the fibre width next to the
    # crossings, not the spindle, is what the bead is judged against
    y, x = np.mgrid[:160, :260]
    mask = np.abs(y - 80) < 4
    mask |= (np.abs(x - 60) < 4) | (np.abs(x - 200) < 4)
    mask |= ((x - 130) / 40.0) ** 2 + ((y - 80) / 12.0) ** 2 <= 1  # 24 px wide, 80 px long
    r = sem.measure_fibers(mask=mask, pores=False)
    spindles = r.bead_table[r.bead_table["kind"] == "spindle"]
    assert len(spindles) == 1
    assert abs(spindles["x"].iloc[0] - 130) < 8 and abs(spindles["y"].iloc[0] - 80) < 3
    assert r.summary["n_junctions"] == 2


def test_fibres_meeting_just_outside_the_image_are_not_a_bead():
    # two fibres crossing at a narrow angle just below the image: their union is wide at the border
    y, x = np.mgrid[:200, :200]
    mask = np.zeros((200, 200), bool)
    for a in (80.0, 100.0):
        t = np.deg2rad(a)
        mask |= np.abs((x - 100) * np.sin(t) + (y - 206) * np.cos(t)) < 4
    r = sem.measure_fibers(mask=mask, pores=False)
    assert r.summary["bead_count"] == 0


def test_generated_mat_diameter_alignment_and_beads():
    s = sem.sample_fibers(5, shape=(512, 512), n_fibers=14, diameter=(10, 10), alignment=0.6, n_beads=6, n_blobs=2)
    r = sem.measure_fibers(s.image, max_diameter=40)
    assert abs(r.summary["diameter_median"] - 10) <= 0.5  # 5 % of the true diameter
    assert abs(r.summary["alignment"] - s.info["alignment"]) <= 0.05
    assert abs((r.summary["orientation_mean"] - s.info["orientation_mean"] + 90) % 180 - 90) < 5
    truth = np.array([(b[0], b[1]) for b in s.info["beads"]])
    found = r.bead_table[["y", "x"]].to_numpy()
    d = np.hypot(*(truth[:, None, :] - found[None, :, :]).transpose(2, 0, 1))
    hits = (d.min(axis=1) < 15).sum()
    assert hits >= len(truth) - 1  # at most one bead missed
    assert len(found) <= len(truth) + 1  # at most one false bead
    assert set(r.bead_table["kind"]) <= {"spindle", "blob"}


def test_sample_fibers_ground_truth():
    s = sem.sample_fibers(0, shape=(256, 256), n_fibers=8, n_beads=2, n_blobs=1)
    assert s.image.dtype == np.uint8 and s.image.shape == (256, 256)
    assert s.labels.max() >= 1 and len(s.info["diameters"]) == s.info["n_fibers"]
    assert 0 <= s.info["alignment"] <= 1
    assert 1 <= len(s.info["beads"]) <= 3 and {b[3] for b in s.info["beads"]} <= {"spindle", "blob"}
    for y, x, _, _ in s.info["beads"]:
        assert s.labels[int(y), int(x)] > 0  # every bead is drawn
    again = sem.sample_fibers(0, shape=(256, 256), n_fibers=8, n_beads=2, n_blobs=1)
    assert np.array_equal(s.image, again.image)


@pytest.mark.parametrize("orientation", [30.0, 135.0])
def test_sample_fibers_bead_lies_along_its_slanted_fibre(orientation):
    # one slanted fibre with one bead: the bead's long axis is the fibre's direction (y up, as the angles)
    s = sem.sample_fibers(
        1,
        shape=(256, 256),
        n_fibers=1,
        diameter=(10, 10),
        orientation=orientation,
        alignment=0.99,
        n_beads=1,
        n_blobs=0,
    )
    (by, bx, bw, kind), ang = s.info["beads"][0], np.deg2rad(s.info["angles"][0])
    assert kind == "spindle"
    y, x = np.mgrid[:256, :256]
    off_axis = np.abs((x - bx) * np.sin(ang) + (y - by) * np.cos(ang))  # distance to the fibre's axis
    lobes = (s.labels > 0) & (off_axis > 10 / 2 + 1.5) & (np.hypot(y - by, x - bx) < 3 * bw)
    assert lobes.sum() > 50  # the bead sticks out of the fibre on both sides
    dy, dx = -(y[lobes] - by), x[lobes] - bx  # y up
    cov = np.cov(np.stack([dx, dy]))
    evals, evecs = np.linalg.eigh(cov)
    long_axis = np.rad2deg(np.arctan2(evecs[1, 1], evecs[0, 1])) % 180
    assert abs((long_axis - np.rad2deg(ang) + 90) % 180 - 90) < 5
    assert evals[1] > 1.2 * evals[0]  # elongated (the lobes outside the fibre are wide caps of the lens)


def test_fiber_features_fixed_length_and_bead_sensitive():
    from napari_sem_analysis.fibers import FIBER_FEATURES

    clean = sem.sample_fibers(2, shape=(384, 384), n_fibers=10, diameter=(8, 8), n_beads=0, n_blobs=0)
    beady = sem.sample_fibers(2, shape=(384, 384), n_fibers=10, diameter=(8, 8), n_beads=8, n_blobs=2)
    fc = sem.fiber_features(clean.image, max_diameter=40)
    fb = sem.fiber_features(beady.image, max_diameter=40)
    assert list(fc) == list(FIBER_FEATURES) == list(fb)
    assert all(np.isfinite(v) for v in fc.values())
    assert fb["fib_beads_per_length"] > fc["fib_beads_per_length"]
    assert fb["fib_bead_area_fraction"] > fc["fib_bead_area_fraction"]


def test_bad_input():
    with pytest.raises(SEMAnalysisError):
        sem.measure_fibers()
    with pytest.raises(SEMAnalysisError):
        sem.measure_fibers(np.zeros((64, 64)))  # constant image
    with pytest.raises(SEMAnalysisError):
        sem.measure_fibers(np.zeros((64, 64, 3, 2)))
    with pytest.raises(SEMAnalysisError):
        sem.measure_fibers(mask=np.ones((40, 40), bool), pixel_size=0)
    with pytest.raises(SEMAnalysisError):
        sem.measure_fibers(mask=np.ones((40, 40), bool), bead_factor=0.5)
    with pytest.raises(SEMAnalysisError):
        sem.measure_fibers(np.ones((40, 40)), mask=np.ones((30, 30), bool))
    with pytest.raises(SEMAnalysisError):
        sem.measure_fibers(np.random.default_rng(0).random((64, 64)), method="magic")
    empty = sem.measure_fibers(mask=np.zeros((64, 64), bool), pores=False)
    assert len(empty.segments) == 0 and empty.summary["bead_count"] == 0


def test_the_diameter_histogram_resolves_the_fibres_despite_a_few_wide_readings():
    # 10-12 px fibres and a few 200-px readings (a blob at a crossing): the fibres must not share one bin
    from napari_sem_analysis.fibers.measure import _diameter_summary

    vals = np.r_[np.linspace(10.0, 12.0, 2000), np.full(5, 200.0)]
    counts, edges = _diameter_summary(vals)["diameter_histogram"]
    assert counts.sum() == vals.size  # every reading counted (the wide ones in the last bin)
    assert counts[-1] == 5 and edges[0] == 0 and edges[-1] < 20
    fibre_bins = (edges[1:] > 10.0) & (edges[:-1] < 12.0)
    assert fibre_bins.sum() >= 4
