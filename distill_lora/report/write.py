"""The comparison report: the assignment's table, the full tables, plots and analysis.

Built only from the comparison dict that results.json holds, so `distill-lora report RUN_DIR` can
rebuild it without the models.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import statistics
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from distill_lora.files import atomic_write_json, atomic_write_text, make_temp_dir, writing
from distill_lora.metrics import recorded_probabilities
from distill_lora.report.atlas import atlas_section, atlas_table
from distill_lora.report.cpu_serving import cpu_serving, cpu_serving_section
from distill_lora.report.findings import analysis_lines, missed_class_lines
from distill_lora.report.format import md_table, result_digits
from distill_lora.report.plots import FRONT, atlas_front, draw_all
from distill_lora.report.slices import HEATMAP, draw_heatmap, slice_section, slice_table, slices_csv
from distill_lora.report.summary import (
    add_ensembles,
    find_pair,
    int8_comparisons,
    n_classes,
    report_settings,
    runs_of,
    stage_ids,
    summarise,
    use_joint_timings,
)
from distill_lora.report.tables import (
    AUC_NOTE,
    BASIS,
    COLUMNS,
    DEMO_SOURCE,
    ENSEMBLE_NOTE,
    EXAMPLE_CHARS,
    INT8_NOTE,
    LAYERS_NOTE,
    LOSS_NOTE,
    TEST_NOTE,
    assignment_rows,
    balance_text,
    ci_methods,
    cost_rows,
    data_section,
    derived_note,
    full_rows,
    int8_rows,
    measured_on,
    pair_rows,
    per_class_rows,
    seeds_text,
    setup_rows,
    trained_stages,
)
from distill_lora.report.verdicts import compare_pairs
from distill_lora.stage_ids import (
    LORA_STUDENT,
    LORA_TEACHER,
    STUDENT_EVEN,
    STUDENT_ODD,
    TEACHER,
    kind_of,
)

# ---------------------------------------------------------------- summary and examples


def pair_sentence(pairs: list[dict], a: str, b: str, d: int) -> str | None:
    """'A vs B: ...' from the pair's own numbers: the verdict, the macro-F1 difference A − B with its interval, what
    decided it, and, when no difference is shown, how large a difference this design could have detected."""
    p = find_pair(pairs, a, b)
    if p is None:
        return None
    sign = 1 if p["a"] == a else -1  # the pair may be stored as (b, a)
    x = (p.get("method_level") or p.get("diff") or {}).get("macro_f1")
    kind = "method-level 95% CI over seeds" if "method_level" in p else "95% bootstrap CI"
    if x:
        low, high = sorted((sign * x["low"], sign * x["high"]))
        delta = f"macro-F1 {a} − {b} = {sign * x['point']:+.{d}f} ({kind} {low:+.{d}f} to {high:+.{d}f})"
    else:
        delta = f"macro-F1 {a} − {b} = {sign * p['macro_f1_diff']:+.{d}f} (no CI recorded)"
    basis = f"{BASIS[p['verdict_basis']]}, Holm over the {p['family']} family: p {p['p_holm']:.3g}"
    if p["verdict"] == "significant":
        return f"{a} vs {b}: {p['winner']} is better; {delta}; {basis}."
    if p["verdict"] == "no verdict possible":
        head = (
            f"{a} vs {b}: no verdict possible ({p['differing_units']} differing {p['units']}: even if one model won "
            f"every one, p could not go below {p['min_p']:.3g}, and at that p's Holm step this comparison needs "
            f"p < {p['needs_p_below']:.3g}); {delta}"
        )
    else:
        head = f"{a} vs {b}: no difference shown; {delta}; {basis}"
    return head + power_sentence(p, d) + "."


def power_sentence(p: dict, d: int) -> str:
    """What the design could have detected (80% power, at the pair's Holm step) and what would detect the target
    difference: never an 'observed power'."""
    w = p.get("power") or {}
    mdd, target = (w.get("mdd") or {}).get("macro_f1"), w.get("target")
    if mdd is None:
        return "; the two models label every test text alike, so this test set cannot tell them apart"
    units = "test groups" if w["units"] == "groups" else "test texts"
    text = (
        f"; this design could only detect macro-F1 differences of about {mdd:.{d}f} or more (80% power)"
        if mdd < 1
        else "; this design could not detect any macro-F1 difference (80% power needs more than the whole scale)"
    )
    if mdd > target:
        needed = w.get("units_needed")
        text += (
            f"; about {needed:,} {units} (this run: {w['n_units']:,}) would be needed to detect {target}"
            if needed
            else f"; more {units} alone would not detect {target}: the seed-to-seed spread is larger"
        )
        if "seeds_needed" in w:
            k = w["seeds_needed"]
            text += (
                f", or about {k} seeds on this test set"
                if k
                else ", and more seeds alone on this test set would not either"
            )
        if w.get("units_needed_with_10_seeds"):
            text += f"; with 10 seeds, about {w['units_needed_with_10_seeds']:,} {units} would"
    return text


def _seconds(result: dict, stage: str) -> float:
    runs = runs_of(result, stage)
    return sum(r["wall_time_s"] for r in runs) / len(runs)


def training_cost_sentence(result: dict) -> str | None:
    """Measured training times of the students and the LoRA student, with their ratio, and by name what else a
    student needs: its teacher's training (the teacher-logit pass has its own column in the costs table).

    "Training time" means one thing throughout the report: the stage's own training loop (wall_time_s)."""
    stages = stage_ids(result)
    students = [s for s in (STUDENT_ODD, STUDENT_EVEN) if s in stages]
    if not students or LORA_STUDENT not in stages:
        return None
    teacher = _seconds(result, TEACHER) if TEACHER in stages else 0.0
    lora = _seconds(result, LORA_STUDENT)
    parts = []
    for s in students:
        own = _seconds(result, s)
        parts.append(
            f"{s} {own:.0f} s ({own / lora:.1f}× lora-student; {(own + teacher) / lora:.1f}× with its "
            f"teacher's training, {teacher:.0f} s)"
        )
    return f"training time (each model's own training loop): lora-student {lora:.0f} s; " + "; ".join(parts)


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
    for family in ("primary", "exploratory"):
        tested = [p for p in pairs if p["family"] == family]
        if not tested:
            continue
        count = {v: sum(p["verdict"] == v for p in tested) for v in ("significant", "no verdict possible")}
        text += (
            f"; {family}: {count['significant']} of {len(tested)} comparisons significant"
            + (
                f", {count['no verdict possible']} beyond what this design can decide"
                if count["no verdict possible"]
                else ""
            )
            + " (Holm within the family)"
        )
    seeds = result["seeds"]
    if len(seeds) == 1:
        text += (
            "; one training seed, so these verdicts are about these trained models, not about the methods: how much "
            "another training run would move them was not measured"
        )
    else:
        text += f"; {len(seeds)} training seeds: the primary verdicts are about the methods (method-level t over seeds)"
    return text + "."


PRIMARY_TITLES = {
    frozenset((STUDENT_ODD, STUDENT_EVEN)): "Odd vs even layers",
    frozenset((STUDENT_ODD, LORA_STUDENT)): "Distillation vs LoRA (same depth)",
    frozenset((STUDENT_EVEN, LORA_STUDENT)): "Distillation vs LoRA (same depth)",
    frozenset((LORA_STUDENT, LORA_TEACHER)): "LoRA student vs LoRA teacher",
}


SUMMARY_PAIRS = 8  # the assignment's default planned comparisons; past this, the summary names only the decided ones


def primary_lines(pairs: list[dict], d: int) -> list[str]:
    """One line per primary comparison, in the family's order, titled by the question it answers; with more than
    SUMMARY_PAIRS (an atlas), one line each for those with a verdict and one line for all the others."""
    primary = [p for p in pairs if p["family"] == "primary"]
    shown = primary if len(primary) <= SUMMARY_PAIRS else [p for p in primary if p["verdict"] == "significant"]
    lines = []
    for p in shown:
        title = PRIMARY_TITLES.get(
            frozenset((p["a"], p["b"])), "Against the teacher" if TEACHER in (p["a"], p["b"]) else "Planned"
        )
        lines.append(f"- **{title}:** {pair_sentence(pairs, p['a'], p['b'], d)}")
    rest = [p for p in primary if p not in shown]
    if rest:
        low = min(rest, key=lambda p: p["p_holm"])
        lines.append(
            f"- **Planned, not significant:** {len(rest)} of the {len(primary)} planned comparisons (each with its "
            f"interval and what this design could detect in 'Are the differences real?'); the smallest Holm-adjusted "
            f"p among them: {low['p_holm']:.3g} ({low['a']} vs {low['b']})."
        )
    return lines


def summary_section(result: dict, summary: dict, pairs: list[dict], data: dict, timings: dict | None) -> list[str]:
    """The first lines: what was compared on what data, one computed sentence per question, how sure."""
    d = result_digits(result)
    trained = trained_stages(result)
    derived = [s for s in summary if s not in trained]
    test = data["splits"]["test"]
    lines = [
        "## Summary",
        "",
        f"- **Compared:** {len(trained)} trained models ({', '.join(trained)})"
        + (f" and {len(derived)} rows derived from them ({', '.join(derived)})" if derived else "")
        + f", on `{data['source']}` (test split: {test['n']} texts, {balance_text(test)}).",
    ]
    lines += primary_lines(pairs, d)
    costs = [x for x in (training_cost_sentence(result), latency_sentence(result, summary, timings)) if x]
    if costs:
        lines.append(f"- **Costs (measured):** {'; '.join(costs)}.")
    lines.append(f"- **How sure:** {how_sure_sentence(result, pairs)}")
    return lines + [""] + scope_lines(data)


def scope_lines(data: dict) -> list[str]:
    """Where the data come from, how much of it, the class balance; the demo says what it can show."""
    sizes = ", ".join(f"{split} {s['n']} ({balance_text(s)})" for split, s in data["splits"].items())
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
        wrong = [i for i, y in enumerate(labels) if pred["pred"][i] != y]
        lines.append(f"**{stage}**: {len(wrong)} of {len(labels)} wrong" + (":" if wrong else "."))
        if wrong:
            lines += quoted_block(example_lines(pred, labels, names, texts, wrong, per_model))
        lines.append("")
    return lines


def example_lines(pred: dict, labels: list, names: list[str], texts: list[str], wrong: list[int], shown: int):
    """The most confidently wrong of `wrong`, one line each. Binary: ranked by |p(positive) − 0.5| and showing
    p(positive), as binary reports always did; more classes: ranked by the probability of the wrongly predicted
    class (the top class), showing it beside the true class's."""
    if len(names) == 2:
        p = pred["prob_positive"]
        ranked = sorted(wrong, key=lambda i: -abs(p[i] - 0.5))[:shown]
        return [
            f"true {names[labels[i]]} | predicted {names[pred['pred'][i]]} | p({names[1]}) {p[i]:.2f} | "
            f"{_one_line(texts[i])}"
            for i in ranked
        ]
    probs = recorded_probabilities(pred)
    ranked = sorted(wrong, key=lambda i: -probs[i, pred["pred"][i]])[:shown]
    return [
        f"true {names[labels[i]]} | predicted {names[pred['pred'][i]]} | p({names[pred['pred'][i]]}) "
        f"{probs[i, pred['pred'][i]]:.2f}, p({names[labels[i]]}) {probs[i, labels[i]]:.2f} | {_one_line(texts[i])}"
        for i in ranked
    ]


# ---------------------------------------------------------------- the whole report


def print_table(result: dict, summary: dict, console: Console | None = None) -> None:
    """The assignment's table on the terminal (80 columns when not a terminal), the baseline under it."""
    console = console or Console(width=None if sys.stdout.isatty() else 80)
    base = result["majority_baseline"]["test"]
    d = result_digits(result)
    table = Table(
        title="distill-lora: the assignment's table",
        caption=(
            f"Test Set Performance = accuracy / macro-F1 on the test split; {seeds_text(result)}. Majority class "
            f"(baseline): {base['accuracy']:.{d}f} / {base['macro_f1']:.{d}f}."
        ),
    )
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "Model Type" else "right")
    for row in assignment_rows(result, summary):
        table.add_row(*row)
    console.print(table)


def build_markdown(
    result: dict,
    summary: dict,
    pairs: list[dict],
    results: dict,
    alpha: float,
    plots: list[str],
    optional: dict | None = None,
) -> str:
    """report.md, section by section. optional: the tables of the sections a run may lack (slices, cpu, atlas)."""
    slices, cpu, atlas = ((optional or {}).get(k) for k in ("slices", "cpu", "atlas"))
    data, timings = results["data"], results.get("timings")
    majority = result["majority_baseline"]["test"]
    device = measured_on(summary, results["run"]["device"])
    md = ["# distill-lora: distillation vs LoRA", ""]
    md += summary_section(result, summary, pairs, data, timings)
    md += [f"Device{'s' if '; ' in device else ''}: {device}. Numbers: {seeds_text(result)}.", ""]
    md += atlas_section(result, summary, pairs, atlas, result_digits(result), FRONT in plots)  # report/atlas.py
    if n_classes(result) > 2:  # which class each model loses: what a reader of an N-class run looks at first
        md += per_class_section(result, summary, "confusion_matrices.png" in plots)
    md += _assignment_and_setup(result, summary)
    md += _results_and_costs(result, summary, timings, device)
    md += slice_section(slices, result["label_names"], plot=HEATMAP if HEATMAP in plots else None)  # report/slices.py
    md += _int8_section(summary, pairs, timings, result_digits(result))
    if cpu is not None:  # report/cpu_serving.py
        md += cpu_serving_section(cpu, alpha, result_digits(result))
    md += _pairs_section(pairs, alpha, result_digits(result))
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
    FRONT: "Atlas: validation quality vs cost, the front filled",
    HEATMAP: "Error rate per slice and model (report/slices.py)",
}


def _assignment_and_setup(result: dict, summary: dict) -> list[str]:
    d = result_digits(result)
    majority = result["majority_baseline"]["test"]
    md = [
        "## The assignment's table",
        "",
        md_table(list(COLUMNS), assignment_rows(result, summary)),
        "",
        f"- {TEST_NOTE} Majority class (baseline): {majority['accuracy']:.{d}f} / {majority['macro_f1']:.{d}f}.",
        f"- {LOSS_NOTE}",
        "",
        "## Setup",
        "",
        md_table(*setup_rows(result)),
        "",
        *derived_note(summary),
        f"- {LAYERS_NOTE}",
    ]
    if any(s.get("quantized_from") for s in summary.values()):
        md.append(f"- {INT8_NOTE}")
    return md


def per_class_section(result: dict, summary: dict, has_plot: bool) -> list[str]:
    """With more than two classes, near the top: each class's precision, recall and F1 for every model, which class
    each model loses most recall on against the teacher, and where the confusion matrices are."""
    losses = missed_class_lines(result, summary)
    return [
        "## Per class (test split)",
        "",
        f"Every model, {'its one seed' if len(result['seeds']) == 1 else 'mean over seeds'}; grouped by class. "
        "Recall − teacher's: the model's recall on the class minus the teacher's (no test of significance).",
        "",
        md_table(*per_class_rows(result)),
        "",
        *[f"- {x}" for x in losses],
        *([""] if losses else []),
        *(
            [
                "Confusion matrices (counts, first seed, every model): "
                "[plots/confusion_matrices.png](plots/confusion_matrices.png).",
                "",
            ]
            if has_plot
            else []
        ),
    ]


def _per_class_lines(result: dict) -> list[str]:
    """The per-class table under the full results: binary keeps it there; more classes have their own section."""
    if n_classes(result) > 2:
        return [f"- {AUC_NOTE}", "", "Per class: see the section 'Per class (test split)' above.", ""]
    return ["Per class (mean over seeds):", "", md_table(*per_class_rows(result)), ""]


def _results_and_costs(result: dict, summary: dict, timings: dict | None, device: str) -> list[str]:
    one = len(result["seeds"]) == 1
    resamples = summary[next(iter(summary))]["ci"]["accuracy"].get("n_resamples")
    return [
        "",
        "## Full results (test split)",
        "",
        f"Accuracy and macro-F1: value with a 95% CI ({ci_methods(summary)}"
        + (f"; {resamples} resamples, fixed seed" if resamples else "")
        + "). Validation: the selected epoch. "
        "Other columns: " + ("value of the one seed." if one else "mean ± sample std over seeds."),
        "",
        md_table(*full_rows(result, summary)),
        "",
        *_per_class_lines(result),
        "## Costs",
        "",
        f"Measured on {device}. Peak memory: {next(iter(summary.values()))['peak_memory_kind']}. "
        + timing_note(timings),
        "",
        md_table(*cost_rows(result, summary, timings)),
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
        "Verdict: the serving family's one-sided non-inferiority test against the fp32 source (see 'Are the "
        "differences real?').",
        "",
        md_table(*int8_rows(summary, pairs, d)),
        "",
    ]


def _pairs_section(pairs: list[dict], alpha: float, d: int) -> list[str]:
    families = {f: [p for p in pairs if p["family"] == f] for f in ("primary", "exploratory", "serving")}
    one_seed = all(p["n_seeds"] == 1 for p in pairs)
    grouped = any(p["units"] == "groups" for p in pairs)
    unit = "group of near-duplicates (data.group_column)" if grouped else "test text"
    lines = [
        "## Are the differences real?",
        "",
        f"Three families of comparisons, each Holm-adjusted within itself (alpha = {alpha}): **primary**, the "
        f"planned questions ({len(families['primary'])}, `report.primary`); **exploratory**, every other pair of "
        f"models ({len(families['exploratory'])}): read them as leads, not findings; **serving**, each CPU-serving "
        f"row against its own source ({len(families['serving'])}, one-sided non-inferiority). Δ: A − B.",
        "",
        (
            "One training seed: a verdict is the swap permutation test on macro-F1: the two models' predictions are "
            f"swapped for whole units (each {unit}) in every possible way (random ways beyond 2^16) and the "
            "difference recomputed; p = the share at least as extreme (never 0). It holds its level however few the "
            "units. A pair whose differing units are too few for any split to reach its Holm step says *no verdict "
            "possible*. The CI beside it is the paired bootstrap's, for size, not the verdict. These verdicts are "
            "about these trained models, not about the methods."
            if one_seed
            else "Several training seeds: a verdict is the method-level t interval of the seed-averaged macro-F1 "
            "difference: seed-to-seed variance of the difference plus the test set's sampling variance, on k − 1 "
            "degrees of freedom (wide with few seeds). The CI shown is that interval."
        ),
        "",
        "Detectable Δ: the smallest difference this design would find 4 times out of 5, at the level the comparison "
        "faces at its Holm step (from the observed disagreement between the two models). McNemar per seed counts "
        "texts as independent: detail only.",
        "",
        md_table(*pair_rows(pairs, alpha, d)),
        "",
    ]
    if families["serving"]:
        lines += [
            "Serving family (B against its source A, non-inferiority at a margin of "
            f"{families['serving'][0]['noninferiority']['margin']} macro-F1):",
            "",
            md_table(*serving_rows(families["serving"], d)),
            "",
        ]
    return lines


def serving_rows(pairs: list[dict], d: int) -> tuple[list[str], list[list[str]]]:
    header = ["Source", "Serving row", "Δ macro-F1 (row − source)", "Test", "p raw / Holm", "Verdict"]
    rows = [
        [
            p["a"],
            p["b"],
            f"{p['noninferiority']['point']:+.{d}f}",
            p["noninferiority"]["method"],
            f"{p['p_value']:.3g} / {p['p_holm']:.3g}",
            p["verdict"],
        ]
        for p in pairs
    ]
    return header, rows


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
    ) + busy_note(timings)


# the typical model's slowest repeat this much above its fastest: something else was using the machine. Runs on this
# project's 2-core machine gave typical spreads of 0.15-0.32 when nothing else ran, 0.4 with other jobs beside it
BUSY_SPREAD = 0.5


def busy_note(timings: dict) -> str:
    """A warning when the repeats disagree so much that the machine was evidently busy while timing. The repeats
    are interleaved, so a busy spell slows some repeats of most models: the median model's spread decides, not one
    model's hiccup. A machine busy through the whole timing slows every repeat alike and is not caught."""
    spread = {
        name: (t["latency_ms_batch1"]["max"] - t["latency_ms_batch1"]["min"]) / t["latency_ms_batch1"]["min"]
        for name, t in timings["models"].items()
        if t["latency_ms_batch1"]["min"] > 0
    }
    if not spread or statistics.median(spread.values()) <= BUSY_SPREAD:
        return ""
    worst = max(spread, key=spread.get)
    lat, n_busy = timings["models"][worst]["latency_ms_batch1"], sum(s > BUSY_SPREAD for s in spread.values())
    return (
        f" **The machine was busy while timing:** {worst}'s slowest repeat took {lat['max']:.2f} ms, "
        f"{spread[worst]:.0%} more than its fastest ({lat['min']:.2f} ms), and {n_busy} "
        f"of the {len(spread)} models' repeats disagree by more than half; compare the latencies with care, or "
        "time them again on an idle machine (`distill-lora retime RUN`)."
    )


def out_of_domain_section(
    name: str, ood: dict, in_domain: dict, resamples: int, boot_seed: int, alpha: float, primary=None
) -> str:
    """Every model of the run on another data set: same metrics, CIs and tests, and the drop from in-domain."""
    result = add_ensembles(ood["comparison"])
    summary = summarise(result, resamples, boot_seed)
    d = result_digits(result)
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
        f"{balance_text(ood)}), evaluated once; nothing was tuned on it.",
        "",
        md_table(*full_rows(result, summary)),
        "",
        md_table(["Model", "Macro-F1 in domain", f"Macro-F1 on {name}", "Change"], drop),
        "",
        md_table(*pair_rows(compare_pairs(result, alpha, resamples, boot_seed, primary=primary), alpha, d)),
        "",
    ]
    slices = slice_table(result, list(summary), resamples, boot_seed, alpha)  # evaluate --slice-column
    lines += slice_section(slices, result["label_names"], heading="###")
    return "\n".join(lines)


def results_csv(result: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    keys = ["accuracy", "macro_f1", "f1_positive", "roc_auc", "pr_auc", "ece"]
    # per class after the columns binary files always had (nothing moves): test_<class>_<precision|recall|f1|support>
    per_class = [(n, k) for n in result["label_names"] for k in ("precision", "recall", "f1", "support")]
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
            *[f"test_{n}_{k}" for n, k in per_class],
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
                    *[m["test"]["per_class"][n][k] for n, k in per_class],
                ]
            )
    return buf.getvalue()


def write_report(
    output_dir: Path, results: dict, resamples: int = 1000, boot_seed: int = 0, alpha: float = 0.05
) -> tuple[Path, dict]:
    """report.md, results.csv and plots/ from a results.json-shaped dict; returns (report path, summary)."""
    output_dir = Path(output_dir)
    result = add_ensembles(results["comparison"])
    summary = summarise(result, resamples, boot_seed)
    use_joint_timings(result, summary, results.get("timings"))
    settings = report_settings(results)  # primary, target_difference, serving_margin: the run's own
    pairs = compare_pairs(
        result,
        alpha,
        resamples,
        boot_seed,
        primary=settings["primary"],
        target=settings["target_difference"],
        margin=settings["serving_margin"],
    )
    # None without report.onnx_runtime
    cpu = cpu_serving(result, summary, pairs, results.get("timings"), resamples, boot_seed)
    slices = slice_table(result, list(summary), resamples, boot_seed, alpha)  # None without data.slice_column
    atlas = atlas_table(result, summary)  # None unless the run is an atlas
    plots = _write_plots(output_dir, result, summary, results.get("timings"), slices, atlas)
    md = build_markdown(result, summary, pairs, results, alpha, plots, {"slices": slices, "cpu": cpu, "atlas": atlas})
    for name, ood in results.get("out_of_domain", {}).items():
        md += "\n" + out_of_domain_section(name, ood, summary, resamples, boot_seed, alpha, settings["primary"])
    # a failed write (a full disk) names the file, for the CLI's one line; each file is whole or not replaced
    with writing(output_dir / "report.md"):
        atomic_write_text(output_dir / "report.md", md)
    with writing(output_dir / "results.csv"):
        atomic_write_text(output_dir / "results.csv", results_csv(result))
    if slices is not None:  # the per-slice table, one row per slice and model
        with writing(output_dir / "slices.csv"):
            atomic_write_text(output_dir / "slices.csv", slices_csv(slices))
    analysis = {"summary": summary, "pairs": pairs, "slices": slices}
    if atlas is not None:
        analysis["atlas"] = atlas
    if cpu is not None:
        analysis["onnx_runtime"] = {"summary": cpu["summary"]}  # their verdicts: the serving family in "pairs"
    with writing(output_dir / "analysis.json"):
        atomic_write_json(output_dir / "analysis.json", analysis)
    return output_dir / "report.md", summary


def _write_plots(output_dir: Path, result: dict, summary: dict, timings, slices, atlas) -> list[str]:
    """Draw the plots into a temporary folder and swap it in as plots/: a failure leaves the old plots/ (or none),
    never half of a new one, and names plots/ (blame=True: the error names a file in the temporary folder,
    which is gone by the time the user reads it)."""
    final = output_dir / "plots"
    tmp = make_temp_dir(".plots.tmp-", output_dir)  # a run folder that cannot be written is named as such
    with writing(final, blame=True):
        try:
            plots = draw_all(result, summary, tmp, timings) + draw_heatmap(slices, tmp)
            plots += atlas_front(atlas, tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return plots
