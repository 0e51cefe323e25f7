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

from .analysis import add_ensembles, analysis_lines, compare_pairs, int8_comparisons, runs_of, stage_ids, summarise
from .plots import draw_all
from .runs import atomic_write_json, atomic_write_text, make_temp_dir

COLUMNS = ("Model Type", "Layers", "Trainable / total params", "Training Loss",
           "Test Set Performance: Accuracy", "Test Set Performance: Macro-F1")

LORA_NOTE = ("LoRA makes training cheap, not the model smaller: a LoRA model has the depth and inference cost "
             "of the model it adapts (see Layers).")
LOSS_NOTE = ("Training Loss = mean cross-entropy with the true labels over the training batches of the selected "
             "epoch (train mode, dropout on); for distilled students the total distillation loss "
             "(w_ce·CE + w_kl·T²·KL + w_cos·cosine) follows in brackets.")
INT8_NOTE = ("int8 rows: the fp32 model above with post-training dynamic quantisation (torch): nn.Linear weights "
             "in int8, activations quantised per batch at run time, on the CPU; nothing was trained. Size = int8 "
             "weights + their scales + the fp32 rest (embeddings, LayerNorm, biases); the int8 weights are not saved "
             "(rebuilt exactly from the fp32 stage folder).")
TEST_NOTE = ("Test Set Performance: each model was evaluated once on the test split, after its epoch was "
             "selected on validation; the test split chose nothing.")


def _ms(x: dict, digits: int = 4, one_seed: bool = False) -> str:
    """'0.8123' for one seed, '0.8123 ± 0.0051' (sample std over seeds) for several."""
    if x["mean"] is None:
        return "–"
    if one_seed:
        return f"{x['mean']:.{digits}f}"
    return f"{x['mean']:.{digits}f} ± {x['std']:.{digits}f}"


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def _mib(n: int | None) -> str:
    return "–" if not n else f"{n / 2 ** 20:.1f} MiB"


def _seeds_text(result: dict) -> str:
    seeds = result["seeds"]
    if len(seeds) == 1:
        return f"seed {seeds[0]} (one seed: differences of about one point or less are within seed-to-seed noise)"
    return f"mean ± sample std over {len(seeds)} seeds ({', '.join(map(str, seeds))})"


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


# ---------------------------------------------------------------- tables

def assignment_rows(result: dict, summary: dict) -> list[list[str]]:
    """The assignment's table: Model Type | Training Loss | Test Set Performance (+ depth and params)."""
    one = len(result["seeds"]) == 1
    rows = []
    for stage, s in summary.items():
        loss = _ms(s["train_loss"], one_seed=one)
        if s.get("quantized_from"):
            loss = f"– (int8 of {s['quantized_from']})"
        elif stage.startswith("student-"):
            loss += f" ({_ms(s['train_total_loss'], one_seed=one)})"
        rows.append([s["model_type"], str(s["depth"]), f"{_millions(s['trainable_params'])} / "
                     f"{_millions(s['total_params'])}", loss, _ms(s["accuracy"], one_seed=one),
                     _ms(s["macro_f1"], one_seed=one)])
    base = result["majority_baseline"]["test"]
    rows.append(["Majority class (baseline)", "–", "–", "–", f"{base['accuracy']:.4f}", f"{base['macro_f1']:.4f}"])
    return rows


def _ci(s: dict, metric: str) -> str:
    ci = s["ci"][metric]
    return f"{ci['point']:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]"


def full_rows(summary: dict, one: bool) -> tuple[list[str], list[list[str]]]:
    header = ["Model", "Layers", "Accuracy [95% CI]", "Macro-F1 [95% CI]", "F1 positive", "ROC-AUC", "PR-AUC", "ECE"]
    tuned = all("at_threshold" in s for s in summary.values())
    if tuned:
        header += ["Threshold (validation)", "Macro-F1 at threshold"]
    rows = []
    for stage, s in summary.items():
        row = [stage, str(s["depth"]), _ci(s, "accuracy"), _ci(s, "macro_f1"), _ms(s["f1_positive"], one_seed=one),
               _ms(s["roc_auc"], one_seed=one), _ms(s["pr_auc"], one_seed=one), _ms(s["ece"], one_seed=one)]
        if tuned:
            row += [_ms(s["threshold"], 3, one), _ms(s["at_threshold"]["macro_f1"], one_seed=one)]
        rows.append(row)
    return header, rows


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
                row.append(f"{sum(vals) / len(vals):.4f}")
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


def cost_rows(summary: dict, one: bool) -> tuple[list[str], list[list[str]]]:
    header = ["Model", "Layers", "Total params", "Trainable params", "Weights on disk", "Training time (s)",
              "Training samples/s", "Peak memory", "Latency, batch 1 (ms/example)", "Throughput, batch 64 (examples/s)"]
    rows = []
    first = next(iter(summary.values()))
    for stage, s in summary.items():
        time_s = _ms(s["wall_time_s"], 1, one)
        with_teacher = f"with teacher {_ms(s['wall_time_with_teacher_s'], 1, one)}" if "wall_time_with_teacher_s" in s else ""
        weights = _mib(s.get("weights_bytes"))
        if stage.startswith("lora"):
            weights += " adapter + head (base model shipped separately)"
        if s.get("quantized_from"):  # not trained: the time is its source's training plus quantising
            time_s += f" ({s['quantized_from']} + {_ms(s['quantize_time_s'], 1, one)} quantising" + \
                      (f"; {with_teacher})" if with_teacher else ")")
            weights += " int8 (not saved; rebuilt from its source)"
        elif with_teacher:
            time_s += f" ({with_teacher})"
        if s.get("device") != first.get("device") and not s.get("quantized_from"):  # trained somewhere else
            time_s += f" on {s.get('device')}"
        memory = _mib(s["peak_memory_bytes"])
        if s.get("peak_memory_kind") != first.get("peak_memory_kind"):  # int8 rows on a GPU run: CPU RSS
            memory += f" ({s.get('peak_memory_kind')})"
        latency = _ms(s["latency_ms_batch1"], 2, one) if "latency_ms_batch1" in s else "–"
        throughput = _ms(s["throughput_batch64"], 1, one) if "throughput_batch64" in s else "–"
        if s.get("device") != first.get("device") and "latency_ms_batch1" in s:
            latency, throughput = f"{latency} on {s['device']}", f"{throughput} on {s['device']}"
        rows.append([stage, str(s["depth"]), _millions(s["total_params"]), _millions(s["trainable_params"]), weights,
                     time_s, _ms(s["samples_per_s"], 1, one), memory, latency, throughput])
    return header, rows


def int8_rows(summary: dict, pairs: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Each int8 row beside its fp32 source: size, speed on the same CPU, macro-F1 and the pair's verdict."""
    header = ["int8 model", "Size int8 / fp32", "× smaller", "CPU latency batch 1, int8 / fp32 (ms)",
              "× faster", "CPU throughput batch 64, int8 / fp32 (ex/s)", "× faster", "Macro-F1 int8 / fp32",
              "Change", "verdict (McNemar, as above)"]
    rows = []
    for c in int8_comparisons(summary, pairs):
        timed = "speedup_batch1" in c
        p = c["pair"]
        verdict = p["verdict"] if p["verdict"] != "significant" else f"significant: {p['winner']} better"
        rows.append([c["stage"], f"{_mib(c['int8_bytes'])} / {_mib(c['fp32_bytes'])}", f"{c['size_ratio']:.2f}",
                     f"{c['latency_ms_int8']:.2f} / {c['latency_ms_fp32']:.2f}" if timed else "–",
                     f"{c['speedup_batch1']:.2f}" if timed else "–",
                     f"{c['throughput_int8']:.1f} / {c['throughput_fp32']:.1f}" if timed else "–",
                     f"{c['speedup_batch64']:.2f}" if timed else "–",
                     f"{c['macro_f1_int8']:.4f} / {c['macro_f1_fp32']:.4f}", f"{c['macro_f1_change']:+.4f}", verdict])
    return header, rows


def pair_rows(pairs: list[dict], alpha: float) -> tuple[list[str], list[list[str]]]:
    header = ["A", "B", "Δ macro-F1 (A − B)", "McNemar p per seed", f"seeds with p < {alpha}",
              "paired t-test p (macro-F1 over seeds)", "verdict"]
    rows = []
    for p in pairs:
        t = p["paired_t"]["p_value"]
        verdict = p["verdict"] if p["verdict"] != "significant" else f"significant: {p['winner']} better"
        rows.append([p["a"], p["b"], f"{p['macro_f1_diff']:+.4f}", ", ".join(f"{x:.3g}" for x in p["mcnemar_p"]),
                     f"{p['seeds_significant']} of {p['n_seeds']}", "–" if t is None else f"{t:.3g}", verdict])
    return header, rows


def data_section(data: dict) -> list[str]:
    rows = []
    for split, s in data["splits"].items():
        q = s["length_percentiles"]
        rows.append([split, str(s["n"]), f"{s['positive_share']:.1%}", f"{q['p50']:.0f} / {q['p90']:.0f} / "
                     f"{q['p99']:.0f} / {q['max']:.0f}", f"{s['truncated_share']:.1%}"])
    lines = [f"Source: `{data['source']}`; max_length {data['max_length']} tokens.", "",
             _md_table(["Split", "Examples", "Positive share", "Tokens p50 / p90 / p99 / max", "Truncated"], rows), ""]
    o = data["overlap"]
    lines.append(f"Duplicate texts within train / validation / test: {o['duplicates_in_train']} / "
                 f"{o['duplicates_in_validation']} / {o['duplicates_in_test']} "
                 f"({o['duplicates_with_clashing_labels']} with clashing labels). Texts shared by train and "
                 f"validation: {o['shared_train_validation']}; train and test: {o['shared_train_test']}; "
                 f"validation and test: {o['shared_validation_test']}"
                 + (" (set data.drop_duplicates: true to drop them)." if not data.get("drop_duplicates") else "."))
    lines += [f"- {n}" for n in data.get("notes", [])]
    return lines


# ---------------------------------------------------------------- the whole report

def print_table(result: dict, summary: dict, console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 150)
    table = Table(title=f"distill-lora comparison: {_seeds_text(result)}", caption=LORA_NOTE)
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "Model Type" else "right")
    for row in assignment_rows(result, summary):
        table.add_row(*row)
    console.print(table)


def build_markdown(result: dict, summary: dict, pairs: list[dict], data: dict, run_info: dict, alpha: float,
                   plots: list[str]) -> str:
    one = len(result["seeds"]) == 1
    majority_f1 = result["majority_baseline"]["test"]["macro_f1"]
    device = measured_on(summary, run_info["device"])
    md = ["# distill-lora: distillation vs LoRA", "",
          f"Device{'s' if '; ' in device else ''}: {device}. Numbers: {_seeds_text(result)}.", "",
          _md_table(list(COLUMNS), assignment_rows(result, summary)), "",
          f"- {LOSS_NOTE}", f"- {TEST_NOTE}", f"- {LORA_NOTE}"]
    if any(s.get("quantized_from") for s in summary.values()):
        md.append(f"- {INT8_NOTE}")
    md += ["", "## Full results (test split)", "",
           "Accuracy and macro-F1: mean over seeds with a 95% percentile bootstrap CI over test examples "
           f"({summary[next(iter(summary))]['ci']['accuracy']['n_resamples']} resamples, fixed seed; the same "
           "resampled examples for every seed). Other columns: " + ("value of the one seed." if one else
                                                                   "mean ± sample std over seeds."), "",
           _md_table(*full_rows(summary, one)), "", "Per class (mean over seeds):", "",
           _md_table(*per_class_rows(result)), "",
           "## Costs", "",
           f"Measured on {device}. Peak memory: {next(iter(summary.values()))['peak_memory_kind']}. "
           "Latency and throughput: validation inputs, after the stage trained.", "",
           _md_table(*cost_rows(summary, one)), "", f"- {LORA_NOTE}", ""]
    if int8_comparisons(summary, pairs):
        cpu = next(s.get("device") for s in summary.values() if s.get("quantized_from")) or "CPU"
        md += ["## int8 dynamic quantisation", "", INT8_NOTE + " Sizes count the tensors of each model (fp32: 4 bytes "
               "per value). Latency and throughput: the int8 model and its fp32 source timed one after the other on "
               f"the same CPU ({cpu}), on validation inputs; single timings on a machine that may be busy, so treat "
               "ratios near 1 as no difference. The verdict is the pair's McNemar verdict below.", "",
               _md_table(*int8_rows(summary, pairs)), ""]
    md += ["## Are the differences real?", "",
           f"Exact McNemar test on paired test predictions for every pair, per seed (alpha = {alpha}). A pair is "
           "called *significant* only when every seed gives p < alpha and the same model wins on both macro-F1 "
           "and accuracy in every seed; *within noise* when no seed does; *mixed* otherwise. The paired t-test "
           "over seeds of macro-F1 is shown as well (it has little power with few seeds).", "",
           _md_table(*pair_rows(pairs, alpha)), "",
           "## Data", ""] + data_section(data) + ["", "## Plots", ""]
    titles = {"loss_curves.png": "Training and validation loss per epoch",
              "metric_bars.png": "Test metrics with 95% CIs", "confusion_matrices.png": "Confusion matrices",
              "reliability.png": "Reliability diagram", "cost_vs_quality.png": "Cost vs quality"}
    for name in plots:
        md += [f"![{titles.get(name, name)}](plots/{name})", ""]
    md += ["## Analysis", ""] + analysis_lines(result, summary, pairs, majority_f1) + [""]
    return "\n".join(md)


def out_of_domain_section(name: str, ood: dict, in_domain: dict, resamples: int, boot_seed: int,
                          alpha: float) -> str:
    """Every model of the run on another data set: same metrics, CIs and tests, and the drop from in-domain."""
    result = add_ensembles(ood["comparison"])
    summary = summarise(result, resamples, boot_seed)
    one = len(result["seeds"]) == 1
    drop = [[stage, f"{in_domain[stage]['macro_f1']['mean']:.4f}", f"{s['macro_f1']['mean']:.4f}",
             f"{s['macro_f1']['mean'] - in_domain[stage]['macro_f1']['mean']:+.4f}"]
            for stage, s in summary.items() if stage in in_domain]
    lines = [f"## Out-of-domain: {name}", "",
             f"Every model of this run on `{ood['source']}` ({ood['split']} split, {ood['n']} examples, "
             f"{ood['positive_share']:.1%} positive), evaluated once; nothing was tuned on it.", "",
             _md_table(*full_rows(summary, one)), "",
             _md_table(["Model", "Macro-F1 in domain", f"Macro-F1 on {name}", "Change"], drop), "",
             _md_table(*pair_rows(compare_pairs(result, alpha), alpha)), ""]
    return "\n".join(lines)


def results_csv(result: dict) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    keys = ["accuracy", "macro_f1", "f1_positive", "roc_auc", "pr_auc", "ece"]
    writer.writerow(["seed", "stage", "model_type", "layers", "trainable_params", "total_params", "train_loss",
                     "train_total_loss", *[f"test_{k}" for k in keys], "selected_epoch", "wall_time_s",
                     "samples_per_s", "peak_memory_bytes", "latency_ms_batch1", "throughput_batch64"])
    for seed in result["seeds"]:
        for stage, m in result["per_seed"][str(seed)].items():
            inf = m.get("inference", {})
            writer.writerow([seed, stage, m["model_type"], m["depth"], m["trainable_params"], m["total_params"],
                             m["train_loss"], m["train_total_loss"], *[m["test"].get(k) for k in keys],
                             m["selected_epoch"], m["wall_time_s"], m["samples_per_s"], m.get("peak_memory_bytes"),
                             inf.get("latency_ms_batch1"), inf.get("throughput_batch64")])
    return buf.getvalue()


def write_report(output_dir: Path, results: dict, resamples: int = 1000, boot_seed: int = 0,
                 alpha: float = 0.05) -> tuple[Path, dict]:
    """report.md, results.csv and plots/ from a results.json-shaped dict; returns (report path, summary)."""
    output_dir = Path(output_dir)
    result = add_ensembles(results["comparison"])
    summary = summarise(result, resamples, boot_seed)
    pairs = compare_pairs(result, alpha)
    tmp = make_temp_dir(".plots.tmp-", output_dir)
    try:
        plots = draw_all(result, summary, tmp)
        final = output_dir / "plots"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    md = build_markdown(result, summary, pairs, results["data"], results["run"], alpha, plots)
    for name, ood in results.get("out_of_domain", {}).items():
        md += "\n" + out_of_domain_section(name, ood, summary, resamples, boot_seed, alpha)
    atomic_write_text(output_dir / "report.md", md)
    atomic_write_text(output_dir / "results.csv", results_csv(result))
    atomic_write_json(output_dir / "analysis.json", {"summary": summary, "pairs": pairs})
    return output_dir / "report.md", summary
