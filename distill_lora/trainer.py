"""The one training loop, shared by every stage. The stage passes in its loss function.

loss_fn(model, batch) -> (loss, parts): `parts["ce"]` is the cross-entropy with the true labels,
which is what the report's "Training Loss" column shows for every model.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import get_linear_schedule_with_warmup

from . import checkpoint, distributed, faults
from .config import TrainConfig, UserError
from .data import Encoded, make_collate
from .metrics import classification_metrics


def mixed_precision_for(precision: str) -> str:
    """accelerate's mixed_precision for our precision setting, on this machine."""
    if precision == "auto":
        if not distributed.use_cpu():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def make_accelerator(precision: str = "auto") -> Accelerator:
    """An Accelerator for one stage. Gradient accumulation and data sharding are done by train() itself."""
    # accelerate keeps process-wide singletons; each stage may want its own precision
    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(mixed_precision=mixed_precision_for(precision), cpu=distributed.use_cpu())


def device_name(accelerator: Accelerator) -> str:
    name = (torch.cuda.get_device_name(accelerator.device) if accelerator.device.type == "cuda"
            else f"cpu ({torch.get_num_threads()} threads)")
    return name if accelerator.num_processes == 1 else f"{accelerator.num_processes} processes × {name}"


def _param_groups(model, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm weights (1-D tensors)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.inference_mode()
def evaluate(model, dataset: Encoded, batch_size: int, accelerator: Accelerator, pad_id: int,
             cls_layers: list[int] | None = None, mixed: bool = True) -> dict:
    """Logits (N, C) in dataset order, mean cross-entropy, and optionally [CLS] states of some layers.

    cls_layers are hidden_states indices (0 = embeddings, l = output of layer l). mixed=False runs in
    fp32 even when training used bf16/fp16, so the recorded numbers can be reproduced by plain inference.
    """
    model.eval()
    # a private generator: iterating a DataLoader otherwise draws a seed from the global RNG (dropout's).
    # With several processes each evaluates every n-th batch; gather_for_metrics puts them back in order
    # and drops the examples repeated to even out the last round.
    loader = accelerator.prepare_data_loader(
        DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=make_collate(pad_id),
                   generator=torch.Generator()))
    logits, cls = [], []
    for batch in loader:
        with accelerator.autocast() if mixed else contextlib.nullcontext():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        output_hidden_states=cls_layers is not None)
        logits.append(accelerator.gather_for_metrics(out.logits.float()).cpu())
        if cls_layers is not None:
            states = torch.stack([out.hidden_states[i][:, 0].float() for i in cls_layers], dim=1)
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


def _is_better(score: float, best: float | None, metric: str) -> bool:
    if best is None:
        return True
    return score < best if metric == "loss" else score > best


def _progress(total: int, desc: str):
    """Rich progress bar on a terminal; None (plain log lines) otherwise."""
    if not sys.stdout.isatty():
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[info]}"), TimeRemainingColumn())
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
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    chunk = batch_size * BUCKET_BATCHES
    batches = []
    for start in range(0, n, chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=g).tolist()]


def _best_path(work_dir: Path, epoch: int) -> Path:
    return work_dir / f"best-epoch-{epoch:04d}.safetensors"


def _save_best(work_dir: Path, model, val_logits, epoch: int) -> None:
    """The weights of a new best epoch, in a file named by that epoch. The previous best stays until a checkpoint
    records the new choice: a run killed in between resumes with the epoch its checkpoint names, and that
    epoch's weights (a re-run of the epoch need not be better again on a non-deterministic GPU)."""
    if distributed.is_main():
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        state["__val_logits__"] = torch.as_tensor(val_logits).contiguous()
        tmp = work_dir / f".best.tmp-{os.getpid()}.safetensors"
        save_file(state, tmp, metadata={"epoch": str(epoch)})
        os.replace(tmp, _best_path(work_dir, epoch))
    distributed.barrier()


def _prune_best(work_dir: Path, selected_epoch: int) -> None:
    """After a checkpoint: only the selected epoch's weights are still needed."""
    for path in work_dir.glob("best-epoch-*.safetensors"):
        if path != _best_path(work_dir, selected_epoch):
            path.unlink(missing_ok=True)


def _load_best(work_dir: Path, model, epoch: int):
    path = _best_path(work_dir, epoch)
    with safe_open(path, "pt") as fh:
        saved = int(fh.metadata()["epoch"])
    if saved != epoch:  # a file renamed or mixed up by hand: never test weights of another epoch
        raise UserError(f"{path} holds epoch {saved}, not the selected epoch {epoch}; delete {work_dir} and train again")
    state = load_file(path)
    logits = state.pop("__val_logits__").numpy()
    model.load_state_dict(state)
    return logits


def train(model, train_set: Encoded, val_set: Encoded, loss_fn, cfg: TrainConfig, *, seed: int,
          label_names: list[str], pad_id: int, work_dir: Path, desc: str, accelerator: Accelerator,
          on_validated=None) -> TrainResult:
    """Train, validate after every epoch, keep the epoch with the best validation score.

    on_validated(history_entry) is called after each epoch's validation (the sweep's pruner listens here);
    it may raise to stop training.

    Checkpoints go to work_dir (every cfg.checkpoint_every steps and at each epoch end); if one is there,
    training resumes from it and ends exactly as an uninterrupted run would. The model ends holding the
    weights of the selected epoch. The test split is not seen here. Started by torchrun / accelerate launch,
    every process runs this; only the main one writes.
    """
    set_seed(seed)
    main = distributed.is_main()
    work_dir.mkdir(parents=True, exist_ok=True)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                  fused=accelerator.device.type == "cuda")
    n_batches_epoch = math.ceil(len(train_set) / cfg.batch_size)
    steps_per_epoch = math.ceil(n_batches_epoch / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    # the scheduler stays unprepared: accelerate would step it once per process (it assumes per-process batches)
    model, optimizer = accelerator.prepare(model, optimizer)
    raw_model = accelerator.unwrap_model(model)

    st = {"epoch": 1, "batches_done": 0, "examples_done": 0, "epoch_done": False, "step": 0, "seen": 0,
          "train_time": 0.0, "sums": {}, "history": [], "best_score": None, "selected_epoch": 0, "since_best": 0,
          "stopped_early": False, "log_bytes": 0}
    last = checkpoint.latest(work_dir)
    if last is not None:
        st = checkpoint.load(last, raw_model, optimizer, scheduler)
        if main:
            print(f"  {desc}: resuming from {last.name} (epoch {st['epoch']}, step {st['step']})", flush=True)
    log_path = work_dir / "train_log.jsonl"
    if main:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.truncate(st["log_bytes"])  # lines written after the checkpoint belong to the lost run

    def save_checkpoint(log):
        log.flush()
        st["log_bytes"] = log.tell()
        st["wall_time"] = wall_before + time.perf_counter() - start
        folder = work_dir / f"checkpoint-{st['step']:08d}"
        if main:
            checkpoint.save(folder, raw_model, optimizer, scheduler, st)
            checkpoint.prune(work_dir, folder)
            _prune_best(work_dir, st["selected_epoch"])
        distributed.barrier()
        faults.maybe(f"{desc}:checkpoint:{st['step']}")

    result = TrainResult()
    progress = _progress(total_steps, desc) if main else None
    start = time.perf_counter()
    wall_before = st.get("wall_time", 0.0)  # training time spent by interrupted runs of this stage
    # only the main process writes the step log; the others write into memory
    log_file = open(log_path, "a", encoding="utf-8") if main else io.StringIO()
    try:
        with log_file as log, _StopRequests() as stop:
            while st["epoch"] <= cfg.epochs and not st["stopped_early"]:
                epoch = st["epoch"]
                if not st["epoch_done"]:
                    _train_epoch(model, train_set, loss_fn, cfg, seed, pad_id, accelerator, optimizer, scheduler,
                                 st, log, stop, desc, total_steps, progress, save_checkpoint)
                    _validate(model, val_set, cfg, label_names, pad_id, accelerator, st, log, desc, progress, work_dir)
                    st["epoch_done"] = True
                    save_checkpoint(log)
                    if on_validated is not None:
                        on_validated(st["history"][-1])
                st.update(epoch=epoch + 1, batches_done=0, examples_done=0, epoch_done=False, sums={})
    finally:  # also when a stop, a NaN or a sweep's pruner ends training: the bar must not stay on screen
        if progress:
            progress.stop()
    result.selected_val_logits = _load_best(work_dir, raw_model, st["selected_epoch"])
    result.history, result.selected_epoch = st["history"], st["selected_epoch"]
    result.stopped_early = st["stopped_early"]
    result.wall_time_s = wall_before + time.perf_counter() - start
    result.samples_per_s = st["seen"] / st["train_time"] if st["train_time"] else 0.0
    return result


def _train_epoch(model, train_set, loss_fn, cfg, seed, pad_id, accelerator, optimizer, scheduler, st, log, stop,
                 desc, total_steps, progress, save_checkpoint) -> None:
    """One epoch from st["batches_done"] on: forward, loss, backward, step — and checkpoints.

    Gradient accumulation is done here rather than by accelerate, so that a last, shorter group of
    batches is averaged over its own size and the step/epoch bookkeeping stays in one place.
    """
    epoch = st["epoch"]
    lengths = [len(ids) for ids in train_set.input_ids] if cfg.length_buckets else None
    batches = epoch_batches(len(train_set), cfg.batch_size, seed, epoch, lengths)  # global batches
    n_batches = len(batches)
    shards = [distributed.shard(b, accelerator.process_index, accelerator.num_processes)
              for b in batches[st["batches_done"]:]]
    loader = DataLoader(train_set, batch_sampler=[part for part, _ in shards], collate_fn=make_collate(pad_id),
                        pin_memory=accelerator.device.type == "cuda",
                        generator=torch.Generator())  # private: keeps the global RNG (dropout) as a resumed run expects
    def restore_sums():
        """Per-example loss sums of this epoch: the checkpoint's totals go to the main process, the others
        start from 0 (float32 tensors, as in an uninterrupted run, so a resumed run adds up identically)."""
        keep = distributed.is_main()
        return {k: torch.tensor(v if keep else 0.0, dtype=torch.float32, device=accelerator.device)
                for k, v in st["sums"].items()}

    def global_sums():
        """Sums of each loss part over the examples of this epoch so far, over all processes."""
        keys = sorted(sums)
        if not keys:
            return {}
        local = torch.stack([sums[k] for k in keys])
        total = accelerator.reduce(local, "sum") if accelerator.num_processes > 1 else local
        return {k: float(v) for k, v in zip(keys, total)}

    sums = restore_sums()

    model.train()
    t0 = time.perf_counter()
    for (part, weight), batch in zip(shards, loader):
        b = st["batches_done"]
        group_start = b - b % cfg.grad_accum
        group_size = min(cfg.grad_accum, n_batches - group_start)
        sync = b + 1 == group_start + group_size  # last batch of an accumulation group: step the optimiser
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in batch.items()}
        with contextlib.nullcontext() if sync else accelerator.no_sync(model):
            loss, parts = loss_fn(model, batch)  # the prepared model's forward runs under autocast already
            if faults.maybe(f"{desc}:nan:{st['step'] + 1}"):
                loss = loss * float("nan")
            if distributed.any_flag([not bool(torch.isfinite(loss))], accelerator.device)[0]:
                raise UserError(f"stage {desc}: the loss became {float(loss)} at step {st['step'] + 1} (epoch {epoch}); "
                                "training stopped and the last good checkpoint is kept. Lower the learning rate or "
                                "use train.precision: fp32, then run again")
            accelerator.backward(loss * (weight / group_size))
        n_real = len(part) if weight else 0
        for k, v in {"loss": loss, **parts}.items():
            sums[k] = sums.get(k, 0.0) + v.detach().float() * n_real
        st["batches_done"] += 1
        st["examples_done"] += len(batches[b])
        st["seen"] += len(batches[b])
        if not sync:
            continue
        if cfg.max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        st["step"] += 1
        faults.maybe(f"{desc}:step:{st['step']}")
        if st["step"] % cfg.log_every == 0 or st["step"] == total_steps:
            means = {k: round(v / st["examples_done"], 6) for k, v in global_sums().items()}
            rate = st["seen"] / (st["train_time"] + time.perf_counter() - t0)
            log.write(json.dumps({"step": st["step"], "epoch": epoch, **means, "lr": scheduler.get_last_lr()[0],
                                  "samples_per_s": round(rate, 2)}) + "\n")
            info = f"loss {means['loss']:.4f}  {rate:.1f} samples/s"
            if progress:
                progress.update(progress.task_ids[0], completed=st["step"], info=info)
            elif distributed.is_main():
                print(f"  {desc} epoch {epoch} step {st['step']}/{total_steps}  {info}", flush=True)
        stopping = distributed.any_flag([stop.signal is not None], accelerator.device)[0]
        if (cfg.checkpoint_every and st["step"] % cfg.checkpoint_every == 0) or stopping:
            st["train_time"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            st["sums"] = global_sums()
            sums = restore_sums()
            save_checkpoint(log)
            if stopping:
                raise Interrupted(f"{stop.signal or 'a stop signal'} received: stage {desc} stopped after step "
                                  f"{st['step']} with a checkpoint; run the same command again to resume")
    st["train_time"] += time.perf_counter() - t0
    st["sums"] = global_sums()


def _validate(model, val_set, cfg, label_names, pad_id, accelerator, st, log, desc, progress, work_dir) -> None:
    """Validation after an epoch: history entry, best-epoch bookkeeping, early stopping."""
    epoch, n = st["epoch"], st["examples_done"]
    sums = st["sums"]
    val = evaluate(model, val_set, cfg.eval_batch_size, accelerator, pad_id)
    val_metrics = classification_metrics(val_set.labels, val["logits"], label_names)
    entry = {"epoch": epoch, "train_loss": sums["ce"] / n, "train_total_loss": sums["loss"] / n,
             "val_loss": val["loss"], "val_accuracy": val_metrics["accuracy"], "val_macro_f1": val_metrics["macro_f1"]}
    for k in sums:
        if k not in ("loss", "ce"):
            entry[f"train_{k}"] = sums[k] / n
    st["history"].append(entry)
    log.write(json.dumps({"validation": entry}) + "\n")
    score = val["loss"] if cfg.select_metric == "loss" else val_metrics[cfg.select_metric]
    line = (f"  {desc} epoch {epoch}: train CE {entry['train_loss']:.4f}  val loss {val['loss']:.4f}  "
            f"val acc {val_metrics['accuracy']:.4f}  val macro-F1 {val_metrics['macro_f1']:.4f}")
    if distributed.is_main():
        (progress.console.print if progress else print)(line)
    faults.maybe(f"{desc}:validated:{epoch}")
    if _is_better(score, st["best_score"], cfg.select_metric):
        st.update(best_score=score, since_best=0, selected_epoch=epoch)
        _save_best(work_dir, accelerator.unwrap_model(model), val["logits"], epoch)
        faults.maybe(f"{desc}:best-saved:{epoch}")
    else:
        st["since_best"] += 1
        if cfg.patience and st["since_best"] >= cfg.patience:
            st["stopped_early"] = epoch < cfg.epochs
