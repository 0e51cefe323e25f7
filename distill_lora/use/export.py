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

from distill_lora.config import load_config
from distill_lora.errors import UserError
from distill_lora.experiment.runs import DONE
from distill_lora.files import atomic_write_json, atomic_write_text, follow_umask, make_temp_dir, writing
from distill_lora.use.model_card import model_card
from distill_lora.use.predict import DECISION_FILE, EXPORT_MARKER, load_predictor, model_info, read_threshold

MERGE_TOLERANCE = 1e-4  # max |Δlogit| allowed between the merged model and adapter + base
ONNX_TOLERANCE = 1e-4  # max |Δlogit| allowed between the fp32 ONNX model and the saved torch model
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
        from distill_lora.train.models import write_adapter_base_note  # transformers only when needed

        write_adapter_base_note(dest)


def _validation_texts(model_dir: Path) -> tuple[list[str], str | None]:
    """(texts, None) for the merge check, or ([], why) when the stage's validation data cannot be read."""
    from distill_lora.train.data import load_splits

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
        log(
            f"merge check skipped: the validation split could not be loaded ({why_not}); "
            "the merged model is NOT verified against the adapter"
        )
        return {"checked": False, "reason": why_not, "tolerance": MERGE_TOLERANCE}
    # check the folder as saved, loaded as a plain classifier, not the in-memory object
    reloaded = load_predictor(dest, device="cpu", require_marker=False)
    after = reloaded.logits(texts)
    max_diff = float(np.abs(after - before).max()) if len(texts) else 0.0
    same_labels = bool((reloaded.labels_from_logits(after)[0] == adapter.labels_from_logits(before)[0]).all())
    check = {
        "checked": True,
        "n_texts": len(texts),
        "split": "validation",
        "max_abs_logit_diff": max_diff,
        "tolerance": MERGE_TOLERANCE,
        "same_labels": same_labels,
    }
    verdict = "ok" if max_diff <= MERGE_TOLERANCE else "FAILED"
    log(
        f"merge check on {len(texts)} validation texts: max |Δlogit| merged vs adapter = {max_diff:.3e} "
        f"(tolerance {MERGE_TOLERANCE:.0e}) {verdict}; labels identical: {same_labels}"
    )
    if max_diff > MERGE_TOLERANCE:
        raise UserError(
            f"merge check failed: merged and unmerged logits differ by up to {max_diff:.3e} "
            f"(> {MERGE_TOLERANCE:.0e}); nothing was exported. Export without --merge instead"
        )
    return check


def _write_onnx(dest: Path, texts: list[str], log) -> dict:
    """ONNX fp32 + int8 of the plain model saved in `dest`, checked against it on `texts` (validation)."""
    from distill_lora.train.runtimes import write_onnx

    torch_model = load_predictor(dest, device="cpu", require_marker=False, backend="torch")
    info = write_onnx(torch_model.model, torch_model.tokenizer, dest)
    want = torch_model.logits(texts)
    want_ids = torch_model.labels_from_logits(want)[0]
    check = {"n_texts": len(texts), "split": "validation", "tolerance": ONNX_TOLERANCE}
    for backend in ("onnx", "onnx-int8"):
        got = load_predictor(dest, require_marker=False, backend=backend).logits(texts)
        ids = torch_model.labels_from_logits(got)[0]
        check[backend] = {
            "max_abs_logit_diff": float(np.abs(got - want).max()) if len(texts) else 0.0,
            "label_agreement": float((ids == want_ids).mean()) if len(texts) else None,
        }
    fp32, int8 = check["onnx"], check["onnx-int8"]
    if not texts:
        log("ONNX check skipped: the validation split could not be loaded; the ONNX files are NOT verified")
    else:
        log(
            f"ONNX check on {len(texts)} validation texts: fp32 max |Δlogit| vs torch = "
            f"{fp32['max_abs_logit_diff']:.3e} (tolerance {ONNX_TOLERANCE:.0e}); "
            f"int8 labels agree with torch on {int8['label_agreement']:.1%}"
        )
    if fp32["max_abs_logit_diff"] > ONNX_TOLERANCE:
        raise UserError(
            f"ONNX check failed: fp32 ONNX and torch logits differ by up to {fp32['max_abs_logit_diff']:.3e} "
            f"(> {ONNX_TOLERANCE:.0e}); nothing was exported. Export without --onnx instead"
        )
    return {**info, "check": check}


def export_model(
    model_dir: str | Path, out_dir: str | Path, merge: bool = False, log=print, onnx: bool = False
) -> dict:
    """Write `model_dir` (a finished stage) to `out_dir` as a self-contained folder; returns export.json.

    onnx=True also writes model.onnx and model.int8.onnx (a LoRA stage is merged first) and checks them.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir).absolute()
    _check_out_dir(out_dir)
    cfg = load_config(str(model_dir / "config.yaml"))
    threshold = read_threshold(model_dir, list(cfg.data.label_names))  # a bad decision.json: refused before writing
    is_lora = (model_dir / "adapter_config.json").exists()
    if onnx:
        from distill_lora.train.runtimes import require_onnxruntime

        require_onnxruntime("--onnx")  # before any work
        if is_lora and not merge:
            log(f"note: {model_dir.name} is a LoRA stage; --onnx merges the adapter into its base first")
            merge = True
    if merge and not is_lora:
        log(f"note: {model_dir.name} is already a plain model; --merge has nothing to merge")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{out_dir.name}.tmp-", out_dir.parent)
    try:
        merge_check, onnx_info = None, None
        with writing(out_dir, blame=True):  # a full disk names the export, not the file being copied from
            if merge and is_lora:
                merge_check = _write_merged(model_dir, tmp, log)
            else:
                _copy_stage(model_dir, tmp)
            if onnx:
                onnx_info = _write_onnx(tmp, _validation_texts(model_dir)[0], log)
        info = model_info(model_dir)
        export = {
            "stage": info["stage"],
            "seed": info["seed"],
            "run_dir": info["run_dir"],
            "source": str(model_dir.resolve()),
            "format": _format(is_lora, merge),
            "merge_check": merge_check,
            "backends": ["torch", "onnx", "onnx-int8"] if onnx else ["torch"],  # predict/serve pick from these
            "onnx": onnx_info,
            "threshold": threshold,
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_text(tmp / "README.md", model_card(info, cfg, export))
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
