"""The on-disk corpus: one Parquet table every later stage reads.

A data directory holds::

    corpus.parquet    id, lang, script, text, source, align_id, split
    concepts.parquet  concept, lang, id, label, method   (see babelscope.concepts)
    manifest.json     provenance: sources and versions, languages, counts, data hash

``id`` is unique; ``align_id`` groups translations of one text in parallel sources
(null for monolingual text); ``split`` is ``train`` or ``heldout``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from babelscope.errors import BabelscopeError
from babelscope.io import read_parquet_metadata, sha256_bytes, write_parquet_atomic

CORPUS_COLUMNS = ["id", "lang", "script", "text", "source", "align_id", "split"]
SPLITS = ("train", "heldout")
CORPUS_FILE = "corpus.parquet"
CONCEPTS_FILE = "concepts.parquet"
MANIFEST_FILE = "manifest.json"


def validate_corpus(df: pd.DataFrame, where: str = "corpus") -> pd.DataFrame:
    """Check columns, types, uniqueness and splits; return the frame in canonical column order."""
    missing = [c for c in CORPUS_COLUMNS if c not in df.columns]
    if missing:
        raise BabelscopeError(
            f"{where}: missing column(s) {', '.join(missing)}; expected {', '.join(CORPUS_COLUMNS)}"
        )
    if len(df) == 0:
        raise BabelscopeError(
            f"{where}: no sentences; build the corpus first with `babelscope data build`"
        )
    if df["id"].duplicated().any():
        dup = df.loc[df["id"].duplicated(), "id"].iloc[0]
        raise BabelscopeError(f"{where}: duplicate sentence id '{dup}'; ids must be unique")
    bad = set(df["split"].unique()) - set(SPLITS)
    if bad:
        raise BabelscopeError(
            f"{where}: unknown split value(s) {sorted(bad)}; use train or heldout"
        )
    out = df[CORPUS_COLUMNS].copy()
    for c in ("id", "lang", "script", "text", "source", "split"):
        out[c] = out[c].astype(str)
    out["align_id"] = out["align_id"].astype("string")
    return out.reset_index(drop=True)


def corpus_hash(df: pd.DataFrame) -> str:
    """Content hash of a corpus (ids, languages, texts, splits), independent of row order."""
    key = df.sort_values("id")[["id", "lang", "text", "split"]]
    return sha256_bytes(key.to_csv(index=False).encode())[:16]


def save_corpus(df: pd.DataFrame, data_dir: str | Path, manifest: dict | None = None) -> Path:
    """Validate and write ``corpus.parquet`` atomically; provenance goes into the file's metadata."""
    df = validate_corpus(df)
    data_dir = Path(data_dir)
    meta = dict(manifest or {})
    meta["corpus_hash"] = corpus_hash(df)
    return write_parquet_atomic(df, data_dir / CORPUS_FILE, metadata=meta)


def load_corpus(data_dir: str | Path, languages: list[str] | None = None) -> pd.DataFrame:
    """Read a corpus; optionally keep only ``languages`` (each must be present)."""
    path = Path(data_dir) / CORPUS_FILE
    if not path.exists():
        raise BabelscopeError(
            f"no corpus at {path}: run `babelscope data build --out {data_dir}` first"
        )
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # noqa: BLE001 - pyarrow's errors for a torn or foreign file vary
        raise BabelscopeError(
            f"{path} is not a readable Parquet file ({type(e).__name__}: "
            f"{(str(e).splitlines() or [''])[0][:120]}): rebuild it with "
            f"`babelscope data build --force --out {data_dir}`"
        ) from None
    df = validate_corpus(df, where=str(path))
    if languages:
        have = set(df["lang"].unique())
        lacking = [lang for lang in languages if lang not in have]
        if lacking:
            raise BabelscopeError(
                f"{path} has no text in {', '.join(lacking)}; rebuild with these languages or drop them"
            )
        df = df[df["lang"].isin(languages)].reset_index(drop=True)
    return df


def load_manifest(data_dir: str | Path) -> dict:
    p = Path(data_dir) / MANIFEST_FILE
    if p.exists():
        return json.loads(p.read_text())
    cp = Path(data_dir) / CORPUS_FILE
    return read_parquet_metadata(cp) if cp.exists() else {}


def data_hash(data_dir: str | Path) -> str:
    """Hash of the corpus file as it is now (not as a manifest remembers it): a corpus
    replaced in place gets a new hash, so every result keyed on it is recomputed.
    Cheap to ask again: see :func:`babelscope.io.content_hash`."""
    from babelscope.io import content_hash

    path = Path(data_dir) / CORPUS_FILE
    try:
        return content_hash(path)
    except OSError as e:
        raise BabelscopeError(
            f"cannot read {path} ({e.strerror or e}): run `babelscope data build --out {data_dir}`"
        ) from None
