"""Using a model with three classes: predict, the web API and page, export and its model card.

The stages come from conftest's finished_run3 (a tiny 3-class compare, string class names).
"""

import json
import re
import shutil

import numpy as np
import pytest
from conftest import CLASSES3, one_error_line
from fastapi.testclient import TestClient
from stages3 import recorded_probabilities
from test_predict import split_texts
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.errors import UserError
from distill_lora.use import serve
from distill_lora.use.predict import decide, format_lines, load_predictor, prediction_dicts, to_json

runner = CliRunner()
STAGES3 = ["teacher", "lora-student"]


@pytest.fixture(scope="module")
def run3(finished_run3):
    return finished_run3["output"]


def stage3(run3, stage: str):
    return run3 / "seed-0" / stage


def assert_distribution(probabilities: dict, label: str) -> None:
    """Every class in order, a distribution, and the label is its most probable class."""
    assert list(probabilities) == CLASSES3
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(0.0 <= p <= 1.0 for p in probabilities.values())
    assert label == max(probabilities, key=probabilities.get)


# ---------------------------------------------------------------- the pure part: logits → answers


def test_answers_from_hand_made_logits():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0], [0.0, 0.0, 0.5]])
    ids, probs = decide(logits)
    assert ids.tolist() == [0, 1, 2]
    e = np.exp(2.0)
    np.testing.assert_allclose(probs[0], [e / (e + 2), 1 / (e + 2), 1 / (e + 2)], rtol=1e-12)
    answers = prediction_dicts(["a", "b", "c"], ids, probs, logits, CLASSES3)
    assert [a["label"] for a in answers] == CLASSES3
    assert "prob_positive" not in answers[0]  # three classes: no positive class
    assert answers[1]["probabilities"]["offensive language"] == pytest.approx(np.exp(3) / (np.exp(3) + np.e + 1))
    assert format_lines(answers, CLASSES3).splitlines()[0] == f"hate speech\tp={e / (e + 2):.4f}\ta"
    assert set(json.loads(to_json(answers))[0]) == {"text", "label", "label_id", "probabilities"}
    with pytest.raises(UserError, match="two classes"):
        decide(logits, threshold=0.5)
    # two classes keep prob_positive, p(positive) in the text line, and the threshold
    binary = prediction_dicts(["x"], *decide(np.array([[0.0, 1.0]]), threshold=0.9), [[0.0, 1.0]], ["ok", "bad"])
    p1 = np.e / (1 + np.e)
    assert binary[0]["label"] == "ok" and binary[0]["prob_positive"] == pytest.approx(p1)
    assert binary[0]["probabilities"] == pytest.approx({"ok": 1 - p1, "bad": p1})
    assert format_lines(binary, ["ok", "bad"]) == f"ok\tp(bad)={p1:.4f}\tx"


# ---------------------------------------------------------------- predict


@pytest.mark.parametrize("stage", STAGES3)
def test_cli_predict_json_gives_every_class(run3, stage):
    d = stage3(run3, stage)
    texts = split_texts(d)
    result = runner.invoke(app, ["predict", str(run3), "--stage", stage, "--json", *texts])
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    want_pred, want_probs = recorded_probabilities(d)
    assert [g["text"] for g in got] == texts
    for g, pred, probs in zip(got, want_pred, want_probs):
        assert set(g) == {"text", "label", "label_id", "probabilities"}  # prob_positive: absent with 3 classes
        assert_distribution(g["probabilities"], g["label"])
        assert g["label_id"] == pred and g["label"] == CLASSES3[pred]
        np.testing.assert_allclose(list(g["probabilities"].values()), probs, atol=1e-5, rtol=0)


def test_cli_predict_lines(run3):
    texts = ["you are vermin and trash", "lovely park with\tfriends"]
    result = runner.invoke(app, ["predict", str(run3), *texts])
    assert result.exit_code == 0, result.output
    want = load_predictor(stage3(run3, "teacher")).predict(texts)
    assert result.stdout.strip().splitlines() == [
        f"{w['label']}\tp={w['probabilities'][w['label']]:.4f}\t{' '.join(w['text'].split())}" for w in want
    ]


def test_decision_threshold_is_refused_with_three_classes(run3, tmp_path):
    d = tmp_path / "run" / "seed-0" / "teacher"
    shutil.copytree(stage3(run3, "teacher"), d)
    (d / "decision.json").write_text(json.dumps({"threshold": 0.5}))
    fix = "remove decision.json to predict the most probable class"
    one_error_line(runner.invoke(app, ["predict", str(tmp_path / "run"), "hello"]), 2, "decision.json", "3", fix)
    one_error_line(runner.invoke(app, ["export", str(d), str(tmp_path / "out")]), 2, "decision.json", fix)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    with pytest.raises(UserError, match="thresholds decide between two classes"):
        serve.create_app(d)


# ---------------------------------------------------------------- serve: the API and the page


@pytest.fixture(scope="module")
def client3(run3):
    return TestClient(serve.create_app(stage3(run3, "teacher")))


def test_api_gives_every_class(client3, run3):
    texts = ["you are vermin", "lovely sunny park", "they are all garbage", "idiot"]
    want = load_predictor(stage3(run3, "teacher")).predict(texts)
    batch = client3.post("/api/predict", json={"texts": texts})
    assert batch.status_code == 200
    for got, w in zip(batch.json()["predictions"], want):
        assert_distribution(got["probabilities"], got["label"])
        assert "prob_positive" not in got and got["label_id"] == CLASSES3.index(got["label"])
        assert got["probabilities"] == pytest.approx(w["probabilities"], abs=1e-6)
    one = client3.post("/api/predict", json={"text": texts[0]}).json()["prediction"]
    assert_distribution(one["probabilities"], one["label"])
    assert client3.get("/api/model").json()["label_names"] == CLASSES3


def test_page_names_every_class(client3, run3):
    page = client3.get("/").text
    assert "<h1>Which class is it?</h1>" in page and "Is it" not in page
    assert "Classes: hate speech · offensive language · neither" in page
    assert "F1 positive" not in page and "ROC AUC (one-vs-rest, macro)" in page
    per_class = json.loads((stage3(run3, "teacher") / "metrics.json").read_text())["test"]["per_class"]
    for name in CLASSES3:
        assert f"<tr><td>F1 {name}</td><td>{per_class[name]['f1']:.4f}</td></tr>" in page


def test_page_escapes_class_names():
    evil = ["<b>hate</b>", 'off & "x"', "</script><script>alert(1)</script>"]
    info = dict.fromkeys(("stage", "seed", "model_type", "depth", "run_dir", "model_dir"), "s")
    info["test"] = {"accuracy": 0.5, "per_class": {n: {"f1": 0.5} for n in evil}}
    page = serve.render_page(info, evil, "n0nce")
    assert "<b>" not in page and "alert(1)</script>" not in page
    assert "Classes: &lt;b&gt;hate&lt;/b&gt; · off &amp; &quot;x&quot;" in page
    assert "<tr><td>F1 &lt;b&gt;hate&lt;/b&gt;</td>" in page
    labels_js = re.search(r"const LABELS = (.*);", page).group(1)
    assert json.loads(labels_js) == evil  # the script gets the very names, as a JSON literal with no '<'


# ---------------------------------------------------------------- export and the model card


def card_per_class_rows(card: str) -> dict:
    """{class: (precision, recall, f1, support)} from the card's per-class table."""
    rows = re.findall(r"^\| (\d+) \| ([^|]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+) \|$", card, re.M)
    return {name: (float(p), float(r), float(f), int(n)) for _, name, p, r, f, n in rows}


@pytest.mark.parametrize("stage, merge", [("teacher", False), ("lora-student", True)])
def test_export_card_lists_classes_and_per_class_metrics(run3, tmp_path, stage, merge):
    d, out = stage3(run3, stage), tmp_path / "export"
    result = runner.invoke(app, ["export", str(run3), "--stage", stage, str(out), *(["--merge"] if merge else [])])
    assert result.exit_code == 0, result.output
    card = (out / "README.md").read_text()
    per_class = json.loads((d / "metrics.json").read_text())["test"]["per_class"]
    rows = card_per_class_rows(card)
    assert list(rows) == CLASSES3
    for name, (p, r, f, n) in rows.items():
        m = per_class[name]
        assert (p, r, f, n) == (round(m["precision"], 4), round(m["recall"], 4), round(m["f1"], 4), m["support"])
    assert "Labels: 0 = hate speech, 1 = offensive language, 2 = neither" in card
    assert "the most probable of the 3 classes (argmax" in card
    assert "positive class" not in card and "F1 (" not in card
    assert "ROC AUC (one-vs-rest, macro average over classes)" in card
    export_info = json.loads((out / "export.json").read_text())
    assert export_info["threshold"] is None
    if merge:
        assert export_info["merge_check"]["checked"] and export_info["merge_check"]["same_labels"]
    # the exported folder answers as the stage did, every class included
    texts = split_texts(d)
    want_pred, want_probs = recorded_probabilities(d)
    got = load_predictor(out).predict(texts)
    assert [g["label_id"] for g in got] == want_pred
    np.testing.assert_allclose([list(g["probabilities"].values()) for g in got], want_probs, atol=1e-5, rtol=0)
