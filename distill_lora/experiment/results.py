"""What a command leaves in its run folder once its stages are done: run.json (provenance), and after compare
results.json (every finished stage gathered, the data summary, the joint timings), report.md and the rest of the
report; `retime` re-times a finished run and rebuilds its report."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from distill_lora.config import load_config
from distill_lora.errors import UserError
from distill_lora.experiment.pipeline import Context, prepare
from distill_lora.experiment.runs import RunLock, provenance, stage_dir
from distill_lora.experiment.stage import say
from distill_lora.experiment.timing import time_run
from distill_lora.experiment.tracking import log_report
from distill_lora.files import atomic_write_json, read_json, read_json_or_none
from distill_lora.metrics import class_shares
from distill_lora.report.summary import REPORT_SETTINGS
from distill_lora.report.write import print_table, write_report
from distill_lora.train import distributed
from distill_lora.train.data import overlap_summary


def write_run_files(ctx: Context, device: str) -> None:
    if distributed.is_main():
        atomic_write_json(
            ctx.output_dir / "run.json",  # appends this command to the run's history
            provenance(device, ctx.splits.fingerprint, read_json_or_none(ctx.output_dir / "run.json")),
        )


def gather_results(output_dir: Path) -> dict:
    """All finished stages under OUTPUT_DIR, by seed."""
    out = {}
    for sd in sorted(Path(output_dir).glob("seed-*")):
        for st in sorted(sd.iterdir()):
            if (st / "DONE").exists() and (st / "metrics.json").exists():
                out.setdefault(sd.name, {})[st.name] = read_json(st / "metrics.json")
    return out


def data_summary(ctx: Context) -> dict:
    """Sizes, class balance, token lengths, truncation, duplicates and overlaps of the splits."""
    splits = {}
    for s in ("train", "validation", "test"):
        enc = ctx.encoded[s]
        q = np.percentile(enc.full_lengths, [50, 90, 99, 100])
        splits[s] = {
            "n": len(enc),
            **class_shares(enc.labels, ctx.cfg.data.label_names),
            "truncated_share": enc.n_truncated / len(enc),
            "length_percentiles": dict(zip(("p50", "p90", "p99", "max"), map(float, q))),
        }
    return {
        "source": ctx.cfg.data.source,
        "max_length": ctx.cfg.data.max_length,
        "splits": splits,
        "overlap": overlap_summary(ctx.splits),
        "drop_duplicates": ctx.cfg.data.drop_duplicates,
        "notes": ctx.splits.notes,
    }


def _device() -> str:
    """This process's device in the words of distributed.device_name, without making an Accelerator (that would
    reset accelerate's process-wide state)."""
    name = (
        f"cpu ({torch.get_num_threads()} threads)"
        if distributed.use_cpu()
        else torch.cuda.get_device_name(int(os.environ.get("LOCAL_RANK", "0")))
    )
    n = distributed.world_size()
    return name if n == 1 else f"{n} processes × {name}"


def finish_command(ctx: Context, metrics: dict) -> dict:
    """After a single-stage command: record provenance."""
    write_run_files(ctx, _device())
    return metrics


def finish_compare(ctx: Context, result: dict) -> dict:
    """After compare: provenance, results.json, report.md, results.csv, plots, and the table on the terminal."""
    device = _device()
    if not distributed.is_main():
        return result
    write_run_files(ctx, device)
    r = ctx.cfg.report
    # stored so that `report` and `evaluate` rebuild with the run's own settings
    settings = {key: getattr(r, key) for key in REPORT_SETTINGS}
    results = {
        "comparison": result,
        "data": data_summary(ctx),
        "run": {"device": device},
        "all_stages": gather_results(ctx.output_dir),
        "report_settings": settings,
    }
    if r.measure_speed:  # every model timed together; kept as it was when no stage changed
        previous = read_json_or_none(ctx.output_dir / "results.json", {}).get("timings")
        results["timings"] = time_run(
            ctx.output_dir,
            result,
            ctx.encoded["validation"],
            ctx.pad_id,
            torch.device("cuda" if torch.cuda.is_available() else "cpu"),
            previous,
        )
    atomic_write_json(ctx.output_dir / "results.json", results)
    report, summary = write_report(ctx.output_dir, results, r.bootstrap_resamples, r.bootstrap_seed, r.alpha)
    print_table(result, summary)
    say(f"report: {report}")
    trackers = dict.fromkeys(t for sec in ("teacher", "distill", "lora") for t in ctx.cfg.stage_train(sec).report_to)
    log_report(list(trackers), ctx.output_dir, report)  # report.md and the plots, as artefacts (MLflow, W&B)
    return result


def retime(run_dir: Path, repeats: int = 5) -> Path:
    """`distill-lora retime RUN`: time every model of a finished run together on this machine, store the timings
    in results.json and rebuild the report from it (with the run's own report settings when it stored them)."""
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    if not path.exists():
        raise UserError(f"{path} not found; run compare first")
    comparison = read_json(path)["comparison"]
    config = stage_dir(run_dir, comparison["seeds"][0], "teacher") / "config.yaml"
    if not config.exists():
        raise UserError(f"{config} not found: retime needs the run's stage folders, not only its results.json")
    cfg = load_config(str(config), [], str(run_dir))
    ctx = prepare(cfg)  # the same validation inputs, tokenised as compare did
    timings = time_run(
        run_dir,
        comparison,
        ctx.encoded["validation"],
        ctx.pad_id,
        torch.device("cuda" if torch.cuda.is_available() else "cpu"),
        repeats=repeats,
    )
    with RunLock(run_dir):
        results = read_json(path)  # re-read under the lock
        results["timings"] = timings
        atomic_write_json(path, results)
    settings = results.get("report_settings") or {}
    report, _ = write_report(
        run_dir,
        results,
        settings.get("bootstrap_resamples", cfg.report.bootstrap_resamples),
        settings.get("bootstrap_seed", cfg.report.bootstrap_seed),
        settings.get("alpha", cfg.report.alpha),
    )
    return report
