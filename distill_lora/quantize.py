"""Old path of distill_lora.experiment.quantize, kept for the int8 rebuild recipe stored in metrics.json of runs
made before the package had rooms: distill_lora.quantize.quantize_dynamic_int8(...)."""

from distill_lora.experiment.quantize import quantize_dynamic_int8  # noqa: F401
