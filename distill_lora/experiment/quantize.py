"""int8 dynamic quantisation: the cheapest baseline beside distillation — the same model with int8 weights.

Post-training dynamic quantisation (torch): every nn.Linear gets int8 weights (one scale per weight
matrix); activations are quantised on the fly inside each Linear, with one scale per input tensor, so a text's
logits would depend on the texts batched (and padded) with it: the test pass feeds one text at a time. Embeddings,
LayerNorm and biases stay fp32. It needs no data and no training, and runs on the CPU only.

An int8 row is a normal DONE stage folder `seed-S/<source>-int8/` with metrics.json and
test_predictions.jsonl, but without weights: they are a deterministic function of the fp32 source
folder, `quantize_dynamic_int8(load_stage_model(source_folder))`, so nothing is pickled or saved.
"""

from __future__ import annotations

import shutil
import time

import torch

from distill_lora.config import config_hash
from distill_lora.experiment.runs import stage_dir, write_test_predictions
from distill_lora.experiment.stage import run_stage
from distill_lora.files import read_json
from distill_lora.metrics import classification_metrics
from distill_lora.records import StageRecord
from distill_lora.stage_ids import int8_id
from distill_lora.train import trainer
from distill_lora.train.costs import PeakMemory, PlainCpu, inference_speed, state_dict_bytes
from distill_lora.train.models import load_stage_model
from distill_lora.train.runtimes import int8_params, int8_size_bytes, quantize_dynamic_int8, quantized_engine

QUANT_VERSION = "torch-dynamic-int8-v2"  # part of the int8 stage's config hash: a change here re-measures


def int8_hash(source: dict) -> str:
    """Reuse key of an int8 stage: its source's config hash and weights, the method, and the kernel library."""
    return config_hash(
        {
            "source": source["config_hash"],
            "source_weights": source["weights_sha256"],
            "method": QUANT_VERSION,
            "engine": quantized_engine(),
        }
    )


def run_int8(ctx, source: str) -> dict:
    """Quantise the finished fp32 stage `source`, test it once on the CPU, time it beside its fp32 source.

    Writes `seed-S/<source>-int8/` (metrics.json, test_predictions.jsonl, config.yaml, DONE) through
    stage.run_stage; reused when its source is unchanged.
    """
    src_dir = stage_dir(ctx.output_dir, ctx.cfg.seed, source)
    src = read_json(src_dir / "metrics.json")
    stage_id = int8_id(source)

    def produce(_work):
        record, test_logits = _quantise_and_test(ctx, source, src)
        record.config_hash = chash
        labels = ctx.encoded["test"].labels

        def write_files(tmp):
            if record.threshold is not None:
                shutil.copyfile(src_dir / "decision.json", tmp / "decision.json")
            write_test_predictions(tmp / "test_predictions.jsonl", labels, test_logits, record.threshold)

        t, s = record.test, src["test"]
        return (
            record,
            write_files,
            (
                f"{record.fp32_weights_bytes / record.weights_bytes:.1f}x smaller than "
                f"{source}; test accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f} "
                f"(fp32: {s['macro_f1']:.4f})"
            ),
        )

    chash = int8_hash(src)
    return run_stage(ctx, stage_id, chash, produce, source, main_only=True)


def _quantise_and_test(ctx, source: str, src: dict) -> tuple[StageRecord, object]:
    """The int8 copy of stage `source` (metrics `src`), its one test pass and timings: (record, test logits)."""
    src_dir = stage_dir(ctx.output_dir, ctx.cfg.seed, source)
    cpu = PlainCpu()
    labels, label_names = ctx.encoded["test"].labels, ctx.cfg.data.label_names
    with PeakMemory(cpu.device) as memory:
        fp32 = load_stage_model(src_dir).eval()  # loaded in fp32
        t0 = time.perf_counter()
        qmodel = quantize_dynamic_int8(fp32)
        quantize_s = time.perf_counter() - t0
        # the one pass over the test split, one text per batch: activation scales are taken per input tensor, so
        # in a batch a text's logits would move with its batch mates and their padding
        test = trainer.evaluate(qmodel, ctx.encoded["test"], 1, cpu, ctx.pad_id, mixed=False)
    record = StageRecord(
        stage=int8_id(source),
        model_type=f"{src['model_type']}, int8 dynamic quantisation",
        quantized_from=source,
        quantization={
            "method": "torch dynamic int8: nn.Linear weights int8 (per tensor), activations "
            "quantised per input at run time (test texts fed one at a time); embeddings, LayerNorm, biases fp32",
            "engine": torch.backends.quantized.engine,
            "version": QUANT_VERSION,
            "quantize_time_s": round(quantize_s, 3),
        },
        weights_saved=False,
        weights_note=f"not saved: rebuilt deterministically by distill_lora.train.runtimes.quantize_dynamic_int8("
        f"distill_lora.train.models.load_stage_model('{src_dir}'))",
        test=classification_metrics(labels, test["logits"], label_names),
        stopped_early=False,
        # what it takes to obtain this model: its source's training, then quantising it
        wall_time_s=round(src["wall_time_s"] + quantize_s, 3),
        peak_memory_bytes=memory.peak_bytes,
        peak_memory_kind=memory.kind,
        depth=src["depth"],
        total_params=src["total_params"],
        trainable_params=src["trainable_params"],
        int8_params=int8_params(qmodel),
        device=f"cpu ({torch.get_num_threads()} threads)",
        precision="int8 weights, activations quantised per text",
        weights_bytes=int8_size_bytes(qmodel),
        fp32_weights_bytes=state_dict_bytes(fp32),
        source_config_hash=src["config_hash"],
        teacher_layers=src.get("teacher_layers"),
    )
    # the source's decision threshold (tuned on its fp32 validation logits) applies unchanged, as a user
    # quantising that model would apply it
    if (src_dir / "decision.json").exists():
        record.threshold = read_json(src_dir / "decision.json")["threshold"]
        record.test_at_threshold = classification_metrics(labels, test["logits"], label_names, record.threshold)
    if ctx.cfg.report.measure_speed:
        # the fp32 source on the same CPU, right before its int8 copy: the ratio compares like with like
        record.fp32_cpu_inference = inference_speed(fp32, ctx.encoded["validation"], cpu, ctx.pad_id)
        record.inference = inference_speed(qmodel, ctx.encoded["validation"], cpu, ctx.pad_id)
    return record, test["logits"]
