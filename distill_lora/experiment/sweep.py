"""distill-lora sweep: hyperparameter search for one stage, selected on validation macro-F1 only.

Each trial sets the sampled values in the config and trains the stage with trainer.train: validation after
every epoch (reported to Optuna, which may prune the trial), never the test split. After the trial budget,
the best trial's config is trained once more as a normal stage into sweep/best/, and that run is the one and
only pass over the test split.

OUTPUT_DIR/sweep/
  study.db                 the Optuna study (SQLite): the same command again continues it
  trial-NNNN/              params.json and train_log.jsonl of each trial (its checkpoints go when it ends)
  trials.csv  sweep.md     every trial: state, values, validation macro-F1, epochs run
  best_config.yaml         the whole config with the best values (loadable with --config)
  best.json                the best trial and its test metrics
  best/seed-S/<stage>/     the best config as a normal stage folder (predict, export and serve take it)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
import os
import random
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import optuna
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from distill_lora.config import (
    SWEEP_STAGES,
    SweepConfig,
    config_hash,
    config_with,
    flat_space,
    storage_without_password,
    sweep_keys,
)
from distill_lora.errors import UserError
from distill_lora.experiment import pipeline, results
from distill_lora.experiment.runs import exclusive, seed_dir, stage_dir, stage_is_done
from distill_lora.experiment.stage import tracker_run, train_model
from distill_lora.experiment.study_storage import open_storage
from distill_lora.files import atomic_write_json, atomic_write_text
from distill_lora.stage_ids import TEACHER
from distill_lora.train.layer_specs import resolve_layers
from distill_lora.train.models import add_lora, load_classifier
from distill_lora.train.steps import ce_step
from distill_lora.train.trainer import Interrupted

KEEP = ("params.json", "train_log.jsonl")  # what a trial folder keeps once the trial has ended
PRUNE_AFTER_TRIALS = 3  # the median rule needs a few finished trials to compare with


@dataclass
class Search:
    """One search: its settings, what it trains, where it writes. The sweep command makes one; the atlas's equal
    tuning budget one per arm (experiment/atlas.py)."""

    settings: SweepConfig  # stage (whose section's train block trains), sampler, trials, pruning, seed, space
    identity: dict  # what is searched ({stage, layers}): part of the study's name
    build: Callable  # build(ctx) -> (model, step loss), as stage.train_model takes it
    folder: Path  # study.db and the trial folders
    tag: str = "sweep"  # what printed lines start with, and where trials go in a tracker ("sweep/trial-0003")


def search(ctx, q: Search) -> optuna.Study:
    """Trials until the budget is spent; returns the study. Several processes may run this on one study (sweep
    workers sharing sweep.storage, atlas shards tuning one arm): each asks for trials until the finished ones and
    those still running fill the budget, then waits for the others' (a trial whose worker died comes back as a
    retry, which it takes)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # every process would ask the study for its own trials
        raise UserError("sweep runs in one process: start it without torchrun / accelerate launch")
    q.folder.mkdir(parents=True, exist_ok=True)
    study, budget = _open_study(ctx, q)
    waiting_said, current = False, {}  # current: the number of the trial being run (for an interruption)
    while (done := n_finished(study)) < budget:
        if done + _n_running(study) >= budget and not _retries_waiting(study):
            if not waiting_said:
                print(f"[{q.tag}] the last trials run in other processes: waiting for them")
                waiting_said = True
            time.sleep(min(5, q.settings.heartbeat_interval))
            _fail_stale(study)  # a dead worker's trial: failed, and queued again (the retry callback)
            continue
        try:
            study.optimize(
                lambda trial: _objective(ctx, q, study, trial, budget, current),
                n_trials=1,
                catch=(_TrialFailed, _Surplus),
            )
        except Interrupted:  # Ctrl+C or SIGTERM: the trial is FAIL now; queued again, it resumes from its checkpoint
            t = _trial(study, current["number"])
            study.enqueue_trial(_params(t), user_attrs={"resumes": t.number})
            print(f"[{q.tag}] trial {t.number} was interrupted: queued again (it resumes from its last checkpoint)")
            raise
    return study


class _TrialFailed(Exception):
    """A trial that failed on its own (its error is in its user attrs): a finding of the search, not a bug."""


class _Surplus(Exception):
    """Another worker took the budget's last trial at the same moment: this one is not run."""


def run_sweep(ctx) -> dict:
    s, space = ctx.cfg.sweep, flat_space(ctx.cfg.sweep.space)
    if not space:
        raise UserError(NO_SPACE)
    layers = resolve_layers(s.layers, ctx.teacher_depth) if s.stage == "distill" else None
    folder = ctx.output_dir / "sweep"
    _say_what_trials_score(ctx)
    if s.stage == "distill":  # every trial distils the same fine-tuned teacher: a normal stage, reused when done
        pipeline.run_teacher(ctx)
    q = Search(s, {"stage": s.stage, "layers": layers}, lambda tctx: _build(tctx, s.stage, layers), folder)
    study = search(ctx, q)
    _write_tables(ctx, study, space, folder, None)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise UserError(
            f"no trial of the sweep completed (see {folder / 'sweep.md'}); widen or move the search "
            "space, e.g. lower learning rates, and run again with a larger --trials"
        )
    best = study.best_trial  # the argmax of validation macro-F1 over the complete trials
    values = best.user_attrs["values"]
    print(f"[sweep] best: trial {best.number}, validation macro-F1 {best.value:.4f}: {_fmt_values(values)}")
    tie = None
    if len(complete) > 1 and len({round(t.value, 9) for t in complete}) == 1:
        tie = (
            f"every complete trial scored validation macro-F1 {best.value:.4f}: the search space made no "
            f"difference on validation, so the 'best' trial is only the first; widen the space or train longer"
        )
        print(f"[sweep] note: {tie}")

    # every worker of a shared study gets here; one retrains the best, the others wait and reuse its stage
    with exclusive(folder / ".best.lock", "sweep best"):
        best_dir = folder / "best"
        bcfg = config_with(ctx.cfg, {**values, "output_dir": str(best_dir)})
        atomic_write_text(
            folder / "best_config.yaml",
            f"# best trial {best.number} of sweep study {study.study_name}: validation macro-F1 "
            f"{best.value:.4f}\n" + yaml.safe_dump(bcfg.to_dict(), sort_keys=False),
        )
        metrics = _retrain_best(ctx, bcfg, layers)
        val = metrics["validation_history"][metrics["selected_epoch"] - 1]["val_macro_f1"]
        if abs(val - best.value) > 1e-6:  # the same seed and config: equal on CPU, close on GPU
            print(
                f"[sweep] note: retrained, the best config scores validation macro-F1 {val:.4f} (trial: "
                f"{best.value:.4f}); GPU kernels are not bit-deterministic"
            )
        result = {
            "study": study.study_name,
            "stage": s.stage,
            "trial": best.number,
            "values": values,
            "val_macro_f1": best.value,
            "stage_dir": str(stage_dir(best_dir, bcfg.seed, metrics["stage"])),
            "test": metrics["test"],
            "selected_epoch": metrics["selected_epoch"],
            "validation_history": metrics["validation_history"],
            "note": tie,
        }
        atomic_write_json(folder / "best.json", result)
        _write_tables(ctx, study, space, folder, result)
    print(f"[sweep] wrote {folder / 'sweep.md'}, trials.csv, best_config.yaml and best.json")
    return result


def _say_what_trials_score(ctx) -> None:
    s = ctx.cfg.sweep
    if ctx.cfg.stage_train(SWEEP_STAGES[s.stage]).select_metric != "macro_f1":
        print(
            "[sweep] note: train.select_metric is not macro_f1: each trial scores the validation macro-F1 "
            "of the epoch that metric selects"
        )
    if ctx.cfg.seeds and ctx.cfg.seeds != [ctx.cfg.seed]:
        print(
            f"[sweep] note: trials train with seed {ctx.cfg.seed} only (seeds are for compare: run it with "
            "best_config.yaml to check the best values over seeds)"
        )


def _retrain_best(ctx, bcfg, layers) -> dict:
    """The best config, trained again as a normal stage under sweep/best/: the only evaluation on the test split."""
    bctx = dataclasses.replace(ctx, cfg=bcfg, output_dir=Path(bcfg.output_dir))
    stage = ctx.cfg.sweep.stage
    if stage == "distill":
        _share_teacher(ctx, bctx)
        metrics = pipeline.run_student(bctx, layers)
    elif stage == "teacher":
        metrics = pipeline.run_teacher(bctx)
    else:
        metrics = pipeline.run_lora(bctx, stage)
    results.finish_command(bctx, metrics)
    return metrics


NO_SPACE = (
    "sweep: the config has no search space; add one, e.g. 'sweep: {stage: distill, space: "
    "{distill.temperature: {low: 1, high: 8, log: true}}}' (see the README's Hyperparameter search), "
    "or --set 'sweep.space={distill.temperature: {low: 1, high: 8, log: true}}'"
)


# ---------------------------------------------------------------- the study


def _open_study(ctx, q: Search):
    """The study for this stage, space and config, in its storage (q.folder's SQLite file unless sweep.storage)."""
    s, folder, space = q.settings, q.folder, flat_space(q.settings.space)
    base = {k: v for k, v in ctx.cfg.to_dict().items() if k not in ("sweep", "output_dir", "atlas")}
    base["distill"].pop("recipes")  # named alternatives a sweep never trains (it trains the sections' own values)
    base["lora"].pop("adapters")
    for train in [base["train"]] + [base[sec]["train"] for sec in ("teacher", "distill", "lora")]:
        train.pop("report_to", None)  # where trials are also logged: turning tracking on continues the same study
    name = "sweep-" + config_hash({**q.identity, "space": space, "config": base, "data_files": ctx.splits.fingerprint})
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own lines say what happens
    storage = open_storage(s.storage or f"sqlite:///{folder / 'study.db'}", s)
    # a first epoch says too little (on OLID, 6 of 8 trials were cut after epoch 1 by differences within noise),
    # so a trial may be pruned after its second epoch at the earliest, and never after its last (see _objective)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER_TRIALS, n_warmup_steps=2)
        if s.pruning
        else optuna.pruners.NopPruner()
    )
    with exclusive(folder / ".study.lock", q.tag):  # workers starting together create the study and its grid once
        earlier = optuna.get_all_study_names(storage)
        if not s.storage and earlier and name not in earlier:
            print(
                f"[{q.tag}] the config or search space differs from the earlier sweep(s) in {folder / 'study.db'}: "
                f"starting a new study {name} (the others are kept)"
            )
        study = optuna.create_study(
            study_name=name, storage=storage, direction="maximize", load_if_exists=True, pruner=pruner
        )
        budget = s.trials
        if s.sampler == "grid":  # every combination queued once, in a seeded order: a smaller budget is a fair subset
            keys = list(space)
            choices = [[_encode(v) for v in space[k]["choices"]] for k in keys]
            combos = [dict(zip(keys, c)) for c in itertools.product(*choices)]
            random.Random(s.sampler_seed).shuffle(combos)
            queued = {_key(_params(t)) for t in study.trials if t.state != TrialState.FAIL or "error" in t.user_attrs}
            for params in combos:
                if _key(params) not in queued:
                    study.enqueue_trial(params)
            if len(combos) < budget:
                print(f"[{q.tag}] the grid has {len(combos)} combinations: {len(combos)} trials, not {budget}")
                budget = len(combos)
    _fail_stale(study)  # trials of workers that died since they last beat: failed and queued again
    layers = q.identity.get("layers")
    print(
        f"[{q.tag}] study {name}: stage {q.identity['stage']}"
        + (f" (layers {layers})" if layers else "")
        + f", sampler {s.sampler}, {n_finished(study)} of {budget} trials finished"
        + (f", storage {storage_without_password(s.storage)}" if s.storage else "")
    )
    return study, budget


def _fail_stale(study) -> None:
    with warnings.catch_warnings():  # "experimental" to optuna; we rely on it, and test it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)


def _sampler(s: SweepConfig, trial_number: int):
    """The sampler of one trial, seeded by its number: workers asking at the same moment draw different values,
    and a resumed study does not replay the draws of the first run."""
    seed = s.sampler_seed + trial_number
    if s.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, s.trials // 4)))
    return optuna.samplers.RandomSampler(seed=seed)


def _trial(study, number: int):
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def _counts(t) -> bool:
    """Whether a trial takes a place in the budget: finished (complete, pruned, failed on its own) or running."""
    return t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) or (
        t.state == TrialState.FAIL and "error" in t.user_attrs
    )


def _n_running(study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))


def _retries_waiting(study) -> bool:
    """A trial queued again (interrupted, or its worker died) is waiting: some worker must take it."""
    return any(
        "resumes" in t.user_attrs or "failed_trial" in t.system_attrs
        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    )


def n_finished(study) -> int:
    """Trials that count towards the budget: complete, pruned, or failed on their own (NaN loss), not interrupted."""
    return sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (t.state == TrialState.FAIL and "error" in t.user_attrs)
        for t in study.get_trials(deepcopy=False)
    )


def _encode(value):
    """Optuna's categorical choices are scalars: lists (e.g. target_modules) travel as JSON text."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _params(trial) -> dict:
    """A trial's values so far: those sampled, and those it was queued with (not yet sampled if it never started)."""
    return {**trial.system_attrs.get("fixed_params", {}), **trial.params}


def _key(params: dict) -> str:
    return json.dumps(params, sort_keys=True)


def _suggest(trial, key: str, spec: dict, kind: str):
    if "choices" in spec:
        decoded = {_encode(c): c for c in spec["choices"]}
        return decoded[trial.suggest_categorical(key, list(decoded))]
    if kind.startswith("int"):
        return trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step") or 1, log=spec.get("log", False))
    return trial.suggest_float(
        key, float(spec["low"]), float(spec["high"]), step=spec.get("step"), log=spec.get("log", False)
    )


# ---------------------------------------------------------------- one trial


def _build(ctx, stage: str, layers):
    """Model and step loss of a trial, made by the same functions as the pipeline's stages."""
    if stage == "distill":
        return pipeline.student_and_loss(ctx, layers)
    if stage == "teacher":
        return load_classifier(ctx.cfg.teacher.model, ctx.cfg.data.label_names), ce_step
    return add_lora(pipeline.lora_base(ctx, stage), ctx.cfg.lora), ce_step


def _objective(ctx, q: Search, study, trial, budget: int, current: dict) -> float:
    """One trial: its values drawn, then trained as a stage is, scored on validation; a pruned, failed or surplus
    trial raises (study.optimize records it)."""
    current["number"] = trial.number
    s, folder, space = q.settings, q.folder, flat_space(q.settings.space)
    ahead = sum(_counts(t) for t in study.get_trials(deepcopy=False) if t.number < trial.number)
    if ahead >= budget:  # the budget's last place went to a trial asked for a moment earlier by another worker
        trial.set_user_attr("surplus", True)
        raise _Surplus()
    study.sampler = _sampler(s, trial.number)
    kinds = sweep_keys(s.stage)
    values = {key: _suggest(trial, key, spec, kinds[key]) for key, spec in space.items()}
    trial.set_user_attr("values", values)
    print(f"[{q.tag}] trial {trial.number} ({ahead + 1}/{budget}): {_fmt_values(values)}")
    try:
        cfg = config_with(ctx.cfg, values)
    except UserError as e:  # a combination of valid values that is invalid together (e.g. every loss weight 0)
        raise _fail(q, trial, str(e)) from None
    tctx = dataclasses.replace(ctx, cfg=cfg)
    work = folder / f"trial-{trial.number:04d}"
    resumes = _resumes(_trial(study, trial.number))
    previous = folder / f"trial-{resumes:04d}" if resumes is not None else None
    if previous is not None and previous.exists() and not work.exists():
        os.replace(previous, work)  # the same values: trainer.train resumes from the interrupted trial's checkpoint
        for step, value in _trial(study, resumes).intermediate_values.items():
            trial.report(value, step)  # the pruner compares epochs, including those trained before the interruption
    work.mkdir(parents=True, exist_ok=True)
    atomic_write_json(work / "params.json", {"trial": trial.number, "values": values})
    tcfg = cfg.stage_train(SWEEP_STAGES[s.stage])

    def on_validated(entry):
        trial.report(entry["val_macro_f1"], entry["epoch"])
        # pruning after the last epoch would only throw a finished trial away
        if s.pruning and entry["epoch"] < tcfg.epochs and trial.should_prune():
            raise optuna.TrialPruned()

    try:  # a trial is one tracker run (train.report_to), <run-name>/sweep/trial-NNNN
        # a pruned trial's run ends as finished: its last logged epoch says where it stopped
        with tracker_run(tctx, SWEEP_STAGES[s.stage], f"{q.tag}/{work.name}", (optuna.TrialPruned,)) as run:
            # seeded and built as a stage is (stage.train_model): the best trial retrained as a stage is the same model
            _, result, _, _ = train_model(
                tctx, SWEEP_STAGES[s.stage], lambda: q.build(tctx), work, work.name, on_validated
            )
            if run is not None:
                run.log({"trial/val_macro_f1": result.history[result.selected_epoch - 1]["val_macro_f1"]})
    except optuna.TrialPruned:
        _clean(work)
        epochs = len(_trial(study, trial.number).intermediate_values)
        print(f"[{q.tag}] trial {trial.number}: pruned after epoch {epochs} (validation macro-F1 below the median)")
        raise
    except UserError as e:  # e.g. the loss became NaN at this learning rate: a finding of the search, not a bug
        _clean(work)
        raise _fail(q, trial, str(e)) from None
    _clean(work)
    # the epoch trainer.train selected (train.select_metric, macro_f1 by default) gives the trial's score
    value = result.history[result.selected_epoch - 1]["val_macro_f1"]
    best = max([t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))] + [value])
    print(f"[{q.tag}] trial {trial.number}: validation macro-F1 {value:.4f} (best so far {best:.4f})")
    return value


def _resumes(trial) -> int | None:
    """The trial whose checkpoint this one continues: the one its worker left when it died (the retry callback's
    history), or the one interrupted (queued again by search)."""
    history = RetryHeartbeatStaleTrialCallback.retry_history(trial)
    return history[-1] if history else trial.user_attrs.get("resumes")


def _fail(q: Search, trial, message: str) -> Exception:
    """What a trial that failed on its own raises: study.optimize records it as FAIL, its error kept."""
    trial.set_user_attr("error", message)
    print(f"[{q.tag}] trial {trial.number} failed: {message}")
    return _TrialFailed(message)


def _clean(work) -> None:
    """A finished trial keeps its log and values; its checkpoints (whole models) would only fill the disk."""
    for path in work.iterdir():
        if path.name not in KEEP:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def _share_teacher(ctx, bctx) -> None:
    """The best student distils the sweep's teacher: hard links (no second fine-tuning, no copy on disk)."""
    seed = ctx.cfg.seed
    src, dst = stage_dir(ctx.output_dir, seed, TEACHER), stage_dir(bctx.output_dir, seed, TEACHER)
    if not stage_is_done(dst, pipeline.teacher_hash(bctx)):
        tmp = dst.with_name(f".teacher.tmp-{os.getpid()}")  # moved into place whole, like any stage
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp, copy_function=_link)
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)
    cache = seed_dir(bctx.output_dir, seed) / "cache"
    for f in (seed_dir(ctx.output_dir, seed) / "cache").glob(f"teacher-{pipeline.teacher_hash(ctx)}*"):
        if not (cache / f.name).exists():
            cache.mkdir(parents=True, exist_ok=True)
            _link(f, cache / f.name)


def _link(src, dst) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links there
        shutil.copy2(src, dst)


# ---------------------------------------------------------------- tables


def _fmt(value) -> str:
    return (
        f"{value:.4g}"
        if isinstance(value, float)
        else json.dumps(value)
        if isinstance(value, (list, dict))
        else str(value)
    )


def _fmt_values(values: dict) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())


def _rows(study, space: dict) -> list[dict]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING or t.user_attrs.get("surplus"):  # queued, or never run
            continue
        values = t.user_attrs.get("values", {})
        state = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned", TrialState.RUNNING: "running"}.get(
            t.state, "failed" if "error" in t.user_attrs else "interrupted or its worker died"
        )
        rows.append(
            {
                "trial": t.number,
                "state": state,
                **{k: values.get(k, "") for k in space},
                "val_macro_f1": round(t.value, 6) if t.value is not None else "",
                "epochs": len(t.intermediate_values),
                "error": t.user_attrs.get("error", ""),
            }
        )
    return rows


def _write_tables(ctx, study, space: dict, folder, best: dict | None) -> None:
    """trials.csv and sweep.md (written after the trials, and again with the best trial's test metrics)."""
    s = ctx.cfg.sweep
    rows = _rows(study, space)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["trial", "state", *space, "val_macro_f1", "epochs", "error"])
    writer.writeheader()
    writer.writerows({k: _encode(v) if k in space else v for k, v in r.items()} for r in rows)  # full precision
    atomic_write_text(folder / "trials.csv", buf.getvalue())
    head = ["Trial", "State", *space, "Val macro-F1", "Epochs"]
    cells = [
        [
            str(r["trial"]),
            r["state"],
            *[_fmt(r[k]) for k in space],
            f"{r['val_macro_f1']:.4f}" if r["val_macro_f1"] != "" else "–",
            str(r["epochs"]),
        ]
        for r in rows
    ]
    lines = [
        f"# Hyperparameter search: {s.stage}" + (f" (layers {s.layers})" if s.stage == "distill" else ""),
        "",
        f"Study `{study.study_name}` in `study.db`: sampler {s.sampler}, {len(rows)} trials, pruning "
        f"{'on (median rule after each epoch)' if s.pruning else 'off'}, seed {ctx.cfg.seed}. Trials are "
        "compared on validation macro-F1 only; the test split is evaluated once, for the best trial.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *["| " + " | ".join(c) + " |" for c in cells],
    ]
    if best is not None:
        t = best["test"]
        lines += [
            "",
            f"## Best: trial {best['trial']}",
            "",
            f"Values: {_fmt_values(best['values'])}.",
            "",
            *([f"Note: {best['note']}.", ""] if best.get("note") else []),
            f"Validation macro-F1 {best['val_macro_f1']:.4f} (the maximum over trials, so optimistic). "
            f"Test split, evaluated once: accuracy {t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}.",
            "",
            f"Stage folder: `{best['stage_dir']}`; config: `best_config.yaml`.",
        ]
    atomic_write_text(folder / "sweep.md", "\n".join(lines) + "\n")
    if best is not None:  # and on the terminal
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Sweep: best trial {best['trial']}, test macro-F1 {t['macro_f1']:.4f} (evaluated once)")
        for h in head:
            table.add_column(h, overflow="fold")
        for r, c in zip(rows, cells):
            table.add_row(*c, style="bold" if r["trial"] == best["trial"] else None)
        Console().print(table)
