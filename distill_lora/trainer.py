"""The one training loop, shared by every stage. The stage passes in its loss function.

loss_fn(model, batch) -> (loss, parts): `parts["ce"]` is the cross-entropy with the true labels,
which is what the report's "Training Loss" column shows for every model.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from .config import TrainConfig
from .data import Encoded, make_collate
from .metrics import classification_metrics


def mixed_precision_for(precision: str) -> str:
    """accelerate's mixed_precision for our precision setting, on this machine."""
    if precision == "auto":
        if torch.cuda.is_available():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def make_accelerator(precision: str = "auto", grad_accum: int = 1) -> Accelerator:
    # accelerate keeps process-wide singletons; each stage may want its own precision
    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(mixed_precision=mixed_precision_for(precision), gradient_accumulation_steps=grad_accum)


def device_name(accelerator: Accelerator) -> str:
    if accelerator.device.type == "cuda":
        return torch.cuda.get_device_name(accelerator.device)
    return f"cpu ({torch.get_num_threads()} threads)"


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
             cls_layers: list[int] | None = None) -> dict:
    """Logits (N, C) in dataset order, mean cross-entropy, and optionally [CLS] states of some layers.

    cls_layers are hidden_states indices (0 = embeddings, l = output of layer l).
    """
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=make_collate(pad_id))
    logits, cls = [], []
    for batch in loader:
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                        output_hidden_states=cls_layers is not None)
        logits.append(out.logits.float().cpu())
        if cls_layers is not None:
            cls.append(torch.stack([out.hidden_states[i][:, 0].float().cpu() for i in cls_layers], dim=1))
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


def train(model, train_set: Encoded, val_set: Encoded, loss_fn, cfg: TrainConfig, *, seed: int,
          label_names: list[str], pad_id: int, log_path: Path, desc: str, accelerator: Accelerator) -> TrainResult:
    """Train, validate after every epoch, keep the epoch with the best validation score.

    The model ends holding the weights of the selected epoch. The test split is not seen here.
    """
    set_seed(seed)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True, collate_fn=make_collate(pad_id),
                        generator=torch.Generator().manual_seed(seed))
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.lr,
                                  fused=accelerator.device.type == "cuda")
    steps_per_epoch = math.ceil(len(loader) / cfg.grad_accum)
    total_steps = steps_per_epoch * cfg.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    result, best_score, best_state, since_best = TrainResult(), None, None, 0
    step, train_time, seen = 0, 0.0, 0
    progress = _progress(total_steps, desc)
    start = time.perf_counter()
    with open(log_path, "a", encoding="utf-8") as log:
        for epoch in range(1, cfg.epochs + 1):
            model.train()
            sums = {}  # running sums of loss parts on the device: one host sync per log line
            n_batches, t0 = 0, time.perf_counter()
            for batch in loader:
                with accelerator.accumulate(model):
                    loss, parts = loss_fn(model, batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                        accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                for k, v in {"loss": loss, **parts}.items():
                    sums[k] = sums.get(k, 0.0) + v.detach().float()
                n_batches += 1
                seen += batch["labels"].shape[0]
                if accelerator.sync_gradients:
                    step += 1
                    if step % cfg.log_every == 0 or step == total_steps:
                        means = {k: round(float(v) / n_batches, 6) for k, v in sums.items()}
                        rate = seen / (train_time + time.perf_counter() - t0)
                        line = {"step": step, "epoch": epoch, **means, "lr": scheduler.get_last_lr()[0],
                                "samples_per_s": round(rate, 2)}
                        log.write(json.dumps(line) + "\n")
                        info = f"loss {means['loss']:.4f}  {rate:.1f} samples/s"
                        if progress:
                            progress.update(progress.task_ids[0], completed=step, info=info)
                        else:
                            print(f"  {desc} epoch {epoch} step {step}/{total_steps}  {info}", flush=True)
            train_time += time.perf_counter() - t0

            val = evaluate(model, val_set, cfg.eval_batch_size, accelerator, pad_id)
            val_metrics = classification_metrics(val_set.labels, val["logits"], label_names)
            entry = {"epoch": epoch, "train_loss": float(sums["ce"]) / n_batches,
                     "train_total_loss": float(sums["loss"]) / n_batches, "val_loss": val["loss"],
                     "val_accuracy": val_metrics["accuracy"], "val_macro_f1": val_metrics["macro_f1"]}
            for k in sums:
                if k not in ("loss", "ce"):
                    entry[f"train_{k}"] = float(sums[k]) / n_batches
            result.history.append(entry)
            log.write(json.dumps({"validation": entry}) + "\n")
            log.flush()
            score = val["loss"] if cfg.select_metric == "loss" else val_metrics[cfg.select_metric]
            line = (f"  {desc} epoch {epoch}: train CE {entry['train_loss']:.4f}  val loss {val['loss']:.4f}  "
                    f"val acc {val_metrics['accuracy']:.4f}  val macro-F1 {val_metrics['macro_f1']:.4f}")
            (progress.console.print if progress else print)(line)
            if _is_better(score, best_score, cfg.select_metric):
                best_score, since_best, result.selected_epoch = score, 0, epoch
                result.selected_val_logits = val["logits"]
                best_state = {k: v.detach().cpu().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
            else:
                since_best += 1
                if cfg.patience and since_best >= cfg.patience:
                    result.stopped_early = epoch < cfg.epochs
                    break
    if progress:
        progress.stop()
    accelerator.unwrap_model(model).load_state_dict(best_state)
    result.wall_time_s = time.perf_counter() - start
    result.samples_per_s = seen / train_time if train_time else 0.0
    return result
