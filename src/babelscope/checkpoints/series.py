"""A checkpoint series: the ordered (step, checkpoint) list of one model, and loading one.

:func:`resolve_series` accepts:

- a **local directory** of step-named checkpoints: ``step-N``, ``step_N``, ``stepN``,
  ``checkpoint-N``, ``global_stepN`` (sub-directories in Hugging Face layout, or GGUF files
  named that way). A tokenizer missing in the checkpoints is taken from the directory itself
  or its ``tokenizer/`` sub-directory. A directory that is itself one model is a series of
  one checkpoint (step parsed from its name, else 0).
- a **hub repository with revisions**: ``{"repo": "bigscience/bloom-560m-intermediate",
  "revisions": ["global_step1000", ...], "tokenizer": "bigscience/bloom-560m"}``; steps are
  parsed from the revision names, or given as ``{"revisions": {"main": 600000}}``. Loading
  calls ``from_pretrained(repo, revision=...)``. When ``repo`` is a *local directory*, each
  revision is its sub-directory of that name (the same layout offline, which is how the
  tests exercise this path).
- an **explicit list** of ``{"step": N, "path": DIR}``, ``{"step": N, "revision": R}`` (with
  a ``repo`` around it), ``{"step": N, "gguf": FILE}`` (or a ``path`` ending in ``.gguf``), or
  ``(step, path_or_revision)`` pairs,
  as a list or as ``{"name": ..., "repo": ..., "tokenizer": ..., "checkpoints": [...]}``.
- a **GGUF file** (``transformers``' ``gguf_file=``): one checkpoint.
- ``hub:org/name``: one hub checkpoint. A bare ``org/name`` is a local path like any
  other, so a missing directory says "not found" at once instead of retrying the hub.
- a **JSON or TOML file** holding any of the above.

Checkpoints are ordered by step; two with the same step are an error. ``resolve_series``
checks that local checkpoints have weights and agree on architecture and tokenizer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babelscope.errors import BabelscopeError

_STEP_RE = re.compile(r"^(?:step|checkpoint|ckpt|global_step|iter)[-_]?(\d+)$", re.IGNORECASE)
WEIGHT_PATTERNS = (
    "*.safetensors",
    "pytorch_model*.bin",
    "*.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "tokenizer.model",
    "sentencepiece.bpe.model",
)
HUB_PREFIX = "hub:"  # how a string names a hub repository rather than a local path
DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}  # fmt: skip


def _first_line(e: BaseException) -> str:
    """The first line of an exception's message (its repr when it has none)."""
    return str(e).splitlines()[0] if str(e).strip() else repr(e)


def parse_step(name: str) -> int | None:
    """The training step in a checkpoint name (``step-1024``, ``global_step1024``…), or None."""
    m = _STEP_RE.match(Path(name).stem if name.endswith(".gguf") else name)
    return int(m.group(1)) if m else None


@dataclass
class Checkpoint:
    """One checkpoint: a local directory or hub repo id (``source``) at an optional revision.

    ``tokenizer`` (path or repo id) overrides where the tokenizer comes from; ``gguf_file``
    names a GGUF file inside ``source``.
    """

    step: int
    source: str
    revision: str | None = None
    tokenizer: str | None = None
    gguf_file: str | None = None
    download_dir: str | None = None  # a hub revision is downloaded there (checkpoints/downloads.py)
    keep_download: bool = False  # ... and removed again once loaded unless kept

    @property
    def label(self) -> str:
        where = self.source + (f"@{self.revision}" if self.revision else "")
        return f"step {self.step} ({where}{'/' + self.gguf_file if self.gguf_file else ''})"

    @property
    def is_local(self) -> bool:
        return Path(self.source).exists()


@dataclass
class CheckpointSeries:
    """An ordered series of checkpoints of one model."""

    name: str
    checkpoints: list[Checkpoint] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.checkpoints = sorted(self.checkpoints, key=lambda c: c.step)
        steps = [c.step for c in self.checkpoints]
        dup = sorted({s for s in steps if steps.count(s) > 1})
        if dup:
            raise BabelscopeError(
                f"series '{self.name}' has several checkpoints for step(s) {dup}: keep one per step"
            )

    @property
    def steps(self) -> list[int]:
        return [c.step for c in self.checkpoints]

    def __iter__(self) -> Iterator[Checkpoint]:
        return iter(self.checkpoints)

    def __len__(self) -> int:
        return len(self.checkpoints)

    def get(self, step: int) -> Checkpoint:
        for c in self.checkpoints:
            if c.step == step:
                return c
        raise BabelscopeError(f"series '{self.name}' has no step {step}: steps are {self.steps}")

    def to_dict(self) -> dict[str, Any]:
        import dataclasses

        return {"name": self.name, "checkpoints": [dataclasses.asdict(c) for c in self.checkpoints]}


# ---------------------------------------------------------------------------------------
# Resolving a spec
# ---------------------------------------------------------------------------------------


def resolve_series(spec: Any, *, name: str | None = None, check: bool = True) -> CheckpointSeries:
    """A :class:`CheckpointSeries` from a directory, file, dict or list (see module doc).

    ``check`` verifies that local checkpoints have weights and that all checkpoints agree
    on architecture and tokenizer (configs and tokenizers are read, weights are not).
    """
    series = _resolve(spec, name)
    if not series.checkpoints:
        raise BabelscopeError(f"series '{series.name}' has no checkpoints")
    if check:
        check_series(series)
    return series


def _resolve(spec: Any, name: str | None) -> CheckpointSeries:
    if isinstance(spec, CheckpointSeries):
        return spec
    if isinstance(spec, str | Path):
        path = Path(spec)
        if path.is_file() and path.suffix in (".json", ".toml"):
            obj = _read_spec_file(path)
            named = obj.get("name") if isinstance(obj, dict) else None
            return _resolve(obj, name or named or path.stem)
        if path.is_file() and path.suffix == ".gguf":
            step = parse_step(path.name) or 0
            return CheckpointSeries(
                name or path.stem, [Checkpoint(step, str(path.parent), gguf_file=path.name)]
            )
        if path.is_dir():
            return _resolve_dir(path, name)
        text = str(spec)
        if text.startswith(HUB_PREFIX):  # a hub repo id, said explicitly: one checkpoint
            repo = text[len(HUB_PREFIX) :]
            if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
                raise BabelscopeError(f"'{text}' is not a hub repository id: write hub:org/name")
            return CheckpointSeries(name or repo, [Checkpoint(0, repo)])
        if not path.exists():
            # Never guessed to be a hub repository: a typo in a local path must say so.
            raise BabelscopeError(
                f"checkpoint series '{spec}' not found: fix the path "
                f"(a hub repository is written {HUB_PREFIX}org/name)"
            )
        raise BabelscopeError(
            f"no checkpoint series at '{spec}': give a directory, a GGUF, JSON or TOML file"
        )
    if isinstance(spec, dict):
        return _resolve_dict(spec, name)
    if isinstance(spec, list | tuple):
        return CheckpointSeries(name or "series", [_entry(e, {}) for e in spec])
    raise BabelscopeError(f"cannot read a checkpoint series from a {type(spec).__name__}")


def _read_spec_file(path: Path) -> Any:
    try:
        if path.suffix == ".json":
            return json.loads(path.read_text())
        import tomllib

        return tomllib.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise BabelscopeError(f"cannot read series spec {path}: {e}") from None


def checkpoint_signature(ckpt: Checkpoint) -> dict[str, Any]:
    """What identifies a checkpoint's weights without loading them: for local files their
    names, sizes, modification times and a hash of their first and last 64 KiB (the
    safetensors header, GGUF's tensor table: new weights at the same path change it, even
    copied with their old time); for a hub revision the repository and revision.
    Per-step result caches key on it; the weight fingerprint, computed when a checkpoint
    is loaded, covers every byte."""
    src = Path(str(ckpt.source)).expanduser()
    if src.is_file():
        files = [src]
    elif src.is_dir():
        if ckpt.gguf_file:
            files = [src / ckpt.gguf_file]
        else:
            files = sorted({f for pat in WEIGHT_PATTERNS for f in src.glob(pat)})
    else:
        return {"source": str(ckpt.source), "revision": ckpt.revision, "gguf_file": ckpt.gguf_file}
    return {
        "source": str(ckpt.source),
        "revision": ckpt.revision,
        "gguf_file": ckpt.gguf_file,
        "files": [
            (f.name, f.stat().st_size, f.stat().st_mtime_ns, _ends_hash(f))
            for f in files
            if f.is_file()
        ],
    }


def _ends_hash(path: Path, n: int = 1 << 16) -> str:
    """Hash of a file's first and last ``n`` bytes: cheap, and a rewrite changes it."""
    h = hashlib.blake2b(digest_size=8)
    try:
        with open(path, "rb") as f:
            h.update(f.read(n))
            size = path.stat().st_size
            if size > n:
                f.seek(max(n, size - n))
                h.update(f.read(n))
    except OSError:
        return "unreadable"
    return h.hexdigest()


def _has_weights(d: Path) -> bool:
    return any(next(d.glob(p), None) is not None for p in WEIGHT_PATTERNS)


def _has_tokenizer(d: Path) -> bool:
    return any((d / f).exists() for f in TOKENIZER_FILES)


def _resolve_dir(root: Path, name: str | None) -> CheckpointSeries:
    children = sorted(
        c
        for c in root.iterdir()
        if not c.name.startswith((".", "_"))
        and (
            (c.is_dir() and ((c / "config.json").exists() or _has_weights(c)))
            or c.suffix == ".gguf"
        )
    )
    series_name = name or root.name
    if not children:
        if (root / "config.json").exists() or _has_weights(root):  # the directory is one model
            return CheckpointSeries(
                series_name, [Checkpoint(parse_step(root.name) or 0, str(root))]
            )
        raise BabelscopeError(
            f"{root} holds no checkpoints: expected sub-directories named step-N, checkpoint-N or global_stepN"
        )
    bad = [c.name for c in children if parse_step(c.name) is None]
    if bad:
        raise BabelscopeError(
            f"cannot parse a step from {', '.join(repr(b) for b in bad[:5])} in {root}: "
            "name checkpoints step-N, checkpoint-N or global_stepN (or list them explicitly in a series file)"
        )
    shared_tok = next(
        (str(d) for d in (root, root / "tokenizer") if d.is_dir() and _has_tokenizer(d)), None
    )
    ckpts = []
    for c in children:
        step = parse_step(c.name)
        assert step is not None
        if c.suffix == ".gguf":
            ckpts.append(Checkpoint(step, str(root), gguf_file=c.name, tokenizer=shared_tok))
        else:
            ckpts.append(
                Checkpoint(step, str(c), tokenizer=None if _has_tokenizer(c) else shared_tok)
            )
    return CheckpointSeries(series_name, ckpts)


def _resolve_dict(spec: dict, name: str | None) -> CheckpointSeries:
    series_name = name or spec.get("name") or spec.get("repo") or spec.get("path") or "series"
    if "path" in spec and "checkpoints" not in spec:
        s = _resolve(spec["path"], series_name)
        if spec.get("tokenizer"):
            for c in s.checkpoints:
                c.tokenizer = str(spec["tokenizer"])
        return s
    defaults = {k: spec[k] for k in ("repo", "tokenizer") if spec.get(k)}
    if "revisions" in spec:
        if "repo" not in spec:
            raise BabelscopeError(
                "a series with 'revisions' needs a 'repo' (hub id or local directory)"
            )
        revs = spec["revisions"]
        pairs = list(revs.items()) if isinstance(revs, dict) else [(r, None) for r in revs]
        entries = []
        for rev, step in pairs:
            step = step if step is not None else parse_step(str(rev))
            if step is None:
                raise BabelscopeError(
                    f"cannot parse a step from revision '{rev}': give it as revisions = {{\"{rev}\" = STEP}}"
                )
            entries.append({"step": int(step), "revision": str(rev)})
        return CheckpointSeries(series_name, [_entry(e, defaults) for e in entries])
    if "checkpoints" in spec:
        return CheckpointSeries(series_name, [_entry(e, defaults) for e in spec["checkpoints"]])
    raise BabelscopeError(
        "a series spec needs 'path', 'checkpoints' (a list of steps with paths or revisions) "
        "or 'repo' with 'revisions'"
    )


def _entry(e: Any, defaults: dict[str, Any]) -> Checkpoint:
    """One checkpoint from a dict or a (step, path-or-revision) pair."""
    if isinstance(e, Checkpoint):
        return e
    if isinstance(e, list | tuple):
        if len(e) != 2:
            raise BabelscopeError(f"a checkpoint pair must be (step, path or revision), not {e!r}")
        step, where = e
        # A pair names a path, unless the series has a repo and no such path exists: a revision.
        is_path = Path(str(where)).exists() or "repo" not in defaults
        e = {"step": step, "path" if is_path else "revision": where}
    if not isinstance(e, dict) or "step" not in e:
        raise BabelscopeError(f"a checkpoint entry needs a 'step': {e!r}")
    try:
        step = int(e["step"])
    except (TypeError, ValueError):
        raise BabelscopeError(f"checkpoint step must be an integer, not {e['step']!r}") from None
    tokenizer = e.get("tokenizer", defaults.get("tokenizer"))
    tokenizer = str(tokenizer) if tokenizer else None
    gguf_path = e.get("gguf") or (
        e.get("path")
        if str(e.get("path", "")).endswith(".gguf") and not e.get("gguf_file")
        else None
    )
    if gguf_path:  # {"gguf": FILE}, or a "path" (or a pair) naming a .gguf file
        g = Path(gguf_path)
        return Checkpoint(step, str(g.parent), tokenizer=tokenizer, gguf_file=g.name)
    if e.get("path"):
        return Checkpoint(step, str(e["path"]), tokenizer=tokenizer, gguf_file=e.get("gguf_file"))
    if e.get("revision"):
        repo = e.get("repo", defaults.get("repo"))
        if not repo:
            raise BabelscopeError(f"step {step}: revision '{e['revision']}' needs a 'repo'")
        local = Path(str(repo)) / str(e["revision"])
        if Path(str(repo)).is_dir():  # offline layout: one sub-directory per revision
            if not local.is_dir():
                raise BabelscopeError(
                    f"step {step}: no revision directory {local} in the local repo {repo}"
                )
            return Checkpoint(step, str(local), tokenizer=tokenizer)
        return Checkpoint(step, str(repo), revision=str(e["revision"]), tokenizer=tokenizer)
    raise BabelscopeError(
        f"step {step}: give a 'path', a 'revision' (with 'repo') or a 'gguf' file"
    )


# ---------------------------------------------------------------------------------------
# Checks (babelscope.checkpoints.checks)
# ---------------------------------------------------------------------------------------


def check_series(series: CheckpointSeries) -> None:
    """Weights present (local), one architecture, one tokenizer — else a one-line error."""
    from babelscope.checkpoints.checks import check_series as check

    check(series)


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


class CheckpointUnreadable(BabelscopeError):
    """The weights of a checkpoint cannot be read (torn, empty, garbage, refused)."""


@dataclass
class LoadedCheckpoint:
    """A loaded checkpoint: model (eval mode), tokenizer, family table line, fingerprint."""

    step: int
    model: Any
    tokenizer: Any
    family: Any  # babelscope.activations.families.FamilySpec
    fingerprint: str
    checkpoint: Checkpoint | None = None
    dtype: str = "fp32"

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in DTYPES:
        raise BabelscopeError(f"unknown dtype '{dtype}': choose fp32, bf16 or fp16")
    return getattr(torch, DTYPES[dtype])


def resolve_device(device: Any, model: Any = None) -> Any:
    """``None`` → the model's device (or CPU); ``"auto"`` → CUDA when available, else CPU."""
    import torch

    if device is None:
        if model is not None:
            try:
                return next(model.parameters()).device
            except StopIteration:
                pass
        return torch.device("cpu")
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise BabelscopeError(f"unknown device '{device}': use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BabelscopeError(
            "device 'cuda' asked for but no CUDA GPU is available: use cpu or auto"
        )
    return dev


def _load_tokenizer(c: Checkpoint) -> Any:
    from transformers import AutoTokenizer

    kw: dict[str, Any] = {}
    if c.tokenizer:
        src = c.tokenizer
    else:
        src = c.source
        if c.revision:
            kw["revision"] = c.revision
        if c.gguf_file:
            kw["gguf_file"] = c.gguf_file
    try:
        return AutoTokenizer.from_pretrained(src, **kw)
    except (OSError, ValueError, TypeError, IndexError, struct.error) as e:
        raise BabelscopeError(
            f"cannot load the tokenizer of {c.label} from {src}: {_first_line(e)}; "
            "give the series a 'tokenizer'"
        ) from None


def weights_fingerprint(model: Any) -> str:
    """Hash of every tensor of the state dict (name, dtype, shape, bytes): same weights and
    dtype, same fingerprint — wherever they were loaded from."""
    import torch

    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(model.state_dict().items()):
        t = t.detach()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        flat = t.contiguous().reshape(-1)
        if flat.numel():
            h.update(flat.view(torch.uint8).cpu().numpy().data)
    return h.hexdigest()


def _revision(c: Checkpoint) -> dict[str, Any]:
    return {"revision": c.revision} if c.revision else {}


def load_checkpoint(ckpt: Checkpoint, dtype: str = "fp32", device: str = "cpu") -> LoadedCheckpoint:
    """Load model (eval mode, on ``device``, in ``dtype``) and tokenizer; fingerprint the weights."""
    from transformers import AutoModelForCausalLM

    from babelscope.activations.families import family_of  # the table is the one place for this

    if ckpt.is_local and not ckpt.gguf_file and not _has_weights(Path(ckpt.source)):
        raise BabelscopeError(
            f"{ckpt.label} has no weights (no *.safetensors or pytorch_model*.bin)"
        )
    kw: dict[str, Any] = {"dtype": torch_dtype(dtype)}
    if ckpt.gguf_file:
        kw["gguf_file"] = ckpt.gguf_file
    dev = resolve_device(device)
    from babelscope.checkpoints.downloads import fetch, release

    local = fetch(ckpt)  # a hub revision with a per-run download dir: fetched there
    src = ckpt if local is None else dataclasses.replace(ckpt, source=str(local), revision=None)
    try:
        model = AutoModelForCausalLM.from_pretrained(src.source, **(kw | _revision(src)))
        tokenizer = _load_tokenizer(src)
    except BabelscopeError:
        raise
    except Exception as e:  # noqa: BLE001 - safetensors, torch, GGUF and HF errors alike
        # A truncated, zero-byte or garbage weight file, a .bin refused by weights_only
        # loading: the file is at fault, not babelscope. (inspect flags it as broken.)
        raise CheckpointUnreadable(
            f"cannot load {ckpt.label}: {type(e).__name__}: {_first_line(e)[:200]}"
        ) from None
    finally:
        release(ckpt, local)  # the model is in memory: its files are not read again
    model.to(dev).eval()
    family = family_of(model)
    return LoadedCheckpoint(
        step=ckpt.step,
        model=model,
        tokenizer=tokenizer,
        family=family,
        fingerprint=weights_fingerprint(model),
        checkpoint=ckpt,
        dtype=dtype,
    )
