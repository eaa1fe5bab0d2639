"""Pivot labelling: the English side's label carries over to every translation."""

from __future__ import annotations

import pandas as pd

from babelscope.concepts.lexicon import ConceptLexicon
from babelscope.concepts.pivot import LABEL_COLUMNS, pivot_labels
from helpers import tiny_corpus


def test_labels_carry_over_to_every_translation():
    corpus = tiny_corpus()
    labels = pivot_labels(corpus, {"water": ["water"], "war": ["war", "wars"]})
    assert list(labels.columns) == LABEL_COLUMNS
    assert set(labels["method"]) == {"pivot"}
    pos = labels[(labels["concept"] == "water") & (labels["label"] == 1)]
    # sentence 0 ("The water in the river is cold.") in all four languages
    assert sorted(pos["id"]) == sorted(f"tiny:{lang}:0" for lang in ("eng", "spa", "deu", "zho"))
    war = labels[(labels["concept"] == "war") & (labels["label"] == 1)]
    assert set(war["id"].str.rsplit(":", n=1).str[1]) == {"2"}
    # every sentence of every group is labelled, negatives included
    assert len(labels) == 2 * len(corpus)
    assert labels["label"].dtype == "int8"


def test_groups_without_english_and_monolingual_rows_get_no_pivot_label():
    corpus = tiny_corpus(["spa", "deu"])
    extra = pd.DataFrame([dict(id="m:1", lang="eng", script="Latn", text="water", source="m",
                               align_id=None, split="train")])  # fmt: skip
    labels = pivot_labels(pd.concat([corpus, extra]), {"water": ["water"]})
    assert labels.empty


def test_lexicon_as_concepts_and_word_syntax():
    corpus = tiny_corpus(["eng", "deu"])
    lex = ConceptLexicon.load()
    labels = pivot_labels(corpus, lex)
    city = labels[(labels["concept"] == "city") & (labels["label"] == 1)]
    assert set(city["id"]) == {"tiny:eng:2", "tiny:deu:2"}
    # stems work for pivot words too: "child*" finds "Children"
    labels = pivot_labels(corpus, {"child": ["child*"]})
    assert set(labels.loc[labels["label"] == 1, "id"]) == {"tiny:eng:6", "tiny:deu:6"}
