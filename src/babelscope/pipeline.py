"""``babelscope run``: the whole study as stages, each cached by what produced it.

Stages run in order: data -> pretrain -> inspect -> probe -> similarity -> experts ->
align -> steer -> report. A stage is skipped when its record in ``<run>/.stages/<stage>.json`` holds
the same key (a hash of its settings and of the keys of what it reads) and its outputs
are there; inside a stage, finished work (checkpoints, per-step results, activation
shards) is kept, so an interrupted run resumes. ``force`` redoes the chosen stages.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babelscope.config import NEEDS, STAGES, RunConfig, load_config
from babelscope.errors import BabelscopeError, Interrupted
from babelscope.io import provenance, settings_hash, write_json_atomic
from babelscope.progress import console, info, quiet, warn
from babelscope.rundir import (
    claim_config,
    claim_run_dir,
    clear_for_force,
    data_notes,
    is_babelscope_data_dir,
    outputs_current,
    run_lock,
    tree_hash,
)


@dataclass
class Run:
    """A run directory and what its stages have produced so far."""

    cfg: RunConfig
    force: bool = False
    keys: dict[str, str] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    resolved: Any = None  # the checkpoint series, resolved (and checked) once per run
    _executor: Any = None  # where per-checkpoint work runs; started when first needed
    _own_executor: bool = True  # False: the caller's, which the caller closes

    @property
    def executor(self) -> Any:
        """The engine of ``[run]`` (serial, or Ray tasks), started on first use: a run whose
        stages are all up to date never starts a Ray cluster."""
        if self._executor is None:
            from babelscope.executor import make_executor

            self._executor = make_executor(self.cfg.run, device=self.cfg.model.device)
        return self._executor

    def close(self) -> None:
        """Stop the executor if this run started one."""
        if self._executor is not None and self._own_executor:
            self._executor.close()
            self._executor = None

    @property
    def dir(self) -> Path:
        return self.cfg.run_dir

    @property
    def results(self) -> Path:
        return self.dir / "results"

    @property
    def cache(self) -> Path:
        return self.dir / "cache"

    def record_path(self, stage: str) -> Path:
        return self.dir / ".stages" / f"{stage}.json"

    def record(self, stage: str) -> dict[str, Any] | None:
        """The stage's record, or None (a missing or torn record: the stage runs again)."""
        try:
            rec = json.loads(self.record_path(stage).read_text())
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) and "key" in rec and "notes" in rec else None

    @property
    def device(self) -> str:
        dev = self.cfg.model.device
        if self.cfg.run.engine != "serial" or getattr(self._executor, "distributed", False):
            return dev  # "auto" is resolved by each task, on the node it runs on
        if dev == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return dev


# --- the stages ----------------------------------------------------------------------


def stage_data(run: Run) -> dict[str, Any]:
    """Build the embedded corpus (or the user's); an existing one is kept when it was built
    with the same settings, rebuilt when they differ (the run's own data dir, or --force)."""
    from babelscope.concepts.matching import MatchSettings
    from babelscope.corpora.build import build_corpus
    from babelscope.corpora.corpus import CORPUS_FILE

    d = run.cfg.data_dir
    own = run.cfg.data.dir is None  # <run>/data belongs to this run
    if run.cfg.data.build or run.cfg.data.user is not None:
        kwargs = dict(
            languages=run.cfg.data.languages,
            sources=tuple(run.cfg.data.sources),
            user=run.cfg.data.user,
            controls=run.cfg.data.control_originals,
            control_symbols=run.cfg.data.control_symbols,
            match=MatchSettings(run.cfg.data.match_pools, run.cfg.data.match_ratio,
                                run.cfg.data.match_length_bins),
        )  # fmt: skip
        # Only a directory holding nothing but babelscope's data files is ever rebuilt.
        mine = is_babelscope_data_dir(d)
        try:
            build_corpus(d, force=run.force and mine, **kwargs)
        except BabelscopeError:
            if not (own and mine):
                raise  # the user's data dir, built otherwise: their call (--force)
            build_corpus(d, force=True, **kwargs)
    elif not (d / CORPUS_FILE).exists():
        raise BabelscopeError(
            f"no corpus in {d} and data.build = false: build it with `babelscope data build --out {d}`"
        )
    return data_notes(d)


def _series(run: Run):
    """The series (after pre-training, for the embedded one); resolving checks every
    checkpoint's config and tokenizer, so it is done once per run, not once per stage."""
    if run.resolved is None:
        from babelscope.checkpoints.series import resolve_series

        spec = run.cfg.model.series
        if spec is None:
            spec = run.dir / "model" / "checkpoints"
        run.resolved = resolve_series(spec)
        from babelscope.checkpoints.downloads import use_download_dir

        use_download_dir(run.resolved, (run.cache / "hub").resolve(), run.cfg.model.keep_downloads)
    return run.resolved


def stage_pretrain(run: Run) -> dict[str, Any]:
    """Train the embedded series when the config names no series of its own."""
    if run.cfg.model.series is not None:
        return {"series": run.cfg.model.series, "trained": False}
    from babelscope.pretrain import load_pretrain_config, pretrain

    pcfg = load_pretrain_config(run.cfg.model.pretrain_config)
    out = run.dir / "model"
    done = out / "checkpoints"
    # pretrain() tells fresh, interrupted and finished runs apart itself: resume unless
    # the user forces a redo (then a different configuration replaces the old series).
    pretrain(pcfg, run.cfg.data_dir, out, resume=not run.force, force=run.force)
    return {"series": str(done), "trained": True, "pretrain_config": pcfg.model_dump(mode="json")}


def stage_inspect(run: Run) -> dict[str, Any]:
    """Fingerprint and sanity-check every checkpoint; flag duplicates and broken ones."""
    from babelscope.checkpoints.inspect import inspect_series, usable
    from babelscope.corpora.corpus import load_corpus

    series = _series(run)
    corpus = load_corpus(run.cfg.data_dir, languages=run.cfg.data.all_languages)
    held = corpus[corpus["split"] == "heldout"]
    # 32 held-out sentences per language tell a broken or duplicate checkpoint apart.
    texts = {lang: g["text"].head(32).tolist() for lang, g in held.groupby("lang")}
    df = inspect_series(
        series, texts, device=run.device, dtype=run.cfg.model.dtype, executor=run.executor
    )
    steps = usable(df, include_flagged=run.cfg.model.include_flagged)
    flagged = df[df["flags"].apply(bool)] if "flags" in df else df.iloc[0:0]
    if not steps:
        shown = "; ".join(f"step {r['step']}: {r['flags']}" for _, r in flagged.head(4).iterrows())
        raise BabelscopeError(
            f"every checkpoint of the series is flagged ({shown}): nothing to analyse; "
            "fix or replace the checkpoints (include_flagged keeps duplicates)"
        )
    rows = json.loads(df.to_json(orient="records"))
    write_json_atomic(
        run.dir / "checkpoints.json",
        {"series": series.name, "checkpoints": rows, "usable_steps": steps},
    )
    for _, r in flagged.iterrows():
        warn(
            f"checkpoint step {r['step']} flagged ({r['flags']}): "
            + ("kept" if run.cfg.model.include_flagged else "left out")
        )
    return {
        "usable_steps": steps,
        "fingerprints": {int(r["step"]): r["fingerprint"] for _, r in df.iterrows()},
        "flagged": {int(r["step"]): r["flags"] for _, r in flagged.iterrows()},
    }


def _usable_series(run: Run):
    from babelscope.checkpoints.series import CheckpointSeries

    series = _series(run)
    steps = set(run.notes["inspect"]["usable_steps"])
    return CheckpointSeries(series.name, [c for c in series.checkpoints if c.step in steps])


def stage_probe(run: Run) -> dict[str, Any]:
    from babelscope.analysis.probe import run_probe
    from babelscope.report.figures.probe import plot_probe

    df = run_probe(
        _usable_series(run),
        run.cfg.data_dir,
        run.dir,
        _scoped(run, run.cfg.probe),
        device=run.device,
        dtype=run.cfg.model.dtype,
        executor=run.executor,
    )
    plot_probe(df, run.dir / "figures")
    return {"rows": len(df)}


def stage_similarity(run: Run) -> dict[str, Any]:
    """Representations: translation retrieval, CKA, margin and the logit lens per layer."""
    from babelscope.analysis.representations.stage import run_similarity
    from babelscope.report.figures.representations import plot_representations

    df, _ = run_similarity(
        _usable_series(run), run.cfg.data_dir, run.dir, _scoped(run, run.cfg.similarity),
        device=run.device, dtype=run.cfg.model.dtype, executor=run.executor,
    )  # fmt: skip
    plot_representations(run.dir)
    return {"rows": len(df)}


def _scoped(run: Run, settings: Any) -> Any:
    """``settings`` with ``languages`` limited to the configuration's languages when it
    names none: data.languages restricts every stage, not only inspect (a corpus with more
    languages than asked for must not widen probe or experts)."""
    if settings.languages is not None:
        return settings
    from babelscope.corpora.corpus import CONCEPTS_FILE
    from babelscope.preflight import _parquet_column

    langs = list(getattr(run.cfg.data, "all_languages", run.cfg.data.languages))
    labels = run.cfg.data_dir / CONCEPTS_FILE
    if hasattr(settings, "concepts") and labels.is_file():  # experts: the labelled ones
        labelled = set(_parquet_column(labels, "lang"))
        langs = [lang for lang in langs if lang in labelled]
    return settings.model_copy(update={"languages": langs})


def stage_experts(run: Run) -> dict[str, Any]:
    from babelscope.analysis.experts import run_experts

    df = run_experts(
        _usable_series(run), run.cfg.data_dir, run.dir, _scoped(run, run.cfg.experts),
        align=run.cfg.align, cache_dir=run.cache / "activations", device=run.device,
        dtype=run.cfg.model.dtype, executor=run.executor,
    )  # fmt: skip
    return {"rows": len(df)}


def stage_align(run: Run) -> dict[str, Any]:
    from babelscope.analysis.alignment import run_alignment
    from babelscope.report.figures.alignment import plot_alignment

    df = run_alignment(run.dir, run.cfg.align)
    plot_alignment(run.dir)
    from babelscope.report.figures.control import plot_control_alignment

    plot_control_alignment(run.dir)  # original <-> cipher control, if the run has one
    from babelscope.report.figures.shortcuts import plot_shortcuts

    plot_shortcuts(run.dir)  # shortcuts against experts, alignment before/after matching
    return {"rows": len(df)}


def stage_steer(run: Run) -> dict[str, Any]:
    from babelscope.analysis.steering import run_steering
    from babelscope.report.figures.steering import plot_steering

    settings = run.cfg.steer
    if run.cfg.model.series is None:  # the embedded series: the demo's smaller grid
        settings = settings.for_embedded()
    df = run_steering(
        _usable_series(run),
        run.cfg.data_dir,
        run.dir,
        settings,
        device=run.device,
        dtype=run.cfg.model.dtype,
        executor=run.executor,
    )
    if len(df):
        plot_steering(df, run.dir / "figures")
    return {"rows": len(df)}


def stage_report(run: Run) -> dict[str, Any]:
    from babelscope.report.html import render_report

    write_provenance(run)
    path = render_report(run.dir, title=f"babelscope report: {run.cfg.name}")
    return {"report": str(path)}


STAGE_FUNCS: dict[str, Callable[[Run], dict[str, Any]]] = {
    "data": stage_data,
    "pretrain": stage_pretrain,
    "inspect": stage_inspect,
    "probe": stage_probe,
    "similarity": stage_similarity,
    "experts": stage_experts,
    "align": stage_align,
    "steer": stage_steer,
    "report": stage_report,
}
# Which config section feeds each stage's key.
_STAGE_SETTINGS: dict[str, Callable[[RunConfig], Any]] = {
    # The user's text by content: an edited file is rebuilt, not skipped as "up to date".
    "data": lambda c: (
        c.data.model_dump(mode="json")
        | {"dir": str(c.data_dir), "user_content": tree_hash(c.data.user)}
    ),
    "pretrain": lambda c: [c.model.series, _pretrain_settings(c)],
    "inspect": lambda c: [c.model.series, c.model.include_flagged, c.model.dtype, _series_files(c)],
    "similarity": lambda c: c.similarity.model_dump(mode="json"),
    "probe": lambda c: c.probe.model_dump(mode="json"),
    # the experts stage also computes the alignment's permutation null (it needs the activations)
    "experts": lambda c: [c.experts.model_dump(mode="json"), c.align.null_key()],
    "align": lambda c: c.align.model_dump(mode="json"),
    "steer": lambda c: c.steer.model_dump(mode="json"),
    "report": lambda c: time.time(),  # always re-rendered: cheap, and reads everything
}


def _pretrain_settings(cfg: RunConfig) -> Any:
    """The pre-training configuration's contents (an edited TOML is a new series)."""
    if cfg.model.series is not None:
        return None
    from babelscope.pretrain import load_pretrain_config

    return load_pretrain_config(cfg.model.pretrain_config).model_dump(mode="json")


def _series_files(cfg: RunConfig) -> Any:
    """Names, sizes and times of the series' weight files: new or replaced checkpoints in
    the same directory must be inspected again."""
    from babelscope.checkpoints.series import checkpoint_signature, resolve_series

    spec = (
        cfg.model.series if cfg.model.series is not None else cfg.run_dir / "model" / "checkpoints"
    )
    try:
        series = resolve_series(spec, check=False)
    except BabelscopeError:
        return None  # not there yet (pre-training comes first) or unreadable: inspect says so
    return [(c.step, checkpoint_signature(c)) for c in series.checkpoints]


def _key(run: Run, stage: str) -> str:
    upstream = {s: run.keys.get(s) for s in _closure(stage) if s != stage}
    extra: Any = None
    # The corpus's content hash: pretrain trains on it (a replaced corpus is a new series).
    data_readers = ("pretrain", "inspect", "probe", "similarity", "experts", "steer")
    if stage in data_readers and "data" in run.notes:
        extra = run.notes["data"].get("data_hash")
        if stage in ("experts", "steer"):
            extra = [extra, run.notes["data"].get("labels_hash")]
    if stage in ("probe", "similarity", "experts", "steer") and "inspect" in run.notes:
        extra = [
            extra,
            run.notes["inspect"].get("fingerprints"),
            run.notes["inspect"].get("usable_steps"),
        ]
    return settings_hash(
        {"stage": stage, "settings": _STAGE_SETTINGS[stage](run.cfg), "up": upstream, "x": extra}
    )


def _closure(stage: str) -> list[str]:
    seen: list[str] = []

    def visit(s: str) -> None:
        for n in NEEDS[s]:
            visit(n)
        if s not in seen:
            seen.append(s)

    visit(stage)
    return seen


def write_provenance(run: Run) -> Path:
    """``<run>/provenance.json``: config hash, data hash, fingerprints, stage keys, software."""
    return write_json_atomic(
        run.dir / "provenance.json",
        provenance(
            "run",
            name=run.cfg.name,
            config_hash=settings_hash(run.cfg.model_dump(mode="json", exclude={"run"})),
            engine=getattr(run._executor, "name", run.cfg.run.engine),
            data_hash=run.notes.get("data", {}).get("data_hash"),
            fingerprints=run.notes.get("inspect", {}).get("fingerprints"),
            flagged=run.notes.get("inspect", {}).get("flagged"),
            stage_keys=run.keys,
        ),
    )


def run_study(
    config: RunConfig | str | Path | None = None,
    *,
    stages: list[str] | None = None,
    force: bool = False,
    wait: bool = False,
    executor: Any = None,
) -> Run:
    """Run the study (all stages, or ``stages``); return the finished :class:`Run`.

    Per-checkpoint work runs on the engine of the config's ``[run]`` section (serial by
    default; ``ray``: :mod:`babelscope.executor.ray_backend`), or on ``executor`` (an
    :class:`babelscope.executor.Executor` the caller made, and closes).

    The run directory must be babelscope's (see :mod:`babelscope.rundir`); it is locked
    for the whole run (``wait``: wait for another run to finish instead of refusing), and
    the configuration is checked against the data and the series before the first stage.
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    wanted = list(stages) if stages else list(cfg.stages)
    bad = [s for s in wanted if s not in STAGES]
    if bad:
        raise BabelscopeError(f"unknown stage(s) {', '.join(bad)}: choose from {', '.join(STAGES)}")
    run = Run(cfg, force=force)
    if executor is not None:
        run._executor, run._own_executor = executor, False
    elif cfg.run.engine == "ray":  # before any work: a missing Ray is one line, at once
        from babelscope.executor.ray_backend import import_ray

        import_ray()
    from babelscope.preflight import preflight

    # Inputs first: a configuration that cannot work leaves no trace, not even a run dir.
    preflight(run)
    claim_run_dir(run.dir)
    with run_lock(run.dir, wait=wait):
        claim_config(run.dir, run.cfg, run.force)
        try:
            _run_stages(run, wanted)
        except Interrupted as e:
            done = [s for s in STAGES if s in run.keys]
            e.kept = (
                f"stages {', '.join(done)} are complete in {run.dir}"
                if done
                else f"nothing had finished yet in {run.dir}"
            ) + " (and the finished checkpoints of the stage that was running)"
            e.resume = "run the same command again to resume where it stopped"
            raise
        finally:
            run.close()
    return run


def _run_stages(run: Run, wanted: list[str]) -> None:
    force = run.force
    t0 = time.perf_counter()
    for stage in STAGES:
        needed_by_wanted = any(stage in _closure(w) for w in wanted)
        if not needed_by_wanted:
            continue
        key = _key(run, stage)
        rec = run.record(stage)
        up_to_date = (
            rec is not None
            and rec.get("key") == key
            and outputs_current(run.dir, run.cfg.data_dir, stage, rec)
        )
        if stage not in wanted:
            # A prerequisite of what was asked for: it must already be done with this config.
            if not up_to_date:
                raise BabelscopeError(
                    f"stage '{stage}' must run before {', '.join(w for w in wanted if stage in _closure(w))}: "
                    f"add it to --stages (or run all stages)"
                )
            run.keys[stage], run.notes[stage] = key, rec["notes"]
            continue
        if up_to_date and not force:
            info(f"[dim]{stage}: up to date (key {key}), skipped[/dim]")
            run.keys[stage], run.notes[stage] = key, rec["notes"]
            continue
        if not quiet():  # with BABELSCOPE_QUIET an error stays the only line on stderr
            console.rule(f"[bold]{stage}")
        if force:
            clear_for_force(run.dir, stage)
        t = time.perf_counter()
        # Round-trip through JSON so fresh notes equal notes read back from the record
        # (int keys become str): downstream keys must not depend on which it was.
        notes = json.loads(json.dumps(STAGE_FUNCS[stage](run), default=str))
        run.keys[stage], run.notes[stage] = key, notes
        write_json_atomic(
            run.record_path(stage),
            {
                "stage": stage,
                "key": key,
                "notes": notes,
                "seconds": round(time.perf_counter() - t, 2),
            },
        )
        info(f"{stage}: done in {time.perf_counter() - t:.1f} s")
    run.notes["_seconds"] = round(time.perf_counter() - t0, 1)
    write_provenance(run)


from babelscope.report.summary import headline, print_summary  # noqa: E402,F401 - the run's summary
