"""The report's rendering (report/tables.py, report/write.py) from small constructed results: the assignment's table, setup, examples, summary,
per-row thresholds, decimals, joint timings; and the timing itself (costs.time_together, timing.time_run)."""

import pytest
import torch

from distill_lora.metrics import metrics_from_predictions
from distill_lora.report import format as cells
from distill_lora.report import tables
from distill_lora.report import write as report
from distill_lora.report.summary import add_ensembles, summarise

NAMES = ["not toxic", "toxic"]
LABELS = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
# predictions per stage: lora-student misses the last three toxic texts; the others miss fewer
PREDS = {
    "teacher": LABELS,
    "student-odd": [0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
    "student-even": [0] * 7 + [1, 1, 1],
    "lora-student": [0] * 7 + [1, 0, 0],
}


def stage(name, pred, **extra):
    prob = [0.9 if p else 0.1 for p in pred]
    history = [
        {
            "epoch": e,
            "train_loss": 0.5,
            "train_total_loss": 0.4,
            "val_loss": 0.3,
            "val_accuracy": 0.6 + e / 10,
            "val_macro_f1": 0.5 + e / 10,
        }
        for e in (1, 2, 3)
    ]
    m = {
        "stage": name,
        "model_type": f"type of {name}",
        "depth": 6 if name == "teacher" else 3,
        "test": metrics_from_predictions(LABELS, pred, prob, NAMES),
        "validation_history": history,
        "selected_epoch": 2,
        "train_loss": 0.25,
        "train_total_loss": 0.5,
        "wall_time_s": 100.0,
        "samples_per_s": 9.0,
        "peak_memory_bytes": 2**20,
        "peak_memory_kind": "process RSS",
        "device": "cpu (1 threads)",
        "total_params": 22_710_000,
        "trainable_params": 22_710_000,
        "weights_bytes": 2**20,
        "precision": "no",
        "train_settings": {"lr": 1e-4, "batch_size": 16, "epochs": 3},
        "predictions": {"pred": list(pred), "prob_positive": prob},
    }
    m.update(extra)
    return m


@pytest.fixture(scope="module")
def built():
    stages = {name: stage(name, p) for name, p in PREDS.items()}
    stages["student-odd"].update(
        teacher_layers=[1, 3, 5],
        loss_weights={"temperature": 2.0, "w_ce": 0.5, "w_kl": 0.25, "w_cos": 0.25, "w_hidden": 0.0},
        teacher_targets={"time_s": 12.5, "peak_memory_bytes": 3 * 2**20, "reused": False},
    )
    stages["teacher"].update(threshold=0.4, test_at_threshold=stages["teacher"]["test"])
    stages["teacher-int8"] = stage(
        "teacher-int8",
        LABELS,
        quantized_from="teacher",
        validation_history=[],
        selected_epoch=None,
        train_loss=None,
        train_total_loss=None,
        quantization={"quantize_time_s": 0.5},
        precision="int8 weights, activations quantised per text",
    )
    comparison = {
        "seeds": [0],
        "label_names": NAMES,
        "test_labels": LABELS,
        "per_seed": {"0": stages},
        "majority_baseline": {"test": metrics_from_predictions(LABELS, [0] * 10, [0.0] * 10, NAMES)},
        "test_texts": [f"text {i}" for i in range(10)],
    }
    result = add_ensembles(comparison)
    return result, summarise(result, 100, 0)


def test_assignment_table_has_three_columns_and_trained_models_only(built):
    result, summary = built
    rows = tables.assignment_rows(result, summary)
    assert [r[0] for r in rows] == [f"type of {s}" for s in PREDS]  # no int8, no ensembles, no majority row
    assert all(len(r) == 3 for r in rows) and tables.COLUMNS == ("Model Type", "Training Loss", "Test Set Performance")
    assert rows[1] == ["type of student-odd", "0.250", "0.900 / 0.899"]  # 9 of 10 right; three decimals at n = 10


def test_decimals_follow_the_test_size():
    assert cells.digits_for(140) == 3 and cells.digits_for(9_999) == 3 and cells.digits_for(10_000) == 4


def test_threshold_columns_per_row(built):
    result, summary = built
    header, rows = tables.full_rows(result, summary)
    assert header[-2:] == ["Threshold (validation)", "Macro-F1 at threshold"]  # one row has one: the columns stay
    by_stage = {r[0]: r for r in rows}
    assert by_stage["teacher"][-2:] == ["0.400", "1.000"]
    assert by_stage["student-odd"][-2:] == ["–", "–"] and by_stage["ensemble-odd+even"][-2:] == ["–", "–"]
    assert by_stage["student-odd"][2] == "0.800 / 0.700"  # validation at the selected epoch 2
    assert by_stage["teacher-int8"][2] == "–"


def test_setup_rows(built):
    result, _ = built
    header, rows = tables.setup_rows(result)
    by_stage = {r[0]: dict(zip(header, r)) for r in rows}
    odd = by_stage["student-odd"]
    assert odd["Starting weights"] == "fine-tuned teacher, layers {1,3,5}"
    assert odd["Loss"] == "0.5·CE + 0.25·T²·KL + 0.25·cos (T = 2)"
    assert odd["Epochs run / selected"] == "3 of 3 / 2" and odd["Learning rate"] == "0.0001"
    assert odd["Batch size"] == "16" and odd["Precision"] == "fp32"
    assert by_stage["teacher-int8"]["Trainable params"] == "–" and by_stage["teacher-int8"]["Loss"] == "– (not trained)"
    assert set(list(by_stage["ensemble-odd+even"].values())[2:]) == {"– (not trained)", "–"}


def test_costs_use_joint_timings_and_show_the_teacher_pass(built):
    result, summary = built
    spread = {"median": 2.0, "min": 1.5, "max": 3.0}
    timings = {
        "device": "cpu (1 threads)",
        "seed": 0,
        "repeats": 5,
        "inputs": "x",
        "models": {
            s: {
                "device": "cpu (1 threads)",
                "latency_ms_batch1": spread,
                "throughput_batch64": {"median": 100.0, "min": 90.0, "max": 110.0},
            }
            for s in [*PREDS, "teacher-int8"]
        },
    }
    header, rows = tables.cost_rows(result, summary, timings)
    by_stage = {r[0]: dict(zip(header, r)) for r in rows}
    latency = next(h for h in header if h.startswith("Latency"))
    assert by_stage["teacher"][latency] == "2.00 [1.50–3.00]"
    assert by_stage["ensemble-odd+even"][latency] == "4.00 (sum)"  # two members of 2 ms each
    assert by_stage["ensemble-odd+even"]["Peak memory"] == "–"  # never measured: not the max of its members
    assert by_stage["student-odd"]["Teacher-logit pass"] == "12.5 s, 3.0 MiB"
    assert by_stage["teacher-int8"]["Trainable params"] == "–"
    assert "on " not in by_stage["teacher-int8"][latency]  # timed with the others: no other device


def test_examples_are_misclassified_texts_in_a_fence_no_text_can_close(built):
    result, summary = built
    texts = list(result["test_texts"])
    texts[5] = "```\n# heading <script>alert(1)</script> ````"  # markdown and HTML in a test text
    lines = report.examples_section({**result, "test_texts": texts}, summary)
    odd = lines.index("**student-odd**: 1 of 10 wrong:")
    fence, body, close = lines[odd + 1], lines[odd + 2], lines[odd + 3]
    assert fence == "`````text" and close == "`````"  # longer than the four backticks inside
    assert body.startswith("true not toxic | predicted toxic | p(toxic) 0.90 | ```") and "\n" not in body
    assert "**teacher**: 0 of 10 wrong." in lines
    assert report.examples_section({**result, "test_texts": None}, summary) == []


def _pair(**changes) -> dict:
    """A one-seed primary pair as verdicts.compare_pairs records it (stored as even − odd)."""
    pair = {
        "a": "student-even",
        "b": "student-odd",
        "family": "primary",
        "macro_f1_diff": -0.05,
        "verdict": "within noise",
        "winner": None,
        "verdict_basis": "permutation",
        "p_value": 0.2,
        "p_holm": 0.4,
        "min_p": 1e-4,
        "units": "texts",
        "differing_units": 40,
        "n_units": 500,
        "diff": {"macro_f1": {"point": -0.05, "low": -0.12, "high": 0.03}},
        "power": {
            "mdd": {"macro_f1": 0.1, "accuracy": 0.08},
            "target": 0.02,
            "units": "texts",
            "n_units": 500,
            "units_needed": 12_500,
            "alpha_step": 0.025,
        },
    }
    return pair | changes


def test_pair_sentence_is_oriented_and_computed():
    text = report.pair_sentence([_pair()], "student-odd", "student-even", 3)
    assert "macro-F1 student-odd − student-even = +0.050 (95% bootstrap CI -0.030 to +0.120)" in text
    assert "no difference shown" in text and "swap permutation test, Holm over the primary family: p 0.4" in text
    # the power behind "no difference": what could have been seen, and what would see the target
    assert "could only detect macro-F1 differences of about 0.100 or more (80% power)" in text
    assert "about 12,500 test texts (this run: 500) would be needed to detect 0.02" in text
    assert "observed power" not in text
    won = _pair(verdict="significant", winner="student-odd", p_holm=0.001)
    text = report.pair_sentence([won], "student-odd", "student-even", 3)
    assert text.startswith("student-odd vs student-even: student-odd is better;") and "detect" not in text


def test_pair_sentence_says_when_no_verdict_is_possible():
    pair = _pair(
        verdict="no verdict possible",
        units="groups",
        differing_units=3,
        n_units=14,
        min_p=0.25,
        p_value=1.0,
        needs_p_below=0.025,
    )
    pair["power"] = pair["power"] | {"units": "groups", "n_units": 14, "units_needed": 400}
    text = report.pair_sentence([pair], "student-odd", "student-even", 3)
    assert text.startswith("student-odd vs student-even: no verdict possible (3 differing groups: even if one model")
    assert "p could not go below 0.25, and at that p's Holm step this comparison needs p < 0.025" in text
    assert "better" not in text and "about 400 test groups (this run: 14)" in text
    same = _pair(differing_units=0, power={"mdd": {"macro_f1": None, "accuracy": None}, "target": 0.02})
    assert "label every test text alike" in report.pair_sentence([same], "student-odd", "student-even", 3)


def test_pair_sentence_with_seeds_quotes_the_method_level_interval_and_seeds_needed():
    pair = _pair(
        verdict_basis="method_t",
        method_level={"macro_f1": {"point": -0.01, "low": -0.05, "high": 0.03}},
        power={
            "mdd": {"macro_f1": 0.06, "accuracy": 0.05},
            "target": 0.02,
            "units": "texts",
            "n_units": 500,
            "units_needed": None,
            "seeds_needed": 9,
            "alpha_step": 0.025,
        },
    )
    text = report.pair_sentence([pair], "student-odd", "student-even", 3)
    assert "= +0.010 (method-level 95% CI over seeds -0.030 to +0.050)" in text
    assert "more test texts alone would not detect 0.02" in text and "or about 9 seeds on this test set" in text
    # two seeds: neither more texts nor more seeds alone; both together, and the scale cannot hold the MDD
    pair["power"] |= {
        "mdd": {"macro_f1": 1.04, "accuracy": 0.9},
        "seeds_needed": None,
        "units_needed_with_10_seeds": 4321,
    }
    text = report.pair_sentence([pair], "student-odd", "student-even", 3)
    assert "could not detect any macro-F1 difference" in text and "more seeds alone on this test set would not" in text
    assert text.endswith("; with 10 seeds, about 4,321 test texts would.")


def test_scope_names_the_demo_only_for_the_demo():
    split = {"n": 140, "positive_share": 0.286}
    data = {"source": report.DEMO_SOURCE, "splits": {"train": split, "validation": split, "test": split}}
    demo = " ".join(report.scope_lines(data))
    assert "test 140 (28.6% positive)" in demo and "synthetic smoke sample" in demo
    assert "synthetic" not in " ".join(report.scope_lines({**data, "source": "christophsonntag/OLID"}))


def test_how_sure_counts_each_family_and_says_what_one_seed_answers(built):
    result, _ = built
    pairs = [
        {"family": "primary", "verdict": "significant"},
        {"family": "primary", "verdict": "no verdict possible"},
        {"family": "exploratory", "verdict": "within noise"},
        {"family": "serving", "verdict": "non-inferior"},
    ]
    text = report.how_sure_sentence({**result, "test_groups": [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]}, pairs)
    assert text.startswith("10 test texts in 5 groups of near-duplicates; primary: 1 of 2 comparisons significant")
    assert "1 beyond what this design can decide" in text and "exploratory: 0 of 1 comparisons significant" in text
    assert "about these trained models, not about the methods" in text


class Recorder(torch.nn.Module):
    """A model that records when it ran (for the interleaving test)."""

    def __init__(self, name, log):
        super().__init__()
        self.name, self.log = name, log

    def forward(self, input_ids, attention_mask):
        self.log.append(self.name)


def test_time_together_interleaves_and_reports_median_and_range():
    from distill_lora.train.costs import time_together

    log = []
    data = [{"input_ids": [1, 2, 3], "label": 0, "idx": i} for i in range(4)]
    models = {n: (Recorder(n, log), torch.device("cpu")) for n in ("a", "b", "c")}
    out = time_together(models, data, pad_id=0, repeats=3, n_single=1, n_batched=2, batch_size=2)
    calls = [n for i, n in enumerate(log) if i == 0 or log[i - 1] != n]  # runs of consecutive calls per model
    assert calls[:3] == ["a", "b", "c"]  # warm-up in order
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # each repeat starts one model later
    x = out["a"]["latency_ms_batch1"]
    assert x["min"] <= x["median"] <= x["max"] and out["a"]["device"].startswith("cpu (")
    # progress: a line after each repeat, with how far it is and an estimate of what is left
    said = []
    time_together(models, data, pad_id=0, repeats=3, n_single=1, n_batched=2, batch_size=2, log=said.append)
    assert [line.split(" done")[0] for line in said] == [f"repeat {r}/3 of 3 models" for r in (1, 2, 3)]
    assert said[-1].endswith("about 0 s left") and "s left" in said[0]


def test_time_run_keeps_timings_of_unchanged_weights(monkeypatch):
    from distill_lora.experiment import timing

    comparison = {"seeds": [0], "per_seed": {"0": {"teacher": {"weights_sha256": "abc"}}}}
    previous = {"fingerprint": {"teacher": "abc"}, "device": "NVIDIA H200", "models": {}}
    monkeypatch.setattr(timing, "models_to_time", lambda *a: pytest.fail("a no-op re-run must not re-time"))
    assert timing.time_run("run", comparison, [], 0, torch.device("cpu"), previous) is previous
    monkeypatch.setattr(timing, "models_to_time", lambda *a: {"teacher": None})
    monkeypatch.setattr(timing, "time_together", lambda models, *a, **k: {"teacher": "timed"})
    changed = {"seeds": [0], "per_seed": {"0": {"teacher": {"weights_sha256": "new"}}}}
    fresh = timing.time_run("run", changed, [], 0, torch.device("cpu"), previous)
    assert fresh["models"] == {"teacher": "timed"} and fresh["fingerprint"] == {"teacher": "new"}


def test_analysis_quotes_the_joint_timings():
    """The Costs table used the joint timings while the analysis quoted each stage's own (another load, another
    moment): one report gave the same teacher 21.3 and 26.1 ms."""
    from distill_lora.report.summary import use_joint_timings

    result = {
        "seeds": [0],
        "per_seed": {
            "0": {
                "teacher": {},
                "teacher-int8": {"quantized_from": "teacher"},
                "ens": {"ensemble_of": ["teacher", "teacher-int8"]},
            }
        },
    }
    summary = {
        "teacher": {"latency_ms_batch1": {"mean": 26.1, "std": 0.0}},
        "teacher-int8": {"quantized_from": "teacher"},
        "ens": {},
    }
    timings = {
        "device": "cpu (1 threads)",
        "models": {
            "teacher": {"latency_ms_batch1": {"median": 21.3}, "throughput_batch64": {"median": 40.0}},
            "teacher-int8": {"latency_ms_batch1": {"median": 14.0}, "throughput_batch64": {"median": 60.0}},
        },
    }
    use_joint_timings(result, summary, timings)
    assert summary["teacher"]["latency_ms_batch1"]["mean"] == 21.3
    assert summary["teacher-int8"]["fp32_cpu_latency_ms_batch1"]["mean"] == 21.3
    assert summary["ens"]["latency_ms_batch1"]["mean"] == pytest.approx(35.3)
    assert summary["ens"]["throughput_batch64"]["mean"] == pytest.approx(24.0)
    timings["device"] = "NVIDIA H200"  # the source was timed on the GPU: no CPU comparison to make
    summary["teacher-int8"] = {"quantized_from": "teacher"}
    use_joint_timings(result, summary, timings)
    assert "fp32_cpu_latency_ms_batch1" not in summary["teacher-int8"]


def _timings(spreads: dict) -> dict:
    models = {
        name: {
            "device": "cpu",
            "latency_ms_batch1": {"median": 10.0, "min": 10.0, "max": 10.0 * (1 + s)},
            "throughput_batch64": {"median": 100.0, "min": 90.0, "max": 110.0},
        }
        for name, s in spreads.items()
    }
    return {"seed": 0, "device": "cpu (2 threads)", "repeats": 5, "inputs": "some", "models": models}


def test_a_timing_with_repeats_far_apart_says_the_machine_was_busy():
    """The median model's spread over repeats decides: one model's hiccup is not a busy machine; most models' slow
    repeats are."""
    assert "busy" not in report.timing_note(_timings({"a": 0.2, "b": 0.3, "c": 2.0}))  # one hiccup
    note = report.timing_note(_timings({"a": 0.6, "b": 0.8, "c": 2.0}))
    assert "**The machine was busy while timing:** c's slowest repeat took 30.00 ms, 200% more than its fastest" in note
    assert "3 of the 3 models' repeats disagree by more than half" in note and "distill-lora retime RUN" in note
