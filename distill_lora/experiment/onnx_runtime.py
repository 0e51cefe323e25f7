"""ONNX Runtime rows: a trained stage as a CPU server would run it with ONNX Runtime (report.onnx_runtime).

Two rows per source (the teacher and each distilled student), each a DONE stage folder with metrics.json and
test_predictions.jsonl, tested once on the test split on the CPU and timed beside the fp32 PyTorch source:
    seed-S/<source>-onnx/        model.onnx       torch.onnx's export of the source folder (fp32)
    seed-S/<source>-onnx-int8/   model.int8.onnx  ONNX Runtime's dynamic int8 quantisation of that file
The files are kept: the two files `distill-lora export --onnx` writes (it adds the tokenizer and config that
predict and serve need). A row is reused while its source's weights and the exporter's and runtime's versions are
unchanged. The report compares each row with its source only (report/cpu_serving.py).
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import torch

from distill_lora.config import config_hash
from distill_lora.experiment.runs import stage_dir, write_test_predictions
from distill_lora.experiment.stage import run_stage
from distill_lora.files import make_temp_dir, read_json
from distill_lora.metrics import classification_metrics
from distill_lora.records import StageRecord
from distill_lora.stage_ids import onnx_id, train_section
from distill_lora.train import runtimes as onnx
from distill_lora.train import trainer
from distill_lora.train.costs import PeakMemory, PlainCpu, inference_speed, state_dict_bytes
from distill_lora.train.models import load_stage_model

EXPORT_VERSION, INT8_VERSION = "torch-onnx-dynamo-v1", "onnxruntime-dynamic-int8-v2"  # a change re-measures
BACKEND_WORDS = {"onnx": "ONNX Runtime fp32", "onnx-int8": "ONNX Runtime int8 dynamic quantisation"}


def run_onnx_rows(ctx, source: str) -> dict:
    """{stage id: metrics} of `source`'s two ONNX Runtime rows (fp32 first: the int8 file is made from it)."""
    ort = onnx.require_exporter("report.onnx_runtime")
    return {onnx_id(source, b): _run_backend(ctx, source, b, ort) for b in ("onnx", "onnx-int8")}


def _row_hash(ctx, source: str, backend: str, ort) -> str:
    """Reuse key: the source's config hash and weights (fp32), or the fp32 row's hash (int8), and the versions."""
    if backend == "onnx":
        src = read_json(stage_dir(ctx.output_dir, ctx.cfg.seed, source) / "metrics.json")
        what = {"source": src["config_hash"], "source_weights": src["weights_sha256"], "torch": torch.__version__}
        what.update(method=EXPORT_VERSION, opset=onnx.OPSET, onnxruntime=ort.__version__)
        return config_hash(what)
    fp32 = read_json(stage_dir(ctx.output_dir, ctx.cfg.seed, onnx_id(source, "onnx")) / "metrics.json")
    return config_hash({"source": fp32["config_hash"], "method": INT8_VERSION, "onnxruntime": ort.__version__})


def _run_backend(ctx, source: str, backend: str, ort) -> dict:
    src_dir = stage_dir(ctx.output_dir, ctx.cfg.seed, source)
    stage_id = onnx_id(source, backend)
    chash = _row_hash(ctx, source, backend, ort)

    def produce(_work):
        # the file is made and tested in a scratch folder beside the stage's (removed with the stage's
        # temporaries if this process dies), then moved into the new stage folder
        scratch = make_temp_dir(f".{stage_id}.tmp-scratch-", src_dir.parent)
        try:
            record, logits = _make_and_test(ctx, source, backend, scratch, ort)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        record.config_hash = chash
        labels = ctx.encoded["test"].labels

        def write_files(tmp):
            os.replace(scratch / onnx.BACKEND_FILES[backend], tmp / onnx.BACKEND_FILES[backend])
            shutil.rmtree(scratch, ignore_errors=True)
            if record.threshold is not None:
                shutil.copyfile(src_dir / "decision.json", tmp / "decision.json")
            write_test_predictions(tmp / "test_predictions.jsonl", labels, logits, record.threshold)

        t = record.test
        return (
            record,
            write_files,
            f"{BACKEND_WORDS[backend]} of {source}, {record.weights_bytes / 2**20:.1f} MiB; test accuracy "
            f"{t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}; max |Δlogit| vs PyTorch fp32 "
            f"{record.conversion['max_abs_logit_diff_vs_source']:.2e}",
        )

    return run_stage(ctx, stage_id, chash, produce, source, main_only=True)


def _make_and_test(ctx, source: str, backend: str, scratch, ort) -> tuple[StageRecord, np.ndarray]:
    """Write the backend's file into `scratch`, test it once on the CPU, time it beside its fp32 PyTorch source."""
    src_dir = stage_dir(ctx.output_dir, ctx.cfg.seed, source)
    src = read_json(src_dir / "metrics.json")
    cpu, path = PlainCpu(), scratch / onnx.BACKEND_FILES[backend]
    eval_batch = ctx.cfg.stage_train(train_section(source)).eval_batch_size
    labels, label_names = ctx.encoded["test"].labels, ctx.cfg.data.label_names
    with PeakMemory(cpu.device) as memory:
        fp32 = load_stage_model(src_dir).eval()
        t0 = time.perf_counter()
        if backend == "onnx":
            onnx.export_fp32(fp32, ctx.tokenizer, path)
        else:  # from the fp32 row's file, as a user quantising that file would
            onnx.quantize_int8(stage_dir(ctx.output_dir, ctx.cfg.seed, onnx_id(source, "onnx")) / onnx.ONNX_FILE, path)
        convert_s = time.perf_counter() - t0
        model = onnx.OnnxModel(path)
        # int8 quantises activations per input tensor: one text per batch, so no text's logits move with its
        # batch mates and their padding
        batch = eval_batch if backend == "onnx" else 1
        test = trainer.evaluate(model, ctx.encoded["test"], batch, cpu, ctx.pad_id, mixed=False)
    # the source's recorded test logits (its one test pass, fp32): how far the runtime moved them
    rows = (src_dir / "test_predictions.jsonl").read_text().splitlines()
    source_logits = np.array([json.loads(r)["logits"] for r in rows])
    record = StageRecord(
        stage=onnx_id(source, backend),
        model_type=f"{src['model_type']}, {BACKEND_WORDS[backend]}",
        exported_from=source,
        backend=backend,
        conversion={
            "method": (
                f"torch.onnx (dynamo) {torch.__version__}, opset {onnx.OPSET}"
                if backend == "onnx"
                else onnx.int8_method(ort)
            ),
            "runtime": f"onnxruntime {ort.__version__}, CPUExecutionProvider",
            "version": EXPORT_VERSION if backend == "onnx" else INT8_VERSION,
            "time_s": round(convert_s, 3),
            "max_abs_logit_diff_vs_source": float(np.abs(test["logits"] - source_logits).max()),
        },
        weights_saved=True,
        test=classification_metrics(labels, test["logits"], label_names),
        stopped_early=False,
        wall_time_s=round(src["wall_time_s"] + convert_s, 3),  # its source's training, then converting
        peak_memory_bytes=memory.peak_bytes,
        peak_memory_kind=memory.kind,
        depth=src["depth"],
        total_params=src["total_params"],
        trainable_params=src["trainable_params"],
        device=f"cpu ({torch.get_num_threads()} threads)",
        precision="fp32" if backend == "onnx" else "int8 weights, activations quantised per text",
        weights_bytes=path.stat().st_size,
        fp32_weights_bytes=state_dict_bytes(fp32),
        source_config_hash=src["config_hash"],
        teacher_layers=src.get("teacher_layers"),
    )
    if (src_dir / "decision.json").exists():  # the source's cut, tuned on its fp32 validation logits, unchanged
        record.threshold = read_json(src_dir / "decision.json")["threshold"]
        record.test_at_threshold = classification_metrics(labels, test["logits"], label_names, record.threshold)
    if ctx.cfg.report.measure_speed:  # the fp32 PyTorch source on the same CPU, right before
        record.fp32_cpu_inference = inference_speed(fp32, ctx.encoded["validation"], cpu, ctx.pad_id)
        record.inference = inference_speed(model, ctx.encoded["validation"], cpu, ctx.pad_id)
    return record, test["logits"]
