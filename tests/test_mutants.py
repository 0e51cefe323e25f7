"""scripts/mutants.py's list stays runnable: every snippet still matches exactly once (a refactor cannot silently
retire a mutant), names are unique and the tests each mutant names exist. Fast: nothing here runs pytest."""

import importlib.util
from dataclasses import replace

from conftest import REPO


def _mutants():
    spec = importlib.util.spec_from_file_location("mutants", REPO / "scripts" / "mutants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_snippet_matches_exactly_once():
    mod = _mutants()
    assert mod.snippet_problems(REPO, mod.MUTANTS) == []


def test_names_are_unique_and_tests_exist():
    mod = _mutants()
    names = [m.name for m in mod.MUTANTS]
    assert len(names) == len(set(names)), names
    missing = [f"{m.name}: {t}" for m in mod.MUTANTS for t in m.tests if not (REPO / t.split("::")[0]).is_file()]
    assert not missing, missing
    assert all(m.tests for m in mod.MUTANTS), "a mutant with no tests would run the whole suite"


def test_a_missing_or_doubled_snippet_is_a_problem(tmp_path):
    mod = _mutants()
    (tmp_path / "code.py").write_text("x = 1\ny = 2\nx = 1\n", encoding="utf-8")
    base = mod.Mutant(name="ok", why="", file="code.py", snippet="y = 2", replacement="y = 3", tests=("t.py",))
    missing = replace(base, name="made-up-missing", snippet="z = 3")
    doubled = replace(base, name="made-up-doubled", snippet="x = 1")
    gone = replace(base, name="made-up-gone", file="nope.py")
    problems = mod.snippet_problems(tmp_path, [base, missing, doubled, gone])
    assert len(problems) == 3, problems
    assert "made-up-missing" in problems[0] and "found 0 times" in problems[0]
    assert "made-up-doubled" in problems[1] and "found 2 times" in problems[1]
    assert "made-up-gone" in problems[2] and "nope.py" in problems[2]
