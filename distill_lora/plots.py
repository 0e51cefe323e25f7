"""PNG figures for the report, drawn headless with matplotlib. Each function returns the file name."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .analysis import runs_of, stage_ids  # noqa: E402
from .metrics import reliability_bins  # noqa: E402


def _grid(n: int):
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat


def _save(fig, folder: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return name


def loss_curves(result: dict, folder: Path) -> str:
    """Per trained model: training CE and validation loss per epoch, one line per seed."""
    stages = [s for s in stage_ids(result) if runs_of(result, s)[0]["validation_history"]]
    fig, axes = _grid(len(stages))
    for ax, stage in zip(axes, stages):
        for seed, r in zip(result["seeds"], runs_of(result, stage)):
            epochs = [h["epoch"] for h in r["validation_history"]]
            ax.plot(epochs, [h["train_loss"] for h in r["validation_history"]], "o-", color="tab:blue",
                    alpha=0.8, label="train CE" if seed == result["seeds"][0] else None)
            ax.plot(epochs, [h["val_loss"] for h in r["validation_history"]], "s--", color="tab:orange",
                    alpha=0.8, label="validation loss" if seed == result["seeds"][0] else None)
        ax.set_title(stage, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
    return _save(fig, folder, "loss_curves.png")


def metric_bars(summary: dict, folder: Path) -> str:
    """Accuracy and macro-F1 per model with 95% bootstrap CI whiskers."""
    stages = list(summary)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(stages)), 4))
    x = np.arange(len(stages))
    for offset, metric, color in ((-0.2, "accuracy", "tab:blue"), (0.2, "macro_f1", "tab:green")):
        points = [summary[s]["ci"][metric]["point"] for s in stages]
        low = [p - summary[s]["ci"][metric]["low"] for p, s in zip(points, stages)]
        high = [summary[s]["ci"][metric]["high"] - p for p, s in zip(points, stages)]
        ax.bar(x + offset, points, 0.4, yerr=[low, high], capsize=4, color=color, label=metric)
    ax.set_xticks(x, stages, rotation=20, fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test score (mean over seeds)")
    ax.set_title("Test accuracy and macro-F1 with 95% bootstrap CIs")
    ax.legend()
    return _save(fig, folder, "metric_bars.png")


def confusion_matrices(result: dict, folder: Path) -> str:
    """Test confusion matrix of each model (first seed)."""
    stages = stage_ids(result)
    names = result["label_names"]
    fig, axes = _grid(len(stages))
    for ax, stage in zip(axes, stages):
        cm = np.asarray(runs_of(result, stage)[0]["test"]["confusion_matrix"])
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            ax.text(j, i, str(v), ha="center", va="center", color="black" if v < cm.max() / 2 else "white")
        ax.set_xticks(range(len(names)), names, fontsize=8)
        ax.set_yticks(range(len(names)), names, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{stage} (seed {result['seeds'][0]})", fontsize=10)
    return _save(fig, folder, "confusion_matrices.png")


def reliability(result: dict, folder: Path) -> str:
    """Reliability diagram: accuracy against confidence, all seeds pooled."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0.5, 1], [0.5, 1], ":", color="grey", label="perfect calibration")
    labels = np.asarray(result["test_labels"])
    for stage in stage_ids(result):
        runs = runs_of(result, stage)
        probs = np.concatenate([r["predictions"]["prob_positive"] for r in runs])
        bins = reliability_bins(np.tile(labels, len(runs)), probs)
        ax.plot(bins["confidence"], bins["accuracy"], "o-", label=stage)
    ax.set_xlabel("confidence of the predicted class")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram (test)")
    ax.legend(fontsize=8)
    return _save(fig, folder, "reliability.png")


def cost_vs_quality(summary: dict, folder: Path) -> str:
    """Macro-F1 against trainable parameters and against training time. Points carry numbers and the legend
    names them: with a dozen models (students, int8 rows, ensembles) text labels on the points would overlap."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    markers = "osD^v<>pPX*h"
    for i, (stage, s) in enumerate(summary.items(), start=1):
        f1 = s["macro_f1"]["mean"]
        seconds = s.get("wall_time_with_teacher_s", s["wall_time_s"])["mean"]
        style = {"marker": markers[(i - 1) % len(markers)], "color": f"C{(i - 1) % 10}"}
        left.scatter(s["trainable_params"], f1, label=f"{i}. {stage} ({s['depth']}L)", **style)
        right.scatter(seconds, f1, **style)
        for ax, x in ((left, s["trainable_params"]), (right, seconds)):
            ax.annotate(str(i), (x, f1), fontsize=7, xytext=(3, 3), textcoords="offset points")
    left.set_xscale("log")
    left.set_xlabel("trainable parameters (log)")
    right.set_xlabel("training time, s (students: including their teacher)")
    for ax in (left, right):
        ax.set_ylabel("test macro-F1")
    fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    fig.suptitle("Cost vs quality (L = layers: the inference cost)")
    fig.tight_layout()
    fig.savefig(folder / "cost_vs_quality.png", dpi=110, bbox_inches="tight")  # the legend sits outside the axes
    plt.close(fig)
    return "cost_vs_quality.png"


def draw_all(result: dict, summary: dict, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    return [loss_curves(result, folder), metric_bars(summary, folder), confusion_matrices(result, folder),
            reliability(result, folder), cost_vs_quality(summary, folder)]
