"""Reproducible workflows: recipes of API steps, presets, and replay on new images.

A *recipe* is a readable YAML or JSON document holding a list of steps. Each
step is the same dict that the widgets record (``widgets._common.record_step``)::

    name: my particles
    steps:
      - function: clahe              # a public API function name
        params: {clip_limit: 0.01}   # its keyword arguments
        inputs: {image: image}       # argument -> name of an earlier output (or the input image)
        output: clahe                # name under which the result is kept
      - function: threshold
        params: {method: otsu}
        inputs: {image: clahe}
        output: mask
      - function: split_touching
        params: {min_distance: 5}
        inputs: {mask: mask}
        output: particles
    labels: particles                # which output holds the objects (default: the last label image)
    summary: particles               # summary function (preset name; default: "objects")
    pixel_size: 4.2                  # optional: nm per pixel for images whose files carry none

Input names that no earlier step produces (napari layer names when the recipe
was recorded in the viewer) refer to the image the workflow is run on. Steps
whose function accepts ``pixel_size`` get the image's pixel size (nm) unless
the recipe sets it. The image's pixel size is, in this order: the one given to
:meth:`Workflow.run` (the command line's ``--pixel-size``), the one in the
file's metadata, and the recipe's ``pixel_size`` (the calibration a user set
by hand in napari when recording it, for files without metadata such as PNG
exports).

Four presets ship with the package: ``particles``, ``porosity``, ``coating``
and ``phases`` (see :data:`PRESETS`), each a recipe plus a summary.

Examples
--------
>>> import napari_sem_analysis as sem
>>> result = sem.run_workflow("particles", "particles.tif")     # doctest: +SKIP
>>> result.summary["count"], result.summary["median_equivalent_diameter_nm"]  # doctest: +SKIP
"""

from __future__ import annotations

from ..steps import register_step, resolve_step
from ._data import read_image, write_atomic
from .model_steps import (  # noqa: F401  (the model caches: tests clear them)
    TileClasses,
    _cached_classifier,
    _cached_model,
    classify_objects,
    classify_tiles,
    unet_predict,
)
from .presets import PRESETS
from .recipes import MAX_RECIPE_BYTES, PARAM_BOUNDS, RECIPE_VERSION, Workflow, WorkflowResult, load_recipe, run_workflow
from .summaries import (
    object_sizes,
    register_summary,
    summarize_coating,
    summarize_objects,
    summarize_particles,
    summarize_phases,
    summarize_porosity,
    summarize_tiles,
    summary_function,
)

__all__ = [
    "Workflow",
    "WorkflowResult",
    "load_recipe",
    "run_workflow",
    "register_step",
    "register_summary",
    "PRESETS",
    "read_image",
    "resolve_step",
    "write_atomic",
    "summary_function",
    "object_sizes",
    "summarize_objects",
    "summarize_particles",
    "summarize_porosity",
    "summarize_phases",
    "summarize_tiles",
    "summarize_coating",
    "TileClasses",
    "unet_predict",
    "classify_objects",
    "classify_tiles",
    "RECIPE_VERSION",
]
