"""distill-lora atlas --shard I/N: processes sharing a run folder train each stage once, then a gather writes the
report with the numbers an unsharded atlas gives; what it refuses, in one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import one_error_line, tiny_config
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.config import load_config
from distill_lora.experiment import atlas

DOCS = Path(__file__).resolve().parents[2] / "docs" / "atlas.md"


def _recipe(name: str) -> str:
    """The bash block that follows '<!-- tested: NAME' in docs/atlas.md: the docs' recipe is what runs here."""
    match = re.search(rf"<!-- tested: {name}\b.*?-->\n```bash\n(.*?)```", DOCS.read_text(), re.S)
    assert match, f"docs/atlas.md lost its tested recipe {name}"
    return match.group(1)


def _env(**extra) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **extra}  # one thread: equal float sums
    env.pop("DISTILL_LORA_FAULT", None)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # distill-lora, as installed
    return env


def _config(tmp_path, model, data, output: str, seeds=(0, 1)):
    return tiny_config(
        tmp_path / output,
        model,
        data,
        output_dir=str(tmp_path / output / "run"),
        seeds=list(seeds),
        train={"epochs": 1},
        lora={"models": ["lora-student"]},
        report={"bootstrap_resamples": 100, "measure_speed": False},
        atlas={"layers": ["odd"], "recipes": ["ce", "logits"]},  # 3 arms: two distil, the logits one from the cache
    )


def _atlas(cfg, *args) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "distill_lora", "atlas", "--config", str(cfg), *args]
    return subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _bash(script: str, cwd, **env) -> subprocess.Popen:
    return subprocess.Popen(
        ["bash", "-c", script], cwd=cwd, env=_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _done(process) -> str:
    out, _ = process.communicate(timeout=900)
    assert process.returncode == 0, out
    return out


def _numbers(run) -> dict:
    """Every trained model's numbers in results.json (not its times)."""
    per_seed = json.loads((run / "results.json").read_text())["comparison"]["per_seed"]
    keep = ("test", "validation_history", "selected_epoch", "weights_sha256", "teacher_layers", "predictions")
    return {(seed, s): {k: m.get(k) for k in keep} for seed, stages in per_seed.items() for s, m in stages.items()}


def test_the_docs_shell_loop_of_two_shards_and_a_gather_gives_the_numbers_of_one_unsharded_atlas(
    tmp_path, tiny_bert6, tiny_data
):
    cfg = _config(tmp_path, tiny_bert6, tiny_data, "sharded")
    gathered = _done(_bash(_recipe("atlas-shell-loop"), tmp_path, CONFIG=str(cfg), N="2"))
    both = (tmp_path / "shard-0.log").read_text() + (tmp_path / "shard-1.log").read_text()
    assert both.count("[teacher] training on") == 2  # once per seed, by whichever shard needed it first
    assert both.count("] training on") == 2 + 2 * 3  # and each of the 3 arms once per seed
    assert "[shard 0/2] done" in both and "[shard 1/2] done" in both
    assert "training on" not in gathered  # the gather trains nothing
    run = tmp_path / "sharded" / "run"
    one = _config(tmp_path, tiny_bert6, tiny_data, "unsharded")
    _done(_atlas(one))
    assert _numbers(run) == _numbers(tmp_path / "unsharded" / "run")
    assert "## Atlas: which model to ship" in (run / "report.md").read_text()


def test_a_gather_before_every_shard_finished_is_refused_naming_them(tmp_path, tiny_bert6, tiny_data):
    cfg = _config(tmp_path, tiny_bert6, tiny_data, "early")
    shards = tmp_path / "early" / "run" / "shards"
    shards.mkdir(parents=True)
    # the config as the atlas command makes it (the grid filled in), as a shard records it
    cfg_hash = atlas.shard_config(load_config(str(cfg), atlas.atlas_overrides(load_config(str(cfg), []), 6)))
    (shards / "0-of-3.json").write_text(json.dumps({"state": "finished", "config": cfg_hash}))
    running = {"state": "running", "config": cfg_hash, "process": "process 42 on gpu-7", "started": "today"}
    (shards / "1-of-3.json").write_text(json.dumps(running))
    result = CliRunner().invoke(app, ["atlas", "--config", str(cfg)])
    one_error_line(result, 2, "shards 1/3 (running or stopped: process 42 on gpu-7", "2/3 (not started)", "--shard I/3")
    assert not (tmp_path / "early" / "run" / "seed-0").exists()  # nothing trained
    # a shard of another config is named as such
    (shards / "1-of-3.json").write_text(json.dumps({**running, "config": "other"}))
    result = CliRunner().invoke(app, ["atlas", "--config", str(cfg)])
    one_error_line(result, 2, "shard 1/3 ran another config")


def test_the_docs_slurm_array_runs_as_its_tasks_would(tmp_path, tiny_bert6, tiny_data):
    cfg = _config(tmp_path, tiny_bert6, tiny_data, "slurm", seeds=(0,))
    task = _recipe("atlas-slurm-array")
    tasks = [
        _bash(task, tmp_path, CONFIG=str(cfg), SLURM_ARRAY_TASK_ID=str(i), SLURM_ARRAY_TASK_COUNT="2") for i in (0, 1)
    ]
    outs = [_done(t) for t in tasks]
    assert "[shard 0/2] done" in outs[0] and "[shard 1/2] done" in outs[1]
    gather = re.search(r"--wrap '(.*)'", DOCS.read_text()).group(1).replace("configs/atlas-olid.yaml", str(cfg))
    assert "training on" not in _done(_bash(gather, tmp_path))
    assert (tmp_path / "slurm" / "run" / "report.md").exists()


@pytest.mark.parametrize(
    "shard, needles",
    [("3/2", ["--shard 3/2", "0 to 1"]), ("0/0", ["--shard 0/0", "N at least 1"]), ("x", ["--shard 'x'", "I/N"])],
)
def test_bad_shards_are_one_line(shard, needles, tmp_path, tiny_bert6, tiny_data):
    cfg = _config(tmp_path, tiny_bert6, tiny_data, "bad")
    one_error_line(CliRunner().invoke(app, ["atlas", "--config", str(cfg), "--shard", shard]), 2, *needles)
    assert not (tmp_path / "bad" / "run").exists()


def test_a_second_gatherer_is_refused_while_the_first_holds_the_run_folder(tmp_path, tiny_bert6, tiny_data):
    from distill_lora.experiment.runs import RunLock

    cfg = _config(tmp_path, tiny_bert6, tiny_data, "two")
    run = tmp_path / "two" / "run"
    run.mkdir(parents=True)
    with RunLock(run):  # the first gatherer
        result = CliRunner().invoke(app, ["atlas", "--config", str(cfg)])
    one_error_line(result, 3, f"run folder {run} is in use by process {os.getpid()}")
