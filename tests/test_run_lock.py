"""Run directories: the ownership marker, refused paths, the lock, and what a run
directory's records are checked against (tests for src/babelscope/rundir.py and its use
by `babelscope run`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from babelscope.errors import BabelscopeError
from babelscope.rundir import (
    LOCK,
    MARKER,
    check_run_dir_path,
    claim_run_dir,
    is_babelscope_data_dir,
    run_lock,
)

LANGS = ["eng", "spa", "deu", "zho"]


def test_claim_creates_adopts_empty_and_refuses_foreign(tmp_path):
    claim_run_dir(tmp_path / "new" / "run")
    assert (tmp_path / "new" / "run" / MARKER).is_file()
    (tmp_path / "empty").mkdir()
    claim_run_dir(tmp_path / "empty")
    assert (tmp_path / "empty" / MARKER).is_file()
    mine = tmp_path / "mine"
    (mine / "data").mkdir(parents=True)
    (mine / "data" / "notes.txt").write_text("keep")
    with pytest.raises(BabelscopeError, match="not made by babelscope.*data"):
        claim_run_dir(mine)
    assert not (mine / MARKER).exists() and (mine / "data" / "notes.txt").read_text() == "keep"
    legacy = tmp_path / "legacy"
    (legacy / ".stages").mkdir(parents=True)  # a run of babelscope before the marker
    claim_run_dir(legacy)
    assert (legacy / MARKER).is_file()


def test_refused_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for bad in (".", "..", "./", "runs/..", str(tmp_path), str(tmp_path.parent), "/"):
        with pytest.raises(BabelscopeError, match="run directory|current directory"):
            check_run_dir_path(Path(bad))
    (tmp_path / "f").write_text("x")
    with pytest.raises(BabelscopeError, match="is a file"):
        check_run_dir_path(Path("f"))
    assert check_run_dir_path(Path("runs/ok")) == tmp_path / "runs" / "ok"


def test_data_dir_is_rebuilt_only_when_it_holds_babelscope_files_alone(tmp_path):
    assert is_babelscope_data_dir(tmp_path / "missing")
    d = tmp_path / "d"
    d.mkdir()
    assert is_babelscope_data_dir(d)
    for f in ("corpus.parquet", "concepts.parquet", "manifest.json"):
        (d / f).write_text("")
    assert is_babelscope_data_dir(d)
    (d / "mine.txt").write_text("")
    assert not is_babelscope_data_dir(d)


HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from babelscope.rundir import run_lock
    run, go = Path(sys.argv[1]), Path(sys.argv[2])
    with run_lock(run):
        print("locked", flush=True)
        while not go.exists():
            time.sleep(0.05)
    """
)


def _holder(run: Path, go: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run), str(go)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_holder_is_refused_naming_the_first_or_waits(tmp_path):
    run = tmp_path / "run"
    claim_run_dir(run)
    go = tmp_path / "go"
    proc = _holder(run, go)
    try:
        with (
            pytest.raises(BabelscopeError, match=rf"in use by pid {proc.pid} on .*--wait"),
            run_lock(run),
        ):
            pass
        holder = json.loads((run / LOCK).read_text())
        assert holder["pid"] == proc.pid
        go.write_text("")  # the holder lets go; a waiter then gets the lock
        with run_lock(run, wait=True, poll_s=0.05):
            assert json.loads((run / LOCK).read_text())["pid"] == os.getpid()
    finally:
        go.write_text("")
        proc.wait()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    run = tmp_path / "run"
    claim_run_dir(run)
    proc = _holder(run, tmp_path / "never")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with run_lock(run):  # the kernel dropped the dead process's lock
        pass


@pytest.fixture(scope="module")
def lock_data(tmp_path_factory):
    from babelscope.corpora.build import build_corpus
    from helpers import TINY_TEXTS

    root = tmp_path_factory.mktemp("lockdata")
    tsv = root / "parallel.tsv"
    n = len(TINY_TEXTS["eng"])
    lines = ["\t".join(LANGS)] + ["\t".join(TINY_TEXTS[g][i] for g in LANGS) for i in range(n)]
    tsv.write_text("\n".join(lines) + "\n")
    return build_corpus(root / "data", languages=LANGS, sources=(), user=tsv, min_positives=1)


def _study(path: Path, data: Path, series: Path, out: Path, seeds: list[int]) -> Path:
    from babelscope.config import DataConfig

    controls = "controls = []\n" if "controls" in DataConfig.model_fields else ""
    path.write_text(
        f'name = "lock"\nout = "{out}"\nstages = ["data", "pretrain", "inspect", "probe"]\n'
        f'[data]\ndir = "{data}"\nbuild = false\nlanguages = {json.dumps(LANGS)}\n{controls}'
        f'[model]\nseries = "{series}"\ndevice = "cpu"\n'
        f"[probe]\nsentences_per_language = 6\ntokens_per_language = 24\nseeds = {seeds}\n"
        'n_jobs = 1\n[steer]\nsource_lang = "spa"\n'
    )
    return path


def test_two_runs_on_one_directory(tmp_path, lock_data, tiny_series_dir):
    """A second run is refused while the first works (naming it); with --wait it runs
    after it; the directory ends consistent: config.toml and probe.parquet agree."""
    import pandas as pd

    from babelscope.config import load_config
    from babelscope.io import read_parquet_metadata

    out = tmp_path / "run"
    a = _study(tmp_path / "a.toml", lock_data, tiny_series_dir, out, [0])
    b = _study(tmp_path / "b.toml", lock_data, tiny_series_dir, out, [0, 1])
    env = {**os.environ, "BABELSCOPE_QUIET": "1"}
    cli = [sys.executable, "-m", "babelscope", "run"]
    first = subprocess.Popen([*cli, str(a)], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while True:  # until the first run holds the lock (it names itself in the file)
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            try:
                if json.loads((out / LOCK).read_text()).get("pid") == first.pid:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        refused = subprocess.run([*cli, str(b), "--force"], env=env, capture_output=True, text=True)
        waiter = subprocess.Popen(
            [*cli, str(b), "--force", "--wait"], env=env, stderr=subprocess.PIPE, text=True
        )
    finally:
        first_err = first.communicate()[1]
    waiter_err = waiter.communicate()[1]
    assert refused.returncode == 2, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by pid {first.pid}" in lines[0], refused.stderr
    assert first.returncode == 0, first_err
    assert waiter.returncode == 0, waiter_err
    # The run that finished last owns the directory, and its results say so.
    saved = load_config(out / "config.toml")
    assert saved.probe.seeds == [0, 1]
    meta = read_parquet_metadata(out / "results" / "probe.parquet")
    assert meta["settings"]["seeds"] == [0, 1]
    assert sorted(pd.read_parquet(out / "results" / "probe.parquet")["seed"].unique()) == [0, 1]


def test_tree_hash_follows_content(tmp_path):
    from babelscope.rundir import tree_hash

    assert tree_hash(None) is None
    f = tmp_path / "d" / "a.txt"
    f.parent.mkdir()
    f.write_text("one")
    file_h, dir_h = tree_hash(f), tree_hash(f.parent)
    f.write_text("two")
    assert tree_hash(f) != file_h and tree_hash(f.parent) != dir_h


def test_stage_keys_follow_the_files(tmp_path, lock_data, tiny_series_dir):
    """A torn result is recomputed (from the kept per-step work), --force recomputes the
    per-step work too, and a corpus replaced in place is noticed by every stage reading it."""
    import shutil

    import pandas as pd

    from babelscope.config import load_config
    from babelscope.corpora.corpus import data_hash
    from babelscope.io import read_parquet_metadata, write_parquet_atomic
    from babelscope.pipeline import run_study

    data = tmp_path / "data"
    shutil.copytree(lock_data, data)
    out = tmp_path / "run"
    cfg = load_config(_study(tmp_path / "s.toml", data, tiny_series_dir, out, [0]))
    result = out / "results" / "probe.parquet"
    run_study(cfg)
    reference = pd.read_parquet(result)

    # Tamper with the kept per-step result of step 0, then tear the combined file.
    part = out / "results" / ".probe" / "step-0.parquet"
    df = pd.read_parquet(part)
    df["accuracy"] = -1.0
    write_parquet_atomic(df, part, metadata=read_parquet_metadata(part))
    result.write_bytes(result.read_bytes()[:100])
    run_study(cfg)  # the torn result is noticed; finished per-step work is reused
    assert (pd.read_parquet(result).query("step == 0")["accuracy"] == -1.0).all()
    run_study(cfg, stages=["probe"], force=True)  # --force recomputes the per-step work
    pd.testing.assert_frame_equal(pd.read_parquet(result), reference)

    # The corpus replaced in place by one with another sentence: every reader notices.
    old_hash = data_hash(data)
    corpus = pd.read_parquet(data / "corpus.parquet")
    corpus.loc[corpus["lang"] == "eng", "text"] = corpus.loc[corpus["lang"] == "eng", "text"] + "!"
    corpus.to_parquet(data / "corpus.parquet")
    run = run_study(cfg)
    assert run.notes["data"]["data_hash"] == data_hash(data) != old_hash
    assert read_parquet_metadata(result)["data_hash"] == data_hash(data)


def test_standalone_commands_take_the_lock(tmp_path, capsys):
    """`babelscope align --out DIR` (and the other standalone commands) refuse a directory
    another babelscope process holds, with one line naming it."""
    from babelscope.cli import main
    from babelscope.rundir import run_lock

    out = tmp_path / "run"
    out.mkdir()
    with run_lock(out):
        with pytest.raises(SystemExit) as e:
            main(["align", "--out", str(out)])
        assert e.value.code == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "is in use by pid" in err[0], err
