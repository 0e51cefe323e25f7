"""What a stage id means: the one place that reads or builds the names of stage folders.

    teacher                     the fine-tuned full-depth model            (config section: teacher)
    student-<name>              a student distilled from its layers        (distill), e.g. student-odd
    lora-student, lora-teacher  LoRA on the pretrained cut / whole model   (lora)
    <source>-int8               a trained model with int8 weights          (not trained), e.g. teacher-int8
    ensemble-<a>+<b>…           mean probability of trained models         (not trained; report only)

Pure Python: the report reads ids from results.json without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

TEACHER = "teacher"
LORA_STUDENT, LORA_TEACHER = "lora-student", "lora-teacher"
LORA_STAGES = (LORA_STUDENT, LORA_TEACHER)
STUDENT_PREFIX, ENSEMBLE_PREFIX, INT8_SUFFIX = "student-", "ensemble-", "-int8"
STUDENT_ODD, STUDENT_EVEN = STUDENT_PREFIX + "odd", STUDENT_PREFIX + "even"  # the assignment's two students


@dataclass(frozen=True)
class StageKind:
    kind: str  # teacher, student, lora, int8, ensemble, or other (a name this tool never makes)
    section: str | None  # the config section whose train block trained it (None: not trained, or other)
    quantized_from: str | None = None
    members: tuple = ()  # an ensemble's stage ids

    @property
    def trained(self) -> bool:
        return self.kind not in ("int8", "ensemble")


def kind_of(stage_id: str) -> StageKind:
    if stage_id.endswith(INT8_SUFFIX):
        return StageKind("int8", None, quantized_from=stage_id[: -len(INT8_SUFFIX)])
    if stage_id.startswith(ENSEMBLE_PREFIX):
        names = stage_id[len(ENSEMBLE_PREFIX) :].split("+")
        return StageKind("ensemble", None, members=tuple(n if n.startswith("lora") else student_id(n) for n in names))
    if stage_id == TEACHER:
        return StageKind("teacher", "teacher")
    if stage_id.startswith(STUDENT_PREFIX):
        return StageKind("student", "distill")
    if stage_id in LORA_STAGES:
        return StageKind("lora", "lora")
    return StageKind("other", None)  # e.g. a hand-made results.json: the report still reads it


def is_student(stage_id: str) -> bool:
    """A distilled student (not its int8 copy)."""
    return kind_of(stage_id).kind == "student"


def is_lora(stage_id: str) -> bool:
    return kind_of(stage_id).kind == "lora"


def is_derived(stage_id: str) -> bool:
    """Made from trained models (int8 copy, ensemble), not trained itself."""
    return not kind_of(stage_id).trained


def student_id(layers_name: str) -> str:
    return STUDENT_PREFIX + layers_name


def int8_id(source: str) -> str:
    return source + INT8_SUFFIX


def ensemble_id(members) -> str:
    return ENSEMBLE_PREFIX + "+".join(m[len(STUDENT_PREFIX) :] if is_student(m) else m for m in members)


def int8_sources(stage_ids) -> list[str]:
    """The stages that get an int8 row: the teacher and the distilled students (LoRA stages do not)."""
    return [s for s in stage_ids if kind_of(s).kind in ("teacher", "student")]


def train_section(stage_id: str) -> str:
    """The config section whose train block applies: an int8 row evaluates with its source's."""
    k = kind_of(stage_id)
    return kind_of(k.quantized_from).section if k.kind == "int8" else k.section
