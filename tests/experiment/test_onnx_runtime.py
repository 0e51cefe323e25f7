"""report.onnx_runtime: ONNX Runtime rows (fp32, int8) of the teacher and students, and the report's CPU serving
section, on a copy of the shared tiny 3-class run (its trained stages and int8 rows are reused)."""

import json
import re
import shutil
import sys

import numpy as np
import pytest
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from distill_lora.cli import app
from distill_lora.config import load_config
from distill_lora.report.cpu_serving import cpu_choice_sentence
from distill_lora.train.data import load_splits

runner = CliRunner()
SOURCES = ["teacher", "student-odd"]
ROWS = [f"{s}-{b}" for s in SOURCES for b in ("onnx", "onnx-int8")]


def read(path):
    return json.loads(path.read_text())


def predictions(stage_dir):
    rows = [json.loads(line) for line in (stage_dir / "test_predictions.jsonl").read_text().splitlines()]
    return [r["label"] for r in rows], [r["pred"] for r in rows], np.array([r["logits"] for r in rows])


@pytest.fixture(scope="module")
def onnx_run(finished_run3, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx_rows") / "run"
    shutil.copytree(finished_run3["output"], out)
    args = ["compare", "-c", str(finished_run3["config"]), "-o", str(out), "--set", "report.onnx_runtime=true"]
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return {"out": out, "args": args, "result": r, "before": finished_run3["output"]}


def test_rows_reuse_the_trained_stages_and_match_their_source(onnx_run):
    out, r = onnx_run["out"], onnx_run["result"]
    for stage in ("teacher", "student-odd", "lora-student", "teacher-int8", "student-odd-int8"):
        assert f"[{stage}] reusing finished stage" in r.stderr
    for row in ROWS:
        folder = out / "seed-0" / row
        assert (folder / "DONE").exists() and (folder / ("model.int8.onnx" if "int8" in row else "model.onnx")).exists()
        m = read(folder / "metrics.json")
        source = row.removesuffix("-onnx-int8").removesuffix("-onnx")
        assert m["exported_from"] == source and m["backend"] == row[len(source) + 1 :]
        labels, preds, logits = predictions(folder)
        _, src_preds, src_logits = predictions(out / "seed-0" / source)
        diff = float(np.abs(logits - src_logits).max())
        assert m["conversion"]["max_abs_logit_diff_vs_source"] == pytest.approx(diff, abs=1e-9)
        if row.endswith("-onnx"):  # fp32 ONNX Runtime is the same model: logits to 1e-4, labels equal
            assert diff < 1e-4 and preds == src_preds
        assert m["test"]["macro_f1"] == pytest.approx(f1_score(labels, preds, average="macro", labels=[0, 1, 2]))
    # the rows are kept beside the report's rows, not among them
    results = read(out / "results.json")["comparison"]
    assert sorted(results["onnx_runtime"]["0"]) == sorted(ROWS)
    assert not set(ROWS) & set(results["per_seed"]["0"])


def test_an_int8_row_ran_its_own_int8_file_one_text_at_a_time(onnx_run):
    """Each onnx-int8 row's recorded test logits are what its model.int8.onnx gives, fed one text at a time by hand,
    and they differ from the fp32 row's.

    Mutations caught: the int8 row evaluating the fp32 file; the int8 test pass batching texts (a text's logits
    then move with its batch mates and their padding)."""
    from transformers import AutoTokenizer

    from distill_lora.train.runtimes import ONNX_INT8_FILE, OnnxModel

    seed = onnx_run["out"] / "seed-0"
    for source in SOURCES:
        tokenizer = AutoTokenizer.from_pretrained(seed / source)
        texts = load_splits(load_config(str(seed / source / "config.yaml")).data).test.texts
        model = OnnxModel(seed / f"{source}-onnx-int8" / ONNX_INT8_FILE)
        by_hand = []
        for text in texts:
            enc = tokenizer([text], truncation=True, max_length=16, return_tensors="pt")
            by_hand.append(model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.numpy())
        by_hand = np.concatenate(by_hand)
        _, _, recorded = predictions(seed / f"{source}-onnx-int8")
        np.testing.assert_allclose(recorded, by_hand, atol=1e-6, rtol=0)
        assert np.abs(recorded - predictions(seed / f"{source}-onnx")[2]).max() > 1e-5


def test_rows_join_only_the_serving_family(onnx_run):
    """Adding ONNX Runtime rows changes neither the primary nor the exploratory pairs (nor their Holm adjustment);
    the rows join the serving family, each against its source, Holm over that family."""
    before, after = read(onnx_run["before"] / "analysis.json"), read(onnx_run["out"] / "analysis.json")
    ranked = [p for p in after["pairs"] if p["family"] != "serving"]
    assert ranked == [p for p in before["pairs"] if p["family"] != "serving"]
    serving = [p for p in after["pairs"] if p["family"] == "serving"]
    onnx_pairs = [p for p in serving if "-onnx" in p["b"]]
    assert [(p["a"], p["b"]) for p in onnx_pairs] == [
        (r.removesuffix("-onnx-int8").removesuffix("-onnx"), r) for r in ROWS
    ]
    assert {p["b"] for p in serving} - set(ROWS) == {f"{s}-int8" for s in SOURCES}  # the torch int8 rows
    raw = [p["p_value"] for p in serving]
    assert [p["p_holm"] for p in serving] == pytest.approx(_holm(raw))
    assert all(p["winner"] is None and p["verdict"] in ("non-inferior", "not shown non-inferior") for p in serving)


def _holm(p):
    order = np.argsort(p)
    out, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


def test_cpu_serving_section_numbers_come_from_the_recorded_predictions(onnx_run):
    out = onnx_run["out"]
    md = (out / "report.md").read_text()
    section = md[md.index("## CPU serving") : md.index("## Are the differences real?")]
    assert f"Holm over the {len(ROWS) + len(SOURCES)} rows of the serving family" in section  # ONNX + int8
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r[0].lstrip("| ") for r in rows] == [
        s for src in SOURCES for s in (src, f"{src}-int8", f"{src}-onnx", f"{src}-onnx-int8")
    ]
    for r in rows:
        stage = r[0].lstrip("| ")
        labels, preds, _ = predictions(out / "seed-0" / stage)
        assert r[8].startswith(f"{f1_score(labels, preds, average='macro', labels=[0, 1, 2]):.3f} [")
        source = next(s for s in SOURCES if stage.startswith(s))
        if stage != source:
            agree = np.mean(np.array(preds) == np.array(predictions(out / "seed-0" / source)[1]))
            assert r[10] == f"{agree:.1%}"
    # timed together with the other models: every row has a latency
    assert all(re.fullmatch(r"\d+\.\d\d", r[4]) for r in rows)
    assert section.count(" on this CPU: ") == len(SOURCES)
    # the report is a function of results.json: rebuilt, the section is the same
    rebuilt = runner.invoke(app, ["report", str(out)])
    assert rebuilt.exit_code == 0, rebuilt.output
    md2 = (out / "report.md").read_text()
    assert md2[md2.index("## CPU serving") : md2.index("## Are the differences real?")] == section


def test_json_document_lists_the_rows_and_a_second_compare_reuses_them(onnx_run):
    doc = json.loads(onnx_run["result"].stdout)
    assert set(ROWS) <= {s["stage"] for s in doc["stages"]}
    assert set(ROWS) <= set(doc["mean_over_seeds"])
    again = runner.invoke(app, onnx_run["args"])
    assert again.exit_code == 0, again.output
    for row in ROWS:
        assert f"[{row}] reusing finished stage" in again.output


def test_choice_is_the_fastest_option_shown_non_inferior_or_none():
    def option(backend, latency, pair=None):
        summary = {"macro_f1": {"mean": 0.8}}
        return {
            "backend": backend,
            "latency_ms": latency,
            "bytes": 2**20,
            "summary": summary,
            "agreement": 0.99,
            "pair": pair,
        }

    shown = {"verdict": "non-inferior", "winner": None}
    not_shown = {"verdict": "not shown non-inferior", "winner": None}
    group = {
        "source": "teacher",
        "options": [
            option("PyTorch fp32", 10.0),
            option("ONNX Runtime int8", 2.0, not_shown),  # fastest, but not shown within the margin: skipped
            option("ONNX Runtime fp32", 5.0, shown),
        ],
    }
    text = cpu_choice_sentence(group)
    assert "ONNX Runtime fp32 is the fastest option at batch 1 shown non-inferior" in text
    assert "5.00 vs 10.00 ms" in text and "2.0× faster" in text
    group["options"][2]["latency_ms"] = 11.0
    assert "no option shown non-inferior to PyTorch fp32 is faster than it" in cpu_choice_sentence(group)
    group["options"][2]["pair"] = not_shown  # "not significantly worse" is not "as good": nothing is recommended
    text = cpu_choice_sentence(group)
    assert "no option is shown non-inferior" in text and "recommend none of them" in text
    group["options"][0]["latency_ms"] = None  # PyTorch fp32 not timed: nothing to compare with
    assert cpu_choice_sentence(group) is None


def test_missing_onnx_runtime_stops_compare_before_training(finished_run3, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime → ImportError
    out = tmp_path / "run"
    r = runner.invoke(
        app, ["compare", "-c", str(finished_run3["config"]), "-o", str(out), "--set", "report.onnx_runtime=true"]
    )
    assert r.exit_code == 2
    assert "report.onnx_runtime: true needs ONNX Runtime: pip install 'distill-lora[onnx]'" in r.output
    assert "Traceback" not in r.output and not (out / "seed-0").exists()
    v = runner.invoke(app, ["validate", "-c", str(finished_run3["config"]), "--set", "report.onnx_runtime=true"])
    assert v.exit_code == 2 and "report.onnx_runtime" in v.output


def test_without_timings_the_section_says_so_and_picks_nothing(onnx_run, tmp_path):
    from distill_lora.report.write import write_report

    results = read(onnx_run["out"] / "results.json")
    results.pop("timings")
    for block in (results["comparison"]["per_seed"], results["comparison"]["onnx_runtime"]):
        for record in block["0"].values():
            record.pop("inference", None), record.pop("fp32_cpu_inference", None)
    md = write_report(tmp_path, results)[0].read_text()
    section = md[md.index("## CPU serving") : md.index("## Are the differences real?")]
    assert "Not timed (`report.measure_speed: false`)" in section and " on this CPU: " not in section
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| teacher")]
    assert len(rows) == 4 and all(r[4] == r[5] == r[6] == "–" for r in rows)


def test_a_primary_comparison_of_a_stage_the_run_will_not_make_stops_compare_before_training(finished_run3, tmp_path):
    out = tmp_path / "run"
    bad = "report.primary=[student-odd vs student-last]"
    r = runner.invoke(app, ["compare", "-c", str(finished_run3["config"]), "-o", str(out), "--set", bad])
    assert r.exit_code == 2 and "Traceback" not in r.output and not (out / "seed-0").exists()
    assert "report.primary: 'student-last' is not a stage of this run; its stages: teacher, student-odd" in r.output
