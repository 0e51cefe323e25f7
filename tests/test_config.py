"""Config: every shipped config loads, overrides apply, typos name the closest key."""

import pytest

from distill_lora.config import SHIPPED, apply_override, describe, load_config
from distill_lora.errors import UserError


def test_every_config_in_configs_can_be_named():
    """--config NAME works for exactly the files of configs/ (a config added there without its name in SHIPPED
    could only be given as a path: `atlas --config atlas-demo` failed that way)."""
    from conftest import REPO

    assert sorted(SHIPPED) == sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    cfg = load_config(name)
    assert cfg.data.label_names and cfg.teacher.model
    assert cfg.stage_train("teacher").epochs >= 1


def test_defaults_match_the_assignment():
    cfg = load_config("default")
    assert cfg.teacher.model == "bert-base-uncased"
    assert cfg.data.source == "christinacdl/hate_speech_2_classes"
    t = cfg.train
    assert (t.epochs, t.batch_size, t.lr, cfg.data.max_length) == (3, 32, 5e-5, 128)
    d = cfg.distill
    assert d.w_ce == d.w_kl == d.w_cos == pytest.approx(1 / 3)
    assert d.temperature == 2.0 and d.w_hidden == 0.0
    lo = cfg.lora
    assert (lo.r, lo.alpha, lo.dropout, lo.target_modules) == (8, 16, 0.1, ["auto"])
    assert cfg.stage_train("lora").lr == 5e-4
    assert cfg.stage_train("teacher").lr == 5e-5
    assert lo.models == ["lora-student", "lora-teacher"] and lo.student_layers == "odd"


def test_stage_override_applies_to_that_stage_only():
    cfg = load_config("default", ["teacher.train.lr=1e-4", "distill.train.epochs=5", "train.batch_size=8"])
    assert cfg.stage_train("teacher").lr == 1e-4
    assert cfg.stage_train("distill").lr == 5e-5
    assert cfg.stage_train("distill").epochs == 5
    assert cfg.stage_train("teacher").epochs == 3
    assert all(cfg.stage_train(s).batch_size == 8 for s in ("teacher", "distill", "lora"))


def test_flags_override_yaml():
    cfg = load_config("demo", [], output_dir="elsewhere", seed=7)
    assert cfg.output_dir == "elsewhere" and cfg.seed == 7


@pytest.mark.parametrize(
    "override, message",
    [
        ("teacher.trian.lr=1", "unknown key 'teacher.trian'; did you mean 'train'"),
        ("distill.temprature=2", "did you mean 'temperature'"),
        ("teacher.train.lrr=1", "unknown key 'teacher.train.lrr'; did you mean 'lr'"),
        ("train.epochs=three", "'train.epochs' must be int"),
        ("train.precision=fp8", "precision' must be one of auto, fp32, bf16, fp16"),
        ("train.select_metric=test_accuracy", "select_metric"),
        ("distill.temperature=0", "temperature' must be > 0"),
        ("lora.models=[lora-big]", "'lora.models' has 'lora-big'"),
        ("data.null_text=skip", "null_text"),
        ("data.label_names=[only]", "at least two classes"),
        ("seeed=1", "did you mean 'seed'"),
        ("train.epochs", "must look like key.sub=value"),
        ("report.target_difference=0", "'report.target_difference' is 0.0: use a macro-F1 difference between 0 and 1"),
        ("report.target_difference=1.5", "'report.target_difference' is 1.5"),
        ("report.serving_margin=-0.01", "'report.serving_margin' is -0.01: use a macro-F1 margin between 0 and 1"),
        ("report.primary=[teacher - student-odd]", "write each comparison as 'A vs B' with two different stage ids"),
        ("report.primary=[teacher vs teacher]", "write each comparison as 'A vs B'"),
    ],
)
def test_bad_config_messages(override, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config("default", [override])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(str(bad))
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_config(str(listy))


def test_override_parses_yaml_values():
    raw = {}
    apply_override(raw, "distill.layers=[odd, '1,4']")
    apply_override(raw, "train.lr=3e-5")
    assert raw == {"distill": {"layers": ["odd", "1,4"]}, "train": {"lr": 3e-5}}


def test_every_key_documented():
    rows = describe()
    keys = [k for k, _, _ in rows]
    assert "teacher.model" in keys and "data.limit.train" in keys and "train.precision" in keys
    assert all(help_ for _, _, help_ in rows)


def test_three_classes_load_but_tune_threshold_is_refused():
    three = "data.label_names=[hate speech, offensive language, neither]"
    assert load_config("demo", [three]).data.label_names[2] == "neither"
    with pytest.raises(UserError, match=r"'distill.train.tune_threshold' is a p\(positive\) cut, for two classes"):
        load_config("demo", [three, "distill.train.tune_threshold=true"])
    with pytest.raises(UserError, match=r"'train.tune_threshold'.*set it to false"):
        load_config("demo", [three, "train.tune_threshold=true"])
