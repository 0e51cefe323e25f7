"""ONNX export (fp32 + int8) and the ONNX Runtime backend of predict and serve, on the tiny runs."""

import json
import sys

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from test_predict import assert_matches_recorded, recorded, split_texts, stage_path
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.train.runtimes import ONNX_FILE, ONNX_INT8_FILE
from distill_lora.use import export, serve
from distill_lora.use.predict import load_predictor

runner = CliRunner()


def export_onnx(run_dir, stage, out):
    result = runner.invoke(app, ["export", str(run_dir), "--stage", stage, str(out), "--onnx"])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def onnx_teacher(finished_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "teacher"
    return out, export_onnx(finished_run["output"], "teacher", out)


def test_export_writes_fp32_and_int8_onnx_and_says_so(onnx_teacher):
    out, result = onnx_teacher
    for name in (ONNX_FILE, ONNX_INT8_FILE, "config.yaml", "tokenizer_config.json", "model.safetensors"):
        assert (out / name).exists(), name
    info = json.loads((out / "export.json").read_text())
    assert info["backends"] == ["torch", "onnx", "onnx-int8"]
    assert info["onnx"]["fp32"] == ONNX_FILE and info["onnx"]["int8"] == ONNX_INT8_FILE
    check = info["onnx"]["check"]
    assert check["n_texts"] == 40 and check["split"] == "validation"
    assert 0 <= check["onnx"]["max_abs_logit_diff"] <= export.ONNX_TOLERANCE
    assert "ONNX check on 40 validation texts" in result.output and "int8 labels agree with torch on" in result.output
    card = (out / "README.md").read_text()  # the model card names both files and the check's numbers
    assert "## ONNX (CPU serving)" in card and f"`{ONNX_INT8_FILE}`" in card
    assert f"at most {check['onnx']['max_abs_logit_diff']:.2e}" in card
    assert f"on {check['onnx-int8']['label_agreement']:.1%} of them" in card
    # int8 Linear weights; the tiny model is mostly its fp32 embedding table, so the file shrinks only a little
    assert (out / ONNX_INT8_FILE).stat().st_size < 0.9 * (out / ONNX_FILE).stat().st_size


def test_the_export_check_measured_the_onnx_files_against_torch(onnx_teacher, finished_run):
    """The check's numbers are recomputed here from the exported files on the same validation texts.

    Mutation caught: the check comparing torch's logits with themselves (diff 0, agreement 1), or the int8 figure
    taken from the fp32 file."""
    out, _ = onnx_teacher
    check = json.loads((out / "export.json").read_text())["onnx"]["check"]
    texts, why_not = export._validation_texts(stage_path(finished_run, "teacher"))
    assert why_not is None and len(texts) == check["n_texts"]
    torch_logits = load_predictor(out, backend="torch").logits(texts)
    want = torch_logits.argmax(-1)
    for backend in ("onnx", "onnx-int8"):
        logits = load_predictor(out, backend=backend).logits(texts)
        diff = float(np.abs(logits - torch_logits).max())
        assert diff > 0  # two runtimes never agree to the last bit: a zero means one side was not run
        assert check[backend]["max_abs_logit_diff"] == pytest.approx(diff, rel=1e-6)
        assert check[backend]["label_agreement"] == pytest.approx(float((logits.argmax(-1) == want).mean()))
    # int8 moves logits far more than fp32 ONNX does, yet follows torch's from text to text
    assert check["onnx-int8"]["max_abs_logit_diff"] > 10 * check["onnx"]["max_abs_logit_diff"]
    assert margin_correlation(load_predictor(out, backend="onnx-int8").logits(texts), torch_logits) > 0.9


def margin_correlation(logits, reference) -> float:
    """Correlation over texts of the two models' logit margins (class 1 − class 0). The tiny teacher labels every text
    the same, so label agreement cannot tell int8 from a constant classifier; the margins can (a constant has none)."""
    return float(np.corrcoef(logits[:, 1] - logits[:, 0], reference[:, 1] - reference[:, 0])[0, 1])


def test_onnx_reproduces_the_recorded_test_predictions(onnx_teacher, finished_run):
    """fp32 ONNX answers the test split as the stage did when evaluated (logits to 1e-5); the folder's default."""
    out, _ = onnx_teacher
    d = stage_path(finished_run, "teacher")
    texts = split_texts(d)
    predictor = load_predictor(out)  # an ONNX export answers with ONNX Runtime unless told otherwise
    assert predictor.backend == "onnx" and predictor.info["backend"] == "onnx"
    preds = predictor.predict(texts)
    assert_matches_recorded([p["label_id"] for p in preds], [p["logits"] for p in preds], d)
    # dynamic axes: one text per batch (other sequence lengths, batch 1) gives the same logits
    one_by_one = load_predictor(out, batch_size=1).logits(texts)
    np.testing.assert_allclose(one_by_one, recorded(d)[1], atol=1e-4, rtol=0)
    int8 = load_predictor(out, backend="onnx-int8", batch_size=1).logits(texts)
    assert margin_correlation(int8, recorded(d)[1]) > 0.9  # int8 follows the recorded logits text by text


def test_lora_stage_is_merged_then_exported(finished_run, tmp_path):
    d = stage_path(finished_run, "lora-student")
    result = export_onnx(finished_run["output"], "lora-student", tmp_path / "lora")
    assert "--onnx merges the adapter" in result.output
    info = json.loads((tmp_path / "lora" / "export.json").read_text())
    assert info["format"] == "lora-merged" and info["merge_check"]["checked"]
    preds = load_predictor(tmp_path / "lora").predict(split_texts(d))
    assert_matches_recorded([p["label_id"] for p in preds], [p["logits"] for p in preds], d)


def test_three_classes(finished_run3, tmp_path):
    d = stage_path(finished_run3, "teacher")
    export_onnx(finished_run3["output"], "teacher", tmp_path / "t3")
    preds = load_predictor(tmp_path / "t3").predict(split_texts(d))
    assert len(preds[0]["probabilities"]) == 3 and "prob_positive" not in preds[0]
    assert_matches_recorded([p["label_id"] for p in preds], [p["logits"] for p in preds], d)


def test_cli_predict_names_the_backend(onnx_teacher, finished_run):
    out, _ = onnx_teacher
    texts = ["you are vermin and trash", "lovely park with friends"]
    want = load_predictor(stage_path(finished_run, "teacher")).predict(texts)
    for backend, args in [("onnx", []), ("torch", ["--backend", "torch"]), ("onnx-int8", ["--backend", "onnx-int8"])]:
        result = runner.invoke(app, ["predict", str(out), *texts, "--json", *args])
        assert result.exit_code == 0, result.output
        assert result.stderr.strip() == f"backend: {backend}"
        got = json.loads(result.stdout)
        if backend != "onnx-int8":
            assert [g["label"] for g in got] == [w["label"] for w in want]
            assert [g["prob_positive"] for g in got] == pytest.approx([w["prob_positive"] for w in want], abs=1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "onnx"], "holds no model.onnx; export it with `distill-lora export RUN OUT --onnx`"),
        (["--backend", "tflite"], "--backend tflite: unknown; choose one of torch, onnx, onnx-int8"),
    ],
)
def test_cli_predict_backend_refusals(finished_run, args, message):
    result = runner.invoke(app, ["predict", str(finished_run["output"]), "hello", *args])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and message in result.output and "Traceback" not in result.output


def test_serve_says_which_backend_answers(onnx_teacher, monkeypatch):
    out, _ = onnx_teacher
    client = TestClient(serve.create_app(out))
    body = client.post("/api/predict", json={"text": "you are vermin"}).json()
    assert body["model"]["backend"] == "onnx"
    assert client.get("/api/model").json()["backend"] == "onnx"
    assert "<td>backend</td><td>onnx</td>" in client.get("/").text
    torch_client = TestClient(serve.create_app(out, backend="torch"))
    torch_body = torch_client.post("/api/predict", json={"text": "you are vermin"}).json()
    assert torch_body["model"]["backend"] == "torch"
    assert torch_body["prediction"]["logits"] == pytest.approx(body["prediction"]["logits"], abs=1e-5)
    monkeypatch.setenv(serve.MODEL_DIR_ENV, str(out))
    monkeypatch.setenv(serve.BACKEND_ENV, "onnx-int8")  # uvicorn --factory … app_from_env
    assert TestClient(serve.app_from_env()).get("/api/model").json()["backend"] == "onnx-int8"


def test_export_onnx_without_onnxruntime_is_a_user_error(finished_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    result = runner.invoke(app, ["export", str(finished_run["output"]), str(tmp_path / "x"), "--onnx"])
    assert result.exit_code == 2, result.output
    assert "needs ONNX Runtime: pip install 'distill-lora[onnx]'" in result.output
    assert result.output.strip().count("\n") == 0 and not (tmp_path / "x").exists()


def test_torch_dropping_its_int8_api_is_a_user_error(monkeypatch):
    """torch.ao.quantization is deprecated: the day torch removes it, int8 rows fail in one line saying what to do."""
    from distill_lora.errors import UserError
    from distill_lora.train.runtimes import quantize_dynamic_int8

    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)
    with pytest.raises(UserError, match="no longer has torch.ao.quantization.*report.quantize_int8: false"):
        quantize_dynamic_int8(torch.nn.Sequential(torch.nn.Linear(2, 2)))
