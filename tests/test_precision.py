"""Label precision (concepts/precision.py): lexicon labels against the English pivot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from babelscope.analysis.stats.intervals import wilson_interval
from babelscope.concepts.lexicon import ConceptLexicon
from babelscope.concepts.precision import (
    ALL,
    COLUMNS,
    label_precision,
    precision_summary,
)
from babelscope.errors import BabelscopeError
from helpers import tiny_corpus

TABLE = "concept\tlang\twords\n" + "\n".join(
    f"{c}\t{lang}\t{w}"
    for c, words in {
        "water": {"eng": "water", "spa": "agua", "deu": "Wasser"},
        "music": {"eng": "music", "spa": "música", "deu": "Musik"},
    }.items()
    for lang, w in words.items()
)


def _corpus(pairs: list[tuple[str, str]], lang: str = "spa") -> pd.DataFrame:
    """One translation group per (English, other) pair."""
    rows = []
    for i, (eng, other) in enumerate(pairs):
        for code, text in (("eng", eng), (lang, other)):
            rows.append(dict(id=f"t:{code}:{i}", lang=code, text=text, align_id=f"t:{i}"))
    return pd.DataFrame(rows)


def _row(table: pd.DataFrame, concept: str, lang: str) -> pd.Series:
    return table[(table["concept"] == concept) & (table["lang"] == lang)].iloc[0]


def test_known_counts_and_wilson_intervals():
    lex = ConceptLexicon.parse(TABLE)
    pairs = [
        ("The water is cold.", "El agua está fría."),  # tp
        ("The water is warm.", "El agua está caliente."),  # tp
        ("It is cold.", "El agua está fría."),  # fp: the English side lacks the word
        ("Water!", "¡Nada!"),  # fn
        ("Nothing.", "Nada."),  # tn
    ]
    t = label_precision(_corpus(pairs), lex)
    assert list(t.columns) == COLUMNS
    r = _row(t, "water", "spa")
    assert (r["tp"], r["fp"], r["fn"], r["sentences"]) == (2, 1, 1, 5)
    assert (r["lexicon_positives"], r["pivot_positives"]) == (3, 3)
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    # scipy's Wilson interval is the project's own (analysis.stats.intervals)
    lo, hi = wilson_interval(2, 3)
    assert (r["precision_lo"], r["precision_hi"]) == pytest.approx((lo, hi), abs=1e-9)
    # music: never marked on either side -> no precision, no recall (NaN, not 0 or 1)
    m = _row(t, "music", "spa")
    assert m["tp"] == m["fp"] == m["fn"] == 0
    assert np.isnan(m["precision"]) and np.isnan(m["recall"]) and np.isnan(m["precision_lo"])
    # pivot language agrees with itself by construction: no row
    assert "eng" not in set(t["lang"])


def test_pooled_rows_sum_the_cells():
    lex = ConceptLexicon.parse(TABLE)
    t = label_precision(tiny_corpus(["eng", "spa", "deu"]), lex)
    cells = t[t["scope"] == "concept"]
    langs = t[t["scope"] == "language"].set_index("lang")
    assert sorted(langs.index) == ["deu", "spa"] and set(langs["concept"]) == {ALL}
    for lang in ("deu", "spa"):
        for col in ("tp", "fp", "fn", "lexicon_positives"):
            assert langs.loc[lang, col] == cells.loc[cells["lang"] == lang, col].sum()
        assert langs.loc[lang, "sentences"] == 8
    pooled = t[t["scope"] == "all"].iloc[0]
    assert pooled["lang"] == ALL and pooled["tp"] == langs["tp"].sum()
    # exact translations of the words: everything agrees (a known answer)
    assert (cells["fp"] == 0).all() and (cells["fn"] == 0).all()
    assert set(cells.loc[cells["tp"] > 0, "concept"]) == {"water", "music"}


def test_swapped_words_fail_the_measure():
    """A control that must fail: Spanish words of the other concept agree with nothing."""
    swapped = TABLE.replace("water\tspa\tagua", "water\tspa\tmúsica").replace(
        "music\tspa\tmúsica", "music\tspa\tagua"
    )
    t = label_precision(tiny_corpus(["eng", "spa"]), ConceptLexicon.parse(swapped))
    spa = t[(t["scope"] == "language") & (t["lang"] == "spa")].iloc[0]
    assert spa["tp"] == 0 and spa["fp"] > 0 and spa["precision"] == 0.0
    assert spa["precision_hi"] < 0.8  # the interval excludes good precision


def test_only_parallel_text_with_an_english_side_counts():
    lex = ConceptLexicon.parse(TABLE)
    corpus = tiny_corpus(["eng", "spa", "deu"])
    mono = pd.DataFrame(
        [
            dict(id="m:spa:1", lang="spa", text="agua agua", align_id=None),
            dict(id="g:spa:1", lang="spa", text="agua", align_id="g:1"),  # no English side
            dict(id="g:deu:1", lang="deu", text="Wasser", align_id="g:1"),
            dict(id="x:eng~x:0", lang="eng~x", text="wxyz", align_id="tiny:0"),  # a control
        ]
    )
    t = label_precision(pd.concat([corpus, mono], ignore_index=True), lex)
    assert set(t["lang"]) == {"spa", "deu", ALL}
    assert _row(t, "water", "spa")["sentences"] == 8


def test_packaged_table_fixes_the_known_false_positives():
    """The cases that made noisy labels before the fixes agree now (docs/labels.md)."""
    lex = ConceptLexicon.load()
    cases = {
        # English "free" as in free of charge is no longer freedom: no pivot positive that
        # the translation (gratuita) would miss
        ("freedom", "spa"): [
            ("Education shall be free, at least in the elementary stages.",
             "La instrucción será gratuita, al menos en lo concerniente a la elemental."),
            ("The service is free of charge.", "El servicio es gratuito."),
            ("Everyone has the right to rest and leisure.", "Toda persona tiene derecho al tiempo libre."),
            ("All human beings are born free and equal.", "Todos los seres humanos nacen libres e iguales."),
        ],
        # "freely" now counts on the English side
        ("freedom", "deu"): [
            ("Everyone has the right freely to participate.", "Jeder hat das Recht, frei teilzunehmen."),
        ],
        ("water", "jpn"): [("Wed", "水"), ("Wednesday", "水曜日"), ("The water is cold.", "水は冷たい。")],
        ("star", "zho"): [("Wednesday", "星期三"), ("The stars shine.", "星星在闪耀。")],
        ("human", "rus"): [("Everyone has the right to a nationality.", "Каждый человек имеет право на гражданство.")],
        ("god", "ita"): [("The objects of the system.", "Le descrizioni dei campi.")],
    }  # fmt: skip
    for (concept, lang), pairs in cases.items():
        r = _row(label_precision(_corpus(pairs, lang), lex), concept, lang)
        assert r["fp"] == 0 and r["fn"] == 0, (concept, lang, r[["tp", "fp", "fn"]].tolist())
    spa = _row(label_precision(_corpus(cases[("freedom", "spa")]), lex), "freedom", "spa")
    assert spa["tp"] == 1  # born free / nacen libres still agree


def test_summary_is_json_ready_and_orders_the_worst_cells():
    lex = ConceptLexicon.parse(TABLE)
    pairs = [("It is cold.", "El agua está fría.")] * 6 + [("Music.", "Música.")] * 6
    s = precision_summary(label_precision(_corpus(pairs), lex), min_positives=5)
    assert set(s) == {"languages", "all", "lowest"}
    assert s["languages"]["spa"]["tp"] == 6 and s["languages"]["spa"]["fp"] == 6
    assert [(c["concept"], c["lang"]) for c in s["lowest"]] == [("water", "spa"), ("music", "spa")]
    assert s["lowest"][0]["precision"] == 0.0 and s["lowest"][0]["recall"] is None
    empty = precision_summary(pd.DataFrame(columns=COLUMNS))
    assert empty == {"languages": {}, "all": None, "lowest": []}


def test_bad_input_is_one_line_error():
    lex = ConceptLexicon.parse(TABLE)
    with pytest.raises(BabelscopeError, match="corpus column"):
        label_precision(pd.DataFrame({"id": [], "lang": [], "text": []}), lex)
    with pytest.raises(BabelscopeError, match="between 0 and 1"):
        label_precision(tiny_corpus(["eng"]), lex, level=1.5)
    assert label_precision(tiny_corpus(["spa"]), lex).empty  # no English side at all
