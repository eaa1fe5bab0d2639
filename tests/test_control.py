"""Original ↔ control alignment: planted shared experts are found above the permutation
null, independent ones are not; the series runner reads a data directory with a control."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from babelscope.analysis.control import MEASURES, control_alignment, halves


def _pool(n=240, n_concepts=4, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"s{i:04d}" for i in range(n)]
    y = np.zeros((n, n_concepts), dtype=bool)
    for c in range(n_concepts):
        y[rng.choice(n, size=24, replace=False), c] = True
    strata = np.array([f"src|{i % 3}" for i in range(n)])
    return dict(ids=ids, concepts=[f"c{c}" for c in range(n_concepts)], y=y, strata=strata)


def _acts(pool, planted: list[int], seed: int, n_units=200):
    """Noise, plus unit ``planted[c]`` responding to concept c."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(pool["ids"]), n_units)).astype(np.float32)
    for c, u in enumerate(planted):
        x[:, u] += 3.0 * pool["y"][:, c]
    return x


def test_halves_are_disjoint_and_balanced():
    pool = _pool()
    a, b = halves(pool["ids"], pool["y"])
    assert not (a & b).any() and (a | b).all()
    assert np.abs(pool["y"][a].sum(0) - pool["y"][b].sum(0)).max() <= 1


def test_shared_experts_are_found_above_the_null():
    pool = _pool()
    shared = [3, 50, 120, 190]
    df = control_alignment(
        _acts(pool, shared, 1), _acts(pool, shared, 2), [100, 100], pool,
        k_fraction=0.02, permutations=19,
    )  # fmt: skip
    assert set(df["measure"]) == set(MEASURES) and set(df["scope"]) == {"0", "1", "all"}
    whole = df[df["scope"] == "all"].set_index("measure")
    assert whole.loc["overlap", "value"] > whole.loc["overlap", "null_p95"]
    assert whole.loc["overlap", "p_value"] == pytest.approx(1 / 20)
    assert whole.loc["overlap", "diffconcept"] < whole.loc["overlap", "value"]
    assert whole.loc["transfer_ap", "value"] > whole.loc["transfer_ap", "null_p95"]
    lo, hi = whole.loc["overlap", ["ci_lo", "ci_hi"]]
    assert lo <= whole.loc["overlap", "value"] <= hi
    assert whole.loc["overlap", "chance"] == pytest.approx(4 / 200)
    assert 0.08 < whole.loc["self_ap", "chance"] < 0.15  # 12 of 120 positive, plus ties


def test_language_specific_experts_do_not_align():
    pool = _pool()
    df = control_alignment(
        _acts(pool, [3, 50, 120, 190], 1), _acts(pool, [10, 60, 130, 170], 2), [100, 100],
        pool, k_fraction=0.02, permutations=19,
    )  # fmt: skip
    whole = df[df["scope"] == "all"].set_index("measure")
    assert whole.loc["overlap", "value"] <= whole.loc["overlap", "null_p95"]
    assert whole.loc["overlap", "p_value"] > 0.05
    # Each language still finds its own experts: self AP is high, transfer is not.
    assert whole.loc["self_ap", "value"] > whole.loc["transfer_ap", "value"] + 0.15


def test_series_runner_on_a_data_dir_with_a_control(tmp_path, tiny_series_dir):
    from babelscope.analysis.control import control_alignment_series
    from babelscope.concepts.labels import build_concept_labels
    from babelscope.concepts.lexicon import ConceptLexicon
    from babelscope.corpora.cipher import add_controls
    from babelscope.corpora.corpus import save_corpus
    from helpers import tiny_corpus

    base = tiny_corpus(["eng", "spa"])
    base = pd.concat(
        [
            base.assign(id=base["id"] + f"-{r}", align_id=base["align_id"] + f"-{r}")
            for r in range(4)
        ],
        ignore_index=True,
    )
    corpus, _ = add_controls(base, ["eng"])
    table = tmp_path / "t.tsv"
    table.write_text(
        "concept\tlang\twords\nwater\teng\twater|sea|river\nwater\tspa\tagua|mar|río\n"
        "city\teng\tcity|school|hospital\ncity\tspa\tciudad|escuela|hospital\n"
    )
    labels, _ = build_concept_labels(
        corpus, ["eng", "spa", "eng~x"], table=table, min_positives=2, pool_size=64
    )
    d = tmp_path / "data"
    save_corpus(corpus, d)
    labels.assign(matched=True, base=True).to_parquet(d / "concepts.parquet")
    assert ConceptLexicon.load(table).languages == ["eng", "spa"]
    df = control_alignment_series(
        str(tiny_series_dir), d, languages=["eng", "eng~x"], steps=[0, 2], permutations=3
    )
    assert set(df["step"]) == {0, 2} and set(df["control"]) == {"eng~x"}
    assert df["value"].notna().all()
