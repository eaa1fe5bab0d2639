"""The work of every stage, counted from the settings (for :mod:`babelscope.plan`).

Each estimate is a dict: ``forward_tokens`` (tokens through the model, all checkpoints),
``generated_tokens``, ``cache_bytes`` (activation cache on disk), ``ram_bytes`` (peak
memory: the weights while a checkpoint loads, plus the stage's own arrays), ``gpu_bytes``
(on the device: weights + one batch's activations), ``disk_bytes``
(what the stage leaves on disk), ``download_bytes``, ``seconds`` (None where no model or
calibrated work dominates) and ``notes`` (what it was estimated from).
"""

from __future__ import annotations

import math
from typing import Any

from babelscope.plan import HELDOUT_PER_LANG, PARQUET_ROW_BYTES, cores


def calibrate_for(cfg: Any, arch: Any, data: Any, device: str) -> Any:
    """Every timing the estimates need, on ``device`` in the study's dtype (CPU work in
    single-core CPU seconds: :func:`babelscope.calibrate.single_core`)."""
    from babelscope import calibrate as cb

    with cb.single_core():
        cal = _calibrate(cfg, arch, data, device)
    if device == "cpu":
        cal.notes.append("CPU timings are single-core CPU seconds (one thread), so other work "
                         "on the machine hardly changes them; the run's extra threads can only "
                         "shorten the times")  # fmt: skip
    return cal


def _calibrate(cfg: Any, arch: Any, data: Any, device: str) -> Any:
    from babelscope import calibrate as cb
    from babelscope.progress import info

    dtype = cfg.model.dtype
    cal = cb.Calibration(device=device, dtype=dtype)
    info("[dim]plan: timing a random model of the architecture on this machine...[/dim]")
    batch = cfg.experts.batch_size
    cal.base_per_token, how = cb.time_forward(
        arch, device, dtype, batch, max(2, round(data.pool_tokens))
    )
    cal.notes.append(how)
    cal.head_per_token = cb.time_head(arch, device, dtype)
    steer = _steer_settings(cfg)
    cal.decode_step = cb.time_decode(arch, device, dtype, rows=steer.batch_size or steer.seeds)
    if cfg.model.series is None and "pretrain" in cfg.stages:
        from babelscope.pretrain import load_pretrain_config

        cal.train_step = cb.time_train_step(load_pretrain_config(cfg.model.pretrain_config))
    pool = round(sum(data.pools.values()) / max(1, len(data.pools)))
    cal.ap_per_unit, cal.halves_per_unit, cal.null_per_unit = cb.time_ap(
        pool, data.concepts, cfg.align.permutations
    )
    p = cfg.probe
    n_train = int(len(data.languages) * (p.tokens_per_language or 500) * (1 - p.test_fraction))
    cal.probe_fit = cb.time_probe_fit(n_train, arch.hidden, len(data.languages), p)
    cal.hash_per_byte = cb.time_hash()
    return cal


def _steer_settings(cfg: Any) -> Any:
    return cfg.steer.for_embedded() if cfg.model.series is None else cfg.steer


def _row(stage: str, **kw: Any) -> dict[str, Any]:
    base = dict(stage=stage, forward_tokens=0, generated_tokens=0, cache_bytes=0, ram_bytes=0,
                gpu_bytes=0, disk_bytes=0, download_bytes=0, seconds=None, notes=[])  # fmt: skip
    return base | kw


def estimate_stages(
    cfg: Any, arch: Any, data: Any, steps: list[int], cal: Any
) -> list[dict[str, Any]]:
    """One estimate per stage of ``config.STAGES`` (see the module doc)."""
    n_ckpt, langs = len(steps), len(data.languages)
    hub = cfg.model.series is not None and _is_hub(cfg)
    weights = arch.params * arch.bytes_per_param
    stored = arch.params * arch.stored_bytes_per_param
    batch_tokens = cfg.experts.batch_size * data.pool_tokens
    gpu = weights + batch_tokens * max(arch.mlp, arch.hidden) * 4 * 3

    def timed(
        loads: int, base_tokens: float, head_tokens: float = 0.0, extra: float = 0.0
    ) -> float | None:
        if cal is None:
            return None
        load = loads * weights * cal.hash_per_byte
        return load + base_tokens * cal.base_per_token + head_tokens * cal.head_per_token + extra

    def downloads(loads: int) -> dict[str, Any]:
        return {"download_bytes": loads * stored if hub else 0}

    out = [_row("data", notes=["builds the corpus and labels: no model work, not estimated"])]
    # -- pretrain -----------------------------------------------------------------------
    if cfg.model.series is None:
        from babelscope.pretrain import load_pretrain_config

        pc = load_pretrain_config(cfg.model.pretrain_config)
        train = pc.train.steps * pc.data.batch_size * pc.data.seq_len
        evals = (pc.train.steps // pc.checkpoints.eval_every + 1) * langs * pc.data.eval_sentences
        eval_tokens = evals * min(pc.data.seq_len, data.text_tokens)
        sec = (
            None
            if cal is None or cal.train_step is None
            else (
                pc.train.steps * cal.train_step
                + eval_tokens * (cal.base_per_token + cal.head_per_token)
            )
        )
        state = 3 * arch.params * 4  # model + AdamW's two moments, float32, for the last step
        out.append(_row("pretrain", forward_tokens=int(train + eval_tokens), seconds=sec,
                        disk_bytes=n_ckpt * arch.params * 4 + state, gpu_bytes=4 * arch.params * 4,
                        notes=[f"{pc.train.steps} optimizer steps of {pc.data.batch_size} x {pc.data.seq_len} "
                               "tokens (timed: one step), held-out evaluations; tokenizer training not included"]))  # fmt: skip
    else:
        out.append(
            _row("pretrain", notes=["the configuration names its own series: nothing to train"])
        )
    # -- inspect ------------------------------------------------------------------------
    held = sum(min(HELDOUT_PER_LANG, n) for n in data.heldout.values())
    tokens = n_ckpt * (held + 4) * data.text_tokens
    out.append(_row("inspect", forward_tokens=int(tokens), gpu_bytes=gpu, ram_bytes=weights,
                    seconds=timed(n_ckpt, tokens, tokens), **downloads(n_ckpt),
                    notes=[f"{held} held-out sentences x {n_ckpt} checkpoints, loss through the output head "
                           f"({arch.vocab:,} tokens) in chunks; weights fingerprinted at load"]))  # fmt: skip
    # -- probe --------------------------------------------------------------------------
    p = cfg.probe
    n_layers = len(p.layers) if p.layers else arch.layers + 1
    tokens = (
        n_ckpt * langs * p.sentences_per_language * min(p.max_length or 10**9, data.text_tokens)
    )
    fits = n_ckpt * n_layers * len(p.seeds) * (2 if p.level == "token" else 1)
    par = min(p.n_jobs or cores(), n_layers)
    rows = langs * (p.tokens_per_language or p.sentences_per_language * data.text_tokens)
    out.append(_row("probe", forward_tokens=int(tokens), gpu_bytes=gpu, ram_bytes=int(weights + rows * n_layers * arch.hidden * 4),
                    seconds=timed(n_ckpt, tokens, extra=fits * cal.probe_fit / par if cal else 0), **downloads(n_ckpt),
                    notes=[f"{fits} probe fits ({n_layers} layers x {len(p.seeds)} seeds x probe and control "
                           f"per checkpoint; one timed), {par} in parallel"]))  # fmt: skip
    # -- similarity ---------------------------------------------------------------------
    s = cfg.similarity
    sents = n_ckpt * s.items * langs
    tokens = sents * min(s.max_length or 10**9, data.text_tokens)
    lens = (
        sents * (s.lens_tokens_per_sentence or data.text_tokens) * (arch.layers + 1)
        if s.lens
        else 0
    )
    out.append(_row("similarity", forward_tokens=int(tokens), gpu_bytes=gpu,
                    ram_bytes=int(weights + s.items * langs * (arch.layers + 1) * arch.hidden * 4),
                    seconds=timed(n_ckpt, tokens, lens), **downloads(n_ckpt),
                    notes=[f"{s.items} parallel items x {langs} languages; logit lens: {int(lens):,} "
                           "positions through the head; nulls and bootstraps not timed"]))  # fmt: skip
    # -- experts ------------------------------------------------------------------------
    out.append(_experts(cfg, arch, data, n_ckpt, cal, gpu, timed, downloads))
    # -- align, steer, report -----------------------------------------------------------
    out.append(_row("align", notes=["reads the experts' shards: statistics only, not estimated"]))
    out.append(_steer(cfg, arch, data, n_ckpt, cal, gpu, timed, downloads))
    out.append(_row("report", notes=["renders the HTML report from the results: not estimated"]))
    return out


def _is_hub(cfg: Any) -> bool:
    from pathlib import Path

    spec = cfg.model.series
    if isinstance(spec, dict) and spec.get("repo"):
        return not Path(str(spec["repo"])).exists()
    return isinstance(spec, str) and spec.startswith("hub:")


def _experts(cfg, arch, data, n_ckpt, cal, gpu, timed, downloads) -> dict[str, Any]:
    from babelscope.activations.dtypes import itemsize

    e = cfg.experts
    units = arch.units[e.kind]
    weights = arch.params * arch.bytes_per_param
    sents = sum(data.pools.values())
    tokens = n_ckpt * sents * data.pool_tokens
    per_ckpt = sents * units * itemsize(e.cache_dtype)
    cache = 0 if not e.cache else per_ckpt * (n_ckpt if e.keep_cache else 1)
    if e.cache and e.cache_max_gb is not None:
        cache = min(cache, int(e.cache_max_gb * 1e9))
    store = 2 if e.store_dtype == "float16" else 4
    shards = n_ckpt * len(data.pools) * data.concepts * units * 6 * store
    table = n_ckpt * len(data.pools) * data.concepts * e.top_k_store * PARQUET_ROW_BYTES
    biggest = max(data.pools.values()) if data.pools else 0
    ram = biggest * units * 4 * 2 + sents * units * 4  # a pool twice (layers, flat) + null ranks
    extra = 0.0
    if cal is not None:
        # Timed on a pool of the mean size; the cost grows about linearly with a pool's size,
        # so the pools together cost (number of pools) x (a mean pool).
        per_unit = (
            cal.ap_per_unit + cal.halves_per_unit + cfg.align.permutations * cal.null_per_unit
        )
        extra = n_ckpt * len(data.pools) * units * per_unit
    kept = ("off" if not e.cache else f"{'every checkpoint' if e.keep_cache else 'one checkpoint'} "
            f"in {e.cache_dtype}")  # fmt: skip
    return _row("experts", forward_tokens=int(tokens), cache_bytes=int(cache), gpu_bytes=gpu,
                ram_bytes=int(weights + ram), disk_bytes=int(cache + shards + table),
                seconds=timed(n_ckpt, tokens, extra=extra), **downloads(n_ckpt),
                notes=[f"{sents:,} pooled sentences x {units:,} {e.kind} units a checkpoint "
                       f"({per_ckpt / 1e9:.2f} GB of activations; cache: {kept}); AP, halves and "
                       f"{cfg.align.permutations} null permutations timed on 2,048 units; peak memory: "
                       "the largest pool twice and the null's ranks of every pool"])  # fmt: skip


def _steer(cfg, arch, data, n_ckpt, cal, gpu, timed, downloads) -> dict[str, Any]:
    st = _steer_settings(cfg)
    weights = arch.params * arch.bytes_per_param
    n_steer = len(st.steps) if st.steps else min(st.checkpoints or n_ckpt, n_ckpt)
    n_conc = len(st.concepts) if st.concepts else (st.max_concepts or 4)
    ks = len(st.resolve_ks(arch.units["mlp"]))
    rows_b = st.batch_size or st.seeds
    outputs, batches = 0, []  # batches: (rows, count) per (checkpoint, concept)
    for cond in st.conditions:
        if cond == "none":
            outputs += st.seeds
            batches.append((st.seeds, 1))
        elif cond == "random" and st.random_seeds == "split":
            outputs += ks * st.seeds
            batches.append((math.ceil(st.seeds / st.random_draws), ks * st.random_draws))
        else:
            draws = st.random_draws if cond == "random" else 1
            outputs += ks * draws * st.seeds
            batches.append((st.seeds, ks * draws))
    units = n_steer * n_conc
    outputs *= units
    generated = outputs * st.max_new_tokens
    values = units * 2 * st.value_sentences * data.pool_tokens
    fluency = outputs * (st.max_new_tokens + 1) if st.fluency else 0
    extra = 0.0
    if cal is not None:
        for rows, count in batches:
            n_b = count * math.ceil(rows / rows_b)
            r = min(rows, rows_b)
            extra += units * n_b * st.max_new_tokens * (cal.decode(r) + r * cal.head_per_token)
    return _row("steer", forward_tokens=int(values + fluency), generated_tokens=int(generated),
                gpu_bytes=gpu, ram_bytes=weights, seconds=timed(n_steer, values + fluency, fluency, extra),
                **downloads(n_steer),
                notes=[f"{n_steer} checkpoints x {n_conc} concepts x {ks} K values: {outputs:,} outputs of "
                       f"{st.max_new_tokens} tokens (a sampling step timed with the KV cache; an upper "
                       "bound: rows that end early stop), values and fluency forwards"])  # fmt: skip
