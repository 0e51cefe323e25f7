"""Every model of a run timed together at the end, so that the report's latencies compare like with like.

A stage's own timing (metrics.json "inference") is made right after it trained, under whatever else the
machine was doing then; these timings are made in one sitting, interleaved, on the same inputs, and go
into results.json under "timings" with the device they were made on.
"""

from __future__ import annotations

from pathlib import Path

import torch

from distill_lora.experiment.runs import stage_dir
from distill_lora.experiment.stage import say
from distill_lora.train.costs import device_label, time_together
from distill_lora.train.data import Encoded
from distill_lora.train.models import load_stage_model


def timed_stages(comparison: dict) -> dict:
    """stage -> metrics of the timed (first) seed: every row of the report, and the ONNX Runtime rows."""
    seed = str(comparison["seeds"][0])
    return {**comparison["per_seed"][seed], **comparison.get("onnx_runtime", {}).get(seed, {})}


def fingerprint(comparison: dict) -> dict:
    """What the timings depend on: the weights of each stage of the timed (first) seed."""
    return {
        # an ONNX row's config hash names its file (its source's weights and the exporter's version)
        stage: m.get("weights_sha256")
        or (m.get("exported_from") and m.get("config_hash"))
        or m.get("source_config_hash")
        or m.get("config_hash")
        for stage, m in timed_stages(comparison).items()
    }


def models_to_time(run_dir: Path, seed: int, stages: dict, device: torch.device) -> dict:
    """name -> (model, device): fp32 stages on `device`; int8 rows (quantised again from their source) and ONNX
    Runtime rows (their saved file) on the CPU, and, when `device` is not the CPU, their fp32 sources on the CPU
    as well (named 'SOURCE (fp32 on CPU)') so a CPU row's speed-up compares two models on one CPU."""
    from distill_lora.train.runtimes import OnnxModel, quantize_dynamic_int8

    cpu = torch.device("cpu")
    models = {}
    for stage, m in stages.items():
        source = m.get("quantized_from") or m.get("exported_from")
        if source:
            # the fp32 source is loaded only where it is needed: to quantise (int8), or to time it on the CPU
            fp32 = None
            if m.get("exported_from"):
                (file,) = stage_dir(run_dir, seed, stage).glob("*.onnx")
                models[stage] = (OnnxModel(file), cpu)
            else:
                fp32 = load_stage_model(stage_dir(run_dir, seed, source)).eval()
                models[stage] = (quantize_dynamic_int8(fp32), cpu)
            if device.type != "cpu" and f"{source} (fp32 on CPU)" not in models:
                if fp32 is None:
                    fp32 = load_stage_model(stage_dir(run_dir, seed, source)).eval()
                models[f"{source} (fp32 on CPU)"] = (fp32, cpu)
        else:
            models[stage] = (load_stage_model(stage_dir(run_dir, seed, stage)).to(device), device)
    return models


def time_run(
    run_dir: Path,
    comparison: dict,
    dataset: Encoded,
    pad_id: int,
    device: torch.device,
    previous: dict | None = None,
    repeats: int = 5,
) -> dict:
    """results.json's "timings": every model of the first seed timed together; `previous` is kept unchanged
    when it timed exactly these weights (a no-op re-run keeps the device its timings were made on)."""
    fp = fingerprint(comparison)
    if previous and previous.get("fingerprint") == fp:
        return previous
    seed = comparison["seeds"][0]
    say(
        f"[timing] every model of seed {seed} together on {device_label(device)}: loading them, then {repeats} "
        "interleaved repeats (16 texts one at a time, 128 in batches of 64)"
    )
    models = models_to_time(Path(run_dir), seed, timed_stages(comparison), device)
    timed = time_together(models, dataset, pad_id, repeats=repeats, log=lambda line: say(f"[timing] {line}"))
    return {
        "fingerprint": fp,
        "seed": seed,
        "repeats": repeats,
        "device": device_label(device),
        "inputs": f"the first {min(16, len(dataset))} validation examples one at a time, and the first "
        f"{min(128, len(dataset))} in batches of 64",
        "models": timed,
    }
