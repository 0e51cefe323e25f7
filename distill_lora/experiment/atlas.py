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
"""

from __future__ import annotations

import dataclasses
import json

from optuna.trial import TrialState

from distill_lora.config import SWEEP_STAGES, Config, SweepConfig, atlas_entries, atlas_tune_space
from distill_lora.errors import UserError
from distill_lora.experiment import pipeline
from distill_lora.experiment.pipeline import student_stage
from distill_lora.experiment.sweep import Search, n_finished, search
from distill_lora.files import atomic_write_json
from distill_lora.stage_ids import TEACHER, lora_parts
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
    tuned = tune_arms(ctx)
    ctx = dataclasses.replace(ctx, arm_values={stage: t["values"] for stage, t in tuned.items()})
    comparison = pipeline.run_compare(ctx)
    if tuned:
        comparison["tuning"] = tuned
    return comparison


def tune_arms(ctx: pipeline.Context) -> dict:
    """The equal tuning budget: atlas.tune_trials trials per arm on validation with the first seed, each arm in its
    own study (resumed when the atlas runs again). Returns {stage: {values, val_macro_f1, trial, trials, seed,
    study}}, also written to OUTPUT_DIR/tune/chosen.json; {} when atlas.tune_trials is 0."""
    if not ctx.cfg.atlas.tune_trials:
        return {}
    seed = (ctx.cfg.seeds or [ctx.cfg.seed])[0]
    sctx = ctx.for_seed(seed)
    pipeline.run_teacher(sctx)  # every student arm's trials distil this seed's teacher (a normal stage, reused)
    arms = []  # (the arm's context, its search)
    for entry in ctx.cfg.distill.layers:
        actx, stage, layers, _ = pipeline.student_arm(sctx, entry)
        build = lambda tctx, layers=layers: pipeline.student_and_loss(tctx, layers)  # noqa: E731
        arms.append((actx, _search(ctx, "distill", stage, layers, build)))
    for stage in ctx.cfg.lora.models:
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
