"""`babelscope bench --quick`: every benchmark runs and reports finite figures into the
results file. Speeds are measured by `make bench`, never asserted here."""

import json
import math

from babelscope.bench import available, run_benchmarks


def test_every_benchmark_runs_quick_and_merges_its_figures(tmp_path):
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"figures": {"older.figure": 1.0}}))
    figures = run_benchmarks(None, out, quick=True)
    assert set(available()) >= {"average_precision", "extraction", "steering"}
    for name in available():
        assert any(k.startswith(f"{name}.") for k in figures), name
    saved = json.loads(out.read_text())
    assert saved["quick"] is True and saved["figures"]["older.figure"] == 1.0
    assert all(math.isfinite(v) for v in saved["figures"].values())
    for key in (
        "extraction.mlp_vs_plain",
        "steering.forced_vs_generate",
        "average_precision.speedup_threads1",
    ):
        assert saved["figures"][key] > 0
