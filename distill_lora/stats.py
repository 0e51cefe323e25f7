"""Uncertainty: bootstrap confidence intervals, exact McNemar tests, tests over seeds (scipy does the maths)."""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score

METRIC_FNS = {
    "accuracy": lambda y, p: accuracy_score(y, p),
    "macro_f1": lambda y, p: f1_score(y, p, average="macro", zero_division=0),
}


def bootstrap_ci(labels, preds_per_seed: list, metric: str, n_resamples: int = 1000, seed: int = 0,
                 confidence: float = 0.95) -> dict:
    """Percentile bootstrap CI of the seed-averaged metric, resampling test examples.

    The same resampled indices are used for every seed, so the interval reflects test-set sampling
    of the mean over seeds (seed-to-seed spread is reported separately as std).
    """
    labels = np.asarray(labels)
    preds = [np.asarray(p) for p in preds_per_seed]
    fn = METRIC_FNS[metric]

    def statistic(idx):
        idx = idx.astype(int)
        return np.mean([fn(labels[idx], p[idx]) for p in preds])

    point = float(np.mean([fn(labels, p) for p in preds]))
    res = stats.bootstrap((np.arange(len(labels)),), statistic, n_resamples=n_resamples, vectorized=False,
                          confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    return {"point": point, "low": float(res.confidence_interval.low), "high": float(res.confidence_interval.high),
            "confidence": confidence, "n_resamples": n_resamples}


def mcnemar_exact(labels, preds_a, preds_b) -> dict:
    """Exact McNemar test: b = A right & B wrong, c = A wrong & B right; p = binomial test of b vs c at 1/2."""
    labels, a, b_ = np.asarray(labels), np.asarray(preds_a), np.asarray(preds_b)
    a_right, b_right = a == labels, b_ == labels
    b = int(np.sum(a_right & ~b_right))
    c = int(np.sum(~a_right & b_right))
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return {"a_only_right": b, "b_only_right": c, "p_value": p}


def paired_seed_test(scores_a: list[float], scores_b: list[float]) -> dict:
    """Paired t-test over seeds of a metric (A − B); needs at least two seeds."""
    diffs = np.asarray(scores_a) - np.asarray(scores_b)
    out = {"mean_diff": float(diffs.mean()), "n_seeds": int(len(diffs)), "p_value": None}
    if len(diffs) >= 2:
        if np.allclose(diffs, diffs[0]):  # no spread: the t statistic is undefined
            out["p_value"] = 1.0 if diffs[0] == 0 else 0.0
        else:
            out["p_value"] = float(stats.ttest_rel(scores_a, scores_b).pvalue)
    return out
