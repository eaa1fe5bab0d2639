"""The study configuration behind ``babelscope run``: TOML, validated with pydantic.

Unknown keys are rejected with the nearest valid name, wrong types and missing files
are named; the resolved configuration is saved in the run directory. Each analysis
section is the settings model of its stage, so a key means the same in TOML and Python.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from babelscope.config_rules import HUB_PREFIX
from babelscope.errors import BabelscopeError
from babelscope.languages import DEFAULT_LANGUAGES, check_languages

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _settings(module: str, name: str) -> type[BaseModel]:
    import importlib

    return getattr(importlib.import_module(module), name)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DataConfig(_Strict):
    """Where the text comes from."""

    dir: Path | None = Field(
        None, description="A data dir made by `babelscope data build`; default <run>/data"
    )
    build: bool = Field(True, description="Build the embedded corpus there if it is missing")
    languages: list[str] = Field(default_factory=lambda: list(DEFAULT_LANGUAGES))
    sources: list[Literal["dataset-build", "django", "udhr"]] = Field(
        default_factory=lambda: ["dataset-build", "django", "udhr"]
    )
    user: Path | None = Field(
        None, description="The user's own text (JSONL/CSV/Parquet/TSV/HF dataset dir)"
    )
    controls: list[str] | None = Field(
        None,
        description="Languages that get a ciphered control copy (eng adds eng~x; "
        "docs/control-language.md); None: eng when it is among the languages and the run "
        "builds the embedded sources' data; [] for none",
    )
    control_symbols: Literal["keep", "cipher"] = Field(
        "keep", description="Digits and punctuation of a control: keep (shared anchors) or cipher"
    )
    match_pools: bool = Field(
        True,
        description="Matched pools per (concept, language): negatives matched to the positives' "
        "source and length, the same positives in every language (concepts/matching.py)",
    )
    match_ratio: int = Field(3, ge=1, description="Negatives per positive in a matched pool")
    match_length_bins: int = Field(
        3, ge=1, description="Length bins (quantiles within a language) that matching keeps"
    )

    @field_validator("languages")
    @classmethod
    def _langs(cls, v: list[str]) -> list[str]:
        return check_languages(v)

    @field_validator("controls")
    @classmethod
    def _controls(cls, v: list[str] | None) -> list[str] | None:
        if v is None or not v:
            return v
        from babelscope.languages import control_original

        return check_languages([control_original(c.strip().lower()) or c for c in v])

    @property
    def control_originals(self) -> list[str]:
        """The languages that get a control in this configuration."""
        from babelscope.languages import control_original, default_controls

        named = [o for o in map(control_original, self.languages) if o]
        if self.controls is None:
            # The default applies to data the run builds; a given data dir (build = false)
            # has the controls it was built with: name them to analyse them.
            asked = default_controls(self.languages) if self.sources and self.build else []
        else:
            asked = list(self.controls)
        return list(dict.fromkeys([*asked, *named]))

    @property
    def all_languages(self) -> list[str]:
        """The real languages and their controls (``eng~x``): every language analysed."""
        from babelscope.languages import control_code, control_original

        real = [lang for lang in self.languages if control_original(lang) is None]
        return real + [control_code(o) for o in self.control_originals]


class ModelConfig(_Strict):
    """Which checkpoint series: the embedded pre-training, or the user's own."""

    series: str | dict[str, Any] | list[Any] | None = Field(
        None,
        description="Local dir of step-N checkpoints (relative to this file), hub:org/name, "
        "{repo, revisions, tokenizer}, a list of {step, path|revision}, or a .gguf file. "
        "None: pre-train the embedded series.",
    )
    pretrain_config: Path | None = Field(
        None, description="TOML for `babelscope pretrain` (default: embedded)"
    )
    include_flagged: bool = Field(False, description="Analyse duplicate/broken checkpoints anyway")
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: Literal["cpu", "cuda", "auto"] = "auto"
    architecture: str | dict[str, Any] | None = Field(
        None,
        description="For `babelscope plan` before any checkpoint is at hand: a config.json "
        "(relative to this file) or transformers config fields (model_type, hidden_size, ...)",
    )
    keep_downloads: bool = Field(
        False,
        description="Keep the hub revisions downloaded into <run>/cache/hub (default: each is "
        "deleted once loaded, so the cache never holds the whole series)",
    )


STAGES: tuple[str, ...] = (
    "data",
    "pretrain",
    "inspect",
    "probe",
    "similarity",
    "experts",
    "align",
    "steer",
    "report",
)
# What each stage reads: asking for a stage whose inputs are not done is an error.
NEEDS: dict[str, tuple[str, ...]] = {
    "data": (),
    "pretrain": ("data",),
    "inspect": ("data", "pretrain"),
    "probe": ("inspect",),
    "similarity": ("inspect",),
    "experts": ("inspect",),
    "align": ("experts",),
    "steer": ("experts",),
    "report": ("inspect",),
}


def _section(module: str, name: str) -> Any:
    cls = _settings(module, name)
    return Field(default_factory=cls)


class RunConfig(_Strict):
    """A whole study: data, series, and the settings of every analysis stage."""

    name: str = Field("demo", pattern=r"^[A-Za-z0-9._-]+$")
    out: Path | None = Field(None, description="Run directory; default runs/<name>")
    stages: list[Literal[STAGES]] = Field(default_factory=lambda: list(STAGES))  # type: ignore[valid-type]
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    probe: _settings("babelscope.analysis.probe", "ProbeSettings") = _section(  # type: ignore[valid-type]
        "babelscope.analysis.probe", "ProbeSettings"
    )
    similarity: _settings(  # type: ignore[valid-type]
        "babelscope.analysis.representations.stage", "SimilaritySettings"
    ) = _section("babelscope.analysis.representations.stage", "SimilaritySettings")
    experts: _settings("babelscope.analysis.experts", "ExpertSettings") = _section(  # type: ignore[valid-type]
        "babelscope.analysis.experts", "ExpertSettings"
    )
    align: _settings("babelscope.analysis.alignment", "AlignSettings") = _section(  # type: ignore[valid-type]
        "babelscope.analysis.alignment", "AlignSettings"
    )
    steer: _settings("babelscope.analysis.steering", "SteerSettings") = _section(  # type: ignore[valid-type]
        "babelscope.analysis.steering", "SteerSettings"
    )
    # How the per-checkpoint work runs (serial / Ray): changes no result, so it is not
    # part of the configuration a run directory is claimed by (docs/cluster.md).
    run: _settings("babelscope.executor.base", "ExecutorSettings") = _section(  # type: ignore[valid-type]
        "babelscope.executor.base", "ExecutorSettings"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        # '.' and '..' would make runs/ or the current directory the run directory.
        if set(v) == {"."}:
            raise ValueError("a run name cannot be only dots: use letters, digits, . _ -")
        return v

    @property
    def run_dir(self) -> Path:
        return Path(self.out) if self.out else Path("runs") / self.name

    @property
    def data_dir(self) -> Path:
        return Path(self.data.dir) if self.data.dir else self.run_dir / "data"


def _nearest(name: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else f" (valid: {', '.join(candidates)})"


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The valid keys of the section that ``loc`` points into."""
    cur: Any = model
    for part in loc:
        field = getattr(cur, "model_fields", {}).get(part)
        if field is None:
            break
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            cur = ann
        else:
            break
    return list(getattr(cur, "model_fields", {}))


def explain_validation_error(err: ValidationError, where: str) -> str:
    """One line naming the first problem: the key, what is wrong, and the fix."""
    e = err.errors()[0]
    loc = tuple(x for x in e["loc"] if not isinstance(x, int))
    key = ".".join(str(x) for x in e["loc"])
    if e["type"] == "extra_forbidden":
        valid = _fields_at(RunConfig, loc[:-1])
        return f"{where}: unknown key '{key}'{_nearest(str(loc[-1]), valid)}"
    if e["type"] == "literal_error":
        return f"{where}: '{key}' = {e.get('input')!r}: {e['msg'].lower()}"
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{where}: '{key}': {msg} (got {e.get('input')!r})"


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Read and validate a TOML configuration (None: the embedded default)."""
    raw: dict[str, Any] = {}
    where = "default configuration"
    if path is not None:
        p = Path(path)
        where = str(p)
        if not p.exists():
            raise BabelscopeError(f"configuration file {p} not found: check the path")
        if p.is_dir():
            raise BabelscopeError(f"configuration {p} is a directory: give its TOML file")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as e:
            raise BabelscopeError(f"cannot read configuration {p}: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise BabelscopeError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except tomllib.TOMLDecodeError as e:
            raise BabelscopeError(f"{p}: invalid TOML: {e}") from None
        # Relative paths in a config file are relative to the file, not to where it is run.
        _resolve_paths(raw, p.parent)
    if overrides:
        raw = _deep_merge(raw, overrides)
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        raise BabelscopeError(explain_validation_error(e, where)) from None
    from babelscope.config_rules import check_config

    check_config(cfg, raw, where)
    return cfg


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the config's local paths absolute, relative to the config file.

    A path is local unless written as a hub repository: ``hub:org/name``, or the ``repo``
    of a series table (a ``repo`` that exists next to the config file is a local copy).
    A series ``tokenizer`` of a hub series may be a hub id too.
    """

    def fix(d: dict[str, Any], key: str) -> None:
        v = d.get(key)
        if isinstance(v, str) and v and not v.startswith(HUB_PREFIX):
            d[key] = str((base / Path(v).expanduser()).resolve())

    for sec, key in (("data", "dir"), ("data", "user"), ("model", "pretrain_config"),
                     ("model", "architecture")):  # fmt: skip
        if isinstance(raw.get(sec), dict):
            fix(raw[sec], key)
    model = raw.get("model")
    if isinstance(model, dict):
        series = model.get("series")
        if isinstance(series, str):
            fix(model, "series")
        tables = [series] if isinstance(series, dict) else []
        entries = series if isinstance(series, list) else []
        if isinstance(series, dict) and isinstance(series.get("checkpoints"), list):
            entries = series["checkpoints"]
        hub_repo = False
        for table in tables:
            repo = table.get("repo")
            if isinstance(repo, str) and repo:
                if (base / repo).exists() and not repo.startswith(HUB_PREFIX):
                    fix(table, "repo")
                else:
                    table["repo"] = repo.removeprefix(HUB_PREFIX)
                    hub_repo = True
            fix(table, "path")
        for entry in [*tables, *entries]:
            if not isinstance(entry, dict):
                continue
            for key in ("path", "gguf"):
                fix(entry, key)
            tok = entry.get("tokenizer")
            if isinstance(tok, str) and tok:
                if tok.startswith(HUB_PREFIX) or (hub_repo and not (base / tok).exists()):
                    entry["tokenizer"] = tok.removeprefix(HUB_PREFIX)
                else:
                    fix(entry, "tokenizer")
    if isinstance(raw.get("out"), str):
        fix(raw, "out")


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = (
            _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        )
    return out


def dump_config(cfg: RunConfig) -> str:
    """The resolved configuration as TOML (what is saved as <run>/config.toml); ``[run]``
    (serial or Ray) is left out: the same study resumes on either engine."""
    import tomli_w

    data = cfg.model_dump(mode="json", exclude_none=True, exclude={"run"})
    return tomli_w.dumps(_drop_empty(data))


def _drop_empty(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _drop_empty(v) for k, v in d.items() if v is not None}
    return d
