"""The one training loop, shared by every stage. The stage passes in its loss function.

loss_fn(model, batch) -> (loss, parts): `parts["ce"]` is the cross-entropy with the true labels,
which is what the report's "Training Loss" column shows for every model.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from distill_lora import faults
from distill_lora.config import TrainConfig
from distill_lora.errors import UserError
from distill_lora.metrics import classification_metrics
from distill_lora.train import checkpoint, distributed
from distill_lora.train.data import Encoded, make_collate
from distill_lora.train.models import layer_cls


def _param_groups(model, weight_decay: float, lr: float, lora_b_lr_ratio: float = 1.0) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm weights (1-D tensors); with LoRA+ (ratio ≠ 1) LoRA's
    B matrices in a group of their own at lr × ratio."""
    decay, no_decay, lora_b = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if lora_b_lr_ratio != 1.0 and ".lora_B." in name:
            lora_b.append(p)
        else:
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if lora_b:
        groups.append({"params": lora_b, "weight_decay": weight_decay, "lr": lr * lora_b_lr_ratio})
    return groups


@torch.inference_mode()
def evaluate(
    model,
    dataset: Encoded,
    batch_size: int,
    accelerator: Accelerator,
    pad_id: int,
    cls_layers: list[int] | None = None,
    mixed: bool = True,
) -> dict:
    """Logits (N, C) in dataset order, mean cross-entropy, and optionally [CLS] states of some layers.

    cls_layers: 1-based layers whose output [CLS] is returned (as layer_cls reads them). mixed=False runs in
    fp32 even when training used bf16/fp16, so the recorded numbers can be reproduced by plain inference.
    """
    model.eval()
    # a private generator: iterating a DataLoader otherwise draws a seed from the global RNG (dropout's).
    # With several processes each evaluates every n-th batch; gather_for_metrics puts them back in order
    # and drops the examples repeated to even out the last round.
    loader = accelerator.prepare_data_loader(
        DataLoader(
            dataset, batch_size=batch_size, shuffle=False, collate_fn=make_collate(pad_id), generator=torch.Generator()
        )
    )
    logits, cls = [], []
    forward = model if mixed else distributed.fp32_forward(model, accelerator)
    for batch in loader:
        with accelerator.autocast() if mixed else contextlib.nullcontext():
            out = forward(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                output_hidden_states=cls_layers is not None,
            )
        logits.append(accelerator.gather_for_metrics(out.logits.float()).cpu())
        if cls_layers is not None:
            states = torch.stack([c.float() for c in layer_cls(model, out.hidden_states, cls_layers)], dim=1)
            cls.append(accelerator.gather_for_metrics(states).cpu())
    logits = torch.cat(logits)
    labels = torch.tensor(dataset.labels)
    result = {"logits": logits.numpy(), "loss": float(torch.nn.functional.cross_entropy(logits, labels))}
    if cls_layers is not None:
        result["cls"] = torch.cat(cls)  # (N, len(cls_layers), H)
    return result


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    selected_epoch: int = 0
    wall_time_s: float = 0.0
    samples_per_s: float = 0.0
    stopped_early: bool = False
    selected_val_logits: object = None  # (N, C) validation logits of the selected epoch
    steps: int = 0  # optimiser steps trained


def _is_better(score: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return score < best if metric == "loss" else score > best


def _progress(total: int, desc: str):
    """Rich progress bar on a terminal; None (plain log lines) otherwise."""
    if not sys.stdout.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
    )
    progress.start()
    progress.add_task(desc, total=total, info="")
    return progress


class Interrupted(Exception):
    """SIGINT/SIGTERM arrived: the current step finished and a checkpoint was written."""


class _StopRequests:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each optimiser step."""

    def __init__(self):
        self.signal = None

    def __enter__(self):
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False


BUCKET_BATCHES = 50  # batches per length bucket: enough to group similar lengths, few enough to stay random


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, lengths: list[int] | None = None) -> list[list[int]]:
    """The shuffled batches of one epoch: a function of (seed, epoch) only, so a resumed run sees the same order.

    With `lengths`, examples are bucketed: the shuffled order is cut into chunks of BUCKET_BATCHES batches,
    each chunk is sorted by length and cut into batches, and the batches are shuffled. Padding then
    wastes little compute, and every example still comes exactly once per epoch.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    if lengths is None:
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    chunk = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, n, chunk):
        part = sorted(order[start : start + chunk], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


@dataclass(frozen=True)
class TrainRun:
    """What train() trains on and where it writes: fixed for the whole call."""

    train_set: Encoded
    val_set: Encoded
    label_names: list[str]  # class names, for the validation metrics
    pad_id: int
    seed: int  # sets the RNGs, and each epoch's batch order
    work_dir: Path  # checkpoints, best-epoch weights, train_log.jsonl
    desc: str  # the stage's name in log lines and fault-injection points
    accelerator: Accelerator


@dataclass
class LoopState:
    """Where training stands: everything carried from step to step and epoch to epoch. A checkpoint stores it as
    JSON (these field names are its keys), so a resumed run continues exactly where the interrupted one stopped."""

    epoch: int = 1  # the epoch being trained (1-based)
    batches_done: int = 0  # global batches of this epoch trained so far
    examples_done: int = 0  # their examples: the divisor of the epoch's mean losses
    epoch_done: bool = False  # this epoch is validated and checkpointed; the next one has not begun
    step: int = 0  # optimiser steps since the start of training
    seen: int = 0  # training examples since the start of training (for samples/s)
    train_time: float = 0.0  # seconds in the training loop, validation left out (for samples/s)
    sums: dict[str, float] = field(default_factory=dict)  # per-example loss sums of this epoch, all processes
    history: list[dict] = field(default_factory=list)  # one validation entry per epoch
    best_score: float | None = None  # validation score of the selected epoch
    selected_epoch: int = 0  # the best epoch so far: its weights are in best-epoch-E.safetensors
    since_best: int = 0  # epochs without a better score (patience)
    stopped_early: bool = False  # patience ran out before the last epoch
    log_bytes: int = 0  # length of train_log.jsonl at the checkpoint: later lines belong to a lost run
    wall_time: float = 0.0  # training wall time up to the checkpoint, over all interrupted runs


def train(model, loss_fn, cfg: TrainConfig, run: TrainRun, *, on_validated=None) -> TrainResult:
    """Train, validate after every epoch, keep the epoch with the best validation score.

    on_validated(history_entry) is called after each epoch's validation (the sweep's pruner listens here);
    it may raise to stop training.

    Checkpoints go to run.work_dir (every cfg.checkpoint_every steps and at each epoch end); if one is there,
    training resumes from it and ends exactly as an uninterrupted run would. The model ends holding the
    weights of the selected epoch. The test split is not seen here. Started by torchrun / accelerate launch,
    every process runs this; only the main one writes.
    """
    model, optimizer, scheduler, state, total_steps = _prepare(model, cfg, run)
    with _open_session(run, total_steps, state) as session:
        while state.epoch <= cfg.epochs and not state.stopped_early:
            if not state.epoch_done:  # done: the last run stopped after this epoch's checkpoint
                _train_epoch(model, loss_fn, optimizer, scheduler, cfg, run, state, session)
                _validate(model, cfg, run, state, session)
                state.epoch_done = True
                _save_checkpoint(model, optimizer, scheduler, run, state, session)
                if on_validated is not None:
                    on_validated(state.history[-1])
            state.epoch += 1  # the next epoch starts at its first batch, with no loss sums
            state.batches_done, state.examples_done, state.epoch_done, state.sums = 0, 0, False, {}
    selected_val_logits = checkpoint.load_best(run.work_dir, run.accelerator.unwrap_model(model), state.selected_epoch)
    return TrainResult(
        history=state.history,
        selected_epoch=state.selected_epoch,
        stopped_early=state.stopped_early,
        wall_time_s=session.wall_time(),
        selected_val_logits=selected_val_logits,
        samples_per_s=state.seen / state.train_time if state.train_time else 0.0,
        steps=state.step,
    )


def _train_epoch(
    model, loss_fn, optimizer, scheduler, cfg: TrainConfig, run: TrainRun, state: LoopState, session: _Session
) -> None:
    """One epoch from state.batches_done on: forward, loss, backward, step — and checkpoints.

    Gradient accumulation is done here rather than by accelerate, so that a last, shorter group of
    batches is averaged over its own size and the step/epoch bookkeeping stays in one place.
    """
    acc, desc = run.accelerator, run.desc
    batches, loader = _epoch_loader(cfg, run, state)
    sums = _restore_sums(state.sums, acc)
    model.train()
    t0 = time.perf_counter()
    for (part, weight), batch in loader:
        b = state.batches_done
        group_start = b - b % cfg.grad_accum
        group_size = min(cfg.grad_accum, len(batches) - group_start)
        sync = b + 1 == group_start + group_size  # last batch of an accumulation group: step the optimiser
        batch = {k: v.to(acc.device, non_blocking=True) for k, v in batch.items()}
        with contextlib.nullcontext() if sync else acc.no_sync(model):
            loss, parts = loss_fn(model, batch)  # the prepared model's forward runs under autocast already
            if faults.maybe(f"{desc}:nan:{state.step + 1}"):
                loss = loss * float("nan")
            if distributed.any_flag([not bool(torch.isfinite(loss))], acc.device)[0]:
                raise UserError(
                    f"stage {desc}: the loss became {float(loss)} at step {state.step + 1} (epoch "
                    f"{state.epoch}); training stopped and the last good checkpoint is kept. Lower the "
                    "learning rate or use train.precision: fp32, then run again"
                )
            acc.backward(loss * (weight / group_size))
        n_real = len(part) if weight else 0  # examples repeated to even out the processes count for nothing
        for k, v in {"loss": loss, **parts}.items():
            sums[k] = sums.get(k, 0.0) + v.detach().float() * n_real
        state.batches_done += 1
        state.examples_done += len(batches[b])
        state.seen += len(batches[b])
        if not sync:
            continue
        if cfg.max_grad_norm > 0:
            acc.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        faults.maybe(f"{desc}:step:{state.step}")
        if state.step % cfg.log_every == 0 or state.step == session.total_steps:
            means = {k: round(v / state.examples_done, 6) for k, v in _global_sums(sums, acc).items()}
            session.log_step(
                state,
                means,
                scheduler.get_last_lr()[0],
                rate=state.seen / (state.train_time + time.perf_counter() - t0),
            )
        stopping = distributed.any_flag([session.stop.signal is not None], acc.device)[0]
        if (cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0) or stopping:
            state.train_time += time.perf_counter() - t0
            t0 = time.perf_counter()
            state.sums = _global_sums(sums, acc)
            sums = _restore_sums(state.sums, acc)  # as a run resumed from this checkpoint will add them up
            _save_checkpoint(model, optimizer, scheduler, run, state, session)
            if stopping:
                raise Interrupted(
                    f"{session.stop.signal or 'a stop signal'} received: stage {desc} stopped after "
                    f"step {state.step} with a checkpoint; run the same command again to resume"
                )
    state.train_time += time.perf_counter() - t0
    state.sums = _global_sums(sums, acc)


def _prepare(model, cfg: TrainConfig, run: TrainRun):
    """Seed, optimiser, LR schedule and accelerate's wrapping; then the loop state of an unfinished run, if any
    (its checkpoint also restores the weights, the optimiser, the schedule and the RNGs)."""
    set_seed(run.seed)
    run.work_dir.mkdir(parents=True, exist_ok=True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    accelerator = run.accelerator
    optimizer = torch.optim.AdamW(
        _param_groups(model, cfg.weight_decay, cfg.lr, cfg.lora_b_lr_ratio),
        lr=cfg.lr,
        fused=accelerator.device.type == "cuda",
    )
    n_batches_epoch = math.ceil(len(run.train_set) / cfg.batch_size)
    total_steps = math.ceil(n_batches_epoch / cfg.grad_accum) * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    # the scheduler stays unprepared: accelerate would step it once per process (it assumes per-process batches)
    model, optimizer = accelerator.prepare(model, optimizer)
    state, last = LoopState(), checkpoint.latest(run.work_dir)
    if last is not None:
        state = LoopState(**checkpoint.load(last, accelerator.unwrap_model(model), optimizer, scheduler))
        if distributed.is_main():
            print(f"  {run.desc}: resuming from {last.name} (epoch {state.epoch}, step {state.step})", flush=True)
    return model, optimizer, scheduler, state, total_steps


def _epoch_loader(cfg: TrainConfig, run: TrainRun, state: LoopState):
    """This epoch's global batches, and this process's shares of those not trained yet with their batches."""
    lengths = [len(ids) for ids in run.train_set.input_ids] if cfg.length_buckets else None
    batches = epoch_batches(len(run.train_set), cfg.batch_size, run.seed, state.epoch, lengths)
    acc = run.accelerator
    shards = [distributed.shard(b, acc.process_index, acc.num_processes) for b in batches[state.batches_done :]]
    loader = DataLoader(
        run.train_set,
        batch_sampler=[part for part, _ in shards],
        collate_fn=make_collate(run.pad_id),
        pin_memory=acc.device.type == "cuda",
        generator=torch.Generator(),
    )  # private: keeps the global RNG (dropout) as a resumed run expects
    return batches, zip(shards, loader)


def _restore_sums(sums: dict[str, float], accelerator: Accelerator) -> dict:
    """Per-example loss sums of this epoch: the checkpoint's totals go to the main process, the others
    start from 0 (float32 tensors, as in an uninterrupted run, so a resumed run adds up identically)."""
    keep = distributed.is_main()
    return {
        k: torch.tensor(v if keep else 0.0, dtype=torch.float32, device=accelerator.device) for k, v in sums.items()
    }


def _global_sums(sums: dict, accelerator: Accelerator) -> dict[str, float]:
    """Sums of each loss part over the examples of this epoch so far, over all processes."""
    keys = sorted(sums)
    if not keys:
        return {}
    local = torch.stack([sums[k] for k in keys])
    total = accelerator.reduce(local, "sum") if accelerator.num_processes > 1 else local
    return {k: float(v) for k, v in zip(keys, total)}


def _validate(model, cfg: TrainConfig, run: TrainRun, state: LoopState, session: _Session) -> None:
    """Validation after an epoch: history entry, best-epoch bookkeeping, early stopping."""
    epoch, n, sums = state.epoch, state.examples_done, state.sums
    # in fp32, as the test pass: the epoch (and a decision threshold) is chosen on the numbers the report shows
    val = evaluate(model, run.val_set, cfg.eval_batch_size, run.accelerator, run.pad_id, mixed=False)
    val_metrics = classification_metrics(run.val_set.labels, val["logits"], run.label_names)
    entry = {
        "epoch": epoch,
        "train_loss": sums["ce"] / n,
        "train_total_loss": sums["loss"] / n,
        "val_loss": val["loss"],
        "val_accuracy": val_metrics["accuracy"],
        "val_macro_f1": val_metrics["macro_f1"],
    }
    for k in sums:
        if k not in ("loss", "ce"):
            entry[f"train_{k}"] = sums[k] / n
    state.history.append(entry)
    session.log.write(json.dumps({"validation": entry}) + "\n")
    run.accelerator.log({f"epoch/{k}": v for k, v in entry.items()}, step=state.step)  # trackers, if any
    score = val["loss"] if cfg.select_metric == "loss" else val_metrics[cfg.select_metric]
    session.say(
        f"  {run.desc} epoch {epoch}: train CE {entry['train_loss']:.4f}  val loss {val['loss']:.4f}  "
        f"val acc {val_metrics['accuracy']:.4f}  val macro-F1 {val_metrics['macro_f1']:.4f}"
    )
    faults.maybe(f"{run.desc}:validated:{epoch}")
    if _is_better(score, state.best_score, cfg.select_metric):
        state.best_score, state.since_best, state.selected_epoch = score, 0, epoch
        checkpoint.save_best(run.work_dir, run.accelerator.unwrap_model(model), val["logits"], epoch)
        faults.maybe(f"{run.desc}:best-saved:{epoch}")
    else:
        state.since_best += 1
        if cfg.patience and state.since_best >= cfg.patience:
            state.stopped_early = epoch < cfg.epochs


@dataclass(frozen=True)
class _Session:
    """What train() holds open while it trains: the step log, the terminal, the stop signals, the clock."""

    desc: str
    total_steps: int
    log: io.TextIOBase  # train_log.jsonl on the main process; the others write into memory
    accelerator: Accelerator  # its trackers (train.report_to) get the step log too
    progress: object  # a rich progress bar on a terminal; None: plain log lines
    stop: _StopRequests
    wall_before: float  # training wall time of earlier, interrupted runs of this stage
    start: float  # time.perf_counter() when this run began

    def wall_time(self) -> float:
        return self.wall_before + time.perf_counter() - self.start

    def say(self, line: str) -> None:
        if distributed.is_main():
            (self.progress.console.print if self.progress else print)(line)

    def log_step(self, state: LoopState, means: dict[str, float], lr: float, rate: float) -> None:
        line = {**means, "lr": lr, "samples_per_s": round(rate, 2)}
        self.log.write(json.dumps({"step": state.step, "epoch": state.epoch, **line}) + "\n")
        self.accelerator.log({f"train/{k}": v for k, v in {**line, "epoch": state.epoch}.items()}, step=state.step)
        info = f"loss {means['loss']:.4f}  {rate:.1f} samples/s"
        if self.progress:
            self.progress.update(self.progress.task_ids[0], completed=state.step, info=info)
        elif distributed.is_main():
            print(f"  {self.desc} epoch {state.epoch} step {state.step}/{self.total_steps}  {info}", flush=True)


@contextlib.contextmanager
def _open_session(run: TrainRun, total_steps: int, state: LoopState):
    """The _Session of one train() call; the log file, the signal handlers and the bar close however it ends."""
    main = distributed.is_main()
    log_path = run.work_dir / "train_log.jsonl"
    if main:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.truncate(state.log_bytes)  # lines written after the checkpoint belong to the lost run
    progress = _progress(total_steps, run.desc) if main else None
    start = time.perf_counter()
    # only the main process writes the step log; the others write into memory
    log_file = open(log_path, "a", encoding="utf-8") if main else io.StringIO()
    try:
        with log_file as log, _StopRequests() as stop:
            yield _Session(run.desc, total_steps, log, run.accelerator, progress, stop, state.wall_time, start)
    finally:  # also when a stop, a NaN or a sweep's pruner ends training: the bar must not stay on screen
        if progress:
            progress.stop()


def _save_checkpoint(model, optimizer, scheduler, run: TrainRun, state: LoopState, session: _Session) -> None:
    """checkpoint-<step>, written by the main process, which then deletes the older checkpoint and best files."""
    session.log.flush()
    state.log_bytes = session.log.tell()
    state.wall_time = session.wall_time()
    folder = run.work_dir / f"checkpoint-{state.step:08d}"
    if distributed.is_main():
        checkpoint.save(folder, run.accelerator.unwrap_model(model), optimizer, scheduler, asdict(state))
        checkpoint.prune(run.work_dir, folder)
        checkpoint.prune_best(run.work_dir, state.selected_epoch)
    distributed.barrier()
    faults.maybe(f"{run.desc}:checkpoint:{state.step}")
