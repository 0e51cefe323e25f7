"""What a command produced, as one JSON document for scripts (`--json`): folders, test metrics, verdicts.

Made from the files the command wrote (metrics.json of each stage; results.json and analysis.json after
compare), so it says exactly what the run folder says. docs/scripting.md shows its shape and a `jq` example.
"""

from __future__ import annotations

from pathlib import Path

from distill_lora.experiment.runs import stage_dir
from distill_lora.files import read_json, read_json_or_none

FORMAT = 1
TEST_KEYS = ("accuracy", "macro_f1", "f1_positive", "roc_auc", "pr_auc", "ece")
PAIR_KEYS = ("a", "b", "family", "verdict", "winner", "macro_f1_diff", "p_value", "p_holm", "verdict_basis")


def stage_entry(output_dir: Path, seed: int, stage: str, metrics: dict) -> dict:
    """One stage: where it is and what it scored on the test split."""
    test = metrics.get("test", {})
    return {
        "seed": seed,
        "stage": stage,
        "folder": str(stage_dir(output_dir, seed, stage).resolve()),
        "model_type": metrics.get("model_type"),
        "test": {k: test.get(k) for k in TEST_KEYS if k in test},
        "per_class": test.get("per_class"),
        "train_loss": metrics.get("train_loss"),
    }


def stages_document(command: str, output_dir: Path, records: list[dict]) -> dict:
    """After train-teacher, distill or lora: the stages the command made (or reused)."""
    output_dir = Path(output_dir)
    return {
        "format": FORMAT,
        "command": command,
        "run_dir": str(output_dir.resolve()),
        "stages": [stage_entry(output_dir, r["seed"], r["stage"], r) for r in records],
    }


def compare_document(output_dir: Path) -> dict:
    """After compare: every stage of every seed, the mean over seeds per model, and the pairwise verdicts (with
    the ONNX Runtime rows, report.onnx_runtime, and their verdicts against their PyTorch source)."""
    output_dir = Path(output_dir)
    results = read_json(output_dir / "results.json")
    analysis = read_json_or_none(output_dir / "analysis.json", {})
    onnx_rows = results["comparison"].get("onnx_runtime", {})
    stages = [
        stage_entry(output_dir, int(seed), stage, m)
        for seed, per_stage in results["comparison"]["per_seed"].items()
        for stage, m in {**per_stage, **onnx_rows.get(seed, {})}.items()
    ]
    onnx = analysis.get("onnx_runtime", {})
    means = {
        stage: {k: s[k] for k in TEST_KEYS if isinstance(s.get(k), dict)}
        for stage, s in {**analysis.get("summary", {}), **onnx.get("summary", {})}.items()
    }
    return {
        "format": FORMAT,
        "command": "compare",
        "run_dir": str(output_dir.resolve()),
        "report": str((output_dir / "report.md").resolve()),
        "label_names": results["comparison"]["label_names"],
        "seeds": results["comparison"]["seeds"],
        "stages": stages,
        "mean_over_seeds": means,
        # every tested comparison (primary, exploratory, serving), with the smallest macro-F1 difference it could detect
        "verdicts": [
            {k: p.get(k) for k in PAIR_KEYS}
            | {"detectable_macro_f1": (p.get("power") or {}).get("mdd", {}).get("macro_f1")}
            for p in analysis.get("pairs", [])
        ],
    }


def evaluate_document(run_dir: Path, name: str) -> dict:
    """After evaluate: every stage of every seed scored on the other data set, as results.json keeps it."""
    run_dir = Path(run_dir)
    ood = read_json(run_dir / "results.json")["out_of_domain"][name]
    stages = [
        {
            "seed": int(seed),
            "stage": stage,
            "test": {k: m["test"].get(k) for k in TEST_KEYS if k in m["test"]},
            "per_class": m["test"].get("per_class"),
        }
        for seed, per_stage in ood["comparison"]["per_seed"].items()
        for stage, m in per_stage.items()
    ]
    return {
        "format": FORMAT,
        "command": "evaluate",
        "run_dir": str(run_dir.resolve()),
        "report": str((run_dir / "report.md").resolve()),
        "name": name,
        "source": ood["source"],
        "split": ood["split"],
        "n": ood["n"],
        "stages": stages,
    }
