"""Alignment figures: every measure's heatmap, language matrices, trajectories; PNG + SVG."""

import pytest

from babelscope.analysis.alignment import AlignSettings, run_alignment
from babelscope.errors import BabelscopeError
from babelscope.report.figures.alignment import plot_alignment


def test_figures_written(tmp_path):
    from test_alignment import planted_run

    planted_run(tmp_path, n_random=2)
    run_alignment(tmp_path, AlignSettings(k=2, k_model=4, permutations=19, n_trajectory_units=4))
    paths = plot_alignment(tmp_path)
    names = {p.name for p in paths}
    for stem in ["alignment_overlap", "alignment_jaccard", "alignment_transfer_ap", "alignment_self_ap",
                 "alignment_crosslingual", "alignment_self_ap_insample", "alignment_languages",
                 "alignment_trajectories"]:  # fmt: skip
        assert f"{stem}.png" in names and f"{stem}.svg" in names
    assert all(p.stat().st_size > 1000 for p in paths)
    assert not [p for p in (tmp_path / "figures").iterdir() if p.name.startswith(".")]


def test_figures_need_results(tmp_path):
    with pytest.raises(BabelscopeError, match="babelscope align"):
        plot_alignment(tmp_path)
