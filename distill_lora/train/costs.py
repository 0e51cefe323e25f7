"""What a model costs: peak memory of a stage, inference latency and throughput, size on disk."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from pathlib import Path

import torch

from distill_lora.train.data import Encoded, make_collate


class PeakMemory:
    """Peak memory while the block runs: CUDA allocator peak on GPU, sampled process RSS on CPU.

    On CPU the process's lifetime maximum would include earlier stages, so RSS is sampled from a
    thread only while this block runs.
    """

    def __init__(self, device: torch.device, interval_s: float = 0.05):
        self.device, self.interval_s, self.peak_bytes = device, interval_s, 0
        self._stop = threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            import psutil

            process = psutil.Process()

            def sample():
                while not self._stop.is_set():
                    self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)
                    self._stop.wait(self.interval_s)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
        return False

    @property
    def kind(self) -> str:
        return "cuda max allocated" if self.device.type == "cuda" else "process RSS (sampled during the stage)"


class PlainCpu:
    """A single-process, fp32 CPU stand-in for an Accelerator (for trainer.evaluate and inference_speed).

    For measuring a model on the CPU (int8 rows, and their fp32 source beside them) whatever trained it: a
    real Accelerator would pick the GPU, touch accelerate's global state, and in a data-parallel run shard
    the data across processes while only the main process measures.
    """

    device = torch.device("cpu")
    num_processes = 1

    def autocast(self):
        return contextlib.nullcontext()

    def prepare_data_loader(self, loader):
        return loader

    def gather_for_metrics(self, tensor):
        return tensor

    def unwrap_model(self, model):  # nothing was prepared: the model is its own
        return model


def state_dict_bytes(model) -> int:
    """Bytes of the tensors a saved model holds (its state dict): the fp32 size, counted like int8 sizes."""
    return sum(v.numel() * v.element_size() for v in model.state_dict().values() if torch.is_tensor(v))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def inference_speed(
    model, dataset: Encoded, accelerator, pad_id: int, n_single: int = 32, n_batched: int = 512, batch_size: int = 64
) -> dict:
    """Latency per example at batch 1 (median ms) and throughput at batch 64 (examples/s)."""
    model.eval()
    device = accelerator.device
    collate = make_collate(pad_id)

    def forward(items):
        batch = collate(items)
        with accelerator.autocast():
            model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))

    n = len(dataset)
    forward([dataset[i] for i in range(min(4, n))])  # warm-up
    single = []
    for i in range(min(n_single, n)):
        _sync(device)
        t0 = time.perf_counter()
        forward([dataset[i]])
        _sync(device)
        single.append(time.perf_counter() - t0)
    m = min(n_batched, n)
    _sync(device)
    t0 = time.perf_counter()
    for start in range(0, m, batch_size):
        forward([dataset[i] for i in range(start, min(start + batch_size, m))])
    _sync(device)
    elapsed = time.perf_counter() - t0
    return {
        "latency_ms_batch1": 1000 * statistics.median(single),
        "throughput_batch64": m / elapsed,
        "measured_on": f"{len(single)} + {m} validation examples",
    }


def weights_size_bytes(folder: Path) -> int:
    """Bytes of the weight files a user must ship (adapter only for LoRA; base_model/ counted apart)."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))


def _forward_timer(model, dataset: Encoded, device: torch.device, pad_id: int):
    """forward(indices) -> seconds for one fp32 forward pass over those examples, synchronised on a GPU."""
    collate = make_collate(pad_id)

    def forward(indices) -> float:
        batch = collate([dataset[i] for i in indices])
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        _sync(device)
        t0 = time.perf_counter()
        model(input_ids=ids, attention_mask=mask)
        _sync(device)
        return time.perf_counter() - t0

    return forward


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


@torch.inference_mode()
def time_together(
    models: dict,
    dataset: Encoded,
    pad_id: int,
    repeats: int = 5,
    n_single: int = 16,
    n_batched: int = 128,
    batch_size: int = 64,
    log=None,
) -> dict:
    """Time several models on the same inputs, interleaved: {name: latency and throughput, median [min, max]}.

    models: name -> (model, torch.device). Each repeat times every model once, in an order rotated by one per
    repeat, so a busy spell of a shared machine falls on all models, not on whichever ran then; one warm-up
    pass per model first. Per repeat: latency = median ms of n_single batch-1 passes; throughput = examples/s
    over the first n_batched examples in batches of batch_size. Reported: the median over repeats, with the
    smallest and largest repeat as its spread. log(line), when given, hears after each repeat how far it is.
    """
    names = list(models)
    n = len(dataset)
    timers = {}
    for name, (model, device) in models.items():
        model.eval()
        timers[name] = _forward_timer(model, dataset, device, pad_id)
        timers[name](range(min(4, n)))  # warm-up: first-call allocations and kernel selection
    latency = {name: [] for name in names}
    throughput = {name: [] for name in names}
    m = min(n_batched, n)
    start = time.perf_counter()
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            forward = timers[name]
            latency[name].append(1000 * statistics.median(forward([i]) for i in range(min(n_single, n))))
            seconds = sum(forward(range(s, min(s + batch_size, m))) for s in range(0, m, batch_size))
            throughput[name].append(m / seconds)
        if log:
            took = time.perf_counter() - start
            log(
                f"repeat {r + 1}/{repeats} of {len(names)} models done after {took:.0f} s; about "
                f"{took / (r + 1) * (repeats - r - 1):.0f} s left"
            )
    return {
        name: {
            "device": device_label(models[name][1]),
            "latency_ms_batch1": _spread(latency[name]),
            "throughput_batch64": _spread(throughput[name]),
        }
        for name in names
    }


def device_label(device: torch.device) -> str:
    """'cpu (4 threads)' or the GPU's name: how the report names where a timing was made."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
