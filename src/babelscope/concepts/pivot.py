"""Pivot labelling of a parallel corpus.

A concept is a set of words in the pivot language (English by default). A sentence whose
pivot-language translation (same ``align_id``) contains one of them is positive in every
language of its alignment group; the other sentences of groups that have a pivot side are
negative. Sentences without ``align_id``, or in groups without a pivot side, get no pivot
label (lexicon labelling covers them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from babelscope.concepts.lexicon import ConceptLexicon
from babelscope.errors import BabelscopeError

LABEL_COLUMNS = ["concept", "lang", "id", "label", "method"]


def _as_lexicon(
    concepts: Mapping[str, Sequence[str]] | ConceptLexicon, pivot_lang: str
) -> ConceptLexicon:
    if isinstance(concepts, ConceptLexicon):
        if pivot_lang not in concepts.languages:
            raise BabelscopeError(
                f"concept table {concepts.source} has no words in the pivot language '{pivot_lang}'"
            )
        return concepts
    return ConceptLexicon.from_words(concepts, lang=pivot_lang)


def pivot_positive_groups(
    corpus: pd.DataFrame,
    concepts: Mapping[str, Sequence[str]] | ConceptLexicon,
    pivot_lang: str = "eng",
) -> tuple[set[str], dict[str, set[str]]]:
    """Alignment groups with a pivot side, and for each concept the groups whose pivot side has it."""
    lex = _as_lexicon(concepts, pivot_lang)
    aligned = corpus[corpus["align_id"].notna()]
    pivot = aligned[aligned["lang"] == pivot_lang]
    groups = set(pivot["align_id"].astype(str))
    texts = pivot["text"].astype(str).tolist()
    aids = pivot["align_id"].astype(str).to_numpy()
    hits = lex.label_texts(texts, pivot_lang) if texts else {}
    positive = {c: set(aids[hits[c]]) if texts else set() for c in lex.concepts}
    return groups, positive


def pivot_labels(
    corpus: pd.DataFrame,
    concepts: Mapping[str, Sequence[str]] | ConceptLexicon,
    pivot_lang: str = "eng",
) -> pd.DataFrame:
    """Label every sentence of alignment groups that have a ``pivot_lang`` side.

    ``concepts`` is ``{concept: [pivot-language words]}`` (word syntax of the concept table:
    ``stem*``, ``*head``, ``!exclusion``) or a :class:`ConceptLexicon` (its ``pivot_lang``
    words are used). Returns columns concept, lang, id, label (int8 0/1), method="pivot".
    """
    for col in ("id", "lang", "text", "align_id"):
        if col not in corpus.columns:
            raise BabelscopeError(f"pivot labelling needs a '{col}' column in the corpus")
    groups, positive = pivot_positive_groups(corpus, concepts, pivot_lang)
    rows = corpus[corpus["align_id"].notna()]
    rows = rows[rows["align_id"].astype(str).isin(groups)]
    if rows.empty:
        return pd.DataFrame(
            {
                "concept": pd.Series(dtype=str),
                "lang": pd.Series(dtype=str),
                "id": pd.Series(dtype=str),
                "label": pd.Series(dtype=np.int8),
                "method": pd.Series(dtype=str),
            }
        )
    aids = rows["align_id"].astype(str)
    frames = []
    for concept, pos in positive.items():
        frames.append(
            pd.DataFrame(
                {
                    "concept": concept,
                    "lang": rows["lang"].astype(str).to_numpy(),
                    "id": rows["id"].astype(str).to_numpy(),
                    "label": aids.isin(pos).to_numpy().astype(np.int8),
                    "method": "pivot",
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[LABEL_COLUMNS]
