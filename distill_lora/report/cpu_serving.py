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

from distill_lora.report.findings import times_text
from distill_lora.report.format import ci_text, md_table, mib
from distill_lora.report.summary import (
    find_pair,
    onnx_stage_ids,
    runs_of,
    summarise,
    use_joint_timings,
    with_onnx_rows,
)
from distill_lora.report.verdicts import NON_INFERIOR


def cpu_serving(result: dict, summary: dict, pairs: list[dict], timings, resamples: int, boot_seed: int):
    """The section's numbers, or None when the run has no ONNX Runtime rows: {"summary", "pairs", "groups", "cpu"}.
    summary and pairs: the report's own (every CPU row's verdict is in the serving family of `pairs`); timings:
    results.json's."""
    stages = onnx_stage_ids(result)
    if not stages:
        return None
    view = with_onnx_rows(result)
    onnx_summary = summarise(view, resamples, boot_seed, stages=stages)
    use_joint_timings(view, onnx_summary, timings)
    serving = [p for p in pairs if p["family"] == "serving"]
    return {
        "summary": onnx_summary,
        "pairs": serving,
        "groups": cpu_backends(view, summary, serving, onnx_summary),
        "cpu": (timings or {}).get("device") or next(iter(onnx_summary.values()))["device"],
    }


BACKEND_NAMES = {
    "int8": "torch int8 (dynamic)",
    "onnx": "ONNX Runtime fp32",
    "onnx-int8": "ONNX Runtime int8 (dynamic)",
}


def cpu_backends(view: dict, summary: dict, serving: list[dict], onnx_summary: dict) -> list:
    """Per model with ONNX Runtime rows, its CPU serving options side by side: PyTorch fp32, torch int8 (when the
    run has it), ONNX Runtime fp32 and int8. Each: size, CPU latency and throughput (the summary's: timed together
    when the run was), macro-F1 with its CI, the share of test texts labelled as PyTorch fp32 labels them, and the
    verdict against PyTorch fp32 (the serving family: non-inferior at report.serving_margin, or not shown).
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
        cpu_rows = [(st, summary[st]) for st in summary if summary[st].get("quantized_from") == source]
        for stage, s in cpu_rows + list(rows.items()):
            options.append(
                {
                    "stage": stage,
                    "backend": BACKEND_NAMES[s.get("backend") or "int8"],
                    "bytes": s["weights_bytes"],
                    "latency_ms": s.get("latency_ms_batch1", {}).get("mean"),
                    "throughput": s.get("throughput_batch64", {}).get("mean"),
                    "summary": s,
                    "agreement": _agreement(view, source, stage),
                    "pair": find_pair(serving, source, stage),
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
    """Which CPU option of one model the numbers favour: the fastest at batch 1 among those shown non-inferior to
    PyTorch fp32 (the serving family); none recommended when no option is. None when the options (PyTorch fp32
    among them) were not timed."""
    timed = [o for o in group["options"] if o["latency_ms"] is not None]
    fp32 = group["options"][0]
    if len(timed) < 2 or fp32["latency_ms"] is None:
        return None
    shown = [o for o in timed if o["pair"] is not None and o["pair"]["verdict"] == NON_INFERIOR]
    text = f"{group['source']} on this CPU: "
    if not shown:
        return text + (
            "no option is shown non-inferior to PyTorch fp32 at the margin, so the numbers recommend none of them "
            "(a larger test set, or more seeds, could show it)."
        )
    best = min(shown, key=lambda o: o["latency_ms"])
    if best["latency_ms"] >= fp32["latency_ms"]:
        return text + "no option shown non-inferior to PyTorch fp32 is faster than it at batch 1."
    return text + (
        f"{best['backend']} is the fastest option at batch 1 shown non-inferior to PyTorch fp32: "
        f"{best['latency_ms']:.2f} vs {fp32['latency_ms']:.2f} ms per text "
        f"({times_text(fp32['latency_ms'] / best['latency_ms'], 'faster', 'slower')}), "
        f"{best['bytes'] / 2**20:.1f} vs {fp32['bytes'] / 2**20:.1f} MiB, macro-F1 "
        f"{best['summary']['macro_f1']['mean']:.4f} vs {fp32['summary']['macro_f1']['mean']:.4f}, same label as "
        f"PyTorch fp32 on {best['agreement']:.1%} of the test texts."
    )


def _verdict(p: dict | None) -> str:
    return "– (reference)" if p is None else p["verdict"]


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
    margin = next((p["noninferiority"]["margin"] for p in cpu["pairs"]), None)
    family = f"one-sided, margin {margin} macro-F1, Holm over the {len(cpu['pairs'])} rows of the serving family"
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
        "per input, tested one text at a time). "
        + (
            f"Latency and throughput on {cpu['cpu']}, ONNX Runtime with as many threads as torch, × against "
            "PyTorch fp32 on the same CPU. "
            if any(o["latency_ms"] is not None for o in options)
            else "Not timed (`report.measure_speed: false`). "
        )
        + "Size: PyTorch counts its tensors (fp32: 4 bytes per value); ONNX Runtime the "
        "file's bytes. Macro-F1 with its 95% CI as in the full results. Verdict vs PyTorch fp32: each row is tested "
        f"against its PyTorch fp32 source only, for non-inferiority ({family}, alpha = {alpha}): *non-inferior* "
        "when its macro-F1 is shown to be less than the margin below the source's; *not shown non-inferior* "
        "otherwise (which is not the same as worse).",
        "",
        md_table(HEADER, [_option_row(o, g["options"][0], d) for g in groups for o in g["options"]]),
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
        mib(o["bytes"]),
        f"{ref['bytes'] / o['bytes']:.2f}",
        f"{o['latency_ms']:.2f}" if timed else "–",
        f"{ref['latency_ms'] / o['latency_ms']:.2f}" if timed else "–",
        f"{o['throughput']:.1f}" if timed else "–",
        f"{o['throughput'] / ref['throughput']:.2f}" if timed else "–",
        ci_text(o["summary"], "macro_f1", d),
        f"{o['summary']['macro_f1']['mean'] - ref['summary']['macro_f1']['mean']:+.{d}f}",
        "–" if o["agreement"] is None else f"{o['agreement']:.1%}",
        _verdict(o["pair"]),
    ]
