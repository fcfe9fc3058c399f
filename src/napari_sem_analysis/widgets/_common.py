"""Helpers shared by all dock widgets.

Conventions every widget follows:

* the input layer is chosen by type (magicgui ``layer`` combo boxes);
* the output goes to a layer named after the step, **updated** on re-run
  (:func:`write_layer`), carrying the input's ``scale``, ``translate`` and
  ``units``; the input layer's data is never modified;
* lengths are shown in nm when the input layer has a physical scale
  (:func:`layer_pixel_size`);
* errors are shown as napari notifications (:func:`notify_error`), never as
  tracebacks;
* work that takes more than a moment runs in a ``thread_worker`` started with
  :func:`start_worker`, which reports progress and can be cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

_NM_PER_UNIT = {
    "nanometer": 1.0,
    "micrometer": 1e3,
    "millimeter": 1e6,
    "meter": 1e9,
    "angstrom": 0.1,
    "picometer": 1e-3,
}


def layer_pixel_size(layer) -> float | None:
    """Pixel size of a layer in nm (from its last-axis ``scale`` and ``units``).

    Returns None when the layer has no physical unit (napari's default
    ``pixel`` unit, or a unit that is not a length).
    """
    if layer is None:
        return None
    scale = float(layer.scale[-1])
    units = getattr(layer, "units", None)
    if not units:
        return None
    unit = str(units[-1])
    factor = _NM_PER_UNIT.get(unit)
    if factor is None:
        return None
    return scale * factor


def spatial_kwargs(layer) -> dict[str, Any]:
    """``scale``/``translate``/``units`` of ``layer`` to give a derived layer."""
    if layer is None:
        return {}
    kwargs: dict[str, Any] = {
        "scale": tuple(layer.scale),
        "translate": tuple(layer.translate),
    }
    units = getattr(layer, "units", None)
    if units:
        kwargs["units"] = tuple(str(u) for u in units)
    return kwargs


def find_layer(viewer, name: str, layer_type: str | None = None):
    """Return the layer called ``name`` (of the given type name), or None."""
    for layer in viewer.layers:
        if layer.name == name and (layer_type is None or type(layer).__name__.lower() == layer_type):
            return layer
    return None


def write_layer(
    viewer,
    data,
    *,
    name: str,
    kind: str = "image",
    like=None,
    metadata: dict | None = None,
    features=None,
    **kwargs,
):
    """Add an output layer, or update the layer of that name and kind if it exists.

    Parameters
    ----------
    viewer : napari.Viewer
    data : array-like (or layer data for points/shapes)
    name : str
        Output layer name (the step's name). Re-running a step replaces the
        data of this layer instead of adding a copy.
    kind : {"image", "labels", "points", "shapes"}
    like : napari layer, optional
        The input layer: its scale, translate and units are copied.
    metadata, features : optional
        Stored on the layer (``features`` for labels/points/shapes).
    **kwargs
        Other layer keyword arguments (colormap, opacity, ...), used when the
        layer is created.
    """
    spatial = spatial_kwargs(like)
    layer = find_layer(viewer, name, kind)
    if layer is None:
        add = getattr(viewer, f"add_{kind}")
        extra = dict(kwargs)
        if features is not None:
            extra["features"] = features
        layer = add(data, name=name, metadata=dict(metadata or {}), **spatial, **extra)
        return layer
    if kind == "shapes":
        # shapes need their shape types refreshed together with the data
        layer.data = []
        layer.add(data, shape_type=kwargs.get("shape_type", "rectangle"))
    else:
        layer.data = data
    for key in ("scale", "translate"):
        if key in spatial:
            setattr(layer, key, spatial[key])
    if "units" in spatial:
        layer.units = spatial["units"]
    if metadata is not None:
        layer.metadata.update(metadata)
    if features is not None:
        layer.features = features
    for key in ("colormap", "contrast_limits"):
        if key in kwargs:
            setattr(layer, key, kwargs[key])
    layer.refresh()
    return layer


def notify_error(error: BaseException | str) -> None:
    """Show an error to the user as a napari notification (no traceback)."""
    from napari.utils.notifications import show_error

    show_error(str(error) if isinstance(error, BaseException) else error)


def notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def start_worker(
    owner,
    function: Callable,
    *args,
    on_returned: Callable | None = None,
    on_yielded: Callable | None = None,
    on_finished: Callable | None = None,
    total: int = 0,
    desc: str = "",
    **kwargs,
):
    """Run ``function(*args, **kwargs)`` in a napari thread worker.

    ``function`` may be a generator: every ``yield`` advances the progress bar
    shown in napari's activity dock (``total`` steps; 0 = busy indicator) and
    is a point where the user can cancel (``owner.cancel()`` quits the
    worker). Errors become notifications. ``on_finished`` is called at the
    end of every run, also a cancelled one. The worker is stored in
    ``owner._worker`` so that tests can wait for ``worker.finished``.
    """
    from napari.qt.threading import create_worker

    progress = {"total": total, "desc": desc or getattr(function, "__name__", "working")}
    worker = create_worker(function, *args, _progress=progress, **kwargs)
    if on_returned is not None:
        worker.returned.connect(on_returned)
    if on_yielded is not None and hasattr(worker, "yielded"):
        worker.yielded.connect(on_yielded)
    worker.errored.connect(notify_error)
    if on_finished is not None:
        # last signal of every run (returned, cancelled or failed); connected
        # before start, since a quick run can end before this function returns
        worker.finished.connect(on_finished)
    owner._worker = worker
    worker.start()
    return worker


def as_array(layer_data) -> np.ndarray:
    """Materialise layer data (numpy, dask, zarr...) as a numpy array (no copy if possible)."""
    return np.asarray(layer_data)


# --- workflow recording ------------------------------------------------------
# Every widget step records itself here; the workflow widget turns the list into
# a recipe (napari_sem_analysis.workflows). A step is a dict:
#   {"function": <public API function name, e.g. "clahe">,
#    "params": {<JSON-serialisable keyword arguments>},
#    "inputs": {<argument name>: <input layer name>},
#    "output": <output layer name>}
import weakref  # noqa: E402

_RECORDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def record_step(viewer, function: str, *, params: dict, inputs: dict[str, str], output: str) -> None:
    """Append a step to ``viewer``'s current workflow.

    A re-run writing the same output layer replaces the earlier record (also
    when another function wrote that layer before, e.g. *Split* with and
    without seeds), so tuning a slider ten times records one step and the
    recipe makes the layer the way the viewer shows it now.
    """
    steps = _RECORDS.setdefault(viewer, [])
    step = {
        "function": function,
        "params": dict(params),
        "inputs": dict(inputs),
        "output": output,
    }
    for i, old in enumerate(steps):
        if old["output"] == output:
            steps[i] = step
            break
    else:
        steps.append(step)


def recorded_steps(viewer) -> list[dict]:
    """The steps recorded for ``viewer`` so far (a copy)."""
    return [dict(s) for s in _RECORDS.get(viewer, [])]


def clear_recorded_steps(viewer) -> None:
    _RECORDS.pop(viewer, None)
