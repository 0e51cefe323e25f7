"""The comparison report: the assignment's table, the full tables, plots and analysis.

Built only from the comparison dict that results.json holds, so `distill-lora report RUN_DIR` can
rebuild it without the models.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from distill_lora.files import atomic_write_json, atomic_write_text, make_temp_dir
from distill_lora.report.analysis import (
    add_ensembles,
    analysis_lines,
    compare_pairs,
    int8_comparisons,
    runs_of,
    stage_ids,
    summarise,
)
from distill_lora.report.plots import draw_all
from distill_lora.stage_ids import (
    LORA_STUDENT,
    LORA_TEACHER,
    STUDENT_EVEN,
    STUDENT_ODD,
    TEACHER,
    is_lora,
    is_student,
    kind_of,
)

COLUMNS = ("Model Type", "Training Loss", "Test Set Performance")  # the assignment's table, as the course asks

LAYERS_NOTE = (
    "Layers = the encoder layers a model runs at inference; a LoRA model runs every layer of the model "
    "it adapts, and its adapters add to it."
)
LOSS_NOTE = (
    "Training Loss = mean cross-entropy with the true labels over the training batches of the selected "
    "epoch (train mode, dropout on), the same quantity for every model; a distilled student's total "
    "distillation loss is in the setup table."
)
INT8_NOTE = (
    "int8 rows: the fp32 model above with post-training dynamic quantisation (torch): nn.Linear weights "
    "in int8, activations quantised per batch at run time, on the CPU; nothing was trained. Size = int8 "
    "weights + their scales + the fp32 rest (embeddings, LayerNorm, biases); the int8 weights are not saved "
    "(rebuilt exactly from the fp32 stage folder)."
)
TEST_NOTE = (
    "Test Set Performance = accuracy / macro-F1 on the test split; each model was evaluated once on it, "
    "after its epoch was selected on validation; the test split chose nothing."
)
ENSEMBLE_NOTE = (
    "Ensemble rows were not trained or timed: their parameters, training time and latency are sums "
    "of their members' (they run every member), not measurements; their peak memory was not measured."
)
DEMO_SOURCE = "package:distill_lora/demo_data"
EXAMPLE_CHARS = 160  # a misclassified text is cut here: enough to recognise it, short enough to scan


def digits_for(n_test: int) -> int:
    """Decimals a test metric can carry: one example moves accuracy by 1/n, so with n < 10,000 the fourth
    decimal is noise."""
    return 3 if n_test < 10_000 else 4


def _ms(x: dict, digits: int = 3, one_seed: bool = False) -> str:
    """'0.812' for one seed, '0.812 ± 0.005' (sample std over seeds) for several."""
    if x is None or x["mean"] is None:
        return "–"
    if one_seed:
        return f"{x['mean']:.{digits}f}"
    return f"{x['mean']:.{digits}f} ± {x['std']:.{digits}f}"


def _millions(n: int | None) -> str:
    return "–" if n is None else f"{n / 1e6:.2f}M"


def _mib(n: int | None) -> str:
    return "–" if not n else f"{n / 2**20:.1f} MiB"


def _seeds_text(result: dict) -> str:
    seeds = result["seeds"]
    if len(seeds) == 1:
        return f"one training seed ({seeds[0]}): how much the numbers move between seeds was not measured"
    return f"mean ± sample std over {len(seeds)} seeds ({', '.join(map(str, seeds))})"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def derived_from(result: dict, stage: str) -> str | None:
    """'int8' or 'ensemble' for rows that were not trained (made from trained models), else None."""
    run = runs_of(result, stage)[0]
    if run.get("quantized_from"):
        return "int8"
    if run.get("ensemble_of"):
        return "ensemble"
    return None


def trained_stages(result: dict) -> list[str]:
    return [st for st in stage_ids(result) if derived_from(result, st) is None]


def _digits(result: dict) -> int:
    return digits_for(len(result["test_labels"]))


# ---------------------------------------------------------------- tables


def assignment_rows(result: dict, summary: dict) -> list[list[str]]:
    """The assignment's table: one row per trained model; accuracy / macro-F1 in one cell."""
    one, d = len(result["seeds"]) == 1, _digits(result)
    return [
        [
            summary[st]["model_type"],
            _ms(summary[st]["train_loss"], d, one),
            f"{_ms(summary[st]['accuracy'], d, one)} / {_ms(summary[st]['macro_f1'], d, one)}",
        ]
        for st in trained_stages(result)
    ]


def _ci(s: dict, metric: str, d: int) -> str:
    ci = s["ci"][metric]
    return f"{ci['point']:.{d}f} [{ci['low']:.{d}f}, {ci['high']:.{d}f}]"


def _ci_methods(summary: dict) -> str:
    """The CI methods used, as the summary names them (percentile bootstrap when unnamed)."""
    methods = {}
    for s in summary.values():
        for metric in ("accuracy", "macro_f1"):
            methods.setdefault(s["ci"][metric].get("method", "percentile bootstrap"), []).append(metric)
    return "; ".join(sorted(methods))


def _selected(run: dict) -> dict | None:
    """The validation record of the selected epoch (None for rows that were not trained)."""
    if not run.get("selected_epoch") or not run.get("validation_history"):
        return None
    return run["validation_history"][run["selected_epoch"] - 1]


def validation_cell(result: dict, stage: str, d: int) -> str:
    """'acc / macro-F1' on validation at the selected epoch, mean over seeds; '–' for untrained rows."""
    picked = [_selected(r) for r in runs_of(result, stage)]
    if None in picked:
        return "–"
    acc = sum(p["val_accuracy"] for p in picked) / len(picked)
    f1 = sum(p["val_macro_f1"] for p in picked) / len(picked)
    return f"{acc:.{d}f} / {f1:.{d}f}"


def full_rows(result: dict, summary: dict) -> tuple[list[str], list[list[str]]]:
    one, d = len(result["seeds"]) == 1, _digits(result)
    header = [
        "Model",
        "Layers",
        "Validation acc / macro-F1 (selected epoch)",
        "Accuracy [95% CI]",
        "Macro-F1 [95% CI]",
        "F1 positive",
        "ROC-AUC",
        "PR-AUC",
        "ECE",
    ]
    tuned = any("at_threshold" in s for s in summary.values())
    if tuned:  # per row: a row without its own threshold (every ensemble) shows "–"
        header += ["Threshold (validation)", "Macro-F1 at threshold"]
    rows = []
    for stage, s in summary.items():
        row = [
            stage,
            str(s["depth"]),
            validation_cell(result, stage, d),
            _ci(s, "accuracy", d),
            _ci(s, "macro_f1", d),
            _ms(s["f1_positive"], d, one),
            _ms(s["roc_auc"], d, one),
            _ms(s["pr_auc"], d, one),
            _ms(s["ece"], d, one),
        ]
        if tuned:
            row += [
                _ms(s.get("threshold"), 3, one),
                _ms(s["at_threshold"]["macro_f1"], d, one) if "at_threshold" in s else "–",
            ]
        rows.append(row)
    return header, rows


def _starting_weights(result: dict, stage: str) -> str:
    run = runs_of(result, stage)[0]
    layers = run.get("teacher_layers")
    cut = f"layers {{{','.join(map(str, layers))}}}" if layers else f"all {run['depth']} layers"
    if is_student(stage):
        return f"fine-tuned teacher, {cut}"
    if is_lora(stage):
        return f"pretrained, {cut}, + LoRA adapters and a new head"
    return f"pretrained, {cut}, + a new head"


def _loss_text(stage: str, run: dict) -> str:
    w = run.get("loss_weights")
    if w is None:
        if is_student(stage):  # a run from before metrics.json recorded the weights
            return "w_ce·CE + w_kl·T²·KL + w_cos·cos (distillation)"
        return "CE"
    text = f"{w['w_ce']:.2g}·CE + {w['w_kl']:.2g}·T²·KL + {w['w_cos']:.2g}·cos (T = {w['temperature']:g})"
    return text + (f" + {w['w_hidden']:.2g}·hidden cos" if w.get("w_hidden") else "")


def _derived_note(summary: dict) -> list[str]:
    """What the rows marked – are, naming only the kinds this run has (no line when it has none)."""
    kinds = []
    if any(s.get("quantized_from") for s in summary.values()):
        kinds.append("int8 rows quantise a trained model")
    if any(kind_of(stage).kind == "ensemble" for stage in summary):
        kinds.append("ensembles average trained models")
    return [f"- Rows marked – were not trained: {'; '.join(kinds)}."] if kinds else []


PRECISION = {"no": "fp32", "bf16": "bf16 mixed", "fp16": "fp16 mixed"}  # accelerate's names → the reader's


def setup_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """How each model was made: weights it started from, loss, what was trained, and how."""
    header = [
        "Model",
        "Starting weights",
        "Loss",
        "Trainable params",
        "Epochs run / selected",
        "Learning rate",
        "Batch size",
        "Precision",
        "Final training loss (total)",
    ]
    rows = []
    for stage in stage_ids(result):
        run, kind = runs_of(result, stage)[0], derived_from(result, stage)
        if kind == "int8":
            rows.append(
                [
                    stage,
                    f"{run['quantized_from']}, weights quantised to int8",
                    "– (not trained)",
                    "–",
                    "–",
                    "–",
                    "–",
                    run.get("precision", "int8 weights, fp32 activations"),
                    "–",
                ]
            )
            continue
        if kind == "ensemble":
            rows.append(
                [
                    stage,
                    "mean probability of " + ", ".join(run["ensemble_of"]),
                    "– (not trained)",
                    "–",
                    "–",
                    "–",
                    "–",
                    "–",
                    "–",
                ]
            )
            continue
        t = run.get("train_settings", {})
        total = _ms(_mean_of(result, stage, "train_total_loss"), _digits(result), True) if is_student(stage) else "–"
        rows.append(
            [
                stage,
                _starting_weights(result, stage),
                _loss_text(stage, run),
                _millions(run["trainable_params"]),
                f"{len(run['validation_history'])}"
                + (f" of {t['epochs']}" if "epochs" in t else "")
                + f" / {run['selected_epoch']}",
                f"{t['lr']:g}" if "lr" in t else "–",
                str(t.get("batch_size", "–")),
                PRECISION.get(run.get("precision"), str(run.get("precision", "–"))),
                total,
            ]
        )
    return header, rows


def _mean_of(result: dict, stage: str, key: str) -> dict:
    values = [r[key] for r in runs_of(result, stage) if r.get(key) is not None]
    return {"mean": sum(values) / len(values) if values else None, "std": 0.0}


def per_class_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    names = result["label_names"]
    header = ["Model"] + [f"{n}: {k}" for n in names for k in ("precision", "recall")]
    rows = []
    for stage in stage_ids(result):
        runs = runs_of(result, stage)
        row = [stage]
        for n in names:
            for k in ("precision", "recall"):
                vals = [r["test"]["per_class"][n][k] for r in runs]
                row.append(f"{sum(vals) / len(vals):.{_digits(result)}f}")
        rows.append(row)
    return header, rows


def measured_on(summary: dict, fallback: str) -> str:
    """The device(s) the costs were measured on, from each stage's own metrics.json: the process that writes the
    report (e.g. a no-op re-run with another thread count) measured nothing. One device: its name; several:
    each with its stages. int8 rows are timed on the CPU and say so in their own section."""
    stages_on: dict[str, list[str]] = {}
    for stage, s in summary.items():
        if not s.get("quantized_from"):
            stages_on.setdefault(s.get("device") or fallback, []).append(stage)
    if len(stages_on) <= 1:
        return next(iter(stages_on), fallback)
    return "; ".join(f"{device} ({', '.join(stages)})" for device, stages in stages_on.items())


def _spread_text(x: dict, digits: int) -> str:
    return f"{x['median']:.{digits}f} [{x['min']:.{digits}f}–{x['max']:.{digits}f}]"


def timed_speed(result: dict, summary: dict, timings: dict | None, stage: str) -> tuple[str, str]:
    """(latency, throughput) cells: the joint timing at the end of the run (median [min–max] of its repeats)
    when there is one; an ensemble's is the sum over its members; else the stage's own timing after training."""
    models = (timings or {}).get("models", {})
    if stage in models:
        t = models[stage]
        return _spread_text(t["latency_ms_batch1"], 2), _spread_text(t["throughput_batch64"], 1)
    members = runs_of(result, stage)[0].get("ensemble_of")
    if members and all(m in models for m in members):
        latency = sum(models[m]["latency_ms_batch1"]["median"] for m in members)
        throughput = 1 / sum(1 / models[m]["throughput_batch64"]["median"] for m in members)
        return f"{latency:.2f} (sum)", f"{throughput:.1f} (sum)"
    s, one = summary[stage], len(result["seeds"]) == 1
    if "latency_ms_batch1" not in s:
        return "–", "–"
    return _ms(s["latency_ms_batch1"], 2, one), _ms(s["throughput_batch64"], 1, one)


def teacher_pass_cell(result: dict, stage: str) -> str:
    """The teacher-logit pass a distilled student needed (its own cost, apart from the student's training)."""
    t = runs_of(result, stage)[0].get("teacher_targets")
    if not t:
        return "–"
    if t.get("reused"):
        return "reused (cached)"
    return f"{t['time_s']:.1f} s, {_mib(t.get('peak_memory_bytes'))}"


def cost_rows(result: dict, summary: dict, timings: dict | None) -> tuple[list[str], list[list[str]]]:
    one = len(result["seeds"]) == 1
    spread = " (median [min–max] of repeats)" if timings else ""
    header = [
        "Model",
        "Layers",
        "Total params",
        "Trainable params",
        "Weights on disk",
        "Training time (s)",
        "Teacher-logit pass",
        "Training samples/s",
        "Peak memory",
        f"Latency, batch 1 (ms/example){spread}",
        f"Throughput, batch 64 (examples/s){spread}",
    ]
    rows = []
    first = next(iter(summary.values()))
    for stage, s in summary.items():
        kind = derived_from(result, stage)
        time_s = _ms(s["wall_time_s"], 1, one)
        if "wall_time_with_teacher_s" in s:
            time_s += f" (with teacher {_ms(s['wall_time_with_teacher_s'], 1, one)})"
        weights = _mib(s.get("weights_bytes"))
        if is_lora(stage):
            weights += " adapter + head (base model shipped separately)"
        if kind == "int8":  # not trained: what it takes to obtain it is its source's training plus quantising
            time_s = f"– ({s['quantized_from']} + {_ms(s['quantize_time_s'], 1, one)} s quantising)"
            weights += " int8 (not saved; rebuilt from its source)"
        elif kind == "ensemble":
            time_s += " (sum of members)"
        elif s.get("device") != first.get("device"):  # trained somewhere else
            time_s += f" on {s.get('device')}"
        # an ensemble's members ran apart: its peak memory was never measured
        memory = "–" if kind == "ensemble" else _mib(s["peak_memory_bytes"])
        # int8 rows on a GPU run: CPU RSS, said in the cell
        if kind != "ensemble" and s.get("peak_memory_kind") != first.get("peak_memory_kind"):
            memory += f" ({s.get('peak_memory_kind')})"
        latency, throughput = timed_speed(result, summary, timings, stage)
        device = ((timings or {}).get("models", {}).get(stage) or {}).get("device") or s.get("device")
        if device != (timings or {}).get("device", first.get("device")) and latency != "–" and kind != "ensemble":
            latency, throughput = f"{latency} on {device}", f"{throughput} on {device}"
        trainable = "–" if kind == "int8" else _millions(s["trainable_params"])
        rows.append(
            [
                stage,
                str(s["depth"]),
                _millions(s["total_params"]),
                trainable,
                weights,
                time_s,
                teacher_pass_cell(result, stage),
                _ms(s["samples_per_s"], 1, one),
                memory,
                latency,
                throughput,
            ]
        )
    return header, rows


def _int8_speed(c: dict, timings: dict | None) -> dict | None:
    """fp32 and int8 CPU timings of one int8 row: from the joint timing when it has both, else the stage's."""
    models = (timings or {}).get("models", {})
    fp32 = models.get(f"{c['source']} (fp32 on CPU)") or models.get(c["source"])
    if c["stage"] in models and fp32 and fp32["device"].startswith("cpu"):
        return {
            "latency_ms_int8": models[c["stage"]]["latency_ms_batch1"]["median"],
            "latency_ms_fp32": fp32["latency_ms_batch1"]["median"],
            "throughput_int8": models[c["stage"]]["throughput_batch64"]["median"],
            "throughput_fp32": fp32["throughput_batch64"]["median"],
        }
    if "speedup_batch1" in c:
        return {k: c[k] for k in ("latency_ms_int8", "latency_ms_fp32", "throughput_int8", "throughput_fp32")}
    return None


def int8_rows(summary: dict, pairs: list[dict], timings: dict | None, d: int) -> tuple[list[str], list[list[str]]]:
    """Each int8 row beside its fp32 source: size, speed on the same CPU, macro-F1 and the pair's verdict."""
    header = [
        "int8 model",
        "Size int8 / fp32",
        "× smaller",
        "CPU latency batch 1, int8 / fp32 (ms)",
        "× faster",
        "CPU throughput batch 64, int8 / fp32 (ex/s)",
        "× faster",
        "Macro-F1 int8 / fp32",
        "Change",
        "verdict (as in the pairs table)",
    ]
    rows = []
    for c in int8_comparisons(summary, pairs):
        t = _int8_speed(c, timings)
        p = c["pair"]
        verdict = p["verdict"] if p["verdict"] != "significant" else f"significant: {p['winner']} better"
        rows.append(
            [
                c["stage"],
                f"{_mib(c['int8_bytes'])} / {_mib(c['fp32_bytes'])}",
                f"{c['size_ratio']:.2f}",
                f"{t['latency_ms_int8']:.2f} / {t['latency_ms_fp32']:.2f}" if t else "–",
                f"{t['latency_ms_fp32'] / t['latency_ms_int8']:.2f}" if t else "–",
                f"{t['throughput_int8']:.1f} / {t['throughput_fp32']:.1f}" if t else "–",
                f"{t['throughput_int8'] / t['throughput_fp32']:.2f}" if t else "–",
                f"{c['macro_f1_int8']:.{d}f} / {c['macro_f1_fp32']:.{d}f}",
                f"{c['macro_f1_change']:+.{d}f}",
                verdict,
            ]
        )
    return header, rows


def _diff_cell(p: dict, metric: str, d: int) -> str:
    x = p.get("diff", {}).get(metric)
    if x is None:
        return f"{p['macro_f1_diff']:+.{d}f}" if metric == "macro_f1" else "–"
    return f"{x['point']:+.{d}f} [{x['low']:+.{d}f}, {x['high']:+.{d}f}]"


def _p_list(values) -> str:
    return "–" if values is None else ", ".join(f"{x:.3g}" for x in values)


def pair_rows(pairs: list[dict], alpha: float, d: int = 3) -> tuple[list[str], list[list[str]]]:
    header = [
        "A",
        "B",
        "Δ macro-F1 (A − B) [95% CI]",
        "Δ accuracy (A − B) [95% CI]",
        "McNemar p (accuracy), raw",
        "McNemar p, Holm-adjusted",
        "Discordant b / c",
        f"seeds with p < {alpha}",
        "paired t-test p (macro-F1 over seeds)",
        "verdict",
        "decided by",
    ]
    rows = []
    for p in pairs:
        t = p["paired_t"]
        t_cell = (
            f"{t['p_value']:.3g}"
            if t.get("p_value") is not None
            else f"n/a ({t['reason']})"
            if t.get("reason")
            else "–"
        )
        verdict = p["verdict"] if p["verdict"] != "significant" else f"significant: {p['winner']} better"
        discordant = "; ".join(f"{b} / {c}" for b, c in p["discordant"]) if "discordant" in p else "–"
        rows.append(
            [
                p["a"],
                p["b"],
                _diff_cell(p, "macro_f1", d),
                _diff_cell(p, "accuracy", d),
                _p_list(p["mcnemar_p"]),
                _p_list(p.get("mcnemar_p_holm")),
                discordant,
                f"{p['seeds_significant']} of {p['n_seeds']}",
                t_cell,
                verdict,
                BASIS.get(p.get("verdict_basis"), "McNemar, unadjusted"),
            ]
        )
    return header, rows


BASIS = {"mcnemar_holm": "McNemar, Holm-adjusted", "cluster_bootstrap": "paired cluster bootstrap, Holm-adjusted"}


def data_section(data: dict) -> list[str]:
    rows = []
    for split, s in data["splits"].items():
        q = s["length_percentiles"]
        rows.append(
            [
                split,
                str(s["n"]),
                f"{s['positive_share']:.1%}",
                f"{q['p50']:.0f} / {q['p90']:.0f} / {q['p99']:.0f} / {q['max']:.0f}",
                f"{s['truncated_share']:.1%}",
            ]
        )
    lines = [
        f"Source: `{data['source']}`; max_length {data['max_length']} tokens.",
        "",
        _md_table(["Split", "Examples", "Positive share", "Tokens p50 / p90 / p99 / max", "Truncated"], rows),
        "",
    ]
    o = data["overlap"]
    lines.append(
        f"Duplicate texts within train / validation / test: {o['duplicates_in_train']} / "
        f"{o['duplicates_in_validation']} / {o['duplicates_in_test']} "
        f"({o['duplicates_with_clashing_labels']} with clashing labels). Texts shared by train and "
        f"validation: {o['shared_train_validation']}; train and test: {o['shared_train_test']}; "
        f"validation and test: {o['shared_validation_test']}"
        + (" (set data.drop_duplicates: true to drop them)." if not data.get("drop_duplicates") else ".")
    )
    lines += [f"- {n}" for n in data.get("notes", [])]
    return lines


# ---------------------------------------------------------------- summary and examples


def _find_pair(pairs: list[dict], a: str, b: str) -> dict | None:
    return next((p for p in pairs if {p["a"], p["b"]} == {a, b}), None)


def pair_sentence(pairs: list[dict], a: str, b: str, d: int) -> str | None:
    """'A vs B: ...' from the pair's own numbers: the macro-F1 difference A − B (with its CI when the analysis
    gave one), the verdict and what decided it."""
    p = _find_pair(pairs, a, b)
    if p is None:
        return None
    sign = 1 if p["a"] == a else -1  # the pair may be stored as (b, a)
    x = p.get("diff", {}).get("macro_f1")
    if x:
        low, high = sorted((sign * x["low"], sign * x["high"]))
        delta = f"macro-F1 {a} − {b} = {sign * x['point']:+.{d}f} (95% CI {low:+.{d}f} to {high:+.{d}f})"
    else:
        delta = f"macro-F1 {a} − {b} = {sign * p['macro_f1_diff']:+.{d}f} (no CI recorded)"
    basis = BASIS.get(p.get("verdict_basis"), "McNemar, unadjusted")
    if p["verdict"] == "significant":
        return f"{a} vs {b}: {p['winner']} is better; {delta}; significant by {basis}."
    what = "not significant" if p["verdict"] == "within noise" else "not consistent across seeds"
    text = f"{a} vs {b}: no difference shown; {delta}; {what} by {basis}"
    if x and p.get("verdict_basis") == "mcnemar_holm" and (x["low"] > 0 or x["high"] < 0):
        # the two can disagree: McNemar counts errors (accuracy), and the CI is one of many, unadjusted
        text += (
            " (McNemar compares errors, i.e. accuracy; the macro-F1 interval excludes 0 but is not adjusted "
            "for the other comparisons)"
        )
    return text + "."


def _seconds(result: dict, stage: str) -> float:
    runs = runs_of(result, stage)
    return sum(r["wall_time_s"] for r in runs) / len(runs)


def _targets_s(result: dict, stage: str) -> float:
    t = runs_of(result, stage)[0].get("teacher_targets") or {}
    return 0.0 if t.get("reused") else t.get("time_s", 0.0)


def training_cost_sentence(result: dict) -> str | None:
    """Measured training times of the students and the LoRA student, with their ratio, the teacher counted."""
    stages = stage_ids(result)
    students = [s for s in (STUDENT_ODD, STUDENT_EVEN) if s in stages]
    if not students or LORA_STUDENT not in stages:
        return None
    teacher = _seconds(result, TEACHER) if TEACHER in stages else 0.0
    lora = _seconds(result, LORA_STUDENT)
    parts = []
    for s in students:
        own = _seconds(result, s) + _targets_s(result, s)
        parts.append(
            f"{s} {own:.0f} s ({own / lora:.1f}× lora-student; {(own + teacher) / lora:.1f}× counting "
            f"the {teacher:.0f} s teacher it needs)"
        )
    return f"training time: lora-student {lora:.0f} s; " + "; ".join(parts)


def latency_sentence(result: dict, summary: dict, timings: dict | None) -> str | None:
    stages = [s for s in (TEACHER, STUDENT_ODD, STUDENT_EVEN, LORA_STUDENT, LORA_TEACHER) if s in summary]
    models = (timings or {}).get("models", {})
    if timings and all(s in models for s in stages):
        ms = {s: models[s]["latency_ms_batch1"]["median"] for s in stages}
        where = f"timed together on {timings['device']}"
    elif all("latency_ms_batch1" in summary[s] for s in stages):
        ms = {s: summary[s]["latency_ms_batch1"]["mean"] for s in stages}
        where = "each timed once right after its own training, so not strictly comparable"
    else:
        return None
    base = ms.get(TEACHER)
    cells = [
        f"{s} {v:.2f} ms" + (f" ({v / base:.2f}× teacher)" if base and s != TEACHER else "") for s, v in ms.items()
    ]
    return f"latency at batch 1: {', '.join(cells)} ({where})"


def how_sure_sentence(result: dict, pairs: list[dict]) -> str:
    n = len(result["test_labels"])
    groups = result.get("test_groups")
    text = f"{n} test texts" + (f" in {len(set(groups))} groups of near-duplicates" if groups else "")
    seeds = result["seeds"]
    significant = sum(p["verdict"] == "significant" for p in pairs)
    bases = {BASIS.get(p.get("verdict_basis"), "McNemar, unadjusted") for p in pairs}
    text += (
        f"; {significant} of {len(pairs)} pairwise differences are significant "
        f"({', '.join(sorted(bases)) or 'no pairs'})"
    )
    if len(seeds) == 1:
        text += (
            "; one training seed, so variation between training runs was not measured and no ranking across "
            "seeds can be made"
        )
    else:
        text += f"; {len(seeds)} training seeds"
    return text + "."


def summary_section(result: dict, summary: dict, pairs: list[dict], data: dict, timings: dict | None) -> list[str]:
    """The first lines: what was compared on what data, one computed sentence per question, how sure."""
    d = _digits(result)
    trained = trained_stages(result)
    derived = [s for s in summary if s not in trained]
    test = data["splits"]["test"]
    lines = [
        "## Summary",
        "",
        f"- **Compared:** {len(trained)} trained models ({', '.join(trained)})"
        + (f" and {len(derived)} rows derived from them ({', '.join(derived)})" if derived else "")
        + f", on `{data['source']}` (test split: {test['n']} texts, {test['positive_share']:.1%} positive).",
    ]
    odd_even = pair_sentence(pairs, STUDENT_ODD, STUDENT_EVEN, d)
    if odd_even:
        lines.append(f"- **Odd vs even layers:** {odd_even}")
    distil = [x for x in (pair_sentence(pairs, s, LORA_STUDENT, d) for s in (STUDENT_ODD, STUDENT_EVEN)) if x]
    if distil:
        lines.append(f"- **Distillation vs LoRA (same depth):** {' '.join(distil)}")
    costs = [x for x in (training_cost_sentence(result), latency_sentence(result, summary, timings)) if x]
    if costs:
        lines.append(f"- **Costs (measured):** {'; '.join(costs)}.")
    lines.append(f"- **How sure:** {how_sure_sentence(result, pairs)}")
    return lines + [""] + scope_lines(data)


def scope_lines(data: dict) -> list[str]:
    """Where the data come from, how much of it, the class balance; the demo says what it can show."""
    sizes = ", ".join(f"{split} {s['n']} ({s['positive_share']:.1%} positive)" for split, s in data["splits"].items())
    lines = [f"Scope: data from `{data['source']}`; {sizes}."]
    if data["source"] == DEMO_SOURCE:
        lines.append(
            "This is the shipped demo: a small synthetic smoke sample of template sentences. Its table "
            "shows that every stage runs and learns, not which method is better."
        )
    return lines + [""]


def _one_line(text: str) -> str:
    """A test text on one line, cut to EXAMPLE_CHARS: whitespace and control characters become spaces."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= EXAMPLE_CHARS else flat[: EXAMPLE_CHARS - 1] + "…"


def quoted_block(lines: list[str]) -> list[str]:
    """A fenced code block holding `lines` verbatim: markdown and HTML inside are shown, never rendered. The fence
    is longer than any run of backticks in the lines, so no text can close it."""
    run = best = 0
    for c in "\n".join(lines):  # the longest run of consecutive backticks
        run = run + 1 if c == "`" else 0
        best = max(best, run)
    fence = "`" * max(3, best + 1)
    return [fence + "text", *lines, fence]


def examples_section(result: dict, summary: dict, per_model: int = 3) -> list[str]:
    """For each model, a few misclassified test texts (first seed), the most confidently wrong first."""
    texts = result.get("test_texts")
    if not texts:
        return []
    labels, names, seed = result["test_labels"], result["label_names"], result["seeds"][0]
    lines = [
        "## Misclassified test examples",
        "",
        f"Up to {per_model} per model (seed {seed}), the most confidently wrong first. The texts are quoted "
        f"from the test data, cut at {EXAMPLE_CHARS} characters, inside code blocks: they are data, not this "
        "report's words.",
        "",
    ]
    for stage in summary:
        pred = result["per_seed"][str(seed)][stage]["predictions"]
        wrong = sorted(
            (i for i, y in enumerate(labels) if pred["pred"][i] != y),
            key=lambda i: -abs(pred["prob_positive"][i] - 0.5),
        )
        lines.append(f"**{stage}**: {len(wrong)} of {len(labels)} wrong" + (":" if wrong else "."))
        if wrong:
            lines += quoted_block(
                [
                    f"true {names[labels[i]]} | predicted {names[pred['pred'][i]]} | "
                    f"p({names[1]}) {pred['prob_positive'][i]:.2f} | {_one_line(texts[i])}"
                    for i in wrong[:per_model]
                ]
            )
        lines.append("")
    return lines


# ---------------------------------------------------------------- the whole report


def print_table(result: dict, summary: dict, console: Console | None = None) -> None:
    """The assignment's table on the terminal (80 columns when not a terminal), the baseline under it."""
    console = console or Console(width=None if sys.stdout.isatty() else 80)
    base = result["majority_baseline"]["test"]
    d = _digits(result)
    table = Table(
        title="distill-lora: the assignment's table",
        caption=(
            f"Test Set Performance = accuracy / macro-F1 on the test split; {_seeds_text(result)}. Majority class "
            f"(baseline): {base['accuracy']:.{d}f} / {base['macro_f1']:.{d}f}."
        ),
    )
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "Model Type" else "right")
    for row in assignment_rows(result, summary):
        table.add_row(*row)
    console.print(table)


def build_markdown(
    result: dict, summary: dict, pairs: list[dict], results: dict, alpha: float, plots: list[str]
) -> str:
    """report.md, section by section."""
    data, timings = results["data"], results.get("timings")
    majority = result["majority_baseline"]["test"]
    device = measured_on(summary, results["run"]["device"])
    md = ["# distill-lora: distillation vs LoRA", ""]
    md += summary_section(result, summary, pairs, data, timings)
    md += [f"Device{'s' if '; ' in device else ''}: {device}. Numbers: {_seeds_text(result)}.", ""]
    md += _assignment_and_setup(result, summary)
    md += _results_and_costs(result, summary, timings, device)
    md += _int8_section(summary, pairs, timings, _digits(result))
    md += _pairs_section(pairs, alpha, _digits(result))
    md += ["## Data", ""] + data_section(data) + [""] + examples_section(result, summary)
    md += ["## Plots", ""] + [f"![{PLOT_TITLES.get(name, name)}](plots/{name})\n" for name in plots]
    md += ["## Analysis", ""] + analysis_lines(result, summary, pairs, majority["macro_f1"]) + [""]
    return "\n".join(md)


PLOT_TITLES = {
    "loss_curves.png": "Training and validation loss per epoch",
    "metric_bars.png": "Test metrics with 95% CIs",
    "confusion_matrices.png": "Confusion matrices",
    "reliability.png": "Reliability diagram",
    "cost_vs_quality.png": "Cost vs quality",
}


def _assignment_and_setup(result: dict, summary: dict) -> list[str]:
    d = _digits(result)
    majority = result["majority_baseline"]["test"]
    md = [
        "## The assignment's table",
        "",
        _md_table(list(COLUMNS), assignment_rows(result, summary)),
        "",
        f"- {TEST_NOTE} Majority class (baseline): {majority['accuracy']:.{d}f} / {majority['macro_f1']:.{d}f}.",
        f"- {LOSS_NOTE}",
        "",
        "## Setup",
        "",
        _md_table(*setup_rows(result)),
        "",
        *_derived_note(summary),
        f"- {LAYERS_NOTE}",
    ]
    if any(s.get("quantized_from") for s in summary.values()):
        md.append(f"- {INT8_NOTE}")
    return md


def _results_and_costs(result: dict, summary: dict, timings: dict | None, device: str) -> list[str]:
    one = len(result["seeds"]) == 1
    resamples = summary[next(iter(summary))]["ci"]["accuracy"].get("n_resamples")
    return [
        "",
        "## Full results (test split)",
        "",
        f"Accuracy and macro-F1: value with a 95% CI ({_ci_methods(summary)}"
        + (f"; {resamples} resamples, fixed seed" if resamples else "")
        + "). Validation: the selected epoch. "
        "Other columns: " + ("value of the one seed." if one else "mean ± sample std over seeds."),
        "",
        _md_table(*full_rows(result, summary)),
        "",
        "Per class (mean over seeds):",
        "",
        _md_table(*per_class_rows(result)),
        "",
        "## Costs",
        "",
        f"Measured on {device}. Peak memory: {next(iter(summary.values()))['peak_memory_kind']}. "
        + timing_note(timings),
        "",
        _md_table(*cost_rows(result, summary, timings)),
        "",
        f"- {ENSEMBLE_NOTE}",
        "- Teacher-logit pass: the fine-tuned teacher's forward pass over the training "
        "split that a distilled student needs, apart from the student's own training.",
        "",
    ]


def _int8_section(summary: dict, pairs: list[dict], timings: dict | None, d: int) -> list[str]:
    if not int8_comparisons(summary, pairs):
        return []
    int8 = next(st for st, x in summary.items() if x.get("quantized_from"))
    cpu = ((timings or {}).get("models", {}).get(int8) or summary[int8]).get("device") or "CPU"
    return [
        "## int8 dynamic quantisation",
        "",
        INT8_NOTE + " Sizes count the tensors of each model (fp32: 4 "
        f"bytes per value). Latency and throughput: the int8 model and its fp32 source on the same CPU ({cpu}). "
        "The verdict is the pair's verdict below.",
        "",
        _md_table(*int8_rows(summary, pairs, timings, d)),
        "",
    ]


def _pairs_section(pairs: list[dict], alpha: float, d: int) -> list[str]:
    adjusted = any("mcnemar_p_holm" in p for p in pairs)
    return [
        "## Are the differences real?",
        "",
        f"Every pair of models (alpha = {alpha}). Δ: paired difference A − B. McNemar's exact test compares the "
        "pair's accuracy on the same test texts (not their macro-F1); b / c = texts only A / only B got right. "
        "'decided by' names the test behind each verdict"
        + (
            "; Holm-adjusted p values account for testing every pair."
            if adjusted
            else "; these p values are not adjusted for testing every pair."
        ),
        "",
        _md_table(*pair_rows(pairs, alpha, d)),
        "",
    ]


def _has_int8(timings: dict) -> bool:
    return any(kind_of(stage).kind == "int8" for stage in timings.get("models", {}))


def timing_note(timings: dict | None) -> str:
    if not timings:
        return (
            "Latency and throughput: validation inputs, each model timed once right after it trained, under "
            "whatever else the machine was doing: compare them with care (`distill-lora retime RUN` times "
            "them together)."
        )
    return (
        f"Latency and throughput: every model of seed {timings['seed']} timed together at the end of the run on "
        f"{timings['device']}{' (int8 rows on the CPU)' if _has_int8(timings) else ''}, interleaved, "
        f"{timings['repeats']} repeats after a warm-up, "
        f"on the same inputs ({timings['inputs']}), in fp32; median [min–max] over the repeats."
    )


def out_of_domain_section(name: str, ood: dict, in_domain: dict, resamples: int, boot_seed: int, alpha: float) -> str:
    """Every model of the run on another data set: same metrics, CIs and tests, and the drop from in-domain."""
    result = add_ensembles(ood["comparison"])
    summary = summarise(result, resamples, boot_seed)
    d = _digits(result)
    drop = [
        [
            stage,
            f"{in_domain[stage]['macro_f1']['mean']:.{d}f}",
            f"{s['macro_f1']['mean']:.{d}f}",
            f"{s['macro_f1']['mean'] - in_domain[stage]['macro_f1']['mean']:+.{d}f}",
        ]
        for stage, s in summary.items()
        if stage in in_domain
    ]
    lines = [
        f"## Out-of-domain: {name}",
        "",
        f"Every model of this run on `{ood['source']}` ({ood['split']} split, {ood['n']} examples, "
        f"{ood['positive_share']:.1%} positive), evaluated once; nothing was tuned on it.",
        "",
        _md_table(*full_rows(result, summary)),
        "",
        _md_table(["Model", "Macro-F1 in domain", f"Macro-F1 on {name}", "Change"], drop),
        "",
        _md_table(*pair_rows(compare_pairs(result, alpha, resamples, boot_seed), alpha, d)),
        "",
    ]
    return "\n".join(lines)


def results_csv(result: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    keys = ["accuracy", "macro_f1", "f1_positive", "roc_auc", "pr_auc", "ece"]
    writer.writerow(
        [
            "seed",
            "stage",
            "model_type",
            "layers",
            "trainable_params",
            "total_params",
            "train_loss",
            "train_total_loss",
            *[f"test_{k}" for k in keys],
            "selected_epoch",
            "wall_time_s",
            "samples_per_s",
            "peak_memory_bytes",
            "latency_ms_batch1",
            "throughput_batch64",
        ]
    )
    for seed in result["seeds"]:
        for stage, m in result["per_seed"][str(seed)].items():
            inf = m.get("inference", {})
            writer.writerow(
                [
                    seed,
                    stage,
                    m["model_type"],
                    m["depth"],
                    m["trainable_params"],
                    m["total_params"],
                    m["train_loss"],
                    m["train_total_loss"],
                    *[m["test"].get(k) for k in keys],
                    m["selected_epoch"],
                    m["wall_time_s"],
                    m["samples_per_s"],
                    m.get("peak_memory_bytes"),
                    inf.get("latency_ms_batch1"),
                    inf.get("throughput_batch64"),
                ]
            )
    return buf.getvalue()


def use_joint_timings(result: dict, summary: dict, timings: dict | None) -> None:
    """Put the joint timings (every model timed together, results.json "timings") into the summary the analysis
    reads, so its sentences quote the latencies of the Costs table; runs without them keep each stage's own."""
    models = (timings or {}).get("models", {})
    for stage, s in summary.items():
        members = runs_of(result, stage)[0].get("ensemble_of") or []
        names = [stage] if stage in models else members if members and all(m in models for m in members) else []
        if not names:
            continue
        s["latency_ms_batch1"] = {"mean": sum(models[n]["latency_ms_batch1"]["median"] for n in names), "std": 0.0}
        s["throughput_batch64"] = {
            "mean": 1 / sum(1 / models[n]["throughput_batch64"]["median"] for n in names),
            "std": 0.0,
        }
        source = s.get("quantized_from")
        # an int8 row's speed-up compares it with its source on the same CPU
        on_cpu = (
            f"{source} (fp32 on CPU)"
            if f"{source} (fp32 on CPU)" in models
            else source
            if str(timings.get("device", "")).startswith("cpu")
            else None
        )
        if source and on_cpu in models:
            s["fp32_cpu_latency_ms_batch1"] = {"mean": models[on_cpu]["latency_ms_batch1"]["median"], "std": 0.0}
            s["fp32_cpu_throughput_batch64"] = {"mean": models[on_cpu]["throughput_batch64"]["median"], "std": 0.0}


def write_report(
    output_dir: Path, results: dict, resamples: int = 1000, boot_seed: int = 0, alpha: float = 0.05
) -> tuple[Path, dict]:
    """report.md, results.csv and plots/ from a results.json-shaped dict; returns (report path, summary)."""
    output_dir = Path(output_dir)
    result = add_ensembles(results["comparison"])
    summary = summarise(result, resamples, boot_seed)
    use_joint_timings(result, summary, results.get("timings"))
    pairs = compare_pairs(result, alpha, resamples, boot_seed)
    tmp = make_temp_dir(".plots.tmp-", output_dir)
    try:
        plots = draw_all(result, summary, tmp, results.get("timings"))
        final = output_dir / "plots"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    md = build_markdown(result, summary, pairs, results, alpha, plots)
    for name, ood in results.get("out_of_domain", {}).items():
        md += "\n" + out_of_domain_section(name, ood, summary, resamples, boot_seed, alpha)
    atomic_write_text(output_dir / "report.md", md)
    atomic_write_text(output_dir / "results.csv", results_csv(result))
    atomic_write_json(output_dir / "analysis.json", {"summary": summary, "pairs": pairs})
    return output_dir / "report.md", summary
