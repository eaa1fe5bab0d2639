"""Seeded sampling for forced generation, and the fluency of what was sampled.

Sampling is a small loop of our own rather than ``model.generate``, because the study
needs two properties that are easiest to guarantee by construction:

- **one seed, one text**: each row has its own ``torch.Generator`` seeded with the
  row's seed and draws exactly one uniform number per step, so a seed gives the same
  text alone or in a batch of any size, and with or without the KV cache;
- **every position forced**: with the KV cache each forward pass after the prompt sees
  only the newest token, and the forcing hook changes that token's units too.

All rows share one prompt (same length, no padding), so rows never interact; a row
that ends (EOS) keeps being fed but its text is cut at the EOS.

:func:`token_losses` scores outputs under the *unforced* model (mean loss per generated
token): the judge's fluency measure, which tells "undetermined" language from gibberish.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Any

import torch

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


def _cache_kwarg(model: Any) -> str:
    """The forward's name for the KV cache: ``cache`` in current transformers (which warns
    that ``past_key_values`` is deprecated), ``past_key_values`` in older releases."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _cache_of(res: Any) -> Any:
    """The KV cache of a forward's output, under either name (without the deprecation)."""
    for key in ("cache", "past_key_values"):
        if key in res:  # ModelOutput is a dict: its keys are the fields it holds
            return res[key]
    return None


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
                        use_cache=True,
                        **{_cache_kwarg(model): past},
                        **kwargs,
                    )
                    past = _cache_of(res)
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


@torch.no_grad()
def token_losses(
    model: Any,
    prompt_ids: Sequence[int],
    outputs: Sequence[Sequence[int]],
    *,
    batch_size: int = 32,
    pad_id: int = 0,
) -> list[float]:
    """Mean loss (nats per token) of each output's tokens after ``prompt_ids`` under ``model``.

    Run it with no intervention attached: it measures how plausible the forced text is
    to the model itself. Rows are right-padded (padding never scored); an empty output
    gets NaN.
    """
    device = next(model.parameters()).device
    prompt = list(prompt_ids)
    out: list[float] = [float("nan")] * len(outputs)
    order = [i for i in range(len(outputs)) if len(outputs[i])]
    with _eval_mode(model):
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            seqs = [prompt + list(outputs[i]) for i in rows]
            t = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), t), int(pad_id), dtype=torch.long)
            mask = torch.zeros((len(seqs), t), dtype=torch.long)
            for j, s in enumerate(seqs):
                ids[j, : len(s)] = torch.tensor(s)
                mask[j, : len(s)] = 1
            logits = model(
                input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False
            ).logits.float()
            # Position p predicts token p + 1; score only the generated tokens.
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            target = ids[:, 1:].to(device)
            nll = -logp.gather(2, target[..., None]).squeeze(2)
            scored = torch.zeros_like(mask[:, 1:], dtype=torch.bool)
            for j, s in enumerate(seqs):
                scored[j, len(prompt) - 1 : len(s) - 1] = True
            scored = scored.to(device)
            mean = (nll * scored).sum(1) / scored.sum(1)
            for j, i in enumerate(rows):
                out[i] = float(mean[j])
    return out
