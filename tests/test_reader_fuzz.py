"""Property-based test of the reader over mutated TIFFs (hypothesis, bounded in examples and time).

Small valid TIFFs (plain, compressed, tiled, 16-bit, a stack, Zeiss/FEI/TESCAN metadata) have bytes
flipped, values written over their tag fields, or are cut short. Whatever the result, ``read_sem``
returns an image or raises a clear :class:`SEMAnalysisError`: never another exception, never more
than a set memory, never longer than a set time.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import time
import tracemalloc
import warnings

import numpy as np
import pytest
import tifffile

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import napari_sem_analysis as sem  # noqa: E402
from napari_sem_analysis._validation import SEMAnalysisError  # noqa: E402

from _tiffs import fei_tiff, tescan_tiff, zeiss_tiff  # noqa: E402

MAX_PIXELS = 2**20  # the reader's limit in this test: 1 Mpx
MEMORY_LIMIT = 64e6  # bytes traced by tracemalloc (numpy arrays included)
TIME_LIMIT = 10.0  # seconds per file, generous for a shared 2-core CI machine


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(0)
    img = rng.normal(120, 30, (48, 40)).clip(0, 255).astype(np.uint8)
    out = []
    for kwargs in (
        {},
        {"compression": "zlib", "rowsperstrip": 8},
        {"tile": (16, 16)},
        {"rowsperstrip": 4},
    ):
        buf = io.BytesIO()
        tifffile.imwrite(buf, img, **kwargs)
        out.append(buf.getvalue())
    buf = io.BytesIO()
    tifffile.imwrite(buf, img.astype(np.uint16) * 200, compression="zlib")
    out.append(buf.getvalue())
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.stack([img, img[::-1]]))
    out.append(buf.getvalue())
    with tempfile.TemporaryDirectory() as tmp:
        for writer in (zeiss_tiff, fei_tiff, tescan_tiff):
            path = os.path.join(tmp, "seed.tif")
            writer(path, img)
            with open(path, "rb") as fh:
                out.append(fh.read())
    return out


SEEDS = _seeds()
INTERESTING = [0, 1, 2, 3, 7, 8, 16, 255, 256, 4095, 65535, 65536, 2**24, 2**31 - 1, 2**32 - 1]

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("u16"), st.integers(0, 10**6), st.sampled_from(INTERESTING[:11])),
    st.tuples(st.just("u32"), st.integers(0, 10**6), st.sampled_from(INTERESTING)),
    st.tuples(st.just("tag"), st.integers(0, 10**6), st.sampled_from(INTERESTING)),
)


def _ifd_value_positions(data: bytes) -> list[int]:
    """Offsets of the value fields of the first IFD's entries (where tag values live)."""
    if len(data) < 8 or data[:4] != b"II*\x00":
        return []
    ifd = struct.unpack("<I", data[4:8])[0]
    if ifd + 2 > len(data):
        return []
    n = struct.unpack("<H", data[ifd : ifd + 2])[0]
    return [ifd + 2 + 12 * i + 8 for i in range(n) if ifd + 2 + 12 * i + 12 <= len(data)]


def _mutate(data: bytes, mutations) -> bytes:
    buf = bytearray(data)
    for kind, where, value in mutations:
        if not buf:
            break
        if kind == "flip":
            buf[where % len(buf)] = value
        elif kind == "cut":
            del buf[max(where % len(buf), 8) :]
        elif kind == "u16" and len(buf) >= 2:
            struct.pack_into("<H", buf, where % (len(buf) - 1), value)
        elif kind == "u32" and len(buf) >= 4:
            struct.pack_into("<I", buf, where % (len(buf) - 3), value)
        elif kind == "tag":
            positions = _ifd_value_positions(bytes(buf))
            if positions:
                struct.pack_into("<I", buf, positions[where % len(positions)], value)
    return bytes(buf)


@settings(
    max_examples=120,
    deadline=None,  # time is bounded below, per file, with a limit a slow CI machine can meet
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,  # the same examples on every run: failures reproduce
)
@given(seed=st.integers(0, len(SEEDS) - 1), mutations=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_tiffs_give_an_image_or_a_clear_error(seed, mutations):
    data = _mutate(SEEDS[seed], mutations)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mutated.tif")
        with open(path, "wb") as fh:
            fh.write(data)
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    img = sem.read_sem(path, max_pixels=MAX_PIXELS, all_planes=seed % 2 == 1)
                except SEMAnalysisError as exc:
                    assert "mutated.tif" in str(exc) or "pixel" in str(exc)
                else:
                    assert img.data.ndim in (2, 3) and img.data.size > 0
                    assert img.pixel_size is None or 1e-3 <= img.pixel_size <= 1e6
        finally:
            elapsed = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    assert peak < MEMORY_LIMIT, f"{peak / 1e6:.0f} MB for {mutations}"
    assert elapsed < TIME_LIMIT, f"{elapsed:.1f} s for {mutations}"


def test_the_seeds_themselves_read():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "seed.tif")
        for data in SEEDS:
            with open(path, "wb") as fh:
                fh.write(data)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert sem.read_sem(path).data.shape[-2:] == (48, 40)
