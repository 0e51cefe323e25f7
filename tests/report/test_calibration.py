"""Seeded simulations of the designs the tool ships: its verdicts hold their level (family-wise false-positive
rate ≤ alpha + 3 Monte Carlo standard errors), keep their power, and the method-level interval over seeds covers.

Each simulation calls the report's own procedure (verdicts.swap_entry + verdicts.decide: the swap test, Holm within
the family, "no verdict possible"; stats.method_level_diff) on predictions drawn from a known truth. The full
design (45 pairs, 1,000+ runs) is scripts/calibration.py's; these are small enough for every `make test`.
"""

import itertools

import numpy as np
import pytest

from distill_lora.report import stats, verdicts

ALPHA = 0.05
RUNS = 400


def at_most(rate: float, runs: int = RUNS) -> float:
    """The nominal rate plus 3 Monte Carlo standard errors of a rate estimated from `runs` runs."""
    return rate + 3 * np.sqrt(rate * (1 - rate) / runs)


def grouped_null(rng, n_models=4, n_groups=14, per_group=10):
    """The demo's design: groups of near-duplicate texts; every model gets each group right with probability 0.8
    (its texts then mostly right), and each text's answer flips with probability 0.1: all models equally good."""
    groups = np.repeat(np.arange(n_groups), per_group)
    labels = rng.integers(0, 2, len(groups))
    right = (rng.random((n_models, n_groups)) < 0.8)[:, groups] ^ (rng.random((n_models, len(groups))) < 0.1)
    return labels, np.where(right, labels, 1 - labels), [f"t{g}" for g in groups]


def independent(rng, accuracies, n=140):
    labels = rng.integers(0, 2, n)
    right = rng.random((len(accuracies), n)) < np.asarray(accuracies)[:, None]
    return labels, np.where(right, labels, 1 - labels)


def verdicts_of(labels, preds, groups, n_perm=999) -> list[dict]:
    """Every pair of the models as one family, decided as the report decides one seed."""
    pairs = [
        verdicts.swap_entry(labels, [preds[i]], [preds[j]], groups, 2, seed=0, n_perm=n_perm) | {"a": i, "b": j}
        for i, j in itertools.combinations(range(len(preds)), 2)
    ]
    verdicts.decide(pairs, ALPHA, 0.02, 1)
    return pairs


def test_grouped_null_holds_its_level():
    """Today's rule (percentile cluster bootstrap, a p of 0 passing any Holm step) declared a winner in about
    half of such runs; the swap test over groups must stay within alpha."""
    rng = np.random.default_rng(0)
    wins = [any(p["verdict"] == "significant" for p in verdicts_of(*grouped_null(rng))) for _ in range(RUNS)]
    assert np.mean(wins) <= at_most(ALPHA)


def test_ungrouped_null_holds_its_level():
    rng = np.random.default_rng(1)
    wins = [
        any(p["verdict"] == "significant" for p in verdicts_of(*independent(rng, [0.8] * 4), None)) for _ in range(RUNS)
    ]
    assert np.mean(wins) <= at_most(ALPHA)


def test_a_truly_better_model_is_found():
    """Power: with 140 independent texts, a model 0.2 more accurate than three others (0.8 vs 0.6) is named the
    winner of a pair against one of them in ≥ 75% of pairs (a Holm family of 6; 0.85 measured with 9,999 draws)."""
    rng = np.random.default_rng(2)
    found = []
    for _ in range(100):
        pairs = verdicts_of(*independent(rng, [0.8, 0.6, 0.6, 0.6]), None)
        found += [p["winner"] == 0 for p in pairs if p["a"] == 0]
    assert np.mean(found) >= 0.75


def test_few_differing_groups_give_no_verdict():
    """5 groups all won by A (exact sign test p = 1/16 · 2 = 0.0625) cannot pass alpha at any Holm step:
    "no verdict possible", never a winner — the cluster bootstrap gave p ≈ 0 here."""
    groups = [f"g{i // 4}" for i in range(40)]
    labels = np.array([0, 1] * 20)
    a = labels.copy()
    b = labels.copy()
    b[:20] = 1 - b[:20]  # B wrong on every text of groups 0-4, A right
    (p,) = verdicts_of(labels, np.stack([a, b]), groups)
    assert p["differing_units"] == 5 and p["min_p"] == pytest.approx(2 / 32)
    assert p["p_value"] == pytest.approx(2 / 32) and p["verdict"] == "no verdict possible" and p["winner"] is None
    # the same split over 6 groups can decide: p = 2/64 < 0.05
    b[20:24] = 1 - b[20:24]
    (p,) = verdicts_of(labels, np.stack([a, b]), groups)
    assert p["differing_units"] == 6 and p["verdict"] == "significant" and p["winner"] == 0


def model_of(rng, labels, hard, accuracy):
    """One trained model: right where its draw is below its accuracy; 70% of its draws are the texts' shared
    hardness, so models err mostly on the same texts."""
    draw = np.where(rng.random(len(labels)) < 0.7, hard, rng.random(len(labels)))
    return np.where(draw < accuracy, labels, 1 - labels)


@pytest.mark.parametrize("k", [3, 5])
def test_method_level_interval_covers(k):
    """Two methods whose trained models vary from seed to seed (skill offset sd 0.03 per seed; the models of a
    method err mostly on the same hard texts) on a test set drawn afresh each run: the 95% method-level interval of
    the accuracy difference covers the true difference (0.05) in 93–99% of 400 runs. The bootstrap interval of
    the seed-averaged difference (the report's interval until now) sees only the test set, and covers far less."""
    rng = np.random.default_rng(10 + k)
    n, truth = 300, 0.05
    weights = stats.resample_weights(n, None, 300, 0)
    covered, bootstrap_covered = [], []
    for _ in range(RUNS):
        labels = rng.integers(0, 2, n)
        hard = rng.random(n)  # how hard each text is, shared by every model
        pa = [model_of(rng, labels, hard, x) for x in 0.80 + rng.normal(0, 0.03, k)]
        pb = [model_of(rng, labels, hard, x) for x in 0.75 + rng.normal(0, 0.03, k)]
        d = stats.method_level_diff(labels, pa, pb, "accuracy", 2, weights)
        covered.append(d["low"] <= truth <= d["high"])
        b = stats.paired_diff_ci(labels, pa, pb, "accuracy", 300, 0)
        bootstrap_covered.append(b["low"] <= truth <= b["high"])
    assert 0.93 <= np.mean(covered) <= 0.99
    assert np.mean(bootstrap_covered) < 0.9


@pytest.mark.parametrize("n, groups_of", [(500, 1), (140, 10)])
def test_noninferiority_holds_its_level_at_the_margin(n, groups_of):
    """The serving family's one-sided test: an int8-like copy that loses 1.25% of its source's right answers
    (true macro-F1 loss ≈ 0.010, the margin) is called non-inferior in ≤ alpha + 3 MC SE of 400 runs, texts
    independent or in groups of 10. Without the margin / G floor on the variance, a copy that happened to agree
    with its source on a small test set would be "non-inferior" with certainty."""
    rng = np.random.default_rng(20 + groups_of)
    groups = None if groups_of == 1 else [f"g{i // groups_of}" for i in range(n)]
    unit = np.arange(n) // groups_of
    weights = stats.resample_weights(n, groups, 200, 0)
    shown = []
    for _ in range(RUNS):
        labels = rng.integers(0, 2, n)
        source = np.where(rng.random(n) < 0.8, labels, 1 - labels)
        lost = (rng.random(unit[-1] + 1) < 0.0125)[unit] & (source == labels)
        row = np.where(lost, 1 - source, source)
        shown.append(stats.noninferiority(labels, [row], [source], 0.01, 2, weights, groups)["p_value"] < ALPHA)
    assert np.mean(shown) <= at_most(ALPHA)
