"""Metric code against values worked out by hand."""

import numpy as np
import pytest

from distill_lora.metrics import (
    class_shares,
    classification_metrics,
    expected_calibration_error,
    majority_baseline,
    metrics_from_predictions,
    prediction_record,
    recorded_probabilities,
)

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


def test_ece_and_reliability_bins_by_hand_with_three_bins():
    from distill_lora.metrics import expected_calibration_error, reliability_bins

    # p(class 1) and label; prediction = p >= 0.5, confidence = max(p, 1 - p); 15 bins of width 1/15
    p = np.array([0.90, 0.92, 0.10, 0.88, 0.62, 0.35, 0.70])
    labels = np.array([1, 1, 0, 0, 1, 1, 0])
    # confidence  0.90 0.92 0.90 0.88 | 0.62 0.65 | 0.70
    # right?       yes  yes  yes  no  | yes  no   | no
    # bin = int(conf * 15): 13.5 13.8 13.5 13.2 -> 13;  9.3 9.75 -> 9;  10.5 -> 10
    # bin 13: 4 examples, accuracy 3/4 = 0.75, confidence (0.90 + 0.92 + 0.90 + 0.88) / 4 = 0.90 -> gap 0.15
    # bin 9:  2 examples, accuracy 1/2 = 0.5,  confidence (0.62 + 0.65) / 2 = 0.635             -> gap 0.135
    # bin 10: 1 example,  accuracy 0,          confidence 0.70                                   -> gap 0.70
    # ECE = 4/7 * 0.15 + 2/7 * 0.135 + 1/7 * 0.70 = (0.6 + 0.27 + 0.7) / 7 = 1.57 / 7
    assert expected_calibration_error(labels, p) == pytest.approx(1.57 / 7)
    bins = reliability_bins(labels, p, n_bins=15)  # non-empty bins in bin order: 9, 10, 13
    assert bins["count"] == [2, 1, 4]
    assert bins["accuracy"] == pytest.approx([0.5, 0.0, 0.75])
    assert bins["confidence"] == pytest.approx([0.635, 0.70, 0.90])


# ---------------------------------------------------------------- any number of classes


def _three_class_case(seed=0, n=60):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[labels]
    return labels, logits


def test_three_class_metrics_match_scikit_learn():
    from sklearn.metrics import f1_score, precision_recall_fscore_support, roc_auc_score

    labels, logits = _three_class_case()
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    preds = probs.argmax(axis=1)
    m = classification_metrics(labels, logits, ["a", "b", "c"])
    assert m["f1_positive"] is None  # "the positive class" means nothing with three classes
    assert m["macro_f1"] == pytest.approx(f1_score(labels, preds, average="macro"))
    assert m["roc_auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    p, r, f, s = precision_recall_fscore_support(labels, preds)
    for i, name in enumerate("abc"):
        assert m["per_class"][name] == pytest.approx({"precision": p[i], "recall": r[i], "f1": f[i], "support": s[i]})
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == len(labels) and list(cm.sum(axis=1)) == [20, 20, 20]
    # ECE of the top class: one bin holding everything is |accuracy - mean top probability|
    assert expected_calibration_error(labels, probs, n_bins=1) == pytest.approx(
        abs((preds == labels).mean() - probs.max(axis=1).mean())
    )


def test_binary_forms_of_probabilities_agree():
    labels, logits = np.array([0, 1, 1, 0, 1]), np.array([[2.0, 0.1], [0.3, 0.9], [1.0, 1.0], [0.0, -1.0], [-2.0, 3.0]])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    record = prediction_record(probs.argmax(axis=1), probs)
    assert set(record) == {"pred", "prob_positive"}  # binary runs keep the field they always had
    assert recorded_probabilities(record) == pytest.approx(probs)
    a = metrics_from_predictions(labels, probs.argmax(1), probs, ["n", "p"])
    b = metrics_from_predictions(labels, probs.argmax(1), probs[:, 1], ["n", "p"])
    assert a == b and a["f1_positive"] is not None


def test_three_class_prediction_record_keeps_every_class():
    labels, logits = _three_class_case(n=6)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    record = prediction_record(probs.argmax(axis=1), probs)
    assert set(record) == {"pred", "probs"} and recorded_probabilities(record) == pytest.approx(probs)


def test_class_shares_and_majority_with_three_classes():
    shares = class_shares([0, 1, 1, 2, 2, 2], ["a", "b", "c"])
    assert shares == {"class_shares": {"a": pytest.approx(1 / 6), "b": pytest.approx(2 / 6), "c": pytest.approx(0.5)}}
    assert class_shares([0, 1, 1, 1], ["n", "p"])["positive_share"] == 0.75
    m = majority_baseline([2, 2, 1], [0, 1, 2, 2], ["a", "b", "c"])
    assert m["accuracy"] == 0.5 and m["confusion_matrix"][0] == [0, 0, 1]
