"""`babelscope pretrain`: a micro run from the command line, samples, one-line errors."""

from __future__ import annotations

import pytest

from babelscope.cli import main
from babelscope.corpora.corpus import save_corpus
from babelscope.pretrain import MICRO_CONFIG
from helpers import tiny_corpus


def _run(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_trains_prints_samples_and_refuses_other_runs(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "model"
    save_corpus(tiny_corpus(), data)
    args = ["pretrain", "--config", str(MICRO_CONFIG), "--data", str(data), "--out", str(out)]
    code, stdout, _ = _run(capsys, *args, "--samples", "2", "--seed", "5")
    assert code == 0
    assert (out / "checkpoints" / "step-12" / "model.safetensors").is_file()
    assert stdout.count("[5] ") == 1 and stdout.count("[6] ") == 1

    other = tmp_path / "other.toml"
    other.write_text(MICRO_CONFIG.read_text().replace("seed = 0", "seed = 1"))
    code, _, err = _run(
        capsys, "pretrain", "--config", str(other), "--data", str(data), "--out", str(out)
    )
    assert code == 2 and err.startswith("error: ") and "--force" in err and err.count("\n") == 1


def test_cli_bad_config_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\nnum_layers = 0\n")
    code, _, err = _run(
        capsys,
        "pretrain",
        "--config",
        str(bad),
        "--data",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 2 and "model.num_layers" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
