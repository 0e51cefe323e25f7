"""Verdicts: which differences between models the numbers support, in three families of comparisons.

- primary: the assignment's questions (odd vs even student; each distilled student vs the LoRA student of the same
  depth; each trained model vs the teacher; LoRA student vs LoRA teacher), or report.primary. Holm among
  themselves only, so the comparisons the report exists for keep their power.
- exploratory: every other pair of models (ensembles included), Holm within that family; labelled so.
- serving: each CPU-serving row (torch int8, ONNX Runtime) against its own source only, one-sided: is it at most
  report.serving_margin macro-F1 worse (non-inferior)? Holm within the family.

A primary or exploratory verdict decides on macro-F1. One seed: the swap permutation test (stats.swap_test), over
groups of near-duplicates when the data names them, else over texts: it holds its level with few groups, and a
design whose differing groups cannot reach the Holm step the test faces says "no verdict possible". Two or more
seeds: the method-level t interval (stats.method_level_diff): an answer about the methods, not these trained
models. Each comparison also states its minimum detectable difference at 80% power and what it would take to
detect report.target_difference. Pure functions of results.json's comparison dict.
"""

from __future__ import annotations

import itertools
import statistics

import numpy as np

from distill_lora.errors import UserError
from distill_lora.report.stats import (
    detectable_difference,
    holm,
    holm_verdicts,
    mcnemar_exact,
    method_level_diff,
    noninferiority,
    paired_diff_ci,
    paired_seed_test,
    resample_weights,
    seeds_needed,
    swap_test,
    units_needed,
)
from distill_lora.report.summary import groups_of, n_classes, runs_of, stage_ids, with_onnx_rows
from distill_lora.stage_ids import (
    LORA_STUDENT,
    LORA_TEACHER,
    STUDENT_EVEN,
    STUDENT_ODD,
    TEACHER,
    is_student,
    kind_of,
    parse_comparison,
)

PRIMARY, EXPLORATORY, SERVING = "primary", "exploratory", "serving"
SIGNIFICANT, WITHIN_NOISE, NO_VERDICT = "significant", "within noise", "no verdict possible"
NON_INFERIOR, NOT_NON_INFERIOR = "non-inferior", "not shown non-inferior"
POWER = 0.8  # the power at which the minimum detectable difference is stated


def is_serving_row(stage: str) -> bool:
    """A CPU-serving copy of a trained model (torch int8, ONNX Runtime): compared with its source only."""
    return kind_of(stage).kind in ("int8", "onnx")


def source_of(stage: str) -> str | None:
    k = kind_of(stage)
    return k.quantized_from or k.exported_from


def parse_primary(entries, stages: list[str]) -> list[tuple[str, str]]:
    """report.primary ["A vs B", …] as pairs; a name that is not a stage of the run is a one-line error."""
    pairs = []
    for entry in entries:
        parts = parse_comparison(entry)
        if parts is None:
            raise UserError(f"report.primary: {entry!r} is not 'A vs B' with two different stages")
        for name in parts:
            if name not in stages:
                raise UserError(f"report.primary: {name!r} is not a stage of this run; its stages: {', '.join(stages)}")
        pairs.append(parts)
    return pairs


def default_primary(result: dict, stages: list[str]) -> list[tuple[str, str]]:
    """The assignment's questions, for whichever stages the run has."""
    trained = [s for s in stages if kind_of(s).trained]
    depth = {s: runs_of(result, s)[0].get("depth") for s in trained}
    students = [s for s in trained if is_student(s)]
    pairs = []
    if STUDENT_ODD in trained and STUDENT_EVEN in trained:
        pairs.append((STUDENT_ODD, STUDENT_EVEN))
    if LORA_STUDENT in trained:
        pairs += [(s, LORA_STUDENT) for s in students if depth[s] == depth[LORA_STUDENT]]
    if TEACHER in trained:
        pairs += [(TEACHER, s) for s in trained if s != TEACHER]
    if LORA_STUDENT in trained and LORA_TEACHER in trained:
        pairs.append((LORA_STUDENT, LORA_TEACHER))
    return list(dict.fromkeys(pairs))


def families(result: dict, primary: list | None = None) -> dict[str, list[tuple[str, str]]]:
    """{family: [(a, b), …]} over the stages of `result` (with any ONNX rows beside them)."""
    stages = stage_ids(result)
    compared = [s for s in stages if not is_serving_row(s)]
    first = parse_primary(primary, compared) if primary else default_primary(result, compared)
    asked = {frozenset(p) for p in first}
    rest = [p for p in itertools.combinations(compared, 2) if frozenset(p) not in asked]
    serving = [(source_of(s), s) for s in stages if is_serving_row(s) and source_of(s) in stages]
    return {PRIMARY: first, EXPLORATORY: rest, SERVING: serving}


def compare_pairs(
    result: dict,
    alpha: float = 0.05,
    resamples: int = 1000,
    boot_seed: int = 0,
    primary: list | None = None,
    target: float = 0.02,
    margin: float = 0.01,
) -> list[dict]:
    """Every tested comparison, family by family: raw tests, Holm within the family, verdicts and power. The ONNX
    Runtime rows (results.json "onnx_runtime") join the serving family."""
    result = with_onnx_rows(result)
    weights = resample_weights(len(result["test_labels"]), groups_of(result), resamples, boot_seed)
    out = []
    for family, which in families(result, primary).items():
        pairs = [pair_tests(result, a, b, weights, resamples, boot_seed) | {"family": family} for a, b in which]
        if family == SERVING:
            decide_serving(result, pairs, weights, alpha, margin)
        else:
            decide(pairs, alpha, target, len(result["seeds"]))
        out += pairs
    return out


def pair_tests(result: dict, a: str, b: str, weights: np.ndarray, resamples: int, boot_seed: int) -> dict:
    """A pair's tests and effect sizes, before the family's Holm adjustment."""
    labels, groups, k = result["test_labels"], groups_of(result), n_classes(result)
    ra, rb = runs_of(result, a), runs_of(result, b)
    pa, pb = [x["predictions"]["pred"] for x in ra], [y["predictions"]["pred"] for y in rb]
    mcnemar = [mcnemar_exact(labels, x, y) for x, y in zip(pa, pb)]
    f1_a, f1_b = [x["test"]["macro_f1"] for x in ra], [y["test"]["macro_f1"] for y in rb]
    entry = {
        "a": a,
        "b": b,
        "macro_f1_diff": statistics.mean(fa - fb for fa, fb in zip(f1_a, f1_b)),
        "n_seeds": len(pa),
        # effect sizes: the paired bootstrap interval of each metric's difference
        "diff": {
            m: paired_diff_ci(labels, pa, pb, m, resamples, boot_seed, groups=groups, n_classes=k)
            for m in ("macro_f1", "accuracy")
        },
        # detail: McNemar per seed (texts as independent), the seed-paired t-test
        "mcnemar_p": [t["p_value"] for t in mcnemar],
        "discordant": [[t["a_only_right"], t["b_only_right"]] for t in mcnemar],
        "paired_t": paired_seed_test(f1_a, f1_b),
        **swap_entry(labels, pa, pb, groups, k, boot_seed),
    }
    if len(pa) >= 2:
        entry["method_level"] = {m: method_level_diff(labels, pa, pb, m, k, weights) for m in ("macro_f1", "accuracy")}
        entry["verdict_basis"] = "method_t"
        entry["p_value"], entry["min_p"] = entry["method_level"]["macro_f1"]["p_value"], 0.0
    return entry


def swap_entry(labels, preds_a: list, preds_b: list, groups, n_classes: int, seed: int = 0, n_perm: int = 9999):
    """The swap permutation test of macro-F1 and accuracy, all seeds together, and what a one-seed verdict reads
    from it: the raw p, the smallest p the design allows, and the units it counted."""
    swap = {
        m: swap_test(labels, preds_a, preds_b, m, n_classes, groups, n_perm, seed) for m in ("macro_f1", "accuracy")
    }
    return {
        "swap": swap,
        "units": "groups" if groups is not None else "texts",
        "differing_units": swap["macro_f1"]["differing_units"],
        "n_units": swap["macro_f1"]["n_units"],
        "verdict_basis": "permutation",
        "p_value": swap["macro_f1"]["p_value"],
        "min_p": swap["macro_f1"]["min_p"],
    }


def decide(pairs: list[dict], alpha: float, target: float, n_seeds: int) -> None:
    """Holm over the family; each pair's verdict, winner and power (in place).

    significant: Holm-adjusted p < alpha (the larger macro-F1 wins); no verdict possible: even the smallest p the
    design allows (min_p: a perfect split of the differing groups or texts) would not pass at the pair's Holm step;
    within noise otherwise."""
    raw = [p["p_value"] for p in pairs]
    rank = np.argsort(np.argsort(raw, kind="stable"), kind="stable")  # 0 = smallest p: faces alpha / m
    for i, (p, h) in enumerate(zip(pairs, holm_verdicts(raw, [p["min_p"] for p in pairs], alpha))):
        p["p_holm"] = h["p_holm"]
        point = p["method_level"]["macro_f1"]["point"] if "method_level" in p else p["swap"]["macro_f1"]["statistic"]
        if h["p_holm"] < alpha and point != 0:
            p["verdict"], p["winner"] = SIGNIFICANT, p["a"] if point > 0 else p["b"]
        elif not h["reachable"]:
            p["verdict"], p["winner"] = NO_VERDICT, None
            p["needs_p_below"] = h["needs_p_below"]  # the level its smallest possible p would face
        else:
            p["verdict"], p["winner"] = WITHIN_NOISE, None
        p["power"] = power_of(p, alpha / (len(pairs) - rank[i]), target, n_seeds)


def power_of(p: dict, alpha_step: float, target: float, n_seeds: int) -> dict:
    """The minimum detectable difference (80% power) of accuracy and macro-F1 at the Holm step the pair faces,
    from this design's standard error; what it would take to detect `target` (macro-F1). Never "observed power"."""
    out = {"alpha_step": alpha_step, "target": target, "units": p["units"], "n_units": p["n_units"]}
    if p["differing_units"] == 0:  # the two label every text alike in every seed: nothing to scale
        out["mdd"], out["units_needed"] = {"macro_f1": None, "accuracy": None}, None
        return out
    if n_seeds >= 2:
        ml = p["method_level"]
        out["mdd"] = {m: detectable_difference(ml[m]["se"], alpha_step, ml[m]["df"], POWER) for m in ml}
        f1 = ml["macro_f1"]
        out["seeds_needed"] = seeds_needed(f1["seed_sd"], f1["test_se"], alpha_step, target)
        out["units_needed"] = _units_with_seeds(f1, n_seeds, p["n_units"], alpha_step, target)
        if out["units_needed"] is None and out["seeds_needed"] is None:  # it takes both: say how many texts at 10
            out["units_needed_with_10_seeds"] = _units_with_seeds(f1, 10, p["n_units"], alpha_step, target)
        return out
    sd = {m: p["swap"][m]["null_sd"] for m in ("macro_f1", "accuracy")}
    out["mdd"] = {m: detectable_difference(sd[m], alpha_step, None, POWER) for m in sd}
    out["units_needed"] = units_needed(out["mdd"]["macro_f1"], p["n_units"], target)
    return out


def _units_with_seeds(f1: dict, k: int, n_units: int, alpha_step: float, target: float) -> int | None:
    """Test units that would detect `target` with these k seeds: only the test set's share of the variance
    shrinks with more texts; None when the seeds' spread alone is too large."""
    q = detectable_difference(1.0, alpha_step, k - 1, POWER)
    room = (target / q) ** 2 - f1["seed_sd"] ** 2 / k
    if room <= 0:
        return None
    return int(np.ceil(n_units * f1["test_se"] ** 2 / room))


def decide_serving(result: dict, pairs: list[dict], weights: np.ndarray, alpha: float, margin: float) -> None:
    """Each CPU-serving row against its source (a = source, b = the row): one-sided non-inferiority at `margin`
    macro-F1, Holm over the family; "non-inferior" or "not shown non-inferior", never a winner (in place)."""
    labels, k, groups = result["test_labels"], n_classes(result), groups_of(result)
    for p in pairs:
        rows = [r["predictions"]["pred"] for r in runs_of(result, p["b"])]
        source = [r["predictions"]["pred"] for r in runs_of(result, p["a"])]
        p["noninferiority"] = noninferiority(labels, rows, source, margin, k, weights, groups)
        p["p_value"], p["verdict_basis"] = p["noninferiority"]["p_value"], "noninferiority"
    for p, adjusted in zip(pairs, holm([p["p_value"] for p in pairs])):
        p["p_holm"], p["winner"] = adjusted, None
        p["verdict"] = NON_INFERIOR if adjusted < alpha else NOT_NON_INFERIOR
