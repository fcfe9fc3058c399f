"""Workflow widget: see the recorded steps, save/load recipes, replay them or a preset."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import ComboBox, FileEdit, Label, PushButton, TextEdit

from ._base import SEMWidget, in_thread
from ._common import (
    clear_recorded_steps,
    layer_pixel_size,
    notify_error,
    notify_info,
    recorded_steps,
    write_layer,
)

RECORDED = "recorded steps"
LOADED = "loaded recipe"


def _is_filter(function: str) -> bool:
    """Image-to-image filter steps (registry ``filter``): when nothing uses their output they add
    nothing to a recipe's results (e.g. the CLAHE live preview, which runs as soon as the Enhance
    widget opens)."""
    from ..steps import find_step

    entry = find_step(function)
    return entry is not None and entry.target.filter


def _outputs(step) -> list:
    out = step["output"]
    return list(out) if isinstance(out, (list, tuple)) else [out]


def recipe_steps(steps: list[dict]) -> list[dict]:
    """The recorded steps as a runnable recipe.

    * ordered so that every step comes after the steps whose outputs it uses
      (a step re-run on a layer made later keeps its first place in the
      record, e.g. *Threshold* on the image, then *CLAHE*, then *Threshold*
      again on the ``CLAHE`` layer);
    * without enhancement steps whose output no later step uses (a live
      preview that was looked at and not used). The last step is always kept.
    """
    remaining = [dict(s) for s in steps]
    ordered: list[dict] = []
    while remaining:
        produced_later = {o for s in remaining for o in _outputs(s)}
        for i, step in enumerate(remaining):  # noqa: B007 - i is used after the loop
            own = set(_outputs(step))
            needs = {v for v in step["inputs"].values() if v in produced_later and v not in own}
            if not needs:
                break
        else:  # a cycle (a step fed by its own earlier output...): keep the recorded order
            i = 0
        ordered.append(remaining.pop(i))
    changed = True
    while changed:  # dropping a step may leave the step feeding it unused too
        changed = False
        for i, step in enumerate(ordered[:-1]):
            if not _is_filter(step["function"]):
                continue
            used = any(v in _outputs(step) for later in ordered[i + 1 :] for v in later["inputs"].values())
            if not used:
                del ordered[i]
                changed = True
                break
    return ordered


def _summary_text(summary: dict, limit: int = 12) -> str:
    lines = []
    for key, value in list(summary.items())[:limit]:
        if isinstance(value, float):
            lines.append(f"{key}: {value:.4g}")
        else:
            lines.append(f"{key}: {value}")
    return "\n".join(lines)


class WorkflowWidget(SEMWidget):
    """Turn the steps done in the viewer into a reproducible recipe.

    * shows the steps the other widgets recorded for this viewer (or a preset,
      or a loaded recipe file) as the readable YAML that will be saved;
    * saves it as a YAML/JSON recipe (for ``napari-sem-analysis batch``);
    * loads a recipe;
    * replays the recipe on a chosen Image layer in a background thread and
      writes the result as a Labels layer (per-object table in its
      ``features``, per-image summary in its ``metadata["summary"]``).
    """

    def __init__(self, napari_viewer):
        super().__init__(napari_viewer)
        from ..workflows import PRESETS

        self._loaded = None  # Workflow from a file
        self._source = ComboBox(label="recipe", choices=[RECORDED, *PRESETS], value=RECORDED)
        self._text = TextEdit(label="steps", value="")
        try:
            self._text.native.setReadOnly(True)
        except AttributeError:  # pragma: no cover
            pass
        self._refresh_btn = PushButton(text="Refresh recorded steps")
        self._clear_btn = PushButton(text="Clear recorded steps")
        self._load_path = FileEdit(label="load", mode="r", filter="Recipes (*.yaml *.yml *.json)")
        self._load_btn = PushButton(text="Load recipe")
        self._save_path = FileEdit(label="save as", mode="w", filter="Recipes (*.yaml *.yml *.json)")
        self._save_btn = PushButton(text="Save recipe")
        self._image = self.layer_box("run on", "Image", arg="image")
        self._run_btn = PushButton(text="Run on image")
        self._cancel_btn = PushButton(text="Cancel")
        self._result = Label(value="")
        self.extend(
            [
                self._source,
                self._text,
                self._refresh_btn,
                self._clear_btn,
                self._load_path,
                self._load_btn,
                self._save_path,
                self._save_btn,
                self._image,
                self._run_btn,
                self._cancel_btn,
                self._result,
            ]
        )
        self._source.changed.connect(self.refresh)
        self._refresh_btn.changed.connect(self.refresh)
        self._clear_btn.changed.connect(self.clear)
        self._load_btn.changed.connect(lambda _=None: self.load_recipe())
        self._save_btn.changed.connect(lambda _=None: self.save_recipe())
        self._run_btn.changed.connect(lambda _=None: self.run())
        self._cancel_btn.changed.connect(self.cancel)
        self.refresh()

    # --- the current workflow -------------------------------------------------------
    def current_workflow(self):
        """The Workflow shown: recorded steps, a preset, or the loaded recipe."""
        from ..workflows import Workflow, load_recipe

        source = self._source.value
        if source == RECORDED:
            steps = recorded_steps(self.viewer)
            if not steps:
                raise ValueError(
                    "No steps recorded yet: run some analysis widgets (enhance, threshold, split, "
                    "measure...) on an image first, or choose a preset or load a recipe"
                )
            wf = Workflow.from_steps(recipe_steps(steps), name="recorded workflow")
            wf.pixel_size = self._hand_calibration(wf)
            return wf
        if source == LOADED:
            if self._loaded is None:
                raise ValueError("No recipe loaded")
            return self._loaded
        return load_recipe(source)

    def _hand_calibration(self, wf):
        """The pixel size (nm) a user set (by hand, from a line or a confirmed scale bar) on the recorded steps'
        input image, or None.

        Saved in the recipe, it gives images without a pixel size of their own (PNG
        exports, say) the same calibration when the recipe is replayed or batched.
        """
        for name in wf.input_names():
            layer = next((lay for lay in self.viewer.layers if lay.name == name), None)
            if layer is not None and (layer.metadata or {}).get("pixel_size_source") in ("user", "scale bar"):
                px = layer_pixel_size(layer)
                if px:
                    return float(px)
        return None

    def refresh(self, _event=None):
        """Show the current workflow as YAML."""
        try:
            wf = self.current_workflow()
        except ValueError as exc:
            self._text.value = f"# {exc}"
            return
        self._text.value = wf.to_yaml()

    def clear(self, _event=None):
        """Forget the steps recorded so far (start a new workflow)."""
        clear_recorded_steps(self.viewer)
        self._source.value = RECORDED
        self.refresh()

    def _set_loaded(self, wf) -> None:
        self._loaded = wf
        choices = list(self._source.choices)
        if LOADED not in choices:
            self._source.choices = [*choices, LOADED]
        self._source.value = LOADED
        self.refresh()

    # --- save / load --------------------------------------------------------------------
    def save_recipe(self, path=None):
        """Save the current workflow as a YAML/JSON recipe file; returns the path or None."""
        path = Path(path) if path is not None else Path(self._save_path.value)
        if not str(path) or str(path) == "." or path.is_dir():
            notify_error("Choose a file name ending in .yaml or .json to save the recipe")
            return None
        try:
            wf = self.current_workflow()
            if path.suffix == "":
                path = path.with_suffix(".yaml")
            wf.save(path)
        except (ValueError, OSError) as exc:
            notify_error(exc)
            return None
        notify_info(f"Recipe saved to {path}")
        return path

    def load_recipe(self, path=None):
        """Load a recipe file (or preset name); returns the Workflow or None."""
        from ..workflows import load_recipe

        value = path if path is not None else self._load_path.value
        if value is None or str(value) in ("", "."):
            notify_error("Choose a recipe file to load")
            return None
        try:
            wf = load_recipe(value)
            wf.validate()
        except (ValueError, OSError) as exc:
            notify_error(exc)
            return None
        self._set_loaded(wf)
        notify_info(f"Loaded recipe {wf.name!r} ({len(wf.steps)} steps)")
        return wf

    # --- run --------------------------------------------------------------------------
    def run(self):
        """Replay the current workflow on the chosen image layer (thread worker)."""
        layer = self._image.value
        if layer is None:
            notify_error("Choose an image layer to run the workflow on")
            return None
        try:
            wf = self.current_workflow()
            wf.validate()
        except ValueError as exc:
            notify_error(exc)
            return None
        import napari

        data = layer.data
        if getattr(layer, "multiscale", False):
            data = data[0]
        extra = {}
        for name in wf.input_names():
            other = next((lay for lay in self.viewer.layers if lay.name == name), None)
            if isinstance(other, napari.layers.Labels):
                extra[name] = other.data
        px = layer_pixel_size(layer)
        n = len(wf.steps)

        def work():
            import numpy as np

            from .._validation import to_grayscale

            image = to_grayscale(np.asarray(data))

            def steps(progress, cancel):
                # in a thread of its own: Cancel acts at once, also during a long step
                gen = wf.iter_run(image, pixel_size=px, inputs=extra)
                done = 0
                while True:
                    if cancel():
                        return None
                    try:
                        next(gen)
                    except StopIteration as stop:
                        return stop.value
                    done += 1
                    progress(done, n + 1)

            result = yield from in_thread(steps, lambda: self._cancel_requested)
            return result

        def done(result):
            self._show_result(wf, layer, result)

        self._result.value = f"running {wf.name}..."
        return self.start(work, done, total=n + 1, desc=f"workflow {wf.name}")

    def _show_result(self, wf, layer, result):
        name = f"{wf.name} result"
        summary = dict(result.summary)
        if result.labels is not None:
            features = None
            from ..coating import CoatingResult

            if any(isinstance(v, CoatingResult) for v in result.outputs.values()):
                # a class map: its features describe its classes, not the crack table's rows
                from ._coating import coating_class_features

                features = coating_class_features(result.labels)
            elif len(result.table) and "label" in result.table:
                # napari maps label values to feature rows through an "index" column
                features = result.table.copy()
                if "index" not in features:
                    features.insert(0, "index", features["label"].to_numpy())
            write_layer(
                self.viewer,
                result.labels,
                name=name,
                kind="labels",
                like=layer,
                metadata={"summary": summary, "recipe": wf.to_dict(), "source": layer.name},
                features=features,
            )
        self._result.value = _summary_text(summary)
        self.last_result = result
        notify_info(
            f"{wf.name} on {layer.name}: "
            + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in list(summary.items())[:3])
        )

    def on_cancelled(self, desc: str) -> None:
        self._result.value = f"{desc}: cancelled"

    def on_failed(self, desc: str, error: BaseException) -> None:
        self._result.value = f"{desc}: failed"
        notify_error(error)
