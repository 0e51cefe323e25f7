"""Checks that need no heavy import: the CLI runs them before torch and transformers load, so a config that cannot
train is refused in about a second instead of after the imports (and the data) of a real start. `validate` and the
stages ask the same functions.

- the trackers train.report_to names are installed (found, not imported);
- the teacher is a local folder, a package folder, or a Hub id that is cached or reachable;
- every layer list fits the teacher's depth, read from its config.json.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from distill_lora.config import Config
from distill_lora.errors import UserError
from distill_lora.train.layer_specs import check_layers
from distill_lora.train.sources import hub_reachable, hub_unreachable_message, is_offline, resolve


def _found(*modules: str):
    return lambda: any(importlib.util.find_spec(m) is not None for m in modules)


INSTALLED = {"tensorboard": _found("tensorboard", "tensorboardX"), "mlflow": _found("mlflow"), "wandb": _found("wandb")}
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}


def check_installed(report_to: list[str], where: str) -> None:
    """A tracker named in the config but not installed fails before training, in one line that says the fix."""
    for name in report_to:
        if not INSTALLED[name]():
            raise UserError(
                f"{where}.report_to has {name}, which is not installed: pip install 'distill-lora[track]' "
                f"(or pip install {PACKAGES[name]}), or remove it from {where}.report_to"
            )


def check_trackers(cfg: Config, *sections: str) -> None:
    """The trackers each section's train block names are installed (else one line naming the key that set them)."""
    for section in sections:
        where = f"{section}.train" if "report_to" in getattr(cfg, section).train else "train"
        check_installed(cfg.stage_train(section).report_to, where)


def in_hub_cache(repo_id: str, dataset: bool = False) -> bool:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id, repo_type="dataset" if dataset else None, local_files_only=True)
        return True
    except Exception:  # noqa: BLE001 - not cached, or not a valid id: either way not usable offline
        return False


def teacher_depth(ref: str) -> int | None:
    """The teacher's number of layers from its config.json (a local or package folder, or the Hub cache), without
    transformers; None when that file does not say (the full load checks later). A Hub id neither cached nor
    reachable is refused, in seconds."""
    path, local = resolve(ref, "teacher.model")
    if not local:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(path, "config.json")
        if not isinstance(cached, str):
            if is_offline() or not hub_reachable():
                raise UserError(hub_unreachable_message(ref, "teacher.model"))
            return None  # on the Hub, not cached yet: the full load downloads it
        path = str(Path(cached).parent)
    try:
        config = json.loads((Path(path) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    depth = next((config[k] for k in ("num_hidden_layers", "n_layers", "num_layers") if k in config), None)
    return depth if isinstance(depth, int) and not isinstance(depth, bool) else None


def preflight(cfg: Config, layer_specs: tuple = ()) -> None:
    """What a training command checks before its heavy imports (pipeline.prepare checks all of it again)."""
    check_trackers(cfg, "teacher", "distill", "lora")
    depth = teacher_depth(cfg.teacher.model)
    if depth:
        check_layers(cfg, depth, layer_specs)
