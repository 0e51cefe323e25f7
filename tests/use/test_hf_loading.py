"""Stage and export folders load the plain Hugging Face way, copied elsewhere, as the evaluated model.

The loading code in these tests uses transformers and peft only; distill_lora's loader is the reference.
"""

import json
import shutil

import pytest
import torch
from peft import AutoPeftModelForSequenceClassification, PeftModel
from test_predict import STAGES, split_texts, stage_path
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.train.models import load_stage_model

LORA = ["lora-student", "lora-teacher"]


def plain_load(folder):
    """What a user without distill-lora writes (the recipe of the folder's README for a LoRA folder)."""
    if (folder / "adapter_config.json").exists():
        return PeftModel.from_pretrained(
            AutoModelForSequenceClassification.from_pretrained(folder / "base_model"), folder
        )
    return AutoModelForSequenceClassification.from_pretrained(folder)


def logits(model, folder, texts):
    tok = AutoTokenizer.from_pretrained(folder)
    batch = tok(texts, truncation=True, max_length=16, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model.eval()(**batch).logits


def check_folder(folder, reference_dir, tmp_path, monkeypatch):
    """Copy `folder`, load the copy plainly from another working directory, compare with our loader."""
    copy = tmp_path / "moved" / "model"
    shutil.copytree(folder, copy)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    texts = split_texts(reference_dir)
    want = logits(load_stage_model(reference_dir), reference_dir, texts)
    torch.testing.assert_close(logits(plain_load(copy), copy, texts), want, atol=1e-5, rtol=0)
    for name in ("config.json", "base_model/config.json", "adapter_config.json"):
        if (copy / name).exists():  # what loading reads names no folder of the training machine
            text = (copy / name).read_text()
            assert str(tmp_path.parent) not in text and '"/' not in text, name
    return copy


def assert_auto_peft_fails_loudly(copy, tmp_path, monkeypatch):
    """Even from a folder that has a base_model/ of another model, AutoPeft must not build a model."""
    decoy = tmp_path / "decoy"
    shutil.copytree(copy / "base_model", decoy / "base_model")
    monkeypatch.chdir(decoy)
    with pytest.raises((OSError, ValueError), match="base_model/ inside this adapter folder"):
        AutoPeftModelForSequenceClassification.from_pretrained(copy)


@pytest.mark.parametrize("stage", STAGES)
def test_stage_folder_loads_plainly_from_a_copy(finished_run, tmp_path, monkeypatch, stage):
    d = stage_path(finished_run, stage)
    copy = check_folder(d, d, tmp_path, monkeypatch)
    if stage in LORA:
        assert_auto_peft_fails_loudly(copy, tmp_path, monkeypatch)
        readme = (copy / "README.md").read_text()
        assert (
            'PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(folder + "/base_model"), folder)'
            in readme
        )


@pytest.mark.parametrize("stage, merge", [("teacher", False), ("lora-student", False), ("lora-student", True)])
def test_export_folder_loads_plainly_from_a_copy(finished_run, tmp_path, monkeypatch, stage, merge):
    out = tmp_path / "export"
    r = CliRunner().invoke(
        app, ["export", str(finished_run["output"]), "--stage", stage, str(out), *(["--merge"] if merge else [])]
    )
    assert r.exit_code == 0, r.output
    copy = check_folder(out, stage_path(finished_run, stage), tmp_path, monkeypatch)
    card = (copy / "README.md").read_text()
    if stage in LORA and not merge:
        assert_auto_peft_fails_loudly(copy, tmp_path, monkeypatch)
        assert (
            'PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(folder + "/base_model"), folder)'
            in card
        )
    else:
        assert "model = AutoModelForSequenceClassification.from_pretrained(folder)" in card


def test_export_renames_the_base_of_an_older_stage(finished_run, tmp_path):
    """Stages saved before the fix named the pretrained model's absolute path; the export must not."""
    run = tmp_path / "run"
    d = run / "seed-0" / "lora-student"
    shutil.copytree(stage_path(finished_run, "lora-student"), d)
    cfg = json.loads((d / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(finished_run["model"])  # the 12-layer model: the old, wrong base
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    out = tmp_path / "export"
    assert CliRunner().invoke(app, ["export", str(run), "--stage", "lora-student", str(out)]).exit_code == 0
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base.startswith("base_model/ inside this adapter folder")
