"""Rich progress bars and console output shared by every stage.

Stages call :func:`track` for long loops; it shows counts and time left on a terminal
and stays quiet (one line per task) when output is not a terminal, e.g. in CI logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True, highlight=False)


def quiet() -> bool:
    return os.environ.get("BABELSCOPE_QUIET", "") not in ("", "0")


def make_progress(transient: bool = False) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=quiet() or not console.is_terminal,
    )


def track(
    items: Iterable[T], description: str, total: int | None = None, transient: bool = False
) -> Iterator[T]:
    """Iterate with a progress bar (counts, elapsed, time left).

    ``transient`` is for inner loops (one cache entry among hundreds): the bar disappears
    when done and, off a terminal, no closing line is logged.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress(transient) as prog:
        task = prog.add_task(description, total=total)
        for item in items:
            yield item
            prog.advance(task)
    if not console.is_terminal and not quiet() and not transient:
        console.print(f"{description}: done ({total if total is not None else '?'} items)")


def info(msg: str) -> None:
    """A status line on stderr (suppressed by BABELSCOPE_QUIET=1)."""
    if not quiet():
        console.print(msg)


def warn(msg: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {msg}")
