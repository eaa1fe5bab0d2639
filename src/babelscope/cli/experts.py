"""`babelscope experts` (concept expert neurons (AP of every unit)). Not built yet: issue #6 builds it."""

from __future__ import annotations

import typer

from babelscope.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("experts", help="Concept expert neurons (AP of every unit). [not built yet]",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def experts_cmd() -> None:
        raise NotBuiltError("`babelscope experts` is not built yet (issue #6: concept expert neurons (AP of every unit))")

    @app.command("align", help="Cross-lingual alignment of experts. [not built yet]",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def align_cmd() -> None:
        raise NotBuiltError("`babelscope align` is not built yet (issue #6: cross-lingual alignment of experts)")

