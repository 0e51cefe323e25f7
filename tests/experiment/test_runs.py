"""runs and files: file modes follow the umask (stage folders, a finished run, an export); an old run.json keeps its
command (how run.json grows: tests/experiment/test_results.py)."""

import os
import stat
from types import SimpleNamespace

import pytest

from distill_lora import files
from distill_lora.experiment import runs


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def with_umask():
    """Set the umask for one test and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(
    "mask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)]
)
def test_written_files_and_stage_folders_follow_the_umask(tmp_path, with_umask, mask, file_mode, dir_mode):
    with_umask(mask)
    assert files.umask() == mask
    files.atomic_write_text(tmp_path / "a.txt", "hi")
    assert mode(tmp_path / "a.txt") == file_mode
    with runs.stage_folder(tmp_path / "stage", "hash") as tmp:
        (tmp / "model.bin").write_bytes(b"x")
        (tmp / "private.bin").write_bytes(b"x")
        (tmp / "private.bin").chmod(0o600)  # as safetensors 0.8 writes model.safetensors
        (tmp / "sub").mkdir(mode=0o700)
    stage = tmp_path / "stage"
    assert mode(stage) == mode(stage / "sub") == dir_mode
    assert mode(stage / "DONE") == mode(stage / "model.bin") == mode(stage / "private.bin") == file_mode
    assert mode(files.make_temp_dir(".x-", tmp_path)) == dir_mode


def test_umask_is_read_without_changing_it(with_umask, monkeypatch):
    with_umask(0o027)
    assert files.umask() == 0o027 and files.umask() == 0o027
    monkeypatch.setattr(files, "Path", lambda p: SimpleNamespace(read_text=lambda: ""))  # no /proc: set and restore
    assert files.umask() == 0o027 and os.umask(0o027) == 0o027


def test_a_finished_run_has_no_private_files(finished_run):
    """Every file and folder of a real run (stages, checkpoints' leftovers, report, plots) as open() and mkdir() make
    them under the umask the run had (that of this test session)."""
    mask = files.umask()
    wrong = [
        (str(p), oct(mode(p)))
        for p in finished_run["output"].rglob("*")
        if mode(p) != (0o777 if p.is_dir() else 0o666) & ~mask
    ]
    assert not wrong


def test_run_json_from_before_the_history_keeps_its_command():
    old = {"versions": {"torch": "2.0"}, "device": "NVIDIA A100", "git_commit": "abc", "data_files": {}}
    history = runs.provenance("cpu (2 threads)", {}, old)["history"]
    assert history[0] == {
        "time": None,
        "argv": None,
        "device": "NVIDIA A100",
        "versions": {"torch": "2.0"},
        "git_commit": "abc",
    }
    assert len(history) == 2 and history[1]["device"] == "cpu (2 threads)"
    assert len(runs.provenance("cpu", {}, None)["history"]) == 1
    assert len(runs.provenance("cpu", {}, {"history": "garbage"})["history"]) == 1


def test_an_export_has_no_private_files(finished_run, tmp_path):
    """export built its folder with mkdtemp (0700) and kept safetensors' 0600 files: not shareable."""
    from distill_lora.use.export import export_model

    out = tmp_path / "exported"
    export_model(finished_run["output"] / "seed-0" / "teacher", out, log=lambda line: None)
    mask = files.umask()
    wrong = [
        (str(p), oct(mode(p))) for p in [out, *out.rglob("*")] if mode(p) != (0o777 if p.is_dir() else 0o666) & ~mask
    ]
    assert not wrong
