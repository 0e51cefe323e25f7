"""What a stage id means: the one place that reads or builds the names of stage folders.

    teacher                     the fine-tuned full-depth model            (config section: teacher)
    student-<name>              a student distilled from its layers        (distill), e.g. student-odd
    lora-student, lora-teacher  LoRA on the pretrained cut / whole model   (lora)
    lora-student.<adapter>      the same with one of lora.adapters         (lora), e.g. lora-student.dora
    <source>-int8               a trained model with int8 weights          (not trained), e.g. teacher-int8
    <source>-onnx, -onnx-int8   the same model run by ONNX Runtime (fp32;  (not trained; report.onnx_runtime),
                                its int8 dynamic-quantised copy)            e.g. student-odd-onnx-int8
    ensemble-<a>+<b>…           mean probability of trained models         (not trained; report only)

Pure Python: the report reads ids from results.json without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

TEACHER = "teacher"
LORA_STUDENT, LORA_TEACHER = "lora-student", "lora-teacher"
LORA_STAGES = (LORA_STUDENT, LORA_TEACHER)
STUDENT_PREFIX, ENSEMBLE_PREFIX, INT8_SUFFIX = "student-", "ensemble-", "-int8"
ONNX_SUFFIXES = {"-onnx-int8": "onnx-int8", "-onnx": "onnx"}  # stage-id suffix → backend (as predict --backend)
STUDENT_ODD, STUDENT_EVEN = STUDENT_PREFIX + "odd", STUDENT_PREFIX + "even"  # the assignment's two students


@dataclass(frozen=True)
class StageKind:
    kind: str  # teacher, student, lora, int8, onnx, ensemble, or other (a name this tool never makes)
    section: str | None  # the config section whose train block trained it (None: not trained, or other)
    quantized_from: str | None = None  # int8 rows: the fp32 stage
    exported_from: str | None = None  # onnx rows: the fp32 stage
    backend: str | None = None  # onnx rows: onnx or onnx-int8
    members: tuple = ()  # an ensemble's stage ids

    @property
    def trained(self) -> bool:
        return self.kind not in ("int8", "onnx", "ensemble")


def kind_of(stage_id: str) -> StageKind:
    for suffix, backend in ONNX_SUFFIXES.items():  # before -int8: "-onnx-int8" ends with it
        if stage_id.endswith(suffix):
            return StageKind("onnx", None, exported_from=stage_id[: -len(suffix)], backend=backend)
    if stage_id.endswith(INT8_SUFFIX):
        return StageKind("int8", None, quantized_from=stage_id[: -len(INT8_SUFFIX)])
    if stage_id.startswith(ENSEMBLE_PREFIX):
        names = stage_id[len(ENSEMBLE_PREFIX) :].split("+")
        return StageKind("ensemble", None, members=tuple(n if n.startswith("lora") else student_id(n) for n in names))
    if stage_id == TEACHER:
        return StageKind("teacher", "teacher")
    if stage_id.startswith(STUDENT_PREFIX):
        return StageKind("student", "distill")
    if lora_parts(stage_id)[0] in LORA_STAGES:
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


def lora_parts(stage_id: str) -> tuple[str, str | None]:
    """'lora-student.dora-r16' → ('lora-student', 'dora-r16'); 'lora-teacher' → ('lora-teacher', None)."""
    base, _, adapter = stage_id.partition(".")
    return base, adapter or None


def student_id(layers_name: str) -> str:
    return STUDENT_PREFIX + layers_name


def int8_id(source: str) -> str:
    return source + INT8_SUFFIX


def onnx_id(source: str, backend: str) -> str:
    return source + next(suffix for suffix, b in ONNX_SUFFIXES.items() if b == backend)


def ensemble_id(members) -> str:
    return ENSEMBLE_PREFIX + "+".join(m[len(STUDENT_PREFIX) :] if is_student(m) else m for m in members)


def int8_sources(stage_ids) -> list[str]:
    """The stages that get int8 (and ONNX Runtime) rows: the teacher and the distilled students (LoRA stages do
    not: their shipped form is an adapter on a base model)."""
    return [s for s in stage_ids if kind_of(s).kind in ("teacher", "student")]


def parse_comparison(entry) -> tuple[str, str] | None:
    """'A vs B' (report.primary) as (A, B); None when it is not two different, non-empty names."""
    parts = [x.strip() for x in entry.split(" vs ")] if isinstance(entry, str) else []
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) and parts[0] != parts[1] else None


def train_section(stage_id: str) -> str:
    """The config section whose train block applies: an int8 or onnx row evaluates with its source's."""
    k = kind_of(stage_id)
    source = k.quantized_from or k.exported_from
    return kind_of(source).section if source else k.section
