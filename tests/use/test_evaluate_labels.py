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
