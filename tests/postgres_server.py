"""A real, throwaway PostgreSQL server for tests: initdb in a temporary folder, started and stopped by the test.

Use the session fixture `postgres_url` (a SQLAlchemy URL to an empty database, e.g. for optuna's storage=):
    from postgres_server import postgres_url  # noqa: F401 (pytest finds the fixture by its name in the module)
    def test_x(postgres_url):  # noqa: F811 (ruff takes the argument for a redefinition of the import)
Needs Debian's server (apt-get install postgresql) and psycopg; without them the test is skipped, or fails when
CI=true (CI installs them, so their absence there is a bug, not a reason to skip).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN_GLOB = "/usr/lib/postgresql/*/bin"
DATABASE = "optuna_test"


def _missing(what: str) -> None:
    """Skip (with the reason) on a developer's machine; fail in CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: CI must install it)")
    pytest.skip(what)


def _bin_dir() -> Path:
    """The newest installed server's bin folder (Debian puts it outside PATH, under its major version)."""
    found = [Path(p).parent for p in glob.glob(f"{BIN_GLOB}/initdb") if Path(p).with_name("pg_ctl").exists()]
    if not found:
        _missing(f"PostgreSQL server not installed (apt-get install postgresql): no {BIN_GLOB}/initdb and pg_ctl")
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server on 127.0.0.1 (trust auth, fsync off), yield its URL, stop it and delete its folder."""
    bin_dir = _bin_dir()
    try:
        import psycopg  # noqa: F401  (SQLAlchemy 2.1's postgresql:// driver)
    except ImportError:
        _missing("psycopg not installed (pip install 'psycopg[binary]', or the 'postgres' extra)")
    # PostgreSQL refuses to run as root: run it as Debian's `postgres` user, which must own the folder and be able
    # to reach it (pytest's tmp_path is under /tmp/pytest-of-root, mode 700, so use a fresh folder in /tmp instead)
    as_user = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
    root = Path(tempfile.mkdtemp(prefix="pg-test-", dir="/tmp"))
    if as_user:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    env = {**os.environ, "LC_ALL": "C"}  # initdb fails on a locale the machine has not generated

    def pg(*args: str) -> None:
        subprocess.run([str(bin_dir / args[0]), *args[1:]], check=True, env=env, capture_output=True, **as_user)

    # -k: the unix socket goes in our folder (/var/run/postgresql may be missing or not ours); fsync and friends off:
    # a test database needs no durability
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off -c synchronous_commit=off"
    try:
        try:
            pg("initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
            # -w: pg_ctl returns once the server accepts connections (or fails after -t seconds; the log says why)
            pg("pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w", "-t", "30", "-o", options, "start")
            pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", DATABASE)
        except subprocess.CalledProcessError as e:
            log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
            pytest.fail(f"PostgreSQL test server failed: {e.cmd}\n{e.stdout.decode()}{e.stderr.decode()}{log}")
        yield f"postgresql://postgres@127.0.0.1:{port}/{DATABASE}"
    finally:
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                pg("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of an empty database on a real PostgreSQL server that lives for the test session."""
    with postgres_server() as url:
        yield url


@pytest.fixture
def postgres_database(postgres_url) -> str:
    """A new, empty database on the session's server for one test (studies of equal configs would be shared)."""
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # CREATE DATABASE cannot run in a transaction
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"
