"""Control languages: a ciphered copy of a real language (Dufter & Schütze 2020).

The control of ``eng`` is ``eng~x``: the same sentences, every word rewritten by a fixed,
seeded **letter substitution** into a script that the corpus does not use (Armenian
letters, Georgian and Ethiopic when a language has more letters than Armenian has), so
the tokenizer can share no piece between the two. The substitution maps each letter of
the original (case-sensitive, NFC) to its own target letter — uppercase to the uppercase
of the lowercase's target where the target script has case — so it is a bijection on
texts, and therefore on words: every word becomes an invented word of the same length,
and the control keeps the original's structure (word order, morphology, frequencies)
exactly. Whitespace is kept. Digits, punctuation and symbols are either kept
(``symbols="keep"``: shared anchors, as every real language pair has) or ciphered too
(``symbols="cipher"``: into Tibetan, Mongolian and Ethiopic digits and marks).

A control sentence has the id ``<code>:<original id>``, the original's source, split and
``align_id`` (it is a translation of its original), and the original's concept labels
(:func:`babelscope.concepts.labels.build_concept_labels` copies them by id). The
control's concept words are the ciphered words of its original (:func:`control_lexicon`).
The cipher tables are stored in the data directory's manifest (``controls``).
"""

from __future__ import annotations

import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from babelscope.errors import BabelscopeError
from babelscope.languages import (
    NO_SPACE_SCRIPTS,
    control_code,
    control_original,
    script_of,
)

Symbols = Literal["keep", "cipher"]
SYMBOL_MODES: tuple[str, ...] = ("keep", "cipher")


def _chars(*ranges: tuple[int, int]) -> list[str]:
    return [chr(c) for a, b in ranges for c in range(a, b + 1)]


def _stable(ch: str) -> bool:
    return unicodedata.normalize("NFC", ch) == ch


# Target letters with case: Armenian small letters (their capitals are U+0531-U+0556).
_CASED_LETTERS = [c for c in _chars((0x0561, 0x0586)) if len(c.upper()) == 1 and c.upper() != c]
# Caseless overflow: Georgian Mkhedruli, then Ethiopic syllables.
_CASELESS_LETTERS = [
    c
    for c in _chars((0x10D0, 0x10FA), (0x1200, 0x135A))
    if unicodedata.category(c) == "Lo" and c.upper() == c
]
# Ciphered digits (category N) and punctuation/symbols (P*, S*).
_DIGITS = [
    c for c in _chars((0x0F20, 0x0F33), (0x1810, 0x1819), (0x1369, 0x137C))
    if unicodedata.category(c)[0] == "N"
]  # fmt: skip
_MARKS = [
    c
    for c in _chars(
        (0x0F01, 0x0F17),
        (0x0F1A, 0x0F1F),
        (0x0F34, 0x0F3D),
        (0x0FBE, 0x0FDA),
        (0x1360, 0x1368),
        (0x1800, 0x180A),
        (0x104A, 0x104F),
        (0x17D4, 0x17DA),
        (0x1B5A, 0x1B6A),
        (0x1B74, 0x1B7C),
    )  # fmt: skip
    if unicodedata.category(c)[0] in "PS"
]


def char_class(ch: str) -> str:
    """``letter`` (L*, M*), ``digit`` (N*), ``symbol`` (P*, S*) or ``kept`` (space, other)."""
    if ch.isspace():
        return "kept"
    cat = unicodedata.category(ch)[0]
    return {"L": "letter", "M": "letter", "N": "digit", "P": "symbol", "S": "symbol"}.get(
        cat, "kept"
    )


@dataclass(frozen=True)
class Cipher:
    """A character substitution from ``original`` into its control ``code``."""

    original: str
    seed: int
    symbols: Symbols
    table: dict[str, str]
    _inverse: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        inv = {v: k for k, v in self.table.items()}
        if len(inv) != len(self.table):
            raise BabelscopeError(
                f"cipher of '{self.original}' is not a bijection: rebuild the data"
            )
        object.__setattr__(self, "_inverse", inv)

    @property
    def code(self) -> str:
        return control_code(self.original)

    def encode(self, text: str) -> str:
        """The control's text of an original text (NFC first; unmapped characters kept)."""
        t = self.table
        return "".join(t.get(ch, ch) for ch in unicodedata.normalize("NFC", text))

    def decode(self, text: str) -> str:
        """The original (NFC) text of a control text."""
        inv = self._inverse
        return "".join(inv.get(ch, ch) for ch in text)

    def encode_form(self, form: str) -> str:
        """A concept-table form (``stem*``, ``*head``, ``!form``) ciphered, its syntax kept."""
        bang = form.startswith("!")
        core = form[1:] if bang else form
        lead = "*" if core.startswith("*") else ""
        tail = "*" if core.endswith("*") and len(core) > 1 else ""
        body = core[len(lead) : len(core) - len(tail)]
        return ("!" if bang else "") + lead + self.encode(body) + tail

    def to_json(self) -> dict[str, Any]:
        return {
            "original": self.original,
            "code": self.code,
            "seed": self.seed,
            "symbols": self.symbols,
            "table": dict(sorted(self.table.items())),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Cipher:
        return cls(str(d["original"]), int(d["seed"]), d["symbols"], dict(d["table"]))


def _pool(cands: list[str], avoid: set[str], rng: np.random.Generator) -> list[str]:
    ok = [c for c in cands if c not in avoid and _stable(c) and c.upper() not in avoid]
    return [ok[i] for i in rng.permutation(len(ok))]


def make_cipher(
    original: str,
    texts: Iterable[str],
    seed: int = 0,
    symbols: Symbols = "keep",
    avoid: Iterable[str] = (),
) -> Cipher:
    """The seeded cipher of ``original`` over the characters of ``texts``.

    ``avoid``: characters the targets must not use (the build passes every character of
    the corpus, so the control's script is one the corpus does not use). The same
    (original, texts' characters, seed, symbols, avoid) give the same cipher.
    """
    if symbols not in SYMBOL_MODES:
        raise BabelscopeError(f"control symbols '{symbols}': choose keep or cipher")
    if script_of(original) in NO_SPACE_SCRIPTS:
        raise BabelscopeError(
            f"cannot make a control of '{original}': it is written without spaces between "
            "words; choose a language written with spaces, such as eng or spa"
        )
    freq: Counter[str] = Counter()
    for text in texts:
        freq.update(unicodedata.normalize("NFC", text))
    seen = set(freq)
    avoid_set = set(avoid) | seen
    rng = np.random.default_rng([seed, zlib.crc32(original.encode())])
    cased = _pool(_CASED_LETTERS, avoid_set, rng)
    caseless = _pool(_CASELESS_LETTERS, avoid_set, rng)
    table: dict[str, str] = {}
    used: set[str] = set()

    def take(pool: list[str], what: str) -> str:
        while pool:
            c = pool.pop(0)
            if c not in used and c.upper() not in used:
                used.add(c)
                return c
        raise BabelscopeError(
            f"cannot make a control of '{original}': more distinct {what} than the cipher "
            "has targets; set data.control_symbols = 'keep' or choose another language"
        )

    letters = sorted(c for c in seen if char_class(c) == "letter")
    # Lowercase first, so that a capital can take its lowercase's capital target; the
    # most frequent letters first, so they get the (shuffled) two-byte cased targets and
    # only rare letters (foreign names) the caseless overflow.
    key_freq: Counter[str] = Counter()
    for c in letters:
        key_freq[c.lower() if len(c.lower()) == 1 else c] += freq[c]
    keys = sorted(key_freq, key=lambda k: (-key_freq[k], k))
    for k in keys:
        table[k] = take(cased, "letters") if cased else take(caseless, "letters")
    for c in letters:
        if c in table:
            continue
        t = table.get(c.lower()) if len(c.lower()) == 1 else None
        up = t.upper() if t is not None else ""
        if len(up) == 1 and up != t and up not in used and up not in avoid_set:
            table[c] = up
            used.add(up)
        else:
            table[c] = take(caseless if caseless else cased, "letters")
    if symbols == "cipher":
        digits = _pool(_DIGITS, avoid_set, rng)
        marks = _pool(_MARKS, avoid_set, rng)
        by_freq = sorted(seen, key=lambda c: (-freq[c], c))
        for c in (ch for ch in by_freq if char_class(ch) == "digit"):
            table[c] = take(digits or marks, "digits")
        for c in (ch for ch in by_freq if char_class(ch) == "symbol"):
            table[c] = take(marks or digits, "punctuation marks and symbols")
    # Letters of the keys that never occur themselves (only a capital did) are not needed.
    table = {k: v for k, v in table.items() if k in seen}
    return Cipher(original, seed, symbols, table)


def control_id(code: str, original_id: str) -> str:
    """The id of the control sentence of ``original_id``: ``eng~x:<original id>``."""
    return f"{code}:{original_id}"


def control_rows(corpus: pd.DataFrame, cipher: Cipher) -> pd.DataFrame:
    """The control's rows: the original's rows with text ciphered, id and lang renamed;
    source, split and ``align_id`` kept (a control sentence translates its original)."""
    rows = corpus[corpus["lang"] == cipher.original].copy()
    if rows.empty:
        raise BabelscopeError(
            f"no text in '{cipher.original}' for its control {cipher.code}: add the language"
        )
    rows["id"] = [control_id(cipher.code, str(i)) for i in rows["id"]]
    rows["lang"] = cipher.code
    rows["script"] = script_of(cipher.code)
    rows["text"] = [cipher.encode(str(t)) for t in rows["text"]]
    return rows


def add_controls(
    corpus: pd.DataFrame,
    originals: Sequence[str],
    seed: int = 0,
    symbols: Symbols = "keep",
) -> tuple[pd.DataFrame, list[Cipher]]:
    """``corpus`` with a ciphered control of each language in ``originals`` appended."""
    avoid = set().union(*(set(t) for t in corpus["text"].astype(str))) if len(corpus) else set()
    ciphers: list[Cipher] = []
    frames = [corpus]
    for original in originals:
        texts = corpus.loc[corpus["lang"] == original, "text"].astype(str)
        cipher = make_cipher(original, texts, seed=seed, symbols=symbols, avoid=avoid)
        frames.append(control_rows(corpus, cipher))
        avoid |= set(cipher.table.values())  # two controls share no target either
        ciphers.append(cipher)
    return pd.concat(frames, ignore_index=True), ciphers


def control_lexicon(lexicon: Any, ciphers: Sequence[Cipher]) -> Any:
    """A :class:`~babelscope.concepts.lexicon.ConceptLexicon` with each control's words
    added: the ciphered forms of its original's words (for judging steered outputs)."""
    table = {c: dict(by_lang) for c, by_lang in lexicon.table.items()}
    for cipher in ciphers:
        for by_lang in table.values():
            if cipher.original in by_lang:
                by_lang[cipher.code] = [cipher.encode_form(f) for f in by_lang[cipher.original]]
    return type(lexicon)(table=table, source=f"{lexicon.source} + controls")


def detect_control(text: str, ciphers: Sequence[Cipher], min_share: float = 0.5) -> str | None:
    """The control whose letters make up at least ``min_share`` of the letters of
    ``text`` (for judging generated text: language identifiers do not know ciphers)."""
    letters = [ch for ch in text if char_class(ch) == "letter"]
    if not letters:
        return None
    best, share = None, 0.0
    for cipher in ciphers:
        targets = cipher._inverse
        s = sum(ch in targets for ch in letters) / len(letters)
        if s > share:
            best, share = cipher.code, s
    return best if share >= min_share else None


def load_ciphers(data_dir: str | Path) -> list[Cipher]:
    """The ciphers of a data directory's controls (none when it has no control)."""
    from babelscope.corpora.corpus import load_manifest

    return [Cipher.from_json(d) for d in load_manifest(data_dir).get("controls", [])]


def split_controls(languages: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(real languages, control codes)`` of a language list, order kept."""
    real = [lang for lang in languages if control_original(lang) is None]
    ctrl = [lang for lang in languages if control_original(lang) is not None]
    return real, ctrl


__all__ = [
    "Cipher",
    "add_controls",
    "char_class",
    "control_id",
    "control_lexicon",
    "control_rows",
    "detect_control",
    "load_ciphers",
    "make_cipher",
    "split_controls",
]
