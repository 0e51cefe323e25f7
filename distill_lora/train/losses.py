"""Loss functions: pure, named, each with its formula. Shapes: B = batch, C = classes, H = hidden."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mean_b −log softmax(logits_b)[y_b].   logits (B, C) float, labels (B,) long."""
    return F.cross_entropy(logits.float(), labels)


def kl_teacher_student(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · mean_b Σ_c p_t log(p_t / p_s),  p = softmax(logits / T)   (Hinton et al. 2015).

    The direction is KL(teacher ‖ student): the teacher's distribution is the target. The T²
    factor keeps the gradient scale independent of T.  Both inputs (B, C).
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits.float() / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / t, dim=-1)
    # kl_div(input=log q, target=log p, log_target=True) = Σ p (log p − log q); 'batchmean' sums classes, averages batch
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * t * t


def cosine_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """mean_b (1 − cos(s_b, t_b)): cosine embedding loss with target +1.  Both inputs (B, C)."""
    s, t = student_logits.float(), teacher_logits.float()
    return F.cosine_embedding_loss(s, t, torch.ones(s.shape[0], device=s.device))


def hidden_cosine(student_cls: list[torch.Tensor], teacher_cls: list[torch.Tensor]) -> torch.Tensor:
    """mean over mapped layers l and batch b of (1 − cos(h^s_{l,b}, h^t_{l,b})), [CLS] vectors (B, H)."""
    losses = [
        1 - F.cosine_similarity(s.float(), t.float(), dim=-1).mean()
        for s, t in zip(student_cls, teacher_cls, strict=True)
    ]
    return torch.stack(losses).mean()


def distillation_loss(
    student_logits,
    teacher_logits,
    labels,
    *,
    temperature: float,
    w_ce: float,
    w_kl: float,
    w_cos: float,
    w_hidden: float = 0.0,
    student_cls=None,
    teacher_cls=None,
):
    """w_ce·CE(s, y) + w_kl·T²·KL(p_t ‖ p_s) + w_cos·(1 − cos(s, t)) [+ w_hidden·hidden_cosine].

    Returns (total, parts) where parts holds each unweighted term as a float tensor.
    """
    parts = {
        "ce": cross_entropy(student_logits, labels),
        "kl": kl_teacher_student(student_logits, teacher_logits, temperature),
        "cos": cosine_logits(student_logits, teacher_logits),
    }
    total = w_ce * parts["ce"] + w_kl * parts["kl"] + w_cos * parts["cos"]
    if w_hidden > 0:
        parts["hidden"] = hidden_cosine(student_cls, teacher_cls)
        total = total + w_hidden * parts["hidden"]
    return total, parts
