"""Classification metrics from labels and logits (scikit-learn does the maths)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _confidence_bins(labels, prob_positive, n_bins: int):
    """Confidence of the predicted class, whether it was right, and its equal-width bin (0..n_bins-1)."""
    labels, p = np.asarray(labels), np.asarray(prob_positive, dtype=np.float64)
    preds = (p >= 0.5).astype(int)
    confidence = np.where(preds == 1, p, 1 - p)
    correct = (preds == labels).astype(float)
    return confidence, correct, np.minimum((confidence * n_bins).astype(int), n_bins - 1)


def expected_calibration_error(labels, prob_positive, n_bins: int = 15) -> float:
    """ECE of the predicted class's confidence: Σ_b (|b| / N) · |accuracy(b) − confidence(b)|, equal-width bins."""
    confidence, correct, bins = _confidence_bins(labels, prob_positive, n_bins)
    ece = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def reliability_bins(labels, prob_positive, n_bins: int = 10) -> dict:
    """Per confidence bin: mean confidence, accuracy and count (for the reliability diagram)."""
    confidence, correct, bins = _confidence_bins(labels, prob_positive, n_bins)
    out = {"confidence": [], "accuracy": [], "count": []}
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            out["confidence"].append(float(confidence[inside].mean()))
            out["accuracy"].append(float(correct[inside].mean()))
            out["count"].append(int(inside.sum()))
    return out


def metrics_from_predictions(labels, preds, prob_positive, label_names: list[str]) -> dict:
    """Every test metric of the report from hard predictions and the positive-class probability."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    classes = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=classes, zero_division=0)
    both_classes = len(set(labels.tolist())) > 1
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, labels=classes, average="macro", zero_division=0)),
        "f1_positive": float(f1[1]),
        "roc_auc": float(roc_auc_score(labels, prob_positive)) if both_classes else None,
        "pr_auc": float(average_precision_score(labels, prob_positive)) if both_classes else None,
        "ece": expected_calibration_error(labels, prob_positive),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": confusion_matrix(labels, preds, labels=classes).tolist(),
    }


def classification_metrics(labels, logits, label_names: list[str], threshold: float | None = None) -> dict:
    """Metrics of logits (N, C). Predictions are the argmax, or p(class 1) ≥ threshold when one is given."""
    probs = softmax(np.asarray(logits, dtype=np.float64))
    preds = probs.argmax(axis=1) if threshold is None else (probs[:, 1] >= threshold).astype(int)
    return metrics_from_predictions(labels, preds, probs[:, 1], label_names)


def tune_threshold(labels, logits) -> float:
    """The p(class 1) cut that maximises macro-F1 (on validation); ties go to the cut nearest 0.5."""
    p = softmax(np.asarray(logits, dtype=np.float64))[:, 1]
    labels = np.asarray(labels)
    candidates = np.unique(np.concatenate([p, [0.5]]))
    scores = [f1_score(labels, (p >= c).astype(int), average="macro", zero_division=0) for c in candidates]
    best = max(scores)
    return float(min((c for c, s in zip(candidates, scores) if s == best), key=lambda c: abs(c - 0.5)))


def majority_baseline(train_labels, eval_labels, label_names: list[str]) -> dict:
    """Metrics of always predicting the most frequent training class."""
    majority = int(np.bincount(np.asarray(train_labels), minlength=len(label_names)).argmax())
    preds = np.full(len(eval_labels), majority)
    return metrics_from_predictions(eval_labels, preds, np.full(len(eval_labels), float(majority)), label_names)
