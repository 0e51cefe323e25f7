"""The throwaway PostgreSQL server (tests/postgres_server.py) is real and shared: two processes fill one study."""

from __future__ import annotations

import subprocess
import sys

import optuna
from optuna.trial import TrialState
from postgres_server import postgres_url  # noqa: F401 (the fixture: pytest finds it by name in this module)

# one worker: joins the study by name and runs 5 cheap trials, tagging each with its process id
WORKER = """
import os, sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
def objective(trial):
    trial.set_user_attr("pid", os.getpid())
    return -(trial.suggest_float("x", -1.0, 1.0) - 0.3) ** 2
optuna.load_study(study_name=sys.argv[2], storage=sys.argv[1]).optimize(objective, n_trials=5)
"""


def test_two_processes_share_one_study_on_postgres(postgres_url):  # noqa: F811 (the fixture, imported above)
    optuna.create_study(study_name="shared", storage=postgres_url, direction="maximize")
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, postgres_url, "shared"]) for _ in range(2)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]

    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    assert len(trials) == 10 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(10))  # distinct numbers, none lost to a race
    assert {t.user_attrs["pid"] for t in trials} == {w.pid for w in workers}  # both processes wrote to it
    assert study.best_value == max(t.value for t in trials)
