"""Numbers behind the report: aggregates over seeds, CIs, pairwise tests, and sentences drawn from them.

Everything here works from the comparison dict saved in results.json, so a report can be rebuilt
without the models. A sentence is only written when the numbers in the same dict support it.
"""

from __future__ import annotations

import itertools
import statistics

import numpy as np

from distill_lora.records import StageRecord
from distill_lora.report.stats import bootstrap_ci, holm, mcnemar_exact, paired_diff_ci, paired_seed_test
from distill_lora.stage_ids import (
    LORA_STUDENT,
    LORA_TEACHER,
    STUDENT_EVEN,
    STUDENT_ODD,
    TEACHER,
    ensemble_id,
    is_derived,
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


def report_settings(results: dict, **flags) -> tuple[dict, dict]:
    """The settings a rebuilt report uses (bootstrap_resamples, bootstrap_seed, alpha) and where each came from:
    "command line" (a flag given: not None), "results.json" (the run's own, stored by compare), or "default"
    (the config default, for a results.json from before the settings were stored)."""
    from distill_lora.config import ReportConfig

    default, stored = ReportConfig(), results.get("report_settings") or {}
    values, source = {}, {}
    for key in ("bootstrap_resamples", "bootstrap_seed", "alpha"):
        if flags.get(key) is not None:
            values[key], source[key] = flags[key], "command line"
        elif key in stored:
            values[key], source[key] = stored[key], "results.json"
        else:
            values[key], source[key] = getattr(default, key), "default"
    return values, source


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
    from distill_lora.metrics import metrics_from_predictions

    prob = np.mean([r["predictions"]["prob_positive"] for r in runs], axis=0)
    pred = (prob >= 0.5).astype(int)
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
        predictions={"pred": pred.tolist(), "prob_positive": prob.tolist()},
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


def summarise(result: dict, resamples: int = 1000, boot_seed: int = 0) -> dict:
    """Per model: mean/std over seeds of every test metric, bootstrap CIs, costs."""
    out = {}
    for stage in stage_ids(result):
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
        needs_teacher = any(is_student(s) for s in (stage, k.quantized_from or "", *k.members))
        teachers = runs_of(result, TEACHER) if needs_teacher and TEACHER in stage_ids(result) else []
        if teachers:
            s["wall_time_with_teacher_s"] = _mean_std(
                [r["wall_time_s"] + t["wall_time_s"] for r, t in zip(runs, teachers)]
            )
        s["samples_per_s"] = _mean_std([r["samples_per_s"] for r in runs])
        targets = [r["teacher_targets"] for r in runs if "teacher_targets" in r]
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
            "fp32_weights_bytes",
        ):
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


def compare_pairs(result: dict, alpha: float = 0.05, resamples: int = 1000, boot_seed: int = 0) -> list[dict]:
    """Every pair of models: McNemar per seed (raw and Holm-adjusted), the paired difference in macro-F1 and
    accuracy with its bootstrap CI, a seed-paired t-test of macro-F1, and a verdict.

    Holm–Bonferroni adjusts the p-values of all pairs of one seed together (one family per seed). Verdict rule,
    stated in the report:
    - without groups ("mcnemar_holm"): A is *significantly better* than B only if in every seed McNemar's
      Holm-adjusted p < alpha and A beats B on both macro-F1 and accuracy; *within noise* when no seed has an
      adjusted p < alpha; *mixed* otherwise.
    - with groups of near-duplicate texts ("cluster_bootstrap"): McNemar assumes independent texts, so it is
      kept for reference only; the paired cluster bootstrap of the macro-F1 difference decides: *significant*
      (the larger macro-F1 wins) when its Holm-adjusted bootstrap p < alpha, i.e. the Holm-level CI of the
      difference excludes 0, else *within noise*.
    """
    labels = result["test_labels"]
    groups, k = groups_of(result), n_classes(result)
    pairs = [
        _pair_entry(result, a, b, resamples, boot_seed, groups, k)
        for a, b in itertools.combinations(stage_ids(result), 2)
    ]
    for i in range(len(result["seeds"])):  # one family per seed: every pair of that seed
        for p, adjusted in zip(pairs, holm([p["mcnemar_p"][i] for p in pairs])):
            p["mcnemar_p_holm"].append(adjusted)
    if groups is not None:
        for p, adjusted in zip(pairs, holm([p["diff"]["macro_f1"]["p_value"] for p in pairs])):
            p["bootstrap_p_holm"] = adjusted
    for p in pairs:
        p["seeds_significant_raw"] = sum(x < alpha for x in p["mcnemar_p"])
        p["seeds_significant"] = sum(x < alpha for x in p["mcnemar_p_holm"])
        p["verdict_basis"] = "mcnemar_holm" if groups is None else "cluster_bootstrap"
        p["verdict"], p["winner"] = (
            _mcnemar_verdict(p, result, labels) if groups is None else _bootstrap_verdict(p, alpha)
        )
    return pairs


def _pair_entry(result: dict, a: str, b: str, resamples: int, boot_seed: int, groups, k: int) -> dict:
    """A pair's tests and effect sizes, before the Holm adjustment (which needs every pair)."""
    labels = result["test_labels"]
    ra, rb = runs_of(result, a), runs_of(result, b)
    pa, pb = [x["predictions"]["pred"] for x in ra], [y["predictions"]["pred"] for y in rb]
    tests = [mcnemar_exact(labels, x, y) for x, y in zip(pa, pb)]
    f1_a, f1_b = [x["test"]["macro_f1"] for x in ra], [y["test"]["macro_f1"] for y in rb]
    diff = {
        m: paired_diff_ci(labels, pa, pb, m, resamples, boot_seed, groups=groups, n_classes=k)
        for m in ("macro_f1", "accuracy")
    }
    entry = {
        "a": a,
        "b": b,
        "macro_f1_diff": statistics.mean(fa - fb for fa, fb in zip(f1_a, f1_b)),
        "mcnemar_p": [t["p_value"] for t in tests],
        "mcnemar_p_holm": [],
        "discordant": [[t["a_only_right"], t["b_only_right"]] for t in tests],
        "n_seeds": len(tests),
        "paired_t": paired_seed_test(f1_a, f1_b),
        "diff": diff,
    }
    if groups is not None:
        entry["bootstrap_p"] = diff["macro_f1"]["p_value"]
    return entry


def _mcnemar_verdict(p: dict, result: dict, labels) -> tuple[str, str | None]:
    ra, rb = runs_of(result, p["a"]), runs_of(result, p["b"])
    f1_diff = [x["test"]["macro_f1"] - y["test"]["macro_f1"] for x, y in zip(ra, rb)]
    acc_diff = [x["test"]["accuracy"] - y["test"]["accuracy"] for x, y in zip(ra, rb)]
    every = p["seeds_significant"] == p["n_seeds"]
    if every and all(d > 0 for d in f1_diff) and all(d > 0 for d in acc_diff):
        return "significant", p["a"]
    if every and all(d < 0 for d in f1_diff) and all(d < 0 for d in acc_diff):
        return "significant", p["b"]
    if p["seeds_significant"] == 0:
        return "within noise", None
    return "mixed", None


def _bootstrap_verdict(p: dict, alpha: float) -> tuple[str, str | None]:
    point = p["diff"]["macro_f1"]["point"]
    if p["bootstrap_p_holm"] < alpha and point != 0:
        return "significant", p["a"] if point > 0 else p["b"]
    return "within noise", None


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


def _times(ratio: float, more: str, less: str) -> str:
    """2.0 → '2.0× faster'; 0.5 → '2.0× slower' (never a ratio below 1 with the wrong word)."""
    return f"{ratio:.1f}× {more}" if ratio >= 1 else f"{1 / ratio:.1f}× {less}"


def evidence(p: dict) -> str:
    """What decided a pair's verdict, with its numbers: Holm-adjusted McNemar per seed, or the cluster bootstrap."""
    if p["verdict_basis"] == "cluster_bootstrap":
        d = p["diff"]["macro_f1"]
        return (
            f"paired cluster bootstrap: Δ macro-F1 {d['point']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], "
            f"Holm-adjusted p {p['bootstrap_p_holm']:.3g}"
        )
    return f"{p['seeds_significant']} of {p['n_seeds']} seed(s) with Holm-adjusted McNemar p < alpha"


def int8_sentence(summary: dict, c: dict) -> str:
    """One line per int8 row, every claim taken from the numbers in `c` (and its pair's verdict)."""
    p = c["pair"]
    text = (
        f"int8 {c['source']} [{c['stage']}]: {c['size_ratio']:.1f}× smaller ({c['int8_bytes'] / 2**20:.1f} MiB vs "
        f"{c['fp32_bytes'] / 2**20:.1f} MiB of fp32 tensors)"
    )
    if "speedup_batch1" in c:
        text += (
            f", {_times(c['speedup_batch1'], 'faster', 'slower')} on CPU at batch 1 ({c['latency_ms_int8']:.2f} vs "
            f"{c['latency_ms_fp32']:.2f} ms per example) and {_times(c['speedup_batch64'], 'faster', 'slower')} "
            f"at batch 64 (timed on this machine's CPU)"
        )
    text += f"; macro-F1 {c['macro_f1_int8']:.4f} vs {c['macro_f1_fp32']:.4f} (change {c['macro_f1_change']:+.4f}): "
    if p["verdict"] == "significant":
        text += (
            f"significantly {'worse' if p['winner'] == c['source'] else 'better'} than its fp32 source "
            f"[{c['source']}] ({evidence(p)})."
        )
    elif p["verdict"] == "within noise":
        text += f"the difference is within noise ({evidence(p)})."
    else:
        text += f"the difference is not consistent across seeds ({evidence(p)})."
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
    if p["verdict"] == "significant":
        loser = b if p["winner"] == a else a
        return (
            f"{_name(summary, p['winner'])} is significantly better than {_name(summary, loser)} "
            f"(macro-F1 {max(fa, fb):.4f} vs {min(fa, fb):.4f}; {evidence(p)})."
        )
    if p["verdict"] == "within noise":
        what = "within noise"
    elif p["seeds_significant"] == p["n_seeds"]:  # McNemar rejects in every seed, yet the winner or metric flips
        what = (
            "significant in every seed but not in one direction (the better model changes with the seed or the metric)"
        )
    else:
        what = "not consistent across seeds"
    return (
        f"The difference between {_name(summary, a)} ({fa:.4f}) and {_name(summary, b)} ({fb:.4f}) "
        f"in macro-F1 is {what} ({evidence(p)}); do not read it as a ranking."
    )


# ---------------------------------------------------------------- findings drawn from the numbers

OVERFIT_LOSS_RISE = 1.05  # validation loss must end ≥ 5% above its minimum


def overfitting(history: list[dict], select_metric: str = "macro_f1") -> dict | None:
    """Whether a training curve shows overfitting, by a rule that needs two signals.

    With val_loss and the selection metric m (val_macro_f1 or val_accuracy; val_macro_f1 when the epoch was
    selected by loss) per epoch, n epochs:
    - the loss signal: validation loss is lowest at an epoch k < n and ends ≥ 5% above that minimum;
    - the metric signal: m is highest at an epoch e < n and is lower at epoch n.
    Both: "overfits" after epoch e. Loss only: "loss only" (the model grew more confident on what it gets
    wrong, but its selection metric did not fall: not called overfitting). Otherwise None.
    """
    if len(history) < 2:
        return None
    key = "val_macro_f1" if select_metric == "loss" else f"val_{select_metric}"
    losses, scores = [h["val_loss"] for h in history], [h[key] for h in history]
    n, k, e = len(history), int(np.argmin(losses)) + 1, int(np.argmax(scores)) + 1
    if not (k < n and losses[-1] >= losses[k - 1] * OVERFIT_LOSS_RISE):
        return None
    found = {
        "loss_min_epoch": k,
        "loss_min": losses[k - 1],
        "loss_last": losses[-1],
        "epochs": n,
        "metric": key,
        "metric_best_epoch": e,
        "metric_best": scores[e - 1],
        "metric_last": scores[-1],
    }
    found["kind"] = "overfits" if e < n and scores[-1] < scores[e - 1] else "loss only"
    return found


def overfit_sentence(name: str, seed, o: dict) -> str:
    metric = o["metric"].removeprefix("val_").replace("macro_f1", "macro-F1")
    loss = (
        f"validation loss rose from {o['loss_min']:.4f} (epoch {o['loss_min_epoch']}) to {o['loss_last']:.4f} "
        f"(epoch {o['epochs']})"
    )
    if o["kind"] == "overfits":
        return (
            f"{name}, seed {seed}: {loss} and validation {metric} fell from {o['metric_best']:.4f} "
            f"(epoch {o['metric_best_epoch']}) to {o['metric_last']:.4f}: it overfits after epoch "
            f"{o['metric_best_epoch']}."
        )
    return (
        f"{name}, seed {seed}: {loss}, but validation {metric} did not fall ({o['metric_best']:.4f} at epoch "
        f"{o['metric_best_epoch']}, {o['metric_last']:.4f} at the last): not overfitting by the rule "
        "(both must worsen)."
    )


def seed_lines(result: dict, summary: dict) -> list[str]:
    """What the seeds can tell: nothing about ranking stability with one; the measured spread with several."""
    seeds = result["seeds"]
    if len(seeds) < 2:
        return [
            f"One training seed ({seeds[0]}): the ranking and differences are of this seed only; how much "
            "they move from seed to seed was not measured, so ranking across seeds is impossible here."
        ]
    spread = {s: x["macro_f1"]["std"] for s, x in summary.items() if x["macro_f1"]["std"] is not None}
    hi, lo = max(spread, key=spread.get), min(spread, key=spread.get)
    return [
        f"Seed-to-seed spread of test macro-F1 (sample std over {len(seeds)} seeds): from {spread[lo]:.4f} "
        f"[{lo}] to {spread[hi]:.4f} [{hi}]."
    ]


RECALL_GAP = 0.05  # a class counts as missed when the model's recall is this far below the teacher's


def _recall(labels: np.ndarray, pred: np.ndarray, c: int) -> float:
    return float(np.mean(pred[labels == c] == c))


def missed_class_lines(result: dict, summary: dict) -> list[str]:
    """Per trained model, the class whose recall (from its test predictions, mean over seeds) falls furthest below
    the teacher's, when it is at least RECALL_GAP below. Derived rows (int8, ensembles) are left out: their
    members' lines and the identical-prediction lines cover them."""
    if TEACHER not in summary:
        return []
    labels, names = np.asarray(result["test_labels"]), result["label_names"]

    def recalls(stage):
        return [
            np.mean([_recall(labels, np.asarray(r["predictions"]["pred"]), c) for r in runs_of(result, stage)])
            for c in range(len(names))
        ]

    teacher = recalls(TEACHER)
    lines = []
    for stage in summary:
        if stage == TEACHER or is_derived(stage) or summary[stage].get("quantized_from"):
            continue
        own = recalls(stage)
        c = int(np.argmax([t - o for t, o in zip(teacher, own)]))
        if teacher[c] - own[c] >= RECALL_GAP:
            lines.append(
                f"{_name(summary, stage)} misses '{names[c]}' texts: recall {own[c]:.2f} against the "
                f"teacher's {teacher[c]:.2f} ({int(np.sum(labels == c))} such test texts)."
            )
    return lines


DISAGREEMENT_PAIRS = (
    (STUDENT_ODD, STUDENT_EVEN),
    (STUDENT_ODD, LORA_STUDENT),
    (STUDENT_EVEN, LORA_STUDENT),
    (TEACHER, LORA_TEACHER),
)
DISAGREE_OVERLAP = 0.5  # errors "on different texts": under half of the texts either gets wrong are shared


def error_overlap(result: dict, a: str, b: str) -> dict:
    """Test texts each model gets wrong, pooled over seeds: A only, B only, both; Jaccard = both / either."""
    labels = np.asarray(result["test_labels"])
    wrong_a = np.concatenate([np.asarray(r["predictions"]["pred"]) != labels for r in runs_of(result, a)])
    wrong_b = np.concatenate([np.asarray(r["predictions"]["pred"]) != labels for r in runs_of(result, b)])
    both, either = int(np.sum(wrong_a & wrong_b)), int(np.sum(wrong_a | wrong_b))
    return {
        "a_only": int(np.sum(wrong_a & ~wrong_b)),
        "b_only": int(np.sum(~wrong_a & wrong_b)),
        "both": both,
        "either": either,
        "jaccard": both / either if either else None,
    }


def failed_groups(result: dict, stage: str) -> list[str]:
    """Groups (data.group_column) on which a model gets at least half of the texts wrong, pooled over seeds."""
    labels, groups = np.asarray(result["test_labels"]), np.asarray(groups_of(result), dtype=str)
    wrong = np.mean([np.asarray(r["predictions"]["pred"]) != labels for r in runs_of(result, stage)], axis=0)
    return [g for g in dict.fromkeys(groups) if wrong[groups == g].mean() >= 0.5]


def _quoted(groups: list[str]) -> str:
    return ", ".join(f"'{g}'" for g in groups)


def disagreement_lines(result: dict, summary: dict) -> list[str]:
    """Pairs of models that get different texts wrong (their errors overlap less than DISAGREE_OVERLAP), and,
    when the data names groups, the groups only one of the two fails (half or more of their texts wrong)."""
    lines = []
    seeds = "pooled over seeds" if len(result["seeds"]) > 1 else "one seed"
    for a, b in DISAGREEMENT_PAIRS:
        if a not in summary or b not in summary:
            continue
        o = error_overlap(result, a, b)
        if o["jaccard"] is not None and o["jaccard"] < DISAGREE_OVERLAP and o["a_only"] and o["b_only"]:
            lines.append(
                f"[{a}] and [{b}] get different texts wrong: of the {o['either']} texts either misses, they "
                f"share {o['both']} (overlap {o['jaccard']:.2f}); {o['a_only']} only [{a}] misses, "
                f"{o['b_only']} only [{b}] ({seeds})."
            )
        if groups_of(result) is None:
            continue
        fa, fb = failed_groups(result, a), failed_groups(result, b)
        only_a, only_b = [g for g in fa if g not in fb], [g for g in fb if g not in fa]
        shared = [g for g in fa if g in fb]
        parts = [f"only [{x}] fails {_quoted(gs)}" for x, gs in ((a, only_a), (b, only_b)) if gs]
        if parts:
            parts += [f"both fail {_quoted(shared)}"] if shared else []
            lines.append(
                f"[{a}] and [{b}] fail different groups (half or more of a group's texts wrong): "
                + "; ".join(parts)
                + "."
            )
    return lines


def reversal_lines(summary: dict, shown: int = 3) -> list[str]:
    """Pairs ranked one way by macro-F1 (at the 0.5 cut) and the other way by ROC-AUC (threshold-free)."""
    rows = [s for s in summary if summary[s]["roc_auc"]["mean"] is not None]
    f1 = {s: summary[s]["macro_f1"]["mean"] for s in rows}
    auc = {s: summary[s]["roc_auc"]["mean"] for s in rows}
    flips = [(a, b) for a, b in itertools.permutations(rows, 2) if f1[a] > f1[b] and auc[a] < auc[b]]
    flips.sort(key=lambda ab: f1[ab[0]] - f1[ab[1]], reverse=True)
    if not flips:
        return []
    text = "; ".join(
        f"[{a}] is above [{b}] in macro-F1 ({f1[a]:.3f} vs {f1[b]:.3f}) but below it in ROC-AUC "
        f"({auc[a]:.3f} vs {auc[b]:.3f})"
        for a, b in flips[:shown]
    )
    more = f"; {len(flips) - shown} more pair(s) reverse" if len(flips) > shown else ""
    return [f"ROC-AUC reverses {len(flips)} pair(s) of the macro-F1 ranking: {text}{more}."]


def identical_prediction_lines(result: dict) -> list[str]:
    """Derived rows (ensembles, int8) whose test predictions equal one member's in every seed."""
    lines = []
    n = len(result["test_labels"])
    for stage in stage_ids(result):
        runs = runs_of(result, stage)
        members = runs[0].get("ensemble_of") or ([runs[0]["quantized_from"]] if runs[0].get("quantized_from") else [])
        for m in members:
            if m in stage_ids(result) and all(
                r["predictions"]["pred"] == x["predictions"]["pred"] for r, x in zip(runs, runs_of(result, m))
            ):
                seeds = "in every seed" if len(runs) > 1 else "in its one seed"
                lines.append(
                    f"[{stage}] makes exactly [{m}]'s {n} test predictions {seeds}: as a classifier it "
                    f"adds nothing over [{m}]."
                )
                break
    return lines


def lora_cost_lines(summary: dict) -> list[str]:
    """Each LoRA model against the fully trained model of the same depth: trained parameters, measured training
    time (with its ratio) and, when timed, latency; "cheaper to train" only when its time says so."""
    lines = []
    for lora, full in ((LORA_TEACHER, TEACHER), (LORA_STUDENT, STUDENT_ODD), (LORA_STUDENT, STUDENT_EVEN)):
        if lora not in summary or full not in summary:
            continue
        lo, fu = summary[lora], summary[full]
        t_lo = lo["wall_time_s"]["mean"]
        t_fu = fu.get("wall_time_with_teacher_s", fu["wall_time_s"])["mean"]
        counting = " counting the teacher it needs" if "wall_time_with_teacher_s" in fu else ""
        ratio = t_fu / t_lo if t_lo else float("inf")
        line = (
            f"[{lora}] trained {lo['trainable_params'] / 1e6:.2f}M parameters "
            f"({lo['trainable_params'] / lo['total_params']:.1%} of its {lo['total_params'] / 1e6:.2f}M) against "
            f"[{full}]'s {fu['trainable_params'] / 1e6:.2f}M; training took {t_lo:.0f} s vs {t_fu:.0f} s{counting} "
            f"({_times(ratio, 'faster', 'slower')})"
        )
        line += (
            ", so it was cheaper to train here"
            if t_lo < t_fu
            else ", so fewer trained parameters did not make training faster here"
        )
        if "latency_ms_batch1" in lo and "latency_ms_batch1" in fu:
            line += (
                f"; at inference it has {lo['depth']} layers to [{full}]'s {fu['depth']}: "
                f"{lo['latency_ms_batch1']['mean']:.1f} vs {fu['latency_ms_batch1']['mean']:.1f} ms per example "
                "at batch 1"
            )
        lines.append(line + ".")
    return lines


def challenges(result: dict, summary: dict, pairs: list[dict], majority_f1: float) -> list[str]:
    """Problems actually visible in this run's numbers."""
    found = []
    for stage in stage_ids(result):
        name = _name(summary, stage)
        for seed, r in zip(result["seeds"], runs_of(result, stage)):
            o = overfitting(r["validation_history"], r.get("select_metric", "macro_f1"))
            if o:  # an ensemble or int8 row has no history: it was not trained
                found.append(overfit_sentence(name, seed, o))
        f1 = summary[stage]["macro_f1"]["mean"]
        if f1 <= majority_f1 + 0.05:
            found.append(
                f"{name} barely beats or does not beat the majority-class baseline "
                f"(macro-F1 {f1:.4f} vs {majority_f1:.4f}): it did not learn the task in this budget."
            )
        ece = summary[stage]["ece"]["mean"]
        if ece is not None and ece > 0.1:
            found.append(
                f"{name} is poorly calibrated (expected calibration error {ece:.3f}): "
                "its probabilities should not be read as confidence."
            )
        if len(runs_of(result, stage)[0]["validation_history"]) > 1 and all(
            r["selected_epoch"] == len(r["validation_history"]) for r in runs_of(result, stage)
        ):
            found.append(f"{name}: the last epoch was the best in every seed: more epochs may help.")
    if TEACHER in summary:
        for stage in summary:
            if is_student(stage) and not summary[stage].get("quantized_from"):
                p = _pair(pairs, TEACHER, stage)
                if p and p["verdict"] == "significant" and p["winner"] == TEACHER:
                    gap = summary["teacher"]["macro_f1"]["mean"] - summary[stage]["macro_f1"]["mean"]
                    found.append(
                        f"{_name(summary, stage)} never caught up with its teacher "
                        f"(macro-F1 {gap:.4f} lower, significant)."
                    )
    return found


def _finding(summary: dict, pairs: list[dict], a: str, b: str) -> dict | None:
    p = _pair(pairs, a, b)
    if p is None:
        return None
    d = p["diff"]
    if p["a"] != a:  # the pair was tested as B − A: report A − B, in the order asked
        d = {m: {**x, "point": -x["point"], "low": -x["high"], "high": -x["low"]} for m, x in d.items()}
    adjusted = p["bootstrap_p_holm"] if p["verdict_basis"] == "cluster_bootstrap" else max(p["mcnemar_p_holm"])
    return {
        "a": a,
        "b": b,
        "macro_f1_a": summary[a]["macro_f1"]["mean"],
        "macro_f1_b": summary[b]["macro_f1"]["mean"],
        "diff": d,
        "verdict": p["verdict"],
        "winner": p["winner"],
        "p_holm": adjusted,
        "verdict_basis": p["verdict_basis"],
    }


def key_findings(result: dict, summary: dict, pairs: list[dict]) -> dict:
    """The numbers a five-line summary needs: the two questions' pairs (A − B with CI and verdict) and costs."""
    students = [s for s in (STUDENT_ODD, STUDENT_EVEN) if s in summary]
    best = max(students, key=lambda s: summary[s]["macro_f1"]["mean"]) if students else None
    groups = groups_of(result)
    return {
        "n_seeds": len(result["seeds"]),
        "n_test": len(result["test_labels"]),
        "n_groups": len(set(groups)) if groups is not None else None,
        "verdict_basis": pairs[0]["verdict_basis"] if pairs else None,
        "odd_vs_even": _finding(summary, pairs, STUDENT_ODD, STUDENT_EVEN),
        "distill_vs_lora": _finding(summary, pairs, best, LORA_STUDENT) if best else None,
        "costs": {
            s: {
                "train_time_s": x["wall_time_s"]["mean"],
                "train_time_with_teacher_s": x.get("wall_time_with_teacher_s", {}).get("mean"),
                "trainable_params": x["trainable_params"],
                "total_params": x["total_params"],
                "depth": x["depth"],
                "latency_ms_batch1": x.get("latency_ms_batch1", {}).get("mean"),
            }
            for s, x in summary.items()
            if not is_derived(s) and not x.get("quantized_from")
        },
    }


def analysis_lines(result: dict, summary: dict, pairs: list[dict], majority_f1: float) -> list[str]:
    """The report's Analysis section as markdown lines."""
    ranked = sorted(summary, key=lambda s: summary[s]["macro_f1"]["mean"], reverse=True)
    lines = [
        "**Ranking by mean test macro-F1:** "
        + "; ".join(f"{i + 1}. {_name(summary, s)} {summary[s]['macro_f1']['mean']:.4f}" for i, s in enumerate(ranked))
        + "."
    ]
    lines += ["", *seed_lines(result, summary), "", "**Differences:**"]
    key_pairs = list(zip(ranked, ranked[1:]))
    for a, b in (
        (STUDENT_ODD, STUDENT_EVEN),
        (TEACHER, LORA_TEACHER),
        (LORA_STUDENT, STUDENT_ODD),
        (LORA_STUDENT, STUDENT_EVEN),
    ):
        if a in summary and b in summary and (a, b) not in key_pairs and (b, a) not in key_pairs:
            key_pairs.append((a, b))
    for a, b in key_pairs:
        sentence = _difference_sentence(summary, pairs, a, b)
        if sentence:
            lines.append(f"- {sentence}")
    shown = (
        missed_class_lines(result, summary)
        + disagreement_lines(result, summary)
        + reversal_lines(summary)
        + identical_prediction_lines(result)
    )
    if shown:
        lines += ["", "**What the tables show:**"] + [f"- {x}" for x in shown]
    lines.append("")
    lines.append("**Costs:**")
    for s in ranked:
        x = summary[s]
        if x.get("quantized_from"):
            cost = (
                f"- {_name(summary, s)}: {x['depth']} layers, no training of its own ({x['wall_time_s']['mean']:.0f} s "
                f"to obtain: the training of {x['quantized_from']}, then {x['quantize_time_s']['mean']:.1f} s "
                "quantising)"
            )
            if "latency_ms_batch1" in x:
                cost += f", {x['latency_ms_batch1']['mean']:.1f} ms per example at batch 1 on CPU"
            lines.append(cost + ".")
            continue
        cost = (
            f"- {_name(summary, s)}: {x['depth']} layers, {x['trainable_params'] / 1e6:.2f}M of "
            f"{x['total_params'] / 1e6:.2f}M parameters trained, {x['wall_time_s']['mean']:.0f} s of training"
        )
        if "wall_time_with_teacher_s" in x:
            cost += f" ({x['wall_time_with_teacher_s']['mean']:.0f} s counting the teacher it needs)"
        if "latency_ms_batch1" in x:
            cost += f", {x['latency_ms_batch1']['mean']:.1f} ms per example at batch 1"
        lines.append(cost + ".")
    lines += [f"- {x}" for x in lora_cost_lines(summary)]
    int8 = int8_comparisons(summary, pairs)
    if int8:
        lines += ["", "**int8 dynamic quantisation (the same model, int8 weights, no training):**"]
        lines += [f"- {int8_sentence(summary, c)}" for c in int8]
    lines.append("")
    lines.append("**Challenges observed in this run:**")
    found = challenges(result, summary, pairs, majority_f1)
    lines += [f"- {c}" for c in found] or [
        "- none of the checked problems (overfitting validation curves, "
        "majority-level models, poor calibration, students far behind "
        "their teacher) appeared."
    ]
    return lines
