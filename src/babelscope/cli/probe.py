"""`babelscope probe` (layer-wise language-identification probes). Not built yet: issue #5 builds it."""

from __future__ import annotations

import typer

from babelscope.errors import NotBuiltError


def register(app: typer.Typer) -> None:
    @app.command("probe", help="Layer-wise language-identification probes. [not built yet]",
                 context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
    def probe_cmd() -> None:
        raise NotBuiltError("`babelscope probe` is not built yet (issue #5: layer-wise language-identification probes)")

