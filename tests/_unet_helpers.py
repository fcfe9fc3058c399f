"""What the U-Net widget tests share: synthetic disks, a tiny CPU training setup, one torch thread."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Torch on one thread for the module (the machine is shared); restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def disks(shape=(96, 96), seed=0, n=8):
    """A bright-disk image and its 0/1 mask."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = np.zeros(shape, np.int32)
    for _ in range(n):
        cy, cx = r.integers(0, shape[0]), r.integers(0, shape[1])
        rad = r.integers(5, 12)
        mask[(yy - cy) ** 2 + (xx - cx) ** 2 < rad**2] = 1
    img = (70 + 110 * mask + r.normal(0, 20, shape)).clip(0, 255).astype(np.uint8)
    return img, mask


def setup_train(widget, epochs=2):
    """A Train U-Net widget set for a tiny, fast CPU run."""
    widget._encoder.value = "tu-resnet10t"
    widget._patch.value = 64
    widget._epochs.value = epochs
    widget._batch.value = 2
    widget._val.value = 0.25
    widget._device.value = "cpu"
