"""The CPU serving section (report.onnx_runtime): each model as a CPU server could run it, side by side.

PyTorch fp32, torch's dynamic int8 (when the run has it) and ONNX Runtime fp32 and int8 (results.json
"onnx_runtime"), each with its size, CPU latency and throughput, test macro-F1 with its CI, how often it labels a
text as PyTorch fp32 does, and a verdict against PyTorch fp32. The ONNX Runtime rows are tested against their
source only, as a family of their own: they ask whether the runtime changed the model, not how it ranks against
the other models, so they stay out of the all-pairs table (and its Holm adjustment). Pure functions of results.json.
"""

from __future__ import annotations

import statistics

import numpy as np

from distill_lora.report.analysis import (
    find_pair,
    runs_of,
    summarise,
    test_pairs,
    times_text,
    use_joint_timings,
)
from distill_lora.report.tables import _ci, _md_table, _mib
from distill_lora.stage_ids import kind_of


def cpu_serving(result: dict, summary: dict, pairs: list[dict], timings, alpha: float, resamples: int, boot_seed: int):
    """The section's numbers, or None when the run has no ONNX Runtime rows: {"summary", "pairs", "groups", "cpu"}.
    summary and pairs: the report's own (torch int8 and PyTorch fp32 come from there); timings: results.json's."""
    stages = onnx_stage_ids(result)
    if not stages:
        return None
    view = with_onnx_rows(result)
    onnx_summary = summarise(view, resamples, boot_seed, stages=stages)
    use_joint_timings(view, onnx_summary, timings)
    which = [(kind_of(st).exported_from, st) for st in stages]
    # each row against its PyTorch fp32 source, Holm over these pairs only: they ask whether the runtime changed
    # the model, not how it ranks against the other models
    tests = test_pairs(view, [(a, b) for a, b in which if a in summary], alpha, resamples, boot_seed)
    return {
        "summary": onnx_summary,
        "pairs": tests,
        "groups": cpu_backends(view, summary, pairs, onnx_summary, tests),
        "cpu": (timings or {}).get("device") or next(iter(onnx_summary.values()))["device"],
    }


def with_onnx_rows(result: dict) -> dict:
    """The comparison with its ONNX Runtime rows (results.json "onnx_runtime") beside the others, for the CPU
    serving section; every other section reads `result` without them."""
    onnx = result.get("onnx_runtime") or {}
    return {
        **result,
        "per_seed": {seed: {**stages, **onnx.get(seed, {})} for seed, stages in result["per_seed"].items()},
    }


def onnx_stage_ids(result: dict) -> list[str]:
    """The ONNX Runtime rows present in every seed (none without report.onnx_runtime)."""
    onnx = result.get("onnx_runtime") or {}
    per_seed = [onnx.get(str(s), {}) for s in result["seeds"]]
    return [st for st in per_seed[0] if all(st in p for p in per_seed)] if per_seed else []


BACKEND_NAMES = {
    "int8": "torch int8 (dynamic)",
    "onnx": "ONNX Runtime fp32",
    "onnx-int8": "ONNX Runtime int8 (dynamic)",
}


def cpu_backends(view: dict, summary: dict, pairs: list[dict], onnx_summary: dict, onnx_tests: list[dict]) -> list:
    """Per model with ONNX Runtime rows, its CPU serving options side by side: PyTorch fp32, torch int8 (when the
    run has it), ONNX Runtime fp32 and int8. Each: size, CPU latency and throughput (the summary's: timed together
    when the run was), macro-F1 with its CI, the share of test texts labelled as PyTorch fp32 labels them, and the
    verdict against PyTorch fp32 (torch int8: its pair in the all-pairs family; ONNX rows: their own family).
    view: the comparison with the ONNX rows (with_onnx_rows)."""
    out = []
    for source in dict.fromkeys(s["exported_from"] for s in onnx_summary.values()):
        if source not in summary:
            continue
        rows = {st: s for st, s in onnx_summary.items() if s["exported_from"] == source}
        fp32_cpu = next(iter(rows.values()))  # each ONNX row timed its PyTorch fp32 source on the same CPU
        options = [
            {
                "stage": source,
                "backend": "PyTorch fp32",
                "bytes": fp32_cpu["fp32_weights_bytes"],
                "latency_ms": fp32_cpu.get("fp32_cpu_latency_ms_batch1", {}).get("mean"),
                "throughput": fp32_cpu.get("fp32_cpu_throughput_batch64", {}).get("mean"),
                "summary": summary[source],
                "agreement": None,
                "pair": None,
            }
        ]
        cpu_rows = [(st, summary[st], pairs) for st in summary if summary[st].get("quantized_from") == source]
        for stage, s, family in cpu_rows + [(st, s, onnx_tests) for st, s in rows.items()]:
            options.append(
                {
                    "stage": stage,
                    "backend": BACKEND_NAMES[s.get("backend") or "int8"],
                    "bytes": s["weights_bytes"],
                    "latency_ms": s.get("latency_ms_batch1", {}).get("mean"),
                    "throughput": s.get("throughput_batch64", {}).get("mean"),
                    "summary": s,
                    "agreement": _agreement(view, source, stage),
                    "pair": find_pair(family, source, stage),
                }
            )
        out.append({"source": source, "options": options})
    return out


def _agreement(result: dict, a: str, b: str) -> float:
    """Share of test texts that `a` and `b` label alike, mean over seeds."""
    shares = [
        float(np.mean(np.array(x["predictions"]["pred"]) == np.array(y["predictions"]["pred"])))
        for x, y in zip(runs_of(result, a), runs_of(result, b))
    ]
    return statistics.mean(shares)


def cpu_choice_sentence(group: dict) -> str | None:
    """Which CPU option of one model the numbers favour: the fastest at batch 1 among those not significantly
    worse than PyTorch fp32; None when the options (PyTorch fp32 among them) were not timed."""
    timed = [o for o in group["options"] if o["latency_ms"] is not None]
    fp32 = group["options"][0]
    if len(timed) < 2 or fp32["latency_ms"] is None:
        return None
    kept = [o for o in timed if o["pair"] is None or not _worse_than(o["pair"], group["source"])]
    best = min(kept, key=lambda o: o["latency_ms"])
    worse = [o["backend"] for o in timed if o not in kept]
    text = f"{group['source']} on this CPU: "
    if best is fp32:
        text += "no option that is not significantly worse than PyTorch fp32 is faster than it at batch 1"
    else:
        text += (
            f"{best['backend']} is the fastest option at batch 1 that is not significantly worse than PyTorch fp32: "
            f"{best['latency_ms']:.2f} vs {fp32['latency_ms']:.2f} ms per text "
            f"({times_text(fp32['latency_ms'] / best['latency_ms'], 'faster', 'slower')}), "
            f"{best['bytes'] / 2**20:.1f} vs {fp32['bytes'] / 2**20:.1f} MiB, macro-F1 "
            f"{best['summary']['macro_f1']['mean']:.4f} vs {fp32['summary']['macro_f1']['mean']:.4f}, same label as "
            f"PyTorch fp32 on {best['agreement']:.1%} of the test texts"
        )
    if worse:
        text += f"; significantly worse than PyTorch fp32 (verdict column): {', '.join(worse)}"
    return text + "."


def _worse_than(p: dict, source: str) -> bool:
    return p["verdict"] == "significant" and p["winner"] == source


def _verdict(p: dict | None) -> str:
    if p is None:
        return "– (reference)"
    return p["verdict"] if p["verdict"] != "significant" else f"significant: {p['winner']} better"


HEADER = [
    "Model",
    "Backend",
    "Size",
    "× smaller",
    "CPU latency, batch 1 (ms)",
    "× faster",
    "CPU throughput, batch 64 (ex/s)",
    "× faster",
    "Macro-F1 [95% CI]",
    "Change",
    "Same label as PyTorch fp32",
    "Verdict vs PyTorch fp32",
]


def cpu_serving_section(cpu: dict, alpha: float, d: int) -> list[str]:
    """The section's markdown from cpu_serving's numbers: one table (every model's CPU options), one sentence per
    model."""
    groups = cpu["groups"]
    family = f"Holm over the {len(cpu['pairs'])} ONNX Runtime rows' comparisons, alpha = {alpha}"
    sentences = [x for x in (cpu_choice_sentence(g) for g in groups) if x]
    options = [o for g in groups for o in g["options"]]
    return [
        "## CPU serving: PyTorch and ONNX Runtime",
        "",
        "Each model as a CPU server could run it (`report.onnx_runtime`): PyTorch fp32, "
        + (
            "torch's dynamic int8 (the section above), "
            if any(o["backend"] == BACKEND_NAMES["int8"] for o in options)
            else ""
        )
        + "and ONNX Runtime on the files in `seed-S/<model>-onnx/` (torch.onnx's fp32 export) and "
        "`seed-S/<model>-onnx-int8/` (ONNX Runtime's dynamic quantisation of it: int8 weights, activations quantised "
        "per batch). "
        + (
            f"Latency and throughput on {cpu['cpu']}, ONNX Runtime with as many threads as torch, × against "
            "PyTorch fp32 on the same CPU. "
            if any(o["latency_ms"] is not None for o in options)
            else "Not timed (`report.measure_speed: false`). "
        )
        + "Size: PyTorch counts its tensors (fp32: 4 bytes per value); ONNX Runtime the "
        "file's bytes. Macro-F1 with its 95% CI as in the full results. Verdict vs PyTorch fp32: torch int8 as in the "
        f"pairs table; the ONNX Runtime rows tested against their PyTorch fp32 source only ({family}; McNemar "
        "per seed, or the paired cluster bootstrap with grouped texts, as in the pairs table).",
        "",
        _md_table(HEADER, [_option_row(o, g["options"][0], d) for g in groups for o in g["options"]]),
        "",
        *[f"- {x}" for x in sentences],
        *([""] if sentences else []),
    ]


def _option_row(o: dict, ref: dict, d: int) -> list[str]:
    """One CPU option's cells; ref: its model's PyTorch fp32 option."""
    timed = o["latency_ms"] is not None and ref["latency_ms"] is not None
    return [
        o["stage"],
        o["backend"],
        _mib(o["bytes"]),
        f"{ref['bytes'] / o['bytes']:.2f}",
        f"{o['latency_ms']:.2f}" if timed else "–",
        f"{ref['latency_ms'] / o['latency_ms']:.2f}" if timed else "–",
        f"{o['throughput']:.1f}" if timed else "–",
        f"{o['throughput'] / ref['throughput']:.2f}" if timed else "–",
        _ci(o["summary"], "macro_f1", d),
        f"{o['summary']['macro_f1']['mean'] - ref['summary']['macro_f1']['mean']:+.{d}f}",
        "–" if o["agreement"] is None else f"{o['agreement']:.1%}",
        _verdict(o["pair"]),
    ]
