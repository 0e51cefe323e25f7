"""train/steps.py: the per-batch losses read the cached teacher targets of the batch's own examples."""

from types import SimpleNamespace

import pytest
import torch

from distill_lora.config import DistillConfig
from distill_lora.train.steps import ce_step, distill_step


class EchoModel(torch.nn.Module):
    """Answers example i (its input_ids[:, 0] is i) with row i of a table: a student that copies the teacher."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, input_ids, attention_mask, output_hidden_states=False):
        return SimpleNamespace(logits=self.table[input_ids[:, 0]])


def batch_of(idx: list[int], labels) -> dict:
    ids = torch.tensor(idx)
    return {"input_ids": ids[:, None], "attention_mask": torch.ones(len(idx), 1), "idx": ids, "labels": labels[ids]}


def test_each_example_is_distilled_against_its_own_cached_teacher_logits():
    """A student that answers exactly as the teacher did has zero KL and cosine loss on any batch in any order.

    Mutation caught: the targets looked up by batch position (cache[: len(idx)]) or off by one, not by example
    index: the losses are then far from 0 (targets differ by ~5 in logit from example to example)."""
    torch.manual_seed(0)
    teacher = 5 * torch.randn(12, 3)
    labels = torch.randint(0, 3, (12,))
    step = distill_step({"logits": teacher}, DistillConfig(w_ce=0.0, w_kl=0.5, w_cos=0.5), n_layers=2)
    model = EchoModel(teacher)
    for idx in ([7, 2, 11, 0], [3, 4, 5], [10, 9, 1, 6, 8]):
        total, parts = step(model, batch_of(idx, labels))
        assert float(parts["kl"]) < 1e-6 and float(parts["cos"]) < 1e-6, idx
        assert float(total) < 1e-6
    # the same student against shuffled targets is far off: the check above can fail
    _, parts = step(EchoModel(teacher.roll(1, dims=0)), batch_of([7, 2, 11, 0], labels))
    assert float(parts["kl"]) > 1.0


def test_ce_step_is_the_cross_entropy_with_the_batch_labels():
    torch.manual_seed(0)
    table, labels = torch.randn(5, 2), torch.tensor([0, 1, 1, 0, 1])
    loss, parts = ce_step(EchoModel(table), batch_of([4, 0, 2], labels))
    want = torch.nn.functional.cross_entropy(table[[4, 0, 2]], labels[[4, 0, 2]])
    assert float(loss) == pytest.approx(float(want), rel=1e-6) and parts == {"ce": loss}
