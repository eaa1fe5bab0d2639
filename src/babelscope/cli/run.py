"""`babelscope run` (the whole study end to end). Not built yet: issue #8 builds it."""

from __future__ import annotations

import typer

from babelscope.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("run", help="The whole study end to end. [not built yet]",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def run_cmd() -> None:
        raise NotBuiltError("`babelscope run` is not built yet (issue #8: the whole study end to end)")

    @app.command("report", help="The HTML report. [not built yet]",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def report_cmd() -> None:
        raise NotBuiltError("`babelscope report` is not built yet (issue #8: the HTML report)")

