"""serve: the JSON API and the page, in-process with FastAPI's TestClient."""

import json
import sys

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_predict import STAGES, assert_matches_recorded, copy_stage, split_texts, stage_path
from typer.testing import CliRunner

from distill_lora.cli import app as cli_app
from distill_lora.use import serve
from distill_lora.use.predict import load_predictor


@pytest.fixture(scope="module")
def client(finished_run):
    return TestClient(serve.create_app(stage_path(finished_run, "teacher")))


def test_healthz_and_model_info(client, finished_run):
    assert client.get("/healthz").json() == {"status": "ok", "model": "teacher"}
    info = client.get("/api/model").json()
    assert info["stage"] == "teacher" and info["seed"] == 0 and info["model_type"] == "Teacher (fine-tuned)"
    assert info["run_dir"] == str(finished_run["output"].resolve())
    assert info["test"]["n"] == 40 and info["label_names"] == ["not toxic", "toxic"]


def test_single_and_batch_predict(client, finished_run):
    texts = ["you are vermin", "lovely sunny park", "they are all garbage"]
    want = load_predictor(stage_path(finished_run, "teacher")).predict(texts)
    one = client.post("/api/predict", json={"text": texts[0]})
    assert one.status_code == 200
    assert one.json()["prediction"]["label"] == want[0]["label"]
    assert one.json()["prediction"]["prob_positive"] == pytest.approx(want[0]["prob_positive"], abs=1e-6)
    assert one.json()["model"] == {
        "stage": "teacher",
        "seed": 0,
        "model_type": "Teacher (fine-tuned)",
        "backend": "torch",
    }
    # binary clients keep every field they had; every class's probability comes beside them
    got = one.json()["prediction"]
    assert set(got) == {"text", "label", "label_id", "prob_positive", "logits", "probabilities"}
    assert got["probabilities"] == pytest.approx({"not toxic": 1 - got["prob_positive"], "toxic": got["prob_positive"]})
    batch = client.post("/api/predict", json={"texts": texts}).json()["predictions"]
    assert [p["label"] for p in batch] == [w["label"] for w in want]
    assert [p["text"] for p in batch] == texts


BAD = {
    "invalid json": ("{text: nope", 400),
    "not an object": ('["a"]', 400),
    "missing field": ('{"message": "hi"}', 400),
    "both fields": ('{"text": "a", "texts": ["b"]}', 400),
    "empty text": ('{"text": ""}', 400),
    "blank text": ('{"text": "   "}', 400),
    "text not a string": ('{"text": 5}', 400),
    "texts not a list": ('{"texts": "abc"}', 400),
    "empty texts": ('{"texts": []}', 400),
    "empty text in list": ('{"texts": ["ok", ""]}', 400),
    "text too long": (json.dumps({"text": "a" * (serve.MAX_TEXT_CHARS + 1)}), 413),
    "too many texts": (json.dumps({"texts": ["hi"] * (serve.MAX_TEXTS + 1)}), 413),
    "body too big": ("x" * (serve.MAX_BODY_BYTES + 1), 413),
    "nested 1,000 deep (2 KB)": ("[" * 1000 + "]" * 1000, 400),
    "nested 100,000 deep in an object": ('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}", 400),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_4xx_json_error_and_serving_goes_on(client, case):
    body, status = BAD[case]
    r = client.post("/api/predict", content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json") and r.json()["error"]
    good = client.post("/api/predict", json={"text": "lovely music"})
    assert good.status_code == 200 and good.json()["prediction"]["label"] in ("toxic", "not toxic")


def test_a_body_is_refused_by_its_length_before_it_is_read_and_while_it_streams(client):
    """Content-Length over the limit: 413 without reading the body; no length (chunked): 413 once the bytes read
    pass the limit, not after reading them all (read_body on a request whose stream counts what is taken)."""
    import asyncio

    class Request:
        def __init__(self, headers, n_chunks):
            self.headers, self.n_chunks, self.taken = headers, n_chunks, 0

        async def stream(self):
            for _ in range(self.n_chunks):
                self.taken += 1
                yield b"x" * 65536

    def read(headers, n_chunks):
        request = Request(headers, n_chunks)
        try:
            asyncio.run(serve.read_body(request))
        except serve.BadInput as e:
            return e.status, request.taken
        return 200, request.taken

    assert read({"content-length": str(serve.MAX_BODY_BYTES + 1)}, 1000) == (413, 0)  # refused unread
    assert read({"content-length": "12abc"}, 1)[0] == 400
    status, taken = read({}, 1000)  # chunked: 65 MB if it were all read
    assert status == 413 and taken == serve.MAX_BODY_BYTES // 65536 + 1  # the first chunk past the limit
    assert read({}, 2) == (200, 2)
    r = client.post("/api/predict", content=b"{}", headers={"Content-Length": str(serve.MAX_BODY_BYTES + 1)})
    assert r.status_code == 413 and "over" in r.json()["error"]


def test_limits_are_inclusive(client):
    assert client.post("/api/predict", json={"text": "a" * serve.MAX_TEXT_CHARS}).status_code == 200
    assert client.post("/api/predict", json={"texts": ["hi"] * serve.MAX_TEXTS}).status_code == 200


def test_page_is_self_contained(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for needle in ('id="text"', 'id="submit"', 'id="verdict"', "/api/predict", "Teacher (fine-tuned)", "macro-F1"):
        assert needle in page, needle
    assert "http://" not in page and "https://" not in page  # no CDNs, no external assets
    assert "default-src 'none'" in r.headers["content-security-policy"]


@pytest.mark.parametrize("stage", STAGES)
def test_serve_reproduces_recorded_test_predictions(finished_run, stage):
    d = stage_path(finished_run, stage)
    c = TestClient(serve.create_app(d))
    preds = c.post("/api/predict", json={"texts": split_texts(d)}).json()["predictions"]
    assert_matches_recorded([p["label_id"] for p in preds], [p["logits"] for p in preds], d)
    assert c.get("/api/model").json()["stage"] == stage


def test_app_from_env(finished_run, monkeypatch):
    monkeypatch.setenv(serve.MODEL_DIR_ENV, str(stage_path(finished_run, "student-odd")))
    assert TestClient(serve.app_from_env()).get("/healthz").json()["model"] == "student-odd"


def test_cli_serve_errors(finished_run, monkeypatch):
    runner = CliRunner()
    r = runner.invoke(cli_app, ["serve", str(finished_run["output"]), "--stage", "nope"])
    assert r.exit_code == 2 and r.output.startswith("error: --stage nope") and "Traceback" not in r.output
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the serve extra were not installed
    r = runner.invoke(cli_app, ["serve", str(finished_run["output"])])
    assert r.exit_code == 2 and "pip install 'distill-lora[serve]'" in r.output and r.output.count("\n") == 1


def test_page_shows_confidence_intervals_when_recorded(finished_run, tmp_path):
    d = copy_stage(finished_run, "student-odd", tmp_path)
    metrics = json.loads((d / "metrics.json").read_text())
    metrics["test_ci"] = {"macro_f1": {"low": 0.3, "high": 0.7, "confidence": 0.95}}
    (d / "metrics.json").write_text(json.dumps(metrics))
    assert "(95% CI 0.3000–0.7000)" in TestClient(serve.create_app(d)).get("/").text


SURROGATES = {
    "lone surrogate": ('{"text": "caf\\ud800"}', '"text" is not valid Unicode: lone surrogate U+D800 at character 3'),
    "lone low surrogate in a list": (
        '{"texts": ["ok", "\\udc00 x"]}',
        '"texts"[1] is not valid Unicode: lone surrogate U+DC00 at character 0',
    ),
}


@pytest.mark.parametrize("case", list(SURROGATES))
def test_lone_surrogate_is_a_400_naming_the_field(client, case):
    body, reason = SURROGATES[case]
    r = client.post("/api/predict", content=body.encode(), headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"].startswith(reason), r.text


def test_surrogate_pair_is_one_character_and_classified(client):
    r = client.post(
        "/api/predict",
        content=b'{"text": "you are vermin \\ud83d\\ude00"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 200 and r.json()["prediction"]["text"] == "you are vermin \U0001f600"


# any text JSON can carry, surrogates often (see test_properties): 200, or a 4xx with a reason, never a 500
api_text = st.lists(
    st.one_of(st.characters(codec=None, categories=None), st.integers(0xD800, 0xDFFF).map(chr)), max_size=20
).map("".join)  # st.text never yields surrogates, whatever its alphabet


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(value=st.one_of(api_text, st.lists(api_text, min_size=1, max_size=3)))
def test_api_never_answers_500(client, value):
    body = json.dumps({"texts" if isinstance(value, list) else "text": value}).encode()
    r = client.post("/api/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 200 or (400 <= r.status_code < 500 and r.json()["error"]), (r.status_code, r.text)


def test_cli_serve_binds_before_saying_serving_and_serves_on_that_socket(finished_run, monkeypatch):
    import socket

    import uvicorn

    seen = {}

    def run(self, sockets=None):  # instead of serving: what uvicorn would serve on
        seen["port"] = sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", seen["port"]), timeout=5):  # already listening
            pass

    monkeypatch.setattr(uvicorn.Server, "run", run)
    with socket.socket() as probe:  # a free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    r = CliRunner().invoke(cli_app, ["serve", str(finished_run["output"]), "--port", str(port)])
    assert r.exit_code == 0, r.output
    assert seen["port"] == port and f"on http://127.0.0.1:{port}/" in r.output
