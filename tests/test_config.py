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
    with pytest.raises(BabelscopeError, match=r"data.user = .*does not exist"):
        load_config(write(tmp_path, '[data]\nuser = "missing.jsonl"\n'))
    with pytest.raises(BabelscopeError, match=r"model.series = .*does not exist"):
        load_config(write(tmp_path, '[model]\nseries = "./no/such/dir"\n'))


def test_relative_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "ckpts").mkdir()
    cfg = load_config(write(tmp_path, '[model]\nseries = "ckpts"\n'))
    assert cfg.model.series == str((tmp_path / "ckpts").resolve())
    # 'org/name' with no such local path is a hub repo id and stays as it is.
    cfg = load_config(write(tmp_path, '[model]\nseries = "bigscience/bloom-560m"\n'))
    assert cfg.model.series == "bigscience/bloom-560m"


def test_sections_are_the_stage_settings():
    from babelscope.analysis.probe import ProbeSettings

    assert isinstance(RunConfig().probe, ProbeSettings)


def test_paths_inside_a_listed_series_resolve_against_the_file(tmp_path):
    (tmp_path / "a.gguf").write_bytes(b"")
    cfg = load_config(
        write(
            tmp_path,
            '[model]\nseries = [{ step = 1, gguf = "a.gguf" }, { step = 2, path = "b" }]\n',
        )
    )
    assert cfg.model.series[0]["gguf"] == str((tmp_path / "a.gguf").resolve())
    assert cfg.model.series[1]["path"] == str((tmp_path / "b").resolve())
