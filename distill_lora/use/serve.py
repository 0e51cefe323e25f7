"""A small web app around one model folder: an HTML page and a JSON API (FastAPI; the `serve` extra).

    GET  /             the page: a text box; it POSTs to /api/predict and shows the top class and every class's p
    POST /api/predict  {"text": "..."} or {"texts": ["...", ...]} → {"model": ..., "predictions": [...]}; each
                       prediction: text, label, label_id, probabilities {class: p}, logits, and (two classes
                       only) prob_positive
    GET  /api/model    which model answers, with its test metrics
    GET  /healthz      {"status": "ok"}

The page and the API use the very folder that was evaluated (through predict.Predictor). Bad input
gets a 4xx answer with {"error": "..."}; the server keeps serving.
"""

from __future__ import annotations

import errno
import html
import json
import os
import secrets
import socket
import threading
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse

from distill_lora.errors import UserError
from distill_lora.use.model_card import ci_text
from distill_lora.use.predict import load_predictor, text_problem

MAX_TEXT_CHARS = 5000
MAX_TEXTS = 64
MAX_BODY_BYTES = 4 * MAX_TEXT_CHARS * MAX_TEXTS + 4096  # 4 bytes per char at most in UTF-8, plus JSON syntax
MODEL_DIR_ENV = "DISTILL_LORA_MODEL_DIR"
BACKEND_ENV = "DISTILL_LORA_BACKEND"  # torch, onnx or onnx-int8 for app_from_env (default as in load_predictor)


class BadInput(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def parse_texts(body: bytes) -> tuple[list[str], bool]:
    """Request body → (texts, single?). Raises BadInput with the reason and status code."""
    if len(body) > MAX_BODY_BYTES:
        raise BadInput(f"request body over {MAX_BODY_BYTES} bytes", 413)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadInput('body is not valid JSON; send {"text": "..."} or {"texts": ["...", ...]}') from None
    except RecursionError:  # e.g. 1,000 nested brackets in a 2 KB body: Python's parser gives up
        raise BadInput('body nests too deeply; send {"text": "..."} or {"texts": ["...", ...]}') from None
    if not isinstance(payload, dict) or ("text" in payload) == ("texts" in payload):
        raise BadInput('send a JSON object with exactly one of "text" (a string) or "texts" (a list of strings)')
    single = "text" in payload
    texts = [payload["text"]] if single else payload["texts"]
    if not isinstance(texts, list) or not texts:
        raise BadInput('"texts" must be a non-empty list of strings')
    if len(texts) > MAX_TEXTS:
        raise BadInput(f'"texts" holds {len(texts)} texts; at most {MAX_TEXTS} per request', 413)
    for i, text in enumerate(texts):
        where = '"text"' if single else f'"texts"[{i}]'
        problem = text_problem(text)  # the same rule as `distill-lora predict`
        if problem:
            raise BadInput(f"{where} {problem}")
        if len(text) > MAX_TEXT_CHARS:
            raise BadInput(f"{where} has {len(text)} characters; at most {MAX_TEXT_CHARS}", 413)
    return texts, single


async def read_body(request) -> bytes:
    """The request's body, refused (413) before it is read when Content-Length says it is too big, and while it is
    read when it has no length (chunked) and grows past the limit: a client cannot make the server hold more."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.strip().isdigit():
            raise BadInput(f"Content-Length {length!r} is not a number of bytes")
        if int(length) > MAX_BODY_BYTES:
            raise BadInput(f"request body over {MAX_BODY_BYTES} bytes", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadInput(f"request body over {MAX_BODY_BYTES} bytes", 413)
    return bytes(body)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or UserError naming the port and the fix.

    Bound before the model loads and before "serving on …" is printed; uvicorn then serves on this very
    socket, so nothing can take the port in between.
    """
    if not 1 <= port <= 65535:
        raise UserError(f"--port {port}: use a port from 1 to 65535 (e.g. 8000)")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (socket.gaierror, UnicodeError):
        raise UserError(f"--host {host}: not an address or a known host name (e.g. 127.0.0.1 or 0.0.0.0)") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart may reuse TIME_WAIT
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(
                f"--port {port}: already in use on {host}; stop what listens there or pick another port with --port"
            ) from None
        if e.errno == errno.EACCES:
            raise UserError(
                f"--port {port}: not allowed on {host} (ports below 1024 need root); pick a port from 1024 with --port"
            ) from None
        raise UserError(
            f"--host {host} --port {port}: cannot listen there ({e.strerror}); use an address of this "
            "machine, e.g. 127.0.0.1"
        ) from None
    sock.set_inheritable(True)
    return sock


def create_app(model_dir: str | Path, device: str | None = None, backend: str | None = None) -> FastAPI:
    """The app for one finished stage or export folder (loaded once, here); backend as in load_predictor."""
    predictor = load_predictor(model_dir, device=device, backend=backend)
    info = predictor.info
    lock = threading.Lock()  # one forward pass at a time: CPU threads are already used inside torch
    app = FastAPI(title="distill-lora", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.model_dir, app.state.predictor = predictor.model_dir, predictor

    def predict_locked(texts: list[str]) -> list[dict]:
        with lock:
            return predictor.predict(texts)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok", "model": info["stage"]}

    @app.get("/api/model")
    def model():
        return {
            **info,
            "label_names": predictor.label_names,
            "threshold": predictor.threshold,
            "max_length": predictor.max_length,
            "limits": {"max_text_chars": MAX_TEXT_CHARS, "max_texts": MAX_TEXTS},
        }

    @app.post("/api/predict")
    async def api_predict(request: Request):
        try:
            texts, single = parse_texts(await read_body(request))
        except BadInput as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        predictions = await run_in_threadpool(predict_locked, texts)
        who = {k: info[k] for k in ("stage", "seed", "model_type", "backend")}
        return {"model": who, "prediction" if single else "predictions": predictions[0] if single else predictions}

    @app.get("/", response_class=HTMLResponse)
    def page():
        nonce = secrets.token_urlsafe(16)
        csp = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; connect-src 'self'; "
            "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
        )
        return HTMLResponse(
            render_page(info, predictor.label_names, nonce),
            headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff"},
        )

    return app


def app_from_env() -> FastAPI:
    """For `uvicorn --factory distill_lora.use.serve:app_from_env --workers N`: the folder comes from the
    environment."""
    model_dir = os.environ.get(MODEL_DIR_ENV)
    if not model_dir:
        raise RuntimeError(f"set {MODEL_DIR_ENV} to a finished stage folder, e.g. runs/demo/seed-0/teacher")
    return create_app(model_dir, backend=os.environ.get(BACKEND_ENV) or None)


# ---------------------------------------------------------------- the page (inline: no external assets)


def _metrics_rows(test: dict | None, test_ci: dict | None, label_names: list[str]) -> str:
    if not test:
        return "<tr><td colspan=2>no test metrics recorded</td></tr>"
    binary = len(label_names) == 2
    keys = [
        ("accuracy", "accuracy"),
        ("macro_f1", "macro-F1"),
        ("f1_positive", "F1 positive"),  # None with more than two classes: not shown
        ("roc_auc", "ROC AUC" if binary else "ROC AUC (one-vs-rest, macro)"),
        ("n", "test examples"),
    ]
    ci = test_ci or {}
    rows = [
        f"<tr><td>{name}</td><td>{test[k]:.4f}{html.escape(ci_text(ci.get(k)))}</td></tr>"
        if isinstance(test[k], float)
        else f"<tr><td>{name}</td><td>{html.escape(str(test[k]))}</td></tr>"
        for k, name in keys
        if test.get(k) is not None
    ]
    per_class = test.get("per_class") if not binary else None
    if isinstance(per_class, dict):  # F1 of every class (class names are user strings: escaped)
        rows += [
            f"<tr><td>F1 {html.escape(str(name))}</td><td>{m['f1']:.4f}</td></tr>"
            for name, m in per_class.items()
            if isinstance(m, dict) and isinstance(m.get("f1"), (int, float))
        ]
    return "".join(rows)


def _js(value) -> str:
    """A JSON literal safe inside <script>: no '<' can close the element or open a comment."""
    return json.dumps(value).replace("<", "\\u003c")


def render_page(info: dict, label_names: list[str], nonce: str) -> str:
    def e(x):  # every value shown comes from files: escape it
        return html.escape(str(x))

    heading = f"Is it {e(label_names[1])}?" if len(label_names) == 2 else "Which class is it?"
    model_rows = "".join(
        f"<tr><td>{k}</td><td>{e(v)}</td></tr>"
        for k, v in (
            ("stage", info["stage"]),
            ("seed", info["seed"]),
            ("model type", info["model_type"]),
            ("depth", info["depth"]),
            ("backend", info.get("backend", "torch")),
            ("run folder", info["run_dir"]),
            ("model folder", info["model_dir"]),
        )
    )
    return PAGE.format(
        stage=e(info["stage"]),
        heading=heading,
        classes=" · ".join(e(name) for name in label_names),
        model_rows=model_rows,
        metrics_rows=_metrics_rows(info.get("test"), info.get("test_ci"), label_names),
        nonce=nonce,
        max_chars=MAX_TEXT_CHARS,
        labels_js=_js(list(label_names)),
    )


# The verdict is the top class; #dist lists every class, most probable first, with a bar and its probability.
# Class names reach the page only through textContent (never innerHTML): they are user strings.
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>distill-lora · {stage}</title>
<style>
 body {{ font: 16px/1.45 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; }}
 textarea {{ width: 100%; min-height: 7rem; font: inherit; padding: .5rem; box-sizing: border-box; }}
 button {{ font: inherit; padding: .45rem 1.2rem; margin-top: .5rem; cursor: pointer; }}
 #result {{ margin: 1.2rem 0; padding: .8rem 1rem; border-radius: .4rem; background: #f2f2f4; min-height: 1.5rem; }}
 #result.positive {{ background: #fde2e1; }} #result.negative {{ background: #e0f4e4; }} #result.error {{ background: #fff3cd; }}
 #verdict {{ font-size: 1.5rem; font-weight: 650; }}
 #dist {{ margin: .6rem 0 0; }} #dist td {{ padding: .1rem .8rem .1rem 0; color: inherit; }}
 #dist progress {{ width: 12rem; }}
 table {{ border-collapse: collapse; margin: .4rem 0 1rem; }} td {{ padding: .15rem .8rem .15rem 0; vertical-align: top; }}
 td:first-child {{ color: #666; }} small {{ color: #666; }}
</style></head>
<body>
<h1>{heading}</h1>
<p id="classes">Classes: {classes}</p>
<form id="form">
 <label for="text">Text</label>
 <textarea id="text" name="text" maxlength="{max_chars}" required placeholder="Type a sentence…"></textarea>
 <button id="submit" type="submit">Classify</button>
</form>
<div id="result" aria-live="polite"><span id="verdict"></span> <span id="prob"></span>
<table id="dist" aria-label="probability of every class"></table></div>
<h2>Model</h2>
<table id="model">{model_rows}</table>
<h2>Test metrics</h2>
<table id="metrics">{metrics_rows}</table>
<small>The page sends the text to <code>POST /api/predict</code> on this server; the model above answers.
Not for automated moderation without human review.</small>
<script nonce="{nonce}">
const LABELS = {labels_js};
const BINARY = LABELS.length === 2;
const form = document.getElementById("form"), result = document.getElementById("result");
const verdict = document.getElementById("verdict"), prob = document.getElementById("prob");
const dist = document.getElementById("dist");
function showDistribution(probabilities) {{
  const rows = LABELS.map((name, i) => [name, probabilities[name], i]).sort((a, b) => b[1] - a[1] || a[2] - b[2]);
  dist.replaceChildren(...rows.map(([name, p]) => {{
    const tr = document.createElement("tr"), cls = document.createElement("td"), bar = document.createElement("td");
    const value = document.createElement("td"), meter = document.createElement("progress");
    cls.className = "class"; cls.textContent = name;
    meter.max = 1; meter.value = p; meter.textContent = (100 * p).toFixed(1) + "%"; bar.appendChild(meter);
    value.className = "p"; value.textContent = p.toFixed(4);
    tr.append(cls, bar, value);
    return tr;
  }}));
}}
form.addEventListener("submit", async (ev) => {{
  ev.preventDefault();
  verdict.textContent = "…"; prob.textContent = ""; result.className = ""; dist.replaceChildren();
  try {{
    const r = await fetch("/api/predict", {{method: "POST", headers: {{"Content-Type": "application/json"}},
                                          body: JSON.stringify({{text: document.getElementById("text").value}})}});
    const body = await r.json();
    if (!r.ok) {{ result.className = "error"; verdict.textContent = "error"; prob.textContent = body.error; return; }}
    const p = body.prediction, who = " · " + body.model.stage + ", seed " + body.model.seed + ", " + body.model.backend;
    verdict.textContent = p.label;
    prob.textContent = BINARY ? "p(" + LABELS[1] + ") = " + p.prob_positive.toFixed(4) + who
                              : "p = " + p.probabilities[p.label].toFixed(4) + who;
    showDistribution(p.probabilities);
    result.className = BINARY ? (p.label_id === 1 ? "positive" : "negative") : "";
  }} catch (err) {{ result.className = "error"; verdict.textContent = "error"; prob.textContent = String(err); }}
}});
</script>
</body></html>
"""
