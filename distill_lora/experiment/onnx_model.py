"""ONNX files of a classifier and the session that runs them: the one home of how this tool makes and runs ONNX.

`export_fp32` writes a plain classifier (a LoRA stage is merged first, by its caller) with torch.onnx's exporter
(torch.export based; needs onnxscript), batch and sequence as dynamic axes; `quantize_int8` makes an int8 copy
with ONNX Runtime's dynamic quantisation (int8 weights of MatMul and embeddings, activations quantised per input
tensor at run time, so a text's logits move with its batch mates: the report's test pass feeds one text at a time).
`OnnxModel` answers `model(input_ids=…, attention_mask=…).logits` as a transformers model does, so the
test pass, the timings and `use.predict.Predictor` call it as they call the torch model.
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
# backend name → the file it runs (an export folder's and an ONNX row's; torch: the safetensors weights, loaded by
# transformers). The names are predict's --backend choices and the ONNX rows' stage-id suffixes (stage_ids.py)
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


@contextmanager
def _quiet_export():
    """Hide three notes that would be noise in `export`'s output: torch.onnx's note that the two inputs share
    their axis names (they do, by design), its note that torchvision is not installed, and onnxruntime's advice,
    logged on the root logger, to pre-process image models before static quantisation (dynamic quantisation needs
    no calibration data or pre-processing)."""

    def not_advice(record: logging.LogRecord) -> bool:
        return "consider to run pre-processing" not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(not_advice)
    # torch.onnx's note, per export, that torchvision's ops cannot be registered (no model here uses them)
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*is deprecated.*")
            yield
    finally:
        root.removeFilter(not_advice)
        registration.setLevel(level)


def require_exporter(what: str):
    """onnxruntime, after checking that torch.onnx's exporter (onnxscript) is installed too: a one-line UserError."""
    ort = require_onnxruntime(what)
    try:
        import onnxscript  # noqa: F401  (torch.onnx's exporter builds the graph with it)
    except ImportError:
        raise UserError(f"{what} needs onnxscript (torch.onnx's exporter): pip install 'distill-lora[onnx]'") from None
    return ort


def export_fp32(model, tokenizer, path: Path) -> None:
    """`model` (a plain classifier) as one fp32 ONNX file, batch and sequence as dynamic axes."""
    model = model.cpu().float().eval()
    # an example batch of 2 texts × 7 tokens (distinct sizes, so neither axis is specialised to the other)
    example = tokenizer(["an example text", "another"], padding="max_length", max_length=7, return_tensors="pt")
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with _quiet_export():
        torch.onnx.export(
            model,
            (),
            str(path),
            kwargs={name: example[name] for name in INPUTS},
            input_names=list(INPUTS),
            output_names=["logits"],
            dynamic_shapes={name: {0: batch, 1: seq} for name in INPUTS},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # one self-contained file (fine below 2 GB: every encoder this tool trains)
            verbose=False,
        )


def quantize_int8(fp32_path: Path, int8_path: Path) -> None:
    """ONNX Runtime's dynamic quantisation: int8 weights for MatMul and the embedding Gathers, activations
    quantised per input at run time (no calibration data)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_export():
        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)


def int8_method(ort) -> str:
    return (
        f"onnxruntime {ort.__version__} quantize_dynamic: int8 weights (MatMul, embedding Gather), "
        "activations quantised per input at run time"
    )


class OnnxModel:
    """An ONNX Runtime session called like a transformers classifier: `model(input_ids=…, attention_mask=…).logits`."""

    def __init__(self, path: Path, threads: int | None = None):
        ort = require_onnxruntime("the ONNX backend")
        self.path = Path(path)
        options = ort.SessionOptions()
        # as many threads as torch uses here (ONNX Runtime's own default is every physical core): a CPU
        # comparison of the two backends then gives both the same cores
        options.intra_op_num_threads = threads or torch.get_num_threads()
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own error types for a bad or truncated file
            raise UserError(f"'{self.path}': ONNX Runtime cannot load it ({str(e).splitlines()[0][:200]})") from None

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, output_hidden_states: bool = False
    ) -> SimpleNamespace:
        if output_hidden_states:
            raise ValueError("an ONNX model returns logits only")
        feed = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        (logits,) = self.session.run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))

    def to(self, device):  # the session runs on the CPU; Predictor moves its model and inputs to its device
        return self

    def eval(self):
        return self
