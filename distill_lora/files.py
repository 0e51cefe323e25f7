"""Files written so that a crash never leaves half a file: atomic text/JSON writes that follow the umask, JSON
reads, and the folder checks a run makes before writing anything."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from distill_lora.errors import UserError


def umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux: /proc/self/status)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # elsewhere the only way is to set it and put it back; 0o077 meanwhile, so that a file another thread
    # creates in that instant is too private rather than too open
    old = os.umask(0o077)
    os.umask(old)
    return old


def make_temp_dir(prefix: str, dir: Path) -> Path:
    """tempfile.mkdtemp, but with the mode a plain mkdir gives (mkdtemp always makes 0700, whatever the umask):
    the folder is renamed into place and becomes a run's or export's ordinary folder."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=dir))
    os.chmod(tmp, 0o777 & ~umask())
    return tmp


def follow_umask(folder: Path) -> None:
    """Give every file and folder under `folder` the mode open() and mkdir() give under the umask. Libraries that
    write through temporary files of their own (safetensors 0.8 saves model.safetensors as 0600) would otherwise
    leave a stage that only its owner can load, whatever the umask asks for."""
    mask = umask()
    for p in Path(folder).rglob("*"):
        if not p.is_symlink():  # a link's target may lie outside the folder
            os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~mask)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary name in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes 0600; the renamed file gets what open() would give
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


def read_json_or_none(path: Path, default=None):
    """A JSON file, or `default` when it is missing or unreadable (e.g. cut short by a crash)."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return default


def made_folders(path: Path) -> list[Path]:
    """The folders that `path.mkdir(parents=True)` would create, deepest first."""
    missing = []
    path = Path(path)
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove those of `folders` (deepest first) that are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (something was written), or already gone
            return


def check_writable(output_dir: Path) -> None:
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(
            f"run folder '{output_dir}' is not writable ({e.strerror}); choose another (--output-dir, or the run "
            "folder argument)"
        ) from None


# what a failed write says, when a library reports it in its own words (safetensors: "... StorageFull ...")
_WRITE_FAILURES = {"no space left": errno.ENOSPC, "storagefull": errno.ENOSPC, "file too large": errno.EFBIG}


@contextlib.contextmanager
def writing(path, blame: bool = False):
    """Any failure to write `path` becomes an OSError naming it: an OSError without a file name, or a library's own
    error for one (safetensors raises SafetensorError on a full disk). The CLI prints that as one line, exit 1.
    blame=True names `path` even when the error names another file (a copy names its source)."""
    try:
        yield
    except shutil.Error as e:  # copytree: a list of (source, destination, why)
        first = e.args[0][0] if e.args and isinstance(e.args[0], list) and e.args[0] else None
        raise OSError(None, str(first[2] if first else e)[:200], str(path)) from None
    except OSError as e:
        if e.filename and not blame:
            raise
        raise OSError(e.errno, e.strerror or str(e)[:200], str(path)) from None
    except Exception as e:
        text = str(e).lower()
        code = next((c for words, c in _WRITE_FAILURES.items() if words in text), None)
        if code is None:
            raise
        raise OSError(code, os.strerror(code), str(path)) from None
