"""evaluate --data on a 3-class run: labels written as the run's class names count as those classes; a data set
whose labels are not the run's classes is a one-line error naming them."""

import json

from conftest import CLASSES3, one_error_line, tiny_texts3, write_jsonl
from typer.testing import CliRunner

from distill_lora.cli import app

runner = CliRunner()


def test_evaluate_with_the_runs_class_names_and_with_other_labels(finished_run3, tmp_path):
    run = finished_run3["output"]
    same = tmp_path / "same"
    write_jsonl(same / "test.jsonl", tiny_texts3(30, 7))
    r = runner.invoke(app, ["evaluate", str(run), "--data", str(same), "--name", "same"])
    assert r.exit_code == 0, r.output
    ood = json.loads((run / "results.json").read_text())["out_of_domain"]["same"]
    names = [row["label"] for row in map(json.loads, (same / "test.jsonl").read_text().splitlines())]
    assert ood["comparison"]["test_labels"] == [CLASSES3.index(n) for n in names]
    assert abs(sum(ood["class_shares"].values()) - 1) < 1e-12

    other = tmp_path / "other"
    write_jsonl(other / "test.jsonl", [{"text": "you are all vermin", "label": "toxic"}] * 3)
    one_error_line(
        runner.invoke(app, ["evaluate", str(run), "--data", str(other)]),
        2,
        "label 'toxic', outside the label set 0..2 (hate speech, offensive language, neither)",
    )
    # the hint names evaluate's own options, never a config key it cannot set
    line = one_error_line(runner.invoke(app, ["evaluate", str(run), "--data", str(other)]), 2)
    assert "--label-map" in line and "data.label_map" not in line, line
    wrong_column = tmp_path / "column"
    write_jsonl(wrong_column / "test.jsonl", [{"body": "you are all vermin", "label": 0}] * 3)
    line = one_error_line(runner.invoke(app, ["evaluate", str(run), "--data", str(wrong_column)]), 2)
    assert "--text-column" in line and "data.text_column" not in line, line


def test_evaluate_refuses_an_unwritable_run_folder_before_scoring_any_model(finished_run3, tmp_path, monkeypatch):
    from distill_lora.errors import UserError
    from distill_lora.use import evaluate

    def unwritable(folder):
        raise UserError(f"run folder '{folder}' is not writable (Read-only file system)")

    monkeypatch.setattr(evaluate, "check_writable", unwritable)
    data = tmp_path / "same"
    write_jsonl(data / "test.jsonl", tiny_texts3(30, 7))
    r = runner.invoke(app, ["evaluate", str(finished_run3["output"]), "--data", str(data)])
    one_error_line(r, 2, "is not writable")  # one line: no "seed 0 teacher: macro-F1" progress before it
