"""Where figures are drawn: one module per analysis (``probe``, ``alignment``,
``steering``, ``training``). Each writes PNG (for the report) and SVG (for papers)
into a run's ``figures/`` through :func:`save_figure`."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend: no display is needed or used."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``fig`` as ``<out_dir>/<name>.png`` and ``.svg``, each atomically; return the paths."""
    from babelscope.io import atomic_path

    paths = []
    for ext in ("png", "svg"):
        path = Path(out_dir) / f"{name}.{ext}"
        with atomic_path(path) as tmp:
            # format= explicitly: the temporary path's name is not trusted for the type.
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        paths.append(path)
    return paths
