"""Small layout helpers for dock widgets: rows of widgets and wrapped text that never widens a dock.

A docked widget scrolls vertically only (magicgui's scrollable container has no
horizontal scroll bar), so whatever is wider than the dock is cut off at its
edge. These helpers keep rows and long texts within the dock's width.
"""

from __future__ import annotations

from magicgui.widgets import Container


def _wrapper(widget):
    """magicgui's label + widget pair around ``widget`` in a labelled container (None if there is none)."""
    ref = getattr(widget, "_labeled_widget_ref", None)
    return ref() if ref is not None else None


def span(widget) -> None:
    """Let ``widget`` (already in its container) use the whole width: hide its empty label column."""
    wrapper = _wrapper(widget)
    if wrapper is not None and not str(getattr(widget, "label", "") or "").strip():
        wrapper._label_widget.visible = False


def add_row(container, *widgets) -> Container:
    """Append ``widgets`` side by side in one row of ``container``, spanning its width (no label column)."""
    box = Container(widgets=list(widgets), layout="horizontal", labels=False, label="")
    box.margins = (0, 0, 0, 0)
    container.append(box)
    span(box)
    return box


def wrap_text(label) -> None:
    """Wrap a text ``Label`` at the dock's width instead of widening the dock (and being cut off).

    A word-wrapped ``QLabel`` still asks for a minimum width of its own (about
    the width that makes its text a pleasant block), which in a dock without a
    horizontal scroll bar pushes the rest of the line past the edge; with an
    *ignored* horizontal size policy it takes the width it is given and wraps
    into it. Call it once the label is in its container: its empty label column
    is hidden too, so the text spans the dock.
    """
    from qtpy.QtWidgets import QSizePolicy

    native = label.native
    native.setWordWrap(True)
    native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    native.setMinimumWidth(1)
    span(label)


def keep_scroll_bar(container) -> None:
    """Keep room for the vertical scroll bar of a scrollable dock widget.

    napari sizes a dock to its contents' width; once the contents are taller
    than the dock, a scroll bar that appears only then takes its width from
    the contents, and their right edge (combo boxes, *Choose directory*
    buttons) is cut off. With the bar always shown the dock is sized with it.
    """
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QScrollArea

    root = container._widget._mgui_get_root_native_widget()
    if isinstance(root, QScrollArea):
        root.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
