"""The run folder: its layout, DONE markers, stage folders written whole, the run lock and provenance.

OUTPUT_DIR/
  run.json                 provenance: versions, device, git commit, data hashes
  results.json             every finished stage's metrics, gathered by compare
  seed-S/<stage-id>/       one Hugging Face folder per stage, DONE written last
  seed-S/cache/            teacher logits on the training split, reused by every student
  .locks/seed-S.<stage-id>.lock   held by the process making that stage (atlas shards, sweep workers share a folder)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

from distill_lora import faults
from distill_lora.errors import RunFolderBusy
from distill_lora.files import (
    atomic_write_json,
    atomic_write_text,
    follow_umask,
    make_temp_dir,
    read_json,
    read_json_or_none,
)
from distill_lora.metrics import softmax

DONE = "DONE"
_URL_PASSWORD = re.compile(r"([A-Za-z][\w+.-]*://[^:/@\s]*):[^@\s]*@")  # scheme://user:password@


def seed_dir(output_dir: str | Path, seed: int) -> Path:
    return Path(output_dir) / f"seed-{seed}"


def stage_dir(output_dir: str | Path, seed: int, stage_id: str) -> Path:
    return seed_dir(output_dir, seed) / stage_id


def write_test_predictions(path: Path, labels: list[int], logits, threshold: float | None) -> None:
    """One line per test example, in test order: label, prediction, logits (and the thresholded prediction)."""
    probs = softmax(logits)
    lines = []
    for i, (y, row) in enumerate(zip(labels, logits)):
        r = {"i": i, "label": int(y), "pred": int(row.argmax()), "logits": [float(x) for x in row]}
        if threshold is not None:
            r["pred_threshold"] = int(probs[i, 1] >= threshold)
        lines.append(json.dumps(r) + "\n")
    atomic_write_text(path, "".join(lines))


@contextlib.contextmanager
def exclusive(lock: Path, what: str, say=print):
    """Hold `lock` (an flock: released by the kernel when its process dies, on this machine or over NFS) while making
    `what`; a second process waits here, saying for whom, and then finds it made. The file stays: deleting a lock
    file others may have opened would let two holders in."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "another process"
            say(f"[{what}] {owner} is making it: waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        fh.truncate()
        fh.write(f"process {os.getpid()} on {socket.gethostname()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def lock_file(output_dir: Path, seed: int, name: str) -> Path:
    """The lock of one thing a seed makes (a stage, its logit cache), kept apart from the folders it guards."""
    return Path(output_dir) / ".locks" / f"seed-{seed}.{name}.lock"


def remove_stale_temporaries(final: Path) -> None:
    """Temporary folders of a stage left by a killed run (we hold the stage's lock: nobody else writes it)."""
    for tmp in Path(final).parent.glob(f".{Path(final).name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for old in Path(final).parent.glob(f".{Path(final).name}.old-*"):
        shutil.rmtree(old, ignore_errors=True)


def stage_is_done(path: Path, expected_hash: str) -> bool:
    """Finished, and made from the same config (hash) as asked for now."""
    marker = Path(path) / DONE
    if not marker.exists():
        return False
    try:
        return read_json(marker).get("config_hash") == expected_hash
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def stage_folder(final: Path, config_hash: str):
    """Yield a temporary folder to fill; on success mark it DONE and move it into place.

    On any failure the temporary folder is removed, so no half-written stage is left behind.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(f".{final.name}.tmp-", final.parent)
    try:
        yield tmp
        follow_umask(tmp)
        faults.maybe(f"{final.name}:before-done")
        atomic_write_json(tmp / DONE, {"config_hash": config_hash})
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def git_commit() -> str | None:
    """The commit of the installed source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(device: str, data_fingerprint: dict, previous: dict | None = None) -> dict:
    """run.json: the versions, device and commit of this command, plus `history`, one entry per command that
    wrote to the run (the previous run.json's history with this command appended), so that numbers measured by
    an earlier command stay attributed to it."""
    import sys
    import time
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("distill-lora", "torch", "transformers", "peft", "accelerate", "datasets", "scikit-learn"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    commit = git_commit()
    entry = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": [_URL_PASSWORD.sub(r"\1:***@", a) for a in sys.argv],  # e.g. --storage postgresql://u:pw@host/db
        "device": device,
        "versions": versions,
        "git_commit": commit,
    }
    previous = previous if isinstance(previous, dict) else {}
    history = previous.get("history")
    if not isinstance(history, list):  # a run.json from before the history was kept: its one command
        history = (
            [{"time": None, "argv": None, **{k: previous.get(k) for k in ("device", "versions", "git_commit")}}]
            if previous.get("versions")
            else []
        )
    return {
        "versions": versions,
        "device": device,
        "git_commit": commit,
        "data_files": data_fingerprint,
        "history": [*history, entry],
    }


class RunLock:
    """One writer per run folder: OUTPUT_DIR/.lock holds the owner's PID and host.

    A lock whose process is gone (same host, PID not running) is stale and taken over, saying so.
    """

    def __init__(self, output_dir: Path):
        self.path = Path(output_dir) / ".lock"
        self.held = False

    def __enter__(self):
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = read_json_or_none(self.path, {})
                if owner.get("host") == me["host"] and not _pid_alive(owner.get("pid")):
                    print(f"note: removing a stale lock of process {owner.get('pid')} (no longer running)")
                    self.path.unlink(missing_ok=True)
                    continue
                raise RunFolderBusy(self._busy(owner)) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise RunFolderBusy(f"could not take the lock {self.path}; delete it if no other run uses this folder")

    def _busy(self, owner: dict) -> str:
        if not owner:  # being written right now, or cut short: treat as held
            owner = {"pid": "?", "host": "?", "started": "?"}
        return (
            f"run folder {self.path.parent} is in use by process {owner.get('pid')} on "
            f"{owner.get('host')} (since {owner.get('started')}); wait for it to finish, or use "
            f"another run folder (if that process is gone for sure, delete {self.path})"
        )

    def refuse_if_held(self) -> None:
        """A quick look, before the heavy imports: refuse at once when a live process holds the folder (the lock is
        taken for real later, by `with RunLock(...)`; a stale one is taken over then)."""
        if not self.path.exists():
            return
        owner = read_json_or_none(self.path, {})
        if owner.get("host") == socket.gethostname() and not _pid_alive(owner.get("pid")):
            return
        raise RunFolderBusy(self._busy(owner))

    def __exit__(self, *exc):
        if self.held:
            self.path.unlink(missing_ok=True)
        return False


def _pid_alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
