"""The one stage skeleton: reuse a finished folder with the same config hash, else make the model, test it once
and save a DONE stage folder. The teacher, students, LoRA models and int8 rows all run through run_stage;
sweep trials train through train_model, as stages do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from accelerate.utils import set_seed

from distill_lora import faults
from distill_lora.errors import UserError
from distill_lora.experiment.runs import remove_stale_temporaries, stage_dir, stage_folder, stage_is_done
from distill_lora.files import atomic_write_json, atomic_write_text, read_json, read_json_or_none
from distill_lora.train import distributed, trainer
from distill_lora.train.costs import PeakMemory


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
    """
    final = stage_dir(ctx.output_dir, ctx.cfg.seed, stage_id)
    work = None if main_only else work_dir(final)
    main = distributed.is_main()  # with several processes, only the main one writes
    if stage_is_done(final, chash):
        distributed.barrier()  # every process has seen DONE before anything is removed
        if main and work is not None:
            shutil.rmtree(work, ignore_errors=True)
        say(f"[{stage_id}] reusing finished stage in {final}")
        return read_json(final / "metrics.json")
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
    record, write_files, summary = produce(work)
    if not main:
        distributed.barrier()  # the main process writes the stage folder
        return read_json(final / "metrics.json")
    with stage_folder(final, chash) as tmp:
        write_files(tmp)
        atomic_write_text(tmp / "config.yaml", yaml.safe_dump(ctx.cfg.to_dict(), sort_keys=False))
        metrics = record.to_dict()
        atomic_write_json(tmp / "metrics.json", metrics)
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
    accelerator = trainer.make_accelerator(tcfg.precision)
    say(
        f"[{desc}] training on {trainer.device_name(accelerator)}: {len(ctx.encoded['train'])} examples, "
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
    # without accelerate's autocast wrapper: the test pass and the saved model are the plain fp32 model
    return accelerator.unwrap_model(model, keep_fp32_wrapper=False), result, accelerator, memory
