"""What a model costs: peak memory of a stage, inference latency and throughput, size on disk."""
from __future__ import annotations

import contextlib
import statistics
import threading
import time
from pathlib import Path

import torch

from .data import Encoded, make_collate


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


def state_dict_bytes(model) -> int:
    """Bytes of the tensors a saved model holds (its state dict): the fp32 size, counted like int8 sizes."""
    return sum(v.numel() * v.element_size() for v in model.state_dict().values() if torch.is_tensor(v))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def inference_speed(model, dataset: Encoded, accelerator, pad_id: int, n_single: int = 32,
                    n_batched: int = 512, batch_size: int = 64) -> dict:
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
    return {"latency_ms_batch1": 1000 * statistics.median(single), "throughput_batch64": m / elapsed,
            "measured_on": f"{len(single)} + {m} validation examples"}


def weights_size_bytes(folder: Path) -> int:
    """Bytes of the weight files a user must ship (adapter only for LoRA; base_model/ counted apart)."""
    return sum(p.stat().st_size for p in Path(folder).glob("*.safetensors"))
