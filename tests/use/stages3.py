"""Helpers for the 3-class tests of using a model (the run itself is conftest's finished_run3): the recorded
probabilities of a stage, and a copy of a stage under other class names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import yaml


def recorded_probabilities(stage_dir: Path) -> tuple[list[int], np.ndarray]:
    """(pred, softmax of the logits) per test text, from the stage's test_predictions.jsonl."""
    rows = [json.loads(line) for line in (stage_dir / "test_predictions.jsonl").read_text().splitlines()]
    logits = np.array([r["logits"] for r in rows], dtype=np.float64)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))  # by hand, not through the code under test
    return [r["pred"] for r in rows], e / e.sum(axis=1, keepdims=True)


def with_label_names(stage_dir: Path, dest: Path, label_names: list[str]) -> Path:
    """A copy of a stage (in a run folder of its own) whose config.yaml names the classes `label_names`."""
    dest = dest / "run" / "seed-0" / stage_dir.name
    shutil.copytree(stage_dir, dest)
    cfg = yaml.safe_load((dest / "config.yaml").read_text(encoding="utf-8"))
    cfg["data"]["label_names"] = label_names  # label_map still maps the data's raw labels to the same ids
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return dest
