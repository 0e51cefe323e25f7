"""train.report_to: the trackers' own readers get back what metrics.json and train_log.jsonl hold."""

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import one_error_line, tiny_config
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.config import load_config
from distill_lora.errors import UserError
from distill_lora.experiment import preflight, tracking
from distill_lora.experiment.stage import tracker_run

runner = CliRunner()


def _tensorboard_scalars(folder: Path) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}


def test_trackers_log_what_the_stage_recorded(tmp_path, tiny_bert6, tiny_data, monkeypatch):
    pytest.importorskip("tensorboard")
    mlflow = pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("WANDB_DIR", raising=False)
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data, train={"report_to": ["tensorboard", "mlflow", "wandb"]})
    r = runner.invoke(app, ["train-teacher", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    stage = tmp_path / "run" / "seed-0" / "teacher"
    metrics = json.loads((stage / "metrics.json").read_text())
    log = [json.loads(line) for line in (stage / "train_log.jsonl").read_text().splitlines()]
    steps = [line for line in log if "step" in line]
    last = metrics["validation_history"][-1]
    assert len(steps) >= 2 and len(metrics["validation_history"]) == 2

    # TensorBoard: RUN/tracking/tensorboard/<run-name>/seed-0/teacher
    scalars = _tensorboard_scalars(tmp_path / "run" / "tracking" / "tensorboard" / "run" / "seed-0" / "teacher")
    assert [s.step for s in scalars["train/loss"]] == [line["step"] for line in steps]
    assert [s.value for s in scalars["train/loss"]] == pytest.approx([line["loss"] for line in steps], rel=1e-6)
    assert [s.value for s in scalars["train/lr"]] == pytest.approx([line["lr"] for line in steps], rel=1e-6)
    assert len(scalars["train/samples_per_s"]) == len(steps)
    assert [s.value for s in scalars["epoch/val_macro_f1"]] == pytest.approx(
        [h["val_macro_f1"] for h in metrics["validation_history"]], abs=1e-6
    )
    assert scalars["epoch/val_loss"][-1].value == pytest.approx(last["val_loss"], rel=1e-6)
    for key in ("accuracy", "macro_f1", "ece"):
        assert scalars[f"test/{key}"][-1].value == pytest.approx(metrics["test"][key], rel=1e-6)
        assert scalars[f"test/{key}"][-1].step == steps[-1]["step"]

    # MLflow: the local store under the run folder, one run named <run-name>/seed-0/teacher in experiment <run-name>
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'run' / 'tracking' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("run")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "run/seed-0/teacher" and run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == len(steps)
    assert run.data.metrics["test/macro_f1"] == pytest.approx(metrics["test"]["macro_f1"], rel=1e-9)
    assert run.data.metrics["test/accuracy"] == pytest.approx(metrics["test"]["accuracy"], rel=1e-9)
    assert run.data.metrics["epoch/val_accuracy"] == pytest.approx(last["val_accuracy"], rel=1e-9)
    # the resolved config, flattened: the teacher's own lr (teacher.train.lr) in place of the global default
    assert float(run.data.params["train.lr"]) == 1e-3 and run.data.params["teacher.model"] == str(tiny_bert6)
    artefacts = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "config.yaml"} <= artefacts

    # W&B, offline: its run folder under RUN/tracking/wandb
    (offline,) = (tmp_path / "run" / "tracking" / "wandb").glob("offline-run-*")
    assert list(offline.glob("run-*.wandb"))

    # tracking does not change what a stage is: without it, the finished stage is reused, and nothing is logged
    r = runner.invoke(app, ["train-teacher", "--config", str(cfg), "--set", "train.report_to=[]"])
    assert r.exit_code == 0 and "reusing finished stage" in r.output, r.output
    r = runner.invoke(app, ["train-teacher", "--config", str(cfg)])
    assert "reusing finished stage" in r.output, r.output
    assert len(client.search_runs([experiment.experiment_id])) == 1


def test_a_tracker_not_installed_is_one_line(tmp_path, tiny_bert6, tiny_data, monkeypatch):
    monkeypatch.setitem(preflight.INSTALLED, "mlflow", lambda: False)
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data, teacher={"train": {"report_to": ["mlflow"]}})
    r = runner.invoke(app, ["train-teacher", "--config", str(cfg)])
    one_error_line(
        r, 2, "teacher.train.report_to has mlflow, which is not installed: pip install 'distill-lora[track]'"
    )
    assert not (tmp_path / "run").exists()  # refused before any stage's work folder (or the run folder) was made


def test_an_unknown_tracker_names_the_known_ones():
    with pytest.raises(UserError, match=r"'train.report_to' has 'tensorbord', which is not a tracker; did you mean"):
        load_config("default", ["train.report_to=[tensorbord]"])


def test_tracker_runs_are_named_by_run_folder_seed_and_stage(tmp_path):
    cfg = load_config("default", ["lora.train.report_to=[tensorboard]", "lora.train.lr=0.002"])
    ctx = SimpleNamespace(cfg=cfg, output_dir=tmp_path / "my-run")
    with tracker_run(ctx, "teacher", "seed-0/teacher") as run:
        assert run is None  # report_to is set for the LoRA stages only
    with tracker_run(ctx, "lora", "sweep/trial-0003") as run:
        assert run.name == "my-run/sweep/trial-0003"
        assert [t.name for t in run.trackers] == ["tensorboard"]
        assert run.hparams["train.lr"] == 0.002 and run.hparams["section"] == "lora"
        assert run.hparams["train.report_to"] == '["tensorboard"]'
    assert not (tmp_path / "my-run").exists()  # never started: nothing written


def test_the_report_and_its_plots_are_artefacts_of_a_report_run(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path / "my-run"
    (run_dir / "plots").mkdir(parents=True)
    (run_dir / "report.md").write_text("# report\n")
    (run_dir / "plots" / "quality_vs_cost.png").write_bytes(b"\x89PNG")
    tracking.log_report(["tensorboard", "mlflow"], run_dir, run_dir / "report.md")
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'tracking' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("my-run").experiment_id])
    assert run.info.run_name == "my-run/report" and run.info.status == "FINISHED"
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["plots", "report.md"]
    assert [f.path for f in client.list_artifacts(run.info.run_id, "plots")] == ["plots/quality_vs_cost.png"]
    assert not (run_dir / "tracking" / "tensorboard").exists()  # TensorBoard keeps no files


def test_a_sweep_logs_each_trial_as_a_run(tmp_path, tiny_bert6, tiny_data):
    pytest.importorskip("tensorboard")
    import optuna

    space = {"teacher.train.lr": {"choices": [1e-3, 2e-3]}}
    cfg = tiny_config(
        tmp_path,
        tiny_bert6,
        tiny_data,
        train={"epochs": 1, "report_to": ["tensorboard"]},
        sweep={"stage": "teacher", "sampler": "grid", "trials": 2, "space": space},
    )
    r = runner.invoke(app, ["sweep", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    out = tmp_path / "run"
    storage = f"sqlite:///{out / 'sweep' / 'study.db'}"
    (name,) = optuna.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    assert len(trials) == 2
    for trial in trials:  # <run-name>/sweep/trial-NNNN, its score at its last step; never a test metric
        scalars = _tensorboard_scalars(out / "tracking" / "tensorboard" / "run" / "sweep" / f"trial-{trial.number:04d}")
        assert scalars["trial/val_macro_f1"][-1].value == pytest.approx(trial.value, abs=1e-6)
        assert not any(tag.startswith("test/") for tag in scalars)
    # the best config retrained as a normal stage in sweep/best: a run of that folder, with its test metrics
    best = json.loads((out / "sweep" / "best.json").read_text())
    scalars = _tensorboard_scalars(out / "sweep" / "best" / "tracking" / "tensorboard" / "best" / "seed-0" / "teacher")
    assert scalars["test/macro_f1"][-1].value == pytest.approx(best["test"]["macro_f1"], rel=1e-6)


def test_tracking_continues_the_same_sweep_study(tmp_path):
    from distill_lora.experiment.sweep import Search, _open_study

    space = {"distill.w_kl": {"low": 0, "high": 1}}
    names = []
    for overrides in ([], ["train.report_to=[tensorboard]", "distill.train.report_to=[mlflow]"]):
        cfg = load_config("default", [f"sweep.space={json.dumps(space)}", *overrides])
        ctx = SimpleNamespace(cfg=cfg, splits=SimpleNamespace(fingerprint={"train": "abc"}))
        names.append(
            _open_study(ctx, Search(cfg.sweep, {"stage": "distill", "layers": [1, 3, 5]}, None, tmp_path))[0].study_name
        )
    assert names[0] == names[1]


def test_two_processes_log_once_and_keep_training_stage_after_stage(tmp_path, tiny_bert6, tiny_data):
    """torchrun, 2 CPU processes: one tracker run per stage (the main process logs), and the process group lives on
    after a stage's trackers finish (accelerator.end_training() would end it before the student trains)."""
    import os
    import socket
    import subprocess
    import sys

    from conftest import REPO

    pytest.importorskip("tensorboard")
    mlflow = pytest.importorskip("mlflow")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data, train={"epochs": 1, "report_to": ["tensorboard", "mlflow"]})
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1", "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    cmd += ["--master_port", str(port), "-m", "distill_lora", "distill", "--layers", "odd", "--config", str(cfg)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "run"
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{out / 'tracking' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("run").experiment_id])
    assert sorted(run.info.run_name for run in runs) == ["run/seed-0/student-odd", "run/seed-0/teacher"]
    for stage in ("teacher", "student-odd"):
        metrics = json.loads((out / "seed-0" / stage / "metrics.json").read_text())
        log = (out / "seed-0" / stage / "train_log.jsonl").read_text().splitlines()
        steps = [json.loads(line)["step"] for line in log if '"step"' in line]
        scalars = _tensorboard_scalars(out / "tracking" / "tensorboard" / "run" / "seed-0" / stage)
        assert [s.step for s in scalars["train/loss"]] == steps  # once each, not once per process
        assert scalars["test/macro_f1"][-1].value == pytest.approx(metrics["test"]["macro_f1"], rel=1e-6)


@pytest.mark.parametrize(
    "error, status",
    [
        (None, "FINISHED"),
        (RuntimeError("boom"), "FAILED"),
        (KeyboardInterrupt(), "KILLED"),
        (LookupError(), "FINISHED"),
    ],
)
def test_a_stage_that_fails_or_is_interrupted_is_not_a_finished_run(tmp_path, monkeypatch, error, status):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config("default", ["train.report_to=[mlflow]"])
    ctx = SimpleNamespace(cfg=cfg, output_dir=tmp_path / "my-run")
    # LookupError stands for a normal end by exception (a sweep passes optuna.TrialPruned)
    with (
        contextlib.suppress(RuntimeError, KeyboardInterrupt, LookupError),
        tracker_run(ctx, "teacher", "seed-0/teacher", normal_ends=(LookupError,)) as run,
    ):
        for tracker in run.trackers:  # as the training Accelerator starts them
            tracker.start()
            run.started.append(tracker)
        if error is not None:
            raise error
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'my-run' / 'tracking' / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("my-run").experiment_id])
    assert found.info.run_name == "my-run/seed-0/teacher" and found.info.status == status


def test_a_resumed_stage_continues_its_tracker_run(tmp_path, tiny_bert6, tiny_data, monkeypatch):
    """Stopped by SIGTERM after step 3 and run again: one MLflow run for the stage, KILLED then continued to
    FINISHED, holding the steps from before and after the stop."""
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tiny_config(tmp_path, tiny_bert6, tiny_data, train={"report_to": ["mlflow"], "log_every": 1})
    monkeypatch.setenv("DISTILL_LORA_FAULT", "term@teacher:step:3")
    stopped = runner.invoke(app, ["train-teacher", "--config", str(cfg)])
    assert stopped.exit_code == 143, stopped.output
    client = mlflow.tracking.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'run' / 'tracking' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("run").experiment_id
    (first,) = client.search_runs([experiment])
    assert first.info.status == "KILLED"
    monkeypatch.delenv("DISTILL_LORA_FAULT")
    resumed = runner.invoke(app, ["train-teacher", "--config", str(cfg)])
    assert resumed.exit_code == 0 and "resuming from checkpoint-00000003" in resumed.output, resumed.output
    (run,) = client.search_runs([experiment])
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    steps = {m.step for m in client.get_metric_history(run.info.run_id, "train/loss")}
    total = json.loads((tmp_path / "run" / "seed-0" / "teacher" / "metrics.json").read_text())["validation_history"]
    assert min(steps) == 1 and max(steps) >= 6 and len(total) == 2
