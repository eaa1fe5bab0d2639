"""Control languages: the cipher is a bijection, seeded, disjoint in tokens from its
original, keeps every concept label, and the pipeline treats the control as a language."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from babelscope.concepts.labels import build_concept_labels
from babelscope.concepts.lexicon import ConceptLexicon
from babelscope.corpora.cipher import (
    add_controls,
    char_class,
    control_id,
    control_lexicon,
    detect_control,
    load_ciphers,
    make_cipher,
)
from babelscope.errors import BabelscopeError
from babelscope.languages import (
    check_languages,
    control_code,
    control_original,
    name_of,
    script_of,
)
from helpers import TINY_TEXTS, tiny_corpus

ENG = TINY_TEXTS["eng"] + [
    "Über 42 Leute, 3.5% — “quoted” (yes)!",
    "Café naïve résumé; THE END?",
]


def _words(texts):
    return {w for t in texts for w in t.split()}


@pytest.mark.parametrize("symbols", ["keep", "cipher"])
def test_cipher_is_a_bijection_on_texts_and_words(symbols):
    c = make_cipher("eng", ENG, seed=3, symbols=symbols)
    assert len(set(c.table.values())) == len(c.table)  # injective on characters
    for t in ENG:
        assert c.decode(c.encode(t)) == t
        assert len(c.encode(t)) == len(t)  # same characters, one for one
    words = sorted(_words(ENG))
    ciphered = [c.encode(w) for w in words]
    assert len(set(ciphered)) == len(words)  # distinct words stay distinct
    assert [c.decode(w) for w in ciphered] == words


def test_cipher_keeps_or_ciphers_symbols_and_keeps_whitespace():
    keep = make_cipher("eng", ENG, symbols="keep")
    full = make_cipher("eng", ENG, symbols="cipher")
    text = ENG[-2]
    for ch_in, ch_keep, ch_full in zip(text, keep.encode(text), full.encode(text), strict=True):
        cls = char_class(ch_in)
        if ch_in.isspace():
            assert ch_keep == ch_full == ch_in
        elif cls == "letter":
            assert ch_keep != ch_in and ch_full != ch_in
        elif cls in ("digit", "symbol"):
            assert ch_keep == ch_in and ch_full != ch_in
            assert char_class(ch_full) == cls  # a digit stays a digit, a mark a mark
    # Capitals map to the capital of their lowercase's target (case is kept).
    assert keep.encode("The") == keep.encode("the")[0].upper() + keep.encode("the")[1:]


def test_cipher_is_deterministic_for_a_seed():
    a = make_cipher("eng", ENG, seed=0)
    assert make_cipher("eng", list(reversed(ENG)), seed=0).table == a.table
    assert make_cipher("eng", ENG, seed=1).table != a.table
    assert make_cipher("spa", TINY_TEXTS["spa"], seed=0).table != a.table
    again = type(a).from_json(json.loads(json.dumps(a.to_json())))
    assert again == a and again.encode(ENG[0]) == a.encode(ENG[0])


def test_cipher_avoids_every_character_of_the_corpus():
    corpus_chars = set("".join(t for v in TINY_TEXTS.values() for t in v))
    c = make_cipher("eng", ENG, symbols="cipher", avoid=corpus_chars)
    assert not set(c.table.values()) & (corpus_chars | set("".join(ENG)))


def test_languages_without_spaces_cannot_have_a_control():
    with pytest.raises(BabelscopeError, match="without spaces"):
        make_cipher("zho", TINY_TEXTS["zho"])
    with pytest.raises(BabelscopeError, match="keep or cipher"):
        make_cipher("eng", ENG, symbols="drop")  # type: ignore[arg-type]


def test_control_codes_are_languages():
    assert control_code("eng") == "eng~x" and control_original("eng~x") == "eng"
    assert control_original("eng") is None
    assert check_languages(["eng", "ENG~x", "eng~x"]) == ["eng", "eng~x"]
    assert script_of("eng~x") == "Armn" and name_of("spa~x") == "Spanish cipher"
    with pytest.raises(BabelscopeError, match="unknown control language 'xx~x'"):
        check_languages(["xx~x"])
    with pytest.raises(BabelscopeError, match="choose from"):
        check_languages(["spa~x"], known={"eng", "eng~x"})


@pytest.mark.parametrize("symbols", ["keep", "cipher"])
def test_control_shares_no_token_with_its_original(tmp_path, symbols):
    """Under the pipeline's own trained tokenizer, the control and its original share
    BOS, and otherwise only tokens without a letter: the anchors (digits, punctuation)
    when symbols are kept, and lone UTF-8 continuation bytes, which byte-level BPE keeps
    for characters it did not merge (different characters in the two languages)."""
    from babelscope.pretrain.config import TokenizerConfig
    from babelscope.pretrain.tokenizer import BOS_ID, train_tokenizer

    corpus = tiny_corpus(["eng", "spa", "deu"])
    extra = pd.DataFrame(
        dict(id=[f"x:eng:{i}" for i in range(2)], lang="eng", script="Latn", text=ENG[-2:],
             source="x", align_id=None, split="train")
    )  # fmt: skip
    corpus = pd.concat([corpus, extra], ignore_index=True)
    full, (cipher,) = add_controls(corpus, ["eng"], seed=0, symbols=symbols)
    texts = {lang: g["text"].tolist() * 5 for lang, g in full.groupby("lang")}
    tok = train_tokenizer(texts, TokenizerConfig(vocab_size=600, min_frequency=1), 64)

    def token_set(lang):
        return {i for t in texts[lang] for i in tok(t)["input_ids"]}

    shared = token_set("eng") & token_set("eng~x")
    assert BOS_ID in shared
    strings = {i: tok.decode([i]) for i in shared - {BOS_ID}}
    assert not any(char_class(ch) == "letter" for s in strings.values() for ch in s)
    if symbols == "cipher":
        assert all(not s.replace("\ufffd", "").strip() for s in strings.values())
    else:
        assert {".", ","} <= set(strings.values())  # the anchors are shared

    # No word with a letter is shared.
    def words(lang):
        return {w for t in texts[lang] for w in t.split() if any(ch.isalpha() for ch in w)}

    assert words("eng") and not words("eng") & words("eng~x")


def _labelled_corpus():
    corpus = tiny_corpus(["eng", "spa", "deu"])
    full, ciphers = add_controls(corpus, ["spa"], seed=0)
    table = ConceptLexicon.parse(
        "concept\tlang\twords\n"
        "water\teng\twater\nwater\tspa\tagua\nwater\tdeu\twasser\n"
        "city\teng\tcity|cities\ncity\tspa\tciudad*\ncity\tdeu\tstadt\n"
    )
    return full, ciphers, table


def test_control_keeps_every_concept_label(tmp_path, monkeypatch):
    full, ciphers, table = _labelled_corpus()
    monkeypatch.setattr(ConceptLexicon, "load", classmethod(lambda cls, path=None: table))
    langs = ["eng", "spa", "deu", "spa~x"]
    labels, counts = build_concept_labels(full, langs, min_positives=1, pool_size=8)
    orig = labels[labels["lang"] == "spa"].reset_index(drop=True)
    ctrl = labels[labels["lang"] == "spa~x"].reset_index(drop=True)
    assert len(orig) and len(ctrl) == len(orig)
    assert ctrl["id"].tolist() == [control_id("spa~x", i) for i in orig["id"]]
    pd.testing.assert_frame_equal(
        ctrl.drop(columns=["lang", "id"]), orig.drop(columns=["lang", "id"])
    )
    c_o = counts[counts["lang"] == "spa"].drop(columns="lang").reset_index(drop=True)
    c_c = counts[counts["lang"] == "spa~x"].drop(columns="lang").reset_index(drop=True)
    pd.testing.assert_frame_equal(c_o, c_c)
    assert set(ctrl["id"]) <= set(full["id"])  # every labelled control sentence exists
    with pytest.raises(BabelscopeError, match="needs its original 'spa'"):
        build_concept_labels(full, ["eng", "deu", "spa~x"], min_positives=1)


def test_control_rows_and_lexicon():
    full, (cipher,), table = _labelled_corpus()
    orig = full[full["lang"] == "spa"].set_index("id")
    ctrl = full[full["lang"] == "spa~x"]
    assert len(ctrl) == len(orig) and (ctrl["script"] == "Armn").all()
    for _, r in ctrl.iterrows():
        o = orig.loc[r["id"].split(":", 1)[1]]
        assert r["text"] == cipher.encode(o["text"])
        assert (r["split"], r["align_id"], r["source"]) == (o["split"], o["align_id"], o["source"])
    assert detect_control(ctrl["text"].iloc[0], [cipher]) == "spa~x"
    assert detect_control(orig["text"].iloc[0], [cipher]) is None
    assert detect_control("123 !", [cipher]) is None
    lex = control_lexicon(table, [cipher])
    assert lex.words("city", "spa~x") == [cipher.encode("ciudad") + "*"]
    hits = lex.label_texts(ctrl["text"].tolist(), "spa~x")
    want = table.label_texts(
        orig.loc[[i.split(":", 1)[1] for i in ctrl["id"]], "text"].tolist(), "spa"
    )
    for c in ("water", "city"):
        assert np.array_equal(hits[c], want[c]) and hits[c].any()


def test_build_adds_the_control(tmp_path, monkeypatch):
    from babelscope.corpora import build as build_mod
    from babelscope.corpora.corpus import load_corpus
    from babelscope.corpora.sources import SourceText

    def load(languages):
        return [
            SourceText(lang=lang, text=t, key=str(i), align_id=f"g{i}", group=f"g{i}")
            for lang in languages
            for i, t in enumerate(TINY_TEXTS[lang] * 3)
        ]

    monkeypatch.setattr(build_mod, "registry", lambda: {"django": (load, lambda: "1")})
    out = build_mod.build_corpus(
        tmp_path / "d", languages=["eng", "spa"], sources=["django"], controls=None, min_positives=1
    )
    corpus = load_corpus(out)
    assert sorted(corpus["lang"].unique()) == ["eng", "eng~x", "spa"]  # the default control
    (cipher,) = load_ciphers(out)
    assert cipher.code == "eng~x" and cipher.symbols == "keep"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["languages"] == ["eng", "spa", "eng~x"] and manifest["settings"][
        "controls"
    ] == ["eng"]
    # A control code among the languages does the same; none at all with controls=[].
    out2 = build_mod.build_corpus(tmp_path / "d2", languages=["eng", "spa", "spa~x"],
                                  sources=["django"], controls=[], min_positives=1)  # fmt: skip
    assert set(load_corpus(out2)["lang"]) == {"eng", "spa", "spa~x"}
    out3 = build_mod.build_corpus(tmp_path / "d3", languages=["eng"], sources=["django"],
                                  controls=[], min_positives=1)  # fmt: skip
    assert set(load_corpus(out3)["lang"]) == {"eng"}
    with pytest.raises(BabelscopeError, match="not among the languages"):
        build_mod.build_corpus(tmp_path / "d4", languages=["eng"], sources=["django"],
                               controls=["spa"], min_positives=1)  # fmt: skip


def test_config_turns_one_control_on():
    from babelscope.config import DataConfig, load_config

    cfg = load_config(None)
    assert cfg.data.control_originals == ["eng"] and cfg.data.all_languages[-1] == "eng~x"
    assert DataConfig(controls=[]).all_languages == DataConfig().languages
    assert DataConfig(languages=["spa", "fra"]).control_originals == []
    # A given data dir (build = false) has the controls it was built with: none by default.
    assert DataConfig(build=False).control_originals == []
    assert DataConfig(build=False, controls=["eng"]).all_languages[-1] == "eng~x"
    assert DataConfig(controls=["spa~x"]).control_originals == ["spa"]
    with pytest.raises(BabelscopeError, match="unknown language code"):
        DataConfig(controls=["xx"])


def test_experts_treat_the_control_as_a_language(tmp_path, tiny_series_dir):
    from babelscope.analysis.experts import ExpertSettings, run_experts
    from babelscope.checkpoints.series import resolve_series
    from babelscope.corpora.corpus import save_corpus

    full, _, _ = _labelled_corpus()
    d = tmp_path / "data"
    save_corpus(full, d)
    rows = []
    for _, r in full.iterrows():
        i = int(r["id"].rsplit(":", 1)[1])
        rows.append(dict(concept="water", lang=r["lang"], id=r["id"], label=int(i in (0, 3)),
                         method="pivot"))  # fmt: skip
    pd.DataFrame(rows).assign(matched=True, base=True).to_parquet(d / "concepts.parquet")
    series = resolve_series(str(tiny_series_dir))
    df = run_experts(series, d, tmp_path / "run", ExpertSettings(top_k_store=3, min_positives=1))
    assert "spa~x" in set(df["lang"])


def test_the_pipeline_treats_the_control_like_any_language(tmp_path, tiny_series_dir):
    """probe, experts and alignment on a data dir with eng~x: the control is a language
    of every result, and the original -> control pair can be read and drawn."""
    from babelscope.config import load_config
    from babelscope.corpora.build import build_corpus
    from babelscope.pipeline import run_study
    from babelscope.report.figures.control import control_table, plot_control_alignment

    langs = ["eng", "spa", "deu"]
    tsv = tmp_path / "parallel.tsv"
    rows = ["\t".join(TINY_TEXTS[lg][i] for lg in langs) for i in range(len(TINY_TEXTS["eng"]))]
    tsv.write_text("\t".join(langs) + "\n" + "\n".join(rows) + "\n")
    data = build_corpus(tmp_path / "data", languages=langs, sources=(), user=tsv,
                        min_positives=1, controls=["eng"])  # fmt: skip
    cfg = tmp_path / "study.toml"
    cfg.write_text(f"""
name = "ctrl"
out = "{tmp_path / "run"}"
stages = ["data", "pretrain", "inspect", "probe", "experts", "align"]
[data]
dir = "{data}"
build = false
languages = {json.dumps(langs)}
controls = ["eng"]
[model]
series = "{tiny_series_dir}"
device = "cpu"
[probe]
sentences_per_language = 6
tokens_per_language = 24
seeds = [0]
n_jobs = 1
[experts]
min_positives = 1
top_k_store = 4
[align]
k = 2
""")
    run = run_study(load_config(cfg))
    res = run.dir / "results"
    assert "eng~x" in set(pd.read_parquet(res / "experts.parquet")["lang"])
    assert "eng~x" in set(pd.read_parquet(res / "alignment_overlap.parquet")["lang_a"])
    assert "eng~x" in json.dumps(json.loads((run.dir / "checkpoints.json").read_text()))
    assert "eng → eng~x" in control_table(run.dir)
    assert plot_control_alignment(run.dir)
