"""The ``babelscope`` command line. Each subcommand lives in its own module here and
calls into the library; user errors become one line and a non-zero exit."""

from __future__ import annotations

import os
import sys

import typer

from babelscope.errors import BabelscopeError

app = typer.Typer(
    name="babelscope",
    help="From language-specific to shared neurons: a multilingual LM's checkpoints, probed.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Imported here so that `babelscope --help` stays fast: heavy imports live in the
    # command bodies, not at module level.
    from babelscope.cli import (
        bench,
        checkpoints,
        data,
        experts,
        pretrain,
        probe,
        run,
        steer,
    )

    app.add_typer(
        data.app, name="data", help="Build and inspect the multilingual corpus and concept labels."
    )
    pretrain.register(app)
    app.add_typer(
        checkpoints.app, name="checkpoints", help="Resolve and inspect a checkpoint series."
    )
    probe.register(app)
    experts.register(app)
    steer.register(app)
    run.register(app)
    bench.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a BabelscopeError prints one line and exits non-zero."""
    # babelscope draws its own progress bars; transformers' per-load bars and advisory
    # warnings (e.g. sequence longer than the model's maximum, which we truncate and
    # count) would bury them. Set before transformers is imported by any command.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app(args=argv)  # standalone: click reports its own usage errors and exits
    except BabelscopeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print(
            "interrupted: completed work is kept; run the same command again to resume",
            file=sys.stderr,
        )
        sys.exit(130)
