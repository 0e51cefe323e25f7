"""Old path of distill_lora.train.models, kept for the int8 rebuild recipe stored in metrics.json of runs made
before the package had rooms: distill_lora.models.load_stage_model(...)."""

from distill_lora.train.models import load_stage_model  # noqa: F401
