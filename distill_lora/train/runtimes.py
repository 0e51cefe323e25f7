"""Every form of a classifier other than fp32 PyTorch, in one place: what this tool makes and runs to serve on a CPU.

- torch's dynamic int8 (`quantize_dynamic_int8`, `int8_size_bytes`): every nn.Linear with int8 weights, one scale per
  matrix; activations are quantised on the fly inside each Linear, with one scale per input tensor, so a text's
  logits would depend on the texts batched (and padded) with it (the report's test pass feeds one at a time).
- ONNX (`export_fp32`, `quantize_int8`, `write_onnx`): a plain classifier (a LoRA stage is merged first, by its
  caller) exported with torch.onnx (torch.export based; needs onnxscript), batch and sequence as dynamic axes, and
  its int8 copy by ONNX Runtime's dynamic quantisation (int8 weights of MatMul and embeddings, activations quantised
  per input tensor at run time).
- `OnnxModel` answers `model(input_ids=…, attention_mask=…).logits` as a transformers model does, so the test
  pass, the timings and `use.predict.Predictor` call it as they call the torch model.
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


# ---------------------------------------------------------------- torch dynamic int8

ZERO_POINT_BYTES, SCALE_BYTES = 1, 4  # per quantisation group: an int8 zero point and an fp32 scale


def quantized_engine() -> str:
    """The CPU kernel library for quantised ops: x86/fbgemm on Intel/AMD, qnnpack on ARM."""
    for engine in ("x86", "fbgemm", "qnnpack"):
        if engine in torch.backends.quantized.supported_engines:
            return engine
    raise UserError(
        "this torch build has no quantised CPU engine (x86, fbgemm or qnnpack); set report.quantize_int8: false"
    )


TORCH_AO_GONE = (
    "this torch ({version}) no longer has torch.ao.quantization's dynamic int8 (deprecated in favour of torchao, "
    "whose CPU int8 measured far slower here: docs/onnx.md); set report.quantize_int8: false, or install a torch "
    "that has it (2.13 does)"
)


def _dynamic_linear():
    try:
        from torch.ao.nn.quantized.dynamic import Linear
    except ImportError:
        raise UserError(TORCH_AO_GONE.format(version=torch.__version__)) from None
    return Linear


def quantize_dynamic_int8(model):
    """A new model: `model` (moved to the CPU, fp32, eval mode) with every nn.Linear as a dynamic int8 Linear."""
    torch.backends.quantized.engine = quantized_engine()
    model = model.cpu().float().eval()
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao (not a dependency here); it still works in the
        # torch versions we support, and its dynamic int8 Linear is exactly the CPU baseline wanted. torchao 0.18's
        # Int8DynamicActivationInt8WeightConfig measured far slower on the CPU (docs/onnx.md), so we keep this path
        # while torch has it; when torch drops it, the import above becomes a UserError, not a traceback
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        try:
            from torch.ao.quantization import quantize_dynamic
        except ImportError:
            raise UserError(TORCH_AO_GONE.format(version=torch.__version__)) from None
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)  # copies; `model` stays fp32


def int8_params(qmodel) -> int:
    """How many weights of a quantised model are int8 (those of its dynamic int8 Linears)."""
    dynamic_linear = _dynamic_linear()
    return sum(m.weight().numel() for m in qmodel.modules() if isinstance(m, dynamic_linear))


def int8_size_bytes(qmodel) -> int:
    """Bytes the quantised model needs, counted from its tensors (not from a pickle).

    Each quantised Linear: its int8 weights (1 byte each), per quantisation group (the whole matrix, or a
    row when per-channel) an fp32 scale and an int8 zero point, and its bias in fp32. Every other tensor
    of the state dict (embeddings, LayerNorm, …) at its own size. The output scale/zero point that torch
    stores on each dynamic Linear are not counted: dynamic quantisation never uses them.
    """
    dynamic_linear = _dynamic_linear()
    quantized = {name for name, m in qmodel.named_modules() if isinstance(m, dynamic_linear)}
    total = 0
    for name, m in qmodel.named_modules():
        if name in quantized:
            weight, bias = m._weight_bias()
            per_channel = weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
            groups = weight.q_per_channel_scales().numel() if per_channel else 1
            total += weight.numel() * weight.element_size() + groups * (SCALE_BYTES + ZERO_POINT_BYTES)
            total += 0 if bias is None else bias.numel() * 4
    for key, value in qmodel.state_dict().items():
        if key.rpartition(".")[0] in quantized or "_packed_params" in key:
            continue  # counted above
        if torch.is_tensor(value):
            total += value.numel() * value.element_size()
    return total


# ---------------------------------------------------------------- an export folder's ONNX files


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
