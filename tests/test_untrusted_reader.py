"""The reader on untrusted files: bounded size and pages, plausible metadata, damaged files reported."""

from __future__ import annotations

import struct
import tracemalloc
import warnings

import numpy as np
import pytest
import tifffile

import napari_sem_analysis as sem
from napari_sem_analysis import io as sem_io
from napari_sem_analysis._validation import SEMAnalysisError
from napari_sem_analysis.io import SEMReadError

from _tiffs import fei_tiff, raw_tiff, with_band, zeiss_text


@pytest.fixture
def content():
    rng = np.random.default_rng(3)
    return rng.normal(120, 25, (120, 160)).clip(1, 254).astype(np.uint8)


def _peak_bytes(func):
    tracemalloc.start()
    try:
        func()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


# -- pixel and page limits -----------------------------------------------------


def test_declared_size_is_refused_before_decoding(tmp_path):
    # a 300-byte file declaring 20000 x 20000 pixels: refused without allocating 400 MB
    path = tmp_path / "bomb.tif"
    path.write_bytes(raw_tiff(20000, 20000, data=b"\x01" * 64))

    def read():
        with pytest.raises(SEMReadError, match=r"bomb.tif: .*20000 x 20000.*max_pixels"):
            sem.read_sem(path)

    assert _peak_bytes(read) < 20e6


def test_compressed_bomb_is_refused_and_the_limit_can_be_raised(tmp_path):
    path = tmp_path / "zeros.tif"
    tifffile.imwrite(path, np.zeros((1200, 1000), np.uint8), compression="zlib")
    assert path.stat().st_size < 20_000
    with pytest.raises(SEMReadError, match="1,200,000 pixels, more than the limit of 1,000,000"):
        sem.read_sem(path, max_pixels=1_000_000)
    assert sem.read_sem(path, max_pixels=2_000_000, crop_databar=False).shape == (
        1200,
        1000,
    )
    with pytest.raises(SEMAnalysisError, match="max_pixels must be a positive integer"):
        sem.read_sem(path, max_pixels=0)


def test_module_default_limit_applies_to_png(tmp_path, monkeypatch):
    import cv2

    path = tmp_path / "plain.png"
    cv2.imwrite(str(path), np.zeros((100, 200), np.uint8))
    monkeypatch.setattr(sem_io, "MAX_PIXELS", 10_000)
    with pytest.raises(SEMReadError, match="plain.png: .*100 x 200"):
        sem.read_sem(path)
    assert sem.read_sem(path, max_pixels=20_000).shape == (100, 200)


def test_only_the_first_page_of_a_long_stack_is_parsed(tmp_path, monkeypatch, content):
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        for _ in range(300):
            tw.write(content[:16, :16], contiguous=False)
    parsed = []
    original = tifffile.TiffPage.__init__

    def counting(self, *args, **kwargs):
        parsed.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffPage, "__init__", counting)
    with pytest.warns(UserWarning, match="pages.tif holds 300 images"):
        img = sem.read_sem(path, crop_databar=False)
    assert img.metadata["n_planes"] == 300
    assert len(parsed) <= 2  # page 0 and page 1 (is it a stack of equal planes?), not 300


def test_page_limit(tmp_path, content):
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tw:
        for i in range(12):
            tw.write(content + i, contiguous=False)
    with pytest.raises(SEMReadError, match="more than 10 planes.*max_pages"):
        sem.read_sem(path, all_planes=True, max_pages=10)
    with pytest.warns(UserWarning, match="holds more than 10 images"):
        sem.read_sem(path, max_pages=10, crop_databar=False)
    stack = sem.read_sem(path, all_planes=True, max_pages=12, crop_databar=False)
    np.testing.assert_array_equal(stack.data[5], content + 5)
    with pytest.raises(SEMReadError, match="stack declares 12 x 120 x 160"):
        sem.read_sem(path, all_planes=True, max_pixels=12 * 120 * 160 - 1)


# -- plausible pixel sizes -----------------------------------------------------


def _zeiss(path, image, **fields):
    data = zeiss_text(**fields)
    tifffile.imwrite(path, image, extratags=[(34118, "B", len(data), data, True)])


@pytest.mark.parametrize(
    "field",
    [
        "Image Pixel Size = 1e300 m",
        "Image Pixel Size = 1e12 nm",
        "Image Pixel Size = 1e-320 nm",
    ],
)
def test_absurd_zeiss_pixel_size_is_ignored_with_a_warning(tmp_path, content, field):
    path = tmp_path / "zeiss.tif"
    _zeiss(path, content, pixel=field)
    with pytest.warns(UserWarning, match="outside the plausible range"):
        img = sem.read_sem(path)
    assert img.pixel_size is None and img.metadata["pixel_size_source"] is None
    assert img.metadata["instrument"] == "Zeiss"


def test_absurd_fei_and_hitachi_pixel_sizes_are_ignored(tmp_path, content):
    fei = tmp_path / "fei.tif"
    fei_tiff(fei, content, pixel_size_m=5)  # 5 m per pixel
    with pytest.warns(UserWarning, match="outside the plausible range"):
        assert sem.read_sem(fei).pixel_size is None
    png = tmp_path / "hitachi.png"
    import cv2

    cv2.imwrite(str(png), content)
    png.with_suffix(".txt").write_text("[SemImageFile]\nInstructName=S-4800\nPixelSize=1e300\n")
    with pytest.warns(UserWarning, match="outside the plausible range"):
        assert sem.read_sem(png).pixel_size is None
    # a plausible one still counts
    fei_tiff(fei, content, pixel_size_m=2e-9)
    assert sem.read_sem(fei).pixel_size == pytest.approx(2.0)


@pytest.mark.parametrize("value", [1e308, 1e-30, float("inf"), 0])
def test_user_pixel_size_outside_the_range_is_refused(tmp_path, content, value):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, content)
    with pytest.raises(SEMAnalysisError, match="pixel_size must be between"):
        sem.read_sem(path, pixel_size=value)


# -- garbage in unimportant fields ---------------------------------------------


@pytest.mark.parametrize(
    "fields, dropped",
    [
        ({"eht": "EHT = abc kV"}, "voltage_kv"),
        ({"wd": "WD = abc mm"}, "working_distance_mm"),
    ],
)
def test_garbage_zeiss_field_keeps_the_image(tmp_path, content, fields, dropped):
    path = tmp_path / "zeiss.tif"
    _zeiss(path, content, **fields)
    with pytest.warns(UserWarning, match="unreadable metadata ignored"):
        img = sem.read_sem(path)
    np.testing.assert_array_equal(img.data, content)
    assert img.pixel_size == pytest.approx(7.3)
    assert dropped not in img.metadata and img.metadata["read_warnings"]


def test_garbage_fei_fields_keep_the_image(tmp_path, content):
    path = tmp_path / "fei.tif"
    fei_tiff(path, content, pixel_size_m=4e-9)
    raw = (
        path.read_bytes().replace(b"HV=5000", b"HV=abc!").replace(b"WorkingDistance=0.0041", b"WorkingDistance=xyzuvw")
    )
    path.write_bytes(raw)
    with pytest.warns(UserWarning, match="unreadable metadata ignored.*voltage_kv"):
        img = sem.read_sem(path)
    assert img.pixel_size == pytest.approx(4.0) and img.data.shape == content.shape
    assert "voltage_kv" not in img.metadata and "working_distance_mm" not in img.metadata


def test_binary_zeiss_block_keeps_the_image(tmp_path, content):
    path = tmp_path / "zeiss.tif"
    junk = bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8))
    tifffile.imwrite(path, content, extratags=[(34118, "B", len(junk), junk, True)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = sem.read_sem(path)
    np.testing.assert_array_equal(img.data, content)


# -- image height from the metadata, missing strips -----------------------------


def test_fei_resolution_y_of_one_row_does_not_crop(tmp_path, content):
    path = tmp_path / "fei.tif"
    fei_tiff(path, with_band(content, 20), resolution_y=1)
    with pytest.warns(UserWarning, match=r"image height \(1 rows\) does not fit"):
        img = sem.read_sem(path)
    assert img.data.shape == content.shape  # the band found from the pixels, not row 1


def _zero_strip(path, index):
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags["StripByteCounts"]
        fmt = {3: "<H", 4: "<I", 16: "<Q"}[int(tag.dtype)]
        where = tag.valueoffset + index * struct.calcsize(fmt)
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, where, 0)
    path.write_bytes(bytes(raw))


def test_missing_strips_are_reported(tmp_path, content):
    path = tmp_path / "holes.tif"
    tifffile.imwrite(path, content, rowsperstrip=8)
    _zero_strip(path, 3)
    with pytest.warns(UserWarning, match="holes.tif: 1 of 15 strips/tiles of pixel data are missing"):
        img = sem.read_sem(path, crop_databar=False)
    assert img.metadata["missing_strips"] == "1 of 15"
    assert (img.data[24:32] == 0).all()
