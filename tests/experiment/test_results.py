"""experiment/results.py: what a command leaves in its run folder, and `retime`."""

import json
import shutil
from types import SimpleNamespace

from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.experiment import results

runner = CliRunner()


def test_gather_results_reads_only_finished_stages(tmp_path):
    for stage, done in (("teacher", True), ("student-odd", False)):
        folder = tmp_path / "seed-0" / stage
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"stage": stage}))
        if done:
            (folder / "DONE").write_text("{}")
    assert results.gather_results(tmp_path) == {"seed-0": {"teacher": {"stage": "teacher"}}}


def test_retime_times_every_model_together_and_rebuilds_the_report(finished_run, tmp_path):
    """`distill-lora retime RUN`: every model of the first seed timed together on this machine, stored in
    results.json, and the report rebuilt from it; nothing else in results.json changes."""
    run = tmp_path / "run"
    shutil.copytree(finished_run["output"], run)
    before = json.loads((run / "results.json").read_text())
    stripped = {k: v for k, v in before.items() if k != "timings"}
    (run / "results.json").write_text(json.dumps(stripped))
    (run / "report.md").unlink()
    r = runner.invoke(app, ["retime", str(run), "--repeats", "2"])
    assert r.exit_code == 0, r.output
    after = json.loads((run / "results.json").read_text())
    assert {k: v for k, v in after.items() if k != "timings"} == stripped
    timed = after["timings"]["models"]
    for stage in ("teacher", "student-odd", "student-even", "lora-student", "lora-teacher", "teacher-int8"):
        assert stage in timed and timed[stage]["latency_ms_batch1"]["median"] > 0, stage
    assert after["timings"]["repeats"] == 2 and (run / "report.md").exists()


def test_run_json_keeps_every_command(tmp_path, monkeypatch):
    ctx = SimpleNamespace(output_dir=tmp_path, splits=SimpleNamespace(fingerprint={"train": "abc"}))
    monkeypatch.setattr("sys.argv", ["distill-lora", "compare"])
    results.write_run_files(ctx, "cpu (2 threads)")
    monkeypatch.setattr("sys.argv", ["distill-lora", "compare", "--seeds", "0,1"])
    results.write_run_files(ctx, "cpu (1 threads)")
    run = json.loads((tmp_path / "run.json").read_text())
    assert [h["argv"] for h in run["history"]] == [
        ["distill-lora", "compare"],
        ["distill-lora", "compare", "--seeds", "0,1"],
    ]
    assert [h["device"] for h in run["history"]] == ["cpu (2 threads)", "cpu (1 threads)"]
    assert run["device"] == "cpu (1 threads)" and run["data_files"] == {"train": "abc"}
    assert all(h["versions"]["torch"] and h["time"] for h in run["history"])
