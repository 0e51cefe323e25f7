"""Statistics against cases worked out by hand."""
import math

import numpy as np
import pytest

from distill_lora.metrics import expected_calibration_error, tune_threshold
from distill_lora.stats import bootstrap_ci, mcnemar_exact, paired_seed_test


def test_mcnemar_known_table():
    # A right/B wrong on 8 examples, A wrong/B right on 2, both right on 10
    labels = np.ones(20, dtype=int)
    a = np.array([1] * 8 + [0] * 2 + [1] * 10)
    b = np.array([0] * 8 + [1] * 2 + [1] * 10)
    r = mcnemar_exact(labels, a, b)
    assert (r["a_only_right"], r["b_only_right"]) == (8, 2)
    # two-sided exact binomial: 2 * P(X <= 2), X ~ Bin(10, 1/2)
    hand = 2 * sum(math.comb(10, k) for k in range(3)) / 2 ** 10
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
