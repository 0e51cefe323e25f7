"""The report's tables and their cells: the assignment's table, setup, full results, per class, costs, int8, pairs,
data. Pure functions of the comparison dict (results.json)."""

from __future__ import annotations

from distill_lora.report.format import ci_text, md_table, mean_std, mib, millions, result_digits, spread_text
from distill_lora.report.summary import int8_comparisons, joint_speed, n_classes, runs_of, stage_ids
from distill_lora.stage_ids import TEACHER, is_lora, is_student, kind_of

COLUMNS = ("Model Type", "Training Loss", "Test Set Performance")  # the assignment's table, as the course asks

LAYERS_NOTE = (
    "Layers = the encoder layers a model runs at inference; a LoRA model runs every layer of the model "
    "it adapts, and its adapters add to it."
)
LOSS_NOTE = (
    "Training Loss = mean cross-entropy with the true labels over the training batches of the selected "
    "epoch (train mode, dropout on), the same quantity for every model; a distilled student's total "
    "distillation loss is in the setup table."
)
INT8_NOTE = (
    "int8 rows: the fp32 model above with post-training dynamic quantisation (torch): nn.Linear weights "
    "in int8, activations quantised per input at run time, tested on the CPU one text at a time (no "
    "prediction depends on its batch mates); nothing was trained. Size = int8 "
    "weights + their scales + the fp32 rest (embeddings, LayerNorm, biases); the int8 weights are not saved "
    "(rebuilt exactly from the fp32 stage folder)."
)
TEST_NOTE = (
    "Test Set Performance = accuracy / macro-F1 on the test split; each model was evaluated once on it, "
    "after its epoch was selected on validation; the test split chose nothing. A trained model's validation and "
    "test passes run in fp32, whatever precision it trained in (the setup table's Precision)."
)
ENSEMBLE_NOTE = (
    "Ensemble rows were not trained or timed: their parameters, training time and latency are sums "
    "of their members' (they run every member), not measurements; their peak memory was not measured."
)
DEMO_SOURCE = "package:distill_lora/demo_data"
EXAMPLE_CHARS = 160  # a misclassified text is cut here: enough to recognise it, short enough to scan


def seeds_text(result: dict) -> str:
    seeds = result["seeds"]
    if len(seeds) == 1:
        return f"one training seed ({seeds[0]}): how much the numbers move between seeds was not measured"
    return f"mean ± sample std over {len(seeds)} seeds ({', '.join(map(str, seeds))})"


def derived_from(result: dict, stage: str) -> str | None:
    """'int8' or 'ensemble' for rows that were not trained (made from trained models), else None."""
    run = runs_of(result, stage)[0]
    if run.get("quantized_from"):
        return "int8"
    if run.get("ensemble_of"):
        return "ensemble"
    return None


def trained_stages(result: dict) -> list[str]:
    return [st for st in stage_ids(result) if derived_from(result, st) is None]


def balance_text(split: dict) -> str:
    """A split's class balance: 'x% positive' when binary (as binary reports always said), else every class's
    share in label order ('hate speech 5.7%, offensive language 77.4%, neither 16.9%')."""
    if "positive_share" in split:
        return f"{split['positive_share']:.1%} positive"
    return ", ".join(f"{name} {share:.1%}" for name, share in split["class_shares"].items())


AUC_NOTE = (
    "ROC-AUC and PR-AUC with more than two classes: one-vs-rest per class (its probability against all the "
    "others), macro-averaged over the classes; there is no positive class, so no F1-positive column."
)


# ---------------------------------------------------------------- tables


def assignment_rows(result: dict, summary: dict) -> list[list[str]]:
    """The assignment's table: one row per trained model; accuracy / macro-F1 in one cell."""
    one, d = len(result["seeds"]) == 1, result_digits(result)
    return [
        [
            summary[st]["model_type"],
            mean_std(summary[st]["train_loss"], d, one),
            f"{mean_std(summary[st]['accuracy'], d, one)} / {mean_std(summary[st]['macro_f1'], d, one)}",
        ]
        for st in trained_stages(result)
    ]


def ci_methods(summary: dict) -> str:
    """The CI methods used, as the summary names them (percentile bootstrap when unnamed)."""
    methods = {}
    for s in summary.values():
        for metric in ("accuracy", "macro_f1"):
            methods.setdefault(s["ci"][metric].get("method", "percentile bootstrap"), []).append(metric)
    return "; ".join(sorted(methods))


def _selected(run: dict) -> dict | None:
    """The validation record of the selected epoch (None for rows that were not trained)."""
    if not run.get("selected_epoch") or not run.get("validation_history"):
        return None
    return run["validation_history"][run["selected_epoch"] - 1]


def validation_cell(result: dict, stage: str, d: int) -> str:
    """'acc / macro-F1' on validation at the selected epoch, mean over seeds; '–' for untrained rows."""
    picked = [_selected(r) for r in runs_of(result, stage)]
    if None in picked:
        return "–"
    acc = sum(p["val_accuracy"] for p in picked) / len(picked)
    f1 = sum(p["val_macro_f1"] for p in picked) / len(picked)
    return f"{acc:.{d}f} / {f1:.{d}f}"


def full_rows(result: dict, summary: dict) -> tuple[list[str], list[list[str]]]:
    """Every model's test metrics; "F1 positive" only when binary (with more classes the AUCs are one-vs-rest
    macro averages, which the header says)."""
    one, d, binary = len(result["seeds"]) == 1, result_digits(result), n_classes(result) == 2
    auc = ["ROC-AUC", "PR-AUC"] if binary else ["ROC-AUC (one-vs-rest, macro)", "PR-AUC (one-vs-rest, macro)"]
    header = [
        "Model",
        "Layers",
        "Validation acc / macro-F1 (selected epoch)",
        "Accuracy [95% CI]",
        "Macro-F1 [95% CI]",
        *(["F1 positive"] if binary else []),
        *auc,
        "ECE",
    ]
    tuned = any("at_threshold" in s for s in summary.values())
    if tuned:  # per row: a row without its own threshold (every ensemble) shows "–"
        header += ["Threshold (validation)", "Macro-F1 at threshold"]
    rows = []
    for stage, s in summary.items():
        row = [
            stage,
            str(s["depth"]),
            validation_cell(result, stage, d),
            ci_text(s, "accuracy", d),
            ci_text(s, "macro_f1", d),
            *([mean_std(s["f1_positive"], d, one)] if binary else []),
            mean_std(s["roc_auc"], d, one),
            mean_std(s["pr_auc"], d, one),
            mean_std(s["ece"], d, one),
        ]
        if tuned:
            row += [
                mean_std(s.get("threshold"), 3, one),
                mean_std(s["at_threshold"]["macro_f1"], d, one) if "at_threshold" in s else "–",
            ]
        rows.append(row)
    return header, rows


def _starting_weights(result: dict, stage: str) -> str:
    run = runs_of(result, stage)[0]
    layers = run.get("teacher_layers")
    cut = f"layers {{{','.join(map(str, layers))}}}" if layers else f"all {run['depth']} layers"
    if is_student(stage):
        return f"fine-tuned teacher, {cut}"
    if is_lora(stage):
        return f"pretrained, {cut}, + LoRA adapters and a new head"
    return f"pretrained, {cut}, + a new head"


def _loss_text(stage: str, run: dict) -> str:
    w = run.get("loss_weights")
    if w is None:
        if is_student(stage):  # a run from before metrics.json recorded the weights
            return "w_ce·CE + w_kl·T²·KL + w_cos·cos (distillation)"
        return "CE"
    text = f"{w['w_ce']:.2g}·CE + {w['w_kl']:.2g}·T²·KL + {w['w_cos']:.2g}·cos (T = {w['temperature']:g})"
    return text + (f" + {w['w_hidden']:.2g}·hidden cos" if w.get("w_hidden") else "")


def derived_note(summary: dict) -> list[str]:
    """What the rows marked – are, naming only the kinds this run has (no line when it has none)."""
    kinds = []
    if any(s.get("quantized_from") for s in summary.values()):
        kinds.append("int8 rows quantise a trained model")
    if any(kind_of(stage).kind == "ensemble" for stage in summary):
        kinds.append("ensembles average trained models")
    return [f"- Rows marked – were not trained: {'; '.join(kinds)}."] if kinds else []


PRECISION = {"no": "fp32", "bf16": "bf16 mixed", "fp16": "fp16 mixed"}  # accelerate's names → the reader's


def setup_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """How each model was made: weights it started from, loss, what was trained, and how."""
    header = [
        "Model",
        "Starting weights",
        "Loss",
        "Trainable params",
        "Epochs run / selected",
        "Learning rate",
        "Batch size",
        "Precision",
        "Training loss, total (selected epoch)",
    ]
    rows, d = [], result_digits(result)
    for stage in stage_ids(result):
        run, kind = runs_of(result, stage)[0], derived_from(result, stage)
        if kind == "int8":
            rows.append(
                [
                    stage,
                    f"{run['quantized_from']}, weights quantised to int8",
                    "– (not trained)",
                    "–",
                    "–",
                    "–",
                    "–",
                    run.get("precision", "int8 weights"),
                    "–",
                ]
            )
            continue
        if kind == "ensemble":
            rows.append(
                [
                    stage,
                    "mean probability of " + ", ".join(run["ensemble_of"]),
                    "– (not trained)",
                    "–",
                    "–",
                    "–",
                    "–",
                    "–",
                    "–",
                ]
            )
            continue
        t = run.get("train_settings", {})
        total = mean_std(_mean_of(result, stage, "train_total_loss"), d, True) if is_student(stage) else "–"
        rows.append(
            [
                stage,
                _starting_weights(result, stage),
                _loss_text(stage, run),
                millions(run["trainable_params"]),
                f"{len(run['validation_history'])}"
                + (f" of {t['epochs']}" if "epochs" in t else "")
                + f" / {run['selected_epoch']}",
                f"{t['lr']:g}" if "lr" in t else "–",
                str(t.get("batch_size", "–")),
                PRECISION.get(run.get("precision"), str(run.get("precision", "–"))),
                total,
            ]
        )
    return header, rows


def _mean_of(result: dict, stage: str, key: str) -> dict:
    values = [r[key] for r in runs_of(result, stage) if r.get(key) is not None]
    return {"mean": sum(values) / len(values) if values else None, "std": 0.0}


def per_class_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Per class, mean over seeds, for every model (int8 rows and ensembles included). Binary: precision and recall
    of both classes on one row per model, as binary reports always had; more classes: per_class_long_rows."""
    if n_classes(result) != 2:
        return per_class_long_rows(result)
    names = result["label_names"]
    header = ["Model"] + [f"{n}: {k}" for n in names for k in ("precision", "recall")]
    rows = []
    for stage in stage_ids(result):
        runs = runs_of(result, stage)
        row = [stage]
        for n in names:
            for k in ("precision", "recall"):
                vals = [r["test"]["per_class"][n][k] for r in runs]
                row.append(f"{sum(vals) / len(vals):.{result_digits(result)}f}")
        rows.append(row)
    return header, rows


def class_means(result: dict, stage: str) -> dict:
    """{class: {precision, recall, f1, support}} of one model, each the mean over seeds of its test metrics."""
    runs = runs_of(result, stage)
    return {
        name: {
            k: sum(r["test"]["per_class"][name][k] for r in runs) / len(runs)
            for k in ("precision", "recall", "f1", "support")
        }
        for name in result["label_names"]
    }


def per_class_long_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """One row per class and model, grouped by class so the models sit under each other: precision, recall, F1
    (mean over seeds), the class's test support, and the recall change against the teacher."""
    d, stages = result_digits(result), stage_ids(result)
    means = {st: class_means(result, st) for st in stages}
    header = ["Class", "Test texts", "Model", "Precision", "Recall", "F1", "Recall − teacher's"]
    rows = []
    for name in result["label_names"]:
        for st in stages:
            m = means[st][name]
            change = (
                "–"
                if st == TEACHER or TEACHER not in means
                else f"{m['recall'] - means[TEACHER][name]['recall']:+.{d}f}"
            )
            rows.append(
                [
                    name,
                    f"{m['support']:.0f}",
                    st,
                    f"{m['precision']:.{d}f}",
                    f"{m['recall']:.{d}f}",
                    f"{m['f1']:.{d}f}",
                    change,
                ]
            )
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


def timed_speed(result: dict, summary: dict, timings: dict | None, stage: str) -> tuple[str, str]:
    """(latency, throughput) cells: the joint timing at the end of the run (median [min–max] of its repeats)
    when there is one; an ensemble's is the sum over its members; else the stage's own timing after training."""
    joint = joint_speed(result, timings, stage)
    if joint is not None and joint["timed"] is not None:
        t = joint["timed"]
        return spread_text(t["latency_ms_batch1"], 2), spread_text(t["throughput_batch64"], 1)
    if joint is not None:  # an ensemble: the sum over its members
        return f"{joint['latency_ms_batch1']:.2f} (sum)", f"{joint['throughput_batch64']:.1f} (sum)"
    s, one = summary[stage], len(result["seeds"]) == 1
    if "latency_ms_batch1" not in s:
        return "–", "–"
    return mean_std(s["latency_ms_batch1"], 2, one), mean_std(s["throughput_batch64"], 1, one)


def teacher_pass_cell(result: dict, stage: str) -> str:
    """The teacher-logit pass a distilled student needed (its own cost, apart from the student's training)."""
    t = runs_of(result, stage)[0].get("teacher_targets")
    if not t:
        return "–"
    if t.get("reused"):
        return "reused (cached)"
    return f"{t['time_s']:.1f} s, {mib(t.get('peak_memory_bytes'))}"


def cost_rows(result: dict, summary: dict, timings: dict | None) -> tuple[list[str], list[list[str]]]:
    one = len(result["seeds"]) == 1
    spread = " (median [min–max] of repeats)" if timings else ""
    header = [
        "Model",
        "Layers",
        "Total params",
        "Trainable params",
        "Weights on disk",
        "Training time (s)",
        "Teacher-logit pass",
        "Training samples/s",
        "Peak memory",
        f"Latency, batch 1 (ms/example){spread}",
        f"Throughput, batch 64 (examples/s){spread}",
    ]
    rows = []
    first = next(iter(summary.values()))
    for stage, s in summary.items():
        kind = derived_from(result, stage)
        time_s = mean_std(s["wall_time_s"], 1, one)
        if "wall_time_with_teacher_s" in s:
            time_s += f" (with its teacher's training {mean_std(s['wall_time_with_teacher_s'], 1, one)})"
        weights = mib(s.get("weights_bytes"))
        if is_lora(stage):
            weights += " adapter + head (base model shipped separately)"
        if kind == "int8":  # not trained: what it takes to obtain it is its source's training plus quantising
            time_s = f"– ({s['quantized_from']} + {mean_std(s['quantize_time_s'], 1, one)} s quantising)"
            weights += " int8 (not saved; rebuilt from its source)"
        elif kind == "ensemble":
            time_s += " (sum of members)"
        elif s.get("device") != first.get("device"):  # trained somewhere else
            time_s += f" on {s.get('device')}"
        # an ensemble's members ran apart: its peak memory was never measured
        memory = "–" if kind == "ensemble" else mib(s["peak_memory_bytes"])
        # int8 rows on a GPU run: CPU RSS, said in the cell
        if kind != "ensemble" and s.get("peak_memory_kind") != first.get("peak_memory_kind"):
            memory += f" ({s.get('peak_memory_kind')})"
        latency, throughput = timed_speed(result, summary, timings, stage)
        device = ((timings or {}).get("models", {}).get(stage) or {}).get("device") or s.get("device")
        if device != (timings or {}).get("device", first.get("device")) and latency != "–" and kind != "ensemble":
            latency, throughput = f"{latency} on {device}", f"{throughput} on {device}"
        trainable = "–" if kind == "int8" else millions(s["trainable_params"])
        rows.append(
            [
                stage,
                str(s["depth"]),
                millions(s["total_params"]),
                trainable,
                weights,
                time_s,
                teacher_pass_cell(result, stage),
                mean_std(s["samples_per_s"], 1, one),
                memory,
                latency,
                throughput,
            ]
        )
    return header, rows


def int8_rows(summary: dict, pairs: list[dict], d: int) -> tuple[list[str], list[list[str]]]:
    """Each int8 row beside its fp32 source: size, speed on the same CPU (int8_comparisons, from the summary that
    use_joint_timings filled), macro-F1 and the pair's verdict."""
    header = [
        "int8 model",
        "Size int8 / fp32",
        "× smaller",
        "CPU latency batch 1, int8 / fp32 (ms)",
        "× faster",
        "CPU throughput batch 64, int8 / fp32 (ex/s)",
        "× faster",
        "Macro-F1 int8 / fp32",
        "Change",
        "verdict vs fp32 (serving family)",
    ]
    rows = []
    for c in int8_comparisons(summary, pairs):
        t = c if "speedup_batch1" in c else None
        verdict = c["pair"]["verdict"]
        rows.append(
            [
                c["stage"],
                f"{mib(c['int8_bytes'])} / {mib(c['fp32_bytes'])}",
                f"{c['size_ratio']:.2f}",
                f"{t['latency_ms_int8']:.2f} / {t['latency_ms_fp32']:.2f}" if t else "–",
                f"{t['latency_ms_fp32'] / t['latency_ms_int8']:.2f}" if t else "–",
                f"{t['throughput_int8']:.1f} / {t['throughput_fp32']:.1f}" if t else "–",
                f"{t['throughput_int8'] / t['throughput_fp32']:.2f}" if t else "–",
                f"{c['macro_f1_int8']:.{d}f} / {c['macro_f1_fp32']:.{d}f}",
                f"{c['macro_f1_change']:+.{d}f}",
                verdict,
            ]
        )
    return header, rows


def _diff_cell(p: dict, metric: str, d: int) -> str:
    """A − B with its interval: the method-level one over seeds when there are several, else the bootstrap's."""
    x = (p.get("method_level") or p.get("diff") or {}).get(metric)
    if x is None:
        return f"{p['macro_f1_diff']:+.{d}f}" if metric == "macro_f1" else "–"
    return f"{x['point']:+.{d}f} [{x['low']:+.{d}f}, {x['high']:+.{d}f}]"


def _p_list(values) -> str:
    return "–" if values is None else ", ".join(f"{x:.3g}" for x in values)


def verdict_cell(p: dict) -> str:
    if p["verdict"] == "significant":
        return f"significant: {p['winner']} better"
    if p["verdict"] == "no verdict possible":
        return f"no verdict possible ({p['differing_units']} differing {p['units']})"
    return p["verdict"]


def _mdd_cell(p: dict, d: int) -> str:
    mdd = (p.get("power") or {}).get("mdd", {})
    if mdd.get("macro_f1") is None:
        return "–"
    return f"{mdd['macro_f1']:.{d}f} / {mdd['accuracy']:.{d}f}"


def pair_rows(pairs: list[dict], alpha: float, d: int = 3) -> tuple[list[str], list[list[str]]]:
    """The primary and exploratory pairs: effect sizes, the deciding test, its family's Holm-adjusted p, the
    verdict, the detectable difference; McNemar per seed as detail."""
    header = [
        "Family",
        "A",
        "B",
        "Δ macro-F1 (A − B) [95% CI]",
        "Δ accuracy (A − B) [95% CI]",
        "Decided by",
        "Differing units",
        "p (macro-F1), raw / Holm",
        "Verdict",
        "Detectable Δ macro-F1 / accuracy (80% power)",
        "Detail: McNemar p per seed (texts as independent)",
    ]
    rows = []
    for p in pairs:
        if p["family"] == "serving":
            continue
        rows.append(
            [
                p["family"],
                p["a"],
                p["b"],
                _diff_cell(p, "macro_f1", d),
                _diff_cell(p, "accuracy", d),
                BASIS[p["verdict_basis"]],
                f"{p['differing_units']} of {p['n_units']} {p['units']}",
                f"{p['p_value']:.3g} / {p['p_holm']:.3g}",
                verdict_cell(p),
                _mdd_cell(p, d),
                _p_list(p["mcnemar_p"]),
            ]
        )
    return header, rows


BASIS = {
    "permutation": "swap permutation test",
    "method_t": "method-level t over seeds",
    "noninferiority": "non-inferiority",
}


def _share_cells(data: dict) -> tuple[list[str], list]:
    """The data table's class-balance columns: "Positive share" when binary, else one share column per class."""
    first = next(iter(data["splits"].values()))
    if "positive_share" in first:
        return ["Positive share"], [lambda s: f"{s['positive_share']:.1%}"]
    names = list(first["class_shares"])
    return [f"{n} share" for n in names], [lambda s, n=n: f"{s['class_shares'][n]:.1%}" for n in names]


def data_section(data: dict) -> list[str]:
    share_header, share_cells = _share_cells(data)
    rows = []
    for split, s in data["splits"].items():
        q = s["length_percentiles"]
        rows.append(
            [
                split,
                str(s["n"]),
                *(cell(s) for cell in share_cells),
                f"{q['p50']:.0f} / {q['p90']:.0f} / {q['p99']:.0f} / {q['max']:.0f}",
                f"{s['truncated_share']:.1%}",
            ]
        )
    lines = [
        f"Source: `{data['source']}`; max_length {data['max_length']} tokens.",
        "",
        md_table(["Split", "Examples", *share_header, "Tokens p50 / p90 / p99 / max", "Truncated"], rows),
        "",
    ]
    o = data["overlap"]
    lines.append(
        f"Duplicate texts within train / validation / test: {o['duplicates_in_train']} / "
        f"{o['duplicates_in_validation']} / {o['duplicates_in_test']} "
        f"({o['duplicates_with_clashing_labels']} with clashing labels). Texts shared by train and "
        f"validation: {o['shared_train_validation']}; train and test: {o['shared_train_test']}; "
        f"validation and test: {o['shared_validation_test']}"
        + (" (set data.drop_duplicates: true to drop them)." if not data.get("drop_duplicates") else ".")
    )
    if "shared_groups_train_test" in o:  # absent in results.json without data.group_column

        def quote(group: str) -> str:  # a group id is data: one line, cut, nothing that breaks markdown
            flat = " ".join("".join(c if c.isprintable() else " " for c in str(group)).split())
            flat = flat if len(flat) <= 40 else flat[:39] + "…"
            return "'" + flat.replace("`", "'").replace("|", "\\|").replace("<", "‹") + "'"

        pairs = [("train", "validation"), ("train", "test"), ("validation", "test")]
        counts = []
        for a, b in pairs:
            n, examples = o[f"shared_groups_{a}_{b}"], o["shared_group_examples"][f"{a}_{b}"]
            counts.append(f"{a} and {b}: {n}" + (f" (e.g. {', '.join(map(quote, examples))})" if n else ""))
        line = "Groups (data.group_column) shared between " + "; ".join(counts) + "."
        if o["shared_groups_train_test"] or o["shared_groups_validation_test"]:
            line += (
                " A group in two splits leaks its near-duplicates across them: test scores are optimistic "
                "(the models saw, or were chosen on, near-copies of test texts)."
            )
        if o["shared_groups_train_validation"]:
            line += (
                " Groups shared by train and validation make model selection (epoch, threshold) optimistic: "
                "validation rewards memorised near-duplicates."
            )
        lines.append(line)
    lines += [f"- {n}" for n in data.get("notes", [])]
    return lines
