"""Typed config: dataclasses with defaults and help, YAML loading, dotted overrides, validation.

Defaults live here and only here. The YAML files in configs/ only say what differs.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from distill_lora.errors import UserError
from distill_lora.stage_ids import LORA_STAGES, parse_comparison


def _f(default, help: str, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = _f(3, "passes over the training split")
    batch_size: int = _f(32, "examples per optimiser step (before grad_accum)")
    eval_batch_size: int = _f(64, "examples per batch when evaluating")
    lr: float = _f(5e-5, "peak learning rate of AdamW")
    lora_b_lr_ratio: float = _f(1.0, "LoRA+: the learning rate of LoRA's B matrices is lr times this (1 = plain LoRA)")
    weight_decay: float = _f(0.01, "AdamW weight decay; never applied to biases and LayerNorm")
    warmup_ratio: float = _f(0.1, "share of steps with linear warm-up, then linear decay to 0")
    grad_accum: int = _f(1, "batches accumulated per optimiser step")
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0 = off)")
    precision: str = _f(
        "auto", "auto, fp32, bf16 or fp16 (auto: bf16 on GPUs that have it, fp16 on older GPUs, fp32 on CPU)"
    )
    patience: int = _f(0, "early stopping: epochs without a better validation score (0 = off)")
    select_metric: str = _f("macro_f1", "validation metric that picks the epoch: macro_f1, accuracy or loss")
    log_every: int = _f(20, "optimiser steps between lines of the step log")
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass: less memory, more time")
    length_buckets: bool = _f(True, "batch texts of similar length together (less padding); the order stays seeded")
    checkpoint_every: int = _f(500, "optimiser steps between checkpoints (0 = only at the end of each epoch)")
    tune_threshold: bool = _f(
        False,
        "two classes only: after training, pick the p(positive) cut that maximises validation macro-F1; "
        "saved as decision.json and reported beside the 0.5 cut",
    )
    report_to: list = _f(
        [],
        "experiment trackers that log each stage's steps, epochs and test metrics: tensorboard, mlflow, wandb "
        "(pip install 'distill-lora[track]'; see docs/tracking.md); empty: none",
    )


TRAIN_KEYS = [f.name for f in dataclasses.fields(TrainConfig)]
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
TRACKERS = ("tensorboard", "mlflow", "wandb")
SELECT_METRICS = ("macro_f1", "accuracy", "loss")


@dataclass(frozen=True)
class SplitLimits:
    train: int | None = _f(None, "keep at most this many training examples (stratified)")
    validation: int | None = _f(None, "keep at most this many validation examples (stratified)")
    test: int | None = _f(None, "keep at most this many test examples (stratified)")


@dataclass(frozen=True)
class DataConfig:
    source: str = _f(
        "christinacdl/hate_speech_2_classes",
        "a local folder with train/validation/test files (csv, json, jsonl, parquet), "
        "a Hub dataset id, or package:PKG/FOLDER",
    )
    text_column: str = _f("text", "column holding the text")
    label_column: str = _f("label", "column holding the label")
    group_column: str | None = _f(
        None,
        "column naming groups of near-duplicate texts (e.g. a template id): the "
        "report's CIs and pairwise verdicts then resample whole test groups; "
        "null: every text is its own group",
    )
    slice_column: str | None = _f(
        None,
        "column naming a slice of each text (e.g. a template category): the report scores every model on each "
        "slice of the test split (a blank value is the slice '(missing)'); slices never choose anything; "
        "null: no per-slice section",
    )
    label_names: list = _f(
        ["not toxic", "toxic"], "name of each class, in class-index order (two or more); binary: index 1 is positive"
    )
    label_map: dict = _f({}, "maps raw label values (e.g. strings) to class indices")
    split_seed: int = _f(
        0,
        "seed for carving a validation split and for limits; the same for every training "
        "seed, so all seeds see the same examples",
    )
    validation_fraction: float = _f(0.1, "share of train carved out (stratified) when there is no validation split")
    drop_duplicates: bool = _f(
        False,
        "drop repeated texts within a split, and train/validation texts that "
        "also occur in a later split (always counted in the report)",
    )
    null_text: str = _f(
        "error", "rows whose text is null or blank: error (names the row) or drop (counted in the report)"
    )
    max_length: int = _f(128, "tokens per text; longer texts are truncated")
    limit: SplitLimits = field(default_factory=SplitLimits, metadata={"help": "per-split stratified limits"})

    def __post_init__(self):
        # YAML reads `{0: 1}` with int keys and `{true: 1}` with bool keys; data values are matched by one
        # canonical text form, so every spelling of a key means the same label
        normal = {}
        for raw, idx in self.label_map.items():
            key = label_key(raw, "data.label_map")
            if key in normal and normal[key] != idx:
                raise UserError(f"config: 'data.label_map' maps {key!r} twice, to {normal[key]!r} and {idx!r}")
            normal[key] = idx
        object.__setattr__(self, "label_map", normal)


def label_key(value, where: str = "data") -> str:
    """The canonical text of a raw label: 1, 1.0 and "1" → "1"; True and "true" → "true"; strings as they are."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, float)):
        return str(value)
    raise UserError(f"config: {where} key {value!r} is not a single value; keys must be numbers, true/false or strings")


@dataclass(frozen=True)
class TeacherConfig:
    model: str = _f("bert-base-uncased", "pretrained model: Hub id, local folder, or package:PKG/FOLDER")
    train: dict = _f({}, "overrides of the global train block for this stage")


@dataclass(frozen=True)
class DistillConfig:
    layers: list = _f(
        ["odd", "even"],
        "students that compare trains: odd, even, first[:k], last[:k], distilbert[:k], spaced[:k], angular[:k] (the "
        "k layers that change the fine-tuned teacher's hidden states most on validation), or a list of 1-based "
        "layers; 'odd.ce' trains it with the recipe ce of distill.recipes instead of the weights below",
    )
    temperature: float = _f(2.0, "softmax temperature T of the KL term")
    w_ce: float = _f(1 / 3, "weight of cross-entropy with the true labels")
    w_kl: float = _f(1 / 3, "weight of T²·KL(teacher ‖ student)")
    w_cos: float = _f(1 / 3, "weight of the cosine embedding loss between student and teacher logits")
    w_hidden: float = _f(0.0, "weight of the [CLS] hidden-state cosine loss per mapped layer (0 = off)")
    recipes: dict = _f(
        {
            "ce": {"w_ce": 1.0, "w_kl": 0.0, "w_cos": 0.0, "w_hidden": 0.0},
            "logits": {"w_ce": 0.5, "w_kl": 0.5, "w_cos": 0.0, "w_hidden": 0.0},
            "logits-cos": {"w_ce": 1 / 3, "w_kl": 1 / 3, "w_cos": 1 / 3, "w_hidden": 0.0},
            "hidden": {"w_ce": 1 / 3, "w_kl": 1 / 3, "w_cos": 1 / 3, "w_hidden": 1 / 3},
        },
        "named distillation recipes a student entry can ask for ('odd.ce'): name → temperature and loss weights "
        "(w_ce, w_kl, w_cos, w_hidden); a key left out takes this section's value. ce: labels only (the cut "
        "teacher fine-tuned); logits: + KL to the teacher; logits-cos: + cosine of the logits; hidden: + [CLS] states",
    )
    train: dict = _f({}, "overrides of the global train block for this stage")

    def with_recipe(self, name: str | None) -> DistillConfig:
        """This section with recipe `name`'s weights (None: unchanged)."""
        return self if name is None else dataclasses.replace(self, **self.recipes[name])


def adapter_and_rank(name: str, adapters: dict) -> tuple[str, int | None]:
    """'dora' → ('dora', None); 'dora-r16' → ('dora', 16) unless 'dora-r16' is itself an adapter."""
    m = re.fullmatch(r"(.+)-r(\d+)", name)
    if name not in adapters and m and m.group(1) in adapters:
        return m.group(1), int(m.group(2))
    return name, None


RECIPE_KEYS = ("temperature", "w_ce", "w_kl", "w_cos", "w_hidden")
RECIPE_NAME = re.compile(r"^[a-z][a-z0-9-]*$")


def split_recipe(entry) -> tuple:
    """A distill.layers entry → (layer spec, recipe name or None): 'last:4.ce' → ('last:4', 'ce')."""
    if isinstance(entry, str) and "." in entry:
        spec, recipe = entry.rsplit(".", 1)
        return spec, recipe
    return entry, None


@dataclass(frozen=True)
class AtlasConfig:
    layers: list = _f(
        ["odd", "even", "first", "last", "distilbert", "angular"],
        "the atlas's layer choices (as distill.layers entries, without a recipe)",
    )
    recipes: list = _f(["ce", "logits-cos"], "the atlas's distillation recipes (names in distill.recipes)")
    adapters: list = _f(
        [],
        "the atlas's adapters (names in lora.adapters), each on every model of atlas.adapter_models; empty: the "
        "LoRA models of lora.models as they are",
    )
    adapter_models: list = _f(["lora-student"], "the LoRA depths the adapters are tried at: lora-student, lora-teacher")
    ranks: list = _f([], "LoRA ranks every adapter is tried at ('lora-student.dora-r16'); empty: each adapter's own r")
    reference: str = _f(
        "",
        "the arm every other is compared with in the planned comparisons, as 'layers.recipe' (empty: odd with the "
        "first recipe); each arm is also compared with the teacher",
    )
    tune_trials: int = _f(
        0,
        "an equal tuning budget: each arm's atlas.tune_space searched with this many trials on validation (the first "
        "seed; Optuna, as distill-lora sweep, with sweep.sampler, sweep.pruning and sweep.sampler_seed), then every "
        "seed trains with the best values; 0: every arm trains with its section's train block as set",
    )
    tune_space: dict = _f(
        {"lr": {"low": 1.0e-5, "high": 1.0e-2, "log": True}},
        "what atlas.tune_trials searches: keys of a train block (lr, epochs, …) → {low, high[, log][, step]} or "
        "{choices: [...]}; a student arm sets them in distill.train, an adapter arm in lora.train",
    )


@dataclass(frozen=True)
class LoraConfig:
    models: list = _f(
        list(LORA_STAGES),
        "LoRA models that compare trains: lora-student, lora-teacher; 'lora-student.dora' uses the adapter dora of "
        "lora.adapters, 'lora-student.dora-r16' also sets its rank",
    )
    student_layers: str | list = _f("odd", "layers of the pretrained teacher that make the LoRA student")
    r: int = _f(8, "LoRA rank")
    alpha: int = _f(16, "LoRA alpha (scale = alpha / r)")
    dropout: float = _f(0.1, "dropout on the LoRA path")
    target_modules: list = _f(
        ["auto"],
        "linear layers that get adapters; [auto] = the teacher family's query and value projections (query, value "
        "for BERT; query_proj, value_proj for DeBERTa; Wqkv for ModernBERT; q_lin, v_lin for DistilBERT); "
        "[all-linear] = every encoder linear layer (the classifier head is trained in full, not wrapped)",
    )
    use_rslora: bool = _f(False, "rank-stabilised LoRA: scale alpha / sqrt(r) instead of alpha / r")
    use_dora: bool = _f(False, "DoRA: weight-decomposed low-rank adaptation")
    train_pooler: str | bool = _f(
        "auto",
        "train BERT's pooler (dense + tanh before the classifier) in full beside the "
        "head: true, false, or auto (train it when it was never trained: its bias is "
        "all zeros or missing from the checkpoint; nothing to do without a pooler)",
    )
    method: str = _f(
        "lora", "lora, or vera (VeRA: frozen random matrices shared by all layers, trained scaling vectors)"
    )
    adapters: dict = _f(
        {
            "lora": {},
            "dora": {"use_dora": True},
            "rslora": {"use_rslora": True},
            "loraplus": {"train": {"lora_b_lr_ratio": 16.0}},
            "vera": {"method": "vera", "r": 256, "use_dora": False, "use_rslora": False},
            "frozen-pooler": {"train_pooler": False},
        },
        "named adapters a LoRA entry can ask for ('lora-student.dora'): name → lora keys (r, alpha, dropout, "
        "use_rslora, use_dora, method, train_pooler, target_modules) and train (overrides of lora.train); a key left "
        "out takes this section's value. loraplus: LoRA+ (B matrices learn 16x faster); vera: VeRA at rank 256",
    )
    train: dict = _f({"lr": 5e-4}, "overrides of the global train block for this stage")

    def with_adapter(self, name: str | None) -> LoraConfig:
        """This section with adapter `name` ('dora', or 'dora-r16' for rank 16) applied (None: unchanged)."""
        if name is None:
            return self
        adapter, rank = adapter_and_rank(name, self.adapters)
        a = dict(self.adapters[adapter])
        train = {**self.train, **a.pop("train", {})}
        if rank:
            a["r"] = rank
        return dataclasses.replace(self, **a, train=train)

    def __post_init__(self):
        # YAML and --set give true/false as booleans; type() keeps 1 and 0 out (1 == True in Python)
        if type(self.train_pooler) not in (str, bool) or self.train_pooler not in ("auto", True, False):
            raise UserError(f"config: 'lora.train_pooler' must be auto, true or false, got {self.train_pooler!r}")


@dataclass(frozen=True)
class ReportConfig:
    bootstrap_resamples: int = _f(1000, "bootstrap resamples of the test set for 95% confidence intervals")
    bootstrap_seed: int = _f(0, "seed of the bootstrap")
    alpha: float = _f(
        0.05,
        "significance level of the verdicts (Holm-adjusted within each family: primary, exploratory, serving)",
    )
    primary: list = _f(
        [],
        "the planned comparisons, as 'A vs B' stage ids (e.g. 'student-odd vs student-even'); empty: the assignment's "
        "questions (odd vs even student, each student vs the LoRA student of its depth, each model vs the teacher, "
        "LoRA student vs LoRA teacher); every other pair is exploratory",
    )
    target_difference: float = _f(
        0.02,
        "the macro-F1 difference you care about: when no difference is shown, the report says how many test texts "
        "(or groups) and seeds would detect it",
    )
    serving_margin: float = _f(
        0.01,
        "non-inferiority margin (macro-F1) of the CPU-serving rows (int8, ONNX Runtime) against their source",
    )
    measure_speed: bool = _f(True, "time inference (batch 1 latency, batch 64 throughput) after each stage")
    quantize_int8: bool = _f(
        True,
        "add int8 dynamic quantisation (torch, CPU) of the teacher and each distilled "
        "student as extra rows: size, CPU latency and test quality beside the fp32 model",
    )
    onnx_runtime: bool = _f(
        False,
        "add ONNX Runtime rows (fp32, and its int8 dynamic quantisation) of the teacher and each distilled student "
        "to the int8 section: size, CPU latency and test quality beside PyTorch fp32 and int8; needs "
        "pip install 'distill-lora[onnx]'",
    )


SWEEP_STAGES = {"distill": "distill", "teacher": "teacher", "lora-student": "lora", "lora-teacher": "lora"}
SWEEP_SAMPLERS = ("tpe", "grid", "random")


@dataclass(frozen=True)
class SweepConfig:
    stage: str = _f(
        "distill", "stage whose hyperparameters the sweep searches: distill, teacher, lora-student or lora-teacher"
    )
    layers: str | list = _f(
        "odd", "student layers when stage is distill (odd, even, first[:k], last[:k], distilbert, or 1-based layers)"
    )
    sampler: str = _f("tpe", "tpe (Optuna's Bayesian TPE), grid (every combination of the choices) or random")
    trials: int = _f(
        12,
        "trial budget: finished trials (complete, pruned, or failed on their own), counted over runs of the same study",
    )
    pruning: bool = _f(
        True, "stop a trial after an epoch whose validation macro-F1 is below the median of earlier trials"
    )
    sampler_seed: int = _f(0, "seed of the sampler (each trial draws with sampler_seed + its number)")
    storage: str = _f(
        "",
        "the Optuna study's database: empty = sweep/study.db (SQLite) in the run folder; or any Optuna RDB URL "
        "(postgresql://user@host/db, mysql://…, sqlite:///path) shared by several `distill-lora sweep` workers; the "
        "password comes from the URL or the driver's environment (PGPASSWORD, ~/.pgpass) and is never saved",
    )
    heartbeat_interval: int = _f(
        60, "seconds between a worker's heartbeats for its running trial (how dead workers are found)"
    )
    grace_period: int = _f(
        180, "seconds without a heartbeat after which a running trial counts as dead: failed, and retried"
    )
    retries: int = _f(3, "how often a trial whose worker died is retried (from its last checkpoint)")
    space: dict = _f(
        {},
        "dotted config key → {low, high[, log][, step]} or {choices: [...]}, "
        "e.g. distill.temperature: {low: 1, high: 8, log: true}",
    )


@dataclass(frozen=True)
class Config:
    seed: int = _f(0, "training seed: initialisation, dropout and data order")
    seeds: list = _f([], "training seeds that compare runs (empty: just seed); students of seed s distil teacher s")
    fast: bool = _f(False, "speed preset: every stage's batch size x4 and learning rate x2 (square-root scaling)")
    output_dir: str = _f("runs/default", "run folder (relative to the current directory)")
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "the data set"})
    teacher: TeacherConfig = field(default_factory=TeacherConfig, metadata={"help": "the teacher"})
    distill: DistillConfig = field(default_factory=DistillConfig, metadata={"help": "distilled students"})
    lora: LoraConfig = field(default_factory=LoraConfig, metadata={"help": "LoRA models"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "training defaults"})
    report: ReportConfig = field(default_factory=ReportConfig, metadata={"help": "statistics of the report"})
    sweep: SweepConfig = field(
        default_factory=SweepConfig, metadata={"help": "hyperparameter search (distill-lora sweep)"}
    )
    atlas: AtlasConfig = field(
        default_factory=AtlasConfig, metadata={"help": "the grid of students that distill-lora atlas trains"}
    )

    def stage_train(self, section: str) -> TrainConfig:
        """The global train block with a stage's overrides applied (and the fast preset, when on)."""
        t = dataclasses.replace(self.train, **getattr(self, section).train)
        if self.fast:
            t = dataclasses.replace(
                t, batch_size=4 * t.batch_size, lr=2 * t.lr, eval_batch_size=max(t.eval_batch_size, 4 * t.batch_size)
            )
        return t

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        # every saved copy of the config (stage folders, best_config.yaml, results.json) comes from here
        d["sweep"]["storage"] = storage_without_password(d["sweep"]["storage"])
        return d


def storage_without_password(url: str) -> str:
    """A database URL as it may be saved or printed: its password replaced by ***."""
    if not url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL: refused at load (_validate_sweep); nothing in it can be read as a password
        return "<not a database URL>"


# ---------------------------------------------------------------- building from dicts


def _closest(name: str, options: list[str]) -> str:
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(options)}"


def _check_type(value, annotation, path: str):
    """Check (and gently coerce int -> float) one leaf value against its annotation."""
    ann = annotation if isinstance(annotation, str) else str(annotation)
    optional = "None" in ann
    if value is None:
        if optional:
            return None
        raise UserError(f"config: '{path}' must not be empty (null)")
    base = ann.replace(" | None", "").strip()
    checks = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,), "dict": (dict,)}
    wanted = checks.get(base)
    if wanted is None:
        return value
    if isinstance(value, bool) and base != "bool":
        raise UserError(f"config: '{path}' must be {base}, got {value!r}")
    if not isinstance(value, wanted):
        hint = f" (a list of one: {path}=[{value}])" if base == "list" and isinstance(value, (str, int, float)) else ""
        raise UserError(f"config: '{path}' must be {base}, got {value!r}{hint}")
    return float(value) if base == "float" else value


def _build(cls, raw, path: str):
    if not isinstance(raw, dict):
        raise UserError(f"config: '{path or 'top level'}' must be a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        full = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise UserError(f"config: unknown key '{full}'" + _closest(str(key), list(fields)))
        ftype = fields[key].type
        if dataclasses.is_dataclass(_DATACLASSES.get(ftype)):
            kwargs[key] = _build(_DATACLASSES[ftype], value or {}, full)
        else:
            kwargs[key] = _check_type(value, ftype, full)
    return cls(**kwargs)


_DATACLASSES = {
    c.__name__: c
    for c in (
        TrainConfig,
        SplitLimits,
        DataConfig,
        TeacherConfig,
        DistillConfig,
        LoraConfig,
        ReportConfig,
        SweepConfig,
        AtlasConfig,
        Config,
    )
}


SEED_LIMIT = 2**32  # numpy (and so accelerate's set_seed and Optuna) accepts seeds 0 <= s < 2**32


def _validate(cfg: Config) -> None:
    # seeds first: a bad one must fail before anything is written (seed-S/ names a folder)
    seeds = {
        "seed": cfg.seed,
        "data.split_seed": cfg.data.split_seed,
        "report.bootstrap_seed": cfg.report.bootstrap_seed,
        "sweep.sampler_seed": cfg.sweep.sampler_seed,
        **{f"seeds[{i}]": s for i, s in enumerate(cfg.seeds)},
    }
    for key, s in seeds.items():
        if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < SEED_LIMIT:
            raise UserError(f"config: '{key}' must be an integer from 0 to {SEED_LIMIT - 1} (2**32 - 1), got {s!r}")
    # the global block before the per-stage ones: a bad global value is blamed on the key the user set
    _validate_train(cfg.train, "train")
    for section in ("teacher", "distill", "lora"):
        override = getattr(cfg, section).train
        for key, value in override.items():
            if key not in TRAIN_KEYS:
                raise UserError(f"config: unknown key '{section}.train.{key}'" + _closest(key, TRAIN_KEYS))
            ftype = next(f.type for f in dataclasses.fields(TrainConfig) if f.name == key)
            _check_type(value, ftype, f"{section}.train.{key}")
        _validate_train(cfg.stage_train(section), f"{section}.train")
        if cfg.stage_train(section).tune_threshold and len(cfg.data.label_names) > 2:
            where = f"{section}.train" if "tune_threshold" in override else "train"
            raise UserError(
                f"config: '{where}.tune_threshold' is a p(positive) cut, for two classes; this run has "
                f"{len(cfg.data.label_names)} ({', '.join(cfg.data.label_names)}): set it to false"
            )
    _validate_data(cfg.data)
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise UserError(f"config: 'seeds' must be distinct, got {cfg.seeds}")
    problem = report_problem(cfg.report)
    if problem:
        raise UserError(f"config: 'report.{problem[0]}' is {getattr(cfg.report, problem[0])!r}: {problem[1]}")
    _validate_recipe(dataclasses.asdict(cfg.distill), "distill")
    _validate_recipes(cfg)
    _validate_lora(cfg.lora, "lora")
    _validate_adapters(cfg)
    _validate_sweep(cfg)
    _validate_atlas_tuning(cfg)


ADAPTER_KEYS = ("r", "alpha", "dropout", "use_rslora", "use_dora", "method", "train_pooler", "target_modules", "train")
LORA_METHODS = ("lora", "vera")


def _validate_lora(lo: LoraConfig, where: str, in_use: bool = True) -> None:
    """lora's settings (or an adapter's, `lo` with it applied; `where` names it in the message). What peft must
    offer is asked only of adapters in use: importing peft takes seconds, and every command loads a config."""
    for key, bad, rule in (
        ("r", lo.r < 1, ">= 1"),
        ("alpha", lo.alpha <= 0, "> 0"),
        ("dropout", not 0 <= lo.dropout < 1, "from 0 up to (not including) 1"),
        ("target_modules", not lo.target_modules, "at least one module name, [auto] or [all-linear]"),
        ("method", lo.method not in LORA_METHODS, " or ".join(LORA_METHODS)),
    ):
        if bad:
            raise UserError(f"config: '{where}.{key}' must be {rule}, got {getattr(lo, key)!r}")
    if "all-linear" in lo.target_modules and len(lo.target_modules) > 1:
        raise UserError(f"config: '{where}.target_modules' [all-linear] stands alone, got {lo.target_modules}")
    if in_use and lo.method == "vera" and lo.use_dora:
        raise UserError(f"config: '{where}' asks for VeRA with use_dora; DoRA is a LoRA variant: drop one")
    missing = peft_lacks(lo) if in_use else None
    if missing:
        raise UserError(f"config: '{where}' needs {missing}, which the installed peft lacks; upgrade peft")


def peft_lacks(lo: LoraConfig) -> str | None:
    """What an adapter asks of peft that the installed version does not have (None: nothing)."""
    if lo.method == "lora" and not (lo.use_dora or lo.use_rslora):
        return None
    import peft  # only when a non-default method is asked for: the import takes a few seconds

    if lo.method == "vera" and not hasattr(peft, "VeraConfig"):
        return "VeRA (peft.VeraConfig)"
    fields = {f.name for f in dataclasses.fields(peft.LoraConfig)}
    for flag in ("use_dora", "use_rslora"):
        if getattr(lo, flag) and flag not in fields:
            return f"{flag} (peft.LoraConfig.{flag})"
    return None


def _validate_adapters(cfg: Config) -> None:
    """lora.adapters and the LoRA models that name one: each problem in one line at load."""
    lo = cfg.lora
    for name, a in lo.adapters.items():
        where = f"lora.adapters.{name}"
        if not RECIPE_NAME.match(str(name)):
            raise UserError(
                f"config: adapter name '{name}': use lower-case letters, digits and '-' (it ends a stage id)"
            )
        if not isinstance(a, dict):
            raise UserError(f"config: '{where}' must be a mapping of {', '.join(ADAPTER_KEYS)}, got {a!r}")
        for key, value in a.items():
            if key not in ADAPTER_KEYS:
                raise UserError(f"config: unknown key '{where}.{key}'" + _closest(key, list(ADAPTER_KEYS)))
            if key == "train":
                for k in value if isinstance(value, dict) else [None]:
                    if k not in TRAIN_KEYS:
                        raise UserError(f"config: unknown key '{where}.train.{k}'" + _closest(str(k), TRAIN_KEYS))
            else:
                _check_type(
                    value, next(f.type for f in dataclasses.fields(LoraConfig) if f.name == key), f"{where}.{key}"
                )
    models = [("lora.models", m) for m in lo.models]
    models += [(f"atlas.adapters[{i}]", f"{LORA_STAGES[0]}.{a}") for i, a in enumerate(cfg.atlas.adapters)]
    used = {adapter_and_rank(str(m).partition(".")[2], lo.adapters)[0] for _, m in models}
    for name in lo.adapters:
        _validate_lora(lo.with_adapter(name), f"lora.adapters.{name}", in_use=name in used)
    for where, m in models:
        base, _, adapter = str(m).partition(".")
        if base not in LORA_STAGES:
            raise UserError(
                f"config: '{where}' has '{m}'; valid: {', '.join(LORA_STAGES)}, each with an optional .ADAPTER"
            )
        if adapter and adapter_and_rank(adapter, lo.adapters)[0] not in lo.adapters:
            raise UserError(
                f"config: '{where}' names adapter '{adapter}', which lora.adapters does not define"
                + _closest(adapter, list(lo.adapters))
            )
    for m in cfg.atlas.adapter_models:
        if m not in LORA_STAGES:
            raise UserError(f"config: 'atlas.adapter_models' has '{m}'; valid: {', '.join(LORA_STAGES)}")
    for r in cfg.atlas.ranks:
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise UserError(f"config: 'atlas.ranks' must be whole numbers >= 1, got {r!r}")


def _validate_recipe(r: dict, where: str) -> None:
    """The temperature and loss weights of distill (or of one of its recipes, `r` with the section's values)."""
    if r["temperature"] <= 0:
        raise UserError(f"config: '{where}.temperature' must be > 0, got {r['temperature']}")
    weights = [r[k] for k in RECIPE_KEYS[1:]]
    for name, w in zip(RECIPE_KEYS[1:], weights):
        if w < 0:
            raise UserError(f"config: '{where}.{name}' must be >= 0, got {w}")
    if sum(weights) == 0:
        raise UserError(f"config: '{where}' weights w_ce, w_kl, w_cos, w_hidden are all 0; give one a positive weight")


def _validate_recipes(cfg: Config) -> None:
    """distill.recipes, the recipes distill.layers names, and the atlas grid: each problem in one line at load."""
    k, base = cfg.distill, {key: getattr(cfg.distill, key) for key in RECIPE_KEYS}
    for name, r in k.recipes.items():
        where = f"distill.recipes.{name}"
        if not RECIPE_NAME.match(str(name)) or str(name).endswith(("-int8", "-onnx")):
            raise UserError(
                f"config: recipe name '{name}': use lower-case letters, digits and '-' (it ends a stage id, so "
                "not ending in -int8 or -onnx)"
            )
        if not isinstance(r, dict):
            raise UserError(f"config: '{where}' must be a mapping of {', '.join(RECIPE_KEYS)}, got {r!r}")
        for key, value in r.items():
            if key not in RECIPE_KEYS:
                raise UserError(f"config: unknown key '{where}.{key}'" + _closest(key, list(RECIPE_KEYS)))
            _check_type(value, "float", f"{where}.{key}")
        _validate_recipe({**base, **r}, where)
    named = [(f"distill.layers[{i}]", split_recipe(e)[1]) for i, e in enumerate(k.layers)]
    named += [(f"atlas.recipes[{i}]", r) for i, r in enumerate(cfg.atlas.recipes)]
    for where, recipe in named:
        if recipe is not None and recipe not in k.recipes:
            raise UserError(
                f"config: '{where}' names recipe '{recipe}', which distill.recipes does not define"
                + _closest(str(recipe), list(k.recipes))
            )
    a = cfg.atlas
    for key, values in (("layers", a.layers), ("recipes", a.recipes)):
        doubled = sorted({str(v) for v in values if values.count(v) > 1})
        if doubled:
            raise UserError(f"config: 'atlas.{key}' lists {', '.join(doubled)} more than once; each arm needs its own")
    for i, spec in enumerate(a.layers):
        if split_recipe(spec)[1] is not None:
            raise UserError(
                f"config: 'atlas.layers[{i}]' is '{spec}': a layer choice without a recipe (the recipes are in "
                "atlas.recipes)"
            )
    if a.reference and a.reference not in atlas_entries(a):
        raise UserError(
            f"config: 'atlas.reference' is '{a.reference}', which is not an arm of the grid; use one of "
            f"{', '.join(atlas_entries(a))}"
        )


def atlas_entries(a: AtlasConfig) -> list[str]:
    """The atlas's arms as distill.layers entries: every layer choice with every recipe ('odd.ce', …)."""
    return [f"{_spec_text(spec)}.{recipe}" for spec in a.layers for recipe in a.recipes]


def _spec_text(spec) -> str:
    return ",".join(map(str, spec)) if isinstance(spec, list) else str(spec)


def _validate_data(d: DataConfig) -> None:
    if len(d.label_names) < 2:
        raise UserError("config: 'data.label_names' needs at least two classes, e.g. [not toxic, toxic]")
    if len(set(d.label_names)) != len(d.label_names):
        raise UserError(f"config: 'data.label_names' has duplicates: {d.label_names}")
    for raw, idx in d.label_map.items():
        if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(d.label_names):
            raise UserError(
                f"config: 'data.label_map' maps '{raw}' to {idx!r}, which is not a class index "
                f"0..{len(d.label_names) - 1}"
            )
    if d.slice_column is not None and d.slice_column in (d.text_column, d.label_column):
        raise UserError(
            f"config: 'data.slice_column' is {d.slice_column!r}, the text or label column; name the column that "
            "holds each text's slice, or set it to null"
        )
    if d.null_text not in ("error", "drop"):
        raise UserError(f"config: 'data.null_text' must be error or drop, got {d.null_text!r}")
    if not 0 < d.validation_fraction < 1:
        raise UserError(f"config: 'data.validation_fraction' must be between 0 and 1, got {d.validation_fraction}")
    if d.max_length < 8:
        raise UserError(f"config: 'data.max_length' must be at least 8, got {d.max_length}")
    for split in ("train", "validation", "test"):
        n = getattr(d.limit, split)
        if n is not None and n < 2:
            raise UserError(f"config: 'data.limit.{split}' must be at least 2, got {n}")


def report_problem(r: ReportConfig) -> tuple[str, str] | None:
    """The first report setting outside its limits, as (key, what to use instead), or None: the config's
    validation and the flags of `distill-lora report` both ask this."""
    if r.bootstrap_resamples < 100:
        return "bootstrap_resamples", f"use at least 100 (e.g. the default {ReportConfig().bootstrap_resamples})"
    if not 0 < r.alpha < 1:
        return "alpha", f"use a significance level between 0 and 1 (e.g. the default {ReportConfig().alpha})"
    if not 0 <= r.bootstrap_seed < SEED_LIMIT:
        return "bootstrap_seed", f"use an integer from 0 to {SEED_LIMIT - 1}"
    if isinstance(r.target_difference, bool) or not 0 < r.target_difference < 1:
        return "target_difference", "use a macro-F1 difference between 0 and 1 (e.g. the default 0.02)"
    if isinstance(r.serving_margin, bool) or not 0 < r.serving_margin < 1:
        return "serving_margin", "use a macro-F1 margin between 0 and 1 (e.g. the default 0.01)"
    for entry in r.primary:
        if parse_comparison(entry) is None:
            return "primary", f"write each comparison as 'A vs B' with two different stage ids, got {entry!r}"
    return None


def _validate_train(t: TrainConfig, path: str) -> None:
    if t.precision not in PRECISIONS:
        raise UserError(f"config: '{path}.precision' must be one of {', '.join(PRECISIONS)}, got {t.precision!r}")
    if t.select_metric not in SELECT_METRICS:
        raise UserError(
            f"config: '{path}.select_metric' must be one of {', '.join(SELECT_METRICS)}, got {t.select_metric!r}"
        )
    for key in ("epochs", "batch_size", "eval_batch_size", "grad_accum", "log_every"):
        if getattr(t, key) < 1:
            raise UserError(f"config: '{path}.{key}' must be >= 1, got {getattr(t, key)}")
    for name in t.report_to:
        if name not in TRACKERS:
            raise UserError(
                f"config: '{path}.report_to' has {name!r}, which is not a tracker" + _closest(str(name), list(TRACKERS))
            )
    if t.checkpoint_every < 0:
        raise UserError(f"config: '{path}.checkpoint_every' must be >= 0, got {t.checkpoint_every}")
    for key, bad, rule in (
        ("lr", t.lr <= 0, "> 0"),
        ("weight_decay", t.weight_decay < 0, ">= 0"),
        ("warmup_ratio", not 0 <= t.warmup_ratio < 1, "from 0 up to (not including) 1"),
        ("max_grad_norm", t.max_grad_norm < 0, ">= 0 (0 = no clipping)"),
        ("patience", t.patience < 0, ">= 0 (0 = no early stopping)"),
    ):
        if bad:
            raise UserError(f"config: '{path}.{key}' must be {rule}, got {getattr(t, key)}")


# ---------------------------------------------------------------- the sweep's search space

SPEC_KEYS = ("low", "high", "log", "step", "choices")
# training settings that are not hyperparameters of the model (or that must stay fixed: the sweep selects on
# validation macro-F1, so select_metric is not searched either)
_NOT_SEARCHED = (
    "select_metric",
    "report_to",
    "log_every",
    "checkpoint_every",
    "eval_batch_size",
    "precision",
    "tune_threshold",
    "gradient_checkpointing",
)


def sweep_keys(stage: str) -> dict[str, str]:
    """Config keys a sweep of `stage` may search → their type. Only what that stage uses: its own section and
    train block (not the global train block, which would also change the teacher a student is distilled from)."""
    section = SWEEP_STAGES[stage]
    cls = {"teacher": TeacherConfig, "distill": DistillConfig, "lora": LoraConfig}[section]
    keys = {
        f"{section}.{f.name}": f.type
        for f in dataclasses.fields(cls)
        if f.name not in ("model", "layers", "models", "train")
        and not (stage == "lora-teacher" and f.name == "student_layers")
    }
    keys.update(
        {f"{section}.train.{f.name}": f.type for f in dataclasses.fields(TrainConfig) if f.name not in _NOT_SEARCHED}
    )
    return keys


def flat_space(space: dict, prefix: str = "") -> dict:
    """sweep.space with dotted keys: {distill: {temperature: {...}}} (what --set sweep.space.distill.temperature.low=1
    makes) and {distill.temperature: {...}} mean the same."""
    flat = {}
    for key, node in space.items():
        full = f"{prefix}{key}"
        if isinstance(node, dict) and node and not any(k in SPEC_KEYS for k in node):
            flat.update(flat_space(node, full + "."))
        else:
            flat[full] = node
    return flat


def config_with(cfg: Config, values: dict) -> Config:
    """cfg with dotted keys set to values (as --set would), validated; the sweep section is kept as it is."""
    raw = cfg.to_dict()
    raw.pop("sweep")  # validated on its own: checking it here again would recurse
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    new = _build(Config, raw, "")
    _validate(new)
    return dataclasses.replace(new, sweep=cfg.sweep)


def _validate_sweep(cfg: Config) -> None:
    s = cfg.sweep
    if s.stage not in SWEEP_STAGES:
        raise UserError(f"config: 'sweep.stage' must be one of {', '.join(SWEEP_STAGES)}, got {s.stage!r}")
    if s.sampler not in SWEEP_SAMPLERS:
        raise UserError(f"config: 'sweep.sampler' must be one of {', '.join(SWEEP_SAMPLERS)}, got {s.sampler!r}")
    if s.trials < 1:
        raise UserError(f"config: 'sweep.trials' must be >= 1, got {s.trials}")
    if s.storage and storage_without_password(s.storage) == "<not a database URL>":
        raise UserError(
            "config: 'sweep.storage' is not a database URL; use e.g. postgresql://user@host:5432/db or "
            "sqlite:///path/study.db (empty: the run folder's sweep/study.db)"
        )
    if not 1 <= s.heartbeat_interval < s.grace_period:
        raise UserError(
            f"config: 'sweep.heartbeat_interval' ({s.heartbeat_interval}) must be >= 1 and below "
            f"'sweep.grace_period' ({s.grace_period}): a live worker must beat before it is taken for dead"
        )
    if s.retries < 0:
        raise UserError(f"config: 'sweep.retries' must be >= 0, got {s.retries}")
    tunable = sweep_keys(s.stage)
    space = flat_space(s.space)
    for key in space:
        if key not in tunable:
            known = [k for k, _, _ in describe()] + [
                f"{sec}.train.{k}" for sec in ("teacher", "distill", "lora") for k in TRAIN_KEYS
            ]
            if key not in known:
                raise UserError(f"config: unknown key '{key}' in sweep.space" + _closest(key, list(tunable)))
            same = [k for k in tunable if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
            raise UserError(
                f"config: '{key}' cannot be searched in a sweep of stage {s.stage} (only what that stage "
                "uses: its own section and train block)"
                + (f"; did you mean '{same[0]}'?" if same else f"; searchable: {', '.join(tunable)}")
            )
    _check_space(cfg, space, tunable, s.sampler, lambda key: f"sweep.space.{key}")


def _check_space(cfg: Config, space: dict, tunable: dict, sampler: str, where_of) -> None:
    """Each range or list of choices of a search space (flat keys, all in tunable) is well formed and every value
    makes a valid config; where_of(key) names the key as the user wrote it."""
    for key, spec in space.items():
        where = where_of(key)
        if not isinstance(spec, dict) or not spec:
            raise UserError(f"config: '{where}' must be {{low: .., high: ..}} or {{choices: [..]}}, got {spec!r}")
        for k in spec:
            if k not in SPEC_KEYS:
                raise UserError(f"config: unknown key '{where}.{k}'" + _closest(str(k), list(SPEC_KEYS)))
        base = tunable[key].replace(" | None", "")
        if "choices" in spec:
            choices = spec["choices"]
            if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
                raise UserError(f"config: '{where}' needs either choices (a non-empty list) or low/high, not both")
            if len({json.dumps(c, sort_keys=True) for c in choices}) != len(choices):
                raise UserError(f"config: '{where}.choices' has duplicates: {choices}")
            values = choices
        else:
            low, high, log, step = spec.get("low"), spec.get("high"), spec.get("log", False), spec.get("step")
            if base not in ("int", "float"):
                raise UserError(f"config: '{where}': {key} is {base}, not a number; list its values as choices: [...]")
            number = int if base == "int" else (int, float)
            bounds = [low, high] + ([step] if step is not None else [])
            if not all(isinstance(v, number) and not isinstance(v, bool) for v in bounds) or not low < high:
                raise UserError(
                    f"config: '{where}' needs {base} low < high{' (and step)' if step is not None else ''}, "
                    f"got low={low!r} high={high!r}" + (f" step={step!r}" if step is not None else "")
                )
            if not isinstance(log, bool) or log and low <= 0:
                raise UserError(f"config: '{where}.log' must be true or false, and true needs low > 0")
            if step is not None and (step <= 0 or log):
                raise UserError(f"config: '{where}.step' must be > 0 and cannot be combined with log")
            values = [low, high]
        for v in values:  # every choice, or both ends of the range, must make a valid config
            try:
                config_with(cfg, {key: v})
            except UserError as e:
                raise UserError(f"config: '{where}' value {v!r}: {str(e).removeprefix('config: ')}") from None
    ranged = [where_of(k) for k, spec in space.items() if "choices" not in spec]
    if sampler == "grid" and ranged:
        raise UserError(
            f"config: sweep.sampler grid needs choices: [...] for every key searched; "
            f"{', '.join(ranged)} has low/high (list its values, or use sampler tpe or random)"
        )


def atlas_tune_space(a: AtlasConfig, section: str) -> dict:
    """atlas.tune_space (keys of a train block) as search-space keys of one section's train block."""
    return {f"{section}.train.{key}": spec for key, spec in flat_space(a.tune_space).items()}


def _validate_atlas_tuning(cfg: Config) -> None:
    a = cfg.atlas
    if not isinstance(a.tune_trials, int) or isinstance(a.tune_trials, bool) or a.tune_trials < 0:
        raise UserError(
            f"config: 'atlas.tune_trials' must be a whole number >= 0 (0: no tuning), got {a.tune_trials!r}"
        )
    if not a.tune_trials:
        return
    space = flat_space(a.tune_space)
    if not space:
        raise UserError(
            "config: 'atlas.tune_trials' is set but atlas.tune_space is empty; give it e.g. "
            "{lr: {low: 1.0e-5, high: 1.0e-2, log: true}}, or set atlas.tune_trials: 0"
        )
    searchable = [k for k in TRAIN_KEYS if k not in _NOT_SEARCHED]
    for key in space:
        if key not in searchable:
            raise UserError(
                f"config: 'atlas.tune_space.{key}' is not a searchable key of a train block"
                + (_closest(key, searchable) if key not in TRAIN_KEYS else f"; searchable: {', '.join(searchable)}")
            )
    plain = dataclasses.replace(cfg, atlas=dataclasses.replace(a, tune_trials=0))  # config_with validates again
    for section, stage in (("distill", "distill"), ("lora", "lora-student")):
        _check_space(
            plain,
            atlas_tune_space(a, section),
            sweep_keys(stage),
            cfg.sweep.sampler,
            lambda key: f"atlas.tune_space.{key.rsplit('.', 1)[-1]}",
        )


# ---------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads 5e-5 as a float (YAML 1.1 wants 5.0e-5)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.inf|\.nan)$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


SHIPPED = ("default", "demo", "olid", "davidson3", "atlas-demo", "atlas-olid")  # configs/*.yaml, by name


def shipped_config_path(name: str) -> Path:
    """A config shipped with the package (the repository's configs/ folder, installed as package data)."""
    source_tree = Path(__file__).resolve().parent.parent / "configs" / f"{name}.yaml"
    if source_tree.exists():  # a checkout or an editable install
        return source_tree
    from importlib.resources import files

    return Path(str(files("distill_lora.configs") / f"{name}.yaml"))


def _yaml_problem(e: yaml.YAMLError) -> str:
    """'line L, column C: what is wrong' (1-based, as editors count), or the first line of the message."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def read_yaml(ref: str) -> dict:
    """Read a config file, or one of the shipped configs by name."""
    path = Path(ref)
    if not path.exists() and ref in SHIPPED:
        path = shipped_config_path(ref)
    if not path.exists():
        raise UserError(f"config file '{ref}' not found; give a path or one of: {', '.join(SHIPPED)}")
    try:
        raw = _yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise UserError(f"config file '{path}' is not valid YAML: {_yaml_problem(e)}") from None
    except UnicodeDecodeError:
        raise UserError(f"config file '{path}' is not UTF-8 text; save it as UTF-8") from None
    except OSError as e:
        raise UserError(f"config file '{path}' cannot be read: {e.strerror}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UserError(f"config file '{path}' must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one dotted override such as 'teacher.train.lr=1e-4' (value parsed as YAML)."""
    if "=" not in assignment:
        raise UserError(f"--set '{assignment}' must look like key.sub=value")
    key, _, text = assignment.partition("=")
    parts = key.strip().split(".")
    try:
        value = _yaml(text)
    except yaml.YAMLError as e:
        # a list, mapping or quoted value that does not parse is a typo; anything else is a plain string
        # (e.g. a path holding ': ')
        if text.strip()[:1] in ("[", "{", '"', "'"):
            raise UserError(
                f"--set '{assignment}': the value is not valid YAML: {_yaml_problem(e).replace('line 1, ', '')}"
            ) from None
        value = text
    node = raw
    for part in parts[:-1]:
        if not isinstance(node.get(part, {}), dict):
            raise UserError(f"--set '{assignment}': '{part}' is not a section")
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def load_config(
    ref: str = "default", overrides: list[str] | None = None, output_dir: str | None = None, seed: int | None = None
) -> Config:
    """YAML (path or shipped name) + --set overrides + flags → a validated, read-only Config."""
    raw = read_yaml(ref)
    for assignment in overrides or []:
        apply_override(raw, assignment)
    if output_dir is not None:
        raw["output_dir"] = output_dir
    if seed is not None:
        raw["seed"] = seed
    return config_from_raw(raw)


def config_from_raw(raw: dict) -> Config:
    """A config's mapping (as read from YAML, overrides applied) → a validated, read-only Config."""
    cfg = _build(Config, raw, "")
    _validate(cfg)
    return cfg


def config_hash(obj) -> str:
    """A short, stable hash of any JSON-able value (used to tell whether a stage can be reused)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def describe(cls=Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) for every config key: the README's config reference is made from this."""
    rows = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        sub = _DATACLASSES.get(f.type)
        if sub is not None and dataclasses.is_dataclass(sub):
            rows += describe(sub, key + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append((key, json.dumps(default), f.metadata.get("help", "")))
    return rows
