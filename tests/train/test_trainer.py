"""train/trainer.py: the loop's own contracts, on a tiny BERT (the stages that use it are tested end to end in
tests/experiment/)."""

import json

import numpy as np
import pytest
import torch
from conftest import tiny_texts
from transformers import AutoTokenizer

from distill_lora.config import TrainConfig
from distill_lora.train import distributed, trainer
from distill_lora.train.data import Encoded, Split
from distill_lora.train.models import load_classifier
from distill_lora.train.steps import ce_step

NAMES = ["not toxic", "toxic"]


def encoded(model_dir, n: int, seed: int) -> Encoded:
    rows = tiny_texts(n, seed)
    split = Split(texts=[r["text"] for r in rows], labels=[r["label"] for r in rows])
    return Encoded(split, AutoTokenizer.from_pretrained(model_dir), max_length=16)


def test_evaluate_returns_each_text_in_order_whatever_the_batch_size(tiny_bert6):
    """Batching and dynamic padding change neither the order nor (beyond float noise) the logits; the loss is the
    mean cross-entropy of those logits; and evaluating draws nothing from the global RNG (dropout's)."""
    model = load_classifier(str(tiny_bert6), NAMES, log=lambda line: None)
    data = encoded(tiny_bert6, 23, 3)
    acc = distributed.make_accelerator("fp32")
    torch.manual_seed(0)
    one = trainer.evaluate(model, data, 1, acc, 0)
    after_one = torch.rand(1)
    torch.manual_seed(0)
    batched = trainer.evaluate(model, data, 8, acc, 0)
    assert torch.equal(torch.rand(1), after_one)  # the same global RNG state after either
    np.testing.assert_allclose(batched["logits"], one["logits"], atol=1e-5, rtol=0)
    want = torch.nn.functional.cross_entropy(torch.from_numpy(one["logits"]), torch.tensor(data.labels))
    assert one["loss"] == pytest.approx(float(want), rel=1e-6)


def test_fp32_forward_leaves_out_the_autocast_that_prepare_wraps_around_the_model(tiny_bert6):
    """accelerate wraps a prepared model's forward in autocast: evaluate(mixed=False) must run the model's own."""
    model = load_classifier(str(tiny_bert6), NAMES, log=lambda line: None).eval()
    acc = distributed.make_accelerator("bf16")
    prepared = acc.prepare(model)
    ids = torch.tensor([[2, 10, 11, 3]])
    with torch.no_grad():
        wrapped = prepared(input_ids=ids).logits
        plain = distributed.fp32_forward(prepared, acc)(input_ids=ids).logits
        reference = load_classifier(str(tiny_bert6), NAMES, log=lambda line: None).eval()(input_ids=ids).logits
    assert torch.equal(plain, reference)  # fp32, bit for bit
    assert not torch.equal(wrapped, reference)  # bf16 inside the wrapper


def test_train_keeps_the_selected_epochs_weights_and_logs_each_epoch(tiny_bert6, tmp_path):
    """The model train() returns holds the weights of the selected epoch (its validation loss is that epoch's), the
    history has one entry per epoch, and the step log ends each epoch with a validation line."""
    model = load_classifier(str(tiny_bert6), NAMES, log=lambda line: None)
    cfg = TrainConfig(epochs=3, batch_size=16, eval_batch_size=32, lr=1e-2, select_metric="loss", log_every=2)
    acc = distributed.make_accelerator("fp32")
    train_set, val_set = encoded(tiny_bert6, 64, 0), encoded(tiny_bert6, 24, 1)
    run = trainer.TrainRun(train_set, val_set, NAMES, 0, 0, tmp_path, "teacher", acc)
    result = trainer.train(model, ce_step, cfg, run)
    losses = [h["val_loss"] for h in result.history]
    assert len(losses) == 3 and result.selected_epoch == losses.index(min(losses)) + 1
    val = trainer.evaluate(acc.unwrap_model(model), val_set, 32, acc, 0)
    assert val["loss"] == pytest.approx(losses[result.selected_epoch - 1], abs=1e-6)
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [line["validation"]["epoch"] for line in log if "validation" in line] == [1, 2, 3]


def test_lora_plus_puts_the_b_matrices_in_a_group_of_their_own_at_a_higher_rate(tiny_bert6):
    """LoRA+ (train.lora_b_lr_ratio): every lora_B weight, and nothing else, learns at lr × ratio; at ratio 1 the
    groups are the usual two."""
    from distill_lora.config import LoraConfig
    from distill_lora.train.models import add_lora

    model = add_lora(load_classifier(str(tiny_bert6), NAMES, log=lambda line: None), LoraConfig(train_pooler=False))
    groups = trainer._param_groups(model, 0.01, 1e-3, 16.0)
    b = {id(p) for n, p in model.named_parameters() if ".lora_B." in n}
    assert len(groups) == 3 and groups[2]["lr"] == 16e-3 and {id(p) for p in groups[2]["params"]} == b
    assert all(
        ".lora_B." not in n
        for n, p in model.named_parameters()
        if id(p) in {id(q) for g in groups[:2] for q in g["params"]}
    )
    assert len(trainer._param_groups(model, 0.01, 1e-3, 1.0)) == 2
