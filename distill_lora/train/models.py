"""Models: load the teacher, cut a student out of it (layer surgery), add LoRA, reload a stage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from distill_lora.config import LoraConfig
from distill_lora.errors import UserError
from distill_lora.train.sources import hub_unreachable_message, require_hub, resolve

LAYER_PRESETS = ("odd", "even", "first", "last", "distilbert")
_LAYER_KEY = re.compile(r"(^|\.)encoder\.layer\.(\d+)\.")
_HELP = "use odd, even, first[:k], last[:k], distilbert, or 1-based layer numbers like 1,4,7"


# ---------------------------------------------------------------- layer maps


def preset_layers(name: str, depth: int, k: int | None = None) -> list[int]:
    """1-based teacher layers of a named strategy; k = student depth (default half the teacher's).

    odd {1,3,5,…}, even {2,4,6,…}, first {1..k}, last {depth-k+1..depth}, distilbert: every other
    layer from the bottom for half the student and from the top for the rest ({1,3,5,8,10,12} of 12,
    as DistilBERT initialised its student).
    """
    k = depth // 2 if k is None else k
    if name == "odd":
        return list(range(1, depth + 1, 2))
    if name == "even":
        return list(range(2, depth + 1, 2))
    if name == "first":
        return list(range(1, k + 1))
    if name == "last":
        return list(range(depth - k + 1, depth + 1))
    bottom = [1 + 2 * i for i in range((k + 1) // 2)]
    top = [depth - 2 * i for i in range(k // 2)]
    return sorted(set(bottom + top))


def resolve_layers(spec, depth: int) -> list[int]:
    """A strategy name ('odd', 'last:4', …), '1,4,7' or [1, 4, 7] → 1-based teacher layers, checked."""
    if isinstance(spec, str):
        name, _, k = spec.strip().lower().partition(":")
        if name in LAYER_PRESETS:
            if k and name in ("odd", "even"):
                raise UserError(f"layers '{spec}': odd and even take no depth; ':k' is for first, last and distilbert")
            if k and (not k.isdigit() or not 1 <= int(k) < depth):
                raise UserError(f"layers '{spec}': the student depth after ':' must be 1..{depth - 1}")
            spec = preset_layers(name, depth, int(k) if k else None)
            if len(spec) != (int(k) if k else len(spec)):  # distilbert's bottom and top halves met
                raise UserError(
                    f"layers '{name}:{k}': distilbert takes every other layer from the bottom "
                    f"and from the top, which for {k} layers needs a teacher of at least {2 * int(k) - 2} "
                    f"layers (this one has {depth}); use a smaller depth, first:{k} or a list of layers"
                )
        else:
            try:
                spec = [int(p) for p in spec.replace(" ", "").split(",") if p]
            except ValueError:
                raise UserError(f"layers '{spec}': {_HELP}") from None
    if isinstance(spec, int) and not isinstance(spec, bool):  # `distill.layers: [1, 3]` lists two one-layer students
        raise UserError(
            f"layers {spec}: a student spec is a strategy or a list of layers, and {spec} alone is one "
            "number; for a student of layers 1 and 3 write distill.layers: [[1, 3]] (or --layers 1,3)"
        )
    if (
        not isinstance(spec, (list, tuple))
        or not spec
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in spec)
    ):
        raise UserError(f"layers {spec!r}: {_HELP}")
    layers = list(spec)
    bad = [x for x in layers if not 1 <= x <= depth]
    if bad:
        raise UserError(
            f"layers {layers}: {bad} outside 1..{depth} (the teacher has {depth} layers; numbers are 1-based)"
        )
    if any(b <= a for a, b in zip(layers, layers[1:])):
        raise UserError(f"layers {layers}: must be strictly increasing, without repeats")
    if len(layers) == depth:
        raise UserError(f"layers {layers}: keeps all {depth} teacher layers; a student must be shallower")
    return layers


def layers_name(layers: list[int], depth: int) -> str:
    """The strategy's name when the list is a half-depth preset ('odd', 'first', …), else '1-4-7'."""
    for preset in LAYER_PRESETS:
        if layers == preset_layers(preset, depth):
            return preset
    return "-".join(map(str, layers))


def student_state_dict(teacher_state: dict, layers: list[int]) -> dict:
    """Teacher weights renamed for a student: student layer i ← teacher layer layers[i] (1-based).

    Everything outside the encoder layers (embeddings, pooler, classifier) is copied as is.
    """
    source_to_student = {teacher_idx - 1: i for i, teacher_idx in enumerate(layers)}
    out = {}
    for key, tensor in teacher_state.items():
        m = _LAYER_KEY.search(key)
        if m is None:
            out[key] = tensor.clone()
            continue
        j = int(m.group(2))
        if j in source_to_student:
            new_key = key[: m.start(2)] + str(source_to_student[j]) + key[m.end(2) :]
            out[new_key] = tensor.clone()
    return out


def make_student(teacher, layers: list[int]):
    """A len(layers)-layer copy of `teacher` whose layer i is teacher layer layers[i]."""
    cfg = teacher.config.to_dict()
    cfg["num_hidden_layers"] = len(layers)
    config = type(teacher.config).from_dict(cfg)
    student = type(teacher)(config)
    student.load_state_dict(student_state_dict(teacher.state_dict(), layers), strict=True)
    return student


def depth_of(model) -> int:
    return int(model.config.num_hidden_layers)


# ---------------------------------------------------------------- loading


def _from_pretrained(loader, ref: str, what: str, **kw):
    """Load from a local folder, the local Hub cache, or the Hub, failing fast when offline."""
    path, local = resolve(ref, what)
    if local:
        try:
            return loader(path, **kw)
        except (OSError, ValueError) as e:
            raise UserError(
                f"{what} '{ref}': not a loadable Hugging Face model folder ({str(e).splitlines()[0][:200]})"
            ) from None
    try:
        return loader(path, local_files_only=True, **kw)
    except (OSError, ValueError):
        pass
    require_hub(path, what)
    try:
        return loader(path, **kw)
    except OSError as e:
        raise UserError(hub_unreachable_message(ref, what) + f" ({str(e).splitlines()[0][:160]})") from None


def load_tokenizer(ref: str, what: str = "teacher.model"):
    return _from_pretrained(AutoTokenizer.from_pretrained, ref, what)


def load_model_config(ref: str, what: str = "teacher.model"):
    return _from_pretrained(AutoConfig.from_pretrained, ref, what)


def load_classifier(ref: str, label_names: list[str], what: str = "teacher.model", log=print):
    """A sequence classifier with our label names (the head is new when `ref` is a plain encoder)."""
    id2label = dict(enumerate(label_names))
    config = _from_pretrained(
        AutoConfig.from_pretrained,
        ref,
        what,
        num_labels=len(label_names),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    # a classifier checkpoint with another number of classes keeps its encoder and gets a new head
    saved_labels = len(load_model_config(ref, what).id2label)
    model, info = _from_pretrained(
        AutoModelForSequenceClassification.from_pretrained,
        ref,
        what,
        config=config,
        output_loading_info=True,
        ignore_mismatched_sizes=saved_labels != len(label_names),
    )
    if info.get("mismatched_keys"):
        log(
            f"note: {what} '{ref}' was saved with {saved_labels} classes and this run has {len(label_names)}: "
            "its classification head starts random (newly initialised)"
        )
    note_new_weights(info["missing_keys"], ref, what, log)
    # transformers 5 keeps a checkpoint's own dtype: a bf16/fp16 checkpoint would train without fp32 master
    # weights. Training starts in fp32 (mixed precision, when on, is autocast on top of it)
    model = model.float()
    if not any(_LAYER_KEY.search(k) for k in model.state_dict()):
        raise UserError(
            f"{what} '{ref}': no encoder.layer.N weights found; only BERT-style encoders can be cut into students"
        )
    return model


def note_new_weights(missing_keys, ref: str, what: str, log) -> None:
    """One line of ours when weights outside the head were newly initialised (transformers' own report is silenced)."""
    modules = sorted({k.rsplit(".", 1)[0] for k in missing_keys if k.split(".")[0] not in HEAD_NAMES})
    if modules:
        log(
            f"note: {what} '{ref}' has no weights for {', '.join(modules)}; they start random "
            "(newly initialised), so they must be trained to mean anything"
        )


# ---------------------------------------------------------------- LoRA

HEAD_NAMES = {"classifier", "score"}  # the heads PEFT's SEQ_CLS task trains in full and saves
# what adapter_config.json names as the base: not a path (PEFT would resolve it from the working directory and
# could silently load another model there) but an invalid Hub id, so AutoPeftModel fails loudly and says why
ADAPTER_BASE_NOTE = (
    "base_model/ inside this adapter folder: PeftModel.from_pretrained(its model, folder); see README.md"
)


def find_pooler(model) -> str | None:
    """Dotted name of a BERT-style pooler (dense + tanh on [CLS], feeding the classifier), or None.

    RoBERTa-style heads have no pooler: their dense + out_proj live inside `classifier`, which PEFT trains anyway.
    """
    for name, module in model.named_modules():
        if name.split(".")[-1] == "pooler" and isinstance(getattr(module, "dense", None), torch.nn.Linear):
            return name
    return None


def pooler_decision(model, setting) -> tuple[bool, str]:
    """(train the pooler in full?, why in a few words) for lora.train_pooler = auto | True | False.

    auto trains it when it was never trained: its bias is all zeros (transformers initialises biases to zero, so a
    pooler missing from the checkpoint counts too; a trained pooler's bias is never exactly zero).
    """
    name = find_pooler(model)
    if name is None:
        if setting is True:
            raise UserError(
                "lora.train_pooler is true, but the model has no BERT pooler (its classifier head is "
                "trained in full already); use auto or false"
            )
        return False, "the model has no BERT pooler; the classifier head, trained in full, is the whole head"
    if setting != "auto":
        return setting, f"lora.train_pooler is {str(setting).lower()}"
    bias = model.get_submodule(name).dense.bias
    if bias is not None and not bool(bias.detach().any()):
        return True, f"auto: {name}.dense.bias is all zeros, so the pooler was never trained"
    return False, f"auto: {name} was trained (its bias is not zero), so it stays as pretrained"


def add_lora(model, cfg: LoraConfig, log=None):
    """Wrap with PEFT LoRA; task SEQ_CLS keeps the classifier head trainable (fully) and saved.

    The BERT pooler is trained in full and saved too when pooler_decision says so (lora.train_pooler).
    target_modules ["all-linear"] means every linear layer of the encoder, never the classifier head
    (the head is trained in full instead), nor a pooler trained in full.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    train_pooler, why = pooler_decision(model, cfg.train_pooler)
    pooler = [find_pooler(model)] if train_pooler else []
    if log:
        log(f"pooler {'trained in full' if train_pooler else 'frozen'} ({why})")
    if list(cfg.target_modules) == ["all-linear"]:
        targets = [
            n
            for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)
            and n.split(".")[0] not in HEAD_NAMES
            and not any(n.startswith(p + ".") for p in pooler)
        ]
    else:
        names = {n.split(".")[-1] for n, _ in model.named_modules()}
        missing = [t for t in cfg.target_modules if t not in names]
        if missing:
            raise UserError(
                f"lora.target_modules {missing} not found in the model; e.g. query, key, value, dense, or [all-linear]"
            )
        targets = list(cfg.target_modules)
    peft_cfg = PeftLoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=targets,
        use_rslora=cfg.use_rslora,
        use_dora=cfg.use_dora,
        modules_to_save=pooler or None,
    )  # PEFT adds the classifier itself
    return get_peft_model(model, peft_cfg)


def write_adapter_base_note(folder: Path) -> None:
    """Name the base in a saved adapter_config.json with ADAPTER_BASE_NOTE instead of the training machine's path.

    Done on the saved file, not the in-memory config: PEFT's save looks the base name up as a folder or Hub repo.
    """
    path = Path(folder) / "adapter_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    cfg["base_model_name_or_path"] = ADAPTER_BASE_NOTE
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


LORA_BASE_DIR = "base_model"


def load_stage_model(stage_dir: Path):
    """Reload a finished stage folder: a plain HF classifier, or a PEFT adapter on its base."""
    stage_dir = Path(stage_dir)
    if not (stage_dir / "adapter_config.json").exists():
        return AutoModelForSequenceClassification.from_pretrained(
            stage_dir, local_files_only=True, use_safetensors=True
        ).float()
    from peft import PeftModel

    base_dir = stage_dir / LORA_BASE_DIR
    base = AutoModelForSequenceClassification.from_pretrained(
        base_dir, local_files_only=True, use_safetensors=True
    ).float()
    return PeftModel.from_pretrained(base, stage_dir, is_trainable=False)


def parameter_counts(model) -> dict:
    """Parameters of the model as it predicts: PEFT keeps a frozen, unused original beside each module it
    trains in full (classifier, pooler); those originals are not counted."""
    total = sum(p.numel() for n, p in model.named_parameters() if ".original_module." not in n)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total_params": total, "trainable_params": trainable}


LORA_LOAD_LINES = (
    "from peft import PeftModel",
    "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
    'model = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(folder + "/base_model"), folder)',
    "tokenizer = AutoTokenizer.from_pretrained(folder)",
)
LORA_AUTO_NOTE = (
    "`AutoPeftModelForSequenceClassification.from_pretrained(folder)` fails on purpose: PEFT would look for "
    "the base by a name relative to the working directory, not to this folder, and could load another "
    "model; `adapter_config.json` therefore names the base with a note instead of a path."
)


def lora_readme(title: str) -> str:
    """The model card of a LoRA stage folder: the adapter loads on base_model/ with plain peft + transformers."""
    return "\n".join(
        [
            f"# {title}",
            "",
            "A PEFT LoRA adapter; `base_model/` holds the exact model it adapts "
            "(for a LoRA student, the cut of the pretrained teacher). Load it with:",
            "",
            "```python",
            *LORA_LOAD_LINES,
            "```",
            "",
            LORA_AUTO_NOTE,
            "",
        ]
    )
