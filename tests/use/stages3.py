"""A tiny 3-class run for the tests of using a model: teacher and lora-student, string class names.

Built once per pytest session by the real single-stage commands (train-teacher, lora --stage lora-student), not by
`compare`, so these tests need no report. Shared by test_multiclass_use and test_browser (a memo in this module:
a session fixture defined in two test modules would build twice).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import yaml
from conftest import CLASSES3, tiny_config
from typer.testing import CliRunner

_BUILT: dict[str, Path] = {}


def three_class_run(tmp_path_factory, model: Path, data: Path) -> Path:
    """The run folder (seed-0/teacher, seed-0/lora-student), built on the first call."""
    if "run" not in _BUILT:
        from distill_lora.cli import app

        tmp = tmp_path_factory.mktemp("use3")
        cfg = tiny_config(
            tmp,
            model,
            data,
            data_settings={"label_names": CLASSES3, "label_map": {c: i for i, c in enumerate(CLASSES3)}},
            train={"epochs": 1},
        )
        for command in (["train-teacher"], ["lora", "--stage", "lora-student"]):
            result = CliRunner().invoke(app, [*command, "--config", str(cfg)])
            assert result.exit_code == 0, result.output
        _BUILT["run"] = tmp / "run"
    return _BUILT["run"]


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
