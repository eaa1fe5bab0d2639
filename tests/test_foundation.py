"""The package, the CLI's error contract, and the shared I/O primitives."""

import subprocess
import sys

import pandas as pd
import pytest

from babelscope.corpora.corpus import corpus_hash, load_corpus, save_corpus
from babelscope.errors import BabelscopeError
from babelscope.io import atomic_path, read_parquet_metadata, settings_hash
from babelscope.languages import check_languages, tag_to_iso3


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "babelscope", *args], capture_output=True, text=True
    )


def test_help_lists_every_subcommand():
    out = run_cli("--help").stdout
    for cmd in [
        "data",
        "pretrain",
        "checkpoints",
        "probe",
        "experts",
        "align",
        "steer",
        "report",
        "run",
        "bench",
    ]:
        assert cmd in out


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "x.txt"
    with pytest.raises(ZeroDivisionError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise ZeroDivisionError
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_directory(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "old").write_text("1")
    with atomic_path(d) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("2")
    assert sorted(p.name for p in d.iterdir()) == ["new"]


def test_corpus_roundtrip_and_provenance(tmp_path):
    from helpers import tiny_corpus

    df = tiny_corpus()
    save_corpus(df, tmp_path, {"sources": ["tiny"]})
    back = load_corpus(tmp_path)
    assert len(back) == len(df)
    meta = read_parquet_metadata(tmp_path / "corpus.parquet")
    assert meta["corpus_hash"] == corpus_hash(back)
    assert corpus_hash(back.sample(frac=1, random_state=0)) == corpus_hash(back)


def test_corpus_errors(tmp_path):
    from helpers import tiny_corpus

    with pytest.raises(BabelscopeError, match="no corpus"):
        load_corpus(tmp_path)
    with pytest.raises(BabelscopeError, match="missing column"):
        save_corpus(pd.DataFrame({"id": ["a"], "text": ["x"]}), tmp_path)
    assert not (tmp_path / "corpus.parquet").exists()
    save_corpus(tiny_corpus(), tmp_path)
    with pytest.raises(BabelscopeError, match="no text in swa"):
        load_corpus(tmp_path, languages=["eng", "swa"])


def test_languages():
    assert tag_to_iso3("zh_Hans") == "zho"
    assert tag_to_iso3("pt_BR") is None
    assert tag_to_iso3("es") == "spa"
    assert check_languages(["eng", "SPA"]) == ["eng", "spa"]
    with pytest.raises(BabelscopeError, match="unknown language code 'xx'"):
        check_languages(["xx"])
    assert settings_hash({"a": 1, "b": 2}) == settings_hash({"b": 2, "a": 1})


def test_user_error_is_one_line_nonzero():
    r = run_cli("data", "stats", "--data", "/nonexistent/babelscope-data")
    assert r.returncode == 2
    assert r.stderr.startswith("error: ") and r.stderr.strip().count("\n") == 0
    assert "Traceback" not in r.stderr
