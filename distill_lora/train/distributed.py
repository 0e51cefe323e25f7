"""Data-parallel runs (torchrun / accelerate launch): which process we are, and waiting for each other.

Each process trains on its share of every global batch (the batch the config names), so the global batch
order is the one a single process would see. Only the main process (rank 0) writes files; the others
wait at barriers and read what it wrote (one node, or a file system shared by the nodes). Below, accelerate's
side of it: the Accelerator of a stage, its mixed precision, the device in words, and fp32 inference of a model
prepared for mixed precision.
"""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def use_cpu() -> bool:
    """Train on the CPU: no GPU, or asked for with ACCELERATE_USE_CPU=1 (accelerate's own switch)."""
    return os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()


def init() -> None:
    """Join the process group when started by torchrun or accelerate launch (nothing to do otherwise)."""
    if world_size() > 1:
        from accelerate import PartialState

        # cpu=True matters: without it accelerate treats torchrun's CPU processes as separate single runs
        PartialState(cpu=use_cpu())  # starts the process group (gloo on CPU, nccl on GPU)


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def any_flag(flags: list[bool], device) -> list[bool]:
    """Flags (e.g. 'loss not finite', 'stop requested') raised in any process: every process acts alike."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return flags
    t = torch.tensor([float(f) for f in flags], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return [bool(x) for x in t.tolist()]


def shard(batch: list[int], process: int, n_processes: int) -> tuple[list[int], float]:
    """This process's part of a global batch, and the weight of its mean loss.

    DDP averages gradients over processes; weighting each process's mean loss by
    n_processes * its share of the batch makes that average the gradient of the global batch mean,
    also for a last batch that does not split evenly. A process whose share is empty still runs one
    example (every process must run backward) with weight 0.
    """
    part = batch[process::n_processes]
    if not part:
        return batch[:1], 0.0
    return part, n_processes * len(part) / len(batch)


# ---------------------------------------------------------------- accelerate


def mixed_precision_for(precision: str) -> str:
    """accelerate's mixed_precision for our precision setting, on this machine."""
    if precision == "auto":
        if not use_cpu():
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "no"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[precision]


def make_accelerator(precision: str = "auto", log_with: list | None = None) -> Accelerator:
    """An Accelerator for one stage. Gradient accumulation and data sharding are done by train() itself.

    log_with: accelerate trackers (made by the caller, which knows where they write); train() logs each step
    log line and each epoch's validation to them through accelerator.log, on the main process only.
    """
    # accelerate keeps process-wide singletons; each stage may want its own precision
    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(mixed_precision=mixed_precision_for(precision), cpu=use_cpu(), log_with=log_with)


def device_name(accelerator: Accelerator) -> str:
    name = (
        torch.cuda.get_device_name(accelerator.device)
        if accelerator.device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    return name if accelerator.num_processes == 1 else f"{accelerator.num_processes} processes × {name}"


def fp32_forward(model, accelerator: Accelerator):
    """The model's own forward, without the autocast that accelerator.prepare wraps around it in a mixed-precision
    run (an outer context cannot switch that off): fp32 inference of a model prepared for bf16/fp16 training."""
    inner = accelerator.unwrap_model(model)
    return getattr(inner, "_original_forward", inner)
