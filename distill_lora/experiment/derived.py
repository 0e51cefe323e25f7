"""Derived rows: a finished fp32 stage as a CPU server could run it, converted, tested once and timed on the CPU.

Three kinds, one skeleton (run_derived): each row is a DONE stage folder with metrics.json and
test_predictions.jsonl, tested once on the test split on the CPU and timed right after its fp32 PyTorch source on
the same CPU, so a speed ratio compares like with like.
    seed-S/<source>-int8/        torch dynamic int8 (report.quantize_int8): no weights saved; they are a
                                 deterministic function of the source folder,
                                 quantize_dynamic_int8(load_stage_model(source_folder)), so nothing is pickled
    seed-S/<source>-onnx/        model.onnx       torch.onnx's export of the source folder (report.onnx_runtime)
    seed-S/<source>-onnx-int8/   model.int8.onnx  ONNX Runtime's dynamic int8 quantisation of that file
The ONNX files are the two `distill-lora export --onnx` writes (it adds the tokenizer and config that predict and
serve need). A row is reused while its source's weights and the converter's versions are unchanged. The report
compares each row with its source only (report/verdicts.py, the serving family).

Dynamic int8 (torch or ONNX Runtime) gives nn.Linear / MatMul int8 weights and quantises activations on the fly,
with one scale per input tensor, so a text's logits would depend on the texts batched (and padded) with it: an
int8 row's test pass feeds one text at a time. Embeddings, LayerNorm and biases stay fp32.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from distill_lora.config import config_hash
from distill_lora.experiment.runs import stage_dir, write_test_predictions
from distill_lora.experiment.stage import run_stage
from distill_lora.files import make_temp_dir, read_json
from distill_lora.metrics import classification_metrics
from distill_lora.records import StageRecord
from distill_lora.stage_ids import int8_id, onnx_id, train_section
from distill_lora.train import runtimes, trainer
from distill_lora.train.costs import PeakMemory, PlainCpu, inference_speed, state_dict_bytes
from distill_lora.train.models import load_stage_model

# part of each row's config hash: a change here re-measures
QUANT_VERSION = "torch-dynamic-int8-v2"
EXPORT_VERSION, INT8_VERSION = "torch-onnx-dynamo-v1", "onnxruntime-dynamic-int8-v2"
BACKEND_WORDS = {"onnx": "ONNX Runtime fp32", "onnx-int8": "ONNX Runtime int8 dynamic quantisation"}
INT8_PRECISION = "int8 weights, activations quantised per text"


@dataclass
class Derivation:
    """What one kind of derived row does differently; everything else is run_derived's."""

    stage: str  # the row's stage id
    config_hash: str  # its reuse key
    words: str  # appended to the source's model type
    convert: Callable  # (fp32 source model, scratch folder) -> the model to test (a torch module or an OnnxModel)
    batch_size: int  # of the test pass: 1 for int8 (see the docstring)
    precision: str
    fields: Callable  # (converted model, seconds converting, test logits) -> the record's own fields
    kept_file: str | None = None  # a file `convert` writes into scratch, moved into the stage folder


def run_derived(ctx, source: str, d: Derivation) -> dict:
    """Convert the finished fp32 stage `source`, test the result once on the CPU and time both; write the row's
    stage folder through stage.run_stage (reused while d.config_hash is unchanged)."""
    src_dir = stage_dir(ctx.output_dir, ctx.cfg.seed, source)

    def produce(_work):
        # a file is made in a scratch folder beside the stage's (removed with the stage's temporaries if this
        # process dies), then moved into the new stage folder
        scratch = make_temp_dir(f".{d.stage}.tmp-scratch-", src_dir.parent)
        try:
            record, logits = _convert_and_test(ctx, source, d, scratch)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        record.config_hash = d.config_hash

        def write_files(tmp):
            if d.kept_file:
                os.replace(scratch / d.kept_file, tmp / d.kept_file)
            shutil.rmtree(scratch, ignore_errors=True)
            if record.threshold is not None:
                shutil.copyfile(src_dir / "decision.json", tmp / "decision.json")
            write_test_predictions(tmp / "test_predictions.jsonl", ctx.encoded["test"].labels, logits, record.threshold)

        t = record.test
        return (
            record,
            write_files,
            f"{d.words} of {source}: {record.weights_bytes / 2**20:.1f} MiB (fp32 tensors "
            f"{record.fp32_weights_bytes / 2**20:.1f} MiB); test accuracy {t['accuracy']:.4f}, macro-F1 "
            f"{t['macro_f1']:.4f} (fp32: {read_json(src_dir / 'metrics.json')['test']['macro_f1']:.4f})",
        )

    return run_stage(ctx, d.stage, d.config_hash, produce, source, main_only=True)


def _convert_and_test(ctx, source: str, d: Derivation, scratch) -> tuple[StageRecord, np.ndarray]:
    src_dir = stage_dir(ctx.output_dir, ctx.cfg.seed, source)
    src = read_json(src_dir / "metrics.json")
    cpu = PlainCpu()
    labels, label_names = ctx.encoded["test"].labels, ctx.cfg.data.label_names
    with PeakMemory(cpu.device) as memory:
        fp32 = load_stage_model(src_dir).eval()  # loaded in fp32
        t0 = time.perf_counter()
        model = d.convert(fp32, scratch)
        convert_s = time.perf_counter() - t0
        test = trainer.evaluate(model, ctx.encoded["test"], d.batch_size, cpu, ctx.pad_id, mixed=False)
    record = StageRecord(
        stage=d.stage,
        model_type=f"{src['model_type']}, {d.words}",
        test=classification_metrics(labels, test["logits"], label_names),
        stopped_early=False,
        # what it takes to obtain this model: its source's training, then converting it
        wall_time_s=round(src["wall_time_s"] + convert_s, 3),
        peak_memory_bytes=memory.peak_bytes,
        peak_memory_kind=memory.kind,
        depth=src["depth"],
        total_params=src["total_params"],
        trainable_params=src["trainable_params"],
        device=f"cpu ({torch.get_num_threads()} threads)",
        precision=d.precision,
        fp32_weights_bytes=state_dict_bytes(fp32),
        source_config_hash=src["config_hash"],
        teacher_layers=src.get("teacher_layers"),
        **d.fields(model, convert_s, test["logits"]),
    )
    # the source's decision threshold (tuned on its fp32 validation logits) applies unchanged, as a user
    # converting that model would apply it
    if (src_dir / "decision.json").exists():
        record.threshold = read_json(src_dir / "decision.json")["threshold"]
        record.test_at_threshold = classification_metrics(labels, test["logits"], label_names, record.threshold)
    if ctx.cfg.report.measure_speed:  # the fp32 PyTorch source on the same CPU, right before its copy
        record.fp32_cpu_inference = inference_speed(fp32, ctx.encoded["validation"], cpu, ctx.pad_id)
        record.inference = inference_speed(model, ctx.encoded["validation"], cpu, ctx.pad_id)
    return record, test["logits"]


def run_int8(ctx, source: str) -> dict:
    """`source` with torch's dynamic int8 weights (report.quantize_int8): the cheapest baseline beside distillation."""
    src_dir = stage_dir(ctx.output_dir, ctx.cfg.seed, source)
    src = read_json(src_dir / "metrics.json")
    engine = runtimes.quantized_engine()
    chash = config_hash(
        {
            "source": src["config_hash"],
            "source_weights": src["weights_sha256"],
            "method": QUANT_VERSION,
            "engine": engine,
        }
    )

    def fields(qmodel, convert_s, _logits) -> dict:
        return {
            "quantized_from": source,
            "quantization": {
                "method": "torch dynamic int8: nn.Linear weights int8 (per tensor), activations "
                "quantised per input at run time (test texts fed one at a time); embeddings, LayerNorm, biases fp32",
                "engine": torch.backends.quantized.engine,
                "version": QUANT_VERSION,
                "quantize_time_s": round(convert_s, 3),
            },
            "weights_saved": False,
            "weights_note": "not saved: rebuilt deterministically by distill_lora.train.runtimes.quantize_dynamic_int8("
            f"distill_lora.train.models.load_stage_model('{src_dir}'))",
            "int8_params": runtimes.int8_params(qmodel),
            "weights_bytes": runtimes.int8_size_bytes(qmodel),
        }

    words = "int8 dynamic quantisation"
    convert = lambda fp32, _scratch: runtimes.quantize_dynamic_int8(fp32)  # noqa: E731
    return run_derived(ctx, source, Derivation(int8_id(source), chash, words, convert, 1, INT8_PRECISION, fields))


def run_onnx_rows(ctx, source: str) -> dict:
    """{stage id: metrics} of `source`'s two ONNX Runtime rows (report.onnx_runtime; fp32 first: the int8 file is
    made from it)."""
    ort = runtimes.require_exporter("report.onnx_runtime")
    return {onnx_id(source, b): run_derived(ctx, source, _onnx_row(ctx, source, b, ort)) for b in ("onnx", "onnx-int8")}


def _onnx_row(ctx, source: str, backend: str, ort) -> Derivation:
    src_dir = stage_dir(ctx.output_dir, ctx.cfg.seed, source)
    fp32_dir = stage_dir(ctx.output_dir, ctx.cfg.seed, onnx_id(source, "onnx"))
    file = runtimes.BACKEND_FILES[backend]
    if backend == "onnx":
        src = read_json(src_dir / "metrics.json")
        what = {"source": src["config_hash"], "source_weights": src["weights_sha256"], "torch": torch.__version__}
        chash = config_hash({**what, "method": EXPORT_VERSION, "opset": runtimes.OPSET, "onnxruntime": ort.__version__})
    else:  # made from the fp32 row's file, as a user quantising that file would
        fp32_hash = read_json(fp32_dir / "metrics.json")["config_hash"]
        chash = config_hash({"source": fp32_hash, "method": INT8_VERSION, "onnxruntime": ort.__version__})

    def convert(fp32, scratch):
        if backend == "onnx":
            runtimes.export_fp32(fp32, ctx.tokenizer, scratch / file)
        else:
            runtimes.quantize_int8(fp32_dir / runtimes.ONNX_FILE, scratch / file)
        return runtimes.OnnxModel(scratch / file)

    def fields(model, convert_s, logits) -> dict:
        rows = (src_dir / "test_predictions.jsonl").read_text().splitlines()
        source_logits = np.array([json.loads(r)["logits"] for r in rows])  # the source's one (fp32) test pass
        return {
            "exported_from": source,
            "backend": backend,
            "conversion": {
                "method": (
                    f"torch.onnx (dynamo) {torch.__version__}, opset {runtimes.OPSET}"
                    if backend == "onnx"
                    else runtimes.int8_method(ort)
                ),
                "runtime": f"onnxruntime {ort.__version__}, CPUExecutionProvider",
                "version": EXPORT_VERSION if backend == "onnx" else INT8_VERSION,
                "time_s": round(convert_s, 3),
                "max_abs_logit_diff_vs_source": float(np.abs(logits - source_logits).max()),
            },
            "weights_saved": True,
            "weights_bytes": model.path.stat().st_size,
        }

    batch = ctx.cfg.stage_train(train_section(source)).eval_batch_size if backend == "onnx" else 1
    precision = "fp32" if backend == "onnx" else INT8_PRECISION
    return Derivation(onnx_id(source, backend), chash, BACKEND_WORDS[backend], convert, batch, precision, fields, file)
