"""Rules a configuration must satisfy beyond the types of its keys.

:func:`check_config` runs inside :func:`babelscope.config.load_config`, with nothing but
the file: one rule for every list setting, local paths that exist, settings that
contradict each other, and language lists that must agree. What needs the data or the
series (a language the corpus lacks, a step the series lacks) is checked by
:mod:`babelscope.preflight` before the first stage runs.

One rule for lists: a list setting that is **absent means all** (or the documented
default); an **empty list is an error**, never a silent "all". The exceptions, where an
empty list says "none" in so many words: ``data.sources = []`` beside ``data.user`` (only
the user's text) and ``data.controls = []`` (no cipher control language).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babelscope.errors import BabelscopeError

HUB_PREFIX = "hub:"

# Pairs of keys of one section where the first overrides the second: writing both is a
# contradiction the user should resolve, not one babelscope resolves silently.
_OVERRIDES: tuple[tuple[str, str, str], ...] = (
    ("align", "k", "k_fraction"),
    ("steer", "steps", "checkpoints"),
    ("steer", "concepts", "max_concepts"),
    ("probe", "folds", "test_fraction"),
)


def check_config(cfg: Any, raw: dict[str, Any], where: str) -> None:
    """Raise a one-line :class:`BabelscopeError` for the first rule ``cfg`` breaks."""
    _no_empty_lists(raw, where)
    _paths_exist(cfg, where)
    _no_conflicts(cfg, raw, where)
    _languages_agree(cfg, raw, where)


def _no_empty_lists(raw: Any, where: str, prefix: str = "") -> None:
    if isinstance(raw, dict):
        for k, v in raw.items():
            key = f"{prefix}{k}"
            if isinstance(v, list) and not v:
                if key == "data.sources" and raw.get("user"):
                    continue  # only the user's text: said explicitly, with the text given
                if key == "data.controls":
                    continue  # documented as "no control language"
                raise BabelscopeError(
                    f"{where}: '{key}' is an empty list: remove the key to mean all "
                    "(its default), or list at least one value"
                )
            _no_empty_lists(v, where, f"{key}.")


def _paths_exist(cfg: Any, where: str) -> None:
    """Local paths must exist now (a hub repository is written hub:org/name or {repo=})."""
    for label, f in (
        ("data.user", cfg.data.user),
        ("model.pretrain_config", cfg.model.pretrain_config),
    ):
        if f is not None and not Path(f).exists():
            raise BabelscopeError(f"{where}: {label} = '{f}' not found: fix the path")
    series = cfg.model.series
    if (
        isinstance(series, str)
        and not series.startswith(HUB_PREFIX)
        and not Path(series).expanduser().exists()
    ):
        raise BabelscopeError(
            f"{where}: model.series = '{series}' not found: fix the path "
            f"(a hub repository is written '{HUB_PREFIX}org/name')"
        )
    entries: list[Any] = []
    if isinstance(series, list):
        entries = series
    elif isinstance(series, dict):
        entries = [series, *(series.get("checkpoints") or [])]
    for e in entries:
        if not isinstance(e, dict):
            continue
        for key in ("path", "gguf"):
            v = e.get(key)
            if isinstance(v, str) and v and not Path(v).exists():
                step = f" (step {e['step']})" if "step" in e else ""
                raise BabelscopeError(f"{where}: model.series {key} '{v}'{step} not found: fix it")


def _no_conflicts(cfg: Any, raw: dict[str, Any], where: str) -> None:
    if cfg.model.series is not None and cfg.model.pretrain_config is not None:
        raise BabelscopeError(
            f"{where}: model.series and model.pretrain_config are both set, but a pre-training "
            "configuration only applies to the embedded series: remove one of them"
        )
    if cfg.data.user is not None and not cfg.data.build:
        raise BabelscopeError(
            f"{where}: data.user is set but data.build = false, so the text would be ignored: "
            "set data.build = true (build from it) or remove data.user"
        )
    if cfg.data.dir is not None and cfg.out is not None:
        data = Path(cfg.data.dir).resolve()
        run = Path(cfg.out).resolve()
        if data == run:
            raise BabelscopeError(
                f"{where}: data.dir and out are both {data}: leave data.dir out (the run's "
                "own data/ is used) or put the data elsewhere"
            )
    for section, first, second in _OVERRIDES:
        sec = raw.get(section)
        model = getattr(cfg, section, None)
        if not (isinstance(sec, dict) and first in sec and second in sec and model is not None):
            continue
        if second not in type(model).model_fields:
            continue  # a stage's settings changed: nothing to contradict
        # The overridden key at its default is harmless (a saved config.toml lists every
        # key): only a value the user chose and babelscope would ignore is a contradiction.
        default = type(model).model_fields[second].get_default(call_default_factory=True)
        if getattr(model, second) != default:
            raise BabelscopeError(
                f"{where}: {section}.{first} and {section}.{second} are both set, but "
                f"{first} makes {second} unused: remove one of them"
            )
    steer = cfg.steer
    src, other = getattr(steer, "source_lang", None), getattr(steer, "other_lang", None)
    if (
        src is not None
        and src == other
        and "other_lang" in (getattr(steer, "conditions", None) or [])
    ):
        raise BabelscopeError(
            f"{where}: steer.source_lang and steer.other_lang are both '{src}': "
            "the other language must differ"
        )


def _languages_agree(cfg: Any, raw: dict[str, Any], where: str) -> None:
    """Every language a stage names must be one of ``data.languages``."""
    # With the cipher controls (eng~x) beside the real languages, when configured.
    langs = set(getattr(cfg.data, "all_languages", cfg.data.languages))
    named: list[tuple[str, list[str]]] = [
        ("probe.languages", cfg.probe.languages or []),
        ("experts.languages", cfg.experts.languages or []),
        ("align.languages", cfg.align.languages or []),
    ]
    if "steer" in cfg.stages:  # steering's languages matter only when it runs
        keys = ["source_lang"]
        # The other_lang baseline's default language may be absent: steering skips that
        # baseline and says so. Another one the user chose must be there.
        other = (raw.get("steer") or {}).get("other_lang")
        default = type(cfg.steer).model_fields.get("other_lang")
        if other is not None and default is not None and other != default.default:
            keys.append("other_lang")
        for key in keys:
            v = getattr(cfg.steer, key, None)
            if v:
                named.append((f"steer.{key}", [v]))
    for key, values in named:
        bad = [v for v in values if v not in langs]
        if bad:
            raise BabelscopeError(
                f"{where}: {key} names {', '.join(bad)}, not in data.languages "
                f"({', '.join(sorted(langs))}): add it there or change it here"
            )
    if cfg.experts.languages and cfg.align.languages:
        bad = [v for v in cfg.align.languages if v not in cfg.experts.languages]
        if bad:
            raise BabelscopeError(
                f"{where}: align.languages names {', '.join(bad)}, not scored by "
                "experts.languages: add it there or drop it here"
            )
