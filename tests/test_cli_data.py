"""`babelscope data build` / `data stats`: output, JSON, and one-line errors with exit 2."""

import json
import subprocess
import sys

import pytest

from babelscope.cli import main


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def _user_file(tmp_path):
    from helpers import TINY_TEXTS

    f = tmp_path / "tiny.tsv"
    langs = list(TINY_TEXTS)
    lines = ["\t".join(langs)] + [
        "\t".join(TINY_TEXTS[lang][i] for lang in langs) for i in range(8)
    ]
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f


def test_build_user_data_then_stats_json(tmp_path, capsys):
    out = tmp_path / "data"
    code, stdout, _ = _run(
        capsys,
        "data",
        "build",
        "--sources",
        "none",
        "--user",
        str(_user_file(tmp_path)),
        "--out",
        str(out),
    )
    assert code in (0, None)
    assert "sentences" in stdout and "zho" in stdout
    code, stdout, _ = _run(capsys, "data", "stats", "--data", str(out), "--json")
    assert code in (0, None)
    stats = json.loads(stdout)
    assert sorted(stats["languages"]) == ["deu", "eng", "spa", "zho"]
    assert stats["languages"]["zho"]["sentences"] == 8
    assert stats["languages"]["eng"]["sources"] == {"user:tiny.tsv": 8}
    assert stats["languages"]["eng"]["characters"] > 100
    assert isinstance(stats["concept_positives"], dict)
    prec = stats["label_precision"]
    assert sorted(prec["languages"]) == ["deu", "spa", "zho"]  # English is the reference
    water = prec["concepts"]["water"]["spa"]  # "agua" in the translation of "water"
    assert water["tp"] == 1 and water["fp"] == 0 and water["precision"] == 1.0
    assert 0 < water["precision_lo"] < 1 and prec["all"]["tp"] >= 3
    code, stdout, _ = _run(capsys, "data", "stats", "--data", str(out))
    assert "eng" in stdout and "user:tiny.tsv" in stdout
    assert "label precision" in stdout and "recall" in stdout
    (out / "label_precision.parquet").unlink()  # a directory built before it was measured
    code, stdout, _ = _run(capsys, "data", "stats", "--data", str(out))
    assert code in (0, None) and "no label precision" in stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--languages", "eng,xx"], "unknown language code 'xx'"),
        (["--sources", "wiki"], "unknown source 'wiki'"),
        (["--sources", "none", "--user", "{tmp}/missing.jsonl"], "no such file"),
        (["--sources", "none", "--user", "{tmp}/empty.jsonl"], "the file is empty"),
        (
            ["--sources", "none", "--user", "{tmp}/latin1.csv"],
            "line 2, column 4: byte 0xe9 is not UTF-8",
        ),
        (["--sources", "none", "--user", "{tmp}/nolang.csv"], "no language column 'lang'"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, message):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "latin1.csv").write_bytes(b"text,lang\ncaf\xe9 au lait.,fra\n")
    (tmp_path / "nolang.csv").write_bytes(b"text\nHello.\n")
    out = tmp_path / "data"
    argv = ["data", "build", "--out", str(out), *[a.format(tmp=tmp_path) for a in args]]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert err.startswith("error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_stats_without_data_is_one_line_error(tmp_path, capsys):
    code, _, err = _run(capsys, "data", "stats", "--data", str(tmp_path / "none"))
    assert code == 2 and "babelscope data build" in err


def test_cli_subprocess_contract(tmp_path):
    """Through the real entry point: exit status 2 and no traceback."""
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "babelscope",
            "data",
            "build",
            "--out",
            str(tmp_path / "d"),
            "--languages",
            "english",
        ],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2
    assert "unknown language code 'english'" in p.stderr and "Traceback" not in p.stderr
