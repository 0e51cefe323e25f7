"""StageRecord: the fields of one model's result — a stage folder's metrics.json and a row of results.json.

The one home of those fields: trained stages, int8 and ONNX rows and the report's ensembles all build their record
here. Pure Python: the report reads them without torch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class StageRecord:
    # every record has these
    stage: str
    model_type: str
    test: dict  # classification_metrics on the test split (the one pass over it)
    wall_time_s: float  # what it took to obtain: training; int8: its source's + quantising; ensemble: sum
    peak_memory_bytes: int | None
    peak_memory_kind: str | None
    depth: int  # encoder layers run at inference (an ensemble: all of its members')
    total_params: int
    trainable_params: int
    device: str | None
    validation_history: list = field(default_factory=list)  # one entry per epoch run; [] when not trained
    selected_epoch: int | None = None
    stopped_early: bool | None = None
    train_loss: float | None = None  # CE of the selected epoch
    train_total_loss: float | None = None  # the stage's whole objective (distillation: the weighted sum)
    samples_per_s: float | None = None
    weights_bytes: int | None = None
    # the rest only where they apply (None: left out of the JSON)
    processes: int | None = None
    precision: str | None = None
    select_metric: str | None = None
    test_ci: dict | None = None  # 95% CIs of this seed's test accuracy and macro-F1
    train_settings: dict | None = None  # lr, batch_size, epochs: what the report's setup table shows
    loss_weights: dict | None = None  # a student's temperature and loss weights
    recipe: str | None = None  # a student trained with one of distill.recipes ('odd.ce'): its name
    layer_choice: dict | None = None  # a data-driven student (angular): the per-layer distances and the layers kept
    teacher_layers: list | None = None  # the teacher layers a student (or lora-student) is cut from
    teacher_targets: dict | None = None  # a student's teacher-logit pass: time_s, peak memory, reused
    pooler_trained: bool | None = None  # LoRA: the pooler decision (lora.train_pooler)
    adapter: str | None = None  # a LoRA model trained with one of lora.adapters ('lora-student.dora'): its name
    quantized_from: str | None = None  # int8 rows
    quantization: dict | None = None
    weights_saved: bool | None = None
    weights_note: str | None = None
    int8_params: int | None = None
    exported_from: str | None = None  # onnx rows: the fp32 stage, its backend, and how the file was made
    backend: str | None = None
    conversion: dict | None = None
    fp32_weights_bytes: int | None = None
    source_config_hash: str | None = None
    ensemble_of: list | None = None  # ensemble rows: member stage ids
    config_hash: str | None = None
    threshold: float | None = None  # train.tune_threshold: the p(positive) cut and the test metrics at it
    test_at_threshold: dict | None = None
    inference: dict | None = None  # latency and throughput right after training
    fp32_cpu_inference: dict | None = None
    weights_sha256: str | None = None
    predictions: dict | None = None  # in results.json: pred and prob_positive per test text

    def to_dict(self) -> dict:
        """The JSON form: every field, less the optional ones that do not apply (None)."""
        required = {f.name for f in dataclasses.fields(self)[:STAGE_RECORD_ALWAYS]}
        return {k: v for k, v in dataclasses.asdict(self).items() if k in required or v is not None}


# the first fields, up to weights_bytes, are written even when None
STAGE_RECORD_ALWAYS = [f.name for f in dataclasses.fields(StageRecord)].index("weights_bytes") + 1
