"""Mutation check: break one line of the package on purpose and make sure a named test notices.

Each mutant swaps an exact snippet of source for a wrong version. We run its tests against a throwaway copy of the
repository: a test failure means the mutant was caught; a pass means the tests cannot see that behaviour break.

    python scripts/mutants.py              # all mutants, after a baseline run of their tests
    python scripts/mutants.py --list       # check the snippets still match, print the mutants
    python scripts/mutants.py --only holm  # mutants whose name contains "holm"

Exit 0: every mutant caught. 1: some survived or were broken (bad test list, collection error). 2: the check
itself cannot run (a snippet no longer matches exactly once, the copy is not what gets imported, the baseline fails).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    name: str  # short id, used by --only
    why: str  # what behaviour breaks
    file: str  # relative to the repository root
    snippet: str  # exact source text, must occur once in file
    replacement: str
    tests: tuple[str, ...]  # pytest node ids or files, relative to the root, that should catch it


MUTANTS = [
    # ---- training maths: losses, layer mapping, targets
    Mutant(
        name="kd-temperature-squared",
        why="the KL term is no longer scaled by T², so its gradient shrinks as the temperature grows",
        file="distill_lora/train/losses.py",
        snippet='reduction="batchmean", log_target=True) * t * t',
        replacement='reduction="batchmean", log_target=True) * t',
        tests=("tests/train/test_losses.py",),
    ),
    Mutant(
        name="kd-kl-direction",
        why="KL(student ‖ teacher) instead of KL(teacher ‖ student): the student's distribution becomes the target",
        file="distill_lora/train/losses.py",
        snippet="F.kl_div(log_p_s, log_p_t,",
        replacement="F.kl_div(log_p_t, log_p_s,",
        tests=("tests/train/test_losses.py",),
    ),
    Mutant(
        name="layer-mapping",
        why="student layer i copies teacher layer i+1 whatever the chosen layers (odd and even become the same cut)",
        file="distill_lora/train/models.py",
        snippet="source_to_student = {teacher_idx - 1: i for i, teacher_idx in enumerate(layers)}",
        replacement="source_to_student = {i: i for i, teacher_idx in enumerate(layers)}",
        tests=("tests/train/test_models.py",),
    ),
    Mutant(
        name="hidden-state-layer",
        why="the student side of the hidden-state loss reads hidden_states[i] (its embeddings first) for [i + 1]",
        file="distill_lora/train/steps.py",
        snippet="layer_cls(model, out.hidden_states, range(1, n_layers + 1))",
        replacement="layer_cls(model, out.hidden_states, range(n_layers))",
        tests=("tests/train/test_families.py::test_the_hidden_state_loss_of_an_exact_prefix_student_is_zero",),
    ),
    Mutant(
        name="modernbert-final-norm",
        why="ModernBERT's hidden-state loss compares the student's normed last layer with an un-normed teacher layer",
        file="distill_lora/train/families.py",
        snippet='final_norm="model.final_norm",',
        replacement="final_norm=None,",
        tests=("tests/train/test_families.py::test_the_hidden_state_loss_of_an_exact_prefix_student_is_zero",),
    ),
    Mutant(
        name="cache-alignment",
        why="cached teacher logits looked up by position in the batch, not by example index",
        file="distill_lora/train/steps.py",
        snippet='cache["logits"][idx]',
        replacement='cache["logits"][: len(idx)]',
        tests=("tests/train/test_steps.py",),
    ),
    Mutant(
        name="teacher-cache-key",
        why="the teacher-logit cache keyed on the teacher's config only: a retrained teacher's students get old ones",
        file="distill_lora/experiment/pipeline.py",
        snippet='thash = f"{teacher_hash(ctx)}-{teacher_weights(ctx)[:16]}"',
        replacement="thash = teacher_hash(ctx)",
        tests=("tests/experiment/test_pipeline.py::test_hidden_state_term_and_cache",),
    ),
    Mutant(
        name="hub-teacher-key",
        why="a Hub teacher keyed on its id alone: a new commit of the model would reuse stages of the old one",
        file="distill_lora/train/sources.py",
        snippet='return f"{ref}@{revision}" if revision else ref',
        replacement="return ref",
        tests=("tests/train/test_sources.py",),
    ),
    Mutant(
        name="lora-pooler-all-any",
        why="lora.train_pooler auto calls a head 'never trained' when any one tell-tale tensor is at its initial value",
        file="distill_lora/train/models.py",
        snippet="if signs and all(held for _, held in signs.values()):",
        replacement="if signs and any(held for _, held in signs.values()):",
        tests=("tests/train/test_families.py::test_a_head_with_one_tell_tale_tensor_moved_counts_as_trained",),
    ),
    # ---- what a stage selects and records
    Mutant(
        name="best-epoch-reload",
        why="the best epoch's weights are not reloaded: the last epoch's model is saved and tested",
        file="distill_lora/train/trainer.py",
        snippet="checkpoint.load_best(run.work_dir, run.accelerator.unwrap_model(model), state.selected_epoch)",
        replacement="None",  # the model keeps the last epoch's weights
        tests=("tests/experiment/test_trust.py::test_the_saved_model_is_the_selected_epochs_not_the_last",),
    ),
    Mutant(
        name="validation-autocast",
        why="validation runs under the training autocast (bf16): epochs are chosen on numbers the report does not show",
        file="distill_lora/train/trainer.py",
        snippet="val = evaluate(model, run.val_set, cfg.eval_batch_size, run.accelerator, run.pad_id, mixed=False)",
        replacement="val = evaluate(model, run.val_set, cfg.eval_batch_size, run.accelerator, run.pad_id)",
        tests=("tests/experiment/test_trust.py::test_validation_runs_in_fp32_after_bf16_training",),
    ),
    Mutant(
        name="test-pass-autocast",
        why="the test pass after bf16 training runs under autocast: plain inference does not reproduce its predictions",
        file="distill_lora/experiment/pipeline.py",
        snippet="accelerator, ctx.pad_id, mixed=False)",
        replacement="accelerator, ctx.pad_id)",
        tests=("tests/experiment/test_trust.py::test_validation_runs_in_fp32_after_bf16_training",),
    ),
    Mutant(
        name="threshold-on-test",
        why="the decision threshold is tuned on the test split's labels and logits",
        file="distill_lora/experiment/pipeline.py",
        snippet='record.threshold = tune_threshold(ctx.encoded["validation"].labels, result.selected_val_logits)',
        replacement="record.threshold = tune_threshold(test_labels, test_logits)",
        tests=("tests/experiment/test_trust.py::test_the_decision_threshold_is_tuned_on_validation_never_on_test",),
    ),
    Mutant(
        name="label-mapping",
        why="data.label_map is ignored: string labels fall through to the numeric reading",
        file="distill_lora/train/data.py",
        snippet="        if key in cfg.label_map:\n            return cfg.label_map[key]",
        replacement="        if key in cfg.label_map:\n            pass",
        tests=("tests/experiment/test_trust.py::test_label_map_with_integer_keys_swaps_the_classes",),
    ),
    Mutant(
        name="training-loss-recorded",
        why="a stage records its total distillation loss as its Training Loss",
        file="distill_lora/experiment/pipeline.py",
        snippet='train_loss=selected["train_loss"],',
        replacement='train_loss=selected["train_total_loss"],',
        tests=(
            "tests/experiment/test_pipeline.py::test_the_training_loss_column_is_the_selected_epochs_cross_entropy",
        ),
    ),
    Mutant(
        name="training-loss-column",
        why="the report's Training Loss column shows the total distillation loss",
        file="distill_lora/report/summary.py",
        snippet='s["train_loss"] = _mean_std([r["train_loss"] for r in runs])',
        replacement='s["train_loss"] = _mean_std([r["train_total_loss"] for r in runs])',
        tests=(
            "tests/experiment/test_pipeline.py::test_the_training_loss_column_is_the_selected_epochs_cross_entropy",
        ),
    ),
    Mutant(
        name="training-time-meaning",
        why="a student's training time silently includes its teacher-logit pass (a second meaning of the words)",
        file="distill_lora/report/write.py",
        snippet="        own = _seconds(result, s)\n",
        replacement="        own = _seconds(result, s) + "
        'runs_of(result, s)[0].get("teacher_targets", {}).get("time_s", 0)\n',
        tests=("tests/report/test_report.py::test_training_time_means_the_models_own_training_loop",),
    ),
    # ---- ONNX and int8
    Mutant(
        name="onnx-check-self",
        why="the export's ONNX check compares torch's logits with themselves",
        file="distill_lora/use/export.py",
        snippet="got = load_predictor(dest, require_marker=False, backend=backend).logits(texts)",
        replacement="got = want",
        tests=("tests/use/test_onnx.py::test_the_export_check_measured_the_onnx_files_against_torch",),
    ),
    Mutant(
        name="onnx-int8-row-fp32-file",
        why="the ONNX Runtime int8 row evaluates the fp32 ONNX file",
        file="distill_lora/experiment/derived.py",
        snippet="        return runtimes.OnnxModel(scratch / file)\n",
        replacement="        return runtimes.OnnxModel(fp32_dir / runtimes.ONNX_FILE if backend != 'onnx' "
        "else scratch / file)\n",
        tests=("tests/experiment/test_onnx_runtime.py::test_an_int8_row_ran_its_own_int8_file_one_text_at_a_time",),
    ),
    Mutant(
        name="onnx-int8-batched",
        why="the ONNX int8 test pass batches texts: a text's logits move with its batch mates",
        file="distill_lora/experiment/derived.py",
        snippet='eval_batch_size if backend == "onnx" else 1',
        replacement="eval_batch_size",
        tests=("tests/experiment/test_onnx_runtime.py::test_an_int8_row_ran_its_own_int8_file_one_text_at_a_time",),
    ),
    Mutant(
        name="torch-int8-batched",
        why="the torch int8 test pass batches texts: a text's logits move with its batch mates",
        file="distill_lora/experiment/derived.py",
        snippet="Derivation(int8_id(source), chash, words, convert, 1, INT8_PRECISION, fields)",
        replacement="Derivation(int8_id(source), chash, words, convert, 32, INT8_PRECISION, fields)",
        tests=("tests/experiment/test_derived.py::test_compare_writes_int8_rows",),
    ),
    # ---- the atlas
    Mutant(
        name="angular-counts-padding",
        why="the data-driven layer choice averages over padding tokens too",
        file="distill_lora/train/layer_choice.py",
        snippet="states = [h.double()[mask] for h in out.hidden_states]",
        replacement="states = [h.double().flatten(0, 1) for h in out.hidden_states]",
        tests=("tests/train/test_layer_choice.py",),
    ),
    Mutant(
        name="angular-keeps-least-changing",
        why="the data-driven choice keeps the layers that change the states least",
        file="distill_lora/train/layer_choice.py",
        snippet="key=lambda i: (-distances[i], i)",
        replacement="key=lambda i: (distances[i], i)",
        tests=("tests/train/test_layer_choice.py",),
    ),
    Mutant(
        name="front-weak-dominance",
        why="the front drops a model that another only ties on both axes",
        file="distill_lora/report/atlas.py",
        snippet="and (b[0] > a[0] or b[1] < a[1])",
        replacement="",
        tests=("tests/report/test_atlas_section.py",),
    ),
    Mutant(
        name="atlas-ranks-on-test",
        why="the atlas ranks its models on test macro-F1 instead of validation",
        file="distill_lora/report/atlas.py",
        snippet='"val_macro_f1": statistics.fmean(val),',
        replacement='"val_macro_f1": summary[s]["macro_f1"]["mean"],',
        tests=("tests/report/test_atlas_section.py",),
    ),
    Mutant(
        name="recipe-ignored",
        why="a student entry's recipe is dropped: every arm trains with distill's own weights",
        file="distill_lora/experiment/pipeline.py",
        snippet="distill=ctx.cfg.distill.with_recipe(recipe)",
        replacement="distill=ctx.cfg.distill",
        tests=(
            "tests/experiment/test_atlas.py::test_an_atlas_trains_one_teacher_and_one_logit_cache_per_seed_for_every_arm",
        ),
    ),
    Mutant(
        name="lora-plus-ignored",
        why="LoRA+ leaves the B matrices in the common group: they learn at the base rate",
        file="distill_lora/train/trainer.py",
        snippet='if lora_b_lr_ratio != 1.0 and ".lora_B." in name:',
        replacement='if False and ".lora_B." in name:',
        tests=(
            "tests/train/test_trainer.py::test_lora_plus_puts_the_b_matrices_in_a_group_of_their_own_at_a_higher_rate",
        ),
    ),
    Mutant(
        name="tuned-values-ignored",
        why="the atlas's equal tuning budget chooses each arm's values, but the arms train with their section's",
        file="distill_lora/experiment/pipeline.py",
        snippet="return dataclasses.replace(ctx, cfg=config_with(ctx.cfg, values)) if values else ctx",
        replacement="return ctx",
        tests=(
            "tests/experiment/test_atlas.py::test_equal_tuning_budget_gives_every_arm_the_same_trials_and_trains_it_with_its_best_values",
        ),
    ),
    Mutant(
        name="tuning-budget-unequal",
        why="the adapter arms get one tuning trial more than the student arms",
        file="distill_lora/experiment/atlas.py",
        snippet="trials=ctx.cfg.atlas.tune_trials,",
        replacement='trials=ctx.cfg.atlas.tune_trials + (sweep_stage != "distill"),',
        tests=(
            "tests/experiment/test_atlas.py::test_equal_tuning_budget_gives_every_arm_the_same_trials_and_trains_it_with_its_best_values",
        ),
    ),
    Mutant(
        name="stage-lock-ignored",
        why="processes sharing a run folder (atlas shards) each make a stage they all need: the teacher twice",
        file="distill_lora/experiment/stage.py",
        snippet="with exclusive(lock_file(ctx.output_dir, ctx.cfg.seed, stage_id), stage_id, say):",
        replacement="with contextlib.nullcontext():",
        tests=(
            "tests/experiment/test_atlas_shards.py::test_the_docs_shell_loop_of_two_shards_and_a_gather_gives_the_numbers_of_one_unsharded_atlas",
        ),
    ),
    Mutant(
        name="dead-worker-not-retried",
        why="a sweep worker killed mid-trial leaves its trial failed by the heartbeat but never retried",
        file="distill_lora/experiment/study_storage.py",
        snippet="heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=s.retries),",
        replacement="heartbeat_stale_trial_callback=None,",
        tests=(
            "tests/experiment/test_sweep_workers.py::test_a_worker_killed_mid_trial_has_its_trial_failed_by_the_heartbeat_and_retried",
        ),
    ),
    Mutant(
        name="storage-password-saved",
        why="the database password of sweep.storage is written into every saved config",
        file="distill_lora/config.py",
        snippet='d["sweep"]["storage"] = storage_without_password(d["sweep"]["storage"])',
        replacement="pass",
        tests=("tests/experiment/test_sweep_workers.py::test_two_workers_share_one_study",),
    ),
    Mutant(
        name="sigterm-unhandled",
        why="SIGTERM outside training kills the process at once: no line said, the run lock left behind",
        file="distill_lora/cli.py",
        snippet="signal.signal(signal.SIGTERM, _terminate)",
        replacement="pass",
        tests=(
            "tests/experiment/test_reliability.py::test_sigterm_before_training_starts_is_one_line_and_releases_the_lock",
        ),
    ),
    Mutant(
        name="preflight-skipped",
        why="a config that cannot train (a bad layer list, an uncached Hub teacher offline, a missing tracker) is "
        "refused only after torch and transformers were imported and the data loaded",
        file="distill_lora/cli.py",
        snippet="preflight(cfg, layer_specs)  # trackers",
        replacement="pass  # trackers",
        tests=("tests/test_cli_errors.py::test_a_config_that_cannot_train_is_refused_before_torch_is_imported",),
    ),
    Mutant(
        name="adapter-ignored",
        why="a LoRA arm's adapter is dropped: every adapter arm trains plain LoRA",
        file="distill_lora/experiment/pipeline.py",
        snippet="lora=ctx.cfg.lora.with_adapter(adapter)",
        replacement="lora=ctx.cfg.lora",
        tests=(
            "tests/experiment/test_atlas.py::test_adapter_arms_train_as_their_adapter_says_and_reload_to_their_recorded_logits",
        ),
    ),
    Mutant(
        name="full-disk-traceback",
        why="a full disk while safetensors writes the weights ends in a traceback instead of one line naming the file",
        file="distill_lora/files.py",
        snippet='_WRITE_FAILURES = {"no space left": errno.ENOSPC, "storagefull": errno.ENOSPC, "file too large": '
        "errno.EFBIG}",
        replacement="_WRITE_FAILURES = {}",
        tests=(
            "tests/test_cli_errors.py::test_a_full_disk_while_training_is_one_line_naming_what_was_written_and_the_stage_resumes",
        ),
    ),
    # ---- the verdicts
    Mutant(
        name="holm-step",
        why="Holm stops multiplying each sorted p by (m - rank): no correction for multiple tests at all",
        file="distill_lora/report/stats.py",
        snippet="scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])",
        replacement="scaled = np.minimum(1.0, p[order])",
        tests=("tests/report/test_stats.py",),
    ),
    Mutant(
        name="mcnemar-exact",
        # swapping b and c here would survive: the two-sided binomial test at 1/2 is symmetric in them
        why="McNemar's binomial test counts all examples instead of only the discordant pairs",
        file="distill_lora/report/stats.py",
        snippet="stats.binomtest(b, b + c, 0.5)",
        replacement="stats.binomtest(b, len(labels), 0.5)",
        tests=(
            "tests/report/test_stats.py::test_mcnemar_known_table",
            "tests/report/test_stats.py::test_mcnemar_identical_predictions",
        ),
    ),
    Mutant(
        name="swap-test-ignores-groups",
        why="the pair test swaps single texts where near-duplicate groups are the units: false winners on the demo",
        file="distill_lora/report/stats.py",
        snippet="    units = unit_index(len(labels), groups)\n",
        replacement="    units = unit_index(len(labels), None)\n",
        tests=("tests/report/test_calibration.py::test_grouped_null_holds_its_level",),
    ),
    Mutant(
        name="bootstrap-ignores-groups",
        why="the confidence intervals resample texts, not whole groups of near-duplicates: too narrow",
        file="distill_lora/report/stats.py",
        snippet="return _resample_weights(n, None if groups is None else tuple(map(str, groups)), n_resamples, seed)",
        replacement="return _resample_weights(n, None, n_resamples, seed)",
        tests=("tests/report/test_stats.py",),
    ),
    Mutant(
        name="verdict-reachable",
        why="'no verdict possible' never said: a pair on 3 differing groups is reported as tested",
        file="distill_lora/report/stats.py",
        snippet="reachable = holm(best)[i] < alpha",
        replacement="reachable = True",
        tests=("tests/report/test_calibration.py::test_few_differing_groups_give_no_verdict",),
    ),
    Mutant(
        name="noninferiority-floor",
        why="non-inferiority drops the margin/G variance: a copy agreeing on 140 texts is surely 'non-inferior'",
        file="distill_lora/report/stats.py",
        snippet='se = float(np.sqrt(swap["null_sd"] ** 2 + floor))',
        replacement='se = float(np.sqrt(swap["null_sd"] ** 2))',
        tests=("tests/report/test_stats.py::test_noninferiority_needs_enough_evidence",),
    ),
]


def snippet_problems(root: Path, mutants) -> list[str]:
    """One line per mutant that cannot be applied: checked before anything runs, so a refactor that moves or
    duplicates a snippet fails loudly instead of silently retiring the mutant."""
    problems, seen = [], set()
    for m in mutants:
        if m.name in seen:
            problems.append(f"{m.name}: name used twice")
        seen.add(m.name)
        path = root / m.file
        if not path.is_file():
            problems.append(f"{m.name}: {m.file} does not exist")
            continue
        n = path.read_text(encoding="utf-8").count(m.snippet)
        if n != 1:
            problems.append(f"{m.name}: snippet in {m.file} found {n} times (needs exactly 1)")
        elif m.replacement == m.snippet:
            problems.append(f"{m.name}: replacement equals the snippet")
    return problems


def repo_files(root: Path) -> list[str]:
    """Tracked files plus untracked ones git does not ignore: the working tree as the tests see it, without
    .venv, runs/ or .git."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return sorted({f for f in out.split("\0") if f})


def make_copy(root: Path, dest: Path) -> int:
    n = 0
    for rel in repo_files(root):
        src = root / rel
        if not src.is_file():  # tracked but deleted in the working tree
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
        n += 1
    return n


def copy_env(copy: Path) -> dict:
    env = dict(os.environ)
    # the package is installed editable from the real tree: the copy must come first on the path
    env["PYTHONPATH"] = os.pathsep.join([str(copy)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["HF_HUB_OFFLINE"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    # no .pyc files: a mutant of the same size written within the same second as the original would otherwise
    # be skipped in favour of a stale cached compile (pyc checks only mtime and size)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_import(copy: Path, env: dict) -> str | None:
    """None if the copy's distill_lora is the one imported, else what went wrong."""
    code = "import distill_lora, sys; print(distill_lora.__file__)"
    run = subprocess.run([sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True)
    if run.returncode != 0:
        return f"importing distill_lora in the copy failed:\n{run.stderr.strip()}"
    where = Path(run.stdout.strip()).resolve()
    if not where.is_relative_to(copy.resolve()):
        return f"the copy at {copy} imports distill_lora from {where}: mutants would not be seen by the tests"
    return None


def run_pytest(copy: Path, tests: list[str], env: dict, timeout: float) -> tuple[int, str, float]:
    """(exit code, output, seconds); a run past the timeout reads as exit code -1."""
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.perf_counter()
    try:
        run = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
        code, output = run.returncode, run.stdout + run.stderr
    except subprocess.TimeoutExpired:  # a mutant can loop forever; that is not a test failure
        code, output = -1, f"timed out after {timeout:.0f}s"
    return code, output, time.perf_counter() - start


def verdict(code: int) -> str:
    # pytest exit codes: 1 tests failed, 0 all passed; 2 interrupted/collection error, 4 usage, 5 nothing collected
    return {1: "caught", 0: "SURVIVED"}.get(code, "broken")


def tail(output: str, n: int = 25) -> str:
    return "\n".join("    " + line for line in output.rstrip().splitlines()[-n:])


def run_mutant(copy: Path, m: Mutant, env: dict, timeout: float) -> tuple[dict, str]:
    path = copy / m.file
    original = path.read_bytes()
    try:
        path.write_bytes(original.decode("utf-8").replace(m.snippet, m.replacement, 1).encode("utf-8"))
        code, output, seconds = run_pytest(copy, list(m.tests), env, timeout)
    finally:
        path.write_bytes(original)  # the next mutant must start from the unmutated tree
    result = verdict(code)
    row = {"name": m.name, "file": m.file, "tests": list(m.tests), "result": result, "seconds": round(seconds, 1)}
    return row, output


def union_tests(mutants) -> list[str]:
    """Every test the mutants name, once; a node id is dropped when its whole file is listed anyway."""
    tests = list(dict.fromkeys(t for m in mutants for t in m.tests))
    return [t for t in tests if "::" not in t or t.split("::")[0] not in tests]


def short_tests(tests: list[str], width: int = 44) -> str:
    text = ", ".join(Path(t.split("::")[0]).name + (f"::{t.split('::', 1)[1]}" if "::" in t else "") for t in tests)
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(rows: list[dict], wall: float) -> None:
    headers = ["mutant", "file", "tests", "result", "seconds"]
    cells = [[r["name"], r["file"], short_tests(r["tests"]), r["result"], f"{r['seconds']:.1f}"] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    print()
    for line in [headers, ["-" * w for w in widths], *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
    counts = {k: sum(r["result"] == k for r in rows) for k in ("caught", "SURVIVED", "broken")}
    print(f"\n{len(rows)} mutants: {counts['caught']} caught, {counts['SURVIVED']} survived, {counts['broken']} broken")
    print(f"total wall time {wall:.1f}s")


def fail(message: str) -> None:
    """The check itself cannot run: exit 2, kept apart from 1 (a mutant survived)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[], metavar="SUBSTR", help="mutants whose name contains it")
    ap.add_argument("--list", action="store_true", help="check the snippets, print the mutants, exit")
    ap.add_argument("--no-baseline", action="store_true", help="skip running the tests unmutated first")
    ap.add_argument("--verbose", action="store_true", help="show the tail of each pytest run")
    ap.add_argument("--json", type=Path, metavar="PATH", help="also write the results table as JSON")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per pytest run before it counts as broken")
    return ap.parse_args(argv)


def prepare(copy: Path, chosen: list[Mutant], args) -> dict:
    """Copy the tree, check the copy is what gets imported, and run the baseline; exits 2 when any fails."""
    n = make_copy(ROOT, copy)
    problems = snippet_problems(copy, chosen)  # the tree may have changed since the first check
    if problems:
        fail("the copy differs from the checked tree:\n" + "\n".join(problems))
    env = copy_env(copy)
    problem = check_import(copy, env)
    if problem:
        fail(problem)
    print(f"copied {n} files to {copy}; distill_lora imports from the copy", flush=True)
    if not args.no_baseline:
        tests = union_tests(chosen)
        code, output, seconds = run_pytest(copy, tests, env, args.timeout)
        if code != 0:  # a mutant "caught" by an already failing test would mean nothing
            print(tail(output), flush=True)
            fail(f"baseline failed (pytest exit {code}) in {seconds:.1f}s: {' '.join(tests)}")
        print(f"baseline: {len(tests)} test paths pass unmutated ({seconds:.1f}s)", flush=True)
    return env


def main(argv=None) -> int:
    args = parse_args(argv)
    problems = snippet_problems(ROOT, MUTANTS)
    if problems:
        print("\n".join(problems))
        return 2
    chosen = [m for m in MUTANTS if not args.only or any(s in m.name for s in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name}  {m.file}  [{', '.join(m.tests)}]\n    {m.why}")
        return 0
    if not chosen:
        fail(f"no mutant name contains any of {args.only}")
    start, rows = time.perf_counter(), []
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        copy = Path(tmp)
        env = prepare(copy, chosen, args)
        for i, m in enumerate(chosen, 1):
            row, output = run_mutant(copy, m, env, args.timeout)
            print(f"[{i}/{len(chosen)}] {m.name}: {row['result']} ({row['seconds']:.1f}s)", flush=True)
            if args.verbose or row["result"] == "broken":
                print(tail(output))
            rows.append(row)
    print_table(rows, time.perf_counter() - start)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    failed = [r for r in rows if r["result"] != "caught"]
    for r in failed:
        print(f"{r['result']}: {r['name']} ({r['file']}): {next(m.why for m in chosen if m.name == r['name'])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
