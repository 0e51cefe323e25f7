"""The report from a fixture results.json: every row, every section, valid plots, honest sentences."""

import json
import re

import numpy as np
import pytest

from distill_lora.metrics import metrics_from_predictions
from distill_lora.report.write import write_report

NAMES = ["not toxic", "toxic"]
ACCURACY = {
    "teacher": 0.92,
    "student-odd": 0.86,
    "student-even": 0.86,
    "lora-student": 0.70,
    "lora-teacher": 0.90,
    "teacher-int8": 0.92,
    "student-odd-int8": 0.60,
}
DEPTH = {
    "teacher": 12,
    "student-odd": 6,
    "student-even": 6,
    "lora-student": 6,
    "lora-teacher": 12,
    "teacher-int8": 12,
    "student-odd-int8": 6,
}
# int8 rows: 4x smaller; teacher-int8 2x faster than its fp32 source on the CPU, student-odd-int8 1.25x slower
INT8_LATENCY = {"teacher-int8": (10.0, 5.0), "student-odd-int8": (10.0, 12.5)}  # (fp32, int8) ms at batch 1


def fake_stage(stage, labels, preds, probs, seed, overfit=False):
    val_loss = [0.5, 0.4, 0.55] if overfit else [0.5, 0.45, 0.42]
    history = [
        {
            "epoch": e + 1,
            "train_loss": 0.6 - 0.1 * e,
            "train_total_loss": 0.5 - 0.1 * e,
            "val_loss": v,
            "val_accuracy": 0.8,
            "val_macro_f1": 0.7 + 0.01 * e,
        }
        for e, v in enumerate(val_loss)
    ]
    return {
        "stage": stage,
        "model_type": f"type of {stage}",
        "depth": DEPTH[stage],
        "test": metrics_from_predictions(labels, preds, probs, NAMES),
        "validation_history": history,
        "selected_epoch": 3,
        "train_loss": 0.4,
        "train_total_loss": 0.3,
        "wall_time_s": 100.0 + seed,
        "samples_per_s": 50.0,
        "peak_memory_bytes": 2**30,
        "peak_memory_kind": "cuda max allocated",
        "device": "NVIDIA H100",
        "total_params": 110_000_000 if DEPTH[stage] == 12 else 67_000_000,
        "trainable_params": 300_000 if stage.startswith("lora") else 67_000_000,
        "weights_bytes": 2**20,
        "inference": {"latency_ms_batch1": 5.0, "throughput_batch64": 900.0},
        "predictions": {"pred": preds.tolist(), "prob_positive": probs.tolist()},
    }


def fake_int8_stage(stage, labels, preds, probs, seed):
    m = fake_stage(stage, labels, preds, probs, seed)
    fp32_ms, int8_ms = INT8_LATENCY[stage]
    m.update(
        quantized_from=stage.removesuffix("-int8"),
        quantization={"quantize_time_s": 0.5},
        validation_history=[],
        selected_epoch=None,
        train_loss=None,
        train_total_loss=None,
        samples_per_s=None,
        weights_bytes=2**20,
        fp32_weights_bytes=4 * 2**20,
        device="cpu (2 threads)",
        peak_memory_kind="process RSS (sampled during the stage)",
        inference={"latency_ms_batch1": int8_ms, "throughput_batch64": 64000 / int8_ms},
        fp32_cpu_inference={"latency_ms_batch1": fp32_ms, "throughput_batch64": 64000 / fp32_ms},
    )
    return m


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    n = 600
    labels = (rng.random(n) < 0.3).astype(int)
    per_seed = {}
    for seed in (0, 1, 2):
        stages = {}
        for stage, acc in ACCURACY.items():
            if stage in ("student-even", "teacher-int8"):  # three answers of another model changed: within noise
                preds = np.array(stages["student-odd" if stage == "student-even" else "teacher"]["predictions"]["pred"])
                preds[rng.choice(n, 3, replace=False)] ^= 1
            else:
                preds = np.where(rng.random(n) < acc, labels, 1 - labels)
            probs = np.clip(np.where(preds == 1, 0.8, 0.2) + rng.normal(0, 0.05, n), 0.01, 0.99)
            if stage.endswith("-int8"):
                stages[stage] = fake_int8_stage(stage, labels, preds, probs, seed)
            else:
                stages[stage] = fake_stage(stage, labels, preds, probs, seed, overfit=stage == "lora-teacher")
        per_seed[str(seed)] = stages
    majority = metrics_from_predictions(labels, np.zeros(n, int), np.zeros(n), NAMES)
    comparison = {
        "seeds": [0, 1, 2],
        "label_names": NAMES,
        "test_labels": labels.tolist(),
        "per_seed": per_seed,
        "majority_baseline": {"test": majority},
    }
    split = {
        "n": n,
        "positive_share": 0.3,
        "truncated_share": 0.01,
        "length_percentiles": {"p50": 20, "p90": 40, "p99": 80, "max": 120},
    }
    data = {
        "source": "fixture",
        "max_length": 64,
        "splits": {"train": split, "validation": split, "test": split},
        "overlap": {
            "duplicates_in_train": 3,
            "duplicates_in_validation": 0,
            "duplicates_in_test": 0,
            "shared_train_validation": 1,
            "shared_train_test": 2,
            "shared_validation_test": 0,
            "duplicates_with_clashing_labels": 1,
        },
        "notes": [],
    }
    return {"comparison": comparison, "data": data, "run": {"device": "test device"}, "all_stages": {}}


@pytest.fixture(scope="module")
def built(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    (out / "results.json").write_text(json.dumps(results))
    path, summary = write_report(out, json.loads((out / "results.json").read_text()), resamples=300)
    return out, path.read_text(), json.loads((out / "analysis.json").read_text())


def test_every_row_and_section(built):
    out, md, _ = built
    for stage in ACCURACY:
        assert f"type of {stage}" in md and f"| {stage} |" in md
    assert "Majority class (baseline)" in md
    for heading in (
        "## Full results",
        "## Costs",
        "## Are the differences real?",
        "## Data",
        "## Plots",
        "## Analysis",
    ):
        assert heading in md
    # the summary, then the assignment's table with its three columns, before the wide tables
    assert (
        md.index("## Summary")
        < md.index("| Model Type | Training Loss | Test Set Performance |")
        < md.index("## Full results")
    )
    assert "± " in md and "[95% CI]" in md
    assert "LoRA makes training cheap" not in md  # a fixed claim, whatever the numbers
    assert "ensemble-odd+even" in md and "ensemble-odd+even+lora-student" in md
    assert (out / "results.csv").read_text().count("\n") == 1 + 3 * (len(ACCURACY) + 2)


def test_plots_are_png(built):
    out, md, _ = built
    names = re.findall(r"\(plots/([a-z_]+\.png)\)", md)
    assert len(names) == 5
    for name in names:
        data = (out / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_verdicts_follow_the_numbers(built):
    _, _, analysis = built
    verdicts = {(p["a"], p["b"]): p for p in analysis["pairs"]}
    assert verdicts[("student-odd", "student-even")]["verdict"] == "within noise"
    assert verdicts[("teacher", "lora-student")]["verdict"] == "significant"
    assert verdicts[("teacher", "lora-student")]["winner"] == "teacher"


def test_analysis_never_calls_noise_better(built):
    _, md, analysis = built
    section = md.split("## Analysis", 1)[1]
    significant = {frozenset((p["a"], p["b"])) for p in analysis["pairs"] if p["verdict"] == "significant"}
    better_lines = [line for line in section.splitlines() if "better than" in line]
    assert better_lines
    for line in better_lines:
        stages = re.findall(r"\[([a-z0-9-]+)\]", line)
        assert frozenset(stages[:2]) in significant, line
    # the undecided primary pairs, folded into one line that names each of them (and none that was decided)
    folded = [line for line in section.splitlines() if line.startswith("- Not shown to differ (primary family")]
    assert len(folded) == 1
    undecided = [p for p in analysis["pairs"] if p["family"] == "primary" and p["verdict"] != "significant"]
    assert undecided and all(f"{p['a']} vs {p['b']}" in folded[0] for p in undecided)
    noise = sum(p["verdict"] == "within noise" for p in undecided)
    assert f": {noise} within noise, {len(undecided) - noise} beyond what this design can decide" in folded[0]
    decided = [(p["a"], p["b"]) for p in analysis["pairs"] if p["family"] == "primary" and p not in undecided]
    assert not any(f"{a} vs {b}" in folded[0] or f"{b} vs {a}" in folded[0] for a, b in decided)


def test_challenges_seen_in_numbers(built):
    _, md, analysis = built
    section = md.split("## Analysis", 1)[1]
    # lora-teacher's validation loss rises but its macro-F1 does not fall: named, and not called overfitting
    assert "type of lora-teacher [lora-teacher], seed 0: validation loss rose" in section
    assert "not overfitting by the rule" in section and "it overfits" not in section
    assert "type of teacher [teacher], seed 0: validation loss rose" not in section
    # "never caught up" exactly when the teacher wins the pair by the method-level verdict over the 3 seeds; McNemar
    # rejects in every seed (texts of these trained models), which says nothing of the methods
    for stage in ("student-odd", "student-even"):
        pair = next(p for p in analysis["pairs"] if (p["a"], p["b"]) == ("teacher", stage))
        caught = pair["verdict"] == "significant" and pair["winner"] == "teacher"
        assert (f"[{stage}] never caught up with its teacher" in section) == caught
        assert pair["verdict_basis"] == "method_t" and all(x < 0.05 for x in pair["mcnemar_p"]) and not caught
    assert "[student-odd-int8] never caught up" not in section  # an int8 row is judged against its source


def test_int8_rows_and_sentences_follow_the_numbers(built):
    _, md, analysis = built
    verdicts = {(p["a"], p["b"]): p for p in analysis["pairs"]}
    # serving family: one-sided, margin 0.01. teacher-int8 changed 3 of 600 answers per seed (Δ −0.006): with
    # 3 seeds that is not enough to show it is within the margin; student-odd-int8 lost 0.28: far from it
    teacher_int8, student_int8 = verdicts[("teacher", "teacher-int8")], verdicts[("student-odd", "student-odd-int8")]
    assert {teacher_int8["family"], student_int8["family"]} == {"serving"}
    assert teacher_int8["verdict"] == student_int8["verdict"] == "not shown non-inferior"
    assert teacher_int8["winner"] is student_int8["winner"] is None
    assert teacher_int8["p_value"] < 0.5 < 0.99 < student_int8["p_value"]
    assert "| teacher-int8 | teacher, weights quantised to int8 | – (not trained) | – |" in md  # setup table
    assert "## int8 dynamic quantisation" in md
    table = md.split("## int8 dynamic quantisation", 1)[1].split("## Are the differences real?", 1)[0]
    assert "| teacher-int8 | 1.0 MiB / 4.0 MiB | 4.00 | 5.00 / 10.00 | 2.00 |" in table
    assert "| student-odd-int8 | 1.0 MiB / 4.0 MiB | 4.00 | 12.50 / 10.00 | 0.80 |" in table
    section = md.split("## Analysis", 1)[1]
    teacher = next(line for line in section.splitlines() if line.startswith("- int8 teacher [teacher-int8]"))
    assert "4.0× smaller" in teacher and "2.0× faster on CPU at batch 1" in teacher
    assert "not shown to be within the margin of its fp32 source [teacher]" in teacher
    student = next(line for line in section.splitlines() if line.startswith("- int8 student-odd [student-odd-int8]"))
    assert "1.2× slower on CPU at batch 1" in student  # 12.5 ms vs 10 ms: never 'faster'
    assert "non-inferiority at a margin of 0.01 macro-F1 (t over 3 seeds): Δ -0.282" in student
    cost = next(line for line in md.splitlines() if line.startswith("| teacher-int8 | 12 |") and "quantising" in line)
    assert "– (teacher + 0.5 ± 0.0 s quantising)" in cost and "int8 (not saved" in cost
    assert cost.startswith("| teacher-int8 | 12 | 110.00M | – |")  # not trained: no trainable parameters
    # on a GPU run the int8 rows' CPU numbers say so, in the same columns as the GPU numbers
    assert "5.00 ± 0.00 on cpu (2 threads)" in cost and "1024.0 MiB (process RSS" in cost
    assert "the same CPU (cpu (2 threads))" in md


def test_ensembles_never_take_int8_members(results):
    from distill_lora.report.summary import add_ensembles

    for stages in add_ensembles(results["comparison"])["per_seed"].values():
        members = [m for s in stages.values() for m in s.get("ensemble_of", [])]
        assert members and not any(m.endswith("-int8") for m in members)


def test_report_command_rebuilds_from_results_json(results, tmp_path):
    from typer.testing import CliRunner

    from distill_lora.cli import app

    (tmp_path / "results.json").write_text(json.dumps(results))
    r = CliRunner().invoke(app, ["report", str(tmp_path), "--resamples", "200"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "report.md").exists() and len(list((tmp_path / "plots").glob("*.png"))) == 5
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "run compare first" in missing.output and "Traceback" not in missing.output


def test_ensemble_is_the_mean_of_its_members(results):
    from distill_lora.report.summary import add_ensembles

    with_ens = add_ensembles(results["comparison"])
    for stages in with_ens["per_seed"].values():
        ens = stages["ensemble-odd+even"]
        odd, even = stages["student-odd"], stages["student-even"]
        mean = (np.array(odd["predictions"]["prob_positive"]) + np.array(even["predictions"]["prob_positive"])) / 2
        np.testing.assert_allclose(ens["predictions"]["prob_positive"], mean)
        assert ens["predictions"]["pred"] == (mean >= 0.5).astype(int).tolist()
        assert ens["depth"] == 12 and ens["total_params"] == 2 * odd["total_params"]
    assert "ensemble-odd+even" not in results["comparison"]["per_seed"]["0"]  # the input is not changed


def test_verdict_sentences_never_rank_a_pair_whose_winner_flips():
    from distill_lora.report.findings import difference_sentence
    from distill_lora.report.verdicts import compare_pairs

    labels = [0, 1] * 20
    right = labels
    wrong = [1 - y for y in labels]
    # seed 0: a is right everywhere, b wrong; seed 1: the other way round. McNemar p < 0.05 in both seeds
    result = {
        "test_labels": labels,
        "seeds": [0, 1],
        "per_seed": {
            "0": {"a": _run(labels, right), "b": _run(labels, wrong)},
            "1": {"a": _run(labels, wrong), "b": _run(labels, right)},
        },
    }
    (pair,) = compare_pairs(result)
    # McNemar rejects in both seeds, in opposite directions: over the methods, the mean difference is 0
    assert all(x < 0.05 for x in pair["mcnemar_p"]) and pair["verdict"] == "within noise" and pair["winner"] is None
    summary = {s: {"model_type": s.upper(), "macro_f1": {"mean": 0.5}} for s in ("a", "b")}
    sentence = difference_sentence(summary, [pair], "a", "b")
    assert (
        "within noise" in sentence
        and "method-level t over 2 seeds" in sentence
        and "do not read it as a ranking" in sentence
    )
    assert "better than" not in sentence


def _run(labels, pred):
    from distill_lora.metrics import metrics_from_predictions

    return {
        "test": metrics_from_predictions(labels, pred, [float(x) for x in pred], ["no", "yes"]),
        "predictions": {"pred": pred},
    }


def test_an_ensemble_of_students_counts_the_teacher_once_in_its_training_time(results):
    from distill_lora.report.summary import add_ensembles, summarise

    result = add_ensembles(results["comparison"])
    summary = summarise(result, 100, 0)
    per_seed = result["per_seed"]
    expected = [
        s["student-odd"]["wall_time_s"] + s["student-even"]["wall_time_s"] + s["teacher"]["wall_time_s"]
        for s in per_seed.values()
    ]
    assert summary["ensemble-odd+even"]["wall_time_with_teacher_s"]["mean"] == pytest.approx(np.mean(expected))
    assert "wall_time_with_teacher_s" not in summary["lora-student"]  # LoRA adapts the pretrained model


def test_training_time_means_the_models_own_training_loop(results, tmp_path):
    """One meaning of "training time" in the report: the stage's own loop (wall_time_s). A student's teacher-logit
    pass is not folded into it, and its teacher's training is added only where the report says so by name.

    Mutation caught: the summary's training-time sentence adding the teacher-logit pass to a student's time."""
    results = json.loads(json.dumps(results))
    for stages in results["comparison"]["per_seed"].values():
        stages["student-odd"]["teacher_targets"] = {"time_s": 30.0, "peak_memory_bytes": 2**20, "reused": False}
    write_report(tmp_path, results, resamples=50)
    md = (tmp_path / "report.md").read_text()
    odd = np.mean([s["student-odd"]["wall_time_s"] for s in results["comparison"]["per_seed"].values()])
    teacher = np.mean([s["teacher"]["wall_time_s"] for s in results["comparison"]["per_seed"].values()])
    lora = np.mean([s["lora-student"]["wall_time_s"] for s in results["comparison"]["per_seed"].values()])
    assert "training time (each model's own training loop): " in md
    assert (
        f"student-odd {odd:.0f} s ({odd / lora:.1f}× lora-student; {(odd + teacher) / lora:.1f}× with its "
        f"teacher's training, {teacher:.0f} s)" in md
    )
    assert "counting the teacher it needs" not in md and "(with teacher " not in md
