"""`babelscope similarity`: translation retrieval, CKA and the logit lens over a checkpoint series."""

from __future__ import annotations

from pathlib import Path

import typer

from babelscope.errors import BabelscopeError


def register(app: typer.Typer) -> None:
    @app.command("similarity")
    def similarity_cmd(
        series: str = typer.Option(
            ...,
            help="Checkpoint series: a dir of step-N checkpoints, a hub repo spec, or a .gguf file.",
        ),
        data: Path = typer.Option(..., help="Data directory made by `babelscope data build`."),
        out: Path = typer.Option(
            ..., help="Run directory: writes results/similarity*.parquet and figures/."
        ),
        include_flagged: bool = typer.Option(
            False, "--include-flagged", help="Also analyse checkpoints OUT/checkpoints.json flags."
        ),
        items: int = typer.Option(
            None, help="Parallel items (sentences per language) [default: 48]."
        ),
        layers: str = typer.Option(
            None, help="Comma-separated residual layers, 0 = embeddings [default: all]."
        ),
        languages: str = typer.Option(
            None, help="Comma-separated ISO 639-3 codes [default: all in the corpus]."
        ),
        pivot: str = typer.Option(None, help="Pivot language of the logit lens [default: eng]."),
        no_lens: bool = typer.Option(False, "--no-lens", help="Skip the logit lens."),
        permutations: int = typer.Option(
            None, help="Draws of every permutation null [default: 50]."
        ),
        device: str = typer.Option("cpu", help="cpu, cuda or auto."),
        dtype: str = typer.Option("fp32", help="fp32, bf16 or fp16."),
    ) -> None:
        """Do the representations of translations converge over training?

        Per checkpoint and residual layer, on the parallel items of the corpus: retrieval of
        each sentence's translation (precision@1, raw and after removing each language's mean),
        linear CKA between languages, the translation margin, and the logit lens (next-token
        mass on the input's language, the pivot, others), each beside its chance, a permutation
        null and a bootstrap interval. Writes results/similarity*.parquet and the figures.
        """
        from pydantic import ValidationError

        from babelscope.analysis.representations.stage import SimilaritySettings, run_similarity
        from babelscope.checkpoints.inspect import apply_inspection
        from babelscope.checkpoints.series import resolve_series
        from babelscope.cli.probe import _int_list
        from babelscope.languages import check_languages
        from babelscope.report.figures.representations import plot_representations

        fields: dict = {"lens": not no_lens}
        if items is not None:
            fields["items"] = items
        if permutations is not None:
            fields["n_permutations"] = permutations
        if pivot is not None:
            fields["pivot"] = check_languages([pivot])[0]
        if (parsed := _int_list(layers, "layers")) is not None:
            fields["layers"] = parsed
        if languages:
            fields["languages"] = check_languages([x for x in languages.split(",") if x.strip()])
        try:
            settings = SimilaritySettings(**fields)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise BabelscopeError(f"--{where.replace('_', '-')}: {err['msg']}") from None

        chosen = apply_inspection(resolve_series(series), out, include_flagged)
        from babelscope.rundir import locked_out

        with locked_out(out):
            df, _ = run_similarity(chosen, data, out, settings, device=device, dtype=dtype)
        figures = plot_representations(out)

        from rich.console import Console

        console = Console()  # the summary goes to stdout; progress and warnings to stderr
        console.print(summary_table(df))
        console.print(f"results: {out / 'results' / 'similarity.parquet'}")
        if figures:
            console.print(f"figures: {', '.join(str(p) for p in figures if p.suffix == '.png')}")


def summary_table(df):
    """A rich table: every measure per layer at the first and the last checkpoint, with chance."""
    from rich.table import Table

    first, last = int(df["step"].min()), int(df["step"].max())
    table = Table(
        title=f"representations, step {first} -> {last} (value [95% CI]; chance; null p95)"
    )
    for col in ("measure", "layer", f"step {first}", f"step {last}", "chance", "null p95 (last)"):
        table.add_column(col, justify="left" if col == "measure" else "right")
    for (measure, layer), g in df.groupby(["measure", "layer"], sort=True):
        a, b = g[g["step"] == first].iloc[0], g[g["step"] == last].iloc[0]
        table.add_row(
            measure, str(layer),
            f"{a['value']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}]",
            f"{b['value']:.3f} [{b['ci_low']:.3f}, {b['ci_high']:.3f}]",
            f"{b['chance']:.3f}", f"{b['null_p95']:.3f}",
        )  # fmt: skip
    return table
