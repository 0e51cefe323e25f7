"""Use a trained model: find a stage folder, load it, tokenise, batch, give every class its probability.

The one inference path: `distill-lora predict`, `export` (its merge check) and `serve` all go through
`Predictor`, so each of them answers exactly what the evaluated stage folder answered on the test split.

A model folder is either a finished stage (`RUN_DIR/seed-S/<stage-id>/`, with `DONE`) or a folder
written by `distill-lora export` (with `export.json`); both hold `config.yaml` (the run's resolved
config: max_length, label names, text column) and, for two classes only, maybe `decision.json` =
{"threshold": t}. Any number of classes (`data.label_names`): a prediction names the label and gives every
class's probability; with two classes it also keeps p(positive) (class 1), the field binary clients read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from distill_lora.config import load_config
from distill_lora.errors import UserError
from distill_lora.experiment.runs import DONE
from distill_lora.files import read_json

EXPORT_MARKER = "export.json"
DECISION_FILE = "decision.json"
POSITIVE = 1  # index of the positive class (e.g. "toxic") when there are two classes
_SEED_DIR = re.compile(r"^seed-(\d+)$")


# ---------------------------------------------------------------- finding the model folder


def is_model_folder(path: Path) -> bool:
    """A finished stage or a finished export (both markers are written last)."""
    return (path / DONE).exists() or (path / EXPORT_MARKER).exists()


def _looks_like_model_folder(path: Path) -> bool:
    return (path / "config.json").exists() or (path / "adapter_config.json").exists()


def _seeds(run_dir: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in run_dir.iterdir() if p.is_dir() and (m := _SEED_DIR.match(p.name)))


def _finished_stages(seed_path: Path) -> list[str]:
    return (
        sorted(p.name for p in seed_path.iterdir() if p.is_dir() and (p / DONE).exists()) if seed_path.is_dir() else []
    )


def find_model_dir(run_dir: str | Path, stage_id: str | None = None, seed: int | None = None) -> Path:
    """RUN_DIR (+ stage id, seed) → the model folder to load; RUN_DIR may also be a model folder itself.

    Default stage: teacher. Default seed: the smallest seed that has the stage finished.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"'{run_dir}' is not a folder; give a run folder (with seed-S/ inside) or a model folder")
    if is_model_folder(run_dir) or _looks_like_model_folder(run_dir):
        if stage_id is not None or seed is not None:
            raise UserError(
                f"'{run_dir}' is a model folder itself; drop --stage and --trained-seed, or give its run folder"
            )
        return _check_finished(run_dir)
    seeds = _seeds(run_dir)
    if not seeds:
        raise UserError(f"'{run_dir}' holds no seed-S/ folders; is it a run folder (the output_dir of a run)?")
    stage_id = stage_id or "teacher"
    if seed is None:  # the smallest seed where this stage finished (else the smallest, to name what is there)
        seed = next((s for s in seeds if (run_dir / f"seed-{s}" / stage_id / DONE).exists()), seeds[0])
    elif seed not in seeds:
        raise UserError(f"--trained-seed {seed}: '{run_dir}' has seeds {', '.join(map(str, seeds))}")
    path = run_dir / f"seed-{seed}" / stage_id
    if not path.exists():
        have = _finished_stages(run_dir / f"seed-{seed}")
        raise UserError(
            f"--stage {stage_id}: no such stage in {run_dir}/seed-{seed}; "
            f"finished stages there: {', '.join(have) or 'none'}"
        )
    return _check_finished(path)


def _check_finished(path: Path, require_marker: bool = True) -> Path:
    source = _int8_source(path)
    if source:
        raise UserError(
            f"'{path}' is an int8 row measured from {source} and holds no weights; use --stage {source} "
            "or quantise it yourself (distill_lora.train.runtimes.quantize_dynamic_int8)"
        )
    if require_marker and not is_model_folder(path):
        raise UserError(
            f"'{path}' is not a finished stage (no {DONE} file): it was interrupted or is still "
            "training; run its command again, or pick a finished stage"
        )
    if not (path / "config.yaml").exists():
        raise UserError(f"'{path}' has no config.yaml, so its max_length and label names are unknown")
    return path


def _int8_source(path: Path) -> str | None:
    """The source stage of an int8 row (a stage folder with metrics and predictions but no weights), else None."""
    if _looks_like_model_folder(path) or not (path / "metrics.json").exists():
        return None
    try:
        return read_json(path / "metrics.json").get("quantized_from")
    except (OSError, ValueError, AttributeError):
        return None


# ---------------------------------------------------------------- what the folder says about itself


def read_threshold(model_dir: Path, label_names: list | None = None) -> float | None:
    """p(positive) cut from decision.json, or None (argmax) when the stage has none.

    A threshold only decides between two classes: with more `label_names` a decision.json is refused.
    """
    path = Path(model_dir) / DECISION_FILE
    if not path.exists():
        return None
    if label_names is not None and len(label_names) != 2:
        raise UserError(
            f"'{path}' sets a decision threshold, but thresholds decide between two classes and this model has "
            f"{len(label_names)} ({', '.join(map(str, label_names))}); "
            f"remove {DECISION_FILE} to predict the most probable class"
        )
    try:
        threshold = float(read_json(path)["threshold"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"'{path}' must hold {{\"threshold\": number}}") from None
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"'{path}': threshold {threshold} is not a probability in [0, 1]")
    return threshold


def model_info(model_dir: Path) -> dict:
    """Which model answers: stage id, seed, model type, run folder, test metrics (for people and the API)."""
    model_dir = Path(model_dir).resolve()
    metrics = read_json(model_dir / "metrics.json") if (model_dir / "metrics.json").exists() else {}
    if (model_dir / EXPORT_MARKER).exists():  # an export remembers where it came from
        export = read_json(model_dir / EXPORT_MARKER)
        stage, seed, run_dir = export.get("stage"), export.get("seed"), export.get("run_dir")
    else:
        m = _SEED_DIR.match(model_dir.parent.name)
        stage, seed = metrics.get("stage", model_dir.name), int(m.group(1)) if m else None
        run_dir = str(model_dir.parent.parent) if m else None
        export = None
    return {
        "stage": stage,
        "seed": seed,
        "model_type": metrics.get("model_type"),
        "run_dir": run_dir,
        "model_dir": str(model_dir),
        "depth": metrics.get("depth"),
        "test": metrics.get("test"),
        "test_ci": metrics.get("test_ci"),
        "export": export,
    }


# ---------------------------------------------------------------- the predictor


def pick_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


@dataclass
class Predictor:
    """A loaded model folder. `predict(texts)` → one dict per text; `logits(texts)` → (N, C) array."""

    model_dir: Path
    model: object
    tokenizer: object
    max_length: int
    batch_size: int
    label_names: list
    text_column: str
    threshold: float | None
    device: torch.device
    info: dict = field(default_factory=dict)
    backend: str = "torch"  # which runtime answers: torch, onnx or onnx-int8 (train.runtimes.BACKEND_FILES)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0  # as in training (pipeline.Context.pad_id)

    @torch.inference_mode()
    def logits(self, texts: list[str]) -> np.ndarray:
        """fp32 logits in input order, tokenised and padded per batch exactly as at evaluation."""
        from distill_lora.train.data import Encoded, Split, make_collate

        if not texts:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        encoded = Encoded(Split(list(texts), [0] * len(texts)), self.tokenizer, self.max_length)
        collate = make_collate(self.pad_id)
        out = []
        for start in range(0, len(encoded), self.batch_size):
            batch = collate([encoded[i] for i in range(start, min(start + self.batch_size, len(encoded)))])
            logits = self.model(
                input_ids=batch["input_ids"].to(self.device), attention_mask=batch["attention_mask"].to(self.device)
            ).logits
            out.append(logits.float().cpu())
        return torch.cat(out).numpy()

    def labels_from_logits(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(label ids (N,), class probabilities (N, C)): argmax, or, with two classes and decision.json,
        p(positive) ≥ threshold."""
        return decide(logits, self.threshold)

    def predict(self, texts: list[str]) -> list[dict]:
        """One dict per text: text, label, label_id, probabilities {class: p}, (binary) prob_positive, logits."""
        logits = self.logits(texts)
        ids, probs = self.labels_from_logits(logits)
        return prediction_dicts(texts, ids, probs, logits, self.label_names)


def decide(logits: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(label ids (N,), softmax probabilities (N, C)) of logits (N, C); a threshold (two classes only) sets
    positive iff p(positive) ≥ threshold, as evaluation's pred_threshold does."""
    from distill_lora.metrics import softmax

    probs = softmax(np.asarray(logits, dtype=np.float64))
    if threshold is None:
        return probs.argmax(axis=1), probs
    if probs.shape[1] != 2:  # read_threshold refuses this for a folder; here for callers that pass their own
        raise UserError(f"a decision threshold needs two classes, not {probs.shape[1]}")
    return (probs[:, POSITIVE] >= threshold).astype(int), probs


def prediction_dicts(texts: list[str], ids, probs, logits, label_names: list[str]) -> list[dict]:
    """The answer per text. `prob_positive` only with two classes: with more there is no positive class."""
    out = []
    for text, i, p, row in zip(texts, ids, probs, logits):
        answer = {"text": text, "label": label_names[int(i)], "label_id": int(i)}
        if len(label_names) == 2:
            answer["prob_positive"] = float(p[POSITIVE])
        answer["probabilities"] = {name: float(x) for name, x in zip(label_names, p)}
        answer["logits"] = [float(x) for x in row]
        out.append(answer)
    return out


def default_backend(model_dir: Path) -> str:
    """onnx for an export folder that holds an ONNX model (that is what it was exported for), else torch."""
    marker = Path(model_dir) / EXPORT_MARKER
    if marker.exists():
        try:
            backends = read_json(marker).get("backends") or []
        except (OSError, ValueError, AttributeError):
            backends = []
        if "onnx" in backends:
            return "onnx"
    return "torch"


def _load_model(model_dir: Path, backend: str):
    """The model that answers: the stage's torch model, or an ONNX Runtime session over the export's ONNX file."""
    from distill_lora.train.runtimes import BACKEND_FILES, OnnxModel, check_backend

    filename = BACKEND_FILES[check_backend(backend)]
    if filename is None:
        from distill_lora.train.models import load_stage_model

        return load_stage_model(model_dir)
    if not (model_dir / filename).exists():
        raise UserError(
            f"--backend {backend}: '{model_dir}' holds no {filename}; export it with "
            "`distill-lora export RUN OUT --onnx` and give OUT, or use --backend torch"
        )
    return OnnxModel(model_dir / filename)


def load_predictor(
    model_dir: str | Path,
    device: str | None = None,
    batch_size: int | None = None,
    require_marker: bool = True,
    backend: str | None = None,
) -> Predictor:
    """Load a finished stage or export folder (plain classifier, or LoRA adapter on its base) for inference.

    backend: torch, onnx or onnx-int8 (ONNX files exist only in `export --onnx` folders); None = default_backend.
    require_marker=False only for export's check of a folder it is still writing.
    """
    from transformers import AutoTokenizer

    model_dir = _check_finished(Path(model_dir), require_marker)
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: must be at least 1")
    backend = backend or default_backend(model_dir)
    if backend != "torch" and device not in (None, "cpu"):
        raise UserError(f"--backend {backend} runs on the CPU (ONNX Runtime's CPU provider); drop the device setting")
    cfg = load_config(str(model_dir / "config.yaml"))
    threshold = read_threshold(model_dir, list(cfg.data.label_names))  # before the weights: a refusal is quick
    try:
        model = _load_model(model_dir, backend)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(f"'{model_dir}': cannot load the model ({str(e).splitlines()[0][:200]})") from None
    dev = pick_device(device) if backend == "torch" else torch.device("cpu")
    model.to(dev).eval()
    return Predictor(
        model_dir=model_dir,
        model=model,
        tokenizer=tokenizer,
        max_length=cfg.data.max_length,
        batch_size=batch_size or cfg.train.eval_batch_size,
        label_names=list(cfg.data.label_names),
        text_column=cfg.data.text_column,
        threshold=threshold,
        device=dev,
        info={**model_info(model_dir), "backend": backend},
        backend=backend,
    )


# ---------------------------------------------------------------- which texts can be classified


def text_problem(text) -> str | None:
    """Why `text` cannot be classified, or None: the one rule for the command line, files and the web API."""
    if not isinstance(text, str):
        return f"must be a string, got {type(text).__name__}"
    if not text.strip():
        return "is empty"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone UTF-16 surrogate: JSON "\ud800", or bytes that are not UTF-8 in argv
        return (
            f"is not valid Unicode: lone surrogate U+{ord(text[e.start]):04X} at character {e.start} "
            "(send text as UTF-8, with surrogates only in pairs)"
        )
    return None


# ---------------------------------------------------------------- texts from a file


def read_texts_file(path: str | Path, text_column: str = "text") -> list[str]:
    """txt: one text per line (blank lines skipped); jsonl/json/csv/parquet: the text column (else "text")."""
    from distill_lora.train.data import EXTENSIONS, as_text, read_rows

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--file '{path}': no such file")
    if path.suffix.lower() in (".txt", ""):
        try:
            return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise UserError(f"--file '{path}' is not UTF-8 text; re-save it as UTF-8") from None
    if path.suffix.lower().lstrip(".") not in EXTENSIONS:
        raise UserError(
            f"--file '{path}': unsupported format; use .txt (one text per line) or "
            + ", ".join("." + e for e in EXTENSIONS)
        )
    rows = read_rows(path)
    column = text_column if any(text_column in r for r in rows[:100]) else "text"
    texts = []
    for i, row in enumerate(rows, 1):
        text = as_text(row.get(column))
        if not text:  # None (missing / blank) or False (not a text)
            raise UserError(
                f"--file '{path}' row {i}: no text in column '{column}'"
                + ("" if column == text_column else f" (nor '{text_column}')")
            )
        problem = text_problem(text)
        if problem:
            raise UserError(f"--file '{path}' row {i}: the text {problem}")
        texts.append(text)
    return texts


def format_lines(predictions: list[dict], label_names: list[str]) -> str:
    """One line per text, tab-separated: label, p(positive) with two classes (`toxic\\tp(toxic)=0.9120\\t…`),
    else the label's own probability (`neither\\tp=0.8100\\t…`), then the text on one line."""

    def p_text(p: dict) -> str:
        if len(label_names) == 2:
            return f"p({label_names[POSITIVE]})={p['prob_positive']:.4f}"
        return f"p={p['probabilities'][p['label']]:.4f}"

    return "\n".join(f"{p['label']}\t{p_text(p)}\t{' '.join(p['text'].split())}" for p in predictions)


def to_json(predictions: list[dict]) -> str:
    """text, label, label_id, prob_positive (two classes only) and probabilities {class: p} per text."""
    keys = ("text", "label", "label_id", "prob_positive", "probabilities")
    return json.dumps([{k: p[k] for k in keys if k in p} for p in predictions], ensure_ascii=False, indent=2)
