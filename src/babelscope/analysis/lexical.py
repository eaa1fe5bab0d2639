"""Lexical overlap: do a concept's words share tokens across two languages?

Experts can overlap for a lexical reason: *data*, *computer* or Romance cognates are
spelled alike in several languages, and a byte-level BPE splits many words into the same
pieces. For every concept and language pair this module measures the overlap of the
concept's words **as the model's own tokenizer splits them**: the Jaccard index of the
two token-id sets (each word tokenized alone and after a space, since BPE vocabularies
keep both forms; byte fragments, lone letters and space markers are left out). A pair is
*token-sharing* when the sets intersect, *token-disjoint* otherwise (pairs in different
scripts usually are), *unknown* when a language has no words for the concept; the alignment
measures are then
reported for the two kinds of pairs apart (``SPLIT_MEASURES`` of
:mod:`babelscope.analysis.alignment_measures`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

LEXICAL_FILE = "lexical_overlap.parquet"
LEXICAL_COLUMNS = ["concept", "lang_a", "lang_b", "jaccard", "shared", "n_tokens_a", "n_tokens_b"]


def word_forms(forms: list[str]) -> list[str]:
    """The plain words of a concept-table entry: exclusions (``!``) dropped, ``*`` removed."""
    return [f.strip("*") for f in forms if not f.startswith("!") and f.strip("*")]


def _meaningful(piece: str) -> bool:
    """A token that can carry a shared word: at least two characters once whitespace is
    stripped, or one CJK ideograph / kana; never a byte fragment (U+FFFD) or a lone
    letter, space marker or punctuation sign (they would make almost every pair share)."""
    import unicodedata

    text = piece.strip()
    if not text or "\ufffd" in text:
        return False
    if len(text) >= 2:
        return True
    name = unicodedata.name(text, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "HANGUL"))


def token_set(tokenizer: Any, words: list[str]) -> set[int]:
    """Token ids of ``words``, each alone and after a space, without special tokens, and
    only the :func:`_meaningful` ones."""
    out: set[int] = set()
    for w in words:
        for text in (w, " " + w):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            out.update(int(t) for t in ids if _meaningful(tokenizer.decode([int(t)])))
    return out


def lexical_table(
    tokenizer: Any, lexicon: Any, concepts: list[str], langs: list[str]
) -> pd.DataFrame:
    """One row per concept and unordered language pair that both have words: the Jaccard
    index of their token sets and whether they share any token."""
    sets = {
        (c, lang): token_set(tokenizer, word_forms(lexicon.table[c][lang]))
        for c in concepts
        for lang in langs
        if lang in lexicon.table.get(c, {})
    }
    rows = []
    for c in concepts:
        for i, a in enumerate(langs):
            for b in langs[i + 1 :]:
                if (c, a) not in sets or (c, b) not in sets:
                    continue
                sa, sb = sets[(c, a)], sets[(c, b)]
                union = len(sa | sb)
                inter = len(sa & sb)
                rows.append(dict(concept=c, lang_a=a, lang_b=b,
                                 jaccard=inter / union if union else 0.0, shared=inter > 0,
                                 n_tokens_a=len(sa), n_tokens_b=len(sb)))  # fmt: skip
    return pd.DataFrame(rows, columns=LEXICAL_COLUMNS)


def split_mask(table: pd.DataFrame, langs: list[str], concepts: list[str]) -> np.ndarray:
    """(L, C, L) int8, symmetric: 1 where the concept's words share a token in the two
    languages, 0 where they share none, -1 where a language has no words for it (labelled
    by pivot only): unknown items are in neither split."""
    li = {lang: i for i, lang in enumerate(langs)}
    ci = {c: j for j, c in enumerate(concepts)}
    out = np.full((len(langs), len(concepts), len(langs)), -1, dtype=np.int8)
    for r in table.itertuples():
        if r.concept in ci and r.lang_a in li and r.lang_b in li:
            a, c, b = li[r.lang_a], ci[r.concept], li[r.lang_b]
            out[a, c, b] = out[b, c, a] = int(bool(r.shared))
    return out


def data_lexicon(data_dir: str | Path) -> Any:
    """The concept table a data directory was labelled with, control languages' words
    (ciphered) included."""
    from babelscope.concepts.lexicon import ConceptLexicon
    from babelscope.corpora.cipher import control_lexicon, load_ciphers
    from babelscope.corpora.corpus import load_manifest
    from babelscope.errors import BabelscopeError

    table = (load_manifest(data_dir).get("settings") or {}).get("concept_table")
    path = table.get("path") if isinstance(table, dict) else table
    if path and not Path(path).is_file():  # never split by other words than the labels'
        raise BabelscopeError(
            f"the concept table {path} that labelled {data_dir} is gone: put it back or "
            "rebuild the data with `babelscope data build --force`"
        )
    lex = ConceptLexicon.load(path or None)
    ciphers = load_ciphers(data_dir)
    return control_lexicon(lex, ciphers) if ciphers else lex


def lexical_correlation(
    table: pd.DataFrame,
    pairs: pd.DataFrame,
    measure: str = "overlap",
    n_perm: int = 1000,
    seed: int = 0,
    n_boot: int = 500,
) -> dict[str, float]:
    """Spearman correlation, over (concept, language pair) items, between the lexical
    Jaccard and an alignment measure per item (``pairs``: concept, lang_a, lang_b,
    ``measure``), with a permutation p-value (Jaccard shuffled within concepts, two-sided)
    and a 95 % bootstrap interval (concepts resampled, with their items)."""
    from scipy.stats import spearmanr

    from babelscope.analysis.stats import permutation_pvalue

    df = table.merge(pairs, on=["concept", "lang_a", "lang_b"]).dropna(subset=[measure])
    if len(df) < 3 or df["jaccard"].nunique() < 2 or df[measure].nunique() < 2:
        nan = float("nan")
        return {"rho": nan, "ci_lo": nan, "ci_hi": nan, "p_value": nan, "n_items": int(len(df))}
    rho = float(spearmanr(df["jaccard"], df[measure]).statistic)
    rng = np.random.default_rng(seed)
    x = df["jaccard"].to_numpy()
    groups = [np.flatnonzero(df["concept"].to_numpy() == c) for c in df["concept"].unique()]
    null = np.empty(n_perm)
    for r in range(n_perm):
        xp = x.copy()
        for g in groups:
            xp[g] = x[rng.permutation(g)]
        null[r] = spearmanr(xp, df[measure]).statistic
    p = permutation_pvalue(abs(rho), np.abs(null))
    y = df[measure].to_numpy()
    boot = []
    for _ in range(n_boot):
        idx = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        if np.ptp(x[idx]) > 0 and np.ptp(y[idx]) > 0:
            boot.append(spearmanr(x[idx], y[idx]).statistic)
    lo, hi = np.percentile(boot, [2.5, 97.5]) if boot else (np.nan, np.nan)
    return {"rho": rho, "ci_lo": float(lo), "ci_hi": float(hi), "p_value": float(p),
            "n_items": int(len(df))}  # fmt: skip
