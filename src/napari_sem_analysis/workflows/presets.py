"""The recipes that ship with the package (``napari-sem-analysis presets`` lists them)."""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "particles": {
        "name": "particles",
        "description": "Particle analysis: tuned particle segmentation, count and size distribution (nm).",
        "steps": [
            {
                "function": "segment_particles",
                "params": {},
                "inputs": {"image": "image"},
                "output": "particles",
            }
        ],
        "labels": "particles",
        "summary": "particles",
    },
    "porosity": {
        "name": "porosity",
        "description": "Porosity analysis: pores, porosity %, pore size distribution and pore classes.",
        "steps": [
            {
                "function": "segment_pores",
                "params": {},
                "inputs": {"image": "image"},
                "output": "pores",
            }
        ],
        "labels": "pores",
        "summary": "porosity",
    },
    "fibers": {
        "name": "fibers",
        "description": (
            "Fibre mats (electrospun nanofibres): fibre diameter distribution, alignment, junction and "
            "bead densities, mesh pore size; one row per fibre segment."
        ),
        "steps": [
            {
                "function": "measure_fibers",
                "params": {},
                "inputs": {"image": "image"},
                "output": "fibers",
            }
        ],
        "labels": "fibers",
        "summary": "fibers",
    },
    "coating": {
        "name": "coating",
        "description": (
            "Coating cross-section: coating and oxide thickness along the layer, oxide fraction, "
            "crack count and length."
        ),
        "steps": [
            {
                "function": "coating_layers",
                "params": {},
                "inputs": {"image": "image"},
                "output": "coating",
            }
        ],
        "labels": "coating",
        "summary": "coating",
    },
    "phases": {
        "name": "phases",
        "description": (
            "Phase fractions by multi-level (multi-Otsu) threshold, e.g. pore/organic/matrix/pyrite in shale."
        ),
        "steps": [
            {
                "function": "denoise",
                "params": {},
                "inputs": {"image": "image"},
                "output": "denoised",
            },
            {
                "function": "multi_threshold",
                "params": {"classes": 4},
                "inputs": {"image": "denoised"},
                "output": "phases",
            },
        ],
        "labels": "phases",
        "summary": "phases",
        "options": {"class_names": ["pore", "organic", "matrix", "pyrite"]},
    },
}
