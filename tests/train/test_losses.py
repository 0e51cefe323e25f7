"""Each loss term against numbers computed by hand (in plain Python math)."""

import math

import pytest
import torch

from distill_lora.train.losses import cosine_logits, cross_entropy, distillation_loss, hidden_cosine, kl_teacher_student


def softmax(xs, t=1.0):
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


S = [[2.0, 0.0], [0.5, 1.5]]
T = [[1.0, 1.0], [-1.0, 2.0]]
Y = [0, 1]


def hand_kl(temperature):
    total = 0.0
    for s, t in zip(S, T):
        ps, pt = softmax(s, temperature), softmax(t, temperature)
        total += sum(a * math.log(a / b) for a, b in zip(pt, ps))
    return temperature**2 * total / len(S)


def test_cross_entropy_matches_hand_value():
    hand = (-math.log(softmax(S[0])[0]) - math.log(softmax(S[1])[1])) / 2
    assert cross_entropy(torch.tensor(S), torch.tensor(Y)).item() == pytest.approx(hand, rel=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kl_is_teacher_to_student_with_t_squared(temperature):
    got = kl_teacher_student(torch.tensor(S), torch.tensor(T), temperature).item()
    assert got == pytest.approx(hand_kl(temperature), rel=1e-5)


def test_kl_direction_is_not_reversed():
    # KL(p_s || p_t) differs from KL(p_t || p_s) here: a reversed KL would fail this
    reversed_ = 0.0
    for s, t in zip(S, T):
        ps, pt = softmax(s, 2.0), softmax(t, 2.0)
        reversed_ += sum(a * math.log(a / b) for a, b in zip(ps, pt))
    reversed_ = 4.0 * reversed_ / 2
    got = kl_teacher_student(torch.tensor(S), torch.tensor(T), 2.0).item()
    assert abs(got - reversed_) > 1e-3
    assert got == pytest.approx(hand_kl(2.0), rel=1e-5)


def test_kl_zero_for_equal_logits():
    x = torch.tensor(S)
    assert kl_teacher_student(x, x.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_cosine_matches_hand_value():
    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    hand = sum(1 - cos(s, t) for s, t in zip(S, T)) / 2
    assert cosine_logits(torch.tensor(S), torch.tensor(T)).item() == pytest.approx(hand, rel=1e-6)


def test_weights_combine_terms():
    s, t, y = torch.tensor(S), torch.tensor(T), torch.tensor(Y)
    total, parts = distillation_loss(s, t, y, temperature=2.0, w_ce=0.5, w_kl=0.25, w_cos=2.0)
    expect = 0.5 * parts["ce"] + 0.25 * parts["kl"] + 2.0 * parts["cos"]
    assert total.item() == pytest.approx(expect.item(), rel=1e-6)
    assert parts["kl"].item() == pytest.approx(hand_kl(2.0), rel=1e-5)
    only_ce, _ = distillation_loss(s, t, y, temperature=2.0, w_ce=1.0, w_kl=0.0, w_cos=0.0)
    assert only_ce.item() == pytest.approx(parts["ce"].item(), rel=1e-6)
    assert "hidden" not in parts


def test_hidden_cosine_term():
    a = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    b = [torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]])]
    # layer 1 identical (loss 0), layer 2 orthogonal (loss 1) → mean 0.5
    assert hidden_cosine(a, b).item() == pytest.approx(0.5)
    s, t, y = torch.tensor(S[:1]), torch.tensor(T[:1]), torch.tensor(Y[:1])
    total, parts = distillation_loss(
        s, t, y, temperature=1.0, w_ce=0, w_kl=0, w_cos=0, w_hidden=2.0, student_cls=a, teacher_cls=b
    )
    assert total.item() == pytest.approx(1.0)
    assert parts["hidden"].item() == pytest.approx(0.5)
