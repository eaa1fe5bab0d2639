"""Capacity comparison on the control language (issue 14; Dufter & Schütze 2020).

Trains the embedded model at several widths on the same data and token stream (same
seed, steps, batch and sequence length: the same tokens), then measures how the
original ↔ control alignment (overlap@K and transfer AP of concept experts, against a
label-permutation null) develops over the checkpoints of each
(:mod:`babelscope.analysis.control`). Dufter & Schütze found that smaller models align a
language with its fake copy more readily.

    .venv/bin/babelscope data build --out /tmp/cipher_data          # adds eng~x
    .venv/bin/python benchmarks/cipher_capacity.py --data /tmp/cipher_data \\
        --out /tmp/cipher_capacity --widths 64,128,256 --steps 768

``--phase train`` or ``--phase analyse`` runs one half (training is the long part);
``results.json`` and ``results.md`` in ``--out`` hold the numbers. The numbers quoted in
docs/control-language.md come from this script (schedule stated there).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from babelscope.pretrain import DEFAULT_CONFIG, parse_pretrain_config, pretrain

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def width_config(width: int, steps: int, seed: int = 0):
    """The embedded pre-training config at another width (FFN 4x, 4 heads), ``steps`` long."""
    raw = tomllib.loads(Path(DEFAULT_CONFIG).read_text(encoding="utf-8"))
    raw["seed"] = seed
    raw["model"]["d_model"] = width
    raw["model"]["ffn_dim"] = 4 * width
    raw["train"]["steps"] = steps
    raw["train"]["warmup_steps"] = min(raw["train"]["warmup_steps"], max(1, steps // 10))
    raw["checkpoints"]["save_every"] = max(1, steps // 3)
    raw["checkpoints"]["eval_every"] = max(1, steps // 2)
    return parse_pretrain_config(raw, where=f"width {width}")


def train(data: Path, out: Path, widths: list[int], steps: int) -> dict[int, float]:
    """Pre-train one series per width under ``out/d<width>/model``; wall seconds each."""
    took: dict[int, float] = {}
    for w in widths:
        t0 = time.perf_counter()
        pretrain(width_config(w, steps), data, out / f"d{w}" / "model", resume=True)
        took[w] = round(time.perf_counter() - t0, 1)
        print(f"width {w}: trained in {took[w]} s", flush=True)
    return took


def analyse(data: Path, out: Path, widths: list[int], languages: list[str], **kw) -> list[dict]:
    """Original ↔ control alignment per checkpoint for every width (see module docstring)."""
    from babelscope.analysis.control import control_alignment_series

    rows: list[dict] = []
    for w in widths:
        series_dir = out / f"d{w}" / "model" / "checkpoints"
        df = control_alignment_series(series_dir, data, languages=languages, **kw)
        df.insert(0, "width", w)
        rows += df.to_dict(orient="records")
        print(df.to_string(index=False), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--widths", default="64,128,256")
    p.add_argument("--steps", type=int, default=768)
    p.add_argument("--phase", choices=("train", "analyse", "all"), default="all")
    p.add_argument("--pair", default="eng,eng~x", help="original,control")
    p.add_argument("--permutations", type=int, default=50)
    a = p.parse_args(argv)
    widths = [int(w) for w in a.widths.split(",")]
    a.out.mkdir(parents=True, exist_ok=True)
    res_path = a.out / "results.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    res.update({"widths": widths, "steps": a.steps, "data": str(a.data)})
    if a.phase in ("train", "all"):
        res["train_seconds"] = train(a.data, a.out, widths, a.steps)
        res_path.write_text(json.dumps(res, indent=1))
    if a.phase in ("analyse", "all"):
        rows = analyse(a.data, a.out, widths, a.pair.split(","), permutations=a.permutations)
        res["alignment"] = rows
        res_path.write_text(json.dumps(res, indent=1, default=float))
        import pandas as pd

        (a.out / "results.md").write_text(pd.DataFrame(rows).to_markdown(index=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
