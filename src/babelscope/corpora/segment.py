"""Turning raw prose into clean sentences: markdown stripping and sentence splitting.

The embedded ``dataset-build`` texts are LLM-written: a chatty first paragraph ("Of
course. Here is 30,000 words…"), markdown headings, bold, bullets and ``---`` rules.
:func:`markdown_paragraphs` removes all of that and keeps the prose; :func:`split_sentences`
cuts prose into sentences, also for scripts written without spaces (zh, ja, th);
:func:`is_fragment` rejects what is not a sentence (headings, list labels, scraps).
"""

from __future__ import annotations

import re
import unicodedata

from babelscope.languages import NO_SPACE_SCRIPTS, script_of

# Sentence-final punctuation across the scripts we meet: Latin/Cyrillic, CJK full-width,
# Devanagari danda, Arabic question mark, ellipsis.
FINAL_PUNCT = ".!?。！？।॥؟…"
# Closing quotes and brackets that may follow the final punctuation.
CLOSERS = "\"'”’»」』）)]】〕›"
_FINAL_RE = re.compile(f"[{re.escape(FINAL_PUNCT)}][{re.escape(CLOSERS)}]*$")

# A number of a thousand or more ("30,000", "30.000", "30 000", "3000", "২,০০০", "2000+"):
# the chatty openers all announce how many words follow.
_BIG_NUMBER_RE = re.compile(r"\d{1,3}(?:[,.\u00a0\u202f ]\d{3})+|\d{4,}")
# Openers seen in the wild; a first paragraph starting like this is the model talking.
_CHATTY_START = (
    "of course", "sure", "certainly", "absolutely", "here is", "here are", "okay",
    "claro", "com certeza", "absolument", "bien sûr", "absolut", "certamente",
    "uitstekend", "oczywiście", "конечно", "elbette", "بالتأكيد", "नमस्ते", "好的",
    "はい", "chắc chắn", "sawa", "rozumiem", "muidugi", "tentu", "u redu",
)  # fmt: skip

_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s")
_RULE_RE = re.compile(r"^\s*([-*_=~])(\s*\1){2,}\s*$")  # ---, ***, ___, * * *
_BULLET_RE = re.compile(r"^\s*(?:[-*+•·▪●◦]|\d{1,3}[.)]|[a-zA-Z][.)]|[ivxIVX]{1,4}[.)])\s+")
_NUMBERED_RE = re.compile(r"^\s*(?:\d{1,3}[.)]|\d{1,3}(?:\.\d{1,3})+\.?)\s+")
_BLOCKQUOTE_RE = re.compile(r"^\s*>\s?")
_LINK_RE = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_EMPH_RE = re.compile(r"(\*\*|__|\*|`)")
_UNDERSCORE_EMPH_RE = re.compile(r"(?<!\w)_([^_]+)_(?!\w)")
_WS_RE = re.compile(r"\s+")


def normalize_space(text: str) -> str:
    """NFC-normalise and collapse runs of whitespace to one space."""
    return _WS_RE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def is_chatty(paragraph: str) -> bool:
    """True for an LLM's preamble ("Of course. Here is 30,000 words of…")."""
    p = paragraph.strip().lower()
    if not p:
        return False
    return bool(_BIG_NUMBER_RE.search(_ascii_digits(p))) or p.startswith(_CHATTY_START)


def _ascii_digits(text: str) -> str:
    # Bengali, Devanagari, Arabic-Indic … digits to 0-9 so one regex counts them all.
    return "".join(
        str(unicodedata.digit(c)) if c.isdigit() and not c.isascii() else c for c in text
    )


def strip_inline_markdown(line: str) -> str:
    """Remove bullets, list numbers, bold/italic markers, inline code and link targets."""
    line = _BLOCKQUOTE_RE.sub("", line)
    line = _BULLET_RE.sub("", line)
    line = _LINK_RE.sub(r"\1", line)
    line = _EMPH_RE.sub("", line)
    line = _UNDERSCORE_EMPH_RE.sub(r"\1", line)
    return normalize_space(line)


def _is_heading_line(raw: str) -> bool:
    """Markdown headings, rules, a line that is all bold, or a numbered title without a full stop."""
    s = raw.strip()
    if _HEADING_RE.match(s) or _RULE_RE.match(s):
        return True
    body = s.strip("*_ ")
    if s.startswith(("**", "__")) and s.rstrip().endswith(("**", "__")) and "**" not in body:
        return True  # **Whole line in bold**: a title
    # A numbered title without a full stop: "1. Scientific and Technical Disciplines".
    return bool(_NUMBERED_RE.match(s)) and not _FINAL_RE.search(strip_inline_markdown(s))


def markdown_paragraphs(text: str, drop_chatty: bool = True) -> list[str]:
    """Plain-prose paragraphs of a markdown-ish document.

    Headings, horizontal rules and all-bold title lines are dropped; bullets, list
    numbers and emphasis markers are removed from the lines that stay (each list item
    is its own paragraph). With ``drop_chatty`` the first paragraph is dropped when it
    is an LLM preamble (see :func:`is_chatty`).
    """
    paragraphs: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            paragraphs.append(normalize_space(" ".join(current)))
            current.clear()

    first_seen = False
    skipping = False  # inside the chatty first paragraph
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if not raw.strip():
            skipping = False
            flush()
            continue
        if not first_seen:
            first_seen = True
            skipping = drop_chatty and is_chatty(raw)
        if skipping:
            continue
        if _is_heading_line(raw):
            flush()
            continue
        if _BULLET_RE.match(raw):
            flush()  # a list item starts a paragraph of its own
        line = strip_inline_markdown(raw)
        if line:
            current.append(line)
    flush()
    return [p for p in paragraphs if p]


# Abbreviations after which a period does not end a sentence (lower-cased, no dot).
_ABBREVIATION_TEXT = (
    "e.g i.e etc vs cf al approx ca c dr mr mrs ms prof st jr sr no nr fig vol pp ed eds "
    "jan feb mar apr jun jul aug sep sept oct nov dec bzw usw z.b d.h u.a ggf sog vgl "
    "sr sra srta ud uds p.ej pág núm art av ex mme mlle m p.ex env gen т.е т.д т.п г гг "
    "им др проф ул"
)
_ABBREVIATIONS = frozenset(_ABBREVIATION_TEXT.split())
_SPACED_SPLIT_RE = re.compile(rf"(?<=[{re.escape(FINAL_PUNCT)}])([{re.escape(CLOSERS)}]*)\s+(?=\S)")
_CJK_FINAL = "。！？!?…"
_CJK_OPEN = "「『（(“‘【〔《〈"
_CJK_CLOSE = "」』）)”’】〕》〉"


def _split_cjk(text: str, max_quote: int = 200) -> list[str]:
    """Split after 。！？ outside brackets and quotes: 彼は「雨だ。」と言った。 is one sentence."""
    out: list[str] = []
    start, depth, opened_at, i, n = 0, 0, 0, 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _CJK_OPEN:
            if depth == 0:
                opened_at = i
            depth += 1
        elif ch in _CJK_CLOSE and depth:
            depth -= 1
        elif depth and i - opened_at > max_quote:
            depth = 0  # an unbalanced bracket: stop waiting for it to close
        if ch in _CJK_FINAL and depth == 0:
            j = i + 1
            while j < n and (text[j] in _CJK_FINAL or text[j] in _CJK_CLOSE):
                j += 1
            out.append(text[start:j].strip())
            start, i = j, j
            continue
        i += 1
    if text[start:].strip():
        out.append(text[start:].strip())
    return [s for s in out if s]


def split_sentences(text: str, lang: str) -> list[str]:
    """Split a paragraph into sentences.

    Scripts without spaces (Chinese, Japanese) split after 。！？ and their closers;
    Thai, which marks sentence ends with a space, splits on whitespace; other scripts
    split after . ! ? । ؟ … followed by a space, except after common abbreviations,
    single initials and before a lower-case letter.
    """
    text = normalize_space(text)
    if not text:
        return []
    script = script_of(lang)
    if script == "Thai":
        return [s for s in text.split(" ") if s]
    if script in NO_SPACE_SCRIPTS:
        return _split_cjk(text)
    return _split_spaced(text, lang)


# Languages that write ordinals as "21." ("das 21. Jahrhundert"): a short number before a
# period does not end the sentence there.
_ORDINAL_DOT_LANGS = frozenset(
    {"deu", "pol", "tur", "ces", "slk", "slv", "hrv", "srp", "hun", "fin", "est", "lav",
     "lit", "dan", "nob", "nor", "isl"}
)  # fmt: skip


def _split_spaced(text: str, lang: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _SPACED_SPLIT_RE.finditer(text):
        end = m.end(1)  # keep closing quotes with the sentence they close
        candidate = text[start:end]
        nxt = text[m.end() : m.end() + 1]
        if _no_break(candidate, nxt, lang in _ORDINAL_DOT_LANGS):
            continue
        out.append(candidate.strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def _no_break(candidate: str, next_char: str, ordinal_dots: bool = False) -> bool:
    """True where the period ending ``candidate`` is not a sentence end."""
    if next_char.islower() or next_char.isdigit():
        return True  # "c. 10,000", "etc. and …"
    stripped = candidate.rstrip(CLOSERS)
    if not stripped.endswith("."):
        return False
    words = stripped[:-1].split()
    last = words[-1].lower().lstrip("(\"'«“") if words else ""
    if last in _ABBREVIATIONS:
        return True
    if ordinal_dots and last.isdigit() and len(last) <= 2:
        return True
    return len(last) == 1 and last.isalpha()  # an initial: "J. R. R. Tolkien"


def is_fragment(sentence: str, lang: str, min_words: int = 4, min_chars: int = 8) -> bool:
    """True for what is not a full sentence: no final punctuation, or too short.

    Spaced scripts need ``min_words`` words; scripts without spaces ``min_chars`` characters.
    """
    s = sentence.strip()
    if not _FINAL_RE.search(s):
        return True  # a heading, a list label, a line ending in ':'
    if sum(ch.isalpha() for ch in s) < min_chars // 2 + 1:
        return True  # digits and punctuation only
    if script_of(lang) in NO_SPACE_SCRIPTS:
        return len(s) < min_chars
    return len(s.split()) < min_words or len(s) < min_chars


def sentences_from_markdown(
    text: str, lang: str, max_chars: int = 1000, drop_chatty: bool = True
) -> list[str]:
    """Clean sentences of a markdown document, in order, without duplicates or fragments."""
    seen: set[str] = set()
    out: list[str] = []
    for para in markdown_paragraphs(text, drop_chatty=drop_chatty):
        for sent in split_sentences(para, lang):
            sent = sent.lstrip("> ")  # a quote marker left inside a line
            if len(sent) > max_chars or is_fragment(sent, lang) or sent in seen:
                continue
            seen.add(sent)
            out.append(sent)
    return out
