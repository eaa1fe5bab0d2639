"""The user's own text: every format, and one-line errors naming file, line and field."""

import json

import pandas as pd
import pytest

from babelscope.corpora.corpus import CORPUS_COLUMNS
from babelscope.corpora.user import load_user_data
from babelscope.errors import BabelscopeError


def _jsonl(path, rows):
    path.write_text(
        "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8"
    )
    return path


def test_jsonl_into_canonical_schema(tmp_path):
    f = _jsonl(
        tmp_path / "mine.jsonl",
        [
            {"text": "The water is cold.", "lang": "eng"},
            {"text": "水很冷。", "lang": "zho", "id": "z1"},
        ]
        + [{"text": f"Sentence {i} about music.", "lang": "eng"} for i in range(20)],
    )
    df = load_user_data(f)
    assert list(df.columns) == CORPUS_COLUMNS
    assert df.loc[1, "id"] == "z1" and df.loc[0, "id"] == "user:mine:1"
    assert df.loc[1, "script"] == "Hans" and set(df["source"]) == {"user:mine.jsonl"}
    assert set(df["split"]) == {"train", "heldout"}
    assert df["align_id"].isna().all()


def test_csv_with_custom_columns_and_language_filter(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text(
        'sentence,language\n"Hello, world.",eng\nHola mundo.,spa\nBonjour.,fra\n', encoding="utf-8"
    )
    df = load_user_data(f, text_col="sentence", lang_col="language", languages=["eng", "spa"])
    assert df["text"].tolist() == ["Hello, world.", "Hola mundo."]


def test_parquet(tmp_path):
    f = tmp_path / "m.parquet"
    pd.DataFrame(
        {
            "text": ["Das Wasser ist kalt.", "Water."],
            "lang": ["deu", "eng"],
            "split": ["heldout", "train"],
        }
    ).to_parquet(f)
    df = load_user_data(f)
    assert df["split"].tolist() == ["heldout", "train"]  # a given split is kept


def test_parallel_tsv_aligns_rows(tmp_path):
    f = tmp_path / "par.tsv"
    f.write_text(
        "eng\tspa\tzho\nThe water is cold.\tEl agua está fría.\t水很冷。\nMusic.\t\t音乐。\n",
        encoding="utf-8",
    )
    df = load_user_data(f)
    assert len(df) == 5  # the missing Spanish cell is left out
    g = df.groupby("align_id")["lang"].apply(sorted).to_dict()
    assert g == {"user:par:2": ["eng", "spa", "zho"], "user:par:3": ["eng", "zho"]}
    assert df.groupby("align_id")["split"].nunique().eq(1).all()


def test_hf_dataset_from_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    d = tmp_path / "ds"
    datasets.Dataset.from_dict(
        {"text": ["The sun is bright.", "El sol brilla."], "lang": ["eng", "spa"]}
    ).save_to_disk(str(d))
    df = load_user_data(d)
    assert df["lang"].tolist() == ["eng", "spa"]


def test_hf_hub_name_offline_is_one_line_error(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BabelscopeError, match="cannot load dataset 'someone/nothing-here'") as e:
        load_user_data("someone/nothing-here")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "name, content, pattern",
    [
        ("empty.jsonl", b"", r"empty\.jsonl: the file is empty"),
        ("blank.csv", b"\n  \n", r"blank\.csv: the file is empty"),
        (
            "latin1.jsonl",
            b'{"text": "ok.", "lang": "eng"}\n{"text": "caf\xe9.", "lang": "fra"}\n',
            r"latin1\.jsonl, line 2, column 14: byte 0xe9 is not UTF-8",
        ),
        (
            "bad.jsonl",
            b'{"text": "ok.", "lang": "eng"}\n{"text": "no end\n',
            r"bad\.jsonl, line 2: not valid JSON",
        ),
        (
            "code.jsonl",
            b'{"text": "ok.", "lang": "eng"}\n\n{"text": "Hola.", "lang": "xx"}\n',
            r"code\.jsonl, line 3, field 'lang': unknown language code 'xx'",
        ),
        (
            "two.jsonl",
            b'{"text": "Hello.", "lang": "en"}\n',
            r"line 1, field 'lang': unknown language code 'en' \(did you mean 'eng'\?\)",
        ),
        (
            "notext.jsonl",
            b'{"sentence": "Hello.", "lang": "eng"}\n',
            r"notext\.jsonl, line 1: no field 'text'",
        ),
        (
            "nolang.csv",
            b"text,language\nHello.,eng\n",
            r"nolang\.csv: no language column 'lang' \(columns: text, language\); name it with --lang-col",
        ),
        ("notext.csv", b"sentence,lang\nHello.,eng\n", r"no text column 'text'"),
        (
            "emptytext.csv",
            b"text,lang\nHello.,eng\n ,spa\n",
            r"emptytext\.csv, line 3, field 'text': the text is empty",
        ),
        (
            "header.tsv",
            b"eng\tklingon\nHello.\tnuqneH.\n",
            r"header\.tsv, line 1, field 'column 2 of the header': unknown language code 'klingon'",
        ),
        (
            "ragged.tsv",
            b"eng\tspa\nHello.\tHola.\nOnly one\n",
            r"ragged\.tsv, line 3: 1 fields, the header has 2",
        ),
        (
            "dups.jsonl",
            b'{"id": "a", "text": "One.", "lang": "eng"}\n{"id": "a", "text": "Two.", "lang": "eng"}\n',
            r"dups\.jsonl, line 2, field 'id': duplicate id 'a'",
        ),
        ("notes.txt", b"Hello.\n", r"unknown format '\.txt'"),
    ],
)
def test_bad_input_names_file_line_and_field(tmp_path, name, content, pattern):
    f = tmp_path / name
    f.write_bytes(content)
    with pytest.raises(BabelscopeError, match=pattern) as e:
        load_user_data(f)
    assert "\n" not in str(e.value)


def test_missing_file_and_missing_parquet_column(tmp_path):
    with pytest.raises(BabelscopeError, match="no such file"):
        load_user_data(tmp_path / "nope.jsonl")
    f = tmp_path / "m.parquet"
    pd.DataFrame({"text": ["Hello."]}).to_parquet(f)
    with pytest.raises(BabelscopeError, match=r"m\.parquet: no language column 'lang'"):
        load_user_data(f)
    g = tmp_path / "n.parquet"
    pd.DataFrame({"text": ["Hello.", "Hi."], "lang": ["eng", "qqq"]}).to_parquet(g)
    with pytest.raises(
        BabelscopeError, match=r"n\.parquet, row 2, field 'lang': unknown language code 'qqq'"
    ):
        load_user_data(g)
