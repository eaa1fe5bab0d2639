"""Dose-response shares with Wilson intervals, and paired tests over shared seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from babelscope.analysis.stats import mcnemar_exact, wilson_interval
from babelscope.analysis.steering.summary import dose_response, dose_table, paired_tests


def _rows(cond, k, langs, hits, concept="water", draw=-1, seeds=None):
    seeds = range(len(langs)) if seeds is None else seeds
    return [dict(step=8, concept=concept, source_lang="spa", condition=cond, forced_from="",
                 k=k, draw=draw, seed=s, text=f"{cond}{k}{s}" if cond != "none" else f"t{s}",
                 lang=lg, concept_hit=h, fluency=4.0)
            for s, lg, h in zip(seeds, langs, hits, strict=True)]  # fmt: skip


def table() -> pd.DataFrame:
    n = 20
    rows = []
    for concept in ("water", "music"):  # the same unforced texts judged for two concepts
        rows += _rows("none", 0, ["eng"] * 4 + ["und"] * 16, [False] * n, concept)
    rows += _rows("experts", 10, ["spa"] * 12 + ["eng"] * 8, [True] * 10 + [False] * 10)
    rows += _rows(
        "random", 10, ["spa"] * 2 + ["und"] * 8, [False] * 10, draw=0, seeds=range(0, 20, 2)
    )
    rows += _rows("random", 10, ["und"] * 10, [True] + [False] * 9, draw=1, seeds=range(1, 20, 2))
    return pd.DataFrame(rows)


def test_dose_response_shares_and_wilson_intervals():
    dr = dose_response(table()).set_index(["condition", "k"])
    e = dr.loc[("experts", 10)]
    assert (e["outputs"], e["source"], e["eng"], e["hit"]) == (20, 0.6, 0.4, 0.5)
    lo, hi = wilson_interval(12, 20)
    assert (e["source_lo"], e["source_hi"]) == pytest.approx((lo, hi))
    none = dr.loc[("none", 0)]
    # unforced texts count once for languages, once per concept for hits
    assert none["outputs"] == 20 and none["eng"] == 0.2 and none["und"] == 0.8
    assert none["hit_lo"] == pytest.approx(wilson_interval(0, 40)[0])
    r = dr.loc[("random", 10)]  # draws pooled
    assert (r["outputs"], r["source"], r["hit"]) == (20, 0.1, 0.05)
    per = dose_response(table(), by_concept=True)
    assert set(per["concept"]) == {"water", "music"}


def test_paired_tests_are_exact_mcnemar_over_shared_seeds():
    df = table()
    pt = paired_tests(df).set_index(["baseline", "outcome"])
    row = pt.loc[("random", "source")]
    d = df[df["concept"] == "water"]
    e = d[d["condition"] == "experts"].set_index("seed")["lang"].eq("spa")
    r = d[d["condition"] == "random"].set_index("seed")["lang"].eq("spa")
    ref = mcnemar_exact(e.sort_index(), r.sort_index())
    assert (row["n_ab"], row["n_ba"], row["p_value"], row["test"]) == (
        ref["n_ab"], ref["n_ba"], pytest.approx(ref["p_value"]), "mcnemar")  # fmt: skip
    assert row["n_seeds"] == 20 and row["experts"] == 0.6
    assert pt.loc[("none", "source"), "p_value"] < 0.01  # 12 of 20 against 0 of 20
    assert set(pt.reset_index()["baseline"]) == {"none", "random"}


def test_several_outputs_per_seed_use_a_sign_flip_test():
    df = table()
    extra = df[(df["condition"] == "random") & (df["draw"] == 0)].assign(draw=2)
    pt = paired_tests(pd.concat([df, extra]))
    assert set(pt.loc[pt["baseline"] == "random", "test"]) == {"sign-flip"}


def test_dose_table_cells():
    t = dose_table(table())
    assert list(t.columns[:4]) == ["step", "condition", "K", "outputs"]
    assert t.loc[t["condition"] == "experts", "spa output"].iloc[0].startswith("60% [")
    assert list(t["condition"]) == ["none", "experts", "random"]
    assert np.all(t["loss/token"] == "4.00")


def test_markdown():
    from babelscope.analysis.steering import markdown

    md = markdown(dose_table(table())).splitlines()
    assert md[0].startswith("| step | condition | K |") and md[1].startswith("|---|")
    assert len(md) == 2 + 3
