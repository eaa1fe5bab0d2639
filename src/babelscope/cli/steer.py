"""`babelscope steer`: force a concept's experts while the model writes; judge the outputs."""

from __future__ import annotations

from pathlib import Path

import typer


def _split(values: list[str] | None) -> list[str] | None:
    """``--x a --x b`` and ``--x a,b`` alike."""
    if not values:
        return None
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def register(app: typer.Typer) -> None:
    @app.command("steer")
    def steer_cmd(
        series: str = typer.Option(
            ..., help="Checkpoint series: a dir of step-N checkpoints, a hub repo, a .gguf…"
        ),
        include_flagged: bool = typer.Option(
            False, "--include-flagged", help="Also analyse checkpoints OUT/checkpoints.json flags."
        ),
        data: Path = typer.Option(
            None, help="Data dir (`babelscope data build`): forcing values are measured on it."
        ),
        out: Path = typer.Option(
            ..., help="Run dir holding results/experts.parquet; results go there."
        ),
        concept: list[str] = typer.Option(
            None,
            help="Concept(s) to steer (repeat or comma-separate); default: the first 4 with experts.",
        ),
        source_lang: str = typer.Option(
            "spa", help="Language the experts were found in (ISO 639-3)."
        ),
        k: list[str] = typer.Option(
            None, help="The K grid (repeat or comma-separate), e.g. 10,30,100; default 10..1000."
        ),
        statistic: str = typer.Option("pooled", help="Forced value: pooled, token or max."),
        mode: str = typer.Option("set", help="set: overwrite with on; add: shift by on - off."),
        other_lang: str = typer.Option(
            "swa", help="Source language of the other-language baseline."
        ),
        random_draws: int = typer.Option(5, help="Draws of the layer-matched random baseline."),
        value_sentences: int = typer.Option(
            200, help="Background sentences per language for off values and spreads."
        ),
        seeds: int = typer.Option(100, help="Seeds 0..S-1: one output each per condition."),
        steps: list[str] = typer.Option(None, help="Checkpoints (steps) to steer."),
        checkpoints: int = typer.Option(
            3, help="Without --steps: this many checkpoints, first to last; 0 for all."
        ),
        max_new_tokens: int = typer.Option(64, help="Tokens generated per output."),
        temperature: float = typer.Option(0.8, help="Sampling temperature (0: greedy)."),
        top_p: float = typer.Option(0.9, help="Nucleus sampling mass."),
        prompt: str = typer.Option(None, help="Prompt text; default BOS alone."),
        conditions: list[str] = typer.Option(
            None, help="experts, none, random, other_concept, other_lang (default: all)."
        ),
        batch_size: int = typer.Option(None, help="Seeds per batch (default: all at once)."),
        min_confidence: float = typer.Option(0.5, help="Language-ID confidence below which 'und'."),
        device: str = typer.Option("auto", help="cpu, cuda or auto."),
        dtype: str = typer.Option("fp32", help="fp32, bf16 or fp16."),
        figures: bool = typer.Option(True, help="Draw the figures into OUT/figures."),
    ) -> None:
        """Steer generation with concept experts as a dose-response over K, beside fair
        baselines; the outputs' languages, concept hits and fluency (Experiment 3)."""
        from pydantic import ValidationError

        from babelscope.analysis.steering import (
            SteerSettings,
            dose_table,
            paired_tests,
            run_steering,
        )
        from babelscope.errors import BabelscopeError
        from babelscope.progress import console

        try:
            step_list = [int(x) for x in _split(steps) or []] or None
            k_grid = [int(x) for x in _split(k) or []] or None
        except ValueError:
            raise BabelscopeError(
                "--steps/--k: give whole numbers, e.g. --steps 0,1024 --k 10,100"
            ) from None
        raw = dict(
            concepts=_split(concept), source_lang=source_lang, other_lang=other_lang,
            statistic=statistic, mode=mode, random_draws=random_draws,
            value_sentences=value_sentences, seeds=seeds, steps=step_list,
            max_new_tokens=max_new_tokens, checkpoints=checkpoints or None,
            temperature=temperature, top_p=top_p, prompt=prompt, batch_size=batch_size,
            min_confidence=min_confidence,
        )  # fmt: skip
        if k_grid is not None:
            raw["k"] = k_grid
        if conditions:
            raw["conditions"] = _split(conditions)
        try:
            settings = SteerSettings(**raw)
        except ValidationError as e:
            err = e.errors()[0]
            name = "--" + "-".join(str(x) for x in err["loc"][:1]).replace("_", "-")
            msg = err["msg"].removeprefix("Value error, ")
            raise BabelscopeError(f"{name} {err.get('input')!r}: {msg}") from None
        if dtype not in ("fp32", "bf16", "fp16"):
            raise BabelscopeError(f"--dtype {dtype}: choose fp32, bf16 or fp16")
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        from babelscope.checkpoints.inspect import apply_inspection
        from babelscope.checkpoints.series import resolve_series

        chosen = apply_inspection(resolve_series(series), out, include_flagged)
        from babelscope.rundir import locked_out

        with locked_out(out):
            df = run_steering(chosen, data, out, settings, device=device, dtype=dtype)
        console.print(f"wrote {out / 'results' / 'steering.parquet'} ({len(df)} outputs)")
        if figures and len(df):
            from babelscope.report.figures.steering import plot_steering

            paths = plot_steering(df, out / "figures")
            console.print(f"figures: {', '.join(str(p) for p in paths if p.suffix == '.png')}")
        console.print(dose_table(df).to_string(index=False))
        tests = paired_tests(df)
        if len(tests):  # experts against each baseline at the largest K, exact McNemar
            top = tests[tests["k"] == tests["k"].max()]
            console.print(top.drop(columns=["test"]).to_string(index=False))
