"""predict: the shared inference path reproduces the recorded test predictions; the CLI command."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.config import load_config
from distill_lora.errors import UserError
from distill_lora.train.data import load_splits
from distill_lora.use.predict import find_model_dir, load_predictor, read_texts_file

STAGES = ["teacher", "student-odd", "student-even", "lora-student", "lora-teacher"]
runner = CliRunner()


# ---------------------------------------------------------------- helpers (also used by test_export / test_serve)


def stage_path(finished_run, stage: str):
    return finished_run["output"] / "seed-0" / stage


def split_texts(stage_dir, split: str = "test") -> list[str]:
    """The split's texts, read through the stage's own config.yaml (as the round-trip promise says)."""
    return load_splits(load_config(str(stage_dir / "config.yaml")).data)[split].texts


def recorded(stage_dir) -> tuple[list[int], np.ndarray]:
    """Labels (pred_threshold when the stage has a decision threshold) and logits from test_predictions.jsonl."""
    rows = [json.loads(line) for line in (stage_dir / "test_predictions.jsonl").read_text().splitlines()]
    return [r.get("pred_threshold", r["pred"]) for r in rows], np.array([r["logits"] for r in rows])


def assert_matches_recorded(labels, logits, stage_dir) -> None:
    want_labels, want_logits = recorded(stage_dir)
    assert list(labels) == want_labels
    np.testing.assert_allclose(np.asarray(logits), want_logits, atol=1e-5, rtol=0)


def copy_stage(finished_run, stage: str, tmp_path, seed: int = 0):
    """A private copy of a stage in a run folder of its own (for tests that change files)."""
    dest = tmp_path / "run" / f"seed-{seed}" / stage
    shutil.copytree(stage_path(finished_run, stage), dest)
    return dest


# ---------------------------------------------------------------- round trip


@pytest.mark.parametrize("stage", STAGES)
def test_predictor_reproduces_recorded_test_predictions(finished_run, stage):
    d = stage_path(finished_run, stage)
    predictor = load_predictor(find_model_dir(finished_run["output"], stage))
    assert predictor.model_dir == d and predictor.max_length == 16
    preds = predictor.predict(split_texts(d))
    assert_matches_recorded([p["label_id"] for p in preds], [p["logits"] for p in preds], d)
    p = preds[0]
    assert p["label"] == ["not toxic", "toxic"][p["label_id"]]
    assert p["prob_positive"] == pytest.approx(np.exp(p["logits"][1]) / np.exp(p["logits"]).sum())


def test_batch_size_does_not_change_answers(finished_run):
    d = stage_path(finished_run, "student-odd")
    texts = split_texts(d)[:11]
    one = load_predictor(d, batch_size=1).logits(texts)
    np.testing.assert_allclose(load_predictor(d, batch_size=4).logits(texts), one, atol=1e-5, rtol=0)


def test_decision_threshold_sets_the_label(finished_run, tmp_path):
    d = copy_stage(finished_run, "teacher", tmp_path)
    texts = split_texts(d)
    p_pos = np.array([p["prob_positive"] for p in load_predictor(d).predict(texts)])
    threshold = float(np.median(p_pos))
    (d / "decision.json").write_text(json.dumps({"threshold": threshold}))
    preds = load_predictor(d).predict(texts)
    assert [p["label_id"] for p in preds] == [int(x >= threshold) for x in p_pos]
    assert 0 < sum(p["label_id"] for p in preds) < len(preds)  # the cut really splits them
    (d / "decision.json").write_text(json.dumps({"threshold": "high"}))
    with pytest.raises(UserError, match="decision.json"):
        load_predictor(d)


# ---------------------------------------------------------------- finding the folder


def test_find_model_dir_defaults_and_refusals(finished_run, tmp_path):
    out = finished_run["output"]
    assert find_model_dir(out) == out / "seed-0" / "teacher"
    assert find_model_dir(out / "seed-0" / "lora-student") == out / "seed-0" / "lora-student"
    with pytest.raises(UserError, match="finished stages there: lora-student, lora-teacher"):
        find_model_dir(out, "student-7")
    with pytest.raises(UserError, match="has seeds 0"):
        find_model_dir(out, "teacher", seed=5)
    # the smallest seed that has the stage; an unfinished stage is refused
    copy_stage(finished_run, "teacher", tmp_path, seed=3)
    copy_stage(finished_run, "teacher", tmp_path, seed=1)
    run = tmp_path / "run"
    assert find_model_dir(run) == run / "seed-1" / "teacher"
    (run / "seed-1" / "teacher" / "DONE").unlink()
    with pytest.raises(UserError, match="not a finished stage"):
        find_model_dir(run, seed=1)
    assert find_model_dir(run) == run / "seed-3" / "teacher"


def test_read_texts_file_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first text\n\n  \nsecond text\n")
    (tmp_path / "a.jsonl").write_text('{"tweet": "one", "x": 1}\n{"tweet": 2}\n')
    (tmp_path / "a.csv").write_text('id,text\n1,"hello, world"\n2,bye\n')
    assert read_texts_file(tmp_path / "a.txt") == ["first text", "second text"]
    assert read_texts_file(tmp_path / "a.jsonl", "tweet") == ["one", "2"]
    assert read_texts_file(tmp_path / "a.csv", "tweet") == ["hello, world", "bye"]  # falls back to "text"
    with pytest.raises(UserError, match="row 1: no text in column 'text'"):
        read_texts_file(tmp_path / "a.jsonl")


# ---------------------------------------------------------------- the command


def test_cli_predict_text_arguments(finished_run):
    texts = ["you are vermin and trash", "lovely park with friends"]
    result = runner.invoke(app, ["predict", str(finished_run["output"]), *texts])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    want = load_predictor(stage_path(finished_run, "teacher")).predict(texts)
    assert lines == [f"{p['label']}\tp(toxic)={p['prob_positive']:.4f}\t{p['text']}" for p in want]


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv"])
def test_cli_predict_file_and_json(finished_run, tmp_path, fmt):
    d = stage_path(finished_run, "lora-student")
    texts = split_texts(d)[:5]
    path = tmp_path / f"in.{fmt}"
    if fmt == "txt":
        path.write_text("\n".join(texts) + "\n")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    else:
        path.write_text("id,text\n" + "".join(f'{i},"{t}"\n' for i, t in enumerate(texts)))
    result = runner.invoke(
        app, ["predict", str(finished_run["output"]), "--stage", "lora-student", "--file", str(path), "--json"]
    )
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert [g["text"] for g in got] == texts
    assert set(got[0]) == {"text", "label", "label_id", "prob_positive", "probabilities"}  # binary keeps its fields
    assert got[0]["probabilities"] == pytest.approx(
        {"not toxic": 1 - got[0]["prob_positive"], "toxic": got[0]["prob_positive"]}
    )
    want_labels, _ = recorded(d)
    assert [g["label_id"] for g in got] == want_labels[:5]


@pytest.mark.parametrize("case", ["unknown stage", "no texts", "missing file", "not a run", "unfinished"])
def test_cli_predict_user_errors(finished_run, tmp_path, case):
    out = str(finished_run["output"])
    unfinished = tmp_path / "run" / "seed-0" / "teacher"
    if case == "unfinished":
        copy_stage(finished_run, "teacher", tmp_path)
        (unfinished / "DONE").unlink()
    args, message = {
        "unknown stage": (["--stage", "student-9", "hi"], "no such stage"),
        "no texts": ([], "nothing to classify"),
        "missing file": (["--file", str(tmp_path / "none.txt")], "no such file"),
        "not a run": ([], "no seed-S/ folders"),
        "unfinished": ([], "not a finished stage"),
    }[case]
    run_dir = {"not a run": str(tmp_path), "unfinished": str(tmp_path / "run")}.get(case, out)
    result = runner.invoke(app, ["predict", run_dir, *args])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and result.output.startswith("error:"), result.output
    assert message in result.output and "Traceback" not in result.output
