"""The summary ``babelscope run`` prints at the end: the report's path and the headline
numbers of every analysis, each beside its reference, in words no stronger than the tests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from babelscope.progress import console

if TYPE_CHECKING:
    from babelscope.pipeline import Run


def headline(run_dir: Path) -> dict[str, Any]:
    """The few numbers that tell the story, read back from the result files."""
    import pandas as pd

    res = run_dir / "results"
    out: dict[str, Any] = {}
    p = res / "probe.parquet"
    if p.exists():
        df = pd.read_parquet(p)
        acc = df.groupby(["step", "layer"])["accuracy"].mean().unstack("layer")
        first, last = acc.index.min(), acc.index.max()
        layers = list(acc.columns)
        mid = layers[len(layers) // 3 : max(len(layers) // 3 + 1, 2 * len(layers) // 3)]
        from babelscope.report.claims import probe_claims

        out["probe_claims"] = probe_claims(df) if "ci_lo" in df else []
        out["probe"] = {
            "first_step": int(first),
            "last_step": int(last),
            "chance": float(df["chance"].iloc[0]) if "chance" in df else None,
            "middle_layers": [int(x) for x in mid],
            "middle_acc_first": float(acc.loc[first, mid].mean()),
            "middle_acc_last": float(acc.loc[last, mid].mean()),
            "last_layer_acc_last": float(acc.loc[last, layers[-1]]),
        }
    p = res / "similarity.parquet"
    if p.exists():
        out["similarity"] = similarity_headline(pd.read_parquet(p))
    p = res / "alignment.parquet"
    if p.exists():
        df = pd.read_parquet(p)
        whole = df[df["layer"].astype(str) == "all"]
        if not whole.empty:
            first, last = whole["step"].min(), whole["step"].max()

            def at(g: Any, step: Any, col: str) -> float | None:
                v = g.loc[g["step"] == step, col] if col in g else []
                return float(v.mean()) if len(v) else None

            out["alignment"] = {
                m: {"first": at(g, first, "value"), "last": at(g, last, "value"),
                    "null_mean": at(g, last, "null_mean"), "p_value": at(g, last, "p_value"),
                    "diffconcept": at(g, last, "diffconcept")}
                for m, g in whole.groupby("measure")
            }  # fmt: skip
            out["alignment_steps"] = [int(first), int(last)]
            if "p_value" in df:
                from babelscope.report.claims import alignment_claims

                out["alignment_claims"] = alignment_claims(df)
    p = res / "steering.parquet"
    if p.exists():
        from babelscope.analysis.steering import dose_response

        dr = dose_response(pd.read_parquet(p))
        if len(dr):
            # First and last steered checkpoint, largest K and no forcing: the report has all.
            first, last, kmax = int(dr["step"].min()), int(dr["step"].max()), int(dr["k"].max())
            keep = dr[dr["step"].isin([first, last]) & dr["k"].isin([0, kmax])]
            out["steering"] = {
                f"step {r.step} / {r.condition} K={r.k}": {
                    o: [round(float(getattr(r, o)), 3), round(float(getattr(r, f"{o}_lo")), 3),
                        round(float(getattr(r, f"{o}_hi")), 3)]
                    for o in ("source", "eng", "hit")
                }
                for r in keep.itertuples()
            }  # fmt: skip
    return out


def similarity_headline(df: Any) -> dict[str, Any]:
    """Retrieval (raw, centred), CKA and the lens's own-language share at the first and last
    checkpoint, each at the block (layer >= 1; the embeddings carry shared tokens) where the
    last checkpoint's value is highest."""
    if df.empty:
        return {}
    first, last = int(df["step"].min()), int(df["step"].max())
    measures: dict[str, Any] = {}
    for m in ("retrieval", "retrieval_centred", "cka", "lens_own"):
        g = df[df["measure"] == m]
        if g.empty:
            continue
        at_last = g[g["step"] == last].set_index("layer")
        if (at_last.index > 0).any():
            at_last = at_last[at_last.index > 0]
        layer = int(at_last["value"].idxmax())
        row = g[(g["layer"] == layer) & (g["step"] == first)]
        measures[m] = {
            "layer": layer,
            "first": float(row["value"].iloc[0]) if len(row) else float("nan"),
            "last": float(at_last.loc[layer, "value"]),
            "chance": float(at_last.loc[layer, "null_mean" if m == "cka" else "chance"]),
        }
    return {"first_step": first, "last_step": last, "measures": measures}


def print_summary(run: Run) -> None:
    """A short summary at the end of a run: the report, headline numbers, flags."""
    from rich.table import Table

    h = headline(run.dir)
    console.rule("[bold]summary")
    console.print(f"report: [bold]{(run.dir / 'report.html').resolve()}[/bold]")
    flagged = run.notes.get("inspect", {}).get("flagged") or {}
    if flagged:
        console.print(
            f"[yellow]flagged checkpoints:[/yellow] {', '.join(f'{s} ({f})' for s, f in flagged.items())}"
        )
    if "probe" in h:
        p = h["probe"]
        console.print(
            f"LID probe, middle layers {p['middle_layers']}: accuracy {p['middle_acc_first']:.3f} at step "
            f"{p['first_step']} -> {p['middle_acc_last']:.3f} at step {p['last_step']} "
            f"(last layer {p['last_layer_acc_last']:.3f}; chance {p['chance']:.3f})"
        )
        for c in h.get("probe_claims", []):
            console.print(f"  {c}")
    if h.get("similarity"):
        s = h["similarity"]
        console.print(
            f"representations, step {s['first_step']} -> {s['last_step']} (best block): "
            + "; ".join(f"{m} {v['first']:.3f} -> {v['last']:.3f} (ref {v['chance']:.3f})"
                        for m, v in s["measures"].items())
        )  # fmt: skip
    if "alignment" in h:
        t = Table(
            title=f"alignment, whole model, step {h['alignment_steps'][0]} -> {h['alignment_steps'][1]}"
        )
        for c in (
            "measure",
            "first",
            "last",
            "null mean (last)",
            "p (last)",
            "other concept (last)",
        ):
            t.add_column(c, no_wrap=c == "measure")

        def fmt(v: float | None) -> str:
            return "" if v is None or v != v else f"{v:.4g}"

        for m, v in h["alignment"].items():
            t.add_row(m, fmt(v["first"]), fmt(v["last"]), fmt(v["null_mean"]), fmt(v["p_value"]),
                      fmt(v["diffconcept"]))  # fmt: skip
        console.print(t)
        for c in h.get("alignment_claims", []):
            console.print(f"  {c}")
        from babelscope.report import pool_checks as pc

        for c in pc.matching_claims(run.dir) + pc.lexical_claims(run.dir)[:2]:
            console.print(f"  {c}")  # what matching changed, and what is lexical
        for c in pc.shortcut_claims(run.dir)[-1:]:
            console.print(f"  {c}")  # the concepts left out (matched pools)
    if "steering" in h:
        # Shares with 95 % Wilson intervals: source language, English, concept named.
        for k, v in h["steering"].items():
            console.print(
                f"steering {k}: "
                + ", ".join(f"{o} {s:.0%} [{lo:.0%}, {hi:.0%}]" for o, (s, lo, hi) in v.items())
            )
    if "_seconds" in run.notes:
        console.print(f"total time {run.notes['_seconds']:.0f} s")
