"""Embedded text sources: one module per registry package.

Each source module exposes ``load(languages) -> list[SourceText]`` and
``version() -> str``. A source that cannot be had on this machine (no npm, no network)
raises :class:`SourceUnavailable`; the build then says it skipped the source and goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceText:
    """One sentence (or paragraph) from a source, before ids and splits are assigned.

    ``key`` is unique within (source, lang); ``align_id`` groups translations (None for
    monolingual text); rows sharing a ``group`` always land in the same split.
    """

    lang: str
    text: str
    key: str
    align_id: str | None
    group: str


class SourceUnavailable(Exception):
    """A source that cannot be obtained here; the build skips it with a warning."""


def registry() -> dict[str, tuple[Callable[..., list[SourceText]], Callable[[], str]]]:
    """Source name -> (load, version). Imported lazily so one broken source spoils nothing."""
    from babelscope.corpora.sources import dataset_build, django_po, udhr

    return {
        "dataset-build": (dataset_build.load, dataset_build.version),
        "django": (django_po.load, django_po.version),
        "udhr": (udhr.load, udhr.version),
    }


SOURCE_NAMES: tuple[str, ...] = ("dataset-build", "django", "udhr")
