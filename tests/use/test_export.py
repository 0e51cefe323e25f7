"""export: self-contained folders that answer exactly like the stage; the LoRA merge is checked."""

import json

import numpy as np
import pytest
import yaml
from test_predict import STAGES, assert_matches_recorded, copy_stage, split_texts, stage_path
from transformers import AutoModelForSequenceClassification
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.use import export
from distill_lora.use.predict import load_predictor

runner = CliRunner()
LORA = ["lora-student", "lora-teacher"]


def run_export(run_dir, stage, out, *extra):
    return runner.invoke(app, ["export", str(run_dir), "--stage", stage, str(out), *extra])


def assert_round_trip(out, stage_dir):
    preds = load_predictor(out).predict(split_texts(stage_dir))
    assert_matches_recorded([p["label_id"] for p in preds], [p["logits"] for p in preds], stage_dir)


@pytest.mark.parametrize("stage", STAGES)
def test_export_unmerged_round_trip(finished_run, tmp_path, stage):
    out = tmp_path / "export"
    result = run_export(finished_run["output"], stage, out)
    assert result.exit_code == 0, result.output
    for name in ("README.md", "config.yaml", "metrics.json", "export.json", "tokenizer_config.json"):
        assert (out / name).exists(), name
    for name in ("DONE", "train_log.jsonl", "test_predictions.jsonl"):
        assert not (out / name).exists(), name
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pt"))  # safetensors only
    info = json.loads((out / "export.json").read_text())
    assert info["stage"] == stage and info["seed"] == 0
    assert info["format"] == ("lora-adapter" if stage in LORA else "plain")
    if stage not in LORA:
        assert AutoModelForSequenceClassification.from_pretrained(out).config.id2label[1] == "toxic"
    assert_round_trip(out, stage_path(finished_run, stage))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.parametrize("stage", LORA)
def test_export_merged_loads_without_peft_and_passes_the_check(finished_run, tmp_path, stage):
    out = tmp_path / "merged"
    result = run_export(finished_run["output"], stage, out, "--merge")
    assert result.exit_code == 0, result.output
    assert "merge check on 40 validation texts: max |Δlogit|" in result.output
    assert not (out / "adapter_config.json").exists() and not (out / "base_model").exists()
    model, loading = AutoModelForSequenceClassification.from_pretrained(out, output_loading_info=True)
    assert not any(loading[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), loading
    assert not any("lora" in name for name, _ in model.named_parameters())
    check = json.loads((out / "export.json").read_text())["merge_check"]
    assert check["checked"] and check["same_labels"] and check["n_texts"] == 40
    assert 0 <= check["max_abs_logit_diff"] <= export.MERGE_TOLERANCE
    print(f"{stage}: merged vs adapter max |Δlogit| = {check['max_abs_logit_diff']:.3e}")
    assert "Merge check: on 40 validation texts" in (out / "README.md").read_text()
    assert_round_trip(out, stage_path(finished_run, stage))


def test_failed_merge_check_leaves_nothing(finished_run, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "MERGE_TOLERANCE", -1.0)  # no difference can pass
    out = tmp_path / "merged"
    result = run_export(finished_run["output"], "lora-student", out, "--merge")
    assert result.exit_code == 2, result.output
    assert "error: merge check failed" in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


def test_merge_check_skipped_when_data_is_gone(finished_run, tmp_path):
    d = copy_stage(finished_run, "lora-teacher", tmp_path)
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    cfg["data"]["source"] = str(tmp_path / "moved-away")
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "merged"
    result = run_export(tmp_path / "run", "lora-teacher", out, "--merge")
    assert result.exit_code == 0, result.output
    assert "merge check skipped: the validation split could not be loaded" in result.output
    assert "moved-away" in result.output
    check = json.loads((out / "export.json").read_text())["merge_check"]
    assert check["checked"] is False and "moved-away" in check["reason"]
    assert "Merge check: **skipped**" in (out / "README.md").read_text()


def test_refuses_non_empty_out_dir_and_accepts_an_empty_one(finished_run, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_export(finished_run["output"], "teacher", out)
    assert result.exit_code == 2 and "already exists and is not empty" in result.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_export(finished_run["output"], "teacher", empty).exit_code == 0
    assert (empty / "model.safetensors").exists()


def test_model_card_and_copied_decision(finished_run, tmp_path):
    d = copy_stage(finished_run, "student-even", tmp_path)
    ci = json.loads((d / "metrics.json").read_text())["test_ci"]  # written by the pipeline, as the report's CI
    (d / "decision.json").write_text(json.dumps({"threshold": 0.42}))
    out = tmp_path / "exported"
    assert run_export(tmp_path / "run", "student-even", out).exit_code == 0
    card = (out / "README.md").read_text()
    for metric in ("accuracy", "macro_f1"):
        assert f"(95% CI {ci[metric]['low']:.4f}–{ci[metric]['high']:.4f})" in card, metric
    for phrase in (
        str(finished_run["data"]),
        "Macro-F1",
        "Intended use",
        "dialect",
        "identity terms",
        "annotators",
        "Domain shift",
        "without human review",
        "p(toxic) ≥ 0.4200",
    ):
        assert phrase in card, phrase
    assert json.loads((out / "decision.json").read_text()) == {"threshold": 0.42}
    assert load_predictor(out).threshold == 0.42
    texts = split_texts(d)[:8]
    p_pos = np.array([p["prob_positive"] for p in load_predictor(out).predict(texts)])
    assert [p["label_id"] for p in load_predictor(out).predict(texts)] == [int(x >= 0.42) for x in p_pos]


def test_export_refuses_unfinished_stage(finished_run, tmp_path):
    d = copy_stage(finished_run, "teacher", tmp_path)
    (d / "DONE").unlink()
    result = run_export(tmp_path / "run", "teacher", tmp_path / "out")
    assert result.exit_code == 2 and "not a finished stage" in result.output
    assert not (tmp_path / "out").exists()
