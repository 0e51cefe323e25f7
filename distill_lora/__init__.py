"""distill-lora: how good is a half-depth distilled student, how good is cheap LoRA, and what does each cost.

Four rooms, one per product, over a few shared modules:

    train/        one training run: data, models, step losses, the loop, checkpoints, data-parallel helpers, costs
    experiment/   an experiment of stages in a run folder: the stage skeleton, the pipeline, int8 rows, sweep, timing
    report/       the report: pure functions of results.json (tables, statistics, plots, analysis)
    use/          using a finished model: predict, export and its model card, serve, out-of-domain evaluation

    shared        config (every default, with help), errors, files (atomic writes), faults (test hooks), metrics,
                  stage_ids (what a stage id means), records (StageRecord: what a stage records)
    top           cli (parsing only) and bench (the speed benchmark) may use everything

Layering rules (tests/test_layout.py reads the imports and enforces them):
- the shared modules import only each other;
- train/ and report/ import only the shared modules: train/ never writes run folders (its callers hand it the
  folders it may write), and report/ never imports torch;
- experiment/ may import train/ and report/; use/ may import train/, report/ and experiment/ (the run layout);
- nothing imports upward, imports are absolute (distill_lora.…), and no function passes ~60 lines or 8
  arguments without a reason written in that test.

Old import paths that users may have in commands or stored files are kept by three one-line shims at the top:
serve (`uvicorn --factory distill_lora.serve:app_from_env`), quantize and models (the int8 rebuild recipe in
metrics.json of runs made before the rooms).
"""

__version__ = "0.1.0"
