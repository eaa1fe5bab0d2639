"""Short timings on this machine that ``babelscope plan`` scales to a whole study.

Every measurement runs a random model of the study's architecture (same widths, heads and
vocabulary; weights do not change the cost) on the device and dtype the study asks for:

- the base model's forward per token, measured at 1 and at ``n`` blocks (``n`` as many as
  fit a memory and compute budget, all of them for small models) and extrapolated linearly
  in depth: ``fixed + layers * per_block``;
- the output head and the loss per token (a chunk of the vocabulary, scaled);
- one seeded sampling step with the KV cache (steering) at 1 and at ``batch`` rows;
- one optimizer step of the pre-training (the embedded series only; the real model);
- AP of 2,048 units for a pool's sentences and concepts (``score_units``), the ranks and
  AP on each half, and one permutation of the null (``ap_of_sets``); one probe fit;
- hashing speed (the weight fingerprint of every loaded checkpoint).

Best of a few repeats each. On the CPU, inside :func:`single_core` (``babelscope plan``),
the work runs on one thread and is timed in CPU seconds, which other work on a shared
machine inflates far less than wall time; on a GPU, wall time after synchronising.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: Bytes of weights the depth calibration may build, and FLOPs per timed forward (CPU).
WEIGHT_BUDGET = 1.5e9
FLOP_BUDGET = {"cpu": 3e10, "cuda": 2e12}


_clock = time.perf_counter  # process_time inside single_core()


@contextlib.contextmanager
def single_core() -> Iterator[None]:
    """Time CPU work on one thread in CPU seconds: what the work costs whatever else runs on
    the machine (wall time on a shared machine measures the others too). The run's own
    threads can only make the work faster than this."""
    from threadpoolctl import threadpool_limits

    global _clock
    threads, old = torch.get_num_threads(), _clock
    torch.set_num_threads(1)
    _clock = time.process_time
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)
        _clock = old


def _best(fn, repeats: int = 3, device: str = "cpu") -> float:
    """The shortest of ``repeats`` runs after a warm-up (CUDA: wall time, synchronised)."""
    gpu = str(device).startswith("cuda")
    clock = time.perf_counter if gpu else _clock
    fn()  # warm-up: allocations and kernel selection are not the steady state
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        if gpu:
            torch.cuda.synchronize()
        times.append(clock() - t0)
    return min(times)


def with_depth(hf_config: Any, spec: Any, layers: int, vocab: int | None = None) -> Any:
    """A copy of ``hf_config`` with ``layers`` blocks (and another vocabulary size)."""
    cfg = copy.deepcopy(hf_config)
    text = spec.text_cfg(cfg)
    setattr(text, spec.layers_field, layers)
    if hasattr(text, "layer_types") and isinstance(text.layer_types, list):
        text.layer_types = (text.layer_types * layers)[:layers]  # per-layer attention kinds
    if vocab is not None:
        text.vocab_size = vocab
    return cfg


def random_model(hf_config: Any, device: str, dtype: str) -> Any:
    """A randomly initialised causal LM of ``hf_config`` in eval mode on ``device``."""
    from transformers import AutoModelForCausalLM

    from babelscope.checkpoints.series import torch_dtype

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_config, dtype=torch_dtype(dtype))
    return model.to(device).eval()


@dataclass
class Calibration:
    """Seconds per unit of work on this device (see the module doc); ``notes`` say how."""

    device: str
    dtype: str
    base_per_token: float = 0.0  # the whole base model, per real token
    head_per_token: float = 0.0  # output head + cross-entropy, per position
    decode_step: dict[int, float] = field(default_factory=dict)  # rows -> seconds per step
    train_step: float | None = None  # one optimizer step of the embedded pre-training
    ap_per_unit: float = 0.0  # score_units, per unit, for the calibrated pool
    halves_per_unit: float = 0.0  # ranks + AP on each half, per unit
    null_per_unit: float = 0.0  # one permutation on both halves, per unit
    probe_fit: float = 0.0  # one logistic-regression fit
    hash_per_byte: float = 0.0
    notes: list[str] = field(default_factory=list)

    def decode(self, rows: int) -> float:
        """Seconds of one sampling step for ``rows`` rows (linear between the two measured)."""
        points = sorted(self.decode_step.items())
        (b1, t1), (b2, t2) = points[0], points[-1]
        if b2 == b1:
            return t1
        return t1 + (t2 - t1) * (rows - b1) / (b2 - b1)


def _tokens_batch(vocab: int, rows: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, max(4, vocab), (rows, length), generator=g)
    return ids, torch.ones_like(ids)


def time_forward(arch: Any, device: str, dtype: str, batch: int, length: int) -> tuple[float, str]:
    """Seconds per token of the base model's forward, extrapolated in depth; and how."""
    from babelscope.activations.families import get_module

    layers = arch.layers
    per_block_bytes = (
        max(1.0, (arch.params - arch.embedding_params) / layers) * arch.bytes_per_param
    )
    n = int(max(1, min(layers, 4, WEIGHT_BUDGET // per_block_bytes)))
    flops = 2 * per_block_bytes / arch.bytes_per_param * n
    tokens = int(min(batch * length, max(16, FLOP_BUDGET.get(device, 3e10) / flops)))
    rows = max(1, min(batch, tokens // max(1, length)))
    seq = max(2, min(length, tokens // rows))
    vocab = min(arch.vocab, 4096)
    timed: dict[int, float] = {}
    for depth in sorted({1, n}):
        model = random_model(with_depth(arch.hf_config, arch.spec, depth, vocab), device, dtype)
        base = get_module(model, arch.spec.base)
        ids, mask = (t.to(device) for t in _tokens_batch(vocab, rows, seq))

        def run(base=base, ids=ids, mask=mask) -> None:
            with torch.inference_mode():
                base(input_ids=ids, attention_mask=mask, use_cache=False)

        timed[depth] = _best(run, repeats=5, device=device) / (rows * seq)
        del model, base
    if n == layers or n == 1:
        per_token = timed[n] * layers / n if n != layers else timed[n]
        how = f"{n} of {layers} blocks timed" + ("" if n == layers else ", scaled by depth")
    else:
        per_block = max(0.0, (timed[n] - timed[1]) / (n - 1))
        per_token = max(timed[1] - per_block, 0.0) + layers * per_block
        how = f"1 and {n} of {layers} blocks timed, extrapolated linearly in depth"
    return per_token, f"forward: {how}, batch {rows} x {seq} tokens"


def time_head(arch: Any, device: str, dtype: str, tokens: int = 256) -> float:
    """Seconds per position of the output head and the loss (a vocabulary chunk, scaled)."""
    from babelscope.checkpoints.series import torch_dtype

    chunk = min(arch.vocab, 32768)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(chunk, arch.head_width, generator=g).to(device, torch_dtype(dtype))
    h = torch.randn(tokens, arch.head_width, generator=g).to(device, torch_dtype(dtype))
    target = torch.randint(0, chunk, (tokens,), generator=g).to(device)

    def run() -> None:
        with torch.inference_mode():
            logits = torch.nn.functional.linear(h, w).float()
            torch.nn.functional.cross_entropy(logits, target, reduction="sum")

    return _best(run, device=device) / tokens * arch.vocab / chunk


def time_decode(arch: Any, device: str, dtype: str, rows: int, steps: int = 8) -> dict[int, float]:
    """Seconds per sampling step (KV cache) at 1 and ``rows`` rows, through the full depth."""
    from babelscope.analysis.steering.sampling import sample_tokens

    n = int(max(1, min(arch.layers, 4, WEIGHT_BUDGET // max(1.0, arch.block_bytes))))
    model = random_model(
        with_depth(arch.hf_config, arch.spec, n, min(arch.vocab, 4096)), device, dtype
    )
    scale = arch.layers / n
    out = {}
    for b in sorted({1, max(1, rows)}):
        t = _best(lambda b=b: sample_tokens(model, [0], list(range(b)), max_new_tokens=steps,
                                            stop_at_eos=False), repeats=2, device=device)  # fmt: skip
        # The head at the full vocabulary is timed apart (time_head) and added per row.
        out[b] = t / steps * scale
    return out


def time_train_step(pretrain_cfg: Any) -> float:
    """Seconds of one optimizer step of the embedded pre-training (its own model, threads)."""
    from babelscope.pretrain.train import _use_bf16, build_model

    threads = torch.get_num_threads()
    torch.set_num_threads(pretrain_cfg.train.threads or threads)
    try:
        torch.manual_seed(0)
        model = build_model(pretrain_cfg, pretrain_cfg.tokenizer.vocab_size).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        d = pretrain_cfg.data
        ids, _ = _tokens_batch(pretrain_cfg.tokenizer.vocab_size, d.batch_size, d.seq_len)
        bf16 = _use_bf16(pretrain_cfg.train.bf16)

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return _best(step)
    finally:
        torch.set_num_threads(threads)


def time_ap(pool: int, concepts: int, permutations: int) -> tuple[float, float, float]:
    """Seconds per unit: ``score_units`` on a pool, ranks + AP on its halves, one permutation."""
    from babelscope.analysis.ap_sets import ap_of_sets, ranks
    from babelscope.analysis.average_precision import score_units

    units = 2048
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((pool, units)), 0).astype(np.float32).round(2)
    labels = rng.random((pool, max(1, concepts))) < 0.05
    half = np.arange(pool) % 2
    t_score = _best(lambda: score_units(x, labels, threads=1), repeats=1)
    r = [ranks(x[half == h]) for h in (0, 1)]
    sets = [
        [np.flatnonzero(labels[half == h][:, c]) for c in range(labels.shape[1])] for h in (0, 1)
    ]
    t_half = _best(lambda: [ap_of_sets(ranks(x[half == h]), sets[h]) for h in (0, 1)], repeats=1)
    t_perm = _best(lambda: [ap_of_sets(r[h], sets[h]) for h in (0, 1)], repeats=1)
    return t_score / units, t_half / units, t_perm / units if permutations else 0.0


def time_probe_fit(n_train: int, dim: int, classes: int, settings: Any) -> float:
    """CPU seconds of one probe fit on class-structured random vectors of the real shape,
    with the BLAS threads the probe stage runs with (one per core: on a small problem their
    coordination costs several times the arithmetic, and the stage pays it)."""
    from threadpoolctl import threadpool_limits

    from babelscope.analysis.probe import _fit_predict

    rng = np.random.default_rng(0)
    y = np.arange(n_train) % max(2, classes)
    means = rng.standard_normal((max(2, classes), dim)) * 0.5
    x = (means[y] + rng.standard_normal((n_train, dim))).astype(np.float32)
    with threadpool_limits(_cores()):
        return _best(lambda: _fit_predict(x, y, x[:64], settings.C, settings.max_iter,
                                          settings.tol), repeats=2)  # fmt: skip


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def time_hash(n: int = 64 << 20) -> float:
    """Seconds per byte of the weight fingerprint (blake2b)."""
    data = np.ones(n, dtype=np.uint8).data
    return _best(lambda: hashlib.blake2b(data, digest_size=16).digest(), repeats=2) / n
