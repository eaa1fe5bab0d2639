"""The whole configuration checked against its inputs before the first stage runs.

:mod:`babelscope.config_rules` checks what the configuration file alone can tell; this
module checks what needs the data and the series, so that a typo in ``probe.languages``
or ``steer.steps`` stops the run at once, not after pre-training and inspection:

- the corpus exists (or will be built), is readable Parquet, and has every language the
  configuration names;
- concepts named by ``experts.concepts`` / ``steer.concepts`` exist;
- the series resolves (local paths exist, weights and tokenizer files are there, one
  architecture), and every step ``steer.steps`` names is in it (for the embedded series:
  among the steps its pre-training configuration saves);
- a data directory ``--force`` would rebuild holds nothing but babelscope's own files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from babelscope.errors import BabelscopeError
from babelscope.rundir import is_babelscope_data_dir


def preflight(run: Any) -> None:
    """Raise a one-line :class:`BabelscopeError` for the first input that cannot work.

    ``run`` is a :class:`babelscope.pipeline.Run`; a resolved series is kept on it so the
    stages do not resolve it again.
    """
    _check_data(run.cfg, run.force)
    _check_series(run)


def _parquet_column(path: Path, column: str) -> list[str]:
    """The distinct values of one column, read without loading the rest of the file."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, columns=[column])
    except Exception as e:  # noqa: BLE001 - pyarrow's errors for torn or foreign files vary
        first = (str(e).splitlines() or [""])[0][:120]
        raise BabelscopeError(
            f"{path} is not a readable babelscope table ({type(e).__name__}: {first}): "
            "rebuild the data directory with `babelscope data build --force`"
        ) from None
    return sorted({str(v) for v in table.column(column).to_pylist()})


def _check_data(cfg: Any, force: bool) -> None:
    from babelscope.corpora.corpus import CONCEPTS_FILE, CORPUS_FILE

    d = cfg.data_dir
    corpus = d / CORPUS_FILE
    builds = cfg.data.build or cfg.data.user is not None
    if builds and force and cfg.data.dir is not None and not is_babelscope_data_dir(d):
        raise BabelscopeError(
            f"data.dir {d} holds files babelscope did not write, and --force would replace "
            "them: point data.dir at a new or empty directory"
        )
    if not builds:
        if not corpus.is_file():
            raise BabelscopeError(
                f"no corpus in {d} and data.build = false: build it with "
                f"`babelscope data build --out {d}` or set data.build = true"
            )
        have = _parquet_column(corpus, "lang")
        if (d / CONCEPTS_FILE).is_file():  # read by experts and steer: torn means stop now
            _parquet_column(d / CONCEPTS_FILE, "concept")
        # The real languages: cipher controls (eng~x) are the corpus builder's to check.
        lacking = [lang for lang in cfg.data.languages if lang not in have]
        if lacking:
            raise BabelscopeError(
                f"data.languages names {', '.join(lacking)}, not in the corpus at {d} (it has "
                f"{', '.join(have)}): drop them or rebuild the data"
            )
    wanted = {
        "experts.concepts": cfg.experts.concepts or [],
        "steer.concepts": getattr(cfg.steer, "concepts", None) or [],
    }
    if not any(wanted.values()):
        return
    labels = d / CONCEPTS_FILE
    if labels.is_file() and not builds:
        known = _parquet_column(labels, "concept")
        where = str(labels)
    else:
        from babelscope.concepts.lexicon import ConceptLexicon

        known, where = list(ConceptLexicon.load().concepts), "the concept table"
    for key, names in wanted.items():
        bad = [c for c in names if c not in known]
        if bad:
            shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
            raise BabelscopeError(
                f"{key} names unknown concept(s) {', '.join(bad)}: not in {where} ({shown})"
            )


def _check_series(run: Any) -> None:
    cfg = run.cfg
    if cfg.model.series is None:
        # The embedded series: pre-training makes it (its configuration must be valid
        # now, and it says which steps it will save), inspect checks it.
        from babelscope.pretrain import load_pretrain_config

        have = load_pretrain_config(cfg.model.pretrain_config).checkpoint_steps()
    else:
        from babelscope.checkpoints.series import resolve_series

        run.resolved = resolve_series(cfg.model.series)
        have = run.resolved.steps
    steps = getattr(cfg.steer, "steps", None)
    if steps and "steer" in cfg.stages:
        bad = [s for s in steps if s not in have]
        if bad:
            raise BabelscopeError(
                f"steer.steps names step(s) {', '.join(map(str, bad))}, not in the series "
                f"(steps {', '.join(map(str, have))}): fix steer.steps"
            )
