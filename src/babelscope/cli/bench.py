"""`babelscope bench`: run the benchmarks and write benchmarks/results.json."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("bench")
    def bench_cmd(
        names: list[str] = typer.Argument(None, help="Benchmarks to run (default: all)."),
        out: Path = typer.Option(
            Path("benchmarks/results.json"), help="Where to merge the figures."
        ),
        quick: bool = typer.Option(False, help="Smaller sizes, for a smoke test."),
    ) -> None:
        """Measure speed and memory side by side; print ratios; save every figure."""
        from babelscope.bench import run_benchmarks

        run_benchmarks(names or None, out, quick=quick)
