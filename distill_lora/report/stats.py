"""Uncertainty: bootstrap CIs (i.i.d. or by whole groups), paired differences, exact McNemar tests, Holm's
adjustment, tests over seeds, and an exact interval when the bootstrap collapses (scipy does the maths).

A bootstrap resample is held as a row of example weights (how often each test example was drawn), so
every model and metric of a report is scored on exactly the same resamples, and scoring is one matrix
product instead of a scikit-learn call per resample.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score


def metric_point(metric: str, labels, preds, n_classes: int) -> float:
    """The table's value of a metric: macro-F1 over all n_classes (labels=), zero when a class is undefined."""
    if metric == "accuracy":
        return float(accuracy_score(labels, preds))
    return float(f1_score(labels, preds, labels=list(range(n_classes)), average="macro", zero_division=0))


def resample_weights(n: int, groups=None, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_resamples, n) counts of each test example in each bootstrap resample (read-only: one copy is shared by
    every model and pair of a report, since the same arguments always give the same draws)."""
    return _resample_weights(n, None if groups is None else tuple(map(str, groups)), n_resamples, seed)


@functools.lru_cache(maxsize=8)
def _resample_weights(n: int, groups, n_resamples: int, seed: int) -> np.ndarray:
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
        weights = np.stack([np.bincount(row, minlength=n) for row in draws])
        weights.flags.writeable = False
        return weights
    member_of = unit_index(n, groups)
    n_groups = int(member_of.max()) + 1
    draws = rng.integers(0, n_groups, (n_resamples, n_groups))
    group_counts = np.stack([np.bincount(row, minlength=n_groups) for row in draws])
    weights = group_counts[:, member_of]
    weights.flags.writeable = False
    return weights


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
    if low == high:  # every resample scores the same: the resamples carry no uncertainty
        units = len(labels) if groups is None else len(set(groups))
        if metric != "accuracy":
            out.update(low=None, high=None, method=f"not computable: every resample gives {point:.4f}")
            return out
        # the exact interval counts the units of independent evidence (groups, or texts), not texts × seeds; a
        # share between two counts (seeds that disagree) takes the union of the intervals of both
        low_ci = stats.binomtest(int(np.floor(point * units + 1e-9)), units).proportion_ci(confidence, "exact")
        high_ci = stats.binomtest(int(np.ceil(point * units - 1e-9)), units).proportion_ci(confidence, "exact")
        kind = "groups" if groups is not None else "texts"
        out.update(low=float(low_ci.low), high=float(high_ci.high), method=f"clopper-pearson over {units} {kind}")
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


def holm_verdicts(p_values: list[float], min_ps: list[float], alpha: float) -> list[dict]:
    """Holm over a family, and for each test whether a verdict was possible at all: with its p replaced by the
    smallest p its design allows (the others unchanged), would it pass? If not, "needs_p_below" is the level that
    best p would face at its Holm step. One dict per test, in input order: {"p_holm", "reachable",
    "needs_p_below"}."""
    adjusted = holm(p_values)
    out = []
    for i, min_p in enumerate(min_ps):
        best = list(p_values[:i]) + [min_p] + list(p_values[i + 1 :])
        reachable = holm(best)[i] < alpha
        rank = int(np.argsort(np.argsort(best, kind="stable"))[i])  # 0 = smallest: faces alpha / m
        out.append({"p_holm": adjusted[i], "reachable": reachable, "needs_p_below": alpha / (len(best) - rank)})
    return out


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


# ---------------------------------------------------------------- tests that hold their level


def resampling_p(count: int, n_resamples: int) -> float:
    """A Monte Carlo p-value, (k + 1) / (B + 1): the observed statistic counts as one of the draws, so p is never
    0 and a test that rejects at p < alpha keeps its level for any number of draws B (Phipson & Smyth 2010)."""
    return (count + 1) / (n_resamples + 1)


def unit_index(n: int, groups=None) -> np.ndarray:
    """Each test text's unit of independent evidence, numbered 0.. in order of first appearance: its group
    (data.group_column) or, without groups, the text itself."""
    if groups is None:
        return np.arange(n)
    _, first, member_of = np.unique(np.asarray(groups, dtype=str), return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[member_of]


EXACT_UNITS = 16  # up to 2^16 swap patterns are enumerated; beyond, n_perm random ones are drawn


@functools.cache
def _every_pattern(n_units: int) -> np.ndarray:
    """All 2^n 0/1 swap patterns, pattern 0 (nothing swapped) first; built once per n (read-only)."""
    codes = np.arange(2**n_units)[:, None]
    patterns = ((codes >> np.arange(n_units)) & 1).astype(np.float64)
    patterns.flags.writeable = False
    return patterns


def _swap_patterns(n_units: int, n_perm: int, seed: int) -> tuple[np.ndarray, bool]:
    """(patterns, exact): every 0/1 swap pattern over n_units when there are few, else n_perm random ones."""
    if n_units <= EXACT_UNITS:
        return _every_pattern(n_units), True
    return np.random.default_rng(seed).integers(0, 2, (n_perm, n_units)).astype(np.float64), False


def _unit_sums(values: np.ndarray, units: np.ndarray, n_units: int) -> np.ndarray:
    """Sum of values (..., n) over the texts of each unit → (..., n_units)."""
    out = np.zeros(values.shape[:-1] + (n_units,))
    np.add.at(out, (..., units), values)
    return out


def swap_test(
    labels, preds_a: list, preds_b: list, metric: str, n_classes: int, groups=None, n_perm: int = 9999, seed: int = 0
) -> dict:
    """Two-sided permutation test of "A and B are equally good" for the seed-averaged difference A − B of a metric.

    Under the null the two models' predictions are exchangeable within each unit of independent evidence (a group
    of near-duplicates, or a text), so the test swaps A's and B's predictions (in every seed at once) for whole
    units and recomputes the difference on the whole test set. Only units where the two differ matter:
    G' = "differing_units". For accuracy this is the exact sign-flip test of per-unit differences (one seed, one
    text per unit: McNemar's exact test); for macro-F1, which is not a sum over units, the corpus macro-F1 is
    recomputed for each pattern. With G' ≤ 16 all 2^G' patterns are enumerated (exact p); else n_perm random
    patterns, p = (k + 1) / (n_perm + 1). "min_p" is the smallest p the design can give: no split of G' units goes
    below 2 / 2^G' (a pattern and its mirror image tie). "null_sd": the difference's spread under the null, the
    standard error the design gives it.
    """
    labels = np.asarray(labels)
    a, b = np.atleast_2d(np.asarray(preds_a)), np.atleast_2d(np.asarray(preds_b))
    units = unit_index(len(labels), groups)
    differing = np.unique(units[np.any(a != b, axis=0)])
    out = {"differing_units": int(len(differing)), "n_units": int(units.max()) + 1 if len(units) else 0}
    if len(differing) == 0:
        return {**out, "statistic": 0.0, "p_value": 1.0, "min_p": 1.0, "exact": True, "n_perm": 1, "null_sd": 0.0}
    patterns, exact = _swap_patterns(len(differing), n_perm, seed)
    if not exact:  # the observed difference first, as the exact enumeration has it (pattern 0 swaps nothing)
        patterns = np.vstack([np.zeros((1, len(differing))), patterns])
    keep = np.isin(units, differing)
    local = np.searchsorted(differing, units[keep])  # the differing units renumbered 0..G'-1
    if metric == "accuracy":  # per unit: A's right answers minus B's, seed-averaged; a swap flips its sign
        right = (a[:, keep] == labels[keep]).astype(float) - (b[:, keep] == labels[keep])
        d = _unit_sums(right.mean(axis=0), local, len(differing)) / len(labels)
        values = d.sum() - 2 * patterns @ d
    else:
        values = _swapped_macro_f1_diff(labels, a, b, keep, local, len(differing), patterns, n_classes)
    observed, draws = values[0], values if exact else values[1:]
    extreme = int(np.sum(np.abs(draws) >= abs(observed) - 1e-9))  # ties within rounding count as extreme
    p = extreme / len(draws) if exact else resampling_p(extreme, len(draws))
    min_p = 2.0 ** (1 - len(differing)) if exact else max(2.0 ** (1 - len(differing)), resampling_p(0, len(draws)))
    return {
        **out,
        "statistic": float(observed),
        "p_value": float(min(1.0, p)),
        "min_p": float(min_p),
        "exact": exact,
        "n_perm": int(len(draws)),
        "null_sd": float(np.std(draws)),
    }


def _swapped_macro_f1_diff(labels, a, b, keep, local, n_diff, patterns, n_classes) -> np.ndarray:
    """Seed-averaged macro-F1(A) − macro-F1(B) under each swap pattern (a row of `patterns`).

    Per seed and class, TP and FP + FN are sums over texts: swapping a unit moves its counts from A to B and
    back, so each count under every pattern is the whole test set's count plus one matrix product."""
    diffs = []
    for pa, pb in zip(a, b):  # seeds
        f1_a, f1_b = [], []
        for c in range(n_classes):
            is_c = labels == c
            tp_a, tp_b = ((pa == c) & is_c).astype(float), ((pb == c) & is_c).astype(float)
            wrong_a, wrong_b = ((pa == c) != is_c).astype(float), ((pb == c) != is_c).astype(float)  # FP + FN
            move_tp = patterns @ _unit_sums((tp_b - tp_a)[keep], local, n_diff)
            move_wrong = patterns @ _unit_sums((wrong_b - wrong_a)[keep], local, n_diff)
            f1_a.append(_f1(tp_a.sum() + move_tp, wrong_a.sum() + move_wrong))
            f1_b.append(_f1(tp_b.sum() - move_tp, wrong_b.sum() - move_wrong))
        diffs.append(np.mean(f1_a, axis=0) - np.mean(f1_b, axis=0))
    return np.mean(diffs, axis=0)


def _f1(tp: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    denominator = 2 * tp + wrong
    return np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


def method_level_diff(
    labels, preds_a: list, preds_b: list, metric: str, n_classes: int, weights: np.ndarray, confidence: float = 0.95
) -> dict:
    """The difference between two methods (A − B, mean over k ≥ 2 training seeds) as an answer about the methods,
    not about these trained models, with a t interval on k − 1 degrees of freedom (wide with 2–3 seeds, as it
    should be).

    Its variance has two parts. The seeds' own: the sample variance s² of the per-seed differences, over k; each
    seed's difference carries its own training noise and its own share of test-set noise. The part every seed
    shares: a new test set would move all seeds' differences alike, which s² cannot see; it is the mean covariance
    between two seeds' differences over the bootstrap resamples `weights` (whole groups when grouped), at least 0.
    """
    labels = np.asarray(labels)
    per_seed = np.array(
        [
            metric_point(metric, labels, a, n_classes) - metric_point(metric, labels, b, n_classes)
            for a, b in zip(preds_a, preds_b)
        ]
    )
    k = len(per_seed)
    resampled = np.array(
        [
            weighted_metric(metric, weights, labels, a, n_classes)
            - weighted_metric(metric, weights, labels, b, n_classes)
            for a, b in zip(preds_a, preds_b)
        ]
    )  # (k, resamples)
    cov = np.cov(resampled)
    shared_var = max(0.0, float((cov.sum() - np.trace(cov)) / (k * (k - 1))))
    seed_var = float(np.var(per_seed, ddof=1))
    se = float(np.sqrt(seed_var / k + shared_var))
    point = float(per_seed.mean())
    q = float(stats.t.ppf(0.5 + confidence / 2, k - 1))
    p = float(2 * stats.t.sf(abs(point) / se, k - 1)) if se > 0 else float(point == 0)
    return {
        "point": point,
        "low": point - q * se,
        "high": point + q * se,
        "se": se,
        "seed_sd": float(np.sqrt(seed_var)),
        "test_se": float(np.sqrt(shared_var)),
        "df": k - 1,
        "p_value": p,
        "confidence": confidence,
        "per_seed": per_seed.tolist(),
    }


def detectable_difference(se: float, alpha_step: float, df: int | None = None, power: float = 0.8) -> float:
    """The minimum detectable difference at `power`: (q at 1 − alpha_step / 2 + q at power) × se, q the normal
    quantile (or Student's t on df degrees of freedom). alpha_step: the level the test faces at its Holm step."""
    dist = stats.norm if df is None else stats.t(df)
    return float((dist.ppf(1 - alpha_step / 2) + dist.ppf(power)) * se)


def units_needed(mdd: float, n_units: int, target: float) -> int:
    """About how many test units (texts or groups) would make the detectable difference `target`: the standard
    error shrinks as 1 / sqrt(n), so n × (mdd / target)²."""
    return int(np.ceil(n_units * (mdd / target) ** 2))


def seeds_needed(seed_sd: float, test_se: float, alpha_step: float, target: float, most: int = 50) -> int | None:
    """About how many training seeds would make a method-level difference of `target` detectable at 80% power, the
    test set unchanged (its variance stays); None when even `most` seeds would not (the test set is too small)."""
    for k in range(2, most + 1):
        if detectable_difference(float(np.sqrt(seed_sd**2 / k + test_se**2)), alpha_step, k - 1) <= target:
            return k
    return None


def noninferiority(
    labels, preds_new: list, preds_ref: list, margin: float, n_classes: int, weights: np.ndarray, groups=None
) -> dict:
    """One-sided test that `new` (e.g. an int8 copy) is less than `margin` macro-F1 worse than `ref`: H0 says
    new − ref ≤ −margin; p from z = (Δ + margin) / se (t on k − 1 degrees of freedom with k ≥ 2 seeds).

    se² = the difference's own variance (one seed: the swap test's spread under exchange of whole units, i.e. the
    observed disagreement; several: the method-level se²) + margin / G over G units (groups, or texts): the
    variance a loss of `margin` would have if it came from whole units lost at that rate, as Tango's score test
    restricts it under H0. Without it a copy that agrees with its source on a small test set would be
    "non-inferior" with certainty, though a few dozen texts cannot rule out a loss of 1%."""
    labels = np.asarray(labels)
    n_units = len(np.unique(unit_index(len(labels), groups)))
    floor = margin / n_units
    if len(preds_new) >= 2:
        m = method_level_diff(labels, preds_new, preds_ref, "macro_f1", n_classes, weights)
        se = float(np.sqrt(m["se"] ** 2 + floor))
        p = float(stats.t.sf((m["point"] + margin) / se, m["df"]))
        return {
            "point": m["point"],
            "se": se,
            "p_value": p,
            "margin": margin,
            "method": f"t over {len(preds_new)} seeds",
        }
    swap = swap_test(labels, preds_new, preds_ref, "macro_f1", n_classes, groups)
    se = float(np.sqrt(swap["null_sd"] ** 2 + floor))
    p = float(stats.norm.sf((swap["statistic"] + margin) / se))
    return {"point": swap["statistic"], "se": se, "p_value": p, "margin": margin, "method": "z, one seed"}
