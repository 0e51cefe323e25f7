"""A binary run's numbers are those of the commit before multi-class support (issue 14).

tests/fixtures/binary_results.json was written from the shared tiny run (`finished_run`) made with the code of
commit bba3695, before any N-class change (and with the test tokenizer's fix of conftest.build_tiny_bert: every
word had been [UNK]), with `python tests/experiment/test_binary_unchanged.py RUN_DIR`. It holds every number of
results.json except timings, memory, hashes and paths, which are not results.

The three int8 rows (teacher-int8, student-odd-int8, student-even-int8, in all_stages and comparison) were recorded
again with the code of issue 25, which tests int8 one text at a time (their batched logits had moved with their batch
mates); every other number is still bba3695's.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "binary_results.json"
# not results: they change with the machine, the clone's path or the library versions
NOT_NUMBERS = {
    "wall_time_s", "samples_per_s", "peak_memory_bytes", "peak_memory_kind", "device", "config_hash",
    "weights_sha256", "inference", "timings", "run", "source", "test_texts", "weights_bytes", "weights_note",
    "report_settings", "processes", "precision", "time_s", "quantize_time_s", "fp32_weights_bytes",
    "fp32_cpu_inference", "latency_ms_batch1", "throughput_batch64", "source_config_hash", "fingerprint", "reused",
    "measured_on", "engine", "version", "weights_saved",
}  # fmt: skip


def numbers_of(node):
    """The results with the keys above removed, recursively."""
    if isinstance(node, dict):
        return {k: numbers_of(v) for k, v in node.items() if k not in NOT_NUMBERS}
    if isinstance(node, list):
        return [numbers_of(v) for v in node]
    return node


def assert_same(expected, actual, where="results"):
    """Equal structure; floats to 1e-4 relative (1e-6 absolute near 0): the same code gives the same bits only
    with the same number of threads (1 vs 2 threads moved an ECE by 1e-8 relative, a distillation KL of 8e-5 by
    6e-9, and an int8 row's ECE by 7e-5 relative: summation order and quantised kernels), while a real change
    moves a metric by 1/40 and a loss by far more."""
    if isinstance(expected, dict):
        missing = set(expected) - set(actual)
        assert not missing, f"{where}: keys {sorted(missing)} gone"
        for k in expected:
            assert_same(expected[k], actual[k], f"{where}.{k}")
    elif isinstance(expected, list):
        assert len(expected) == len(actual), f"{where}: length {len(actual)}, expected {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual)):
            assert_same(e, a, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(actual, float) and math.isclose(expected, actual, rel_tol=1e-4, abs_tol=1e-6), (
            f"{where}: {actual!r}, expected {expected!r}"
        )
    else:
        assert expected == actual, f"{where}: {actual!r}, expected {expected!r}"


def test_binary_results_unchanged(finished_run):
    actual = numbers_of(json.loads((finished_run["output"] / "results.json").read_text()))
    assert_same(json.loads(FIXTURE.read_text()), actual)


if __name__ == "__main__":
    results = json.loads((Path(sys.argv[1]) / "results.json").read_text())
    FIXTURE.write_text(json.dumps(numbers_of(results), sort_keys=True) + "\n", encoding="utf-8")
