"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint folder holds the model, AdamW's state, the scheduler's counters, the RNG states and the
loop's own position, so a resumed run continues exactly where the interrupted one stopped. Beside the
checkpoints, the weights of the best epoch so far (best-epoch-E.safetensors, with its validation logits): what
the stage saves and tests at the end.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from distill_lora.errors import UserError
from distill_lora.files import atomic_write_json, writing
from distill_lora.train import distributed


def _optimizer_to_files(optimizer) -> tuple[dict, dict]:
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_files(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for key, value in meta["scalars"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict, dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    return tensors, meta


def _set_rng_state(tensors: dict, meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def save(folder: Path, model, optimizer, scheduler, loop_state: dict) -> None:
    """Write a checkpoint into a temporary folder, then rename it to `folder` (never half-written)."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with writing(folder):  # a full disk: one line naming the checkpoint, and the stage resumes from the last one
        save_file(tensors_to_save(model), tmp / "model.safetensors")
        opt_tensors, opt_meta = _optimizer_to_files(optimizer)
        save_file(opt_tensors, tmp / "optimizer.safetensors")
        rng_tensors, rng_meta = _rng_state()
        save_file(rng_tensors, tmp / "rng.safetensors")
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    atomic_write_json(
        tmp / "state.json", {"loop": loop_state, "optimizer": opt_meta, "scheduler": sched, "rng": rng_meta}
    )
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)


def load(folder: Path, model, optimizer, scheduler) -> dict:
    """Restore model, optimizer, scheduler and RNG from `folder`; return the loop state."""
    folder = Path(folder)
    meta = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    model.load_state_dict(load_file(folder / "model.safetensors"))
    optimizer.load_state_dict(_optimizer_from_files(load_file(folder / "optimizer.safetensors"), meta["optimizer"]))
    sched = scheduler.state_dict()
    sched.update(meta["scheduler"])
    scheduler.load_state_dict(sched)
    _set_rng_state(load_file(folder / "rng.safetensors"), meta["rng"])
    return meta["loop"]


def latest(work_dir: Path) -> Path | None:
    """The newest complete checkpoint in a stage's work folder."""
    found = [p for p in Path(work_dir).glob("checkpoint-*") if (p / "state.json").exists() and ".tmp-" not in p.name]
    return max(found, key=lambda p: int(p.name.split("-")[1]), default=None)


def prune(work_dir: Path, keep: Path) -> None:
    """Keep only the newest checkpoint (the best weights live apart, in best-epoch-E.safetensors)."""
    for p in Path(work_dir).glob("checkpoint-*"):
        if p != keep:
            shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------- the best epoch's weights


def tensors_to_save(model) -> dict:
    """The model's tensors on the CPU, with a copy of its own for each name whose storage an earlier name already
    uses (VeRA shares its projection matrices between layers): safetensors refuses tensors that share memory."""
    out, seen = {}, set()
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        storage = v.untyped_storage().data_ptr()
        out[k] = v.clone() if storage in seen else v
        seen.add(storage)
    return out


def best_path(work_dir: Path, epoch: int) -> Path:
    return work_dir / f"best-epoch-{epoch:04d}.safetensors"


def save_best(work_dir: Path, model, val_logits, epoch: int) -> None:
    """The weights of a new best epoch, in a file named by that epoch. The previous best stays until a checkpoint
    records the new choice: a run killed in between resumes with the epoch its checkpoint names, and that
    epoch's weights (a re-run of the epoch need not be better again on a non-deterministic GPU)."""
    if distributed.is_main():
        state = tensors_to_save(model)
        state["__val_logits__"] = torch.as_tensor(val_logits).contiguous()
        tmp = work_dir / f".best.tmp-{os.getpid()}.safetensors"
        with writing(best_path(work_dir, epoch)):
            save_file(state, tmp, metadata={"epoch": str(epoch)})
        os.replace(tmp, best_path(work_dir, epoch))
    distributed.barrier()


def prune_best(work_dir: Path, selected_epoch: int) -> None:
    """After a checkpoint: only the selected epoch's weights are still needed."""
    for path in work_dir.glob("best-epoch-*.safetensors"):
        if path != best_path(work_dir, selected_epoch):
            path.unlink(missing_ok=True)


def load_best(work_dir: Path, model, epoch: int):
    """Load the selected epoch's weights into `model`; returns the validation logits saved with them."""
    path = best_path(work_dir, epoch)
    with safe_open(path, "pt") as fh:
        saved = int(fh.metadata()["epoch"])
    if saved != epoch:  # a file renamed or mixed up by hand: never test weights of another epoch
        raise UserError(
            f"{path} holds epoch {saved}, not the selected epoch {epoch}; delete {work_dir} and train again"
        )
    state = load_file(path)
    logits = state.pop("__val_logits__").numpy()
    model.load_state_dict(state)
    return logits
