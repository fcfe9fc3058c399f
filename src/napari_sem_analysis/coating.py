"""Geometry of coating cross-sections: coating and oxide thickness, cracks.

The image is a polished cross-section with the layers running roughly
horizontally: a bright coating on top (with pores), a darker oxide layer
beneath it, and the bond coat / substrate at the bottom (the layout of
environmental and thermal barrier coatings). :func:`coating_layers` finds,
for every image column,

* the coating as the bright phase (upper multi-Otsu class, closed across
  pores) and its top and bottom edges;
* the oxide as the band from the coating's lower edge down to the strongest
  intensity step of the row-median intensity (the lower edge of the layer,
  darker or brighter below), computed in overlapping column strips so that
  pores and cracks do not move it. The rows just under the coating (where a
  thin dark line often sits) are skipped; where the step is too weak, no
  oxide is reported there (thickness 0);
* cracks as thin dark, mostly vertical lines inside the oxide (or inside the
  coating when there is no oxide): black top-hat with a horizontal line,
  thresholded, components kept when they are taller than wide and cross a
  good part of the layer;
* optionally, the unmelted fraction of a thermal-spray coating (a shape
  heuristic, see ``melt_analysis``).

It returns the class map (1 coating, 2 oxide, 3 crack), the thickness
profile along the layer (per column, nm when the pixel size is known), a
crack table and a summary. The method assumes horizontal layers with the
coating above the substrate (``coating_on="top"``, or ``"bottom"`` to flip).
Accuracy on real EBC cross-sections is in ``docs/evaluation/batch.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ._validation import SEMAnalysisError, check_image, check_positive

COATING, OXIDE, CRACK = 1, 2, 3
CLASS_NAMES = ("background", "coating", "oxide", "crack")


@dataclass
class CoatingResult:
    """Result of :func:`coating_layers`.

    Attributes
    ----------
    labels : ndarray (int32)
        Class map: 0 other, 1 coating, 2 oxide, 3 crack.
    profile : DataFrame
        One row per column: ``x``, coating top/bottom row, oxide bottom row,
        ``coating_thickness``, ``oxide_thickness`` (nm when the pixel size is
        known, else px).
    cracks : DataFrame
        One row per crack: ``label``, ``x``, ``y``, ``length``, ``height``,
        ``width``.
    summary : dict
        ``coating_thickness_*``, ``oxide_thickness_*`` (mean, median, std,
        min, max), ``oxide_fraction``, ``crack_count``, ``crack_length_total``,
        ``crack_density_per_mm``, ``coating_truncated``.
    """

    labels: np.ndarray
    profile: pd.DataFrame
    cracks: pd.DataFrame
    summary: dict = field(default_factory=dict)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == sizes.argmax()


def _smooth1d(values: np.ndarray, size: int) -> np.ndarray:
    """Median then mean filter along a 1-D profile that may contain NaNs."""
    v = np.asarray(values, dtype=float)
    good = np.isfinite(v)
    if not good.any():
        return v
    idx = np.arange(v.size)
    v = np.interp(idx, idx[good], v[good])
    v = ndi.median_filter(v, size=max(1, size), mode="nearest")
    return v


def coating_layers(
    image,
    *,
    pixel_size: float | None = None,
    coating_on: str = "top",
    strip_width: int = 96,
    step_size: float = 12,
    interface_method: str = "step",
    min_oxide: float | None = None,
    max_oxide_fraction: float = 0.3,
    crack_width: int = 9,
    crack_contrast: float = 0.03,
    min_crack_height: float = 0.2,
    crack_gap: int = 9,
    oxide_contrast: float = 0.025,
    max_crack_width: float | None = None,
    crack_region: str = "auto",
    melt_analysis: bool = False,
    min_particle: float = 8.0,
) -> CoatingResult:
    """Measure coating and oxide thickness along the layer, and cracks in the oxide.

    Parameters
    ----------
    image : (Y, X) array
        Cross-section with horizontal layers.
    pixel_size : float, optional
        nm per pixel; thicknesses and lengths are then in nm (else px).
    coating_on : {"top", "bottom"}
        Which side of the image the coating is on.
    strip_width : int
        Width (px) of the column strips used to locate the oxide/bond-coat
        interface (strips overlap by 3/4).
    step_size : float
        Rows averaged on each side of a candidate interface (px).
    min_oxide : float, optional
        Smallest oxide thickness searched for (px); the rows just below the
        coating (where a thin dark oxide line often sits) are skipped by
        this much. Default 6 % of the image height.
    max_oxide_fraction : float
        Largest oxide thickness searched for, as a fraction of the image height.
    crack_width : int
        Cracks are dark lines narrower than this (px).
    crack_contrast : float
        Smallest crack depth (how much darker than its surroundings), as a
        fraction of the image's 1-99 percentile intensity range.
    min_crack_height : float
        Smallest crack height as a fraction of the local oxide thickness.
    crack_gap : int
        Vertical gaps up to this many px along a crack are bridged.
    oxide_contrast : float
        Smallest grey-level step between the oxide and what lies below it,
        as a fraction of the intensity range; below it no oxide is reported
        (thickness 0) for that part of the layer.
    max_crack_width : float, optional
        Reject crack candidates whose mean width (area / height, px) is
        larger (wide dark patches); None = no limit.
    crack_region : {"auto", "oxide", "coating", "both"}
        Where cracks are searched: ``"auto"`` = in the oxide when an oxide
        layer is found, else in the coating.
    melt_analysis : bool
        Also estimate the unmelted fraction of a thermal-spray coating: the
        share of the coating's solid (bright) phase in compact, rounded
        particles (solidity >= 0.9, aspect ratio <= 1.5, equivalent
        diameter >= ``min_particle`` px) rather than in flattened, lamellar
        splats. A shape heuristic, not validated against ground truth;
        reported as ``unmelted_fraction`` / ``melted_fraction``.
    min_particle : float
        Smallest unmelted particle (equivalent diameter, px).

    Returns
    -------
    CoatingResult
    """
    img = check_image(image, ndim=(2,), min_size=16, allow_constant=False).astype(np.float64)
    if coating_on not in ("top", "bottom"):
        raise SEMAnalysisError(f"coating_on must be 'top' or 'bottom', got {coating_on!r}")
    if pixel_size is not None:
        pixel_size = check_positive(pixel_size, "pixel_size")
    strip_width = int(check_positive(strip_width, "strip_width"))
    crack_width = int(check_positive(crack_width, "crack_width", maximum=201))
    if coating_on == "bottom":
        img = img[::-1]
    layers = _coating_body(img)
    if min_oxide is None:
        min_oxide = max(2.0, 0.06 * img.shape[0])
    min_oxide = check_positive(min_oxide, "min_oxide")
    search = _OxideSearch(strip_width, step_size, interface_method, min_oxide, max_oxide_fraction, oxide_contrast)
    _oxide_layer(img, layers, search)
    cracks = _CrackSearch(crack_width, crack_contrast, min_crack_height, crack_gap, max_crack_width, crack_region)
    found = _cracks(img, layers, cracks, pixel_size)
    return _result(img, layers, found, pixel_size, coating_on, melt_analysis, min_particle)


# --------------------------------------------------------------------------
# stages of coating_layers
# --------------------------------------------------------------------------


@dataclass
class _Layers:
    """Per-column layer edges (rows, NaN where there is no coating) and the masks found so far."""

    bright: np.ndarray  # the bright (solid) phase
    body: np.ndarray  # the coating: bright phase closed across pores, largest component
    top: np.ndarray  # coating top row per column
    bottom: np.ndarray  # coating bottom row per column (smoothed)
    interface: np.ndarray | None = None  # oxide bottom row per column
    coating_mask: np.ndarray | None = None
    oxide_mask: np.ndarray | None = None


@dataclass
class _OxideSearch:
    """Settings of the oxide/bond-coat interface search (see :func:`coating_layers`)."""

    strip_width: int
    step_size: float
    method: str
    min_oxide: float
    max_oxide_fraction: float
    contrast: float


@dataclass
class _CrackSearch:
    """Settings of the crack search (see :func:`coating_layers`)."""

    width: int
    contrast: float
    min_height: float
    gap: int
    max_width: float | None
    region: str


@dataclass
class _Cracks:
    """The class map with the cracks marked, the crack table, and where cracks were searched."""

    labels: np.ndarray
    table: pd.DataFrame
    region: str
    oxide_found: bool


def _coating_body(img: np.ndarray) -> _Layers:
    """The coating as the bright phase (upper multi-Otsu class) closed across pores; its edges."""
    from skimage.filters import threshold_multiotsu, threshold_otsu

    h = img.shape[0]
    smooth = ndi.gaussian_filter(img, 1.5)
    try:
        t_low, t_high = threshold_multiotsu(smooth, classes=3)
    except ValueError:
        t_high = threshold_otsu(smooth)
    bright = smooth > t_high
    bright = ndi.binary_opening(bright, structure=np.ones((3, 3)))
    # close across pores so the coating is one body; fill holes
    close = max(3, int(round(0.02 * h)))
    body = ndi.binary_closing(bright, structure=np.ones((close, close)), border_value=0)
    body = ndi.binary_fill_holes(body)
    body = _largest_component(body)
    if not body.any():
        raise SEMAnalysisError("no bright coating phase found in the image")
    has = body.any(axis=0)
    top = np.where(has, np.argmax(body, axis=0), -1)
    bottom = np.where(has, h - 1 - np.argmax(body[::-1], axis=0), -1)
    bottom_f = _smooth1d(np.where(has, bottom, np.nan), 9)
    top_f = np.where(has, top, np.nan).astype(float)
    return _Layers(bright, body, top_f, bottom_f)


def _step_row(prof: np.ndarray, k: int, method: str) -> int | None:
    """Row of the strongest step of a 1-D profile (None when the profile is too short).

    ``"changepoint"``: the split into two constant parts with the least
    squared error; else the largest difference of the ``k``-row means on
    either side.
    """
    if method == "changepoint":
        n = prof.size
        c1 = np.concatenate([[0.0], np.cumsum(prof)])
        c2 = np.concatenate([[0.0], np.cumsum(prof**2)])
        r = np.arange(k, n - k)
        if r.size == 0:
            return None
        sse = (c2[r] - c1[r] ** 2 / r) + ((c2[n] - c2[r]) - (c1[n] - c1[r]) ** 2 / (n - r))
        return int(r[int(np.argmin(sse))])
    c = np.concatenate([[0.0], np.cumsum(prof)])
    r = np.arange(k, prof.size - k + 1)
    step = np.abs((c[r + k] - c[r]) / k - (c[r] - c[r - k]) / k)
    if step.size == 0:
        return None
    return int(r[int(np.argmax(step))])


def _oxide_layer(img: np.ndarray, layers: _Layers, opt: _OxideSearch) -> None:
    """Oxide from the coating bottom to the strongest step below it, in overlapping column strips.

    Sets ``layers.interface``, ``coating_mask`` and ``oxide_mask``.
    """
    h, w = img.shape
    bottom_f = layers.bottom
    img_range = max(float(np.subtract(*np.percentile(img, [99, 1]))), 1e-6)
    max_ox = max(int(opt.min_oxide) + 2, int(opt.max_oxide_fraction * h))
    k = max(4, int(round(opt.step_size)))
    xs_c, ys_c = [], []
    half = opt.strip_width // 2
    for xc in range(half, w + half // 2, max(1, opt.strip_width // 4)):
        x0, x1 = max(0, xc - half), min(w, xc + half)
        cb = np.nanmedian(bottom_f[x0:x1])
        if not np.isfinite(cb):
            continue
        start = int(cb) + 1 + max(int(opt.min_oxide) - k, 2)  # rows just under the coating are skipped
        stop = min(h, int(cb) + 1 + max_ox + k)
        if stop - start < 2 * k + 2:
            continue
        prof = ndi.gaussian_filter1d(np.median(img[start:stop, x0:x1], axis=1), 2)
        row = _step_row(prof, k, opt.method)
        if row is None:
            continue
        # no oxide where the layer does not differ from what lies below it
        above_mean = prof[max(0, row - k) : row].mean() if row > 0 else prof[0]
        below_mean = prof[row : row + k].mean()
        xs_c.append(min(xc, w - 1))
        if abs(below_mean - above_mean) < opt.contrast * img_range:
            ys_c.append(int(cb) + 1)
        else:
            ys_c.append(start + row)
    if xs_c:
        ys_c = ndi.median_filter(np.asarray(ys_c, float), size=5, mode="nearest")
        interface = np.interp(np.arange(w), xs_c, ys_c)
    else:
        interface = bottom_f + 1
    layers.interface = np.maximum(interface, bottom_f + 1)
    rows = np.arange(h)[:, None]
    layers.coating_mask = layers.body & (rows <= bottom_f[None, :])
    layers.oxide_mask = (rows > bottom_f[None, :]) & (rows < layers.interface[None, :])


def _crack_region(layers: _Layers, region: str, oxide_found: bool):
    """(region name, mask searched for cracks, local thickness of that region per column)."""
    if region not in ("auto", "oxide", "coating", "both"):
        raise SEMAnalysisError(f"crack_region must be auto, oxide, coating or both, got {region!r}")
    name = region if region != "auto" else ("oxide" if oxide_found else "coating")
    mask = np.zeros(layers.body.shape, bool)
    if name in ("oxide", "both"):
        mask |= layers.oxide_mask
    if name in ("coating", "both"):
        mask |= layers.coating_mask
    top, bottom, interface = layers.top, layers.bottom, layers.interface
    local_thick = np.where(
        name == "coating",
        bottom - top + 1,
        np.where(name == "oxide", interface - bottom, interface - top),
    )
    return name, mask, local_thick


def _cracks(img: np.ndarray, layers: _Layers, opt: _CrackSearch, pixel_size) -> _Cracks:
    """Thin dark, mostly vertical lines in the oxide (or the coating), in the class map and a table."""
    from skimage.morphology import black_tophat

    h, w = img.shape
    line = np.ones((1, opt.width), dtype=bool)
    th = black_tophat(ndi.gaussian_filter(img, 1.0).astype(np.float32), footprint=line)
    lo_p, hi_p = np.percentile(img, [1, 99])
    depth = opt.contrast * max(hi_p - lo_p, 1e-6)
    oxide_found = bool(np.nanmean((layers.interface - layers.bottom) > 2) > 0.5)
    region_name, region, local_thick = _crack_region(layers, opt.region, oxide_found)
    inner = ndi.binary_erosion(region, structure=np.ones((3, 1)), iterations=1)
    vals = th[inner]
    labels_out = np.zeros((h, w), np.int32)
    labels_out[layers.coating_mask] = COATING
    labels_out[layers.oxide_mask] = OXIDE
    unit = "nm" if pixel_size else "px"
    crack_rows = []
    if vals.size > 10:
        med = np.median(vals)
        mad = 1.4826 * np.median(np.abs(vals - med)) + 1e-6
        cand = inner & (th > max(med + 4 * mad, depth))
        cand = ndi.binary_closing(cand, structure=np.ones((opt.gap, 1)))
        crack_rows = _crack_components(cand, local_thick, labels_out, opt, pixel_size or 1.0, unit)
    cracks = pd.DataFrame(
        crack_rows,
        columns=["label", "x", "y", f"length_{unit}", f"height_{unit}", f"width_{unit}", "height_fraction_of_oxide"],
    )
    return _Cracks(labels_out, cracks, region_name, oxide_found)


def _crack_components(cand, local_thick, labels_out, opt: _CrackSearch, scale: float, unit: str) -> list[dict]:
    """Keep the candidate components that are tall and thin enough; mark them in ``labels_out``."""
    from skimage.morphology import skeletonize

    lab, _ = ndi.label(cand, structure=np.ones((3, 3)))
    rows = []
    for i, sl in enumerate(ndi.find_objects(lab), start=1):
        if sl is None:
            continue
        comp = lab[sl] == i
        hh = sl[0].stop - sl[0].start
        ww = sl[1].stop - sl[1].start
        local = np.nanmedian(local_thick[sl[1]])
        if hh < max(4, opt.min_height * local) or hh < 1.5 * ww:
            continue
        if opt.max_width is not None and comp.sum() / hh > opt.max_width:
            continue  # a wide dark patch (pore, gap), not a thin crack
        labels_out[sl][comp] = CRACK
        ys, xs = np.nonzero(comp)
        rows.append(
            {
                "label": len(rows) + 1,
                "x": float(xs.mean() + sl[1].start),
                "y": float(ys.mean() + sl[0].start),
                f"length_{unit}": float(skeletonize(comp).sum()) * scale,
                f"height_{unit}": hh * scale,
                f"width_{unit}": ww * scale,
                "height_fraction_of_oxide": float(hh / local) if local > 0 else np.nan,
            }
        )
    return rows


def _thickness_stats(name: str, v: np.ndarray, unit: str) -> dict:
    v = v[np.isfinite(v)]
    if not v.size:
        return {f"{name}_{s}_{unit}": np.nan for s in ("mean", "median", "std", "min", "max")}
    return {
        f"{name}_mean_{unit}": float(v.mean()),
        f"{name}_median_{unit}": float(np.median(v)),
        f"{name}_std_{unit}": float(v.std()),
        f"{name}_min_{unit}": float(v.min()),
        f"{name}_max_{unit}": float(v.max()),
    }


def _result(img, layers: _Layers, found: _Cracks, pixel_size, coating_on, melt_analysis, min_particle) -> CoatingResult:
    """Thickness profile and summary; flipped back when the coating is at the bottom."""
    h, w = img.shape
    labels_out, cracks = found.labels, found.table
    unit = "nm" if pixel_size else "px"
    scale = pixel_size or 1.0
    top_f, bottom_f, interface = layers.top, layers.bottom, layers.interface
    coat_t = (bottom_f - top_f + 1) * scale
    ox_t = (interface - bottom_f - 1) * scale
    if coating_on == "bottom":
        labels_out = labels_out[::-1]
        cracks["y"] = h - 1 - cracks["y"]
        top_r, bot_r, int_r = h - 1 - top_f, h - 1 - bottom_f, h - 1 - interface
    else:
        top_r, bot_r, int_r = top_f, bottom_f, interface
    profile = pd.DataFrame(
        {
            "x": np.arange(w),
            "coating_top": top_r,
            "coating_bottom": bot_r,
            "oxide_bottom": int_r,
            f"coating_thickness_{unit}": coat_t,
            f"oxide_thickness_{unit}": ox_t,
        }
    )
    coat_area = float((labels_out == COATING).sum())
    ox_area = float(np.isin(labels_out, (OXIDE, CRACK)).sum())
    solid = layers.bright & layers.coating_mask
    summary: dict = {}
    summary.update(_thickness_stats("coating_thickness", coat_t, unit))
    summary.update(_thickness_stats("oxide_thickness", ox_t, unit))
    summary["oxide_fraction"] = ox_area / (coat_area + ox_area) if coat_area + ox_area else np.nan
    summary["coating_porosity"] = float(1 - solid.sum() / coat_area) if coat_area else np.nan
    if melt_analysis:
        summary.update(_melt_fractions(solid, min_particle))
    summary["oxide_found"] = found.oxide_found
    summary["crack_region"] = found.region
    summary["crack_count"] = int(len(cracks))
    summary[f"crack_length_total_{unit}"] = float(cracks[f"length_{unit}"].sum()) if len(cracks) else 0.0
    width_mm = w * pixel_size / 1e6 if pixel_size else None
    summary["crack_density_per_mm"] = len(cracks) / width_mm if width_mm else np.nan
    summary["coating_truncated"] = bool(np.nanmean(top_f <= 1) > 0.5)
    summary["pixel_size_nm"] = float(pixel_size) if pixel_size else np.nan
    return CoatingResult(labels=labels_out, profile=profile, cracks=cracks, summary=summary)


def _melt_fractions(solid: np.ndarray, min_particle: float) -> dict:
    """Share of the solid phase in compact rounded particles (unmelted) vs lamellae (melted)."""
    from skimage.measure import label, regionprops

    total = float(solid.sum())
    if total == 0:
        return {"unmelted_fraction": np.nan, "melted_fraction": np.nan, "unmelted_count": 0}
    unmelted, n = 0.0, 0
    for rp in regionprops(label(solid, connectivity=1)):
        if rp.equivalent_diameter_area < min_particle or rp.axis_minor_length == 0:
            continue
        if rp.solidity >= 0.9 and rp.axis_major_length / rp.axis_minor_length <= 1.5:
            unmelted += rp.area
            n += 1
    return {
        "unmelted_fraction": unmelted / total,
        "melted_fraction": 1 - unmelted / total,
        "unmelted_count": n,
    }


def synthetic_coating(
    shape=(256, 256),
    *,
    coating_top: int = 20,
    coating_bottom: int = 150,
    oxide_thickness: int = 20,
    crack_xs=(60, 140, 200),
    seed: int = 0,
):
    """A synthetic cross-section with known geometry (for tests and demos).

    Returns ``(image uint8, truth dict)`` with the coating rows, oxide
    thickness and crack columns.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    img = np.full(shape, 30.0)  # mount
    img[coating_top:coating_bottom] = 210.0  # coating
    img[coating_bottom : coating_bottom + oxide_thickness] = 80.0  # oxide
    img[coating_bottom + oxide_thickness :] = 120.0  # bond coat
    # a few pores in the coating
    yy, xx = np.mgrid[:h, :w]
    for _ in range(6):
        cy = rng.integers(coating_top + 15, coating_bottom - 15)
        cx = rng.integers(10, w - 10)
        r = rng.integers(3, 7)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 30.0
    for x in crack_xs:
        img[coating_bottom + 2 : coating_bottom + oxide_thickness - 1, x : x + 2] = 45.0
    img += rng.normal(0, 4, shape)
    img = np.clip(img, 0, 255).astype(np.uint8)
    truth = {
        "coating_top": coating_top,
        "coating_bottom": coating_bottom,
        "coating_thickness": coating_bottom - coating_top,
        "oxide_thickness": oxide_thickness,
        "crack_count": len(crack_xs),
    }
    return img, truth
