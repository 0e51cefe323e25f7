"""Statistics against cases worked out by hand."""

import math

import numpy as np
import pytest

from distill_lora.metrics import expected_calibration_error, tune_threshold
from distill_lora.report.stats import (
    bootstrap_ci,
    holm,
    mcnemar_exact,
    metric_point,
    noninferiority,
    paired_diff_ci,
    paired_seed_test,
    resample_weights,
    swap_test,
    weighted_metric,
)


def test_mcnemar_known_table():
    # A right/B wrong on 8 examples, A wrong/B right on 2, both right on 10
    labels = np.ones(20, dtype=int)
    a = np.array([1] * 8 + [0] * 2 + [1] * 10)
    b = np.array([0] * 8 + [1] * 2 + [1] * 10)
    r = mcnemar_exact(labels, a, b)
    assert (r["a_only_right"], r["b_only_right"]) == (8, 2)
    # two-sided exact binomial: 2 * P(X <= 2), X ~ Bin(10, 1/2)
    hand = 2 * sum(math.comb(10, k) for k in range(3)) / 2**10
    assert r["p_value"] == pytest.approx(hand)


def test_mcnemar_identical_predictions():
    labels = np.array([0, 1, 1, 0, 1])
    preds = np.array([0, 1, 0, 0, 0])
    assert mcnemar_exact(labels, preds, preds)["p_value"] == 1.0


def test_bootstrap_contains_point_and_narrows():
    rng = np.random.default_rng(0)
    small_y = rng.integers(0, 2, 100)
    small_p = np.where(rng.random(100) < 0.8, small_y, 1 - small_y)
    big_y = rng.integers(0, 2, 2000)
    big_p = np.where(rng.random(2000) < 0.8, big_y, 1 - big_y)
    small = bootstrap_ci(small_y, [small_p], "accuracy", n_resamples=1000)
    big = bootstrap_ci(big_y, [big_p], "accuracy", n_resamples=1000)
    for ci in (small, big):
        assert ci["low"] <= ci["point"] <= ci["high"]
    assert (big["high"] - big["low"]) < (small["high"] - small["low"]) / 2
    again = bootstrap_ci(small_y, [small_p], "accuracy", n_resamples=1000)
    assert again == small  # fixed seed: reproducible
    f1 = bootstrap_ci(small_y, [small_p, small_p], "macro_f1", n_resamples=200)
    assert f1["low"] <= f1["point"] <= f1["high"]


def test_ece_of_calibrated_toy_is_near_zero():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200_000)
    labels = (rng.uniform(0, 1, p.size) < p).astype(int)  # P(y=1 | p) = p: calibrated by construction
    assert expected_calibration_error(labels, p) < 0.01
    overconfident = np.where(p >= 0.5, 0.999, 0.001)
    assert expected_calibration_error(labels, overconfident) > 0.2


def test_ece_by_hand():
    # one bin with confidence 0.9 (4 examples, 3 right): |0.75 - 0.9| = 0.15
    labels = np.array([1, 1, 1, 0])
    assert expected_calibration_error(labels, np.full(4, 0.9)) == pytest.approx(0.15)


def test_paired_seed_test():
    r = paired_seed_test([0.80, 0.82, 0.81], [0.70, 0.73, 0.70])
    assert r["mean_diff"] == pytest.approx((0.10 + 0.09 + 0.11) / 3)
    assert r["p_value"] < 0.01
    assert paired_seed_test([0.8], [0.7])["p_value"] is None
    assert "one seed" in paired_seed_test([0.8], [0.7])["reason"]


def test_paired_seed_test_without_spread_is_not_a_p_of_zero():
    # every seed's difference is +0.1: the t statistic is 0.1 / 0, not evidence; p is n/a with the reason
    r = paired_seed_test([0.8, 0.9, 0.7], [0.7, 0.8, 0.6])
    assert r["p_value"] is None and "every seed's difference is +0.1000" in r["reason"]
    assert paired_seed_test([0.8, 0.8], [0.8, 0.8])["p_value"] is None


def test_threshold_tuning_on_validation():
    labels = np.array([0, 0, 0, 1, 1])
    p1 = np.array([0.1, 0.2, 0.35, 0.4, 0.45])  # all positives sit below 0.5: the best cut is 0.4
    logits = np.log(np.stack([1 - p1, p1], axis=1))
    assert tune_threshold(labels, logits) == pytest.approx(0.4)


def test_bootstrap_percentiles_of_a_known_resample_by_hand():
    # 5 test examples, 2 seeds, 6 resamples. The CI resamples indices with numpy's default_rng(seed):
    # scipy draws rng.integers(0, n, (n_resamples, n)) once; with seed 0 those rows are the ones below.
    labels = np.array([1, 0, 1, 1, 0])
    seed_a = np.array([1, 0, 0, 1, 1])  # right on examples 0, 1, 3
    seed_b = np.array([1, 1, 1, 1, 0])  # right on examples 0, 2, 3, 4
    rows = [[4, 3, 2, 1, 1], [0, 0, 0, 0, 4], [3, 4, 2, 3, 4], [3, 3, 2, 2, 4], [1, 4, 3, 0, 1], [4, 2, 0, 3, 3]]
    assert np.random.default_rng(0).integers(0, 5, (6, 5)).tolist() == rows
    # accuracy of each seed on each resample, then the mean over the two seeds:
    #   [4,3,2,1,1]: a 0+1+0+1+1 = 3/5, b 1+1+1+0+0 = 3/5 -> 0.6
    #   [0,0,0,0,4]: a 1+1+1+1+0 = 4/5, b 5/5             -> 0.9
    #   [3,4,2,3,4]: a 1+0+0+1+0 = 2/5, b 5/5             -> 0.7
    #   [3,3,2,2,4]: a 1+1+0+0+0 = 2/5, b 5/5             -> 0.7
    #   [1,4,3,0,1]: a 1+0+1+1+1 = 4/5, b 0+1+1+1+0 = 3/5 -> 0.7
    #   [4,2,0,3,3]: a 0+0+1+1+1 = 3/5, b 5/5             -> 0.8
    # sorted: 0.6 0.7 0.7 0.7 0.8 0.9. An 80% interval takes the 10th and 90th percentiles, linear
    # interpolation between order statistics (positions q * (6 - 1)):
    #   low  at 0.1 * 5 = 0.5: 0.6 + 0.5 * (0.7 - 0.6) = 0.65
    #   high at 0.9 * 5 = 4.5: 0.8 + 0.5 * (0.9 - 0.8) = 0.85
    ci = bootstrap_ci(labels, [seed_a, seed_b], "accuracy", n_resamples=6, seed=0, confidence=0.8)
    assert ci["low"] == pytest.approx(0.65) and ci["high"] == pytest.approx(0.85)
    assert ci["point"] == pytest.approx((3 / 5 + 4 / 5) / 2)  # on all five examples: a 3/5, b 4/5
    # a 50% interval: low at 0.25 * 5 = 1.25 -> 0.7; high at 0.75 * 5 = 3.75 -> 0.7 + 0.75 * 0.1 = 0.775
    ci = bootstrap_ci(labels, [seed_a, seed_b], "accuracy", n_resamples=6, seed=0, confidence=0.5)
    assert ci["low"] == pytest.approx(0.7) and ci["high"] == pytest.approx(0.775)


def test_holm_by_hand():
    # sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> running max 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # 2 x 0.5 = 1.0, capped; 0.6 takes the running max
    assert holm([0.02]) == [0.02]  # one test: nothing to adjust


def test_cluster_bootstrap_resamples_whole_groups_by_hand():
    # 6 texts in groups a a b b b c; default_rng(0).integers(0, 3, (4, 3)) draws these group numbers
    # (groups numbered by first appearance: a 0, b 1, c 2):
    assert np.random.default_rng(0).integers(0, 3, (4, 3)).tolist() == [[2, 1, 1], [0, 0, 0], [0, 0, 0], [2, 1, 2]]
    # so: c + b + b, a + a + a, a + a + a, c + b + c; each text counts as often as its group was drawn
    w = resample_weights(6, ["a", "a", "b", "b", "b", "c"], 4, seed=0)
    assert w.tolist() == [[0, 0, 2, 2, 2, 1], [3, 3, 0, 0, 0, 0], [3, 3, 0, 0, 0, 0], [0, 0, 1, 1, 1, 2]]
    # group ids are labels, not positions: the same groups in another order and spelling resample alike
    assert resample_weights(6, [7, 7, 2, 2, 2, "x"], 4, seed=0).tolist() == w.tolist()
    # a right on both texts, b wrong on all three, c right: accuracy per resample
    #   1/7 (c right once of 7 texts), 6/6, 6/6, 2/5 (c twice of 5); sorted 1/7, 2/5, 1, 1
    # 50% interval: low at 0.25 * 3 = 0.75: 1/7 + 0.75 * (2/5 - 1/7); high at 2.25: 1
    labels, preds = np.ones(6, int), np.array([1, 1, 0, 0, 0, 1])
    ci = bootstrap_ci(
        labels, [preds], "accuracy", n_resamples=4, seed=0, confidence=0.5, groups=["a", "a", "b", "b", "b", "c"]
    )
    assert ci["low"] == pytest.approx(1 / 7 + 0.75 * (2 / 5 - 1 / 7)) and ci["high"] == pytest.approx(1.0)
    assert ci["point"] == pytest.approx(3 / 6) and ci["method"] == "cluster bootstrap (3 groups)"
    assert ci["n_resamples"] == 4


def test_cluster_ci_is_wider_than_the_iid_one_when_groups_share_their_answers():
    # 10 templates of 10 near-copies: a model right on whole templates (6) and wrong on whole templates (4)
    groups = np.repeat(np.arange(10), 10)
    labels = np.ones(100, int)
    preds = np.where(groups < 6, 1, 0)
    iid = bootstrap_ci(labels, [preds], "accuracy", n_resamples=1000, seed=0)
    clustered = bootstrap_ci(labels, [preds], "accuracy", n_resamples=1000, seed=0, groups=groups)
    assert iid["point"] == clustered["point"] == 0.6
    # 100 independent texts vs 10 independent templates: about sqrt(10) wider
    assert clustered["high"] - clustered["low"] > 2 * (iid["high"] - iid["low"])
    assert iid["method"] == "percentile bootstrap" and clustered["method"] == "cluster bootstrap (10 groups)"


def test_every_text_its_own_group_is_the_iid_bootstrap():
    rng = np.random.default_rng(1)
    labels, preds = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    iid = bootstrap_ci(labels, [preds], "macro_f1", n_resamples=200)
    own = bootstrap_ci(labels, [preds], "macro_f1", n_resamples=200, groups=[f"g{i}" for i in range(50)])
    assert (own["low"], own["high"]) == (iid["low"], iid["high"])


def test_weighted_macro_f1_is_scikit_learns_on_the_resample():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(2)
    labels, preds = rng.integers(0, 3, 60), rng.integers(0, 3, 60)
    preds[labels == 2] = 0  # class 2 never found: its F1 is 0 and still counts in the macro mean
    draws = rng.integers(0, 60, (5, 60))
    w = np.stack([np.bincount(row, minlength=60) for row in draws])
    ours = weighted_metric("macro_f1", w, labels, preds, 3)
    theirs = [f1_score(labels[row], preds[row], labels=[0, 1, 2], average="macro", zero_division=0) for row in draws]
    np.testing.assert_allclose(ours, theirs)


def test_ci_point_is_the_tables_macro_f1_over_all_classes():
    from distill_lora.metrics import metrics_from_predictions

    # three classes named, two present in test: the table averages over all three (class 2's F1 is 0)
    labels = np.array([0, 1, 0, 1, 0, 1])
    table = metrics_from_predictions(labels, labels, labels.astype(float), ["a", "b", "c"])["macro_f1"]
    assert table == pytest.approx(2 / 3)
    ci = bootstrap_ci(labels, [labels], "macro_f1", n_resamples=100, n_classes=3)
    assert ci["point"] == table and ci["high"] <= 2 / 3 + 1e-12


def test_collapsed_accuracy_bootstrap_gives_clopper_pearson():
    labels = np.array([0, 1] * 70)
    ci = bootstrap_ci(labels, [labels], "accuracy", n_resamples=200)  # 140 of 140 right: every resample 1.0
    # exact interval with k = n: lower = (alpha / 2) ** (1 / n), upper = 1
    assert ci["method"] == "clopper-pearson over 140 texts"
    assert ci["low"] == pytest.approx(0.025 ** (1 / 140)) and ci["high"] == 1.0 and ci["point"] == 1.0
    wrong_once = labels.copy()
    wrong_once[0] = 1
    assert bootstrap_ci(labels, [wrong_once], "accuracy", n_resamples=200)["method"] == "percentile bootstrap"


def test_collapsed_interval_counts_groups_not_texts_or_seeds():
    """The demo's teacher: 140 of 140 right in 14 groups, over 3 seeds. The exact interval is about 14 units of
    evidence ([0.768, 1]), not 140 (or 420) texts ([0.974, 1]); macro-F1 has no exact interval: said, not [1, 1]."""
    labels = np.array([0, 1] * 70)
    groups = [f"t{i // 10}" for i in range(140)]
    ci = bootstrap_ci(labels, [labels] * 3, "accuracy", n_resamples=200, groups=groups)
    assert ci["method"] == "clopper-pearson over 14 groups"
    assert ci["low"] == pytest.approx(0.025 ** (1 / 14)) and round(ci["low"], 3) == 0.768 and ci["high"] == 1.0
    f1 = bootstrap_ci(labels, [labels], "macro_f1", n_resamples=200, groups=groups)
    assert f1["low"] is None and f1["high"] is None and f1["point"] == 1.0
    assert f1["method"].startswith("not computable: every resample gives 1.0000")


def test_swap_test_is_the_exact_permutation_test_by_hand():
    """Every one of the 2^G' swaps of the differing groups, macro-F1 recomputed by scikit-learn: the p-value is the
    share at least as extreme; accuracy's swap test is the exact sign-flip test (McNemar for texts)."""
    import itertools

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, 30)
    groups = [f"g{i // 3}" for i in range(30)]
    a = np.where(rng.random(30) < 0.8, labels, (labels + 1) % 3)
    b = np.where(rng.random(30) < 0.6, labels, (labels + 2) % 3)
    unit = np.arange(30) // 3
    differing = sorted(set(unit[a != b]))
    observed = metric_point("macro_f1", labels, a, 3) - metric_point("macro_f1", labels, b, 3)
    extreme = 0
    for flips in itertools.product([0, 1], repeat=len(differing)):
        swapped = np.isin(unit, [u for u, f in zip(differing, flips) if f])
        x, y = np.where(swapped, b, a), np.where(swapped, a, b)
        d = metric_point("macro_f1", labels, x, 3) - metric_point("macro_f1", labels, y, 3)
        extreme += abs(d) >= abs(observed) - 1e-9
    t = swap_test(labels, [a], [b], "macro_f1", 3, groups)
    assert t["exact"] and t["differing_units"] == len(differing) and t["n_units"] == 10
    assert t["statistic"] == pytest.approx(observed)
    assert t["p_value"] == pytest.approx(extreme / 2 ** len(differing))
    assert t["min_p"] == pytest.approx(2 / 2 ** len(differing))
    texts = swap_test(labels[:15], [a[:15]], [b[:15]], "accuracy", 3)  # ≤ 16 differing texts: exact
    assert texts["exact"] and texts["p_value"] == pytest.approx(mcnemar_exact(labels[:15], a[:15], b[:15])["p_value"])


def test_a_resampling_p_is_never_zero():
    """Beyond 2^16 swaps the test draws n_perm of them: p = (k + 1) / (n_perm + 1), so a Holm step can never be
    passed by a p of 0 (today's percentile bootstrap gave p = 0 whenever no resample crossed 0)."""
    labels = np.array([0, 1] * 50)
    wrong = 1 - labels
    t = swap_test(labels, [labels], [wrong], "macro_f1", 2, n_perm=99)  # 100 differing texts, all won by A
    assert not t["exact"] and t["p_value"] == pytest.approx(1 / 100) and t["min_p"] == pytest.approx(1 / 100)


def test_noninferiority_needs_enough_evidence():
    """An int8 copy that labels every test text as its source does: on 3,000 texts that shows it is within 0.01
    macro-F1; on 140 texts in 14 groups it does not (a loss of 1% could hide in groups never seen to differ)."""
    big = np.array([0, 1] * 1500)
    w = resample_weights(len(big), None, 200, 0)
    assert noninferiority(big, [big], [big], 0.01, 2, w)["p_value"] < 0.001
    small, groups = np.array([0, 1] * 70), [f"t{i // 10}" for i in range(140)]
    w = resample_weights(140, groups, 200, 0)
    assert noninferiority(small, [small], [small], 0.01, 2, w, groups)["p_value"] > 0.3


def test_paired_difference_on_the_known_resamples_by_hand():
    # the five examples and six resamples of test_bootstrap_percentiles_of_a_known_resample_by_hand, as two models
    labels = np.array([1, 0, 1, 1, 0])
    a = np.array([1, 0, 0, 1, 1])
    b = np.array([1, 1, 1, 1, 0])
    # accuracy a - b per resample: 3/5-3/5, 4/5-5/5, 2/5-5/5, 2/5-5/5, 4/5-3/5, 3/5-5/5
    #   = 0, -0.2, -0.6, -0.6, +0.2, -0.4; sorted -0.6 -0.6 -0.4 -0.2 0 0.2
    # 80%: low at 0.5 -> -0.6; high at 4.5 -> 0 + 0.5 * 0.2 = 0.1
    # p = 2 * min(share <= 0, share >= 0) = 2 * min(5/6, 2/6) = 4/6
    d = paired_diff_ci(labels, [a], [b], "accuracy", n_resamples=6, seed=0, confidence=0.8)
    assert d["point"] == pytest.approx(-0.2)
    assert d["low"] == pytest.approx(-0.6) and d["high"] == pytest.approx(0.1)
    assert d["p_value"] == pytest.approx(4 / 6)
