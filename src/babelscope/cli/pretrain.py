"""`babelscope pretrain` (pre-train the embedded model series). Not built yet: issue #3 builds it."""

from __future__ import annotations

import typer

from babelscope.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("pretrain", help="Pre-train the embedded model series. [not built yet]",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def pretrain_cmd() -> None:
        raise NotBuiltError("`babelscope pretrain` is not built yet (issue #3: pre-train the embedded model series)")

