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
DATA_FILES = frozenset(
    {"corpus.parquet", "concepts.parquet", "label_precision.parquet", "manifest.json"}
)


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


@contextlib.contextmanager
def locked_out(path: Path) -> Iterator[None]:
    """The lock of a standalone command's ``--out`` (probe, experts, align, similarity,
    steer, pretrain): two commands never write one directory at once, and a running
    ``babelscope run`` there is not disturbed."""
    path = check_run_dir_path(Path(path))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BabelscopeError(
            f"cannot create {path}: {e.strerror or e}; choose a writable --out"
        ) from None
    with run_lock(path):
        yield


# --- what a run directory holds: its configuration, stage outputs, forced redo ----------


def claim_config(run_dir: Path, cfg: Any, force: bool) -> None:
    """Save ``cfg`` as ``<run>/config.toml``; refuse a directory that holds a different
    configuration, unless ``force`` (the caller holds the lock, so the file and the
    results written after it belong to one run)."""
    import tomllib

    from babelscope.config import dump_config
    from babelscope.io import write_text_atomic

    saved = Path(run_dir) / "config.toml"
    text = dump_config(cfg)
    if saved.exists() and saved.read_text() != text and not force:
        # Compared as data, not validated again: a config.toml of an older babelscope or
        # a torn one is "different", never a crash.
        try:
            old: Any = tomllib.loads(saved.read_text())
        except (OSError, ValueError):
            old = {}
        diff = _diff(old, tomllib.loads(text))
        raise BabelscopeError(
            f"{run_dir} belongs to a different configuration (differs in: "
            f"{', '.join(diff[:4]) or 'stages'}); use --force to redo it with this one, "
            "or another name / out directory"
        )
    write_text_atomic(saved, text)


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def data_notes(d: Path) -> dict[str, Any]:
    """Content hashes of the data files as they are now (cheap when unchanged)."""
    from babelscope.corpora.corpus import CONCEPTS_FILE, data_hash
    from babelscope.io import content_hash

    labels = Path(d) / CONCEPTS_FILE
    return {
        "data_dir": str(d),
        "data_hash": data_hash(d),
        # Concept labels can change on the same text (another table): experts depend on them.
        "labels_hash": content_hash(labels) if labels.exists() else None,
    }


def tree_hash(path: Path | str | None) -> str | None:
    """Content hash of a file, or of every file under a directory (names and contents);
    None for None. Cheap when nothing changed (see :func:`babelscope.io.content_hash`)."""
    if path is None:
        return None
    from babelscope.io import content_hash, settings_hash

    p = Path(path)
    try:
        if p.is_file():
            return content_hash(p)
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return settings_hash([(str(f.relative_to(p)), content_hash(f)) for f in files])
    except OSError as e:
        raise BabelscopeError(f"cannot read {p}: {e.strerror or e}") from None


#: What a finished stage leaves (checked before it is skipped as up to date).
RESULT_FILES: dict[str, str] = {
    "inspect": "checkpoints.json",
    "probe": "results/probe.parquet",
    "similarity": "results/similarity.parquet",
    "experts": "results/experts.parquet",
    "align": "results/alignment.parquet",
}


def outputs_current(run_dir: Path, data_dir: Path, stage: str, rec: dict[str, Any]) -> bool:
    """Whether a stage's recorded outputs are still what the record says: the data files
    have the recorded content, and the result file is there and readable. A replaced
    corpus or a torn result makes the stage run again."""
    if stage == "data":
        try:
            now = data_notes(data_dir)
        except BabelscopeError:
            return False
        old = rec.get("notes", {})
        return all(now[k] == old.get(k) for k in ("data_hash", "labels_hash"))
    out = RESULT_FILES.get(stage)
    if out is None:
        return True
    path = Path(run_dir) / out
    if path.suffix == ".json":
        try:
            json.loads(path.read_text())
        except (OSError, ValueError):
            return False
        return True
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except Exception:  # noqa: BLE001 - missing, torn or foreign: all mean "redo"
        return False
    return True


def clear_for_force(run_dir: Path, stage: str) -> None:
    """``--force`` recomputes: drop the stage's per-step results (babelscope's own files
    in its own run directory). The activation cache stays: it is keyed by the weights'
    fingerprint and the texts themselves, so what it returns is what would be computed."""
    import shutil

    from babelscope.analysis.experts import AP_DIR
    from babelscope.analysis.probe import PARTIAL_DIR

    run_dir = Path(run_dir)
    dirs = {
        "probe": [run_dir / "results" / PARTIAL_DIR],
        "similarity": [run_dir / "results" / ".similarity"],
        "experts": [run_dir / "results" / AP_DIR],
        "steer": [run_dir / "cache" / "steering"],
    }
    for d in dirs.get(stage, []):
        shutil.rmtree(d, ignore_errors=True)
