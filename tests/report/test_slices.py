"""Per-slice results (report/slices.py): numbers computed by hand on recorded predictions, the swap test and Holm
against hand-computed p values, the section's sentences, the heatmap, and the report rebuilt from results.json."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.report.slices import (
    HEATMAP,
    draw_heatmap,
    slice_names,
    slice_section,
    slice_table,
    slice_verdict,
    slices_csv,
    what_error_means,
)

NAMES = ["not toxic", "toxic"]
# nine test texts in three slices: "mixed" (both classes), "negation" (benign only), "single" (one text)
LABELS = [1, 0, 0, 0, 1, 1, 0, 0, 0]
SLICES = ["mixed", "negation", "mixed", "negation", "single", "mixed", "negation", "mixed", "negation"]
STUDENT = {0: [1, 1, 1, 1, 0, 0, 0, 0, 0], 1: [1, 1, 0, 0, 1, 1, 0, 0, 0]}  # seed → predictions


def _run(pred: list[int]) -> dict:
    return {"predictions": {"pred": pred}}


def hand_result() -> dict:
    """Teacher right everywhere in both seeds; the odd student's predictions as STUDENT."""
    return {
        "seeds": [0, 1],
        "label_names": NAMES,
        "test_labels": LABELS,
        "test_slices": SLICES,
        "slice_column": "category",
        "per_seed": {str(s): {"teacher": _run(LABELS), "student-odd": _run(STUDENT[s])} for s in (0, 1)},
    }


def _by_slice(table: dict) -> dict:
    return {r["slice"]: r for r in table["slices"]}


def test_per_slice_numbers_match_the_hand_computation():
    rows = _by_slice(slice_table(hand_result(), resamples=200))
    assert list(rows) == ["mixed", "negation", "single"]
    assert [rows[s]["n"] for s in rows] == [4, 4, 1]
    assert rows["mixed"]["class_shares"] == {"not toxic": 0.5, "toxic": 0.5}
    assert rows["negation"]["class_shares"] == {"not toxic": 1.0, "toxic": 0.0}
    assert rows["negation"]["classes_present"] == ["not toxic"] and rows["single"]["classes_present"] == ["toxic"]
    mixed, negation, single = (rows[s]["models"]["student-odd"] for s in ("mixed", "negation", "single"))
    # mixed (texts 0, 2, 5, 7 = 1, 0, 1, 0): seed 0 predicts 1, 1, 0, 0 (2 of 4 right), seed 1 all right
    assert mixed["accuracy_per_seed"] == [0.5, 1.0] and mixed["accuracy"] == 0.75 and mixed["error_rate"] == 0.25
    # seed 0: each class TP 1, FP 1, FN 1 → F1 0.5; seed 1: 1.0
    assert mixed["macro_f1"] == pytest.approx(0.75)
    assert mixed["recall"] == {"not toxic": 0.75, "toxic": 0.75}
    # negation (texts 1, 3, 6, 8, all benign): seed 0 flags 2, seed 1 flags 1 → 3 of 8 flagged toxic
    assert negation["accuracy_per_seed"] == [0.5, 0.75] and negation["error_rate"] == pytest.approx(0.375)
    # macro-F1 over the one class present: seed 0 2·2/(2·2+2) = 2/3, seed 1 2·3/(2·3+1) = 6/7
    assert negation["macro_f1"] == pytest.approx((2 / 3 + 6 / 7) / 2)
    assert negation["recall"] == {"not toxic": 0.625}
    # single (text 4, toxic): missed in seed 0, found in seed 1; one text: every resample is the same, so the
    # CI is the exact Clopper-Pearson interval over the one text (seeds are not more texts): 0 or 1 right of 1,
    # i.e. nothing known: [0, 1]
    assert single["accuracy_per_seed"] == [0.0, 1.0] and single["error_rate"] == 0.5
    assert single["error_ci"]["method"] == "clopper-pearson over 1 texts"
    assert (single["error_ci"]["low"], single["error_ci"]["high"]) == (0.0, 1.0)
    teacher = rows["single"]["models"]["teacher"]  # 0 errors in 1 text: [0, 0.975]
    assert teacher["error_rate"] == 0 and teacher["error_ci"]["high"] == pytest.approx(0.975)
    # the student differs from the teacher on negation texts 1 and 3 (seed 0) and 1 (seed 1): 2 texts
    assert negation["vs_reference"]["differing_units"] == 2 and negation["vs_reference"]["units"] == "texts"
    assert negation["vs_reference"]["accuracy_diff"] == pytest.approx(-0.375)


def test_error_cis_resample_within_the_slice_by_whole_groups():
    result = hand_result()
    result["test_groups"] = ["a", "n1", "a", "n1", "s", "b", "n2", "b", "n2"]
    rows = _by_slice(slice_table(result, resamples=200))
    assert [rows[s]["n_groups"] for s in rows] == [2, 2, 1]
    # no errors: collapses to the exact interval over the slice's 2 groups, not its 4 texts × 2 seeds
    assert rows["mixed"]["models"]["teacher"]["error_ci"]["method"] == "clopper-pearson over 2 groups"
    assert rows["mixed"]["models"]["teacher"]["error_ci"]["high"] == pytest.approx(1 - 0.025**0.5)
    assert rows["negation"]["models"]["student-odd"]["error_ci"]["method"] == "cluster bootstrap (2 groups)"
    section = "\n".join(slice_section(slice_table(result, resamples=200), NAMES))
    assert "| Slice | n | Groups |" in section and "whole groups (data.group_column)" in section


def holm_result() -> dict:
    """One seed, two slices of 10: the odd student flags 8 of slice A's benign texts (exact sign-flip p =
    2/2^8); on slice B the teacher misses 6 toxic texts the student finds (p = 2/2^6); LoRA matches the teacher
    but for one text of A (p = 1)."""
    labels = [0] * 10 + [1] * 10
    teacher = [0] * 10 + [0] * 6 + [1] * 4
    odd = [1] * 8 + [0] * 2 + [1] * 10
    lora = [1] + [0] * 9 + teacher[10:]
    stages = {"teacher": teacher, "student-odd": odd, "lora-student": lora}
    return {
        "seeds": [0],
        "label_names": NAMES,
        "test_labels": labels,
        "test_slices": ["A"] * 10 + ["B"] * 10,
        "per_seed": {"0": {s: _run(p) for s, p in stages.items()}},
    }


def test_swap_test_per_slice_and_holm_against_hand_values():
    rows = _by_slice(slice_table(holm_result(), resamples=200))
    odd_a = rows["A"]["models"]["student-odd"]["vs_reference"]
    odd_b = rows["B"]["models"]["student-odd"]["vs_reference"]
    lora_a = rows["A"]["models"]["lora-student"]["vs_reference"]
    lora_b = rows["B"]["models"]["lora-student"]["vs_reference"]
    assert odd_a["p_value"] == pytest.approx(2 / 2**8) and odd_b["p_value"] == pytest.approx(2 / 2**6)
    assert lora_a["p_value"] == 1.0 and lora_b["p_value"] == 1.0
    # Holm over the 4 tests: 4 · 2/256 = 0.03125; max(0.03125, 3 · 2/64) = 0.09375; then 1, 1
    assert odd_a["p_holm"] == pytest.approx(0.03125) and odd_b["p_holm"] == pytest.approx(0.09375)
    assert lora_a["p_holm"] == lora_b["p_holm"] == 1.0
    # worse on A. On B 6 differing texts can give no p below 2/64, and Holm asks for < 0.05/3 at that step: no
    # verdict possible; nor with LoRA's 1 and 0 differing texts
    assert (odd_a["verdict"], odd_b["verdict"]) == ("worse", "no verdict possible")
    assert lora_a["verdict"] == lora_b["verdict"] == "no verdict possible"
    assert odd_a["accuracy_diff"] == pytest.approx(-0.8) and odd_b["accuracy_diff"] == pytest.approx(0.6)


def test_slices_of_few_groups_are_descriptive():
    """The demo's trap: a slice of 2 templates where a student fails every text of both (16 texts). McNemar over
    texts called it 'worse' (p 3e-5); over groups the evidence is 2 units: p = 0.5 at best, no mark."""
    result = holm_result()
    result["test_groups"] = [f"t{i // 5}" for i in range(20)]  # slices of 2 groups of 5
    rows = _by_slice(slice_table(result, resamples=200))
    odd_a = rows["A"]["models"]["student-odd"]["vs_reference"]
    assert odd_a["units"] == "groups" and odd_a["differing_units"] == 2 and odd_a["p_value"] == pytest.approx(0.5)
    assert odd_a["verdict"] == "no verdict possible"
    section = "\n".join(slice_section(slice_table(result, resamples=200), NAMES))
    assert "| A | 0.00 | 0.80 | 0.10 |" in section  # no ▲ in the grid
    assert "**Significantly worse than the teacher:** on no slice." in section


def test_slice_verdict_reads_the_adjusted_p_the_sign_and_whether_a_verdict_was_possible():
    assert slice_verdict(0.01, -0.1, 0.05) == "worse"
    assert slice_verdict(0.01, 0.3, 0.05) == "better"
    assert slice_verdict(0.2, -0.5, 0.05) == "within noise"
    assert slice_verdict(0.5, -0.5, 0.05, reachable=False) == "no verdict possible"


def test_section_names_the_slices_from_the_numbers():
    table = slice_table(holm_result(), resamples=200)
    lines = slice_section(table, NAMES, plot=HEATMAP)
    text = "\n".join(lines)
    assert lines[0] == "## Per slice (the slice column)"
    assert "Holm-adjusted over all 4 slice × model tests" in text
    at = lines.index("- **Significantly worse than the teacher:**")
    assert lines[at + 1] == (
        "  - 'A' (n = 10; error rate = share flagged toxic; teacher 0.0%): student-odd 80.0% (+80.0 points)."
    )
    assert lines[at + 2] == "- **Significantly better than the teacher:** on no slice."
    fewer = lines[lines.index("- **A student with fewer errors than the teacher, not significant:**") + 1]
    assert fewer == (
        "  - 'B' (n = 10; error rate = share missed (predicted not toxic); teacher 60.0%): "
        "student-odd 0.0% (-60.0 points)."
    )
    assert "| A | 0.00 | 0.80 ▲ | 0.10 |" in text  # the error grid, models in the given order
    assert f"(plots/{HEATMAP})" in text


def test_what_the_error_rate_counts():
    row = {"classes_present": ["not toxic"]}
    assert what_error_means(row, NAMES) == "flagged toxic"
    assert what_error_means({"classes_present": ["toxic"]}, NAMES) == "missed (predicted not toxic)"
    assert what_error_means({"classes_present": NAMES}, NAMES) == "given a wrong class"
    assert what_error_means({"classes_present": ["b"]}, ["a", "b", "c"]) == "given a class other than b"


def test_three_classes_and_missing_slices_are_handled():
    labels = [0, 1, 2, 2, 1, 0]
    result = {
        "seeds": [0],
        "label_names": ["a", "b", "c"],
        "test_labels": labels,
        "test_slices": ["(missing)", "x", "x", "(missing)", "x", "z"],
        "per_seed": {"0": {"teacher": _run(labels), "student-odd": _run([0, 1, 0, 2, 1, 2])}},
    }
    assert slice_names(result["test_slices"]) == ["x", "z", "(missing)"]
    rows = _by_slice(slice_table(result, resamples=100))
    x = rows["x"]["models"]["student-odd"]  # labels 1, 2, 1 → predictions 1, 0, 1
    assert x["accuracy"] == pytest.approx(2 / 3) and x["recall"] == {"b": 1.0, "c": 0.0}
    # over the classes present (b, c): F1_b = 2·2/(2·2 + 0) = 1, F1_c = 0 → 0.5 (class a is not averaged in)
    assert x["macro_f1"] == pytest.approx(0.5)
    assert rows["(missing)"]["class_shares"] == {"a": 0.5, "b": 0.0, "c": 0.5}


def test_no_slices_no_section():
    result = hand_result()
    del result["test_slices"]
    assert slice_table(result) is None and slice_section(None, NAMES) == [] and slices_csv(None) is None
    assert draw_heatmap(None, "unused") == []


def test_csv_has_one_row_per_slice_and_model():
    rows = list(csv.DictReader(io.StringIO(slices_csv(slice_table(hand_result(), resamples=100)))))
    assert len(rows) == 3 * 2
    odd = next(r for r in rows if r["slice"] == "negation" and r["stage"] == "student-odd")
    assert float(odd["error_rate"]) == pytest.approx(0.375) and odd["verdict"] == "no verdict possible"
    assert odd["differing_units"] == "2" and float(odd["p_holm"]) == 1.0


def test_heatmap_with_30_slices_and_14_models_is_a_png(tmp_path):
    import random

    rng = random.Random(0)
    models = ["teacher"] + [f"model-{i:02d}-long-name" for i in range(13)]
    slices = [f"synthetic slice number {i}" for i in range(30)]
    table = {
        "models": models,
        "reference": "teacher",
        "slices": [
            {
                "slice": s,
                "n": 20,
                "models": {
                    m: {"error_rate": rng.random(), "vs_reference": {"verdict": rng.choice(["worse", "better", "x"])}}
                    for m in models
                },
            }
            for s in slices
        ],
    }
    assert draw_heatmap(table, tmp_path) == [HEATMAP]
    with Image.open(tmp_path / HEATMAP) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 1000 and image.size[1] > 1000


def test_report_rebuilds_the_section_from_results_json(finished_run, tmp_path):
    """The shared tiny run, given a slice per test text in its results.json: `distill-lora report` writes the
    section, the heatmap (a valid PNG, linked), slices.csv and analysis.json's table, without the models."""
    run = tmp_path / "run"
    shutil.copytree(finished_run["output"], run, ignore=shutil.ignore_patterns("seed-*"))
    results = json.loads((run / "results.json").read_text())
    texts = results["comparison"]["test_texts"]
    results["comparison"]["test_slices"] = ["says hate" if "hate" in t else "other" for t in texts]
    results["comparison"]["slice_column"] = "kind"
    (run / "results.json").write_text(json.dumps(results))
    r = CliRunner().invoke(app, ["report", str(run), "--resamples", "200"])
    assert r.exit_code == 0, r.output
    report = (run / "report.md").read_text()
    assert "## Per slice (`kind`)" in report and f"](plots/{HEATMAP})" in report
    with Image.open(run / "plots" / HEATMAP) as image:
        image.verify()
        assert image.format == "PNG"
    stages = list(json.loads((run / "analysis.json").read_text())["summary"])
    table = json.loads((run / "analysis.json").read_text())["slices"]
    assert table["models"] == stages  # the main table's order, ensembles and all
    n_hate = sum("hate" in t for t in texts)
    assert [(s["slice"], s["n"]) for s in table["slices"]] == [("other", len(texts) - n_hate), ("says hate", n_hate)]
    assert len((run / "slices.csv").read_text().splitlines()) == 1 + 2 * len(stages)
