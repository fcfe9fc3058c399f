"""napari-sem-analysis: SEM and materials micrograph analysis for napari.

The public API is a set of plain functions and small classes on numpy
arrays. Importing the package is cheap: each name is imported from its
sub-module on first use, so neither torch, Qt nor napari is loaded until a
function that needs it is called.

Examples
--------
>>> import napari_sem_analysis as sem
>>> img = sem.read_sem("sample.tif")          # doctest: +SKIP
>>> img.pixel_size                             # doctest: +SKIP
7.344
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> sub-module that defines it
_API = {
    # reading and errors
    "read_sem": "io",
    "SEMImage": "io",
    "detect_databar": "io",
    "read_scale_bar": "scalebar",
    "ScaleBarReading": "scalebar",
    "parse_length": "scalebar",
    "SEMAnalysisError": "_validation",
    "to_grayscale": "_validation",
    # sample data
    "sample_particles": "sample_data",
    "sample_sem_particles": "sample_data",
    "sample_porous_coating": "sample_data",
    "sample_multiphase": "sample_data",
    "sample_am_pores": "sample_data",
    "sample_fibers": "sample_data",
    # enhancement
    "clahe": "enhancement",
    "denoise": "enhancement",
    "correct_background": "enhancement",
    # classical segmentation
    "threshold": "segmentation",
    "multi_threshold": "segmentation",
    "clean_mask": "segmentation",
    "split_touching": "segmentation",
    "split_particles": "segmentation",
    "label_components": "segmentation",
    "watershed_from_seeds": "segmentation",
    "superpixels": "segmentation",
    "segment_particles": "segmentation",
    "segment_pores": "segmentation",
    # measurement and texture
    "measure": "measurement",
    "summarize": "measurement",
    "glcm_features": "texture",
    "lbp_features": "texture",
    "texture_map": "texture",
    "quantize": "texture",
    "tile_labels": "texture",
    "oriented_boxes": "measurement",
    "object_outlines": "measurement",
    "local_thickness": "thickness",
    "measure_fibers": "fibers",
    "fiber_features": "fibers",
    "find_spindles": "fibers",
    # deep learning
    "train_unet": "unet",
    "load_model": "unet",
    "predict_unet": "unet",
    "UNetModel": "unet",
    "select_device": "unet",
    # classification
    "ObjectClassifier": "classification",
    "ImageClassifier": "classification",
    "CVResult": "classification",
    "object_features": "classification",
    "image_features": "classification",
    "extract_tiles": "classification",
    "tile_probability_map": "classification",
    "load_image_folder": "classification",
    "confusion_matrix_figure": "classification",
    # trainable pixel classifier
    "PixelClassifier": "pixel_classifier",
    "pixel_features": "pixel_classifier",
    "pixel_classify": "pixel_classifier",
    # workflows and batch
    "run_workflow": "workflows",
    "Workflow": "workflows",
    "load_recipe": "workflows",
    "run_batch": "batch",
    # instances and their evaluation
    "evaluate_instances": "metrics",
    "instance_targets": "instances",
    "instances_from_maps": "instances",
    "contact_zone": "instances",
    "tune_instance_decoding": "unet",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    try:
        module_name = _API[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
