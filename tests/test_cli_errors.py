"""Bad input → one line naming the problem and the fix, exit code 2, no traceback, nothing written."""

import subprocess
import sys

import pytest
from conftest import REPO, one_error_line, tiny_config, write_jsonl
from typer.testing import CliRunner

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


@pytest.mark.parametrize(
    "case",
    [
        "unknown key",
        "missing config",
        "missing data",
        "missing column",
        "label outside",
        "null text",
        "empty split",
        "impossible layers",
        "impossible lora layers",
        "hub id offline",
        "bad lora model",
    ],
)
def test_bad_input(case, tiny_bert6, tiny_data, tmp_path):
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data)
    out = tmp_path / "run"
    base = ["compare", "--config", str(cfg)]
    cases = {
        "unknown key": (base + ["--set", "distill.temprature=3"], "did you mean 'temperature'"),
        "missing config": (["compare", "--config", str(tmp_path / "nope.yaml")], "config file"),
        "missing data": (base + ["--set", f"data.source={tmp_path / 'nowhere'}"], "no such file or folder"),
        "missing column": (base + ["--set", "data.text_column=tweet"], "no column 'tweet'"),
        "label outside": (
            base + ["--set", f"data.source={bad_data(tmp_path, 'l', [{'text': 'x', 'label': 5}])}"],
            "outside the label set",
        ),
        "null text": (
            base + ["--set", f"data.source={bad_data(tmp_path, 'n', [{'text': None, 'label': 0}])}"],
            "data.null_text: drop",
        ),
        "empty split": (base + ["--set", f"data.source={bad_data(tmp_path, 'e', [])}"], "is empty"),
        "impossible layers": (["distill", "--layers", "2,9", "--config", str(cfg)], "outside 1..6"),
        "impossible lora layers": (base + ["--set", "lora.student_layers=5,3"], "strictly increasing"),
        "hub id offline": (base + ["--set", "teacher.model=bert-base-uncased"], "HF_HUB_OFFLINE is set"),
        "bad lora model": (
            ["lora", "--stage", "lora-huge", "--config", str(cfg)],
            "--stage 'lora-huge': use lora-student, lora-teacher or all",
        ),
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
    result = subprocess.run(
        [sys.executable, "-m", "distill_lora", "--help"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0
    for command in ("train-teacher", "distill", "lora", "compare"):
        assert command in result.stdout


# ---------------------------------------------------------------- one error path for every command (issue 11)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--seed", "-1"], "'seed' must be an integer from 0 to 4294967295"),
        (["--seed", "99999999999"], "'seed' must be an integer from 0 to 4294967295 (2**32 - 1), got 99999999999"),
        (["--set", "seeds=[0, 4294967296]"], "'seeds[1]' must be an integer"),
        (["--set", "data.split_seed=-2"], "'data.split_seed' must be an integer"),
    ],
)
def test_seeds_outside_what_numpy_accepts_fail_before_anything_is_written(
    args, needle, tiny_bert6, tiny_data, tmp_path
):
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
    one_error_line(
        runner.invoke(app, ["compare", "-c", str(bad)]),
        2,
        "is not valid YAML: line 3, column 10: mapping values are not allowed here",
    )
    one_error_line(
        runner.invoke(app, ["compare", "--set", "distill.layers=[1,2"]),
        2,
        "--set 'distill.layers=[1,2': the value is not valid YAML: column 5: expected ',' or ']'",
    )


def test_locked_run_folder_is_refused_before_any_data_is_loaded(tiny_bert6, tiny_data, tmp_path, monkeypatch):
    import json
    import os
    import socket

    from distill_lora.experiment import pipeline

    def no_loading(*a, **kw):
        raise AssertionError("data loaded before the run folder was checked")

    monkeypatch.setattr(pipeline, "load_splits", no_loading)
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data)
    out = tmp_path / "run"
    out.mkdir()
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "started": "just now"}  # a live process holds it
    (out / ".lock").write_text(json.dumps(lock))
    one_error_line(
        runner.invoke(app, ["train-teacher", "-c", str(cfg)]), 3, f"run folder {out} is in use by process {os.getpid()}"
    )
    assert sorted(p.name for p in out.iterdir()) == [".lock"]
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    one_error_line(
        runner.invoke(app, ["train-teacher", "-c", str(cfg), "-o", str(blocker / "run")]), 2, "is not writable"
    )


def test_bad_data_leaves_no_empty_run_folder(tiny_bert6, tiny_data, tmp_path):
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data)
    out = tmp_path / "deep" / "run"  # two folders made for the lock, both removed again
    one_error_line(
        runner.invoke(app, ["compare", "-c", str(cfg), "-o", str(out), "--set", "data.text_column=tweet"]),
        2,
        "no column 'tweet'",
    )
    assert not (tmp_path / "deep").exists()


# ---------------------------------------------------------------- report, export, evaluate, predict, serve


@pytest.fixture
def results_only(finished_run, tmp_path):
    """A run folder holding only a copy of the finished run's results.json: all `report` reads."""
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copyfile(finished_run["output"] / "results.json", run / "results.json")
    return run


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--resamples", "0"], "--resamples 0: use at least 100"),
        (["--resamples", "-5"], "--resamples -5: use at least 100"),
        (["--alpha", "2"], "--alpha 2.0: use a significance level between 0 and 1"),
        (["--alpha", "0"], "--alpha 0.0: use a significance level between 0 and 1"),
    ],
)
def test_report_flags_are_checked_like_the_config(results_only, args, needle):
    one_error_line(runner.invoke(app, ["report", str(results_only), *args]), 2, needle)
    assert sorted(p.name for p in results_only.iterdir()) == ["results.json"]


def read_only(monkeypatch):
    """What mkdtemp does in a folder we may not write (tests run as root, where chmod would not stop us)."""
    import tempfile

    def refuse(prefix=None, suffix=None, dir=None):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)


def test_report_into_a_read_only_folder_is_one_line(results_only, monkeypatch):
    read_only(monkeypatch)
    one_error_line(
        runner.invoke(app, ["report", str(results_only), "--resamples", "100"]),
        1,
        f"error: could not read or write {results_only}: Permission denied",
    )
    assert sorted(p.name for p in results_only.iterdir()) == ["results.json"]


def test_export_into_a_read_only_folder_is_one_line(finished_run, tmp_path, monkeypatch):
    read_only(monkeypatch)
    one_error_line(
        runner.invoke(app, ["export", str(finished_run["output"]), str(tmp_path / "out")]),
        1,
        f"could not read or write {tmp_path}: Permission denied",
    )
    assert not (tmp_path / "out").exists()


def test_evaluate_file_error_and_interrupt_take_the_same_path(tmp_path, monkeypatch):
    from distill_lora.use import evaluate

    def fails(*a, **kw):
        raise PermissionError(13, "Permission denied", str(tmp_path / "results.json"))

    monkeypatch.setattr(evaluate, "evaluate_run", fails)
    one_error_line(
        runner.invoke(app, ["evaluate", str(tmp_path), "--data", str(tmp_path)]),
        1,
        f"could not read or write {tmp_path / 'results.json'}: Permission denied",
    )

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "evaluate_run", interrupted)
    r = runner.invoke(app, ["evaluate", str(tmp_path), "--data", str(tmp_path)])
    assert r.exit_code == 130 and r.output.strip() == "interrupted" and "Traceback" not in r.output


def fake_stage(tmp_path):
    """Just enough of a finished stage folder for find_model_dir (no weights: nothing may load it)."""
    folder = tmp_path / "stage"
    folder.mkdir()
    (folder / "DONE").write_text("{}")
    (folder / "config.yaml").write_text("{}")
    return folder


@pytest.mark.parametrize(
    "texts, needle",
    [
        (["fine", ""], "text argument 2 is empty"),
        (["   "], "text argument 1 is empty"),
        (
            ["caf\udcc3"],
            "text argument 1 is not valid Unicode: lone surrogate U+DCC3 at character 3",
        ),  # argv bytes not UTF-8
    ],
)
def test_predict_rejects_what_the_web_api_rejects(tmp_path, texts, needle):
    one_error_line(runner.invoke(app, ["predict", str(fake_stage(tmp_path)), *texts]), 2, needle)


def test_predict_file_with_a_lone_surrogate_names_the_row(tmp_path):
    from distill_lora.errors import UserError
    from distill_lora.use.predict import read_texts_file

    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "fine"}, {"text": "bad \ud800 text"}])
    with pytest.raises(UserError, match=r"row 2: the text is not valid Unicode: lone surrogate U\+D800 at character 4"):
        read_texts_file(path)


@pytest.mark.parametrize(
    "port, needle", [(99999, "--port 99999: use a port from 1 to 65535"), (0, "--port 0: use a port from 1 to 65535")]
)
def test_serve_port_out_of_range(tmp_path, port, needle):
    one_error_line(runner.invoke(app, ["serve", str(fake_stage(tmp_path)), "--port", str(port)]), 2, needle)


def test_serve_on_a_busy_port_fails_before_saying_serving(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = runner.invoke(app, ["serve", str(fake_stage(tmp_path)), "--port", str(port)])
    line = one_error_line(r, 2, f"--port {port}: already in use on 127.0.0.1", "--port")
    assert "serving" not in line


def test_papercuts_each_answer_in_one_line(tmp_path, finished_run):
    """--seeds with a hole is blamed on --seeds; a scalar where a list goes says how to write the list; predict's
    --json followed by 'true' is not classified; an unsupported --file names .txt too."""
    one_error_line(runner.invoke(app, ["compare", "--config", "demo", "--seeds", "0,,x"]), 2, "--seeds '0,,x'", "0,1,2")
    r = runner.invoke(app, ["config", "--config", "demo", "--set", "train.report_to=tensorboard"])
    one_error_line(r, 2, "'train.report_to' must be list", "train.report_to=[tensorboard]")
    run = str(finished_run["output"])
    one_error_line(runner.invoke(app, ["predict", run, "--json", "true"]), 2, "--json takes no value")
    tsv = tmp_path / "texts.tsv"
    tsv.write_text("a\tb\n")
    one_error_line(runner.invoke(app, ["predict", run, "--file", str(tsv)]), 2, ".txt (one text per line)", ".parquet")


def test_a_busy_run_folder_is_refused_before_torch_and_transformers_are_imported(tmp_path):
    """The quick look at the lock comes before the heavy imports: `python -X importtime` lists every module the
    refusing process imported, and neither torch nor transformers is among them."""
    import json
    import os
    import socket

    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "distill_lora", "compare", "--config", "demo", "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 3 and f"run folder {out} is in use by process {os.getpid()}" in r.stderr + r.stdout
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert "distill_lora.cli" in imported and not {"torch", "transformers", "peft"} & imported


@pytest.mark.parametrize(
    "setting, needle",
    [
        ("distill.layers=[[0,3]]", "distill.layers: layers [0, 3]: [0] outside 1..6"),
        ("lora.student_layers=odds", "lora.student_layers: layers 'odds'"),
        ("teacher.model=someone/not-cached-model", "is a Hugging Face Hub id, but HF_HUB_OFFLINE is set"),
        ("train.report_to=[wandb]", "train.report_to has wandb, which is not installed"),
    ],
)
def test_a_config_that_cannot_train_is_refused_before_torch_is_imported(tmp_path, setting, needle):
    """preflight: layer lists against the teacher's config.json, the teacher's source, the trackers (wandb made to
    look uninstalled: the process's find_spec does not find it)."""
    import os

    hide_wandb = (
        "import importlib.util as u, sys; find = u.find_spec; "
        "u.find_spec = lambda name, *a: None if name == 'wandb' else find(name, *a); "
        "sys.argv[0] = 'distill-lora'; from distill_lora.cli import app; app()"
    )
    r = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", hide_wandb, "compare", "--config", "demo"]
        + ["--set", setting, "-o", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    errors = [line for line in (r.stderr + r.stdout).splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and needle in errors[0], r.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert not {"torch", "transformers", "peft"} & imported
    assert not (tmp_path / "run").exists()


FULL_DISK = (  # a file-size limit stands in for a full disk: writes past it fail with EFBIG (SIGXFSZ ignored)
    "import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
    "resource.setrlimit(resource.RLIMIT_FSIZE, ({n}, {n})); from distill_lora.cli import app; "
    "sys.argv = ['distill-lora'] + sys.argv[1:]; app()"
)


def _with_full_disk(args, limit=100_000):
    r = subprocess.run(
        [sys.executable, "-c", FULL_DISK.format(n=limit), *args], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    lines = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("error:")]
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-2000:]
    return r.returncode, lines


def test_a_full_disk_while_training_is_one_line_naming_what_was_written_and_the_stage_resumes(
    tmp_path, tiny_bert6, tiny_data
):
    """The tiny model's weights (208 KB) cannot be written under a 100 KB limit: one line naming the file (the
    best epoch's weights), exit 1, and the same command without the limit then finishes the stage."""
    cfg = str(tiny_config(tmp_path, tiny_bert6, tiny_data, train={"epochs": 1}))
    code, lines = _with_full_disk(["train-teacher", "-c", cfg])
    assert code == 1 and len(lines) == 1, lines
    assert "could not read or write" in lines[0] and "best-epoch-0001.safetensors" in lines[0], lines[0]
    assert "File too large" in lines[0] and "run the same command again" in lines[0]
    assert runner.invoke(app, ["train-teacher", "-c", cfg]).exit_code == 0
    assert (tmp_path / "run" / "seed-0" / "teacher" / "DONE").exists()


def test_a_full_disk_while_exporting_names_the_export(finished_run, tmp_path):
    run = str(finished_run["output"])
    for stage in ("teacher", "lora-student"):
        dest = tmp_path / f"export-{stage}"
        args = ["export", run, str(dest), "--stage", stage]
        code, lines = _with_full_disk(args + (["--merge"] if stage == "lora-student" else []))
        assert code == 1 and len(lines) == 1 and f"could not read or write {dest}:" in lines[0], lines
        assert len(lines[0]) < 300 and not dest.exists()  # one short line; nothing half-written


def test_a_full_disk_while_writing_the_report_names_it_and_leaves_no_half_written_plots(finished_run, tmp_path):
    """Each plot (56-150 KB) is over a 50 KB limit: one line naming plots/, exit 1, no temporary folder or file left,
    the old plots/ kept whole; the same command without the limit then rebuilds the report."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(finished_run["output"], run)  # the shared run stays as it was
    before = sorted(p.name for p in (run / "plots").iterdir())
    code, lines = _with_full_disk(["report", str(run)], limit=50_000)
    assert code == 1 and len(lines) == 1, lines
    assert f"could not read or write {run / 'plots'}: File too large" in lines[0], lines[0]
    assert not [p.name for p in run.iterdir() if ".tmp" in p.name]  # neither .plots.tmp-* nor .report.md.*.tmp
    assert sorted(p.name for p in (run / "plots").iterdir()) == before
    r = runner.invoke(app, ["report", str(run)])
    assert r.exit_code == 0 and f"report: {run / 'report.md'}" in r.output, r.output
