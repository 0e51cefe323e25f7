"""distill-lora: how good is a half-depth distilled student, how good is cheap LoRA, and what does each cost.

Four rooms, one per product, over a few shared modules (docs/architecture.md says the same, module by module):

    train/        one training run: data, sources, families, layer_specs, models, layer_choice, losses, steps, trainer,
                  checkpoint, distributed, costs, runtimes (int8 and ONNX forms of a model, and their session), bench
                  (the training-speed benchmark)
    experiment/   an experiment of stages in a run folder: runs, stage, pipeline, atlas, results,
                  derived, sweep, study_storage, timing, tracking, validate, preflight,
                  outcome
    report/       the report, pure functions of results.json: summary, verdicts, stats, format, tables, findings,
                  write, plots, slices, cpu_serving, atlas
    use/          using a finished model: predict, export, model_card, serve, evaluate

    shared        config (every default, with help), errors, files (atomic writes), faults (test hooks), metrics,
                  stage_ids (what a stage id means), records (StageRecord: what a stage records)
    top           cli (parsing, then a hand-over to a room) may use everything

Layering rules (tests/test_layout.py reads the imports and enforces them):
- the shared modules import only each other;
- train/ and report/ import only the shared modules: train/ never writes run folders (its callers hand it the
  folders it may write), and report/ never imports torch;
- experiment/ may import train/ and report/; use/ may import train/, report/ and experiment/ (the run layout);
- nothing imports upward, no import cycle (function-local imports included), imports are absolute
  (distill_lora.…), and no function passes ~60 lines or 8 arguments without a reason written in that test.
"""

__version__ = "0.1.0"
