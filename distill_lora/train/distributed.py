"""Data-parallel runs (torchrun / accelerate launch): which process we are, and waiting for each other.

Each process trains on its share of every global batch (the batch the config names), so the global batch
order is the one a single process would see. Only the main process (rank 0) writes files; the others
wait at barriers and read what it wrote (one node, or a file system shared by the nodes).
"""

from __future__ import annotations

import os

import torch


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
