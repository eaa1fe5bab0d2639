"""On-disk activation cache, keyed by what produced the activations.

An entry lives at ``cache_dir/<key>/`` where the key hashes the checkpoint fingerprint,
the data key (the caller's data hash), a hash of the texts, the unit kind, the pooling,
the dtype and the other settings. While it is being filled an entry holds::

    provenance.json        what produced it (written first)
    manifest.json          one record per finished shard: rows, file, sha256 (rewritten after each shard)
    shards/shard-00000.npz the arrays of ``shard_size`` texts

Shards are written as they are produced (atomically, then recorded in the manifest), so
peak memory is one shard of results plus one batch. A run that stops resumes at the next
unfinished shard; a shard whose checksum or size does not match its manifest record is
recomputed, never read. When every shard is there they are joined into one ``.npy`` per
array (``layer-<L>.npy``…), with checksums in the manifest, and the shards are removed.
A later call memory-maps those files (sizes always checked, checksums with ``verify``).

Token samples (:func:`cached_token_samples`) use the same engine; their texts' samples
are seeded by their index in the full list, so sharding changes nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from babelscope.activations.dtypes import Decoded, check_store_dtype, itemsize, raw_arrays
from babelscope.activations.extract import (
    PooledActivations,
    TokenSamples,
    extract_pooled,
    extract_token_samples,
)
from babelscope.activations.neurons import UnitKind, hook_points, layer_widths
from babelscope.checkpoints.series import LoadedCheckpoint
from babelscope.errors import BabelscopeError
from babelscope.io import (
    atomic_path,
    provenance,
    settings_hash,
    sha256_bytes,
    sha256_file,
    write_json_atomic,
)
from babelscope.progress import track, warn

CACHE_VERSION = 1
MANIFEST = "manifest.json"
PROVENANCE = "provenance.json"


def texts_hash(texts: Sequence[str]) -> str:
    """Hash of the texts and their order."""
    return sha256_bytes("\x1e".join(texts).encode())[:16]


def _load_json(path: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _shard_ok(entry: Path, rec: dict[str, Any]) -> bool:
    f = entry / rec["file"]
    return f.is_file() and f.stat().st_size == rec["size"] and sha256_file(f) == rec["sha256"]


def _final_ok(entry: Path, manifest: dict[str, Any], verify: bool) -> bool:
    for rec in manifest.get("files", {}).values():
        f = entry / rec["file"]
        if not f.is_file() or f.stat().st_size != rec["size"]:
            return False
        if verify and sha256_file(f) != rec["sha256"]:
            return False
    return True


def _run_cached(
    entry: Path,
    key_fields: dict[str, Any],
    n_texts: int,
    shard_size: int,
    compute: Callable[[int, int], tuple[dict[str, np.ndarray], dict[str, Any]]],
    verify: bool,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fill (or resume, or read) the entry; return memory-mapped arrays and the manifest."""
    manifest = _load_json(entry / MANIFEST)
    if manifest and manifest.get("complete"):
        if _final_ok(entry, manifest, verify):
            return _open(entry, manifest), manifest
        warn(f"activation cache entry {entry} is damaged: recomputing it")
        shutil.rmtree(entry, ignore_errors=True)
        manifest = None
    if (
        manifest is None
        or manifest.get("key_fields") != key_fields
        or manifest.get("shard_size") != shard_size
    ):
        if entry.exists():
            shutil.rmtree(entry)
        entry.mkdir(parents=True)
        write_json_atomic(entry / PROVENANCE, provenance("activations", **key_fields))
        manifest = {"version": CACHE_VERSION, "key_fields": key_fields, "n_texts": n_texts,
                    "shard_size": shard_size, "shards": {}, "complete": False}  # fmt: skip
    starts = list(range(0, n_texts, shard_size)) or [0]
    todo = []
    for k, start in enumerate(starts):
        rec = manifest["shards"].get(str(k))
        if rec is None or not _shard_ok(entry, rec):
            if rec is not None:
                warn(
                    f"activation cache: shard {k} of {entry.name} is damaged or partial: recomputing it"
                )
                manifest["shards"].pop(str(k))
            todo.append((k, start))
    for k, start in (
        track(todo, f"activations → {entry.name}", transient=True) if len(todo) > 1 else todo
    ):
        end = min(start + shard_size, n_texts)
        try:
            arrays, info = compute(start, end)
        except BaseException:
            if not manifest["shards"]:  # nothing computed (e.g. a hook never ran): no entry left
                shutil.rmtree(entry, ignore_errors=True)
            raise
        rel = f"shards/shard-{k:05d}.npz"
        with atomic_path(entry / rel) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        f = entry / rel
        manifest["shards"][str(k)] = {"start": start, "end": end, "file": rel, "size": f.stat().st_size,
                                      "sha256": sha256_file(f), **info}  # fmt: skip
        write_json_atomic(entry / MANIFEST, manifest)  # after each shard: the resume point
    _consolidate(entry, manifest, len(starts))
    return _open(entry, manifest), manifest


def _consolidate(entry: Path, manifest: dict[str, Any], n_shards: int) -> None:
    """Join the shards into one ``.npy`` per array, streaming (one shard in memory at a time)."""
    shards = [manifest["shards"][str(k)] for k in range(n_shards)]
    for rec in shards:  # nothing unverified is read
        if not _shard_ok(entry, rec):
            raise BabelscopeError(
                f"activation cache shard {entry / rec['file']} changed while in use: run again"
            )
    with np.load(entry / shards[0]["file"], allow_pickle=False) as z:
        names = {n: (z[n].dtype, z[n].shape[1:]) for n in z.files}
    sizes = {n: 0 for n in names}
    for rec in shards:
        with np.load(entry / rec["file"], allow_pickle=False) as z:
            for n in names:
                sizes[n] += z[n].shape[0]
    files: dict[str, Any] = {}
    for name, (dtype, tail) in names.items():
        rel = f"{name}.npy"
        with atomic_path(entry / rel) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(sizes[name], *tail))
            row = 0
            for rec in shards:
                with np.load(entry / rec["file"], allow_pickle=False) as z:
                    part = z[name]
                out[row : row + len(part)] = part
                row += len(part)
            out.flush()
            del out
        f = entry / rel
        files[name] = {"file": rel, "size": f.stat().st_size, "sha256": sha256_file(f)}
    manifest.update(complete=True, files=files)
    write_json_atomic(entry / MANIFEST, manifest)
    shutil.rmtree(entry / "shards", ignore_errors=True)


def _open(entry: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """Memory-map the entry's arrays. Plain numeric arrays only: ``np.load`` refuses object
    arrays (pickles) unless asked, and a file that is not a plain array is an error."""
    try:
        return {
            name: np.load(entry / rec["file"], mmap_mode="r", allow_pickle=False)
            for name, rec in manifest["files"].items()
        }
    except (ValueError, OSError) as e:
        raise BabelscopeError(
            f"activation cache entry {entry} holds a file that is not a plain array "
            f"({type(e).__name__}: {str(e)[:120]}): delete {entry} and run again"
        ) from None


def _key_fields(
    loaded: LoadedCheckpoint, texts: Sequence[str], data_key: str, **settings: Any
) -> dict[str, Any]:
    return {"version": CACHE_VERSION, "fingerprint": loaded.fingerprint, "step": loaded.step,
            "data_key": data_key, "texts": texts_hash(texts), "n_texts": len(texts), "dtype": loaded.dtype,
            **settings}  # fmt: skip


def entry_dir(cache_dir: str | os.PathLike, key_fields: dict[str, Any]) -> Path:
    """Where the entry for these key fields lives (the step is readable in the name)."""
    return Path(cache_dir) / f"step{key_fields['step']}-{settings_hash(key_fields)}"


def cached_pooled(
    loaded: LoadedCheckpoint,
    texts: Sequence[str],
    *,
    data_key: str,
    kind: UnitKind = "mlp",
    pooling: str = "mean",
    cache_dir: str | os.PathLike,
    batch_size: int = 32,
    max_length: int | None = None,
    layers: Sequence[int] | None = None,
    shard_size: int = 512,
    verify: bool = True,
    store_dtype: str = "float32",
    max_cache_bytes: int | None = None,
) -> PooledActivations:
    """:func:`~babelscope.activations.extract.extract_pooled` through the on-disk cache.

    The arrays returned are read-only memory maps. ``data_key`` should identify the data
    (e.g. the corpus hash and the language); the texts are hashed into the key as well.
    ``store_dtype`` (``float16``, ``bfloat16``) stores half-precision values, read back as
    float32. ``max_cache_bytes``: a new entry that would take ``cache_dir`` past this size
    is not written; the activations are extracted in memory instead (same values).
    """
    if shard_size < 1:
        raise BabelscopeError(f"shard_size must be at least 1, not {shard_size}")
    texts = list(texts)
    store = {} if store_dtype == "float32" else {"store": check_store_dtype(store_dtype)}
    key = _key_fields(loaded, texts, data_key, kind=kind, pooling=pooling, max_length=max_length,
                      layers=None if layers is None else sorted(layers), what="pooled", **store)  # fmt: skip
    entry = entry_dir(cache_dir, key)
    common = dict(kind=kind, pooling=pooling, layers=layers, batch_size=batch_size,
                  max_length=max_length, store_dtype=store_dtype)  # fmt: skip
    if max_cache_bytes is not None and not (entry / MANIFEST).is_file():
        need = (
            len(texts)
            * sum(layer_widths(hook_points(loaded.model, kind, layers)).values())
            * itemsize(store_dtype)
        )
        if cache_size(cache_dir) + need > max_cache_bytes:
            p = extract_pooled(loaded.model, loaded.tokenizer, texts, **common)
            p.meta = {
                "cache_entry": None,
                "key": key,
                "not_cached": f"{need} bytes over the budget",
            }
            return p

    def compute(start: int, end: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        p = extract_pooled(loaded.model, loaded.tokenizer, texts[start:end], **common)
        arrays = {f"layer-{layer}": a for layer, a in raw_arrays(p.arrays).items()}
        return arrays, {"n_truncated": p.n_truncated, "n_tokens": p.n_tokens}

    arrays, manifest = _run_cached(entry, key, len(texts), shard_size, compute, verify)
    layer_arrays = {int(n.split("-", 1)[1]): a for n, a in arrays.items() if n.startswith("layer-")}
    layer_ids = sorted(layer_arrays)
    shards = manifest["shards"].values()
    return PooledActivations(
        layers=layer_ids,
        widths={layer: int(layer_arrays[layer].shape[1]) for layer in layer_ids},
        arrays=layer_arrays if store_dtype == "float32" else Decoded(layer_arrays, store_dtype),
        n_texts=len(texts),
        n_truncated=sum(s["n_truncated"] for s in shards),
        kind=kind,
        pooling=pooling,
        n_tokens=sum(s["n_tokens"] for s in shards),
        meta={"cache_entry": str(entry), "key": key},
    )


def cached_token_samples(
    loaded: LoadedCheckpoint,
    texts: Sequence[str],
    *,
    data_key: str,
    kind: UnitKind = "residual",
    tokens_per_text: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike,
    batch_size: int = 32,
    max_length: int | None = None,
    layers: Sequence[int] | None = None,
    shard_size: int = 512,
    verify: bool = True,
) -> TokenSamples:
    """:func:`~babelscope.activations.extract.extract_token_samples` through the on-disk cache."""
    if shard_size < 1:
        raise BabelscopeError(f"shard_size must be at least 1, not {shard_size}")
    texts = list(texts)
    key = _key_fields(loaded, texts, data_key, kind=kind, tokens_per_text=tokens_per_text, seed=seed,
                      max_length=max_length, layers=None if layers is None else sorted(layers),
                      what="tokens")  # fmt: skip
    entry = entry_dir(cache_dir, key)

    def compute(start: int, end: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        s = extract_token_samples(loaded.model, loaded.tokenizer, texts[start:end], kind=kind,
                                  tokens_per_text=tokens_per_text, seed=seed, layers=layers,
                                  batch_size=batch_size, max_length=max_length, index_offset=start)  # fmt: skip
        arrays = {f"layer-{layer}": s.get(layer) for layer in s.layers}
        arrays.update(
            sentence_index=s.sentence_index + start, position=s.position, token_id=s.token_id
        )
        return arrays, {"n_truncated": s.n_truncated}

    arrays, manifest = _run_cached(entry, key, len(texts), shard_size, compute, verify)
    layer_arrays = {int(n.split("-", 1)[1]): a for n, a in arrays.items() if n.startswith("layer-")}
    layer_ids = sorted(layer_arrays)
    return TokenSamples(
        layers=layer_ids,
        widths={layer: int(layer_arrays[layer].shape[1]) for layer in layer_ids},
        arrays=layer_arrays,
        sentence_index=arrays["sentence_index"],
        position=arrays["position"],
        token_id=arrays["token_id"],
        n_texts=len(texts),
        n_truncated=sum(s["n_truncated"] for s in manifest["shards"].values()),
        kind=kind,
        meta={"cache_entry": str(entry), "key": key},
    )


def cache_size(cache_dir: str | os.PathLike) -> int:
    """Bytes under ``cache_dir`` (0 when it does not exist)."""
    root = Path(cache_dir)
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.is_dir() else 0


def remove_entries(
    cache_dir: str | os.PathLike | None, step: int, fingerprint: str | None = None
) -> int:
    """Remove the cache entries of checkpoint ``step`` (only those of ``fingerprint`` when
    given: another series' step of the same number stays); return the bytes freed."""
    if cache_dir is None or not Path(cache_dir).is_dir():
        return 0
    freed = 0
    for entry in Path(cache_dir).glob(f"step{int(step)}-*"):
        fields = (_load_json(entry / MANIFEST) or {}).get("key_fields", {})
        if not entry.is_dir() or (
            fingerprint and fields.get("fingerprint") not in (None, fingerprint)
        ):
            continue
        freed += cache_size(entry)
        shutil.rmtree(entry, ignore_errors=True)
    return freed
