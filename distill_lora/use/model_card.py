"""The model card (README.md) of an exported folder: what the model is, how to load it, its metrics, its limits."""

from __future__ import annotations


def ci_text(ci) -> str:
    """' (95% CI 0.81–0.88)' from {'low', 'high', 'confidence'} or [low, high]; '' when absent."""
    if isinstance(ci, dict) and ci.get("low") is None and "method" in ci:
        return f" ({ci['method']})"
    if isinstance(ci, dict) and "low" in ci and "high" in ci:
        return f" ({ci.get('confidence', 0.95):.0%} CI {ci['low']:.4f}–{ci['high']:.4f})"
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return f" (95% CI {ci[0]:.4f}–{ci[1]:.4f})"
    return ""


def _cell(text) -> str:
    """A markdown table cell from a user string (a class name): a `|` would end the cell, a newline the row."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _per_class_lines(test: dict, label_names: list[str]) -> list[str]:
    """Precision, recall, F1 and support of every class (metrics.json's per_class), in label-id order."""
    per_class = test.get("per_class")
    if not isinstance(per_class, dict) or not all(name in per_class for name in label_names):
        return []  # recorded before per-class metrics (or for other classes): say nothing rather than guess
    rows = [
        f"| {i} | {_cell(name)} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |"
        for i, (name, m) in enumerate((name, per_class[name]) for name in label_names)
    ]
    return [
        "",
        "Per class:",
        "",
        "| Id | Class | Precision | Recall | F1 | Support |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


def _metrics_lines(info: dict, label_names: list[str]) -> list[str]:
    test, ci = info.get("test") or {}, info.get("test_ci") or {}
    binary = len(label_names) == 2
    names = {
        "accuracy": "Accuracy",
        "macro_f1": "Macro-F1",
        "f1_positive": f"F1 ({_cell(label_names[1])}, the positive class)" if binary else None,
        "roc_auc": "ROC AUC" if binary else "ROC AUC (one-vs-rest, macro average over classes)",
        "pr_auc": "PR AUC" if binary else "PR AUC (one-vs-rest, macro average over classes)",
        "ece": "Expected calibration error",
    }
    lines = [
        f"| {label} | {test[key]:.4f}{ci_text(ci.get(key))} |"
        for key, label in names.items()
        if label and isinstance(test.get(key), (int, float))
    ]
    if not lines:
        return ["No test metrics were recorded for this model."]
    return [
        f"On the held-out test split ({test.get('n', '?')} examples), evaluated once after the epoch was "
        "picked on validation:",
        "",
        "| Metric | Value |",
        "|---|---|",
        *lines,
        *_per_class_lines(test, label_names),
    ]


def _use_lines(export: dict) -> list[str]:
    """The card's loading recipe for the export's format, and its note."""
    from distill_lora.train.models import LORA_AUTO_NOTE, LORA_LOAD_LINES

    plain = [
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "model = AutoModelForSequenceClassification.from_pretrained(folder)",
        "tokenizer = AutoTokenizer.from_pretrained(folder)",
    ]
    load = {"plain": plain, "lora-merged": plain, "lora-adapter": list(LORA_LOAD_LINES)}[export["format"]]
    load_note = {
        "plain": "",
        "lora-merged": "The LoRA adapter is merged into the weights: no PEFT needed.",
        "lora-adapter": "A PEFT LoRA adapter on the exact model it adapts, stored in `base_model/`. " + LORA_AUTO_NOTE,
    }[export["format"]]
    return ["```python", 'folder = "path/to/this/folder"', *load, "```", "", *([load_note, ""] if load_note else [])]


def _onnx_lines(onnx: dict | None) -> list[str]:
    """With `export --onnx`: the two ONNX files, how to run them, and what the export's check measured."""
    if not onnx:
        return []
    check = onnx.get("check") or {}
    lines = [
        "## ONNX (CPU serving)",
        "",
        f"`{onnx['fp32']}`: the model in fp32 ({onnx['exporter']}, opset {onnx['opset']}; inputs "
        f"{', '.join(f'`{x}`' for x in onnx['inputs'])}, batch and sequence dynamic; output `logits`). "
        f"`{onnx['int8']}`: {onnx['int8_method']}. Tokenise with the tokenizer in this folder; then "
        "`onnxruntime.InferenceSession(path).run(['logits'], {'input_ids': ids, 'attention_mask': mask})`, or "
        '`distill-lora predict FOLDER --backend onnx|onnx-int8 "some text"`.',
        "",
    ]
    if check.get("n_texts"):
        lines += [
            f"Check on {check['n_texts']} {check['split']} texts: fp32 ONNX logits differ from the PyTorch model's by "
            f"at most {check['onnx']['max_abs_logit_diff']:.2e} (tolerance {check['tolerance']:.0e}); the int8 file "
            f"gives the PyTorch model's label on {check['onnx-int8']['label_agreement']:.1%} of them.",
            "",
        ]
    else:
        lines += ["The ONNX files were **not checked** against the PyTorch model (no validation texts).", ""]
    return lines


def _merge_check_line(check: dict | None) -> str:
    if check and check.get("checked"):
        return (
            f"\nMerge check: on {check['n_texts']} validation texts the merged model's logits differ from "
            f"the adapter's by at most {check['max_abs_logit_diff']:.2e} (tolerance {check['tolerance']:.0e}).\n"
        )
    if check:
        return f"\nMerge check: **skipped** ({check['reason']}).\n"
    return ""


def _decision_text(names: list[str], threshold: float | None) -> str:
    """How the label is chosen: a tuned threshold on p(positive) (two classes only), else the argmax."""
    if threshold is not None:
        return f"`{names[1]}` when p({names[1]}) ≥ {threshold:.4f} (`decision.json`, tuned on validation)"
    if len(names) == 2:
        return "the most probable class (argmax)"
    return f"the most probable of the {len(names)} classes (argmax of the softmax; every class's probability is given)"


def model_card(info: dict, cfg, export: dict) -> str:
    """README.md of an exported folder: what the model is, how to load it, its test metrics, its limits."""
    names = list(cfg.data.label_names)
    decision = _decision_text(names, export.get("threshold"))
    return "\n".join(
        [
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
            *_use_lines(export),
            f'or `distill-lora predict FOLDER "some text"`. Texts are truncated to {cfg.data.max_length} tokens. '
            f"Labels: {', '.join(f'{i} = {n}' for i, n in enumerate(names))}; the label is {decision}.",
            _merge_check_line(export.get("merge_check")),
            *_onnx_lines(export.get("onnx")),
            "## Data",
            "",
            f"Trained on `{cfg.data.source}` (text column `{cfg.data.text_column}`, label column "
            f"`{cfg.data.label_column}`). The epoch was chosen on the validation split; the test split chose nothing.",
            "",
            "## Test metrics",
            "",
            *_metrics_lines(info, names),
            "",
            "## Intended use",
            "",
            "Research and teaching: comparing distilled and LoRA-tuned classifiers, and as one signal that helps "
            "people triage content for review. Not for automated moderation, for decisions about individuals, or "
            "for any use without human review of its outputs.",
            "",
            "## Limits and known biases",
            "",
            *LIMITS,
            "",
        ]
    )


LIMITS = [
    "- Hate-speech classifiers flag dialects (e.g. African-American English) and mentions of identity terms "
    '("gay", "muslim", "black"…) as toxic more often than other text with the same meaning: expect false '
    "positives on counter-speech, reclaimed words, and people talking about their own identity.",
    "- Labels come from annotators who disagree; the training labels are noisy and encode their judgement, "
    "and the test metrics inherit that noise.",
    "- Domain shift: scores hold for texts like the training data. Other platforms, time periods, languages, "
    "sarcasm, quotes and new slurs or coded words lower them, often silently.",
    "- A probability is not a calibrated risk; set any decision threshold on your own validation data.",
    "- The test metrics above come from one test split (and one seed); small test sets give wide intervals.",
    "- Do not use for automated moderation without human review.",
]
