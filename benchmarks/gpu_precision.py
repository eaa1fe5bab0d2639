"""The GPU paths: bf16/fp16 extraction against fp32 on CUDA (issue 16).

The same measure as ``tests/test_dtypes.py`` and ``babelscope bench precision`` (which
run on the CPU): a random GPT-2-style model (GPT-2 small's block shape by default) and
synthetic sentences in three word lists (the concept = the list); the fp32 model's pooled
MLP activations are the reference, and against them the bf16 and fp16 models' (max |dAP|,
max relative dAP, top-K agreement) and float16/bfloat16 storage. Also extraction speed
per dtype on the device (tokens/s, best of 3, side by side).

    .venv/bin/python benchmarks/gpu_precision.py                  # CUDA
    .venv/bin/python benchmarks/gpu_precision.py --device cpu --quick   # a smoke run

Prints JSON; ``--merge`` adds the figures to benchmarks/results.json as
``gpu_precision.*`` (docs/benchmarks.md and docs/plan.md quote them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def _speed(model, tok, texts, device: str, dtype: str) -> float:
    import copy

    import torch

    from babelscope.activations.extract import extract_pooled
    from babelscope.checkpoints.series import torch_dtype

    m = copy.deepcopy(model).to(device=device, dtype=torch_dtype(dtype)).eval()
    extract_pooled(m, tok, texts[:32], device=device)  # warm-up (kernels, allocator)
    best = float("inf")
    for _ in range(3):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        p = extract_pooled(m, tok, texts, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return p.n_tokens / best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="2 blocks of 128, 40 sentences per list")
    ap.add_argument("--merge", type=Path, default=None, help="results.json to add the figures to")
    args = ap.parse_args(argv)
    import torch

    from babelscope.bench.precision import measure, random_gpt2, word_list_texts

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: run on a GPU machine, or pass --device cpu", file=sys.stderr)
        return 2
    layers, width, n = (2, 128, 40) if args.quick else (12, 768, 400)
    texts, labels = word_list_texts(n)
    model, tok = random_gpt2(texts, layers, width)
    figures = measure(model, tok, texts, labels, device=args.device, k=20 if args.quick else 100)
    for dtype in ("fp32", "bf16", "fp16"):
        figures[f"{dtype}_tokens_per_s"] = _speed(model, tok, texts, args.device, dtype)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    out = {"device": device_name, "layers": layers, "width": width, "sentences": len(texts),
           "figures": figures}  # fmt: skip
    print(json.dumps(out, indent=2))
    if args.merge is not None:
        from babelscope.io import write_json_atomic

        saved = json.loads(args.merge.read_text()) if args.merge.exists() else {}
        saved.setdefault("figures", {}).update(
            {f"gpu_precision.{k}": v for k, v in figures.items()}
        )
        saved.setdefault("notes", {})["gpu_precision"] = (
            f"benchmarks/gpu_precision.py on {device_name}"
        )
        write_json_atomic(args.merge, saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
