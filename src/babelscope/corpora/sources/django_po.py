"""Django's translation catalogs: short UI strings, parallel across ~100 locales.

Catalogs: ``django/conf/locale/<loc>/LC_MESSAGES/django.po`` (catalog ``core``) and
``django/contrib/<app>/locale/<loc>/LC_MESSAGES/django.po`` (catalog ``<app>``).

What is kept, and why:
- the English side is the ``msgid`` itself, taken from the ``en`` catalogs, which list
  the current messages (stale msgids left in other locales are ignored);
- skipped: plural entries (``msgid_plural``: their forms are not one sentence), fuzzy
  entries (unreviewed translations), empty ``msgstr``, obsolete ``#~`` entries;
- skipped: any message whose msgid or msgstr holds a format placeholder (``%(name)s``,
  ``%s``, ``%d``, ``{name}``). Stripping the slot would leave broken sentences such as
  "Ensure this value is less than or equal to ." in the training text; about a fifth of
  the messages go, the rest are clean text;
- inline HTML tags (``<em>``, ``<strong>``) are removed, whitespace collapsed;
- one alignment group per English text: a message (``msgctxt``, ``msgid``) that occurs
  in several catalogs, or under several contexts, is one group, named after the first
  catalog (``core`` first, then the contrib apps alphabetically) and translated by the
  first message of that text that has a translation; so every group has its English side;
- within one language a text is kept once (first group wins).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from babelscope.corpora.segment import normalize_space
from babelscope.corpora.sources import SourceText, SourceUnavailable
from babelscope.io import sha256_bytes
from babelscope.languages import tag_to_iso3

NAME = "django"

_PLACEHOLDER_RE = re.compile(r"%(?:\([^)]*\))?[-#0 +]*\d*(?:\.\d+)?[sdrifgxXeEcou%]|\{[^{}]*\}")
_TAG_RE = re.compile(r"</?[a-zA-Z][^<>]*>")
_ESCAPES = {
    "n": "\n",
    "t": "\t",
    "r": "\r",
    '"': '"',
    "\\": "\\",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}
_ESCAPE_RE = re.compile(r"\\(.)")


@dataclass
class PoEntry:
    """One message of a .po file."""

    msgid: str = ""
    msgstr: str = ""
    msgctxt: str | None = None
    msgid_plural: str | None = None
    plural_forms: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    line: int = 0

    @property
    def fuzzy(self) -> bool:
        return "fuzzy" in self.flags

    @property
    def plural(self) -> bool:
        return self.msgid_plural is not None


def unescape(s: str) -> str:
    """Undo C-style escapes of a .po string literal (``\\n``, ``\\"``, ``\\\\``)."""
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), s)


def _literal(rest: str, where: str, lineno: int) -> str:
    rest = rest.strip()
    if len(rest) < 2 or not (rest.startswith('"') and rest.endswith('"')):
        raise ValueError(f"{where}:{lineno}: expected a quoted string, got {rest[:40]!r}")
    return unescape(rest[1:-1])


def parse_po(text: str, where: str = "<po>") -> list[PoEntry]:
    """Parse the text of a .po file into entries (the header entry with empty msgid included).

    Obsolete entries (``#~``) are dropped. Raises ValueError naming file and line on a
    malformed string literal.
    """
    entries: list[PoEntry] = []
    cur = PoEntry()
    target: str | None = None  # which field a continuation line extends
    started = False

    def finish() -> None:
        nonlocal cur, target, started
        if started:
            entries.append(cur)
        cur, target, started = PoEntry(), None, False

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            finish()
            continue
        if line.startswith("#~"):
            continue
        if line.startswith("#"):
            if started and target is not None and target.startswith("msgstr"):
                finish()  # a comment after msgstr opens the next entry
            if line.startswith("#,"):
                cur.flags.update(f.strip() for f in line[2:].split(",") if f.strip())
            continue
        keyword, _, rest = line.partition(" ")
        if line.startswith('"'):
            if target is None:
                raise ValueError(f"{where}:{lineno}: string continuation outside an entry")
            _append(cur, target, _literal(line, where, lineno))
            continue
        if (
            keyword in ("msgctxt", "msgid")
            and started
            and target is not None
            and target.startswith("msgstr")
        ):
            finish()
        if keyword not in ("msgctxt", "msgid", "msgid_plural", "msgstr") and not keyword.startswith(
            "msgstr["
        ):
            raise ValueError(f"{where}:{lineno}: unknown keyword {keyword!r}")
        if not started:
            cur.line = lineno
        started = True
        target = keyword
        if keyword == "msgid_plural":
            cur.msgid_plural = ""
        _append(cur, target, _literal(rest, where, lineno))
    finish()
    return entries


def _append(entry: PoEntry, target: str, value: str) -> None:
    if target == "msgid":
        entry.msgid += value
    elif target == "msgstr":
        entry.msgstr += value
    elif target == "msgctxt":
        entry.msgctxt = (entry.msgctxt or "") + value
    elif target == "msgid_plural":
        entry.msgid_plural = (entry.msgid_plural or "") + value
    else:  # msgstr[N]
        idx = int(target[len("msgstr[") : -1])
        while len(entry.plural_forms) <= idx:
            entry.plural_forms.append("")
        entry.plural_forms[idx] += value


def clean_message(s: str, min_letters: int = 1) -> str | None:
    """The usable text of a message, or None when it holds placeholders or too few letters.

    One letter is enough for a translation (水 "water"); English msgids need two.
    """
    if _PLACEHOLDER_RE.search(s):
        return None
    s = normalize_space(_TAG_RE.sub("", s))
    if sum(ch.isalpha() for ch in s) < min_letters:
        return None
    return s


def usable_pairs(entries: list[PoEntry]) -> dict[tuple[str, str], str]:
    """(msgctxt, msgid) -> cleaned msgstr for the entries worth keeping (see module doc)."""
    out: dict[tuple[str, str], str] = {}
    for e in entries:
        if not e.msgid or e.plural or e.fuzzy or not e.msgstr.strip():
            continue
        if clean_message(e.msgid, min_letters=2) is None:
            continue
        text = clean_message(e.msgstr)
        if text is not None:
            out[(e.msgctxt or "", e.msgid)] = text
    return out


def english_messages(entries: list[PoEntry]) -> dict[tuple[str, str], str]:
    """(msgctxt, msgid) -> cleaned msgid for the non-plural messages of a catalog."""
    out: dict[tuple[str, str], str] = {}
    for e in entries:
        if not e.msgid or e.plural:
            continue
        text = clean_message(e.msgid, min_letters=2)
        if text is not None:
            out[(e.msgctxt or "", e.msgid)] = text
    return out


def django_root() -> Path:
    """The installed django package directory (SourceUnavailable if absent)."""
    spec = importlib.util.find_spec("django")
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailable("django is not installed (pip install django)")
    return Path(next(iter(spec.submodule_search_locations)))


def catalogs(root: Path | None = None) -> dict[str, Path]:
    """Catalog name -> its ``locale`` directory: ``core`` first, then contrib apps by name."""
    root = root or django_root()
    out: dict[str, Path] = {}
    if (root / "conf" / "locale").is_dir():
        out["core"] = root / "conf" / "locale"
    for d in sorted((root / "contrib").glob("*/locale")):
        out[d.parent.name] = d
    return out


def version() -> str:
    """Installed version of Django."""
    try:
        return importlib.metadata.version("django")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _locale_for(locale_dir: Path, lang: str) -> Path | None:
    """The .po file of ``lang`` in a catalog; the plainest locale tag wins (``zh_Hans``)."""
    cands = [d for d in sorted(locale_dir.iterdir()) if d.is_dir() and tag_to_iso3(d.name) == lang]
    cands.sort(key=lambda d: (len(d.name), d.name))
    for d in cands:
        po = d / "LC_MESSAGES" / "django.po"
        if po.is_file():
            return po
    return None


def _read_po(path: Path) -> list[PoEntry]:
    return parse_po(path.read_text(encoding="utf-8"), where=str(path))


def load(languages: list[str], root: Path | None = None) -> list[SourceText]:
    """Parallel UI messages for the requested languages (English = the msgid)."""
    cats = catalogs(root)
    if not cats:
        raise SourceUnavailable("no Django translation catalogs found")
    # 1. The messages: from each catalog's English file, in catalog order. Messages with
    #    the same English text (msgctxt variants, several catalogs) are one group.
    group_of: dict[tuple[str, str], str] = {}
    english: dict[str, str] = {}
    gid_of_text: dict[str, str] = {}
    for cat, locale_dir in cats.items():
        en = locale_dir / "en" / "LC_MESSAGES" / "django.po"
        if not en.is_file():
            continue
        for key, text in english_messages(_read_po(en)).items():
            if key in group_of:
                continue
            if text not in gid_of_text:
                gid = f"django:{cat}:{sha256_bytes(text.encode())[:12]}"
                gid_of_text[text] = gid
                english[gid] = text
            group_of[key] = gid_of_text[text]
    # 2. The translations, first catalog that translates a message wins.
    out: list[SourceText] = []
    for lang in languages:
        texts: dict[str, str] = {}
        if lang == "eng":
            texts = dict(english)
        else:
            for locale_dir in cats.values():
                po = _locale_for(locale_dir, lang)
                if po is None:
                    continue
                for key, text in usable_pairs(_read_po(po)).items():
                    gid = group_of.get(key)
                    if gid is not None and gid not in texts:
                        texts[gid] = text
        seen: set[str] = set()
        for gid in sorted(texts):
            text = texts[gid]
            if text in seen:
                continue
            seen.add(text)
            key = gid.split(":", 1)[1]
            out.append(SourceText(lang=lang, text=text, key=key, align_id=gid, group=gid))
    return out
