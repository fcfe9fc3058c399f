"""Recipes: the :class:`Workflow` (steps that can be saved, loaded and replayed) and its result."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._validation import SEMAnalysisError, check_image, check_positive
from ..steps import find_step, get_step
from ._data import _as_image, _jsonable, _labels_of, write_atomic
from .presets import PRESETS
from .summaries import summary_function

RECIPE_VERSION = 1


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


_STEP_KEYS = {"function", "params", "inputs", "output"}
#: recipe files are small: a larger one is refused before it is parsed
MAX_RECIPE_BYTES = 1_000_000
#: bounds of parameters that set how long a step runs (a recipe is a file from others)
PARAM_BOUNDS = {
    "epochs": 10_000,
    "max_iter": 10_000,
    "n_estimators": 100_000,
    "n_segments": 10_000_000,
    "iterations": 10_000,
    "batch_size": 65_536,
}


def _check_params(value, where: str, depth: int = 0, budget: list | None = None) -> None:
    """Parameters of a recipe step: plain data, finite numbers, bounded sizes and run lengths."""
    budget = [10_000] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0 or depth > 8:
        raise SEMAnalysisError(f"{where}: the parameters are too large or too deeply nested")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and str(k) in PARAM_BOUNDS:
                if not abs(v) <= PARAM_BOUNDS[str(k)]:
                    raise SEMAnalysisError(f"{where}: {k} must be at most {PARAM_BOUNDS[str(k)]}, got {v!r}")
            _check_params(v, f"{where}", depth + 1, budget)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_params(v, where, depth + 1, budget)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, (int, float)):
        if not np.isfinite(value) or abs(value) > 1e15:
            raise SEMAnalysisError(f"{where}: parameter value {value!r} is not a finite number of sensible size")
    elif isinstance(value, str):
        if len(value) > 10_000:
            raise SEMAnalysisError(f"{where}: a parameter text is longer than 10000 characters")


def _safe_yaml(text: str, name: str):
    """YAML without aliases: ``&anchor``/``*alias`` expand a 600-byte file into gigabytes, so they are refused."""
    import yaml

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise SEMAnalysisError(f"recipe {name} uses YAML anchors/aliases (& and *), which recipes may not use")
    return yaml.safe_load(text)


def _normalise_step(step: Mapping, index: int) -> dict:
    if not isinstance(step, Mapping):
        raise SEMAnalysisError(f"step {index + 1} must be a mapping, got {type(step).__name__}")
    unknown = set(step) - _STEP_KEYS - {"comment"}
    if unknown:
        raise SEMAnalysisError(f"step {index + 1} has unknown keys {sorted(unknown)}")
    if "function" not in step:
        raise SEMAnalysisError(f"step {index + 1} has no 'function'")
    if step.get("params") is not None and not isinstance(step.get("params"), Mapping):
        raise SEMAnalysisError(f"step {index + 1}: 'params' must map parameter names to values")
    params = dict(step.get("params") or {})
    _check_params(params, f"step {index + 1} ({step['function']})")
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
            pixel_size = check_positive(pixel_size, "the recipe's pixel_size (nm)", maximum=1e6)
        self.pixel_size = pixel_size

    # --- construction -------------------------------------------------------
    @classmethod
    def from_steps(cls, steps: Sequence[Mapping], **kwargs) -> Workflow:
        """Build a workflow from recorded steps (``recorded_steps(viewer)``)."""
        return cls(steps, **kwargs)

    @classmethod
    def from_dict(cls, recipe: Mapping) -> Workflow:
        if not isinstance(recipe, Mapping):
            raise SEMAnalysisError("a recipe must be a mapping with a 'steps' list")
        if "steps" not in recipe or not isinstance(recipe["steps"], (list, tuple)):
            raise SEMAnalysisError("a recipe needs a 'steps' list")
        version = recipe.get("version", RECIPE_VERSION)
        if int(version) > RECIPE_VERSION:
            raise SEMAnalysisError(f"recipe version {version} is newer than this napari-sem-analysis understands")
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

        class _NoAliases(yaml.SafeDumper):  # recipes are read without anchors/aliases: never write them
            def ignore_aliases(self, data):
                return True

        return yaml.dump(self.to_dict(), Dumper=_NoAliases, sort_keys=False, default_flow_style=False)

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
    def load(cls, path) -> Workflow:
        """Read a recipe from a YAML or JSON file."""
        path = Path(path)
        if not path.is_file():
            raise SEMAnalysisError(f"recipe file {path} not found")
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise SEMAnalysisError(
                f"recipe file {path.name} is {path.stat().st_size:,} bytes; recipes are at most {MAX_RECIPE_BYTES:,}"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SEMAnalysisError(f"cannot read recipe {path.name}: {exc}") from exc
        try:
            if path.suffix.lower() == ".json":
                data = json.loads(text)
            else:
                data = _safe_yaml(text, path.name)
        except SEMAnalysisError:
            raise
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
            self._run_step(i, step, ctx, px)
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

    @staticmethod
    def _run_step(i: int, step: dict, ctx: dict, px: float | None) -> None:
        """Run step ``i`` (its registry entry) on the outputs so far; its outputs go into ``ctx``."""
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
        except (SEMAnalysisError, TypeError) as exc:
            raise SEMAnalysisError(f"step {i + 1} ({step['function']}): {exc}") from exc
        outs = step["output"]
        if isinstance(outs, list):
            if not isinstance(out, (tuple, list)) or len(out) != len(outs):
                raise SEMAnalysisError(
                    f"step {i + 1} ({step['function']}) returned {type(out).__name__}, expected {len(outs)} outputs"
                )
            ctx.update(zip(outs, out))
        else:
            ctx[outs] = out

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


def load_recipe(recipe) -> Workflow:
    """A :class:`Workflow` from a preset name, a recipe file, a dict, a step list or a Workflow.

    Parameters
    ----------
    recipe : str, Path, dict, list or Workflow
        A preset name, a recipe file (JSON/YAML), a recipe dict, a list of steps
        or a Workflow (returned as it is).
    """
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
        raise SEMAnalysisError(f"{key!r} is neither a preset ({', '.join(PRESETS)}) nor an existing recipe file")
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
