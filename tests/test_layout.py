"""The package's layout rules (distill_lora/__init__.py), read from the source: rooms import only downward, the
report never needs torch, and no function is long or takes many arguments without a stated reason."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import distill_lora

PKG = Path(distill_lora.__file__).parent
# top-level modules every room may use; they import only each other
SHARED = {"errors", "files", "faults", "config", "metrics", "stage_ids", "records"}
# what each room may import besides the shared modules and itself (cli, at the top, may import anything)
MAY_IMPORT = {
    "train": set(),
    "report": set(),
    "experiment": {"train", "report"},
    "use": {"train", "report", "experiment"},
}
# modules without a test file at the mirrored path (tests/<room>/test_<module>.py): the feature test that covers
# each, and a string in that file that shows it exercises the module
TESTED_BY = {
    "__main__.py": ("tests/test_cli_errors.py", '"-m", "distill_lora"'),
    "cli.py": ("tests/test_cli_options.py", "from distill_lora.cli import"),
    "errors.py": ("tests/test_cli_errors.py", "UserError"),
    "faults.py": ("tests/experiment/test_trust.py", "DISTILL_LORA_FAULT"),
    "files.py": ("tests/experiment/test_runs.py", "from distill_lora import files"),
    "records.py": ("tests/test_stage_ids.py", "StageRecord"),
    # two test files of one basename collide in pytest's default import mode: experiment/atlas has test_atlas.py
    "report/atlas.py": ("tests/report/test_atlas_section.py", "atlas.atlas_table"),
    "experiment/outcome.py": ("tests/test_scripting.py", "--json"),
    "experiment/stage.py": ("tests/experiment/test_reliability.py", "stage"),
    "experiment/timing.py": ("tests/experiment/test_results.py", "retime"),
    "experiment/study_storage.py": ("tests/experiment/test_sweep_workers.py", "--storage"),
    "train/layer_specs.py": ("tests/train/test_models.py", "resolve_layers"),
    "experiment/preflight.py": ("tests/test_cli_errors.py", "before_torch_is_imported"),
    "report/cpu_serving.py": ("tests/experiment/test_onnx_runtime.py", "cpu_serving"),
    "report/findings.py": ("tests/report/test_summary.py", "findings."),
    "report/format.py": ("tests/report/test_report_render.py", "import format as cells"),
    "report/plots.py": ("tests/report/test_report.py", "png"),
    "report/tables.py": ("tests/report/test_report_render.py", "tables"),
    "report/verdicts.py": ("tests/report/test_summary.py", "verdicts."),
    "report/write.py": ("tests/report/test_report.py", "write_report"),
    "train/checkpoint.py": ("tests/experiment/test_reliability.py", "checkpoint"),
    "train/costs.py": ("tests/train/test_bench.py", "peak_memory_bytes"),
    "train/runtimes.py": ("tests/experiment/test_derived.py", "distill_lora.train.runtimes"),
    "use/evaluate.py": ("tests/use/test_evaluate_labels.py", "evaluate"),
    "use/model_card.py": ("tests/use/test_export.py", "README.md"),
}
# "about 60 lines": 65 as ruff format lays code out (a call too long for one line gets a line per argument)
MAX_LINES, MAX_ARGS = 65, 8
# functions allowed past the limits, and why
EXEMPT = {
    "cli.py": "typer commands take one parameter per command-line option",
    "report/stats.py:paired_diff_ci": "a statistic's options (resamples, seed, confidence, groups, classes) are "
    "keywords with defaults, named at every call, as in scipy.stats",
    "train/losses.py:distillation_loss": "each term's weight and input is a keyword named at the call; bundling "
    "them would hide which term a number weighs",
    "train/trainer.py:_train_epoch": "the step loop, forward → loss → backward → step, is kept in one place to be "
    "read top to bottom (67 lines)",
    "report/findings.py:analysis_lines": "the Analysis section's sentences in the order the report prints them "
    "(67 lines)",
}


def modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        yield rel, ast.parse(path.read_text(encoding="utf-8"))


def imported(tree) -> set[str]:
    """distill_lora modules a file imports, as dotted paths below the package ("train.models", "config")."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distill_lora"):
            base = node.module.removeprefix("distill_lora").lstrip(".")
            out |= {f"{base}.{a.name}".lstrip(".") for a in node.names} if not base else {base}
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("distill_lora.") for a in node.names if a.name.startswith("distill_lora.")}
    return out


def test_imports_are_absolute():
    """distill_lora.<room>.<module> in every import says where a name lives; `from . import` hides it."""
    relative = [
        f"{rel}:{node.lineno}"
        for rel, tree in modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level
    ]
    assert not relative, relative


def room_of(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_rooms_import_only_downward():
    wrong = []
    for rel, tree in modules():
        room = room_of(rel)
        if room in ("cli", "__main__", "__init__", "configs", "demo_data"):
            continue
        allowed = SHARED | {room} | MAY_IMPORT.get(room, set())
        for target in imported(tree):
            if target.split(".")[0] not in allowed:
                wrong.append(f"{rel} imports {target}")
    assert not wrong, "imports against the layering rules of distill_lora/__init__.py:\n" + "\n".join(wrong)


def test_report_is_built_without_torch():
    code = (
        "import sys; import distill_lora.report.write, distill_lora.report.summary, distill_lora.report.plots; "
        "bad = [m for m in ('torch', 'transformers', 'peft', 'accelerate') if m in sys.modules]; "
        "assert not bad, bad"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_train_never_writes_run_folders():
    """train/ gets the folders it writes (a stage's work folder) from its caller; the run layout is experiment/'s."""
    for rel, tree in modules():
        if room_of(rel) == "train":
            assert not {t for t in imported(tree) if t.startswith("experiment")}, rel


def test_functions_are_short_and_take_few_arguments():
    long = []
    for rel, tree in modules():
        if str(rel) in EXEMPT:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and f"{rel}:{node.name}" not in EXEMPT:
                lines = node.end_lineno - node.lineno + 1
                a = node.args
                n_args = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
                if lines > MAX_LINES or n_args > MAX_ARGS:
                    long.append(f"{rel}:{node.lineno} {node.name}: {lines} lines, {n_args} arguments")
    assert not long, (
        f"over {MAX_LINES} lines or {MAX_ARGS} arguments (split it, or exempt it here with a reason):\n"
        + "\n".join(long)
    )


def module_names() -> set[str]:
    """Every module of the package as a dotted path below it ("experiment.pipeline", "config")."""
    return {".".join(rel.with_suffix("").parts).removesuffix(".__init__") for rel, _ in modules()}


def import_graph() -> dict[str, set[str]]:
    """module → the package's modules it imports anywhere in its file (function-local imports included).

    `from distill_lora.experiment import pipeline` imports the module experiment.pipeline (and the package
    experiment/__init__); `from distill_lora.train.models import x` the module train.models."""
    names, graph = module_names(), {}
    for rel, tree in modules():
        me = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        deps = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distill_lora"):
                base = node.module.removeprefix("distill_lora").lstrip(".")
                deps.add(base)
                deps |= {f"{base}.{a.name}".lstrip(".") for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name.removeprefix("distill_lora.") for a in node.names if a.name.startswith("distill_lora.")}
        graph[me] = (deps & names) - {me}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: each strongly connected group of two or more modules, sorted (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while not group or group[-1] != v:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    """No module imports, even inside a function, one that imports it back (directly or round a longer loop)."""
    assert cycles(import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_every_module_is_named_in_the_architecture_doc_and_the_package_docstring():
    """docs/architecture.md and distill_lora/__init__.py each name every module (as `module` or room/module), so a
    newcomer finds any file's place in seconds."""
    doc = (PKG.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse((PKG / "__init__.py").read_text(encoding="utf-8")))
    missing = []
    for name in sorted(module_names() - {"", "__main__", "__init__"}):
        short = name.split(".")[-1]
        for where, text in (("docs/architecture.md", doc), ("distill_lora/__init__.py", docstring)):
            if not re.search(rf"(?<![\w.]){short}(?!\w)", text):
                missing.append(f"{name} in {where}")
    assert not missing, "modules not named:\n" + "\n".join(missing)


def test_every_module_has_its_test_file_or_names_the_test_that_covers_it():
    """tests/<room>/test_<module>.py for each module (tests/test_<module>.py at the top), or a TESTED_BY entry whose
    test file exists and shows that it exercises the module; no TESTED_BY entry for a module that has its own."""
    tests = PKG.parent / "tests"
    wrong = []
    for rel, _ in modules():
        if rel.name == "__init__.py":
            continue
        mirrored = tests / rel.parent / f"test_{rel.name}"
        entry = TESTED_BY.get(str(rel))
        if mirrored.exists():
            if entry:
                wrong.append(f"{rel}: has {mirrored.relative_to(PKG.parent)}; drop its TESTED_BY entry")
        elif entry is None:
            wrong.append(f"{rel}: no {mirrored.relative_to(PKG.parent)} and no TESTED_BY entry")
        elif not (PKG.parent / entry[0]).exists() or entry[1] not in (PKG.parent / entry[0]).read_text():
            wrong.append(f"{rel}: TESTED_BY names {entry[0]}, which does not contain {entry[1]!r}")
    assert set(TESTED_BY) <= {str(rel) for rel, _ in modules()}, "TESTED_BY names a module that is gone"
    assert not wrong, "\n".join(wrong)


def private_imports(tree) -> list[str]:
    """`_name`s a file imports from another of the package's modules (function-local imports included)."""
    return [
        f"{node.module}.{a.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("distill_lora")
        for a in node.names
        if a.name.startswith("_") and not a.name.startswith("__")
    ]


def test_no_private_name_is_imported_across_modules():
    """A name another module needs is public: a leading underscore promises that only its own file uses it."""
    wrong = [f"{rel}: {name}" for rel, tree in modules() for name in private_imports(tree)]
    assert not wrong, "private names imported across modules (make them public):\n" + "\n".join(wrong)
    assert private_imports(ast.parse("def f():\n    from distill_lora.train.data import _read_rows\n")) == [
        "distill_lora.train.data._read_rows"
    ]
