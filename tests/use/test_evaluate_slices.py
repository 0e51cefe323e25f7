"""evaluate --slice-column: per-slice results for another data set, from a test-only folder."""

from __future__ import annotations

import json
import shutil

from conftest import one_error_line, tiny_texts, write_jsonl
from typer.testing import CliRunner

from distill_lora.cli import app

runner = CliRunner()


def test_evaluate_with_a_slice_column_on_a_test_only_folder(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run["output"], run)
    suite = tmp_path / "suite"  # a functional test suite: test.jsonl only, no train file
    rows = tiny_texts(24, 5)
    for i, row in enumerate(rows):
        row["functionality"] = ["negation", "slur", ""][i % 3]
    write_jsonl(suite / "test.jsonl", rows)
    bad = runner.invoke(app, ["evaluate", str(run), "--data", str(suite), "--slice-column", "category"])
    one_error_line(bad, 2, "has no column 'category' (columns: text, label, functionality)")
    r = runner.invoke(app, ["evaluate", str(run), "--data", str(suite), "--slice-column", "functionality"])
    assert r.exit_code == 0, r.output
    ood = json.loads((run / "results.json").read_text())["out_of_domain"]["suite"]["comparison"]
    assert ood["test_slices"] == [["negation", "slur", "(missing)"][i % 3] for i in range(24)]
    assert ood["slice_column"] == "functionality"
    report = (run / "report.md").read_text()
    section = report[report.index("## Out-of-domain: suite") :]
    assert "### Per slice (`functionality`)" in section
    assert "| negation | 8 |" in section and "| (missing) | 8 |" in section
    # the teacher's error rate on a slice is what its recorded predictions give
    labels, pred = ood["test_labels"], ood["per_seed"]["0"]["teacher"]["predictions"]["pred"]
    wrong = sum(pred[i] != labels[i] for i in range(0, 24, 3)) / 8
    assert f"| negation | teacher | {1 - wrong:.3f} |" in section
