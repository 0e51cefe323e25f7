"""What does a student lose? Every model scored on each slice of the test split (data.slice_column).

A slice is one value of the data's slice column (e.g. a template category: negation, counter-speech…); a row
without one is the slice "(missing)". Per slice and model, averaged over seeds: accuracy, macro-F1 over the
classes present in the slice, the recall of each class present, and the error rate (1 − accuracy; on a
single-class slice, the share given another class) with a 95% bootstrap CI resampled within the slice (whole
groups when data.group_column is set; the same resamples for every model). Each model is compared with the
teacher on the slice's paired predictions: the swap (sign-flip) test over the slice's groups (or texts), all seeds
together, Holm-adjusted over every (slice, model) test; too few differing groups give no verdict. Slices are read
after training: they never choose an epoch or a threshold.

Pure functions of results.json's comparison dict, so `distill-lora report RUN_DIR` rebuilds them.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402
from sklearn.metrics import f1_score  # noqa: E402

from distill_lora.report.format import md_table
from distill_lora.report.stats import bootstrap_ci, holm_verdicts, swap_test  # noqa: E402
from distill_lora.report.summary import groups_of, runs_of, stage_ids  # noqa: E402
from distill_lora.stage_ids import LORA_STUDENT, TEACHER, is_student, lora_parts  # noqa: E402

MISSING = "(missing)"  # as train/data.py names a row without a slice value
HEATMAP = "slices.png"


# ---------------------------------------------------------------- the numbers


def slice_names(slices: list[str]) -> list[str]:
    """The distinct slices in name order, "(missing)" last."""
    return sorted(set(slices), key=lambda s: (s == MISSING, s))


def slice_table(
    result: dict, models: list[str] | None = None, resamples: int = 1000, boot_seed: int = 0, alpha: float = 0.05
) -> dict | None:
    """Per slice: its size, groups and class shares, and every model's numbers on it with the test against the
    teacher; None when the comparison has no slices. `models` sets the order (default: pipeline order)."""
    slices = result.get("test_slices")
    if slices is None:
        return None
    models = list(models or stage_ids(result))
    where = np.asarray(slices, dtype=object)
    rows = [
        _slice_entry(result, name, np.flatnonzero(where == name), models, resamples, boot_seed)
        for name in slice_names(slices)
    ]
    reference = TEACHER if TEACHER in models else None
    if reference is not None:
        _test_against(result, rows, reference, alpha)
    return {
        "column": result.get("slice_column"),
        "models": models,
        "reference": reference,
        "alpha": alpha,
        "n_resamples": resamples,
        "grouped": groups_of(result) is not None,
        "n_seeds": len(result["seeds"]),
        "slices": rows,
    }


def _slice_entry(result: dict, name: str, idx: np.ndarray, models: list[str], resamples: int, boot_seed: int):
    names = result["label_names"]
    y = np.asarray(result["test_labels"])[idx]
    groups = groups_of(result)
    within = None if groups is None else [str(groups[i]) for i in idx]
    present = sorted(set(y.tolist()))
    return {
        "slice": name,
        "n": int(len(idx)),
        "n_groups": None if within is None else len(set(within)),
        "class_shares": {names[c]: float(np.mean(y == c)) for c in range(len(names))},
        "classes_present": [names[c] for c in present],
        "index": idx.tolist(),
        "models": {stage: _model_on_slice(result, stage, idx, within, resamples, boot_seed) for stage in models},
    }


def _model_on_slice(result: dict, stage: str, idx: np.ndarray, groups, resamples: int, boot_seed: int) -> dict:
    """One model on one slice, averaged over seeds; the error rate's CI resamples texts (or groups) of the slice."""
    names = result["label_names"]
    y = np.asarray(result["test_labels"])[idx]
    present = sorted(set(y.tolist()))
    preds = [np.asarray(r["predictions"]["pred"])[idx] for r in runs_of(result, stage)]
    accuracy = [float(np.mean(p == y)) for p in preds]
    f1 = [float(f1_score(y, p, labels=present, average="macro", zero_division=0)) for p in preds]
    # the same seed, slice size and groups give every model the same resamples
    ci = bootstrap_ci(y, preds, "accuracy", resamples, boot_seed, groups=groups, n_classes=len(names))
    return {
        "accuracy": statistics.mean(accuracy),
        "accuracy_per_seed": accuracy,
        "macro_f1": statistics.mean(f1),
        "recall": {names[c]: statistics.mean(float(np.mean(p[y == c] == c)) for p in preds) for c in present},
        "error_rate": 1 - statistics.mean(accuracy),
        "error_ci": {"low": 1 - ci["high"], "high": 1 - ci["low"], "method": ci["method"]},
    }


def _test_against(result: dict, rows: list[dict], reference: str, alpha: float) -> None:
    """Every other model against `reference` on each slice: the swap (sign-flip) test of the slice's accuracy
    difference over its units of independent evidence (groups when the data names them, else texts), all seeds
    together, Holm-adjusted over every (slice, model) test, and a verdict (into each model's entry). A test whose
    differing units are too few for any split to pass its Holm step is "no verdict possible": descriptive only."""
    labels = np.asarray(result["test_labels"])
    groups = groups_of(result)
    ref_runs = runs_of(result, reference)
    tests = []
    for row in rows:
        idx = np.asarray(row["index"])
        within = None if groups is None else [str(groups[i]) for i in idx]
        for stage, m in row["models"].items():
            if stage == reference:
                continue
            mine = [np.asarray(r["predictions"]["pred"])[idx] for r in runs_of(result, stage)]
            ref = [np.asarray(r["predictions"]["pred"])[idx] for r in ref_runs]
            t = swap_test(labels[idx], mine, ref, "accuracy", len(result["label_names"]), within)
            m["vs_reference"] = {
                "accuracy_diff": m["accuracy"] - row["models"][reference]["accuracy"],
                "differing_units": t["differing_units"],
                "units": "groups" if groups is not None else "texts",
                "p_value": t["p_value"],
                "min_p": t["min_p"],
            }
            tests.append(m["vs_reference"])
    family = holm_verdicts([t["p_value"] for t in tests], [t["min_p"] for t in tests], alpha)
    for t, h in zip(tests, family):
        t["p_holm"] = h["p_holm"]
        t["verdict"] = slice_verdict(h["p_holm"], t["accuracy_diff"], alpha, h["reachable"])


def slice_verdict(p_holm: float, diff: float, alpha: float, reachable: bool = True) -> str:
    """ "worse" or "better" than the reference when the Holm-adjusted p < alpha (by the sign of the accuracy
    difference); "no verdict possible" when no split of the slice's differing units could pass; else "within
    noise"."""
    if p_holm < alpha and diff != 0:
        return "worse" if diff < 0 else "better"
    return "within noise" if reachable else "no verdict possible"


# ---------------------------------------------------------------- the report's section


def _cell(name: str, width: int = 60) -> str:
    """A slice name (data, not our words) safe inside a markdown table cell."""
    flat = " ".join(str(name).split()).replace("|", "\\|").replace("`", "'")
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def what_error_means(row: dict, label_names: list[str]) -> str:
    """What the error rate counts on this slice: on a single-class binary slice, flagged or missed."""
    if len(row["classes_present"]) != 1:
        return "given a wrong class"
    only = row["classes_present"][0]
    if len(label_names) == 2:
        other = label_names[1 - label_names.index(only)]
        return f"flagged {other}" if only == label_names[0] else f"missed (predicted {other})"
    return f"given a class other than {only}"


def slice_section(table: dict | None, label_names: list[str], heading: str = "##", plot: str | None = None):
    """The report's per-slice section: what was done, the slices, error rates per slice × model, each model's
    numbers and test against the teacher, and the sentences those numbers support."""
    if table is None:
        return []
    column = f"`{_cell(table['column'])}`" if table.get("column") else "the slice column"
    lines = [f"{heading} Per slice ({column})", "", *_method_lines(table, label_names), ""]
    lines += [_overview(table), ""]
    lines += [f"Error rate per slice and model ({_marks(table)}):", "", _error_grid(table), ""]
    if plot:
        lines += [f"![Error rate per slice and model, coloured by the difference from the teacher](plots/{plot})", ""]
    lines += ["Per slice and model (mean over seeds):", "", _detail_table(table, label_names), ""]
    return lines + _finding_lines(table, label_names) + [""]


def _method_lines(table: dict, label_names: list[str]) -> list[str]:
    ci = "whole groups (data.group_column) of the slice" if table["grouped"] else "texts of the slice"
    text = (
        f"The test split cut by its slice column, every model scored on each slice ({table['n_seeds']} seed(s), "
        "mean over seeds). Error rate: the share of a slice's texts given a wrong class; on a single-class "
        f"slice, the share flagged as another class (e.g. flagged '{label_names[-1]}' on a slice of only "
        f"'{label_names[0]}' texts) or missed. 95% CI: bootstrap over the {ci}, {table['n_resamples']} resamples, "
        "the same for every model; where every resample gives one value (no errors, or one text or group) the "
        f"exact Clopper–Pearson interval over the slice's {'groups' if table['grouped'] else 'texts'} instead. "
        "Macro-F1 counts only the classes present "
        "in the slice. Slices were read after training: they chose no epoch and no threshold."
    )
    if table["reference"] is None:
        return [text + " No teacher in this run, so no model is compared with one."]
    n_tests = sum(len(r["models"]) - 1 for r in table["slices"])
    text += (
        f" Against the teacher: Δ = the model's accuracy minus the teacher's on the slice (error rates move the "
        f"other way); the swap (sign-flip) test of that difference over the slice's "
        f"{'groups (data.group_column)' if table['grouped'] else 'texts'}, all seeds together, Holm-adjusted over "
        f"all {n_tests} slice × model tests (alpha = {table['alpha']}). *worse* / *better*: adjusted p < alpha. "
        "*no verdict possible*: the slice has too few units on which the two differ for any result to pass: its "
        "numbers are descriptive only (error rates with their intervals), with no mark."
    )
    return [text]


def _overview(table: dict) -> str:
    names = list(table["slices"][0]["class_shares"]) if table["slices"] else []
    header = ["Slice", "n"] + (["Groups"] if table["grouped"] else []) + [f"Share {n}" for n in names]
    rows = [
        [_cell(r["slice"]), str(r["n"])]
        + ([str(r["n_groups"])] if table["grouped"] else [])
        + [f"{r['class_shares'][n]:.0%}" for n in names]
        for r in table["slices"]
    ]
    return md_table(header, rows)


def _marks(table: dict) -> str:
    if table["reference"] is None:
        return "no teacher to compare with"
    return (
        "▲ significantly more errors than the teacher, ▼ significantly fewer; no mark: no difference shown, or none "
        "decidable"
    )


def _mark(m: dict) -> str:
    verdict = m.get("vs_reference", {}).get("verdict")
    return {"worse": " ▲", "better": " ▼"}.get(verdict, "")


def _error_grid(table: dict) -> str:
    rows = [
        [_cell(r["slice"])] + [f"{r['models'][s]['error_rate']:.2f}{_mark(r['models'][s])}" for s in table["models"]]
        for r in table["slices"]
    ]
    return md_table(["Slice", *table["models"]], rows)


def _detail_table(table: dict, label_names: list[str]) -> str:
    header = ["Slice", "Model", "Accuracy", "Macro-F1", "Recall per class", "Error rate [95% CI]"]
    header += ["Δ vs teacher", "Differing units", "p raw / Holm", "Verdict"] if table["reference"] else []
    rows = []
    for r in table["slices"]:
        for stage in table["models"]:
            m = r["models"][stage]
            row = [
                _cell(r["slice"]),
                stage,
                f"{m['accuracy']:.3f}",
                f"{m['macro_f1']:.3f}",
                ", ".join(f"{_cell(c)} {v:.2f}" for c, v in m["recall"].items()),
                f"{m['error_rate']:.3f} [{m['error_ci']['low']:.3f}, {m['error_ci']['high']:.3f}]",
            ]
            if table["reference"]:
                t = m.get("vs_reference")
                row += (
                    [
                        f"{t['accuracy_diff']:+.3f}",
                        f"{t['differing_units']} {t['units']}",
                        f"{t['p_value']:.3g} / {t['p_holm']:.3g}",
                        t["verdict"],
                    ]
                    if t
                    else ["(reference)", "", "", ""]
                )
            rows.append(row)
    return md_table(header, rows)


def _finding_lines(table: dict, label_names: list[str]) -> list[str]:
    """Sentences from the verdicts and numbers only: the slices where a model is significantly worse or better
    than the teacher and by how much, and where a student has fewer errors without a significant difference."""
    ref = table["reference"]
    if ref is None:
        return []
    found = {"worse": [], "better": [], "fewer": []}
    for r in table["slices"]:
        base = r["models"][ref]["error_rate"]
        cells = {"worse": [], "better": [], "fewer": []}
        for stage in table["models"]:
            t, err = r["models"][stage].get("vs_reference"), r["models"][stage]["error_rate"]
            kind = t and (t["verdict"] if t["verdict"] in ("worse", "better") else None)
            if t and not kind and (is_student(stage) or lora_parts(stage)[0] == LORA_STUDENT) and err < base:
                kind = "fewer"
            if kind:
                cells[kind].append(f"{stage} {err:.1%} ({100 * (err - base):+.1f} points)")
        groups = f", {r['n_groups']} group(s)" if r["n_groups"] is not None else ""
        for kind, said in cells.items():
            if said:
                found[kind].append(
                    f"  - '{_cell(r['slice'])}' (n = {r['n']}{groups}; error rate = share "
                    f"{what_error_means(r, label_names)}; teacher {base:.1%}): {', '.join(said)}."
                )
    titles = {
        "worse": "Significantly worse than the teacher",
        "better": "Significantly better than the teacher",
        "fewer": "A student with fewer errors than the teacher, not significant",
    }
    lines = []
    for kind, title in titles.items():
        lines += [f"- **{title}:**" + ("" if found[kind] else " on no slice.")] + found[kind]
    return lines


# ---------------------------------------------------------------- the picture and the csv


def draw_heatmap(table: dict | None, folder: Path, name: str = HEATMAP) -> list[str]:
    """Slices (rows) × models (columns, the main table's order): each cell annotated with the model's error rate
    on the slice and coloured by its difference from the teacher's (red: more errors, blue: fewer; diverging,
    centred on 0); ▲/▼ mark significant differences. Sized to stay readable with 30 slices and 14 models.
    Returns [name], or [] when there are no slices."""
    if table is None or not table["slices"]:
        return []
    models, rows = table["models"], table["slices"]
    error = np.array([[r["models"][s]["error_rate"] for s in models] for r in rows])
    ref = table["reference"]
    diff = error - error[:, [models.index(ref)]] if ref else np.zeros_like(error)
    span = max(0.05, float(np.abs(diff).max()))
    fig, ax = plt.subplots(figsize=(2.6 + 0.78 * len(models), 1.6 + 0.34 * len(rows)))
    image = ax.imshow(diff, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -span, span), aspect="auto")
    small = 8 if len(models) <= 8 else 7
    for i, r in enumerate(rows):
        for j, stage in enumerate(models):
            dark = abs(diff[i, j]) > 0.6 * span
            ax.text(
                j,
                i,
                f"{error[i, j]:.2f}{_mark(r['models'][stage])}",
                ha="center",
                va="center",
                fontsize=small,
                color="white" if dark else "black",
            )
    ax.set_xticks(range(len(models)), models, rotation=40, ha="right", fontsize=small + 1)
    ylabels = [
        f"{_cell(r['slice'], 32)} (n={r['n']}" + (f", {r['n_groups']} groups)" if r.get("n_groups") else ")")
        for r in rows
    ]
    ax.set_yticks(range(len(rows)), ylabels, fontsize=small + 1)
    ax.set_xticks(np.arange(len(models) + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(len(rows) + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    ax.set_title(
        "Error rate per slice (cell text)"
        + (
            ", coloured by the difference from the teacher\n▲ / ▼ significantly more / fewer errors than the teacher "
            "(swap test over groups or texts, Holm-adjusted)"
            if ref
            else ""
        ),
        fontsize=small + 2,
    )
    bar = fig.colorbar(image, ax=ax, fraction=0.04, pad=0.02)
    bar.set_label(
        "error rate − teacher's (red: more errors)" if ref else "no teacher: no difference", fontsize=small + 1
    )
    fig.tight_layout()
    fig.savefig(Path(folder) / name, dpi=110)
    plt.close(fig)
    return [name]


def slices_csv(table: dict | None) -> str | None:
    """One row per slice and model: the section's numbers, for spreadsheets; None when there are no slices."""
    if table is None:
        return None
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        ["slice", "n", "n_groups", "stage", "accuracy", "macro_f1_present", "error_rate", "error_low", "error_high"]
        + ["accuracy_diff_vs_teacher", "differing_units", "p_value", "p_holm", "verdict", "recall_per_class"]
        + ["class_shares"]
    )
    for r in table["slices"]:
        for stage in table["models"]:
            m = r["models"][stage]
            t = m.get("vs_reference") or {}
            writer.writerow(
                [r["slice"], r["n"], r["n_groups"], stage, m["accuracy"], m["macro_f1"], m["error_rate"]]
                + [m["error_ci"]["low"], m["error_ci"]["high"], t.get("accuracy_diff")]
                + [t.get("differing_units"), t.get("p_value"), t.get("p_holm"), t.get("verdict")]
                + [" ".join(f"{c}={v}" for c, v in m["recall"].items())]
                + [" ".join(f"{c}={v}" for c, v in r["class_shares"].items())]
            )
    return buf.getvalue()
