"""The atlas (distill-lora atlas): compare over a grid of students — every layer choice of atlas.layers with every
distillation recipe of atlas.recipes — beside the teacher and the LoRA models, for every seed.

It is compare with settings filled in from the atlas section: distill.layers (the arms, 'odd.ce', …), lora.models
when atlas.adapters names adapters ('lora-student.dora', …) and, unless
the config names its own, report.primary (each arm against the teacher and against the reference arm; every other
pair is exploratory). So the teacher, its logit cache and the finished stages of a seed are shared and reused as
in compare, an interrupted atlas resumes, and the report gains its atlas section (report/atlas.py) because the run
has more students than the assignment's two.

With atlas.tune_trials: N, every arm first gets the same tuning budget: N trials of the sweep's search (Optuna, on
validation, the first seed) over atlas.tune_space, in its own study under OUTPUT_DIR/tune/<stage>/; then every seed
trains the arm with its best values. The teacher is not an arm: it trains as set.

With --shard i/N, a process trains only its share of the arms × seeds (every N-th, from the i-th; 0-based) and no
report: N processes — one per GPU, or a Slurm job array — share the run folder. Each stage, and the teacher and its
logit cache that several arms need, is made once under its lock (runs.exclusive); the others wait and reuse it.
A shard records itself in OUTPUT_DIR/shards/I-of-N.json. The atlas without --shard then gathers: it refuses, naming
them, while a shard has not finished, and otherwise reuses every stage and writes the report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time

from optuna.trial import TrialState

from distill_lora.config import SWEEP_STAGES, Config, SweepConfig, atlas_entries, atlas_tune_space, config_hash
from distill_lora.errors import UserError
from distill_lora.experiment import pipeline
from distill_lora.experiment.sweep import Search, n_finished, search
from distill_lora.files import atomic_write_json, read_json_or_none
from distill_lora.stage_ids import TEACHER, lora_parts
from distill_lora.train.layer_specs import student_stage
from distill_lora.train.models import add_lora
from distill_lora.train.steps import ce_step


def reference_entry(cfg: Config) -> str:
    """The arm the others are compared with: atlas.reference, else odd with the first recipe, else the first arm."""
    a = cfg.atlas
    if a.reference:
        return a.reference
    odd = f"odd.{a.recipes[0]}" if a.recipes else None
    return odd if odd in atlas_entries(a) else atlas_entries(a)[0]


def atlas_overrides(cfg: Config, depth: int) -> list[str]:
    """The --set values that make compare train the atlas's grid (checked against a teacher of `depth` layers)."""
    entries = atlas_entries(cfg.atlas)
    if not entries:
        raise UserError("config: the atlas has no arms: give atlas.layers and atlas.recipes at least one entry each")
    ids = {}
    for entry in entries:
        stage = student_stage(entry, depth)
        if stage in ids.values():
            other = next(e for e, s in ids.items() if s == stage)
            raise UserError(
                f"config: atlas arms '{other}' and '{entry}' are the same student {stage} of this {depth}-layer "
                "teacher (the same layers and recipe); drop one from atlas.layers"
            )
        ids[entry] = stage
    overrides = [f"distill.layers={json.dumps(entries)}"]
    adapters = adapter_arms(cfg)
    if adapters:
        overrides.append(f"lora.models={json.dumps(adapters)}")
    if not cfg.report.primary:
        ref = ids[reference_entry(cfg)]
        arms = [*ids.values(), *adapters]
        primary = [f"{s} vs {TEACHER}" for s in arms] + [f"{s} vs {ref}" for s in arms if s != ref]
        overrides.append(f"report.primary={json.dumps(primary)}")
    return overrides


def adapter_arms(cfg: Config) -> list[str]:
    """The LoRA arms: every adapter of atlas.adapters on every model of atlas.adapter_models, at every rank of
    atlas.ranks ('lora-student.dora-r16'); [] when atlas.adapters is empty (lora.models then stay as they are)."""
    a = cfg.atlas
    ranks = [f"-r{r}" for r in a.ranks] or [""]
    return [f"{m}.{adapter}{r}" for m in a.adapter_models for adapter in a.adapters for r in ranks]


def run_atlas(ctx: pipeline.Context) -> dict:
    """compare's comparison over the atlas's grid (the overrides are already in ctx.cfg), each arm trained with the
    values its tuning chose when atlas.tune_trials is set (the comparison then records them under "tuning")."""
    check_shards(ctx)
    tuned = tune_arms(ctx)
    ctx = dataclasses.replace(ctx, arm_values={stage: t["values"] for stage, t in tuned.items()})
    comparison = {**pipeline.run_compare(ctx), "atlas": True}  # its report has the atlas section, however few arms
    if tuned:
        comparison["tuning"] = tuned
    return comparison


def parse_shard(text: str) -> tuple[int, int]:
    """--shard I/N → (I, N), 0 <= I < N; anything else is one line naming the option."""
    index, slash, count = text.partition("/")
    if not (slash and index.strip().isdigit() and count.strip().isdigit()):
        raise UserError(f"--shard {text!r}: give I/N, this process's share of N (I from 0 to N-1), e.g. --shard 0/4")
    index, count = int(index), int(count)
    if count < 1 or index >= count:
        raise UserError(
            f"--shard {text}: I must be from 0 to N-1 and N at least 1"
            + (f" (with N={count}: 0 to {count - 1})" if count >= 1 else "")
        )
    return index, count


def _units(ctx: pipeline.Context) -> list[tuple[int, str, str]]:
    """The atlas's work, in a fixed order: (seed, 'student' or 'lora', distill.layers entry or LoRA stage id)."""
    arms = [("student", e) for e in ctx.cfg.distill.layers] + [("lora", s) for s in ctx.cfg.lora.models]
    return [(seed, kind, arm) for seed in (ctx.cfg.seeds or [ctx.cfg.seed]) for kind, arm in arms]


def _stage_of(ctx: pipeline.Context, kind: str, arm: str) -> str:
    return student_stage(arm, ctx.teacher_depth) if kind == "student" else arm


def shard_config(cfg: Config) -> str:
    """What the shards and the gatherer must agree on: the whole config but the run folder."""
    return config_hash({k: v for k, v in cfg.to_dict().items() if k != "output_dir"})


def run_shard(ctx: pipeline.Context, index: int, count: int) -> dict:
    """Train this shard's share of the arms × seeds (each with its tuned values when atlas.tune_trials is set);
    no report. Returns {shard, stages: [seed-S/stage, …]}."""
    mine = _units(ctx)[index::count]
    marker = ctx.output_dir / "shards" / f"{index}-of-{count}.json"
    stages = [f"seed-{seed}/{_stage_of(ctx, kind, arm)}" for seed, kind, arm in mine]
    record = {
        "shard": f"{index}/{count}",
        "state": "running",
        "config": shard_config(ctx.cfg),
        "stages": stages,
        "process": f"process {os.getpid()} on {socket.gethostname()}",
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    atomic_write_json(marker, record)
    print(f"[shard {index}/{count}] {len(mine)} of {len(_units(ctx))} arm runs: {', '.join(stages) or 'none'}")
    wanted = {_stage_of(ctx, kind, arm) for _, kind, arm in mine}
    tuned = tune_arms(ctx, wanted)
    ctx = dataclasses.replace(ctx, arm_values={stage: t["values"] for stage, t in tuned.items()})
    for seed, kind, arm in mine:
        sctx = ctx.for_seed(seed)
        pipeline.run_student(sctx, arm) if kind == "student" else pipeline.run_lora(sctx, arm)
    atomic_write_json(marker, {**record, "state": "finished", "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"[shard {index}/{count}] done; once every shard is, the same command without --shard writes the report")
    return {"shard": record["shard"], "stages": stages}


def check_shards(ctx: pipeline.Context) -> None:
    """Before gathering: every shard recorded in OUTPUT_DIR/shards/ finished, with this config (none recorded: the
    atlas was not sharded, and trains everything itself)."""
    markers = sorted((ctx.output_dir / "shards").glob("*-of-*.json"))
    if not markers:
        return
    counts = {int(m.stem.split("-of-")[1]) for m in markers}
    if len(counts) > 1:
        raise UserError(
            f"atlas: {ctx.output_dir / 'shards'} holds shards of {sorted(counts)} processes; rerun with one --shard "
            "count, or delete the folder's records of the others"
        )
    count = counts.pop()
    unfinished, mine = [], shard_config(ctx.cfg)
    for index in range(count):
        record = read_json_or_none(ctx.output_dir / "shards" / f"{index}-of-{count}.json") or {}
        if not record:
            unfinished.append(f"{index}/{count} (not started)")
        elif record.get("config") != mine:
            raise UserError(
                f"atlas: shard {index}/{count} ran another config than this one; gather with the config and --set "
                f"values the shards ran, or delete {ctx.output_dir / 'shards'} to train the atlas unsharded"
            )
        elif record.get("state") != "finished":
            unfinished.append(
                f"{index}/{count} (running or stopped: {record.get('process')}, since {record.get('started')})"
            )
    if unfinished:
        raise UserError(
            f"atlas: shard{'s' if len(unfinished) > 1 else ''} {'; '.join(unfinished)} not finished; wait for "
            f"{'them' if len(unfinished) > 1 else 'it'}, or run `distill-lora atlas ... --shard I/{count}` again for "
            "one that stopped (it resumes), then gather"
        )


def tune_arms(ctx: pipeline.Context, stages: set | None = None) -> dict:
    """The equal tuning budget: atlas.tune_trials trials per arm on validation with the first seed, each arm in its
    own study (resumed when the atlas runs again). Returns {stage: {values, val_macro_f1, trial, trials, seed,
    study}} (only those of `stages`, when given: a shard's arms), also written to OUTPUT_DIR/tune/chosen.json (all
    arms); {} when atlas.tune_trials is 0."""
    if not ctx.cfg.atlas.tune_trials:
        return {}
    seed = (ctx.cfg.seeds or [ctx.cfg.seed])[0]
    sctx = ctx.for_seed(seed)
    pipeline.run_teacher(sctx)  # every student arm's trials distil this seed's teacher (a normal stage, reused)
    wanted = lambda stage: stages is None or stage in stages  # noqa: E731 (a shard tunes only its own arms)
    arms = []  # (the arm's context, its search)
    for entry in ctx.cfg.distill.layers:
        if not wanted(student_stage(entry, ctx.teacher_depth)):
            continue
        actx, stage, layers, _ = pipeline.student_arm(sctx, entry)
        build = lambda tctx, layers=layers: pipeline.student_and_loss(tctx, layers)  # noqa: E731
        arms.append((actx, _search(ctx, "distill", stage, layers, build)))
    for stage in filter(wanted, ctx.cfg.lora.models):
        build = lambda tctx, stage=stage: (add_lora(pipeline.lora_base(tctx, stage), tctx.cfg.lora), ce_step)  # noqa: E731
        arms.append((pipeline.lora_arm(sctx, stage), _search(ctx, lora_parts(stage)[0], stage, None, build)))
    chosen = {}
    for i, (actx, q) in enumerate(arms):
        stage = q.identity["stage"]
        print(f"[tune] arm {i + 1}/{len(arms)}: {stage}, {q.settings.trials} trials on validation (seed {seed})")
        study = search(actx, q)
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            raise UserError(
                f"atlas: no tuning trial of {stage} completed (see {q.folder}); move atlas.tune_space (e.g. lower "
                "learning rates) or raise atlas.tune_trials, and run again"
            )
        best = study.best_trial  # the argmax of validation macro-F1 over the complete trials
        values = best.user_attrs["values"]
        chosen[stage] = {
            "values": values,
            "val_macro_f1": best.value,
            "trial": best.number,
            "trials": n_finished(study),
            "seed": seed,
            "study": study.study_name,
        }
        print(f"[tune] {stage}: best trial {best.number}, validation macro-F1 {best.value:.4f}: {values}")
    if stages is None:
        atomic_write_json(ctx.output_dir / "tune" / "chosen.json", chosen)
    return chosen


def _search(ctx: pipeline.Context, sweep_stage: str, stage: str, layers, build) -> Search:
    """One arm's search: atlas.tune_trials trials over atlas.tune_space in its section's train block, with the
    sweep's sampler and pruning, in OUTPUT_DIR/tune/<stage>/."""
    s = ctx.cfg.sweep
    space = atlas_tune_space(ctx.cfg.atlas, SWEEP_STAGES[sweep_stage])
    settings = SweepConfig(
        stage=sweep_stage,
        sampler=s.sampler,
        trials=ctx.cfg.atlas.tune_trials,
        pruning=s.pruning,
        sampler_seed=s.sampler_seed,
        space=space,
    )
    return Search(settings, {"stage": stage, "layers": layers}, build, ctx.output_dir / "tune" / stage, f"tune/{stage}")
