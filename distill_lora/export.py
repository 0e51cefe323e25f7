"""Export a finished stage as a self-contained Hugging Face folder with a model card.

Plain stages are copied. LoRA stages are copied as adapter + `base_model/`, or with `merge=True`
merged into their base (`merge_and_unload`), so the folder loads with plain
`AutoModelForSequenceClassification.from_pretrained`, no PEFT. A merged export is only kept when the
saved merged model gives the same logits as the adapter on the validation texts (max |Δlogit| ≤
MERGE_TOLERANCE). The folder is built next to OUT_DIR and renamed into place when complete.
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .config import UserError, load_config
from .predict import DECISION_FILE, EXPORT_MARKER, load_predictor, model_info, read_threshold
from .runs import DONE, atomic_write_json, atomic_write_text, follow_umask, make_temp_dir

MERGE_TOLERANCE = 1e-4        # max |Δlogit| allowed between the merged model and adapter + base
MERGE_CHECK_MAX_TEXTS = 1000  # validation texts the merge check runs on (the first N; enough to catch a bad merge)
METADATA_FILES = ("config.yaml", "metrics.json", DECISION_FILE)
NOT_EXPORTED = {DONE, "train_log.jsonl", "test_predictions.jsonl", "README.md", EXPORT_MARKER}


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UserError(f"'{out_dir}' already exists and is not empty; choose a new folder or remove it")


def _copy_stage(model_dir: Path, dest: Path) -> None:
    """Weights, tokenizer, config (and the adapter's base_model/), without the run's bookkeeping."""
    for src in model_dir.iterdir():
        if src.name in NOT_EXPORTED or src.name.startswith("."):
            continue
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest / src.name)
    if (dest / "adapter_config.json").exists():  # stages saved before the note named their base by a local path
        from .models import write_adapter_base_note  # transformers only when needed
        write_adapter_base_note(dest)


def _validation_texts(model_dir: Path) -> tuple[list[str], str | None]:
    """(texts, None) for the merge check, or ([], why) when the stage's validation data cannot be read."""
    from .data import load_splits
    try:
        texts = load_splits(load_config(str(model_dir / "config.yaml")).data).validation.texts
    except UserError as e:
        return [], str(e)
    return texts[:MERGE_CHECK_MAX_TEXTS], None


def _write_merged(model_dir: Path, dest: Path, log) -> dict:
    """Merge the adapter into its base, save it, reload the saved folder and compare logits."""
    adapter = load_predictor(model_dir, device="cpu")
    texts, why_not = _validation_texts(model_dir)
    before = adapter.logits(texts)  # computed before merging: merge_and_unload changes the weights in place
    merged = adapter.model.merge_and_unload()
    merged.save_pretrained(dest)  # safetensors
    adapter.tokenizer.save_pretrained(dest)
    for name in METADATA_FILES:
        if (model_dir / name).exists():
            shutil.copy2(model_dir / name, dest / name)
    if why_not:
        log(f"merge check skipped: the validation split could not be loaded ({why_not}); "
            "the merged model is NOT verified against the adapter")
        return {"checked": False, "reason": why_not, "tolerance": MERGE_TOLERANCE}
    # check the folder as saved, loaded as a plain classifier, not the in-memory object
    reloaded = load_predictor(dest, device="cpu", require_marker=False)
    after = reloaded.logits(texts)
    max_diff = float(np.abs(after - before).max()) if len(texts) else 0.0
    same_labels = bool((reloaded.labels_from_logits(after)[0] == adapter.labels_from_logits(before)[0]).all())
    check = {"checked": True, "n_texts": len(texts), "split": "validation", "max_abs_logit_diff": max_diff,
             "tolerance": MERGE_TOLERANCE, "same_labels": same_labels}
    verdict = "ok" if max_diff <= MERGE_TOLERANCE else "FAILED"
    log(f"merge check on {len(texts)} validation texts: max |Δlogit| merged vs adapter = {max_diff:.3e} "
        f"(tolerance {MERGE_TOLERANCE:.0e}) {verdict}; labels identical: {same_labels}")
    if max_diff > MERGE_TOLERANCE:
        raise UserError(f"merge check failed: merged and unmerged logits differ by up to {max_diff:.3e} "
                        f"(> {MERGE_TOLERANCE:.0e}); nothing was exported. Export without --merge instead")
    return check


def export_model(model_dir: str | Path, out_dir: str | Path, merge: bool = False, log=print) -> dict:
    """Write `model_dir` (a finished stage) to `out_dir` as a self-contained folder; returns export.json."""
    model_dir, out_dir = Path(model_dir), Path(out_dir).absolute()
    _check_out_dir(out_dir)
    is_lora = (model_dir / "adapter_config.json").exists()
    if merge and not is_lora:
        log(f"note: {model_dir.name} is already a plain model; --merge has nothing to merge")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{out_dir.name}.tmp-", out_dir.parent)
    try:
        merge_check = None
        if merge and is_lora:
            merge_check = _write_merged(model_dir, tmp, log)
        else:
            _copy_stage(model_dir, tmp)
        info = model_info(model_dir)
        export = {"stage": info["stage"], "seed": info["seed"], "run_dir": info["run_dir"],
                  "source": str(model_dir.resolve()), "format": _format(is_lora, merge),
                  "merge_check": merge_check, "threshold": read_threshold(model_dir),
                  "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        atomic_write_text(tmp / "README.md", model_card(info, load_config(str(model_dir / "config.yaml")), export))
        atomic_write_json(tmp / EXPORT_MARKER, export)  # last: marks the export complete
        _check_out_dir(out_dir)  # someone may have filled it meanwhile
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        follow_umask(tmp)  # copies and safetensors files keep 0600 otherwise: an export is meant to be shared
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return export


def _format(is_lora: bool, merge: bool) -> str:
    if not is_lora:
        return "plain"
    return "lora-merged" if merge else "lora-adapter"


# ---------------------------------------------------------------- model card

def ci_text(ci) -> str:
    """' (95% CI 0.81–0.88)' from {'low', 'high', 'confidence'} or [low, high]; '' when absent."""
    if isinstance(ci, dict) and "low" in ci and "high" in ci:
        return f" ({ci.get('confidence', 0.95):.0%} CI {ci['low']:.4f}–{ci['high']:.4f})"
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f" (95% CI {ci[0]:.4f}–{ci[1]:.4f})"
    return ""


def _metrics_lines(info: dict) -> list[str]:
    test, ci = info.get("test") or {}, info.get("test_ci") or {}
    names = {"accuracy": "Accuracy", "macro_f1": "Macro-F1", "f1_positive": "F1 (positive class)",
             "roc_auc": "ROC AUC", "pr_auc": "PR AUC", "ece": "Expected calibration error"}
    lines = [f"| {label} | {test[key]:.4f}{ci_text(ci.get(key))} |" for key, label in names.items()
             if isinstance(test.get(key), (int, float))]
    if not lines:
        return ["No test metrics were recorded for this model."]
    return [f"On the held-out test split ({test.get('n', '?')} examples), evaluated once after the epoch was "
            "picked on validation:", "", "| Metric | Value |", "|---|---|", *lines]


def model_card(info: dict, cfg, export: dict) -> str:
    from .models import LORA_AUTO_NOTE, LORA_LOAD_LINES
    names = list(cfg.data.label_names)
    positive = names[1]
    threshold = export.get("threshold")
    decision = (f"`{positive}` when p({positive}) ≥ {threshold:.4f} (`decision.json`, tuned on validation)"
                if threshold is not None else "the most probable class (argmax)")
    plain = ["from transformers import AutoModelForSequenceClassification, AutoTokenizer",
             "model = AutoModelForSequenceClassification.from_pretrained(folder)",
             "tokenizer = AutoTokenizer.from_pretrained(folder)"]
    load = {"plain": plain, "lora-merged": plain, "lora-adapter": list(LORA_LOAD_LINES)}[export["format"]]
    load_note = {"plain": "", "lora-merged": "The LoRA adapter is merged into the weights: no PEFT needed.",
                 "lora-adapter": "A PEFT LoRA adapter on the exact model it adapts, stored in `base_model/`. "
                                 + LORA_AUTO_NOTE}[export["format"]]
    check = export.get("merge_check")
    check_line = ""
    if check and check.get("checked"):
        check_line = (f"\nMerge check: on {check['n_texts']} validation texts the merged model's logits differ from "
                      f"the adapter's by at most {check['max_abs_logit_diff']:.2e} (tolerance {check['tolerance']:.0e}).\n")
    elif check:
        check_line = f"\nMerge check: **skipped** ({check['reason']}).\n"
    return "\n".join([
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [text-classification, hate-speech, distill-lora]",
        "---",
        f"# {info.get('model_type') or info.get('stage')}",
        "",
        f"Stage `{info.get('stage')}`, seed {info.get('seed')}, exported by `distill-lora export` from "
        f"`{export['source']}` ({export['format']}). Depth: {info.get('depth')} layers. "
        f"Pretrained starting point: `{cfg.teacher.model}`.",
        "",
        "## Use",
        "",
        "```python",
        'folder = "path/to/this/folder"',
        *load,
        "```",
        "",
        *([load_note, ""] if load_note else []),
        f"or `distill-lora predict FOLDER \"some text\"`. Texts are truncated to {cfg.data.max_length} tokens. "
        f"Labels: {', '.join(f'{i} = {n}' for i, n in enumerate(names))}; the label is {decision}.",
        check_line,
        "## Data",
        "",
        f"Trained on `{cfg.data.source}` (text column `{cfg.data.text_column}`, label column "
        f"`{cfg.data.label_column}`). The epoch was chosen on the validation split; the test split chose nothing.",
        "",
        "## Test metrics",
        "",
        *_metrics_lines(info),
        "",
        "## Intended use",
        "",
        "Research and teaching: comparing distilled and LoRA-tuned classifiers, and as one signal that helps "
        "people triage content for review. Not for automated moderation, for decisions about individuals, or "
        "for any use without human review of its outputs.",
        "",
        "## Limits and known biases",
        "",
        "- Hate-speech classifiers flag dialects (e.g. African-American English) and mentions of identity terms "
        "(\"gay\", \"muslim\", \"black\"…) as toxic more often than other text with the same meaning: expect false "
        "positives on counter-speech, reclaimed words, and people talking about their own identity.",
        "- Labels come from annotators who disagree; the training labels are noisy and encode their judgement, "
        "and the test metrics inherit that noise.",
        "- Domain shift: scores hold for texts like the training data. Other platforms, time periods, languages, "
        "sarcasm, quotes and new slurs or coded words lower them, often silently.",
        "- A probability is not a calibrated risk; set any decision threshold on your own validation data.",
        "- The test metrics above come from one test split (and one seed); small test sets give wide intervals.",
        "- Do not use for automated moderation without human review.",
        "",
    ])
