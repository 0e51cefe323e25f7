"""CPU serving backends side by side: fp32 PyTorch, torch int8, torchao int8 (if installed), ONNX Runtime fp32/int8.

    python scripts/cpu_backends.py MODEL_FOLDER [--texts FILE.jsonl] [--repeats 7] [--out table.md]

MODEL_FOLDER: a finished stage or export folder (plain model or LoRA). The script exports it to a temporary
folder with `distill-lora export --onnx` (LoRA merged), then, in this one process and on the same texts
(the stage's test split unless --texts), measures per backend: weights size, median latency of a forward pass at
batch 1 and batch 64 (tokenised and padded once, outside the timing), and argmax agreement with fp32 PyTorch.
Prints a markdown table; name the machine when you quote it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distill_lora.config import load_config
from distill_lora.train.data import Encoded, Split, load_splits, make_collate
from distill_lora.train.runtimes import ONNX_FILE, ONNX_INT8_FILE, OnnxModel
from distill_lora.use.export import export_model
from distill_lora.use.predict import load_predictor


def batches(predictor, texts: list[str], size: int) -> list[dict]:
    """The texts as the predictor pads them (Predictor.logits), in batches of `size`."""
    encoded = Encoded(Split(list(texts), [0] * len(texts)), predictor.tokenizer, predictor.max_length)
    collate = make_collate(predictor.pad_id)
    return [collate([encoded[i] for i in range(s, min(s + size, len(encoded)))]) for s in range(0, len(encoded), size)]


@torch.inference_mode()
def logits_of(model, texts_batches: list[dict]) -> np.ndarray:
    out = [model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.float() for b in texts_batches]
    return torch.cat(out).numpy()


@torch.inference_mode()
def median_ms(models: dict, batch: dict, repeats: int) -> dict:
    """name → median ms of one forward pass; the backends take turns in every repeat, so that a busy machine's
    slow spells fall on all of them alike rather than on whichever ran then."""
    times = {name: [] for name in models}
    for r in range(repeats + 1):  # round 0 warms up
        for name, model in models.items():
            t0 = time.perf_counter()
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            if r:
                times[name].append(time.perf_counter() - t0)
    return {name: 1000 * statistics.median(t) for name, t in times.items()}


def torch_bytes(model) -> int:
    from distill_lora.train.costs import state_dict_bytes
    from distill_lora.train.runtimes import int8_size_bytes

    try:
        return int8_size_bytes(model)
    except Exception:  # not a torch.ao int8 model
        return state_dict_bytes(model)


def backends(export_dir: Path) -> dict:
    """name → (model, bytes) for every backend available here."""
    from distill_lora.train.models import load_stage_model
    from distill_lora.train.runtimes import quantize_dynamic_int8

    fp32 = load_stage_model(export_dir).eval()
    out = {"PyTorch fp32": (fp32, torch_bytes(fp32))}
    q = quantize_dynamic_int8(load_stage_model(export_dir))
    out["torch int8 (torch.ao dynamic)"] = (q, torch_bytes(q))
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

        tao = load_stage_model(export_dir).eval()
        quantize_(tao, Int8DynamicActivationInt8WeightConfig())
        out["torchao int8 (dynamic act + weight)"] = (tao, None)
    except ImportError:
        pass
    for name, file in (("ONNX Runtime fp32", ONNX_FILE), ("ONNX Runtime int8", ONNX_INT8_FILE)):
        out[name] = (OnnxModel(export_dir / file), (export_dir / file).stat().st_size)
    return out


def table(model_dir: Path, texts: list[str] | None, repeats: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        export_dir = Path(tmp) / "export"
        export_model(model_dir, export_dir, onnx=True, log=lambda line: print(line))
        predictor = load_predictor(export_dir, backend="torch", batch_size=64)
        if texts is None:
            texts = load_splits(load_config(str(model_dir / "config.yaml")).data).test.texts
        all_batches = batches(predictor, texts, 64)
        b1, b64 = batches(predictor, texts[:1], 1)[0], all_batches[0]
        rows, reference = [], None
        found = backends(export_dir)
        models = {name: model for name, (model, _) in found.items()}
        ms1, ms64 = median_ms(models, b1, repeats), median_ms(models, b64, repeats)
        for name, (model, size) in found.items():
            logits = logits_of(model, all_batches)
            reference = logits if reference is None else reference
            agree = float((logits.argmax(1) == reference.argmax(1)).mean())
            diff = float(np.abs(logits - reference).max())
            mb = "n/a" if size is None else f"{size / 2**20:.1f}"
            rows.append(f"| {name} | {mb} | {ms1[name]:.1f} | {ms64[name]:.0f} | {agree:.2%} | {diff:.2e} |")
    cpu = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    )
    head = (
        f"{len(texts)} texts, max_length {predictor.max_length}, batch 64 = the first 64 texts, median of {repeats} "
        f"(backends taking turns); "
        f"{cpu}\n\n| backend | weights MB | batch 1 ms | batch 64 ms | argmax = fp32 | max abs Δlogit |\n"
        "|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--texts", type=Path, help="a .txt/.jsonl/.csv of texts (default: the stage's test split)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    texts = None
    if args.texts:
        from distill_lora.use.predict import read_texts_file

        texts = read_texts_file(args.texts)
    result = table(args.model_dir, texts, args.repeats)
    print(result)
    if args.out:
        args.out.write_text(result + "\n")


if __name__ == "__main__":
    main()
