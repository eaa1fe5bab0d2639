"""Control-language figures and table: drawn from alignment-stage and capacity rows."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from babelscope.report.figures.control import (
    control_pairs,
    control_table,
    plot_control_alignment,
    plot_control_capacity,
)


def _overlap_rows(with_null: bool = True) -> pd.DataFrame:
    rows = []
    langs = ["eng", "spa", "eng~x"]
    for step, layer, (a, b) in itertools.product(
        (0, 8, 64), ("0", "all"), itertools.product(langs, langs)
    ):
        r = dict(step=step, layer=layer, lang_a=a, lang_b=b, k=5, units=500,
                 overlap=1.0 if a == b else 0.01 * (1 + step / 8), transfer_ap=0.1)  # fmt: skip
        if with_null:
            r |= dict(overlap_null_mean=0.01, overlap_null_p95=0.02, overlap_p_value=0.5,
                      transfer_ap_null_mean=0.08, transfer_ap_null_p95=0.09,
                      transfer_ap_p_value=0.4)  # fmt: skip
        rows.append(r)
    return pd.DataFrame(rows)


def test_control_pairs_pick_original_to_control_and_real_mean():
    df = control_pairs(_overlap_rows())
    assert df[["original", "control"]].drop_duplicates().values.tolist() == [["eng", "eng~x"]]
    assert df["step"].tolist() == [0, 8, 64]
    # Real pairs are eng-spa and spa-eng only: the control is not averaged in.
    assert np.allclose(df["real_overlap"], [0.01, 0.02, 0.09])


def test_control_figure_and_table(tmp_path):
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    assert plot_control_alignment(run) == [] and control_table(run) == ""
    _overlap_rows().to_parquet(run / "results" / "alignment_overlap.parquet")
    paths = plot_control_alignment(run)
    assert sorted(p.name for p in paths) == ["alignment_control.png", "alignment_control.svg"]
    table = control_table(run)
    assert table.count("eng → eng~x") == 3 and "0.0200" in table
    # A run without nulls (older alignment files) still draws.
    _overlap_rows(with_null=False).to_parquet(run / "results" / "alignment_overlap.parquet")
    assert plot_control_alignment(run, tmp_path / "f2")
    # No control among the languages: nothing drawn.
    ov = _overlap_rows()
    ov[(ov["lang_a"] != "eng~x") & (ov["lang_b"] != "eng~x")].to_parquet(
        run / "results" / "alignment_overlap.parquet"
    )
    assert plot_control_alignment(run, tmp_path / "f3") == []


def test_capacity_figure(tmp_path):
    rows = [
        dict(width=w, step=s, original="eng", control="eng~x", scope="all", measure=m,
             value=0.05, null_mean=0.03, null_p95=0.04)
        for w in (64, 128) for s in (0, 32, 128) for m in ("overlap", "transfer_ap", "self_ap")
    ]  # fmt: skip
    paths = plot_control_capacity(pd.DataFrame(rows), tmp_path)
    assert sorted(p.name for p in paths) == ["control_capacity.png", "control_capacity.svg"]
    assert plot_control_capacity(pd.DataFrame(rows).assign(scope="0"), tmp_path / "x") == []
