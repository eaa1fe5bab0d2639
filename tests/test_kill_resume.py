"""SIGKILL at a random moment of every stage, then a rerun: the results are those of an
uninterrupted run.

One study on a micro series (the embedded pre-training with ``micro.toml`` on the tiny
corpus) runs once uninterrupted as the reference. A second copy is run again and again,
each time killed with SIGKILL at a random moment of the next stage (data, pretrain,
inspect, probe, experts, align, steer, report: the moment is drawn within the stage's
reference duration once the stage has started); a last plain rerun finishes it. Its
results, checkpoint inspection and trained weights must equal the reference's. The data
builder (``babelscope data build``) gets the same treatment on its own.

Every process runs the CLI with one thread, so reference and resumed runs compute in
the same order; the random draws are seeded and the seed is in every failure message.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

LANGS = ["eng", "spa", "deu", "zho"]
STAGES = ["data", "pretrain", "inspect", "probe", "experts", "align", "steer", "report"]
ENV = {**os.environ, "BABELSCOPE_QUIET": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CLI = [sys.executable, "-m", "babelscope"]
SEED = int.from_bytes(os.urandom(4), "little")


def _tsv(root: Path) -> Path:
    from helpers import TINY_TEXTS

    tsv = root / "parallel.tsv"
    n = len(TINY_TEXTS["eng"])
    lines = ["\t".join(LANGS)] + ["\t".join(TINY_TEXTS[g][i] for g in LANGS) for i in range(n)]
    tsv.write_text("\n".join(lines) + "\n")
    return tsv


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from babelscope.corpora.build import build_corpus

    root = tmp_path_factory.mktemp("killdata")
    return build_corpus(
        root / "data", languages=LANGS, sources=(), user=_tsv(root), min_positives=1
    )


def _known(model: object, **values: object) -> str:
    """TOML lines for the keys the settings model has (names settle as stages evolve)."""
    fields = model.model_fields  # type: ignore[attr-defined]
    return "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items() if k in fields)


def _study(path: Path, data: Path, out: Path) -> Path:
    """The study: micro pre-training on the tiny corpus, every stage at its smallest."""
    from babelscope.config import DataConfig, RunConfig

    micro = resources.files("babelscope.pretrain") / "micro.toml"
    sections = RunConfig.model_fields
    align = sections["align"].annotation
    steer = sections["steer"].annotation
    controls = "controls = []\n" if "controls" in DataConfig.model_fields else ""
    path.write_text(
        f'name = "kill"\nout = "{out}"\n'
        f'[data]\ndir = "{data}"\nbuild = false\nlanguages = {json.dumps(LANGS)}\n{controls}'
        f'[model]\npretrain_config = "{micro}"\ndevice = "cpu"\n'
        "[probe]\nsentences_per_language = 6\ntokens_per_language = 24\nseeds = [0]\nn_jobs = 1\n"
        "[experts]\nmin_positives = 1\ntop_k_store = 8\n"
        "[align]\n"
        + _known(align, k=2, permutations=10, n_permutations=10, n_boot=100)
        + '[steer]\nsource_lang = "spa"\n'
        + _known(
            steer,
            seeds=2,
            max_new_tokens=4,
            max_concepts=1,
            k=[4],
            checkpoints=2,
            conditions=["experts", "none"],
            random_draws=1,
            fluency=False,
        )  # fmt: skip
    )
    return path


def _records(out: Path) -> dict[str, dict]:
    recs = {}
    for s in STAGES:
        p = out / ".stages" / f"{s}.json"
        if p.is_file():
            recs[s] = json.loads(p.read_text())
    return recs


def _started(out: Path, stage: str, proc: subprocess.Popen) -> bool:
    """Whether ``stage`` has begun in ``proc``: the process holds the run's lock (taken
    just before the first stage) and the stage before it is recorded (finished now, or
    by an earlier process and then skipped at once)."""
    try:
        if json.loads((out / ".lock").read_text()).get("pid") != proc.pid:
            return False
    except (OSError, ValueError):
        return False
    if stage == STAGES[0]:
        return True
    return (out / ".stages" / f"{STAGES[STAGES.index(stage) - 1]}.json").is_file()


def _kill_during(study: Path, out: Path, stage: str, within_s: float, rng: random.Random) -> str:
    """Start the run, wait for ``stage`` to begin, SIGKILL after a random part of
    ``within_s``; returns where the kill landed (the last recorded stage)."""
    proc = subprocess.Popen([*CLI, "run", str(study)], env=ENV, stderr=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not _started(out, stage, proc):
            if proc.poll() is not None:
                return "finished before the kill"
            assert time.monotonic() < deadline, f"stage {stage} never started (seed {SEED})"
            time.sleep(0.01)
        time.sleep(rng.uniform(0, within_s))
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    done = [s for s in STAGES if s in _records(out)]
    return f"killed after {done[-1] if done else 'nothing'}"


def _same_results(a: Path, b: Path) -> None:
    for f in sorted((a / "results").glob("*.parquet")):
        pd.testing.assert_frame_equal(
            pd.read_parquet(f), pd.read_parquet(b / "results" / f.name), obj=f.name
        )
    assert sorted(p.name for p in (a / "results").glob("*.parquet")) == sorted(
        p.name for p in (b / "results").glob("*.parquet")
    )
    ca, cb = (json.loads((d / "checkpoints.json").read_text()) for d in (a, b))
    assert ca["usable_steps"] == cb["usable_steps"]
    for ra, rb in zip(ca["checkpoints"], cb["checkpoints"], strict=True):
        assert ra["fingerprint"] == rb["fingerprint"] and ra["flags"] == rb["flags"]
    assert (b / "report.html").is_file()


def test_sigkill_during_every_stage_then_rerun_equals_uninterrupted(tmp_path, data_dir):
    rng = random.Random(SEED)
    ref_out, out = tmp_path / "reference", tmp_path / "killed"
    ref = _study(tmp_path / "ref.toml", data_dir, ref_out)
    study = _study(tmp_path / "killed.toml", data_dir, out)
    r = subprocess.run([*CLI, "run", str(ref)], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    seconds = {s: rec.get("seconds", 0.0) for s, rec in _records(ref_out).items()}
    landed = {}
    for stage in STAGES:
        landed[stage] = _kill_during(study, out, stage, seconds.get(stage, 0.0), rng)
    r = subprocess.run([*CLI, "run", str(study)], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, f"seed {SEED}, kills {landed}: {r.stderr[-3000:]}"
    _same_results(ref_out, out)
    # The embedded series itself: pre-training resumed to the same weights.
    from safetensors.torch import load_file

    steps = sorted(p.name for p in (ref_out / "model" / "checkpoints").iterdir())
    assert steps == sorted(p.name for p in (out / "model" / "checkpoints").iterdir())
    for s in steps:
        wa = load_file(str(ref_out / "model" / "checkpoints" / s / "model.safetensors"))
        wb = load_file(str(out / "model" / "checkpoints" / s / "model.safetensors"))
        assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa), s


def test_sigkill_during_data_build_then_rerun_equals_uninterrupted(tmp_path):
    from babelscope.corpora.corpus import load_corpus

    rng = random.Random(SEED)
    tsv = _tsv(tmp_path)
    args = ["data", "build", "--languages", ",".join(LANGS), "--sources", "", "--user", str(tsv)]
    t = time.monotonic()
    r = subprocess.run([*CLI, *args, "--out", str(tmp_path / "ref")], env=ENV,
                       capture_output=True, text=True)  # fmt: skip
    took = time.monotonic() - t
    assert r.returncode == 0, r.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen([*CLI, *args, "--out", str(out)], env=ENV,
                            stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)  # fmt: skip
    time.sleep(rng.uniform(0, took))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # What a kill leaves is never taken for a data directory: the rerun builds it whole.
    r = subprocess.run([*CLI, *args, "--out", str(out)], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, f"seed {SEED}: {r.stderr}"
    pd.testing.assert_frame_equal(load_corpus(tmp_path / "ref"), load_corpus(out))
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "ref" / "concepts.parquet"),
        pd.read_parquet(out / "concepts.parquet"),
    )


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, data_dir):
    """SIGINT (Ctrl-C) during a stage: exit 130 and one line naming the finished stages
    and the way to resume (Typer used to swallow it into a silent 130)."""
    out = tmp_path / "run"
    study = _study(tmp_path / "study.toml", data_dir, out)
    proc = subprocess.Popen([*CLI, "run", str(study)], env=ENV, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 600
        while not _started(out, "inspect", proc):  # pre-training is recorded
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
    finally:
        err = proc.communicate()[1]
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interrupted: stages data, pretrain") and str(out) in last, err
    assert "run the same command again to resume" in last and "Traceback" not in err
