"""The stages: teacher → distilled students → LoRA models → comparison, each run by stage.run_stage."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file

from distill_lora.config import Config, config_hash, config_with, split_recipe
from distill_lora.errors import UserError
from distill_lora.experiment.preflight import check_trackers
from distill_lora.experiment.runs import (
    exclusive,
    lock_file,
    seed_dir,
    stage_dir,
    stage_is_done,
    write_test_predictions,
)
from distill_lora.experiment.stage import run_stage, say, train_model
from distill_lora.files import (
    atomic_write_json,
    atomic_write_text,
    check_writable,
    read_json,
    read_json_or_none,
    umask,
    writing,
)
from distill_lora.metrics import (
    classification_metrics,
    majority_baseline,
    prediction_record,
    softmax,
    tune_threshold,
)
from distill_lora.records import StageRecord
from distill_lora.stage_ids import (
    LORA_STUDENT,
    LORA_TEACHER,
    TEACHER,
    ensemble_id,
    int8_id,
    int8_sources,
    kind_of,
    lora_parts,
)
from distill_lora.train import distributed, trainer
from distill_lora.train.costs import PeakMemory, inference_speed, weights_size_bytes
from distill_lora.train.data import Encoded, Splits, load_splits
from distill_lora.train.layer_choice import angular_distances, most_changing_layers
from distill_lora.train.layer_specs import check_layers, data_driven_depth, layers_name, resolve_layers, student_stage
from distill_lora.train.models import (
    LORA_BASE_DIR,
    add_lora,
    depth_of,
    load_classifier,
    load_model_config,
    load_stage_model,
    load_tokenizer,
    lora_readme,
    lora_target_names,
    make_student,
    parameter_counts,
    pooler_decision,
    write_adapter_base_note,
)
from distill_lora.train.sources import files_sha256, model_fingerprint
from distill_lora.train.steps import ce_step, distill_step


@dataclass
class Context:
    """What every stage of one command shares: config, data tokenised once, the tokenizer."""

    cfg: Config
    splits: Splits
    tokenizer: object
    encoded: dict
    output_dir: Path
    teacher_depth: int
    # stage id → {dotted config key: value} that arm trains with instead of its section's (the atlas's tuning)
    arm_values: dict = dataclasses.field(default_factory=dict)

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id or 0

    def for_seed(self, seed: int) -> Context:
        """The same data and tokenizer, another training seed."""
        return dataclasses.replace(self, cfg=dataclasses.replace(self.cfg, seed=seed))


def prepare(cfg: Config, layer_specs: tuple = ()) -> Context:
    """Load and check everything a stage needs before anything is written.

    layer_specs: layer lists given on the command line, checked here with the config's own.
    """
    check_trackers(cfg, "teacher", "distill", "lora")  # before any folder of a stage exists
    splits = load_splits(cfg.data)
    tokenizer = load_tokenizer(cfg.teacher.model)
    model_config = load_model_config(cfg.teacher.model)
    depth = int(getattr(model_config, "num_hidden_layers", 0))
    _check_max_length(cfg.data.max_length, model_config)
    check_layers(cfg, depth, layer_specs)  # now, so a bad one fails before hours of teacher training
    encoded = {s: Encoded(splits[s], tokenizer, cfg.data.max_length) for s in ("train", "validation", "test")}
    for note in splits.notes:
        say(f"data: {note}")
    output_dir = Path(cfg.output_dir).resolve()
    check_writable(output_dir)
    return Context(cfg, splits, tokenizer, encoded, output_dir, depth)


def _check_max_length(max_length: int, model_config) -> None:
    """Texts longer than the model's position table would crash (or wrap around) mid-training: refuse now."""
    positions = getattr(model_config, "max_position_embeddings", None)
    if not positions:
        return
    # RoBERTa-style models number positions from padding_idx + 1, so two fewer are usable
    offset = (
        (model_config.pad_token_id or 0) + 1
        if model_config.model_type in ("roberta", "xlm-roberta", "camembert")
        else 0
    )
    if max_length > positions - offset:
        raise UserError(
            f"data.max_length {max_length} is more than the teacher takes ({positions - offset} tokens: "
            f"max_position_embeddings {positions}"
            + (f" minus {offset}" if offset else "")
            + f"); set data.max_length to at most {positions - offset}"
        )


# ---------------------------------------------------------------- config hashes (reuse decisions)

# Bump when a fix changes the numbers a stage produces for an unchanged config: finished stages made by older
# code then no longer match their hash and are trained again instead of reused.
RESULTS_FORMAT = 2


def _data_key(ctx: Context) -> dict:
    # group_column and slice_column only change how the report reads the test split, never what a stage trains
    report_only = ("group_column", "slice_column")
    data = {k: v for k, v in dataclasses.asdict(ctx.cfg.data).items() if k not in report_only}
    return {"data": data, "files": ctx.splits.fingerprint, "seed": ctx.cfg.seed, "format": RESULTS_FORMAT}


def _model_key(ctx: Context) -> dict:
    # the files' contents, not the name: a folder whose weights were replaced is another teacher
    return {"model": ctx.cfg.teacher.model, "model_files": model_fingerprint(ctx.cfg.teacher.model)}


def _train_key(ctx: Context, section: str) -> dict:
    # report_to only says where the numbers are also logged: turning tracking on reuses finished stages; LoRA+'s
    # ratio at 1 changes nothing (and keeps the keys of stages trained before it existed)
    t = dataclasses.asdict(ctx.cfg.stage_train(section))
    return {k: v for k, v in t.items() if k != "report_to" and not (k == "lora_b_lr_ratio" and v == 1.0)}


def teacher_hash(ctx: Context) -> str:
    return config_hash({**_data_key(ctx), **_model_key(ctx), "train": _train_key(ctx, "teacher")})


def teacher_weights(ctx: Context) -> str:
    """sha256 of the finished teacher's weights (recorded when it was saved): what its students are keyed on."""
    return read_json(stage_dir(ctx.output_dir, ctx.cfg.seed, TEACHER) / "metrics.json")["weights_sha256"]


def student_hash(ctx: Context, layers: list[int]) -> str:
    """Keyed on the fine-tuned teacher's weights, not only its config: a teacher trained again (another GPU run,
    a deleted folder) makes new students."""
    d = {k: v for k, v in dataclasses.asdict(ctx.cfg.distill).items() if k not in ("layers", "train")}
    return config_hash(
        {
            "teacher": teacher_hash(ctx),
            "teacher_weights": teacher_weights(ctx),
            "layers": layers,
            "distill": {k: v for k, v in d.items() if k != "recipes"},  # the weights used, not every recipe named
            "train": _train_key(ctx, "distill"),
        }
    )


def lora_hash(ctx: Context, stage_id: str, train_pooler: bool) -> str:
    """train_pooler: the decision lora.train_pooler led to (auto depends on the checkpoint, not only the config)."""
    d = {k: v for k, v in dataclasses.asdict(ctx.cfg.lora).items() if k not in ("models", "train", "adapters")}
    if d["method"] == "lora":  # the default keeps the keys of stages trained before methods existed
        d.pop("method")
    # the modules adapted, not the word: [auto] on a BERT is the same stage as [query, value] (and reuses it)
    d["target_modules"] = lora_target_names(d["target_modules"], load_model_config(ctx.cfg.teacher.model))
    if lora_parts(stage_id)[0] == LORA_TEACHER:
        d.pop("student_layers")
    return config_hash(
        {
            **_data_key(ctx),
            **_model_key(ctx),
            "stage": stage_id,
            "lora": d,
            "pooler_trained": train_pooler,
            "train": _train_key(ctx, "lora"),
        }
    )


# ---------------------------------------------------------------- trained stages


def _run_trained_stage(
    ctx: Context, stage_id: str, chash: str, build, model_type: str, save_extra=None, **fields
) -> dict:
    """Build → train (validation picks the epoch) → test once → a DONE stage folder, through stage.run_stage.

    build() -> (model, step_loss), as stage.train_model takes it; save_extra(folder), when given, writes
    stage-specific files. fields: the record's stage-specific fields (teacher_layers, teacher_targets, …).
    """
    section = kind_of(stage_id).section

    def produce(work: Path):
        model, result, accelerator, memory = train_model(ctx, section, build, work, stage_id)
        # the one and only pass over the test split for this model, after the epoch was chosen (all processes
        # take part); in fp32 even after mixed-precision training: plain inference (predict, serve) reproduces it
        tcfg = ctx.cfg.stage_train(section)
        test = trainer.evaluate(model, ctx.encoded["test"], tcfg.eval_batch_size, accelerator, ctx.pad_id, mixed=False)
        if not distributed.is_main():  # the main process records and writes the stage
            return None, None, None
        record = _trained_record(ctx, stage_id, model_type, model, result, accelerator, memory, test["logits"])
        record.config_hash = chash
        for key, value in fields.items():  # {}: nothing to record (a labels-only student made no teacher pass)
            setattr(record, key, None if value == {} else value)
        if ctx.cfg.report.measure_speed:
            record.inference = inference_speed(model, ctx.encoded["validation"], accelerator, ctx.pad_id)

        def write_files(tmp: Path):
            shutil.copyfile(work / "train_log.jsonl", tmp / "train_log.jsonl")
            if record.threshold is not None:
                atomic_write_json(
                    tmp / "decision.json", {"threshold": record.threshold, "tuned_on": "validation macro-F1"}
                )
            with writing(stage_dir(ctx.output_dir, ctx.cfg.seed, stage_id)):  # the stage's final weights
                model.save_pretrained(tmp)
                ctx.tokenizer.save_pretrained(tmp)
                if save_extra is not None:
                    save_extra(tmp)
            record.weights_bytes = weights_size_bytes(tmp)
            record.weights_sha256 = files_sha256(list(tmp.rglob("*.safetensors")))
            write_test_predictions(
                tmp / "test_predictions.jsonl", ctx.encoded["test"].labels, test["logits"], record.threshold
            )

        t = record.test
        return (
            record,
            write_files,
            (
                f"epoch {result.selected_epoch} selected on validation; test accuracy "
                f"{t['accuracy']:.4f}, macro-F1 {t['macro_f1']:.4f}"
            ),
        )

    return run_stage(ctx, stage_id, chash, produce, "config")


def _trained_record(
    ctx: Context, stage_id: str, model_type: str, model, result, accelerator, memory, test_logits
) -> StageRecord:
    """The record of a freshly trained stage (before its folder is written)."""
    section = kind_of(stage_id).section
    tcfg, label_names, test_labels = ctx.cfg.stage_train(section), ctx.cfg.data.label_names, ctx.encoded["test"].labels
    selected = result.history[result.selected_epoch - 1]
    record = StageRecord(
        stage=stage_id,
        model_type=model_type,
        test=classification_metrics(test_labels, test_logits, label_names),
        validation_history=result.history,
        selected_epoch=result.selected_epoch,
        stopped_early=result.stopped_early,
        train_loss=selected["train_loss"],
        train_total_loss=selected["train_total_loss"],
        wall_time_s=round(result.wall_time_s, 3),
        samples_per_s=round(result.samples_per_s, 3),
        peak_memory_bytes=memory.peak_bytes,
        peak_memory_kind=memory.kind,
        depth=depth_of(model),
        **parameter_counts(model),
        device=distributed.device_name(accelerator),
        processes=accelerator.num_processes,
        precision=distributed.mixed_precision_for(tcfg.precision),
        select_metric=tcfg.select_metric,
        test_ci=stage_test_ci(ctx, test_logits.argmax(axis=1).tolist()),
        # what the report's setup table shows: the settings this stage trained with
        train_settings={
            "lr": tcfg.lr,
            "batch_size": tcfg.batch_size,
            "epochs": tcfg.epochs,
            **({"lora_b_lr_ratio": tcfg.lora_b_lr_ratio} if tcfg.lora_b_lr_ratio != 1.0 else {}),  # LoRA+
        },
    )
    if section == "distill":
        record.loss_weights = {
            k: getattr(ctx.cfg.distill, k) for k in ("temperature", "w_ce", "w_kl", "w_cos", "w_hidden")
        }
    if tcfg.tune_threshold:  # chosen on validation logits of the selected epoch, never on test
        record.threshold = tune_threshold(ctx.encoded["validation"].labels, result.selected_val_logits)
        record.test_at_threshold = classification_metrics(test_labels, test_logits, label_names, record.threshold)
    return record


def stage_test_ci(ctx: Context, preds: list[int]) -> dict:
    """The report's 95% CIs of this model's test accuracy and macro-F1 (same resamples, groups and method, from
    report.*), for metrics.json: the model card and the web page show them. With several seeds the report's
    interval is of the mean over seeds; this one is of this seed's model."""
    from distill_lora.report.summary import ci_of

    r = ctx.cfg.report
    result = {
        "test_labels": ctx.encoded["test"].labels,
        "label_names": ctx.cfg.data.label_names,
        "test_groups": ctx.splits.test.groups,
    }
    return ci_of(result, [preds], r.bootstrap_resamples, r.bootstrap_seed)


# ---------------------------------------------------------------- stages


def run_teacher(ctx: Context) -> dict:
    """Fine-tune the pretrained teacher on the task."""

    def build():
        return load_classifier(ctx.cfg.teacher.model, ctx.cfg.data.label_names), ce_step

    return _run_trained_stage(ctx, TEACHER, teacher_hash(ctx), build, "Teacher (fine-tuned)")


def teacher_targets(ctx: Context, teacher, cls_layers: list[int] | None, cost: dict | None = None) -> dict:
    """The fine-tuned teacher's logits (and [CLS] states) on the training split, computed once and cached.

    cost, when given, receives what the teacher-logit pass cost (part of distillation's price): time_s,
    peak_memory_bytes (and its kind) as measured when the cache was made, and reused (this call read the cache).
    """
    thash = f"{teacher_hash(ctx)}-{teacher_weights(ctx)[:16]}"
    name = f"teacher-{thash}" + (f"-cls-{'-'.join(map(str, cls_layers))}" if cls_layers else "") + ".safetensors"
    path = seed_dir(ctx.output_dir, ctx.cfg.seed) / "cache" / name
    if distributed.is_main():  # processes sharing the run folder (atlas shards) make the cache once
        with exclusive(lock_file(ctx.output_dir, ctx.cfg.seed, name), "teacher logits", say):
            return _teacher_targets(ctx, teacher, cls_layers, cost, path)
    return _teacher_targets(ctx, teacher, cls_layers, cost, path)


def _teacher_targets(ctx: Context, teacher, cls_layers, cost: dict | None, path: Path) -> dict:
    name = path.name
    cost_path = path.with_name(f"{name}.cost.json")
    if path.exists():
        if cost is not None:  # a cache from before costs were recorded has none: unknown, not zero
            cost.update({"time_s": None, "peak_memory_bytes": None, **read_json_or_none(cost_path, {}), "reused": True})
        return load_file(path)
    distributed.barrier()  # every process has looked before the main one writes
    accelerator = distributed.make_accelerator(ctx.cfg.stage_train("teacher").precision)
    teacher.to(accelerator.device)
    start = time.perf_counter()
    with PeakMemory(accelerator.device) as memory:
        out = trainer.evaluate(
            teacher,
            ctx.encoded["train"],
            ctx.cfg.stage_train("teacher").eval_batch_size,
            accelerator,
            ctx.pad_id,
            cls_layers=cls_layers,
        )
    measured = {
        "time_s": round(time.perf_counter() - start, 3),
        "peak_memory_bytes": memory.peak_bytes,
        "peak_memory_kind": memory.kind,
    }
    if cost is not None:
        cost.update({**measured, "reused": False})
    tensors = {"logits": torch.from_numpy(out["logits"]).contiguous()}
    if cls_layers:
        tensors["cls"] = out["cls"].contiguous()
    if distributed.is_main():  # every process has the gathered targets; one writes them
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{name}.tmp-{os.getpid()}")
        with writing(path):
            save_file(tensors, tmp)
        os.chmod(tmp, 0o666 & ~umask())  # safetensors writes 0600 whatever the umask
        os.replace(tmp, path)
        atomic_write_json(cost_path, measured)
    distributed.barrier()
    return tensors


def student_and_loss(ctx: Context, layers: list[int], cost: dict | None = None):
    """A student cut from the fine-tuned teacher of ctx's seed, and its distillation step loss (cost: see
    teacher_targets)."""
    k = ctx.cfg.distill
    teacher = load_stage_model(stage_dir(ctx.output_dir, ctx.cfg.seed, TEACHER))
    if k.w_kl == k.w_cos == k.w_hidden == 0:  # labels only (recipe ce): the cut teacher fine-tuned, no teacher pass

        def labels_only(model, batch):
            loss, parts = ce_step(model, batch)
            return k.w_ce * loss, parts

        return make_student(teacher.cpu(), layers), labels_only
    targets = teacher_targets(ctx, teacher, layers if k.w_hidden > 0 else None, cost)
    return make_student(teacher.cpu(), layers), distill_step(targets, k, len(layers))


def lora_base(ctx: Context, stage_id: str):
    """The pretrained model a LoRA stage adapts: all of it (lora-teacher) or its student-sized cut."""
    base = load_classifier(ctx.cfg.teacher.model, ctx.cfg.data.label_names, log=say)
    if lora_parts(stage_id)[0] == LORA_STUDENT:
        base = make_student(base, resolve_layers(ctx.cfg.lora.student_layers, ctx.teacher_depth))
    return base


def with_arm_values(ctx: Context, stage_id: str) -> Context:
    """ctx with the settings chosen for this arm (ctx.arm_values), if any."""
    values = ctx.arm_values.get(stage_id)
    return dataclasses.replace(ctx, cfg=config_with(ctx.cfg, values)) if values else ctx


def student_arm(ctx: Context, entry) -> tuple[Context, str, list[int], dict | None]:
    """A distill.layers entry → (ctx with its recipe's loss weights, stage id, teacher layers, the data-driven
    choice or None). Needs the seed's fine-tuned teacher when the layers are chosen from it."""
    spec, recipe = split_recipe(entry)
    stage_id = student_stage(entry, ctx.teacher_depth)
    ctx = with_arm_values(ctx, stage_id)
    ctx = dataclasses.replace(ctx, cfg=dataclasses.replace(ctx.cfg, distill=ctx.cfg.distill.with_recipe(recipe)))
    k = data_driven_depth(spec, ctx.teacher_depth)
    choice = angular_choice(ctx, k) if k else None
    return ctx, stage_id, choice["layers"] if choice else resolve_layers(spec, ctx.teacher_depth), choice


def lora_arm(ctx: Context, stage_id: str) -> Context:
    """ctx with the LoRA settings of this arm: its adapter ('lora-student.dora') and any values chosen for it."""
    adapter = lora_parts(stage_id)[1]
    ctx = with_arm_values(ctx, stage_id)
    return dataclasses.replace(ctx, cfg=dataclasses.replace(ctx.cfg, lora=ctx.cfg.lora.with_adapter(adapter)))


def run_student(ctx: Context, entry) -> dict:
    """Distil a student made of some of the fine-tuned teacher's layers: entry = a layer spec (odd, even, a list, the
    data-driven angular…), with '.recipe' for one of distill.recipes' loss weights."""
    if not stage_is_done(stage_dir(ctx.output_dir, ctx.cfg.seed, TEACHER), teacher_hash(ctx)):
        say("[teacher] no finished teacher for this config: fine-tuning it first")
        run_teacher(ctx)  # never distil from a teacher that was not fine-tuned
    recipe = split_recipe(entry)[1]
    ctx, stage_id, layers, choice = student_arm(ctx, entry)
    targets_cost = {}  # filled by build() (the teacher-logit pass), before the stage writes metrics.json

    def build():
        return student_and_loss(ctx, layers, targets_cost)

    name = "angular" if choice else layers_name(layers, ctx.teacher_depth)
    model_type = f"Student, {name} layers {{{','.join(map(str, layers))}}} (distilled{f', {recipe}' if recipe else ''})"
    fields = {"teacher_layers": layers, "teacher_targets": targets_cost, "recipe": recipe, "layer_choice": choice}
    return _run_trained_stage(ctx, stage_id, student_hash(ctx, layers), build, model_type, **fields)


def angular_choice(ctx: Context, k: int) -> dict:
    """The k layers of this seed's fine-tuned teacher whose output moves furthest from their input on the validation
    split (train/layer_choice.py), computed once per teacher and kept in the seed's cache."""
    path = (
        seed_dir(ctx.output_dir, ctx.cfg.seed)
        / "cache"
        / f"angular-{teacher_hash(ctx)}-{teacher_weights(ctx)[:16]}.json"
    )
    distances = (read_json_or_none(path) or {}).get("distances")
    if distances is None:
        teacher = load_stage_model(stage_dir(ctx.output_dir, ctx.cfg.seed, TEACHER))
        batch = ctx.cfg.stage_train("teacher").eval_batch_size
        distances = angular_distances(teacher, ctx.encoded["validation"], batch, ctx.pad_id)
        if distributed.is_main():
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, {"distances": distances, "split": "validation"})
    layers = most_changing_layers(distances, k)
    say(
        f"[angular] teacher layers by angular distance on validation: {[round(d, 4) for d in distances]}; keep {layers}"
    )
    return {"method": "angular distance on validation", "distances": distances, "layers": layers}


def run_lora(ctx: Context, stage_id: str) -> dict:
    """LoRA on the *pretrained* teacher: its student-sized cut (lora-student) or all of it (lora-teacher); with
    '.adapter' (lora-student.dora), one of lora.adapters instead of lora's own settings."""
    adapter = lora_parts(stage_id)[1]
    ctx = lora_arm(ctx, stage_id)
    lo = ctx.cfg.lora
    how = f"{adapter}, CE only" if adapter else "CE only"
    extra, model_type = {"adapter": adapter}, f"LoRA teacher (full depth, {how})"
    if lora_parts(stage_id)[0] == LORA_STUDENT:
        layers = resolve_layers(lo.student_layers, ctx.teacher_depth)
        extra["teacher_layers"] = layers
        model_type = f"LoRA student, pretrained {layers_name(layers, ctx.teacher_depth)} layers ({how})"

    # the base is loaded before the stage hash: the pooler decision (auto) depends on its weights. Seeded, as the
    # head of a plain encoder starts random
    set_seed(ctx.cfg.seed)
    base = lora_base(ctx, stage_id)
    train_pooler = pooler_decision(base, lo.train_pooler)[0]
    extra["pooler_trained"] = train_pooler

    base_copy = {}  # the base's weights before add_lora wraps it, taken only when the stage trains

    def build():
        base_copy.update({k: v.clone() for k, v in base.state_dict().items()})
        return add_lora(base, lo, log=lambda line: say(f"[{stage_id}] {line}")), ce_step

    def save_base(folder: Path):
        # the adapter needs its exact base (including the initial head) to reload
        from transformers import AutoModelForSequenceClassification

        plain = AutoModelForSequenceClassification.from_config(base.config)
        plain.load_state_dict(base_copy)
        plain.save_pretrained(folder / LORA_BASE_DIR)
        write_adapter_base_note(folder)
        atomic_write_text(folder / "README.md", lora_readme(model_type))

    chash = lora_hash(ctx, stage_id, train_pooler)
    return _run_trained_stage(ctx, stage_id, chash, build, model_type, save_base, **extra)


def run_seed(ctx: Context) -> dict:
    """Every stage of one training seed (finished ones reused), in pipeline order."""
    results = {TEACHER: run_teacher(ctx)}
    for spec in ctx.cfg.distill.layers:
        m = run_student(ctx, spec)
        results[m["stage"]] = m
    for stage_id in ctx.cfg.lora.models:
        results[stage_id] = run_lora(ctx, stage_id)
    if ctx.cfg.report.quantize_int8:  # the cheapest baseline: the same models with int8 weights
        from distill_lora.experiment.derived import run_int8

        for source in int8_sources(list(results)):
            results[int8_id(source)] = run_int8(ctx, source)
    if ctx.cfg.report.onnx_runtime:  # the CPU serving option: the same models run by ONNX Runtime
        from distill_lora.experiment.derived import run_onnx_rows

        for source in int8_sources(list(results)):
            results.update(run_onnx_rows(ctx, source))
    return results


def planned_stages(ctx: Context) -> list[str]:
    """The stages compare will make that the report can compare (trained models and the report's ensembles)."""
    from distill_lora.report.summary import ENSEMBLES

    students = [student_stage(s, ctx.teacher_depth) for s in ctx.cfg.distill.layers]
    trained = [TEACHER, *students, *ctx.cfg.lora.models]
    return trained + [ensemble_id(m) for m in ENSEMBLES if all(x in trained for x in m)]


def run_compare(ctx: Context) -> dict:
    """All stages for every seed; students of seed s distil teacher s."""
    if ctx.cfg.report.primary:  # a planned comparison of a stage this run will not make: say so before training
        from distill_lora.report.verdicts import parse_primary

        parse_primary(ctx.cfg.report.primary, planned_stages(ctx))
    if ctx.cfg.report.onnx_runtime:  # before hours of training, not after
        from distill_lora.train.runtimes import require_exporter

        require_exporter("report.onnx_runtime: true")
    seeds = ctx.cfg.seeds or [ctx.cfg.seed]
    per_seed, onnx_rows = {}, {}
    for seed in seeds:
        say(f"=== seed {seed} ===")
        stages = run_seed(ctx.for_seed(seed))
        # paired test predictions go with the metrics: the report's McNemar tests and CIs need them
        for st, m in stages.items():
            # ONNX Runtime rows are compared with their source only (the int8 section), not in every pair
            block = onnx_rows if kind_of(st).kind == "onnx" else per_seed
            block.setdefault(str(seed), {})[st] = {**m, "predictions": _read_predictions(ctx.output_dir, seed, st)}
    baseline = majority_baseline(ctx.splits.train.labels, ctx.encoded["test"].labels, ctx.cfg.data.label_names)
    comparison = {
        "seeds": seeds,
        "label_names": ctx.cfg.data.label_names,
        "test_labels": ctx.encoded["test"].labels,
        "test_texts": ctx.splits.test.texts,
        "per_seed": per_seed,
        "majority_baseline": {"test": baseline},
    }
    if onnx_rows:
        comparison["onnx_runtime"] = onnx_rows
    if ctx.splits.test.groups is not None:  # the report's bootstrap resamples these whole
        comparison["test_groups"] = ctx.splits.test.groups
    if ctx.splits.test.slices is not None:  # the report's per-slice section scores every model on each
        comparison["test_slices"] = ctx.splits.test.slices
        comparison["slice_column"] = ctx.cfg.data.slice_column
    return comparison


def _read_predictions(output_dir: Path, seed: int, stage: str) -> dict:
    rows = [
        json.loads(line)
        for line in (stage_dir(output_dir, seed, stage) / "test_predictions.jsonl").read_text().splitlines()
    ]
    return prediction_record([r["pred"] for r in rows], softmax(np.array([r["logits"] for r in rows])))
