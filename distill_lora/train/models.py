"""Models: load the teacher, cut a student out of it (layer surgery), add LoRA, reload a stage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from distill_lora.config import LoraConfig
from distill_lora.errors import UserError
from distill_lora.train.families import Family, family_of
from distill_lora.train.sources import hub_unreachable_message, require_hub, resolve


def student_state_dict(teacher_state: dict, layers: list[int], family: Family) -> dict:
    """Teacher weights renamed for a student: student layer i ← teacher layer layers[i] (1-based).

    Everything outside the encoder layers (embeddings, relative positions, pooler, classifier) is copied as is;
    tensors the family's first layer has no place for (family.first_layer_drops) are left out of student layer 0.
    """
    layer_key = re.compile(rf"^{re.escape(family.layers)}\.(\d+)\.")
    source_to_student = {teacher_idx - 1: i for i, teacher_idx in enumerate(layers)}
    out = {}
    for key, tensor in teacher_state.items():
        m = layer_key.search(key)
        if m is None:
            out[key] = tensor.clone()
            continue
        i = source_to_student.get(int(m.group(1)))
        if i is None or (i == 0 and key[m.end() :].startswith(family.first_layer_drops)):
            continue
        out[key[: m.start(1)] + str(i) + key[m.end(1) :]] = tensor.clone()
    return out


def student_config(teacher_config, layers: list[int]):
    """The teacher's config for len(layers) layers; per-layer lists (ModernBERT's layer_types) follow the layers."""
    family = family_of(teacher_config)
    cfg = teacher_config.to_dict()
    cfg[family.depth_key] = len(layers)
    for key in family.per_layer_config:
        cfg[key] = [cfg[key][j - 1] for j in layers]
    return type(teacher_config).from_dict(cfg)


def make_student(teacher, layers: list[int]):
    """A len(layers)-layer copy of `teacher` whose layer i is teacher layer layers[i]."""
    family = family_of(teacher.config)
    student = type(teacher)(student_config(teacher.config, layers))
    student.load_state_dict(student_state_dict(teacher.state_dict(), layers, family), strict=True)
    return student


def depth_of(model) -> int:
    return int(model.config.num_hidden_layers)


def layer_cls(model, hidden_states, layers) -> list[torch.Tensor]:
    """The [CLS] vector (B, H) of the output of each of `layers` (1-based: hidden_states[l]), all on one footing.

    Where the family has a final norm (ModernBERT), transformers returns the last layer's output after it and every
    other layer's before it. The others go through the model's own final norm too, so that a teacher layer and the
    student layer standing for it are compared like with like (a student's last layer is always its model's last).
    """
    model = getattr(model, "module", model)  # under DistributedDataParallel
    family = family_of(model.config)
    norm = model.get_submodule(family.final_norm) if family.final_norm else None
    depth = depth_of(model)
    return [norm(hidden_states[i][:, 0]) if norm and i < depth else hidden_states[i][:, 0] for i in layers]


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
    """The checkpoint's config, refused early when its family is not one we can cut and adapt (families.py)."""
    config = _from_pretrained(AutoConfig.from_pretrained, ref, what)
    family_of(config, f"{what} '{ref}'")
    return config


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
    family = family_of(model.config, f"{what} '{ref}'")
    try:
        model.get_submodule(family.layers)
    except AttributeError:
        raise UserError(
            f"{what} '{ref}': a {family.name} model without {family.layers} (transformers names its parts "
            "otherwise in this version); students and LoRA need the layer list there"
        ) from None
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


def in_head(name: str) -> bool:
    """Whether a module is (inside) a head PEFT's SEQ_CLS trains in full: as PEFT matches, any part of the dotted
    name that ends in classifier or score (DistilBERT's pre_classifier included)."""
    parts = name.split(".")
    return any(".".join(parts[: i + 1]).endswith(tuple(HEAD_NAMES)) for i in range(len(parts)))


def find_pooler(model) -> str | None:
    """Dotted name of the head part outside `classifier` that LoRA may train in full (BERT's pooler, DeBERTa's context
    pooler, ModernBERT's head), or None: RoBERTa's and ELECTRA's dense + out_proj live inside `classifier`, which PEFT
    trains anyway (families.py)."""
    name = family_of(model.config).pooler
    return name if name is not None and _has_module(model, name) else None


def _has_module(model, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def pooler_decision(model, setting) -> tuple[bool, str]:
    """(train the pooler in full?, why in a few words) for lora.train_pooler = auto | True | False.

    auto trains it when it was never trained: its tell-tale tensors (family.untrained: biases, LayerNorm weights)
    still hold their initial values (zeros, ones), so a pooler missing from the checkpoint counts too; a trained
    pooler's bias is never exactly zero.
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
    params = dict(model.get_submodule(name).named_parameters())
    signs = {  # tensor name → (its initial value, whether it still holds it)
        f"{name}.{key}": (value, bool((params[key].detach() == value).all()))
        for key, value in family_of(model.config).untrained
        if key in params
    }
    if signs and all(held for _, held in signs.values()):
        said = " and ".join(f"{k} is all {'zeros' if v == 0 else 'ones'}" for k, (v, _) in signs.items())
        return True, f"auto: {said}, so the pooler was never trained"
    moved = ", ".join(k.rsplit(".", 1)[-1] for k, (_, held) in signs.items() if not held) or "tell-tale tensors"
    return False, f"auto: {name} was trained (its {moved} moved from the initial value), so it stays as pretrained"


def lora_target_names(target_modules, config) -> list[str]:
    """lora.target_modules with `auto` replaced by the family's default (query and value projections)."""
    family = family_of(config)
    return [t for x in target_modules for t in (family.lora_targets if x == "auto" else [x])]


def _lora_targets(model, target_modules, pooler: list[str]) -> list[str]:
    """Module names PEFT wraps: the family's default for auto, every encoder linear for all-linear (never the head
    PEFT trains in full, nor a pooler trained in full), or the names given, checked."""
    if list(target_modules) == ["all-linear"]:
        return [
            n
            for n, m in model.named_modules()
            if isinstance(m, torch.nn.Linear)
            and not in_head(n)
            and not any(n == p or n.startswith(p + ".") for p in pooler)
        ]
    targets = lora_target_names(target_modules, model.config)
    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t not in names]
    if missing:
        family = family_of(model.config)
        raise UserError(
            f"lora.target_modules {missing} not found in the model; this {family.name} model's query and value "
            f"projections are {', '.join(family.lora_targets)} (what [auto] picks); or use [all-linear]"
        )
    return targets


def add_lora(model, cfg: LoraConfig, log=None):
    """Wrap with PEFT LoRA; task SEQ_CLS keeps the classifier head trainable (fully) and saved.

    The pooler (BERT's, DeBERTa's context pooler, ModernBERT's head) is trained in full and saved too when
    pooler_decision says so (lora.train_pooler). target_modules: [auto] = the family's query and value projections;
    [all-linear] = every linear layer of the encoder, never the classifier head (the head is trained in full
    instead), nor a pooler trained in full.
    """
    from peft import LoraConfig as PeftLoraConfig
    from peft import TaskType, get_peft_model

    train_pooler, why = pooler_decision(model, cfg.train_pooler)
    pooler = [find_pooler(model)] if train_pooler else []
    if log:
        log(f"pooler {'trained in full' if train_pooler else 'frozen'} ({why})")
    targets = _lora_targets(model, cfg.target_modules, pooler)
    if cfg.method == "vera":  # one pair of frozen random matrices shared by every layer; per-layer scaling vectors
        from peft import VeraConfig

        vera = VeraConfig(
            task_type=TaskType.SEQ_CLS,
            r=cfg.r,
            target_modules=targets,
            vera_dropout=cfg.dropout,
            modules_to_save=pooler or None,
            save_projection=True,  # the shared matrices travel with the adapter (no PRNG key to trust on reload)
        )
        return get_peft_model(model, vera)
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
