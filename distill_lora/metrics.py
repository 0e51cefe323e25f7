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
from sklearn.preprocessing import label_binarize


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def class_probabilities(probs) -> np.ndarray:
    """(N, C) class probabilities from either form a run records: a (N, C) matrix, or the binary p(positive).
    Binary probabilities are always rebuilt from p(positive), so both forms give the same bits."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[:, 1]
    return np.stack([1 - p, p], axis=1) if p.ndim == 1 else p


def prediction_record(preds, probs) -> dict:
    """What results.json keeps per test text: the prediction and p(positive) when binary, else every class's p."""
    p = np.asarray(probs, dtype=np.float64)
    record = {"pred": [int(x) for x in preds]}
    if p.shape[1] == 2:  # binary runs keep the field they always had
        record["prob_positive"] = [float(x) for x in p[:, 1]]
    else:
        record["probs"] = [[float(x) for x in row] for row in p]
    return record


def recorded_probabilities(predictions: dict) -> np.ndarray:
    """(N, C) probabilities back from a prediction_record."""
    return class_probabilities(predictions["probs"] if "probs" in predictions else predictions["prob_positive"])


def _confidence_bins(labels, probs, n_bins: int):
    """Confidence of the predicted class, whether it was right, and its equal-width bin (0..n_bins-1)."""
    labels, p = np.asarray(labels), class_probabilities(probs)
    # binary: p(positive) >= 0.5 predicts positive (a tie goes to the positive class, as it always has)
    preds = (p[:, 1] >= 0.5).astype(int) if p.shape[1] == 2 else p.argmax(axis=1)
    confidence = p[np.arange(len(p)), preds]
    correct = (preds == labels).astype(float)
    return confidence, correct, np.minimum((confidence * n_bins).astype(int), n_bins - 1)


def expected_calibration_error(labels, probs, n_bins: int = 15) -> float:
    """ECE of the predicted class's confidence: Σ_b (|b| / N) · |accuracy(b) − confidence(b)|, equal-width bins.
    `probs` is (N, C) or the binary p(positive)."""
    confidence, correct, bins = _confidence_bins(labels, probs, n_bins)
    ece = 0.0
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def reliability_bins(labels, probs, n_bins: int = 10) -> dict:
    """Per confidence bin: mean confidence, accuracy and count (for the reliability diagram)."""
    confidence, correct, bins = _confidence_bins(labels, probs, n_bins)
    out = {"confidence": [], "accuracy": [], "count": []}
    for b in range(n_bins):
        inside = bins == b
        if inside.any():
            out["confidence"].append(float(confidence[inside].mean()))
            out["accuracy"].append(float(correct[inside].mean()))
            out["count"].append(int(inside.sum()))
    return out


def _ranking_scores(labels: np.ndarray, p: np.ndarray) -> tuple[float | None, float | None]:
    """ROC-AUC and PR-AUC: of p(positive) when binary; one-vs-rest and macro-averaged over the classes with
    more than one class; None when the test labels hold a single class (no ranking to score)."""
    if len(set(labels.tolist())) < 2:
        return None, None
    if p.shape[1] == 2:
        return float(roc_auc_score(labels, p[:, 1])), float(average_precision_score(labels, p[:, 1]))
    onehot = label_binarize(labels, classes=list(range(p.shape[1])))
    present = [c for c in range(p.shape[1]) if 0 < onehot[:, c].sum() < len(labels)]
    roc = np.mean([roc_auc_score(onehot[:, c], p[:, c]) for c in present])
    pr = np.mean([average_precision_score(onehot[:, c], p[:, c]) for c in present])
    return float(roc), float(pr)


def metrics_from_predictions(labels, preds, probs, label_names: list[str]) -> dict:
    """Every test metric of the report from hard predictions and the class probabilities ((N, C), or the
    binary p(positive)). Binary runs also get the positive class's F1; with more classes it is None."""
    labels, preds, p = np.asarray(labels), np.asarray(preds), class_probabilities(probs)
    classes = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=classes, zero_division=0)
    roc_auc, pr_auc = _ranking_scores(labels, p)
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, labels=classes, average="macro", zero_division=0)),
        "f1_positive": float(f1[1]) if len(classes) == 2 else None,
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "ece": expected_calibration_error(labels, p),
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
    """Metrics of logits (N, C). Predictions are the argmax, or p(class 1) ≥ threshold (binary) when one is given."""
    probs = softmax(np.asarray(logits, dtype=np.float64))
    preds = probs.argmax(axis=1) if threshold is None else (probs[:, 1] >= threshold).astype(int)
    return metrics_from_predictions(labels, preds, probs, label_names)


def tune_threshold(labels, logits) -> float:
    """The p(class 1) cut that maximises macro-F1 (on validation); ties go to the cut nearest 0.5."""
    p = softmax(np.asarray(logits, dtype=np.float64))[:, 1]
    labels = np.asarray(labels)
    candidates = np.unique(np.concatenate([p, [0.5]]))
    scores = [f1_score(labels, (p >= c).astype(int), average="macro", zero_division=0) for c in candidates]
    best = max(scores)
    return float(min((c for c, s in zip(candidates, scores) if s == best), key=lambda c: abs(c - 0.5)))


def class_shares(labels, label_names: list[str]) -> dict:
    """A split's class balance: {"class_shares": {name: share}}, plus "positive_share" when binary."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=len(label_names))
    out = {"class_shares": {name: float(c / len(labels)) for name, c in zip(label_names, counts)}}
    if len(label_names) == 2:
        out["positive_share"] = sum(y == 1 for y in labels) / len(labels)
    return out


def majority_baseline(train_labels, eval_labels, label_names: list[str]) -> dict:
    """Metrics of always predicting the most frequent training class."""
    majority = int(np.bincount(np.asarray(train_labels), minlength=len(label_names)).argmax())
    preds = np.full(len(eval_labels), majority)
    if len(label_names) == 2:  # p(positive) is 0 or 1, as it always was for binary runs
        return metrics_from_predictions(eval_labels, preds, np.full(len(eval_labels), float(majority)), label_names)
    return metrics_from_predictions(eval_labels, preds, np.eye(len(label_names))[preds], label_names)
