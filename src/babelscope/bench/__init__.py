"""Benchmarks behind ``babelscope bench`` / ``make bench``.

Each module in this package (``extraction``, ``average_precision``, ``steering``…)
defines ``run(quick: bool) -> dict[str, float]``: it measures side by side in one run
and returns named figures (ratios, throughputs, memory). The runner prints them and
merges them into ``benchmarks/results.json`` so runs can be compared.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import time
from pathlib import Path

from babelscope.io import environment_info, write_json_atomic
from babelscope.progress import console


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def run_benchmarks(names: list[str] | None, out: Path, quick: bool = False) -> dict[str, float]:
    """Run the named benchmarks (all by default), print and save their figures."""
    from babelscope.errors import BabelscopeError

    names = names or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        raise BabelscopeError(
            f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(available())}"
        )
    figures: dict[str, float] = {}
    for name in names:
        mod = importlib.import_module(f"babelscope.bench.{name}")
        console.print(f"[bold]== {name}[/bold]")
        t0 = time.perf_counter()
        res = mod.run(quick=quick)
        for k, v in res.items():
            key = f"{name}.{k}"
            figures[key] = float(v)
            console.print(f"  {key:55s} {v:14.4g}")
        console.print(f"  ({time.perf_counter() - t0:.1f} s)")
    previous = json.loads(out.read_text()) if out.exists() else {}
    merged = {**previous.get("figures", {}), **figures}
    write_json_atomic(out, {"figures": merged, "environment": environment_info(), "quick": quick})
    console.print(f"wrote {out}")
    return figures
