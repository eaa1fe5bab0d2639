"""Concept labels: pivot + lexicon, the shared pool per language, counts, label matrices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from babelscope.concepts.labels import (
    build_concept_labels,
    concept_pool,
    concepts_kept_in_all,
    label_matrix,
    load_concept_labels,
)
from babelscope.errors import BabelscopeError
from helpers import tiny_corpus


def mono_corpus(n: int = 40) -> pd.DataFrame:
    """Monolingual text: water in every 3rd sentence, war in every 4th, per language."""
    words = {"eng": ("water", "war", "stone"), "spa": ("agua", "guerra", "piedra")}
    rows = []
    for lang, (w1, w2, w3) in words.items():
        for i in range(n):
            parts = [w3] + ([w1] if i % 3 == 0 else []) + ([w2] if i % 4 == 0 else [])
            rows.append(dict(id=f"m:{lang}:{i}", lang=lang, script="Latn",
                             text=f"Sentence {i} about " + " and ".join(parts) + ".",
                             source="mono", align_id=None, split="train"))  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture
def table(tmp_path):
    p = tmp_path / "t.tsv"
    p.write_text(
        "concept\tlang\twords\n"
        "water\teng\twater|waters\nwater\tspa\tagua|aguas\n"
        "war\teng\twar|wars\nwar\tspa\tguerra|guerras\n"
        "sun\teng\tsun\nsun\tspa\tsol\n",
        encoding="utf-8",
    )
    return p


def test_pool_is_the_same_for_every_concept(table):
    labels, counts = build_concept_labels(
        mono_corpus(), ["eng", "spa"], table=table, min_positives=5, pool_size=30
    )
    assert list(labels.columns) == ["concept", "lang", "id", "label", "method", "matched", "base"]
    for lang in ("eng", "spa"):
        sub = labels[labels["lang"] == lang]
        pools = {c: set(g["id"]) for c, g in sub.groupby("concept")}
        assert set(pools) == {"water", "war"}  # sun has no positives: not kept
        assert len({frozenset(p) for p in pools.values()}) == 1
        assert len(next(iter(pools.values()))) == 30
    assert set(labels["method"]) == {"lexicon"}
    row = counts[(counts["concept"] == "water") & (counts["lang"] == "eng")].iloc[0]
    assert row["found"] == 14 and row["positives"] == 14 and row["negatives"] == 16
    assert bool(row["kept"])
    assert concepts_kept_in_all(counts, ["eng", "spa"]) == ["water", "war"]


def test_seeded_and_capped(table):
    a, _ = build_concept_labels(mono_corpus(), ["eng"], table=table, min_positives=5,
                                pool_size=20, max_positives=8, seed=1)  # fmt: skip
    b, _ = build_concept_labels(mono_corpus(), ["eng"], table=table, min_positives=5,
                                pool_size=20, max_positives=8, seed=1)  # fmt: skip
    pd.testing.assert_frame_equal(a, b)
    water = a[(a["concept"] == "water")]
    assert water["label"].sum() >= 8


def test_pivot_and_lexicon_combined():
    corpus = pd.concat([tiny_corpus(["eng", "spa", "deu"]), mono_corpus(20)], ignore_index=True)
    labels, counts = build_concept_labels(corpus, ["eng", "spa", "deu"], min_positives=1)
    water = labels[(labels["concept"] == "water") & (labels["lang"] == "deu")]
    assert water.loc[water["id"] == "tiny:deu:0", "label"].item() == 1
    assert water.loc[water["id"] == "tiny:deu:0", "method"].item() == "pivot"
    spa = labels[(labels["concept"] == "water") & (labels["lang"] == "spa")]
    assert set(spa["method"]) == {"pivot", "lexicon"}
    assert spa.loc[spa["id"] == "m:spa:3", "label"].item() == 1


def test_label_matrix_shape_and_pool(table):
    labels, _ = build_concept_labels(mono_corpus(), ["eng", "spa"], table=table,
                                     min_positives=5, pool_size=30)  # fmt: skip
    ids, concepts, mat = label_matrix(labels, "spa")
    assert ids == concept_pool(labels, "spa")
    assert concepts == ["water", "war"]
    assert mat.shape == (30, 2) and mat.dtype == bool
    assert mat[ids.index("m:spa:0")].all()  # sentence 0 has both
    ids2, c2, m2 = label_matrix(labels, "spa", ["war"])
    assert m2.shape == (30, 1) and np.array_equal(m2[:, 0], mat[:, 1])
    with pytest.raises(BabelscopeError, match="sun"):
        label_matrix(labels, "spa", ["sun"])


def test_errors(table, tmp_path):
    with pytest.raises(BabelscopeError, match="no text in deu"):
        build_concept_labels(mono_corpus(), ["eng", "deu"], table=table)
    wide = tmp_path / "wide.tsv"
    wide.write_text(table.read_text() + "water\tfra\teau\nwar\tfra\tguerre\nsun\tfra\tsoleil\n")
    with pytest.raises(BabelscopeError, match="fra that the corpus lacks"):
        build_concept_labels(mono_corpus(), ["eng"], table=wide)
    with pytest.raises(BabelscopeError, match="no concept labels"):
        load_concept_labels(tmp_path)


def test_concepts_found_in_too_few_languages_are_left_out(tmp_path):
    # 'water' is found in English and Spanish; 'war' only in English (its Spanish word is
    # a non-word here), so with two languages required it is left out.
    p = tmp_path / "t.tsv"
    p.write_text(
        "concept\tlang\twords\n"
        "water\teng\twater\nwater\tspa\tagua\n"
        "war\teng\twar\nwar\tspa\tguerrax\n",
        encoding="utf-8",
    )
    labels, counts = build_concept_labels(
        mono_corpus(), ["eng", "spa"], table=p, min_positives=5, min_languages=2
    )
    assert set(labels["concept"]) == {"water"}
    war = counts[(counts["concept"] == "war") & (counts["lang"] == "eng")].iloc[0]
    assert war["found"] == 10 and not bool(war["kept"])
    # With one language enough, English keeps 'war'.
    labels, _ = build_concept_labels(
        mono_corpus(), ["eng", "spa"], table=p, min_positives=5, min_languages=1
    )
    assert set(labels.loc[labels["lang"] == "eng", "concept"]) == {"water", "war"}
