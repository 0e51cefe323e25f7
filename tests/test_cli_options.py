"""Option names: one meaning per name in every command, old spellings as hidden aliases, --version, flags.

No training here: the pipeline and the model loading are replaced by recorders, so each test only checks what
the command line hands over.
"""

import types

import pytest
from conftest import one_error_line
from typer.testing import CliRunner

from distill_lora import cli
from distill_lora.cli import app
from distill_lora.config import DataConfig, ReportConfig, load_config
from distill_lora.errors import UserError

runner = CliRunner()
COMMANDS = [
    "train-teacher",
    "distill",
    "lora",
    "compare",
    "sweep",
    "report",
    "retime",
    "bench",
    "evaluate",
    "predict",
    "export",
    "serve",
]


def help_of(*args):
    r = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "200"}, terminal_width=200)
    assert r.exit_code == 0, r.output
    return r.output


# ---------------------------------------------------------------- --version, help


def test_version():
    from importlib.metadata import version

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0, r.output
    assert r.output == f"distill-lora {version('distill-lora')}\n"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_flags_as_flags(command):
    text = help_of(*([command] if command else []))
    assert "<bool>" not in text and "BOOLEAN" not in text, text
    flags = {None: ["--version"], "predict": ["--json"], "export": ["--merge"], "bench": ["--quick"]}.get(command, [])
    for flag in flags + ["--help"]:
        assert flag in text
        assert f"--no-{flag[2:]}" not in text


@pytest.mark.parametrize(
    "command, shown, hidden",
    [
        ("predict", ["--stage", "-m", "--trained-seed"], ["--model", "--seed"]),
        ("export", ["--stage", "-m", "--trained-seed"], ["--model", "--seed"]),
        ("serve", ["--stage", "-m", "--trained-seed"], ["--model", "--seed"]),
        ("lora", ["--stage", "-m", "--seed"], ["--model"]),
        ("compare", ["--layers", "--seed", "--seeds"], ["--students"]),
        ("train-teacher", ["--seed"], []),
        ("distill", ["--layers", "--seed"], []),
        ("sweep", ["--seed"], []),
    ],
)
def test_help_lists_the_new_names_only(command, shown, hidden):
    """The old names (--model, --seed for the trained seed, --students) were removed: not in the help, and refused
    as unknown options (click's usage error, exit 2, no traceback)."""
    words = set(help_of(command).replace("│", " ").replace(",", " ").split())
    for name in shown:
        assert name in words, (command, name)
    for name in hidden:
        assert name not in words, (command, name)
        r = runner.invoke(app, [command, name, "x"])
        assert r.exit_code == 2 and f"No such option: {name}" in r.output and "Traceback" not in r.output


# ---------------------------------------------------------------- predict, export, serve: --stage, --trained-seed


@pytest.fixture
def asked(monkeypatch):
    """find_model_dir records what it was asked for, then stops the command with a one-line error."""
    from distill_lora.use import predict

    calls = []

    def record(run_dir, stage_id=None, seed=None):
        calls.append((stage_id, seed))
        raise UserError("stop here")

    monkeypatch.setattr(predict, "find_model_dir", record)
    return calls


def use_args(command, tmp_path):
    return {
        "predict": ["predict", str(tmp_path), "hi"],
        "export": ["export", str(tmp_path), str(tmp_path / "out")],
        "serve": ["serve", str(tmp_path)],
    }[command]


@pytest.mark.parametrize("command", ["predict", "export", "serve"])
@pytest.mark.parametrize(
    "args, want",
    [
        ([], (None, None)),
        (["--stage", "student-odd", "--trained-seed", "2"], ("student-odd", 2)),
        (["-m", "lora-student"], ("lora-student", None)),
    ],
)
def test_stage_and_trained_seed(command, args, want, asked, tmp_path):
    one_error_line(runner.invoke(app, [*use_args(command, tmp_path), *args]), 2, "stop here")
    assert asked == [want]


def fake_run(tmp_path):
    """A run folder with seed-0/teacher finished as far as find_model_dir can tell (no weights)."""
    stage = tmp_path / "run" / "seed-0" / "teacher"
    stage.mkdir(parents=True)
    (stage / "DONE").write_text("{}")
    (stage / "config.yaml").write_text("{}")
    return tmp_path / "run"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--trained-seed", "5"], "error: --trained-seed 5: '{run}' has seeds 0"),
        (
            ["--stage", "student-9"],
            "error: --stage student-9: no such stage in {run}/seed-0; finished stages there: teacher",
        ),
    ],
)
def test_errors_of_the_real_lookup_name_the_new_options(tmp_path, args, needle):
    run = fake_run(tmp_path)
    one_error_line(runner.invoke(app, ["predict", str(run), *args, "hi"]), 2, needle.format(run=run))


# ---------------------------------------------------------------- lora, compare, sweep: through a recording pipeline


@pytest.fixture
def pipeline_rec(monkeypatch, tmp_path):
    """pipeline.prepare records the loaded config; the stages record what they would train. The default config's
    Hub teacher is not here: preflight (which would refuse it offline) is a no-op."""
    from distill_lora.experiment import pipeline, preflight, results

    monkeypatch.setattr(preflight, "preflight", lambda cfg, layer_specs=(): None)

    rec = types.SimpleNamespace(cfgs=[], layer_specs=[], lora=[], compared=0)

    def prepare(cfg, layer_specs=()):
        rec.cfgs.append(cfg)
        rec.layer_specs.append(tuple(layer_specs))
        return types.SimpleNamespace(cfg=cfg)

    def run_lora(ctx, stage_id):
        rec.lora.append(stage_id)
        return {}

    def run_compare(ctx):
        rec.compared += 1
        return {}

    monkeypatch.setattr(pipeline, "prepare", prepare)
    monkeypatch.setattr(pipeline, "run_lora", run_lora)
    monkeypatch.setattr(pipeline, "run_teacher", lambda ctx: {})
    monkeypatch.setattr(pipeline, "run_student", lambda ctx, spec: {})
    monkeypatch.setattr(pipeline, "run_compare", run_compare)
    monkeypatch.setattr(results, "finish_command", lambda ctx, m: None)
    monkeypatch.setattr(results, "finish_compare", lambda ctx, r: None)
    rec.out = ["-o", str(tmp_path / "run")]
    return rec


@pytest.mark.parametrize(
    "args, trained",
    [
        ([], ["lora-student", "lora-teacher"]),
        (["--stage", "lora-student"], ["lora-student"]),
        (["-m", "lora-teacher"], ["lora-teacher"]),
    ],
)
def test_lora_stage(args, trained, pipeline_rec):
    r = runner.invoke(app, ["lora", *args, *pipeline_rec.out])
    assert r.exit_code == 0, r.output
    assert pipeline_rec.lora == trained


@pytest.mark.parametrize(
    "args, line",
    [
        (["--stage", "lora-huge"], "error: --stage 'lora-huge': use lora-student, lora-teacher or all"),
    ],
)
def test_lora_stage_refusals(args, line, pipeline_rec, tmp_path):
    assert one_error_line(runner.invoke(app, ["lora", *args, *pipeline_rec.out]), 2) == line
    assert pipeline_rec.cfgs == [] and not (tmp_path / "run").exists()


def test_seed_is_the_training_seed(pipeline_rec):
    for command in (["train-teacher"], ["distill", "--layers", "odd"], ["lora"], ["compare"]):
        r = runner.invoke(app, [*command, "--seed", "7", *pipeline_rec.out])
        assert r.exit_code == 0, r.output
        assert pipeline_rec.cfgs[-1].seed == 7, command


@pytest.mark.parametrize(
    "args, students",
    [
        ([], ["odd", "even"]),  # distill.layers of the config
        (["--layers", "1,3"], [[1, 3]]),  # one student of layers {1, 3}, not two students 1 and 3
        (["-l", "odd", "--layers", "first:2", "--layers", " 2, 4 ,6"], ["odd", "first:2", [2, 4, 6]]),
        (["--layers", "distilbert:3"], ["distilbert:3"]),
    ],
)
def test_compare_layers(args, students, pipeline_rec):
    r = runner.invoke(app, ["compare", *args, *pipeline_rec.out])
    assert r.exit_code == 0, r.output
    assert pipeline_rec.cfgs[-1].distill.layers == students
    assert pipeline_rec.compared == 1


def test_compare_layer_list_is_one_student_spec_in_the_config():
    overrides = cli._compare_overrides(["seed=1"], "0,1", ["1,3", "odd"])
    assert overrides == ["seed=1", "seeds=[0,1]", 'distill.layers=[[1, 3], "odd"]']
    cfg = load_config("default", overrides)
    assert cfg.distill.layers == [[1, 3], "odd"] and cfg.seeds == [0, 1]
    from distill_lora.train.layer_specs import resolve_layers

    assert [resolve_layers(spec, 6) for spec in cfg.distill.layers] == [[1, 3], [1, 3, 5]]


SPACE = "sweep.space={distill.temperature: {low: 1, high: 4}}"


def count_loads(monkeypatch):
    calls = []
    real = cli.load_config

    def counting(*a, **kw):
        calls.append(a)
        return real(*a, **kw)

    monkeypatch.setattr(cli, "load_config", counting)
    return calls


def test_sweep_loads_its_config_once(pipeline_rec, monkeypatch):
    from distill_lora.experiment import sweep

    loads = count_loads(monkeypatch)
    ran = []
    monkeypatch.setattr(sweep, "run_sweep", lambda ctx: ran.append(ctx.cfg))
    r = runner.invoke(app, ["sweep", "--set", SPACE, "--trials", "3", *pipeline_rec.out])
    assert r.exit_code == 0, r.output
    assert len(loads) == 1
    assert ran == pipeline_rec.cfgs and ran[0].sweep.trials == 3


def test_sweep_without_a_space_is_refused_after_one_load_before_any_data(pipeline_rec, monkeypatch, tmp_path):
    loads = count_loads(monkeypatch)
    one_error_line(runner.invoke(app, ["sweep", *pipeline_rec.out]), 2, "no search space")
    assert len(loads) == 1
    assert pipeline_rec.cfgs == []  # prepare (which reads the data) never ran
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- report and evaluate: the config's own limits, defaults


@pytest.mark.parametrize(
    "flags, line",
    [
        ((0, None, None), "--resamples 0: use at least 100 (e.g. the default 1000)"),
        ((-5, None, None), "--resamples -5: use at least 100 (e.g. the default 1000)"),
        ((None, 2.0, None), "--alpha 2.0: use a significance level between 0 and 1 (e.g. the default 0.05)"),
        ((None, 0.0, None), "--alpha 0.0: use a significance level between 0 and 1 (e.g. the default 0.05)"),
        ((None, None, -1), "--bootstrap-seed -1: use an integer from 0 to 4294967295"),
        ((None, None, 2**32), "--bootstrap-seed 4294967296: use an integer from 0 to 4294967295"),
    ],
)
def test_report_flags_use_the_config_limits(flags, line):
    with pytest.raises(UserError) as e:
        cli._check_report_flags(*flags)
    assert str(e.value) == line
    key, value = next(
        (k, v) for k, v in zip(("bootstrap_resamples", "alpha", "bootstrap_seed"), flags) if v is not None
    )
    with pytest.raises(UserError, match=f"config: 'report.{key}'"):  # the config refuses the same value
        load_config("default", [f"report.{key}={value}"])


def test_report_flags_within_the_limits_pass():
    cli._check_report_flags(100, 0.01, 0)
    cli._check_report_flags(None, None, 2**32 - 1)
    r = ReportConfig()
    cli._check_report_flags(r.bootstrap_resamples, r.alpha, r.bootstrap_seed)


@pytest.mark.parametrize(
    "args, line",
    [
        (["--resamples", "0"], "error: --resamples 0: use at least 100 (e.g. the default 1000)"),
        (["--alpha", "1"], "error: --alpha 1.0: use a significance level between 0 and 1 (e.g. the default 0.05)"),
        (["--bootstrap-seed", "-3"], "error: --bootstrap-seed -3: use an integer from 0 to 4294967295"),
    ],
)
def test_report_flag_errors_are_one_line_before_reading_the_run(args, line, tmp_path):
    assert one_error_line(runner.invoke(app, ["report", str(tmp_path / "nowhere"), *args]), 2) == line


def test_config_report_errors_name_the_key():
    with pytest.raises(UserError, match=r"^config: 'report.alpha' is 1.5: use a significance level between 0 and 1"):
        load_config("default", ["report.alpha=1.5"])


@pytest.fixture
def evaluated(monkeypatch):
    from distill_lora.use import evaluate

    calls = []

    def record(run_dir, other, name):
        calls.append((other.text_column, other.label_column, other.label_map, other.split))
        raise UserError("stop here")

    monkeypatch.setattr(evaluate, "evaluate_run", record)
    return calls


def test_evaluate_columns_default_to_the_data_config(evaluated, tmp_path):
    one_error_line(runner.invoke(app, ["evaluate", str(tmp_path), "--data", str(tmp_path)]), 2, "stop here")
    assert evaluated == [(DataConfig().text_column, DataConfig().label_column, {}, "test")]
    one_error_line(
        runner.invoke(
            app, ["evaluate", str(tmp_path), "--data", str(tmp_path), "--text-column", "tweet", "--label-column", "y"]
        ),
        2,
        "stop here",
    )
    assert evaluated[-1][:2] == ("tweet", "y")


def test_evaluate_bad_label_map_is_the_same_one_line(evaluated, tmp_path):
    one_error_line(
        runner.invoke(app, ["evaluate", str(tmp_path), "--data", str(tmp_path), "--label-map", "{oops"]),
        2,
        "--label-map '{oops' is not JSON; e.g. '{\"hate\": 1, \"none\": 0}'",
    )
    assert evaluated == []


# ---------------------------------------------------------------- one error path


def test_a_file_error_in_a_renamed_path_is_one_line(monkeypatch, tmp_path):
    from distill_lora.use import predict

    def unreadable(*a, **kw):
        raise PermissionError(13, "Permission denied", str(tmp_path / "seed-0"))

    monkeypatch.setattr(predict, "find_model_dir", unreadable)
    one_error_line(
        runner.invoke(app, ["export", str(tmp_path), str(tmp_path / "out"), "--stage", "teacher"]),
        1,
        f"could not read or write {tmp_path / 'seed-0'}: Permission denied",
    )
