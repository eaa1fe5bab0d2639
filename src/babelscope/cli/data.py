"""`babelscope data build` and `babelscope data stats`: the corpus and its concept labels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from babelscope.errors import BabelscopeError

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

DEFAULT_DATA_DIR = Path("data/embedded")


def _split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.replace(" ", ",").split(",") if v.strip()]


def _controls(value: str | None) -> list[str] | None:
    """``--controls``: None (the default rule), [] for 'none', else the languages named."""
    if value is None:
        return None
    return [c for c in _split_list(value) or [] if c != "none"]


@app.command("build")
def build_cmd(
    out: Path = typer.Option(DEFAULT_DATA_DIR, "--out", help="Data directory to write."),
    languages: str = typer.Option(
        None,
        "--languages",
        help="Comma-separated ISO 639-3 codes (default: the 16 default languages, or those of --user "
        "with --sources none).",
    ),
    sources: str = typer.Option(
        "dataset-build,django,udhr",
        "--sources",
        help="Comma-separated embedded sources: dataset-build, django, udhr; 'none' for --user only.",
    ),
    user: list[Path] = typer.Option(
        None, "--user", help="Your own text (JSONL/CSV/TSV/Parquet/datasets dir); repeatable."
    ),
    text_col: str = typer.Option("text", help="Text column of --user files."),
    lang_col: str = typer.Option("lang", help="Language column of --user files."),
    id_col: str = typer.Option("id", help="Id column of --user files (used when present)."),
    align_col: str = typer.Option(
        "align_id", help="Alignment column of --user files (used when present)."
    ),
    concepts: Path = typer.Option(
        None, "--concepts", help="Concept table (default: the bundled one)."
    ),
    heldout: float = typer.Option(0.1, "--heldout", help="Fraction of groups held out."),
    max_per_source: int = typer.Option(
        None, "--max-per-source", help="At most this many sentences per source and language."
    ),
    seed: int = typer.Option(0, help="Seed of the split, of sampled negatives and of the ciphers."),
    controls: str = typer.Option(
        None,
        "--controls",
        help="Languages that get a ciphered control copy, e.g. eng (adds eng~x); 'none' for "
        "none (default: eng when it is among the languages and embedded sources are read).",
    ),
    control_symbols: str = typer.Option(
        "keep",
        "--control-symbols",
        help="Digits and punctuation of a control: keep (shared anchors) or cipher.",
    ),
    match: bool = typer.Option(
        True,
        "--match/--no-match",
        help="Matched pools: negatives matched to each concept's positives by source and length.",
    ),
    match_ratio: int = typer.Option(
        3, "--match-ratio", help="Negatives per positive (matched pools)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing data directory."),
) -> None:
    """Build the multilingual corpus and concept labels (corpus.parquet, concepts.parquet, manifest.json)."""
    from babelscope.concepts.matching import MatchSettings
    from babelscope.corpora.build import build_corpus

    if match_ratio < 1:
        raise BabelscopeError(f"--match-ratio {match_ratio}: give at least 1")
    src = _split_list(sources) or []
    path = build_corpus(
        out,
        languages=_split_list(languages),
        sources=[s for s in src if s != "none"],
        heldout_fraction=heldout,
        seed=seed,
        max_sentences_per_source_lang=max_per_source,
        force=force,
        user=user or None,
        user_options={
            "text_col": text_col,
            "lang_col": lang_col,
            "id_col": id_col,
            "align_col": align_col,
        },
        concept_table=concepts,
        controls=_controls(controls),
        control_symbols=control_symbols,
        match=MatchSettings(enabled=match, ratio=match_ratio),
    )
    _print_stats(collect_stats(path))


def collect_stats(data_dir: Path) -> dict[str, Any]:
    """Per-language sentences, characters, sources and splits, and concept positives."""
    import pandas as pd

    from babelscope.corpora.corpus import CONCEPTS_FILE, load_corpus, load_manifest

    corpus = load_corpus(data_dir)
    manifest = load_manifest(data_dir)
    langs: dict[str, Any] = {}
    for lang, g in corpus.groupby("lang", sort=True):
        langs[str(lang)] = {
            "sentences": int(len(g)),
            "characters": int(g["text"].str.len().sum()),
            "sources": {str(k): int(v) for k, v in g["source"].value_counts().sort_index().items()},
            "train": int((g["split"] == "train").sum()),
            "heldout": int((g["split"] == "heldout").sum()),
        }
    concepts: dict[str, dict[str, int]] = {}
    cpath = Path(data_dir) / CONCEPTS_FILE
    if cpath.is_file():
        labels = pd.read_parquet(cpath)
        pos = labels[labels["label"].astype(int) == 1].groupby(["concept", "lang"]).size()
        for (concept, lang), n in pos.sort_index().items():
            concepts.setdefault(str(concept), {})[str(lang)] = int(n)
    n_langs = len(langs)
    complete = {c: min(v.values()) for c, v in concepts.items() if len(v) == n_langs}
    # Positives found before the min-positives cut (the labels file keeps kept pairs only).
    found: dict[str, dict[str, int]] = {}
    for rec in manifest.get("concepts", {}).get("counts", []):
        found.setdefault(str(rec["concept"]), {})[str(rec["lang"])] = int(rec["positives"])
    return {
        "data_dir": str(data_dir),
        "corpus_hash": manifest.get("corpus_hash"),
        "languages": langs,
        "totals": {
            "languages": n_langs,
            "sentences": int(len(corpus)),
            "characters": int(corpus["text"].str.len().sum()),
            "sources": sorted(corpus["source"].unique().tolist()),
            "concepts": len(concepts),
            "concepts_with_15_in_every_language": sum(v >= 15 for v in complete.values()),
        },
        "sources": manifest.get("sources", {}),
        "concept_positives": concepts,
        "concept_positives_found": found,
        "concepts_kept_in_all_languages": manifest.get("concepts", {}).get(
            "kept_in_all_languages", []
        ),
        "label_precision": _precision_stats(Path(data_dir)),
    }


def _precision_stats(data_dir: Path) -> dict[str, Any] | None:
    """Lexicon labels against the English pivot on parallel text (``label_precision.parquet``):
    per language, pooled, and per concept and language; None for a directory built before
    it was measured."""
    import pandas as pd

    from babelscope.concepts.precision import PRECISION_FILE, precision_summary
    from babelscope.io import read_parquet_metadata

    path = data_dir / PRECISION_FILE
    if not path.is_file():
        return None
    table = pd.read_parquet(path)
    summary = precision_summary(table)
    cells = table[table["scope"] == "concept"]
    by_concept: dict[str, dict[str, Any]] = {}
    for _, r in cells.iterrows():
        by_concept.setdefault(str(r["concept"]), {})[str(r["lang"])] = {
            k: (None if pd.isna(r[k]) else round(float(r[k]), 4))
            if k.startswith(("precision", "recall"))
            else int(r[k])
            for k in ("tp", "fp", "fn", "precision", "precision_lo", "precision_hi", "recall")
        }
    return {
        "method": "lexicon labels of each language against the English side's labels, "
        "on sentences of translation groups with an English side (95 % Wilson intervals)",
        "created": read_parquet_metadata(path).get("created"),
        **summary,
        "concepts": by_concept,
    }


def _print_stats(stats: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    sources = stats["totals"]["sources"]
    table = Table(title=f"{stats['data_dir']}  (corpus {stats['corpus_hash']})")
    table.add_column("lang")
    table.add_column("sentences", justify="right")
    table.add_column("characters", justify="right")
    for s in sources:
        table.add_column(s, justify="right")
    table.add_column("held out", justify="right")
    for lang, v in stats["languages"].items():
        table.add_row(
            lang,
            f"{v['sentences']:,}",
            f"{v['characters']:,}",
            *[f"{v['sources'].get(s, 0):,}" for s in sources],
            f"{v['heldout']:,}",
        )
    console = Console()
    console.print(table)
    t = stats["totals"]
    console.print(
        f"{t['sentences']:,} sentences, {t['characters']:,} characters, {t['languages']} languages; "
        f"{t['concepts']} concepts labelled, {t['concepts_with_15_in_every_language']} with at least "
        "15 positives in every language"
    )
    for name, s in stats["sources"].items():
        if str(s.get("status", "")).startswith("skipped"):
            console.print(f"[yellow]source {name} {s['status']}[/yellow]")
    _print_precision(console, stats.get("label_precision"))


def _print_precision(console: Any, prec: dict[str, Any] | None) -> None:
    from rich.table import Table

    if prec is None:
        console.print(
            "[yellow]no label precision in this data directory (built before it was measured): "
            "rebuild it with `babelscope data build --force`[/yellow]"
        )
        return
    if not prec["languages"]:
        console.print("label precision: no parallel text with an English side to measure it on")
        return

    def rate(r: dict[str, Any], name: str) -> str:
        if r[name] is None:
            return "–"
        return f"{r[name]:.2f} [{r[name + '_lo']:.2f}, {r[name + '_hi']:.2f}]"

    t = Table(title="label precision: lexicon vs English pivot on parallel text (95 % Wilson)")
    for col in ("lang", "sentences", "lexicon +", "agree", "precision", "recall"):
        t.add_column(col, justify="left" if col == "lang" else "right")
    rows = [*prec["languages"].items(), *([("all", prec["all"])] if prec["all"] else [])]
    for lang, r in rows:
        t.add_row(
            lang, f"{r['sentences']:,}", f"{r['lexicon_positives']:,}", f"{r['tp']:,}",
            rate(r, "precision"), rate(r, "recall"),
        )  # fmt: skip
    console.print(t)
    low = ", ".join(
        f"{c['concept']}/{c['lang']} {c['tp']}/{c['tp'] + c['fp']}" for c in prec["lowest"][:5]
    )
    if low:
        console.print(f"lowest precision (concept/lang, agreeing/lexicon positives): {low}")


@app.command("stats")
def stats_cmd(
    data: Path = typer.Option(DEFAULT_DATA_DIR, "--data", help="Data directory to describe."),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON (includes positives per concept and language)."
    ),
) -> None:
    """Sentences, characters and sources per language; concept positives with --json."""
    if not Path(data).exists():
        raise BabelscopeError(
            f"no data directory at {data}: run `babelscope data build --out {data}` first"
        )
    stats = collect_stats(data)
    if as_json:
        typer.echo(json.dumps(stats, indent=2, sort_keys=False, ensure_ascii=False))
    else:
        _print_stats(stats)
