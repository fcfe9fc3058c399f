"""Synthetic samples: deterministic, with consistent ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_sem_analysis as sem
from napari_sem_analysis.sample_data import AM_PORE_CLASSES, COATING_CLASSES


@pytest.mark.parametrize(
    "factory", [sem.sample_particles, sem.sample_porous_coating, sem.sample_multiphase, sem.sample_am_pores]
)
def test_deterministic_and_well_formed(factory):
    a, b = factory(seed=3), factory(seed=3)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.image.dtype == np.uint8 and a.image.ndim == 2
    assert a.labels.shape == a.image.shape
    assert a.pixel_size > 0
    assert not np.array_equal(factory(seed=4).image, a.image)


def test_particles_ground_truth_matches_image():
    s = sem.sample_particles()
    n = s.labels.max()
    assert n == s.info["n_particles"] >= 40
    assert set(np.unique(s.labels)) == set(range(n + 1))
    # particles are brighter than the substrate
    assert s.image[s.labels > 0].mean() > s.image[s.labels == 0].mean() + 40
    # some particles touch: their union has fewer connected components
    _, n_components = ndi.label(s.labels > 0)
    assert n_components < n
    # the info band is below the image and carries a scale bar of round length
    assert s.raw.shape[0] > s.image.shape[0]
    np.testing.assert_array_equal(s.raw[: s.image.shape[0]], s.image)
    assert s.info["scale_bar_px"] * s.pixel_size == pytest.approx(s.info["scale_bar_nm"], rel=0.02)


def test_coating_classes():
    s = sem.sample_porous_coating()
    assert s.class_names == COATING_CLASSES
    present = set(np.unique(s.labels))
    assert present == {1, 2, 3, 4, 5}
    coating_rows = (np.isin(s.labels, [2, 4, 5])).sum(axis=0).mean() * s.pixel_size
    assert coating_rows == pytest.approx(s.info["coating_thickness_nm"], rel=0.05)
    # pores are darker than the coating
    assert s.image[s.labels == 4].mean() < s.image[s.labels == 2].mean() - 60


def test_multiphase_texture_phase():
    s = sem.sample_multiphase()
    assert set(np.unique(s.labels)) == {1, 2, 3}
    matrix, lamellar = s.image[s.labels == 1], s.image[s.labels == 3]
    # similar mean gray, different local variation
    assert abs(matrix.mean() - lamellar.mean()) < 25
    assert lamellar.std() > matrix.std() * 1.5


def test_am_pores_classes_and_shapes():
    from skimage.measure import regionprops

    s = sem.sample_am_pores(n_pores=60)
    assert s.class_names == AM_PORE_CLASSES
    assert len(s.classes) == s.labels.max() == 60
    counts = np.bincount(list(s.classes.values()), minlength=3)
    assert counts.min() >= 19
    props = {p.label: p for p in regionprops(s.labels)}
    solidity = {k: np.mean([props[i].solidity for i, c in s.classes.items() if c == k]) for k in range(3)}
    elong = {k: np.mean([props[i].eccentricity for i, c in s.classes.items() if c == k]) for k in range(3)}
    assert solidity[2] < solidity[0] - 0.1  # lack-of-fusion voids are irregular
    assert elong[1] > elong[0] + 0.3  # keyholes are elongated, gas pores round


def test_sem_particles_sample_looks_like_a_micrograph_and_keeps_its_ground_truth():
    import napari_sem_analysis as sem

    s = sem.sample_sem_particles(seed=0)
    again = sem.sample_sem_particles(seed=0)
    np.testing.assert_array_equal(s.image, again.image)
    assert s.image.dtype == np.uint8 and s.image.shape == s.labels.shape == (600, 800)
    assert s.raw.shape[0] > s.image.shape[0] and s.info["databar_row"] == 600
    ids, counts = np.unique(s.labels[s.labels > 0], return_counts=True)
    assert ids.tolist() == list(range(1, s.labels.max() + 1)) and counts.min() >= 20  # visible parts, 1..n
    # size dispersion: the largest particle several times the smallest
    assert counts.max() > 5 * counts.min()
    # particles brighter than the substrate; uneven illumination: top left brighter than bottom right
    bg = s.labels == 0
    assert s.image[~bg].mean() > s.image[bg].mean() + 20
    assert s.image[:150, :200][bg[:150, :200]].mean() > s.image[-150:, -200:][bg[-150:, -200:]].mean()
    # the particles preset recovers the ground truth (count and median size) on it
    found = sem.summarize(sem.measure(sem.segment_particles(s.image, pixel_size=5.0), pixel_size=5.0)).loc["all"]
    truth = sem.summarize(sem.measure(s.labels, pixel_size=5.0)).loc["all"]
    assert found["count"] == pytest.approx(truth["count"], rel=0.15)
    assert found["d50"] == pytest.approx(truth["d50"], rel=0.1)
