"""Judging outputs: offline language identification and concept hits."""

from __future__ import annotations

import socket

import pytest

from babelscope.analysis.langid import (
    UND,
    LanguageJudge,
    clean_text,
    concept_hit,
    concept_hits,
    detect_language,
    script_share,
)
from babelscope.errors import BabelscopeError

CLEAR = {
    "eng": "The children walked to school together while the rain kept falling on the old town.",
    "spa": "Los niños caminaron juntos a la escuela mientras la lluvia seguía cayendo sobre el pueblo.",
    "deu": "Die Kinder gingen zusammen zur Schule, während der Regen weiter auf die alte Stadt fiel.",
    "fra": "Les enfants sont allés ensemble à l'école pendant que la pluie tombait sur la vieille ville.",
    "por": "As crianças foram juntas para a escola enquanto a chuva continuava a cair sobre a cidade.",
    "rus": "Дети вместе шли в школу, а дождь всё падал на старый город.",
    "zho": "孩子们一起走路去学校，雨一直下在这座古老的城市上。",
    "jpn": "子供たちは一緒に学校へ歩いて行き、雨は古い町に降り続けていた。",
}


@pytest.mark.parametrize("backend", ["fasttext", "cld2"])
def test_clear_sentences(backend):
    judge = LanguageJudge(backend=backend)
    for lang, text in CLEAR.items():
        g = judge.detect(text)
        assert g.lang == lang, (backend, lang, g)
        assert 0.5 <= g.confidence <= 1.0
        assert g.method == backend


def test_undetermined_below_bar_and_for_little_text():
    assert detect_language("").lang == UND
    assert detect_language("!!! 123 ...").lang == UND
    assert detect_language("\ufffd\x07\x15").lang == UND
    strict = LanguageJudge(min_confidence=1.0)
    g = strict.detect("ok sure")
    assert g.lang == UND and g.raw  # the identifier's guess is kept beside "und"


def test_han_only_text_is_chinese_not_japanese():
    assert detect_language("河里的水很冷。").lang == "zho"


def test_clean_text():
    assert clean_text("a\x00b\ufffd  c\n") == "a b c"


def test_offline(monkeypatch):
    """The lite model ships with the package: nothing is fetched."""

    def no_network(*args, **kwargs):
        raise AssertionError("language identification tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    judge = LanguageJudge()  # a fresh judge loads the model now, with the network blocked
    assert judge.detect(CLEAR["spa"]).lang == "spa"
    assert judge.detect(CLEAR["deu"]).method == "fasttext"


def test_fallback_to_cld2(monkeypatch):
    judge = LanguageJudge()

    def broken(text):
        raise RuntimeError("model missing")

    monkeypatch.setattr(judge, "_detect_fasttext", broken)
    g = judge.detect(CLEAR["spa"])
    assert (g.lang, g.method) == ("spa", "cld2")


def test_bad_settings():
    with pytest.raises(BabelscopeError, match="confidence bar"):
        LanguageJudge(min_confidence=2)
    with pytest.raises(BabelscopeError, match="unknown language identifier"):
        LanguageJudge(backend="langid")  # type: ignore[arg-type]


def _lexicon():
    from babelscope.concepts.lexicon import ConceptLexicon

    return ConceptLexicon.parse(
        "concept\tlang\twords\n"
        "water\teng\twater\n"
        "water\tspa\tagua\n"
        "water\tzho\t水\n"
        "fire\teng\tfire\n"
        "fire\tspa\tfuego\n"
        "fire\tzho\t火\n"
    )


def test_concept_hits_in_every_language():
    lex = _lexicon()
    assert concept_hits("El agua está fría.", "water", lex) == ["spa"]
    assert concept_hits("The water is cold.", "water", lex) == ["eng"]
    assert not concept_hit("The water is cold.", "fire", lex)
    # Code-switched output counts, in each language it uses; no language ID needed.
    assert sorted(concept_hits("the agua and the water", "water", lex)) == ["eng", "spa"]
    assert concept_hits("河里的水很冷。", "water", lex) == ["zho"]
    # A single CJK character counts only in text mostly written in that script: in
    # gibberish it would match by chance.
    assert concept_hits("qx zz 水 blorp fnord", "water", lex) == []
    assert concept_hits("水水水 qx", "water", lex) == ["zho"]
    with pytest.raises(BabelscopeError, match="unknown concept"):
        concept_hit("x", "earth", lex)


def test_longer_cjk_forms_count_anywhere():
    from babelscope.concepts.lexicon import ConceptLexicon

    lex = ConceptLexicon.parse("concept\tlang\twords\nmusic\teng\tmusic\nmusic\tzho\t音乐|乐\n")
    assert concept_hits("some text 音乐 in between", "music", lex) == ["zho"]
    assert concept_hits("some text 乐 in between", "music", lex) == []


def test_script_share():
    assert script_share("河里的水", "zho") == 1.0
    assert script_share("ab 水", "zho") == pytest.approx(1 / 3)
    assert script_share("anything", "spa") == 1.0
