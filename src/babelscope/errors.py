"""User-facing errors.

Anything the user can fix (bad input, bad configuration, missing files) raises
:class:`BabelscopeError` with a one-line message that names the problem and the fix.
The CLI prints it as ``error: <message>`` and exits with status 2, without a traceback.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class BabelscopeError(Exception):
    """An error caused by the user's input; its message is shown as one line."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        # Keep it to one line: the CLI shows nothing else.
        super().__init__(" ".join(str(message).split()))


class Interrupted(BaseException):
    """Ctrl-C (SIGINT), raised by the CLI's own handler instead of KeyboardInterrupt.

    Typer turns a KeyboardInterrupt into a silent exit 130 before our handler could say
    anything; this one passes through it. ``kept`` and ``resume`` are filled in by whoever
    knows what work is complete (the pipeline), for the one-line message.
    """

    kept: str = "completed work is kept"
    resume: str = "run the same command again to resume"
