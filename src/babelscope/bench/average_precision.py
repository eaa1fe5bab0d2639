"""Benchmark: exact AP of every unit at once vs the per-unit scikit-learn loop.

Realistic scores: 2,000 sentences x 100,000 units of ReLU/GELU-like pooled activations,
many of them tied (ReLU zeros, values rounded to 2 decimals), 5% positives. The reference
is ``average_precision_score`` called once per unit (what a straightforward implementation
does); it is timed on a sample of units and scaled. Peak memory is the RSS growth while
our AP runs (the input is allocated before). Besides wall time, the CPU time (of the
calling thread) of the loop and of the 1-thread run is recorded: on a shared machine the wall-clock ratio
moves with the other load, the CPU-time ratio much less.
"""

from __future__ import annotations

import time

import numpy as np


def _scores(n: int, units: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.05
    x = rng.standard_normal((n, units), dtype=np.float32)
    x[:, : units // 2] = np.maximum(x[:, : units // 2], 0)  # ReLU: half zeros, all tied
    g = x[:, units // 2 :]
    g *= 0.5 * (1 + np.tanh(0.8 * g))  # GELU-like
    np.round(x, 2, out=x)  # pooled activations at low precision: more ties
    x[y, :50] += 1.0  # a few real experts
    return x, y


def _peak_rss_during(fn) -> tuple[float, float, float]:
    """Seconds taken by ``fn``, the peak RSS growth (MiB) while it ran, and the CPU
    seconds of the calling thread (all the work with ``threads=1``; not the RSS watcher)."""
    import threading

    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.005)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    t0, c0 = time.perf_counter(), time.thread_time()
    fn()
    dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
    stop.set()
    t.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return dt, (peak[0] - base) / 2**20, cpu


def run(quick: bool = False) -> dict[str, float]:
    from sklearn.metrics import average_precision_score

    from babelscope.analysis.average_precision import (
        average_precision,
        default_threads,
        score_units,
    )

    n, units = (2000, 10_000) if quick else (2000, 100_000)
    sample = 200 if quick else 1000
    x, y = _scores(n, units)

    t0, c0 = time.perf_counter(), time.thread_time()
    idx = np.linspace(0, units - 1, sample).astype(int)
    ref = np.array([average_precision_score(y, x[:, u]) for u in idx])
    loop_s = (time.perf_counter() - t0) / sample * units
    loop_cpu = (time.thread_time() - c0) / sample * units

    out: dict[str, float] = {
        "units": units,
        "sentences": n,
        "sklearn_loop_s_scaled": loop_s,
        "sklearn_loop_cpu_s_scaled": loop_cpu,
    }
    for threads in sorted({1, default_threads()}):
        res: dict[str, np.ndarray] = {}

        def ours(th: int = threads, res: dict = res) -> None:
            res["ap"] = average_precision(x, y, threads=th)

        dt, mem, cpu = _peak_rss_during(ours)
        assert np.abs(res["ap"][idx] - ref).max() < 1e-9  # exact, not approximately right
        out[f"vectorised_s_threads{threads}"] = dt
        out[f"speedup_threads{threads}"] = loop_s / dt
        out[f"peak_mem_mib_threads{threads}"] = mem
        if threads == 1:
            out["vectorised_cpu_s_threads1"] = cpu
            out["speedup_cpu_threads1"] = loop_cpu / cpu
    # Many concepts over one pool (the experts stage): one ranking shared by 20 labels.
    rng = np.random.default_rng(1)
    labels = rng.random((n, 20)) < 0.05
    sub = x[:, : units // 10]
    t0 = time.perf_counter()
    score_units(sub, labels, threads=1)
    per_concept = (time.perf_counter() - t0) / 20 * 10
    out["multi20_s_per_concept_threads1"] = per_concept
    out["multi20_speedup_threads1"] = loop_s / per_concept
    out["input_mib"] = x.nbytes / 2**20
    return out
