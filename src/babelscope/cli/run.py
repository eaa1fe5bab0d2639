"""`babelscope run` (the whole study) and `babelscope report` (re-render the HTML)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        config: Path = typer.Argument(
            None, help="Study configuration (TOML). Default: the embedded study."
        ),
        stages: str = typer.Option(None, help="Comma-separated stages to run, e.g. probe,report."),
        force: bool = typer.Option(
            False, "--force", help="Redo the stages even if cached; take over a run dir."
        ),
        name: str = typer.Option(None, help="Run name (directory runs/<name>)."),
        out: Path = typer.Option(None, help="Run directory (overrides runs/<name>)."),
        wait: bool = typer.Option(
            False, "--wait", help="If another run holds the run directory, wait for it to end."
        ),
        engine: str = typer.Option(
            None, help="serial (default) or ray: checkpoints as Ray tasks (docs/cluster.md)."
        ),
        address: str = typer.Option(
            None, help="Ray cluster to join with --engine ray, e.g. auto (default: start one)."
        ),
    ) -> None:
        """Run the study end to end: data, pre-training, inspection, probes, experts,
        alignment, steering, report. Each stage is cached and resumes after an interruption."""
        from babelscope.config import load_config
        from babelscope.pipeline import print_summary, run_study

        overrides: dict = {}
        if name:
            overrides["name"] = name
        if out:
            overrides["out"] = str(out)
        if engine or address:
            overrides["run"] = {k: v for k, v in (("engine", engine), ("address", address)) if v}
        cfg = load_config(config, overrides=overrides)
        chosen = [s.strip() for s in stages.split(",") if s.strip()] if stages else None
        run = run_study(cfg, stages=chosen, force=force, wait=wait)
        print_summary(run)

    @app.command("report")
    def report_cmd(
        run_dir: Path = typer.Argument(Path("runs/demo"), help="A run directory."),
    ) -> None:
        """(Re-)render the self-contained HTML report of a run directory."""
        from babelscope.errors import BabelscopeError
        from babelscope.report.html import render_report
        from babelscope.rundir import MARKER

        if not run_dir.is_dir():
            raise BabelscopeError(f"no run directory at {run_dir}: run `babelscope run` first")
        if not (run_dir / MARKER).is_file() and not (run_dir / ".stages").is_dir():
            raise BabelscopeError(
                f"{run_dir} is not a babelscope run directory: give the --out of a `babelscope run`"
            )
        import pyarrow as pa

        try:
            path = render_report(run_dir)
        except (ValueError, OSError, pa.ArrowException) as e:  # a torn or foreign result file
            first = (str(e).splitlines() or [type(e).__name__])[0][:160]
            raise BabelscopeError(
                f"cannot render the report of {run_dir}: a result file is damaged ({first}); "
                "run `babelscope run` again to recompute it"
            ) from None
        typer.echo(str(path))
