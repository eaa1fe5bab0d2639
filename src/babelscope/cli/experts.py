"""`babelscope experts` (AP of every unit per checkpoint x concept x language) and
`babelscope align` (cross-lingual alignment of the experts, with figures)."""

from __future__ import annotations

from pathlib import Path

import typer


def _split(values: list[str] | None) -> list[str] | None:
    """Accept repeated options and comma-separated lists alike."""
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def register(app: typer.Typer) -> None:
    @app.command("experts")
    def experts_cmd(
        series: str = typer.Option(
            ..., "--series", help="Checkpoint series: a dir of step-N checkpoints or a spec file."
        ),
        data: Path = typer.Option(..., "--data", help="Data dir made by `babelscope data build`."),
        out: Path = typer.Option(..., "--out", help="Run directory; results go to OUT/results."),
        include_flagged: bool = typer.Option(
            False, "--include-flagged", help="Also analyse checkpoints OUT/checkpoints.json flags."
        ),
        kind: str = typer.Option("mlp", help="Unit kind: mlp, mlp_pre, residual, linear_all."),
        pooling: str = typer.Option("mean", help="Pooling over tokens: mean, max, last."),
        top_k: int = typer.Option(
            500, "--top-k", help="Experts kept per (step, concept, language) in experts.parquet."
        ),
        languages: list[str] = typer.Option(
            None, "--lang", help="Languages (repeat or comma-separate; default all)."
        ),
        concepts: list[str] = typer.Option(
            None, "--concept", help="Concepts (repeat or comma-separate; default all)."
        ),
        min_positives: int = typer.Option(
            3, help="Skip a (concept, language) with fewer positives."
        ),
        batch_size: int = typer.Option(32, help="Sentences per forward pass."),
        store_dtype: str = typer.Option(
            "float32", help="dtype of the full per-unit arrays: float32 or float16."
        ),
        pools: str = typer.Option(
            "matched", help="Score each concept on its matched pool, or on the unmatched pool."
        ),
        compare_unmatched: bool = typer.Option(
            True, help="At the last checkpoint also score the unmatched pools (before/after)."
        ),
        cache: Path = typer.Option(None, help="Activation cache dir (default: none)."),
        device: str = typer.Option("cpu", help="cpu, cuda or auto."),
        dtype: str = typer.Option("fp32", help="Model dtype: fp32, bf16, fp16."),
    ) -> None:
        """AP, on_p50, on_p90 and off_mean of every unit for every checkpoint x concept x language."""
        from pydantic import ValidationError

        from babelscope.analysis.experts import ExpertSettings, run_experts
        from babelscope.checkpoints.series import resolve_series
        from babelscope.errors import BabelscopeError
        from babelscope.progress import info

        try:
            settings = ExpertSettings(
                kind=kind, pooling=pooling, top_k_store=top_k, languages=_split(languages),
                concepts=_split(concepts), min_positives=min_positives, batch_size=batch_size,
                store_dtype=store_dtype, pools=pools, compare_unmatched=compare_unmatched,
            )  # fmt: skip
        except ValidationError as e:
            err = e.errors()[0]
            raise BabelscopeError(f"bad option {err['loc'][0]}: {err['msg']}") from None
        from babelscope.checkpoints.inspect import apply_inspection

        chosen = apply_inspection(resolve_series(series), out, include_flagged)
        from babelscope.rundir import locked_out

        with locked_out(out):
            df = run_experts(
                chosen, data, out, settings, cache_dir=cache, device=device, dtype=dtype
            )
        info(
            f"experts: {df[['step', 'concept', 'lang']].drop_duplicates().shape[0]} (step, concept, language) "
            f"triples scored; wrote {out / 'results' / 'experts.parquet'}"
        )

    @app.command("align")
    def align_cmd(
        out: Path = typer.Option(
            ..., "--out", help="Run directory with `babelscope experts` results."
        ),
        k_fraction: float = typer.Option(
            0.01, help="K per layer as a share of its units (at least 1)."
        ),
        k: int = typer.Option(None, "--k", help="K per layer, absolute (overrides --k-fraction)."),
        k_model: int = typer.Option(
            None, "--k-model", help="K over the whole model (default: k-fraction of all units)."
        ),
        min_languages: int = typer.Option(
            None, help="m for cross-lingual experts (default: half the languages)."
        ),
        trajectories: int = typer.Option(
            10, help="Strongest cross-lingual units to follow over checkpoints."
        ),
        languages: list[str] = typer.Option(
            None, "--lang", help="Languages to compare (default all scored)."
        ),
        figures: bool = typer.Option(True, help="Draw the figures into OUT/figures."),
        keep_shortcut_concepts: bool = typer.Option(
            False, help="Keep concepts that a trivial shortcut scores as well as their experts."
        ),
    ) -> None:
        """Overlap@K, Jaccard, transfer AP and cross-lingual experts per checkpoint x layer, with chance."""
        from pydantic import ValidationError

        from babelscope.analysis.alignment import AlignSettings, run_alignment
        from babelscope.errors import BabelscopeError
        from babelscope.progress import info

        try:
            settings = AlignSettings(
                k_fraction=k_fraction, k=k, k_model=k_model, min_languages=min_languages,
                n_trajectory_units=trajectories, languages=_split(languages),
                keep_shortcut_concepts=keep_shortcut_concepts,
            )  # fmt: skip
        except ValidationError as e:
            err = e.errors()[0]
            raise BabelscopeError(f"bad option {err['loc'][0]}: {err['msg']}") from None
        from babelscope.rundir import locked_out

        with locked_out(out):
            df = run_alignment(out, settings)
        whole = df[(df["layer"] == "all") & (df["measure"].isin(["overlap", "crosslingual"]))]
        for r in whole.itertuples():
            info(
                f"step {r.step:>8}  {r.measure:<13} {r.value:8.4f}   "
                f"(null {r.null_mean:.4f}, p = {r.p_value:.3g})"
            )
        if figures:
            from babelscope.report.figures.alignment import plot_alignment
            from babelscope.report.figures.shortcuts import plot_shortcuts

            paths = plot_alignment(out) + plot_shortcuts(out)
            info(
                f"align: wrote {out / 'results' / 'alignment.parquet'} and {len(paths)} figure files"
            )
