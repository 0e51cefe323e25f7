"""report: costs are labelled with the device that measured them (each stage's metrics.json), not with the
process that rewrote the report."""

import json

from distill_lora.report.write import measured_on, write_report


def header_and_costs(md: str) -> tuple[str, str]:
    header = next(line for line in md.splitlines() if line.startswith("Device"))
    costs = next(line for line in md.splitlines() if line.startswith("Measured on"))
    return header, costs


def test_report_names_the_device_each_cost_was_measured_on(finished_run, tmp_path):
    results = json.loads((finished_run["output"] / "results.json").read_text())
    measured = results["comparison"]["per_seed"]["0"]["teacher"]["device"]
    assert measured.startswith("cpu (")
    results["run"]["device"] = "cpu (64 threads)"  # a no-op re-run with another thread count measured nothing
    write_report(tmp_path, results, resamples=100)
    md = (tmp_path / "report.md").read_text()
    header, costs = header_and_costs(md)
    assert header.startswith(f"Device: {measured}. Numbers:") and costs.startswith(f"Measured on {measured}. ")
    assert "64 threads" not in md

    results["comparison"]["per_seed"]["0"]["lora-teacher"]["device"] = "NVIDIA H200"  # trained elsewhere
    write_report(tmp_path, results, resamples=100)
    md = (tmp_path / "report.md").read_text()
    header, costs = header_and_costs(md)
    assert header.startswith(f"Devices: {measured} (teacher, ") and "; NVIDIA H200 (lora-teacher). Numbers" in header
    costs_table = md.split("## Costs", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in costs_table.splitlines() if line.startswith("| lora-teacher |"))
    assert row.count("on NVIDIA H200") == 1, row  # training time; its latency was timed with the others at the end
    del results["timings"]  # a run from before the joint timing: each stage's own timing, on its own device
    write_report(tmp_path, results, resamples=100)
    costs_table = (tmp_path / "report.md").read_text().split("## Costs", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in costs_table.splitlines() if line.startswith("| lora-teacher |"))
    assert row.count("on NVIDIA H200") == 3, row  # training time, latency, throughput


def test_measured_on_falls_back_to_the_run_for_old_results():
    assert measured_on({"teacher": {}, "student-odd": {}}, "cpu (2 threads)") == "cpu (2 threads)"
    int8 = {"device": "cpu (1 threads)", "quantized_from": "teacher"}  # said in the int8 section
    assert measured_on({"teacher": {"device": "NVIDIA H200"}, "teacher-int8": int8}, "x") == "NVIDIA H200"
