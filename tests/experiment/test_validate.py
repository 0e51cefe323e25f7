"""`distill-lora validate` (every problem at once, with its line) and `distill-lora config` (resolved, --explain)."""

import pytest
import yaml
from conftest import one_error_line
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.config import load_config
from distill_lora.errors import EXIT_BAD_INPUT

runner = CliRunner()

BAD = """\
seed: 0
data:
  source: {data}
  max_length: 4
  label_names: [a]
teacher:
  model: ./no-such-model
trian:
  epochs: 3
train:
  lr: -1
lora:
  models: [lora-big]
"""


def test_validate_reports_every_problem_with_its_line(tmp_path, tiny_data):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD.format(data=tiny_data), encoding="utf-8")
    r = runner.invoke(app, ["validate", "--config", str(path), "--set", "lora.r=0"])
    assert r.exit_code == EXIT_BAD_INPUT, r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error: ")]
    # six mistakes of five kinds: a typo'd key, values out of range, a bad choice, a missing folder, an override
    assert errors == [
        f"error: {path}:8: unknown key 'trian'; did you mean 'train'?",
        f"error: {path}:11: 'train.lr' must be > 0, got -1.0",
        f"error: {path}:5: 'data.label_names' needs at least two classes, e.g. [not toxic, toxic]",
        f"error: {path}:4: 'data.max_length' must be at least 8, got 4",
        "error: --set: 'lora.r' must be >= 1, got 0",
        f"error: {path}:13: 'lora.models' has 'lora-big'; valid: lora-student, lora-teacher, each with an optional "
        ".ADAPTER",
        f"error: {path}:7: teacher.model './no-such-model': no such file or folder "
        f"(relative paths are read from {tmp_path.cwd()})",
    ], r.output
    assert "7 problem(s)" in r.output and "Traceback" not in r.output


def test_validate_passes_a_good_config_and_stops_at_unreadable_yaml(tmp_path):
    r = runner.invoke(app, ["validate", "--config", "demo"])
    assert r.exit_code == 0 and "demo: ok" in r.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: [unclosed\n", encoding="utf-8")
    one_error_line(runner.invoke(app, ["validate", "--config", str(broken)]), 2, "is not valid YAML: line 2")


def test_config_prints_the_resolved_config_and_explains_a_key():
    r = runner.invoke(app, ["config", "--config", "demo", "--set", "lora.r=4"])
    assert r.exit_code == 0, r.output
    printed = yaml.safe_load(r.output)
    assert printed == load_config("demo", ["lora.r=4"]).to_dict() and printed["lora"]["r"] == 4
    assert printed["train"]["max_grad_norm"] == 1.0  # a default the demo config does not write
    r = runner.invoke(app, ["config", "--explain", "lora.r"])
    assert r.exit_code == 0 and r.output == "lora.r: LoRA rank\ndefault: 8\n"
    one_error_line(runner.invoke(app, ["config", "--explain", "lora.rr"]), 2, "no such key; did you mean lora.r")


def test_validate_names_a_tracker_that_is_not_installed(monkeypatch):
    from distill_lora.experiment import tracking

    monkeypatch.setitem(tracking.INSTALLED, "mlflow", lambda: False)
    r = runner.invoke(app, ["validate", "--config", "demo", "--set", "train.report_to=[mlflow]"])
    assert r.exit_code == EXIT_BAD_INPUT
    assert "error: --set: train.report_to has mlflow, which is not installed: pip install 'distill-lora[track]'" in (
        r.output
    )


@pytest.mark.parametrize(
    "override, said",
    [
        ("distill.layers=[[0,3]]", "distill.layers: layers [0, 3]: [0] outside 1..6"),
        ("distill.layers=[even,spaced]", "distill.layers: 'even' and 'spaced' make the same student student-even"),
        ("lora.student_layers=odds", "lora.student_layers: layers 'odds'"),
    ],
)
def test_validate_checks_the_layer_lists_against_the_teacher_as_training_does(tmp_path, override, said):
    """The check `compare` makes at load (pipeline.check_layers), asked by validate too: no config passes one and
    fails the other."""
    r = runner.invoke(app, ["validate", "--config", "demo", "--set", override])
    assert r.exit_code == EXIT_BAD_INPUT and f"error: --set: {said}" in r.output, r.output
    c = runner.invoke(app, ["compare", "--config", "demo", "--set", override, "-o", str(tmp_path / "run")])
    assert c.exit_code == EXIT_BAD_INPUT and said in c.output, c.output
