"""The report's numbers: each model's aggregates over seeds with their CIs, the ensembles, the int8 rows'
comparisons, and which speed a row shows. The sentences drawn from them are in findings.py.

Everything here works from the comparison dict saved in results.json, so a report can be rebuilt
without the models.
"""

from __future__ import annotations

import statistics

import numpy as np

from distill_lora.records import StageRecord
from distill_lora.report.stats import bootstrap_ci
from distill_lora.stage_ids import (
    LORA_STUDENT,
    STUDENT_EVEN,
    STUDENT_ODD,
    TEACHER,
    ensemble_id,
    is_student,
    kind_of,
)

METRICS = ("accuracy", "macro_f1", "f1_positive", "roc_auc", "pr_auc", "ece")


def _mean_std(values: list) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None}
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def stage_ids(result: dict) -> list[str]:
    """Stages present in every seed, in pipeline order."""
    per_seed = [result["per_seed"][str(s)] for s in result["seeds"]]
    return [st for st in per_seed[0] if all(st in p for p in per_seed)]


def runs_of(result: dict, stage: str) -> list[dict]:
    return [result["per_seed"][str(s)][stage] for s in result["seeds"]]


def n_classes(result: dict) -> int:
    """Classes of the task: every one counts in macro-F1, as in the table (labels=)."""
    if "label_names" in result:
        return len(result["label_names"])
    return int(max(result["test_labels"])) + 1


def groups_of(result: dict) -> list | None:
    """Group id of each test text (data.group_column), or None: the unit the bootstrap resamples."""
    return result.get("test_groups")


def with_onnx_rows(result: dict) -> dict:
    """The comparison with its ONNX Runtime rows (results.json "onnx_runtime") beside the others, for the CPU
    serving section; every other section reads `result` without them."""
    onnx = result.get("onnx_runtime") or {}
    return {
        **result,
        "per_seed": {seed: {**stages, **onnx.get(seed, {})} for seed, stages in result["per_seed"].items()},
    }


def onnx_stage_ids(result: dict) -> list[str]:
    """The ONNX Runtime rows present in every seed (none without report.onnx_runtime)."""
    onnx = result.get("onnx_runtime") or {}
    per_seed = [onnx.get(str(s), {}) for s in result["seeds"]]
    return [st for st in per_seed[0] if all(st in p for p in per_seed)] if per_seed else []


# the report.* keys a report is a function of: compare stores them in results.json, `report` reads them back
REPORT_SETTINGS = ("bootstrap_resamples", "bootstrap_seed", "alpha", "primary", "target_difference", "serving_margin")


def report_settings(results: dict, **flags) -> dict:
    """The settings a rebuilt report uses (REPORT_SETTINGS): a flag given (not None), else the run's own (stored in
    results.json by compare), else the config default (a results.json from before the settings were stored)."""
    from distill_lora.config import ReportConfig

    default, stored = ReportConfig(), results.get("report_settings") or {}
    return {
        key: flags[key] if flags.get(key) is not None else stored.get(key, getattr(default, key))
        for key in REPORT_SETTINGS
    }


ENSEMBLES = ((STUDENT_ODD, STUDENT_EVEN), (STUDENT_ODD, STUDENT_EVEN, LORA_STUDENT))


def add_ensembles(result: dict) -> dict:
    """A copy of `result` with probability-averaged ensembles of trained models as extra rows.

    Members' test probabilities of class 1 are averaged per seed; the ensemble predicts class 1 at
    mean ≥ 0.5. Its cost is the sum of its members' (it runs them all).
    """
    labels = np.asarray(result["test_labels"])
    per_seed = {seed: dict(stages) for seed, stages in result["per_seed"].items()}
    for members in ENSEMBLES:
        if not all(m in stages for stages in per_seed.values() for m in members):
            continue
        stage = ensemble_id(members)
        for stages in per_seed.values():
            stages[stage] = _ensemble_record(
                stage, [stages[m] for m in members], members, labels, result["label_names"]
            ).to_dict()
    return {**result, "per_seed": per_seed}


def _ensemble_record(stage: str, runs: list[dict], members, labels, label_names) -> StageRecord:
    from distill_lora.metrics import metrics_from_predictions, prediction_record, recorded_probabilities

    prob = np.mean([recorded_probabilities(r["predictions"]) for r in runs], axis=0)
    # binary: p(positive) >= 0.5, a tie to the positive class (as it always was); otherwise the likeliest class
    pred = (prob[:, 1] >= 0.5).astype(int) if prob.shape[1] == 2 else prob.argmax(axis=1)
    record = StageRecord(
        stage=stage,
        model_type=f"Ensemble: {' + '.join(members)} (mean probability)",
        ensemble_of=list(members),
        depth=sum(r["depth"] for r in runs),
        total_params=sum(r["total_params"] for r in runs),
        trainable_params=sum(r["trainable_params"] for r in runs),
        weights_bytes=sum(r.get("weights_bytes") or 0 for r in runs),
        test=metrics_from_predictions(labels, pred, prob, label_names),
        wall_time_s=sum(r["wall_time_s"] for r in runs),
        peak_memory_bytes=max(r.get("peak_memory_bytes", 0) for r in runs),
        peak_memory_kind=runs[0].get("peak_memory_kind"),
        device=runs[0].get("device"),
        predictions=prediction_record(pred, prob),
    )
    latency = [r.get("inference", {}).get("latency_ms_batch1") for r in runs]
    through = [r.get("inference", {}).get("throughput_batch64") for r in runs]
    if None not in latency and None not in through:
        record.inference = {"latency_ms_batch1": sum(latency), "throughput_batch64": 1 / sum(1 / t for t in through)}
    return record


def ci_of(result: dict, preds_per_seed: list, resamples: int = 1000, boot_seed: int = 0) -> dict:
    """95% CIs of accuracy and macro-F1 over test texts (whole groups when the data names them): the report's
    intervals, and each stage's metrics.json "test_ci" (the same resamples, so the two agree)."""
    return {
        m: bootstrap_ci(
            result["test_labels"],
            preds_per_seed,
            m,
            resamples,
            boot_seed,
            groups=groups_of(result),
            n_classes=n_classes(result),
        )
        for m in ("accuracy", "macro_f1")
    }


def summarise(result: dict, resamples: int = 1000, boot_seed: int = 0, stages: list[str] | None = None) -> dict:
    """Per model (every stage, or `stages`): mean/std over seeds of every test metric, bootstrap CIs, costs."""
    out = {}
    for stage in stage_ids(result) if stages is None else stages:
        runs = runs_of(result, stage)
        preds = [r["predictions"]["pred"] for r in runs]
        s = {"model_type": runs[0]["model_type"], "depth": runs[0]["depth"]}
        for m in METRICS:
            s[m] = _mean_std([r["test"].get(m) for r in runs])
        s["ci"] = ci_of(result, preds, resamples, boot_seed)
        if all("test_at_threshold" in r for r in runs):
            s["at_threshold"] = {
                m: _mean_std([r["test_at_threshold"][m] for r in runs]) for m in ("accuracy", "macro_f1")
            }
            s["threshold"] = _mean_std([r["threshold"] for r in runs])
        s["train_loss"] = _mean_std([r["train_loss"] for r in runs])
        s["train_total_loss"] = _mean_std([r["train_total_loss"] for r in runs])
        s["wall_time_s"] = _mean_std([r["wall_time_s"] for r in runs])
        # a distilled student (and its int8 copy) needs its teacher trained first; an ensemble of students, once
        k = kind_of(stage)
        needs_teacher = any(is_student(s) for s in (stage, k.quantized_from or k.exported_from or "", *k.members))
        teachers = runs_of(result, TEACHER) if needs_teacher and TEACHER in stage_ids(result) else []
        if teachers:
            s["wall_time_with_teacher_s"] = _mean_std(
                [r["wall_time_s"] + t["wall_time_s"] for r, t in zip(runs, teachers)]
            )
        s["samples_per_s"] = _mean_std([r["samples_per_s"] for r in runs])
        targets = [r["teacher_targets"] for r in runs if r.get("teacher_targets")]  # {}: trained on labels only
        if targets:  # a distilled student's teacher-logit pass, a cost of its own beside its training
            s["teacher_targets"] = {
                "time_s": _mean_std([t["time_s"] for t in targets]),
                "peak_memory_bytes": max(t["peak_memory_bytes"] for t in targets),
                "reused": any(t["reused"] for t in targets),
            }
        s["peak_memory_bytes"] = max(r.get("peak_memory_bytes", 0) for r in runs)
        for key in (
            "total_params",
            "trainable_params",
            "weights_bytes",
            "teacher_layers",
            "device",
            "peak_memory_kind",
            "quantized_from",
            "exported_from",
            "backend",
            "fp32_weights_bytes",
        ):
            s[key] = runs[0].get(key)
        inf = [r["inference"] for r in runs if "inference" in r]
        if inf:
            s["latency_ms_batch1"] = _mean_std([i["latency_ms_batch1"] for i in inf])
            s["throughput_batch64"] = _mean_std([i["throughput_batch64"] for i in inf])
        if s["quantized_from"]:  # an int8 row: the quantising time
            s["quantize_time_s"] = _mean_std([r["quantization"]["quantize_time_s"] for r in runs])
        if s["quantized_from"] or s["exported_from"]:  # a CPU row: its fp32 source timed on the same CPU
            fp32 = [r["fp32_cpu_inference"] for r in runs if "fp32_cpu_inference" in r]
            if fp32:
                s["fp32_cpu_latency_ms_batch1"] = _mean_std([i["latency_ms_batch1"] for i in fp32])
                s["fp32_cpu_throughput_batch64"] = _mean_std([i["throughput_batch64"] for i in fp32])
        out[stage] = s
    return out


def joint_speed(result: dict, timings: dict | None, stage: str) -> dict | None:
    """The one rule for which speed a row shows: its joint timing (every model timed together at the end of the
    run, results.json "timings"); for an ensemble, the sum over its members' (latency; throughput as the members
    run one after another); None when the run has no joint timing of it (the caller then shows the stage's own).

    {"latency_ms_batch1", "throughput_batch64": the medians (summed for an ensemble), "timed": the row's own
    timing record with its spread, None for an ensemble's sum}."""
    models = (timings or {}).get("models", {})
    members = runs_of(result, stage)[0].get("ensemble_of") or []
    names = [stage] if stage in models else members if members and all(m in models for m in members) else []
    if not names:
        return None
    return {
        "latency_ms_batch1": sum(models[n]["latency_ms_batch1"]["median"] for n in names),
        "throughput_batch64": 1 / sum(1 / models[n]["throughput_batch64"]["median"] for n in names),
        "timed": models[stage] if stage in models else None,
    }


def use_joint_timings(result: dict, summary: dict, timings: dict | None) -> None:
    """Put the joint timings (joint_speed) into the summary the analysis reads, so its sentences quote the
    latencies of the Costs table; runs without them keep each stage's own."""
    models = (timings or {}).get("models", {})
    for stage, s in summary.items():
        joint = joint_speed(result, timings, stage)
        if joint is None:
            continue
        s["latency_ms_batch1"] = {"mean": joint["latency_ms_batch1"], "std": 0.0}
        s["throughput_batch64"] = {"mean": joint["throughput_batch64"], "std": 0.0}
        source = s.get("quantized_from") or s.get("exported_from")
        # a CPU row's (int8, ONNX) speed-up compares it with its source on the same CPU
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


def int8_comparisons(summary: dict, pairs: list[dict]) -> list[dict]:
    """Each int8 row against its fp32 source: size and CPU speed ratios, macro-F1 change, and the pair's verdict.

    Speed ratios compare the two models timed one after the other on the same CPU (fp32_cpu_* of the int8
    row), not the source's own timing, which may be on a GPU.
    """
    out = []
    for stage, s in summary.items():
        source = s.get("quantized_from")
        if not source or source not in summary:
            continue
        src, pair = summary[source], find_pair(pairs, source, stage)
        c = {
            "stage": stage,
            "source": source,
            "int8_bytes": s["weights_bytes"],
            "fp32_bytes": s["fp32_weights_bytes"],
            "size_ratio": s["fp32_weights_bytes"] / s["weights_bytes"],
            "macro_f1_fp32": src["macro_f1"]["mean"],
            "macro_f1_int8": s["macro_f1"]["mean"],
            "macro_f1_change": s["macro_f1"]["mean"] - src["macro_f1"]["mean"],
            "pair": pair,
        }
        if "fp32_cpu_latency_ms_batch1" in s and "latency_ms_batch1" in s:
            c["latency_ms_fp32"] = s["fp32_cpu_latency_ms_batch1"]["mean"]
            c["latency_ms_int8"] = s["latency_ms_batch1"]["mean"]
            c["speedup_batch1"] = c["latency_ms_fp32"] / c["latency_ms_int8"]
            c["throughput_fp32"] = s["fp32_cpu_throughput_batch64"]["mean"]
            c["throughput_int8"] = s["throughput_batch64"]["mean"]
            c["speedup_batch64"] = c["throughput_int8"] / c["throughput_fp32"]
        out.append(c)
    return out


def find_pair(pairs: list[dict], a: str, b: str) -> dict | None:
    for p in pairs:
        if {p["a"], p["b"]} == {a, b}:
            return p
    return None


def display_name(summary: dict, stage: str) -> str:
    return f"{summary[stage]['model_type']} [{stage}]"
