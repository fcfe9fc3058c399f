"""The SEM reader: pixel sizes from vendor metadata, info-band cropping, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import napari_sem_analysis as sem
from napari_sem_analysis.io import SEMReadError, detect_databar

from _tiffs import fei_tiff, tescan_tiff, with_band, zeiss_tiff


@pytest.fixture
def content():
    rng = np.random.default_rng(1)
    return (rng.normal(120, 25, (200, 300)).clip(1, 254)).astype(np.uint8)


def test_zeiss_pixel_size_metadata_and_band(tmp_path, content):
    path = tmp_path / "zeiss.tif"
    zeiss_tiff(path, with_band(content, 40), pixel_size_nm=7.344)
    img = sem.read_sem(path)
    assert img.data.shape == content.shape
    np.testing.assert_array_equal(img.data, content)
    assert img.pixel_size == pytest.approx(7.344)
    assert img.databar.shape == (40, 300)
    md = img.metadata
    assert md["instrument"] == "Zeiss"
    assert md["detector"] == "InLens"
    assert md["voltage_kv"] == pytest.approx(20.0)
    assert md["working_distance_mm"] == pytest.approx(2.8)
    assert "50" in md["magnification"]
    assert md["databar_row"] == 200
    assert md["pixel_size_source"] == "Zeiss"


def test_zeiss_pixel_size_in_micrometres(tmp_path, content):
    path = tmp_path / "zeiss_um.tif"
    zeiss_tiff(path, content, pixel_size_nm=12.5, unit="µm")
    assert sem.read_sem(path).pixel_size == pytest.approx(12.5)


def test_fei_pixel_size_and_band_from_resolution(tmp_path, content):
    path = tmp_path / "fei.tif"
    # FEI writes the image height: the band is whatever lies below it,
    # even a band that is not uniform
    noisy_band = np.random.default_rng(2).integers(0, 255, (30, 300), dtype=np.uint8)
    fei_tiff(path, np.vstack([content, noisy_band]), pixel_size_m=5e-9, resolution_y=200)
    img = sem.read_sem(path)
    assert img.pixel_size == pytest.approx(5.0)
    assert img.data.shape == (200, 300)
    assert img.metadata["voltage_kv"] == pytest.approx(5.0)
    assert img.metadata["detector"] == "ETD"
    assert img.metadata["working_distance_mm"] == pytest.approx(4.1)


def test_tescan_tag(tmp_path, content):
    path = tmp_path / "tescan.tif"
    tescan_tiff(path, content, pixel_size_m=2.5e-9)
    img = sem.read_sem(path)
    assert img.pixel_size == pytest.approx(2.5)
    assert img.metadata["instrument"] == "TESCAN"
    assert img.metadata["voltage_kv"] == pytest.approx(15.0)


def test_jeol_sidecar(tmp_path, content):
    path = tmp_path / "jeol.tif"
    tifffile.imwrite(path, content)
    (tmp_path / "jeol.txt").write_text(
        "$CM_FORMAT JEOL/SEM\n$CM_MAG 5000\n$CM_ACCEL_VOLT 15.00\n$$SM_MICRON_BAR 200\n$$SM_MICRON_MARKER 10um\n"
    )
    img = sem.read_sem(path)
    assert img.metadata["instrument"] == "JEOL"
    assert img.pixel_size == pytest.approx(10_000 / 200)
    assert img.metadata["voltage_kv"] == pytest.approx(15.0)


def test_hitachi_sidecar_for_png(tmp_path, content):
    import cv2

    path = tmp_path / "hitachi.png"
    cv2.imwrite(str(path), content)
    (tmp_path / "hitachi.txt").write_text("[SemImageFile]\nInstructName=S-4800\nPixelSize=3.1\nMagnification=20000\n")
    img = sem.read_sem(path)
    assert img.pixel_size == pytest.approx(3.1)
    assert img.metadata["instrument"] == "Hitachi"


def test_imagej_resolution(tmp_path, content):
    path = tmp_path / "imagej.tif"
    tifffile.imwrite(path, content, imagej=True, resolution=(1 / 0.02, 1 / 0.02), metadata={"unit": "um"})
    assert sem.read_sem(path).pixel_size == pytest.approx(20.0)


def test_screen_dpi_is_not_a_pixel_size(tmp_path, content):
    path = tmp_path / "dpi.tif"
    tifffile.imwrite(path, content, resolution=(72, 72), resolutionunit="INCH")
    img = sem.read_sem(path)
    assert img.pixel_size is None
    assert img.metadata["pixel_size_source"] is None


def test_user_override_and_unknown(tmp_path, content):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, content)
    assert sem.read_sem(path).pixel_size is None
    img = sem.read_sem(path, pixel_size=3.3)
    assert img.pixel_size == pytest.approx(3.3)
    assert img.metadata["pixel_size_source"] == "user"
    zeiss = tmp_path / "zeiss.tif"
    zeiss_tiff(zeiss, content, pixel_size_nm=7.344)
    assert sem.read_sem(zeiss, pixel_size=8.0).pixel_size == pytest.approx(8.0)
    with pytest.raises(sem.SEMAnalysisError, match="pixel_size"):
        sem.read_sem(path, pixel_size=-1)


def test_rgb_equal_channels_become_gray_and_16bit_stays(tmp_path, content):
    import cv2

    path = tmp_path / "rgb.png"
    cv2.imwrite(str(path), np.dstack([content] * 3))
    img = sem.read_sem(path)
    assert img.data.ndim == 2
    np.testing.assert_array_equal(img.data, content)

    data16 = content.astype(np.uint16) * 257
    path16 = tmp_path / "deep.tif"
    tifffile.imwrite(path16, data16)
    img16 = sem.read_sem(path16)
    assert img16.data.dtype == np.uint16
    np.testing.assert_array_equal(img16.data, data16)


def test_colour_rgb_uses_luminance(tmp_path, content):
    rgb = np.dstack([content, content // 2, np.zeros_like(content)])
    path = tmp_path / "colour.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    img = sem.read_sem(path)
    expected = np.round(rgb.astype(float) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    np.testing.assert_array_equal(img.data, expected)
    assert sem.read_sem(path, grayscale=False).data.shape == rgb.shape


def test_light_band_detected(tmp_path, content):
    path = tmp_path / "light.tif"
    tifffile.imwrite(path, with_band(content, 50, value=255))
    img = sem.read_sem(path)
    assert img.data.shape == content.shape
    assert img.databar.shape[0] == 50


def test_no_band_keeps_every_row(tmp_path, content):
    path = tmp_path / "noband.tif"
    tifffile.imwrite(path, content)
    img = sem.read_sem(path)
    assert img.data.shape == content.shape
    assert img.databar is None
    # dark-saturated content is not mistaken for a band
    dark = content.copy()
    dark[120:] = 0
    assert detect_databar(dark) is None
    assert sem.read_sem(path, crop_databar=False).data.shape == content.shape


def test_sample_band_detected_exactly():
    sample = sem.sample_particles()
    assert detect_databar(sample.raw) == sample.image.shape[0] == sample.info["databar_row"]


@pytest.mark.parametrize(
    "name, payload",
    [
        ("corrupt.tif", b"II*\x00\x08\x00\x00\x00garbage-not-a-tiff"),
        ("empty.png", b""),
        ("text.jpg", b"this is not a jpeg"),
    ],
)
def test_corrupt_files_give_clear_error(tmp_path, name, payload):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(SEMReadError) as err:
        sem.read_sem(path)
    assert name in str(err.value)


def test_truncated_tiff(tmp_path, content):
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, content)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(SEMReadError, match="cut.tif"):
        sem.read_sem(path)


def test_unsupported_and_missing(tmp_path):
    other = tmp_path / "notes.docx"
    other.write_text("x")
    with pytest.raises(SEMReadError, match="unsupported"):
        sem.read_sem(other)
    with pytest.raises(SEMReadError, match="no such file"):
        sem.read_sem(tmp_path / "missing.tif")
    with pytest.raises(SEMReadError, match="folder"):
        sem.read_sem(tmp_path.with_suffix(".tif") if False else _dir_with_suffix(tmp_path))


def _dir_with_suffix(tmp_path):
    d = tmp_path / "folder.tif"
    d.mkdir()
    return d


# --- real micrographs (skipped when ../shared/data is absent) ----------------


def test_bam_zeiss_images(shared_data):
    files = sorted((shared_data / "bam-tio2-sem" / "images").glob("*.tif"))
    assert files
    for f in files:
        img = sem.read_sem(f)
        assert img.data.shape == (712, 1024), f.name
        assert img.pixel_size == pytest.approx(7.344)
        assert img.metadata["detector"] == "InLens"


def test_aquami_pixel_size(shared_data):
    img = sem.read_sem(shared_data / "aquami-nanoporous-gold" / "Sample.tif")
    assert img.pixel_size == pytest.approx(0.543)  # 543 pm
    assert img.databar is not None and img.data.shape[0] < 768
    # the band starts right below the image: no image row is lost
    assert (img.databar[:2] == 255).mean() > 0.9
    assert (img.data[-2:] == 255).mean() < 0.5


# --- what is not an info band, stacks, odd files -------------------------------


def test_masks_and_padding_are_not_cut(tmp_path, content):
    # a binary mask whose background share grows towards the bottom (grains
    # thinning out): no sharp band edge, so every row is kept
    yy, xx = np.mgrid[:200, :300]
    rng = np.random.default_rng(3)
    mask = np.where(rng.random((200, 300)) < 0.9 - 0.8 * yy / 199, 255, 0).astype(np.uint8)
    mask[150:] = np.where(rng.random((50, 300)) < 0.15 * (1 - (yy[150:] - 150) / 60), 255, 0)
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, mask)
    img = sem.read_sem(path)
    assert img.data.shape == mask.shape and img.databar is None
    # a strip of one value (padding after a shift, or a masked-out region) holds
    # no text: kept too
    padded = np.vstack([content, np.zeros((5, 300), np.uint8)])
    tifffile.imwrite(path, padded)
    assert sem.read_sem(path).data.shape == padded.shape
    # while a real band (text on a uniform strip) still goes
    tifffile.imwrite(path, with_band(content, 20))
    assert sem.read_sem(path).data.shape == content.shape


def test_stack_tiff_first_plane_with_warning_or_all_planes(tmp_path, content):
    stack = np.stack([with_band(content, 30), with_band(content[::-1], 30)])
    path = tmp_path / "slices.tif"
    tifffile.imwrite(path, stack)
    with pytest.warns(UserWarning, match="slices.tif holds 2 images"):
        first = sem.read_sem(path)
    np.testing.assert_array_equal(first.data, content)
    assert first.metadata["n_planes"] == 2
    whole = sem.read_sem(path, all_planes=True, pixel_size=4.0)
    np.testing.assert_array_equal(whole.data, np.stack([content, content[::-1]]))
    assert whole.databar.shape == (30, 300)
    kwargs = whole.layer_kwargs()
    assert kwargs["scale"] == (1.0, 4.0, 4.0) and kwargs["units"] == ("pixel", "nm", "nm")


def test_bad_tiff_messages_are_plain(tmp_path, content):
    path = tmp_path / "garbage.tif"
    path.write_bytes(b"II*\x00 not really a tiff")
    with pytest.raises(SEMReadError) as err:
        sem.read_sem(path)
    assert "garbage.tif" in str(err.value) and "IndexError" not in str(err.value)
    cplx = tmp_path / "complex.tif"
    tifffile.imwrite(cplx, content.astype(np.complex64))
    with pytest.raises(SEMReadError, match="complex.tif: unsupported pixel type complex64"):
        sem.read_sem(cplx)


def test_real_masks_and_padded_images_keep_every_row(shared_data):
    # binary masks and images with a few rows of black padding have no info band
    masks = sorted((shared_data / "nrcan-shale-sem" / "masks").glob("*.tif"))
    padded = sorted((shared_data / "nanofiber-sem").glob("*/*.tif"))
    bam_masks = sorted((shared_data / "bam-tio2-sem" / "masks").glob("*_m.tif"))
    assert masks and padded and bam_masks
    for f in masks + padded + bam_masks:
        full = sem.read_sem(f, crop_databar=False).data.shape
        assert sem.read_sem(f).data.shape == full, f.name


def test_planar_rgb_tiff_is_converted_like_any_colour_file(tmp_path, content):
    rgb = np.stack([content, content // 2, content // 3])  # (3, Y, X): planar
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", planarconfig="separate")
    expected = np.round(np.moveaxis(rgb, 0, -1).astype(float) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    np.testing.assert_array_equal(sem.read_sem(path).data, expected)


def test_real_rgb_tiffs_with_equal_channels_become_2d(shared_data):
    files = sorted((shared_data / "nasa-superalloy").glob("*/images/*.tif"))[:3]
    files += sorted((shared_data / "nasa-ebc").glob("*/images/*.tif"))[:2]
    assert files
    for f in files:
        raw = tifffile.imread(f)
        assert raw.ndim == 3 and raw.shape[-1] == 3, f.name
        img = sem.read_sem(f)
        assert img.data.dtype == raw.dtype
        np.testing.assert_array_equal(img.data, raw[..., 0])


def test_read_image_gives_2d_data_and_pixel_size(tmp_path, content):
    from napari_sem_analysis.io import read_image

    path = tmp_path / "zeiss.tif"
    zeiss_tiff(path, with_band(content, 40), pixel_size_nm=7.344)
    data, px = read_image(path)
    np.testing.assert_array_equal(data, content)  # info band cropped
    assert px == pytest.approx(7.344)
    assert read_image(path, pixel_size=2.5)[1] == 2.5  # the user's value wins
    with pytest.raises(sem.SEMAnalysisError, match="does not exist"):
        read_image(tmp_path / "missing.tif")


def test_read_training_folders_pairs_by_name_and_maps_mask_values(tmp_path, content):
    from napari_sem_analysis.io import IMAGE_SUFFIXES, SUPPORTED_SUFFIXES, read_training_folders

    assert IMAGE_SUFFIXES == SUPPORTED_SUFFIXES
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    mask = np.zeros(content.shape, np.uint8)
    mask[50:100, 60:200] = 255
    tifffile.imwrite(images / "a.tif", content)
    tifffile.imwrite(masks / "a_mask.tif", mask)  # pairs with a.tif
    tifffile.imwrite(images / "b.tif", content[::-1])  # no mask: left out
    (images / "notes.txt").write_text("not an image")
    imgs, msks, names = read_training_folders(images, masks)
    assert names == ["a.tif"]
    np.testing.assert_array_equal(imgs[0], content)
    np.testing.assert_array_equal(msks[0], (mask > 0).astype(np.int32))  # 0/255 -> class ids 0/1
    tifffile.imwrite(masks / "b.tif", mask[:10])
    with pytest.raises(sem.SEMAnalysisError, match="shape"):
        read_training_folders(images, masks)
