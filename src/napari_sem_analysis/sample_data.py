"""Procedural SEM-like sample images with ground truth.

Every generator is deterministic for a given ``seed``, needs no download and
returns a :class:`SyntheticSample`: the analysis-ready image, its ground
truth and the pixel size in nm. They serve as File > Open Sample entries in
napari, as test data with known answers, and as demo data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ._sample_fibers import sample_fibers

AM_PORE_CLASSES = ("gas", "keyhole", "lack-of-fusion")


@dataclass
class SyntheticSample:
    """A synthetic micrograph with ground truth.

    Attributes
    ----------
    image : ndarray (uint8, 2-D)
        The micrograph without the info band.
    labels : ndarray (int32, 2-D)
        Ground truth: instance labels (particles, pores) or a class map
        (coating, multiphase; see ``class_names``).
    pixel_size : float
        Nanometres per pixel.
    name : str
    class_names : tuple of str or None
        For class maps: the name of class ``i + 1`` (0 is background, when
        present); for ``am_pores``: the pore classes.
    classes : dict or None
        For ``am_pores``: instance label -> class index into ``class_names``.
    raw : ndarray or None
        The image as an instrument would save it, with its info band.
    info : dict
        Generator parameters and facts (e.g. the scale-bar length in nm).
    """

    image: np.ndarray
    labels: np.ndarray
    pixel_size: float
    name: str
    class_names: tuple[str, ...] | None = None
    classes: dict[int, int] | None = None
    raw: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# rendering helpers
# ---------------------------------------------------------------------------


def _sem_render(signal: np.ndarray, rng: np.random.Generator, *, blur: float = 1.0, dose: float = 40.0) -> np.ndarray:
    """Blur a [0, 1] signal like a finite beam and add shot (Poisson) noise."""
    sig = ndi.gaussian_filter(signal.astype(np.float64), blur) if blur > 0 else signal
    counts = rng.poisson(np.clip(sig, 0, None) * dose)
    out = counts / dose
    return np.clip(out * 255.0, 0, 255).astype(np.uint8)


def _add_info_band(image: np.ndarray, pixel_size: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Append an instrument-like info band (black strip, white text blocks, scale bar)."""
    h, w = image.shape
    band_h = max(24, h // 12)
    band = np.zeros((band_h, w), dtype=np.uint8)
    # scale bar: a round length close to a fifth of the width
    target_nm = w * pixel_size / 5
    exponent = 10 ** np.floor(np.log10(target_nm))
    bar_nm = float(min((1, 2, 5, 10), key=lambda m: abs(m * exponent - target_nm)) * exponent)
    bar_px = int(round(bar_nm / pixel_size))
    y0 = band_h // 2
    band[y0 - 2 : y0 + 2, 10 : 10 + bar_px] = 255
    # "text": glyph-like blocks
    x = 20 + bar_px
    glyph_h = max(6, band_h // 3)
    while x < w - 12:
        gw = int(rng.integers(4, 9))
        glyph = rng.random((glyph_h, gw)) > 0.45
        top = (band_h - glyph_h) // 2
        band[top : top + glyph_h, x : x + gw][glyph] = 255
        x += gw + int(rng.integers(2, 12 if rng.random() > 0.15 else 30))
    return np.vstack([image, band]), {"databar_row": h, "scale_bar_nm": bar_nm, "scale_bar_px": bar_px}


def _finish(
    signal: np.ndarray,
    rng: np.random.Generator,
    labels: np.ndarray,
    pixel_size: float,
    name: str,
    *,
    blur: float,
    dose: float,
    band: bool = True,
    **fields,
) -> SyntheticSample:
    """Render ``signal`` (:func:`_sem_render`), add the info band (``raw``, when ``band``) and make the sample.

    ``fields``: the other :class:`SyntheticSample` fields (``class_names``,
    ``classes``, ``info``; the band's facts are added to ``info``).
    """
    image = _sem_render(signal, rng, blur=blur, dose=dose)
    info = dict(fields.pop("info", {}))
    raw = None
    if band:
        raw, band_info = _add_info_band(image, pixel_size, rng)
        info.update(band_info)
    return SyntheticSample(image=image, labels=labels, pixel_size=pixel_size, name=name, raw=raw, info=info, **fields)


def _disk_distance(shape, cy, cx, ry, rx, angle):
    """Normalised elliptical radius (1 on the boundary) around (cy, cx)."""
    y, x = np.ogrid[: shape[0], : shape[1]]
    dy, dx = y - cy, x - cx
    c, s = np.cos(angle), np.sin(angle)
    u = (dx * c + dy * s) / rx
    v = (-dx * s + dy * c) / ry
    return np.sqrt(u * u + v * v)


# ---------------------------------------------------------------------------
# (a) particles on a substrate
# ---------------------------------------------------------------------------


def sample_particles(
    seed: int = 0, *, shape=(512, 512), n_particles: int = 60, pixel_size: float = 5.0
) -> SyntheticSample:
    """Bright particles on a darker substrate, some touching, as in SE imaging.

    Particles have SEM edge brightening (a bright rim), the substrate a slow
    shading gradient; the image is blurred by the beam and has shot noise.
    ``raw`` has an info band with a scale bar at the bottom.

    ``labels`` are instance labels, one per particle (touching particles
    have different labels).

    Parameters
    ----------
    seed : int
        Random seed; the same seed gives the same sample.
    shape : tuple of int
        Image shape (rows, columns) without the info band.
    n_particles : int
        Number of particles placed.
    pixel_size : float
        Nanometres per pixel stated in the sample.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    labels = np.zeros(shape, dtype=np.int32)
    rim = np.zeros(shape)
    body = np.zeros(shape)
    centres: list[tuple[float, float, float]] = []
    n = 0
    attempts = 0
    while n < n_particles and attempts < n_particles * 200:
        attempts += 1
        r = float(rng.uniform(8, 20))
        if centres and rng.random() < 0.3:
            # a touching neighbour of an existing particle
            cy0, cx0, r0 = centres[int(rng.integers(len(centres)))]
            ang = rng.uniform(0, 2 * np.pi)
            d = (r + r0) * 0.93
            cy, cx = cy0 + d * np.sin(ang), cx0 + d * np.cos(ang)
        else:
            cy, cx = rng.uniform(r + 2, h - r - 2), rng.uniform(r + 2, w - r - 2)
        if not (r + 1 < cy < h - r - 1 and r + 1 < cx < w - r - 1):
            continue
        # little overlap allowed: at most a sliver
        ok = all(np.hypot(cy - y, cx - x) > 0.9 * (r + rr) for y, x, rr in centres)
        if not ok:
            continue
        aspect = rng.uniform(0.8, 1.0)
        dist = _disk_distance(shape, cy, cx, r * aspect, r, rng.uniform(0, np.pi))
        inside = dist <= 1.0
        n += 1
        labels[inside & (labels == 0)] = n
        # edge brightening: strongest at the boundary
        rim = np.maximum(rim, np.where(inside, np.exp(-(1.0 - dist) * r / 2.5), 0))
        body = np.maximum(body, inside.astype(float))
        centres.append((cy, cx, r))
    yy, xx = np.mgrid[:h, :w]
    shading = 0.05 * (xx / w) + 0.03 * (yy / h)
    signal = 0.22 + shading + body * 0.35 + rim * 0.3
    signal += ndi.gaussian_filter(rng.normal(0, 0.02, shape), 3)
    return _finish(signal, rng, labels, pixel_size, "particles", blur=1.0, dose=60, info={"n_particles": n})


def sample_sem_particles(
    seed: int = 0, *, shape=(600, 800), n_particles: int = 90, pixel_size: float = 5.0
) -> SyntheticSample:
    """A more micrograph-like particle image (used by the demo).

    Like :func:`sample_particles` (same fields and meaning: ``labels`` are the
    instance labels of the visible part of each particle), with what a real
    secondary-electron image shows: log-normal size dispersion, clusters of
    touching and partly overlapping particles (the later one on top),
    per-particle brightness, edge brightening, a dark shadow/halo on the
    substrate around particles on the side away from the detector, a grainy
    substrate, uneven illumination, scan-line noise and shot noise, and an
    info band with a scale bar under the image (``raw``).

    Parameters
    ----------
    seed : int
        Random seed; the same seed gives the same image and labels.
    shape : (int, int)
        Image shape (rows, columns) without the info band.
    n_particles : int
        How many particles are placed (fewer when no room is left).
    pixel_size : float
        Pixel size in nm.

    Returns
    -------
    SyntheticSample
        ``image``, ``labels`` (visible part of each particle, 1..n),
        ``pixel_size`` and ``raw`` (the image with its info band).
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    labels = np.zeros(shape, dtype=np.int32)
    signal = np.zeros(shape)
    centres: list[tuple[float, float, float]] = []
    n = 0
    attempts = 0
    while n < n_particles and attempts < n_particles * 200:
        attempts += 1
        r = float(np.clip(rng.lognormal(np.log(13.0), 0.3), 8.0, 30.0))
        if centres and rng.random() < 0.4:
            cy0, cx0, r0 = centres[int(rng.integers(len(centres)))]
            ang = rng.uniform(0, 2 * np.pi)
            d = (r + r0) * rng.uniform(0.82, 0.97)  # touching or slightly overlapping
            cy, cx = cy0 + d * np.sin(ang), cx0 + d * np.cos(ang)
        else:
            cy, cx = rng.uniform(r + 2, h - r - 2), rng.uniform(r + 2, w - r - 2)
        if not (r + 1 < cy < h - r - 1 and r + 1 < cx < w - r - 1):
            continue
        if not all(np.hypot(cy - y, cx - x) > 0.8 * (r + rr) for y, x, rr in centres):
            continue
        aspect = rng.uniform(0.75, 1.0)
        dist = _disk_distance(shape, cy, cx, r * aspect, r, rng.uniform(0, np.pi))
        inside = dist <= 1.0
        n += 1
        labels[inside] = n  # on top of the particles it overlaps
        body = rng.uniform(0.30, 0.42)
        rim = np.exp(-(1.0 - dist[inside]) * r / 2.5)
        # a little topography: brighter towards the detector (top left)
        yy, xx = np.nonzero(inside)
        tilt = 0.03 * ((cx - xx) + (cy - yy)) / (2 * r)
        signal[inside] = body + 0.12 * rim + tilt
        centres.append((cy, cx, r))
    # drop particles hidden below others down to a sliver, renumber 1..n
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    tiny = ids[counts < 20]
    if len(tiny):
        signal[np.isin(labels, tiny)] = 0.0
        labels[np.isin(labels, tiny)] = 0
    lut = np.zeros(labels.max() + 1, np.int32)
    kept = np.unique(labels[labels > 0])
    lut[kept] = np.arange(1, len(kept) + 1)
    labels = lut[labels]
    fg = labels > 0
    yy, xx = np.mgrid[:h, :w]
    # substrate: grain, shadow (away from the detector) and a faint halo next to the particles
    edt = ndi.distance_transform_edt(~fg)
    shifted = ndi.shift(fg.astype(float), (3, 3), order=1) > 0.5
    shadow = ndi.gaussian_filter(shifted.astype(float), 2.5) * ~fg
    substrate = (
        0.2
        + ndi.gaussian_filter(rng.normal(0, 0.035, shape), 1.2)
        + ndi.gaussian_filter(rng.normal(0, 0.05, shape), 12)
    )
    substrate += 0.03 * np.exp(-edt / 1.5) * ~fg - 0.06 * shadow
    signal = np.where(fg, signal, substrate)
    # uneven illumination (brighter top left, darker corners)
    r2 = ((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2
    signal = signal * (1.0 + 0.08 * (1 - xx / w) + 0.05 * (1 - yy / h) - 0.25 * r2)
    signal += rng.normal(0, 0.008, (h, 1))  # scan lines
    info = {"n_particles": int(labels.max())}
    return _finish(np.clip(signal, 0, 1), rng, labels, pixel_size, "particles", blur=0.9, dose=70, info=info)


# ---------------------------------------------------------------------------
# (b) porous coating cross-section
# ---------------------------------------------------------------------------

COATING_CLASSES = ("mount", "coating", "substrate", "pore", "crack")


def _rough_line(rng, w, base, amp, smooth):
    noise = ndi.gaussian_filter1d(rng.normal(0, 1, w), smooth)
    noise /= np.abs(noise).max() + 1e-9
    return base + amp * noise


def sample_porous_coating(seed: int = 0, *, shape=(512, 512), pixel_size: float = 50.0) -> SyntheticSample:
    """A polished cross-section: mount, porous coating with cracks, substrate.

    ``labels`` is a class map with values 1..5 for ``class_names``
    (mount, coating, substrate, pore, crack). ``info`` holds the true mean
    coating thickness in nm and the number of cracks.

    Parameters
    ----------
    seed : int
        Random seed; the same seed gives the same sample.
    shape : tuple of int
        Image shape (rows, columns).
    pixel_size : float
        Nanometres per pixel stated in the sample.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    top = _rough_line(rng, w, h * 0.22, h * 0.02, 8)
    bottom = _rough_line(rng, w, h * 0.68, h * 0.015, 12)
    yy = np.arange(h)[:, None]
    cls = np.where(yy < top[None, :], 1, np.where(yy < bottom[None, :], 2, 3)).astype(np.int32)
    coating = cls == 2
    # pores: dark ellipses inside the coating
    pores = np.zeros(shape, bool)
    for _ in range(int(rng.integers(35, 50))):
        cx = rng.uniform(0, w)
        t, b = np.interp(cx, np.arange(w), top), np.interp(cx, np.arange(w), bottom)
        cy = rng.uniform(t + 6, b - 6)
        r = rng.uniform(2, 9)
        d = _disk_distance(shape, cy, cx, r * rng.uniform(0.5, 1.0), r, rng.uniform(0, np.pi))
        pores |= d <= 1
    pores &= coating
    # cracks: thin near-vertical random walks through part of the coating
    cracks = np.zeros(shape, bool)
    n_cracks = int(rng.integers(3, 6))
    for _ in range(n_cracks):
        x = rng.uniform(20, w - 20)
        t, b = np.interp(x, np.arange(w), top), np.interp(x, np.arange(w), bottom)
        y0 = rng.uniform(t, t + 0.3 * (b - t))
        length = rng.uniform(0.4, 0.8) * (b - t)
        y = y0
        while y < y0 + length:
            xi, yi = int(round(x)), int(round(y))
            if 0 <= yi < h and 0 <= xi < w:
                cracks[yi, max(xi - 1, 0) : xi + 1] = True
            x += rng.normal(0, 0.5)
            y += 1
    cracks &= coating
    cls[pores] = 4
    cls[cracks] = 5
    level = np.array([0, 0.12, 0.62, 0.42, 0.08, 0.05])
    signal = level[cls]
    signal += np.where(cls == 2, ndi.gaussian_filter(rng.normal(0, 0.05, shape), 2), 0)
    info = {"coating_thickness_nm": float(np.mean(bottom - top)) * pixel_size, "n_cracks": n_cracks}
    return _finish(
        signal, rng, cls, pixel_size, "porous_coating", blur=0.8, dose=50, class_names=COATING_CLASSES, info=info
    )


# ---------------------------------------------------------------------------
# (c) multi-phase / textured microstructure
# ---------------------------------------------------------------------------

MULTIPHASE_CLASSES = ("matrix", "bright phase", "lamellar phase")


def sample_multiphase(seed: int = 0, *, shape=(512, 512), pixel_size: float = 20.0) -> SyntheticSample:
    """Grains of three phases: a matrix, a bright phase and a lamellar (textured) phase.

    The lamellar phase has about the mean gray level of the matrix, so only
    texture (e.g. GLCM contrast) separates them. ``labels`` is a class map
    with values 1..3 for ``class_names``.

    Parameters
    ----------
    seed : int
        Random seed; the same seed gives the same sample.
    shape : tuple of int
        Image shape (rows, columns).
    pixel_size : float
        Nanometres per pixel stated in the sample.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    n_grains = 70
    pts = rng.uniform(0, 1, (n_grains, 2)) * (h, w)
    yy, xx = np.mgrid[:h, :w]
    # Voronoi grains with slightly wavy boundaries
    warp_y = ndi.gaussian_filter(rng.normal(0, 1, shape), 12) * 60
    warp_x = ndi.gaussian_filter(rng.normal(0, 1, shape), 12) * 60
    from scipy.spatial import cKDTree

    _, grain = cKDTree(pts).query(np.stack([(yy + warp_y).ravel(), (xx + warp_x).ravel()], 1))
    grain = grain.reshape(shape)
    phase_of_grain = rng.choice([1, 2, 3], size=n_grains, p=[0.5, 0.25, 0.25])
    cls = phase_of_grain[grain].astype(np.int32)
    angle = rng.uniform(0, np.pi, n_grains)[grain]
    lamellae = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / 6.0)
    signal = np.select([cls == 1, cls == 2, cls == 3], [0.4, 0.75, 0.2 + 0.4 * lamellae])
    info = {"phase_fractions": {n: float((cls == i + 1).mean()) for i, n in enumerate(MULTIPHASE_CLASSES)}}
    return _finish(
        signal,
        rng,
        cls,
        pixel_size,
        "multiphase",
        blur=0.7,
        dose=80,
        band=False,
        class_names=MULTIPHASE_CLASSES,
        info=info,
    )


# ---------------------------------------------------------------------------
# (d) additive-manufacturing porosity: gas, keyhole and lack-of-fusion pores
# ---------------------------------------------------------------------------


def _pore_shape(kind: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean footprint of one pore of class ``kind`` (index into AM_PORE_CLASSES)."""
    if kind == 0:  # gas: small, round
        r = rng.uniform(4, 11)
        size = int(np.ceil(r)) * 2 + 3
        d = _disk_distance((size, size), size / 2, size / 2, r * rng.uniform(0.9, 1.0), r, rng.uniform(0, np.pi))
        return d <= 1
    if kind == 1:  # keyhole: larger, elongated, smooth (teardrop-like)
        r = rng.uniform(10, 20)
        aspect = rng.uniform(1.6, 2.6)
        size = int(np.ceil(r * aspect)) * 2 + 5
        c = size / 2
        angle = rng.uniform(0, np.pi)
        d = _disk_distance((size, size), c, c, r, r * aspect, angle)
        # a teardrop: widen one end a little
        y, x = np.ogrid[:size, :size]
        along = ((x - c) * np.cos(angle) + (y - c) * np.sin(angle)) / (r * aspect)
        return d <= 1 + 0.15 * along
    # lack of fusion: irregular, jagged, low solidity
    size = 90
    fp = np.zeros((size, size), bool)
    c = size / 2
    angle = rng.uniform(0, np.pi)
    n_lobes = int(rng.integers(3, 7))
    for _ in range(n_lobes):
        t = rng.uniform(-1, 1) * 22
        cy, cx = c + t * np.sin(angle) + rng.normal(0, 5), c + t * np.cos(angle) + rng.normal(0, 5)
        ry, rx = rng.uniform(3, 9), rng.uniform(6, 16)
        fp |= _disk_distance((size, size), cy, cx, ry, rx, angle + rng.normal(0, 0.6)) <= 1
    rough = ndi.gaussian_filter(rng.normal(0, 1, (size, size)), 1.5)
    fp = ndi.binary_erosion(fp) | (fp & (rough > -0.3))
    # keep the largest connected part
    lab, n = ndi.label(fp)
    if n > 1:
        sizes = ndi.sum(np.ones_like(lab), lab, index=np.arange(1, n + 1))
        fp = lab == (1 + int(np.argmax(sizes)))
    ys, xs = np.nonzero(fp)
    return fp[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]


def sample_am_pores(
    seed: int = 0, *, n_pores: int = 150, shape=(1024, 1024), pixel_size: float = 500.0
) -> SyntheticSample:
    """A polished additive-manufacturing cross-section with three kinds of pores.

    Gas pores are small and round, keyhole pores large, smooth and elongated,
    lack-of-fusion voids irregular with jagged outlines. ``labels`` holds one
    label per pore, ``classes`` maps each label to its class index in
    ``class_names`` = ("gas", "keyhole", "lack-of-fusion").

    Parameters
    ----------
    seed : int
        Random seed; the same seed gives the same sample.
    n_pores : int
        Number of pores placed (of the three kinds together).
    shape : tuple of int
        Image shape (rows, columns).
    pixel_size : float
        Nanometres per pixel stated in the sample.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    labels = np.zeros(shape, dtype=np.int32)
    occupied = np.zeros(shape, bool)
    classes: dict[int, int] = {}
    n = 0
    attempts = 0
    while n < n_pores and attempts < n_pores * 50:
        attempts += 1
        kind = n % 3
        fp = _pore_shape(kind, rng)
        ph, pw = fp.shape
        if ph >= h - 4 or pw >= w - 4:
            continue
        y0, x0 = int(rng.integers(2, h - ph - 2)), int(rng.integers(2, w - pw - 2))
        window = occupied[max(y0 - 3, 0) : y0 + ph + 3, max(x0 - 3, 0) : x0 + pw + 3]
        if window.any():
            continue
        n += 1
        labels[y0 : y0 + ph, x0 : x0 + pw][fp] = n
        occupied[y0 : y0 + ph, x0 : x0 + pw] |= fp
        classes[n] = kind
    signal = np.where(labels > 0, 0.1, 0.7)
    signal += ndi.gaussian_filter(rng.normal(0, 0.03, shape), 4)
    return _finish(
        signal,
        rng,
        labels,
        pixel_size,
        "am_pores",
        blur=0.8,
        dose=60,
        band=False,
        class_names=AM_PORE_CLASSES,
        classes=classes,
        info={"n_pores": n},
    )


# ---------------------------------------------------------------------------
# npe2 sample-data contributions (napari File > Open Sample)
# ---------------------------------------------------------------------------


def _layers(sample: SyntheticSample, labels_name: str, *, class_map: bool = False):
    spatial = {"scale": (sample.pixel_size, sample.pixel_size), "units": ("nm", "nm")}
    meta = {"pixel_size_nm": sample.pixel_size, "sample": sample.name, **sample.info}
    if sample.class_names:
        meta["class_names"] = list(sample.class_names)
    image = (sample.image, {"name": f"{sample.name}", "metadata": meta, "colormap": "gray", **spatial}, "image")
    labels = (sample.labels, {"name": labels_name, "metadata": dict(meta), "opacity": 0.4, **spatial}, "labels")
    return [image, labels]


def _sample_particles():
    return _layers(sample_particles(), "particles ground truth")


def _sample_porous_coating():
    return _layers(sample_porous_coating(), "coating ground truth", class_map=True)


def _sample_multiphase():
    return _layers(sample_multiphase(), "phases ground truth", class_map=True)


def _sample_am_pores():
    sample = sample_am_pores()
    layers = _layers(sample, "pores ground truth")
    import pandas as pd

    ids = np.array(sorted(sample.classes))
    layers[1][1]["features"] = pd.DataFrame({"label": ids, "class": [AM_PORE_CLASSES[sample.classes[i]] for i in ids]})
    return layers


def _sample_fibers():
    sample = sample_fibers()
    layers = _layers(sample, "fibres ground truth")
    beads = sample.info["beads"]
    pts = np.array([[b[0], b[1]] for b in beads], float).reshape(-1, 2)
    import pandas as pd

    feats = pd.DataFrame({"width_px": [b[2] for b in beads], "kind": [b[3] for b in beads]})
    spatial = {"scale": (sample.pixel_size, sample.pixel_size), "units": ("nm", "nm")}
    layers.append((pts, {"name": "beads ground truth", "features": feats, "face_color": "red", **spatial}, "points"))
    return layers
