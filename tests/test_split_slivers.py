"""No slivers from split_touching, and the particle preset equals the same chain of public steps."""

from __future__ import annotations

import cv2
import numpy as np

from napari_sem_analysis import (
    clean_mask,
    sample_particles,
    segment_particles,
    split_touching,
    threshold,
)


def test_split_with_widget_defaults_leaves_no_slivers():
    s = sample_particles()
    mask = clean_mask(threshold(s.image, "otsu"), min_size=4)
    kw = dict(min_distance=5, intensity_image=s.image, edge_quantile=0.5, boundary_weight=0.5)
    before = split_touching(mask, merge_slivers=False, **kw)
    after = split_touching(mask, **kw)
    areas = np.bincount(after.ravel())[1:]
    # no piece smaller than a disc of diameter min_distance is left
    assert areas.min() >= np.pi * 2.5**2
    assert np.bincount(before.ravel())[1:].min() < np.pi * 2.5**2
    # fewer objects, closer to the 60 particles of the sample; the foreground is kept
    n_true = int(s.labels.max())
    assert abs(int(after.max()) - n_true) < abs(int(before.max()) - n_true)
    assert (after > 0).sum() > 0.99 * (before > 0).sum()


def test_preset_equals_the_chain_of_public_steps():
    s = sample_particles()
    img = s.image
    preset = segment_particles(img)
    blurred = cv2.GaussianBlur(img.astype(np.float32), (7, 7), 1.0, borderType=cv2.BORDER_REFLECT)
    mask = clean_mask(threshold(blurred, "li"), opening=1, min_size=np.pi * 2.0**2, fill_holes=True)
    from napari_sem_analysis.segmentation.presets import _adaptive_min_distance

    md = _adaptive_min_distance(mask, 0.25)
    chain = split_touching(
        mask,
        min_distance=md,
        smooth=1.0,
        intensity_image=blurred,
        edge_quantile=0.5,
        boundary_weight=0.5,
        min_size=np.pi * 2.0**2,
        separate=True,
    )
    assert np.array_equal(chain, preset)
