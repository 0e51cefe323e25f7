"""Old path of distill_lora.use.serve, kept for `uvicorn --factory distill_lora.serve:app_from_env` (documented
before the package had rooms). New commands name distill_lora.use.serve:app_from_env."""

from distill_lora.use.serve import app_from_env  # noqa: F401
