"""ONNX for CPU serving: write a stage as ONNX (fp32, and an int8 copy), and run it behind the torch model's call.

`write_onnx` exports a plain classifier (a LoRA stage is merged first, by export) with torch.onnx's exporter
(torch.export based; needs onnxscript) with batch and sequence as dynamic axes, then makes an int8 copy with
ONNX Runtime's dynamic quantisation (int8 weights of MatMul and embeddings, activations quantised per batch
at run time).
`OnnxModel` answers `model(input_ids=…, attention_mask=…).logits` as a transformers model does, so
`use.predict.Predictor` tokenises, pads and batches exactly as on the torch path and decides with the same rule.

Files in an export folder (named in export.json's "backends"): model.onnx (fp32) and model.int8.onnx (int8).
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import torch

from distill_lora.errors import UserError

ONNX_FILE, ONNX_INT8_FILE = "model.onnx", "model.int8.onnx"
# backend name → the file it runs in an export folder (torch: the safetensors weights, loaded by transformers)
BACKEND_FILES = {"torch": None, "onnx": ONNX_FILE, "onnx-int8": ONNX_INT8_FILE}
OPSET = 18
INPUTS = ("input_ids", "attention_mask")  # what the torch path feeds the model (Predictor.logits)


def require_onnxruntime(what: str):
    """The onnxruntime module, or a one-line UserError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError(f"{what} needs ONNX Runtime: pip install 'distill-lora[onnx]' (onnx, onnxruntime)") from None
    return onnxruntime


def check_backend(backend: str) -> str:
    if backend not in BACKEND_FILES:
        raise UserError(f"--backend {backend}: unknown; choose one of {', '.join(BACKEND_FILES)}")
    return backend


@contextmanager
def _quiet_export():
    """Hide two notes that would be noise in `export`'s output: torch.onnx's note that the two inputs share their
    axis names (they do, by design), and onnxruntime's advice, logged on the root logger, to pre-process image
    models before static quantisation (dynamic quantisation needs no calibration data or pre-processing)."""

    def not_advice(record: logging.LogRecord) -> bool:
        return "consider to run pre-processing" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(not_advice)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
            yield
    finally:
        root.removeFilter(not_advice)


def write_onnx(model, tokenizer, dest: Path) -> dict:
    """Write `model` (a plain classifier) as dest/model.onnx and its int8 copy dest/model.int8.onnx."""
    ort = require_onnxruntime("--onnx")
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter builds the graph with it)
    except ImportError:
        raise UserError("--onnx needs onnxscript (torch.onnx's exporter): pip install 'distill-lora[onnx]'") from None
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = model.cpu().float().eval()
    # an example batch of 2 texts × 7 tokens (distinct sizes, so neither axis is specialised to the other)
    example = tokenizer(["an example text", "another"], padding="max_length", max_length=7, return_tensors="pt")
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with _quiet_export():
        torch.onnx.export(
            model,
            (),
            str(dest / ONNX_FILE),
            kwargs={name: example[name] for name in INPUTS},
            input_names=list(INPUTS),
            output_names=["logits"],
            dynamic_shapes={name: {0: batch, 1: seq} for name in INPUTS},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # one self-contained file (fine below 2 GB: every encoder this tool trains)
            verbose=False,
        )
        # int8 weights for MatMul and the embedding Gathers; activations quantised per batch at run time
        quantize_dynamic(str(dest / ONNX_FILE), str(dest / ONNX_INT8_FILE), weight_type=QuantType.QInt8)
    return {
        "fp32": ONNX_FILE,
        "int8": ONNX_INT8_FILE,
        "opset": OPSET,
        "inputs": list(INPUTS),
        "dynamic_axes": ["batch", "sequence"],
        "exporter": f"torch.onnx (dynamo) {torch.__version__}",
        "int8_method": f"onnxruntime {ort.__version__} quantize_dynamic: int8 weights (MatMul, embedding Gather), "
        "activations quantised per batch at run time",
    }


class OnnxModel:
    """An ONNX Runtime session called like a transformers classifier: `model(input_ids=…, attention_mask=…).logits`."""

    def __init__(self, path: Path):
        ort = require_onnxruntime("the ONNX backend")
        self.path = Path(path)
        try:
            self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own error types for a bad or truncated file
            raise UserError(f"'{self.path}': ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]})") from None

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        feed = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        (logits,) = self.session.run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))

    def to(self, device):  # the session runs on the CPU; Predictor moves its model and inputs to its device
        return self

    def eval(self):
        return self
