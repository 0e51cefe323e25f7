"""Faults: SIGKILL at many points, SIGTERM, NaN, the run lock, a full disk, a changed config mid-stage.

The kill chain runs compare in subprocesses that die (SIGKILL, as on a preempted machine) at points
named by DISTILL_LORA_FAULT, each resuming what the previous one left; the finished run must equal an
uninterrupted reference run exactly (CPU, same seed).
"""

import errno
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, tiny_config
from typer.testing import CliRunner

from distill_lora.cli import app

runner = CliRunner()
STAGES = ["teacher", "student-odd", "student-even", "lora-student", "lora-teacher"]
# pipeline order; 6 optimiser steps per epoch, 2 epochs, a checkpoint every 2 steps
KILL_POINTS = [
    "teacher:step:1",
    "teacher:step:3",
    "teacher:checkpoint:4",
    "teacher:validated:1",
    "teacher:step:9",
    "teacher:before-done",
    "teacher:done",
    "student-odd:step:5",
    "student-odd:validated:2",
    "student-even:checkpoint:6",
    "lora-student:step:2",
    "lora-teacher:before-done",
]


def _config(tmp_path, model, data):
    return tiny_config(tmp_path, model, data, train={"epochs": 2, "checkpoint_every": 2})


def _run_cli(args, fault=None, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("DISTILL_LORA_FAULT", None)
    if fault:
        env["DISTILL_LORA_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "distill_lora", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _outcome(run_dir):
    out = {}
    for stage in STAGES:
        d = run_dir / "seed-0" / stage
        m = json.loads((d / "metrics.json").read_text())
        out[stage] = {k: m[k] for k in ("test", "validation_history", "selected_epoch", "train_loss")}
        out[stage]["predictions"] = (d / "test_predictions.jsonl").read_text()
    return out


def _nothing_corrupt(run_dir):
    """Every stage folder a later command trusts (DONE) is complete; nothing half-written is visible."""
    seed = run_dir / "seed-0"
    if not seed.exists():
        return
    for d in seed.iterdir():
        if d.name.startswith(".") or d.name == "cache":
            continue
        assert (d / "DONE").exists(), f"{d} has no DONE marker but is visible"
        json.loads((d / "metrics.json").read_text())
        assert (d / "test_predictions.jsonl").exists() and (d / "config.yaml").exists()
    for f in (seed / "cache").glob("*"):  # the teacher's targets and the cost of computing them, no temporaries
        assert f.name.endswith((".safetensors", ".safetensors.cost.json")) and not f.name.startswith("."), f


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_bert6, tiny_data):
    tmp = tmp_path_factory.mktemp("reference")
    cfg = _config(tmp, tiny_bert6, tiny_data)
    r = runner.invoke(app, ["compare", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    return {"config": cfg, "outcome": _outcome(tmp / "run")}


def test_kill_chain_resumes_to_identical_results(reference, tmp_path):
    out = tmp_path / "killed"
    args = ["compare", "--config", str(reference["config"]), "-o", str(out)]
    kills = 0
    for point in KILL_POINTS:
        r = _run_cli(args, fault=f"kill@{point}")
        assert r.returncode == -9, f"not killed at {point}: rc {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        kills += 1
        _nothing_corrupt(out)
        assert (out / ".lock").exists()  # the dead process could not release it: the next run must take it over
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "removing a stale lock" in r.output
    assert kills >= 10
    assert _outcome(out) == reference["outcome"]
    assert not list((out / "seed-0").glob(".*"))  # no work folders or temporaries left


def test_sigterm_checkpoints_and_resume_matches(reference, tmp_path):
    out = tmp_path / "termed"
    args = ["compare", "--config", str(reference["config"]), "-o", str(out)]
    r = _run_cli(args, fault="term@teacher:step:3")
    assert r.returncode == 143, r.stderr[-2000:]
    assert "SIGTERM received" in r.stderr and "run the same command again to resume" in r.stderr
    assert "Traceback" not in r.stderr
    assert (out / "seed-0" / ".teacher.work" / "checkpoint-00000003" / "state.json").exists()
    assert not (out / ".lock").exists()  # a clean exit releases the lock
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "resuming from checkpoint-00000003" in r.output
    assert _outcome(out) == reference["outcome"]


def test_sigterm_before_training_starts_is_one_line_and_releases_the_lock(tiny_bert6, tiny_data, tmp_path):
    # at a stage's start (after the teacher, before the student trains) no trainer handler is installed yet
    cfg = _config(tmp_path, tiny_bert6, tiny_data)
    r = _run_cli(["compare", "--config", str(cfg)], fault="term@student-odd:start")
    assert r.returncode == 143, r.stderr[-2000:]
    assert "interrupted by SIGTERM" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / ".lock").exists()  # unwound like Ctrl+C: the run lock released
    assert (tmp_path / "run" / "seed-0" / "teacher" / "DONE").exists()


def test_nan_loss_stops_with_the_step_named(tiny_bert6, tiny_data, tmp_path, monkeypatch):
    cfg = _config(tmp_path, tiny_bert6, tiny_data)
    monkeypatch.setenv("DISTILL_LORA_FAULT", "nan@teacher:nan:3")
    r = runner.invoke(app, ["train-teacher", "--config", str(cfg)])
    assert r.exit_code == 2
    assert "loss became nan at step 3" in r.output and "Traceback" not in r.output
    seed = tmp_path / "run" / "seed-0"
    assert not (seed / "teacher").exists()
    assert (seed / ".teacher.work" / "checkpoint-00000002").exists()  # the last good checkpoint is kept
    monkeypatch.delenv("DISTILL_LORA_FAULT")
    r = runner.invoke(app, ["train-teacher", "--config", str(cfg)])
    assert r.exit_code == 0 and "resuming from checkpoint-00000002" in r.output


def test_lock_refuses_a_second_writer_and_takes_over_a_stale_one(tiny_bert6, tiny_data, tmp_path):
    import socket

    cfg = _config(tmp_path, tiny_bert6, tiny_data)
    run = tmp_path / "run"
    run.mkdir()
    lock = run / ".lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    r = runner.invoke(app, ["train-teacher", "--config", str(cfg)])
    assert r.exit_code == 3 and f"is in use by process {os.getpid()}" in r.output  # 3: busy, not bad input
    lock.write_text(json.dumps({"pid": 12345, "host": "another-host", "started": "then"}))
    r = runner.invoke(app, ["train-teacher", "--config", str(cfg)])
    assert r.exit_code == 3 and "on another-host" in r.output and "delete" in r.output
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "then"}))
    r = runner.invoke(app, ["train-teacher", "--config", str(cfg), "--set", "train.epochs=1"])
    assert r.exit_code == 0, r.output
    assert "removing a stale lock" in r.output and not lock.exists()


def test_changed_config_discards_an_unfinished_stage(reference, tmp_path):
    out = tmp_path / "changed"
    args = ["train-teacher", "--config", str(reference["config"]), "-o", str(out)]
    assert _run_cli(args, fault="kill@teacher:step:3").returncode == -9
    r = runner.invoke(app, args + ["--set", "teacher.train.lr=2e-3"])
    assert r.exit_code == 0, r.output
    assert "discarding the unfinished run" in r.output and "resuming" not in r.output


def test_disk_full_leaves_nothing_half_written(tiny_bert6, tiny_data, tmp_path, monkeypatch):
    from distill_lora.experiment import stage

    cfg = _config(tmp_path, tiny_bert6, tiny_data)

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(stage, "atomic_write_text", full)  # the stage skeleton writes config.yaml
    r = runner.invoke(app, ["train-teacher", "--config", str(cfg), "--set", "train.epochs=1"])
    assert r.exit_code == 1
    assert "No space left on device" in r.output and "run the same command again" in r.output
    assert "Traceback" not in r.output
    seed = tmp_path / "run" / "seed-0"
    assert not (seed / "teacher").exists() and not list(seed.glob(".teacher.tmp-*"))
    assert not (tmp_path / "run" / ".lock").exists()


def test_loop_state_keeps_the_checkpoint_keys_of_earlier_versions():
    """A checkpoint's "loop" JSON is LoopState's fields: an unfinished run saved before LoopState existed (this dict
    holds the keys that version wrote, in its order) must load, and be saved again with the same keys in that order."""
    from dataclasses import asdict

    from distill_lora.train.trainer import LoopState

    saved = {
        "epoch": 2,
        "batches_done": 5,
        "examples_done": 40,
        "epoch_done": False,
        "step": 4,
        "seen": 136,
        "train_time": 0.41,
        "sums": {"ce": 27.6, "loss": 27.6},
        "history": [{"epoch": 1, "val_loss": 0.69}],
        "best_score": 0.69,
        "selected_epoch": 1,
        "since_best": 0,
        "stopped_early": False,
        "log_bytes": 812,
        "wall_time": 1.7,
    }
    state = LoopState(**json.loads(json.dumps(saved)))
    assert json.dumps(asdict(state)) == json.dumps(saved)
    assert list(asdict(LoopState())) == list(saved)  # a fresh run writes the same keys
