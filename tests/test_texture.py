"""GLCM / LBP texture features against scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

from napari_sem_analysis import SEMAnalysisError, glcm_features, lbp_features, texture_map
from napari_sem_analysis.texture import glcm_offsets, quantize, tile_labels

SK_PROPS = ["contrast", "dissimilarity", "homogeneity", "energy", "ASM", "correlation", "entropy", "mean", "variance"]
ANGLES = (0, 45, 90, 135, 30)
DISTANCES = (1, 2)


def _random_case(rng, shape=(48, 56), n_labels=6, block=8):
    image = rng.integers(0, 256, shape).astype(np.uint8)
    coarse = rng.integers(0, n_labels + 1, (shape[0] // block + 1, shape[1] // block + 1))
    labels = coarse.repeat(block, 0).repeat(block, 1)[: shape[0], : shape[1]]
    labels = labels * 3  # non-consecutive label values
    labels[5, 5] = 97  # a one-pixel region: no pairs at all
    return image, labels.astype(np.int32)


def _skimage_region(q, labels, lab, levels, symmetric):
    """scikit-image GLCM of one region: pixels outside it get an ignored extra level."""
    crop = q.astype(np.uint16).copy()
    crop[labels != lab] = levels
    P = graycomatrix(crop, DISTANCES, np.deg2rad(ANGLES), levels=levels + 1, symmetric=symmetric)
    return P[:levels, :levels]


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("levels", [256, 8])
def test_glcm_equals_skimage_per_region(rng, symmetric, levels):
    image, labels = _random_case(rng)
    props = [p.lower() for p in SK_PROPS]
    table = glcm_features(
        image,
        labels,
        distances=DISTANCES,
        angles=ANGLES,
        levels=levels,
        symmetric=symmetric,
        properties=props,
        average=False,
    )
    q, _ = quantize(image, levels)
    assert list(table["label"]) == sorted(np.unique(labels[labels > 0]))
    checked = 0
    for _, row in table.iterrows():
        P = _skimage_region(q, labels, row["label"], levels, symmetric)
        for p in SK_PROPS:
            ref = graycoprops(P, p)
            for di, d in enumerate(DISTANCES):
                for ai, a in enumerate(ANGLES):
                    got = row[f"glcm_{p.lower()}_d{d}_a{a}"]
                    if P[:, :, di, ai].sum() == 0:
                        assert np.isnan(got)  # no pixel pair in this region at this offset
                    else:
                        assert got == pytest.approx(ref[di, ai], abs=1e-6, rel=1e-9)
                        checked += 1
    assert checked > 500


def test_glcm_average_is_mean_over_offsets(rng):
    image, labels = _random_case(rng)
    avg = glcm_features(image, labels, distances=DISTANCES, angles=ANGLES, levels=16)
    per = glcm_features(image, labels, distances=DISTANCES, angles=ANGLES, levels=16, average=False)
    cols = [c for c in per.columns if c.startswith("glcm_entropy_")]
    big = avg["label"] != 97
    np.testing.assert_allclose(avg.loc[big, "glcm_entropy"], per.loc[big, cols].mean(axis=1), rtol=1e-12)
    assert np.isnan(avg.loc[avg["label"] == 97, "glcm_entropy"]).all()
    assert set(avg.columns) == {
        "label",
        *(f"glcm_{p}" for p in ("contrast", "dissimilarity", "homogeneity", "energy", "asm", "correlation", "entropy")),
    }


def test_glcm_whole_image_and_tiles_equal_skimage(rng):
    image = rng.integers(0, 256, (40, 50)).astype(np.uint8)
    whole = glcm_features(image, levels=256)
    P = graycomatrix(image, [1], np.deg2rad([0, 45, 90, 135]), levels=256, symmetric=True, normed=True)
    assert whole["glcm_contrast"][0] == pytest.approx(graycoprops(P, "contrast").mean(), rel=1e-12)
    assert whole["glcm_correlation"][0] == pytest.approx(graycoprops(P, "correlation").mean(), rel=1e-9)

    # uint8 with the default levels: the raw grey values, no quantisation (levels=256)
    default = glcm_features(image, np.ones(image.shape, int))
    assert default.attrs["glcm"]["levels"] == 256
    assert default["glcm_entropy"][0] == pytest.approx(graycoprops(P, "entropy").mean(), rel=1e-12)
    assert default["glcm_contrast"][0] == whole["glcm_contrast"][0]

    tiles = glcm_features(image, tile_size=16, levels=32)
    assert len(tiles) == 3 * 4  # partial tiles at the right and bottom edges kept
    q, _ = quantize(image, 32)
    for _, t in tiles.iterrows():
        y, x, h, w = (int(t[k]) for k in ("y", "x", "height", "width"))
        crop = q[y : y + h, x : x + w]
        P = graycomatrix(crop, [1], np.deg2rad([0, 45, 90, 135]), levels=32, symmetric=True, normed=True)
        assert t["glcm_entropy"] == pytest.approx(graycoprops(P, "entropy").mean(), abs=1e-9)
        assert t["glcm_homogeneity"] == pytest.approx(graycoprops(P, "homogeneity").mean(), abs=1e-9)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("many_levels", [False, True])  # the one-bincount path, and the region path it falls back to
def test_glcm_properties_of_the_whole_image_equal_skimage_and_the_region_path(rng, monkeypatch, symmetric, many_levels):
    from napari_sem_analysis.texture import glcm, glcm_properties

    levels = 16
    if many_levels:
        # "too many levels for one bincount" (over 2048 in use) made small: the same fallback path, without
        # a 4096² x offsets co-occurrence matrix in scikit-image (minutes and gigabytes) as the reference
        monkeypatch.setattr(glcm, "_DENSE_BINS", levels * levels - 1)
    image = rng.integers(0, levels, (37, 45)).astype(np.uint16)
    props = [p.lower() for p in SK_PROPS]
    got = glcm_properties(
        image,
        distances=DISTANCES,
        angles=ANGLES,
        levels=levels,
        value_range=(0, levels),
        symmetric=symmetric,
        properties=props,
    )
    P = graycomatrix(image, DISTANCES, np.deg2rad(ANGLES), levels=levels, symmetric=symmetric, normed=True)
    region = glcm_features(
        image,
        np.ones(image.shape, int),
        distances=DISTANCES,
        angles=ANGLES,
        levels=levels,
        value_range=(0, levels),
        symmetric=symmetric,
        properties=props,
        average=False,
    )
    for p in SK_PROPS:
        assert got[p.lower()].shape == (len(DISTANCES), len(ANGLES))
        np.testing.assert_allclose(got[p.lower()], graycoprops(P, p), rtol=1e-9, atol=1e-9)
        for di, d in enumerate(DISTANCES):
            for ai, a in enumerate(ANGLES):
                assert got[p.lower()][di, ai] == pytest.approx(
                    region[f"glcm_{p.lower()}_d{d}_a{a}"][0], rel=1e-9, abs=1e-12
                )
    # an offset longer than the image has no pixel pair: NaN, as in glcm_features
    assert np.isnan(
        glcm_properties(image[:3], distances=(5,), angles=(90,), levels=levels, value_range=(0, levels))["contrast"]
    ).all()


def test_quantize_and_offsets(rng):
    img8 = rng.integers(0, 256, (10, 10)).astype(np.uint8)
    q, n = quantize(img8)
    assert n == 256 and np.array_equal(q, img8)  # levels=256 on uint8: no quantisation
    q, n = quantize(img8, 8)
    assert np.array_equal(q, img8 // 32)
    img16 = rng.integers(1000, 5000, (10, 10)).astype(np.uint16)
    q, n = quantize(img16, 16)
    assert n == 16 and q.min() == 0 and q.max() == 15
    q2, _ = quantize(img16, 16, value_range=(0, 65536))
    assert np.array_equal(q2, img16 // 4096)
    # scikit-image's pixel offsets (rows down for 90 degrees)
    assert [o[:2] for o in glcm_offsets([1], [0, 45, 90, 135])] == [(0, 1), (1, 1), (1, 0), (1, -1)]


def test_lbp_features_equal_skimage_histograms(rng):
    image, labels = _random_case(rng)
    table = lbp_features(image, labels, P=8, R=1)
    codes = local_binary_pattern(image, 8, 1, method="uniform").astype(int)
    assert [c for c in table.columns if c.startswith("lbp_")] == [f"lbp_{k}" for k in range(10)]
    for _, row in table.iterrows():
        ref = np.bincount(codes[labels == row["label"]], minlength=10) / (labels == row["label"]).sum()
        np.testing.assert_allclose(row[[f"lbp_{k}" for k in range(10)]].to_numpy(float), ref, atol=1e-12)
    tiles = lbp_features(image, tile_size=20)
    np.testing.assert_allclose(tiles.filter(like="lbp_").sum(axis=1), 1.0)
    assert len(tiles) == 3 * 3  # 48 x 56 in 20 px tiles, partial tiles kept
    for _, t in tiles.iterrows():
        y, x, h, w = (int(t[k]) for k in ("y", "x", "height", "width"))
        ref = np.bincount(codes[y : y + h, x : x + w].ravel(), minlength=10) / (h * w)
        np.testing.assert_allclose(t[[f"lbp_{k}" for k in range(10)]].to_numpy(float), ref, atol=1e-12)


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("feature", ["contrast", "dissimilarity", "homogeneity", "mean", "variance", "correlation"])
def test_texture_map_linear_features_equal_window_glcm(rng, feature, symmetric):
    image = rng.integers(0, 256, (30, 34)).astype(np.uint8)
    window = 7
    out = texture_map(image, feature, window=window, levels=16, symmetric=symmetric)
    assert out.shape == image.shape
    q, _ = quantize(image, 16)
    for r, c in [(0, 0), (3, 3), (15, 20), (29, 33), (29, 0), (12, 32)]:
        r0, c0 = max(0, r - window // 2), max(0, c - window // 2)
        crop = q[r0 : r - window // 2 + window, c0 : c - window // 2 + window]
        P = graycomatrix(crop, [1], np.deg2rad([0, 45, 90, 135]), levels=16, symmetric=symmetric, normed=True)
        assert out[r, c] == pytest.approx(graycoprops(P, feature).mean(), rel=1e-5, abs=1e-5)


def test_texture_map_block_features_exact_at_grid_nodes(rng):
    image = rng.integers(0, 256, (33, 33)).astype(np.uint8)
    window = 8
    out = texture_map(image, "entropy", window=window, levels=8)
    q, _ = quantize(image, 8)
    for r, c in [(0, 0), (4, 8), (16, 12)]:  # grid nodes: multiples of window // 2
        crop = q[max(0, r - 4) : r + 4, max(0, c - 4) : c + 4]
        P = graycomatrix(crop, [1], np.deg2rad([0, 45, 90, 135]), levels=8, symmetric=True, normed=True)
        assert out[r, c] == pytest.approx(graycoprops(P, "entropy").mean(), rel=1e-5)
    assert np.isfinite(out).all()


def test_texture_distinguishes_smooth_from_rough(rng):
    smooth = np.tile(np.linspace(0, 255, 64), (64, 1)).astype(np.uint8)
    rough = rng.integers(0, 256, (64, 64)).astype(np.uint8)
    image = np.hstack([smooth, rough])
    labels = np.hstack([np.ones((64, 64), int), 2 * np.ones((64, 64), int)])
    t = glcm_features(image, labels, levels=32).set_index("label")
    assert t.loc[2, "glcm_contrast"] > 20 * t.loc[1, "glcm_contrast"]
    assert t.loc[1, "glcm_correlation"] > 0.9 > abs(t.loc[2, "glcm_correlation"])
    cmap = texture_map(image, "contrast", window=9, levels=32)
    assert cmap[:, 70:].mean() > 20 * cmap[:, :58].mean()


def test_tile_labels_cover_image():
    labels, table = tile_labels((10, 13), 4)
    assert labels.min() == 1 and labels.max() == len(table) == 3 * 4
    assert table["height"].sum() == 10 * 4 and table["width"].sum() == 13 * 3


def test_bad_input(rng):
    image = rng.integers(0, 256, (20, 20)).astype(np.uint8)
    with pytest.raises(SEMAnalysisError, match="do not match"):
        glcm_features(image, np.ones((10, 10), int))
    with pytest.raises(SEMAnalysisError, match="levels"):
        glcm_features(image, levels=1)
    with pytest.raises(SEMAnalysisError, match="levels"):
        glcm_features(image, levels=300)  # more than a uint8 has
    with pytest.raises(SEMAnalysisError, match="either labels or tile_size"):
        glcm_features(image, np.ones((20, 20), int), tile_size=5)
    with pytest.raises(SEMAnalysisError, match="unknown texture properties"):
        glcm_features(image, properties=["nonsense"])
    with pytest.raises(SEMAnalysisError, match="negative"):
        glcm_features(image, -np.ones((20, 20), int))
    with pytest.raises(SEMAnalysisError, match="colour"):
        glcm_features(np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(SEMAnalysisError, match="window"):
        texture_map(image, "contrast", window=1)
    with pytest.raises(SEMAnalysisError, match="smaller than the window"):
        texture_map(image, "contrast", window=3, distance=3)
    with pytest.raises(SEMAnalysisError, match="unknown texture feature"):
        texture_map(image, "sharpness")
    with pytest.raises(SEMAnalysisError):
        lbp_features(image, P=0)
    # empty labels: a table with the right columns and no rows
    empty = glcm_features(image, np.zeros((20, 20), int))
    assert len(empty) == 0 and "glcm_entropy" in empty.columns
    assert len(lbp_features(image, np.zeros((20, 20), int))) == 0
    # constant image: correlation 1 (scikit-image's convention), contrast 0
    flat = glcm_features(np.full((10, 10), 7, np.uint8))
    assert flat["glcm_contrast"][0] == 0 and flat["glcm_correlation"][0] == 1 and flat["glcm_energy"][0] == 1


def test_huge_and_sparse_label_values(rng):
    image, labels = _random_case(rng)
    ref = glcm_features(image, labels, levels=16)
    for factor in (1000, 2**40):  # lookup table / binary search paths
        big = labels.astype(np.int64) * factor
        t = glcm_features(image, big, levels=16)
        assert list(t["label"]) == [v * factor for v in ref["label"]]
        np.testing.assert_allclose(t.drop(columns="label"), ref.drop(columns="label"), equal_nan=True)
        lb = lbp_features(image, big)
        assert len(lb) == len(ref)


@pytest.mark.parametrize("levels", [8, 20])
def test_dense_and_sorted_paths_agree(rng, monkeypatch, levels):
    from napari_sem_analysis.texture import glcm as texture

    image, labels = _random_case(rng)
    props = ["contrast", "dissimilarity", "homogeneity", "energy", "asm", "correlation", "entropy", "mean", "variance"]
    for symmetric in (True, False):
        monkeypatch.setattr(texture, "_DENSE_BINS", 1 << 40)
        dense = glcm_features(image, labels, levels=levels, symmetric=symmetric, properties=props, average=False)
        monkeypatch.setattr(texture, "_DENSE_BINS", 0)
        sparse = glcm_features(image, labels, levels=levels, symmetric=symmetric, properties=props, average=False)
        np.testing.assert_allclose(dense, sparse, rtol=1e-9, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("feature", ["contrast", "correlation", "entropy"])
def test_texture_map_work_does_not_grow_with_the_window(rng, monkeypatch, feature):
    """Dense maps cost O(pixels) whatever the window: count the pixels every pass touches."""
    from napari_sem_analysis.texture import maps as texture

    touched = []
    box_sums, glcm = texture._box_sums, texture.glcm_features

    def counting_box_sums(values, rows, cols):
        touched.append(values.size)
        return box_sums(values, rows, cols)

    def counting_glcm(image, labels=None, **kw):
        touched.append(int((np.asarray(labels) > 0).sum()))
        return glcm(image, labels, **kw)

    monkeypatch.setattr(texture, "_box_sums", counting_box_sums)
    monkeypatch.setattr(texture, "glcm_features", counting_glcm)
    image = rng.integers(0, 256, (96, 96)).astype(np.uint8)
    work = {}
    for window in (4, 16, 64):
        touched.clear()
        texture_map(image, feature, window=window, levels=16)
        work[window] = sum(touched)
    assert work[4] > 0
    # a sliding window recomputed at every pixel would touch window^2 x more pixels (256x from 4 to 64)
    assert max(work.values()) <= 2.5 * min(work.values()), work


@pytest.mark.parametrize("levels", [256, 8])
@pytest.mark.parametrize("path", ["dense", "sorted"])
def test_threaded_offsets_give_the_sequential_result(rng, monkeypatch, levels, path):
    """Large images run their offsets in threads: the numbers must not depend on it."""
    from concurrent import futures

    from napari_sem_analysis.texture import glcm as texture

    monkeypatch.setattr(texture, "_DENSE_BINS", 1 << 40 if path == "dense" else 0)
    image, labels = _random_case(rng, shape=(200, 240), n_labels=40, block=10)
    props = ["contrast", "dissimilarity", "homogeneity", "energy", "asm", "correlation", "entropy", "mean", "variance"]
    kw = dict(distances=DISTANCES, angles=ANGLES, levels=levels, properties=props, average=False)
    sequential = glcm_features(image, labels, **kw)
    pools = []
    real_pool = futures.ThreadPoolExecutor

    def counting_pool(*args, **kwargs):
        pools.append(kwargs.get("max_workers"))
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(futures, "ThreadPoolExecutor", counting_pool)
    monkeypatch.setattr(texture, "_THREADED_PIXELS", 0)
    monkeypatch.setattr(texture.os, "cpu_count", lambda: 4)
    threaded = glcm_features(image, labels, **kw)
    assert pools == [4]  # the threaded path really ran (10 offsets, 4 threads)
    np.testing.assert_array_equal(threaded.to_numpy(), sequential.to_numpy())
