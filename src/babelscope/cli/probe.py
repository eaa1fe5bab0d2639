"""`babelscope probe`: layer-wise language-identification probes over a checkpoint series."""

from __future__ import annotations

from pathlib import Path

import typer

from babelscope.errors import BabelscopeError


def _int_list(value: str | None, what: str) -> list[int] | None:
    """Parse '0,3,5' (spaces allowed); a one-line error names the bad item."""
    if value is None or not value.strip():
        return None
    out = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            out.append(int(item))
        except ValueError:
            raise BabelscopeError(
                f"--{what}: '{item}' is not an integer; give e.g. --{what} 0,3,5"
            ) from None
    return out


def register(app: typer.Typer) -> None:
    @app.command("probe")
    def probe_cmd(
        series: str = typer.Option(
            ...,
            help="Checkpoint series: a dir of step-N checkpoints, a hub repo spec, or a .gguf file.",
        ),
        data: Path = typer.Option(..., help="Data directory made by `babelscope data build`."),
        out: Path = typer.Option(
            ..., help="Run directory: writes results/probe.parquet and figures/."
        ),
        include_flagged: bool = typer.Option(
            False, "--include-flagged", help="Also analyse checkpoints OUT/checkpoints.json flags."
        ),
        tokens_per_language: int = typer.Option(
            None, help="Token vectors per language, train + test [default: 1000]; 0 = all sampled."
        ),
        sentences_per_language: int = typer.Option(
            None, help="Sentences drawn per language [default: 100]."
        ),
        level: str = typer.Option(
            "token", help="Probe 'token' vectors or mean-pooled 'sentence' vectors."
        ),
        folds: int = typer.Option(
            None, help="k-fold cross-validation grouped by sentence (default: one split)."
        ),
        layers: str = typer.Option(
            None, help="Comma-separated residual layers, 0 = embeddings [default: all]."
        ),
        seeds: str = typer.Option(None, help="Comma-separated seeds [default: 0,1,2]."),
        languages: str = typer.Option(
            None, help="Comma-separated ISO 639-3 codes [default: all in the corpus]."
        ),
        n_jobs: int = typer.Option(None, help="Parallel per-layer probes [default: all cores]."),
        device: str = typer.Option("cpu", help="cpu, cuda or auto."),
        dtype: str = typer.Option("fp32", help="fp32, bf16 or fp16."),
    ) -> None:
        """Does each layer still tell languages apart, and how does that change over training?

        For every checkpoint and residual layer: a logistic-regression probe on token vectors
        (split by sentence, balanced across languages, seeds 0,1,2), a control probe on labels
        shuffled across sentences, and chance. Writes results/probe.parquet and the figures.
        """
        from pydantic import ValidationError

        from babelscope.analysis.probe import ProbeSettings, run_probe, summarize
        from babelscope.checkpoints.series import resolve_series
        from babelscope.languages import check_languages
        from babelscope.report.figures.probe import plot_probe

        if level not in ("token", "sentence"):
            raise BabelscopeError(f"--level must be token or sentence, not '{level}'")
        fields: dict = {"level": level}
        if tokens_per_language is not None:
            fields["tokens_per_language"] = tokens_per_language or None
        if sentences_per_language is not None:
            fields["sentences_per_language"] = sentences_per_language
        if folds is not None:
            fields["folds"] = folds
        if n_jobs is not None:
            fields["n_jobs"] = n_jobs
        if (parsed := _int_list(layers, "layers")) is not None:
            fields["layers"] = parsed
        if (parsed := _int_list(seeds, "seeds")) is not None:
            fields["seeds"] = parsed
        if languages:
            fields["languages"] = check_languages([x for x in languages.split(",") if x.strip()])
        try:
            settings = ProbeSettings(**fields)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise BabelscopeError(f"--{where.replace('_', '-')}: {err['msg']}") from None

        from babelscope.checkpoints.inspect import apply_inspection

        chosen = apply_inspection(resolve_series(series), out, include_flagged)
        from babelscope.rundir import locked_out

        with locked_out(out):
            df = run_probe(chosen, data, out, settings, device=device, dtype=dtype)
        figures = plot_probe(df, out / "figures")

        from rich.console import Console
        from rich.table import Table

        console = Console()  # the summary goes to stdout; progress and warnings to stderr

        s = summarize(df)
        wide = s.pivot(index="layer", columns="step", values="accuracy")
        table = Table(
            title=f"LID probe accuracy (mean over seeds; chance {s['chance'].iloc[0]:.3f})"
        )
        table.add_column("layer")
        for step in wide.columns:
            table.add_column(f"step {step}", justify="right")
        for layer, row in wide.iterrows():
            table.add_row(str(layer), *(f"{v:.3f}" for v in row))
        console.print(table)
        console.print(f"control accuracy: mean {s['control_accuracy'].mean():.3f} (range "
                      f"{s['control_accuracy'].min():.3f}–{s['control_accuracy'].max():.3f})")  # fmt: skip
        console.print(f"results: {out / 'results' / 'probe.parquet'}")
        if figures:
            console.print(f"figures: {', '.join(str(p) for p in figures if p.suffix == '.png')}")
