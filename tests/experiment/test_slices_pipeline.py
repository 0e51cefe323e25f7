"""compare with data.slice_column: results.json keeps each test text's slice, the report shows the per-slice
section and heatmap, and the slice column changes nothing a stage trains (finished stages are reused)."""

from __future__ import annotations

import json

from conftest import tiny_config, tiny_texts, write_jsonl
from PIL import Image
from typer.testing import CliRunner

from distill_lora.cli import app

runner = CliRunner()


def _with_kind(rows: list[dict]) -> list[dict]:
    return [{**r, "kind": ["short", "long"][len(r["text"].split()) > 5]} for r in rows]


def test_compare_with_slices_reports_them_and_reuses_stages_without(tmp_path, tiny_bert6):
    data = tmp_path / "data"
    write_jsonl(data / "train.jsonl", _with_kind(tiny_texts(64, 0)))
    write_jsonl(data / "validation.jsonl", _with_kind(tiny_texts(24, 1)))
    test_rows = _with_kind(tiny_texts(30, 2))
    test_rows[0]["kind"] = None
    write_jsonl(data / "test.jsonl", test_rows)
    cfg = tiny_config(
        tmp_path,
        tiny_bert6,
        data,
        data_settings={"slice_column": "kind"},
        distill={"layers": ["odd"]},
        lora={"models": ["lora-student"]},
        train={"epochs": 1},
        report={"bootstrap_resamples": 200, "quantize_int8": False},
    )
    r = runner.invoke(app, ["compare", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    run = tmp_path / "run"
    comparison = json.loads((run / "results.json").read_text())["comparison"]
    assert comparison["test_slices"] == ["(missing)"] + [x["kind"] for x in test_rows[1:]]
    assert comparison["slice_column"] == "kind"
    report = (run / "report.md").read_text()
    assert "## Per slice (`kind`)" in report and "](plots/slices.png)" in report
    assert report.index("## Per slice") > report.index("Per class (mean over seeds)")
    with Image.open(run / "plots" / "slices.png") as image:
        image.verify()
        assert image.format == "PNG"
    # slices choose nothing: without the column every finished stage is reused, and the section is gone
    again = runner.invoke(app, ["compare", "--config", str(cfg), "--set", "data.slice_column=null"])
    assert again.exit_code == 0, again.output
    for stage in ("teacher", "student-odd", "lora-student"):
        assert f"[{stage}] reusing finished stage" in again.output
    assert "test_slices" not in json.loads((run / "results.json").read_text())["comparison"]
    assert "## Per slice" not in (run / "report.md").read_text()
