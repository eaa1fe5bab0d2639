"""docs/results.md, generated from a run directory (nothing typed by hand).

``python -m babelscope.report.results_md runs/demo > docs/results.md`` (or ``make results``)
reads every result file of the run and prints the tables with fixed precision, so a
fresh clone that reruns ``make demo`` reproduces them to the printed digits, or shows
where it does not. Sections for analyses a run did not make are left out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from babelscope.io import read_parquet_metadata


def md_table(df: pd.DataFrame, floatfmt: str = "{:.3f}") -> str:
    """A Markdown pipe table with fixed float precision."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "" if v != v else floatfmt.format(v)
        return str(v)

    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def _timing(run: Path) -> str:
    rows = []
    from babelscope.config import STAGES

    for stage in STAGES:
        p = run / ".stages" / f"{stage}.json"
        if p.exists():
            rows.append(
                {
                    "stage": stage,
                    "seconds": float(json.loads(p.read_text()).get("seconds", float("nan"))),
                }
            )
    if not rows:
        return ""
    df = pd.DataFrame(rows)
    return (f"Stage times of the run that produced these numbers (seconds; total "
            f"{df['seconds'].sum():.0f} s of stages):\n\n" + md_table(df, "{:.1f}"))  # fmt: skip


def _data(run: Path) -> str:
    p = run / "data" / "manifest.json"
    if not p.exists():
        return ""
    m = json.loads(p.read_text())
    rows = [{"lang": lang, "sentences": c.get("sentences"), "held out": c.get("heldout"),
             **{f"{src}": n for src, n in (c.get("by_source") or {}).items()}}
            for lang, c in (m.get("counts") or {}).items()]  # fmt: skip
    df = pd.DataFrame(rows).fillna(0)
    body = [md_table(df, "{:.0f}")]
    c = run / "data" / "concepts.parquet"
    if c.exists():
        lab = pd.read_parquet(c)
        pos = lab[lab["label"].astype(bool)].groupby(["concept", "lang"]).size().unstack("lang")
        body.append(
            f"{lab['concept'].nunique()} concepts labelled; positives per (concept, language): "
            f"median {float(pos.stack().median()):.0f}, minimum {float(pos.stack().min()):.0f}."
        )
    return "\n\n".join(body)


def _pretrain(run: Path) -> str:
    p = run / "model" / "train_log.parquet"
    if not p.exists():
        return ""
    log = pd.read_parquet(p)
    cols = [c for c in log.columns if c.startswith("heldout_loss_")]
    ev = log.dropna(subset=cols[:1]) if cols else log.iloc[0:0]
    if ev.empty:
        return ""
    first, last = ev.iloc[0], ev.iloc[-1]
    df = pd.DataFrame([
        {"step": int(r["step"]), **{c.removeprefix("heldout_loss_"): float(r[c]) for c in cols}}
        for r in (first, last)
    ])  # fmt: skip
    return (f"Held-out loss (nats per token) at the first and last evaluation; "
            f"{int(log['step'].max())} steps, {int(log['tokens_seen'].max()):,} tokens:\n\n"
            + md_table(df, "{:.2f}"))  # fmt: skip


def _probe(run: Path) -> str:
    p = run / "results" / "probe.parquet"
    if not p.exists():
        return ""
    from babelscope.report.claims import probe_claims, probe_table

    df = pd.read_parquet(p)
    t = probe_table(df)
    acc = t.pivot(index="step", columns="layer", values="accuracy").reset_index()
    acc.columns = ["step"] + [f"layer {c}" for c in acc.columns[1:]]
    first_last = t[t["step"].isin([t["step"].min(), t["step"].max()])]
    return "\n\n".join([
        "Accuracy per checkpoint and layer (mean over seeds; layer 0 = embedding output):",
        md_table(acc),
        "First and last checkpoint with the 95 % interval over test sentences, the type-level "
        "control task, selectivity = accuracy − control, and the lexical baseline:",
        md_table(first_last),
        "\n".join(f"- {c}" for c in probe_claims(df)),
    ])  # fmt: skip


def _alignment(run: Path) -> str:
    p = run / "results" / "alignment.parquet"
    if not p.exists():
        return ""
    from babelscope.report.claims import alignment_claims, alignment_table

    df = pd.read_parquet(p)
    if "p_value" not in df:
        return ""
    meta = read_parquet_metadata(p)
    scopes = ", ".join(f"{s[0]}: K = {s[3]} of {s[2] - s[1]}" for s in meta.get("scopes", []))
    return "\n\n".join([
        f"K per scope ({scopes}); m = {meta.get('min_languages')} languages; "
        f"{int(df['n_null'].max())} label permutations per checkpoint.",
        md_table(alignment_table(df), "{:.4f}"),
        "\n".join(f"- {c}" for c in alignment_claims(df)),
    ])  # fmt: skip


def _pool_checks(run: Path) -> str:
    """Matching, shortcuts, lexical overlap, label precision (report/pool_checks.py)."""
    from babelscope.report import pool_checks as pc

    claims = pc.matching_claims(run) + pc.shortcut_claims(run) + pc.lexical_claims(run)
    parts = ["\n".join(f"- {c}" for c in claims)] if claims else []
    for title, t, fmt in (
        ("Before and after matching, last checkpoint (`results/alignment_unmatched.parquet`, "
         "`results/alignment.parquet`)", pc.matching_table(run), "{:.4f}"),
        ("Shortcuts per concept (`results/shortcuts.parquet`; medians over languages)",
         pc.shortcut_table(run), "{:.3f}"),
        ("Whole model, last checkpoint, without and with the flagged concepts "
         "(`results/alignment_with_flagged.parquet`)", pc.flagged_table(run), "{:.4f}"),
        ("Token-sharing and token-disjoint items, last checkpoint (`results/lexical_overlap.parquet`)",
         pc.lexical_rows(run), "{:.4f}"),
        ("Label precision per language (`data/label_precision.parquet`)",
         pc.label_precision_table(run), "{:.3f}"),
    ):  # fmt: skip
        if len(t):
            parts += [f"### {title}", md_table(t, fmt)]
    return "\n\n".join(parts)


def _optional(run: Path) -> dict[str, str]:
    """Sections of the other analyses, through their own table functions."""
    out: dict[str, str] = {}
    checks = _pool_checks(run)
    if checks:
        out["What the concept data measures: matching, shortcuts, lexical overlap"] = checks
    p = run / "results" / "similarity.parquet"
    if p.exists():
        from babelscope.analysis.representations.stage import summary

        out["Representations (`results/similarity.parquet`)"] = md_table(
            summary(pd.read_parquet(p)), "{:.3f}"
        )
    try:
        from babelscope.report.figures.control import control_table

        t = control_table(run)
        if t:
            out["Control language: original ↔ cipher (`results/alignment_overlap.parquet`)"] = t
    except ImportError:  # pragma: no cover - older trees
        pass
    p = run / "results" / "steering.parquet"
    if p.exists():
        from babelscope.analysis.steering.summary import dose_table

        out["Steering dose-response (`results/steering.parquet`)"] = md_table(
            dose_table(pd.read_parquet(p))
        )
    return out


def render(run_dir: str | Path) -> str:
    """The whole results page for ``run_dir``."""
    run = Path(run_dir)
    parts = [
        "# Results on the embedded series",
        f"Generated by `make results` (`python -m babelscope.report.results_md {run}`) from the run directory "
        "(every number below is read from its Parquet files, which carry their provenance).",
        "**Reproducing them.** `make demo` installs the exact package versions of "
        "`constraints.txt` (torch 2.13.0 CPU) and every step is seeded. Downstream of the "
        "weights everything is deterministic: extraction, AP (exact, integer ranks), the "
        "permutations and bootstraps (seeded numpy generators), the probes (L-BFGS on fixed "
        "data). The one step that can differ between machines is pre-training: PyTorch's CPU "
        "kernels (oneDNN/MKL matrix products, bf16 autocast where the CPU has native bf16) "
        "sum in an order that depends on the instruction set and thread count, so a machine "
        "with another CPU can train slightly different weights, and every later number then "
        "moves within its interval. On this machine type three fresh-clone runs of an earlier "
        "version gave identical numbers; this version was run once.",
    ]
    for title, body in [("Timing", _timing(run)),
                        ("Corpus (`data/manifest.json`, `data/concepts.parquet`)", _data(run)),
                        ("Pre-training (`model/train_log.parquet`)", _pretrain(run)),
                        ("Experiment 1: language identification by layer "
                        "(`results/probe.parquet`)", _probe(run)),
                        ("Experiment 2: expert alignment (`results/alignment.parquet`)", _alignment(run)),
                        *_optional(run).items()]:  # fmt: skip
        if body:
            parts += [f"## {title}", body]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m babelscope.report.results_md RUN_DIR", file=sys.stderr)
        return 2
    if not Path(argv[0]).is_dir():
        print(f"error: no run directory {argv[0]}: run `make demo` first", file=sys.stderr)
        return 2
    sys.stdout.write(render(argv[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
