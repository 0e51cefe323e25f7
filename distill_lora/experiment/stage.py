"""The one stage skeleton: reuse a finished folder with the same config hash, else make the model, test it once
and save a DONE stage folder. The teacher, students, LoRA models and int8 rows all run through run_stage;
sweep trials train through train_model, as stages do.

Tracking (train.report_to): tracker_run opens the tracker run of a stage or sweep trial around the code that
trains it; train_model, called inside, hands its trackers to the training Accelerator. The run is a context
variable rather than an argument because produce(), which calls train_model, is the stage's own code.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import shutil
from pathlib import Path

import yaml
from accelerate.utils import set_seed

from distill_lora import faults
from distill_lora.errors import UserError
from distill_lora.experiment import tracking
from distill_lora.experiment.preflight import check_trackers
from distill_lora.experiment.runs import (
    exclusive,
    lock_file,
    remove_stale_temporaries,
    stage_dir,
    stage_folder,
    stage_is_done,
)
from distill_lora.files import atomic_write_json, atomic_write_text, read_json, read_json_or_none
from distill_lora.stage_ids import kind_of
from distill_lora.train import distributed, trainer
from distill_lora.train.costs import PeakMemory

TRACKER_IDS = "tracking.json"  # in a stage's work folder: its tracker runs' ids, continued when it resumes
# the tracker run of the stage or sweep trial being trained (None: train.report_to is empty)
_TRACKER_RUN: contextvars.ContextVar[tracking.TrackerRun | None] = contextvars.ContextVar("tracker_run", default=None)


def say(*args) -> None:
    """print, by the main process only (the others run the same stages in a data-parallel run)."""
    if distributed.is_main():
        print(*args, flush=True)


def work_dir(final: Path) -> Path:
    """Checkpoints of an unfinished run of a stage, beside its final folder."""
    return final.with_name(f".{final.name}.work")


def run_stage(ctx, stage_id: str, chash: str, produce, changed: str, main_only: bool = False) -> dict:
    """A finished stage with hash `chash` is reused; otherwise produce(work) makes it and its folder is written.

    produce(work) -> (StageRecord, write_files, summary): work is the folder for checkpoints (None when
    main_only); write_files(tmp) writes the stage's own files into the new folder (it may complete the record,
    e.g. with the size of the weights it saved); summary is the "done" line's text. Every process calls produce,
    unless main_only (int8 rows: the main process quantises and measures on its CPU while the others wait).
    changed: what a stale folder's change is called ("config", or an int8 row's source).

    The main process holds the stage's lock throughout: processes sharing a run folder (atlas shards, sweep
    workers) make each stage once, the others wait and reuse it.
    """
    if not distributed.is_main():
        return _run_stage(ctx, stage_id, chash, produce, changed, main_only)
    with exclusive(lock_file(ctx.output_dir, ctx.cfg.seed, stage_id), stage_id, say):
        return _run_stage(ctx, stage_id, chash, produce, changed, main_only)


def _run_stage(ctx, stage_id: str, chash: str, produce, changed: str, main_only: bool) -> dict:
    final = stage_dir(ctx.output_dir, ctx.cfg.seed, stage_id)
    work = None if main_only else work_dir(final)
    main = distributed.is_main()  # with several processes, only the main one writes
    if stage_is_done(final, chash):
        distributed.barrier()  # every process has seen DONE before anything is removed
        if main and work is not None:
            shutil.rmtree(work, ignore_errors=True)
        say(f"[{stage_id}] reusing finished stage in {final}")
        return read_json(final / "metrics.json")
    faults.maybe(f"{stage_id}:start")
    if main:
        if final.exists():
            redo = "quantising" if main_only else "training"
            say(f"[{stage_id}] {changed} changed since {final} was made: {redo} it again")
        remove_stale_temporaries(final)
        if work is not None:
            _start_work(stage_id, work, chash)
    if main_only and not main:
        distributed.barrier()
        return read_json(final / "metrics.json")
    if not main_only:
        distributed.barrier()  # the work folder exists before any process trains
    section = kind_of(stage_id).section
    name, ids_file = f"seed-{ctx.cfg.seed}/{stage_id}", None if work is None else work / TRACKER_IDS
    with tracker_run(ctx, section, name, ids_file=ids_file) if section else contextlib.nullcontext() as run:
        record, write_files, summary = produce(work)
        if not main:
            distributed.barrier()  # the main process writes the stage folder
            return read_json(final / "metrics.json")
        with stage_folder(final, chash) as tmp:
            write_files(tmp)
            atomic_write_text(tmp / "config.yaml", yaml.safe_dump(ctx.cfg.to_dict(), sort_keys=False))
            metrics = record.to_dict()
            atomic_write_json(tmp / "metrics.json", metrics)
        if run is not None:  # the test metrics and the stage's small files, at the last training step
            run.log(tracking.flat_numbers(metrics.get("test") or {}, "test/"))
            tracking.log_files(run.started, [final / n for n in ("metrics.json", "config.yaml")], "stage")
    faults.maybe(f"{stage_id}:done")
    if work is not None:
        shutil.rmtree(work, ignore_errors=True)
    distributed.barrier()
    say(f"[{stage_id}] done: {summary} → {final}")
    return metrics


def _start_work(stage_id: str, work: Path, chash: str) -> None:
    """The checkpoint folder of this config: an unfinished run of another config is discarded, not resumed."""
    if work.exists() and read_json_or_none(work / "stage.json", {}).get("config_hash") != chash:
        say(f"[{stage_id}] discarding the unfinished run in {work}: it was made with another config")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(work / "stage.json", {"config_hash": chash})


@contextlib.contextmanager
def tracker_run(ctx, section: str, name: str, normal_ends: tuple = (), ids_file: Path | None = None):
    """The tracker run <run-name>/<name> of the stage (section) trained inside the block: None when
    train.report_to is empty; ended however the block ends, as failed when it raised (an exception in
    normal_ends, e.g. a pruned sweep trial, ends it as finished)."""
    tcfg = ctx.cfg.stage_train(section)
    if not tcfg.report_to:
        yield None
        return
    check_trackers(ctx.cfg, section)
    # the resolved config: the stage's own train block in place of the global one
    hparams = tracking.flat_params({**ctx.cfg.to_dict(), "train": dataclasses.asdict(tcfg), "section": section})
    run = tracking.open_run(tcfg.report_to, ctx.output_dir, f"{ctx.output_dir.name}/{name}", hparams, ids_file)
    token, error = _TRACKER_RUN.set(run), None
    try:
        yield run
    except BaseException as e:  # the tracker marks the run failed (or killed), then the error goes on
        error = None if isinstance(e, normal_ends) else e
        raise
    finally:
        _TRACKER_RUN.reset(token)
        run.finish(error)


def train_model(ctx, section: str, build, work: Path, desc: str, on_validated=None):
    """Seed, build() -> (model, step_loss), train with validation picking the epoch (never the test split).

    Returns (model, result, accelerator, memory); the model unwrapped to plain fp32 for testing and saving.
    """
    tcfg = ctx.cfg.stage_train(section)
    if tcfg.batch_size < distributed.world_size():
        raise UserError(
            f"{section}: batch_size {tcfg.batch_size} is smaller than the {distributed.world_size()} "
            "processes; the batch size is the global batch: raise it or start fewer processes"
        )
    set_seed(ctx.cfg.seed)
    model, loss_fn = build()
    # made after build(): a student's build computes the teacher's targets under the teacher's own accelerator,
    # and accelerate keeps one process-wide state, so an earlier stage accelerator would lose its precision
    run = _TRACKER_RUN.get()
    accelerator = distributed.make_accelerator(tcfg.precision, log_with=run.trackers if run else None)
    if run is not None:
        run.start(accelerator)
    say(
        f"[{desc}] training on {distributed.device_name(accelerator)}: {len(ctx.encoded['train'])} examples, "
        f"{tcfg.epochs} epochs, batch {tcfg.batch_size}, lr {tcfg.lr}"
    )
    with PeakMemory(accelerator.device) as memory:
        result = trainer.train(
            model,
            loss_fn,
            tcfg,
            trainer.TrainRun(
                ctx.encoded["train"],
                ctx.encoded["validation"],
                label_names=ctx.cfg.data.label_names,
                pad_id=ctx.pad_id,
                seed=ctx.cfg.seed,
                work_dir=work,
                desc=desc,
                accelerator=accelerator,
            ),
            on_validated=on_validated,
        )
    if run is not None:
        run.step = result.steps
    # without accelerate's autocast wrapper: the test pass and the saved model are the plain fp32 model
    return accelerator.unwrap_model(model, keep_fp32_wrapper=False), result, accelerator, memory
