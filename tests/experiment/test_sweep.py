"""distill-lora sweep: trials see validation only, the test split once (best trial), the study resumes."""

import itertools
import json

import optuna
import pytest
import yaml
from conftest import tiny_config
from optuna.trial import TrialState
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.config import load_config
from distill_lora.errors import UserError
from distill_lora.experiment import pipeline
from distill_lora.train import trainer

runner = CliRunner()


def _config(tmp_path, model, data, sweep, **extra):
    return tiny_config(
        tmp_path,
        model,
        data,
        train={"epochs": 1, "batch_size": 16, "eval_batch_size": 32, "log_every": 2},
        sweep=sweep,
        **extra,
    )


def _study(out):
    storage = f"sqlite:///{out / 'sweep' / 'study.db'}"
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def _validation_log(trial_dir):
    lines = (trial_dir / "train_log.jsonl").read_text().splitlines()
    return [json.loads(line)["validation"] for line in lines if '"validation"' in line]


@pytest.fixture
def evaluations(monkeypatch):
    """Which split every trainer.evaluate call ran on (by identity with the command's tokenised splits)."""
    seen, ctxs = [], []
    prepare, evaluate = pipeline.prepare, trainer.evaluate

    def spy_prepare(*a, **kw):
        ctxs.append(prepare(*a, **kw))
        return ctxs[-1]

    def spy_evaluate(model, dataset, *a, **kw):
        names = [s for s, enc in ctxs[-1].encoded.items() if enc is dataset]
        seen.append(names[0] if names else "?")
        return evaluate(model, dataset, *a, **kw)

    monkeypatch.setattr(pipeline, "prepare", spy_prepare)
    monkeypatch.setattr(trainer, "evaluate", spy_evaluate)
    return seen


def test_distill_sweep_selects_on_validation_and_tests_the_best_once(tiny_bert6, tiny_data, tmp_path, evaluations):
    space = {"distill.temperature": {"low": 1, "high": 8, "log": True}, "distill.train.lr": {"choices": [3e-4, 3e-3]}}
    cfg = _config(
        tmp_path,
        tiny_bert6,
        tiny_data,
        {"stage": "distill", "layers": "odd", "trials": 3, "space": space},
        distill={"train": {"epochs": 2}},
    )
    out = tmp_path / "run"
    r = runner.invoke(app, ["train-teacher", "--config", str(cfg)])  # the teacher's own stage: its own test pass
    assert r.exit_code == 0, r.output
    evaluations.clear()
    r = runner.invoke(app, ["sweep", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "[teacher] reusing finished stage" in r.output
    assert evaluations.count("test") == 1 and evaluations[-1] == "test"  # once, after every trial
    assert evaluations.count("train") == 1  # one teacher pass, cached for every trial and the best stage

    study = _study(out)
    done = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == 3
    for t in study.get_trials(states=(TrialState.COMPLETE,)):  # a trial's score: its best validation epoch
        log = _validation_log(out / "sweep" / f"trial-{t.number:04d}")
        assert t.value == max(e["val_macro_f1"] for e in log)
        assert not list((out / "sweep" / f"trial-{t.number:04d}").glob("checkpoint-*"))
    best = json.loads((out / "sweep" / "best.json").read_text())
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert best["trial"] == max(complete, key=lambda t: t.value).number
    assert best["val_macro_f1"] == max(t.value for t in complete)
    # the best stage is the best trial trained again with the same building blocks: the same epochs exactly
    stage = out / "sweep" / "best" / "seed-0" / "student-odd"
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["validation_history"] == _validation_log(out / "sweep" / f"trial-{best['trial']:04d}")
    assert metrics["test"] == best["test"] and (stage / "DONE").exists()
    loaded = load_config(str(out / "sweep" / "best_config.yaml"))
    assert loaded.distill.temperature == best["values"]["distill.temperature"]
    assert loaded.stage_train("distill").lr == best["values"]["distill.train.lr"]
    assert "Test split, evaluated once" in (out / "sweep" / "sweep.md").read_text()
    assert (out / "sweep" / "trials.csv").read_text().count("\n") == 4

    # the same command with a larger budget continues the study: exactly one new trial
    evaluations.clear()
    r = runner.invoke(app, ["sweep", "--config", str(cfg), "--trials", "4", "--json"])
    assert r.exit_code == 0, r.output
    assert "3 of 4 trials finished" in r.stderr  # --json: progress on stderr, the best trial on stdout
    study = _study(out)
    assert len(study.trials) == 4
    assert evaluations.count("test") <= 1  # only if the new trial is the new best
    doc, best = json.loads(r.stdout), json.loads((out / "sweep" / "best.json").read_text())
    assert doc["command"] == "sweep" and {k: doc[k] for k in ("trial", "values", "test")} == {
        k: best[k] for k in ("trial", "values", "test")
    }


def test_a_changed_config_or_space_is_a_new_study(tmp_path, capsys):
    from types import SimpleNamespace

    from distill_lora.experiment.sweep import Search, _open_study

    space = {"distill.w_kl": {"low": 0, "high": 1}}

    def open_(*overrides):
        cfg = load_config("default", [f"sweep.space={json.dumps(space)}", *overrides])
        ctx = SimpleNamespace(cfg=cfg, splits=SimpleNamespace(fingerprint={"train": "abc"}))
        study, budget = _open_study(ctx, Search(cfg.sweep, {"stage": "distill", "layers": [1, 3, 5]}, None, tmp_path))
        return study.study_name, capsys.readouterr().out

    first, _ = open_()
    again, said = open_("sweep.trials=20", "sweep.sampler=random")  # budget and sampler: the same study
    assert again == first and "starting a new study" not in said and "0 of 20 trials finished" in said
    other, said = open_("distill.w_cos=0.5")
    assert other != first and "starting a new study" in said


def test_grid_covers_every_combination_and_resumes_an_interrupted_trial(tiny_bert6, tiny_data, tmp_path, monkeypatch):
    space = {"lora.r": {"choices": [2, 4]}, "lora.target_modules": {"choices": [["query"], ["query", "value"]]}}
    cfg = _config(
        tmp_path,
        tiny_bert6,
        tiny_data,
        {"stage": "lora-student", "sampler": "grid", "trials": 10, "pruning": False, "space": space},
        lora={"train": {"lr": 5e-3, "epochs": 2}},
    )
    out = tmp_path / "run"
    monkeypatch.setenv("DISTILL_LORA_FAULT", "term@trial-0001:step:8")  # SIGTERM in trial 1's second epoch
    r = runner.invoke(app, ["sweep", "--config", str(cfg)])
    assert r.exit_code == 143, r.output
    assert "Traceback" not in r.output and "run the same command again" in r.output
    assert not (out / ".lock").exists()
    assert "trial 1 was interrupted: queued again" in r.output
    # the interrupted trial failed at once, and a copy of it waits for the next run (no heartbeat timeout needed)
    assert _study(out).trials[1].state == TrialState.FAIL
    assert [t.user_attrs.get("resumes") for t in _study(out).get_trials(states=(TrialState.WAITING,))].count(1) == 1
    assert list((out / "sweep" / "trial-0001").glob("checkpoint-*"))
    monkeypatch.delenv("DISTILL_LORA_FAULT")

    r = runner.invoke(app, ["sweep", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "the grid has 4 combinations" in r.output
    assert "resuming from checkpoint-00000008" in r.output
    study = _study(out)
    assert study.trials[1].state == TrialState.FAIL
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4 and len(study.trials) == 5
    combos = sorted(json.dumps([t.user_attrs["values"][k] for k in space]) for t in complete)
    assert combos == sorted(json.dumps(list(c)) for c in itertools.product(*[s["choices"] for s in space.values()]))
    resumed = next(t for t in complete if t.user_attrs.get("resumes") == 1)
    assert resumed.params == study.trials[1].params and len(resumed.intermediate_values) == 2
    assert (out / "sweep" / "best" / "seed-0" / "lora-student" / "DONE").exists()
    assert yaml.safe_load((out / "sweep" / "best_config.yaml").read_text())["sweep"]["sampler"] == "grid"


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "sweep.space={distill.temprature: {low: 1, high: 2}}",
            "unknown key 'distill.temprature' in sweep.space; did you mean 'distill.temperature'?",
        ),
        ("sweep.space={train.lr: {low: 1.0e-5, high: 1.0e-3}}", "did you mean 'distill.train.lr'?"),
        ("sweep.space={distill.temperature: {low: 0, high: 2}}", "value 0: 'distill.temperature' must be > 0"),
        (
            "sweep.space={distill.temperature: {lo: 1, high: 2}}",
            "unknown key 'sweep.space.distill.temperature.lo'; did you mean 'low'?",
        ),
        ("sweep.space={distill.temperature: {low: 3, high: 2}}", "needs float low < high"),
        ("sweep.space={distill.temperature: {low: 1, high: 2, choices: [1]}}", "either choices"),
        ("sweep.space={distill.w_kl: 0.5}", "must be {low: .., high: ..} or {choices: [..]}"),
        ("sweep.space={distill.train.batch_size: {low: 8, high: 32.5}}", "needs int low < high"),
        ("sweep.sampler=bayes", "'sweep.sampler' must be one of tpe, grid, random"),
    ],
)
def test_bad_sweep_config_messages(override, message):
    with pytest.raises(UserError) as e:
        load_config("default", [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_grid_needs_choices_and_nested_keys_work():
    with pytest.raises(UserError, match="grid needs choices"):
        load_config("default", ["sweep.sampler=grid", "sweep.space={distill.w_kl: {low: 0, high: 1}}"])
    cfg = load_config(
        "default",
        ["sweep.space.distill.temperature.low=1", "sweep.space.distill.temperature.high=4", "sweep.stage=distill"],
    )
    from distill_lora.config import flat_space

    assert flat_space(cfg.sweep.space) == {"distill.temperature": {"low": 1, "high": 4}}


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--set", "sweep.space={lora.rr: {choices: [4, 8]}}", "--set", "sweep.stage=lora-teacher"],
            "did you mean 'lora.r'",
        ),
        ([], "no search space"),
        (["--trials", "0", "--set", "sweep.space={distill.w_kl: {low: 0, high: 1}}"], "'sweep.trials' must be >= 1"),
    ],
)
def test_cli_errors_are_one_line(args, message, tiny_bert6, tiny_data, tmp_path):
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data)
    r = runner.invoke(app, ["sweep", "--config", str(cfg), *args])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output
    assert [line for line in r.output.splitlines() if line.startswith("error:")]
    assert not (tmp_path / "run").exists()


def test_pruning_stops_a_trial_below_the_median_but_never_after_its_first_or_last_epoch(
    tiny_bert6, tiny_data, tmp_path, monkeypatch
):
    from distill_lora.experiment import sweep

    monkeypatch.setattr(sweep, "PRUNE_AFTER_TRIALS", 1)  # compare with one finished trial, to keep the test short
    # the tiny random BERT learns nothing in 3 epochs, so the test scripts the validation scores the sweep
    # sees (trial values follow from them): the lr-a trial scores 0.9, the lr-b trial 0.5, at every epoch
    lr_a, lr_b = 1e-3, 2e-3
    real_train = trainer.train

    def scripted_train(model, loss_fn, cfg, stage, on_validated=None):
        def scored(entry):
            entry["val_macro_f1"] = 0.9 if cfg.lr == lr_a else 0.5
            on_validated(entry)

        return real_train(model, loss_fn, cfg, stage, on_validated=on_validated and scored)

    monkeypatch.setattr(trainer, "train", scripted_train)
    seed = next(s for s in range(50) if _grid_order(s, [lr_a, lr_b]) == [lr_a, lr_b])
    space = {"teacher.train.lr": {"choices": [lr_a, lr_b]}}
    cfg = _config(
        tmp_path,
        tiny_bert6,
        tiny_data,
        {"stage": "teacher", "sampler": "grid", "sampler_seed": seed, "trials": 2, "space": space},
        teacher={"train": {"epochs": 3}},
    )
    r = runner.invoke(app, ["sweep", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    first, second = _study(tmp_path / "run").trials
    assert first.state == TrialState.COMPLETE and first.params["teacher.train.lr"] == lr_a
    assert first.value == 0.9 and list(first.intermediate_values) == [1, 2, 3]
    # below the median already after epoch 1, but the first epoch is never judged: stopped after epoch 2
    assert second.state == TrialState.PRUNED and list(second.intermediate_values) == [1, 2]
    assert "trial 1: pruned after epoch 2" in r.output
    assert not list((tmp_path / "run" / "sweep" / "trial-0001").glob("checkpoint-*"))
    rows = (tmp_path / "run" / "sweep" / "trials.csv").read_text().splitlines()
    assert rows[2].split(",")[1] == "pruned"
    assert json.loads((tmp_path / "run" / "sweep" / "best.json").read_text())["trial"] == 0


def test_a_trial_is_never_pruned_after_its_last_epoch(tiny_bert6, tiny_data, tmp_path, monkeypatch):
    from distill_lora.experiment import sweep

    monkeypatch.setattr(sweep, "PRUNE_AFTER_TRIALS", 1)
    real_train = trainer.train

    def scripted_train(model, loss_fn, cfg, stage, on_validated=None):
        def scored(entry):
            entry["val_macro_f1"] = 0.9 if cfg.lr == 1e-3 else 0.5
            on_validated(entry)

        return real_train(model, loss_fn, cfg, stage, on_validated=on_validated and scored)

    monkeypatch.setattr(trainer, "train", scripted_train)
    seed = next(s for s in range(50) if _grid_order(s, [1e-3, 2e-3]) == [1e-3, 2e-3])
    cfg = _config(
        tmp_path,
        tiny_bert6,
        tiny_data,
        {
            "stage": "teacher",
            "sampler": "grid",
            "sampler_seed": seed,
            "trials": 2,
            "space": {"teacher.train.lr": {"choices": [1e-3, 2e-3]}},
        },
        teacher={"train": {"epochs": 2}},
    )  # 2 epochs: epoch 2 is the last, so nothing can be pruned
    r = runner.invoke(app, ["sweep", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert [t.state for t in _study(tmp_path / "run").trials] == [TrialState.COMPLETE, TrialState.COMPLETE]


def _grid_order(seed, values):
    """The order in which the sweep queues a one-key grid (as sweep._open_study shuffles it)."""
    import random

    combos = list(values)
    random.Random(seed).shuffle(combos)
    return combos


def test_a_sweep_whose_trials_all_tie_says_so(tiny_bert6, tiny_data, tmp_path, monkeypatch):
    real_train = trainer.train

    def scripted_train(model, loss_fn, cfg, stage, on_validated=None):
        def scored(entry):
            entry["val_macro_f1"] = 0.5  # every trial alike, as LoRA at the majority class on OLID was
            on_validated(entry)

        return real_train(model, loss_fn, cfg, stage, on_validated=on_validated and scored)

    monkeypatch.setattr(trainer, "train", scripted_train)
    cfg = _config(
        tmp_path,
        tiny_bert6,
        tiny_data,
        {"stage": "teacher", "sampler": "grid", "trials": 2, "space": {"teacher.train.lr": {"choices": [1e-3, 2e-3]}}},
    )
    r = runner.invoke(app, ["sweep", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    assert "every complete trial scored validation macro-F1 0.5000" in r.output
    best = json.loads((tmp_path / "run" / "sweep" / "best.json").read_text())
    assert "made no difference" in best["note"]
    assert "made no difference" in (tmp_path / "run" / "sweep" / "sweep.md").read_text()
