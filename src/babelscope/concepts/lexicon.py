"""Lexicon labelling: does a sentence contain one of a concept's words in its language?

The concept table (``concepts.tsv``, packaged with babelscope; a user may pass their own)
has three tab-separated columns ``concept``, ``lang``, ``words``; the words of one concept
in one language are separated by ``|`` and list the inflected forms to accept. Syntax of
one word (documented again at the top of the packaged table):

``form``
    the form itself, as a whole word: ``war`` matches "the war." but not "warm" or
    "toward". Several words (``human rights``) match across any run of spaces.
``stem*``
    a word *starting with* ``stem`` (for agglutinative languages: Turkish ``savaş*``
    matches "savaşın", "savaşlar"). The left edge is still a word boundary.
``*head``
    a word *ending with* ``head`` (German and Dutch compounds: ``*zellen`` matches
    "Nervenzellen"); ``*part*`` is a word containing ``part``.
``!form``
    an exclusion: occurrences of ``form`` are blanked out before matching, so a word of
    the concept inside it does not count (Chinese ``水`` with ``!水平`` "level").

Matching is on NFC-normalised, case-folded text (Turkish dotted/dotless i handled).
Languages written without spaces (Chinese, Japanese, Thai: ``languages.NO_SPACE_SCRIPTS``)
match by substring; there a trailing ``*`` changes nothing. Elsewhere a word boundary is
any character that is not a letter, digit or combining mark (so Devanagari vowel signs
and Arabic harakat stay inside their word). Arabic text and forms are normalised (harakat
and tatweel removed, alef variants unified) and a word may carry the proclitics
``و ف`` (and, or) followed by ``ب ك ل`` (with, like, to); ``ل`` + ``ال`` written ``لل``
is recognised too. Single CJK characters are allowed, but exclusions should list the
common longer words that contain them with another meaning. In those languages a text of
one character alone matches nothing: a lone ``水`` is a calendar's abbreviation of
Wednesday, not a sentence about water.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from babelscope.errors import BabelscopeError
from babelscope.io import sha256_bytes
from babelscope.languages import NO_SPACE_SCRIPTS, is_known, script_of

HEADER = ("concept", "lang", "words")
PACKAGED_TABLE = "concepts.tsv"

# Arabic: harakat (U+064B-U+065F), superscript alef, tatweel; alef variants -> bare alef.
_ARABIC_MARKS = re.compile("[\u064b-\u065f\u0670\u0640]")
_ARABIC_ALEF = str.maketrans({"أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا"})
# Proclitics allowed before an Arabic word: conjunction, then preposition.
_ARABIC_PROCLITIC = "(?:[وف]?[بكل]?)"


@lru_cache(maxsize=1)
def _word_class() -> str:
    """A regex class of word characters: ``\\w`` plus every combining mark.

    Python's ``\\w`` leaves out marks (Devanagari vowel signs, Arabic harakat), which
    would put a word boundary in the middle of a Hindi word.
    """
    ranges: list[tuple[int, int]] = []
    for cp in range(sys.maxunicode + 1):
        if unicodedata.category(chr(cp))[0] == "M":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    parts = "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
        for a, b in ranges
    )
    return f"[\\w{parts}]"


def normalize(text: str, lang: str) -> str:
    """The form text and table words are compared in: NFC, case-folded, per-script fixes."""
    text = unicodedata.normalize("NFC", text)
    if lang in ("tur", "aze"):
        # Turkish capitals: İ -> i, I -> ı (casefold would give i̇ and i).
        text = text.replace("İ", "i").replace("I", "ı")
    text = text.casefold()
    if script_of(lang) == "Arab":
        text = _ARABIC_MARKS.sub("", text).translate(_ARABIC_ALEF)
    return text


def is_no_space(lang: str) -> bool:
    """Whether ``lang`` is written without spaces between words (substring matching)."""
    return script_of(lang) in NO_SPACE_SCRIPTS


def packaged_table_sha256() -> str:
    """SHA-256 of the concept table packaged with babelscope (what its labels depend on)."""
    return sha256_bytes(
        resources.files("babelscope.concepts").joinpath(PACKAGED_TABLE).read_bytes()
    )


@dataclass
class _Matcher:
    """Compiled words of one concept in one language."""

    pattern: re.Pattern[str] | None
    exclusions: re.Pattern[str] | None
    # Substrings one of which any match must contain: a cheap test before the regex.
    literals: tuple[str, ...] = ()
    # Languages without spaces: a one-character text is a label or an abbreviation.
    no_space: bool = False

    def search(self, norm_text: str) -> bool:
        if self.pattern is None or not any(lit in norm_text for lit in self.literals):
            return False
        if self.no_space and len(norm_text) < 8 and sum(ch.isalnum() for ch in norm_text) < 2:
            return False
        if self.exclusions is not None:
            # Blank out (not delete) so that no new word forms across the gap.
            norm_text = self.exclusions.sub(lambda m: " " * len(m.group(0)), norm_text)
        return self.pattern.search(norm_text) is not None


def _form_regex(form: str) -> str:
    """Regex for one normalised form: escaped, with any run of spaces for a space."""
    return r"\s+".join(re.escape(part) for part in form.split())


def _compile(words: Sequence[str], lang: str) -> _Matcher:
    """Build the matcher of one (concept, language) from its table words."""
    no_space = is_no_space(lang)
    arabic = script_of(lang) == "Arab"
    w = _word_class()
    # (left boundary?, right boundary?) -> forms
    kinds: dict[tuple[bool, bool], list[str]] = {
        (True, True): [],
        (True, False): [],
        (False, True): [],
        (False, False): [],
    }
    excl: list[str] = []
    for raw in words:
        if raw.startswith("!"):
            excl.append(normalize(raw[1:], lang))
            continue
        left, right = not raw.startswith("*"), not raw.endswith("*")
        kinds[(left, right)].append(normalize(raw.strip("*"), lang))
    # Longest first, so that an alternation prefers the longest form at a position.
    key = len
    alts: list[str] = []
    if no_space:
        forms = sorted({f for fs in kinds.values() for f in fs}, key=key, reverse=True)
        alts = [_form_regex(f) for f in forms]
        body = "|".join(alts)
        pattern = re.compile(body) if body else None
    else:

        def group(forms: Iterable[str]) -> str:
            return "|".join(_form_regex(f) for f in sorted(set(forms), key=key, reverse=True))

        pieces = []
        for (left, right), forms in kinds.items():
            if not forms:
                continue
            core = f"(?:{group(forms)})"
            if arabic and left:
                # "لل" = "ل" + "ال": the article's alef drops after the preposition.
                lil = [f"لل{f[2:]}" for f in forms if f.startswith("ال") and len(f) > 2]
                core = f"(?:{_ARABIC_PROCLITIC}{core}"
                core += f"|[وف]?(?:{group(lil)}))" if lil else ")"
            lb = f"(?<!{w})" if left else ""
            rb = f"(?!{w})" if right else ""
            pieces.append(f"{lb}{core}{rb}")
        pattern = re.compile("|".join(pieces)) if pieces else None
    exclusions = None
    if excl:
        exclusions = re.compile(
            "|".join(_form_regex(f) for f in sorted(set(excl), key=key, reverse=True))
        )
    literals = set()
    for f in (f for fs in kinds.values() for f in fs):
        part = max(f.split(), key=len) if f.split() else f
        # "ال" may be written "لل" after the preposition ل: look for the rest only.
        literals.add(part[2:] if arabic and part.startswith("ال") and len(part) > 2 else part)
    return _Matcher(pattern, exclusions, tuple(sorted(literals)), no_space)


@dataclass
class ConceptLexicon:
    """A concept table: for each concept and language, the words that express it."""

    table: dict[str, dict[str, list[str]]]
    source: str = "<memory>"
    _matchers: dict[tuple[str, str], _Matcher] = field(default_factory=dict, repr=False)

    # ---- construction -------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> ConceptLexicon:
        """Read a concept table; ``None`` means the table packaged with babelscope."""
        if path is None:
            ref = resources.files("babelscope.concepts").joinpath(PACKAGED_TABLE)
            text = ref.read_text(encoding="utf-8")
            where = PACKAGED_TABLE
        else:
            p = Path(path)
            if not p.is_file():
                raise BabelscopeError(f"concept table {p} not found: give the path of a TSV file")
            try:
                text = p.read_text(encoding="utf-8")
            except UnicodeDecodeError as e:
                raise BabelscopeError(
                    f"concept table {p}: bytes at offset {e.start} are not UTF-8; save it as UTF-8"
                ) from None
            where = str(p)
        return cls.parse(text, where=where)

    @classmethod
    def parse(cls, text: str, where: str = "<concept table>") -> ConceptLexicon:
        """Parse and validate the TSV text of a concept table (see the module docstring)."""
        table: dict[str, dict[str, list[str]]] = {}
        first_line: dict[str, int] = {}
        seen_header = False
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cols = [c.strip() for c in line.rstrip("\r\n").split("\t")]
            if not seen_header:
                if tuple(c.lower() for c in cols) != HEADER:
                    raise BabelscopeError(
                        f"{where} line {lineno}: expected the header 'concept<TAB>lang<TAB>words'"
                    )
                seen_header = True
                continue
            if len(cols) != 3:
                raise BabelscopeError(
                    f"{where} line {lineno}: expected 3 tab-separated columns (concept, lang, words), found {len(cols)}"
                )
            concept, lang, words = cols
            if not concept or any(ch.isspace() for ch in concept):
                raise BabelscopeError(
                    f"{where} line {lineno}: concept name '{concept}' must be one non-empty word"
                )
            if not is_known(lang):
                raise BabelscopeError(
                    f"{where} line {lineno}: unknown language code '{lang}'; use ISO 639-3 codes such as eng, spa, zho"
                )
            forms = [wd.strip() for wd in words.split("|")]
            if not words or any(not f.lstrip("!").strip("*") for f in forms):
                raise BabelscopeError(
                    f"{where} line {lineno}: empty word for concept '{concept}' in '{lang}'; separate words with a single |"
                )
            bad = [f for f in forms if "*" in f.lstrip("!").strip("*")]
            if bad:
                raise BabelscopeError(
                    f"{where} line {lineno}: '*' may only begin or end a word, found '{bad[0]}'"
                )
            if all(f.startswith("!") for f in forms):
                raise BabelscopeError(
                    f"{where} line {lineno}: concept '{concept}' in '{lang}' has only exclusions (!); add its words"
                )
            if lang in table.get(concept, {}):
                raise BabelscopeError(
                    f"{where} line {lineno}: concept '{concept}' appears twice for '{lang}'; merge the lines"
                )
            table.setdefault(concept, {})[lang] = forms
            first_line.setdefault(concept, lineno)
        if not seen_header:
            raise BabelscopeError(f"{where}: empty concept table; expected a header and rows")
        if not table:
            raise BabelscopeError(f"{where}: no concepts after the header")
        langs = sorted({lang for per in table.values() for lang in per})
        for concept, per in table.items():
            missing = [lang for lang in langs if lang not in per]
            if missing:
                raise BabelscopeError(
                    f"{where} line {first_line[concept]}: concept '{concept}' has no words for {', '.join(missing)}; every concept needs every language of the table"
                )
        return cls(table=table, source=where)

    @classmethod
    def from_words(cls, words: Mapping[str, Sequence[str]], lang: str = "eng") -> ConceptLexicon:
        """A one-language lexicon from ``{concept: [words]}`` (same word syntax as the table)."""
        if not words:
            raise BabelscopeError("no concepts given: pass at least one concept with its words")
        table: dict[str, dict[str, list[str]]] = {}
        for concept, ws in words.items():
            if isinstance(ws, str):
                ws = [ws]
            forms = [w.strip() for w in ws]
            if not forms or any(not f for f in forms):
                raise BabelscopeError(f"concept '{concept}': empty word list for '{lang}'")
            table[str(concept)] = {lang: forms}
        return cls(table=table, source="<words>")

    # ---- queries ----------------------------------------------------------------------
    @property
    def concepts(self) -> list[str]:
        """Concept names in table order."""
        return list(self.table)

    @property
    def languages(self) -> list[str]:
        """Languages of the table, sorted."""
        return sorted({lang for per in self.table.values() for lang in per})

    def words(self, concept: str, lang: str) -> list[str]:
        """The table words of ``concept`` in ``lang`` (with their ``*`` / ``!`` marks)."""
        try:
            return list(self.table[concept][lang])
        except KeyError:
            if concept not in self.table:
                raise BabelscopeError(
                    f"unknown concept '{concept}' in {self.source}; known: {', '.join(self.concepts[:10])}…"
                ) from None
            raise BabelscopeError(
                f"concept table {self.source} has no words in '{lang}'; it covers {', '.join(self.languages)}"
            ) from None

    def _matcher(self, concept: str, lang: str) -> _Matcher:
        key = (concept, lang)
        m = self._matchers.get(key)
        if m is None:
            m = self._matchers[key] = _compile(self.words(concept, lang), lang)
        return m

    def matches(self, text: str, concept: str, lang: str) -> bool:
        """Whether ``text`` (in ``lang``) contains one of the concept's words."""
        return self._matcher(concept, lang).search(normalize(text, lang))

    def find(self, text: str, lang: str) -> set[str]:
        """The concepts whose words occur in ``text`` (in ``lang``)."""
        norm = normalize(text, lang)
        return {
            c
            for c in self.concepts
            if lang in self.table[c] and self._matcher(c, lang).search(norm)
        }

    def label_texts(
        self, texts: Sequence[str], lang: str, concepts: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """For each concept, a boolean array: which of ``texts`` contain its words.

        Normalises every text once; this is what labelling a corpus uses.
        """
        concepts = list(concepts) if concepts is not None else self.concepts
        norm = [normalize(t, lang) for t in texts]
        out: dict[str, np.ndarray] = {}
        for c in concepts:
            m = self._matcher(c, lang)
            out[c] = np.fromiter((m.search(t) for t in norm), dtype=bool, count=len(norm))
        return out
