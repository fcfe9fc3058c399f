"""Writers of small vendor-style SEM files for the tests (no real data needed)."""

from __future__ import annotations

import numpy as np
import tifffile


def zeiss_tiff(path, image, pixel_size_nm=7.344, unit="nm"):
    """A TIFF with a Zeiss CZ_SEM tag (34118) like the SmartSEM software writes."""
    value = pixel_size_nm if unit == "nm" else pixel_size_nm / 1000
    text = (
        "0\r\n0\r\n0\r\n7.3e-09\r\n"
        f"AP_IMAGE_PIXEL_SIZE\r\nImage Pixel Size = {value} {unit}\r\n"
        "AP_MAG\r\nMag = 50.00 K X\r\n"
        "AP_ACTUALKV\r\nEHT = 20.00 kV\r\n"
        "AP_WD\r\nWD = 2.8 mm\r\n"
        "DP_DETECTOR_CHANNEL\r\nSignal A = InLens\r\n"
        "AP_DATE\r\nDate :18 Jul 2019\r\n"
    )
    data = text.encode("latin-1")
    tifffile.imwrite(path, image, extratags=[(34118, "B", len(data), data, True)])


def fei_tiff(path, image, pixel_size_m=5e-9, resolution_y=None):
    """A TIFF with an FEI/Thermo Fisher FEI_HELIOS tag (34682)."""
    rows = resolution_y if resolution_y is not None else image.shape[0]
    text = (
        "[User]\r\nDate=01/02/2024\r\nTime=10:11:12 AM\r\n"
        "[Beam]\r\nHV=5000\r\n"
        f"[Scan]\r\nPixelWidth={pixel_size_m}\r\nPixelHeight={pixel_size_m}\r\n"
        f"HorFieldsize={pixel_size_m * image.shape[1]}\r\n"
        "[Stage]\r\nWorkingDistance=0.0041\r\n"
        "[Detectors]\r\nName=ETD\r\n"
        f"[Image]\r\nResolutionX={image.shape[1]}\r\nResolutionY={rows}\r\nMagCanvasRealWidth=0.128\r\n"
    )
    tifffile.imwrite(path, image, extratags=[(34682, "s", 0, text, True)])


def tescan_tiff(path, image, pixel_size_m=2.5e-9):
    text = (
        f"[MAIN]\r\nDevice=MIRA\r\nHV=15000\r\nPixelSizeX={pixel_size_m}\r\nPixelSizeY={pixel_size_m}\r\nWD=0.005\r\n"
    )
    tifffile.imwrite(path, image, extratags=[(50431, "B", len(text), text.encode("latin-1"), True)])


def with_band(image, band_rows=40, value=0):
    """``image`` with an instrument-like band (uniform strip, bright text blocks) below it."""
    band = np.full((band_rows, image.shape[1]), value, dtype=image.dtype)
    hi = np.iinfo(image.dtype).max if value == 0 else 0
    band[band_rows // 2 - 2 : band_rows // 2 + 2, 10:110] = hi
    for x in range(130, image.shape[1] - 20, 14):
        band[10 : band_rows - 10, x : x + 6] = hi
    return np.vstack([image, band])


def raw_tiff(width, height, *, bits=8, strip_rows=None, data=b"", extra_tags=()):
    """A classic little-endian TIFF written byte by byte, declaring any size whatever data follows.

    One 8-bit (or 16-bit) grayscale page; strips of ``strip_rows`` rows (default: one strip) whose
    offsets point into ``data`` (short data means missing pixel data). ``extra_tags`` are
    ``(tag, type, count, value_bytes)`` tuples appended as out-of-line values.
    """
    import struct

    strip_rows = strip_rows or height
    n_strips = -(-height // strip_rows)
    strip_bytes = strip_rows * width * bits // 8
    header = 8
    data_off = header
    ifd_off = data_off + len(data) + (len(data) & 1)
    entries = []  # (tag, type, count, value-or-bytes)
    extra = []
    counts = [min(strip_bytes, height * width * bits // 8 - i * strip_bytes) for i in range(n_strips)]
    offsets = [data_off + i * strip_bytes for i in range(n_strips)]
    entries += [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, 1, bits),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
    ]
    entries += [
        (273, 4, n_strips, offsets),
        (277, 3, 1, 1),
        (278, 4, 1, strip_rows),
        (279, 4, n_strips, counts),
    ]
    entries += [(t, typ, c, v) for t, typ, c, v in extra_tags]
    entries.sort(key=lambda e: e[0])
    n = len(entries)
    after_ifd = ifd_off + 2 + 12 * n + 4
    ifd = struct.pack("<H", n)
    for tag, typ, count, value in entries:
        if isinstance(value, bytes):
            payload = value
        elif isinstance(value, list):
            payload = struct.pack(f"<{len(value)}I", *value)
        else:
            payload = None
        if payload is not None and len(payload) > 4:
            ifd += struct.pack("<HHII", tag, typ, count, after_ifd + sum(len(x) for x in extra))
            extra.append(payload + b"\0" * (len(payload) & 1))
        elif payload is not None:
            ifd += struct.pack("<HHI", tag, typ, count) + payload.ljust(4, b"\0")
        elif typ == 3:
            ifd += struct.pack("<HHIHH", tag, typ, count, value, 0)
        else:
            ifd += struct.pack("<HHII", tag, typ, count, value)
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_off) + data + b"\0" * (len(data) & 1) + ifd + b"".join(extra)


def zeiss_text(pixel="Image Pixel Size = 7.3 nm", eht="EHT = 20.00 kV", wd="WD = 2.8 mm"):
    """The CZ_SEM text of :func:`zeiss_tiff` with any field values (for garbage-field tests)."""
    return (
        "0\r\n0\r\n0\r\n7.3e-09\r\n"
        f"AP_IMAGE_PIXEL_SIZE\r\n{pixel}\r\nAP_MAG\r\nMag = 50.00 K X\r\n"
        f"AP_ACTUALKV\r\n{eht}\r\nAP_WD\r\n{wd}\r\nDP_DETECTOR_CHANNEL\r\nSignal A = InLens\r\n"
    ).encode("latin-1")
