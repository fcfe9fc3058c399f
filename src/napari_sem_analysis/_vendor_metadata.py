"""Vendor metadata of SEM files -> normalised keys and the pixel size in nm.

Zeiss, FEI/Thermo Fisher, TESCAN, JEOL, Hitachi and ImageJ.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

# length units as instruments write them -> nanometres
_NM_PER = {
    "m": 1e9,
    "mm": 1e6,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "nm": 1.0,
    "pm": 1e-3,
    "a": 0.1,
    "å": 0.1,
    "angstrom": 0.1,
    "cm": 1e7,
    "inch": 2.54e7,
}


def _to_nm(value, unit: str | None) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(v) or v <= 0:
        return None
    factor = _NM_PER.get((unit or "m").strip().lower())
    if factor is None:
        return None
    nm = v * factor
    # checked after the unit conversion: 1e300 m is finite, its nanometres are not
    return nm if np.isfinite(nm) and nm > 0 else None


def _float(value) -> float | None:
    """The leading number of a metadata value (``"20.00 kV"`` -> 20.0), or None when there is none."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        v = float(value)
    else:
        m = re.match(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)", str(value))
        if not m:
            return None
        v = float(m.group(1))
    return v if np.isfinite(v) else None


def _set_pixel_size(out: dict, value, unit: str | None) -> bool:
    """``out["pixel_size_nm"]`` from a value and unit, unchecked: :func:`read_sem` checks the range.

    Returns False (and notes the field) when the value is no number or the unit is unknown.
    """
    v = _float(value)
    factor = _NM_PER.get((unit or "m").strip().lower())
    if v is None or factor is None:
        out.setdefault("_ignored", []).append(f"pixel_size={str(value)[:40]!r} {str(unit)[:10]}")
        return False
    if v == 0:  # "no calibration"
        return False
    out["pixel_size_nm"] = v * factor  # may be 0, negative or inf: refused later, with a warning
    return True


def _set_number(out: dict, key: str, raw, scale: float = 1.0) -> None:
    """``out[key] = number(raw) * scale``; unreadable values are listed under ``_ignored``."""
    v = _float(raw)
    if v is None or not np.isfinite(v * scale):
        out.setdefault("_ignored", []).append(f"{key}={str(raw)[:40]!r}")
        return
    out[key] = v * scale


# --------------------------------------------------------------------------
# vendor metadata
# --------------------------------------------------------------------------


def _zeiss_metadata(md: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"instrument": "Zeiss"}

    def val(key):
        item = md.get(key)
        if isinstance(item, tuple) and len(item) >= 2:
            return item[1:]
        return None

    for key in ("ap_image_pixel_size", "ap_pixel_size"):
        v = val(key)
        if v and len(v) >= 2 and _set_pixel_size(out, v[0], str(v[1])):
            break
    for norm, keys in {
        "detector": ("dp_detector_channel", "dp_implied_detector"),
        "magnification": ("ap_mag",),
        "date": ("ap_date",),
        "time": ("ap_time",),
        "serial": ("sv_serial_number",),
    }.items():
        for key in keys:
            v = val(key)
            if v:
                out[norm] = str(v[0]).strip()
                break
    v = val("ap_actualkv")
    if v:
        _set_number(
            out,
            "voltage_kv",
            v[0],
            1e-3 if len(v) > 1 and str(v[1]).strip() == "V" else 1.0,
        )
    v = val("ap_wd")
    if v:
        wd = _to_nm(_float(v[0]), v[1] if len(v) > 1 else "mm")
        if wd:
            out["working_distance_mm"] = wd / 1e6
        else:
            out.setdefault("_ignored", []).append(f"working_distance={str(v[0])[:40]!r}")
    out["raw"] = {
        k: " ".join(str(x) for x in item[1:]) if isinstance(item, tuple) else str(item) for k, item in md.items() if k
    }
    return out


def _fei_metadata(md: dict) -> dict[str, Any]:
    out: dict[str, Any] = {"instrument": "FEI/Thermo Fisher"}
    scan = md.get("Scan", {}) or md.get("EScan", {})
    px = scan.get("PixelWidth")
    if px:
        _set_pixel_size(out, px, "m")
    beam = md.get("Beam", {})
    ebeam = md.get("EBeam", {})
    hv = beam.get("HV") or ebeam.get("HV")
    if hv:
        _set_number(out, "voltage_kv", hv, 1e-3)
    det = md.get("Detectors", {})
    if det.get("Name"):
        out["detector"] = str(det["Name"])
    wd = md.get("Stage", {}).get("WorkingDistance") or ebeam.get("WD")
    if wd:
        _set_number(out, "working_distance_mm", wd, 1e3)
    user = md.get("User", {})
    for key in ("Date", "Time"):
        if user.get(key):
            out[key.lower()] = str(user[key])
    hfw = scan.get("HorFieldsize") or ebeam.get("HFW")
    canvas = md.get("Image", {}).get("MagCanvasRealWidth")
    if hfw and canvas:
        try:
            out["magnification"] = f"{float(canvas) / float(hfw):.0f} x"
        except (TypeError, ValueError, ZeroDivisionError):
            pass
    res_y = md.get("Image", {}).get("ResolutionY") or scan.get("ResolutionY")
    if res_y:
        try:
            out["image_rows"] = int(res_y)
        except (TypeError, ValueError):
            pass
    if md.get("System", {}).get("SystemType"):
        out["system"] = str(md["System"]["SystemType"])
    out["raw"] = {
        f"{section}.{key}": str(value)
        for section, values in md.items()
        if isinstance(values, dict)
        for key, value in values.items()
    }
    return out


def _parse_ini(text: str) -> dict[str, str]:
    """Parse ``key=value`` (or JEOL ``$KEY value``) lines into a flat dict."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip().strip("\x00")
        if not line or line.startswith(("[", "#", ";")):
            continue
        if "=" in line:
            key, _, value = line.partition("=")
        elif line.startswith("$"):
            key, _, value = line.lstrip("$").partition(" ")
        else:
            continue
        out[key.strip()] = value.strip()
    return out


def _tescan_metadata(text: str) -> dict[str, Any]:
    kv = _parse_ini(text)
    out: dict[str, Any] = {"instrument": "TESCAN", "raw": kv}
    if "PixelSizeX" in kv:
        _set_pixel_size(out, kv["PixelSizeX"], "m")
    if kv.get("HV"):
        _set_number(out, "voltage_kv", kv["HV"], 1e-3)
    if kv.get("WD"):
        _set_number(out, "working_distance_mm", kv["WD"], 1e3)
    for norm, key in (
        ("detector", "Detector"),
        ("magnification", "Magnification"),
        ("date", "Date"),
        ("time", "Time"),
    ):
        if kv.get(key):
            out[norm] = kv[key]
    return out


def _jeol_metadata(text: str) -> dict[str, Any]:
    kv = _parse_ini(text)
    out: dict[str, Any] = {"instrument": "JEOL", "raw": kv}
    # pixel size = scale-marker length / scale-bar length in pixels
    bar = kv.get("$SM_MICRON_BAR") or kv.get("SM_MICRON_BAR")
    marker = kv.get("$SM_MICRON_MARKER") or kv.get("SM_MICRON_MARKER")
    if bar and marker:
        m = re.match(r"\s*([\d.]+)\s*([a-zA-Zµμ]+)", marker)
        if m:
            length = _to_nm(_float(m.group(1)), m.group(2))
            bar_px = _float(bar)
            if length and bar_px and bar_px > 0:
                out["pixel_size_nm"] = length / bar_px
    if kv.get("CM_ACCEL_VOLT"):
        _set_number(out, "voltage_kv", kv["CM_ACCEL_VOLT"])
    if kv.get("CM_MAG"):
        out["magnification"] = kv["CM_MAG"]
    if kv.get("CM_DATE"):
        out["date"] = kv["CM_DATE"]
    if kv.get("CM_TIME"):
        out["time"] = kv["CM_TIME"]
    if kv.get("CM_SIGNAL"):
        out["detector"] = kv["CM_SIGNAL"]
    if kv.get("SM_WD"):
        _set_number(out, "working_distance_mm", kv["SM_WD"])
    return out


def _hitachi_metadata(text: str) -> dict[str, Any]:
    kv = _parse_ini(text)
    out: dict[str, Any] = {"instrument": "Hitachi", "raw": kv}
    if kv.get("PixelSize"):
        _set_pixel_size(out, kv["PixelSize"], "nm")
    if kv.get("AcceleratingVoltage"):
        m = re.match(r"([\d.]+)\s*(\w*)", kv["AcceleratingVoltage"])
        _set_number(
            out,
            "voltage_kv",
            m.group(1) if m else kv["AcceleratingVoltage"],
            1e-3 if m and m.group(2).lower() == "volt" else 1.0,
        )
    for norm, key in (
        ("magnification", "Magnification"),
        ("date", "Date"),
        ("time", "Time"),
        ("detector", "SignalName"),
    ):
        if kv.get(key):
            out[norm] = kv[key]
    if kv.get("WorkingDistance"):
        m = re.match(r"([\d.]+)\s*(\w*)", kv["WorkingDistance"])
        wd = _to_nm(_float(m.group(1)), m.group(2) or "um") if m else None
        if wd:
            out["working_distance_mm"] = wd / 1e6
        else:
            out.setdefault("_ignored", []).append(f"working_distance={kv['WorkingDistance'][:40]!r}")
    return out


def _sidecar_metadata(path: Path) -> dict[str, Any]:
    """Metadata from a sidecar next to ``path`` (TESCAN .hdr, JEOL/Hitachi .txt)."""
    for suffix in (".hdr", ".txt"):
        for candidate in (path.with_suffix(suffix), path.with_name(path.name + suffix)):
            if not candidate.is_file() or candidate.stat().st_size > 1_000_000:
                continue
            text = candidate.read_text(errors="replace")
            if "PixelSizeX" in text or "[MAIN]" in text:
                return _tescan_metadata(text)
            if "$CM_" in text or "$$SM_" in text:
                return _jeol_metadata(text)
            if "PixelSize" in text or "InstructName" in text:
                return _hitachi_metadata(text)
    return {}


def _resolution_metadata(page, imagej: dict | None) -> dict[str, Any]:
    """Pixel size from the TIFF resolution tags (ImageJ and other programs)."""
    tags = page.tags
    if "XResolution" not in tags:
        return {}
    num, den = tags["XResolution"].value
    if not num or not den or num / den <= 1:
        return {}
    per_unit = num / den
    unit_tag = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
    unit_code = int(unit_tag)
    if imagej and imagej.get("unit"):
        unit = str(imagej["unit"]).replace("\\u00B5", "µ")
    elif unit_code == 2:
        unit = "inch"
    elif unit_code == 3:
        unit = "cm"
    else:
        return {}
    nm = _to_nm(1.0 / per_unit, unit)
    # a default screen resolution (72 or 96 dpi) is no physical pixel size:
    # SEM pixels are far smaller than 50 um
    if nm is None or (not (imagej and imagej.get("unit")) and nm > 5e4):
        return {}
    return {"pixel_size_nm": nm, "instrument": "TIFF resolution tags"}
