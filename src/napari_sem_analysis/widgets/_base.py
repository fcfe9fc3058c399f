"""The base every dock widget is built on, and the one worker runner.

Two classes:

* :class:`SEMWidget` (a magicgui ``Container``): input-layer combo boxes
  refreshed with the layer list (:meth:`~SEMWidget.layer_box`), lengths and
  areas shown in the input layer's units (:meth:`~SEMWidget.length_box`,
  :class:`LengthBox`), a status line, and the worker runner
  (:meth:`~SEMWidget.start`): a napari ``thread_worker`` with progress and
  cancel, errors shown as notifications. Public run state for scripts and
  tests: :attr:`~SEMWidget.running`, :attr:`~SEMWidget.completed`, the
  :attr:`~SEMWidget.finished` signal and :meth:`~SEMWidget.wait`.
* :class:`StepWidget`: a widget that runs steps of the registry
  (:mod:`napari_sem_analysis.steps`). It reads the step's entry: the
  function it calls, what it takes, what it writes (the output layer kind),
  which parameters are areas; it records what it ran into the viewer's
  workflow. A widget module holds only what is special about its step.

A new widget for a registered step, in a few lines::

    from magicgui.widgets import ComboBox
    from ._base import StepWidget

    class DenoiseWidget(StepWidget):
        step = "denoise"                                  # the registry entry

        def __init__(self, napari_viewer):
            super().__init__(napari_viewer)
            self._image = self.layer_box("image", "Image")  # fills the step's input "image"
            self._method = ComboBox(label="method", choices=["gaussian", "median"])
            self._size = self.length_box("size", 1.0)       # px, or nm when the layer has a scale
            self.extend([self._image, self._method, self._size.widget, *self.run_controls()])

        def params(self) -> dict:
            return {"method": self._method.value, "size": self._size.value, "unit": self.unit()}

*Run* then reads the layers (GUI thread), calls the step's function in a
thread worker (stacks plane by plane; *Cancel* stops between planes),
writes the output layer named ``output`` (default: the step name; kind from
the entry's ``writes``; updated on re-run, with the input's scale and
units) and records the step. Override :meth:`StepWidget.calls` for
several steps or inputs that are not layer boxes, :meth:`StepWidget.read`
to prepare input data, :meth:`StepWidget.compute` for a special loop and
:meth:`StepWidget.write` for a special output.

Waiting for a run (tests, scripts)::

    widget.run()
    widget.wait()            # processes Qt events until the run has ended; False on timeout
    widget.finished.connect(lambda result: ...)   # result, or None when cancelled or failed
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, PushButton
from psygnal import Signal

from .._validation import SEMAnalysisError
from ._boxes import LengthBox, check_gray, layers_of, nice_value, show_scale_bar, wide  # noqa: F401  (re-exported)
from ._common import as_array, layer_pixel_size, notify_error, record_step, start_worker, write_layer
from ._threads import _CANCELLED, Cancelled, _Failure, cancel_check, in_thread, planes  # noqa: F401  (re-exported)

__all__ = [
    "SEMWidget",
    "StepWidget",
    "StepCall",
    "LengthBox",
    "Cancelled",
    "cancel_check",
    "in_thread",
    "planes",
    "layers_of",
    "check_gray",
    "nice_value",
    "show_scale_bar",
    "wide",
]


# --------------------------------------------------------------------------- base widget
class SEMWidget(Container):
    """Base of every dock widget: layer choice, units, status line and the worker runner.

    Public run state: :attr:`running`, :attr:`completed` (runs ended, in any
    way), the :attr:`finished` signal (emitted in the GUI thread at the end of
    every run with its result, or None when it was cancelled or failed) and
    :meth:`wait`.
    """

    finished = Signal(object)

    def __init__(self, napari_viewer):
        # scrollable: docked widgets share the window's height (several fit a 1200 px screen)
        super().__init__(scrollable=True)
        from ._layout import keep_scroll_bar, wrap_text

        keep_scroll_bar(self)  # sized with its scroll bar: nothing cut off at the right edge
        self.viewer = napari_viewer
        self._worker = None
        self._running = False
        self._completed = 0
        self._cancel_requested = False
        self._watched = None
        self._status = Label(value="")
        if hasattr(self._status.native, "setWordWrap"):
            wrap_text(self._status)  # long messages wrap instead of widening the dock (and being cut off)
        self._boxes: list = []
        self._inputs: dict[str, ComboBox] = {}
        self._lengths: list[LengthBox] = []
        self.viewer.layers.events.inserted.connect(self._reset)
        self.viewer.layers.events.removed.connect(self._reset)

    @property
    def native(self):
        """The Qt widget napari docks: a scroll area, so that docked widgets share the window's height.

        ``native.layout()`` is the layout of the widget inside it (where
        subclasses add their own Qt widgets, e.g. plots).
        """
        root = self._widget._mgui_get_root_native_widget()
        inner = self._widget._mgui_get_native_widget()
        if root is not inner and getattr(root, "layout", None) != inner.layout:
            root.layout = inner.layout  # a Python attribute on the wrapper: the inner layout
        return root

    # -- layer choice ------------------------------------------------------
    def layer_box(
        self, label: str, *kinds: str, optional: bool = False, arg: str | None = None, widget=ComboBox
    ) -> ComboBox:
        """A combo box of the viewer's layers of ``kinds`` (refreshed with the layer list).

        ``arg`` (default ``label``) is the step input it fills (see
        :meth:`StepWidget.calls`); ``optional`` adds a *None* choice.
        ``widget`` may be magicgui's ``Select`` for several layers.
        """
        if optional:
            box = widget(label=label, choices=lambda w=None: [None, *layers_of(self.viewer, *kinds)], value=None)
        else:
            box = widget(label=label, choices=lambda w=None: layers_of(self.viewer, *kinds))
        self._boxes.append(box)
        if widget is ComboBox:
            self._inputs[arg or label] = box
            box.changed.connect(self._sync_units)
        return box

    def _reset(self, _event=None):
        """Refresh the layer choices (called when layers are added or removed)."""
        for box in self._boxes:
            box.reset_choices()
        self._sync_units()
        show_scale_bar(self.viewer)

    # -- units ---------------------------------------------------------------
    def length_box(
        self, param: str, default_px: float, *, label: str | None = None, of: str | None = None, **kwargs
    ) -> LengthBox:
        """A :class:`LengthBox` for the parameter ``param`` of the step ``of`` (default: the widget's step).

        It is an area (px² / nm²) when the step's registry entry lists
        ``param`` in its ``areas``. ``kwargs``: ``minimum``, ``maximum``, ``step``
        (of the spin box).
        """
        area = param in self._areas(of)
        box = LengthBox(label or param.replace("_", " "), default_px, power=2 if area else 1, **kwargs)
        self._lengths.append(box)
        self._sync_units()  # in the unit of the layer chosen now
        return box

    def _areas(self, step: str | None = None) -> tuple:
        step = step or getattr(self, "step", None)
        if step is None:
            return ()
        from ..steps import get_step

        return get_step(step).target.areas

    def unit_layer(self):
        """The layer whose pixel size the lengths are given in (default: the first layer box's)."""
        for box in self._inputs.values():
            return box.value
        return None

    _unit_layer = unit_layer

    def pixel_size(self) -> float | None:
        """nm per pixel of :meth:`unit_layer` (None: lengths in px)."""
        return layer_pixel_size(self.unit_layer())

    _pixel_size = pixel_size

    def unit(self) -> str:
        """``"nm"`` or ``"px"``: the unit the lengths are given in (re-synced first)."""
        self._sync_units()
        return "px" if self.pixel_size() is None else "nm"

    _unit = unit

    def _watch(self, layer):
        """Follow ``layer``'s scale and units (and stop following the previous one)."""
        if layer is self._watched:
            return
        if self._watched is not None:
            for name in ("scale", "units"):
                emitter = getattr(self._watched.events, name, None)
                if emitter is not None:
                    emitter.disconnect(self._sync_units)
        self._watched = layer
        if layer is not None:
            for name in ("scale", "units"):
                emitter = getattr(layer.events, name, None)
                if emitter is not None:
                    emitter.connect(self._sync_units)

    def _sync_units(self, _event=None):
        if not self._lengths:
            return
        self._watch(self.unit_layer())
        ps = self.pixel_size()
        for length in self._lengths:
            length.sync(ps)

    # -- parameters ----------------------------------------------------------
    def params(self) -> dict:
        """The current settings as the step's keyword arguments (JSON-serialisable)."""
        return {}

    def run_controls(self, run_text: str = "Run", cancel: bool = True) -> list:
        """*Run* and *Cancel* buttons (connected) and the status line, to add to the widget."""
        self._run_btn = PushButton(text=run_text)
        self._run_btn.changed.connect(lambda *_: self.run())
        out = [self._run_btn]
        if cancel:
            self._cancel_btn = PushButton(text="Cancel")
            self._cancel_btn.changed.connect(self.cancel)
            out.append(self._cancel_btn)
        return [*out, self._status]

    def run(self):  # pragma: no cover - every widget with a Run button defines it
        raise NotImplementedError

    # -- the worker runner ----------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a run is under way."""
        return self._running

    @property
    def completed(self) -> int:
        """How many runs have ended (done, failed or cancelled)."""
        return self._completed

    def wait(self, timeout: float = 60.0) -> bool:
        """Process Qt events until the current run has ended; False on timeout."""
        from qtpy.QtWidgets import QApplication

        end = time.monotonic() + timeout
        while self._running:
            QApplication.processEvents()
            if time.monotonic() > end:
                return False
            time.sleep(0.005)
        QApplication.processEvents()
        return True

    def start(
        self,
        work: Callable,
        done: Callable[[Any], Any],
        *,
        desc: str,
        total: int = 0,
        on_progress: Callable | None = None,
    ):
        """Run ``work()`` in a napari thread worker; ``done(result)`` in the GUI thread.

        ``work`` is best a generator function: every ``yield`` advances the
        progress bar (``total`` steps, 0 = busy indicator), is passed to
        ``on_progress`` and is a point where :meth:`cancel` stops it. A
        cancelled run never writes its result, also when the computation
        ended before it saw the request. Exceptions (also from ``done``)
        become notifications, never a crash. Returns the worker.
        """
        self._running = True
        self._cancel_requested = False
        state = {"result": _CANCELLED}

        def wrapped():
            try:
                out = work()
                if inspect.isgenerator(out):
                    return (yield from out)
                yield
                return out
            except Cancelled:
                return _CANCELLED
            except Exception as exc:  # shown as a notification
                return _Failure(exc)

        def returned(result):
            state["result"] = result

        def finish():
            # ``finished`` comes last, after ``returned`` (which a cancelled worker never emits)
            result, value = state["result"], None
            try:
                if result is _CANCELLED or self._cancel_requested:
                    self.on_cancelled(desc)
                elif isinstance(result, _Failure):
                    self.on_failed(desc, result.error)
                else:
                    done(result)
                    value = result
            except Exception as exc:
                self.on_failed(desc, exc)
            finally:
                self._running = False
                self._completed += 1
                self.finished.emit(value)

        return start_worker(
            self, wrapped, on_returned=returned, on_yielded=on_progress, on_finished=finish, total=total, desc=desc
        )

    def cancel(self, _event=None):
        """Stop the running step; its result is not written."""
        if self._worker is not None and self._running:
            self._cancel_requested = True
            self._worker.quit()

    def on_cancelled(self, desc: str) -> None:
        """Called in the GUI thread when a run was cancelled."""
        self._status.value = f"{desc}: cancelled"

    def on_failed(self, desc: str, error: BaseException) -> None:
        """Called in the GUI thread when a run failed: status line and notification."""
        self._status.value = f"{desc}: failed"
        notify_error(error)

    # -- recording -------------------------------------------------------------
    def record(self, *calls: StepCall) -> None:
        """Record steps into the viewer's workflow (checked against their registry entries)."""
        for call in calls:
            entry = call.entry.target
            unknown = set(call.inputs) - set(entry.takes)
            if unknown:
                raise SEMAnalysisError(f"step {call.step!r} takes no input {sorted(unknown)} (it takes {entry.takes})")
            inputs = {arg: _name_of(src) for arg, src in call.inputs.items() if src is not None}
            record_step(self.viewer, call.step, params=call.params, inputs=inputs, output=call.output)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _name_of(src) -> str:
    return src if isinstance(src, str) else src.name


# --------------------------------------------------------------------------- steps
@dataclass
class StepCall:
    """One step a widget runs: registry name, keyword arguments, inputs and output name.

    ``inputs`` maps the step's input arguments to napari layers, or to the
    ``output`` name of an earlier call of the same run.
    """

    step: str
    params: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    output: str = ""
    pixel_size: float | None = None  # nm per pixel the run used (set by StepWidget.prepare)

    def __post_init__(self):
        self.output = self.output or self.step

    @property
    def entry(self):
        from ..steps import get_step

        return get_step(self.step)


_LAYER_KIND = {"image": "image", "labels": "labels"}


class StepWidget(SEMWidget):
    """A widget that runs a step of the registry (see the module docstring).

    Class attributes: ``step`` (registry name) and ``output`` (output layer
    name, default the step name).
    """

    step: str | None = None
    output: str | None = None

    # -- what to run (GUI thread) ---------------------------------------------
    def calls(self) -> list[StepCall]:
        """The steps to run: by default the widget's ``step`` with :meth:`params` and the layer boxes."""
        inputs = {arg: box.value for arg, box in self._inputs.items() if box.value is not None}
        first = next(iter(self._inputs), None)
        if first is not None and first not in inputs:
            raise SEMAnalysisError(f"choose {_article(first)} {first} layer first")
        return [StepCall(self.step, self.params(), inputs, self.output or self.step)]

    def read(self, calls: list[StepCall]) -> dict[str, np.ndarray]:
        """The input data of the calls, keyed by layer name (GUI thread; a copy is not needed).

        Image layers must be grayscale; Labels are read as they are.
        """
        import napari

        data: dict[str, np.ndarray] = {}
        for call in calls:
            for src in call.inputs.values():
                if src is None or isinstance(src, str) or src.name in data:
                    continue
                if isinstance(src, napari.layers.Image):
                    data[src.name] = check_gray(src)
                else:
                    data[src.name] = as_array(src.data)
        return data

    # -- computing (worker thread) ------------------------------------------------
    def plane_function(self, calls: list[StepCall], pixel_size: float | None) -> Callable[[dict], Any]:
        """``f(arrays)`` running the calls in order on one plane (arrays keyed by layer/output name)."""
        entries = [call.entry for call in calls]

        def run(arrays: dict):
            ctx = dict(arrays)
            for call, entry in zip(calls, entries):
                inputs = {arg: ctx[_name_of(src)] for arg, src in call.inputs.items() if src is not None}
                ctx[call.output] = entry(inputs, call.params, pixel_size=pixel_size)
            return ctx[calls[-1].output]

        return run

    def compute(self, calls: list[StepCall], data: dict[str, np.ndarray], pixel_size: float | None) -> Iterator:
        """Generator: the calls on the data, plane by plane for stacks (a yield per plane)."""
        func = self.plane_function(calls, pixel_size)
        first = next((_name_of(s) for s in calls[0].inputs.values() if s is not None), None)
        main = data.get(first)

        def one(arrays):
            # in a thread of its own: Cancel acts at once (within 0.1 s), not after the plane
            return (yield from in_thread(lambda progress, cancel: func(arrays), lambda: self._cancel_requested))

        if main is not None and main.ndim == 3 and main.shape[-1] not in (3, 4):
            out = []
            for i in range(main.shape[0]):
                out.append(
                    (
                        yield from one(
                            {k: (v[i] if v.ndim == 3 and v.shape[0] == main.shape[0] else v) for k, v in data.items()}
                        )
                    )
                )
                yield
            return np.stack(out)
        result = yield from one(data)
        yield
        return result

    def progress_total(self, data: dict) -> int:
        """Steps of the progress bar (default: planes of the first input)."""
        main = next(iter(data.values()), None)
        return main.shape[0] if main is not None and main.ndim == 3 and main.shape[-1] not in (3, 4) else 1

    # -- writing (GUI thread) -------------------------------------------------------
    def write(self, result, calls: list[StepCall]):
        """Write or update the output layer (kind from the last step's ``writes``); returns it."""
        call = calls[-1]
        kind = _LAYER_KIND.get(call.entry.target.writes)
        if kind is None:
            raise SEMAnalysisError(f"step {call.step!r} writes {call.entry.target.writes}: override write()")
        like = next((s for s in calls[0].inputs.values() if s is not None and not isinstance(s, str)), None)
        layer = write_layer(
            self.viewer,
            result,
            name=call.output,
            kind=kind,
            like=like,
            metadata={"step": call.step, "params": call.params},
        )
        self._status.value = f"{call.output}: done"
        return layer

    # -- the run -----------------------------------------------------------------
    def prepare(self):
        """``(calls, data, pixel_size)`` read in the GUI thread (SEMAnalysisError on bad input)."""
        calls = self.calls()
        data = self.read(calls)
        ps = self.pixel_size()
        for call in calls:
            call.pixel_size = ps
        return calls, data, ps

    def run(self, _event=None):
        """Run the calls in a thread worker, write the output and record the steps; the worker or None."""
        try:
            calls, data, ps = self.prepare()
        except Exception as exc:
            notify_error(exc)
            return None
        desc = calls[-1].step if len(calls) == 1 else self.step or calls[-1].step

        def done(result):
            self.write(result, calls)
            self.record(*calls)
            self._previews.discard(calls[-1].output)  # a run's output is kept

        self._status.value = f"{desc}: running..."
        return self.start(lambda: self.compute(calls, data, ps), done, desc=desc, total=self.progress_total(data))

    def preview(self, calls: list[StepCall] | None = None):
        """Run the calls synchronously on a 2-D image, write and record them (live previews).

        A layer a preview creates is a *preview layer* until a *Run* writes
        it: :meth:`drop_previews` removes those (preview switched off, or the
        output changed).
        """
        from ._common import find_layer

        calls = calls if calls is not None else self.calls()
        data = self.read(calls)
        result = self.plane_function(calls, self.pixel_size())(data)
        name = calls[-1].output
        kind = _LAYER_KIND.get(calls[-1].entry.target.writes, "labels")
        if find_layer(self.viewer, name, kind) is None:
            self._previews.add(name)
        self.write(result, calls)
        self.record(*calls)
        return result

    @property
    def _previews(self) -> set:
        if not hasattr(self, "_preview_names"):
            self._preview_names = set()
        return self._preview_names

    def drop_previews(self, keep: str | None = None) -> None:
        """Remove the layers that only a preview made (all but ``keep``)."""
        for name in list(self._previews):
            if name == keep:
                continue
            self._previews.discard(name)
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
