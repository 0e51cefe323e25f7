"""Command line: parsing only. Every command loads the config, then hands over to pipeline."""
from __future__ import annotations

import os
from typing import List, Optional

import typer

from .config import UserError, load_config

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Distil a half-depth student from a fine-tuned BERT, fine-tune with LoRA, compare them.")

ConfigOpt = typer.Option("default", "--config", "-c", help="config file, or a shipped config: default, demo, olid")
SetOpt = typer.Option(None, "--set", "-s", help="dotted override, e.g. --set teacher.train.lr=3e-5 (repeatable)")
OutOpt = typer.Option(None, "--output-dir", "-o", help="run folder (overrides output_dir)")
SeedOpt = typer.Option(None, "--seed", help="seed (overrides seed)")


def _run(action, config: str, overrides: Optional[List[str]], output_dir: Optional[str], seed: Optional[int],
         layer_specs: tuple = (), lora_model: str = "all"):
    """Load the config and run `action(ctx)`; user errors become one line and exit code 2."""
    try:
        cfg = load_config(config, overrides or [], output_dir, seed)
        _quiet_libraries()
        from . import pipeline  # heavy imports only after the config is known to be good
        if lora_model not in ("all", "lora-student", "lora-teacher"):
            raise UserError(f"--model {lora_model!r}: use lora-student, lora-teacher or all")
        ctx = pipeline.prepare(cfg, layer_specs)
        return action(pipeline, ctx)
    except UserError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.secho("interrupted: unfinished stages were discarded; finished ones are kept and will be reused",
                    err=True)
        raise typer.Exit(130) from None


def _quiet_libraries() -> None:
    """Our own lines say what happens; the libraries' load reports and bars only add noise."""
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import warnings
    warnings.filterwarnings("ignore", category=FutureWarning)


@app.command("train-teacher")
def train_teacher(config: str = ConfigOpt, set_: Optional[List[str]] = SetOpt, output_dir: Optional[str] = OutOpt,
                  seed: Optional[int] = SeedOpt):
    """Fine-tune the teacher (the full-depth pretrained model) on the task."""
    _run(lambda p, ctx: p.finish_command(ctx, p.run_teacher(ctx)), config, set_, output_dir, seed)


@app.command()
def distill(layers: str = typer.Option(..., "--layers", "-l", help="odd, even, or 1-based layers like 1,4,7"),
            config: str = ConfigOpt, set_: Optional[List[str]] = SetOpt, output_dir: Optional[str] = OutOpt,
            seed: Optional[int] = SeedOpt):
    """Distil a student made of the fine-tuned teacher's odd, even or listed layers (trains the teacher first if needed)."""
    _run(lambda p, ctx: p.finish_command(ctx, p.run_student(ctx, layers)), config, set_, output_dir, seed,
         layer_specs=(layers,))


@app.command()
def lora(model: str = typer.Option("all", "--model", "-m", help="lora-student, lora-teacher, or all (lora.models)"),
         config: str = ConfigOpt, set_: Optional[List[str]] = SetOpt, output_dir: Optional[str] = OutOpt,
         seed: Optional[int] = SeedOpt):
    """LoRA fine-tuning of the pretrained teacher's student-sized cut and/or the full teacher."""
    def action(p, ctx):
        for m in ctx.cfg.lora.models if model == "all" else [model]:
            p.finish_command(ctx, p.run_lora(ctx, m))
    _run(action, config, set_, output_dir, seed, lora_model=model)


@app.command()
def compare(config: str = ConfigOpt, set_: Optional[List[str]] = SetOpt, output_dir: Optional[str] = OutOpt,
            seed: Optional[int] = SeedOpt,
            seeds: Optional[str] = typer.Option(None, "--seeds", help="training seeds, e.g. 0,1,2 (overrides seeds)")):
    """Run every stage for every seed (finished ones are reused), then write and print the comparison."""
    overrides = list(set_ or [])
    if seeds is not None:
        overrides.append(f"seeds=[{seeds}]")
    _run(lambda p, ctx: p.finish_compare(ctx, p.run_compare(ctx)), config, overrides, output_dir, seed)


def main():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    main()
