"""The atlas (distill-lora atlas): compare over a grid of students — every layer choice of atlas.layers with every
distillation recipe of atlas.recipes — beside the teacher and the LoRA models, for every seed.

It is compare with settings filled in from the atlas section: distill.layers (the arms, 'odd.ce', …), lora.models
when atlas.adapters names adapters ('lora-student.dora', …) and, unless
the config names its own, report.primary (each arm against the teacher and against the reference arm; every other
pair is exploratory). So the teacher, its logit cache and the finished stages of a seed are shared and reused as
in compare, an interrupted atlas resumes, and the report gains its atlas section (report/atlas.py) because the run
has more students than the assignment's two.
"""

from __future__ import annotations

import json

from distill_lora.config import Config, atlas_entries
from distill_lora.errors import UserError
from distill_lora.experiment.pipeline import student_stage
from distill_lora.stage_ids import TEACHER


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
