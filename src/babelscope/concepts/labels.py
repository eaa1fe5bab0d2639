"""The concept-label table: which sentences express which concept, per language.

Two sources of labels are combined:

* **pivot** — sentences of a parallel source (``align_id`` set) whose group has an English
  side take the label of that English side (:mod:`babelscope.concepts.pivot`): the meaning
  is fixed by one language and carries over to every translation;
* **lexicon** — every other sentence (monolingual text, groups without English) is labelled
  by the concept table's words in its own language (:mod:`babelscope.concepts.lexicon`).

A **control language** (``eng~x``, :mod:`babelscope.corpora.cipher`) is not labelled
itself: it takes its original's labels and counts exactly, sentence by sentence (the
control of sentence ``i`` has the id ``eng~x:i``), so its pool is its original's pool.

Pool contract: for one language, every concept is labelled over the *same* pool of sentence
ids — the positives of every concept found often enough (each capped at ``max_positives``,
sampled), plus random other sentences of the language up to ``pool_size`` in all — so one
activation extraction per language serves all concepts. Sampling is seeded per language.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from babelscope.concepts.lexicon import ConceptLexicon
from babelscope.concepts.matching import MatchSettings, capacity, draw_matched, strata
from babelscope.concepts.pivot import LABEL_COLUMNS, pivot_positive_groups
from babelscope.errors import BabelscopeError
from babelscope.languages import control_original

CONCEPTS_FILE = "concepts.parquet"
COUNT_COLUMNS = ["concept", "lang", "found", "positives", "negatives", "kept",
                 "matched_positives", "matched_negatives"]  # fmt: skip
# Besides LABEL_COLUMNS: ``matched`` (in the concept's matched pool, concepts/matching.py)
# and ``base`` (in the language's unmatched pool: positives plus random other sentences).
POOL_COLUMNS = ["matched", "base"]
PIVOT_LANG = "eng"


def _lang_rng(seed: int, lang: str) -> np.random.Generator:
    # Per-language stream: adding a language does not change another language's pool.
    return np.random.default_rng([seed, zlib.crc32(lang.encode())])


def _positives_by_concept(
    corpus: pd.DataFrame,
    lang: str,
    lex: ConceptLexicon,
    pivot_groups: set[str],
    pivot_pos: dict[str, set[str]],
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """ids of ``lang``, whether each is pivot-labelled, and each concept's positive mask."""
    rows = corpus[corpus["lang"] == lang]
    ids = rows["id"].astype(str).to_numpy()
    aids = rows["align_id"].astype("string").fillna("").astype(str).to_numpy()
    by_pivot = np.isin(aids, list(pivot_groups)) if pivot_groups else np.zeros(len(ids), bool)
    lexical = lang in lex.languages
    texts = rows["text"].astype(str).tolist()
    lex_hits = (
        lex.label_texts([t for t, p in zip(texts, by_pivot, strict=True) if not p], lang)
        if lexical
        else {}
    )
    masks: dict[str, np.ndarray] = {}
    for c in lex.concepts:
        m = np.zeros(len(ids), bool)
        if by_pivot.any():
            m[by_pivot] = np.isin(aids[by_pivot], list(pivot_pos.get(c, ())))
        if lexical:
            m[~by_pivot] = lex_hits[c]
        masks[c] = m
    return ids, by_pivot, masks


def build_concept_labels(
    corpus: pd.DataFrame,
    languages: list[str],
    table: str | Path | None = None,
    min_positives: int = 15,
    seed: int = 0,
    pool_size: int = 500,
    max_positives: int | None = 40,
    min_languages: int | None = None,
    match: MatchSettings | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label a corpus with concepts; return ``(labels, counts)``.

    ``labels``: concept, lang, id, label (int8), method ("pivot" or "lexicon") for every
    (concept, language) that is kept, over the language's pool (see the module docstring).
    ``counts``: concept, lang, found (sentences of the language with the concept),
    positives and negatives (in the pool), kept (both ≥ ``min_positives``).

    Only concepts found at least ``min_positives`` times in at least ``min_languages``
    languages (default: half of ``languages``) are labelled: a concept present in one or
    two languages says nothing about cross-lingual alignment, and its positives would
    only swell the pools that every checkpoint's extraction pays for.

    ``table`` is a concept table path (default: the packaged table). A user table must
    not name languages that the corpus lacks; every language asked for must be in the
    corpus, and be labelable (in the table, or parallel to English text).
    """
    if min_positives < 1 or pool_size < 1 or (min_languages is not None and min_languages < 1):
        raise BabelscopeError("min_positives, pool_size and min_languages must be at least 1")
    from babelscope.corpora.cipher import split_controls

    requested = list(languages)
    languages, controls = split_controls(requested)
    for code in controls:
        original = control_original(code)
        if original not in languages:
            raise BabelscopeError(
                f"control '{code}' needs its original '{original}' among the languages: add it"
            )
    lex = ConceptLexicon.load(table)
    have = set(corpus["lang"].astype(str).unique())
    lacking = [lang for lang in requested if lang not in have]
    if lacking:
        raise BabelscopeError(
            f"the corpus has no text in {', '.join(lacking)}: add it or drop these languages"
        )
    if table is not None:
        extra = [lang for lang in lex.languages if lang not in have]
        if extra:
            raise BabelscopeError(
                f"concept table {table} names language(s) {', '.join(extra)} that the corpus lacks: "
                "add text in them or remove their rows from the table"
            )
    use_pivot = PIVOT_LANG in lex.languages and "align_id" in corpus.columns
    if use_pivot:
        pivot_groups, pivot_pos = pivot_positive_groups(corpus, lex, PIVOT_LANG)
    else:
        pivot_groups, pivot_pos = set(), {}

    found_in: dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]] = {}
    for lang in languages:
        found_in[lang] = _positives_by_concept(corpus, lang, lex, pivot_groups, pivot_pos)
        if lang not in lex.languages and not found_in[lang][1].any():
            raise BabelscopeError(
                f"cannot label '{lang}': the concept table has no words in it and none of its "
                "text is parallel to English; add the language to the concept table"
            )
    need_langs = min_languages if min_languages is not None else max(1, -(-len(languages) // 2))
    eligible = {
        c
        for c in lex.concepts
        if sum(int(found_in[lang][2][c].sum()) >= min_positives for lang in languages) >= need_langs
    }

    match = match or MatchSettings()
    base_pool: dict[str, np.ndarray] = {}
    base_kept: dict[str, set[str]] = {}
    for lang in languages:
        ids, by_pivot, masks = found_in[lang]
        rng = _lang_rng(seed, lang)
        in_pool = np.zeros(len(ids), bool)
        for c in lex.concepts:
            if c not in eligible:
                continue
            pos = np.flatnonzero(masks[c])
            if len(pos) < min_positives:
                continue
            if max_positives is not None and len(pos) > max_positives:
                pos = rng.choice(pos, size=max_positives, replace=False)
            in_pool[pos] = True
        free = np.flatnonzero(~in_pool)
        need = min(max(pool_size - int(in_pool.sum()), 0), len(free))
        if need:
            in_pool[rng.choice(free, size=need, replace=False)] = True
        base_pool[lang] = in_pool
        base_kept[lang] = {
            c for c in eligible
            if min_positives <= int(masks[c][in_pool].sum()) <= int(in_pool.sum()) - min_positives
        }  # fmt: skip
    members = (
        _matched_pools(corpus, languages, found_in, base_pool, base_kept, eligible, need_langs,
                       min_positives, match, seed)
        if match.enabled else {}
    )  # fmt: skip

    label_frames: list[pd.DataFrame] = []
    count_rows: list[dict] = []
    for lang in languages:
        ids, by_pivot, masks = found_in[lang]
        mine = members.get(lang, {})
        in_union = base_pool[lang].copy()
        for m in mine.values():
            in_union[m] = True
        pool = np.flatnonzero(in_union)  # corpus order: stable
        for c in lex.concepts:
            found = int(masks[c].sum())
            labels = masks[c][pool]
            in_base = base_pool[lang][pool]
            npos = int(labels[in_base].sum())
            nneg = int(in_base.sum()) - npos
            kept = c in base_kept[lang]
            matched = np.zeros(len(ids), bool)
            if c in mine:
                matched[mine[c]] = True
            count_rows.append(dict(
                concept=c, lang=lang, found=found, positives=npos, negatives=nneg, kept=kept,
                matched_positives=int((matched & masks[c]).sum()),
                matched_negatives=int((matched & ~masks[c]).sum()),
            ))  # fmt: skip
            if kept:
                label_frames.append(
                    pd.DataFrame(
                        {
                            "concept": c,
                            "lang": lang,
                            "id": ids[pool],
                            "label": labels.astype(np.int8),
                            "method": np.where(by_pivot[pool], "pivot", "lexicon"),
                            "matched": matched[pool],
                            "base": in_base,
                        }
                    )
                )
    counts = pd.DataFrame(count_rows, columns=COUNT_COLUMNS)
    if controls:
        label_frames, counts = _copy_to_controls(label_frames, counts, controls, requested)
    if label_frames:
        labels_df = pd.concat(label_frames, ignore_index=True)[LABEL_COLUMNS + POOL_COLUMNS]
    else:
        labels_df = pd.DataFrame({c: pd.Series(dtype=str) for c in LABEL_COLUMNS})
        labels_df["label"] = labels_df["label"].astype(np.int8)
        for c in POOL_COLUMNS:
            labels_df[c] = pd.Series(dtype=bool)
    return labels_df, counts


def _matched_pools(
    corpus: pd.DataFrame,
    languages: list[str],
    found_in: dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]],
    base_pool: dict[str, np.ndarray],
    base_kept: dict[str, set[str]],
    eligible: set[str],
    need_langs: int,
    min_positives: int,
    match: MatchSettings,
    seed: int,
) -> dict[str, dict[str, np.ndarray]]:
    """Per language, per concept: the indices (into the language's rows) of its matched pool.

    Every language of a concept gets the same number of positives, the smallest that all
    of them can match; languages that cannot match ``min_positives`` drop the concept, and
    a concept left in fewer than ``need_langs`` languages is not matched at all.
    """
    stratum = {}
    for lang in languages:
        rows = corpus[corpus["lang"] == lang]
        stratum[lang] = strata(rows["source"].astype(str).to_numpy(),
                               rows["text"].astype(str).str.len().to_numpy(), match.length_bins)  # fmt: skip
    # one random order per language: every concept's negatives are the first free sentences
    # of their stratum in it (a uniform sample each, shared across concepts)
    order = {lang: _lang_rng(seed + 1, lang).permutation(len(stratum[lang])) for lang in languages}
    out: dict[str, dict[str, np.ndarray]] = {lang: {} for lang in languages}
    for c in sorted(eligible):
        caps = {}
        for lang in languages:
            if c not in base_kept[lang]:
                continue
            mask = found_in[lang][2][c]
            caps[lang] = capacity(mask & base_pool[lang], mask, stratum[lang], match.ratio)
        ok = {lang: v for lang, v in caps.items() if v >= min_positives}
        if len(ok) < need_langs:
            continue
        n = min(ok.values())
        for lang in ok:
            mask = found_in[lang][2][c]
            pos, neg = draw_matched(mask & base_pool[lang], mask, stratum[lang], order[lang],
                                    n, match.ratio, seed, lang, c)  # fmt: skip
            out[lang][c] = np.concatenate([pos, neg])
    return out


def _copy_to_controls(
    label_frames: list[pd.DataFrame],
    counts: pd.DataFrame,
    controls: list[str],
    order: list[str],
) -> tuple[list[pd.DataFrame], pd.DataFrame]:
    """Each control gets its original's label rows (ids mapped) and counts."""
    from babelscope.corpora.cipher import control_id

    labels = pd.concat(label_frames, ignore_index=True) if label_frames else None
    extra_counts = []
    for code in controls:
        original = control_original(code)
        if labels is not None:
            own = labels[labels["lang"] == original].copy()
            own["id"] = [control_id(code, str(i)) for i in own["id"]]
            own["lang"] = code
            label_frames.append(own)
        c = counts[counts["lang"] == original].copy()
        c["lang"] = code
        extra_counts.append(c)
    counts = pd.concat([counts, *extra_counts], ignore_index=True)
    rank = {lang: i for i, lang in enumerate(order)}
    counts = counts.sort_values("lang", key=lambda s: s.map(rank), kind="stable")
    return label_frames, counts.reset_index(drop=True)


def concepts_kept_in_all(counts: pd.DataFrame, languages: list[str]) -> list[str]:
    """Concepts kept in every one of ``languages`` (in table order)."""
    sub = counts[counts["lang"].isin(languages)]
    ok = sub.groupby("concept", sort=False)["kept"].agg(lambda k: bool(k.all()) and len(k) > 0)
    n_lang = sub.groupby("concept", sort=False)["lang"].nunique()
    return [c for c in ok.index if ok[c] and n_lang[c] == len(set(languages))]


def load_concept_labels(data_dir: str | Path) -> pd.DataFrame:
    """Read ``<data_dir>/concepts.parquet`` (written by ``babelscope data build``)."""
    path = Path(data_dir) / CONCEPTS_FILE
    if not path.exists():
        raise BabelscopeError(
            f"no concept labels at {path}: run `babelscope data build --out {data_dir}` first"
        )
    df = pd.read_parquet(path)
    missing = [c for c in LABEL_COLUMNS if c not in df.columns]
    if missing:
        raise BabelscopeError(f"{path}: missing column(s) {', '.join(missing)}; rebuild the data")
    return df


def concept_pool(labels: pd.DataFrame, lang: str) -> list[str]:
    """The pool of sentence ids of ``lang`` (the same for every concept), in a stable order."""
    sub = labels[labels["lang"] == lang]
    if sub.empty:
        raise BabelscopeError(
            f"no concept labels for '{lang}'; rebuild the data with this language"
        )
    return sorted(sub["id"].astype(str).unique())


def label_matrix(
    labels: pd.DataFrame, lang: str, concepts: list[str] | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """``(ids, concepts, matrix)``: boolean ``(n_ids, n_concepts)`` labels of ``lang``'s pool.

    ``ids`` is :func:`concept_pool`; ``concepts`` defaults to every concept labelled in ``lang``.
    """
    ids = concept_pool(labels, lang)
    sub = labels[labels["lang"] == lang]
    have = list(dict.fromkeys(sub["concept"].astype(str)))
    if concepts is None:
        concepts = have
    else:
        absent = [c for c in concepts if c not in have]
        if absent:
            raise BabelscopeError(
                f"concept(s) {', '.join(absent)} have no labels in '{lang}' (too few positives?)"
            )
        concepts = list(concepts)
    row = {i: k for k, i in enumerate(ids)}
    col = {c: k for k, c in enumerate(concepts)}
    sub = sub[sub["concept"].isin(col)]
    mat = np.zeros((len(ids), len(concepts)), dtype=bool)
    r = sub["id"].astype(str).map(row).to_numpy()
    c = sub["concept"].astype(str).map(col).to_numpy()
    mat[r, c] = sub["label"].to_numpy().astype(bool)
    return ids, concepts, mat


def pool_masks(
    labels: pd.DataFrame, lang: str, ids: list[str], concepts: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """``(matched, base)``: the concepts' matched pools ``(n_ids, n_concepts)`` and the
    language's unmatched pool ``(n_ids,)`` over ``ids`` (from :func:`label_matrix`).

    A data directory built before matched pools has neither column: it is refused with
    the command that rebuilds it.
    """
    missing = [c for c in POOL_COLUMNS if c not in labels.columns]
    if missing:
        raise BabelscopeError(
            "the concept labels have no matched pools (built by an older babelscope): "
            "rebuild the data with `babelscope data build --force`"
        )
    row = {i: k for k, i in enumerate(ids)}
    col = {c: k for k, c in enumerate(concepts)}
    sub = labels[(labels["lang"] == lang) & labels["concept"].isin(col)]
    r = sub["id"].astype(str).map(row).to_numpy()
    c = sub["concept"].astype(str).map(col).to_numpy()
    matched = np.zeros((len(ids), len(concepts)), dtype=bool)
    matched[r, c] = sub["matched"].to_numpy().astype(bool)
    base = np.zeros(len(ids), dtype=bool)
    base[r] = sub["base"].to_numpy().astype(bool)
    return matched, base
