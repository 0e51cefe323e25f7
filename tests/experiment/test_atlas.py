"""distill-lora atlas: the grid's arms, the shared teacher and logit cache, the report's atlas section, bad input."""

import json

import pytest
import yaml
from conftest import one_error_line, tiny_config
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.config import load_config
from distill_lora.errors import UserError
from distill_lora.experiment.atlas import atlas_overrides


def _cfg(tmp_path, **atlas):
    path = tmp_path / "atlas.yaml"
    path.write_text(yaml.safe_dump({"atlas": atlas}), encoding="utf-8")
    return load_config(str(path), [])


def test_every_layer_choice_meets_every_recipe_and_each_arm_faces_the_teacher_and_the_reference(tmp_path):
    cfg = _cfg(tmp_path, layers=["odd", "last:2", [1, 6], "angular"], recipes=["ce", "hidden"])
    layers, primary = atlas_overrides(cfg, 6)
    arms = [
        "odd.ce",
        "odd.hidden",
        "last:2.ce",
        "last:2.hidden",
        "1,6.ce",
        "1,6.hidden",
        "angular.ce",
        "angular.hidden",
    ]
    assert layers == f"distill.layers={json.dumps(arms)}"
    ids = ["student-odd.ce", "student-odd.hidden", "student-5-6.ce", "student-5-6.hidden", "student-1-6.ce"]
    ids += ["student-1-6.hidden", "student-angular.ce", "student-angular.hidden"]
    want = [f"{s} vs teacher" for s in ids] + [f"{s} vs student-odd.ce" for s in ids[1:]]
    assert primary == f"report.primary={json.dumps(want)}"
    # the config's own planned comparisons win; a reference of its own choosing replaces odd
    cfg = _cfg(tmp_path, layers=["odd", "even"], recipes=["ce"], reference="even.ce")
    assert atlas_overrides(cfg, 6)[1].endswith(
        json.dumps(["student-odd.ce vs teacher", "student-even.ce vs teacher", "student-odd.ce vs student-even.ce"])
    )


@pytest.mark.parametrize(
    "atlas, needles",
    [
        ({"recipes": ["ce", "kd"]}, ["atlas.recipes[1]", "'kd'", "distill.recipes"]),
        ({"layers": ["odd", "odd"]}, ["atlas.layers", "odd", "more than once"]),
        ({"layers": ["odd.ce"]}, ["atlas.layers[0]", "without a recipe"]),
        ({"reference": "first.ce", "layers": ["odd"]}, ["atlas.reference", "first.ce", "odd.ce"]),
    ],
)
def test_bad_grids_are_refused_at_load_in_one_line(tmp_path, atlas, needles):
    with pytest.raises(UserError) as e:
        _cfg(tmp_path, **atlas)
    assert all(n in str(e.value) for n in needles), str(e.value)


@pytest.mark.parametrize(
    "layers, needles",
    [
        (["even", "spaced"], ["'even.ce'", "'spaced.ce'", "same student student-even.ce", "6-layer"]),
        (["last:7"], ["last:7", "1..5"]),
        (["angular:6"], ["angular:6", "1..5"]),
    ],
)
def test_layer_choices_impossible_for_the_teacher_are_refused_before_anything_trains(
    tmp_path, tiny_bert6, tiny_data, layers, needles
):
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data, atlas={"layers": layers, "recipes": ["ce"]})
    result = CliRunner().invoke(app, ["atlas", "--config", str(cfg)])
    one_error_line(result, 2, *needles)
    assert not (tmp_path / "run").exists()


def test_an_atlas_trains_one_teacher_and_one_logit_cache_per_seed_for_every_arm(tmp_path, tiny_bert6, tiny_data):
    cfg = tiny_config(
        tmp_path,
        tiny_bert6,
        tiny_data,
        seeds=[0, 1],
        train={"epochs": 1},
        lora={"models": []},
        report={"bootstrap_resamples": 100, "measure_speed": False},
        atlas={"layers": ["odd", "angular"], "recipes": ["ce", "logits"]},
    )
    result = CliRunner().invoke(app, ["atlas", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    assert result.output.count("[teacher] training") == 2  # one per seed
    for seed in (0, 1):
        folder = run / f"seed-{seed}"
        cache = sorted(p.name for p in (folder / "cache").iterdir())
        assert len([c for c in cache if c.endswith(".safetensors")]) == 1, cache  # one logit pass for all arms
        assert len([c for c in cache if c.startswith("angular-")]) == 1, cache  # one angular pass
        metrics = {
            arm: json.loads((folder / f"student-{arm}" / "metrics.json").read_text())
            for arm in ("odd.ce", "odd.logits", "angular.ce", "angular.logits")
        }
        # the logits arms share the cache: the first made it, the others read it; labels-only arms need none
        assert [metrics[a]["teacher_targets"]["reused"] for a in ("odd.logits", "angular.logits")] == [False, True]
        assert "teacher_targets" not in metrics["odd.ce"]
        assert metrics["odd.ce"]["loss_weights"]["w_kl"] == 0.0 and metrics["odd.logits"]["loss_weights"]["w_kl"] == 0.5
        choice = metrics["angular.ce"]["layer_choice"]
        assert (
            choice["layers"] == metrics["angular.logits"]["teacher_layers"] == metrics["angular.ce"]["teacher_layers"]
        )
        assert len(choice["distances"]) == 6 and len(choice["layers"]) == 3
    report = (run / "report.md").read_text()
    assert "## Atlas: which model to ship" in report
    assert "student-angular.logits kept the teacher layers that change its hidden states most" in report
    analysis = json.loads((run / "analysis.json").read_text())
    assert len(analysis["atlas"]["rows"]) == 5  # the teacher and four arms
    primary = [p for p in analysis["pairs"] if p["family"] == "primary"]
    assert len(primary) == 4 + 3  # each arm vs the teacher, and vs odd.ce
    # a second atlas reuses every finished stage
    again = CliRunner().invoke(app, ["atlas", "--config", str(cfg)])
    assert again.exit_code == 0 and "training on" not in again.output, again.output


def test_adapters_meet_every_depth_and_rank(tmp_path):
    cfg = _cfg(
        tmp_path,
        layers=["odd"],
        recipes=["ce"],
        adapters=["dora", "vera"],
        ranks=[4, 8],
        adapter_models=["lora-student", "lora-teacher"],
    )
    overrides = atlas_overrides(cfg, 6)
    arms = [f"{m}.{a}-r{r}" for m in ("lora-student", "lora-teacher") for a in ("dora", "vera") for r in (4, 8)]
    assert overrides[1] == f"lora.models={json.dumps(arms)}"
    primary = json.loads(overrides[2].partition("=")[2])
    assert "lora-teacher.vera-r8 vs teacher" in primary and "lora-teacher.vera-r8 vs student-odd.ce" in primary
    lo = load_config(str(tmp_path / "atlas.yaml"), []).lora
    assert (lo.with_adapter("vera-r4").method, lo.with_adapter("vera-r4").r) == ("vera", 4)
    assert lo.with_adapter("loraplus").train["lora_b_lr_ratio"] == 16.0


@pytest.mark.parametrize(
    "sections, needles",
    [
        ({"atlas": {"adapters": ["nope"]}}, ["atlas.adapters[0]", "'nope'", "lora.adapters"]),
        ({"lora": {"models": ["lora-student.nope"]}}, ["lora.models", "'nope'"]),
        ({"lora": {"models": ["lora-middle"]}}, ["lora.models", "lora-middle", "lora-student"]),
        ({"lora": {"adapters": {"x": {"rank": 4}}}}, ["unknown key 'lora.adapters.x.rank'"]),
        ({"lora": {"adapters": {"x": {"method": "ia3"}}}}, ["lora.adapters.x.method", "lora or vera"]),
        ({"lora": {"adapters": {"x": {"r": 0}}}}, ["lora.adapters.x.r", ">= 1"]),
        ({"atlas": {"ranks": [0]}}, ["atlas.ranks", ">= 1"]),
    ],
)
def test_bad_adapters_are_refused_at_load_in_one_line(tmp_path, sections, needles):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(sections), encoding="utf-8")
    with pytest.raises(UserError) as e:
        load_config(str(path), [])
    assert all(n in str(e.value) for n in needles), str(e.value)


def test_an_adapter_the_installed_peft_lacks_is_refused_at_load(tmp_path, monkeypatch):
    import peft

    monkeypatch.delattr(peft, "VeraConfig")
    path = tmp_path / "vera.yaml"
    path.write_text(yaml.safe_dump({"lora": {"models": ["lora-student.vera"]}}), encoding="utf-8")
    with pytest.raises(UserError, match=r"lora.adapters.vera' needs VeRA \(peft.VeraConfig\), which the installed"):
        load_config(str(path), [])


def test_adapter_arms_train_as_their_adapter_says_and_reload_to_their_recorded_logits(tmp_path, tiny_bert6, tiny_data):
    import numpy as np
    from transformers import AutoTokenizer

    from distill_lora.train import distributed, trainer
    from distill_lora.train.data import Encoded, Split
    from distill_lora.train.models import load_stage_model

    cfg = tiny_config(
        tmp_path,
        tiny_bert6,
        tiny_data,
        train={"epochs": 1},
        distill={"layers": []},
        lora={"models": ["lora-student", "lora-student.dora", "lora-student.vera-r8", "lora-student.loraplus"]},
        report={"bootstrap_resamples": 100, "measure_speed": False},
    )
    result = CliRunner().invoke(app, ["compare", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    seed = tmp_path / "run" / "seed-0"
    m = {
        s: json.loads((seed / s / "metrics.json").read_text())
        for s in ("lora-student", "lora-student.dora", "lora-student.vera-r8", "lora-student.loraplus")
    }
    adapter_cfg = {s: json.loads((seed / s / "adapter_config.json").read_text()) for s in m}
    assert adapter_cfg["lora-student.dora"]["use_dora"] is True and adapter_cfg["lora-student"]["use_dora"] is False
    assert adapter_cfg["lora-student.vera-r8"]["peft_type"] == "VERA" and adapter_cfg["lora-student.vera-r8"]["r"] == 8
    assert m["lora-student.dora"]["adapter"] == "dora" and "adapter" not in m["lora-student"]
    # VeRA trains two vectors per adapted matrix where LoRA trains two matrices: far fewer weights (the head aside)
    assert m["lora-student.vera-r8"]["trainable_params"] < m["lora-student"]["trainable_params"]
    assert m["lora-student.loraplus"]["train_settings"]["lora_b_lr_ratio"] == 16.0
    assert "lora_b_lr_ratio" not in m["lora-student"]["train_settings"]
    rows = [json.loads(x) for x in (tiny_data / "test.jsonl").read_text().splitlines()]
    test = Encoded(
        Split([r["text"] for r in rows], [r["label"] for r in rows]), AutoTokenizer.from_pretrained(tiny_bert6), 16
    )
    for s in m:  # each adapter reloads onto its saved base and gives the logits of its one test pass
        want = [json.loads(x)["logits"] for x in (seed / s / "test_predictions.jsonl").read_text().splitlines()]
        got = trainer.evaluate(load_stage_model(seed / s), test, 32, distributed.make_accelerator("fp32"), 0)["logits"]
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert "## Atlas" not in (tmp_path / "run" / "report.md").read_text()  # no students: no atlas section


def test_equal_tuning_budget_gives_every_arm_the_same_trials_and_trains_it_with_its_best_values(
    tmp_path, tiny_bert6, tiny_data
):
    import optuna

    cfg = tiny_config(
        tmp_path,
        tiny_bert6,
        tiny_data,
        seeds=[0, 1],
        train={"epochs": 1},
        lora={"models": ["lora-student"]},
        report={"bootstrap_resamples": 100, "measure_speed": False},
        sweep={"sampler": "random", "pruning": False},
        atlas={
            "layers": ["odd", "last"],
            "recipes": ["ce"],
            "tune_trials": 3,
            "tune_space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "epochs": {"choices": [1, 2]}},
        },
    )
    result = CliRunner().invoke(app, ["atlas", "--config", str(cfg)])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    chosen = json.loads((run / "tune" / "chosen.json").read_text())
    arms = {"student-odd.ce": "distill", "student-last.ce": "distill", "lora-student": "lora"}
    assert set(chosen) == set(arms)
    for stage, section in arms.items():
        storage = f"sqlite:///{run / 'tune' / stage / 'study.db'}"
        (name,) = optuna.get_all_study_names(storage)
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        assert len(trials) == chosen[stage]["trials"] == 3  # the same budget for every arm
        complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(complete, key=lambda t: t.value)  # the first of equals, as Optuna's best_trial
        assert chosen[stage]["val_macro_f1"] == best.value and chosen[stage]["trial"] == best.number
        # only this arm's section's train block is searched, and tuning looked at seed 0 only
        values = chosen[stage]["values"]
        assert set(values) == {f"{section}.train.lr", f"{section}.train.epochs"} and chosen[stage]["seed"] == 0
        for seed in (0, 1):  # every seed trains the arm with the values its tuning chose
            m = json.loads((run / f"seed-{seed}" / stage / "metrics.json").read_text())
            assert m["train_settings"]["lr"] == values[f"{section}.train.lr"]
            assert m["train_settings"]["epochs"] == values[f"{section}.train.epochs"]
    teacher = json.loads((run / "seed-0" / "teacher" / "metrics.json").read_text())
    assert teacher["train_settings"]["lr"] == 1e-3  # the teacher is not an arm: trained as set
    results = json.loads((run / "results.json").read_text())
    assert results["comparison"]["tuning"] == chosen
    report = (run / "report.md").read_text()
    assert "Equal tuning budget: each arm's epochs, lr chosen on validation from 3 trials" in report
    # a second atlas continues the finished studies (no trial) and reuses every stage
    again = CliRunner().invoke(app, ["atlas", "--config", str(cfg)])
    assert again.exit_code == 0 and "training on" not in again.output, again.output
