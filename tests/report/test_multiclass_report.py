"""The report of a run with three classes (issue 14): every number checked against scikit-learn, computed here
from the predictions results.json records; and the N-class sentences and cells on hand-made numbers."""

import csv
import io
import json

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, roc_auc_score

from distill_lora.metrics import metrics_from_predictions, prediction_record, recorded_probabilities
from distill_lora.report import findings, tables
from distill_lora.report.write import example_lines, scope_lines

CLASSES = ["hate speech", "offensive language", "neither"]


def md_table(md: str, first_header: str, has: str = "") -> list[dict]:
    """The first markdown table whose header starts with `first_header` and holds `has`, as one dict per row."""
    lines = md.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith(f"| {first_header} |") and has in x)
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (c.strip() for c in line.strip("|").split("|")))))
    return rows


# ---------------------------------------------------------------- the 3-class tiny run


@pytest.fixture(scope="module")
def run3(finished_run3):
    out = finished_run3["output"]
    results = json.loads((out / "results.json").read_text())
    return out, results, results["comparison"], (out / "report.md").read_text()


def _stages(comparison):
    return list(comparison["per_seed"][str(comparison["seeds"][0])])


def test_per_class_table_is_sklearns_from_the_recorded_predictions(run3):
    _, _, c, md = run3
    labels, names = np.asarray(c["test_labels"]), c["label_names"]
    assert names == CLASSES
    rows = md_table(md, "Class")
    assert md.index("## Per class (test split)") < md.index("## The assignment's table")  # read first
    assert {r["Model"] for r in rows} == set(_stages(c))  # every model, the int8 rows included
    for stage in _stages(c):
        pred = np.asarray(c["per_seed"]["0"][stage]["predictions"]["pred"])
        p, r, f, s = precision_recall_fscore_support(labels, pred, labels=[0, 1, 2], zero_division=0)
        for i, name in enumerate(names):
            (row,) = [x for x in rows if x["Model"] == stage and x["Class"] == name]
            assert (row["Precision"], row["Recall"], row["F1"]) == (f"{p[i]:.3f}", f"{r[i]:.3f}", f"{f[i]:.3f}")
            assert row["Test texts"] == str(s[i])


def test_confusion_matrices_and_one_vs_rest_auc(run3):
    out, _, c, md = run3
    labels = np.asarray(c["test_labels"])
    full = {r["Model"]: r for r in md_table(md, "Model", "ROC-AUC (one-vs-rest, macro)")}
    assert (
        set(full) == set(_stages(c)) and "F1 positive" not in md and "positive)" not in md
    )  # no positive class anywhere
    for stage in _stages(c):
        run = c["per_seed"]["0"][stage]
        cm = np.asarray(run["test"]["confusion_matrix"])
        assert cm.shape == (3, 3) and cm.sum() == len(labels)
        assert (cm == confusion_matrix(labels, run["predictions"]["pred"], labels=[0, 1, 2])).all()
        probs = recorded_probabilities(run["predictions"])
        auc = roc_auc_score(labels, probs, multi_class="ovr", average="macro")
        assert run["test"]["roc_auc"] == pytest.approx(auc, abs=1e-12)
        assert full[stage]["ROC-AUC (one-vs-rest, macro)"] == f"{auc:.3f}"
    reversals = [x for x in md.splitlines() if "reverses" in x]  # named as what it is: no binary ROC-AUC here
    assert all(x.startswith("- one-vs-rest macro ROC-AUC reverses") for x in reversals), reversals
    png = (out / "plots" / "confusion_matrices.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(out / "plots" / "confusion_matrices.png")
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert "(plots/confusion_matrices.png)" in md.split("## The assignment's table")[0]  # linked from the top


def test_largest_recall_drop_is_named_with_both_recalls(run3):
    _, _, c, md = run3
    labels = np.asarray(c["test_labels"])

    def recalls(stage):
        pred = np.asarray(c["per_seed"]["0"][stage]["predictions"]["pred"])
        return precision_recall_fscore_support(labels, pred, labels=[0, 1, 2], zero_division=0)[1]

    teacher = recalls("teacher")
    for stage in ("student-odd", "lora-student"):
        drop = teacher - recalls(stage)
        k = int(np.argmax(drop))
        if drop[k] > 0:
            text = (
                f"[{stage}] loses most on '{CLASSES[k]}': recall {recalls(stage)[k]:.3f} against the teacher's "
                f"{teacher[k]:.3f} (a drop of {drop[k]:.3f}; {int(np.sum(labels == k))} such test texts; one seed)."
            )
        else:
            text = f"[{stage}] loses no recall against the teacher on any class (one seed)."
        assert text in md.split("## The assignment's table")[0] and text in md.split("## Analysis")[1]


def test_shares_examples_and_csv(run3):
    out, results, c, md = run3
    labels = c["test_labels"]
    shares = ", ".join(f"{n} {np.mean(np.asarray(labels) == i):.1%}" for i, n in enumerate(CLASSES))
    assert f"(test split: {len(labels)} texts, {shares})" in md and f"test {len(labels)} ({shares})" in md
    data = {r["Split"]: r for r in md_table(md, "Split")}
    assert data["test"]["neither share"] == f"{np.mean(np.asarray(labels) == 2):.1%}"
    rows = list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))
    assert {r["stage"] for r in rows} == set(_stages(c))
    for r in rows:
        test = c["per_seed"][r["seed"]][r["stage"]]["test"]
        for name in CLASSES:
            assert float(r[f"test_{name}_recall"]) == pytest.approx(test["per_class"][name]["recall"])
            assert int(r[f"test_{name}_support"]) == test["per_class"][name]["support"]
    assert "| predicted " in md and "p(positive" not in md


def test_out_of_domain_section_gives_every_class_share(run3):
    from distill_lora.metrics import class_shares
    from distill_lora.report.summary import summarise
    from distill_lora.report.write import out_of_domain_section

    _, _, c, _ = run3
    ood = {"comparison": c, "source": "other", "split": "test", "n": len(c["test_labels"])}
    ood.update(class_shares(c["test_labels"], CLASSES))
    text = out_of_domain_section("other", ood, summarise(c, 50), 50, 0, 0.05)
    shares = ", ".join(f"{n} {np.mean(np.asarray(c['test_labels']) == i):.1%}" for i, n in enumerate(CLASSES))
    assert f"{len(c['test_labels'])} examples, {shares}), evaluated once" in text
    assert "F1 positive" not in text and "ROC-AUC (one-vs-rest, macro)" in text


def test_report_command_rebuilds_the_same_report(run3, tmp_path):
    from typer.testing import CliRunner

    from distill_lora.cli import app

    _, results, _, md = run3
    (tmp_path / "results.json").write_text(json.dumps(results))
    r = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "report.md").read_text() == md


# ---------------------------------------------------------------- hand-made numbers


def run3_of(labels, pred, probs=None):
    probs = np.eye(3)[pred] if probs is None else np.asarray(probs)
    return {
        "model_type": "m",
        "test": metrics_from_predictions(labels, pred, probs, CLASSES),
        "predictions": prediction_record(pred, probs),
        "depth": 3,
        "total_params": 10,
        "trainable_params": 10,
        "wall_time_s": 1.0,
    }


def result3(labels, stages: dict, seeds=(0,)) -> dict:
    """{stage: predictions per seed} → a comparison dict with three classes."""
    return {
        "seeds": list(seeds),
        "label_names": CLASSES,
        "test_labels": labels,
        "per_seed": {str(s): {st: run3_of(labels, p[i]) for st, p in stages.items()} for i, s in enumerate(seeds)},
    }


def test_missed_class_names_the_largest_recall_drop_mean_over_seeds():
    labels = [0] * 4 + [1] * 4 + [2] * 4
    teacher = [0, 0, 0, 1] + [1, 1, 1, 1] + [2, 2, 2, 2]  # recalls 0.75, 1, 1
    # seed 0: hate 1/4, offensive 3/4; seed 1: hate 2/4, offensive 2/4 → means 0.375 and 0.625
    odd = ([0, 1, 1, 1] + [1, 1, 1, 0] + [2] * 4, [0, 0, 1, 1] + [1, 1, 0, 0] + [2] * 4)
    lora = ([0, 0, 0, 2] + [1] * 4 + [2] * 4,) * 2  # the teacher's recalls exactly
    result = result3(labels, {"teacher": (teacher, teacher), "student-odd": odd, "lora-student": lora}, (0, 1))
    summary = {s: {"model_type": s} for s in ("teacher", "student-odd", "lora-student")}
    odd_line, lora_line = findings.missed_class_lines(result, summary)
    # drops: hate 0.75 − 0.375 = 0.375, offensive 1 − 0.625 = 0.375: a tie goes to the first class
    assert odd_line == (
        "student-odd [student-odd] loses most on 'hate speech': recall 0.375 against the teacher's 0.750 (a drop of 0.375; "
        "4 such test texts; mean over seeds)."
    )
    assert (
        lora_line == "lora-student [lora-student] loses no recall against the teacher on any class (mean over seeds)."
    )
    odd_only = (odd[0], odd[0])  # offensive 0.75 vs 1.0 is a smaller drop than hate's 0.25 vs 0.75
    one = result3(labels, {"teacher": (teacher, teacher), "student-odd": odd_only}, (0, 1))
    (line,) = findings.missed_class_lines(one, {"teacher": {}, "student-odd": {"model_type": "m"}})
    assert "'hate speech': recall 0.250 against the teacher's 0.750 (a drop of 0.500" in line
    int8 = {"teacher": {}, "student-odd-int8": {"quantized_from": "student-odd"}}
    assert (
        findings.missed_class_lines(result3(labels, {"teacher": [teacher], "student-odd-int8": [odd[0]]}), int8) == []
    )


def test_per_class_rows_cover_ensembles_as_means_over_seeds():
    from distill_lora.report.summary import add_ensembles

    labels = [0] * 4 + [1] * 4 + [2] * 4
    truth = labels
    odd = ([0, 1, 1, 1] + [1, 1, 1, 0] + [2] * 4, [0, 0, 1, 1] + [1, 1, 0, 0] + [2] * 4)
    even = ([2, 2, 0, 0] + [1] * 4 + [2, 2, 2, 0], [0] * 4 + [1, 1, 1, 2] + [2] * 4)
    lora = ([1] * 12, [2] * 12)
    stages = {"teacher": (truth, truth), "student-odd": odd, "student-even": even, "lora-student": lora}
    result = add_ensembles(result3(labels, stages, (0, 1)))
    header, rows = tables.per_class_rows(result)
    assert header == ["Class", "Test texts", "Model", "Precision", "Recall", "F1", "Recall − teacher's"]
    cells = {(r[0], r[2]): r for r in rows}
    ensembles = [st for st in result["per_seed"]["0"] if st.startswith("ensemble")]
    assert len(ensembles) == 2 and len(rows) == 3 * (4 + 2)
    for st in [*stages, *ensembles]:
        per_seed = [
            precision_recall_fscore_support(labels, result["per_seed"][s][st]["predictions"]["pred"], zero_division=0)
            for s in ("0", "1")
        ]
        p, r, f, n = (np.mean([x[k] for x in per_seed], axis=0) for k in range(4))
        for i, name in enumerate(CLASSES):
            row = cells[(name, st)]
            assert row[1] == f"{n[i]:.0f}" and row[3:6] == [f"{p[i]:.3f}", f"{r[i]:.3f}", f"{f[i]:.3f}"]
            assert row[6] == ("–" if st == "teacher" else f"{r[i] - 1.0:+.3f}")  # the teacher is always right


def test_missed_class_skips_a_class_without_test_texts():
    labels = [0, 0, 1, 1]  # no 'neither' in the test split
    result = result3(labels, {"teacher": [[0, 0, 1, 1]], "student-odd": [[0, 2, 1, 1]]})
    (line,) = findings.missed_class_lines(result, {"teacher": {}, "student-odd": {"model_type": "m"}})
    assert "'hate speech': recall 0.500 against the teacher's 1.000" in line


def test_examples_rank_by_the_wrong_class_probability():
    labels = [0, 1, 2]
    probs = [[0.2, 0.7, 0.1], [0.05, 0.05, 0.9], [0.3, 0.3, 0.4]]  # 0 and 1 wrong; 1 the more confident
    pred = prediction_record([1, 2, 2], probs)
    lines = example_lines(pred, labels, CLASSES, ["a", "b", "c"], [0, 1], 3)
    assert lines == [
        "true offensive language | predicted neither | p(neither) 0.90, p(offensive language) 0.05 | b",
        "true hate speech | predicted offensive language | p(offensive language) 0.70, p(hate speech) 0.20 | a",
    ]


def test_class_balance_text_binary_and_three_classes():
    three = {"n": 10, "class_shares": {"hate speech": 0.057, "offensive language": 0.774, "neither": 0.169}}
    assert tables.balance_text(three) == "hate speech 5.7%, offensive language 77.4%, neither 16.9%"
    binary = {"n": 10, "class_shares": {"no": 0.7, "yes": 0.3}, "positive_share": 0.3}
    assert tables.balance_text(binary) == "30.0% positive"
    data = {"source": "x", "splits": {"test": three}}
    assert (
        scope_lines(data)[0]
        == "Scope: data from `x`; test 10 (hate speech 5.7%, offensive language 77.4%, neither 16.9%)."
    )
