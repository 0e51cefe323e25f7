"""Sweep workers sharing one study (sweep.storage): PostgreSQL (a real server, tests/postgres_server.py) and the
run folder's SQLite file; dead workers found by the heartbeat; a storage that cannot be used is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pytest
from conftest import one_error_line, tiny_config
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from postgres_server import postgres_database, postgres_url  # noqa: F401 (fixtures, found by name)
from typer.testing import CliRunner

from distill_lora.cli import app

BUDGET = 5


def _config(tmp_path, model, data, stage="distill", epochs=2, **sweep):
    return tiny_config(
        tmp_path,
        model,
        data,
        train={"epochs": epochs, "batch_size": 16, "eval_batch_size": 32, "log_every": 2},
        sweep={
            "stage": stage,
            "sampler": "random",
            "pruning": False,
            "trials": BUDGET,
            "heartbeat_interval": 1,
            "grace_period": 4,
            "space": {f"{'distill' if stage == 'distill' else 'lora'}.train.lr": {"low": 1e-4, "high": 1e-2}},
            **sweep,
        },
    )


def _worker(cfg, storage: str | None, fault: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("DISTILL_LORA_FAULT", None)
    if fault:
        env["DISTILL_LORA_FAULT"] = fault
    args = [sys.executable, "-m", "distill_lora", "sweep", "--config", str(cfg)]
    args += ["--storage", storage] if storage else []
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(worker) -> str:
    out, _ = worker.communicate(timeout=600)
    assert worker.returncode == 0, out
    return out


def _study(storage: str):
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.parametrize("where", ["postgres", "sqlite"])
def test_two_workers_share_one_study(where, tmp_path, tiny_bert6, tiny_data, request):
    # postgres: a password in the URL (the test server trusts every local user) that must never be saved
    url = (
        request.getfixturevalue("postgres_database").replace("postgres@", "postgres:s3cret@")
        if where == "postgres"
        else None
    )
    cfg = _config(tmp_path, tiny_bert6, tiny_data, epochs=1)
    outs = [_finish(w) for w in [_worker(cfg, url), _worker(cfg, url)]]
    run = tmp_path / "run"
    study = _study(url or f"sqlite:///{run / 'sweep' / 'study.db'}")
    ran = [t for t in study.trials if not t.user_attrs.get("surplus")]
    assert len(ran) == BUDGET and all(t.state == TrialState.COMPLETE for t in ran)  # each trial once, the budget
    assert sorted(p.name for p in (run / "sweep").glob("trial-*")) == [f"trial-{t.number:04d}" for t in ran]
    for t in ran:  # each trial in its own folder, its values those the study recorded
        assert (
            json.loads((run / "sweep" / f"trial-{t.number:04d}" / "params.json").read_text())["values"]
            == t.user_attrs["values"]
        )
    best = json.loads((run / "sweep" / "best.json").read_text())
    assert best["val_macro_f1"] == max(t.value for t in ran)
    assert best["trial"] == min(t.number for t in ran if t.value == best["val_macro_f1"])
    both = "".join(outs)
    assert both.count("[teacher] training on") == 1  # the teacher: one worker trained it, the other waited
    assert both.count("[student-odd] training on") == 1  # the retrained best: once
    assert (run / "sweep" / "best" / "seed-0" / "student-odd" / "DONE").exists()
    assert all("Traceback" not in o for o in outs)
    if url:  # the password is in no file of the run, and in no line printed
        saved = [p for p in run.rglob("*") if p.is_file() and p.suffix in (".yaml", ".json", ".md", ".jsonl", ".csv")]
        assert saved and not [p for p in saved if "s3cret" in p.read_text(errors="replace")]
        assert "s3cret" not in both and "postgres:***@" in (run / "sweep" / "best_config.yaml").read_text()


@pytest.mark.parametrize("where", ["postgres", "sqlite"])
def test_a_worker_killed_mid_trial_has_its_trial_failed_by_the_heartbeat_and_retried(
    where, tmp_path, tiny_bert6, tiny_data, request
):
    url = request.getfixturevalue("postgres_database") if where == "postgres" else None
    cfg = _config(tmp_path, tiny_bert6, tiny_data, stage="lora-student")
    # the first worker dies (SIGKILL: no handler runs) after its first trial's first epoch was checkpointed
    dead = _worker(cfg, url, fault="kill@trial-0000:checkpoint:6")
    dead.communicate(timeout=600)
    assert dead.returncode == -9
    storage = url or f"sqlite:///{tmp_path / 'run' / 'sweep' / 'study.db'}"
    assert _study(storage).trials[0].state == TrialState.RUNNING  # nobody told the study: only the heartbeat can
    out = _finish(_worker(cfg, url))
    study = _study(storage)
    assert study.trials[0].state == TrialState.FAIL
    retry = next(t for t in study.trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == 0)
    assert retry.state == TrialState.COMPLETE and retry.params == study.trials[0].params
    assert "resuming from checkpoint-00000006" in out  # the retry continued the dead trial's checkpoint
    finished = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(finished) == BUDGET


@pytest.mark.parametrize(
    "storage, needles",
    [
        ("postgresql://nobody@127.0.0.1:1/db", ["sweep.storage", "127.0.0.1:1", "cannot open the database"]),
        ("mysql+pymysql://u:pw@127.0.0.1/db", ["sweep.storage", "pymysql", "not installed"]),
        ("not a url", ["sweep.storage", "not a database URL"]),
    ],
)
def test_a_storage_that_cannot_be_used_is_refused_in_one_line_before_anything_is_read(
    storage, needles, tmp_path, tiny_bert6, tiny_data
):
    cfg = _config(tmp_path, tiny_bert6, tiny_data)
    result = CliRunner().invoke(app, ["sweep", "--config", str(cfg), "--storage", storage])
    one_error_line(result, 2, *needles)
    assert "pw" not in result.output.replace("pymysql", "")  # the password is not printed either
    assert not (tmp_path / "run").exists()
