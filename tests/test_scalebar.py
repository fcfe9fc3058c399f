"""Scale-bar reading: synthetic bars and labels of known length, in several fonts."""

from __future__ import annotations

import time
import zlib
from importlib import resources

import numpy as np
import pytest
from _scalebars import band_with_label, make_image, mpl_font

import napari_sem_analysis as sem
from napari_sem_analysis import SEMAnalysisError
from napari_sem_analysis.scalebar import parse_length


def _close_to_truth(reading, truth, *, width=False):
    tol = 0.01 if width else 1.0 / truth.bar_px + 0.002
    return reading.pixel_size is not None and abs(reading.pixel_size - truth.pixel_size) / truth.pixel_size <= tol


def test_templates_ship_inside_the_package():
    ref = resources.files("napari_sem_analysis").joinpath("data", "glyph_templates.npz")
    with ref.open("rb") as fh:
        z = np.load(fh, allow_pickle=False)
        chars = {str(c) for c in z["chars"]}
    assert set("0123456789.=µnmuW") <= chars


@pytest.mark.parametrize(
    "text, expected",
    [
        ("200 nm", (200.0, "nm", 200.0)),
        ("500nm", (500.0, "nm", 500.0)),
        ("0.5 um", (0.5, "µm", 500.0)),
        ("1 µm", (1.0, "µm", 1000.0)),
        ("2,5 µm", (2.5, "µm", 2500.0)),
        ("1mm", (1.0, "mm", 1e6)),
    ],
)
def test_parse_length(text, expected):
    value, unit, nm = parse_length(text)
    assert (value, unit) == expected[:2]
    assert nm == pytest.approx(expected[2])


@pytest.mark.parametrize("text", ["EHT = 20.00 kV", "WD = 2.8 mm", "nm", "20", "Mag = 50 K X", ""])
def test_parse_length_rejects_other_text(text):
    assert parse_length(text) is None


def test_band_with_ticks_and_zeiss_width_gives_the_width_pixel_size():
    rng = np.random.default_rng(0)
    img, truth = make_image(
        rng,
        mpl_font("DejaVuSans.ttf"),
        text_px=15,
        location="band",
        field_width="zeiss",
    )
    r = sem.read_scale_bar(img)
    assert truth.field_width
    assert r.location == "band" and r.bar_style == "ticks"
    assert r.label_value == truth.value and r.label_unit == truth.unit
    assert abs(r.bar_length_px - truth.bar_px) <= 1
    assert r.field_width_nm is not None
    assert r.pixel_size == pytest.approx(truth.pixel_size, rel=0.01)
    assert r.confident and r.confidence >= 0.9
    # the boxes point at the bar and its label in the input image
    r0, c0, _r1, c1 = r.bar_box
    assert r0 >= img.shape[0] - 100 and c1 - c0 >= truth.bar_px


@pytest.mark.parametrize(
    "font, location, polarity, style, unit_text, panel",
    [
        ("DejaVuSans.ttf", "band", "dark", "box", None, False),
        ("DejaVuSans-Bold.ttf", "image", "bright", "line", None, False),
        ("DejaVuSans-Bold.ttf", "band", "bright", "ticks", "um", False),
        ("DejaVuSans.ttf", "image", "dark", "ticks", "um", True),
        (
            "cmss10.ttf",
            "band",
            "bright",
            "line",
            "um",
            False,
        ),  # a font the templates never saw
        ("cmss10.ttf", "image", "bright", "box", None, True),
        ("DejaVuSansMono.ttf", "image", "dark", "box", None, False),
    ],
)
def test_bar_and_label_in_several_fonts_polarities_and_places(font, location, polarity, style, unit_text, panel):
    rng = np.random.default_rng(zlib.crc32(f"{font}{location}{polarity}".encode()))
    img, truth = make_image(
        rng,
        mpl_font(font),
        text_px=int(rng.integers(14, 26)),
        location=location,
        polarity=polarity,
        style=style,
        unit_text=unit_text,
        panel=panel,
        pixel_size=float(rng.choice([0.8, 3.1, 12.0, 45.0])),
    )
    r = sem.read_scale_bar(img)
    assert r.location == location
    assert r.label_value == truth.value and r.label_unit == truth.unit
    assert abs(r.bar_length_px - truth.bar_px) <= 1
    assert _close_to_truth(r, truth)
    assert r.confident


def test_rgb_input_and_sem_image_input():
    rng = np.random.default_rng(5)
    img, truth = make_image(rng, mpl_font("DejaVuSans.ttf"), text_px=16, location="band", field_width="fei")
    rgb = np.repeat(img[..., None], 3, axis=-1)
    assert sem.read_scale_bar(rgb).pixel_size == pytest.approx(truth.pixel_size, rel=0.01)
    row = sem.detect_databar(img)
    image = sem.SEMImage(data=img[:row], databar=img[row:])
    r = sem.read_scale_bar(image)
    assert r.pixel_size == pytest.approx(truth.pixel_size, rel=0.01)


def test_field_width_that_disagrees_with_the_bar_gives_low_confidence():
    rng = np.random.default_rng(1)
    img, truth = make_image(
        rng,
        mpl_font("DejaVuSans.ttf"),
        text_px=16,
        location="band",
        field_width="zeiss",
        field_width_scale=1.2,
    )
    r = sem.read_scale_bar(img)
    assert r.pixel_size_bar == pytest.approx(truth.pixel_size, rel=1.0 / truth.bar_px + 0.002)
    assert r.pixel_size_width == pytest.approx(1.2 * truth.pixel_size, rel=0.01)
    assert not r.confident
    assert any("disagree" in note for note in r.notes)


def test_garbage_gives_no_confident_reading():
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, size=(300, 400), dtype=np.uint8)
    assert not sem.read_scale_bar(noise).confident
    blank = np.zeros((200, 300), np.uint8)
    r = sem.read_scale_bar(blank)
    assert r.pixel_size is None and r.confidence == 0.0
    # a bar without any label: no pixel size
    img = np.full((240, 320), 90, np.uint8)
    img[200:204, 220:300] = 255
    assert sem.read_scale_bar(img).pixel_size is None
    # a label whose number is no length (text without a unit) next to a bar
    from PIL import Image, ImageDraw, ImageFont

    pil = Image.fromarray(np.full((240, 320), 90, np.uint8))
    d = ImageDraw.Draw(pil)
    d.text(
        (230, 170),
        "Mag 20",
        fill=255,
        font=ImageFont.truetype(mpl_font("DejaVuSans.ttf"), 16),
    )
    d.rectangle([220, 200, 299, 203], fill=255)
    assert sem.read_scale_bar(np.asarray(pil)).pixel_size is None


def test_bad_input_raises_clear_errors():
    with pytest.raises(SEMAnalysisError):
        sem.read_scale_bar(np.zeros((4, 4)))
    with pytest.raises(SEMAnalysisError):
        sem.read_scale_bar(np.zeros((5, 40, 40)))
    with pytest.raises(SEMAnalysisError):
        sem.read_scale_bar(np.array(["a", "b"]))


def test_random_images_never_raise():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    shapes = st.tuples(st.integers(8, 64), st.integers(8, 96))
    dtypes = st.sampled_from([np.uint8, np.uint16, np.float32])
    start = time.perf_counter()

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(arrays(dtypes, shapes, elements=st.integers(0, 255)), st.booleans())
    def check(arr, band):
        if band:  # a uniform band at the bottom with a bright stroke in it
            arr[-max(arr.shape[0] // 5, 4) :] = 0
            arr[-3, 2 : arr.shape[1] - 2] = 255
        r = sem.read_scale_bar(arr)
        assert 0.0 <= r.confidence <= 1.0
        assert r.pixel_size is None or r.pixel_size > 0

    check()
    assert hypothesis is not None and time.perf_counter() - start < 60


# --------------------------------------------------------------------------
# read_sem: pixel size from the scale bar, cross-check with the metadata
# --------------------------------------------------------------------------


def test_read_sem_takes_the_pixel_size_from_the_scale_bar_of_a_png_export(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(11)
    img, truth = make_image(
        rng,
        mpl_font("DejaVuSans.ttf"),
        text_px=16,
        location="band",
        field_width="zeiss",
    )
    path = tmp_path / "export.png"
    Image.fromarray(img).save(path)
    read = sem.read_sem(path)
    assert read.pixel_size_source == "scale bar"
    assert read.pixel_size == pytest.approx(truth.pixel_size, rel=0.01)
    assert read.data.shape == (480, 640)  # the band is cut off as before
    assert read.metadata["scale_bar"]["label_text"] == truth.label
    # the napari layer gets the scale in nm
    kwargs = read.layer_kwargs()
    assert kwargs["scale"] == (read.pixel_size, read.pixel_size) and kwargs["units"] == ("nm", "nm")
    # asked not to, it leaves the image in pixels
    assert sem.read_sem(path, scale_bar=False).pixel_size is None
    # a user's pixel size wins
    user = sem.read_sem(path, pixel_size=2.0)
    assert user.pixel_size == 2.0 and user.pixel_size_source == "user"


def test_read_sem_warns_when_metadata_and_scale_bar_disagree(tmp_path):
    from _tiffs import zeiss_tiff

    rng = np.random.default_rng(12)
    img, _truth = make_image(rng, mpl_font("DejaVuSans.ttf"), text_px=16, location="band", pixel_size=9.0)
    wrong = tmp_path / "wrong_mag.tif"
    zeiss_tiff(wrong, img, pixel_size_nm=9.0 * 1.1)  # metadata 10 % off the bar
    with pytest.warns(UserWarning, match="differ by"):
        read = sem.read_sem(wrong)
    assert read.pixel_size == pytest.approx(9.9) and read.pixel_size_source == "metadata"
    right = tmp_path / "right.tif"
    zeiss_tiff(right, img, pixel_size_nm=9.0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read = sem.read_sem(right)
    assert read.pixel_size_source == "metadata"


def test_cli_batch_pixel_size_from_scale_bar(tmp_path):
    """``--pixel-size from-scale-bar``: each image's own bar, also over a wrong metadata entry; an image
    without a readable bar is an error row, the others are written."""
    import imageio.v3 as iio
    import pandas as pd

    from napari_sem_analysis import cli

    from _tiffs import zeiss_tiff

    folder = tmp_path / "in"
    folder.mkdir()
    truths = {}
    for i, px in enumerate((2.0, 6.0)):
        img, truth = make_image(
            np.random.default_rng(40 + i), mpl_font("DejaVuSans.ttf"), text_px=16, location="band", pixel_size=px
        )
        truths[f"e{i}"] = truth
        if i == 0:
            iio.imwrite(folder / "e0.png", img)
        else:
            zeiss_tiff(folder / "e1.tif", img, pixel_size_nm=9.0)  # wrong metadata
            with pytest.warns(UserWarning, match="differ"):
                sem.read_sem(folder / "e1.tif")
    iio.imwrite(folder / "plain.png", np.random.default_rng(0).integers(0, 255, (120, 160), dtype=np.uint8))
    out = tmp_path / "out"
    code = cli.main(["batch", "particles", str(folder), "--out", str(out), "--quiet", "--pixel-size", "from-scale-bar"])
    assert code == 1  # one image failed, the others were written
    summary = pd.read_csv(out / "summary.csv").set_index("name")
    for name, truth in truths.items():
        assert summary.loc[name, "status"] == "ok"
        assert summary.loc[name, "pixel_size_nm"] == pytest.approx(truth.pixel_size, rel=1 / truth.bar_px + 0.002)
    assert summary.loc["plain", "status"] == "error" and "scale bar" in summary.loc["plain", "error"]
    with pytest.raises(SystemExit) as exc:  # argparse: a usage error
        cli.main(["batch", "particles", str(folder), "--out", str(tmp_path / "o2"), "--pixel-size", "abc"])
    assert exc.value.code == 2


# --------------------------------------------------------------------------
# no confident wrong reading: a decimal point that the reader may lose
# --------------------------------------------------------------------------


def test_a_number_with_a_lost_decimal_point_is_doubtful():
    from napari_sem_analysis._scalebar_label import _parse_label

    # "05 µm" is no label anyone prints: a point was lost; read as 0.5 µm but doubtful
    value, unit, nm, _fixed, doubtful = _parse_label("05 µm")
    assert (value, unit, nm, doubtful) == (0.5, "µm", 500.0, True)
    assert _parse_label("0.5 µm")[4] is False and _parse_label("50 nm")[4] is False
    # a unit split by a wide letter gap, and an 'm' whose arches broke into stems
    assert _parse_label("250 n m")[:3] == (250.0, "nm", 250.0)
    assert _parse_label("50 µ111")[:3] == (50.0, "µm", 50_000.0)
    assert _parse_label("2 m m") is None  # not taken for "2 mm"


@pytest.mark.parametrize("label", ["1.5 µm", "2.5 µm"])
def test_a_decimal_point_lost_by_a_small_serif_font_gives_no_confident_wrong_reading(label):
    """STIX at 11 px: the point of "1.5 µm" is thinner than the threshold keeps, and the label read
    "15 µm" with confidence 0.9 (10x off) before the magnified pass and the decimal-point checks."""
    truth_nm = parse_length(label)[2]
    r = sem.read_scale_bar(band_with_label(mpl_font("STIXGeneral.ttf"), label, text_px=11))
    right = r.label_nm is not None and r.label_nm == pytest.approx(truth_nm)
    assert right or not r.confident, (r.label_text, r.confidence, r.notes)


@pytest.mark.parametrize("label, font", [("1.5 µm", "DejaVuSans.ttf"), ("0.5 um", "DejaVuSerif.ttf")])
def test_a_faint_decimal_point_gives_no_confident_wrong_reading(label, font):
    """The '0.5 um' -> '05 um' failure: a point too faint for the mask must not give a confident
    reading 10x off; drawn at full ink the same label is read right and confidently."""
    bar_px = 120
    truth_nm = parse_length(label)[2]
    full = sem.read_scale_bar(band_with_label(mpl_font(font), label, bar_px=bar_px))
    assert full.confident and full.label_nm == pytest.approx(truth_nm)
    for faint in (0.0, 0.2, 0.35):
        r = sem.read_scale_bar(band_with_label(mpl_font(font), label, bar_px=bar_px, faint_point=faint))
        right = r.label_nm is not None and r.label_nm == pytest.approx(truth_nm)
        assert right or not r.confident, (faint, r.label_text, r.confidence, r.notes)


def test_a_label_with_a_number_just_left_of_it_is_doubtful():
    """Monospaced '2.5µm' at 23 px: the wide letter spacing split '2.' from '5µm', read confidently as
    5 µm (2x off). A digit chunk just left of a label on its line makes the label doubtful."""
    from napari_sem_analysis._glyphs import Glyph, TextChunk
    from napari_sem_analysis._scalebar_label import _label_candidates

    def chunk(chars_boxes):
        return TextChunk([Glyph(b, c, 0.5, 1.0) for c, b in chars_boxes], baseline=16.0, height=16.0)

    def label(col):  # "5µm" starting at column ``col``
        return chunk(
            [("5", (0, col, 16, col + 10)), ("µ", (4, col + 12, 20, col + 22)), ("m", (4, col + 24, 16, col + 36))]
        )

    number = chunk([("2", (0, 0, 16, 10)), (".", (13, 14, 16, 17))])
    alone = _label_candidates([label(30)], (0, 0))
    assert [(t, q) for _b, t, _p, q in alone] == [("5µm", 1.0)]
    near = _label_candidates([number, label(30)], (0, 0))
    assert [(t, q) for _b, t, _p, q in near] == [("5µm", 0.0)]
    far = _label_candidates([number, label(120)], (0, 0))  # another text, far left: not part of the label
    assert [(t, q) for _b, t, _p, q in far] == [("5µm", 1.0)]


def test_a_unit_letter_merged_with_another_glyph_is_doubtful():
    """A unit letter as tall as the digits (a digit touching it: STIX '20nm' with '0n' read as one 'm',
    so '2mm') or wider than that letter ever is ('mm' read as one 'm') makes the label doubtful
    (quality 0); the same labels with clean glyphs are not."""
    from napari_sem_analysis._glyphs import Glyph, TextChunk
    from napari_sem_analysis._scalebar_label import _label_candidates

    def read(chars_boxes):
        ch = TextChunk([Glyph(b, c, 0.5, 1.0) for c, b in chars_boxes], baseline=16.0, height=16.0)
        return [(t, q) for _b, t, _p, q in _label_candidates([ch], (0, 0))]

    two, zero = ("2", (0, 0, 16, 10)), ("0", (0, 12, 16, 22))
    n, m = ("n", (5, 24, 16, 34)), ("m", (5, 36, 16, 52))
    assert read([two, zero, n, m]) == [("20nm", 1.0)]
    merged = ("m", (0, 12, 16, 34))  # '0n' as one blob from the digits' top to the baseline
    assert read([two, merged, ("m", (5, 36, 16, 52))]) == [("2mm", 0.0)]
    assert read([two, ("µ", (5, 12, 21, 22)), ("m", (5, 24, 16, 40))]) == [("2µm", 1.0)]  # µ descends: clean
    # 'nm' read where the 'm' is 2.25 digit heights wide: more than one 'm' (the widest template: 1.7)
    assert read([two, zero, n, ("m", (5, 36, 16, 72))]) == [("20nm", 0.0)]


@pytest.mark.parametrize("label", ["20nm", "50nm"])
def test_a_unit_merged_with_a_digit_gives_no_confident_wrong_reading(label):
    """STIX at 13 px: '0' and 'n' of "20nm" touch and were read as one 'm': "2mm" (10^5 off) with
    confidence 0.50, the only confident wrong reading of the seed-6 benchmark."""
    truth_nm = parse_length(label)[2]
    r = sem.read_scale_bar(band_with_label(mpl_font("STIXGeneral.ttf"), label, text_px=13))
    right = r.label_nm is not None and r.label_nm == pytest.approx(truth_nm)
    assert right or not r.confident, (r.label_text, r.confidence, r.notes)


def test_a_digit_merged_with_its_decimal_point_makes_the_field_width_doubtful():
    """STIX 17 px without anti-aliasing: the point of "Width = 766.4 nm" touched the second '6' and
    the width read "7664 nm" (10x off) with confidence 0.62 with no bar label to check it. A digit
    wider than its siblings (a quarter and 2 px, for what each digit's templates say) is doubtful."""
    from napari_sem_analysis._glyphs import Glyph, TextChunk
    from napari_sem_analysis._scalebar_label import _label_candidates, _width_candidates

    def width(six_width):
        boxes = [("W", 152, 167), ("i", 168, 170), ("d", 173, 180), ("t", 180, 185), ("h", 186, 192)]
        boxes += [("=", 199, 209), ("7", 215, 222), ("6", 223, 231), ("6", 232, 232 + six_width)]
        boxes += [("4", 234 + six_width, 242 + six_width), ("n", 257, 263), ("m", 266, 276)]
        glyphs = [Glyph((6, c0, 18, c1), c, 0.5, 1.0) for c, c0, c1 in boxes]
        [(text, _v, _u, nm, _f, quality, _r)] = _width_candidates([TextChunk(glyphs, baseline=18.0, height=12.0)])
        return text, nm, quality

    assert width(8) == ("Width = 7664 nm", 7664.0, 1.0)  # two '6' alike: no reason for doubt
    assert width(10) == ("Width = 7664 nm", 7664.0, 0.0)  # one '6' 2 px wider: a point merged into it

    # two digits say nothing of each other: FreeSerif 12 px "20 nm" with a thin '2' partly lost
    label = [("2", (4, 530, 12, 534)), ("0", (4, 534, 12, 541)), ("n", (6, 545, 12, 549)), ("m", (7, 551, 12, 558))]
    ch = TextChunk([Glyph(b, c, 0.5, 1.0) for c, b in label], baseline=12.0, height=8.0)
    assert [(t, q) for _b, t, _p, q in _label_candidates([ch], (0, 0))] == [("20 nm", 1.0)]


def test_a_label_cut_right_after_a_point_on_the_baseline_is_doubtful():
    """FreeSerif 11 px on the image: '0.5 um' read '(1-5 um' (the thin '0' broken, the point read as
    '-'), and the label cut out of it, '5 um', was taken with confidence 0.90 (10x off). A label
    that starts right after a small flat mark on the baseline may have lost its number's head."""
    from napari_sem_analysis._glyphs import Glyph, TextChunk
    from napari_sem_analysis._scalebar_label import _label_candidates

    def read(mark_top):
        chars_boxes = [("(", (13, 97, 20, 99)), ("1", (13, 100, 20, 102)), ("-", (mark_top, 104, mark_top + 1, 107))]
        chars_boxes += [("5", (13, 106, 20, 110)), ("u", (15, 114, 20, 119)), ("m", (15, 119, 20, 127))]
        ch = TextChunk([Glyph(b, c, 0.5, 1.0) for c, b in chars_boxes], baseline=20.0, height=7.0)
        return [(t, q) for _b, t, _p, q in _label_candidates([ch], (0, 0), trim=True)]

    assert read(19) == [("5 um", 0.0)]  # on the baseline: a decimal point
    assert read(16) == [("5 um", 1.0)]  # half-way up: a dash, no lost point

    def read_speck(point):  # FreeSerif 15 px, "2.5 µm": the broken '2' read 'n', its point a speck
        chars_boxes = [("n", (13, 20, 19, 25))] + ([(".", (21, 27, 23, 29))] if point else [])
        chars_boxes += [("5", (13, 31, 23, 36)), ("µ", (16, 43, 26, 49)), ("m", (16, 50, 23, 60))]
        ch = TextChunk([Glyph(b, c, 0.5, 1.0) for c, b in chars_boxes], baseline=23.0, height=10.0)
        return [(t, q) for _b, t, _p, q in _label_candidates([ch], (0, 0), trim=True)]

    assert read_speck(True) == [("5 µm", 0.0)]  # the point dropped as a speck still counts
    assert read_speck(False) == [("5 µm", 1.0)]
    # but one pixel of texture next to 12 px digits is no point (DejaVu Sans 17 px "50 nm" on the image)
    chars_boxes = [(".", (22, 59, 23, 60)), ("5", (12, 60, 24, 67)), ("0", (12, 70, 24, 79))]
    chars_boxes += [("n", (15, 86, 24, 94)), ("m", (15, 97, 24, 111))]
    ch = TextChunk([Glyph(b, c, 0.5, 1.0) for c, b in chars_boxes], baseline=24.0, height=12.0)
    assert [(t, q) for _b, t, _p, q in _label_candidates([ch], (0, 0), trim=True)] == [("50 nm", 1.0)]


def test_a_number_and_unit_joined_across_lost_ink_are_doubtful():
    """FreeMono 23 px: "2.5 um" read as the chunks '2 .', two pieces of a broken '5' and 'Um'; the
    number and the unit joined across the gap read "2 Um" (2.5x off) with confidence 0.72. A point
    right after the number, or ink read apart between the number and the unit, makes it doubtful."""
    from napari_sem_analysis._glyphs import Glyph, TextChunk
    from napari_sem_analysis._scalebar_label import _label_candidates

    def chunk(chars_boxes, height=14.0):
        return TextChunk([Glyph(b, c, 0.5, 1.0) for c, b in chars_boxes], baseline=19.0, height=height)

    def read(point, pieces):
        number = chunk([("2", (5, 459, 19, 468))] + ([(".", (16, 470, 19, 474))] if point else []))
        unit = chunk([("U", (9, 490, 19, 501)), ("m", (9, 503, 19, 516))], height=10.0)
        broken_five = [chunk([("R", (5, 476, 14, 484))], 9.0), chunk([("%", (15, 475, 19, 484))], 4.0)]
        chunks = [number, unit] + (broken_five if pieces else [])
        return [(t, q) for _b, t, _p, q in _label_candidates(chunks, (0, 0)) if t.startswith("2")]

    assert read(point=False, pieces=False) == [("2 Um", 1.0)]
    assert read(point=True, pieces=False) == [("2 Um", 0.0)]  # "2." and then the unit: decimals lost
    assert read(point=False, pieces=True) == [("2 Um", 0.0)]  # ink between the number and the unit
    assert read(point=True, pieces=True) == [("2 Um", 0.0)]
    # texture after a label cut out of its chunk is not inside the label ("1 µm /", on the image)
    label = chunk(
        [("1", (24, 82, 39, 89)), ("µ", (27, 100, 44, 111)), ("m", (27, 112, 39, 129)), ("/", (26, 141, 40, 146))]
    )
    speck = chunk([("M", (40, 141, 47, 146))], 7.0)
    found = _label_candidates([label, speck], (0, 0), trim=True)
    assert [(t, q) for _b, t, _p, q in found] == [("1 µm", 1.0)]


def test_a_field_width_digit_that_the_bar_cannot_tell_apart_is_not_confident():
    """FreeSans Bold 18 px without anti-aliasing: "HFW 76.09 µm" read "78.09 µm" (a '6' read '8',
    2.6 % off) and the short bar (42 px, "5 µm") agreed within its own tolerance, so the width was
    taken with confidence 0.98. A field-width digit read with a small margin whose runner-up digit
    gives a width the bar agrees with as well is not confident; a bar long enough to tell the two
    widths apart, or a digit read surely, keeps the confidence."""
    from napari_sem_analysis._glyphs import Glyph, TextChunk
    from napari_sem_analysis._scalebar_label import _width_candidates
    from napari_sem_analysis.scalebar import ScaleBarReading, _score, _set_width

    def width(digits, margin, second):
        boxes = [("H", 8, 20), ("F", 22, 32), ("W", 34, 52)]
        boxes += [(c, 60 + 12 * k, 70 + 12 * k) for k, c in enumerate(digits)]
        boxes += [("µ", 130, 140), ("m", 142, 158)]
        glyphs = [Glyph((6, c0, 24, c1), c, 0.5, 1.0) for c, c0, c1 in boxes]
        glyphs[4] = Glyph(glyphs[4].box, glyphs[4].char, margin, 1.0, second)  # the second digit
        [w] = _width_candidates([TextChunk(glyphs, baseline=24.0, height=18.0)])
        return w

    def score(w, bar_px, label_nm):
        r = ScaleBarReading(bar_length_px=bar_px, label_text="x", label_value=1.0, label_nm=label_nm)
        r.pixel_size_bar = label_nm / bar_px
        _set_width(r, w, 640)
        _score(r, 1.0, 0)
        return r

    ambiguous = width("78.09", 0.04, "6")
    assert ambiguous[0] == "HFW 78.09 µm" and ambiguous[6] == [pytest.approx(76_090.0)]
    assert width("78.09", 0.3, "6")[6] == []  # read surely: no rival
    assert width("78.09", 0.04, "B")[6] == []  # the runner-up is no digit
    short = score(ambiguous, 42, 5000.0)  # the bar agrees with 78.09 and 76.09 alike
    assert short.pixel_size == pytest.approx(78_090.0 / 640) and not short.confident, short.notes
    sure = score(width("78.09", 0.3, "6"), 42, 5000.0)
    assert sure.confident  # no ambiguous digit: bar and width agree, as before
    # a bar long enough tells them apart: 76.09 read with a '6' that could be an '8' is confirmed
    long = score(width("76.09", 0.04, "8"), 421, 50_000.0)
    assert long.confident and long.pixel_size == pytest.approx(76_090.0 / 640), long.notes


def _band_without_antialiasing(font: str, label: str, text_px: int, bar_px: int = 120) -> np.ndarray:
    """A micrograph with a black band holding ``label`` in white, drawn without anti-aliasing (thin
    one-pixel strokes that touch where the font's glyphs come close), above a white bar."""
    from _scalebars import draw_bar, texture
    from PIL import Image, ImageDraw, ImageFont

    img = texture(np.random.default_rng(0), 200, 480)
    band = Image.new("L", (480, 3 * text_px + 30), 0)
    d = ImageDraw.Draw(band)
    d.fontmode = "1"
    fnt = ImageFont.truetype(mpl_font(font), text_px)
    lb = d.textbbox((0, 0), label, font=fnt)
    d.text((300 - lb[0], 6 - lb[1]), label, fill=255, font=fnt)
    draw_bar(d, 300, 6 + lb[3] - lb[1] + 6, bar_px, "line", 255, 2)
    return np.concatenate([img, np.asarray(band)], axis=0)


@pytest.mark.parametrize("label, text_px", [("200 nm", 13), ("500 nm", 15), ("200 nm", 17)])
def test_touching_thin_digits_without_antialiasing_are_read(label, text_px):
    """STIX without anti-aliasing: the thin serifs of '00' touch, and the pair was read as one glyph
    ('m', '(X)'), so the label read as no label at all (FreeSerif / STIX labels, the largest kind of
    missed label on the synthetic benchmark). A wide glyph that does not fit the label's grammar is
    tried split in two (at its thinnest column or its middle): the label is read right."""
    r = sem.read_scale_bar(_band_without_antialiasing("STIXGeneral.ttf", label, text_px))
    assert r.label_nm == pytest.approx(parse_length(label)[2]), (r.label_text, r.notes)
    assert r.bar_length_px == pytest.approx(120, abs=1)


def test_a_label_read_only_with_a_glyph_split_in_two_is_doubtful():
    """'100nm' with its '00' touching read '1mnm' (no label): the wide glyph's best split (``alt``,
    two '0') makes it a label, read right but doubtful (quality 0); a chunk that reads as a label
    as it is never tries a split ('2mm' stays '2mm')."""
    from napari_sem_analysis._glyphs import Glyph, TextChunk
    from napari_sem_analysis._scalebar_label import _label_candidates, _parse_label

    zeros = [Glyph((0, 12, 16, 21), "0", 0.3, 1.0), Glyph((0, 21, 16, 30), "0", 0.3, 1.0)]
    one = Glyph((0, 0, 16, 8), "1", 0.5, 1.0)
    n, m = Glyph((5, 33, 16, 42), "n", 0.5, 1.0), Glyph((5, 44, 16, 58), "m", 0.5, 1.0)
    merged = Glyph((0, 12, 16, 30), "m", 0.4, 1.0, alt=zeros)
    ch = TextChunk([one, merged, n, m], baseline=16.0, height=16.0)
    [(_box, text, parsed, quality)] = _label_candidates([ch], (0, 0))
    assert (text, parsed[2], quality) == ("100nm", 100.0, 0.0)
    m_next = Glyph((5, 31, 16, 45), "m", 0.5, 1.0)
    ch = TextChunk([Glyph((0, 0, 16, 10), "2", 0.5, 1.0), merged, m_next], baseline=16.0, height=16.0)
    assert [t for _b, t, _p, _q in _label_candidates([ch], (0, 0))] == ["2mm"]
    # look-alikes: a '5' read 's' (FreeMono), an 'm' broken into stems after a 'µ'
    assert _parse_label("s OO nm")[:4] == (500.0, "nm", 500.0, 3)
    assert _parse_label("2µn1")[:3] == (2.0, "µm", 2000.0)


def test_a_unit_letter_cut_out_of_a_touching_pair_and_read_unsurely_is_doubtful():
    """STIX 13 px without anti-aliasing, "20nm": '0n' touch and were split into '0' and a 'u' read
    with a margin of 0.06 ('n' and 'u' halves look alike): "20um" (1000x off) with confidence 0.58.
    A unit letter cut out of a wider glyph and not read surely makes the label doubtful."""
    from napari_sem_analysis._glyphs import Glyph, TextChunk
    from napari_sem_analysis._scalebar_label import _label_candidates

    def read(margin, cut=True):
        glyphs = [Glyph((0, 0, 10, 6), "2", 0.44, 1.0), Glyph((0, 7, 10, 12), "0", 0.52, 1.0, cut=cut)]
        glyphs += [Glyph((3, 12, 10, 17), "u", margin, 1.0, cut=cut), Glyph((3, 18, 10, 28), "m", 0.33, 1.0)]
        ch = TextChunk(glyphs, baseline=10.0, height=10.0)
        return [(t, q) for _b, t, _p, q in _label_candidates([ch], (0, 0))]

    assert read(0.06) == [("20um", 0.0)]
    assert read(0.3) == [("20um", 1.0)]  # read surely
    assert read(0.06, cut=False) == [("20um", 0.5)]  # a whole glyph: its margin alone lowers it
