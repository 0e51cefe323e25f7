"""Out-of-domain evaluation: every model of a run on another labelled data set, same metrics and tests.

The result goes into results.json under "out_of_domain" and the report gains a section for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from distill_lora.config import DataConfig, SplitLimits
from distill_lora.errors import UserError
from distill_lora.experiment.runs import RunLock
from distill_lora.files import atomic_write_json, check_writable, read_json
from distill_lora.metrics import class_shares, classification_metrics, prediction_record, softmax
from distill_lora.train.data import load_split
from distill_lora.use.predict import load_predictor

KEEP = (
    "stage",
    "model_type",
    "depth",
    "total_params",
    "trainable_params",
    "train_loss",
    "train_total_loss",
    "wall_time_s",
    "samples_per_s",
    "validation_history",
    "selected_epoch",
    "weights_bytes",
    "teacher_layers",
)


@dataclass(frozen=True)
class OtherData:
    """The data set `evaluate` scores a run on, as its options name it (columns as in the data block)."""

    source: str
    text_column: str = "text"
    label_column: str = "label"
    label_map: dict = field(default_factory=dict)
    split: str = "test"
    limit: int | None = None
    slice_column: str | None = None  # each value a slice: the section gains the per-slice results


def evaluate_run(run_dir: Path, other: OtherData, name: str) -> dict:
    """Score every finished stage of every seed of the last compare on one split of another data set."""
    run_dir = Path(run_dir)
    source, split, label_map = other.source, other.split, other.label_map
    results_path = run_dir / "results.json"
    if not results_path.exists():
        raise UserError(f"{results_path} not found; run compare first")
    results = read_json(results_path)
    comparison = results["comparison"]
    data_cfg = DataConfig(
        source=source,
        text_column=other.text_column,
        label_column=other.label_column,
        slice_column=other.slice_column,
        label_names=comparison["label_names"],
        # labels written as the run's class names count as those classes; --label-map adds to that
        label_map={**_names_as_labels(comparison["label_names"]), **(label_map or {})},
        null_text="drop",
        limit=SplitLimits(**{split: other.limit}) if other.limit else SplitLimits(),
    )
    bad = {
        k: v
        for k, v in (label_map or {}).items()
        if not isinstance(v, int) or not 0 <= v < len(comparison["label_names"])
    }
    if bad:
        raise UserError(f"--label-map {bad}: values must be class indices 0..{len(comparison['label_names']) - 1}")
    if split not in ("train", "validation", "test"):
        raise UserError(f"--split {split!r}: use train, validation or test")
    check_writable(run_dir)  # before every model is scored, not after
    try:
        data, notes = load_split(data_cfg, split)
    except UserError as e:  # the data checks name config keys; here the user sets them with options
        raise UserError(_as_options(str(e))) from None
    for note in notes:
        print(f"[{name}] data: {note}")
    per_seed = _score_every_stage(run_dir, comparison, data, name)
    ood = {
        "source": source,
        "split": split,
        "n": len(data),
        **class_shares(data.labels, comparison["label_names"]),
        "comparison": {
            **{k: comparison[k] for k in ("seeds", "label_names")},
            "test_labels": data.labels,
            "per_seed": per_seed,
        },
    }
    if data.slices is not None:  # the section's per-slice results (report/slices.py)
        ood["comparison"].update(test_slices=data.slices, slice_column=other.slice_column)
    with RunLock(run_dir):
        results = read_json(results_path)  # re-read under the lock
        results.setdefault("out_of_domain", {})[name] = ood
        atomic_write_json(results_path, results)
    return results


OPTIONS = {  # the data keys evaluate's options set
    "data.source": "--data",
    "data.text_column": "--text-column",
    "data.label_column": "--label-column",
    "data.label_map": "--label-map",
    "data.slice_column": "--slice-column",
}


def _as_options(message: str) -> str:
    for key, option in OPTIONS.items():
        message = message.replace(f"'{key}'", option).replace(key, option)
    return message


def _names_as_labels(label_names: list[str]) -> dict:
    """{class name: index}, for data labelled with the run's class names; numeric names stay indices."""
    return {name: i for i, name in enumerate(label_names) if not str(name).strip().lstrip("-").isdigit()}


def _score_every_stage(run_dir: Path, comparison: dict, data, name: str) -> dict:
    """{seed: {stage: record with the other data set's metrics and predictions}} for every stage of the run."""
    per_seed = {}
    for seed in comparison["seeds"]:
        per_seed[str(seed)] = {}
        for stage, m in comparison["per_seed"][str(seed)].items():
            int8_of = m.get("quantized_from")  # an int8 row holds no weights: quantise its source again
            predictor = load_predictor(run_dir / f"seed-{seed}" / (int8_of or stage), device="cpu" if int8_of else None)
            if int8_of:
                from distill_lora.train.runtimes import quantize_dynamic_int8

                predictor.model = quantize_dynamic_int8(predictor.model)
            logits = predictor.logits(data.texts)
            per_seed[str(seed)][stage] = {
                **{k: m[k] for k in KEEP if k in m},
                "test": classification_metrics(data.labels, logits, comparison["label_names"]),
                "predictions": prediction_record(logits.argmax(1), softmax(logits)),
            }
            print(f"[{name}] seed {seed} {stage}: macro-F1 {per_seed[str(seed)][stage]['test']['macro_f1']:.4f}")
    return per_seed
