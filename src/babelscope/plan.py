"""``babelscope plan``: what a study will cost, per stage, before anything runs.

From the configuration alone: the architecture (a local checkpoint's ``config.json``,
``[model] architecture``, or the embedded pre-training's model), the data sizes (the data
directory when it is built, else the embedded corpus's measured sizes), the series'
checkpoint count and every stage's settings, it counts per stage the tokens forwarded
and generated, the activation bytes (cache, peak memory), the disk (checkpoints,
downloads, results) and estimates the time from short timings on this machine
(:mod:`babelscope.calibrate`). Every figure says what it was estimated from.
docs/plan.md compares the estimates with measured runs.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babelscope.errors import BabelscopeError

#: The embedded corpus as built by `make demo` (16 languages + eng~x; measured in runs/demo
#: at 838 s): sentences per experts pool, characters per pooled / held-out sentence, and the
#: embedded 8,000-token BPE's characters per token. Used while the data is not built yet.
EMBEDDED = {"pool": 704, "pool_chars": 119.7, "text_chars": 99.3, "chars_per_token": 2.46}
HELDOUT_PER_LANG = 32  # inspect's held-out sentences per language (pipeline.stage_inspect)
PARQUET_ROW_BYTES = 38  # experts.parquet per row, measured on the demo (77 MB / 2.04 M rows)
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


@dataclass
class Architecture:
    """The widths that decide a study's cost, and where they were read."""

    hf_config: Any
    spec: Any  # babelscope.activations.families.FamilySpec
    source: str
    layers: int
    hidden: int
    mlp: int
    vocab: int
    params: int
    embedding_params: int
    head_width: int
    units: dict[str, int]  # units per kind (mlp, mlp_pre, residual, linear_all)
    bytes_per_param: int = 4
    stored_bytes_per_param: int = 4  # as the weights are saved (downloads, checkpoints)

    @property
    def block_bytes(self) -> float:
        return (self.params - self.embedding_params) / self.layers * self.bytes_per_param

    def summary(self) -> dict[str, Any]:
        return {"model_type": self.spec.model_type, "layers": self.layers, "hidden": self.hidden,
                "mlp": self.mlp, "vocab": self.vocab, "params": self.params,
                "units": self.units, "source": self.source}  # fmt: skip


def _arch(hf_config: Any, source: str, dtype: str) -> Architecture:
    """Widths and parameter count from a transformers config (a model on the meta device)."""
    import torch
    from transformers import AutoModelForCausalLM

    from babelscope.activations.families import FAMILIES, family_of
    from babelscope.activations.neurons import hook_points

    spec = FAMILIES.get(getattr(hf_config, "model_type", None))
    if spec is None:
        raise BabelscopeError(
            f"{source}: model family '{getattr(hf_config, 'model_type', None)}' is not in the "
            f"family table (supported: {', '.join(sorted(FAMILIES))})"
        )
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf_config)
    family_of(model)  # the table matches the model
    units = {k: sum(p.width for p in hook_points(model, k)) for k in ("mlp", "mlp_pre", "residual", "linear_all")}  # fmt: skip
    emb = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings()
    stored = getattr(hf_config, "dtype", None)
    stored_bytes = 2 if "16" in str(stored) else DTYPE_BYTES.get(dtype, 4)
    return Architecture(
        hf_config=hf_config, spec=spec, source=source, layers=spec.num_layers(hf_config),
        hidden=spec.hidden_size(hf_config), mlp=spec.intermediate_size(hf_config),
        vocab=int(head.weight.shape[0]), params=sum(p.numel() for p in model.parameters()),
        embedding_params=emb, head_width=int(head.weight.shape[1]), units=units,
        bytes_per_param=DTYPE_BYTES.get(dtype, 4), stored_bytes_per_param=stored_bytes,
    )  # fmt: skip


def architecture(cfg: Any, series: Any) -> Architecture:
    """The study's architecture: ``[model] architecture``, the first local checkpoint's
    config, the embedded pre-training's model, or a hub config already in the local hub
    cache (plan never goes to the network)."""
    from transformers import AutoConfig

    dtype = cfg.model.dtype
    arch = cfg.model.architecture
    if isinstance(arch, dict):
        fields = dict(arch)
        kind = fields.pop("model_type", None)
        if not kind:
            raise BabelscopeError("[model.architecture] needs a model_type (e.g. 'bloom')")
        try:
            hf = AutoConfig.for_model(kind, **fields)
        except (ValueError, TypeError) as e:
            raise BabelscopeError(
                f"[model.architecture]: {e}: give transformers config fields"
            ) from None
        return _arch(hf, "[model.architecture] in the configuration", dtype)
    if isinstance(arch, str):
        p = Path(arch)
        if not p.exists():
            raise BabelscopeError(f"[model] architecture = {arch}: not found; give a config.json")
        return _arch(AutoConfig.from_pretrained(p.parent if p.is_file() else p), f"{p}", dtype)
    if cfg.model.series is None:
        from babelscope.pretrain import load_pretrain_config
        from babelscope.pretrain.train import build_model

        pcfg = load_pretrain_config(cfg.model.pretrain_config)
        model = build_model(pcfg, pcfg.tokenizer.vocab_size)
        where = cfg.model.pretrain_config or "the embedded pre-training config"
        return _arch(model.config, f"{where} (the series it trains)", dtype)
    first = series.checkpoints[0]
    # Never the network: a hub checkpoint's config only from the local hub cache.
    kw: dict[str, Any] = {"local_files_only": True}
    if first.revision:
        kw["revision"] = first.revision
    if first.gguf_file:
        kw["gguf_file"] = first.gguf_file
    try:
        hf = AutoConfig.from_pretrained(first.source, **kw)
    except (OSError, ValueError) as e:
        raise BabelscopeError(
            f"cannot read the architecture of {first.label} ({str(e).splitlines()[0][:120]}): "
            "add [model.architecture] (model_type, hidden_size, layers, vocab_size) or "
            "architecture = 'path/to/config.json' to the configuration"
        ) from None
    return _arch(hf, f"config of {first.label}", dtype)


def series_steps(cfg: Any) -> tuple[Any, list[int], str]:
    """The series (None for the embedded one) and its steps, without loading any weights."""
    if cfg.model.series is None:
        from babelscope.pretrain import load_pretrain_config

        steps = load_pretrain_config(cfg.model.pretrain_config).checkpoint_steps()
        return None, steps, "the steps the embedded pre-training saves"
    from babelscope.checkpoints.series import resolve_series

    series = resolve_series(cfg.model.series, check=False)
    return series, series.steps, "the series in the configuration"


@dataclass
class DataSizes:
    """Sentences per pool and language, their length in tokens, and where that came from."""

    languages: list[str]
    pools: dict[str, int]
    heldout: dict[str, int]
    concepts: int
    pool_tokens: float  # tokens per pooled sentence
    text_tokens: float  # tokens per corpus sentence
    source: str


def _chars_per_token(cfg: Any, series: Any, texts: list[str]) -> tuple[float, str]:
    """The series tokenizer's characters per token on ``texts`` when it can be loaded here."""
    if series is not None:
        from babelscope.checkpoints.series import _load_tokenizer

        c = series.checkpoints[0]
        if c.is_local or (c.tokenizer and Path(c.tokenizer).exists()):
            try:
                tok = _load_tokenizer(c)
                n = sum(len(x) for x in tok(texts, add_special_tokens=False)["input_ids"])
                return sum(map(len, texts)) / max(1, n), "measured with the series' tokenizer"
            except BabelscopeError:
                pass
    return EMBEDDED["chars_per_token"], "the embedded tokenizer's characters per token (measured)"


def data_sizes(cfg: Any, series: Any) -> DataSizes:
    """Measured in the data directory when it is built; else the embedded corpus's sizes."""
    from babelscope.corpora.corpus import CONCEPTS_FILE, CORPUS_FILE

    d = cfg.data_dir
    langs = list(cfg.data.all_languages)
    if (d / CORPUS_FILE).is_file() and (d / CONCEPTS_FILE).is_file():
        import pandas as pd

        corpus = pd.read_parquet(d / CORPUS_FILE, columns=["id", "lang", "text", "split"])
        labels = pd.read_parquet(d / CONCEPTS_FILE, columns=["concept", "lang", "id"])
        corpus = corpus[corpus["lang"].isin(langs)]
        pools = labels[labels["lang"].isin(langs)].groupby("lang")["id"].nunique().to_dict()
        pooled = corpus[corpus["id"].isin(set(labels["id"]))]["text"]
        held = corpus[corpus["split"] == "heldout"].groupby("lang").size().to_dict()
        cpt, how = _chars_per_token(cfg, series, corpus["text"].head(2000).tolist())
        return DataSizes(langs, {k: int(v) for k, v in pools.items()}, held,
                         int(labels["concept"].nunique()), pooled.str.len().mean() / cpt,
                         corpus["text"].str.len().mean() / cpt, f"measured in {d}; tokens: {how}")  # fmt: skip
    from babelscope.checkpoints.inspect import DEFAULT_TEXTS
    from babelscope.concepts.lexicon import PACKAGED_TABLE

    table = Path(__file__).parent / "concepts" / PACKAGED_TABLE
    rows = [ln.split("\t")[0] for ln in table.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]  # fmt: skip
    cpt, how = _chars_per_token(cfg, series, [t for v in DEFAULT_TEXTS.values() for t in v])
    return DataSizes(
        langs, {lang: EMBEDDED["pool"] for lang in langs}, {lang: 1000 for lang in langs},
        len(set(rows)), EMBEDDED["pool_chars"] / cpt, EMBEDDED["text_chars"] / cpt,
        f"{d} not built yet: the embedded corpus's measured sizes ({EMBEDDED['pool']} sentences "
        f"a pool, {EMBEDDED['pool_chars']:.0f} characters a pooled sentence); tokens: {how}",
    )  # fmt: skip


def free_disk(path: Path) -> int:
    """Free bytes on the file system that ``path`` (or its nearest existing parent) is on."""
    p = Path(path).resolve()
    while not p.exists() and p != p.parent:
        p = p.parent
    return shutil.disk_usage(p).free


def make_plan(cfg: Any, *, calibrate: bool = True, where: str = "") -> dict[str, Any]:
    """The plan of ``cfg`` (a :class:`babelscope.config.RunConfig`) as a JSON-able dict."""
    from babelscope.plan_stages import estimate_stages

    series, steps, steps_from = series_steps(cfg)
    arch = architecture(cfg, series)
    data = data_sizes(cfg, series)
    device = cfg.model.device
    import torch

    notes: list[str] = []
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        notes.append("the configuration asks for cuda, which this machine does not have: "
                     "times are for this CPU; run `babelscope plan` on the GPU machine for its times")  # fmt: skip
        device = "cpu"
    cal = None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if calibrate and load > 0.75 * cores():
        notes.append(f"this machine is busy (load {load:.1f} on {cores()} cores): the timings are "
                     "CPU time on one core, which load inflates far less than wall time, but a "
                     "run now would take longer than the times below")  # fmt: skip
    if calibrate:
        from babelscope.plan_stages import calibrate_for

        cal = calibrate_for(cfg, arch, data, device)
    stages = estimate_stages(cfg, arch, data, steps, cal)
    wanted = set(cfg.stages)
    stages = [s for s in stages if s["stage"] in wanted]
    disk_needed = sum(s["disk_bytes"] for s in stages)
    downloaded = sum(s["download_bytes"] for s in stages)
    if downloaded:
        one = arch.params * arch.stored_bytes_per_param
        held = one * len(steps) if cfg.model.keep_downloads else one
        disk_needed += held
        notes.append(
            f"hub downloads: {_gb(downloaded)} in all, {_gb(held)} on disk at a time ("
            + ("keep_downloads: the series stays in <run>/cache/hub)" if cfg.model.keep_downloads
               else "each revision is deleted once loaded, so every stage downloads it again; "
               "keep_downloads = true downloads once and keeps the series)")
        )  # fmt: skip
    free = free_disk(cfg.run_dir)
    cache = sum(s.get("cache_bytes", 0) for s in stages)
    if cache > free:
        notes.append(f"the activation cache ({_gb(cache)}) would not fit the free disk "
                     f"({_gb(free)}): set [experts] keep_cache = false, cache_dtype = "
                     "'bfloat16', cache_max_gb or cache = false")  # fmt: skip
    elif disk_needed > free:
        notes.append(
            f"the study writes about {_gb(disk_needed)}, more than the free disk ({_gb(free)})"
        )
    seconds = [s["seconds"] for s in stages if s["seconds"] is not None]
    return {
        "config": where or "the embedded default configuration",
        "run_dir": str(cfg.run_dir), "device": device, "dtype": cfg.model.dtype,
        "architecture": arch.summary(),
        "series": {"checkpoints": len(steps), "steps": steps, "source": steps_from},
        "data": {"languages": len(data.languages), "sentences_per_pool": round(sum(data.pools.values()) / max(1, len(data.pools)), 1),
                 "concepts": data.concepts, "tokens_per_pooled_sentence": round(data.pool_tokens, 1),
                 "tokens_per_sentence": round(data.text_tokens, 1), "source": data.source},
        "stages": stages,
        "total": {"seconds": sum(seconds), "disk_bytes": disk_needed, "cache_bytes": cache,
                  "download_bytes": downloaded,
                  "stages_without_estimate": [s["stage"] for s in stages if s["seconds"] is None]},
        "free_disk_bytes": free,
        "calibration": None if cal is None else {k: v for k, v in vars(cal).items() if k != "notes"} | {"notes": cal.notes},
        "notes": notes,
    }  # fmt: skip


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
