"""Numbers behind the report: aggregates over seeds, CIs, pairwise tests, and sentences drawn from them.

Everything here works from the comparison dict saved in results.json, so a report can be rebuilt
without the models. A sentence is only written when the numbers in the same dict support it.
"""
from __future__ import annotations

import itertools
import statistics

import numpy as np

from .stats import bootstrap_ci, mcnemar_exact, paired_seed_test

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


ENSEMBLES = (("student-odd", "student-even"), ("student-odd", "student-even", "lora-student"))


def add_ensembles(result: dict) -> dict:
    """A copy of `result` with probability-averaged ensembles of trained models as extra rows.

    Members' test probabilities of class 1 are averaged per seed; the ensemble predicts class 1 at
    mean ≥ 0.5. Its cost is the sum of its members' (it runs them all).
    """
    from .metrics import metrics_from_predictions
    labels = np.asarray(result["test_labels"])
    per_seed = {seed: dict(stages) for seed, stages in result["per_seed"].items()}
    for members in ENSEMBLES:
        if not all(m in stages for stages in per_seed.values() for m in members):
            continue
        stage = "ensemble-" + "+".join(m.replace("student-", "") for m in members)
        for stages in per_seed.values():
            runs = [stages[m] for m in members]
            prob = np.mean([r["predictions"]["prob_positive"] for r in runs], axis=0)
            pred = (prob >= 0.5).astype(int)
            latency = [r.get("inference", {}).get("latency_ms_batch1") for r in runs]
            through = [r.get("inference", {}).get("throughput_batch64") for r in runs]
            stages[stage] = {
                "stage": stage, "model_type": f"Ensemble: {' + '.join(members)} (mean probability)",
                "ensemble_of": list(members), "depth": sum(r["depth"] for r in runs),
                "total_params": sum(r["total_params"] for r in runs),
                "trainable_params": sum(r["trainable_params"] for r in runs),
                "weights_bytes": sum(r.get("weights_bytes") or 0 for r in runs),
                "test": metrics_from_predictions(labels, pred, prob, result["label_names"]),
                "validation_history": [], "selected_epoch": None, "train_loss": None, "train_total_loss": None,
                "wall_time_s": sum(r["wall_time_s"] for r in runs), "samples_per_s": None,
                "peak_memory_bytes": max(r.get("peak_memory_bytes", 0) for r in runs),
                "peak_memory_kind": runs[0].get("peak_memory_kind"), "device": runs[0].get("device"),
                "predictions": {"pred": pred.tolist(), "prob_positive": prob.tolist()},
            }
            if None not in latency and None not in through:
                stages[stage]["inference"] = {"latency_ms_batch1": sum(latency),
                                              "throughput_batch64": 1 / sum(1 / t for t in through)}
    return {**result, "per_seed": per_seed}


def summarise(result: dict, resamples: int = 1000, boot_seed: int = 0) -> dict:
    """Per model: mean/std over seeds of every test metric, bootstrap CIs, costs."""
    labels = np.asarray(result["test_labels"])
    out = {}
    for stage in stage_ids(result):
        runs = runs_of(result, stage)
        preds = [r["predictions"]["pred"] for r in runs]
        s = {"model_type": runs[0]["model_type"], "depth": runs[0]["depth"]}
        for m in METRICS:
            s[m] = _mean_std([r["test"].get(m) for r in runs])
        s["ci"] = {m: bootstrap_ci(labels, preds, m, resamples, boot_seed) for m in ("accuracy", "macro_f1")}
        if all("test_at_threshold" in r for r in runs):
            s["at_threshold"] = {m: _mean_std([r["test_at_threshold"][m] for r in runs]) for m in ("accuracy", "macro_f1")}
            s["threshold"] = _mean_std([r["threshold"] for r in runs])
        s["train_loss"] = _mean_std([r["train_loss"] for r in runs])
        s["train_total_loss"] = _mean_std([r["train_total_loss"] for r in runs])
        s["wall_time_s"] = _mean_std([r["wall_time_s"] for r in runs])
        # a distilled student needs its teacher trained first; an ensemble of students needs it once
        needs_teacher = stage.startswith("student-") or any(
            m.startswith("student-") for m in runs[0].get("ensemble_of", []))
        teachers = runs_of(result, "teacher") if needs_teacher and "teacher" in stage_ids(result) else []
        if teachers:
            s["wall_time_with_teacher_s"] = _mean_std([r["wall_time_s"] + t["wall_time_s"]
                                                       for r, t in zip(runs, teachers)])
        s["samples_per_s"] = _mean_std([r["samples_per_s"] for r in runs])
        s["peak_memory_bytes"] = max(r.get("peak_memory_bytes", 0) for r in runs)
        for key in ("total_params", "trainable_params", "weights_bytes", "teacher_layers", "device",
                    "peak_memory_kind", "quantized_from", "fp32_weights_bytes"):
            s[key] = runs[0].get(key)
        inf = [r["inference"] for r in runs if "inference" in r]
        if inf:
            s["latency_ms_batch1"] = _mean_std([i["latency_ms_batch1"] for i in inf])
            s["throughput_batch64"] = _mean_std([i["throughput_batch64"] for i in inf])
        if s["quantized_from"]:  # an int8 row: its fp32 source timed on the same CPU, and the quantising time
            s["quantize_time_s"] = _mean_std([r["quantization"]["quantize_time_s"] for r in runs])
            fp32 = [r["fp32_cpu_inference"] for r in runs if "fp32_cpu_inference" in r]
            if fp32:
                s["fp32_cpu_latency_ms_batch1"] = _mean_std([i["latency_ms_batch1"] for i in fp32])
                s["fp32_cpu_throughput_batch64"] = _mean_std([i["throughput_batch64"] for i in fp32])
        out[stage] = s
    return out


def compare_pairs(result: dict, alpha: float = 0.05) -> list[dict]:
    """Every pair of models: McNemar per seed, seed-paired t-test of macro-F1, and a verdict.

    Verdict rule (conservative, stated in the report): A is *significantly better* than B only if in
    every seed McNemar's p < alpha and A beats B on both macro-F1 and accuracy; otherwise the
    difference is *within noise* (no seed significant) or *mixed*.
    """
    labels = np.asarray(result["test_labels"])
    pairs = []
    for a, b in itertools.combinations(stage_ids(result), 2):
        ra, rb = runs_of(result, a), runs_of(result, b)
        tests = [mcnemar_exact(labels, x["predictions"]["pred"], y["predictions"]["pred"]) for x, y in zip(ra, rb)]
        f1_a = [x["test"]["macro_f1"] for x in ra]
        f1_b = [y["test"]["macro_f1"] for y in rb]
        acc_diff = [x["test"]["accuracy"] - y["test"]["accuracy"] for x, y in zip(ra, rb)]
        f1_diff = [fa - fb for fa, fb in zip(f1_a, f1_b)]
        n_sig = sum(t["p_value"] < alpha for t in tests)
        if n_sig == len(tests) and all(d > 0 for d in f1_diff) and all(d > 0 for d in acc_diff):
            verdict, winner = "significant", a
        elif n_sig == len(tests) and all(d < 0 for d in f1_diff) and all(d < 0 for d in acc_diff):
            verdict, winner = "significant", b
        elif n_sig == 0:
            verdict, winner = "within noise", None
        else:
            verdict, winner = "mixed", None
        pairs.append({"a": a, "b": b, "macro_f1_diff": statistics.mean(f1_diff),
                      "mcnemar_p": [t["p_value"] for t in tests], "seeds_significant": n_sig,
                      "n_seeds": len(tests), "paired_t": paired_seed_test(f1_a, f1_b),
                      "verdict": verdict, "winner": winner})
    return pairs


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
        src, pair = summary[source], _pair(pairs, source, stage)
        c = {"stage": stage, "source": source, "int8_bytes": s["weights_bytes"], "fp32_bytes": s["fp32_weights_bytes"],
             "size_ratio": s["fp32_weights_bytes"] / s["weights_bytes"],
             "macro_f1_fp32": src["macro_f1"]["mean"], "macro_f1_int8": s["macro_f1"]["mean"],
             "macro_f1_change": s["macro_f1"]["mean"] - src["macro_f1"]["mean"], "pair": pair}
        if "fp32_cpu_latency_ms_batch1" in s and "latency_ms_batch1" in s:
            c["latency_ms_fp32"] = s["fp32_cpu_latency_ms_batch1"]["mean"]
            c["latency_ms_int8"] = s["latency_ms_batch1"]["mean"]
            c["speedup_batch1"] = c["latency_ms_fp32"] / c["latency_ms_int8"]
            c["throughput_fp32"] = s["fp32_cpu_throughput_batch64"]["mean"]
            c["throughput_int8"] = s["throughput_batch64"]["mean"]
            c["speedup_batch64"] = c["throughput_int8"] / c["throughput_fp32"]
        out.append(c)
    return out


def _times(ratio: float, more: str, less: str) -> str:
    """2.0 → '2.0× faster'; 0.5 → '2.0× slower' (never a ratio below 1 with the wrong word)."""
    return f"{ratio:.1f}× {more}" if ratio >= 1 else f"{1 / ratio:.1f}× {less}"


def int8_sentence(summary: dict, c: dict) -> str:
    """One line per int8 row, every claim taken from the numbers in `c` (and its pair's verdict)."""
    p = c["pair"]
    text = f"int8 {c['source']} [{c['stage']}]: {c['size_ratio']:.1f}× smaller ({c['int8_bytes'] / 2 ** 20:.1f} MiB vs " \
           f"{c['fp32_bytes'] / 2 ** 20:.1f} MiB of fp32 tensors)"
    if "speedup_batch1" in c:
        text += (f", {_times(c['speedup_batch1'], 'faster', 'slower')} on CPU at batch 1 ({c['latency_ms_int8']:.2f} vs "
                 f"{c['latency_ms_fp32']:.2f} ms per example) and {_times(c['speedup_batch64'], 'faster', 'slower')} "
                 f"at batch 64 (timed on this machine's CPU)")
    text += f"; macro-F1 {c['macro_f1_int8']:.4f} vs {c['macro_f1_fp32']:.4f} (change {c['macro_f1_change']:+.4f}): "
    seeds = f"{p['seeds_significant']} of {p['n_seeds']} seed(s) with McNemar p < alpha"
    if p["verdict"] == "significant":
        text += (f"significantly {'worse' if p['winner'] == c['source'] else 'better'} than its fp32 source "
                 f"[{c['source']}] ({seeds}).")
    elif p["verdict"] == "within noise":
        text += f"the difference is within noise ({seeds})."
    else:
        text += f"the difference is not consistent across seeds ({seeds})."
    return text


def _pair(pairs: list[dict], a: str, b: str) -> dict | None:
    for p in pairs:
        if {p["a"], p["b"]} == {a, b}:
            return p
    return None


def _name(summary: dict, stage: str) -> str:
    return f"{summary[stage]['model_type']} [{stage}]"


def _difference_sentence(summary: dict, pairs: list[dict], a: str, b: str) -> str | None:
    p = _pair(pairs, a, b)
    if p is None:
        return None
    fa, fb = summary[a]["macro_f1"]["mean"], summary[b]["macro_f1"]["mean"]
    seeds = f"{p['seeds_significant']} of {p['n_seeds']} seed(s) with McNemar p < alpha"
    if p["verdict"] == "significant":
        loser = b if p["winner"] == a else a
        return (f"{_name(summary, p['winner'])} is significantly better than {_name(summary, loser)} "
                f"(macro-F1 {max(fa, fb):.4f} vs {min(fa, fb):.4f}; {seeds}).")
    if p["verdict"] == "within noise":
        what = "within noise"
    elif p["seeds_significant"] == p["n_seeds"]:  # McNemar rejects in every seed, yet the winner or metric flips
        what = "significant in every seed but not in one direction (the better model changes with the seed or the metric)"
    else:
        what = "not consistent across seeds"
    return (f"The difference between {_name(summary, a)} ({fa:.4f}) and {_name(summary, b)} ({fb:.4f}) "
            f"in macro-F1 is {what} ({seeds}); do not read it as a ranking.")


def challenges(result: dict, summary: dict, pairs: list[dict], majority_f1: float) -> list[str]:
    """Problems actually visible in this run's numbers."""
    found = []
    for stage in stage_ids(result):
        name = _name(summary, stage)
        for seed, r in zip(result["seeds"], runs_of(result, stage)):
            losses = [h["val_loss"] for h in r["validation_history"]]
            if not losses:  # an ensemble: it was not trained
                continue
            best = int(np.argmin(losses))
            if best < len(losses) - 1 and losses[-1] > losses[best] * 1.05:
                found.append(f"{name}, seed {seed}: validation loss rose from {losses[best]:.4f} (epoch {best + 1}) "
                             f"to {losses[-1]:.4f} (epoch {len(losses)}): it overfits after epoch {best + 1}.")
        f1 = summary[stage]["macro_f1"]["mean"]
        if f1 <= majority_f1 + 0.05:
            found.append(f"{name} barely beats or does not beat the majority-class baseline "
                         f"(macro-F1 {f1:.4f} vs {majority_f1:.4f}): it did not learn the task in this budget.")
        ece = summary[stage]["ece"]["mean"]
        if ece is not None and ece > 0.1:
            found.append(f"{name} is poorly calibrated (expected calibration error {ece:.3f}): "
                         "its probabilities should not be read as confidence.")
        if len(runs_of(result, stage)[0]["validation_history"]) > 1 and \
                all(r["selected_epoch"] == len(r["validation_history"]) for r in runs_of(result, stage)):
            found.append(f"{name}: the last epoch was the best in every seed: more epochs may help.")
    if "teacher" in summary:
        for stage in summary:
            if stage.startswith("student-") and not summary[stage].get("quantized_from"):
                p = _pair(pairs, "teacher", stage)
                if p and p["verdict"] == "significant" and p["winner"] == "teacher":
                    gap = summary["teacher"]["macro_f1"]["mean"] - summary[stage]["macro_f1"]["mean"]
                    found.append(f"{_name(summary, stage)} never caught up with its teacher "
                                 f"(macro-F1 {gap:.4f} lower, significant).")
    return found


def analysis_lines(result: dict, summary: dict, pairs: list[dict], majority_f1: float) -> list[str]:
    """The report's Analysis section as markdown lines."""
    ranked = sorted(summary, key=lambda s: summary[s]["macro_f1"]["mean"], reverse=True)
    lines = ["**Ranking by mean test macro-F1:** " + "; ".join(
        f"{i + 1}. {_name(summary, s)} {summary[s]['macro_f1']['mean']:.4f}" for i, s in enumerate(ranked)) + "."]
    lines.append("")
    lines.append("**Differences:**")
    key_pairs = list(zip(ranked, ranked[1:]))
    for a, b in (("student-odd", "student-even"), ("teacher", "lora-teacher"), ("lora-student", "student-odd"),
                 ("lora-student", "student-even")):
        if a in summary and b in summary and (a, b) not in key_pairs and (b, a) not in key_pairs:
            key_pairs.append((a, b))
    for a, b in key_pairs:
        sentence = _difference_sentence(summary, pairs, a, b)
        if sentence:
            lines.append(f"- {sentence}")
    lines.append("")
    lines.append("**Costs:**")
    for s in ranked:
        x = summary[s]
        if x.get("quantized_from"):
            cost = (f"- {_name(summary, s)}: {x['depth']} layers, no training of its own ({x['wall_time_s']['mean']:.0f} s "
                    f"to obtain: the training of {x['quantized_from']}, then {x['quantize_time_s']['mean']:.1f} s "
                    "quantising)")
            if "latency_ms_batch1" in x:
                cost += f", {x['latency_ms_batch1']['mean']:.1f} ms per example at batch 1 on CPU"
            lines.append(cost + ".")
            continue
        cost = (f"- {_name(summary, s)}: {x['depth']} layers, {x['trainable_params'] / 1e6:.2f}M of "
                f"{x['total_params'] / 1e6:.2f}M parameters trained, {x['wall_time_s']['mean']:.0f} s of training")
        if "wall_time_with_teacher_s" in x:
            cost += f" ({x['wall_time_with_teacher_s']['mean']:.0f} s counting the teacher it needs)"
        if "latency_ms_batch1" in x:
            cost += f", {x['latency_ms_batch1']['mean']:.1f} ms per example at batch 1"
        lines.append(cost + ".")
    if any(s.startswith("lora") for s in summary):
        lines.append("- LoRA trains few parameters but keeps the depth of the model it adapts: it makes training "
                     "cheap, not inference.")
    int8 = int8_comparisons(summary, pairs)
    if int8:
        lines += ["", "**int8 dynamic quantisation (the same model, int8 weights, no training):**"]
        lines += [f"- {int8_sentence(summary, c)}" for c in int8]
    lines.append("")
    lines.append("**Challenges observed in this run:**")
    found = challenges(result, summary, pairs, majority_f1)
    lines += [f"- {c}" for c in found] or ["- none of the checked problems (overfitting validation curves, "
                                           "majority-level models, poor calibration, students far behind "
                                           "their teacher) appeared."]
    return lines
