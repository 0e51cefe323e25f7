"""Scripting: --json prints one JSON document on stdout (progress on stderr), --quiet prints no progress, and
the worked example of docs/scripting.md (jq picks the best student) runs as written."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO
from typer.testing import CliRunner

from distill_lora.cli import app

runner = CliRunner()

# a small schema: every key a script may rely on, with its type
STAGE_KEYS = {"seed": int, "stage": str, "folder": str, "model_type": str, "test": dict, "per_class": dict}
COMPARE_KEYS = {"format": int, "command": str, "run_dir": str, "report": str, "label_names": list, "seeds": list,
                "stages": list, "mean_over_seeds": dict, "verdicts": list}  # fmt: skip


def _check(doc: dict, keys: dict):
    for key, kind in keys.items():
        assert isinstance(doc.get(key), kind), (key, doc.get(key))


@pytest.fixture(scope="module")
def run_copy(finished_run, tmp_path_factory):
    """The shared tiny run copied (its stages are reused: a command on it only rebuilds what it writes)."""
    out = tmp_path_factory.mktemp("scripting") / "run"
    shutil.copytree(finished_run["output"], out)
    return {**finished_run, "output": out}


def test_compare_json_is_one_document_matching_the_run_folder(run_copy):
    out = run_copy["output"]
    r = runner.invoke(app, ["compare", "-c", str(run_copy["config"]), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert "[teacher] reusing" in r.stderr or "reus" in r.stderr  # progress went to stderr
    doc = json.loads(r.stdout)  # stdout holds the document and nothing else
    _check(doc, COMPARE_KEYS)
    assert doc["run_dir"] == str(out.resolve()) and doc["command"] == "compare"
    results = json.loads((out / "results.json").read_text())
    per_seed = results["comparison"]["per_seed"]["0"]
    assert sorted(s["stage"] for s in doc["stages"]) == sorted(per_seed)
    for s in doc["stages"]:
        _check(s, STAGE_KEYS)
        metrics = json.loads((out / "seed-0" / s["stage"] / "metrics.json").read_text())
        assert s["folder"] == str((out / "seed-0" / s["stage"]).resolve())
        assert (
            s["test"]["macro_f1"] == metrics["test"]["macro_f1"]
            and s["test"]["accuracy"] == metrics["test"]["accuracy"]
        )
    analysis = json.loads((out / "analysis.json").read_text())
    keys = ("a", "b", "family", "verdict", "winner", "p_holm")
    assert [tuple(v[k] for k in keys) for v in doc["verdicts"]] == [
        tuple(p[k] for k in keys) for p in analysis["pairs"]
    ]
    primary = [v for v in doc["verdicts"] if v["family"] == "primary"]
    assert ("teacher", "student-odd") in {(v["a"], v["b"]) for v in primary}  # the assignment's questions
    assert all(v["detectable_macro_f1"] == p["power"]["mdd"]["macro_f1"] for v, p in zip(primary, analysis["pairs"]))
    assert doc["mean_over_seeds"]["teacher"]["macro_f1"]["mean"] == analysis["summary"]["teacher"]["macro_f1"]["mean"]


def test_single_stage_json_and_quiet(run_copy):
    cfg, out = str(run_copy["config"]), str(run_copy["output"])
    r = runner.invoke(app, ["distill", "--layers", "odd", "-c", cfg, "-o", out, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["command"] == "distill" and [s["stage"] for s in doc["stages"]] == ["student-odd"]
    _check(doc["stages"][0], STAGE_KEYS)
    r = runner.invoke(app, ["lora", "-c", cfg, "-o", out, "--quiet"])
    assert r.exit_code == 0 and r.stdout == "" and r.stderr == "", r.output


def test_evaluate_json_lists_every_stage_on_the_other_data(run_copy):
    out = run_copy["output"]
    r = runner.invoke(app, ["evaluate", str(out), "--data", str(run_copy["data"]), "--name", "again", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["command"] == "evaluate" and doc["name"] == "again" and doc["n"] == 40
    ood = json.loads((out / "results.json").read_text())["out_of_domain"]["again"]["comparison"]["per_seed"]["0"]
    assert {s["stage"]: s["test"]["macro_f1"] for s in doc["stages"]} == {
        k: m["test"]["macro_f1"] for k, m in ood.items()
    }


def test_json_errors_keep_stdout_empty_and_use_the_documented_exit_code(run_copy, tmp_path):
    r = runner.invoke(app, ["compare", "-c", str(run_copy["config"]), "--set", "train.lr=-1", "--json"])
    assert r.exit_code == 2 and r.stdout == "" and "'train.lr' must be > 0" in r.stderr


def test_the_docs_jq_example_picks_the_best_student(run_copy, tmp_path):
    if shutil.which("jq") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("jq is not installed: .ci/run installs it")
        pytest.skip("jq is not installed on this machine (CI installs it)")
    script = re.search(r"```bash\n(.*?)```", (REPO / "docs" / "scripting.md").read_text(), re.S).group(1)
    bin_dir = os.path.dirname(sys.executable)  # where pip put the distill-lora command
    env = {**os.environ, "CONFIG": str(run_copy["config"]), "RUN_DIR": str(run_copy["output"])}
    env["PATH"] = bin_dir + os.pathsep + env["PATH"]
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    stage, score = done.stdout.split()
    results = json.loads((run_copy["output"] / "results.json").read_text())["comparison"]["per_seed"]["0"]
    students = {s: m["test"]["macro_f1"] for s, m in results.items() if s.startswith("student-") and "int8" not in s}
    assert stage in students and float(score) == pytest.approx(max(students.values()), abs=1e-4)
