"""Per-batch step losses: model, batch → (loss, parts). The training loop calls one of them per batch."""

from __future__ import annotations

from distill_lora.config import DistillConfig
from distill_lora.train.losses import cross_entropy, distillation_loss
from distill_lora.train.models import layer_cls


def ce_step(model, batch):
    """Step loss of the teacher and LoRA stages: cross-entropy with the true labels."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    loss = cross_entropy(out.logits, batch["labels"])
    return loss, {"ce": loss}


def distill_step(targets: dict, k: DistillConfig, n_layers: int):
    """Step loss of a student: distillation against cached teacher targets, looked up by example index.

    targets: {"logits": (N, C)} and, when k.w_hidden > 0, {"cls": (N, n_layers, H)} for the training split.
    """
    cache = {}

    def loss_fn(model, batch):
        if not cache:  # move the cached targets to the training device once
            cache.update({key: v.to(batch["input_ids"].device) for key, v in targets.items()})
        out = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=k.w_hidden > 0
        )
        idx = batch["idx"]
        student_cls = teacher_cls = None
        if k.w_hidden > 0:  # the outputs of student layers 1..n (hidden_states[0] is the embeddings)
            student_cls = layer_cls(model, out.hidden_states, range(1, n_layers + 1))
            teacher_cls = [cache["cls"][idx, i] for i in range(n_layers)]
        return distillation_loss(
            out.logits,
            cache["logits"][idx],
            batch["labels"],
            temperature=k.temperature,
            w_ce=k.w_ce,
            w_kl=k.w_kl,
            w_cos=k.w_cos,
            w_hidden=k.w_hidden,
            student_cls=student_cls,
            teacher_cls=teacher_cls,
        )

    return loss_fn
