"""Bad input → one line naming the problem and the fix, exit code 2, no traceback, nothing written."""
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import REPO, tiny_config, write_jsonl
from distill_lora.cli import app

runner = CliRunner()


def bad_data(tmp_path, name, rows):
    folder = tmp_path / name
    write_jsonl(folder / "train.jsonl", [{"text": "love park", "label": 0}, {"text": "hate trash", "label": 1}] * 5)
    write_jsonl(folder / "validation.jsonl", [{"text": "love", "label": 0}, {"text": "hate", "label": 1}])
    write_jsonl(folder / "test.jsonl", rows)
    return folder


def check_user_error(tmp_path, args, message, output_dir):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert [line for line in result.output.splitlines() if line.startswith("error:")], result.output
    assert not output_dir.exists(), "nothing may be written on bad input"


@pytest.mark.parametrize("case", ["unknown key", "missing config", "missing data", "missing column",
                                  "label outside", "null text", "empty split", "impossible layers",
                                  "impossible lora layers", "hub id offline", "bad lora model"])
def test_bad_input(case, tiny_bert6, tiny_data, tmp_path):
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data)
    out = tmp_path / "run"
    base = ["compare", "--config", str(cfg)]
    cases = {
        "unknown key": (base + ["--set", "distill.temprature=3"], "did you mean 'temperature'"),
        "missing config": (["compare", "--config", str(tmp_path / "nope.yaml")], "config file"),
        "missing data": (base + ["--set", f"data.source={tmp_path / 'nowhere'}"], "no such file or folder"),
        "missing column": (base + ["--set", "data.text_column=tweet"], "no column 'tweet'"),
        "label outside": (base + ["--set", f"data.source={bad_data(tmp_path, 'l', [{'text': 'x', 'label': 5}])}"],
                          "outside the label set"),
        "null text": (base + ["--set", f"data.source={bad_data(tmp_path, 'n', [{'text': None, 'label': 0}])}"],
                      "data.null_text: drop"),
        "empty split": (base + ["--set", f"data.source={bad_data(tmp_path, 'e', [])}"], "is empty"),
        "impossible layers": (["distill", "--layers", "2,9", "--config", str(cfg)], "outside 1..6"),
        "impossible lora layers": (base + ["--set", "lora.student_layers=5,3"], "strictly increasing"),
        "hub id offline": (base + ["--set", "teacher.model=bert-base-uncased"], "HF_HUB_OFFLINE is set"),
        "bad lora model": (["lora", "--model", "lora-huge", "--config", str(cfg)], "use lora-student, lora-teacher or all"),
    }
    args, message = cases[case]
    check_user_error(tmp_path, args, message, out)


def test_unwritable_output_dir(tiny_bert6, tiny_data, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data)
    result = runner.invoke(app, ["train-teacher", "--config", str(cfg), "-o", str(blocker / "run")])
    assert result.exit_code == 2
    assert "is not writable" in result.output and "--output-dir" in result.output


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "distill_lora", "--help"], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0
    for command in ("train-teacher", "distill", "lora", "compare"):
        assert command in result.stdout


# ---------------------------------------------------------------- one error path for every command (issue 11)

def one_error_line(result, code, *needles):
    """The command failed with `code` and said so in exactly one line starting with 'error:'."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.mark.parametrize("args, needle", [
    (["--seed", "-1"], "'seed' must be an integer from 0 to 4294967295"),
    (["--seed", "99999999999"], "'seed' must be an integer from 0 to 4294967295 (2**32 - 1), got 99999999999"),
    (["--set", "seeds=[0, 4294967296]"], "'seeds[1]' must be an integer"),
    (["--set", "data.split_seed=-2"], "'data.split_seed' must be an integer"),
])
def test_seeds_outside_what_numpy_accepts_fail_before_anything_is_written(args, needle, tiny_bert6, tiny_data,
                                                                          tmp_path):
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data)
    one_error_line(runner.invoke(app, ["train-teacher", "--config", str(cfg), *args]), 2, needle)
    assert not (tmp_path / "run").exists()  # no seed--1/.teacher.work/ left behind


def test_global_train_value_is_blamed_on_the_key_the_user_set(tiny_bert6, tiny_data, tmp_path):
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data)
    line = one_error_line(runner.invoke(app, ["compare", "-c", str(cfg), "--set", "train.batch_size=0"]), 2)
    assert line == "error: config: 'train.batch_size' must be >= 1, got 0"
    line = one_error_line(runner.invoke(app, ["compare", "-c", str(cfg), "--set", "distill.train.batch_size=0"]), 2)
    assert line == "error: config: 'distill.train.batch_size' must be >= 1, got 0"


def test_malformed_yaml_names_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: 1.0e-4\n   epochs: 2\n")  # line 3 is indented one space too far
    one_error_line(runner.invoke(app, ["compare", "-c", str(bad)]), 2,
                   "is not valid YAML: line 3, column 10: mapping values are not allowed here")
    one_error_line(runner.invoke(app, ["compare", "--set", "distill.layers=[1,2"]), 2,
                   "--set 'distill.layers=[1,2': the value is not valid YAML: column 5: expected ',' or ']'")
