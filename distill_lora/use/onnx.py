"""ONNX for CPU serving: an export folder's ONNX files, and the backends predict and serve can answer with.

`write_onnx` writes a plain classifier (a LoRA stage is merged first, by export) as model.onnx (fp32) and
model.int8.onnx (ONNX Runtime's int8 dynamic quantisation of it), with experiment/onnx_model.py. The files of an
export folder are named in export.json's "backends".
"""

from __future__ import annotations

from pathlib import Path

import torch

from distill_lora.errors import UserError
from distill_lora.experiment.onnx_model import (
    BACKEND_FILES,
    INPUTS,
    ONNX_FILE,
    ONNX_INT8_FILE,
    OPSET,
    export_fp32,
    int8_method,
    quantize_int8,
    require_exporter,
)


def check_backend(backend: str) -> str:
    if backend not in BACKEND_FILES:
        raise UserError(f"--backend {backend}: unknown; choose one of {', '.join(BACKEND_FILES)}")
    return backend


def write_onnx(model, tokenizer, dest: Path) -> dict:
    """Write `model` (a plain classifier) as dest/model.onnx and its int8 copy dest/model.int8.onnx."""
    ort = require_exporter("--onnx")
    export_fp32(model, tokenizer, dest / ONNX_FILE)
    quantize_int8(dest / ONNX_FILE, dest / ONNX_INT8_FILE)
    return {
        "fp32": ONNX_FILE,
        "int8": ONNX_INT8_FILE,
        "opset": OPSET,
        "inputs": list(INPUTS),
        "dynamic_axes": ["batch", "sequence"],
        "exporter": f"torch.onnx (dynamo) {torch.__version__}",
        "int8_method": int8_method(ort),
    }
