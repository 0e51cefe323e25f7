"""Run folder layout, atomic writes, DONE markers and provenance.

OUTPUT_DIR/
  run.json                 provenance: versions, device, git commit, data hashes
  results.json             every finished stage's metrics, gathered by compare
  seed-S/<stage-id>/       one Hugging Face folder per stage, DONE written last
  seed-S/cache/            teacher logits on the training split, reused by every student
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .config import UserError

DONE = "DONE"


def seed_dir(output_dir: str | Path, seed: int) -> Path:
    return Path(output_dir) / f"seed-{seed}"


def stage_dir(output_dir: str | Path, seed: int, stage_id: str) -> Path:
    return seed_dir(output_dir, seed) / stage_id


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary name in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def stage_is_done(path: Path, expected_hash: str) -> bool:
    """Finished, and made from the same config (hash) as asked for now."""
    marker = Path(path) / DONE
    if not marker.exists():
        return False
    try:
        return read_json(marker).get("config_hash") == expected_hash
    except (OSError, ValueError):
        return False


def check_writable(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"output dir '{output_dir}' is not writable ({e.strerror}); choose another with --output-dir") from None


@contextlib.contextmanager
def stage_folder(final: Path, config_hash: str):
    """Yield a temporary folder to fill; on success mark it DONE and move it into place.

    On any failure the temporary folder is removed, so no half-written stage is left behind.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
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
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(device: str, data_fingerprint: dict) -> dict:
    from importlib.metadata import PackageNotFoundError, version
    versions = {}
    for pkg in ("distill-lora", "torch", "transformers", "peft", "accelerate", "datasets", "scikit-learn"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return {"versions": versions, "device": device, "git_commit": git_commit(), "data_files": data_fingerprint}
