"""Findings drawn from the numbers: the report's sentences (the Analysis section's, a verdict's evidence, the int8
rows', a difference between two models), all but the Summary's own (write.py). Each is written only when the
numbers of the same comparison support it."""

from __future__ import annotations

import itertools

import numpy as np

from distill_lora.report.summary import (
    display_name,
    find_pair,
    groups_of,
    int8_comparisons,
    runs_of,
    stage_ids,
)
from distill_lora.stage_ids import (
    LORA_STUDENT,
    LORA_TEACHER,
    STUDENT_EVEN,
    STUDENT_ODD,
    TEACHER,
    is_derived,
    is_student,
)


def times_text(ratio: float, more: str, less: str) -> str:
    """2.0 → '2.0× faster'; 0.5 → '2.0× slower' (never a ratio below 1 with the wrong word)."""
    return f"{ratio:.1f}× {more}" if ratio >= 1 else f"{1 / ratio:.1f}× {less}"


def evidence(p: dict) -> str:
    """What decided a pair's verdict, with its numbers: the test, its family and its Holm-adjusted p."""
    family = f"Holm over the {p['family']} family"
    if p["verdict_basis"] == "noninferiority":
        n = p["noninferiority"]
        return (
            f"non-inferiority at a margin of {n['margin']} macro-F1 ({n['method']}): Δ {n['point']:+.3f}, "
            f"{family}: p {p['p_holm']:.3g}"
        )
    if p["verdict_basis"] == "method_t":
        d = p["method_level"]["macro_f1"]
        return (
            f"method-level t over {p['n_seeds']} seeds: Δ macro-F1 {d['point']:+.3f} [{d['low']:+.3f}, "
            f"{d['high']:+.3f}], {family}: p {p['p_holm']:.3g}"
        )
    t = p["swap"]["macro_f1"]
    return (
        f"swap permutation test over {t['differing_units']} differing {p['units']} of {t['n_units']}: Δ macro-F1 "
        f"{t['statistic']:+.3f}, {family}: p {p['p_holm']:.3g}"
    )


def int8_sentence(summary: dict, c: dict) -> str:
    """One line per int8 row, every claim taken from the numbers in `c` (and its pair's verdict)."""
    p = c["pair"]
    text = (
        f"int8 {c['source']} [{c['stage']}]: {c['size_ratio']:.1f}× smaller ({c['int8_bytes'] / 2**20:.1f} MiB vs "
        f"{c['fp32_bytes'] / 2**20:.1f} MiB of fp32 tensors)"
    )
    if "speedup_batch1" in c:
        text += (
            f", {times_text(c['speedup_batch1'], 'faster', 'slower')} on CPU at batch 1 ({c['latency_ms_int8']:.2f} vs "
            f"{c['latency_ms_fp32']:.2f} ms per example) and {times_text(c['speedup_batch64'], 'faster', 'slower')} "
            f"at batch 64 (timed on this machine's CPU)"
        )
    text += f"; macro-F1 {c['macro_f1_int8']:.4f} vs {c['macro_f1_fp32']:.4f} (change {c['macro_f1_change']:+.4f}): "
    if p["verdict"] == "non-inferior":
        text += f"not worse than its fp32 source [{c['source']}] by the margin or more ({evidence(p)})."
    else:
        text += (
            f"not shown to be within the margin of its fp32 source [{c['source']}]: it may be worse by "
            f"{p['noninferiority']['margin']} macro-F1 or more ({evidence(p)})."
        )
    return text


def difference_sentence(summary: dict, pairs: list[dict], a: str, b: str) -> str | None:
    p = find_pair(pairs, a, b)
    if p is None or p["family"] == "serving":  # a serving row is judged against its source, not ranked
        return None
    fa, fb = summary[a]["macro_f1"]["mean"], summary[b]["macro_f1"]["mean"]
    if p["verdict"] == "significant":
        loser = b if p["winner"] == a else a
        return (
            f"{display_name(summary, p['winner'])} is significantly better than {display_name(summary, loser)} "
            f"(macro-F1 {max(fa, fb):.4f} vs {min(fa, fb):.4f}; {evidence(p)})."
        )
    what = (
        "within noise"
        if p["verdict"] == "within noise"
        else f"beyond what this design can decide ({p['differing_units']} differing {p['units']})"
    )
    return (
        f"The difference between {display_name(summary, a)} ({fa:.4f}) and {display_name(summary, b)} ({fb:.4f}) "
        f"in macro-F1 is {what} ({evidence(p)}); do not read it as a ranking."
    )


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


def class_recalls(result: dict, stage: str) -> list[float | None]:
    """Test recall of each class from the recorded predictions, mean over seeds; None for a class with no test text."""
    labels = np.asarray(result["test_labels"])
    return [
        float(np.mean([_recall(labels, np.asarray(r["predictions"]["pred"]), c) for r in runs_of(result, stage)]))
        if np.any(labels == c)
        else None
        for c in range(len(result["label_names"]))
    ]


def largest_recall_drop(teacher: list, own: list) -> int | None:
    """The class whose recall falls furthest below the teacher's (the first on a tie); None without a class to
    compare (no test texts)."""
    drops = [t - o if t is not None else None for t, o in zip(teacher, own)]
    present = [c for c, x in enumerate(drops) if x is not None]
    return max(present, key=lambda c: drops[c]) if present else None


def missed_class_lines(result: dict, summary: dict) -> list[str]:
    """Per trained model, the class whose recall (from its test predictions, mean over seeds) falls furthest below
    the teacher's. Binary: only when it is at least RECALL_GAP below. More classes: always named, with both
    recalls (the reader of an N-class run asks which class each model loses first), or said that no class
    lost recall. Derived rows (int8, ensembles) are left out: their members' lines and the identical-prediction
    lines cover them. No test of significance is made: these are the recorded numbers."""
    if TEACHER not in summary:
        return []
    labels, names = np.asarray(result["test_labels"]), result["label_names"]
    teacher = class_recalls(result, TEACHER)
    seeds = "mean over seeds" if len(result["seeds"]) > 1 else "one seed"
    lines = []
    for stage in summary:
        if stage == TEACHER or is_derived(stage) or summary[stage].get("quantized_from"):
            continue
        own = class_recalls(result, stage)
        c = largest_recall_drop(teacher, own)
        if c is None:
            continue
        drop, count = teacher[c] - own[c], int(np.sum(labels == c))
        if len(names) == 2:
            if drop >= RECALL_GAP:
                lines.append(
                    f"{display_name(summary, stage)} misses '{names[c]}' texts: recall {own[c]:.2f} against the "
                    f"teacher's {teacher[c]:.2f} ({count} such test texts)."
                )
        elif drop > 0:
            lines.append(
                f"{display_name(summary, stage)} loses most on '{names[c]}': recall {own[c]:.3f} against the teacher's "
                f"{teacher[c]:.3f} (a drop of {drop:.3f}; {count} such test texts; {seeds})."
            )
        else:
            lines.append(f"{display_name(summary, stage)} loses no recall against the teacher on any class ({seeds}).")
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


def reversal_lines(summary: dict, shown: int = 3, auc_name: str = "ROC-AUC") -> list[str]:
    """Pairs ranked one way by macro-F1 (at the 0.5 cut) and the other way by ROC-AUC (threshold-free); `auc_name` names
    it (with more than two classes: the one-vs-rest macro average)."""
    rows = [s for s in summary if summary[s]["roc_auc"]["mean"] is not None]
    f1 = {s: summary[s]["macro_f1"]["mean"] for s in rows}
    auc = {s: summary[s]["roc_auc"]["mean"] for s in rows}
    flips = [(a, b) for a, b in itertools.permutations(rows, 2) if f1[a] > f1[b] and auc[a] < auc[b]]
    flips.sort(key=lambda ab: f1[ab[0]] - f1[ab[1]], reverse=True)
    if not flips:
        return []
    text = "; ".join(
        f"[{a}] is above [{b}] in macro-F1 ({f1[a]:.3f} vs {f1[b]:.3f}) but below it in {auc_name} "
        f"({auc[a]:.3f} vs {auc[b]:.3f})"
        for a, b in flips[:shown]
    )
    more = f"; {len(flips) - shown} more pair(s) reverse" if len(flips) > shown else ""
    return [f"{auc_name} reverses {len(flips)} pair(s) of the macro-F1 ranking: {text}{more}."]


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
        counting = " with its teacher's training" if "wall_time_with_teacher_s" in fu else ""
        ratio = t_fu / t_lo if t_lo else float("inf")
        line = (
            f"[{lora}] trained {lo['trainable_params'] / 1e6:.2f}M parameters "
            f"({lo['trainable_params'] / lo['total_params']:.1%} of its {lo['total_params'] / 1e6:.2f}M) against "
            f"[{full}]'s {fu['trainable_params'] / 1e6:.2f}M; training took {t_lo:.0f} s vs {t_fu:.0f} s{counting} "
            f"({times_text(ratio, 'faster', 'slower')})"
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
        name = display_name(summary, stage)
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
                p = find_pair(pairs, TEACHER, stage)
                if p and p["verdict"] == "significant" and p["winner"] == TEACHER:
                    gap = summary["teacher"]["macro_f1"]["mean"] - summary[stage]["macro_f1"]["mean"]
                    found.append(
                        f"{display_name(summary, stage)} never caught up with its teacher "
                        f"(macro-F1 {gap:.4f} lower, significant)."
                    )
    return found


def difference_lines(summary: dict, pairs: list[dict], key_pairs: list[tuple[str, str]]) -> list[str]:
    """A sentence for each significant difference; the undecided ones folded into one line per family (their
    intervals and what the design could detect are in the pairs table, 'Are the differences real?')."""
    lines, undecided = [], {}
    for a, b in key_pairs:
        p = find_pair(pairs, a, b)
        if p is None or p["family"] == "serving":
            continue
        if p["verdict"] == "significant":
            lines.append(f"- {difference_sentence(summary, pairs, a, b)}")
        else:
            undecided.setdefault(p["family"], []).append(p)
    for family, ps in undecided.items():
        noise = sum(p["verdict"] == "within noise" for p in ps)
        names = ", ".join(f"{p['a']} vs {p['b']}" for p in ps)
        lines.append(
            f"- Not shown to differ ({family} family, Holm within it): {names}: "
            f"{noise} within noise, {len(ps) - noise} beyond what this design can decide; do not read their order as a "
            "ranking (each pair's difference, interval and detectable size: 'Are the differences real?')."
        )
    return lines


def analysis_lines(result: dict, summary: dict, pairs: list[dict], majority_f1: float) -> list[str]:
    """The report's Analysis section as markdown lines."""
    ranked = sorted(summary, key=lambda s: summary[s]["macro_f1"]["mean"], reverse=True)
    lines = [
        "**Ranking by mean test macro-F1:** "
        + "; ".join(
            f"{i + 1}. {display_name(summary, s)} {summary[s]['macro_f1']['mean']:.4f}" for i, s in enumerate(ranked)
        )
        + "."
    ]
    lines += ["", *seed_lines(result, summary), "", "**Differences:**"]
    # the primary questions first, then neighbours in the ranking (exploratory, said so by their evidence)
    key_pairs = [(p["a"], p["b"]) for p in pairs if p["family"] == "primary"]
    for a, b in zip(ranked, ranked[1:]):
        if (a, b) not in key_pairs and (b, a) not in key_pairs:
            key_pairs.append((a, b))
    lines += difference_lines(summary, pairs, key_pairs)
    shown = (
        missed_class_lines(result, summary)
        + disagreement_lines(result, summary)
        + reversal_lines(
            summary, auc_name="ROC-AUC" if len(result["label_names"]) == 2 else "one-vs-rest macro ROC-AUC"
        )
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
                f"- {display_name(summary, s)}: {x['depth']} layers, no training of its own "
                f"({x['wall_time_s']['mean']:.0f} s to obtain: the training of {x['quantized_from']}, then "
                f"{x['quantize_time_s']['mean']:.1f} s quantising)"
            )
            if "latency_ms_batch1" in x:
                cost += f", {x['latency_ms_batch1']['mean']:.1f} ms per example at batch 1 on CPU"
            lines.append(cost + ".")
            continue
        cost = (
            f"- {display_name(summary, s)}: {x['depth']} layers, {x['trainable_params'] / 1e6:.2f}M of "
            f"{x['total_params'] / 1e6:.2f}M parameters trained, {x['wall_time_s']['mean']:.0f} s of training"
        )
        if "wall_time_with_teacher_s" in x:
            cost += f" ({x['wall_time_with_teacher_s']['mean']:.0f} s with its teacher's training)"
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
