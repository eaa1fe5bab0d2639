"""`babelscope bench` (benchmarks). Not built yet: issue #4 builds it."""

from __future__ import annotations

import typer

from babelscope.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("bench", help="Benchmarks. [not built yet]",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def bench_cmd() -> None:
        raise NotBuiltError("`babelscope bench` is not built yet (issue #4: benchmarks)")

