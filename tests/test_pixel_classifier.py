"""Trainable pixel classifier: learns from a few strokes, saves safely, tiles exactly."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from napari_sem_analysis import PixelClassifier, SEMAnalysisError, pixel_features
from napari_sem_analysis.pixel_classifier.features import FeatureCache


def _halves(shape=(128, 128)):
    """Left half class 1, right half class 2."""
    truth = np.ones(shape, np.uint8)
    truth[:, shape[1] // 2 :] = 2
    return truth


def _strokes(truth, width=2):
    """A short vertical stroke in the middle of each half (about 2 % of the pixels)."""
    h, w = truth.shape
    scr = np.zeros_like(truth)
    scr[h // 4 : 3 * h // 4, w // 4 - width // 2 : w // 4 + width // 2 + 1] = 1
    scr[h // 4 : 3 * h // 4, 3 * w // 4 - width // 2 : 3 * w // 4 + width // 2 + 1] = 2
    return scr


def _accuracy(pred, truth, margin=8):
    """Agreement away from the class boundary (the middle column band)."""
    w = truth.shape[1]
    keep = np.ones(truth.shape, bool)
    keep[:, w // 2 - margin : w // 2 + margin] = False
    return float((pred[keep] == truth[keep]).mean())


def test_classes_by_intensity(rng):
    truth = _halves()
    img = (80 + 60 * (truth == 2) + rng.normal(0, 12, truth.shape)).clip(0, 255).astype(np.uint8)
    clf = PixelClassifier(scales=(1, 2, 4), n_estimators=20).fit(img, _strokes(truth))
    pred = clf.predict(img)
    assert pred.dtype == np.uint8 and set(np.unique(pred)) <= {1, 2}
    assert _accuracy(pred, truth) > 0.97


def test_classes_by_texture_same_mean(rng):
    # same mean and same global histogram width: one half smooth, the other grainy
    truth = _halves()
    smooth = rng.normal(0, 1, truth.shape)
    from scipy import ndimage as ndi

    smooth = ndi.gaussian_filter(smooth, 3)
    smooth *= 1 / smooth.std()
    grainy = rng.normal(0, 1, truth.shape)
    img = np.where(truth == 1, smooth, grainy) * 20 + 128
    img = img.clip(0, 255).astype(np.uint8)
    clf = PixelClassifier(features=("std", "gradient", "hessian"), scales=(1, 2, 4), n_estimators=20)
    pred = clf.fit(img, _strokes(truth)).predict(img)
    assert _accuracy(pred, truth) > 0.93
    # the mean intensity alone cannot separate them
    means = [img[truth == k].mean() for k in (1, 2)]
    assert abs(means[0] - means[1]) < 3


def test_classes_by_scale(rng):
    # bright dots: small (r=2) on the left, large (r=7) on the right, on the same background
    h, w = 160, 160
    img = np.full((h, w), 60.0)
    yy, xx = np.mgrid[:h, :w]
    truth = _halves((h, w))
    for cy in range(10, h, 20):
        for cx in range(10, w, 20):
            r = 2 if cx < w // 2 else 7
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 200
    img = (img + rng.normal(0, 5, img.shape)).astype(np.float32)
    scr = np.zeros((h, w), np.uint8)
    scr[40:120, 28:32] = 1  # strokes across dots and background of each half
    scr[40:120, 108:112] = 2
    clf = PixelClassifier(scales=(1, 2, 4, 8), n_estimators=30).fit(img, scr)
    pred = clf.predict(img)
    # a threshold cannot do this: the dots have the same brightness
    assert _accuracy(pred, truth, margin=12) > 0.9


def test_several_images_and_proba(rng):
    truth = _halves()
    imgs = [(80 + 60 * (truth == 2) + rng.normal(0, 12, truth.shape)).astype(np.float32) for _ in range(2)]
    scr_a = np.zeros_like(truth)
    scr_a[20:100, 30:34] = 1
    scr_b = np.zeros_like(truth)
    scr_b[20:100, 94:98] = 2
    clf = PixelClassifier(scales=(1, 2), n_estimators=10).fit(imgs, [scr_a, scr_b])
    assert list(clf.classes_) == [1, 2]
    proba = clf.predict_proba(imgs[0])
    assert proba.shape == truth.shape + (2,) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(-1), 1, atol=1e-5)
    np.testing.assert_array_equal(clf.predict(imgs[0]), clf.classes_[proba.argmax(-1)])
    assert clf.n_training_pixels_ == {1: int((scr_a == 1).sum()), 2: int((scr_b == 2).sum())}
    imp = clf.feature_importances
    assert list(imp) == clf.feature_names and abs(sum(imp.values()) - 1) < 1e-6


def test_max_samples_per_class_caps_training_set(rng):
    truth = _halves()
    img = (80 + 60 * (truth == 2) + rng.normal(0, 12, truth.shape)).astype(np.float32)
    clf = PixelClassifier(scales=(1,), max_samples_per_class=50)
    X, y = clf.training_data(img, truth)  # every pixel labelled
    assert X.shape == (100, clf.n_features) and np.bincount(y).tolist() == [0, 50, 50]


def test_tiled_equals_untiled_and_region(rng):
    from napari_sem_analysis.pixel_classifier.features import (
        FeatureSettings,
        compute_features,
        normalization_range,
        tile_boxes,
    )

    truth = _halves((200, 170))
    img = (80 + 60 * (truth == 2) + rng.normal(0, 25, truth.shape)).clip(0, 255).astype(np.uint8)
    # features: the halo makes each tile see what the whole image sees (up to float32 rounding of
    # the filters, which second differences of a smooth image amplify to ~1e-4 of the range)
    settings = FeatureSettings(scales=(1, 2, 4, 8))
    lo_hi = normalization_range(img)
    whole_f = compute_features(img, settings, lo_hi)
    scale = np.abs(whole_f).max(axis=(0, 1))
    for y0, y1, x0, x1 in tile_boxes(img.shape, 64):
        tile = compute_features(img, settings, lo_hi, (y0, y1, x0, x1))
        assert np.all(np.abs(tile - whole_f[y0:y1, x0:x1]) <= 1e-3 * scale)
    # predictions: rounding can flip a tree's split on a rare pixel, nothing more
    clf = PixelClassifier(scales=(1, 2, 4), n_estimators=10, tile_size=1024).fit(img, _strokes(truth))
    whole = clf.predict(img)
    assert (clf.predict(img, tile_size=64) == whole).mean() > 0.999
    assert np.abs(clf.predict_proba(img, tile_size=64) - clf.predict_proba(img)).mean() < 1e-3
    region = clf.predict(img, region=(slice(30, 90), slice(50, 160)))
    assert region.shape == (60, 110)
    assert (region == whole[30:90, 50:160]).mean() > 0.999
    np.testing.assert_array_equal(clf.predict(img, region=(0, 200, 0, 170)), whole)  # the whole image as region


def test_features_cached_between_fits(rng):
    truth = _halves()
    img = (80 + 60 * (truth == 2) + rng.normal(0, 12, truth.shape)).astype(np.float32)
    clf = PixelClassifier(scales=(1, 2), n_estimators=5)
    clf.cache = FeatureCache()
    scr = _strokes(truth)
    clf.fit(img, scr)
    assert clf.cache.misses == 1
    scr[5:10, 5:10] = 1  # another stroke: the features are reused
    clf.fit(img, scr)
    clf.predict(img)
    assert clf.cache.misses == 1 and clf.cache.hits == 2
    # the visible field (a live update on a large image) is cut from the cached tile, not recomputed
    field = clf.predict(img, region=(10, 40, 20, 60))
    assert clf.cache.misses == 1 and clf.cache.hits == 3
    np.testing.assert_array_equal(field, clf.predict(img)[10:40, 20:60])
    # a changed image is recomputed, not served from the cache
    img2 = img.copy()
    img2[0, 0] += 1
    clf.predict(img2)
    assert clf.cache.misses == 2


def test_physical_scales(rng):
    truth = _halves()
    img = (80 + 60 * (truth == 2) + rng.normal(0, 12, truth.shape)).astype(np.float32)
    clf = PixelClassifier(scales=(10, 20), scale_unit="nm", n_estimators=5)
    with pytest.raises(SEMAnalysisError, match="pixel size"):
        clf.fit(img, _strokes(truth))
    clf.fit(img, _strokes(truth), pixel_size=5.0)
    assert clf.settings_for(5.0).scales == (2.0, 4.0)
    assert clf.feature_names[1] == "intensity s=10 nm"
    stack, names = pixel_features(img, scales=(10, 20), unit="nm", pixel_size=5.0)
    assert stack.shape == (len(names),) + img.shape
    assert names[1] == "intensity s=2 px"


def test_save_load_identical(tmp_path, rng):
    truth = _halves()
    img = (80 + 60 * (truth == 2) + rng.normal(0, 20, truth.shape)).astype(np.float32)
    clf = PixelClassifier(scales=(1, 3), n_estimators=8, class_names=["matrix", "phase"]).fit(img, _strokes(truth))
    path = clf.save(tmp_path / "m.pxclf")
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["meta.json", "model.skops"]
    back = PixelClassifier.load(path)
    np.testing.assert_array_equal(back.predict_proba(img), clf.predict_proba(img))
    assert back.feature_names == clf.feature_names and back.class_names == ["matrix", "phase"]
    assert back.feature_importances == clf.feature_importances


def _rewrite(src, dst, meta_update=None, payload=None, extra=None):
    with zipfile.ZipFile(src) as zf:
        meta = json.loads(zf.read("meta.json"))
        data = zf.read("model.skops")
    meta.update(meta_update or {})
    with zipfile.ZipFile(dst, "w") as zf:
        zf.writestr("meta.json", json.dumps(meta))
        zf.writestr("model.skops", data if payload is None else payload)
        for k, v in (extra or {}).items():
            zf.writestr(k, v)
    return dst


def test_load_refuses_bad_files(tmp_path, rng, monkeypatch):
    truth = _halves((64, 64))
    img = (80 + 60 * (truth == 2) + rng.normal(0, 5, truth.shape)).astype(np.float32)
    good = PixelClassifier(scales=(1,), n_estimators=3).fit(img, _strokes(truth)).save(tmp_path / "g.pxclf")
    (tmp_path / "junk.pxclf").write_bytes(b"not a zip at all")
    cases = {
        "junk.pxclf": "not a valid",
        "missing.pxclf": "does not exist",
    }
    cases[_rewrite(good, tmp_path / "tampered.pxclf", payload=b"x" * 100).name] = "checksum"
    cases[_rewrite(good, tmp_path / "foreign.pxclf", {"format": "other"}).name] = "not a napari-sem-analysis"
    cases[_rewrite(good, tmp_path / "newer.pxclf", {"format_version": 99}).name] = "newer version"
    cases[_rewrite(good, tmp_path / "scales.pxclf", {"scales": [1, 2]}).name] = "feature list"
    cases[_rewrite(good, tmp_path / "group.pxclf", {"features": ["evil"]}).name] = "invalid classifier"
    cases[_rewrite(good, tmp_path / "classes.pxclf", {"classes": [1, 2, 3]}).name] = "classes"
    for name, msg in cases.items():
        with pytest.raises(SEMAnalysisError, match=msg):
            PixelClassifier.load(tmp_path / name)
    # an oversized member is refused before it is read
    from napari_sem_analysis.pixel_classifier import archive as model_mod

    monkeypatch.setattr(model_mod, "_MAX_PAYLOAD_BYTES", 100)
    with pytest.raises(SEMAnalysisError, match="refused"):
        PixelClassifier.load(good)


def test_load_refuses_other_object_types(tmp_path):
    import skops.io as sio

    good_meta = {"format": "napari-sem-analysis-pixel-classifier", "classifier": "PixelClassifier"}
    from sklearn.linear_model import LogisticRegression

    payload = sio.dumps(LogisticRegression().fit([[0.0], [1.0]], [1, 2]))
    import hashlib

    meta = dict(
        good_meta,
        sha256=hashlib.sha256(payload).hexdigest(),
        features=["intensity"],
        model="random_forest",
        scales=[1.0],
        scale_unit="px",
        n_estimators=3,
        classes=[1, 2],
        feature_names=["intensity raw", "intensity s=1 px"],
    )
    path = tmp_path / "lr.pxclf"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("meta.json", json.dumps(meta))
        zf.writestr("model.skops", payload)
    with pytest.raises(SEMAnalysisError, match="not a forest"):
        PixelClassifier.load(path)


def test_bad_input(rng):
    img = rng.random((32, 32)).astype(np.float32)
    one_class = np.zeros((32, 32), np.uint8)
    one_class[5:10, 5:10] = 1
    clf = PixelClassifier(scales=(1,), n_estimators=3)
    with pytest.raises(SEMAnalysisError, match="two classes"):
        clf.fit(img, one_class)
    with pytest.raises(SEMAnalysisError, match="two classes"):
        clf.fit(img, np.zeros((32, 32), np.uint8))
    with pytest.raises(SEMAnalysisError, match="shape"):
        clf.fit(img, np.zeros((16, 16), np.uint8))
    with pytest.raises(SEMAnalysisError, match="integer"):
        clf.fit(img, np.zeros((32, 32), np.float32))
    with pytest.raises(SEMAnalysisError, match="not trained"):
        clf.predict(img)
    with pytest.raises(SEMAnalysisError, match="NaN"):
        clf.fit(np.full((32, 32), np.nan), one_class)
    with pytest.raises(SEMAnalysisError, match="unknown feature"):
        PixelClassifier(features=("intensity", "magic"))
    with pytest.raises(SEMAnalysisError, match="model"):
        PixelClassifier(model="svm")
    with pytest.raises(SEMAnalysisError):
        PixelClassifier(scales=(-1, 2))
    scr = one_class.copy()
    scr[20:25, 20:25] = 2
    clf.fit(img, scr)
    with pytest.raises(SEMAnalysisError, match="region"):
        clf.predict(img, region=(40, 50, 0, 10))
    with pytest.raises(SEMAnalysisError, match="2-D"):
        clf.predict(np.zeros((4, 32, 32)))
