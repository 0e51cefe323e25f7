"""Data-parallel runs: two real CPU processes (gloo) give the results of one process at the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, build_tiny_bert, tiny_config, tiny_texts, write_jsonl

STAGES = ("teacher", "student-odd", "lora-student")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _compare(config, out, processes: int) -> subprocess.CompletedProcess:
    # one thread per process: the two runs then add up in comparable ways, and 2 processes fit 2 cores
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
    }
    args = ["compare", "--config", str(config), "-o", str(out)]
    if processes == 1:
        cmd = [sys.executable, "-m", "distill_lora", *args]
    else:  # `accelerate launch --cpu --num_processes 2` would quietly start ONE process; torchrun starts two
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            str(processes),
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(_free_port()),
            "-m",
            "distill_lora",
            *args,
        ]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=REPO)


def _stage(out, stage):
    folder = out / "seed-0" / stage
    metrics = json.loads((folder / "metrics.json").read_text())
    rows = [json.loads(line) for line in (folder / "test_predictions.jsonl").read_text().splitlines()]
    return metrics, np.array([r["logits"] for r in rows]), rows


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    model = build_tiny_bert(tmp / "bert", 6, seed=3, dropout=0.0)  # no dropout: the two runs draw no random masks
    data = tmp / "data"
    # sizes that do not split evenly: a last training batch of 11 (6 + 5 per process) and a last
    # evaluation round that accelerate pads with repeated examples (gather_for_metrics must drop them)
    write_jsonl(data / "train.jsonl", tiny_texts(91, 0))
    write_jsonl(data / "validation.jsonl", tiny_texts(41, 1))
    test = tiny_texts(41, 2)
    write_jsonl(data / "test.jsonl", test)
    config = tiny_config(
        tmp,
        model,
        data,
        distill={"layers": ["odd"]},
        lora={"models": ["lora-student"]},
        report={"measure_speed": False, "bootstrap_resamples": 100},
        train={"epochs": 2, "batch_size": 16, "eval_batch_size": 16, "log_every": 1},
    )
    one = _compare(config, tmp / "one", 1)
    assert one.returncode == 0, one.stderr[-3000:]
    two = _compare(config, tmp / "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    return {"one": tmp / "one", "two": tmp / "two", "stdout_two": two.stdout, "test_labels": [r["label"] for r in test]}


def test_two_processes_really_ran(runs):
    for stage in STAGES:
        metrics, _, _ = _stage(runs["two"], stage)
        assert metrics["processes"] == 2 and metrics["device"].startswith("2 processes")
        assert _stage(runs["one"], stage)[0]["processes"] == 1
    # only the main process prints and writes
    assert runs["stdout_two"].count("[teacher] done") == 1
    assert not list((runs["two"] / "seed-0").glob(".*")), "no temporaries or work folders are left"


@pytest.mark.parametrize("stage", STAGES)
def test_two_processes_match_one_at_the_same_global_batch(runs, stage):
    m1, logits1, rows1 = _stage(runs["one"], stage)
    m2, logits2, rows2 = _stage(runs["two"], stage)
    # one line per test text, in the test split's order: the recorded labels are the split's labels
    assert len(runs["test_labels"]) == 41 and 0 < sum(runs["test_labels"]) < 41
    assert [r["label"] for r in rows1] == [r["label"] for r in rows2] == runs["test_labels"]
    # and the gathered logits are in that order too: each line's prediction is its own logits' argmax, and
    # the two-process logits match the one-process ones line by line (below)
    for rows, logits in ((rows1, logits1), (rows2, logits2)):
        assert [r["pred"] for r in rows] == logits.argmax(1).tolist()
    # the same global batches, split over two processes: equal up to float summation order (stated tolerance)
    assert np.abs(logits1 - logits2).max() < 1e-4
    for h1, h2 in zip(m1["validation_history"], m2["validation_history"], strict=True):
        for key in ("train_loss", "train_total_loss", "val_loss"):  # means of losses of logits equal to 1e-4
            assert h2[key] == pytest.approx(h1[key], rel=1e-4, abs=1e-5), key
    assert m1["selected_epoch"] == m2["selected_epoch"]
    margin = np.abs(logits1[:, 1] - logits1[:, 0])
    sure = margin > 1e-3
    assert (logits1.argmax(1) == logits2.argmax(1))[sure].all()


def test_teacher_targets_cache_is_the_same(runs):
    from safetensors.numpy import load_file

    [c1] = (runs["one"] / "seed-0" / "cache").glob("*.safetensors")
    [c2] = (runs["two"] / "seed-0" / "cache").glob("*.safetensors")
    # same teacher config; the name also carries the teacher weights' sha256, which differs in the last bits
    # (DDP's all-reduced gradients: max |Δ logit| ~1e-8), so only the config part must match
    assert c1.name.split("-")[1] == c2.name.split("-")[1]
    np.testing.assert_allclose(load_file(c1)["logits"], load_file(c2)["logits"], atol=1e-5)
