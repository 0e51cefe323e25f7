"""distill-lora: how good is a half-depth distilled student, how good is cheap LoRA, and what does each cost."""

__version__ = "0.1.0"
