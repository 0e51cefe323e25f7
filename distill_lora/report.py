"""The comparison: the assignment's table (terminal and markdown), results.json and results.csv."""
from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .runs import atomic_write_json, atomic_write_text

COLUMNS = ("Model Type", "Layers", "Trainable / total params", "Training Loss",
           "Test Set Performance: Accuracy", "Test Set Performance: Macro-F1")

LORA_NOTE = ("LoRA makes training cheap, not the model smaller: a LoRA model has the depth and inference cost "
             "of the model it adapts (see Layers).")
LOSS_NOTE = ("Training Loss = mean cross-entropy with the true labels over the training batches of the selected "
             "epoch (train mode, dropout on); for distilled students the total distillation loss "
             "(w_ce·CE + w_kl·T²·KL + w_cos·cosine) follows in brackets.")
TEST_NOTE = ("Test Set Performance: each model was evaluated once on the test split, after its epoch was "
             "selected on validation; the test split chose nothing.")


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def _mean_std(values: list[float], digits: int = 4) -> str:
    """'0.8123' for one seed, '0.8123 ± 0.0051' (sample std) for several."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table_rows(result: dict) -> list[dict]:
    """One row per model (mean ± std over seeds), in pipeline order, then the majority-class baseline."""
    per_seed = [result["per_seed"][str(s)] for s in result["seeds"]]
    rows = []
    for stage_id, first in per_seed[0].items():
        ms = [stages[stage_id] for stages in per_seed if stage_id in stages]
        loss = _mean_std([m["train_loss"] for m in ms])
        if "teacher_layers" in first and stage_id.startswith("student-"):
            loss += f" ({_mean_std([m['train_total_loss'] for m in ms])})"
        rows.append({"stage": stage_id, "model_type": first["model_type"], "layers": str(first["depth"]),
                     "params": f"{_millions(first['trainable_params'])} / {_millions(first['total_params'])}",
                     "training_loss": loss,
                     "accuracy": _mean_std([m["test"]["accuracy"] for m in ms]),
                     "macro_f1": _mean_std([m["test"]["macro_f1"] for m in ms])})
    base = result["majority_baseline"]["test"]
    rows.append({"stage": "majority", "model_type": "Majority class (baseline)", "layers": "–", "params": "–",
                 "training_loss": "–", "accuracy": f"{base['accuracy']:.4f}", "macro_f1": f"{base['macro_f1']:.4f}"})
    return rows


def _cells(row: dict) -> list[str]:
    return [row["model_type"], row["layers"], row["params"], row["training_loss"], row["accuracy"], row["macro_f1"]]


def _seeds_text(result: dict) -> str:
    seeds = result["seeds"]
    if len(seeds) == 1:
        return f"seed {seeds[0]} (one seed: differences of about one point or less are within seed-to-seed noise)"
    return f"mean ± sample std over {len(seeds)} seeds ({', '.join(map(str, seeds))})"


def print_table(result: dict, console: Console | None = None) -> None:
    import sys
    console = console or Console(width=None if sys.stdout.isatty() else 150)
    table = Table(title=f"distill-lora comparison: {_seeds_text(result)}", caption=LORA_NOTE)
    for col in COLUMNS:
        table.add_column(col, justify="left" if col == "Model Type" else "right")
    for row in table_rows(result):
        table.add_row(*_cells(row))
    console.print(table)


def markdown_table(result: dict) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in table_rows(result)]
    return "\n".join(lines)


def _data_section(data_summary: dict) -> str:
    lines = ["| Split | Examples | Positive share | Truncated at max_length |", "|---|---:|---:|---:|"]
    for split, s in data_summary["splits"].items():
        lines.append(f"| {split} | {s['n']} | {s['positive_share']:.1%} | {s['truncated_share']:.1%} |")
    notes = "".join(f"\n- {n}" for n in data_summary.get("notes", []))
    return "\n".join(lines) + ("\n" + notes if notes else "")


def write_outputs(output_dir: Path, result: dict, data_summary: dict, run_info: dict, all_stages: dict) -> Path:
    """report.md, results.json and results.csv in the run folder; returns the report's path.

    all_stages: every finished stage under the run folder, by seed (also those compare did not ask for).
    """
    output_dir = Path(output_dir)
    md = [
        "# distill-lora: distillation vs LoRA",
        "",
        f"Data: `{data_summary['source']}`. Device: {run_info['device']}. Numbers: {_seeds_text(result)}.",
        "",
        markdown_table(result),
        "",
        f"- {LOSS_NOTE}",
        f"- {TEST_NOTE}",
        f"- {LORA_NOTE}",
        "",
        "## Data",
        "",
        _data_section(data_summary),
        "",
    ]
    report = output_dir / "report.md"
    atomic_write_text(report, "\n".join(md))
    atomic_write_json(output_dir / "results.json", {"comparison": result, "all_stages": all_stages,
                                                    "data": data_summary, "run": run_info})
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["seed", "stage", "model_type", "layers", "trainable_params", "total_params", "train_loss",
                     "train_total_loss", "test_accuracy", "test_macro_f1", "test_f1_positive", "selected_epoch",
                     "wall_time_s", "samples_per_s"])
    for seed in result["seeds"]:
        for stage_id, m in result["per_seed"][str(seed)].items():
            writer.writerow([seed, stage_id, m["model_type"], m["depth"], m["trainable_params"],
                             m["total_params"], m["train_loss"], m["train_total_loss"], m["test"]["accuracy"],
                             m["test"]["macro_f1"], m["test"]["f1_positive"], m["selected_epoch"], m["wall_time_s"],
                             m["samples_per_s"]])
    atomic_write_text(output_dir / "results.csv", buf.getvalue())
    return report
