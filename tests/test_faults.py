"""Fault injection over the CLI: bad configuration, data, checkpoints, results and run
directories. Each case must end in exit code 2, exactly one line on stderr, no traceback,
and no file outside the run directory changed (checksummed before and after).

The cases run ``babelscope.cli.main`` in-process (one import of torch for all of them);
tests/test_kill_resume.py and tests/test_run_lock.py cover the cases that need a real
process (SIGKILL, a second process holding the lock, Ctrl-C).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

LANGS = ["eng", "spa", "deu", "zho"]


def _has_controls() -> bool:
    from babelscope.config import DataConfig

    return "controls" in DataConfig.model_fields


_HAS_CONTROLS = _has_controls()


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
    """A data dir built by the real builder from a parallel TSV of the tiny texts."""
    from babelscope.corpora.build import build_corpus
    from helpers import TINY_TEXTS

    root = tmp_path_factory.mktemp("faultdata")
    tsv = root / "parallel.tsv"
    n = len(TINY_TEXTS["eng"])
    lines = ["\t".join(LANGS)] + ["\t".join(TINY_TEXTS[g][i] for g in LANGS) for i in range(n)]
    tsv.write_text("\n".join(lines) + "\n")
    return build_corpus(root / "data", languages=LANGS, sources=(), user=tsv, min_positives=1)


@dataclass
class Box:
    """A sandbox: the user's files (data copy, series copy, configs) and the run dir."""

    root: Path
    data: Path
    series: Path
    run: Path

    def config(self, extra: str = "", *, data: bool = True, series: bool = True) -> str:
        """A valid study configuration plus ``extra`` (later keys win by section)."""
        sections: dict[str, list[str]] = {"": [f'name = "f"\nout = "{self.run}"']}
        if data:
            sections["data"] = [
                f'dir = "{self.data}"\nbuild = false\nlanguages = {json.dumps(LANGS)}'
                + ("\ncontrols = []" if _HAS_CONTROLS else "")  # no cipher control here
            ]
        if series:
            sections["model"] = [f'series = "{self.series}"\ndevice = "cpu"']
        sections["steer"] = ['source_lang = "spa"']
        current = ""
        for line in extra.strip().splitlines():
            if line.startswith("["):
                current = line.strip("[]")
                sections.setdefault(current, [])
            elif line.strip():
                sections.setdefault(current, []).append(line)
        # Later lines override earlier ones with the same key.
        out = []
        for sec, lines in sections.items():
            keyed: dict[str, str] = {}
            for block in lines:
                for ln in block.splitlines():
                    keyed[ln.split("=")[0].strip()] = ln
            out.append((f"[{sec}]\n" if sec else "") + "\n".join(keyed.values()))
        return "\n".join(out) + "\n"

    def write(self, extra: str = "", name: str = "study.toml", **kw) -> str:
        p = self.root / name
        p.write_text(self.config(extra, **kw))
        return str(p)


def _checksums(roots: list[Path], skip: Path | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            d = Path(dirpath)
            if skip is not None and (d == skip or skip in d.parents):
                dirnames[:] = []
                continue
            for f in filenames:
                p = d / f
                if p.is_symlink() or not p.is_file():
                    continue
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            for name in list(dirnames):
                if skip is None or d / name != skip:
                    out[str(d / name) + "/"] = "dir"
    return out


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from transformers.utils import logging as hf_logging

    from babelscope.cli import main

    # The CLI turns these bars off before transformers is imported; in-process it was
    # imported by the fixtures already.
    hf_logging.disable_progress_bar()
    old = signal.getsignal(signal.SIGINT)
    try:
        main(argv)
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    finally:
        signal.signal(signal.SIGINT, old)
    return code, capsys.readouterr().err


# --- the cases: (id, setup(box) -> argv, part of the one-line message) ---------------------


def _truncate(p: Path, keep: int | None = None) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: (len(data) // 2 if keep is None else keep)])


def _series_variant(box: Box, change: Callable[[Path], None]) -> None:
    change(box.series)


def _make_user_dir(p: Path) -> None:
    (p / "data").mkdir(parents=True)
    (p / "data" / "notes.txt").write_text("the user's own file")
    (p / "thesis.tex").write_text("\\documentclass{article}")


def _two_architectures(series: Path) -> None:
    from helpers import make_tiny_model

    shutil.rmtree(series / "step-2")
    make_tiny_model(series / "step-2", family="gpt2", tokenizer_dir=series / "step-0")


def _nan_weights(series: Path) -> None:
    from safetensors.torch import load_file, save_file

    f = series / "step-1" / "model.safetensors"
    tensors = load_file(str(f))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] * float("nan")
    save_file(tensors, str(f), metadata={"format": "pt"})


def _pickle_bin(series: Path) -> None:
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {series.parent}/PWNED",))

    for step in ("step-0", "step-1", "step-2"):
        (series / step / "model.safetensors").unlink()
        (series / step / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))


CASES: list[tuple[str, Callable[[Box], list[str]], str]] = [
    # configuration
    ("config-is-a-directory", lambda b: ["run", str(b.root)], "is a directory"),
    ("config-missing", lambda b: ["run", str(b.root / "nope.toml")], "not found"),
    ("config-bad-toml", lambda b: ["run", _raw(b, "[data\n")], "invalid TOML"),
    ("config-not-utf8", lambda b: ["run", _raw(b, b"name = '\xff\xfe'\n")], "not UTF-8"),
    ("config-unknown-key", lambda b: ["run", b.write("[probe]\nseedz = [1]")], "did you mean 'seeds'"),
    ("config-wrong-type", lambda b: ["run", b.write('[probe]\nseeds = "x"')], "probe.seeds"),
    ("config-bad-literal", lambda b: ["run", b.write('[model]\ndtype = "fp8"')], "model.dtype"),
    ("empty-probe-languages", lambda b: ["run", b.write("[probe]\nlanguages = []")], "empty list"),
    ("empty-experts-concepts", lambda b: ["run", b.write("[experts]\nconcepts = []")], "empty list"),
    ("empty-stages", lambda b: ["run", b.write("stages = []")], "empty list"),
    ("name-dotdot", lambda b: ["run", b.write('name = ".."')], "only dots"),
    ("unknown-language-code", lambda b: ["run", b.write('[probe]\nlanguages = ["engl"]')], "engl"),
    ("probe-language-not-in-data", lambda b: ["run", b.write('[probe]\nlanguages = ["fra"]')],
     "probe.languages names fra"),
    ("steer-language-not-in-data", lambda b: ["run", b.write('[steer]\nsource_lang = "fra"')],
     "steer.source_lang names fra"),
    ("series-and-pretrain-config", lambda b: ["run", b.write(f'[model]\npretrain_config = "{_raw(b, "")}"')],
     "both set"),
    ("user-text-without-build", lambda b: ["run", b.write(f'[data]\nuser = "{_raw(b, "x")}"')],
     "data.build = false"),
    ("k-and-k-fraction", lambda b: ["run", b.write("[align]\nk = 2\nk_fraction = 0.1")], "both set"),
    ("unknown-stage", lambda b: ["run", b.write(), "--stages", "probe,bogus"], "unknown stage"),
    ("stage-before-inputs", lambda b: ["run", b.write(), "--stages", "probe"], "must run before"),
    ("usage-error", lambda b: ["run", b.write(), "--bogus"], "No such option"),
    ("missing-local-series", lambda b: ["run", b.write('[model]\nseries = "no/such"')], "not found"),
    ("missing-series-entry", lambda b: ["run", b.write('[model]\nseries = [{step = 1, path = "nope"}]')],
     "not found"),
    ("steer-step-not-in-series", lambda b: ["run", b.write("[steer]\nsteps = [99]")], "steer.steps"),
    ("steer-step-not-saved-by-pretraining",
     lambda b: ["run", b.write(f'[model]\npretrain_config = "{_micro()}"\n[steer]\nsteps = [3]',
                               series=False)], "steps 0, 1, 2, 4"),
    ("unknown-concept", lambda b: ["run", b.write('[experts]\nconcepts = ["nosuch"]')], "nosuch"),
    ("data-language-not-in-corpus",
     lambda b: ["run", b.write('[data]\nlanguages = ["eng", "spa", "fra"]')], "fra, not in the corpus"),
    ("data-dir-missing", lambda b: ["run", b.write(f'[data]\ndir = "{b.root / "nodata"}"')], "no corpus"),
    ("bad-pretrain-config", lambda b: ["run", b.write(f'[model]\npretrain_config = "{_raw(b, "[x", "p.toml")}"', series=False)],
     "TOML"),
    # the run directory
    ("out-is-a-file", lambda b: ["run", b.write(), "--out", _raw(b, "x", "file.txt")], "is a file"),
    ("out-under-a-file", lambda b: ["run", b.write(), "--out", _raw(b, "x", "f2") + "/run"], "f2"),
    ("out-dot", lambda b: ["run", b.write(), "--out", "."], "cannot be a run directory"),
    ("out-dotdot", lambda b: ["run", b.write(), "--out", ".."], "cannot be a run directory"),
    ("out-current-dir-absolute", lambda b: ["run", b.write(), "--out", str(b.root)], "current directory"),
    ("out-is-users-directory", lambda b: (_make_user_dir(b.run), ["run", b.write()])[1],
     "not made by babelscope"),
    ("force-on-users-directory", lambda b: (_make_user_dir(b.run), ["run", b.write(), "--force"])[1],
     "not made by babelscope"),
    ("data-dir-with-user-files-forced", lambda b: (
        (b.data / "mine.txt").write_text("keep me"),
        ["run", b.write("[data]\nbuild = true"), "--force"])[1], "did not write"),
    ("report-on-non-run-dir", lambda b: ["report", str(b.data)], "not a babelscope run directory"),
    ("report-torn-result", lambda b: (_torn_run(b.run), ["report", str(b.run)])[1],
     "a result file is damaged"),
    ("report-missing-dir", lambda b: ["report", str(b.root / "nope")], "no run directory"),
    # data
    ("corpus-truncated", lambda b: (_truncate(b.data / "corpus.parquet"), ["run", b.write()])[1],
     "not a readable"),
    ("corpus-zero-bytes", lambda b: (_truncate(b.data / "corpus.parquet", 0), ["run", b.write()])[1],
     "not a readable"),
    ("corpus-garbage", lambda b: ((b.data / "corpus.parquet").write_text("id,lang\n1,eng\n"),
                                  ["run", b.write()])[1], "not a readable"),
    ("concepts-truncated", lambda b: (_truncate(b.data / "concepts.parquet"),
                                      ["run", b.write('[experts]\nconcepts = ["water"]')])[1],
     "not a readable"),
    ("concepts-garbage", lambda b: ((b.data / "concepts.parquet").write_bytes(b"PAR1junk"),
                                    ["run", b.write()])[1], "not a readable"),
    ("data-stats-missing-corpus", lambda b: ["data", "stats", "--data", str(b.root / "nodata")],
     "no data directory"),
    # checkpoints
    ("series-empty-dir", lambda b: (shutil.rmtree(b.series), b.series.mkdir(),
                                    ["run", b.write()])[2], "holds no checkpoints"),
    ("series-no-tokenizer", lambda b: (
        [f.unlink() for d in b.series.iterdir() for f in d.glob("*token*")],
        [f.unlink() for d in b.series.iterdir() for f in d.glob("vocab*")],
        [f.unlink() for d in b.series.iterdir() for f in d.glob("merges*")],
        ["run", b.write()])[3], "no tokenizer files"),
    ("series-unparsable-step", lambda b: ((b.series / "step-2").rename(b.series / "final"),
                                          ["run", b.write()])[1], "cannot parse a step"),
    ("series-two-architectures", lambda b: (_two_architectures(b.series), ["run", b.write()])[1],
     "disagree on architecture"),
    ("series-spec-garbage-json", lambda b: ["run", b.write(f'[model]\nseries = "{_raw(b, "{", "s.json")}"')],
     "cannot read series spec"),
    ("series-garbage-gguf", lambda b: ["run", b.write(f'[model]\nseries = "{_raw(b, "GGUFjunk", "step-3.gguf")}"')],
     "GGUF"),
    ("nan-checkpoint-include-flagged", lambda b: (
        _nan_weights(b.series), ["run", b.write("[model]\ninclude_flagged = true"), "--stages",
                                 "data,pretrain,inspect"])[1], "cannot be analysed"),
    ("every-checkpoint-unreadable-pickle-bin", lambda b: (
        _pickle_bin(b.series), ["run", b.write(), "--stages", "data,pretrain,inspect"])[1],
     "every checkpoint of the series is flagged"),
    ("corpus-without-text-column", lambda b: (_drop_column(b.data / "corpus.parquet", "text"),
                                              ["run", b.write(), "--stages", "data,pretrain,inspect"])[1],
     "missing column"),
    ("series-spec-garbage-toml", lambda b: ["run", b.write(f'[model]\nseries = "{_raw(b, "[x", "s.toml")}"')],
     "cannot read series spec"),
]  # fmt: skip


def _raw(box: Box, content: str | bytes, name: str = "raw.toml") -> str:
    p = box.root / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content)
    return str(p)


def _torn_run(run: Path) -> None:
    """A run directory (babelscope's) whose probe result was cut short."""
    import pandas as pd

    (run / "results").mkdir(parents=True)
    (run / ".babelscope-run").write_text("{}")
    p = run / "results" / "probe.parquet"
    pd.DataFrame({"step": [0, 1], "layer": [0, 0], "accuracy": [0.5, 0.6]}).to_parquet(p)
    _truncate(p)


def _micro() -> str:
    from importlib import resources

    return str(resources.files("babelscope.pretrain") / "micro.toml")


def _drop_column(path: Path, column: str) -> None:
    import pandas as pd

    pd.read_parquet(path).drop(columns=[column]).to_parquet(path)


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("setup", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing_else(
    setup, message, tmp_path, tiny_data_dir, tiny_series_dir, monkeypatch, capsys
):
    box = Box(tmp_path, tmp_path / "data", tmp_path / "series", tmp_path / "run")
    shutil.copytree(tiny_data_dir, box.data)
    shutil.copytree(tiny_series_dir, box.series)
    monkeypatch.chdir(tmp_path)
    argv = setup(box)
    # The user's files, before: everything in the sandbox except the run directory; a
    # directory the user made there (refused as a run dir) must stay untouched as well.
    user_made_run = box.run.exists() and not (box.run / ".babelscope-run").exists()
    skip = None if user_made_run else box.run
    before = _checksums([tmp_path, tiny_data_dir, tiny_series_dir], skip)
    capsys.readouterr()  # what the set-up printed is not the command's
    code, err = _cli(argv, capsys)
    after = _checksums([tmp_path, tiny_data_dir, tiny_series_dir], skip)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert before == after, {
        k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
    }
    assert not (tmp_path / "PWNED").exists()
