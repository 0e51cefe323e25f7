"""PNG figures for the report, drawn headless with matplotlib. Each function returns the file name."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from distill_lora.metrics import recorded_probabilities, reliability_bins  # noqa: E402
from distill_lora.report.summary import joint_speed, runs_of, stage_ids  # noqa: E402


def _grid(n: int, sharey: bool = False, sharex: bool = False):
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharey=sharey, sharex=sharex)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _save(fig, folder: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return name


def loss_curves(result: dict, folder: Path) -> str:
    """Per trained model: training CE and validation loss per epoch, one line per seed; a dotted line marks the
    epoch validation selected. Every panel plots cross-entropy, so they share one y-scale."""
    stages = [s for s in stage_ids(result) if runs_of(result, s)[0]["validation_history"]]
    fig, axes = _grid(len(stages), sharey=True)
    for ax, stage in zip(axes, stages):
        for seed, r in zip(result["seeds"], runs_of(result, stage)):
            first = seed == result["seeds"][0]
            epochs = [h["epoch"] for h in r["validation_history"]]
            ax.plot(
                epochs,
                [h["train_loss"] for h in r["validation_history"]],
                "o-",
                color="tab:blue",
                alpha=0.8,
                label="train CE" if first else None,
            )
            ax.plot(
                epochs,
                [h["val_loss"] for h in r["validation_history"]],
                "s--",
                color="tab:orange",
                alpha=0.8,
                label="validation loss" if first else None,
            )
            ax.axvline(r["selected_epoch"], color="grey", linestyle=":", label="selected epoch" if first else None)
        ax.set_title(stage, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("cross-entropy")
        ax.set_xticks(epochs)
        ax.legend(fontsize=7)
    return _save(fig, folder, "loss_curves.png")


def metric_bars(summary: dict, folder: Path, majority: dict | None = None) -> str:
    """Accuracy and macro-F1 per model with 95% CI whiskers; the y-axis starts just below the lowest value
    (differences of a few points must be visible), dashed lines mark the majority-class baseline, and the
    legend sits under the axes so it covers no bar."""
    stages = list(summary)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(stages)), 4.8))
    x = np.arange(len(stages))
    lows = []
    for offset, metric, color in ((-0.2, "accuracy", "tab:blue"), (0.2, "macro_f1", "tab:green")):
        points = [summary[s]["ci"][metric]["point"] for s in stages]
        # no whisker where the interval could not be computed (every resample scored the same)
        low = [summary[s]["ci"][metric]["low"] for s in stages]
        high = [summary[s]["ci"][metric]["high"] for s in stages]
        low = [p if v is None else v for p, v in zip(points, low)]
        high = [p if v is None else v for p, v in zip(points, high)]
        lows += low
        ax.bar(
            x + offset,
            points,
            0.4,
            yerr=[np.subtract(points, low), np.subtract(high, points)],
            capsize=3,
            color=color,
            label=metric.replace("_", "-"),
        )
        if majority:
            ax.axhline(
                majority[metric],
                color=color,
                linestyle="--",
                linewidth=1,
                label=f"majority class: {metric.replace('_', '-')} {majority[metric]:.3f}",
            )
            lows.append(majority[metric])
    bottom = max(0.0, math.floor((min(lows) - 0.05) * 20) / 20)
    ax.set_ylim(bottom, 1.02)  # a bar at 1.0 stays visible as a full bar
    ax.set_xticks(x, stages, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"test score (y from {bottom:.2f})")
    ax.set_title("Test accuracy and macro-F1 with 95% CIs")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=2, fontsize=8, frameon=False)
    return _save(fig, folder, "metric_bars.png")


def _wrapped(name: str, width: int = 12) -> str:
    """A class name on lines of about `width` characters: long names must not run into the next tick label."""
    return textwrap.fill(name, width) or name


def confusion_matrices(result: dict, folder: Path) -> str:
    """Test confusion matrix of each model (first seed): counts, rows = true class, columns = predicted. With more
    than two classes the panels grow with the classes and the class names wrap."""
    stages = stage_ids(result)
    names = result["label_names"]
    k = len(names)
    if k == 2:  # binary figures as they always were
        fig, axes = _grid(len(stages))
        ticks = names
    else:
        cols = min(3, len(stages))
        rows, side = math.ceil(len(stages) / cols), max(4.2, k + 2.2)
        fig, grid = plt.subplots(rows, cols, figsize=(side * cols, side * rows), squeeze=False)
        for ax in grid.flat[len(stages) :]:
            ax.axis("off")
        axes, ticks = grid.flat, [_wrapped(n) for n in names]
    for ax, stage in zip(axes, stages):
        cm = np.asarray(runs_of(result, stage)[0]["test"]["confusion_matrix"])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="black" if v < cm.max() / 2 else "white")
        ax.set_xticks(range(k), ticks, fontsize=8)
        ax.set_yticks(range(k), ticks, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{stage} (seed {result['seeds'][0]})", fontsize=10)
    return _save(fig, folder, "confusion_matrices.png")


def reliability(result: dict, folder: Path) -> str:
    """Reliability diagram, one small panel per model (all seeds pooled): accuracy against confidence per bin,
    each point labelled with its number of test predictions (a bin of 3 says little)."""
    stages = stage_ids(result)
    labels = np.asarray(result["test_labels"])
    lowest = 1 / len(result["label_names"])  # the top class's probability is never below 1/C
    fig, axes = _grid(len(stages), sharey=True, sharex=True)
    for ax, stage in zip(axes, stages):
        runs = runs_of(result, stage)
        probs = np.concatenate([recorded_probabilities(r["predictions"]) for r in runs])
        bins = reliability_bins(np.tile(labels, len(runs)), probs)
        ax.plot([lowest, 1], [lowest, 1], ":", color="grey")
        ax.plot(bins["confidence"], bins["accuracy"], "o-", color="tab:blue")
        for x, y, n in zip(bins["confidence"], bins["accuracy"], bins["count"]):
            ax.annotate(str(n), (x, y), fontsize=7, xytext=(0, -10), textcoords="offset points", ha="center")
        ax.set_title(stage, fontsize=9)
        ax.set_xlim(lowest - 0.05, 1.02)
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlabel("confidence", fontsize=8)
        ax.tick_params(labelbottom=True)  # shared x: the last row may be short, so every panel keeps its ticks
        ax.set_ylabel("accuracy", fontsize=8)
    fig.suptitle("Reliability (test; dotted = perfect calibration; numbers = predictions per bin)", fontsize=10)
    return _save(fig, folder, "reliability.png")


def latency_ms(result: dict, summary: dict, timings: dict | None, stage: str) -> float | None:
    """Latency at batch 1 of one row: the joint timing (an ensemble: the sum of its members'), else the
    stage's own timing after training, else None."""
    joint = joint_speed(result, timings, stage)
    if joint is not None:
        return joint["latency_ms_batch1"]
    return (summary[stage].get("latency_ms_batch1") or {}).get("mean")


def cost_vs_quality(result: dict, summary: dict, folder: Path, timings: dict | None = None) -> str:
    """Macro-F1 against training time and against latency at batch 1 (one latency axis: int8 rows are on the
    CPU, which the legend says). No text on the points: each model has its own marker and colour, named in the
    legend outside the axes, so no label can overlap another."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    markers = "osD^v<>pPX*h"
    timed = False
    for i, stage in enumerate(summary):
        s = summary[stage]
        seconds = None if s.get("quantized_from") else s.get("wall_time_with_teacher_s", s["wall_time_s"])["mean"]
        latency = latency_ms(result, summary, timings, stage)
        timed = timed or bool(latency)
        style = {"marker": markers[i % len(markers)], "color": f"C{i % 10}", "s": 45}
        where = " (CPU)" if s.get("quantized_from") else ""
        right.scatter(
            [latency] if latency else [],
            [s["macro_f1"]["mean"]] if latency else [],
            label=f"{stage} ({s['depth']}L){where}",
            **style,
        )
        if seconds:
            left.scatter(seconds, s["macro_f1"]["mean"], **style)
    left.set_xlabel("training time, s (students: with their teacher's training; int8: none)")
    if timed:  # a run made with report.measure_speed: false has no latency to put on a log axis
        right.set_xlabel("latency at batch 1, ms per example (log)")
        right.set_xscale("log")
        right.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        right.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())  # 20, not 2×10¹
        right.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    else:
        right.set_xlabel("latency at batch 1: not measured in this run")
    left.set_ylabel("test macro-F1")
    fig.legend(
        *right.get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False
    )
    fig.suptitle("Cost vs quality (L = layers run at inference)")
    fig.tight_layout()
    fig.savefig(folder / "cost_vs_quality.png", dpi=110, bbox_inches="tight")  # the legend sits outside the axes
    plt.close(fig)
    return "cost_vs_quality.png"


FRONT = "atlas_front.png"


def atlas_front(table: dict | None, folder: Path) -> list[str]:
    """The atlas's models on validation macro-F1 (mean ± sd over seeds) against the cost axis of report/atlas.py;
    the front's models filled and joined by the staircase no other model gets above. [] when the run is no atlas."""
    if table is None:
        return []
    rows, front = table["rows"], table["front"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    markers = "osD^v<>pPX*h"
    for i, r in enumerate(rows):
        on = r["stage"] in front
        ax.errorbar(
            r["cost"],
            r["val_macro_f1"],
            yerr=r["val_sd"] or 0,
            fmt=markers[i % len(markers)],
            color=f"C{i % 10}",
            mfc=f"C{i % 10}" if on else "white",
            ms=7,
            capsize=2,
            label=f"{r['stage']}" + (" (front)" if on else ""),
        )
    points = sorted((r["cost"], r["val_macro_f1"]) for r in rows if r["stage"] in front)
    ax.step([c for c, _ in points], [q for _, q in points], where="post", color="0.4", lw=1, ls="--", zorder=0)
    costs = [r["cost"] for r in rows]
    if table["timed"] and max(costs) >= 5 * min(costs):  # a log axis only where it spreads the points
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(table["cost"] + (" (log)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("validation macro-F1 (mean ± sd over seeds)")
    ax.set_title("Atlas: the front of quality vs cost (filled: on the front; chosen on validation)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.savefig(folder / FRONT, dpi=110, bbox_inches="tight")  # the legend sits outside the axes
    plt.close(fig)
    return [FRONT]


def draw_all(result: dict, summary: dict, folder: Path, timings: dict | None = None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        loss_curves(result, folder),
        metric_bars(summary, folder, result["majority_baseline"]["test"]),
        confusion_matrices(result, folder),
        reliability(result, folder),
        cost_vs_quality(result, summary, folder, timings),
    ]
