"""The executor: the serial backend, the Ray backend on a local cluster (logical GPUs on a
CPU-only machine), a tiny study run on Ray equal to the serial run, and a Ray worker
killed mid-run whose task is retried (or, without retries, whose rerun finishes) with
the same results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from babelscope.config import load_config
from babelscope.errors import BabelscopeError
from babelscope.executor import ExecutorSettings, SerialExecutor, make_executor
from babelscope.pipeline import run_study

LANGS = ["eng", "spa", "deu", "zho"]
# The stages with per-checkpoint work, and what they need. Align and report run in the
# driver on either engine, from the shards compared here (null.npz included).
STAGES = ["data", "pretrain", "inspect", "probe", "similarity", "experts", "steer"]
QUICK = ["data", "pretrain", "inspect", "probe", "experts"]  # the default suite's share
# Timing fields of checkpoints.json: the only numbers allowed to differ between runs.
TIMING = {"seconds", "tokens_per_s"}


def _double(x: int, shared: int) -> int:
    if x < 0:
        raise BabelscopeError(f"negative item {x}: give a positive one")
    return 2 * x + shared


# --- serial, and what does not need Ray --------------------------------------------------


def test_serial_map_keeps_order_and_passes_shared():
    ex = SerialExecutor()
    assert ex.map(_double, [3, 1, 2], 10, desc="t") == [16, 12, 14]
    assert ex.map(_double, [], 10, desc="t") == []
    with pytest.raises(BabelscopeError, match="negative item -1"):
        ex.map(_double, [1, -1], 0, desc="t")


def test_address_without_ray_engine_is_refused():
    with pytest.raises(BabelscopeError, match=r"--engine ray"):
        make_executor(ExecutorSettings(address="auto"))


def test_no_ray_at_import_and_one_line_without_it(tmp_path, monkeypatch):
    """Importing babelscope imports no Ray; `--engine ray` without Ray is one line naming
    the install, before any work (no run directory)."""
    # The units' modules first, as a Ray worker imports them to unpickle a unit.
    units = ["analysis.probe_stage", "analysis.representations.stage", "analysis.experts_step",
             "analysis.steering.stage", "checkpoints.inspect"]  # fmt: skip
    code = (
        f"import sys, {', '.join('babelscope.' + u for u in units)};"
        "import babelscope.pipeline, babelscope.executor, babelscope.cli;"
        "print('ray' in sys.modules, flush=True);"
        "sys.modules['ray'] = None;"  # `import ray` now fails as if it were missing
        "sys.argv = ['babelscope', 'run', '--engine', 'ray', '--out', 'r']; babelscope.cli.main()"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.stdout.strip() == "False"
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: --engine ray needs Ray, which is not installed: pip install 'babelscope[ray]'"
    )
    assert not (tmp_path / "r").exists()
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(BabelscopeError, match=r"pip install 'babelscope\[ray\]'"):
        make_executor(ExecutorSettings(engine="ray"))


def test_engine_setting_is_not_part_of_the_claimed_config(tmp_path):
    from babelscope.config import dump_config

    a = load_config(None, overrides={"out": str(tmp_path)})
    b = load_config(None, overrides={"out": str(tmp_path), "run": {"engine": "ray"}})
    assert b.run.engine == "ray" and dump_config(a) == dump_config(b)
    with pytest.raises(BabelscopeError, match=r"run\.engine"):
        load_config(None, overrides={"run": {"engine": "dask"}})


# --- Ray --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray cluster for the module: 2 CPUs and 2 logical GPUs."""
    ray = pytest.importorskip("ray")
    # Tasks defined in this module must reach the workers by value (tests/ is not on
    # their path).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # "local": a new cluster even where an earlier `ray start` left its address behind.
    ray.init(address="local", num_cpus=2, num_gpus=2, object_store_memory=200 << 20,
             include_dashboard=False, logging_level="error")  # fmt: skip
    yield ray
    ray.shutdown()


def test_ray_map_order_errors_and_resources(ray_cluster):
    from babelscope.executor.ray_backend import RayExecutor

    ex = RayExecutor(num_gpus=0.5)  # joins the fixture's cluster, which it does not own
    assert ex.num_gpus == 0.5
    assert ex.map(_double, list(range(6)), 1, desc="t") == [1, 3, 5, 7, 9, 11]
    with pytest.raises(BabelscopeError, match="negative item -3"):
        ex.map(_double, [1, -3], 0, desc="t")
    ex.close()
    assert ray_cluster.is_initialized()
    assert RayExecutor().num_gpus == 1.0  # the cluster has GPUs: one per task by default
    assert RayExecutor(device="cpu").num_gpus == 0.0
    for kw, msg in (
        ({"num_gpus": 3}, "no node of the Ray cluster has that many GPUs"),
        ({"num_gpus": 1.5}, "a fraction of one GPU or whole GPUs"),
        ({"num_cpus": 4}, "that many CPUs"),
        ({"num_gpus": 0, "device": "cuda"}, "needs GPUs per task"),
    ):
        with pytest.raises(BabelscopeError, match=msg):
            RayExecutor(**kw)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from babelscope.corpora.build import build_corpus
    from helpers import TINY_TEXTS

    root = tmp_path_factory.mktemp("data")
    tsv = root / "parallel.tsv"
    rows = zip(*(TINY_TEXTS[lang] for lang in LANGS), strict=True)
    tsv.write_text("\n".join(["\t".join(LANGS), *("\t".join(r) for r in rows)]) + "\n")
    return build_corpus(root / "data", languages=LANGS, sources=(), user=tsv, min_positives=1)


def _config(path: Path, data: Path, series: Path, out: Path, run: str = "") -> Path:
    path.write_text(
        f'name = "tiny"\nout = "{out}"\n'
        f'[data]\ndir = "{data}"\nbuild = false\nlanguages = {json.dumps(LANGS)}\n'
        f'[model]\nseries = "{series}"\ndevice = "cpu"\n'
        "[probe]\nsentences_per_language = 6\ntokens_per_language = 24\nseeds = [0, 1]\n"
        "n_jobs = 1\n"
        "[similarity]\nitems = 8\nn_permutations = 20\nn_boot = 100\n"
        "[experts]\nmin_positives = 1\ntop_k_store = 8\nthreads = 1\n"
        "[align]\nk = 2\n"
        '[steer]\nseeds = 2\nmax_new_tokens = 4\nsource_lang = "spa"\nk = 4\nmax_concepts = 1\n'
        + run
    )
    return path


def _results(run_dir: Path) -> dict[str, object]:
    """Every Parquet table, every experts shard and the inspection, less timing fields."""
    res = run_dir / "results"
    out: dict[str, object] = {
        p.name: pd.read_parquet(p) for p in sorted(res.glob("*.parquet"))
    }  # fmt: skip
    for p in sorted((res / "ap").rglob("*.npz")):
        with np.load(p) as z:
            out[str(p.relative_to(res))] = {k: z[k] for k in z.files}
    rows = json.loads((run_dir / "checkpoints.json").read_text())["checkpoints"]
    out["checkpoints.json"] = [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
    return out


def _assert_same(a: dict[str, object], b: dict[str, object]) -> None:
    assert sorted(a) == sorted(b)
    for name, x in a.items():
        y = b[name]
        if isinstance(x, pd.DataFrame):
            pd.testing.assert_frame_equal(x, y, check_exact=True, obj=name)
        elif isinstance(x, dict):
            assert sorted(x) == sorted(y), name
            for k in x:
                np.testing.assert_array_equal(x[k], y[k], err_msg=f"{name}:{k}")
        else:
            assert x == y, name


def _serial(root: Path, data: Path, series: Path, stages: list[str]) -> dict[str, object]:
    cfg = _config(root / "s.toml", data, series, root / "out")
    return _results(run_study(load_config(cfg), stages=stages).dir)


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory, tiny_data, tiny_series_dir):
    tables = _serial(tmp_path_factory.mktemp("serial"), tiny_data, tiny_series_dir, QUICK)
    assert {"probe.parquet", "experts.parquet", "ap/step-2/null.npz"} <= set(tables)
    return tables


@pytest.fixture(scope="module")
def serial_full(tmp_path_factory, tiny_data, tiny_series_dir):
    tables = _serial(tmp_path_factory.mktemp("serial"), tiny_data, tiny_series_dir, STAGES)
    assert {"similarity.parquet", "similarity_lens.parquet", "steering.parquet"} <= set(tables)
    return tables


def test_ray_run_equals_serial_run(ray_cluster, serial_run, tmp_path, tiny_data, tiny_series_dir):
    """`babelscope run --engine ray` (here the [run] section) gives the serial tables."""
    cfg = _config(tmp_path / "r.toml", tiny_data, tiny_series_dir, tmp_path / "out",
                  run="[run]\nengine = \"ray\"\nnum_gpus = 0.5\n")  # fmt: skip
    run = run_study(load_config(cfg), stages=QUICK)
    _assert_same(serial_run, _results(run.dir))
    prov = json.loads((run.dir / "provenance.json").read_text())
    assert prov["engine"] == "ray"
    assert ray_cluster.is_initialized()  # the run joined the fixture's cluster, left it up


def _die_once(item: object, job: tuple) -> object:
    """Run ``fn(item, shared)``, but first kill this worker process (SIGKILL, as the OOM
    killer would) the first time a unit for the chosen step starts, per stage."""
    fn, shared, marker_dir, step = job
    if getattr(item, "step", None) == step:
        marker = Path(marker_dir) / f"{fn.__name__}-{step}"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
    return fn(item, shared)


def _killing_executor(marker_dir: Path, step: int, retries: int):
    from babelscope.executor.ray_backend import RayExecutor

    class Killing(RayExecutor):
        def map(self, fn, items, shared=None, *, desc):
            return super().map(_die_once, items, (fn, shared, str(marker_dir), step), desc=desc)

    return Killing(num_gpus=0.5, max_retries=retries)


@pytest.mark.slow
def test_killed_worker_is_retried_with_the_same_results(
    ray_cluster, serial_full, tmp_path, tiny_data, tiny_series_dir
):
    """Every stage's worker for step 1 is killed on its first attempt; Ray retries the task
    and the results of every per-checkpoint stage equal the serial run's."""
    markers = tmp_path / "markers"
    markers.mkdir()
    cfg = _config(tmp_path / "k.toml", tiny_data, tiny_series_dir, tmp_path / "out")
    with _killing_executor(markers, 1, retries=2) as ex:
        run = run_study(load_config(cfg), stages=STAGES, executor=ex)
    killed = sorted(p.name for p in markers.iterdir())
    assert killed == ["experts_step-1", "inspect_checkpoint-1", "probe_step-1",
                      "similarity_step-1", "steer_step-1"]  # fmt: skip
    _assert_same(serial_full, _results(run.dir))


def test_killed_worker_without_retries_resumes_on_rerun(
    ray_cluster, serial_run, tmp_path, tiny_data, tiny_series_dir
):
    """Without retries a dead worker stops the run with one line; the rerun redoes only
    the missing step, and the results equal the serial run's."""
    markers = tmp_path / "markers"
    markers.mkdir()
    (markers / "inspect_checkpoint-1").write_text("")  # only the probe's worker dies
    cfg = load_config(_config(tmp_path / "k.toml", tiny_data, tiny_series_dir, tmp_path / "out"))
    stages = ["data", "pretrain", "inspect", "probe"]
    with (
        _killing_executor(markers, 1, retries=0) as ex,
        pytest.raises(BabelscopeError, match=r"step 1 failed on the Ray cluster.*run the same"),
    ):
        run_study(cfg, stages=stages, executor=ex)
    partial = tmp_path / "out" / "results" / ".probe"
    kept = {p.name: p.stat().st_mtime_ns for p in partial.glob("step-[02].parquet")}
    assert sorted(kept) == ["step-0.parquet", "step-2.parquet"]
    assert not (partial / "step-1.parquet").exists()
    with _killing_executor(markers, 1, retries=0) as ex:  # marker set: no more kills
        run = run_study(cfg, stages=stages, executor=ex)
    assert {p: partial.joinpath(p).stat().st_mtime_ns for p in kept} == kept  # not redone
    assert json.loads((run.dir / "provenance.json").read_text())["engine"] == "ray"
    pd.testing.assert_frame_equal(
        serial_run["probe.parquet"], pd.read_parquet(run.dir / "results" / "probe.parquet")
    )
