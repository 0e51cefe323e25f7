"""Where models and data come from: a local path, a folder shipped in a package, or the Hub.

The Hub may be unreachable (offline machines, firewalls). A naive `from_pretrained` then retries
for 25-50 s; we answer in a few seconds with a message that says what to do instead.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from distill_lora.errors import UserError

HUB_TIMEOUT_S = 3.0


def resolve_package_path(ref: str, what: str) -> Path:
    """'package:PKG/sub/folder' → the folder inside the installed package, found without importing it."""
    spec_text = ref[len("package:") :]
    pkg, _, sub = spec_text.partition("/")
    spec = importlib.util.find_spec(pkg)
    if spec is None or spec.origin is None:
        dist = pkg.replace("_", "-")
        raise UserError(
            f"{what} '{ref}': package '{pkg}' is not installed; "
            f"install it (pip install {dist}, or pip install 'distill-lora[demo]')"
        )
    path = Path(spec.origin).parent / sub
    if not path.exists():
        raise UserError(f"{what} '{ref}': folder '{path}' does not exist in package '{pkg}'")
    return path


def is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """A quick TCP connect to the Hub endpoint; no retries."""
    url = urlparse(hub_endpoint())
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve(ref: str, what: str) -> tuple[str, bool]:
    """Return (path or Hub id, is_local). Raise UserError fast when a Hub id cannot be fetched.

    `what` names the config key (e.g. 'teacher.model') so the message says what to change.
    """
    if ref.startswith("package:"):
        return str(resolve_package_path(ref, what)), True
    path = Path(ref).expanduser()
    if path.exists():
        return str(path.resolve()), True
    looks_like_path = ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref
    if looks_like_path:
        raise UserError(f"{what} '{ref}': no such file or folder (relative paths are read from {Path.cwd()})")
    return ref, False


def hub_unreachable_message(ref: str, what: str) -> str:
    why = "HF_HUB_OFFLINE is set" if is_offline() else f"the Hub ({hub_endpoint()}) cannot be reached"
    return (
        f"{what} '{ref}' is a Hugging Face Hub id, but {why} and it is not in the local cache; "
        f"download it on a machine with internet and set {what} to the local folder, "
        "or run the offline demo: --config demo"
    )


def require_hub(ref: str, what: str) -> None:
    """Fail fast unless the Hub is reachable (cached copies are tried by the caller first)."""
    if is_offline() or not hub_reachable():
        raise UserError(hub_unreachable_message(ref, what))


def files_sha256(paths: list[Path]) -> str:
    """One sha256 over the names and contents of some files (a model folder's weights, config, tokenizer)."""
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=32)
def _folder_sha256(folder: str, stamp: tuple) -> str:  # stamp: the files' sizes and times, so edits miss the cache
    return files_sha256([Path(folder) / name for name, _, _ in stamp])


def folder_fingerprint(folder: Path) -> str:
    """sha256 of every file of a model folder (not its subfolders): replacing the weights changes it."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _folder_sha256(str(Path(folder).resolve()), stamp)


def model_fingerprint(ref: str, what: str = "teacher.model") -> str:
    """What a stage's reuse key says about its pretrained model: the files' contents of a local or package folder;
    for a Hub id, the id and the commit it resolves to (hub_revision).

    A Hub id is never keyed on the files in the local cache: they change while the weights download (the config
    first, the weights later), which made the first `compare` train the teacher twice."""
    path, local = resolve(ref, what)
    if not local:
        revision = hub_revision(path)
        return f"{ref}@{revision}" if revision else ref
    folder = Path(path)
    return folder_fingerprint(folder if folder.is_dir() else folder.parent)


@functools.lru_cache(maxsize=32)
def hub_revision(repo_id: str) -> str | None:
    """The commit a Hub id resolves to, asked once per process: the Hub's answer when it can be reached (what a
    download fetches), else the local cache's 'main' ref; None when neither knows (loading will fail, saying so)."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.file_download import repo_folder_name

    if not is_offline() and hub_reachable():
        try:
            return HfApi().model_info(repo_id, timeout=HUB_TIMEOUT_S).sha
        except Exception:  # noqa: BLE001 - gated, renamed, a timeout: fall back to what the cache says
            pass
    ref = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="model") / "refs" / "main"
    return ref.read_text().strip() if ref.is_file() else None
