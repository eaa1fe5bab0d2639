"""Run directories: who owns them, and who is using them right now.

A run directory belongs to babelscope only if babelscope made it: it holds the marker
file :data:`MARKER`. A directory without it is the user's, and babelscope refuses to use
it unless it is empty (then it is claimed), so nothing the user put there is deleted or
overwritten, ``--force`` or not. ``.``, ``..``, the current directory, a directory above
it, the home directory and ``/`` are never run directories.

While a run works in a directory it holds an exclusive ``flock`` on :data:`LOCK`; the
file names the holder (pid, host, start time, command). A second run is refused with
that name, or waits for the lock with ``--wait``. The operating system drops the lock
when its process dies, even by SIGKILL, so a killed run never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from babelscope import __version__
from babelscope.errors import BabelscopeError

MARKER = ".babelscope-run"
LOCK = ".lock"
# A directory written by babelscope before the marker existed: its stage records say so.
_LEGACY_SIGNS = (".stages",)
# What `babelscope data build` writes, and nothing else: such a directory may be rebuilt.
DATA_FILES = frozenset({"corpus.parquet", "concepts.parquet", "manifest.json"})


def check_run_dir_path(path: Path) -> Path:
    """Refuse paths that must never be a run directory; return the absolute path."""
    raw = str(path)
    if Path(raw).name in ("", ".", "..") or raw.rstrip("/").endswith(("/.", "/..")):
        raise BabelscopeError(
            f"'{raw}' cannot be a run directory: give a new directory name, e.g. --out runs/mystudy"
        )
    try:
        resolved = Path(path).expanduser().resolve()
        cwd = Path.cwd().resolve()
    except OSError as e:
        raise BabelscopeError(f"cannot resolve run directory '{raw}': {e.strerror}") from None
    if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve():
        raise BabelscopeError(
            f"'{raw}' is the current directory or one above it: a run directory must be a "
            "directory of its own, e.g. --out runs/mystudy"
        )
    if resolved.exists() and not resolved.is_dir():
        raise BabelscopeError(
            f"run directory '{raw}' is a file: give a directory path with --out or name"
        )
    return resolved


def claim_run_dir(path: Path) -> None:
    """Make ``path`` babelscope's (create it, or adopt it when empty) or refuse it.

    An existing directory is used only when it holds the marker, is empty, or holds a
    run of an older babelscope (stage records but no marker).
    """
    path = Path(path)
    check_run_dir_path(path)
    marker = path / MARKER
    try:
        if marker.is_file():
            return
        if path.is_dir():
            entries = [p.name for p in path.iterdir()]
            if entries and not any(s in entries for s in _LEGACY_SIGNS):
                shown = ", ".join(sorted(entries)[:3]) + (", ..." if len(entries) > 3 else "")
                raise BabelscopeError(
                    f"{path} exists and was not made by babelscope (it holds {shown}): "
                    "choose a new or empty directory with --out, babelscope does not write into it"
                )
        path.mkdir(parents=True, exist_ok=True)
        marker.write_text(
            json.dumps({"babelscope": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
            + "\n"
        )
    except OSError as e:
        raise BabelscopeError(
            f"cannot use {path} as a run directory: {e.strerror or e}; choose a writable --out"
        ) from None


def is_babelscope_data_dir(path: Path) -> bool:
    """True when ``path`` is missing, empty, or holds only what `data build` writes:
    rebuilding it then replaces nothing of the user's."""
    path = Path(path)
    if not path.exists():
        return True
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    return not names or (names <= DATA_FILES and "manifest.json" in names)


def _holder(lock_path: Path) -> str:
    try:
        h = json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        return "another babelscope process"
    if not isinstance(h, dict) or "pid" not in h:
        return "another babelscope process"
    return f"pid {h.get('pid')} on {h.get('host')} since {h.get('started')} ({h.get('command')})"


@contextlib.contextmanager
def run_lock(path: Path, *, wait: bool = False, poll_s: float = 0.5) -> Iterator[None]:
    """Hold the run directory's lock for the body; refuse (or ``wait``) if it is held."""
    import fcntl

    lock_path = Path(path) / LOCK
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise BabelscopeError(
            f"cannot lock {path}: {e.strerror or e}; choose a writable --out"
        ) from None
    try:
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(lock_path)
                if not wait:
                    raise BabelscopeError(
                        f"{path} is in use by {holder}: wait for it to finish, or pass --wait"
                    ) from None
                if not told:
                    from babelscope.progress import info

                    info(f"{path} is in use by {holder}: waiting (--wait)")
                    told = True
                time.sleep(poll_s)
        me: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(["babelscope", *sys.argv[1:]])[:200],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        # Closing the descriptor releases the lock; the file stays (removing it would race
        # with a waiter that has it open).
        os.close(fd)
