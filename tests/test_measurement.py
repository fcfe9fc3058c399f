"""Object measurements: against scikit-image and analytic shapes of known size in nm."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from skimage.measure import label as sk_label
from skimage.measure import regionprops_table

from napari_sem_analysis import SEMAnalysisError, glcm_features, measure, summarize
from napari_sem_analysis.measurement import object_outlines, oriented_boxes

PS = 7.344  # nm per pixel (the BAM micrographs)


def _blobs(rng, shape=(160, 180)):
    mask = ndi.gaussian_filter(rng.random(shape), 3) > 0.52
    labels = sk_label(mask, connectivity=1)
    labels[labels > 0] += 10  # non-consecutive label values
    image = rng.integers(0, 256, shape).astype(np.uint8)
    return labels, image


def _disc(shape, center, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def test_equals_regionprops(rng):
    labels, image = _blobs(rng)
    table = measure(labels, image, pixel_size=PS, texture=False)
    ref = regionprops_table(
        labels,
        image,
        spacing=(PS, PS),
        properties=[
            "label",
            "area",
            "perimeter",
            "major_axis_length",
            "minor_axis_length",
            "orientation",
            "eccentricity",
            "centroid",
            "equivalent_diameter_area",
            "intensity_mean",
            "intensity_std",
            "intensity_min",
            "intensity_max",
        ],
    )
    assert len(table) == len(ref["label"]) > 10
    np.testing.assert_array_equal(table["label"], ref["label"])
    pairs = {
        "area": "area",
        "equivalent_diameter": "equivalent_diameter_area",
        "major_axis": "major_axis_length",
        "minor_axis": "minor_axis_length",
        "eccentricity": "eccentricity",
        "centroid_y": "centroid-0",
        "centroid_x": "centroid-1",
        "intensity_mean": "intensity_mean",
        "intensity_std": "intensity_std",
        "intensity_min": "intensity_min",
        "intensity_max": "intensity_max",
    }
    for ours, theirs in pairs.items():
        np.testing.assert_allclose(table[ours], ref[theirs], rtol=1e-9, atol=1e-9, err_msg=ours)
    np.testing.assert_allclose(table["perimeter"], ref["perimeter"], rtol=1e-9)
    # orientations are axes: +90 and -90 degrees are the same (scikit-image's sign at exactly 90 is arbitrary)
    d = np.deg2rad(table["orientation"]) - ref["orientation"]
    np.testing.assert_allclose((d + np.pi / 2) % np.pi - np.pi / 2, 0, atol=1e-9)
    assert ((table["orientation"] > -90) & (table["orientation"] <= 90)).all()
    assert (table["solidity"] <= 1).all() and (table["solidity"] > 0).all()
    assert table.attrs["units"]["area"] == "nm^2" and table.attrs["units"]["feret_max"] == "nm"
    assert table.attrs["image_area"] == pytest.approx(labels.size * PS**2)


def test_disc_and_square_of_known_size_in_nm():
    shape = (220, 220)
    labels = np.zeros(shape, np.int32)
    r = 40  # px
    labels[_disc(shape, (60, 60), r)] = 1
    labels[120:180, 110:170] = 2  # 60 x 60 px square
    labels[200:204, 20:100] = 3  # 4 x 80 px bar
    t = measure(labels, pixel_size=PS).set_index("label")
    disc, square, bar = t.loc[1], t.loc[2], t.loc[3]
    # disc of radius 40 px = 293.76 nm
    assert disc["area"] == pytest.approx(np.pi * (r * PS) ** 2, rel=0.01)
    assert disc["equivalent_diameter"] == pytest.approx(2 * r * PS, abs=PS)
    # caliper widths of the pixel squares: diameter of pixel centres + 1 px
    assert disc["feret_max"] == pytest.approx((2 * r + 1) * PS, abs=0.5 * PS)
    assert 2 * r * PS <= disc["feret_min"] <= disc["feret_max"] <= (2 * r + 1.5) * PS
    assert disc["solidity"] == 1.0
    assert disc["aspect_ratio"] == pytest.approx(1.0, abs=0.01)
    assert disc["eccentricity"] < 0.1
    assert 0.85 < disc["circularity"] <= 1.0
    assert disc["centroid_y"] == pytest.approx(60 * PS) and disc["centroid_x"] == pytest.approx(60 * PS)
    # square of 60 px = 440.64 nm
    side = 60 * PS
    assert square["area"] == pytest.approx(side**2)
    assert square["feret_max"] == pytest.approx(side * np.sqrt(2))
    assert square["feret_min"] == pytest.approx(side)
    assert square["solidity"] == 1.0
    assert square["perimeter"] == pytest.approx(4 * 59 * PS)  # skimage's pixel-centre perimeter
    # horizontal bar: major axis along the columns -> orientation 90 deg, aspect ratio ~ 80/4
    assert abs(bar["orientation"]) == pytest.approx(90.0)
    assert bar["aspect_ratio"] == pytest.approx(80 / 4, rel=0.05)
    assert bar["feret_min"] == pytest.approx(4 * PS)
    assert bar["feret_max"] == pytest.approx(np.hypot(80, 4) * PS)


def _calipers_brute_force(mask):
    """Largest and smallest caliper widths of the pixel squares, without OpenCV or edge tricks:
    all pairs of hull vertices (scipy) and the width over 100,000 directions."""
    from scipy.spatial import ConvexHull

    rr, cc = np.nonzero(mask)
    corners = np.concatenate([np.stack([rr + dy, cc + dx], 1) for dy in (-0.5, 0.5) for dx in (-0.5, 0.5)])
    hull = corners[ConvexHull(corners).vertices]
    fmax = np.sqrt(((hull[:, None] - hull[None]) ** 2).sum(-1)).max()
    angles = np.linspace(0, np.pi, 100_000, endpoint=False)
    proj = hull @ np.stack([np.cos(angles), np.sin(angles)])
    return fmax, (proj.max(0) - proj.min(0)).min(), np.ptp(hull, axis=0).max() * np.pi / 100_000


@pytest.mark.parametrize("theta", [0.3, 0.7, 1.1, 2.5])
def test_feret_of_rotated_bars_equals_brute_force(theta):
    yy, xx = np.mgrid[:200, :200]
    u = (yy - 100) * np.cos(theta) + (xx - 100) * np.sin(theta)
    v = -(yy - 100) * np.sin(theta) + (xx - 100) * np.cos(theta)
    bar = (np.abs(u) < 50) & (np.abs(v) < 12)  # about 100 x 24 px, rotated
    t = measure(bar.astype(np.int32), pixel_size=PS)
    fmax, fmin, step_error = _calipers_brute_force(bar)
    assert t["feret_max"][0] == pytest.approx(fmax * PS, rel=1e-12)
    # the sampled minimum can only overshoot the true one, by at most diameter x angle step
    assert fmin * PS - 1e-9 >= t["feret_min"][0] >= (fmin - 2 * step_error) * PS
    assert 24 * PS < t["feret_min"][0] < 26 * PS and 100 * PS < t["feret_max"][0] < 104 * PS


def test_units_without_pixel_size_and_concave_solidity():
    labels = np.zeros((50, 50), np.int32)
    labels[10:40, 10:40] = 1
    labels[10:30, 20:30] = 0  # U shape
    t = measure(labels)
    assert t.attrs["unit"] == "px" and t.attrs["units"]["area"] == "px^2"
    assert t["area"][0] == 900 - 200
    assert t["solidity"][0] == pytest.approx(700 / 900)
    assert "intensity_mean" not in t.columns  # no image: no intensity or texture columns


def test_texture_columns_equal_glcm_features(rng):
    labels, image = _blobs(rng, (80, 90))
    t = measure(labels, image, glcm_levels=16)
    g = glcm_features(image, labels, levels=16)
    for col in [c for c in g.columns if c.startswith("glcm_")]:
        np.testing.assert_allclose(t[col], g[col], equal_nan=True)
    lbp = [c for c in t.columns if c.startswith("lbp_")]
    assert lbp == [f"lbp_{k}" for k in range(10)]
    np.testing.assert_allclose(t[lbp].sum(axis=1), 1.0)


def test_empty_giant_and_many_tiny_labels(rng):
    image = rng.integers(0, 256, (40, 40)).astype(np.uint8)
    full = measure(np.zeros((40, 40), int), image)
    assert len(full) == 0
    assert {"label", "area", "feret_max", "intensity_mean", "glcm_contrast", "lbp_9"} <= set(full.columns)
    assert len(summarize(full)) == 1 and summarize(full).loc["all", "count"] == 0

    giant = measure(np.ones((40, 40), int), image, pixel_size=2.0)
    assert len(giant) == 1 and giant["area"][0] == 1600 * 4.0
    assert giant["feret_max"][0] == pytest.approx(40 * np.sqrt(2) * 2.0)

    # 100,000 one-pixel labels (every other pixel of a 632 x 632 grid... on a checkerboard)
    tiny = np.zeros((448, 448), np.int32)
    yy, xx = np.mgrid[:448, :448]
    on = (yy + xx) % 2 == 0
    tiny[on] = np.arange(1, on.sum() + 1)
    t = measure(tiny)
    assert len(t) == on.sum() == 100_352
    assert (t["area"] == 1).all()
    np.testing.assert_allclose(t["feret_max"], np.sqrt(2))
    np.testing.assert_allclose(t["feret_min"], 1.0)
    assert (t["solidity"] == 1).all()


def test_classes_and_summary():
    shape = (200, 200)
    labels = np.zeros(shape, np.int32)
    classes = np.zeros(shape, np.int32)
    radii = [5, 8, 10, 12, 15]
    centres = [(30, 30), (30, 100), (30, 170), (110, 60), (110, 150)]
    for i, (c, r) in enumerate(zip(centres, radii), start=1):
        m = _disc(shape, c, r)
        labels[m] = i
        classes[m] = 1 if r < 10 else 2
    t = measure(labels, pixel_size=PS, classes=classes)
    assert list(t["class"]) == [1, 1, 2, 2, 2]
    s = summarize(t)
    assert list(s.index) == ["all", 1, 2]
    assert s.loc["all", "count"] == 5 and s.loc[2, "count"] == 3
    field = shape[0] * shape[1] * PS**2
    assert s.loc["all", "number_density"] == pytest.approx(5 / field)
    assert s.loc["all", "number_density_per_um2"] == pytest.approx(5 / field * 1e6)
    assert s.loc["all", "area_fraction"] == pytest.approx((labels > 0).mean())
    eq = t["equivalent_diameter"].to_numpy()
    assert s.loc["all", "d50"] == pytest.approx(np.median(eq))
    assert s.loc["all", "d10"] < s.loc["all", "d50"] < s.loc["all", "d90"]
    assert s.loc[2, "d50"] == pytest.approx(eq[3])
    # area-weighted distribution leans to the big discs
    assert summarize(t, weight="area").loc["all", "d50"] > s.loc["all", "d50"]
    # mapping form of classes
    t2 = measure(labels, classes={1: "a", 2: "a", 3: "b", 4: "b", 5: "b"})
    assert list(summarize(t2).index) == ["all", "a", "b"]


def test_geometry_helpers():
    labels = np.zeros((60, 60), np.int32)
    labels[10:20, 10:40] = 4
    labels[_disc((60, 60), (40, 40), 8)] = 7
    present, boxes = oriented_boxes(labels)
    assert list(present) == [4, 7]
    rect = boxes[0]
    sides = sorted(np.linalg.norm(rect - np.roll(rect, 1, axis=0), axis=1))
    np.testing.assert_allclose(sides, [10, 10, 30, 30], atol=1e-4)
    present, polys = object_outlines(labels)
    assert len(polys) == 2
    assert polys[0][:, 0].min() == pytest.approx(10, abs=1) and polys[0][:, 1].max() == pytest.approx(39, abs=1)


def test_bad_input(rng):
    labels, image = _blobs(rng, (30, 30))
    with pytest.raises(SEMAnalysisError, match="different|differ"):
        measure(labels, image[:20])
    with pytest.raises(SEMAnalysisError, match="integer"):
        measure(labels.astype(float))
    with pytest.raises(SEMAnalysisError, match="negative"):
        measure(-labels)
    with pytest.raises(SEMAnalysisError, match="pixel_size"):
        measure(labels, pixel_size=-1)
    with pytest.raises(SEMAnalysisError, match="class map"):
        measure(labels, classes=np.zeros((3, 3), int))
    with pytest.raises(SEMAnalysisError):
        summarize(pd.DataFrame({"x": [1]}))
    with pytest.raises(SEMAnalysisError, match="weight"):
        summarize(measure(labels), weight="volume")


def test_huge_label_values(rng):
    labels, image = _blobs(rng, (60, 70))
    ref = measure(labels, image, glcm_levels=16)
    big = labels.astype(np.int64) * 2**40
    t = measure(big, image, glcm_levels=16)
    assert list(t["label"]) == [v * 2**40 for v in ref["label"]]
    np.testing.assert_allclose(t.drop(columns="label"), ref.drop(columns="label"), equal_nan=True)


def test_one_big_object_among_many_tiny_ones():
    shape = (420, 420)
    labels = np.zeros(shape, np.int32)
    labels[_disc(shape, (210, 210), 150)] = 1
    yy, xx = np.mgrid[0:420:3, 0:420:3]
    outside = (yy - 210) ** 2 + (xx - 210) ** 2 > 155**2
    labels[yy[outside], xx[outside]] = np.arange(2, outside.sum() + 2)
    t = measure(labels).set_index("label")
    assert len(t) == outside.sum() + 1
    assert 300 <= t.loc[1, "feret_min"] <= t.loc[1, "feret_max"] <= 302.5
    assert t.loc[1, "solidity"] == 1.0
    tiny = t.drop(index=1)
    np.testing.assert_allclose(tiny["feret_max"], np.sqrt(2))
    assert (tiny["solidity"] == 1).all() and (tiny["area"] == 1).all()


def test_a_mask_of_separate_regions_warns_that_it_is_one_object():
    """A thresholded mask (every object pixel 1) is one object: the user is told to label it."""
    mask = np.zeros((60, 60), bool)
    mask[_disc((60, 60), (15, 15), 6)] = True
    mask[_disc((60, 60), (40, 40), 9)] = True
    for m in (mask, mask.astype(np.uint8)):  # bool, and the 0/1 uint8 the Threshold widget writes
        with pytest.warns(UserWarning, match="2 separate regions.*ONE object"):
            t = measure(m, pixel_size=PS)
        assert len(t) == 1
    # labelled, or one connected region: no warning, one row per object
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(measure(sk_label(mask, connectivity=1), pixel_size=PS)) == 2
        assert len(measure(_disc((60, 60), (30, 30), 10))) == 1


def test_bam_hand_drawn_masks_counts_and_diameters_in_nm(shared_data):
    """Real Zeiss micrographs: the reader's pixel size, 4-connected hand-drawn particles counted exactly."""
    import tifffile
    from skimage.measure import regionprops_table as rpt

    from napari_sem_analysis import read_sem

    root = shared_data / "bam-tio2-sem"
    masks = sorted((root / "masks").glob("*_m.tif"))[:3]
    if not masks:
        pytest.skip("no BAM TiO2 masks in the shared data")
    for mpath in masks:
        img = read_sem(root / "images" / mpath.name.replace("_m.tif", ".tif"))
        assert img.pixel_size == pytest.approx(7.344, rel=1e-3)
        mask = tifffile.imread(mpath)
        mask = (mask[..., 0] if mask.ndim == 3 else mask)[: img.data.shape[0], : img.data.shape[1]] > 0
        labels = sk_label(mask, connectivity=1)
        t = measure(labels, img.data, pixel_size=img.pixel_size, texture=True)
        n_ref = ndi.label(mask)[1]  # scipy's default structure: 4-connected
        assert len(t) == n_ref > 20
        ref = rpt(labels, spacing=(img.pixel_size,) * 2, properties=["equivalent_diameter_area"])
        median = float(np.median(t["equivalent_diameter"]))
        assert median == pytest.approx(np.median(ref["equivalent_diameter_area"]), rel=1e-9)
        assert 100 < median < 300  # TiO2 particles of ~100-300 nm, in nm (not px)
        assert t.attrs["units"]["equivalent_diameter"] == "nm"
        assert t[[c for c in t.columns if c.startswith("glcm_")]].notna().any(axis=None)


def test_benchmark_script_runs_and_checks_against_the_references():
    """benchmarks/bench_measure.py at a small size: equal numbers, ratios printed from one run."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_measure.py"
    spec = importlib.util.spec_from_file_location("bench_measure", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    res = bench.run_all(256, levels=(256, 16))
    for g in res["glcm"]:
        assert g["regions"] >= 10 and g["max_abs_diff"] < 1e-6
        assert g["speedup"] > 0 and g["reference_s"] > 0
    assert res["measure"]["area_equal"] and res["measure"]["perimeter_equal"]
    assert [r["window"] for r in res["texture_map"]] == [5, 15, 31, 63]
