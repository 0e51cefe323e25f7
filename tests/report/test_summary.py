"""Verdicts and analysis sentences from constructed numbers: each branch, and no sentence without its numbers."""

import json
import math

import pytest

from distill_lora.errors import UserError
from distill_lora.metrics import metrics_from_predictions
from distill_lora.report import findings, stats, verdicts
from distill_lora.report import summary as report_summary

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


def test_one_seed_verdict_is_the_swap_test_with_holm_in_its_family():
    (alone,) = verdicts.compare_pairs(result_of(LABELS, {"a": A, "b": B}))
    # stages the tool does not name have no planned question: one exploratory pair
    assert alone["family"] == "exploratory" and alone["verdict_basis"] == "permutation"
    assert alone["mcnemar_p"] == pytest.approx([RAW_P]) and alone["discordant"] == [[8, 1]]  # detail
    # 9 differing texts: all 2^9 swaps enumerated; for accuracy that is McNemar's exact test
    assert alone["differing_units"] == 9 and alone["swap"]["accuracy"]["exact"]
    assert alone["swap"]["accuracy"]["p_value"] == pytest.approx(RAW_P)
    assert alone["p_value"] == alone["swap"]["macro_f1"]["p_value"] < 0.05 and alone["p_holm"] == alone["p_value"]
    assert alone["verdict"] == "significant" and alone["winner"] == "a"
    # a third model identical to A: (a, b) and (b, c) have the same p, (a, c) p = 1, Holm over the 3
    pairs = {(p["a"], p["b"]): p for p in verdicts.compare_pairs(result_of(LABELS, {"a": A, "b": B, "c": A}))}
    ab, ac = pairs[("a", "b")], pairs[("a", "c")]
    assert ab["p_holm"] == pytest.approx(min(1, 3 * ab["p_value"])) and ab["p_holm"] > 0.05
    assert ab["verdict"] == "within noise" and ab["winner"] is None
    # A and C never differ: nothing could decide
    assert ac["p_value"] == 1.0 and ac["differing_units"] == 0 and ac["verdict"] == "no verdict possible"
    # effect size beside the test: A - B accuracy (7 more right of 40)
    assert ab["diff"]["accuracy"]["point"] == pytest.approx(7 / 40)
    assert ab["diff"]["accuracy"]["low"] <= 7 / 40 <= ab["diff"]["accuracy"]["high"]


def test_groups_make_the_swap_test_count_groups():
    # 4 templates of 10 texts; A and B differ only inside template 0 (A right on 8 texts B gets wrong).
    labels = [0, 1] * 20
    groups = [f"t{i // 10}" for i in range(40)]
    a = list(labels)
    b = [1 - y if i < 8 else y for i, y in enumerate(labels)]
    texts = verdicts.compare_pairs(result_of(labels, {"a": a, "b": b}))[0]
    assert texts["differing_units"] == 8 and texts["verdict"] == "significant"  # 8 independent texts: p = 2/256
    (p,) = verdicts.compare_pairs(result_of(labels, {"a": a, "b": b}, test_groups=groups))
    # McNemar (independent texts) would reject and is kept as detail; over templates, one differing group is
    # one piece of evidence: its mirror image ties, p = 1, and no split of one group could ever decide
    assert p["units"] == "groups" and p["mcnemar_p"][0] == pytest.approx(2 / 256)
    assert (p["differing_units"], p["n_units"], p["min_p"], p["p_value"]) == (1, 4, 1.0, 1.0)
    assert p["verdict"] == "no verdict possible" and p["winner"] is None
    assert p["diff"]["macro_f1"]["method"] == "cluster bootstrap (4 groups)"
    assert "swap permutation test over 1 differing groups of 4" in findings.evidence(p)


def test_report_settings_come_from_the_run_unless_a_flag_is_given():
    stored = {
        "report_settings": {"bootstrap_resamples": 300, "bootstrap_seed": 4, "alpha": 0.01, "primary": ["a vs b"]}
    }
    values = report_summary.report_settings(stored, alpha=0.1)
    assert values == {
        "bootstrap_resamples": 300,
        "bootstrap_seed": 4,
        "alpha": 0.1,
        "primary": ["a vs b"],
        "target_difference": 0.02,
        "serving_margin": 0.01,
    }
    values = report_summary.report_settings({})  # a results.json from before settings were stored
    assert (values["bootstrap_resamples"], values["bootstrap_seed"], values["alpha"], values["primary"]) == (
        1000,
        0,
        0.05,
        [],
    )


def test_report_command_keeps_the_runs_alpha(tmp_path):
    """A run made with report.alpha 0.2: `report RUN` without flags keeps its verdicts; --alpha 0.05 changes one."""
    from typer.testing import CliRunner

    from distill_lora.cli import app

    # B wrong on 5 texts A gets right, right on none: p = 2 / 32 = 0.0625, significant at 0.2; at 0.05 no split
    # of 5 texts could decide
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
    assert verdict("--alpha", "0.05") == "no verdict possible"


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


def test_an_int8_student_counts_its_teacher_time_as_the_student_does():
    """The summary's 'with teacher' time covers every model that needs the fine-tuned teacher: students and their
    int8 copies (found when stage ids stopped being parsed by prefix: student-odd-int8 had lost it)."""
    labels = [0, 1] * 5
    result = result_of(labels, {"teacher": labels, "student-odd": labels, "student-odd-int8": labels})
    for stages in result["per_seed"].values():
        for name, run in stages.items():
            run.update(wall_time_s={"teacher": 10.0, "student-odd": 3.0, "student-odd-int8": 3.5}[name])
    summary = report_summary.summarise(result, resamples=100)
    assert summary["student-odd"]["wall_time_with_teacher_s"]["mean"] == 13.0
    assert summary["student-odd-int8"]["wall_time_with_teacher_s"]["mean"] == 13.5
    assert "wall_time_with_teacher_s" not in summary["teacher"]


def test_primary_family_is_the_assignments_questions_or_report_primary():
    labels = [0, 1] * 20
    names = ("teacher", "student-odd", "student-even", "lora-student", "lora-teacher", "teacher-int8")
    result = result_of(labels, {s: A for s in names})
    fam = verdicts.families(result)
    assert fam["primary"] == [
        ("student-odd", "student-even"),
        ("student-odd", "lora-student"),
        ("student-even", "lora-student"),
        ("teacher", "student-odd"),
        ("teacher", "student-even"),
        ("teacher", "lora-student"),
        ("teacher", "lora-teacher"),
        ("lora-student", "lora-teacher"),
    ]
    assert fam["exploratory"] == [("student-odd", "lora-teacher"), ("student-even", "lora-teacher")]
    assert fam["serving"] == [("teacher", "teacher-int8")]  # an int8 row only against its source
    # report.primary replaces the planned family; the rest become exploratory
    fam = verdicts.families(result, ["lora-teacher vs student-even"])
    assert fam["primary"] == [("lora-teacher", "student-even")] and len(fam["exploratory"]) == 9
    with pytest.raises(UserError, match="'student-x' is not a stage of this run; its stages: teacher, student-odd"):
        verdicts.families(result, ["teacher vs student-x"])
    with pytest.raises(UserError, match="not 'A vs B'"):
        verdicts.families(result, ["teacher - student-odd"])


def test_holm_runs_within_each_family_only():
    """8 exploratory pairs do not tighten the primary family's adjustment."""
    labels = [0, 1] * 20
    stages = {"student-odd": A, "student-even": B, **{f"m{i}": A for i in range(4)}}
    pairs = verdicts.compare_pairs(result_of(labels, stages))
    (primary,) = [p for p in pairs if p["family"] == "primary"]
    assert (primary["a"], primary["b"]) == ("student-odd", "student-even")
    assert primary["p_holm"] == primary["p_value"] < 0.05 and primary["winner"] == "student-odd"
    exploratory = [p for p in pairs if p["family"] == "exploratory"]
    assert len(exploratory) == 14
    assert [p["p_holm"] for p in exploratory] == pytest.approx(stats.holm([p["p_value"] for p in exploratory]))


def test_power_is_stated_at_the_holm_step_from_the_designs_standard_error():
    (p,) = verdicts.compare_pairs(result_of(LABELS, {"a": A, "b": B}))
    # one pair: Holm step alpha / 1; se: the swap test's spread; MDD = (z 0.975 + z 0.8) × se
    w = p["power"]
    assert w["alpha_step"] == 0.05 and w["units"] == "texts" and w["n_units"] == 40
    assert w["mdd"]["macro_f1"] == pytest.approx((1.959964 + 0.841621) * p["swap"]["macro_f1"]["null_sd"], rel=1e-5)
    # accuracy's spread under swaps is exact: sqrt(differing texts) / n
    assert p["swap"]["accuracy"]["null_sd"] == pytest.approx(3 / 40)
    assert w["units_needed"] == math.ceil(40 * (w["mdd"]["macro_f1"] / 0.02) ** 2)


def test_no_verdict_names_the_level_its_best_p_would_face():
    """A family of 3: odd vs even differ on 5 texts, all won by odd (p = min p = 2/32 = 0.0625); the teacher,
    wrong everywhere, loses its two pairs with p ≈ 1e-4. Even at its best p odd vs even comes last in Holm's order
    and faces 0.05 itself: 0.0625 cannot pass, whatever the texts say."""
    labels = [0, 1] * 20
    b = [1 - y if i < 5 else y for i, y in enumerate(labels)]
    c = [1 - y for y in labels]  # wrong everywhere: against A, 40 differing texts
    pairs = verdicts.compare_pairs(result_of(labels, {"student-odd": labels, "student-even": b, "teacher": c}))
    odd_even = next(p for p in pairs if (p["a"], p["b"]) == ("student-odd", "student-even"))
    assert odd_even["min_p"] == pytest.approx(2 / 32) and odd_even["verdict"] == "no verdict possible"
    assert odd_even["needs_p_below"] == pytest.approx(0.05)
    teacher = [p for p in pairs if p["a"] == "teacher"]
    assert all(p["verdict"] == "significant" and p["p_holm"] < 0.001 for p in teacher)
