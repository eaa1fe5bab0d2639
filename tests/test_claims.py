"""The words of the summary and report follow the tests: above the null only where p <= 0.05,
and not concept-specific where the different-concept reference is as high."""

import pandas as pd

from babelscope.report.claims import alignment_claims, alignment_table


def _rows(step, layer, value, p, dc):
    return dict(step=step, layer=layer, measure="overlap", value=value, ci_lo=value - 0.01,
                ci_hi=value + 0.01, null_mean=0.02, null_p95=0.03, p_value=p, n_null=100,
                diffconcept=dc, floor=0.01)  # fmt: skip


def test_claims_name_the_null_and_the_layers():
    df = pd.DataFrame([
        _rows(0, "0", 0.02, 0.6, 0.02), _rows(0, "1", 0.02, 0.5, 0.02), _rows(0, "all", 0.02, 0.4, 0.02),
        _rows(9, "0", 0.10, 0.01, 0.03), _rows(9, "1", 0.03, 0.3, 0.02), _rows(9, "all", 0.08, 0.01, 0.09),
    ])  # fmt: skip
    (c,) = alignment_claims(df)
    assert "above the permutation null (p <= 0.05, 100 permutations) in layer 0, whole model" in c
    assert "above the different-concept reference only in layer 0" in c
    assert "not above it in layer 1" in c
    assert "0.02 at step 0 -> 0.08" in c
    t = alignment_table(df)
    assert list(t["step"].unique()) == [0, 9] and len(t) == 6


def test_nothing_above_the_null_is_said_so():
    df = pd.DataFrame([_rows(0, "all", 0.02, 0.4, 0.02), _rows(5, "all", 0.03, 0.2, 0.03)])
    (c,) = alignment_claims(df)
    assert "not above the permutation null (p > 0.05) in any layer" in c


def test_no_null_no_claim():
    df = pd.DataFrame([_rows(0, "all", 0.02, float("nan"), 0.02)])
    (c,) = alignment_claims(df)
    assert "no permutation null was computed, so no claim is made" in c
