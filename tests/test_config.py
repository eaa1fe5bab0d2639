"""The study configuration: validation, nearest-key hints, path checks, saved form."""

import pytest

from babelscope.config import RunConfig, dump_config, load_config
from babelscope.errors import BabelscopeError


def write(tmp_path, text):
    p = tmp_path / "study.toml"
    p.write_text(text)
    return p


def test_default_is_valid_and_roundtrips(tmp_path):
    cfg = load_config(None)
    assert cfg.name == "demo" and cfg.run_dir.as_posix() == "runs/demo"
    assert len(cfg.data.languages) == 16
    p = write(tmp_path, dump_config(cfg))
    again = load_config(p)
    assert again.probe == cfg.probe and again.experts == cfg.experts and again.steer == cfg.steer


def test_unknown_key_names_nearest(tmp_path):
    with pytest.raises(
        BabelscopeError, match=r"unknown key 'data.langauges'.*did you mean 'languages'"
    ):
        load_config(write(tmp_path, '[data]\nlangauges = ["eng"]\n'))
    with pytest.raises(BabelscopeError, match=r"unknown key 'probee'.*did you mean 'probe'"):
        load_config(write(tmp_path, "[probee]\n"))


def test_wrong_type_and_bad_values(tmp_path):
    with pytest.raises(BabelscopeError, match=r"'model.include_flagged'"):
        load_config(write(tmp_path, '[model]\ninclude_flagged = "perhaps"\n'))
    with pytest.raises(BabelscopeError, match=r"unknown language code 'xx'"):
        load_config(write(tmp_path, '[data]\nlanguages = ["eng", "xx"]\n'))
    with pytest.raises(BabelscopeError, match=r"'model.dtype'"):
        load_config(write(tmp_path, '[model]\ndtype = "fp8"\n'))
    with pytest.raises(BabelscopeError, match="invalid TOML"):
        load_config(write(tmp_path, "[data\n"))


def test_missing_files_named(tmp_path):
    with pytest.raises(BabelscopeError, match="not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(BabelscopeError, match=r"data.user = .*not found"):
        load_config(write(tmp_path, '[data]\nuser = "missing.jsonl"\n'))
    with pytest.raises(BabelscopeError, match=r"model.series = .*not found"):
        load_config(write(tmp_path, '[model]\nseries = "./no/such/dir"\n'))


def test_relative_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "ckpts").mkdir()
    cfg = load_config(write(tmp_path, '[model]\nseries = "ckpts"\n'))
    assert cfg.model.series == str((tmp_path / "ckpts").resolve())
    # 'org/name' is a local path like any other: missing, it is "not found" (no hub retries).
    with pytest.raises(BabelscopeError, match=r"bigscience/bloom-560m' not found.*hub:org/name"):
        load_config(write(tmp_path, '[model]\nseries = "bigscience/bloom-560m"\n'))
    # A hub repository is said so: hub:org/name, or the repo of a series table.
    cfg = load_config(write(tmp_path, '[model]\nseries = "hub:bigscience/bloom-560m"\n'))
    assert cfg.model.series == "hub:bigscience/bloom-560m"
    cfg = load_config(
        write(
            tmp_path,
            '[model.series]\nrepo = "org/m"\nrevisions = ["step1"]\ntokenizer = "org/t"\n',
        )
    )
    assert cfg.model.series["repo"] == "org/m" and cfg.model.series["tokenizer"] == "org/t"


def test_sections_are_the_stage_settings():
    from babelscope.analysis.probe import ProbeSettings

    assert isinstance(RunConfig().probe, ProbeSettings)


def test_paths_inside_a_listed_series_resolve_against_the_file(tmp_path):
    (tmp_path / "a.gguf").write_bytes(b"")
    (tmp_path / "b").mkdir()
    cfg = load_config(
        write(
            tmp_path,
            '[model]\nseries = [{ step = 1, gguf = "a.gguf" }, { step = 2, path = "b" }]\n',
        )
    )
    assert cfg.model.series[0]["gguf"] == str((tmp_path / "a.gguf").resolve())
    assert cfg.model.series[1]["path"] == str((tmp_path / "b").resolve())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[probe]\nlanguages = []\n", r"'probe.languages' is an empty list: remove the key"),
        ("[experts]\nconcepts = []\n", r"'experts.concepts' is an empty list"),
        ("stages = []\n", r"'stages' is an empty list"),
        ('name = ".."\n', r"only dots"),
        ('[data]\nlanguages = ["eng", "spa"]\n[probe]\nlanguages = ["fra"]\n',
         r"probe.languages names fra, not in data.languages"),
        ('[data]\nlanguages = ["eng", "deu"]\n', r"steer.source_lang names spa"),
        ("[align]\nk = 3\nk_fraction = 0.1\n", r"align.k and align.k_fraction are both set"),
        ('[data]\nbuild = false\nuser = "u.jsonl"\n', r"data.build = false"),
        ('[model]\nseries = "s"\npretrain_config = "p.toml"\n',
         r"model.series and model.pretrain_config are both set"),
    ],
)  # fmt: skip
def test_rules_beyond_types(tmp_path, text, message):
    (tmp_path / "u.jsonl").write_text("")
    (tmp_path / "p.toml").write_text("")
    (tmp_path / "s").mkdir()
    with pytest.raises(BabelscopeError, match=message):
        load_config(write(tmp_path, text))


def test_absent_lists_mean_all_and_sources_may_be_empty_with_user_text(tmp_path):
    (tmp_path / "u.jsonl").write_text("")
    cfg = load_config(write(tmp_path, '[data]\nsources = []\nuser = "u.jsonl"\n'))
    assert cfg.data.sources == [] and cfg.probe.languages is None


def test_the_saved_configuration_loads_back(tmp_path):
    """config.toml lists every key (k beside its default k_fraction, ...): it must load
    again as it is, to resume a run or to be copied for the next one."""
    from babelscope.config import dump_config

    for text in (
        "",
        '[align]\nk = 3\n[steer]\nsteps = [0]\nconcepts = ["water"]\n',
        '[data]\nlanguages = ["eng", "spa", "deu", "zho"]\n',  # the default other_lang is absent
    ):
        cfg = load_config(write(tmp_path, text))
        saved = tmp_path / "saved.toml"
        saved.write_text(dump_config(cfg))
        assert load_config(saved).model_dump() == cfg.model_dump()
