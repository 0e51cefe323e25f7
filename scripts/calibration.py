"""Calibration of the report's verdicts by simulation: false winners when all models are equally good, power when
one is better, and the coverage of the method-level interval over seeds.

Every run builds a synthetic results.json "comparison" dict from a known truth, adds the ensembles
(report_summary.add_ensembles, as report/write.py does) and judges it with the report's own entry point,
verdicts.compare_pairs(result, alpha=0.05, resamples=..., boot_seed=0): the swap permutation test (9,999 draws,
or exact), Holm within each family, "no verdict possible", the method-level t interval over seeds.

1. Null designs (every model equally good): the share of runs in which some comparison is "significant" (a
   winner), in the primary family, the exploratory family and either (any family), with its Monte Carlo standard
   error (MCSE); for the grouped designs also the old rule (percentile cluster bootstrap p of macro-F1, Holm over
   every pair of non-int8 stages as one family) on the same runs.
2. Power: student-odd truly better (140 texts, 0.80 vs 0.60; 860 texts, 0.80 vs 0.75): how often it is named the
   winner of its primary comparisons; the median minimum detectable difference of odd vs even under the null.
3. Several seeds (k = 3, 5): coverage of the method-level 95% interval of the accuracy difference of two methods
   whose trained models vary from seed to seed, beside the bootstrap interval that ignores the seeds' spread.
4. The wall time of each part, and the machine.

Run:  .venv/bin/python scripts/calibration.py [--runs N] [--seed S] [--resamples B] [--quick]

Prints markdown tables and exits 0. --runs (default 1000) is the run count of the grouped null designs (a, b); the
costlier designs get a fixed share of it (SHARE below: a run of 860 texts costs ~10x a grouped one), so the default
takes about 22 minutes on 2 CPU cores. --resamples (default 200) sets the bootstrap intervals that do not decide a
one-seed verdict; where the bootstrap decides (the old rule; the method-level interval of part 3) the report's
default, 1000, is used. --quick: a smoke run of a few runs per design. The small versions of these simulations
are tests/report/test_calibration.py, run by every `make test`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time

import numpy as np

from distill_lora.report import stats, verdicts
from distill_lora.report import summary as report_summary

ALPHA = 0.05
NAMES = ["not toxic", "toxic"]
# the shipped demo's trained stages and their depths (configs/demo.yaml: a 6-layer teacher, 3-layer students)
DEMO = {"teacher": 6, "student-odd": 3, "student-even": 3, "lora-student": 3, "lora-teacher": 6}
INT8_OF = ("teacher", "student-odd", "student-even")  # the stages the demo gives an int8 row
UNKNOWN = {f"m{i}": 6 for i in range(10)}  # names the tool does not know: no primary family, 45 exploratory pairs
REPORT_RESAMPLES = 1000  # report.bootstrap_resamples' default, where the bootstrap decides a verdict
FAMILIES = (verdicts.PRIMARY, verdicts.EXPLORATORY, "any")
# a majority vote of three independent models, each right w.p. p, is right w.p. 3p² − 2p³ (0.896 at p = 0.8): in
# a null design this ensemble is truly better than the rest, so a winner in one of its pairs is not a false one
BETTER = "ensemble-odd+even+lora-student"
RIVALS = ("student-even", "lora-student", "teacher")  # student-odd's primary comparisons in the demo
# share of --runs each costlier design gets. The report's procedure costs, per run on 2 busy CPU cores, about 0.25 s
# (a), 0.45 s (b), 0.7 s (c), 1 s (power, 140 texts), 0.3 s (seeds) and 2.7 s (860 texts: the swap test draws 9,999
# patterns over ~300 differing texts); all at --runs would take ~2.5 h at the default, these shares ~22 min
SHARE = {"140": 0.2, "860": 0.05, "power 140": 0.1, "seeds": 0.2}


# ---------------------------------------------------------------- synthetic results


def macro_f1(labels: np.ndarray, pred: np.ndarray) -> float:
    """Binary macro-F1 as the report's table has it (scikit-learn, zero_division=0), without scikit-learn's
    per-call overhead: the records' "test" block is all the verdicts read of it."""
    f1 = []
    for c in (0, 1):
        tp = np.sum((pred == c) & (labels == c))
        wrong = np.sum((pred == c) != (labels == c))  # FP + FN
        f1.append(2 * tp / (2 * tp + wrong) if 2 * tp + wrong > 0 else 0.0)
    return float(np.mean(f1))


def stage_record(rng, labels: np.ndarray, pred: np.ndarray, depth: int) -> dict:
    """One stage of one seed, with the fields the report (and add_ensembles) reads. p(positive) agrees with the
    prediction (0.8 or 0.2, a little noise), so an ensemble of disagreeing members is a near coin flip."""
    prob = np.where(pred == 1, 0.8, 0.2) + rng.uniform(-0.05, 0.05, len(pred))
    return {
        "model_type": "simulated",
        "depth": depth,
        "test": {"accuracy": float(np.mean(pred == labels)), "macro_f1": macro_f1(labels, pred)},
        "predictions": {"pred": pred.tolist(), "prob_positive": prob.tolist()},
        "wall_time_s": 1.0,
        "peak_memory_bytes": 1,
        "total_params": 1,
        "trainable_params": 1,
        "weights_bytes": 1,
    }


def comparison(rng, labels: np.ndarray, per_seed: list[dict], groups=None, ensembles: bool = True) -> dict:
    """results.json's "comparison" from one {stage: predictions} per seed, with the ensembles the report adds."""
    result = {
        "seeds": list(range(len(per_seed))),
        "label_names": NAMES,
        "test_labels": labels.tolist(),
        "per_seed": {
            str(seed): {s: stage_record(rng, labels, p, DEMO.get(s.removesuffix("-int8"), 6)) for s, p in preds.items()}
            for seed, preds in enumerate(per_seed)
        },
    }
    if groups is not None:
        result["test_groups"] = groups
    return report_summary.add_ensembles(result) if ensembles else result


def answers(labels: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Predictions that are right where `right` is True (binary: wrong is the other class)."""
    return np.where(right, labels, 1 - labels)


def simulate(rng, stages: dict, n: int, grouped: bool, accuracy: dict | None = None) -> dict:
    """One seed of `stages` on n test texts with random binary labels.

    grouped: n / 10 groups of 10 near-duplicates; every model gets each group right with probability 0.8, then each
    text's answer flips with probability 0.1 (all models equally good). Else independent texts, each right with
    probability accuracy[stage] (0.8 unless given). An int8 row copies its source, each answer flipped w.p. 0.02."""
    labels = rng.integers(0, 2, n)
    names = list(stages)
    groups = None
    if grouped:
        group_of = np.repeat(np.arange(n // 10), 10)
        right = (rng.random((len(names), n // 10)) < 0.8)[:, group_of] ^ (rng.random((len(names), n)) < 0.1)
        groups = [f"template/{g}" for g in group_of]
    else:
        p_right = np.array([(accuracy or {}).get(s, 0.8) for s in names])
        right = rng.random((len(names), n)) < p_right[:, None]
    preds = {s: answers(labels, r) for s, r in zip(names, right)}
    for s in INT8_OF:
        if s in preds:
            preds[f"{s}-int8"] = np.where(rng.random(n) < 0.02, 1 - preds[s], preds[s])
    return comparison(rng, labels, [preds], groups)


def pair_of(pairs: list[dict], a: str, b: str) -> dict:
    return next(p for p in pairs if {p["a"], p["b"]} == {a, b})


def old_rule_winners(result: dict) -> list[tuple[str, str]]:
    """The pairs the rule before the rewrite called significant: percentile (cluster) bootstrap p of the macro-F1
    difference, Holm over every pair of non-int8 stages as one family, adjusted p < alpha. Run at the report's
    default resamples, as it ran: its p is 0 when no resample reaches 0, and that p passes any Holm step."""
    labels, groups = result["test_labels"], result.get("test_groups")
    stages = [s for s in report_summary.stage_ids(result) if not verdicts.is_serving_row(s)]
    pred = {s: report_summary.runs_of(result, s)[0]["predictions"]["pred"] for s in stages}
    pairs = list(itertools.combinations(stages, 2))
    p = [
        stats.paired_diff_ci(labels, [pred[a]], [pred[b]], "macro_f1", REPORT_RESAMPLES, 0, groups=groups)["p_value"]
        for a, b in pairs
    ]
    return [pair for pair, adjusted in zip(pairs, stats.holm(p)) if adjusted < ALPHA]


def false_winner(a: str, b: str) -> bool:
    """A winner between two equally good models (every pair of a null design but the better ensemble's)."""
    return BETTER not in (a, b)


# ---------------------------------------------------------------- the parts


def rate(hits: list) -> tuple[float, float]:
    """A share over runs and its Monte Carlo standard error."""
    r = float(np.mean(hits))
    return r, float(np.sqrt(r * (1 - r) / len(hits)))


def limit(runs: int) -> float:
    """alpha plus 3 Monte Carlo standard errors of a rate that is alpha: above it, a design does not hold its level."""
    return ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / runs)


def null_design(rng, runs: int, resamples: int, stages: dict, n: int, grouped: bool, old: bool) -> dict:
    """Runs of one null design: runs with a winner per family (and with a false one: not the better ensemble's),
    the old rule's, odd vs even's minimum detectable difference, and the share of primary pairs left undecidable."""
    start = time.perf_counter()
    wins, false = {f: [] for f in FAMILIES}, {f: [] for f in FAMILIES}
    old_wins, old_false, mdd, no_verdict, plain = [], [], [], [], []
    for _ in range(runs):
        result = simulate(rng, stages, n, grouped)
        pairs = verdicts.compare_pairs(result, ALPHA, resamples, 0)
        won = [p for p in pairs if p["verdict"] == verdicts.SIGNIFICANT]
        for f in FAMILIES:  # "any": every family, the serving rows included (they never name a winner)
            in_family = [p for p in won if f in ("any", p["family"])]
            wins[f].append(len(in_family) > 0)
            false[f].append(any(false_winner(p["a"], p["b"]) for p in in_family))
        # a winner among the pairs without an ensemble (trained models and their serving rows), as a reader of the
        # report would count the models it trained
        plain.append(any("ensemble" not in p["a"] + p["b"] for p in won))
        no_verdict += [p["verdict"] == verdicts.NO_VERDICT for p in pairs if p["family"] == verdicts.PRIMARY]
        if "student-odd" in stages:
            mdd.append(pair_of(pairs, "student-odd", "student-even")["power"]["mdd"]["macro_f1"])
        if old:
            old_won = old_rule_winners(result)
            old_wins.append(len(old_won) > 0)
            old_false.append(any(false_winner(a, b) for a, b in old_won))
    sizes = [sum(p["family"] == f for p in pairs) for f in (verdicts.PRIMARY, verdicts.EXPLORATORY, verdicts.SERVING)]
    return {
        "wins": wins,
        "false": false,
        "old": old_wins,
        "old_false": old_false,
        "mdd": mdd,
        "no_verdict": no_verdict,
        "plain": plain,
        "sizes": sizes,
        "runs": runs,
        "seconds": time.perf_counter() - start,
    }


def power_design(rng, runs: int, resamples: int, n: int, worse: float) -> dict:
    """student-odd right w.p. 0.8, every other trained model w.p. `worse` (independent texts): is student-odd named
    the winner of its primary comparisons?"""
    start = time.perf_counter()
    accuracy = {s: worse for s in DEMO} | {"student-odd": 0.8}
    won = {r: [] for r in RIVALS}
    for _ in range(runs):
        pairs = verdicts.compare_pairs(simulate(rng, DEMO, n, False, accuracy), ALPHA, resamples, 0)
        for r in RIVALS:
            p = pair_of(pairs, "student-odd", r)
            assert p["family"] == verdicts.PRIMARY
            won[r].append(p["winner"] == "student-odd")
    return {"won": won, "runs": runs, "seconds": time.perf_counter() - start}


def coverage_design(rng, runs: int, k: int) -> dict:
    """Two methods (accuracy 0.80 and 0.75, a per-seed skill offset N(0, 0.03) each), k seeds, 300 independent
    texts drawn afresh each run: does the 95% interval of the accuracy difference cover the truth, 0.05?"""
    start = time.perf_counter()
    n, truth = 300, 0.05
    out = {"method_level": [], "bootstrap": [], "width_ml": [], "width_boot": [], "winner": []}
    for _ in range(runs):
        labels = rng.integers(0, 2, n)
        per_seed = []
        for acc_a, acc_b in zip(0.80 + rng.normal(0, 0.03, k), 0.75 + rng.normal(0, 0.03, k)):
            per_seed.append(
                {
                    "student-odd": answers(labels, rng.random(n) < acc_a),
                    "student-even": answers(labels, rng.random(n) < acc_b),
                }
            )
        # no ensembles: a pair's intervals do not depend on the other pairs, and the ensembles' pairs cost time.
        # The report's default resamples: here the bootstrap's variance enters the method-level interval
        result = comparison(rng, labels, per_seed, ensembles=False)
        (pair,) = verdicts.compare_pairs(result, ALPHA, REPORT_RESAMPLES, 0)
        ml, boot = pair["method_level"]["accuracy"], pair["diff"]["accuracy"]
        out["method_level"].append(ml["low"] <= truth <= ml["high"])
        out["bootstrap"].append(boot["low"] <= truth <= boot["high"])
        out["width_ml"].append(ml["high"] - ml["low"])
        out["width_boot"].append(boot["high"] - boot["low"])
        out["winner"].append(pair["winner"] == "student-odd")
    return {**out, "runs": runs, "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------- printing


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(x) for x in row) + " |" for row in rows])


def share(hits: list) -> str:
    r, se = rate(hits)
    return f"{r:.3f} ± {se:.3f}"


def flag(hits: list) -> str:
    """A null rate, marked when it is above alpha + 3 MCSE."""
    if not hits:
        return "-"
    r, _ = rate(hits)
    return share(hits) + (" **above**" if r > limit(len(hits)) else "")


def print_null(designs: dict) -> None:
    print("## 1. Null designs: share of runs with a winner (all trained models equally good)\n")
    print(
        f"alpha = {ALPHA}; ± is the Monte Carlo standard error (MCSE); **above**: over alpha + 3 MCSE of a rate of "
        "alpha. Old rule: percentile (cluster) bootstrap p of macro-F1, 1000 resamples, Holm over every pair of "
        "non-int8 stages as one family.\n"
    )
    header = ["design", "runs", "pairs (primary / exploratory / serving)", "primary", "exploratory", "any family"]
    rows = []
    for name, d in designs.items():
        w, pairs = d["wins"], " / ".join(map(str, d["sizes"]))
        row = [name, d["runs"], pairs, flag(w["primary"]), flag(w["exploratory"]), flag(w["any"]), flag(d["old"])]
        rows.append(row + [f"{limit(d['runs']):.3f}"])
    print(table(header + ["old rule", "alpha + 3 MCSE"], rows))
    print(
        f"\nThe demo's ensembles include {BETTER}, a majority vote of three independent models: truly better than "
        "any one of them (independent texts: right w.p. 0.896 vs 0.80; grouped: 0.832 vs 0.74), so its pairs are not "
        "null and a winner among them is a true one. False winners only (pairs without it):\n"
    )
    rows = []
    for name, d in designs.items():
        f = d["false"]
        undecided = share(d["no_verdict"]) if d["no_verdict"] else "-"
        rows.append(
            [
                name,
                d["runs"],
                flag(f["primary"]),
                flag(f["exploratory"]),
                flag(f["any"]),
                flag(d["plain"]),
                flag(d["old_false"]),
                undecided,
            ]
        )
    header = ["design", "runs", "primary", "exploratory", "any family", "pairs without an ensemble", "old rule"]
    print(table(header + ["primary pairs 'no verdict possible'"], rows))
    print()


def print_power(designs: dict, nulls: dict) -> None:
    print("## 2. Power: student-odd truly better, named the winner of its primary comparisons\n")
    rows = []
    for name, d in designs.items():
        won = d["won"]
        every = [all(w) for w in zip(*won.values())]
        rows.append([name, d["runs"]] + [share(won[r]) for r in RIVALS] + [share(every), share(sum(won.values(), []))])
    header = ["design (independent texts)", "runs"] + [f"vs {r}" for r in RIVALS] + ["wins all three", "per comparison"]
    print(table(header, rows))
    print("\nMinimum detectable difference (80% power, at its Holm step) of student-odd vs student-even, null runs:\n")
    rows = []
    for name, d in nulls.items():
        mdd = [x for x in d["mdd"] if x is not None]  # None: the two agreed on every text
        if mdd:
            rows.append(
                [
                    name,
                    len(mdd),
                    f"{np.median(mdd):.3f}",
                    f"{np.percentile(mdd, 10):.3f} – {np.percentile(mdd, 90):.3f}",
                ]
            )
    print(table(["design", "runs", "median MDD (macro-F1)", "10th – 90th percentile"], rows))
    print()


def print_coverage(designs: dict) -> None:
    print("## 3. Several seeds: coverage of the 95% interval of the accuracy difference (truth 0.05)\n")
    print("300 independent texts; method A 0.80, B 0.75, each seed's model offset by N(0, 0.03); 1000 resamples.\n")
    rows = []
    for k, d in designs.items():
        ml, boot = share(d["method_level"]), share(d["bootstrap"])
        widths = f"{np.mean(d['width_ml']):.3f}", f"{np.mean(d['width_boot']):.3f}"
        rows.append([k, d["runs"], ml, widths[0], boot, widths[1], share(d["winner"])])
    header = ["seeds", "runs", "method-level t: coverage", "mean width", "bootstrap diff: coverage", "mean width"]
    print(table(header + ["A named winner (macro-F1, method-level t)"], rows))
    print()


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000, help="runs of the grouped null designs (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resamples", type=int, default=200, help="bootstrap resamples of the one-seed intervals")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4 runs of the grouped designs")
    args = parser.parse_args()
    runs = 4 if args.quick else args.runs
    # one generator per design, so a design's runs do not depend on which ran before it
    rngs = (np.random.default_rng([args.seed, i]) for i in itertools.count())

    def share_of(fraction: float) -> int:
        return max(1, round(runs * fraction))

    print(f"# Calibration of the report's verdicts (seed {args.seed}, {args.resamples} resamples)\n")
    nulls = {
        "a. demo, grouped (140 texts, 14 groups)": (DEMO, 140, True, True, 1),
        "b. 45 pairs, grouped (10 unknown stages)": (UNKNOWN, 140, True, True, 1),
        "c. demo stages, independent texts (140)": (DEMO, 140, False, False, SHARE["140"]),
        "d. demo stages, independent texts (860, OLID-sized)": (DEMO, 860, False, False, SHARE["860"]),
    }
    nulls = {
        name: null_design(next(rngs), share_of(f), args.resamples, stages, n, grouped, old)
        for name, (stages, n, grouped, old, f) in nulls.items()
    }
    powers = {
        "140 texts, 0.80 vs 0.60": power_design(next(rngs), share_of(SHARE["power 140"]), args.resamples, 140, 0.60),
        "860 texts, 0.80 vs 0.75": power_design(next(rngs), share_of(SHARE["860"]), args.resamples, 860, 0.75),
    }
    coverage = {k: coverage_design(next(rngs), share_of(SHARE["seeds"]), k) for k in (3, 5)}

    print_null(nulls)
    print_power(powers, nulls)
    print_coverage(coverage)
    print("## 4. Wall time\n")
    parts = {"1. null designs": nulls, "2. power": powers, "3. coverage over seeds": coverage}
    rows = []
    for part, designs in parts.items():
        rows.append([part, "", f"{sum(d['seconds'] for d in designs.values()):.0f}", ""])
        rows += [["", name, f"{d['seconds']:.0f}", f"{d['seconds'] / d['runs']:.2f}"] for name, d in designs.items()]
    total = sum(d["seconds"] for designs in parts.values() for d in designs.values())
    print(table(["part", "design", "seconds", "seconds per run"], rows + [["total", "", f"{total:.0f}", ""]]))
    machine = platform.processor() or platform.machine()
    print(f"\nMachine: {machine}, {os.cpu_count()} CPUs (os.cpu_count), {platform.platform()}")


if __name__ == "__main__":
    main()
