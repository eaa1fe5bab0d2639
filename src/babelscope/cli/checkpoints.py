"""`babelscope checkpoints` subcommands. Not built yet: issue #4 builds them."""

from __future__ import annotations

import typer

from babelscope.errors import NotBuiltError

app = typer.Typer(no_args_is_help=True)


@app.command("build" if "checkpoints" == "data" else "inspect",
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def _not_built() -> None:
    """Not built yet."""
    raise NotBuiltError("`babelscope checkpoints inspect` is not built yet (issue #4)")
