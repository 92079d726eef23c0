"""Matplotlib without a display: one place that picks the headless backend and turns a figure into
PNG and SVG bytes (the two formats every report of archgraph writes and embeds)."""

from __future__ import annotations

import io
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (servers, CI and SSH sessions have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_bytes(fig: Any, dpi: int = 110, tight: bool = False) -> tuple[bytes, bytes]:
    """(PNG, SVG) of ``fig``; the figure is closed afterwards."""
    plt = pyplot()
    out = []
    for fmt in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=dpi, bbox_inches="tight" if tight else None)
        out.append(buf.getvalue())
    plt.close(fig)
    return out[0], out[1]
