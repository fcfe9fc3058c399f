"""U-Net core: training, tiled inference, safe model files, devices (CPU only).

A tiny network (timm ResNet-10t encoder, depth 3, narrow decoder) is trained
once per module on synthetic "particles" (bright disks on a noisy, darker
background), whose ground truth is known exactly.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")

from _unet_helpers import _one_thread, disks  # noqa: E402, F401  (_one_thread: autouse fixture)

from napari_sem_analysis._validation import SEMAnalysisError  # noqa: E402
from napari_sem_analysis.unet import UNetModel, load_model, predict_unet, select_device, train_unet  # noqa: E402

TINY = dict(encoder="tu-resnet10t", encoder_depth=3, decoder_channels=(32, 16, 8))


@pytest.fixture(scope="module")
def trained():
    pairs = [disks(seed=s) for s in range(4)]
    infos = []

    def cb(info):
        infos.append(info)
        return False

    model = train_unet(
        [p[0] for p in pairs],
        [p[1] for p in pairs],
        **TINY,
        patch_size=64,
        epochs=6,
        batch_size=4,
        steps_per_epoch=8,
        val_fraction=0.25,
        learning_rate=3e-3,
        patience=None,
        device="cpu",
        callback=cb,
        class_names=["background", "particle"],
        pixel_size=7.5,
        seed=0,
    )
    return model, infos


def test_training_reduces_loss_and_learns(trained):
    model, infos = trained
    h = model.history
    assert len(h) == 6
    assert h[-1]["train_loss"] < 0.7 * h[0]["train_loss"]
    assert min(e["val_loss"] for e in h) < h[0]["val_loss"]
    # validation IoU of the kept checkpoint is good on this easy problem
    best = h[model.best_epoch - 1]
    assert best["val_loss"] == min(e["val_loss"] for e in h)
    assert best["mean_iou"] > 0.8
    assert len(best["iou"]) == 2
    # the callback saw steps and epochs with progress and an ETA
    stages = {i["stage"] for i in infos}
    assert stages == {"step", "epoch"}
    assert infos[-1]["progress"] == pytest.approx(1.0)
    assert all(i["eta_s"] >= 0 for i in infos)
    assert model.device_used == "cpu"
    assert model.class_names == ["background", "particle"]
    assert model.pixel_size == 7.5


def test_predict_matches_ground_truth(trained):
    model, _ = trained
    img, mask = disks((150, 130), seed=42, n=12)
    labels = model.predict(img, tile_size=64, overlap=16, device="cpu")
    assert labels.shape == img.shape
    assert labels.dtype == np.uint8
    inter = np.logical_and(labels == 1, mask == 1).sum()
    union = np.logical_or(labels == 1, mask == 1).sum()
    assert inter / union > 0.8
    assert img.dtype == np.uint8 and (img == disks((150, 130), seed=42, n=12)[0]).all()  # input untouched


def test_tiled_equals_untiled_away_from_borders(trained):
    model, _ = trained
    img, _ = disks((200, 232), seed=7, n=20)
    lab_full, p_full = model.predict(img, tile_size=None, device="cpu", return_probabilities=True)
    lab_tile, p_tile = model.predict(
        img, tile_size=64, overlap=24, batch_size=3, device="cpu", return_probabilities=True
    )
    assert p_tile.shape == (2, 200, 232)
    np.testing.assert_allclose(p_tile.sum(0), 1.0, atol=1e-5)
    inner = (slice(None), slice(16, -16), slice(16, -16))
    diff = np.abs(p_tile[inner] - p_full[inner])
    assert diff.mean() < 0.01
    assert np.mean(lab_tile[16:-16, 16:-16] == lab_full[16:-16, 16:-16]) > 0.995
    # without blending (overlap 0) seams are worse than with blending
    _, p_seam = model.predict(img, tile_size=64, overlap=0, device="cpu", return_probabilities=True)
    assert np.abs(p_seam[inner] - p_full[inner]).mean() > diff.mean()


def test_predict_small_odd_images_stacks_and_dtypes(trained):
    model, _ = trained
    img, mask = disks((37, 53), seed=3, n=3)
    lab = model.predict(img, tile_size=64, overlap=16, device="cpu")
    assert lab.shape == (37, 53)
    # per-image percentile normalisation: uint16 and float copies segment the same
    lab16 = model.predict(img.astype(np.uint16) * 257, tile_size=64, overlap=16, device="cpu")
    labf = model.predict(img / 255.0, tile_size=64, overlap=16, device="cpu")
    assert np.mean(lab16 == lab) > 0.995 and np.mean(labf == lab) > 0.995
    stack = np.stack([img, img[::-1]])
    lab3 = model.predict(stack, tile_size=64, overlap=16, device="cpu")
    assert lab3.shape == stack.shape
    np.testing.assert_array_equal(lab3[0], lab)
    # colour image with equal channels = grayscale
    lab_rgb = model.predict(np.dstack([img] * 3), tile_size=64, overlap=16, device="cpu")
    np.testing.assert_array_equal(lab_rgb, lab)
    with pytest.raises(SEMAnalysisError):
        model.predict(np.zeros((300, 300)), tile_size=64, overlap=64, device="cpu")
    with pytest.raises(SEMAnalysisError):
        model.predict(img, tile_size=4, device="cpu")


def test_predict_cancel(trained):
    model, _ = trained
    img, _ = disks((200, 200), seed=5)
    seen = []

    def cb(info):
        seen.append(info)
        return info["done"] >= 2

    assert model.predict(img, tile_size=64, overlap=16, batch_size=1, device="cpu", callback=cb) is None
    assert len(seen) == 2 and seen[-1]["total"] > 2


def test_save_load_identical(trained, tmp_path):
    model, _ = trained
    path = model.save(tmp_path / "particles")
    assert path.endswith(".safetensors")
    loaded = load_model(path)
    assert isinstance(loaded, UNetModel)
    assert loaded.class_names == model.class_names
    assert loaded.pixel_size == 7.5
    assert loaded.normalization == model.normalization
    assert loaded.architecture == "unet" and loaded.encoder == "tu-resnet10t"
    assert [e["epoch"] for e in loaded.history] == [e["epoch"] for e in model.history]
    assert loaded.history[0]["train_loss"] == pytest.approx(model.history[0]["train_loss"])
    assert loaded.best_epoch == model.best_epoch
    img, _ = disks((120, 140), seed=11)
    a, pa = model.predict(img, tile_size=64, overlap=16, device="cpu", return_probabilities=True)
    b, pb = loaded.predict(img, tile_size=64, overlap=16, device="cpu", return_probabilities=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pa, pb)
    # the function form used by recorded workflows
    np.testing.assert_array_equal(predict_unet(img, model=path, tile_size=64, overlap=16, device="cpu"), a)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_malicious_pickle_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(pickle.dumps(_Evil(str(marker)), protocol=2))
    with pytest.raises(SEMAnalysisError, match="pickle"):
        load_model(evil)
    # a torch.save (zip + pickle) checkpoint holding the same payload
    evil_pt = tmp_path / "model.pt"
    torch.save({"x": _Evil(str(marker))}, evil_pt)
    with pytest.raises(SEMAnalysisError):
        load_model(evil_pt)
    # protocol-0 pickle (no magic byte) is not safetensors either
    evil0 = tmp_path / "model0.safetensors"
    evil0.write_bytes(pickle.dumps(_Evil(str(marker)), protocol=0))
    with pytest.raises(SEMAnalysisError):
        load_model(evil0)
    assert not marker.exists()


def test_truncated_and_foreign_files_refused(trained, tmp_path):
    model, _ = trained
    path = model.save(tmp_path / "m.safetensors")
    data = open(path, "rb").read()
    for cut in (4, 100, len(data) // 2, len(data) - 10):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(SEMAnalysisError, match="not a valid model file|truncated"):
            load_model(bad)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(SEMAnalysisError):
        load_model(junk)
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(SEMAnalysisError, match="not a napari-sem-analysis"):
        load_model(foreign)
    with pytest.raises(SEMAnalysisError, match="does not exist"):
        load_model(tmp_path / "missing.safetensors")


def test_callback_stop_keeps_best_checkpoint():
    img, mask = disks((96, 96), seed=1)
    calls = []

    def stop_after_two(info):
        calls.append(info["stage"])
        return info["stage"] == "epoch" and info["epoch"] == 2

    model = train_unet(
        img,
        mask,
        **TINY,
        patch_size=32,
        epochs=10,
        batch_size=2,
        steps_per_epoch=3,
        val_fraction=0.3,
        device="cpu",
        callback=stop_after_two,
    )
    assert len(model.history) == 2
    assert model.stopped_early
    losses = [e["val_loss"] for e in model.history]
    assert model.best_epoch == 1 + int(np.argmin(losses))
    # a stop request in the middle of the first epoch still returns a usable model
    model2 = train_unet(
        img,
        mask,
        **TINY,
        patch_size=32,
        epochs=3,
        batch_size=2,
        steps_per_epoch=4,
        val_fraction=0.3,
        device="cpu",
        callback=lambda info: info["step"] >= 2,
    )
    assert model2.stopped_early
    assert model2.predict(img, device="cpu").shape == img.shape


def test_local_encoder_weights(tmp_path):
    """Encoder weights come from a local file; RGB first conv is summed to 1 channel."""
    import timm
    from safetensors.torch import save_file

    ref = timm.create_model("resnet10t", pretrained=False, features_only=True, in_chans=3)
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    wfile = tmp_path / "enc.safetensors"
    save_file(state, str(wfile))
    img, mask = disks((64, 64), seed=2)
    model = train_unet(
        img,
        mask,
        **TINY,
        patch_size=32,
        epochs=1,
        batch_size=2,
        steps_per_epoch=1,
        learning_rate=0.0,
        val_fraction=0,
        device="cpu",
        encoder_weights=wfile,
    )
    conv = [k for k in model.state_dict if k.startswith("encoder.") and k.endswith("conv1.0.weight")][0]
    src = conv[len("encoder.model.") :] if conv.startswith("encoder.model.") else conv[len("encoder.") :]
    np.testing.assert_allclose(model.state_dict[conv].numpy(), state[src].sum(1, keepdim=True).numpy(), rtol=1e-6)
    with pytest.raises(SEMAnalysisError, match="does not exist"):
        train_unet(img, mask, **TINY, patch_size=32, epochs=1, encoder_weights=tmp_path / "nope.pth", device="cpu")
    with pytest.raises(SEMAnalysisError, match="never does"):
        train_unet(img, mask, **TINY, patch_size=32, epochs=1, encoder_weights="imagenet", device="cpu")


def test_other_architecture_and_ignore_index():
    img, mask = disks((64, 64), seed=4)
    sparse = mask + 1  # 1 = background, 2 = particle, 0 = unlabelled
    sparse[:, 32:] = 0
    model = train_unet(
        img,
        sparse,
        architecture="unet++",
        n_classes=3,
        ignore_index=0,
        **TINY,
        patch_size=32,
        epochs=1,
        batch_size=2,
        steps_per_epoch=2,
        val_fraction=0,
        device="cpu",
    )
    assert model.architecture == "unet++"
    assert model.predict(img, device="cpu").shape == img.shape


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_classes=1), "at least 2"),
        (dict(n_classes=2, class_names=["a"]), "class names"),
        (dict(encoder="not-an-encoder"), "unknown encoder"),
        (dict(architecture="transformer9000"), "unknown architecture"),
        (dict(patch_size=50), "multiple"),
        (dict(val_fraction=1.5), "val_fraction"),
        (dict(class_balance=2), "class_balance"),
        (dict(scale_range=(0, 1)), "scale_range"),
        (dict(class_weights="balanced"), "class_weights"),
    ],
)
def test_bad_parameters(kwargs, match):
    img, mask = disks((64, 64))
    base = dict(TINY, patch_size=32, epochs=1, device="cpu")
    base.update(kwargs)
    with pytest.raises(SEMAnalysisError, match=match):
        train_unet(img, mask, **base)


def test_bad_inputs():
    img, mask = disks((64, 64))
    with pytest.raises(SEMAnalysisError, match="shape"):
        train_unet(img, mask[:, :50], **TINY, patch_size=32, device="cpu")
    with pytest.raises(SEMAnalysisError, match="class id 2"):
        train_unet(img, mask * 2, n_classes=2, **TINY, patch_size=32, device="cpu")
    with pytest.raises(SEMAnalysisError, match="2 images but 1 masks"):
        train_unet([img, img], [mask], **TINY, patch_size=32, device="cpu")
    with pytest.raises(SEMAnalysisError, match="integer"):
        train_unet(img, mask.astype(float), **TINY, patch_size=32, device="cpu")


def test_device_selection(trained):
    from napari_sem_analysis import _device

    assert select_device is _device.select_device
    assert select_device("cpu").type == "cpu"
    auto = select_device("auto")
    if torch.cuda.is_available():
        assert auto.type == "cuda"
    else:
        assert auto.type in ("mps", "cpu")
        with pytest.raises(SEMAnalysisError, match="CUDA"):
            select_device("cuda")
        model, _ = trained
        with pytest.raises(SEMAnalysisError, match="CUDA"):
            model.predict(np.zeros((32, 32), np.uint8), device="cuda")


def test_import_is_lazy():
    code = (
        "import sys, napari_sem_analysis.unet, napari_sem_analysis;"
        "napari_sem_analysis.train_unet;"
        "assert 'torch' not in sys.modules and 'segmentation_models_pytorch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _val_loss_of(model, image, mask):
    """Cross-entropy + Dice of ``model`` on one whole image, recomputed from its probabilities."""
    _, p = model.predict(image, tile_size=None, device="cpu", return_probabilities=True)
    p = p.astype(np.float64)
    ce = -np.log(np.take_along_axis(p, mask[None].astype(np.int64), 0)).mean()
    onehot = np.stack([mask == c for c in range(p.shape[0])]).astype(np.float64)
    dice = (2 * (p * onehot).sum((1, 2)) + 1) / (p.sum((1, 2)) + onehot.sum((1, 2)) + 1)
    return ce + 1 - dice[onehot.sum((1, 2)) > 0].mean()


def test_stop_returns_the_weights_of_the_best_epoch_not_the_last():
    """Stop as soon as an epoch is worse than an earlier one: the weights returned are the earlier ones."""
    img, mask = disks((96, 96), seed=1)
    vimg, vmask = disks((64, 64), seed=21, n=5)  # one 64-px validation tile = the whole image

    def stop_when_worse(info):
        if info["stage"] != "epoch":
            return False
        v = [h["val_loss"] for h in info["history"]]
        return len(v) >= 2 and v[-1] > min(v[:-1])

    model = train_unet(
        img,
        mask,
        **TINY,
        patch_size=64,
        epochs=15,
        batch_size=2,
        steps_per_epoch=2,
        learning_rate=1e-2,
        validation=([vimg], [vmask]),
        patience=None,
        device="cpu",
        callback=stop_when_worse,
    )
    h = [e["val_loss"] for e in model.history]
    assert model.stopped_early and len(h) < 15
    assert h[-1] > min(h) + 1e-3  # the last epoch was worse: keeping it would be detectable
    assert model.best_epoch == 1 + int(np.argmin(h)) < len(h)
    recomputed = _val_loss_of(model, vimg, vmask)
    assert recomputed == pytest.approx(min(h), rel=1e-4)
    assert abs(recomputed - h[-1]) > 1e-3


def test_early_stopping_patience():
    """Training stops once the validation loss has not improved for ``patience`` epochs."""
    img, mask = disks((96, 96), seed=1)
    model = train_unet(
        img,
        mask,
        **TINY,
        patch_size=32,
        epochs=40,
        batch_size=2,
        steps_per_epoch=2,
        learning_rate=0.0,
        val_fraction=0.4,
        patience=2,
        device="cpu",
    )
    h = [e["val_loss"] for e in model.history]
    assert model.stopped_early and len(h) < 40
    # the stopping rule, replayed on the recorded history: the first epoch that is
    # `patience` epochs past the best so far ends training, and that best is kept
    best, since = 0, 0
    for i in range(1, len(h)):
        if h[i] < h[best] - 1e-6:
            best, since = i, 0
        else:
            since += 1
        if since >= 2:
            break
    assert len(h) == i + 1
    assert model.best_epoch == best + 1 == 1 + int(np.argmin(h))


def test_device_priority_cuda_then_mps_then_cpu(monkeypatch):
    """ "auto" picks CUDA when present, else Apple MPS, else the CPU; the name reported says which."""
    from napari_sem_analysis import _device

    mps = getattr(torch.backends, "mps", None)
    if mps is None:
        pytest.skip("this torch has no MPS backend module")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev=None: "Fake GPU")
    assert select_device("auto").type == "cuda"
    assert _device.describe_device(select_device("auto")) == "cuda (Fake GPU)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto").type == "mps"
    assert select_device(None).type == "mps"
    monkeypatch.setattr(mps, "is_available", lambda: False)
    assert select_device("auto").type == "cpu"
    with pytest.raises(SEMAnalysisError, match="MPS"):
        select_device("mps")


def test_avoid_triton_crash_blocks_triton_only_next_to_a_system_llvm(monkeypatch):
    from napari_sem_analysis import _device

    saved = sys.modules.pop("triton", "absent")
    try:
        monkeypatch.setattr(_device, "_system_llvm_loaded", lambda: False)
        assert _device.avoid_triton_crash() is False and "triton" not in sys.modules
        monkeypatch.setattr(_device, "_system_llvm_loaded", lambda: True)
        assert _device.avoid_triton_crash() is True and sys.modules["triton"] is None
        with pytest.raises(ImportError):
            import triton  # noqa: F401
        # an already imported triton is left alone
        sys.modules["triton"] = object()
        assert _device.avoid_triton_crash() is False
    finally:
        if saved == "absent":
            sys.modules.pop("triton", None)
        else:
            sys.modules["triton"] = saved


def test_malicious_encoder_weights_refused(tmp_path):
    """Encoder weights go through torch.load(weights_only=True): a pickle payload is refused, not run."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "encoder.pth"
    torch.save({"conv1.weight": _Evil(str(marker))}, evil)
    img, mask = disks((64, 64), seed=2)
    with pytest.raises(SEMAnalysisError, match="safe loading only"):
        train_unet(img, mask, **TINY, patch_size=32, epochs=1, encoder_weights=evil, device="cpu")
    assert not marker.exists()


def test_patch_sampler_augments_flips_rotations_intensity_noise_and_mild_scale():
    """Training patches: right size, mask aligned with the image, all augmentations actually happen."""
    from napari_sem_analysis.unet import _PatchSampler

    # a grid of 8-px squares whose intensity equals its class: alignment is checkable after any transform
    yy, xx = np.mgrid[:256, :256]
    mask = (((yy // 8) + (xx // 8)) % 2).astype(np.int64)
    mask[:8, :8] = 2  # one marked corner square: shows rotations and flips
    img = mask.astype(np.float32)
    sampler = _PatchSampler([img], [mask], 3, 64, np.random.default_rng(0), True, 0.5, (0.8, 1.25))
    runs, gains, corner_seen, noisy = [], [], set(), 0
    for _ in range(200):
        a, m = sampler.sample()
        assert a.shape == m.shape == (64, 64) and a.dtype == np.float32 and m.dtype == np.int64
        # pixels of class 0 or 1 away from edges (resampling blurs edges):
        # image = gain * class + offset (+ noise)
        from scipy import ndimage as ndi

        same = ndi.minimum_filter(m, 5) == ndi.maximum_filter(m, 5)
        sel = (m < 2) & same
        if len(np.unique(m[sel])) < 2:
            continue
        g = a[sel & (m == 1)].mean() - a[sel & (m == 0)].mean()
        gains.append(g)
        resid = a[sel] - (a[sel & (m == 0)].mean() + g * m[sel])
        noisy += resid.std() > 0.02
        assert np.corrcoef(a[sel], m[sel])[0, 1] > 0.8  # image and mask stay aligned (noise lowers it a little)
        # width of the squares along the rows (8 px at scale 1)
        row = m[32]
        edges = np.flatnonzero(np.diff(row) != 0)
        if len(edges) >= 3:
            runs.append(np.median(np.diff(edges)))
        ys, xs = np.nonzero(m == 2)
        if len(ys):
            corner_seen.add((ys.mean() < 32, xs.mean() < 32))
    gains = np.array(gains)
    assert gains.min() < 0.9 and gains.max() > 1.1  # contrast changes
    assert 0 < noisy < len(gains)  # noise on some patches only
    runs = np.array(runs)
    assert runs.min() < 7.5 and runs.max() > 8.5  # mild rescaling...
    assert runs.min() >= 8 * 0.8 - 1 and runs.max() <= 8 * 1.25 + 1  # ...within the scale range
    assert len(corner_seen) >= 3  # the marked square ends up in different corners: flips/rotations
    # without augmentation the patches are plain crops
    plain = _PatchSampler([img], [mask], 3, 64, np.random.default_rng(0), False, 0.5, (0.8, 1.25))
    for _ in range(20):
        a, m = plain.sample()
        np.testing.assert_array_equal(a, m.astype(np.float32))


def test_class_weights_auto_values_and_validation():
    from napari_sem_analysis.unet import _IGNORE, _class_weights

    m = np.zeros(10_000, np.int64)
    m[:1000] = 1
    m[1000:1025] = 2  # 0.25 % of the pixels, like cracks in a coating
    f = np.array([8975, 1000, 25]) / 10_000
    w = np.array(_class_weights("auto", [m], 3))
    expected = 1 / np.sqrt(f)
    expected /= (f * expected).sum()
    np.testing.assert_allclose(w, expected)
    assert (f * w).sum() == pytest.approx(1.0)  # the loss keeps its scale
    # ignored pixels do not count; a very rare class is capped at 50x the commonest
    m2 = np.full(100_000, _IGNORE, np.int64)
    m2[:50_000] = 0
    m2[50_000:50_001] = 1
    w2 = _class_weights("auto", [m2], 2)
    assert w2[1] / w2[0] == pytest.approx(50.0)
    assert _class_weights(None, [m], 3) is None and _class_weights("none", [m], 3) is None
    assert _class_weights([1, 2, 3], [m], 3) == [1.0, 2.0, 3.0]
    for bad in ("balanced", [1, 2], [1, -1, 1], [0, 0, 0]):
        with pytest.raises(SEMAnalysisError, match="class_weights"):
            _class_weights(bad, [m], 3)


def thin_lines(shape=(96, 96), seed=0):
    """Faint 1-2 px lines (class 1, about 2 % of the pixels) on a noisy background."""
    r = np.random.default_rng(seed)
    mask = np.zeros(shape, np.int32)
    for x in r.choice(np.arange(4, shape[1] - 4), 2, replace=False):
        mask[:, x : x + int(r.integers(1, 3))] = 1
    img = (100 + 40 * mask + r.normal(0, 12, shape)).clip(0, 65535).astype(np.uint16)
    return img, mask


def test_class_weights_help_a_rare_thin_class():
    """With cross-entropy alone, weighting the rare class makes the network find more of it (uint16 input).

    Short runs on three data/seed draws: the gain is large on average, and weighting never loses much.
    """
    test_img, test_mask = thin_lines((128, 128), seed=99)
    gains = []
    for seed in range(3):
        pairs = [thin_lines(seed=s + 10 * seed) for s in range(3)]
        kw = dict(
            **TINY,
            patch_size=64,
            epochs=3,
            batch_size=4,
            steps_per_epoch=6,
            learning_rate=3e-3,
            val_fraction=0,
            patience=None,
            dice_weight=0.0,
            class_balance=0.0,
            device="cpu",
            seed=seed,
        )
        recall = []
        for weights in (None, "auto"):
            model = train_unet([p[0] for p in pairs], [p[1] for p in pairs], class_weights=weights, **kw)
            used = model.config["training"]["class_weights"]
            assert used is None if weights is None else (len(used) == 2 and used[1] / used[0] > 5)
            pred = model.predict(test_img, tile_size=64, overlap=16, device="cpu")
            recall.append((pred[test_mask == 1] == 1).mean())
        gains.append(recall[1] - recall[0])
    assert np.mean(gains) > 0.2 and min(gains) > -0.05


def test_cpu_runs_without_mixed_precision_or_channels_last(trained, monkeypatch):
    """AMP and channels-last are CUDA-only: on the CPU `amp=True` is a no-op and the weights stay contiguous."""
    from napari_sem_analysis.unet import _amp_dtype

    model, _ = trained
    assert _amp_dtype(torch.device("cpu")) is None
    net = model.network("cpu")
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous()  # not channels-last
    img, _ = disks((100, 90), seed=8)
    a, pa = model.predict(img, tile_size=64, overlap=16, device="cpu", amp=True, return_probabilities=True)
    b, pb = model.predict(img, tile_size=64, overlap=16, device="cpu", amp=False, return_probabilities=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(pa, pb)  # no reduced-precision autocast on the CPU
    # on CUDA: bf16 where the GPU supports it, else fp16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert _amp_dtype(torch.device("cuda")) is torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert _amp_dtype(torch.device("cuda")) is torch.float16


MEMORY_SCRIPT = r"""
import resource, sys
import numpy as np
import torch
torch.set_num_threads(1)
from napari_sem_analysis.unet import load_model
model = load_model(sys.argv[1])
rng = np.random.default_rng(0)
model.predict(rng.integers(0, 255, (512, 512), dtype=np.uint8), tile_size=256, overlap=32, batch_size=2, device="cpu")
big = rng.integers(0, 255, (4096, 4096), dtype=np.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
labels = model.predict(big, tile_size=256, overlap=32, batch_size=2, device="cpu")
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
assert labels.shape == big.shape
print("GROWTH", after - before)
"""


def test_tiled_prediction_memory_is_bounded_by_the_tiles(trained, tmp_path):
    """Segmenting a 4096x4096 image needs far less extra memory than one float32 probability map of it."""
    if not sys.platform.startswith("linux"):
        pytest.skip("ru_maxrss in bytes/KiB differs by platform")
    model, _ = trained
    path = model.save(tmp_path / "m.safetensors")
    env = dict(__import__("os").environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, path], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    growth = int(proc.stdout.split("GROWTH")[1])
    full_probabilities = 2 * 4096 * 4096 * 4  # what an untiled (C, Y, X) float32 result would need: 134 MB
    assert growth < full_probabilities


def test_model_files_whose_header_length_starts_with_0x80_load(trained, tmp_path):
    """safetensors headers are padded to 8 bytes, so 1 model file in 32 starts with byte 0x80 (a pickle's
    magic byte): such files are models and must load, while real pickles stay refused."""
    model, _ = trained
    for pad in range(300):  # the header grows by one byte per character: every length modulo 256
        copy = UNetModel(dict(model.config, class_names=["background", "particle" + "x" * pad]), model.state_dict)
        path = copy.save(tmp_path / "m.safetensors")
        if open(path, "rb").read(1) == b"\x80":
            break
    else:
        pytest.fail("no header length with first byte 0x80 was produced")
    loaded = load_model(path)
    assert loaded.class_names[1] == "particle" + "x" * pad
    img, _ = disks((64, 64), seed=3)
    np.testing.assert_array_equal(loaded.predict(img, device="cpu"), model.predict(img, device="cpu"))
