"""Work off the GUI thread: cancellation, plane-by-plane generators and a thread that reports progress.

Used by the worker runner of :class:`~napari_sem_analysis.widgets._base.SEMWidget` and by widgets whose
work reports its own progress (:func:`in_thread`). Re-exported by ``widgets/_base.py``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

__all__ = ["Cancelled", "cancel_check", "in_thread", "planes"]


class Cancelled(Exception):
    """Raised inside a worker's computation when the user pressed Cancel."""


class _Failure:
    """A worker's exception, carried to the GUI thread (shown as a notification)."""

    def __init__(self, error: BaseException):
        self.error = error


_CANCELLED = object()


def cancel_check(owner) -> Callable:
    """A ``callback`` for long computations: raises :class:`Cancelled` once ``owner.cancel()`` was called."""

    def check(*_args):
        if getattr(owner, "_cancel_requested", False):
            raise Cancelled()

    return check


def planes(data: np.ndarray, func: Callable) -> Iterator:
    """Generator: ``func`` on a 2-D image, or on each plane of a 3-D stack (yields per plane)."""
    if data.ndim == 3 and data.shape[-1] not in (3, 4):
        out = []
        for plane in data:
            out.append(func(plane))
            yield
        return np.stack(out)
    result = func(data)
    yield
    return result


def in_thread(fn: Callable, cancelled: Callable[[], bool] | None = None, *, name: str = "sem-widget-work") -> Iterator:
    """Generator: run ``fn(progress=..., cancel=...)`` in a thread, yielding its progress.

    ``fn`` reports progress with ``progress(done, total)`` (yielded as a
    ``(done, total)`` tuple) and stops early when ``cancel()`` returns True.
    The generator wakes every 0.1 s, so that a worker running it can be
    cancelled at once even while ``fn`` is between its own checks; once
    ``cancelled()`` is True ``fn``'s ``cancel`` returns True too. Returns
    ``fn``'s result (re-raises its exception). ``name``: the thread's name.
    """
    messages: queue.Queue = queue.Queue()
    stop = threading.Event()
    result: dict = {}

    def is_cancelled():
        return stop.is_set() or (cancelled is not None and cancelled())

    def target():
        try:
            result["value"] = fn(progress=lambda d, t: messages.put((d, t)), cancel=is_cancelled)
        except BaseException as exc:  # re-raised in the worker thread below
            result["error"] = exc
        finally:
            messages.put(None)

    thread = threading.Thread(target=target, daemon=True, name=name)
    thread.start()
    try:
        while True:
            try:
                item = messages.get(timeout=0.1)
            except queue.Empty:
                if is_cancelled():
                    stop.set()
                    yield None  # lets the napari worker see its quit request
                continue
            if item is None:
                break
            yield item
    finally:
        stop.set()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
