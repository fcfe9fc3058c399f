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

import copy
import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ._validation import SEMAnalysisError, check_image, check_positive, to_grayscale
from .steps import find_step, get_step, register_step, resolve_step  # noqa: F401  (re-exported)

__all__ = [
    "Workflow",
    "WorkflowResult",
    "load_recipe",
    "run_workflow",
    "register_step",
    "register_summary",
    "PRESETS",
    "read_image",
]

RECIPE_VERSION = 1

# --------------------------------------------------------------------------
# summary registry (steps: napari_sem_analysis.steps)
# --------------------------------------------------------------------------
_SUMMARIES: dict[str, Callable] = {}


def register_summary(name: str, function: Callable | None = None):
    """Register a summary function ``f(context) -> (table, summary_dict)``.

    ``context`` is a :class:`WorkflowResult` whose ``labels``, ``image``,
    ``pixel_size`` and ``outputs`` are filled in; the function returns the
    per-object table (a DataFrame) and a flat dict of per-image figures.
    """

    def deco(func: Callable) -> Callable:
        _SUMMARIES[name] = func
        return func

    if function is not None:
        return deco(function)
    return deco


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    Readers never see a half-written file: the file either has its old
    content or the complete new one.
    """
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


# --------------------------------------------------------------------------
# reading images
# --------------------------------------------------------------------------
def read_image(path, *, pixel_size: float | None = None):
    """Read an image file as ``(data_2d, pixel_size_nm_or_None)``.

    Uses :func:`napari_sem_analysis.read_sem` (pixel size from the file's
    metadata, instrument info band cropped). ``pixel_size`` overrides the
    metadata. Unreadable files raise :class:`SEMAnalysisError`.
    """
    path = Path(path)
    if not path.is_file():
        raise SEMAnalysisError(f"{path} does not exist or is not a file")
    try:
        from .io import read_sem
    except ImportError:  # pragma: no cover - io module not available
        read_sem = None
    try:
        if read_sem is not None:
            kwargs = {} if pixel_size is None else {"pixel_size": pixel_size}
            img = read_sem(path, **kwargs)
            data, px = np.asarray(img.data), img.pixel_size
        else:  # pragma: no cover
            import tifffile
            from skimage import io as skio

            if path.suffix.lower() in (".tif", ".tiff"):
                data = tifffile.imread(path)
            else:
                data = skio.imread(path)
            px = None
    except SEMAnalysisError:
        raise
    except Exception as exc:  # corrupt/unsupported files
        raise SEMAnalysisError(f"cannot read {path.name}: {exc}") from exc
    data = to_grayscale(np.asarray(data))
    if pixel_size is not None:
        px = float(pixel_size)
    return data, (None if px is None else float(px))


def _as_image(image_or_path, pixel_size):
    """(data, pixel_size, name) from a path, an SEMImage-like object or an array."""
    if isinstance(image_or_path, (str, os.PathLike)):
        data, px = read_image(image_or_path, pixel_size=pixel_size)
        return data, px, Path(image_or_path).stem
    if hasattr(image_or_path, "data") and not isinstance(image_or_path, np.ndarray):
        data = to_grayscale(np.asarray(image_or_path.data))
        px = pixel_size if pixel_size is not None else getattr(image_or_path, "pixel_size", None)
        path = getattr(image_or_path, "path", None)
        name = Path(path).stem if path else getattr(image_or_path, "name", "image")
        return data, (None if px is None else float(px)), name
    data = to_grayscale(np.asarray(image_or_path))
    return data, (None if pixel_size is None else float(pixel_size)), "image"


# --------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------
@dataclass
class WorkflowResult:
    """What :func:`run_workflow` returns.

    Attributes
    ----------
    labels : ndarray or None
        The objects (instance labels) or class map the workflow produced.
    table : pandas.DataFrame
        One row per object (or per class/crack for the coating and phase presets).
    summary : dict
        Flat per-image figures (e.g. ``count``, ``median_equivalent_diameter_nm``).
    outputs : dict
        Every named step output.
    image : ndarray
        The 2-D input image.
    pixel_size : float or None
        nm per pixel used.
    name : str
        Image name (file stem).
    extra_tables : dict
        Further tables (e.g. the coating thickness profile) written by the batch.
    object_table : pandas.DataFrame or None
        The output of the recipe's own ``measure`` step of the labels (with the
        settings the user chose in the Measure widget, e.g. texture off); the
        summaries use it as the per-object table instead of measuring again
        with the default settings.
    """

    labels: np.ndarray | None
    table: pd.DataFrame
    summary: dict
    outputs: dict = field(default_factory=dict)
    image: np.ndarray | None = None
    pixel_size: float | None = None
    name: str = "image"
    extra_tables: dict = field(default_factory=dict)
    object_table: pd.DataFrame | None = None


# --------------------------------------------------------------------------
# the Workflow
# --------------------------------------------------------------------------
_STEP_KEYS = {"function", "params", "inputs", "output"}


def _normalise_step(step: Mapping, index: int) -> dict:
    if not isinstance(step, Mapping):
        raise SEMAnalysisError(f"step {index + 1} must be a mapping, got {type(step).__name__}")
    unknown = set(step) - _STEP_KEYS - {"comment"}
    if unknown:
        raise SEMAnalysisError(f"step {index + 1} has unknown keys {sorted(unknown)}")
    if "function" not in step:
        raise SEMAnalysisError(f"step {index + 1} has no 'function'")
    params = dict(step.get("params") or {})
    inputs = step.get("inputs")
    if inputs is None:
        inputs = {"image": "image"}
    if not isinstance(inputs, Mapping):
        raise SEMAnalysisError(f"step {index + 1}: 'inputs' must map argument names to names")
    output = step.get("output") or f"{step['function']}"
    if not isinstance(output, (str, list, tuple)):
        raise SEMAnalysisError(f"step {index + 1}: 'output' must be a name")
    out = {
        "function": str(step["function"]),
        "params": _jsonable(params),
        "inputs": {str(k): str(v) for k, v in inputs.items()},
        "output": list(output) if isinstance(output, (list, tuple)) else str(output),
    }
    if step.get("comment"):
        out["comment"] = str(step["comment"])
    return out


def _jsonable(value):
    """Convert numpy scalars/arrays and tuples to plain JSON/YAML types."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise SEMAnalysisError(f"recipe parameter {value!r} ({type(value).__name__}) cannot be saved")


def _default_summary(steps: list[dict]) -> str:
    """The summary of a recipe without one: from its last step that does not only annotate."""
    for step in reversed(steps):
        entry = find_step(step["function"])
        entry = entry.target if entry is not None else None
        if entry is not None and entry.annotates:
            continue
        return (entry.summary if entry is not None else None) or "objects"
    return "objects"


class Workflow:
    """An ordered list of steps that can be saved, loaded and replayed.

    Parameters
    ----------
    steps : sequence of dict
        ``{"function", "params", "inputs", "output"}`` dicts.
    name : str
        Recipe name (used in reports).
    labels : str, optional
        Name of the output holding the objects. Default: the last step output
        that is an integer/boolean image.
    summary : str, optional
        Name of the summary function (``"objects"``, ``"particles"``,
        ``"porosity"``, ``"coating"``, ``"phases"``, ``"tiles"`` or a registered
        one). Default: from the last step, not counting ``classify_objects``
        (``multi_threshold`` -> ``"phases"``,
        ``segment_pores`` -> ``"porosity"``, ``classify_tiles`` -> ``"tiles"``...),
        else ``"objects"``.
    description : str
    options : dict
        Keyword arguments for the summary function (e.g. phase class names).
    pixel_size : float, optional
        nm per pixel for images that carry no pixel size of their own (e.g.
        PNG exports from the microscope, calibrated by hand when the recipe
        was recorded). A file's metadata and an explicit ``pixel_size`` given
        to :meth:`run` take precedence.
    """

    def __init__(
        self,
        steps: Sequence[Mapping],
        *,
        name: str = "workflow",
        labels: str | None = None,
        summary: str | None = None,
        description: str = "",
        options: Mapping | None = None,
        pixel_size: float | None = None,
    ):
        self.steps = [_normalise_step(s, i) for i, s in enumerate(steps)]
        if not self.steps:
            raise SEMAnalysisError("a workflow needs at least one step")
        self.name = str(name)
        self.labels = labels
        self.summary = summary or _default_summary(self.steps)
        self.description = description
        self.options = _jsonable(dict(options or {}))
        if pixel_size is not None:
            pixel_size = check_positive(pixel_size, "the recipe's pixel_size (nm)", maximum=1e9)
        self.pixel_size = pixel_size

    # --- construction -------------------------------------------------------
    @classmethod
    def from_steps(cls, steps: Sequence[Mapping], **kwargs) -> "Workflow":
        """Build a workflow from recorded steps (``recorded_steps(viewer)``)."""
        return cls(steps, **kwargs)

    @classmethod
    def from_dict(cls, recipe: Mapping) -> "Workflow":
        if not isinstance(recipe, Mapping):
            raise SEMAnalysisError("a recipe must be a mapping with a 'steps' list")
        if "steps" not in recipe or not isinstance(recipe["steps"], (list, tuple)):
            raise SEMAnalysisError("a recipe needs a 'steps' list")
        version = recipe.get("version", RECIPE_VERSION)
        if int(version) > RECIPE_VERSION:
            raise SEMAnalysisError(
                f"recipe version {version} is newer than this napari-sem-analysis understands"
            )
        return cls(
            recipe["steps"],
            name=recipe.get("name", "workflow"),
            labels=recipe.get("labels"),
            summary=recipe.get("summary"),
            description=recipe.get("description", ""),
            options=recipe.get("options"),
            pixel_size=recipe.get("pixel_size"),
        )

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "version": RECIPE_VERSION,
            "description": self.description,
            "steps": copy.deepcopy(self.steps),
            "summary": self.summary,
        }
        if self.labels:
            d["labels"] = self.labels
        if self.options:
            d["options"] = copy.deepcopy(self.options)
        if self.pixel_size is not None:
            d["pixel_size"] = float(self.pixel_size)
        if not d["description"]:
            del d["description"]
        return d

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    def save(self, path) -> Path:
        """Write the recipe as YAML (``.yaml``/``.yml``) or JSON (``.json``), atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix in (".yaml", ".yml"):
            text = self.to_yaml()
        elif suffix == ".json":
            text = json.dumps(self.to_dict(), indent=2) + "\n"
        else:
            raise SEMAnalysisError(f"recipe file must end in .yaml, .yml or .json, got {path.name!r}")
        write_atomic(path, text.encode("utf-8"))
        return path

    @classmethod
    def load(cls, path) -> "Workflow":
        """Read a recipe from a YAML or JSON file."""
        path = Path(path)
        if not path.is_file():
            raise SEMAnalysisError(f"recipe file {path} not found")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as exc:
            raise SEMAnalysisError(f"cannot parse recipe {path.name}: {exc}") from exc
        return cls.from_dict(data)

    def __eq__(self, other) -> bool:
        return isinstance(other, Workflow) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        funcs = " -> ".join(s["function"] for s in self.steps)
        return f"Workflow({self.name!r}: {funcs})"

    # --- inspection ---------------------------------------------------------
    def input_names(self) -> list[str]:
        """Input names that no step produces: they refer to the image the workflow runs on."""
        produced: set[str] = set()
        for step in self.steps:
            outs = step["output"] if isinstance(step["output"], list) else [step["output"]]
            produced.update(outs)
        external: list[str] = []
        for step in self.steps:
            for name in step["inputs"].values():
                if name not in produced and name not in external:
                    external.append(name)
        return external

    def validate(self) -> None:
        """Check that every step function exists (raises SEMAnalysisError)."""
        for step in self.steps:
            get_step(step["function"]).load()
        summary_function(self.summary)

    # --- running ------------------------------------------------------------
    def run(
        self,
        image,
        *,
        pixel_size: float | None = None,
        inputs: Mapping[str, Any] | None = None,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> WorkflowResult:
        """Replay the steps on ``image`` (array, SEMImage or path).

        Parameters
        ----------
        image : ndarray, SEMImage or path
        pixel_size : float, optional
            nm per pixel; default from the file's metadata / SEMImage, else
            the recipe's own ``pixel_size``.
        inputs : dict, optional
            Data for other external inputs (e.g. a hand-drawn labels layer);
            every external input not given here is the image.
        progress : callable, optional
            Called as ``progress(i, n, function_name)`` before each step.
        """
        gen = self.iter_run(image, pixel_size=pixel_size, inputs=inputs)
        try:
            while True:
                i, n, fname = next(gen)
                if progress is not None:
                    progress(i, n, fname)
        except StopIteration as stop:
            return stop.value

    def iter_run(
        self,
        image,
        *,
        pixel_size: float | None = None,
        inputs: Mapping[str, Any] | None = None,
    ):
        """Generator form of :meth:`run`: yields ``(i, n, function_name)`` before each step
        (and ``(n, n, "summary")``) and returns the :class:`WorkflowResult`.

        Lets a GUI show progress and cancel between steps
        (``result = yield from workflow.iter_run(image)``).
        """
        data, px, name = _as_image(image, pixel_size)
        if px is None:
            px = self.pixel_size  # the recipe's calibration, for images without their own
        check_image(data, ndim=(2,))
        ctx: dict[str, Any] = {}
        given = dict(inputs or {})
        for ext in self.input_names():
            ctx[ext] = given.pop(ext, data)
        ctx.update(given)
        ctx.setdefault("image", data)
        n = len(self.steps)
        for i, step in enumerate(self.steps):
            yield i, n, step["function"]
            entry = get_step(step["function"])
            data_inputs = {}
            for arg, src in step["inputs"].items():
                if src not in ctx:
                    raise SEMAnalysisError(
                        f"step {i + 1} ({step['function']}) needs {src!r}, which only a later step produces"
                    )
                data_inputs[arg] = ctx[src]
            try:
                out = entry(data_inputs, step["params"], pixel_size=px)
            except SEMAnalysisError as exc:
                raise SEMAnalysisError(f"step {i + 1} ({step['function']}): {exc}") from exc
            except TypeError as exc:
                raise SEMAnalysisError(f"step {i + 1} ({step['function']}): {exc}") from exc
            outs = step["output"]
            if isinstance(outs, list):
                if not isinstance(out, (tuple, list)) or len(out) != len(outs):
                    raise SEMAnalysisError(
                        f"step {i + 1} ({step['function']}) returned {type(out).__name__}, "
                        f"expected {len(outs)} outputs"
                    )
                ctx.update(zip(outs, out))
            else:
                ctx[outs] = out
        yield n, n, "summary"
        labels_name, labels = self._pick_labels(ctx)
        result = WorkflowResult(
            labels=labels,
            table=pd.DataFrame(),
            summary={},
            outputs=ctx,
            image=data,
            pixel_size=px,
            name=name,
            object_table=self._measured_table(ctx, labels_name, labels),
        )
        table, summary = summary_function(self.summary)(result, **self.options)
        result.table = table if table is not None else pd.DataFrame()
        result.summary = dict(summary)
        return result

    def _pick_labels(self, ctx: dict):
        """``(output name, label image)`` of the objects (``(None, None)`` when there are none)."""
        if self.labels:
            if self.labels not in ctx:
                raise SEMAnalysisError(f"recipe names labels {self.labels!r} but no step produced it")
            return self.labels, _labels_of(ctx[self.labels])
        for step in reversed(self.steps):
            outs = step["output"] if isinstance(step["output"], list) else [step["output"]]
            for o in reversed(outs):
                lab = _labels_of(ctx.get(o))
                if lab is not None:
                    return o, lab
        # no step made objects: the labels given to a step (e.g. a Labels layer the user drew,
        # classified by classify_objects)
        for step in reversed(self.steps):
            for arg in ("labels", "mask"):
                src = step["inputs"].get(arg)
                value = ctx.get(src) if src is not None else None
                if value is not None and value is not ctx.get("image"):
                    lab = _labels_of(value) if isinstance(value, np.ndarray) else None
                    if lab is not None:
                        return src, lab
        return None, None

    def _measured_table(self, ctx: dict, labels_name, labels):
        """The table of the last ``measure`` step of exactly these labels, or None."""
        if labels_name is None or labels is None or ctx.get(labels_name) is not labels:
            return None  # the labels were derived (e.g. a mask labelled here): not what was measured
        for step in reversed(self.steps):
            if step["function"] != "measure" or isinstance(step["output"], list):
                continue
            if step["inputs"].get("labels") != labels_name:
                continue
            table = ctx.get(step["output"])
            if isinstance(table, pd.DataFrame):
                return table.copy()
        return None


def _labels_of(value):
    """An integer label image from a step output (array, bool mask, or object with .labels)."""
    if value is None:
        return None
    if hasattr(value, "labels") and not isinstance(value, np.ndarray):
        value = value.labels
    if isinstance(value, np.ndarray) and value.ndim == 2:
        if value.dtype == bool:
            from scipy import ndimage as ndi

            return ndi.label(value)[0].astype(np.int32)
        if np.issubdtype(value.dtype, np.integer):
            if value.size and value.max() <= 1:  # a 0/1 mask (e.g. a 2-class U-Net map): objects
                from scipy import ndimage as ndi

                return ndi.label(value > 0)[0].astype(np.int32)
            return value
    return None


# --------------------------------------------------------------------------
# summaries
# --------------------------------------------------------------------------
def summary_function(name: str) -> Callable:
    try:
        return _SUMMARIES[name]
    except KeyError:
        raise SEMAnalysisError(
            f"unknown summary {name!r}; known: {', '.join(sorted(_SUMMARIES))}"
        ) from None


def _result_table(result: WorkflowResult) -> pd.DataFrame:
    """The recipe's own measurements of the labels, else :func:`measure` with its defaults."""
    if result.object_table is not None:
        return result.object_table
    return _object_table(result.labels, result.image, result.pixel_size)


def _object_table(labels, image, pixel_size) -> pd.DataFrame:
    """Per-object table from :func:`napari_sem_analysis.measure` (basic table if unavailable)."""
    try:
        from .measurement import measure
    except ImportError:
        measure = None
    if measure is not None:
        return measure(labels, image=image, pixel_size=pixel_size)
    from skimage.measure import regionprops_table  # pragma: no cover

    t = pd.DataFrame(regionprops_table(labels, properties=("label", "area", "centroid")))
    t["equivalent_diameter"] = 2 * np.sqrt(t["area"] / np.pi)
    if pixel_size:
        t["equivalent_diameter_nm"] = t["equivalent_diameter"] * pixel_size
    return t


def object_sizes(labels: np.ndarray) -> np.ndarray:
    """Pixel areas of the labels (object order = sorted label ids)."""
    counts = np.bincount(labels.ravel())
    return counts[1:][counts[1:] > 0]


def _size_summary(labels, pixel_size, prefix="") -> dict:
    areas = object_sizes(labels).astype(float)
    d_px = 2 * np.sqrt(areas / np.pi)
    unit = "nm" if pixel_size else "px"
    d = d_px * (pixel_size or 1.0)
    out = {f"{prefix}count": int(areas.size)}
    if areas.size:
        out[f"median_equivalent_diameter_{unit}"] = float(np.median(d))
        out[f"mean_equivalent_diameter_{unit}"] = float(np.mean(d))
        out[f"d10_{unit}"] = float(np.percentile(d, 10))
        out[f"d90_{unit}"] = float(np.percentile(d, 90))
    else:
        for key in ("median_equivalent_diameter", "mean_equivalent_diameter", "d10", "d90"):
            out[f"{key}_{unit}"] = float("nan")
    out["area_fraction"] = float((labels > 0).mean())
    out["pixel_size_nm"] = float(pixel_size) if pixel_size else float("nan")
    return out


@register_summary("objects")
def summarize_objects(result: WorkflowResult, **_):
    """Generic summary: per-object measurements, count and size distribution."""
    if result.labels is None:
        return pd.DataFrame(), {}
    table = _result_table(result)
    summary = _size_summary(result.labels, result.pixel_size)
    classes = result.outputs.get("classes")
    if isinstance(classes, pd.Series) and "label" in table:  # a classify_objects step named "classes"
        table = table.copy()
        table["class"] = table["label"].map(classes).astype(str)
        counts = table["class"].value_counts()
        names = [str(c) for c in classes.attrs.get("class_names", [])]
        for name in [*names, *(c for c in counts.index if c not in names)]:
            summary[f"count_{name}"] = int(counts.get(name, 0))
    return table, summary


@register_summary("particles")
def summarize_particles(result: WorkflowResult, **_):
    """Particle analysis: count and equivalent-diameter distribution (nm)."""
    return summarize_objects(result)


@register_summary("porosity")
def summarize_porosity(result: WorkflowResult, *, round_circularity: float = 0.7, **_):
    """Porosity %, pore size distribution and pore classes.

    Pore classes come from an ``ObjectClassifier`` step output named
    ``classes`` when the recipe has one; otherwise pores are split by shape
    into ``round`` (circularity >= ``round_circularity``, typical of gas
    pores) and ``irregular`` (lack-of-fusion-like) pores.
    """
    labels = result.labels
    if labels is None:
        return pd.DataFrame(), {}
    table = _result_table(result)
    summary = _size_summary(labels, result.pixel_size)
    summary["pore_count"] = summary.pop("count")
    summary["porosity_percent"] = 100.0 * summary.pop("area_fraction")
    classes = result.outputs.get("classes")
    all_classes: list[str] = []
    if isinstance(classes, pd.Series) and "label" in table:  # from classify_objects: by label
        cls = table["label"].map(classes).astype(str)
        all_classes = [str(c) for c in classes.attrs.get("class_names", [])]
    elif classes is not None and len(classes) == len(table):
        cls = pd.Series(np.asarray(classes), index=table.index).astype(str)
    else:
        all_classes = ["round", "irregular"]
        from skimage.measure import regionprops

        circ = {}
        for rp in regionprops(labels):
            per = rp.perimeter
            circ[rp.label] = 4 * np.pi * rp.area / per**2 if per > 0 else 1.0
        label_col = table["label"] if "label" in table else pd.Series(sorted(circ), index=table.index)
        c = label_col.map(circ).astype(float).clip(upper=1.0)
        table["circularity_shape"] = c
        cls = pd.Series(np.where(c >= round_circularity, "round", "irregular"), index=table.index)
    table["pore_class"] = cls
    counts = cls.value_counts()
    # every known class gets its count, 0 included, so that images without a class have no gap
    for name in [*all_classes, *(c for c in counts.index if c not in all_classes)]:
        summary[f"pores_{name}"] = int(counts.get(name, 0))
    return table, summary


@register_summary("phases")
def summarize_phases(result: WorkflowResult, *, class_names: Sequence[str] | None = None, **_):
    """Area fraction of each phase of a class map (labels 1..N)."""
    labels = result.labels
    if labels is None:
        return pd.DataFrame(), {}
    n = int(labels.max())
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    total = labels.size
    names = list(class_names or [])
    rows = []
    summary: dict[str, Any] = {"phases": n}
    for k in range(1, n + 1):
        name = names[k - 1] if k - 1 < len(names) else f"phase_{k}"
        frac = counts[k] / total
        row = {"phase": k, "name": name, "pixels": int(counts[k]), "area_fraction": float(frac)}
        if result.pixel_size:
            row["area_um2"] = counts[k] * (result.pixel_size / 1000.0) ** 2
        rows.append(row)
        summary[f"{name}_fraction"] = float(frac)
    summary["pixel_size_nm"] = float(result.pixel_size) if result.pixel_size else float("nan")
    return pd.DataFrame(rows), summary


@register_summary("tiles")
def summarize_tiles(result: WorkflowResult, **_):
    """Tile classes (``classify_tiles`` step): tiles per class and their fraction of all tiles."""
    found = [v for v in result.outputs.values() if isinstance(v, TileClasses)]
    if not found:
        raise SEMAnalysisError("the tiles summary needs a 'classify_tiles' step")
    tc = found[-1]
    table = tc.table.reset_index(drop=True)
    counts = table["class"].value_counts()
    n = len(table)
    summary: dict[str, Any] = {"tiles": int(n)}
    for name in tc.class_names:
        summary[f"tiles_{name}"] = int(counts.get(name, 0))
    for name in tc.class_names:
        summary[f"{name}_fraction"] = float(counts.get(name, 0) / n) if n else float("nan")
    summary["pixel_size_nm"] = float(result.pixel_size) if result.pixel_size else float("nan")
    return table, summary


@register_summary("coating")
def summarize_coating(result: WorkflowResult, **_):
    """Coating cross-section figures from the ``coating_layers`` step."""
    from .coating import CoatingResult

    found = [v for v in result.outputs.values() if isinstance(v, CoatingResult)]
    if not found:
        raise SEMAnalysisError("the coating summary needs a 'coating_layers' step")
    cr = found[-1]
    result.extra_tables["profile"] = cr.profile
    return cr.cracks, dict(cr.summary)


# --------------------------------------------------------------------------
# workflow-specific steps
# --------------------------------------------------------------------------
def _file_stamp(path: str):
    """(mtime, size) of a model file: a model saved again under the same name is loaded again."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def _cached_model(path: str, device: str):
    return _cached_model_at(path, device, _file_stamp(path))


@functools.lru_cache(maxsize=4)
def _cached_model_at(path: str, device: str, _stamp):
    from .unet import load_model

    kwargs = {} if device == "auto" else {"device": device}
    try:
        return load_model(path, **kwargs)
    except TypeError:
        return load_model(path)


def unet_predict(image, *, model: str, device: str = "auto", instances: bool = True, **predict_kwargs):
    """Segment with a saved U-Net; the model is loaded once per process (worker).

    With ``instances=True`` a two-class (background/object) prediction is
    turned into objects by connected components, so that it can be counted
    and measured; multi-class predictions are returned as class maps.
    """
    m = _cached_model(os.fspath(model), device)
    pred = np.asarray(m.predict(image, device=device, **predict_kwargs))
    if instances and pred.ndim == 2 and pred.dtype != bool and np.issubdtype(pred.dtype, np.integer) and pred.max() <= 1:
        pred = pred.astype(bool)
    if instances and pred.dtype == bool:
        from scipy import ndimage as ndi

        return ndi.label(pred)[0].astype(np.int32)
    return pred


def _cached_classifier(path: str, kind: str = "object"):
    """A saved ObjectClassifier (``kind="object"``) or ImageClassifier (``"image"``), loaded once
    per process and again when the file changes."""
    return _cached_classifier_at(path, kind, _file_stamp(path))


@functools.lru_cache(maxsize=8)
def _cached_classifier_at(path: str, kind: str, _stamp):
    from .classification import ImageClassifier, ObjectClassifier

    return (ImageClassifier if kind == "image" else ObjectClassifier).load(path)


_cached_model.cache_clear = _cached_model_at.cache_clear  # type: ignore[attr-defined]
_cached_classifier.cache_clear = _cached_classifier_at.cache_clear  # type: ignore[attr-defined]


def classify_objects(labels, image=None, *, model: str, pixel_size=None, **measure_kwargs):
    """Class of every object from a saved :class:`ObjectClassifier` (loaded once per process).

    The objects are measured with :func:`measure` (``measure_kwargs``, e.g.
    ``texture=True``, as when the classifier was trained). Returns a
    ``pandas.Series`` of class names indexed by label value; name the step's
    output ``classes`` and the porosity summary counts the pores per class.
    """
    from .measurement import measure

    labels = _labels_of(np.asarray(labels))
    if labels is None:
        raise SEMAnalysisError("classify_objects needs a label image")
    table = measure(labels, image=image, pixel_size=pixel_size, **measure_kwargs)
    clf = _cached_classifier(os.fspath(model))
    if len(table) == 0:
        out = pd.Series([], dtype=object, name="class")
    else:
        out = pd.Series(clf.predict(table), index=table["label"].to_numpy(), name="class")
    out.attrs["class_names"] = [str(c) for c in getattr(clf, "class_names", None) or []]
    return out


@dataclass
class TileClasses:
    """Output of the ``classify_tiles`` step.

    ``labels`` is the class map (1..K = ``class_names``, each pixel the class
    of highest probability averaged over the tiles covering it), ``table``
    the per-tile table of :meth:`ImageClassifier.predict_tiles`.
    """

    labels: np.ndarray
    table: pd.DataFrame
    class_names: list


def classify_tiles(image, *, model: str, tile_size: int | None = None, stride: int | None = None) -> TileClasses:
    """Classify the tiles of an image with a saved :class:`ImageClassifier` (loaded once per process).

    Use with ``summary: tiles``: tile counts and fractions per class
    (e.g. rust / no rust) for every image of a batch.
    """
    from .classification import tile_probability_map

    img = to_grayscale(np.asarray(image))
    clf = _cached_classifier(os.fspath(model), "image")
    if tile_size is not None:
        tile_size = min(int(tile_size), *img.shape[:2])
    table = clf.predict_tiles(img, tile_size, stride)
    names = [str(c) for c in clf.class_names]
    pmap = tile_probability_map(table, img.shape, names)
    labels = (pmap.argmax(axis=0) + 1).astype(np.int32)
    return TileClasses(labels=labels, table=table, class_names=names)


# --------------------------------------------------------------------------
# presets
# --------------------------------------------------------------------------
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
        "description": "Phase fractions by multi-level (multi-Otsu) threshold, e.g. pore/organic/matrix/pyrite in shale.",
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


def load_recipe(recipe) -> Workflow:
    """A :class:`Workflow` from a preset name, a recipe file, a dict, a step list or a Workflow."""
    if isinstance(recipe, Workflow):
        return recipe
    if isinstance(recipe, Mapping):
        return Workflow.from_dict(recipe)
    if isinstance(recipe, (list, tuple)):
        return Workflow.from_steps(recipe)
    if isinstance(recipe, (str, os.PathLike)):
        key = os.fspath(recipe)
        if key in PRESETS:
            return Workflow.from_dict(copy.deepcopy(PRESETS[key]))
        path = Path(key)
        if path.is_file():
            return Workflow.load(path)
        raise SEMAnalysisError(
            f"{key!r} is neither a preset ({', '.join(PRESETS)}) nor an existing recipe file"
        )
    raise SEMAnalysisError(f"cannot make a workflow from {type(recipe).__name__}")


def run_workflow(recipe, image_or_path, *, pixel_size: float | None = None, **kwargs) -> WorkflowResult:
    """Run a recipe (preset name, file, dict or Workflow) on one image.

    Parameters
    ----------
    recipe : str, path, dict, list or Workflow
        ``"particles"``, ``"porosity"``, ``"coating"``, ``"phases"``, a YAML/JSON
        recipe file, or recorded steps.
    image_or_path : ndarray, SEMImage or path
        The image; a path is read with :func:`read_sem` (pixel size from metadata).
    pixel_size : float, optional
        nm per pixel, overriding the metadata.

    Returns
    -------
    WorkflowResult
        ``.labels``, ``.table`` (per object), ``.summary`` (dict).
    """
    return load_recipe(recipe).run(image_or_path, pixel_size=pixel_size, **kwargs)
