"""The ``dataset-build`` PyPI package: LLM-written topical prose, ``data/<iso3>/*.txt``.

The package's own module does not import on Python < 3.12 (it uses PEP 701 f-strings),
so its data directory is located with ``importlib.util.find_spec``, which does not run it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from babelscope.corpora.segment import sentences_from_markdown
from babelscope.corpora.sources import SourceText, SourceUnavailable
from babelscope.io import sha256_bytes

NAME = "dataset-build"


def data_dir() -> Path:
    """The installed package's ``data`` directory (raises SourceUnavailable if absent)."""
    spec = importlib.util.find_spec("dataset_build")
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailable(
            "the dataset-build package is not installed (pip install dataset-build)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not path.is_dir():
        raise SourceUnavailable(f"dataset-build has no data directory at {path}")
    return path


def version() -> str:
    """Installed version of dataset-build."""
    try:
        return importlib.metadata.version("dataset-build")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def available_languages() -> list[str]:
    """ISO 639-3 codes with a text directory (``coding`` and ``test`` are not languages)."""
    return sorted(
        p.name for p in data_dir().iterdir() if p.is_dir() and len(p.name) == 3 and p.name.isalpha()
    )


def load_language(lang: str, root: Path | None = None) -> list[SourceText]:
    """Clean, de-duplicated sentences of one language, in file order (empty if none)."""
    root = root or data_dir()
    out: list[SourceText] = []
    seen: set[str] = set()
    for f in sorted((root / lang).glob("*.txt")):
        text = f.read_text(encoding="utf-8", errors="replace")
        for i, sent in enumerate(sentences_from_markdown(text, lang)):
            if sent in seen:
                continue
            seen.add(sent)
            key = f"{f.stem}:{i}:{sha256_bytes(sent.encode())[:8]}"
            # Monolingual: no alignment; each sentence is its own split group.
            out.append(
                SourceText(lang=lang, text=sent, key=key, align_id=None, group=f"{lang}:{key}")
            )
    return out


def load(languages: list[str]) -> list[SourceText]:
    """Sentences for each requested language that the package has."""
    root = data_dir()
    return [row for lang in languages for row in load_language(lang, root)]
