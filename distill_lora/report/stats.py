"""Uncertainty: bootstrap CIs (i.i.d. or by whole groups), paired differences, exact McNemar tests, Holm's
adjustment, tests over seeds, and an exact interval when the bootstrap collapses (scipy does the maths).

A bootstrap resample is held as a row of example weights (how often each test example was drawn), so
every model and metric of a report is scored on exactly the same resamples, and scoring is one matrix
product instead of a scikit-learn call per resample.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score


def metric_point(metric: str, labels, preds, n_classes: int) -> float:
    """The table's value of a metric: macro-F1 over all n_classes (labels=), zero when a class is undefined."""
    if metric == "accuracy":
        return float(accuracy_score(labels, preds))
    return float(f1_score(labels, preds, labels=list(range(n_classes)), average="macro", zero_division=0))


def resample_weights(n: int, groups=None, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_resamples, n) counts of each test example in each bootstrap resample.

    Without groups, n examples are drawn with replacement (the draws numpy's default_rng(seed) makes as
    rng.integers(0, n, (n_resamples, n)), the same scipy.stats.bootstrap makes). With groups (one id per
    example), G whole groups are drawn with replacement instead, rng.integers(0, G, (n_resamples, G)) with the
    groups numbered in order of first appearance, and every example counts as often as its group was drawn:
    near-duplicate texts of one group are never split across a resample (a cluster bootstrap).
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        draws = rng.integers(0, n, (n_resamples, n))
        return np.stack([np.bincount(row, minlength=n) for row in draws])
    _, first, member_of = np.unique(np.asarray(groups, dtype=str), return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # np.unique sorts ids; renumber groups by first appearance
    member_of = order[member_of]
    n_groups = len(first)
    draws = rng.integers(0, n_groups, (n_resamples, n_groups))
    group_counts = np.stack([np.bincount(row, minlength=n_groups) for row in draws])
    return group_counts[:, member_of]


def weighted_metric(metric: str, weights: np.ndarray, labels, preds, n_classes: int) -> np.ndarray:
    """The metric on every resample (one per row of weights): accuracy, or macro-F1 as the table computes it.

    Per class c: F1_c = 2·TP_c / (2·TP_c + FP_c + FN_c), 0 when the denominator is 0 (a class absent from a
    resample's labels and predictions, as scikit-learn's zero_division=0 with labels= all classes); macro-F1 is
    their mean over all n_classes.
    """
    labels, preds = np.asarray(labels), np.asarray(preds)
    w = np.asarray(weights, dtype=np.float64)
    if metric == "accuracy":
        return w @ (labels == preds) / w.sum(axis=1)
    f1 = []
    for c in range(n_classes):
        tp = w @ ((preds == c) & (labels == c))
        wrong = w @ ((preds == c) != (labels == c))  # FP_c + FN_c
        denominator = 2 * tp + wrong
        f1.append(np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0))
    return np.mean(f1, axis=0)


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    # linear interpolation between order statistics: scipy.stats.bootstrap's "percentile" method
    low, high = np.percentile(values, [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2])
    return float(low), float(high)


def _method(groups) -> str:
    return "percentile bootstrap" if groups is None else f"cluster bootstrap ({len(set(groups))} groups)"


def bootstrap_ci(
    labels,
    preds_per_seed: list,
    metric: str,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    groups=None,
    n_classes: int = 2,
) -> dict:
    """Percentile bootstrap CI of the seed-averaged metric, resampling test examples (or whole groups).

    The same resamples are used for every seed, so the interval reflects test-set sampling of the mean over
    seeds (seed-to-seed spread is reported separately as std). When accuracy's bootstrap collapses to one
    value (e.g. 140 of 140 right: every resample scores 1.0), the resamples carry no uncertainty, so the exact
    Clopper–Pearson interval of the pooled right answers is given instead, and "method" says so.
    """
    labels = np.asarray(labels)
    preds = [np.asarray(p) for p in preds_per_seed]
    point = float(np.mean([metric_point(metric, labels, p, n_classes) for p in preds]))
    w = resample_weights(len(labels), groups, n_resamples, seed)
    values = np.mean([weighted_metric(metric, w, labels, p, n_classes) for p in preds], axis=0)
    low, high = _percentiles(values, confidence)
    out = {
        "point": point,
        "low": low,
        "high": high,
        "confidence": confidence,
        "n_resamples": n_resamples,
        "method": _method(groups),
    }
    if metric == "accuracy" and low == high:
        right = int(sum(int(np.sum(p == labels)) for p in preds))
        ci = stats.binomtest(right, len(labels) * len(preds)).proportion_ci(confidence, method="exact")
        out.update(low=float(ci.low), high=float(ci.high), method="clopper-pearson")
    return out


def paired_diff_ci(
    labels,
    preds_a: list,
    preds_b: list,
    metric: str,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    groups=None,
    n_classes: int = 2,
) -> dict:
    """Paired bootstrap of the seed-averaged difference A − B of a metric, on the same resamples as bootstrap_ci.

    Both models are scored on each resample, so the interval is of the difference itself. p is the percentile
    bootstrap p-value of "no difference": twice the share of resampled differences on the far side of 0, at
    most 1 (0 when no resample reaches 0: a resolution of 1/n_resamples). The (1 − p) percentile interval just
    touches 0, so p < alpha when the (1 − alpha) interval excludes 0 (up to the interpolation between resamples).
    Under Holm over m pairs, a nonzero p needs 2·m/alpha resamples to resolve, so with few resamples only p = 0
    (every resample on one side) survives the adjustment.
    """
    labels = np.asarray(labels)
    pairs = list(zip(map(np.asarray, preds_a), map(np.asarray, preds_b)))
    point = float(
        np.mean(
            [metric_point(metric, labels, a, n_classes) - metric_point(metric, labels, b, n_classes) for a, b in pairs]
        )
    )
    w = resample_weights(len(labels), groups, n_resamples, seed)
    diffs = np.mean(
        [
            weighted_metric(metric, w, labels, a, n_classes) - weighted_metric(metric, w, labels, b, n_classes)
            for a, b in pairs
        ],
        axis=0,
    )
    low, high = _percentiles(diffs, confidence)
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    return {
        "point": point,
        "low": low,
        "high": high,
        "p_value": float(p),
        "confidence": confidence,
        "n_resamples": n_resamples,
        "method": _method(groups),
    }


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order.

    With the m p-values sorted ascending, p_(1) ≤ … ≤ p_(m): adjusted p_(i) = max over j ≤ i of
    min(1, (m − j + 1) · p_(j)). Rejecting where the adjusted p < alpha keeps the chance of any false
    rejection among the m tests at most alpha (Holm 1979), without assuming the tests are independent.
    """
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted.tolist()


def mcnemar_exact(labels, preds_a, preds_b) -> dict:
    """Exact McNemar test: b = A right & B wrong, c = A wrong & B right; p = binomial test of b vs c at 1/2."""
    labels, a, b_ = np.asarray(labels), np.asarray(preds_a), np.asarray(preds_b)
    a_right, b_right = a == labels, b_ == labels
    b = int(np.sum(a_right & ~b_right))
    c = int(np.sum(~a_right & b_right))
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return {"a_only_right": b, "b_only_right": c, "p_value": p}


def paired_seed_test(scores_a: list[float], scores_b: list[float]) -> dict:
    """Paired t-test over seeds of a metric (A − B); p is None, with the reason, when it is undefined."""
    diffs = np.asarray(scores_a) - np.asarray(scores_b)
    out = {"mean_diff": float(diffs.mean()), "n_seeds": int(len(diffs)), "p_value": None, "reason": None}
    if len(diffs) < 2:
        out["reason"] = "one seed: no spread over seeds to test"
    elif np.allclose(diffs, diffs[0]):  # no spread: the t statistic is 0/0 or ±∞, not evidence
        out["reason"] = f"every seed's difference is {diffs[0]:+.4f}: no spread, the t statistic is undefined"
    else:
        out["p_value"] = float(stats.ttest_rel(scores_a, scores_b).pvalue)
    return out
