"""Model files from others: allow-listed names only, no network, bounded sizes checked before allocating."""

from __future__ import annotations

import hashlib
import json
import socket
import tracemalloc
import zipfile

import pytest

from napari_sem_analysis._validation import SEMAnalysisError

torch = pytest.importorskip("torch")
pytest.importorskip("segmentation_models_pytorch")
from safetensors.torch import save, save_file  # noqa: E402

from napari_sem_analysis.classification import ImageClassifier, ObjectClassifier  # noqa: E402
from napari_sem_analysis.unet import load_model  # noqa: E402
from napari_sem_analysis.unet import model as unet_model  # noqa: E402


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to resolve a name or open a connection is recorded and fails."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if len(args) > 1 else args)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture
def no_timm(monkeypatch):
    """Record calls of timm.create_model (a hub name would make it fetch a configuration)."""
    from napari_sem_analysis._device import avoid_triton_crash

    avoid_triton_crash()
    timm = pytest.importorskip("timm")
    calls = []
    original = timm.create_model

    def recording(name, *args, **kwargs):
        calls.append(name)
        return original(name, *args, **kwargs)

    monkeypatch.setattr(timm, "create_model", recording)
    return calls


def _unet_file(path, tensors=None, **config):
    cfg = dict(
        architecture="unet",
        encoder="tu-resnet10t",
        encoder_depth=3,
        decoder_channels=[32, 16, 8],
        n_classes=2,
        class_names=["background", "particle"],
        normalization={"mode": "percentile", "low": 0.0, "high": 1.0},
    )
    cfg.update(config)
    meta = {
        "format": unet_model.FORMAT_NAME,
        "format_version": "1",
        unet_model._CONFIG_KEY: json.dumps(cfg),
        "history": "[]",
    }
    save_file(tensors or {"w": torch.zeros(1)}, str(path), metadata=meta)
    return path


# -- U-Net files ---------------------------------------------------------------


@pytest.mark.parametrize("encoder", ["tu-hf-hub:org/name", "tu-hf_hub:org/name", "https://example.org/x", "tu-../x"])
def test_unet_file_naming_a_hub_encoder_never_reaches_the_network(tmp_path, no_network, no_timm, encoder):
    path = _unet_file(tmp_path / "evil.safetensors", encoder=encoder)
    with pytest.raises(SEMAnalysisError, match="evil.safetensors: unknown encoder"):
        load_model(path)
    assert no_network == [] and no_timm == []


def test_unet_file_with_an_unregistered_timm_encoder_is_refused(tmp_path, no_network, no_timm):
    path = _unet_file(tmp_path / "m.safetensors", encoder="tu-no_such_net_at_all")
    with pytest.raises(SEMAnalysisError, match="timm has no model 'no_such_net_at_all'"):
        load_model(path)
    assert no_network == [] and no_timm == []


@pytest.mark.parametrize(
    "config, message",
    [
        (dict(decoder_channels=[8192, 8192, 8192]), "decoder_channels must be 3 integers in 1..2048"),
        (dict(decoder_channels=[32, 16]), "decoder_channels must be 3 integers"),
        (dict(encoder_depth=50), "encoder_depth must be an integer in 1..5"),
        (dict(class_names=5), "class_names must be a list of strings"),
        (dict(class_names=[1, 2]), "class_names must be a list of strings"),
        (dict(n_classes=10**9, class_names=["a"]), "n_classes must be an integer"),
        (dict(architecture="unet; rm -rf"), "unknown architecture"),
        (dict(normalization=5), "normalization must be a mapping"),
    ],
)
def test_unet_config_bounds(tmp_path, config, message):
    path = _unet_file(tmp_path / "m.safetensors", **config)
    with pytest.raises(SEMAnalysisError, match=message):
        load_model(path)


def test_unet_weights_are_compared_before_the_network_is_built(tmp_path, monkeypatch):
    # wide but allowed decoder: the file's single tiny tensor cannot be its weights
    path = _unet_file(tmp_path / "m.safetensors", decoder_channels=[2048, 2048, 2048])

    def never(config):
        raise AssertionError("a network was built for weights that do not fit it")

    monkeypatch.setattr(unet_model, "_build_network", never)
    with pytest.raises(SEMAnalysisError, match="stored weights do not match"):
        load_model(path)


def test_unet_config_size_is_bounded(tmp_path):
    path = _unet_file(tmp_path / "m.safetensors", padding="x" * 2_000_000)
    with pytest.raises(SEMAnalysisError, match="implausibly large"):
        load_model(path)
    deep = tmp_path / "deep.safetensors"
    meta = {"format": unet_model.FORMAT_NAME, "format_version": "1", unet_model._CONFIG_KEY: "[" * 100_000}
    save_file({"w": torch.zeros(1)}, str(deep), metadata=meta)
    with pytest.raises(SEMAnalysisError, match="unreadable"):
        load_model(deep)


# -- classifier archives -------------------------------------------------------


def _archive(path, meta, payload=b"", *, meta_bytes=None, payload_name="model.safetensors"):
    meta = dict(meta)
    meta.setdefault("format", "napari-sem-analysis-classifier")
    meta.setdefault("format_version", 1)
    meta.setdefault("payload", payload_name)
    meta.setdefault("sha256", hashlib.sha256(payload).hexdigest())
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.json", meta_bytes if meta_bytes is not None else json.dumps(meta))
        zf.writestr(payload_name, payload)
    return path


CNN_META = dict(classifier="ImageClassifier", backend="cnn", class_names=["a", "b"], width=8, input_size=32)


@pytest.mark.parametrize("arch", ["hf-hub:org/name", "vit_huge_patch14_224", "local-dir:/tmp/x"])
def test_image_classifier_file_naming_a_hub_or_large_arch_is_refused(tmp_path, no_network, no_timm, arch):
    path = _archive(tmp_path / "evil.semclf", dict(CNN_META, arch=arch), save({"w": torch.zeros(1)}))
    with pytest.raises(SEMAnalysisError, match="evil.semclf: unknown CNN architecture"):
        ImageClassifier.load(path, device="cpu")
    assert no_network == [] and no_timm == []


def test_image_classifier_weights_compared_before_building(tmp_path, monkeypatch):
    from napari_sem_analysis.classification import cnn

    path = _archive(tmp_path / "m.semclf", dict(CNN_META, arch="small"), save({"w": torch.zeros(1)}))
    built = []
    original = cnn._CNN.build
    monkeypatch.setattr(cnn._CNN, "build", lambda self: built.append(1) or original(self))
    with pytest.raises(SEMAnalysisError, match="do not match the described architecture"):
        ImageClassifier.load(path, device="cpu")
    assert built == []


def test_zip_bomb_payload_is_refused_before_decompressing(tmp_path):
    path = _archive(tmp_path / "bomb.semclf", dict(CNN_META, arch="small"), b"\0" * 60_000_000)
    assert path.stat().st_size < 200_000
    tracemalloc.start()
    try:
        with pytest.raises(SEMAnalysisError, match="zip bomb"):
            ImageClassifier.load(path, device="cpu")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10_000_000


def test_meta_json_bomb_is_refused_before_parsing(tmp_path):
    big = json.dumps(dict(CNN_META, arch="small", format="napari-sem-analysis-classifier")) + " " * 3_000_000
    path = _archive(tmp_path / "meta.semclf", {}, b"", meta_bytes=big)
    with pytest.raises(SEMAnalysisError, match="'meta.json' declares 3,0"):
        ImageClassifier.load(path, device="cpu")


@pytest.mark.parametrize(
    "field, message",
    [
        (dict(class_names=5), "class_names must be a list of strings"),
        (dict(class_names=["a", {"b": 1}]), "class_names must be a list of strings"),
        (dict(n_estimators=10**12), "n_estimators must be an integer"),
        (dict(scales=[1] * 1000), "scales must be a list"),
        (dict(width="8"), "width must be an integer"),
        (dict(format_version="1"), "format_version"),
    ],
)
def test_classifier_description_types_and_bounds(tmp_path, field, message):
    path = _archive(tmp_path / "m.semclf", dict(CNN_META, arch="small", **field), b"x")
    with pytest.raises(SEMAnalysisError, match=message):
        ImageClassifier.load(path, device="cpu")
    obj = _archive(
        tmp_path / "o.semclf",
        dict(classifier="ObjectClassifier", model="random_forest", **field),
        b"x",
        payload_name="model.skops",
    )
    with pytest.raises(SEMAnalysisError):
        ObjectClassifier.load(obj)


def test_deeply_nested_meta_json_is_a_clear_error(tmp_path):
    path = _archive(tmp_path / "deep.semclf", {}, b"", meta_bytes="[" * 200_000)
    with pytest.raises(SEMAnalysisError, match="deep.semclf"):
        ImageClassifier.load(path, device="cpu")


def test_allowed_archs_build_without_network(no_network):
    from napari_sem_analysis.classification.cnn import CNN_ARCHS, _cnn_shapes

    for arch in ("small", "resnet18"):
        assert arch in CNN_ARCHS
        assert _cnn_shapes(arch, 3, 8)  # built on the meta device, locally
    assert no_network == []
