"""The atlas section: which student to ship, when a run has more students than the assignment's two (distill-lora
atlas, or compare with a longer distill.layers).

Every trained model (teacher, students, LoRA) is ranked on *validation* macro-F1 (the selected epoch's, mean over
seeds) and placed on the front of quality vs cost: a model is on the front when no other is at least as good on
validation and at least as cheap, and better in one of the two. Cost is the CPU latency at batch 1 the report shows
(summary.joint_speed) when every model was timed, averaged over the models of one architecture (the same computation:
what separates their timings is noise), else the encoder layers run (said so). Each model's test score
is shown once, beside it, never used to choose; the sentences compare the validation winners on test through the
report's pair verdicts (verdicts.py), so they say when the design cannot tell. Pure functions of results.json.
"""

from __future__ import annotations

import statistics

from distill_lora.report.findings import difference_sentence
from distill_lora.report.format import ci_text, md_table, millions
from distill_lora.report.summary import display_name, runs_of, stage_ids
from distill_lora.stage_ids import LORA_STUDENT, TEACHER, is_lora, is_student, kind_of, lora_parts

MIN_STUDENTS = 3  # the assignment's odd and even students are the main table's; a third makes it an atlas


def validation_f1(result: dict, stage: str) -> list[float] | None:
    """The selected epoch's validation macro-F1 of each seed; None for a model that was not trained."""
    scores = []
    for r in runs_of(result, stage):
        if not r.get("selected_epoch") or not r.get("validation_history"):
            return None
        scores.append(r["validation_history"][r["selected_epoch"] - 1]["val_macro_f1"])
    return scores


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names not dominated in (quality: higher is better, cost: lower is better), in the order given."""

    def dominates(b, a):
        return b[0] >= a[0] and b[1] <= a[1] and (b[0] > a[0] or b[1] < a[1])

    return [n for n, p in points.items() if not any(dominates(q, p) for m, q in points.items() if m != n)]


def atlas_table(result: dict, summary: dict) -> dict | None:
    """{rows: ranked on validation, cost: what the cost axis is, front: names} or None when the run is no atlas."""
    trained = [s for s in stage_ids(result) if kind_of(s).trained and validation_f1(result, s) is not None]
    if sum(is_student(s) for s in trained) < MIN_STUDENTS and not result.get("atlas"):  # made by distill-lora atlas
        return None
    timed = all("latency_ms_batch1" in summary[s] for s in trained)
    # one architecture (depth and parameter count: the same computation), one cost: the latencies measured for
    # its models differ by timing noise only, which must not decide who is on the front
    arch = {s: (summary[s]["depth"], summary[s]["total_params"]) for s in trained}
    latency = {
        s: statistics.fmean(summary[t]["latency_ms_batch1"]["mean"] for t in trained if arch[t] == arch[s])
        for s in trained
        if timed
    }
    rows = []
    for s in trained:
        val = validation_f1(result, s)
        runs = runs_of(result, s)
        rows.append(
            {
                "stage": s,
                "layers": summary[s].get("teacher_layers"),
                "recipe": runs[0].get("recipe") or runs[0].get("adapter"),  # a student's recipe, a LoRA's adapter
                "val_macro_f1": statistics.fmean(val),
                "val_sd": statistics.stdev(val) if len(val) > 1 else None,
                "cost": latency[s] if timed else float(summary[s]["depth"]),
            }
        )
    rows.sort(key=lambda r: (-r["val_macro_f1"], r["cost"], r["stage"]))
    front = pareto_front({r["stage"]: (r["val_macro_f1"], r["cost"]) for r in rows})
    cost = (
        "CPU latency at batch 1 (ms/example; the mean over the models of one architecture)"
        if timed
        else "encoder layers run (the run has no latency timings)"
    )
    return {"rows": rows, "front": front, "cost": cost, "timed": timed}


def _architecture_note(table: dict) -> str:
    return (
        " Models of one architecture (the same depth and parameter count) do the same computation, so they share "
        "their mean latency: the differences measured between them are timing noise."
        if table["timed"]
        else ""
    )


def atlas_section(
    result: dict, summary: dict, pairs: list[dict], table: dict | None, d: int, plot: bool = False
) -> list[str]:
    if table is None:
        return []
    rows, front = table["rows"], set(table["front"])
    header = [
        "Rank (validation)",
        "Model",
        "Layers",
        "Recipe / adapter",
        "Validation macro-F1",
        table["cost"],
        "Params",
    ]
    header += ["Test macro-F1 [95% CI]", "On the front"]
    tuning = result.get("tuning") or {}
    if tuning:
        header.append("Tuned values")
    body = []
    for i, r in enumerate(rows):
        s = summary[r["stage"]]
        val = f"{r['val_macro_f1']:.{d}f}" + (f" ± {r['val_sd']:.{d}f}" if r["val_sd"] is not None else "")
        cost = f"{r['cost']:.2f}" if table["timed"] else str(int(r["cost"]))
        layers = " / ".join(sorted({_layers_text(x.get("teacher_layers")) for x in runs_of(result, r["stage"])}))
        on = "yes" if r["stage"] in front else ""
        row = [str(i + 1), r["stage"], layers, r["recipe"] or "–", val, cost, millions(s["total_params"])]
        row += [ci_text(s, "macro_f1", d), on]
        if tuning:
            values = tuning.get(r["stage"], {}).get("values")
            row.append(", ".join(f"{k.rsplit('.', 1)[-1]} {v:.3g}" for k, v in values.items()) if values else "as set")
        body.append(row)
    n = len(rows)
    lines = [
        "## Atlas: which model to ship",
        "",
        f"{n} models ranked on validation macro-F1 (the selected epoch's, mean ± sd over seeds) and placed on the "
        f"front of validation quality vs {table['cost']}: on the front, no other model is as good and as cheap. "
        "Each test score is shown once and played no part in the ranking; the top one is still optimistic, as the "
        f"best of {n} tries is partly chosen for its luck. The planned comparisons are in 'Are the differences "
        f"real?'.{_architecture_note(table)}",
        "",
        md_table(header, body),
        "",
    ]
    if plot:
        lines += ["![Atlas: validation quality vs cost, the front filled](plots/atlas_front.png)", ""]
    if tuning:
        lines += [_tuning_text(tuning), ""]
    lines += [f"- {x}" for x in atlas_sentences(result, summary, pairs, table)]
    return lines + [""]


def _tuning_text(tuning: dict) -> str:
    """What the equal tuning budget did, from the run's record of it (atlas.tune_trials)."""
    first = next(iter(tuning.values()))
    keys = ", ".join(k.rsplit(".", 1)[-1] for k in first["values"])
    trials = sorted({t["trials"] for t in tuning.values()})
    budget = f"{trials[0]} trials" if len(trials) == 1 else f"{trials[0]} to {trials[-1]} trials (unequal!)"
    return (
        f"Equal tuning budget: each arm's {keys} chosen on validation from {budget} with seed {first['seed']}, "
        "then every seed trained with those values (the table's last column; the teacher is not an arm and trained "
        "as set). The validation scores above come from the split that chose the values, so they are optimistic "
        "for every arm alike; the test split played no part."
    )


def _same_layers(result: dict, a: str, b: str) -> bool:
    return all(
        x.get("teacher_layers") == y.get("teacher_layers") for x, y in zip(runs_of(result, a), runs_of(result, b))
    )


def _layers_text(layers) -> str:
    return "{" + ",".join(map(str, layers)) + "}" if layers else "all"


def _best(rows: list[dict], keep) -> list[dict]:
    return [r for r in rows if keep(r)]


def _versus(summary: dict, pairs: list[dict], what: str, first: dict, second: dict, d: int = 4) -> str:
    """'<what>: A is best on validation (0.91 vs B's 0.89); on test, <the pair's verdict sentence>'."""
    a, b = first["stage"], second["stage"]
    on_test = difference_sentence(summary, pairs, a, b) or "the two were not compared on test."
    best = (
        "ties on validation with" if first["val_macro_f1"] == second["val_macro_f1"] else "is best on validation over"
    )
    return (
        f"{what}: {display_name(summary, a)} {best} {b} ({first['val_macro_f1']:.{d}f} vs "
        f"{second['val_macro_f1']:.{d}f}); on test, {on_test[0].lower() + on_test[1:]}"
    )


def atlas_sentences(result: dict, summary: dict, pairs: list[dict], table: dict) -> list[str]:
    """One sentence per question (which layers, which recipe, which adapter, distil or adapt, the data-driven
    choice), each from the validation ranking and the test verdict of the two models it names."""
    rows = table["rows"]
    students = _best(rows, lambda r: is_student(r["stage"]))
    out = [f"On the front: {', '.join(table['front'])}."]
    best = students[0]
    same_recipe = _best(students, lambda r: r["recipe"] == best["recipe"])
    if len(same_recipe) > 1:
        recipe = f" (recipe {best['recipe']})" if best["recipe"] else ""
        out.append(_versus(summary, pairs, f"Which layers{recipe}", same_recipe[0], same_recipe[1]))
    same_layers = _best(students, lambda r: r["layers"] == best["layers"] and r["stage"] != best["stage"])
    if same_layers:
        out.append(_versus(summary, pairs, "Which recipe (same layers)", best, same_layers[0]))
    adapters = _best(rows, lambda r: is_lora(r["stage"]))
    if len(adapters) > 1:
        out.append(_versus(summary, pairs, "Which adapter", adapters[0], adapters[1]))
    same_depth = _best(adapters, lambda r: lora_parts(r["stage"])[0] == LORA_STUDENT)
    if same_depth:
        out.append(
            _versus(summary, pairs, "Distil or adapt (same depth)", *sorted([best, same_depth[0]], key=rows.index))
        )
    teacher = _best(rows, lambda r: r["stage"] == TEACHER)
    if teacher:
        out.append(_versus(summary, pairs, "Student or teacher", *sorted([best, teacher[0]], key=rows.index)))
    return out + _layer_choice_lines(result, students)


def _layer_choice_lines(result: dict, students: list[dict]) -> list[str]:
    """What each data-driven student kept, per seed, and whether another arm has the very same layers."""
    out = []
    for r in students:
        choices = [x.get("layer_choice") for x in runs_of(result, r["stage"])]
        if all(choices):
            kept = "; ".join(
                f"seed {seed}: {{{','.join(map(str, c['layers']))}}} (distances "
                f"{', '.join(f'{v:.3f}' for v in c['distances'])})"
                for seed, c in zip(result["seeds"], choices)
            )
            twins = [
                x["stage"]
                for x in students
                if x["stage"] != r["stage"]
                and x["recipe"] == r["recipe"]
                and _same_layers(result, x["stage"], r["stage"])
            ]
            same = f" In every seed these are the layers of {', '.join(twins)}: the same student." if twins else ""
            out.append(
                f"{r['stage']} kept the teacher layers that change its hidden states most on validation: {kept}.{same}"
            )
    return out
