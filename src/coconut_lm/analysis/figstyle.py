"""The figures' shared style: font sizes, resolution, a constrained-layout Figure, and the PNG writer
(used by `analysis.plots` and `analysis.probe_plots`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

FONT = {"title": 14, "label": 12, "tick": 11, "legend": 10}
DPI = 130


def _figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kw: Any):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    for ax in axes.flat:
        ax.tick_params(labelsize=FONT["tick"])
    return fig, axes


def _save(fig, out: str | os.PathLike) -> Path:
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=DPI)
    return p
