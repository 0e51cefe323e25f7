"""Fault injection for the reliability tests: crash points named by an environment variable.

DISTILL_LORA_FAULT=KIND@POINT, e.g. kill@teacher:step:3, term@student-odd:step:2, nan@teacher:nan:2.
KIND kill sends SIGKILL to this process (no cleanup runs, as on a preempted machine), term sends
SIGTERM, nan makes maybe() return True so the caller poisons its loss. Unset in normal use.
"""

from __future__ import annotations

import os
import signal

ENV = "DISTILL_LORA_FAULT"


def maybe(point: str) -> bool:
    spec = os.environ.get(ENV)
    if not spec or "@" not in spec:
        return False
    kind, _, where = spec.partition("@")
    if where != point:
        return False
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "term":
        os.kill(os.getpid(), signal.SIGTERM)
    return kind == "nan"
