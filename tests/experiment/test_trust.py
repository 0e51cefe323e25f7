"""Settings that used to give quiet wrong results: each either gives correct numbers or a one-line error."""

import json

import numpy as np
import pytest
from conftest import write_jsonl
from sklearn.metrics import f1_score

from distill_lora.config import DataConfig, load_config
from distill_lora.errors import UserError
from distill_lora.train.data import load_splits

ROWS = [{"text": f"text number {i}", "label": i % 2} for i in range(20)]


def _folder(tmp_path, rows, validation=None, test=None):
    for name, split in (("train", rows), ("validation", validation or rows[:6]), ("test", test or rows[:6])):
        write_jsonl(tmp_path / f"{name}.jsonl", split)
    return tmp_path


def _yaml_config(tmp_path, data_yaml: str):
    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  source: {tmp_path}\n{data_yaml}", encoding="utf-8")
    return load_config(str(path))


# ---------------------------------------------------------------- data.label_map


def test_label_map_with_integer_keys_swaps_the_classes(tmp_path):
    # YAML reads {0: 1, 1: 0} with int keys; they were ignored (looked up as strings), so nothing was swapped
    _folder(tmp_path, ROWS)
    cfg = _yaml_config(tmp_path, "  label_map: {0: 1, 1: 0}\n")
    assert cfg.data.label_map == {"0": 1, "1": 0}
    splits = load_splits(cfg.data)
    assert splits.train.labels == [1 - r["label"] for r in ROWS]


@pytest.mark.parametrize("keys", ["{'0': 1, '1': 0}", "{0.0: 1, 1.0: 0}", "{0: 1, '1': 0}"])
def test_label_map_key_spellings_mean_the_same(tmp_path, keys):
    rows = [{"text": r["text"], "label": str(r["label"])} for r in ROWS[:10]] + ROWS[10:]  # "1" and 1 in the data
    _folder(tmp_path, rows)
    splits = load_splits(_yaml_config(tmp_path, f"  label_map: {keys}\n").data)
    assert splits.train.labels == [1 - r["label"] for r in ROWS]


def test_boolean_labels_can_be_mapped(tmp_path):
    rows = [{"text": r["text"], "label": bool(r["label"])} for r in ROWS]
    _folder(tmp_path, rows)
    with pytest.raises(UserError, match=r"row 1 has label False.*data.label_map, e.g. \{\"false\": 1\}"):
        load_splits(DataConfig(source=str(tmp_path)))
    for spelling in ("{true: 1, false: 0}", "{'true': 1, 'false': 0}"):
        splits = load_splits(_yaml_config(tmp_path, f"  label_map: {spelling}\n").data)
        assert splits.train.labels == [r["label"] for r in ROWS]


def test_string_labels_mapped(tmp_path):
    rows = [{"text": r["text"], "label": "hate" if r["label"] else "none"} for r in ROWS]
    _folder(tmp_path, rows)
    splits = load_splits(_yaml_config(tmp_path, "  label_map: {hate: 1, none: 0}\n").data)
    assert splits.train.labels == [r["label"] for r in ROWS]


@pytest.mark.parametrize(
    "mapping, message",
    [
        ("{null: 1}", "key None is not a single value"),
        ("{1: 0, '1': 1}", "maps '1' twice"),
        ("{1: true}", "is not a class index"),
        ("{1: 2}", "is not a class index"),
    ],
)
def test_bad_label_maps_are_one_line_errors(tmp_path, mapping, message):
    _folder(tmp_path, ROWS)
    path = tmp_path / "c.yaml"
    path.write_text(f"data:\n  label_map: {mapping}\n", encoding="utf-8")
    with pytest.raises(UserError, match=message):
        load_config(str(path))


# ---------------------------------------------------------------- classes


def test_three_string_classes_missing_one_in_a_split_or_unmapped_are_errors(tmp_path):
    names = ["hate speech", "offensive language", "neither"]
    rows = [{"text": f"text {i}", "label": names[i % 3]} for i in range(30)]
    cfg = DataConfig(source=str(tmp_path), label_names=names, label_map={n: i for i, n in enumerate(names)})
    _folder(tmp_path, rows, test=[r for r in rows if r["label"] != "hate speech"])
    with pytest.raises(UserError, match=r"split test has no example of class 0 \('hate speech'\)"):
        load_splits(cfg)
    _folder(tmp_path, rows, test=rows[:9] + [{"text": "x", "label": "hateful"}])
    with pytest.raises(UserError, match=r"label 'hateful', outside the label set 0..2 \(hate speech, offensive"):
        load_splits(cfg)


def test_a_split_without_a_class_is_an_error_naming_it(tmp_path):
    _folder(tmp_path, ROWS, test=[r for r in ROWS if r["label"] == 0][:5])
    with pytest.raises(UserError, match=r"split test has no example of class 1 \('toxic'\)"):
        load_splits(DataConfig(source=str(tmp_path)))


# ---------------------------------------------------------------- settings checked before training


def test_max_length_beyond_the_teachers_positions_is_refused(tmp_path, tiny_bert6, tiny_data):
    from conftest import tiny_config

    from distill_lora.experiment import pipeline

    cfg = load_config(str(tiny_config(tmp_path, tiny_bert6, tiny_data)), ["data.max_length=65"])
    with pytest.raises(UserError, match=r"data.max_length 65 is more than the teacher takes \(64 tokens"):
        pipeline.prepare(cfg)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "spec, depth, expected",
    [("distilbert:4", 6, [1, 3, 4, 6]), ("distilbert:3", 4, [1, 3, 4]), ("distilbert", 12, [1, 3, 5, 8, 10, 12])],
)
def test_distilbert_preset_gives_k_layers(spec, depth, expected):
    from distill_lora.train.layer_specs import resolve_layers

    assert resolve_layers(spec, depth) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("distilbert:4", "for 4 layers needs a teacher of at least 6 layers \\(this one has 5\\)"),
        ("odd:2", "odd and even take no depth"),
        ("last:5", "must be 1..4"),
    ],
)
def test_layer_presets_refuse_what_they_cannot_give(spec, message):
    from distill_lora.train.layer_specs import resolve_layers

    with pytest.raises(UserError, match=message):
        resolve_layers(spec, 5)


# ---------------------------------------------------------------- each stage keeps its own precision


def test_student_keeps_its_precision_after_computing_the_teachers_targets(tmp_path, tiny_bert6, tiny_data, monkeypatch):
    """accelerate keeps one process-wide state: building the teacher-logit cache inside a student's stage reset it
    to the teacher's precision, so the student trained under the teacher's dtype."""
    from conftest import tiny_config
    from typer.testing import CliRunner

    from distill_lora.cli import app
    from distill_lora.train import trainer

    seen = {}
    real_train = trainer.train

    def spy(model, loss_fn, cfg, stage, **kw):
        seen[stage.desc] = stage.accelerator.mixed_precision
        return real_train(model, loss_fn, cfg, stage, **kw)

    monkeypatch.setattr(trainer, "train", spy)
    cfg = tiny_config(
        tmp_path,
        tiny_bert6,
        tiny_data,
        train={"epochs": 1, "batch_size": 16, "eval_batch_size": 32},
        teacher={"model": str(tiny_bert6), "train": {"lr": 1e-3, "precision": "fp32"}},
        distill={"train": {"lr": 1e-3, "precision": "bf16"}},
        report={"measure_speed": False},
    )
    result = CliRunner().invoke(app, ["distill", "--layers", "odd", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    assert seen == {"teacher": "no", "student-odd": "bf16"}
    # a sweep trial builds its student (and the teacher's targets, fresh in the sweep's own run) the same way
    seen.clear()
    sweep = [
        "sweep",
        "--config",
        str(cfg),
        "--set",
        "sweep.sampler=grid",
        "--set",
        "sweep.trials=1",
        "--set",
        "sweep.space={distill.temperature: {choices: [3.0]}}",
        "-o",
        str(tmp_path / "sweep-run"),
    ]
    result = CliRunner().invoke(app, sweep)
    assert result.exit_code == 0, result.output
    assert seen == {"teacher": "no", "trial-0000": "bf16", "student-odd": "bf16"}


# ---------------------------------------------------------------- reuse is keyed on contents, not names


def _tiny_run_config(tmp_path, model, data, epochs=1):
    from conftest import tiny_config

    return tiny_config(
        tmp_path,
        model,
        data,
        train={"epochs": epochs, "batch_size": 16, "eval_batch_size": 32},
        report={"measure_speed": False, "quantize_int8": False},
    )


def test_replacing_the_teacher_folders_weights_retrains_teacher_and_students(tmp_path, tiny_data):
    """A local teacher was keyed by its path: new weights in the same folder reused the old teacher, cache and
    students."""
    from conftest import build_tiny_bert
    from typer.testing import CliRunner

    from distill_lora.cli import app

    model = build_tiny_bert(tmp_path / "pretrained", 4, seed=0)
    cfg = _tiny_run_config(tmp_path, model, tiny_data)
    run = ["distill", "--layers", "odd", "--config", str(cfg)]
    first = CliRunner().invoke(app, run)
    assert first.exit_code == 0, first.output
    seed = tmp_path / "run" / "seed-0"
    before = {s: json.loads((seed / s / "metrics.json").read_text()) for s in ("teacher", "student-odd")}
    again = CliRunner().invoke(app, run)
    assert "[student-odd] reusing finished stage" in again.output and "training" not in again.output
    build_tiny_bert(model, 4, seed=1)  # same path and config, other weights
    third = CliRunner().invoke(app, run)
    assert third.exit_code == 0, third.output
    assert "reusing" not in third.output and "[teacher] no finished teacher for this config" in third.output
    after = {s: json.loads((seed / s / "metrics.json").read_text()) for s in ("teacher", "student-odd")}
    for s in after:
        assert after[s]["config_hash"] != before[s]["config_hash"]
        assert after[s]["weights_sha256"] != before[s]["weights_sha256"]
    assert len(list((seed / "cache").glob("teacher-*.safetensors"))) == 2  # the old teacher's targets are not used


def test_students_are_keyed_on_the_teachers_weights_and_stages_on_the_results_format(
    tmp_path, tiny_bert6, tiny_data, monkeypatch
):
    from distill_lora.experiment import pipeline

    ctx = pipeline.prepare(load_config(str(_tiny_run_config(tmp_path, tiny_bert6, tiny_data))))
    monkeypatch.setattr(pipeline, "teacher_weights", lambda ctx: "a" * 64)
    student, teacher, lora = (
        pipeline.student_hash(ctx, [1, 3, 5]),
        pipeline.teacher_hash(ctx),
        pipeline.lora_hash(ctx, "lora-student", True),
    )
    monkeypatch.setattr(pipeline, "teacher_weights", lambda ctx: "b" * 64)
    assert pipeline.student_hash(ctx, [1, 3, 5]) != student and pipeline.teacher_hash(ctx) == teacher
    monkeypatch.setattr(pipeline, "RESULTS_FORMAT", pipeline.RESULTS_FORMAT + 1)
    assert pipeline.teacher_hash(ctx) != teacher and pipeline.lora_hash(ctx, "lora-student", True) != lora


# ---------------------------------------------------------------- the tested model is the selected epoch's


def test_kill_after_new_best_weights_keeps_the_checkpointed_choice(tmp_path, tiny_bert6, tiny_data, monkeypatch):
    """Killed after epoch 2's weights were saved as the new best but before a checkpoint recorded that choice, the
    resumed run re-trains epoch 2; on a GPU that re-run need not win again (here: forced not to). The model tested
    must then hold epoch 1's weights, not the killed run's epoch 2 (one best file used to serve both)."""
    import os
    import subprocess
    import sys

    from conftest import REPO
    from typer.testing import CliRunner

    from distill_lora.cli import app
    from distill_lora.train import trainer

    def config(name):
        return _tiny_run_config(tmp_path / name, tiny_bert6, tiny_data, epochs=2)

    killed, reference = config("killed"), config("reference")
    env = {**os.environ, "DISTILL_LORA_FAULT": "kill@teacher:best-saved:2"}
    # with these settings the tiny teacher's validation loss falls in epoch 2 (0.7135 → 0.7025): a new best to save
    loss = [
        a
        for kv in ("train.select_metric=loss", "teacher.train.lr=5e-3", "train.batch_size=8", "train.warmup_ratio=0")
        for a in ("--set", kv)
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "distill_lora", "train-teacher", "--config", str(killed), *loss],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    monkeypatch.setattr(trainer, "_is_better", lambda score, best, metric: best is None)  # only epoch 1 ever wins
    for cfg in (killed, reference):
        result = CliRunner().invoke(app, ["train-teacher", "--config", str(cfg), *loss])
        assert result.exit_code == 0, result.output
    stage = "run/seed-0/teacher"
    got, want = (json.loads((cfg.parent / stage / "metrics.json").read_text()) for cfg in (killed, reference))
    assert got["selected_epoch"] == want["selected_epoch"] == 1
    assert got["test"] == want["test"]
    assert (killed.parent / stage / "test_predictions.jsonl").read_text() == (
        reference.parent / stage / "test_predictions.jsonl"
    ).read_text()


def test_saved_stage_holds_the_selected_epochs_weights(finished_run):
    """Re-evaluate each saved stage folder on validation: it must reproduce the selected epoch's recorded scores
    (with the best-epoch reload removed, the last epoch's weights would be saved and tested)."""
    from distill_lora.experiment import pipeline
    from distill_lora.train import distributed, trainer
    from distill_lora.train.models import load_stage_model

    ctx = pipeline.prepare(load_config(str(finished_run["config"])))
    accelerator = distributed.make_accelerator("fp32")
    for stage in ("teacher", "student-odd", "lora-student"):
        folder = finished_run["output"] / "seed-0" / stage
        m = json.loads((folder / "metrics.json").read_text())
        val = trainer.evaluate(load_stage_model(folder), ctx.encoded["validation"], 32, accelerator, ctx.pad_id)
        recorded = m["validation_history"][m["selected_epoch"] - 1]
        assert val["loss"] == pytest.approx(recorded["val_loss"], abs=1e-5), stage
        losses = [h["val_loss"] for h in m["validation_history"]]
        assert len(set(round(x, 5) for x in losses)) == len(losses), "epochs must differ for this check to bite"


# ---------------------------------------------------------------- reading only what is needed


def test_test_only_data_set_loads_one_split(tmp_path):
    from distill_lora.train.data import load_split

    write_jsonl(tmp_path / "test.jsonl", ROWS[:4])  # no train file
    split, notes = load_split(DataConfig(source=str(tmp_path)), "test")
    assert split.texts == [r["text"] for r in ROWS[:4]] and split.labels == [0, 1, 0, 1] and notes == []
    with pytest.raises(UserError, match="no validation file"):
        load_split(DataConfig(source=str(tmp_path)), "validation")


def test_cached_hub_data_set_loads_offline(tmp_path, monkeypatch):
    """Offline, a Hub id that datasets has in its local cache was refused before the cache was tried."""
    import shutil

    import datasets

    rows = ROWS + [{"text": "one more", "label": 1}]
    _folder(tmp_path / "files", rows)
    files = {s: str(tmp_path / "files" / f"{s}.jsonl") for s in ("train", "validation", "test")}
    datasets.load_dataset("json", data_files=files, cache_dir=str(tmp_path / "built"))
    # lay the built copy out as datasets caches a Hub id: <owner>___<name>/<config>/<version>/<hash>/<name>-<split>.arrow
    built = next((tmp_path / "built" / "json").glob("*/*/*[!k]"))
    dest = tmp_path / "cache" / "someone___toxic" / "default" / "0.0.0" / built.name
    shutil.copytree(built, dest)
    for f in dest.glob("json-*.arrow"):
        f.rename(f.with_name(f.name.replace("json-", "toxic-", 1)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    splits = load_splits(DataConfig(source="someone/toxic"))
    assert splits.train.texts == [r["text"] for r in rows] and splits.test.labels == [0, 1, 0, 1, 0, 1]


def test_run_device_is_named_without_making_an_accelerator(monkeypatch):
    """finish_* name the device for run.json; making an Accelerator for that would reset accelerate's state."""
    import torch

    from distill_lora.experiment import results
    from distill_lora.train import distributed

    def refuse(*args, **kwargs):
        raise AssertionError("an Accelerator was made only to name the device")

    monkeypatch.setattr(distributed, "make_accelerator", refuse)
    if not torch.cuda.is_available():
        assert results._device() == f"cpu ({torch.get_num_threads()} threads)"
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert results._device().startswith("2 processes × ")


@pytest.fixture(scope="module")
def selected_not_last(tiny_bert6, tiny_data, tmp_path_factory):
    """A teacher trained 4 epochs at a high learning rate, selected on validation loss: epoch 2 wins, and the epochs'
    validation losses differ by more than 1e-3, so a saved model of the wrong epoch cannot pass for the right one.
    Its decision threshold is tuned (train.tune_threshold)."""
    from conftest import tiny_config
    from typer.testing import CliRunner

    from distill_lora.cli import app

    tmp = tmp_path_factory.mktemp("selected")
    settings = {"epochs": 4, "tune_threshold": True, "select_metric": "loss"}
    cfg = tiny_config(tmp, tiny_bert6, tiny_data, teacher={"train": {"lr": 1e-2}}, train=settings)
    result = CliRunner().invoke(app, ["train-teacher", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    return {"config": cfg, "stage": tmp / "run" / "seed-0" / "teacher"}


def evaluate_saved(config, folder, split: str) -> dict:
    """The saved stage folder run on a split by hand, in fp32: {"logits", "loss"}."""
    from distill_lora.experiment import pipeline
    from distill_lora.train import distributed, trainer
    from distill_lora.train.models import load_stage_model

    ctx = pipeline.prepare(load_config(str(config)))
    accelerator = distributed.make_accelerator("fp32")
    return trainer.evaluate(load_stage_model(folder), ctx.encoded[split], 32, accelerator, ctx.pad_id)


def test_the_saved_model_is_the_selected_epochs_not_the_last(selected_not_last):
    """Mutation caught: the best-epoch reload removed (the last epoch's weights saved and tested). The margin is wide:
    the selected epoch's validation loss is matched to 1e-5, and every other epoch's is > 1e-3 away."""
    m = json.loads((selected_not_last["stage"] / "metrics.json").read_text())
    losses = [h["val_loss"] for h in m["validation_history"]]
    assert m["selected_epoch"] == losses.index(min(losses)) + 1 < len(losses)
    chosen = losses[m["selected_epoch"] - 1]
    assert min(abs(x - chosen) for i, x in enumerate(losses) if i != m["selected_epoch"] - 1) > 1e-3
    val = evaluate_saved(selected_not_last["config"], selected_not_last["stage"], "validation")
    assert val["loss"] == pytest.approx(chosen, abs=1e-5)


def test_the_decision_threshold_is_tuned_on_validation_never_on_test(selected_not_last):
    """train.tune_threshold through a stage: the stored cut is the validation macro-F1 optimum of the saved model's
    validation logits; tuned on the test logits it would be another cut.

    Mutation caught: the threshold tuned on the test split's labels and logits."""
    from distill_lora.metrics import tune_threshold

    folder, config = selected_not_last["stage"], selected_not_last["config"]
    splits = load_splits(load_config(str(config)).data)
    stored = json.loads((folder / "decision.json").read_text())
    val = evaluate_saved(config, folder, "validation")
    test = evaluate_saved(config, folder, "test")
    # the cut is one of the validation texts' p(toxic), reproduced here to 1e-7; the test-tuned cut is one of the test
    # texts' p(toxic), > 1e-5 away on this run (200 times the tolerance)
    assert stored["threshold"] == pytest.approx(tune_threshold(splits.validation.labels, val["logits"]), abs=1e-7)
    assert abs(stored["threshold"] - tune_threshold(splits.test.labels, test["logits"])) > 1e-5
    m = json.loads((folder / "metrics.json").read_text())
    assert m["threshold"] == stored["threshold"]
    rows = [json.loads(line) for line in (folder / "test_predictions.jsonl").read_text().splitlines()]
    p = np.exp(test["logits"][:, 1]) / np.exp(test["logits"]).sum(1)
    assert [r["pred_threshold"] for r in rows] == (p >= stored["threshold"]).astype(int).tolist()
    want = f1_score(splits.test.labels, (p >= stored["threshold"]).astype(int), average="macro")
    assert m["test_at_threshold"]["macro_f1"] == pytest.approx(want)


def test_validation_runs_in_fp32_after_bf16_training(tiny_bert6, tiny_data, tmp_path):
    """train.precision bf16 (autocast on this CPU): the numbers that choose the epoch and the threshold (validation)
    and the recorded test logits are those of fp32 inference of the saved model.

    Mutations caught: validation, or the test pass, run under the training autocast. accelerate wraps the prepared
    model's forward in autocast, so an outer context does not switch it off: on this tiny model bf16 moves the
    logits by ~5e-5 and the validation loss by ~2e-6, against tolerances of 1e-7."""
    from conftest import tiny_config
    from typer.testing import CliRunner

    from distill_lora.cli import app

    settings = {"epochs": 1, "precision": "bf16", "tune_threshold": True}
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data, train=settings)
    result = CliRunner().invoke(app, ["train-teacher", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "run" / "seed-0" / "teacher"
    m = json.loads((folder / "metrics.json").read_text())
    assert m["precision"] == "bf16"
    from distill_lora.metrics import tune_threshold

    val = evaluate_saved(cfg, folder, "validation")
    assert m["validation_history"][0]["val_loss"] == pytest.approx(val["loss"], abs=1e-7)
    splits = load_splits(load_config(str(cfg)).data)
    assert m["threshold"] == pytest.approx(tune_threshold(splits.validation.labels, val["logits"]), abs=1e-7)
    test = evaluate_saved(cfg, folder, "test")
    rows = [json.loads(line) for line in (folder / "test_predictions.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(np.array([r["logits"] for r in rows]), test["logits"], atol=1e-7, rtol=0)
