"""local_thickness: exact answers on discs, bars and annuli; brute-force reference on random masks."""

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_sem_analysis as sem
from napari_sem_analysis import SEMAnalysisError


def _brute_radius(mask, integer=False):
    """Largest disc radius covering each pixel, by trying every centre (|p - c| < r(c))."""
    d = ndi.distance_transform_edt(mask)  # the phase continues past the border
    d2 = np.rint(d * d).astype(int)
    if integer:  # radii rounded down to whole pixels (PoreSpy)
        d2 = np.floor(np.sqrt(d2) + 1e-9).astype(int) ** 2
    out = np.zeros(mask.shape)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    for cy, cx in zip(*np.nonzero(mask), strict=True):
        cover = (yy - cy) ** 2 + (xx - cx) ** 2 < d2[cy, cx]
        out[cover] = np.maximum(out[cover], np.sqrt(d2[cy, cx]))
    return out * mask


@pytest.mark.parametrize("width", [1, 3, 5, 9, 15])
def test_bar_of_odd_width_has_that_thickness_everywhere(width):
    mask = np.zeros((40, 60), bool)
    mask[5 : 5 + width, :] = True
    lt = sem.local_thickness(mask)
    # the largest disc is centred on the middle row; it covers the whole bar width
    np.testing.assert_allclose(lt.thickness[mask], width)
    assert np.all(lt.thickness[~mask] == 0)
    assert lt.summary["median"] == pytest.approx(width)


def test_even_bar_is_one_pixel_less_and_pixel_size_scales():
    mask = np.zeros((30, 30), bool)
    mask[4:12, :] = True  # 8 rows
    lt = sem.local_thickness(mask, pixel_size=2.5)
    np.testing.assert_allclose(lt.thickness[mask], 7 * 2.5)
    assert lt.summary["unit"] == "nm"


def test_disc_is_its_diameter_everywhere():
    yy, xx = np.mgrid[:101, :101]
    disc = (yy - 50) ** 2 + (xx - 50) ** 2 <= 30**2  # the pixels of a disc of diameter 60
    lt = sem.local_thickness(disc)
    # one inscribed disc covers everything: its radius is the distance to the nearest
    # outside pixel, (30, 1) from the centre
    np.testing.assert_allclose(lt.thickness[disc], 2 * np.sqrt(901) - 1, rtol=1e-6)
    assert abs(lt.summary["median"] - 60) <= 1


def test_annulus_is_its_ring_width():
    yy, xx = np.mgrid[:121, :121]
    r2 = (yy - 60) ** 2 + (xx - 60) ** 2
    ring = (r2 <= 50**2) & (r2 > 40**2)  # radial width 10 px
    t = sem.local_thickness(ring).thickness[ring]
    # the ring is 10 px wide radially: discs of diameter 9-11 px depending on the digital circle
    assert np.median(t) == pytest.approx(10, abs=1)
    assert t.max() <= 11 and t.min() >= 7


def test_matches_brute_force_on_random_masks():
    rng = np.random.default_rng(3)
    from napari_sem_analysis.thickness import thickness_radius

    for _ in range(6):
        mask = ndi.gaussian_filter(rng.random((36, 44)), 1.8) > 0.5
        mask[0, 0] = False  # some background, so that the distance is defined
        np.testing.assert_allclose(thickness_radius(mask), _brute_radius(mask), atol=1e-5)
        np.testing.assert_allclose(
            thickness_radius(mask, integer_radii=True), _brute_radius(mask, integer=True), atol=1e-5
        )


def test_pores_and_ligaments_of_a_network():
    rng = np.random.default_rng(0)
    mask = ndi.gaussian_filter(rng.random((128, 128)), 4) > 0.5
    lig, pores = sem.local_thickness(mask), sem.local_thickness(~mask)
    assert lig.summary["area_fraction"] + pores.summary["area_fraction"] == pytest.approx(1.0)
    assert np.all(lig.thickness[~mask] == 0) and np.all(pores.thickness[mask] == 0)
    counts, edges = lig.histogram
    assert counts.sum() == mask.sum() and edges[-1] > lig.summary["max"] - 1e-3


def test_bad_input():
    with pytest.raises(SEMAnalysisError):
        sem.local_thickness(np.zeros((3, 4, 5), bool))
    with pytest.raises(SEMAnalysisError):
        sem.local_thickness(np.array([["a"]]))
    with pytest.raises(SEMAnalysisError):
        sem.local_thickness(np.ones((10, 10)), pixel_size=-1)
    with pytest.raises(SEMAnalysisError):
        sem.local_thickness(None)
    empty = sem.local_thickness(np.zeros((10, 10), bool))
    assert np.all(empty.thickness == 0) and np.isnan(empty.summary["mean"])
