"""`babelscope steer` (steer generation with concept experts). Not built yet: issue #7 builds it."""

from __future__ import annotations

import typer

from babelscope.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("steer", help="Steer generation with concept experts. [not built yet]",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def steer_cmd() -> None:
        raise NotBuiltError("`babelscope steer` is not built yet (issue #7: steer generation with concept experts)")

