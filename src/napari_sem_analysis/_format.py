"""Small text formatting helpers shared by the command line and the widgets."""

from __future__ import annotations

import math


def format_duration(seconds: float | None, unknown: str = "--:--") -> str:
    """``"mm:ss"`` (``"h:mm:ss"`` from an hour on) of a duration; ``unknown`` for None/NaN/inf.

    Examples
    --------
    >>> format_duration(90), format_duration(3725), format_duration(None)
    ('01:30', '1:02:05', '--:--')
    """
    if seconds is None or not math.isfinite(seconds):
        return unknown
    seconds = int(round(max(seconds, 0)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
