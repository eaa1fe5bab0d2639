"""Label precision: how often the concept table's words in a language agree with the English
side of the same translation.

On parallel text (sentences with an ``align_id`` whose group has a pivot-language side),
every sentence gets two labels per concept: the **lexicon** label (the table's words in the
sentence's own language, :mod:`babelscope.concepts.lexicon`) and the **pivot** label (the
table's English words on the English side, :mod:`babelscope.concepts.pivot`). Counting per
(concept, language):

* ``tp``: both positive; ``fp``: lexicon positive, pivot negative; ``fn``: lexicon
  negative, pivot positive;
* **precision** ``tp / (tp + fp)``: of the sentences the table's words mark in this
  language, the share whose translation the English words mark too;
* **recall** ``tp / (tp + fn)``: of the sentences whose English side is marked, the share
  the words of this language find;

each with a Wilson score interval (scipy's ``binomtest(...).proportion_ci``). The pivot
label is not ground truth: an English word that misfires ("free of charge" as freedom)
counts against the other language's recall, and an English form the table lacks counts
against its precision. What the numbers measure is the *agreement* of two noisy labellers
on translations; ``docs/labels.md`` says what follows from it and what does not.

Rows with ``scope = "language"`` pool the counts of every concept of a language
(``concept = "*"``); ``scope = "all"`` pools every language too (``lang = "*"``). Pooled
intervals treat (sentence, concept) pairs as independent draws, which they are not quite
(one sentence serves every concept, one translation group every language): read them as
a lower bound on the uncertainty.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from babelscope.concepts.lexicon import ConceptLexicon
from babelscope.concepts.pivot import pivot_positive_groups
from babelscope.errors import BabelscopeError

PRECISION_FILE = "label_precision.parquet"
ALL = "*"
COUNT_COLUMNS = ["sentences", "lexicon_positives", "pivot_positives", "tp", "fp", "fn"]
COLUMNS = [
    "scope", "concept", "lang", *COUNT_COLUMNS,
    "precision", "precision_lo", "precision_hi", "recall", "recall_lo", "recall_hi",
]  # fmt: skip


def _wilson(k: np.ndarray, n: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``k / n`` per element (NaN where ``n == 0``)."""
    lo = np.full(len(k), np.nan)
    hi = np.full(len(k), np.nan)
    for i, (ki, ni) in enumerate(zip(k.tolist(), n.tolist(), strict=True)):
        if ni > 0:
            ci = binomtest(int(ki), int(ni)).proportion_ci(confidence_level=level, method="wilson")
            lo[i], hi[i] = ci.low, ci.high
    return lo, hi


def _with_rates(df: pd.DataFrame, level: float) -> pd.DataFrame:
    """Add precision and recall with their intervals to rows of counts."""
    tp = df["tp"].to_numpy(np.int64)
    for name, n in (
        ("precision", tp + df["fp"].to_numpy(np.int64)),
        ("recall", tp + df["fn"].to_numpy(np.int64)),
    ):
        with np.errstate(invalid="ignore", divide="ignore"):
            df[name] = np.where(n > 0, tp / np.maximum(n, 1), np.nan)
        df[f"{name}_lo"], df[f"{name}_hi"] = _wilson(tp, n, level)
    return df


def label_precision(
    corpus: pd.DataFrame,
    lexicon: ConceptLexicon,
    pivot_lang: str = "eng",
    level: float = 0.95,
) -> pd.DataFrame:
    """Precision and recall of the lexicon labels of every table language against the pivot.

    ``corpus`` has the columns ``id, lang, text, align_id``; only sentences of alignment
    groups with a ``pivot_lang`` side are counted. Languages not in the table (controls
    such as ``eng~x``) and the pivot language itself (which agrees with itself by
    construction) get no row. Returns the columns :data:`COLUMNS`, per (concept, language)
    in table order, then per language, then the pooled row; empty when the corpus has no
    such parallel text.
    """
    if not 0.0 < level < 1.0:
        raise BabelscopeError(f"confidence level {level} must be between 0 and 1")
    missing = [c for c in ("id", "lang", "text", "align_id") if c not in corpus.columns]
    if missing:
        raise BabelscopeError(
            f"label precision needs the corpus column(s) {', '.join(missing)}: rebuild the data"
        )
    if pivot_lang not in lexicon.languages:
        return pd.DataFrame(columns=COLUMNS)
    groups, positive = pivot_positive_groups(corpus, lexicon, pivot_lang)
    aligned = corpus[corpus["align_id"].notna()]
    aligned = aligned[aligned["align_id"].astype(str).isin(groups)]
    records: list[dict[str, Any]] = []
    for lang in lexicon.languages:
        rows = aligned[aligned["lang"] == lang]
        if lang == pivot_lang or rows.empty:
            continue
        aids = rows["align_id"].astype(str).to_numpy()
        hits = lexicon.label_texts(rows["text"].astype(str).tolist(), lang)
        for concept in lexicon.concepts:
            lex, piv = hits[concept], np.isin(aids, list(positive[concept]))
            records.append(
                dict(scope="concept", concept=concept, lang=lang, sentences=len(rows),
                     lexicon_positives=int(lex.sum()), pivot_positives=int(piv.sum()),
                     tp=int((lex & piv).sum()), fp=int((lex & ~piv).sum()),
                     fn=int((~lex & piv).sum()))
            )  # fmt: skip
    if not records:
        return pd.DataFrame(columns=COLUMNS)
    per = pd.DataFrame(records)
    summed = ["lexicon_positives", "pivot_positives", "tp", "fp", "fn"]
    by_lang = per.groupby("lang", sort=False).agg(
        {"sentences": "first", **dict.fromkeys(summed, "sum")}
    )
    by_lang = by_lang.reset_index().assign(scope="language", concept=ALL)
    pooled = (
        by_lang[["sentences", *summed]]
        .sum()
        .to_frame()
        .T.assign(scope="all", concept=ALL, lang=ALL)
    )
    out = pd.concat([per, by_lang, pooled], ignore_index=True)
    out[COUNT_COLUMNS] = out[COUNT_COLUMNS].astype(np.int64)
    return _with_rates(out, level)[COLUMNS]


def _finite(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def _record(row: pd.Series) -> dict[str, Any]:
    counts = {c: int(row[c]) for c in COUNT_COLUMNS}
    rates = {c: _finite(row[c]) for c in COLUMNS[len(COUNT_COLUMNS) + 3 :]}
    return {**counts, **rates}


def precision_summary(
    table: pd.DataFrame, worst: int = 10, min_positives: int = 5
) -> dict[str, Any]:
    """A JSON-able summary of :func:`label_precision`'s table (for the manifest and stats).

    ``languages``: the pooled counts and rates per language; ``all``: every language
    pooled; ``lowest``: the ``worst`` (concept, language) pairs with at least
    ``min_positives`` lexicon positives, by the upper end of their precision interval
    (the cells whose low precision the data are surest of).
    """
    if table.empty:
        return {"languages": {}, "all": None, "lowest": []}
    langs = table[table["scope"] == "language"]
    pooled = table[table["scope"] == "all"]
    cells = table[(table["scope"] == "concept") & (table["lexicon_positives"] >= min_positives)]
    cells = cells.sort_values(["precision_hi", "lexicon_positives"], ascending=[True, False])
    return {
        "languages": {str(r["lang"]): _record(r) for _, r in langs.iterrows()},
        "all": _record(pooled.iloc[0]) if len(pooled) else None,
        "lowest": [
            {"concept": str(r["concept"]), "lang": str(r["lang"]), **_record(r)}
            for _, r in cells.head(worst).iterrows()
        ],
    }
