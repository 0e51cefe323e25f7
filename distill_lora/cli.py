"""Command line: parses each command's options, then hands over to a room (experiment/ to train and compare,
report/ to rebuild a report, use/ to predict, export, serve and evaluate)."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperCommand, TyperGroup

from distill_lora.config import DataConfig, ReportConfig, load_config
from distill_lora.errors import (
    EXIT_BAD_INPUT,
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    RunFolderBusy,
    Terminated,
    UserError,
)


class _FlagsAsFlags:
    """Help shows a flag (--json, --merge, --quick, --version, --help) without a value type: newer typer prints
    <bool> after every boolean option, which reads as if the flag took true/false (it takes nothing)."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class _Command(_FlagsAsFlags, TyperCommand):
    pass


class _Group(_FlagsAsFlags, TyperGroup):
    pass


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    cls=_Group,
    help="Distil a half-depth student from a fine-tuned BERT, fine-tune with LoRA, compare them.",
)


def command(name: Optional[str] = None):
    """app.command with help that shows flags as flags."""
    return app.command(name, cls=_Command)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("distill-lora")
    except PackageNotFoundError:  # run from a checkout that was never installed
        from distill_lora import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"distill-lora {_version()}")
        raise typer.Exit(0)


@app.callback()
def _app(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="print the version and exit"
    ),
):
    pass


ConfigOpt = typer.Option(
    "default", "--config", "-c", help="config file, or a shipped config: default, demo, olid, davidson3"
)
SetOpt = typer.Option(None, "--set", "-s", help="dotted override, e.g. --set teacher.train.lr=3e-5 (repeatable)")
OutOpt = typer.Option(None, "--output-dir", "-o", help="run folder (overrides output_dir)")
SeedOpt = typer.Option(None, "--seed", help="training seed (overrides seed)")


RESUME_HINT = (
    "unfinished stages keep their last checkpoint: fix this (e.g. free disk space) and run the same command again"
)


def _user_errors(action, resume_hint: bool = False):
    """Run `action()` for a command: the one place where errors become one line and an exit code.

    UserError → exit 2 (a busy run folder: 3); a file that cannot be read or written (OSError) → one line naming
    it, exit 1; Ctrl+C → exit 130. No traceback for any of them (the codes: distill_lora/errors.py).
    """
    try:
        return action()
    except RunFolderBusy as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(EXIT_BUSY) from None
    except UserError as e:
        typer.secho(f"error: {e}", fg="red", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        hint = f"; {RESUME_HINT}" if resume_hint else ""
        typer.secho(f"error: could not read or write{where}: {e.strerror or e}{hint}", fg="red", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except (KeyboardInterrupt, Terminated) as e:
        note = (
            (
                ": finished stages are kept and reused; an unfinished stage resumes from its last checkpoint when "
                "you run the same command again"
            )
            if resume_hint
            else ""
        )
        typer.secho(f"interrupted{' by SIGTERM' if isinstance(e, Terminated) else ''}{note}", err=True)
        raise typer.Exit(EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED) from None


def _run(
    action,
    config: str,
    overrides: Optional[list[str]],
    output_dir: Optional[str],
    seed: Optional[int],
    layer_specs: tuple = (),
    check: Optional[Callable] = None,
    document: Optional[Callable] = None,
    quiet: bool = False,
    shared: bool = False,
):
    """Load the config, take the run folder's lock and run `action(pipeline, ctx)`.

    shared: the command shares the run folder with others of its kind (sweep workers, atlas shards) and takes no
    run lock; each stage it makes has its own lock (experiment/runs.py: exclusive).

    check(cfg), when given, runs right after the config is loaded: a command's own refusals come before the
    run folder is touched and before any data is read. The lock and the writability check come before the data
    is loaded too: a busy or unwritable run folder is refused at once, not after minutes of loading. Errors go
    through _user_errors. document(ctx, value), when given (--json), makes the one JSON document printed on
    stdout at the end; progress then goes to stderr. quiet: no progress at all.
    """

    def run():
        # SIGTERM (a scheduler's stop, kill) between training steps unwinds like Ctrl+C: locks released, one line
        # (during training the trainer's own handler checkpoints first, then restores this one)
        signal.signal(signal.SIGTERM, _terminate)
        with _progress_to(document is not None, quiet):
            ctx, value = locked_run()
        if document is not None:
            typer.echo(json.dumps(document(ctx, value), indent=1))
        return value

    def locked_run():
        cfg = load_config(config, overrides or [], output_dir, seed)
        if check is not None:
            check(cfg)
        from distill_lora.experiment.runs import RunLock

        if os.environ.get("RANK", "0") == "0" and not shared:  # refused before the heavy imports below
            RunLock(Path(cfg.output_dir).resolve()).refuse_if_held()
        from distill_lora.experiment.preflight import preflight

        preflight(cfg, layer_specs)  # trackers, the teacher's source, layer lists: in about a second, before torch
        _quiet_libraries()
        from distill_lora.experiment import pipeline  # heavy imports only after the config is known to be good
        from distill_lora.files import check_writable, made_folders, remove_empty_folders
        from distill_lora.train import distributed
        from distill_lora.train.trainer import Interrupted

        distributed.init()  # started by torchrun / accelerate launch: join the other processes
        out = Path(cfg.output_dir).resolve()
        new = made_folders(out)  # the folders check_writable creates; removed again if nothing gets written
        check_writable(out)
        try:
            # one writer per run folder: in a data-parallel run the main process holds the lock for all
            with RunLock(out) if distributed.is_main() and not shared else contextlib.nullcontext():
                ctx = pipeline.prepare(cfg, layer_specs)
                try:
                    return ctx, action(pipeline, ctx)
                except Interrupted as e:
                    typer.secho(f"interrupted: {e}", fg="yellow", err=True)
                    raise typer.Exit(EXIT_TERMINATED if "SIGTERM" in str(e) else EXIT_INTERRUPTED) from None
        finally:
            remove_empty_folders(new)  # bad input found while preparing: leave no empty run folder behind

    return _user_errors(run, resume_hint=True)


def _terminate(signum, frame):
    raise Terminated()


def _finish_command(ctx, metrics):
    from distill_lora.experiment import results

    return results.finish_command(ctx, metrics)


def _finish_compare(ctx, result):
    from distill_lora.experiment import results

    return results.finish_compare(ctx, result)


@contextlib.contextmanager
def _progress_to(json_out: bool, quiet: bool):
    """Progress lines (print, the rich table) go to stderr under --json, nowhere under --quiet."""
    if not (json_out or quiet):
        yield
        return
    with open(os.devnull, "w") if quiet else contextlib.nullcontext(sys.stderr) as sink:
        with contextlib.redirect_stdout(sink):
            yield


def _stages_document(command_name: str):
    """document(ctx, records) for a command that made stages: each record is a stage's metrics."""

    def document(ctx, records):
        from distill_lora.experiment.outcome import stages_document

        records = records if isinstance(records, list) else [records]
        return stages_document(command_name, ctx.output_dir, [{"seed": ctx.cfg.seed, **r} for r in records])

    return document


def _compare_document(ctx, value):
    from distill_lora.experiment.outcome import compare_document

    return compare_document(ctx.output_dir)


JsonOpt = typer.Option(False, "--json", help="print one JSON document on stdout at the end; progress goes to stderr")
QuietOpt = typer.Option(False, "--quiet", "-q", help="print no progress (errors still go to stderr)")


def _quiet_libraries() -> None:
    """Our own lines say what happens; the libraries' load reports and bars only add noise."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)


@command("train-teacher")
def train_teacher(
    config: str = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    output_dir: Optional[str] = OutOpt,
    seed: Optional[int] = SeedOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Fine-tune the teacher (the full-depth pretrained model) on the task."""
    _run(
        lambda p, ctx: _finish_command(ctx, p.run_teacher(ctx)),
        config,
        set_,
        output_dir,
        seed,
        document=_stages_document("train-teacher") if json_out else None,
        quiet=quiet,
    )


@command()
def distill(
    layers: str = typer.Option(
        ...,
        "--layers",
        "-l",
        help="odd, even, first[:k], last[:k], distilbert[:k], spaced[:k], angular[:k] (chosen from the teacher on "
        "validation), or 1-based layers like 1,4,7; add .RECIPE for one of distill.recipes (odd.ce)",
    ),
    config: str = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    output_dir: Optional[str] = OutOpt,
    seed: Optional[int] = SeedOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Distil a student made of the fine-tuned teacher's odd, even or listed layers (trains the teacher first if
    needed)."""
    _run(
        lambda p, ctx: _finish_command(ctx, p.run_student(ctx, layers)),
        config,
        set_,
        output_dir,
        seed,
        layer_specs=(layers,),
        document=_stages_document("distill") if json_out else None,
        quiet=quiet,
    )


@command()
def lora(
    stage: Optional[str] = typer.Option(
        None, "--stage", "-m", help="lora-student, lora-teacher, or all: the config's lora.models (default all)"
    ),
    config: str = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    output_dir: Optional[str] = OutOpt,
    seed: Optional[int] = SeedOpt,
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """LoRA fine-tuning of the pretrained teacher's student-sized cut and/or the full teacher."""

    def lora_stage() -> str:
        from distill_lora.stage_ids import LORA_STAGES

        if stage is not None and stage not in ("all", *LORA_STAGES):
            raise UserError(f"--stage {stage!r}: use lora-student, lora-teacher or all")
        return stage or "all"

    chosen = _user_errors(lora_stage)

    def action(p, ctx):
        return [
            _finish_command(ctx, p.run_lora(ctx, m)) for m in (ctx.cfg.lora.models if chosen == "all" else [chosen])
        ]

    _run(
        action,
        config,
        set_,
        output_dir,
        seed,
        document=_stages_document("lora") if json_out else None,
        quiet=quiet,
    )


@command()
def compare(
    config: str = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    output_dir: Optional[str] = OutOpt,
    seed: Optional[int] = SeedOpt,
    seeds: Optional[str] = typer.Option(None, "--seeds", help="training seeds, e.g. 0,1,2 (overrides seeds)"),
    layers: Optional[list[str]] = typer.Option(
        None,
        "--layers",
        "-l",
        help="one student (repeatable), as distill --layers: odd, even, first[:k], last[:k], distilbert[:k], "
        "spaced[:k], angular[:k], or 1-based layers like 1,4,7, each with an optional .RECIPE (overrides "
        "distill.layers)",
    ),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Run every stage for every seed (finished ones are reused), then write and print the comparison."""
    overrides = _user_errors(lambda: _compare_overrides(set_, seeds, layers))
    _run(
        lambda p, ctx: _finish_compare(ctx, p.run_compare(ctx)),
        config,
        overrides,
        output_dir,
        seed,
        document=_compare_document if json_out else None,
        quiet=quiet,
    )


@command()
def atlas(
    config: str = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    output_dir: Optional[str] = OutOpt,
    seed: Optional[int] = SeedOpt,
    seeds: Optional[str] = typer.Option(None, "--seeds", help="training seeds, e.g. 0,1 (overrides seeds)"),
    shard: Optional[str] = typer.Option(
        None,
        "--shard",
        help="I/N: train only this process's share of the arms × seeds (I from 0 to N-1), no report; N processes "
        "share the run folder (one per GPU, a Slurm array); then the same command without --shard gathers",
    ),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """compare over a grid of students: every layer choice of atlas.layers × every recipe of atlas.recipes, beside
    the teacher and LoRA, every seed; the report adds the front of quality vs latency, chosen on validation."""
    if shard is not None:  # before the config: a bad value is one line, at once

        def parse():
            from distill_lora.experiment.atlas import parse_shard

            if json_out:
                raise UserError("--json: a shard writes no report (gather first: the same command without --shard)")
            return parse_shard(shard)

        index, count = _user_errors(parse)

    def overrides():
        base = _compare_overrides(set_, seeds, None)
        cfg = load_config(config, base, output_dir, seed)
        from distill_lora.experiment.atlas import atlas_overrides
        from distill_lora.train.models import load_model_config

        depth = int(getattr(load_model_config(cfg.teacher.model), "num_hidden_layers", 0))
        return base + atlas_overrides(cfg, depth)

    def action(p, ctx):
        from distill_lora.experiment.atlas import run_atlas, run_shard

        return run_shard(ctx, index, count) if shard is not None else _finish_compare(ctx, run_atlas(ctx))

    _run(
        action,
        config,
        _user_errors(overrides),
        output_dir,
        seed,
        document=_compare_document if json_out else None,
        quiet=quiet,
        shared=shard is not None,  # shards share the run folder; the gatherer holds it alone
    )


_LAYER_LIST = re.compile(r"^\s*\d+\s*(,\s*\d+\s*)*,?\s*$")  # 1,4,7: one student of these layers


def _student_spec(text: str):
    """One value of --layers → one entry of distill.layers: a list of layer numbers, or the strategy's name."""
    return [int(p) for p in text.split(",") if p.strip()] if _LAYER_LIST.match(text) else text.strip()


def _compare_overrides(set_: Optional[list[str]], seeds: Optional[str], layers: Optional[list[str]]) -> list[str]:
    """compare's --set list plus what --seeds and --layers override."""
    overrides = list(set_ or [])
    if seeds is not None:
        parts = [p.strip() for p in seeds.split(",")]
        if not all(p.isdigit() for p in parts):
            raise UserError(f"--seeds '{seeds}': give whole numbers separated by commas, e.g. --seeds 0,1,2")
        overrides.append(f"seeds=[{','.join(parts)}]")
    specs = [_student_spec(v) for v in layers] if layers else None
    if specs is not None:
        overrides.append(f"distill.layers={json.dumps(specs)}")  # JSON is YAML: [1, 3] stays one student
    return overrides


@command()
def sweep(
    config: str = ConfigOpt,
    set_: Optional[list[str]] = SetOpt,
    output_dir: Optional[str] = OutOpt,
    seed: Optional[int] = SeedOpt,
    trials: Optional[int] = typer.Option(None, "--trials", "-n", help="trial budget (overrides sweep.trials)"),
    storage: Optional[str] = typer.Option(
        None,
        "--storage",
        help="the study's database, shared by every worker started with it: an Optuna RDB URL such as "
        "postgresql://user@host/db (overrides sweep.storage; the password: in the URL or PGPASSWORD, never saved)",
    ),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Hyperparameter search for one stage (sweep: in the config), on validation macro-F1; test once, for the best.
    Several sweep processes with the same config and run folder (and --storage, across machines) share one study."""
    overrides = list(set_ or [])
    if trials is not None:
        overrides.append(f"sweep.trials={trials}")
    if storage is not None:
        overrides.append(f"sweep.storage={json.dumps(storage)}")

    def check(cfg):  # before any data is read: a sweep without a search space has nothing to do
        from distill_lora.config import flat_space

        if not flat_space(cfg.sweep.space):
            from distill_lora.experiment.sweep import NO_SPACE

            raise UserError(NO_SPACE)
        if cfg.sweep.storage:  # a database that cannot be used is refused now, in seconds, not after the data loads
            from distill_lora.experiment.study_storage import open_storage

            open_storage(cfg.sweep.storage, cfg.sweep).engine.dispose()

    def action(p, ctx):
        from distill_lora.experiment.sweep import run_sweep

        return run_sweep(ctx)

    def document(ctx, best):
        from distill_lora.experiment.outcome import FORMAT

        keep = ("study", "stage", "trial", "values", "val_macro_f1", "stage_dir", "test", "selected_epoch", "note")
        return {"format": FORMAT, "command": "sweep", **{k: best[k] for k in keep}}

    _run(
        action,
        config,
        overrides,
        output_dir,
        seed,
        check=check,
        document=document if json_out else None,
        quiet=quiet,
        shared=True,
    )


@command()
def report(
    run_dir: str = typer.Argument(..., help="run folder holding results.json (written by compare)"),
    resamples: Optional[int] = typer.Option(
        None, help="bootstrap resamples (default: the run's report.bootstrap_resamples)"
    ),
    alpha: Optional[float] = typer.Option(None, help="significance level (default: the run's report.alpha)"),
    bootstrap_seed: Optional[int] = typer.Option(
        None, help="seed of the bootstrap (default: the run's report.bootstrap_seed)"
    ),
):
    """Rebuild report.md, results.csv and the plots from a run's results.json, without the models."""

    def action():
        _check_report_flags(resamples, alpha, bootstrap_seed)
        path = Path(run_dir) / "results.json"
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"cannot read {path} ({e.__class__.__name__}); run compare first") from None
        if not isinstance(results, dict) or "comparison" not in results:
            raise UserError(f"{path} has no comparison; run compare first")
        print(f"report: {_rebuild_report(Path(run_dir), results, resamples, alpha, bootstrap_seed)}")

    _user_errors(action)


REPORT_FLAGS = {"bootstrap_resamples": "--resamples", "alpha": "--alpha", "bootstrap_seed": "--bootstrap-seed"}


def _check_report_flags(resamples: int | None, alpha: float | None, bootstrap_seed: int | None) -> None:
    """The config's own limits of report.bootstrap_resamples, alpha and bootstrap_seed (config.report_problem),
    blamed on the flag."""
    import dataclasses

    from distill_lora.config import report_problem

    given = {"bootstrap_resamples": resamples, "alpha": alpha, "bootstrap_seed": bootstrap_seed}
    given = {k: v for k, v in given.items() if v is not None}
    problem = report_problem(dataclasses.replace(ReportConfig(), **given))
    if problem:
        key, fix = problem
        raise UserError(f"{REPORT_FLAGS[key]} {given[key]}: {fix}")


def _rebuild_report(run_dir: Path, results: dict, resamples=None, alpha=None, bootstrap_seed=None) -> Path:
    """write_report with the run's stored report settings, flags overriding."""
    from distill_lora.report.summary import report_settings
    from distill_lora.report.write import write_report

    values = report_settings(results, bootstrap_resamples=resamples, alpha=alpha, bootstrap_seed=bootstrap_seed)
    out, _ = write_report(run_dir, results, values["bootstrap_resamples"], values["bootstrap_seed"], values["alpha"])
    return out


@command()
def retime(
    run_dir: str = typer.Argument(..., help="run folder of a finished compare (with its stage folders)"),
    repeats: int = typer.Option(5, help="timing repeats per model (the report shows their median and range)"),
):
    """Time every model of a finished run together on this machine, store it in results.json, rebuild the report."""

    def action():
        if repeats < 1:
            raise UserError(f"--repeats {repeats}: use at least 1 (e.g. the default 5)")
        _quiet_libraries()
        from distill_lora.experiment.results import retime

        print(f"report: {retime(Path(run_dir), repeats)}")

    _user_errors(action)


@command()
def validate(config: str = ConfigOpt, overrides: Optional[list[str]] = SetOpt):
    """Check a config without loading models or data: every problem at once, each with its key, line and fix."""

    def action():
        from distill_lora.experiment.validate import validate_config

        problems = validate_config(config, overrides or [])
        for p in problems:
            typer.secho(f"error: {p.line()}", fg="red", err=True)
        if problems:
            typer.secho(f"{len(problems)} problem(s) in {config}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        typer.echo(f"{config}: ok (the data and models it names are where it says)")

    _user_errors(action)


@command("config")
def show_config(
    config: str = ConfigOpt,
    overrides: Optional[list[str]] = SetOpt,
    explain: Optional[str] = typer.Option(None, "--explain", help="print one key's meaning and default, e.g. lora.r"),
):
    """Print the resolved config (YAML, defaults filled in), or with --explain KEY what one key means."""

    def action():
        import yaml

        from distill_lora.config import describe

        if explain is not None:
            rows = {key: (default, text) for key, default, text in describe()}
            if explain not in rows:
                near = difflib.get_close_matches(explain, list(rows), n=3, cutoff=0.5)
                raise UserError(
                    f"--explain {explain!r}: no such key"
                    + (f"; did you mean {', '.join(near)}?" if near else "; see docs/config.md")
                )
            default, text = rows[explain]
            typer.echo(f"{explain}: {text}\ndefault: {default}")
            return
        typer.echo(yaml.safe_dump(load_config(config, overrides or []).to_dict(), sort_keys=False), nl=False)

    _user_errors(action)


@command()
def bench(
    quick: bool = typer.Option(
        False, "--quick", help="small model (4 layers, hidden 256) and few steps: about a minute on CPU"
    ),
    batch_sizes: Optional[str] = typer.Option(
        None, "--batch-sizes", help="e.g. 32,128 (default 32,128; --quick on CPU 32,64)"
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="timed steps per measurement (default 30; --quick 5)"),
    output: str = typer.Option("bench.json", "--output", help="JSON file for every number"),
    texts: Optional[str] = typer.Option(
        None, "--texts", help='JSON Lines file with a "text" field whose lengths to use (default: OLID train)'
    ),
    tokenizer: Optional[str] = typer.Option(
        None, "--tokenizer", help="tokenizer folder for --texts (default: MiniLM's bert-base uncased vocabulary)"
    ),
):
    """Time training steps (teacher, distillation, LoRA): our trainer vs the course-notebook loop vs the HF Trainer."""

    def action():
        sizes = None
        if batch_sizes is not None:
            parts = [p.strip() for p in batch_sizes.split(",") if p.strip()]
            if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
                raise UserError(
                    f"--batch-sizes {batch_sizes!r}: use positive integers separated by commas, e.g. 32,128"
                )
            sizes = [int(p) for p in parts]
        if steps is not None and steps < 1:
            raise UserError(f"--steps {steps}: use at least 1")
        out = Path(output)
        if not out.parent.resolve().is_dir() or not os.access(out.parent.resolve(), os.W_OK) or out.is_dir():
            raise UserError(f"--output {output}: cannot write there; pick a file in an existing writable folder")
        _quiet_libraries()
        from distill_lora.files import atomic_write_json
        from distill_lora.train.bench import print_report, run_bench

        report_ = run_bench(quick=quick, batch_sizes=sizes, steps=steps, texts=texts, tokenizer=tokenizer)
        print_report(report_)
        atomic_write_json(out, report_)
        typer.echo(f"wrote {out}")

    _user_errors(action)


@command()
def evaluate(
    run_dir: str = typer.Argument(..., help="run folder of a finished compare"),
    data: str = typer.Option(..., "--data", help="another labelled data set: local folder or Hub id"),
    name: Optional[str] = typer.Option(None, "--name", help="section name (default: the folder's name)"),
    text_column: str = typer.Option(
        DataConfig().text_column, "--text-column", help="column holding the text (as data.text_column)"
    ),
    label_column: str = typer.Option(
        DataConfig().label_column, "--label-column", help="column holding the label (as data.label_column)"
    ),
    label_map: Optional[str] = typer.Option(None, "--label-map", help='JSON, e.g. \'{"hate": 1, "none": 0}\''),
    split: str = typer.Option("test", "--split", help="train, validation or test"),
    limit: Optional[int] = typer.Option(None, "--limit", help="at most this many examples (stratified)"),
    slice_column: Optional[str] = typer.Option(
        None, "--slice-column", help="column naming each text's slice: adds per-slice results (as data.slice_column)"
    ),
    json_out: bool = JsonOpt,
    quiet: bool = QuietOpt,
):
    """Evaluate every model of a run on another data set (out-of-domain) and add it to the report."""

    def action():
        _quiet_libraries()
        try:
            mapping = json.loads(label_map) if label_map else {}
        except ValueError:
            raise UserError(f'--label-map {label_map!r} is not JSON; e.g. \'{{"hate": 1, "none": 0}}\'') from None
        from distill_lora.use.evaluate import OtherData, evaluate_run

        other = OtherData(data, text_column, label_column, mapping, split, limit, slice_column)
        with _progress_to(json_out, quiet):
            results = evaluate_run(Path(run_dir), other, name or Path(data).name)
            print(f"report: {_rebuild_report(Path(run_dir), results)}")  # with the run's own report settings
        if json_out:
            from distill_lora.experiment.outcome import evaluate_document

            typer.echo(json.dumps(evaluate_document(Path(run_dir), name or Path(data).name), indent=1))

    _user_errors(action)


# ---------------------------------------------------------------- using the trained models

RunDirArg = typer.Argument(..., help="run folder (with seed-S/ inside), or a stage or export folder itself")
StageOpt = typer.Option(
    None,
    "--stage",
    "-m",
    help="stage to load: teacher, student-odd, student-even, lora-student, lora-teacher… (default teacher)",
)
TrainedSeedOpt = typer.Option(
    None,
    "--trained-seed",
    help="the training seed of the model to use (its seed-S/ folder); default: the smallest seed that has the stage",
)
BackendOpt = typer.Option(
    None,
    "--backend",
    help="torch, onnx or onnx-int8 (ONNX Runtime, CPU; needs a folder from `export --onnx`); "
    "default: onnx for such a folder, else torch",
)


def _model_dir(run_dir: str, stage: Optional[str], trained_seed: Optional[int]) -> Path:
    """The folder that predict, export and serve load (--stage, --trained-seed)."""
    from distill_lora.use.predict import find_model_dir

    return find_model_dir(run_dir, stage, trained_seed)


@command()
def predict(
    run_dir: str = RunDirArg,
    texts: Optional[list[str]] = typer.Argument(None, help="texts to classify"),
    stage: Optional[str] = StageOpt,
    trained_seed: Optional[int] = TrainedSeedOpt,
    file: Optional[str] = typer.Option(
        None, "--file", "-f", help="texts from a file: .txt (one per line), .jsonl or .csv (the text column)"
    ),
    json_out: bool = typer.Option(
        False,
        "--json",
        help="a JSON list of {text, label, label_id, probabilities: {class: p}} (+ prob_positive with two classes)",
    ),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="texts per forward pass (default: the stage's eval_batch_size)"
    ),
    backend: Optional[str] = BackendOpt,
):
    """Classify texts with a trained stage: one line per text (label, p(positive) or, with more than two classes,
    p(label), text), or --json with every class's probability."""

    def action():
        _quiet_libraries()
        from distill_lora.use.predict import format_lines, load_predictor, read_texts_file, text_problem, to_json

        if json_out and texts and texts[0].lower() in ("true", "false"):  # `--json true` meant as a value
            raise UserError(
                f"--json takes no value, so '{texts[0]}' would be classified as a text; drop it, or quote a longer "
                "text if you meant it"
            )
        for i, text in enumerate(texts or [], 1):  # the rule the web API applies; before the model loads
            problem = text_problem(text)
            if problem:
                raise UserError(f"text argument {i} {problem}")
        model_dir = _model_dir(run_dir, stage, trained_seed)
        predictor = load_predictor(model_dir, batch_size=batch_size, backend=backend)
        all_texts = list(texts or []) + (read_texts_file(file, predictor.text_column) if file else [])
        if not all_texts:
            raise UserError("nothing to classify: give texts as arguments or --file FILE")
        typer.echo(f"backend: {predictor.backend}", err=True)  # stdout stays the answers only
        predictions = predictor.predict(all_texts)
        typer.echo(to_json(predictions) if json_out else format_lines(predictions, predictor.label_names))

    _user_errors(action)


@command()
def export(
    run_dir: str = RunDirArg,
    out_dir: str = typer.Argument(..., help="new folder to write (must not exist or be empty)"),
    stage: Optional[str] = StageOpt,
    trained_seed: Optional[int] = TrainedSeedOpt,
    merge: bool = typer.Option(
        False, "--merge", help="LoRA: merge the adapter into its base (loads without PEFT); checked on validation"
    ),
    onnx: bool = typer.Option(
        False,
        "--onnx",
        help="also write model.onnx and an int8 model.int8.onnx for ONNX Runtime (LoRA merged first); "
        "checked on validation",
    ),
):
    """Write a stage as a self-contained Hugging Face folder with a model card (README.md)."""

    def action():
        _quiet_libraries()
        from distill_lora.use.export import export_model

        model_dir = _model_dir(run_dir, stage, trained_seed)
        export_info = export_model(
            model_dir, out_dir, merge=merge, log=lambda line: typer.echo(line, err=True), onnx=onnx
        )
        typer.echo(f"exported {export_info['stage']} (seed {export_info['seed']}, {export_info['format']}) → {out_dir}")

    _user_errors(action)


@command()
def serve(
    run_dir: str = RunDirArg,
    stage: Optional[str] = StageOpt,
    trained_seed: Optional[int] = TrainedSeedOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind; 0.0.0.0 exposes it to the network"),
    port: int = typer.Option(8000, "--port", help="port to listen on"),
    backend: Optional[str] = BackendOpt,
):
    """Serve a web page and a JSON API (POST /api/predict) around one trained stage."""

    def action():
        try:
            import fastapi  # noqa: F401
            import uvicorn
        except ImportError:
            raise UserError("serve needs FastAPI and uvicorn: pip install 'distill-lora[serve]'") from None
        _quiet_libraries()
        from distill_lora.use.serve import bind, create_app

        model_dir = _model_dir(run_dir, stage, trained_seed)
        sock = bind(host, port)  # a busy port fails here, in one line, before "serving" is printed
        with sock:
            app_ = create_app(model_dir, backend=backend)
            if host not in ("127.0.0.1", "localhost", "::1"):
                typer.secho(
                    f"warning: listening on {host}: anyone who can reach this machine can use the model", err=True
                )
            backend_name = app_.state.predictor.backend
            typer.echo(f"serving {app_.state.model_dir} ({backend_name}) on http://{host}:{port}/  (Ctrl+C stops)")
            uvicorn.Server(uvicorn.Config(app_, log_level="info")).run(sockets=[sock])

    _user_errors(action)


def main():
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    main()
