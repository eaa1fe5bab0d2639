"""Representation figures and their report section, from a synthetic result table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from babelscope.analysis.representations.stage import RESULT_COLUMNS, summary
from babelscope.report.figures.representations import plot_representations

MEASURES = ["retrieval", "retrieval_centred", "cka", "margin", "margin_centred",
            "lens_own", "lens_pivot", "lens_other", "lens_shared", "lens_unseen"]  # fmt: skip


def fake_results(steps=(0, 64, 512), layers=(0, 1, 2, 3)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for s in steps:
        for layer in layers:
            for m in MEASURES:
                v = float(rng.uniform(0, 0.3)) if m.startswith("lens") else float(rng.uniform())
                rows.append(dict(step=s, layer=layer, measure=m, value=v, chance=0.02,
                                 null_mean=0.02, null_p95=0.03, n_null=20, p_value=0.05,
                                 ci_low=v - 0.05, ci_high=v + 0.05, n_items=64, n_pairs=240))  # fmt: skip
    return pd.DataFrame(rows)[RESULT_COLUMNS]


def test_figures_and_report_section(tmp_path):
    from babelscope.report.html import render_report

    (tmp_path / "results").mkdir()
    fake_results().to_parquet(tmp_path / "results" / "similarity.parquet")
    probe = pd.DataFrame(
        [
            dict(
                step=s,
                layer=layer,
                seed=0,
                accuracy=0.9,
                control_accuracy=0.1,
                selectivity=0.8,
                chance=1 / 16,
            )
            for s in (0, 64, 512)
            for layer in range(4)
        ]  # fmt: skip
    )
    probe.to_parquet(tmp_path / "results" / "probe.parquet")
    paths = plot_representations(tmp_path)
    names = {p.name for p in paths}
    for stem in ("representations_heatmap", "representations_by_layer",
                 "representations_latent_language"):  # fmt: skip
        assert f"{stem}.png" in names and f"{stem}.svg" in names
    assert all(p.stat().st_size > 1000 for p in paths)
    html = render_report(tmp_path).read_text()
    assert "Representations of translations" in html
    assert html.count("data:image/png;base64,") >= 3
    assert "retrieval_centred" in html


def test_nothing_to_draw_without_results(tmp_path):
    assert plot_representations(tmp_path) == []


def test_summary_first_and_last_step():
    table = summary(fake_results())
    assert list(table.columns) == [
        "measure",
        "layer",
        "step 0",
        "step 512",
        "chance",
        "null p95",
        "p",
    ]
    assert len(table) == len(MEASURES) * 4
    assert table["step 0"].str.match(r"^-?\d\.\d{3} \[").all()
