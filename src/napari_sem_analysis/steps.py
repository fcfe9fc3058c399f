"""The step registry: every analysis step declared once, read by recipes, widgets and the CLI.

A *step* is a core function that a recipe (:class:`~napari_sem_analysis.Workflow`)
can run, a widget can record and ``napari-sem-analysis steps`` lists. Each is
declared here once, as a :class:`Step` entry of :data:`STEPS`, naming its core
function by dotted path (``"module:function"``, imported on first use so that
``import napari_sem_analysis`` stays light) and saying:

* ``takes``: the arguments fed from images/layers (``image``, ``mask``,
  ``labels``, ``seeds``...), the first one passed positionally;
* ``writes``: what it makes (``"image"``, ``"labels"``, ``"table"``,
  ``"annotation"``: a result that annotates objects of an earlier step, or
  ``"other"``);
* ``lengths`` / ``areas``: parameters that are lengths (px or nm, with the
  step's ``unit`` parameter) or areas (px² or nm²), so that a widget shows
  them in the layer's units and :meth:`Step.in_pixels` converts them;
* ``summary``: the recipe summary used when the step is a recipe's last;
* ``annotates``: it only annotates the objects of an earlier step (the
  recipe's summary then follows that earlier step);
* ``filter``: an image-to-image filter, dropped from a recorded recipe when
  nothing uses its output;
* ``description``: one line for listings.

Adding a step: write the core function, then add one entry::

    STEPS.append(Step("my_filter", "enhancement:my_filter", writes="image",
                      lengths=("size",), filter=True, description="..."))

or, for your own code outside the package, :func:`register_step`.

Examples
--------
>>> from napari_sem_analysis.steps import get_step
>>> get_step("clahe").writes
'image'
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._validation import SEMAnalysisError

__all__ = ["Step", "STEPS", "get_step", "find_step", "register_step", "step_names", "resolve_step", "call_step"]

WRITES = ("image", "labels", "table", "annotation", "other")


@dataclass(frozen=True)
class Step:
    """One registered step (see the module docstring for the fields).

    ``function`` is a ``"module:function"`` path inside the package (or any
    importable ``"package.module:function"``), or a callable for user steps.
    ``alias_of`` names another step this one runs (with ``defaults`` added to
    its parameters): an old recipe name kept working.
    """

    name: str
    function: str | Callable | None = None
    takes: tuple[str, ...] = ("image",)
    writes: str = "labels"
    lengths: tuple[str, ...] = ()
    areas: tuple[str, ...] = ()
    summary: str | None = None
    annotates: bool = False
    filter: bool = False
    description: str = ""
    alias_of: str | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.writes not in WRITES:
            raise SEMAnalysisError(f"step {self.name!r}: writes must be one of {WRITES}, got {self.writes!r}")

    # -- the function -----------------------------------------------------
    def load(self) -> Callable:
        """The core function (imported on first use)."""
        if self.alias_of is not None:
            return get_step(self.alias_of).load()
        func = self.function
        if callable(func):
            return func
        if not isinstance(func, str) or ":" not in func:
            raise SEMAnalysisError(f"step {self.name!r} has no function")
        module, _, attr = func.partition(":")
        # a module of the package ("enhancement", "workflows.model_steps"), else an absolute one
        candidates = [module] if module.startswith("napari_sem_analysis") else [f"napari_sem_analysis.{module}", module]
        for candidate in candidates:
            try:
                return getattr(importlib.import_module(candidate), attr)
            except ModuleNotFoundError as exc:
                if exc.name is None or not candidate.startswith(exc.name):
                    raise  # the module exists but one of its own imports is missing
                error: Exception = exc
            except AttributeError as exc:
                error = exc
                break
        raise SEMAnalysisError(f"step {self.name!r}: cannot load {func}: {error}")

    @property
    def target(self) -> Step:
        """The step this one runs (itself unless it is an alias)."""
        return get_step(self.alias_of) if self.alias_of is not None else self

    def accepts(self, param: str) -> bool:
        """Whether the function has a parameter ``param`` (by name)."""
        return param in _parameters(self.load())

    # -- running ----------------------------------------------------------
    def __call__(
        self, inputs: Mapping[str, Any], params: Mapping[str, Any] | None = None, *, pixel_size: float | None = None
    ):
        """Run the step: ``inputs`` (argument -> data) and ``params`` as keyword arguments.

        ``pixel_size`` (nm) is given when the function takes it and ``params``
        sets none; the first input that is the function's first parameter goes
        positionally. Bad input raises :class:`SEMAnalysisError`.
        """
        func = self.load()
        names = _parameters(func)
        kwargs = {**dict(self.defaults), **dict(params or {})}
        if pixel_size is not None and "pixel_size" in names and kwargs.get("pixel_size") is None:
            kwargs["pixel_size"] = pixel_size
        kwargs.update(inputs)
        args = []
        first = next(iter(inputs), None)
        if first is not None and names and names[0] == first:
            args.append(kwargs.pop(first))
        return func(*args, **kwargs)

    def in_pixels(self, params: Mapping[str, Any], pixel_size: float | None) -> dict:
        """``params`` with its lengths and areas in px (``unit="px"``), from nm when ``unit="nm"``."""
        out = dict(params)
        if out.get("unit", "px") != "nm":
            return out
        if not pixel_size:
            raise SEMAnalysisError(f"step {self.name!r}: lengths are in nm but the pixel size is unknown")
        for name in self.target.lengths:
            if out.get(name) is not None:
                out[name] = float(out[name]) / pixel_size
        for name in self.target.areas:
            if out.get(name) is not None:
                out[name] = float(out[name]) / pixel_size**2
        out["unit"] = "px"
        return out

    def describe(self) -> str:
        """One line: name, inputs -> output, description."""
        takes = ", ".join(self.target.takes) or "-"
        text = f"{self.name:22s} {takes} -> {self.target.writes}"
        if self.alias_of:
            extra = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
            return f"{text}  (= {self.alias_of}{' with ' + extra if extra else ''})"
        return f"{text}  {self.description}".rstrip()


def _parameters(func: Callable) -> list[str]:
    try:
        return list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return []


# --------------------------------------------------------------------------- the built-in steps
STEPS: list[Step] = [
    # enhancement: image -> image
    Step(
        "clahe",
        "enhancement:clahe",
        writes="image",
        lengths=("tile_size",),
        filter=True,
        description="contrast-limited adaptive histogram equalisation",
    ),
    Step(
        "denoise",
        "enhancement:denoise",
        writes="image",
        lengths=("size",),
        filter=True,
        description="gaussian, median, bilateral or non-local-means denoising",
    ),
    Step(
        "correct_background",
        "enhancement:correct_background",
        writes="image",
        lengths=("size",),
        filter=True,
        description="remove uneven illumination (gaussian, rolling ball, polynomial)",
    ),
    # classical segmentation
    Step(
        "threshold",
        "segmentation:threshold",
        writes="labels",
        lengths=("window_size",),
        description="global or local threshold: binary mask",
    ),
    Step(
        "multi_threshold",
        "segmentation:multi_threshold",
        writes="labels",
        summary="phases",
        description="multi-level Otsu: phase map 1..N",
    ),
    Step(
        "clean_mask",
        "segmentation:clean_mask",
        takes=("mask",),
        writes="labels",
        lengths=("opening", "closing"),
        areas=("min_size", "max_hole_size"),
        description="remove specks, fill holes, open/close a mask",
    ),
    Step(
        "split_touching",
        "segmentation:split_touching",
        takes=("mask", "intensity_image"),
        writes="labels",
        lengths=("min_distance",),
        areas=("min_size",),
        description="split touching objects (distance-transform watershed)",
    ),
    Step(
        "split_particles",
        "segmentation:split_particles",
        takes=("mask", "intensity_image"),
        writes="labels",
        lengths=("split_min_distance",),
        areas=("min_size",),
        description="split touching particles as the particles preset does (adaptive, slivers merged)",
    ),
    Step(
        "label_components",
        "segmentation:label_components",
        takes=("mask",),
        writes="labels",
        areas=("min_size",),
        description="one label per connected object of a mask (no splitting)",
    ),
    Step(
        "watershed_from_seeds",
        "segmentation:watershed_from_seeds",
        takes=("image_or_mask", "seeds", "mask"),
        writes="labels",
        description="one object grown from each seed point",
    ),
    Step(
        "superpixels",
        "segmentation:superpixels",
        takes=("image", "mask"),
        writes="labels",
        lengths=("region_size",),
        description="SLIC superpixels (CPU or CUDA)",
    ),
    Step(
        "segment_particles",
        "segmentation:segment_particles",
        writes="labels",
        summary="particles",
        description="tuned particle segmentation",
    ),
    Step(
        "segment_pores",
        "segmentation:segment_pores",
        writes="labels",
        summary="porosity",
        description="tuned pore segmentation",
    ),
    # measurement and texture
    Step(
        "measure",
        "measurement:measure",
        takes=("labels", "image"),
        writes="table",
        description="per-object morphology (nm), intensity and texture",
    ),
    Step(
        "object_features",
        "classification:object_features",
        takes=("labels", "image"),
        writes="table",
        description="per-object features for the object classifier",
    ),
    Step(
        "glcm_features",
        "texture:glcm_features",
        takes=("image", "labels"),
        writes="table",
        description="GLCM texture per object or per tile",
    ),
    Step(
        "lbp_features",
        "texture:lbp_features",
        takes=("image", "labels"),
        writes="table",
        description="local-binary-pattern texture per object or per tile",
    ),
    Step("texture_map", "texture:texture_map", writes="image", description="GLCM feature map (sliding window)"),
    # fibre mats and networks
    Step(
        "measure_fibers",
        "fibers:measure_fibers",
        takes=("image", "mask"),
        writes="labels",
        summary="fibers",
        description="fibre diameters, orientation, junctions, beads and mesh pores (fibre mats)",
    ),
    Step(
        "local_thickness",
        "thickness:thickness_map",
        takes=("mask",),
        writes="image",
        description="local thickness (width) map of a phase: ligaments, pores, fibres, coatings",
    ),
    # coating cross-sections
    Step(
        "coating_layers",
        "coating:coating_layers",
        writes="labels",
        summary="coating",
        description="coating/oxide thickness profile and cracks",
    ),
    # steps that wrap saved models (loaded once per process)
    Step(
        "unet_predict",
        "workflows.model_steps:unet_predict",
        writes="labels",
        description="segment with a saved U-Net model (two-class maps as objects)",
    ),
    Step("predict_unet", alias_of="unet_predict", defaults={"instances": False}),
    Step(
        "classify_objects",
        "workflows.model_steps:classify_objects",
        takes=("labels", "image"),
        writes="annotation",
        annotates=True,
        description="class of every object from a saved ObjectClassifier",
    ),
    Step(
        "classify_tiles",
        "workflows.model_steps:classify_tiles",
        writes="labels",
        summary="tiles",
        description="class of every tile from a saved ImageClassifier",
    ),
    Step(
        "pixel_classify",
        "pixel_classifier:pixel_classify",
        writes="labels",
        summary="phases",
        description="class of every pixel from a saved PixelClassifier (trained from scribbles)",
    ),
]

_REGISTRY: dict[str, Step] = {}


def _add(step: Step) -> Step:
    _REGISTRY[step.name] = step
    return step


for _step in STEPS:
    _add(_step)


# --------------------------------------------------------------------------- look-up
def find_step(name: str) -> Step | None:
    """The registered step called ``name``, or None."""
    return _REGISTRY.get(name) if isinstance(name, str) else None


def get_step(name: str) -> Step:
    """The registered step called ``name`` (raises :class:`SEMAnalysisError` if none)."""
    if not isinstance(name, str) or not name:
        raise SEMAnalysisError(f"a step's 'function' must be a non-empty string, got {name!r}")
    step = _REGISTRY.get(name)
    if step is not None:
        return step
    if name.startswith("_"):
        raise SEMAnalysisError(f"step function {name!r} is not a public function")
    raise SEMAnalysisError(f"unknown step function {name!r}; known steps: {', '.join(step_names())}")


def step_names() -> list[str]:
    """Names of every registered step (built-in and user), sorted."""
    return sorted(_REGISTRY)


def resolve_step(name: str) -> Callable:
    """The callable behind a recipe step name (a registered step)."""
    return get_step(name).load()


def call_step(
    name: str, inputs: Mapping[str, Any], params: Mapping[str, Any] | None = None, *, pixel_size: float | None = None
):
    """Run the registered step ``name`` (see :meth:`Step.__call__`)."""
    return get_step(name)(inputs, params, pixel_size=pixel_size)


def register_step(name: str, function: Callable | None = None, **fields):
    """Make ``function`` a step called ``name`` (for recipes and ``napari-sem-analysis steps``).

    Usable as a decorator::

        @register_step("my_filter", writes="image", lengths=("size",))
        def my_filter(image, *, size=3, pixel_size=None, unit="px"): ...

    ``fields`` are :class:`Step` fields (``takes`` defaults to the function's
    first parameter, ``writes`` to ``"other"``, ``description`` to the first
    line of its docstring). A registered name replaces an earlier step of
    that name.
    """

    def deco(func: Callable) -> Callable:
        if not callable(func):
            raise SEMAnalysisError(f"step {name!r} must be a function, got {type(func).__name__}")
        params = _parameters(func)
        doc = (inspect.getdoc(func) or "").strip().splitlines()
        info = {"takes": tuple(params[:1]), "writes": "other", "description": doc[0] if doc else ""}
        info.update(fields)
        info["takes"] = tuple(info["takes"])
        _add(Step(name, func, **info))
        return func

    if function is not None:
        return deco(function)
    return deco
