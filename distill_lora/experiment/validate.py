"""Check a config before spending GPU hours on it: every problem at once, each with its key, line and fix.

The config's own checks stop at the first problem. To find them all, `validate_config` asks them again with
each problem's key taken back to its default, until the config passes or a problem names no key. Then the
places the config points to are checked without loading anything: local folders exist, a Hub id is in the
local cache (or the Hub can be reached), and a local data folder's files have the columns the config names
(reading no more of each file than that check needs: usually its first rows).
"""

from __future__ import annotations

import contextlib
import copy
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from distill_lora.config import SHIPPED, apply_override, config_from_raw, read_yaml, shipped_config_path
from distill_lora.errors import UserError
from distill_lora.experiment.preflight import check_installed, in_hub_cache, teacher_depth
from distill_lora.train.sources import hub_reachable, is_offline, resolve

_KEY = re.compile(r"^config: (?:unknown key )?'([^']+)'")
_MAX_PROBLEMS = 50  # each round removes one key, so a config can hold at most this many before we give up


@dataclass
class Problem:
    key: str | None  # dotted config key, None when the problem is not one key's
    where: str  # "FILE:LINE", "--set", or the file when the key is not written in it
    message: str

    def line(self) -> str:
        return f"{self.where}: {self.message}"


def key_lines(text: str) -> dict[str, int]:
    """Dotted key → 1-based line of that key in a YAML mapping (nested mappings give 'a.b.c')."""
    lines: dict[str, int] = {}

    def walk(node, prefix: str) -> None:
        if not isinstance(node, yaml.MappingNode):
            return
        for key_node, value in node.value:
            key = f"{prefix}{key_node.value}"
            lines[key] = key_node.start_mark.line + 1
            walk(value, key + ".")

    try:
        walk(yaml.compose(text), "")
    except yaml.YAMLError:
        pass  # read_yaml reports the syntax error itself
    return lines


def _config_path(ref: str) -> Path:
    path = Path(ref)
    return shipped_config_path(ref) if not path.exists() and ref in SHIPPED else path


def _forget(raw: dict, key: str) -> bool:
    """Remove `key` (dotted; 'seeds[2]' means seeds) from raw so its default applies; False if it is not there."""
    parts = re.sub(r"\[\d+\]$", "", key).split(".")
    node = raw
    for part in parts[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return False
    if not isinstance(node, dict) or parts[-1] not in node:
        return False
    del node[parts[-1]]
    return True


def _where(key: str | None, path: Path, lines: dict[str, int], overridden: set[str]) -> str:
    if key is None:
        return str(path)
    base = re.sub(r"\[\d+\]$", "", key)
    if base in overridden:
        return "--set"
    for k in (base, base.rsplit(".", 1)[0]):  # the key itself, else its section
        if k in lines:
            return f"{path}:{lines[k]}"
    return str(path)


def validate_config(ref: str, overrides: list[str]) -> list[Problem]:
    """Every problem of the config, its overrides and the places it names, each with where it is written."""
    path = _config_path(ref)
    raw = read_yaml(ref)  # unreadable or not YAML: a UserError, nothing more to find
    lines = key_lines(path.read_text(encoding="utf-8")) if path.exists() else {}
    for assignment in overrides:
        apply_override(raw, assignment)
    overridden = {a.partition("=")[0].strip() for a in overrides}
    problems: list[Problem] = []
    for _ in range(_MAX_PROBLEMS):
        try:
            cfg = config_from_raw(copy.deepcopy(raw))
        except UserError as e:
            message = str(e).removeprefix("config: ")
            match = _KEY.match(str(e))
            key = match.group(1) if match else None
            problems.append(Problem(key, _where(key, path, lines, overridden), message))
            # a key to take back to its default, and a new message (the same one twice: the key is elsewhere)
            if key is None or not _forget(raw, key) or [p.message for p in problems].count(message) > 1:
                return problems
            continue
        return problems + [
            Problem(key, _where(key, path, lines, overridden), message) for key, message in source_problems(cfg)
        ]
    return problems


def source_problems(cfg) -> list[tuple[str, str]]:
    """(key, problem) for the trackers, ONNX Runtime, the data source and the teacher: what is asked for is
    installed, a local path
    exists, a Hub id is cached or the Hub can be reached. Nothing is loaded."""
    refs = [("data.source", cfg.data.source), ("teacher.model", cfg.teacher.model)]
    problems = []
    trackers = [("train", cfg.train.report_to)]  # the global block first: a problem is blamed on the key set
    trackers += [(f"{s}.train", cfg.stage_train(s).report_to) for s in ("teacher", "distill", "lora")]
    for where, names in trackers:  # trackers named but not installed
        try:
            check_installed(names, where)
        except UserError as e:
            problems.append((f"{where}.report_to", str(e)))
            break
    if cfg.report.onnx_runtime:
        from distill_lora.train.runtimes import require_exporter

        try:
            require_exporter("report.onnx_runtime: true")
        except UserError as e:
            problems.append(("report.onnx_runtime", str(e)))
    for key, ref in refs:
        try:
            path, local = resolve(ref, key)
        except UserError as e:
            problems.append((key, str(e)))
            continue
        if key == "teacher.model" and local:  # the layer lists against this teacher's depth, as training checks them
            problems += _layer_problems(cfg)
        if key == "data.source" and local:  # the data.*_column keys against the files, as loading them checks them
            problems += data_problems(cfg, path)
        if not local and not in_hub_cache(ref, dataset=key == "data.source"):
            if is_offline() or not hub_reachable():
                why = "HF_HUB_OFFLINE is set" if is_offline() else "the Hub cannot be reached"
                problems.append(
                    (
                        key,
                        f"{key} '{ref}' is a Hub id that is not in the local cache and {why}; set it to a local folder",
                    )
                )
    return problems


def _layer_problems(cfg) -> list[tuple[str, str]]:
    from distill_lora.train.layer_specs import check_layers

    try:
        depth = teacher_depth(cfg.teacher.model)
        if depth is None:  # its config.json does not say: ask transformers
            from distill_lora.train.models import load_model_config

            depth = int(getattr(load_model_config(cfg.teacher.model), "num_hidden_layers", 0))
        check_layers(cfg, depth)
    except UserError as e:
        key = "lora.student_layers" if str(e).startswith("lora.student_layers") else "distill.layers"
        return [(key, str(e))]
    return []


def data_problems(cfg, folder: str) -> list[tuple[str, str]]:
    """(key, problem) for the local data folder: its split files and their columns, by the loader's own checks
    (data.split_files, data.column_problems), reading only as far into each file as those need. Each key once,
    with the message of the first split that fails it (the one loading would stop at)."""
    from distill_lora.train.data import column_problems, iter_rows, split_files, split_where

    try:
        files = split_files(cfg.data, folder)
    except UserError as e:
        return [("data.source", str(e))]
    found: dict[str, str] = {}
    for split, path in files.items():
        if path is None:  # no validation file: training carves one from train
            continue
        try:
            with contextlib.closing(iter_rows(path)) as rows:
                problems = column_problems(rows, cfg.data, split_where(split, path), scored=split == "test")
        except UserError as e:  # not readable as rows (bad JSON in its first lines, not UTF-8, ...)
            problems = [("data.source", str(e))]
        for key, message in problems:
            found.setdefault(key, message)
    return list(found.items())
