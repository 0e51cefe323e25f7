"""Classification metrics from labels and logits (scikit-learn does the maths)."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def classification_metrics(labels, logits, label_names: list[str]) -> dict:
    """accuracy, macro-F1, F1 of the positive class (index 1), per-class precision/recall, confusion matrix."""
    labels = np.asarray(labels)
    logits = np.asarray(logits, dtype=np.float64)
    preds = logits.argmax(axis=1)
    classes = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(labels, preds, labels=classes, zero_division=0)
    return {
        "n": int(len(labels)),
        "accuracy": float(accuracy_score(labels, preds)),
        "macro_f1": float(f1_score(labels, preds, labels=classes, average="macro", zero_division=0)),
        "f1_positive": float(f1[1]),
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]),
                             "f1": float(f1[i]), "support": int(support[i])} for i, name in enumerate(label_names)},
        "confusion_matrix": confusion_matrix(labels, preds, labels=classes).tolist(),
    }


def majority_baseline(train_labels, eval_labels, label_names: list[str]) -> dict:
    """Metrics of always predicting the most frequent training class."""
    majority = int(np.bincount(np.asarray(train_labels), minlength=len(label_names)).argmax())
    logits = np.zeros((len(eval_labels), len(label_names)))
    logits[:, majority] = 1.0
    return classification_metrics(eval_labels, logits, label_names)
