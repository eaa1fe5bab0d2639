"""`babelscope pretrain`: train the embedded model series (a small XGLM) on a corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``pretrain`` command to the main app."""

    @app.command("pretrain")
    def pretrain_cmd(
        config: Annotated[
            Path | None,
            typer.Option(
                "--config", help="Pre-training TOML (default: the embedded pretrain/default.toml)."
            ),
        ] = None,
        data: Annotated[
            Path, typer.Option("--data", help="Data directory holding corpus.parquet.")
        ] = Path("data/embedded"),
        out: Annotated[
            Path, typer.Option("--out", help="Run directory; checkpoints go to OUT/checkpoints.")
        ] = Path("runs/demo/model"),
        resume: Annotated[
            bool,
            typer.Option(
                "--resume", help="Continue an interrupted run from its latest checkpoint."
            ),
        ] = False,
        force: Annotated[
            bool, typer.Option("--force", help="Replace the run that OUT holds.")
        ] = False,
        samples: Annotated[
            int,
            typer.Option(
                "--samples",
                min=0,
                help="Afterwards print N texts sampled from BOS by the last checkpoint.",
            ),
        ] = 0,
        prompt: Annotated[
            list[str] | None,
            typer.Option(
                "--prompt", help="With --samples: continue this text instead (repeatable)."
            ),
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the --samples draws.")] = 0,
    ) -> None:
        """Pre-train a small XGLM from scratch, saving checkpoints at step 0, powers of two,
        every save_every steps and the last step (Hugging Face format)."""
        from babelscope.pretrain import load_pretrain_config, pretrain
        from babelscope.progress import console

        cfg = load_pretrain_config(config)
        from babelscope.rundir import locked_out

        with locked_out(out):
            paths = pretrain(cfg, data, out, resume=resume, force=force)
        console.print(f"{len(paths)} checkpoints in {out / 'checkpoints'} (last: {paths[-1].name})")
        if samples or prompt:
            from babelscope.pretrain.samples import generate_samples

            texts = generate_samples(paths[-1], n=samples or 1, prompts=prompt, seed=seed)
            for i, text in enumerate(texts):
                print(f"[{seed + i}] {text}")
