"""docs/results.md is generated from a run directory."""

import sys

from babelscope.report.results_md import main, md_table, render


def test_render_from_a_run(tmp_path, capsys):
    sys.path.insert(0, "tests")
    from babelscope.analysis.alignment import run_alignment
    from test_alignment import planted_run

    align = planted_run(tmp_path, steps=(0, 3))
    run_alignment(tmp_path, align)
    text = render(tmp_path)
    assert "## Experiment 2: expert alignment" in text and "| measure | layer | step |" in text
    assert "above the permutation null" in text or "not above the permutation null" in text
    assert main([str(tmp_path)]) == 0
    assert capsys.readouterr().out == text
    assert main([str(tmp_path / "missing")]) == 2


def test_md_table_precision():
    import pandas as pd

    t = md_table(pd.DataFrame({"a": [1.23456, float("nan")], "b": ["x", "y"]}), "{:.2f}")
    assert t.splitlines()[2] == "| 1.23 | x |" and t.splitlines()[3] == "|  | y |"
