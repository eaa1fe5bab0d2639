"""The ``babelscope`` command line. Each subcommand lives in its own module here and
calls into the library; user errors become one line and a non-zero exit."""

from __future__ import annotations

import errno
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
        plan,
        pretrain,
        probe,
        run,
        similarity,
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
    similarity.register(app)
    run.register(app)
    plan.register(app)
    bench.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; every error the user can cause prints one line, exit 2."""
    import signal

    from babelscope.errors import Interrupted

    # babelscope draws its own progress bars; transformers' per-load bars and advisory
    # warnings (e.g. sequence longer than the model's maximum, which we truncate and
    # count) would bury them. Set before transformers is imported by any command.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    def _interrupt(signum: int, frame: object) -> None:
        # Not KeyboardInterrupt: Typer would turn that into a silent exit 130.
        raise Interrupted()

    signal.signal(signal.SIGINT, _interrupt)
    try:
        # Not standalone: usage errors come back here and are shown as one line too.
        rc = app(args=argv, standalone_mode=False)
    except BabelscopeError as e:
        _fail(str(e), e.exit_code)
    except Interrupted as e:
        print(f"interrupted: {e.kept}; {e.resume}", file=sys.stderr)
        sys.exit(130)
    except _click_exception() as e:
        _fail(" ".join(e.format_message().split()), getattr(e, "exit_code", 2))
    except MemoryError:
        _fail("out of memory: use a smaller batch_size, fewer sentences or a smaller model", 2)
    except OSError as e:
        # A file the user named is unreadable, a disk is full, a directory read-only: the
        # environment, not a bug. (EPIPE: the reader of our output went away.)
        if e.errno == errno.EPIPE:
            sys.exit(1)
        where = f": {e.filename}" if e.filename else ""
        _fail(f"{e.strerror or e}{where}: check the path, its permissions and free space", 2)
    sys.exit(rc if isinstance(rc, int) else 0)


def _click_exception() -> type[Exception]:
    """The ClickException class Typer uses (its own vendored copy in recent releases)."""
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover - older Typer on upstream click
        from click.exceptions import ClickException
    return ClickException


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)
