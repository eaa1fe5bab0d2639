"""Capacity comparison on the control language (issue 14; Dufter & Schütze 2020).

Trains the embedded model at several widths on the same data and token stream (same
seed, steps, batch and sequence length: the same tokens), then measures how the
original ↔ control alignment (overlap@K and transfer AP of concept experts, against a
label-permutation null) develops over the checkpoints of each
(:mod:`babelscope.analysis.control`). Dufter & Schütze found that smaller models align a
language with its fake copy more readily.

    .venv/bin/babelscope data build --out /tmp/cipher_data          # adds eng~x
    .venv/bin/python benchmarks/cipher_capacity.py --data /tmp/cipher_data \\
        --out /tmp/cipher_capacity --widths 64,128,256 --steps 384

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

import pandas as pd

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


def analyse(data: Path, out: Path, widths: list[int], languages: list[str], **kw) -> pd.DataFrame:
    """Original ↔ control alignment per checkpoint for every width, written per width to
    ``out/alignment_d<width>.parquet`` (so widths can be analysed by separate processes)."""
    from babelscope.analysis.control import control_alignment_series
    from babelscope.io import write_parquet_atomic

    for w in widths:
        series_dir = out / f"d{w}" / "model" / "checkpoints"
        df = control_alignment_series(series_dir, data, languages=languages, **kw)
        df.insert(0, "width", w)
        write_parquet_atomic(df, out / f"alignment_d{w}.parquet", metadata={"settings": kw})
        print(summary(df).to_string(index=False), flush=True)
    return collect(out)


def collect(out: Path) -> pd.DataFrame:
    """Every width's rows analysed so far."""
    files = sorted(out.glob("alignment_d*.parquet"))
    return (
        pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
        if files
        else pd.DataFrame()
    )


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency)."""
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in df.itertuples(index=False)]
    return "\n".join(lines)


def summary(df: pd.DataFrame, scope: str = "all") -> pd.DataFrame:
    """One row per width x step: each measure with its null (mean / p95) and p-value."""
    sub = df[df["scope"] == scope]
    rows = []
    for (w, step), g in sub.groupby(["width", "step"], sort=True):
        r: dict = {"width": w, "step": step}
        for _, m in g.iterrows():
            r[m["measure"]] = round(float(m["value"]), 4)
            if m["measure"] != "self_ap":
                r[f"{m['measure']} null mean/p95"] = f"{m['null_mean']:.4f}/{m['null_p95']:.4f}"
                r[f"{m['measure']} p"] = round(float(m["p_value"]), 3)
                r[f"{m['measure']} diff-concept"] = round(float(m["diffconcept"]), 4)
        rows.append(r)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--widths", default="64,128,256")
    p.add_argument("--steps", type=int, default=384)
    p.add_argument("--phase", choices=("train", "analyse", "summary", "all"), default="all")
    p.add_argument("--pair", default="eng,eng~x", help="original,control")
    p.add_argument("--permutations", type=int, default=50)
    p.add_argument("--analyse-steps", default="", help="comma-separated steps (default: all)")
    p.add_argument("--k-fraction", type=float, default=0.01, help="K as a share of the units")
    p.add_argument("--threads", type=int, default=1, help="torch threads for extraction")
    a = p.parse_args(argv)
    widths = [int(w) for w in a.widths.split(",")]
    a.out.mkdir(parents=True, exist_ok=True)
    res_path = a.out / "results.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else {}
    if a.phase in ("train", "all"):
        res.update({"widths": widths, "steps": a.steps, "data": str(a.data)})
        res["train_seconds"] = train(a.data, a.out, widths, a.steps)
        res_path.write_text(json.dumps(res, indent=1))
    if a.phase in ("analyse", "all"):
        import torch

        torch.set_num_threads(a.threads)
        steps = [int(x) for x in a.analyse_steps.split(",")] if a.analyse_steps else None
        df = analyse(a.data, a.out, widths, a.pair.split(","), permutations=a.permutations,
                     steps=steps, k_fraction=a.k_fraction)  # fmt: skip
    if a.phase in ("analyse", "summary", "all"):
        df = collect(a.out)
        for scope in ("all", *sorted(set(df["scope"]) - {"all"})):
            md = markdown(summary(df, scope))
            (a.out / f"summary_{scope}.md").write_text(md + "\n")
        print((a.out / "summary_all.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
