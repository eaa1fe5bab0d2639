"""Probe figures (babelscope.report.figures.probe): PNG and SVG, chance and control drawn in."""

from __future__ import annotations

import numpy as np
import pandas as pd

from babelscope.report.figures.probe import plot_probe


def fake_results(steps=(0, 16, 256, 4096), n_layers=5, seeds=(0, 1, 2)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i, step in enumerate(steps):
        for layer in range(n_layers):
            for seed in seeds:
                acc = (
                    0.95
                    - 0.4 * i / len(steps) * (layer not in (0, n_layers - 1))
                    + rng.normal() * 0.01
                )
                ctrl = 0.25 + rng.normal() * 0.01
                rows.append(dict(step=step, layer=layer, seed=seed, accuracy=acc, control_accuracy=ctrl,
                                 selectivity=acc - ctrl, chance=0.25, n_train=400, n_test=100,
                                 n_languages=4, converged=True))  # fmt: skip
    return pd.DataFrame(rows)


def test_plot_probe_writes_png_and_svg(tmp_path):
    paths = plot_probe(fake_results(), tmp_path / "figures")
    names = sorted(p.name for p in paths)
    assert names == [
        "probe_by_layer.png",
        "probe_by_layer.svg",
        "probe_heatmap.png",
        "probe_heatmap.svg",
    ]
    for p in paths:
        assert p.stat().st_size > 1000
    assert (tmp_path / "figures" / "probe_heatmap.png").read_bytes()[:4] == b"\x89PNG"
    svg = (tmp_path / "figures" / "probe_by_layer.svg").read_text()
    # The legend names the control and chance lines; the heatmap names both panels.
    assert "control" in svg and "chance" in svg
    heat = (tmp_path / "figures" / "probe_heatmap.svg").read_text()
    assert "selectivity" in heat and "accuracy" in heat
    assert not list((tmp_path / "figures").glob(".*"))  # no temporaries left behind


def test_plot_probe_single_checkpoint_and_empty(tmp_path):
    paths = plot_probe(fake_results(steps=(7,), seeds=(0,)), tmp_path)
    assert len(paths) == 4
    assert plot_probe(fake_results().iloc[0:0], tmp_path / "none") == []
