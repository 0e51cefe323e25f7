"""Metric code against values worked out by hand."""
import numpy as np
import pytest

from distill_lora.metrics import classification_metrics, majority_baseline

NAMES = ["not toxic", "toxic"]


def logits_for(preds):
    out = np.zeros((len(preds), 2))
    out[np.arange(len(preds)), preds] = 1.0
    return out


def test_classification_metrics_by_hand():
    labels = [0, 0, 0, 1, 1, 1, 1, 0]
    preds = [0, 1, 0, 1, 1, 0, 1, 0]
    m = classification_metrics(labels, logits_for(preds), NAMES)
    # tp=3 fp=1 fn=1 tn=3
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["f1_positive"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    assert m["per_class"]["not toxic"]["f1"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx(0.75)
    assert m["confusion_matrix"] == [[3, 1], [1, 3]]
    assert m["per_class"]["toxic"]["precision"] == pytest.approx(0.75)
    assert m["n"] == 8


def test_macro_f1_unbalanced():
    labels = [0, 0, 0, 0, 1]
    preds = [0, 0, 0, 1, 1]
    m = classification_metrics(labels, logits_for(preds), NAMES)
    f1_neg = 2 * 3 / (2 * 3 + 0 + 1)
    f1_pos = 2 * 1 / (2 * 1 + 1 + 0)
    assert m["macro_f1"] == pytest.approx((f1_neg + f1_pos) / 2)


def test_majority_baseline():
    m = majority_baseline([0, 0, 1], [0, 1, 1, 0], NAMES)
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["f1_positive"] == 0.0
    assert m["macro_f1"] == pytest.approx((2 * 2 / (2 * 2 + 2)) / 2)
