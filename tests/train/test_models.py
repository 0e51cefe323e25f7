"""Layer maps and student surgery: exact, tensor by tensor."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from distill_lora.config import LoraConfig
from distill_lora.errors import UserError
from distill_lora.train.layer_specs import layers_name, resolve_layers
from distill_lora.train.models import add_lora, make_student


def test_presets_are_one_based():
    assert resolve_layers("odd", 12) == [1, 3, 5, 7, 9, 11]
    assert resolve_layers("even", 12) == [2, 4, 6, 8, 10, 12]
    assert resolve_layers("odd", 6) == [1, 3, 5]
    assert resolve_layers("even", 6) == [2, 4, 6]
    assert resolve_layers("1,4,7", 12) == [1, 4, 7]
    assert resolve_layers([2, 12], 12) == [2, 12]
    assert layers_name([1, 3, 5, 7, 9, 11], 12) == "odd"
    assert layers_name([2, 4, 6, 8, 10, 12], 12) == "even"
    assert layers_name([1, 4, 7], 12) == "1-4-7"
    assert resolve_layers("first", 12) == [1, 2, 3, 4, 5, 6] and resolve_layers("last", 12) == [7, 8, 9, 10, 11, 12]
    assert resolve_layers("first:4", 12) == [1, 2, 3, 4] and resolve_layers("last:3", 12) == [10, 11, 12]
    assert resolve_layers("distilbert", 12) == [1, 3, 5, 8, 10, 12]
    assert resolve_layers("distilbert", 6) == [1, 3, 6]
    assert layers_name([7, 8, 9, 10, 11, 12], 12) == "last" and layers_name([1, 3, 5, 8, 10, 12], 12) == "distilbert"


@pytest.mark.parametrize(
    "spec, message",
    [
        ("0,3,5", "outside 1..12"),
        ("1,3,13", "outside 1..12"),
        ("3,1,5", "strictly increasing"),
        ("1,1,5", "strictly increasing"),
        ("one,two", "odd, even, first"),
        ([], "1-based layer numbers"),
        (list(range(1, 13)), "must be shallower"),
        ("middle", "odd, even, first"),
        ("first:12", "student depth after ':'"),
        ("odd:3", "odd and even take no depth"),
    ],
)
def test_invalid_layer_lists_rejected(spec, message):
    with pytest.raises(UserError, match=message):
        resolve_layers(spec, 12)


def _layer(model, i):
    return dict(model.bert.encoder.layer[i].named_parameters())


@pytest.mark.parametrize("spec", ["odd", "even", "1,4,7,12", "first", "last", "distilbert", "last:3"])
def test_student_layers_are_exact_copies(tiny_bert12, spec):
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_bert12, num_labels=2)
    layers = resolve_layers(spec, 12)
    student = make_student(teacher, layers)
    assert student.config.num_hidden_layers == len(layers) == len(student.bert.encoder.layer)
    for i, src in enumerate(layers):
        s, t = _layer(student, i), _layer(teacher, src - 1)
        assert s.keys() == t.keys()
        for name in s:
            assert torch.equal(s[name], t[name]), (spec, i, name)
    # the layer that was not picked must differ (guards against copying everything in order)
    if spec == "even":
        assert not torch.equal(
            _layer(student, 0)["attention.self.query.weight"], _layer(teacher, 0)["attention.self.query.weight"]
        )
    for prefix in ("bert.embeddings", "bert.pooler", "classifier"):
        ts = {k: v for k, v in teacher.state_dict().items() if k.startswith(prefix)}
        ss = {k: v for k, v in student.state_dict().items() if k.startswith(prefix)}
        assert ts.keys() == ss.keys() and ts
        assert all(torch.equal(ts[k], ss[k]) for k in ts)
    # a copy, not shared storage: training the student must not move the teacher
    assert (
        student.bert.embeddings.word_embeddings.weight.data_ptr()
        != teacher.bert.embeddings.word_embeddings.weight.data_ptr()
    )


def test_odd_and_even_students_differ(tiny_bert12):
    teacher = AutoModelForSequenceClassification.from_pretrained(tiny_bert12, num_labels=2)
    odd, even = make_student(teacher, resolve_layers("odd", 12)), make_student(teacher, resolve_layers("even", 12))
    x = torch.tensor([[2, 7, 9, 3]])
    assert not torch.allclose(odd(input_ids=x).logits, even(input_ids=x).logits)


def test_lora_trains_classifier_and_adapters_only(tiny_bert12):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert12, num_labels=2)
    peft_model = add_lora(model, LoraConfig())
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("classifier" in n for n in trainable)
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)
    assert not any("query.base_layer" in n or "embeddings" in n for n in trainable)


def test_lora_bad_target_module(tiny_bert12):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert12, num_labels=2)
    with pytest.raises(UserError, match="not found in the model"):
        add_lora(model, LoraConfig(target_modules=["q_proj"]))


def test_lora_all_linear_leaves_the_head_unwrapped(tiny_bert12):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert12, num_labels=2)
    peft_model = add_lora(model, LoraConfig(target_modules=["all-linear"], use_rslora=True))
    names = [n for n, _ in peft_model.named_parameters()]
    assert not any("classifier" in n and "lora_" in n for n in names)
    for part in ("query", "key", "value", "attention.output.dense", "intermediate.dense"):
        assert any(part in n and "lora_A" in n for n in names), part
    assert any("classifier" in n and p.requires_grad for n, p in peft_model.named_parameters())
    assert peft_model.peft_config["default"].use_rslora


def test_lora_dora_and_gradient_checkpointing_train(tiny_bert6, tiny_data, tmp_path):
    from conftest import tiny_config
    from typer.testing import CliRunner

    from distill_lora.cli import app

    cfg = tiny_config(
        tmp_path,
        tiny_bert6,
        tiny_data,
        train={"epochs": 1, "gradient_checkpointing": True},
        lora={"use_dora": True, "models": ["lora-teacher"]},
    )
    r = CliRunner().invoke(app, ["lora", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    cfg_json = (tmp_path / "run" / "seed-0" / "lora-teacher" / "adapter_config.json").read_text()
    assert '"use_dora": true' in cfg_json


def test_a_half_precision_checkpoint_trains_from_fp32_weights(tiny_bert6, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    from distill_lora.train.models import load_classifier

    AutoModelForSequenceClassification.from_pretrained(tiny_bert6).to(torch.bfloat16).save_pretrained(tmp_path)
    (tmp_path / "vocab.txt").write_text((tiny_bert6 / "vocab.txt").read_text())
    model = load_classifier(str(tmp_path), ["no", "yes"])
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    original = AutoModelForSequenceClassification.from_pretrained(tmp_path)  # transformers keeps bf16 here
    assert next(original.parameters()).dtype == torch.bfloat16
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(model.state_dict()[key], original.state_dict()[key].float())


def test_a_bare_layer_number_says_how_to_write_a_layer_list():
    """`distill.layers: [1, 3]` is two specs, 1 and 3; the error used to recommend the very form given."""
    with pytest.raises(UserError, match=r"write distill.layers: \[\[1, 3\]\]"):
        resolve_layers(1, 6)
