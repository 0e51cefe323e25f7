"""Verdicts and analysis sentences from constructed numbers: each branch, and no sentence without its numbers."""

import json

import pytest

from distill_lora.metrics import metrics_from_predictions
from distill_lora.report import analysis, findings

NAMES = ["not toxic", "toxic"]


def run(labels, pred, history=None, **extra):
    """One stage of one seed, as results.json holds it."""
    pred = [int(x) for x in pred]
    return {
        "model_type": "m",
        "depth": 6,
        "test": metrics_from_predictions(labels, pred, [float(x) for x in pred], NAMES),
        "predictions": {"pred": pred, "prob_positive": [float(x) for x in pred]},
        "validation_history": history
        or [{"epoch": 1, "train_loss": 0.6, "val_loss": 0.5, "val_macro_f1": 0.6, "val_accuracy": 0.6}],
        "selected_epoch": 1,
        "train_loss": 0.5,
        "train_total_loss": 0.5,
        "wall_time_s": 1.0,
        "samples_per_s": 1.0,
        "peak_memory_bytes": 1,
        "total_params": 10,
        "trainable_params": 10,
        "weights_bytes": 1,
        **extra,
    }


def result_of(labels, stages: dict, **extra) -> dict:
    """One-seed comparison from {stage: predictions}."""
    return {
        "seeds": [0],
        "label_names": NAMES,
        "test_labels": list(labels),
        "per_seed": {"0": {s: run(labels, p) for s, p in stages.items()}},
        **extra,
    }


# 40 texts; B is wrong on 8 that A gets right and right on 1 that A gets wrong:
# exact McNemar p = 2 * P(X <= 1 | Bin(9, 1/2)) = 2 * (1 + 9) / 512
LABELS = [0, 1] * 20
A = list(LABELS)
B = [1 - y if i < 8 else y for i, y in enumerate(LABELS)]
A[8] = 1 - A[8]
RAW_P = 2 * 10 / 512


def test_holm_turns_a_raw_significant_pair_into_noise():
    (alone,) = analysis.compare_pairs(result_of(LABELS, {"a": A, "b": B}))
    assert alone["mcnemar_p"] == pytest.approx([RAW_P]) and alone["discordant"] == [[8, 1]]
    assert alone["mcnemar_p_holm"] == pytest.approx([RAW_P])  # one pair: nothing to adjust
    assert alone["verdict"] == "significant" and alone["winner"] == "a" and alone["verdict_basis"] == "mcnemar_holm"
    # a third model identical to A: pairs (a, b) and (b, c) both have p = 0.039, (a, c) has p = 1
    # Holm: 3 x 0.039 = 0.117, 2 x 0.039 = 0.078 -> running max 0.117, then 1
    pairs = {(p["a"], p["b"]): p for p in analysis.compare_pairs(result_of(LABELS, {"a": A, "b": B, "c": A}))}
    ab = pairs[("a", "b")]
    assert ab["mcnemar_p"] == pytest.approx([RAW_P]) and ab["mcnemar_p_holm"] == pytest.approx([3 * RAW_P])
    assert ab["seeds_significant_raw"] == 1 and ab["seeds_significant"] == 0
    assert ab["verdict"] == "within noise" and ab["winner"] is None
    assert pairs[("a", "c")]["mcnemar_p_holm"] == [1.0]
    # effect size beside the test: A - B accuracy (7 more right of 40)
    assert ab["diff"]["accuracy"]["point"] == pytest.approx(7 / 40)
    assert ab["diff"]["accuracy"]["low"] <= 7 / 40 <= ab["diff"]["accuracy"]["high"]


def test_groups_make_the_cluster_bootstrap_decide():
    # 4 templates of 10 texts; A and B differ only inside template 0 (A right on 8 texts B gets wrong).
    labels = [0, 1] * 20
    groups = [f"t{i // 10}" for i in range(40)]
    a = list(labels)
    b = [1 - y if i < 8 else y for i, y in enumerate(labels)]
    mcnemar = analysis.compare_pairs(result_of(labels, {"a": a, "b": b}))[0]
    assert mcnemar["mcnemar_p"][0] == pytest.approx(2 / 256) and mcnemar["verdict"] == "significant"
    (p,) = analysis.compare_pairs(result_of(labels, {"a": a, "b": b}, test_groups=groups))
    # McNemar (independent texts) still rejects and is kept for reference; but resampling templates, template 0
    # is left out of about (3/4)^4 = 32% of resamples, where the difference is 0: p is far above alpha
    assert p["verdict_basis"] == "cluster_bootstrap" and p["mcnemar_p"][0] == pytest.approx(2 / 256)
    assert p["bootstrap_p_holm"] == p["bootstrap_p"] > 0.5
    assert p["verdict"] == "within noise" and p["diff"]["macro_f1"]["low"] <= 0
    assert p["diff"]["macro_f1"]["method"] == "cluster bootstrap (4 groups)"
    assert "paired cluster bootstrap" in analysis.evidence(p) and "Holm-adjusted p" in analysis.evidence(p)


def test_report_settings_come_from_the_run_unless_a_flag_is_given():
    stored = {"report_settings": {"bootstrap_resamples": 300, "bootstrap_seed": 4, "alpha": 0.01}}
    values, source = analysis.report_settings(stored, alpha=0.1)
    assert values == {"bootstrap_resamples": 300, "bootstrap_seed": 4, "alpha": 0.1}
    assert source == {"bootstrap_resamples": "results.json", "bootstrap_seed": "results.json", "alpha": "command line"}
    values, source = analysis.report_settings({})  # a results.json from before settings were stored
    assert values == {"bootstrap_resamples": 1000, "bootstrap_seed": 0, "alpha": 0.05} and set(source.values()) == {
        "default"
    }


def test_report_command_keeps_the_runs_alpha(tmp_path):
    """A run made with report.alpha 0.2: `report RUN` without flags keeps its verdicts; --alpha 0.05 changes one."""
    from typer.testing import CliRunner

    from distill_lora.cli import app

    # B wrong on 5 texts A gets right, right on none: p = 2 / 32 = 0.0625, significant at 0.2 but not at 0.05
    labels = [0, 1] * 20
    b = [1 - y if i < 5 else y for i, y in enumerate(labels)]
    comparison = result_of(labels, {"a": labels, "b": b})
    comparison["majority_baseline"] = {"test": metrics_from_predictions(labels, [0] * 40, [0.0] * 40, NAMES)}
    split = {
        "n": 40,
        "positive_share": 0.5,
        "truncated_share": 0.0,
        "length_percentiles": {"p50": 5, "p90": 5, "p99": 5, "max": 5},
    }
    results = {
        "comparison": comparison,
        "run": {"device": "cpu"},
        "all_stages": {},
        "report_settings": {"bootstrap_resamples": 200, "bootstrap_seed": 0, "alpha": 0.2},
        "data": {
            "source": "x",
            "max_length": 8,
            "splits": {s: split for s in ("train", "validation", "test")},
            "overlap": {
                k: 0
                for k in (
                    "duplicates_in_train",
                    "duplicates_in_validation",
                    "duplicates_in_test",
                    "shared_train_validation",
                    "shared_train_test",
                    "shared_validation_test",
                    "duplicates_with_clashing_labels",
                )
            },
        },
    }
    (tmp_path / "results.json").write_text(json.dumps(results))

    def verdict(*flags):
        r = CliRunner().invoke(app, ["report", str(tmp_path), *flags])
        assert r.exit_code == 0, r.output
        return json.loads((tmp_path / "analysis.json").read_text())["pairs"][0]["verdict"]

    assert verdict() == "significant"
    assert verdict("--alpha", "0.05") == "within noise"


# ---------------------------------------------------------------- sentences, branch by branch


def history(losses, f1s):
    return [
        {"epoch": i + 1, "val_loss": v, "val_macro_f1": f, "val_accuracy": f}
        for i, (v, f) in enumerate(zip(losses, f1s))
    ]


def test_overfitting_needs_loss_and_selection_metric():
    both = findings.overfitting(history([0.5, 0.4, 0.5], [0.6, 0.8, 0.7]))
    assert both["kind"] == "overfits" and both["metric_best_epoch"] == 2 and both["loss_min_epoch"] == 2
    sentence = findings.overfit_sentence("M [m]", 0, both)
    assert "rose from 0.4000 (epoch 2) to 0.5000 (epoch 3)" in sentence
    assert "macro-F1 fell from 0.8000 (epoch 2) to 0.7000" in sentence and "overfits after epoch 2" in sentence
    # the LoRA case: loss lowest at epoch 1 (majority class only), macro-F1 rising to the last epoch
    loss_only = findings.overfitting(history([0.60, 0.65, 0.7, 0.72], [0.4, 0.6, 0.7, 0.8]))
    assert loss_only["kind"] == "loss only"
    sentence = findings.overfit_sentence("M [m]", 0, loss_only)
    assert "did not fall (0.8000 at epoch 4, 0.8000 at the last)" in sentence and "overfits" not in sentence
    assert findings.overfitting(history([0.5, 0.4, 0.41], [0.6, 0.8, 0.7])) is None  # loss up < 5%: no signal
    assert findings.overfitting(history([0.5, 0.4, 0.3], [0.6, 0.8, 0.7])) is None  # metric fell, loss did not
    assert findings.overfitting(history([0.5], [0.6])) is None
    # selection by accuracy reads val_accuracy; selection by loss falls back to macro-F1
    h = [dict(x, val_accuracy=a) for x, a in zip(history([0.5, 0.4, 0.5], [0.6, 0.8, 0.7]), [0.7, 0.7, 0.9])]
    assert findings.overfitting(h, "accuracy")["kind"] == "loss only"
    assert findings.overfitting(h, "loss")["kind"] == "overfits"


def summary_of(**rows):
    base = {
        "model_type": "m",
        "depth": 6,
        "trainable_params": 10,
        "total_params": 10,
        "wall_time_s": {"mean": 1.0, "std": 0.0},
    }
    return {
        s: {**base, **{k: ({"mean": v, "std": 0.0} if isinstance(v, float) else v) for k, v in r.items()}}
        for s, r in rows.items()
    }


def test_seed_lines():
    one = findings.seed_lines({"seeds": [0]}, {})
    assert len(one) == 1 and "ranking across seeds is impossible" in one[0] and "noise" not in one[0]
    summary = {"x": {"macro_f1": {"mean": 0.8, "std": 0.02}}, "y": {"macro_f1": {"mean": 0.7, "std": 0.005}}}
    (two,) = findings.seed_lines({"seeds": [0, 1]}, summary)
    assert "over 2 seeds" in two and "0.0050 [y]" in two and "0.0200 [x]" in two


def test_missed_class_against_the_teacher():
    labels = [0] * 10 + [1] * 10
    teacher = [0] * 10 + [1] * 9 + [0]  # toxic recall 0.9
    student = [0] * 10 + [1] * 5 + [0] * 5  # toxic recall 0.5
    close = [0] * 10 + [1] * 9 + [0]  # same as the teacher: no line
    result = result_of(labels, {"teacher": teacher, "student-odd": student, "student-even": close})
    summary = {s: {"model_type": s} for s in ("teacher", "student-odd", "student-even")}
    (line,) = findings.missed_class_lines(result, summary)
    assert "[student-odd] misses 'toxic' texts: recall 0.50 against the teacher's 0.90 (10 such" in line
    assert findings.missed_class_lines(result, {"student-odd": {"model_type": "x"}}) == []  # no teacher, no claim
    derived = {"teacher": {"model_type": "t"}, "student-odd": {"model_type": "s", "quantized_from": "student-even"}}
    assert findings.missed_class_lines(result, derived) == []  # an int8 row is not a model of its own here


def test_models_that_err_on_different_texts():
    labels = [1] * 20
    odd = [0] * 4 + [1] * 16  # wrong on texts 0-3
    even = [1] * 10 + [0] * 4 + [1] * 6  # wrong on texts 10-13
    groups = ["g1"] * 10 + ["g2"] * 10
    result = result_of(labels, {"student-odd": odd, "student-even": even}, test_groups=groups)
    summary = {"student-odd": {}, "student-even": {}}
    (line,) = findings.disagreement_lines(result, summary)
    assert "of the 8 texts either misses, they share 0 (overlap 0.00); 4 only [student-odd] misses, 4 only" in line
    same = result_of(labels, {"student-odd": odd, "student-even": odd})
    assert findings.disagreement_lines(same, summary) == []  # the same errors: no such claim


def test_models_that_fail_different_groups():
    # templates of 4 texts: odd fails t0 (4 of 4 wrong) and t3 (2 of 4: half), not t2 (1 of 4); even fails t1 and t3
    labels = [1] * 16
    groups = [f"t{i // 4}" for i in range(16)]
    odd = [0] * 4 + [1] * 4 + [0, 1, 1, 1] + [0, 0, 1, 1]
    even = [1] * 4 + [0] * 4 + [1] * 4 + [0, 0, 1, 1]
    result = result_of(labels, {"student-odd": odd, "student-even": even}, test_groups=groups)
    lines = findings.disagreement_lines(result, {"student-odd": {}, "student-even": {}})
    assert lines[-1] == (
        "[student-odd] and [student-even] fail different groups (half or more of a group's texts "
        "wrong): only [student-odd] fails 't0'; only [student-even] fails 't1'; both fail 't3'."
    )
    assert findings.failed_groups(result, "student-odd") == ["t0", "t3"]
    one_sided = result_of(labels, {"student-odd": odd, "student-even": [1] * 12 + [0, 0, 1, 1]}, test_groups=groups)
    assert findings.disagreement_lines(one_sided, {"student-odd": {}, "student-even": {}})[-1].endswith(
        "wrong): only [student-odd] fails 't0'; both fail 't3'."
    )  # nothing named for a side that fails none
    alike = result_of(labels, {"student-odd": odd, "student-even": odd}, test_groups=groups)
    assert findings.disagreement_lines(alike, {"student-odd": {}, "student-even": {}}) == []


def test_ranking_that_reverses_between_macro_f1_and_roc_auc():
    summary = summary_of(
        x={"macro_f1": 0.80, "roc_auc": 0.85},
        y={"macro_f1": 0.70, "roc_auc": 0.95},
        z={"macro_f1": 0.60, "roc_auc": 0.50},
    )
    (line,) = findings.reversal_lines(summary)
    assert line.startswith("ROC-AUC reverses 1 pair(s)")
    assert "[x] is above [y] in macro-F1 (0.800 vs 0.700) but below it in ROC-AUC (0.850 vs 0.950)" in line
    same = summary_of(x={"macro_f1": 0.8, "roc_auc": 0.9}, y={"macro_f1": 0.7, "roc_auc": 0.8})
    assert findings.reversal_lines(same) == []


def test_a_derived_row_that_predicts_exactly_like_a_member():
    labels = [0, 1] * 5
    result = result_of(labels, {"student-odd": [0] * 10, "lora-student": [1] * 10, "ens": [1] * 10, "ens2": [0, 1] * 5})
    result["per_seed"]["0"]["ens"]["ensemble_of"] = ["student-odd", "lora-student"]
    result["per_seed"]["0"]["ens2"]["ensemble_of"] = ["student-odd", "lora-student"]
    (line,) = findings.identical_prediction_lines(result)
    assert line.startswith("[ens] makes exactly [lora-student]'s 10 test predictions in its one seed")
    # two seeds: the same in seed 0 only is not "exactly like" it
    two = {
        **result,
        "seeds": [0, 1],
        "per_seed": {
            "0": result["per_seed"]["0"],
            "1": {
                **result["per_seed"]["0"],
                "ens": {**result["per_seed"]["0"]["ens2"], "ensemble_of": ["student-odd", "lora-student"]},
            },
        },
    }
    assert findings.identical_prediction_lines(two) == []


def test_lora_costs_as_measured():
    def rows(lora_time):
        return summary_of(
            teacher={"trainable_params": 110_000_000, "total_params": 110_000_000, "wall_time_s": 100.0, "depth": 12},
            **{
                "lora-teacher": {
                    "trainable_params": 300_000,
                    "total_params": 110_300_000,
                    "wall_time_s": lora_time,
                    "depth": 12,
                }
            },
        )

    (slower,) = findings.lora_cost_lines(rows(150.0))
    assert "trained 0.30M parameters (0.3% of its 110.30M) against [teacher]'s 110.00M" in slower
    assert "150 s vs 100 s (1.5× slower)" in slower and "did not make training faster" in slower
    assert "cheap" not in slower
    (faster,) = findings.lora_cost_lines(rows(50.0))
    assert "50 s vs 100 s (2.0× faster), so it was cheaper to train here" in faster
    assert findings.lora_cost_lines(summary_of(teacher={})) == []  # no LoRA row, no LoRA sentence


def test_key_findings_name_the_two_questions():
    labels = [0, 1] * 20
    # even listed first: the pair is tested as even − odd, and the finding turns it round to odd − even
    result = result_of(labels, {"student-even": A, "student-odd": B, "lora-student": A})
    summary = analysis.summarise(result, 200)
    pairs = analysis.compare_pairs(result, resamples=200)
    k = findings.key_findings(result, summary, pairs)
    assert (k["n_seeds"], k["n_test"], k["n_groups"], k["verdict_basis"]) == (1, 40, None, "mcnemar_holm")
    odd_even = k["odd_vs_even"]
    assert (odd_even["a"], odd_even["b"]) == ("student-odd", "student-even")
    assert odd_even["diff"]["accuracy"]["point"] == pytest.approx(-7 / 40)  # odd − even, as asked
    assert odd_even["diff"]["accuracy"]["low"] <= -7 / 40 <= odd_even["diff"]["accuracy"]["high"]
    assert k["distill_vs_lora"]["a"] == "student-even"  # the better student against LoRA


def test_an_int8_student_counts_its_teacher_time_as_the_student_does():
    """The summary's 'with teacher' time covers every model that needs the fine-tuned teacher: students and their
    int8 copies (found when stage ids stopped being parsed by prefix: student-odd-int8 had lost it)."""
    labels = [0, 1] * 5
    result = result_of(labels, {"teacher": labels, "student-odd": labels, "student-odd-int8": labels})
    for stages in result["per_seed"].values():
        for name, run in stages.items():
            run.update(wall_time_s={"teacher": 10.0, "student-odd": 3.0, "student-odd-int8": 3.5}[name])
    summary = analysis.summarise(result, resamples=100)
    assert summary["student-odd"]["wall_time_with_teacher_s"]["mean"] == 13.0
    assert summary["student-odd-int8"]["wall_time_with_teacher_s"]["mean"] == 13.5
    assert "wall_time_with_teacher_s" not in summary["teacher"]
