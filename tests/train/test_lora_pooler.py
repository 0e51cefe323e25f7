"""lora.train_pooler: BERT's pooler is trained in full (and saved) when asked, or when auto finds it untrained."""

import json

import pytest
import torch
from conftest import tiny_config
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.config import LoraConfig, load_config
from distill_lora.errors import UserError
from distill_lora.train.models import add_lora, load_classifier, load_stage_model, parameter_counts, pooler_decision

R = 8  # LoraConfig's default rank; targets query and value by default


def bert(folder):
    return AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)


def lora_params(model, r: int = R) -> int:
    """LoRA A and B on query and value of every layer: 2 modules x (H x r + r x H)."""
    c = model.config
    return c.num_hidden_layers * 2 * 2 * c.hidden_size * r


def tiny_roberta():
    """A RoBERTa classifier: no pooler; its head (classifier.dense + out_proj) is all inside `classifier`."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    return RobertaForSequenceClassification(
        RobertaConfig(
            vocab_size=40,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=48,
            max_position_embeddings=40,
            num_labels=2,
        )
    )


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("value, want", [("auto", "auto"), ("true", True), ("false", False)])
def test_train_pooler_accepts_auto_true_false(value, want):
    assert load_config("demo", [f"lora.train_pooler={value}"]).lora.train_pooler == want
    assert LoraConfig().train_pooler == "auto"


@pytest.mark.parametrize("value", ["maybe", "1", "yes please"])
def test_train_pooler_rejects_other_values_in_one_line(value, tmp_path):
    # a missing data folder too: config validation must answer first (and nothing trains if it does not)
    r = CliRunner().invoke(
        app,
        [
            "lora",
            "--config",
            "demo",
            "--set",
            f"lora.train_pooler={value}",
            "--set",
            f"data.source={tmp_path / 'missing'}",
        ],
    )
    assert r.exit_code == 2, r.output
    assert "'lora.train_pooler' must be auto, true or false" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


# ---------------------------------------------------------------- the rule


def test_auto_trains_a_pooler_that_was_never_trained(tiny_bert12):
    model = bert(tiny_bert12)  # a random BERT: transformers initialised the pooler's bias to zeros
    assert not model.bert.pooler.dense.bias.any()
    assert pooler_decision(model, "auto") == (
        True,
        "auto: bert.pooler.dense.bias is all zeros, so the pooler was never trained",
    )
    assert pooler_decision(model, False)[0] is False and pooler_decision(model, True)[0] is True
    with torch.no_grad():
        model.bert.pooler.dense.bias[3] = 0.01  # one trained value is enough to keep it as pretrained
    assert pooler_decision(model, "auto")[0] is False
    assert pooler_decision(model, True)[0] is True


def test_a_model_without_pooler_has_nothing_extra_to_train():
    model = tiny_roberta()
    train, why = pooler_decision(model, "auto")
    assert train is False and "no BERT pooler" in why
    assert pooler_decision(model, False)[0] is False
    with pytest.raises(UserError, match="lora.train_pooler is true, but the model has no BERT pooler"):
        pooler_decision(model, True)
    peft_model = add_lora(model, LoraConfig())  # the RoBERTa head is trained in full as `classifier`
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert {n.split("modules_to_save.default.")[1] for n in trainable} == {
        "dense.weight",
        "dense.bias",
        "out_proj.weight",
        "out_proj.bias",
    }


# ---------------------------------------------------------------- counting, saving, reloading


@pytest.mark.parametrize("setting", [True, False])
def test_parameter_counts_follow_the_decision(tiny_bert12, setting):
    model = bert(tiny_bert12)
    base_total = sum(p.numel() for p in model.parameters())
    h = model.config.hidden_size
    peft_model = add_lora(model, LoraConfig(train_pooler=setting))
    counts = parameter_counts(peft_model)
    head = 2 * h + 2
    pooler = h * h + h if setting else 0
    assert counts["trainable_params"] == lora_params(model) + head + pooler
    # PEFT keeps a frozen original beside each module it trains in full; the model predicts without it
    assert counts["total_params"] == base_total + lora_params(model)


def test_all_linear_leaves_a_trained_pooler_unwrapped(tiny_bert12):
    peft_model = add_lora(bert(tiny_bert12), LoraConfig(target_modules=["all-linear"], train_pooler=True))
    names = [n for n, _ in peft_model.named_parameters()]
    assert not any("pooler" in n and "lora_" in n for n in names)
    assert any("pooler.modules_to_save.default.dense.weight" in n for n in names)


def test_a_trained_pooler_is_saved_and_reloaded(tiny_bert12, tmp_path):
    base = bert(tiny_bert12)
    base.save_pretrained(tmp_path / "base_model")
    model = add_lora(base, LoraConfig(train_pooler=True)).eval()
    with torch.no_grad():  # stand-in for training: the pooler's trainable copy moves away from the base
        for name, p in model.named_parameters():
            if "pooler.modules_to_save" in name or "lora_B" in name:
                p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    keys = list(safe_open(tmp_path / "adapter_model.safetensors", "pt").keys())
    assert {"base_model.model.bert.pooler.dense.weight", "base_model.model.bert.pooler.dense.bias"} <= set(keys)
    x = torch.tensor([[2, 7, 9, 3, 11]])
    with torch.no_grad():
        want = model(input_ids=x).logits
        got = load_stage_model(tmp_path)(input_ids=x).logits
        frozen = base.bert.pooler  # the pooler as pretrained (PEFT keeps it as the wrapper's original)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert not torch.equal(
        model.base_model.model.bert.pooler.modules_to_save["default"].dense.weight, frozen.original_module.dense.weight
    )


# ---------------------------------------------------------------- a checkpoint without pooler weights


def test_missing_pooler_weights_get_one_line_of_ours(tiny_bert6, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    weights = load_file(tiny_bert6 / "model.safetensors")
    for name in ("config.json", "vocab.txt", "tokenizer_config.json", "tokenizer.json"):
        if (tiny_bert6 / name).exists():
            shutil.copy(tiny_bert6 / name, tmp_path / name)
    save_file({k: v for k, v in weights.items() if "pooler" not in k}, tmp_path / "model.safetensors")
    lines = []
    model = load_classifier(str(tmp_path), ["no", "yes"], log=lines.append)
    assert len(lines) == 1 and "has no weights for bert.pooler.dense; they start random" in lines[0], lines
    assert pooler_decision(model, "auto")[0] is True  # newly initialised: zero bias
    lines.clear()
    load_classifier(str(tiny_bert6), ["no", "yes"], log=lines.append)
    assert lines == []  # the new classifier head of a plain encoder is expected, not worth a line


# ---------------------------------------------------------------- the pipeline


def test_stage_hash_includes_the_pooler_decision(tiny_bert12, tiny_data, tmp_path):
    from distill_lora.experiment import pipeline

    ctx = pipeline.prepare(load_config(str(tiny_config(tmp_path, tiny_bert12, tiny_data))))
    assert pipeline.lora_hash(ctx, "lora-student", True) != pipeline.lora_hash(ctx, "lora-student", False)


def test_pipeline_lora_stages_trained_their_pooler(finished_run):
    """The tiny BERT's pooler was never trained, so auto trains it: the stage records and saves it."""
    for stage in ("lora-student", "lora-teacher"):
        d = finished_run["output"] / "seed-0" / stage
        metrics = json.loads((d / "metrics.json").read_text())
        assert metrics["pooler_trained"] is True
        assert f"[{stage}] pooler trained in full (auto: bert.pooler.dense.bias is all zeros" in finished_run["stdout"]
        assert "bert.pooler" in json.loads((d / "adapter_config.json").read_text())["modules_to_save"]
        with safe_open(d / "adapter_model.safetensors", "pt") as f:
            trained = f.get_tensor("base_model.model.bert.pooler.dense.weight")
        with safe_open(d / "base_model" / "model.safetensors", "pt") as f:
            pretrained = f.get_tensor("bert.pooler.dense.weight")
        assert (trained - pretrained).abs().max() > 1e-4  # it moved in training
