"""Small I/O primitives shared by every stage: atomic writes, content hashes, provenance.

Rule: nothing half-written is ever left where a later run would trust it. Files are
written to a temporary sibling and renamed; directories are built under a temporary
name and renamed into place; a stage marks completion by its final rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from babelscope import __version__


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# Full hashes already computed in this process, by (path, size, mtime, tail of the file).
_HASH_MEMO: dict[tuple[str, int, int, str], str] = {}
_TAIL = 1 << 16  # Parquet keeps its metadata (schema, row groups, statistics) at the end


def content_hash(path: str | os.PathLike, length: int = 16) -> str:
    """Hash of a file's contents, cheap to ask for again.

    The full SHA-256 is computed once per (size, modification time, last 64 KiB) — for a
    Parquet file the last bytes are its metadata, which any rewrite changes — and reused
    while those agree; a file replaced in place (new size, time or metadata) is hashed in
    full again. Unreadable files raise ``OSError`` for the caller to explain.
    """
    p = Path(path)
    st = p.stat()
    with open(p, "rb") as f:
        f.seek(max(0, st.st_size - _TAIL))
        tail = sha256_bytes(f.read())
    sig = (str(p.resolve()), st.st_size, st.st_mtime_ns, tail)
    if sig not in _HASH_MEMO:
        _HASH_MEMO[sig] = sha256_file(p)
    return _HASH_MEMO[sig][:length]


def stable_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the same settings give the same string."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def settings_hash(obj: Any, length: int = 16) -> str:
    """Short hash of a JSON-able object (settings, keys of a cache entry)."""
    return sha256_bytes(stable_json(obj).encode())[:length]


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "model_dump"):
        return o.model_dump()
    if hasattr(o, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(o)
    if isinstance(o, set | frozenset):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    Works for a file or a directory written at the yielded path. On error the
    temporary is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    target = tmp / path.name
    try:
        yield target
        if not target.exists():
            raise RuntimeError(f"atomic_path: nothing was written at {target}")
        if path.is_dir() and not path.is_symlink():
            # Replace a directory: move the old one aside first, then swap.
            old = tmp / (path.name + ".old")
            os.replace(path, old)
        os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_text_atomic(
        path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"
    )


def write_parquet_atomic(
    df: Any, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None
) -> Path:
    """Write a pandas DataFrame as Parquet, with ``metadata`` stored as JSON in the schema.

    The provenance travels inside the file (key ``babelscope``), so a result opened
    on its own still says what produced it: ``read_parquet_metadata(path)``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata is not None:
        meta = dict(table.schema.metadata or {})
        meta[b"babelscope"] = json.dumps(metadata, sort_keys=True, default=_json_default).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def read_parquet_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The provenance stored by :func:`write_parquet_atomic` (empty dict if none)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(b"babelscope")
    return json.loads(raw) if raw else {}


def environment_info() -> dict[str, Any]:
    """Versions and machine facts recorded in every provenance record."""
    info: dict[str, Any] = {
        "babelscope": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
    }
    for mod in ("torch", "transformers", "tokenizers", "numpy", "sklearn", "pandas"):
        with contextlib.suppress(Exception):  # an optional library may be absent
            info[mod] = __import__(mod).__version__
    return info


def provenance(stage: str, **fields: Any) -> dict[str, Any]:
    """A provenance record: what stage, when, with which inputs/settings, on what software."""
    return {
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **fields,
        "environment": environment_info(),
    }
