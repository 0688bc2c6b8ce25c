"""A throw-away PostgreSQL cluster for the tests, and the two-backend ``store_url`` fixture.

The session fixture ``pg_cluster`` finds ``initdb``/``pg_ctl`` (on PATH or under
``/usr/lib/postgresql/*/bin``), creates a cluster in a temporary directory (trust auth,
user ``finflow``), starts it on a free loopback port with its socket in that directory and
``fsync=off``, and stops and deletes it when the session ends. initdb refuses to run as
root, so as root the server runs as the ``postgres`` system user.

Without the server binaries the PostgreSQL tests are skipped — unless
``FINFLOW_REQUIRE_POSTGRES=1`` (set on CI), which turns the skip into a failure.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

ENV_REQUIRE = "FINFLOW_REQUIRE_POSTGRES"
USER = "finflow"
_database_numbers = itertools.count(1)


def find_pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, newest PostgreSQL first."""
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def version(bindir: Path) -> tuple[int, ...]:
        name = bindir.parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit()) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def unavailable(reason: str) -> NoReturn:
    """Skip, or fail when CI demands PostgreSQL."""
    if os.environ.get(ENV_REQUIRE) == "1":
        pytest.fail(f"{reason} ({ENV_REQUIRE}=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    """One running throw-away cluster."""

    bindir: Path
    root: Path
    run_as: str | None
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)

    def initdb(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )

    def start(self, attempts: int = 3) -> None:
        """Start on a free port (retrying if another process grabbed it first)."""
        for attempt in range(1, attempts + 1):
            self.port = free_port()
            options = " ".join([
                f"-p {self.port}", "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}", "-c fsync=off",
                "-c synchronous_commit=off", "-c full_page_writes=off",
                "-c max_connections=200",
            ])
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                          "-w", "-t", "60", "start")
                return
            except RuntimeError:
                if attempt == attempts:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.data.exists() and (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):  # already gone: nothing to stop
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self.run_as is not None:
            if shutil.which("runuser"):
                command = ["runuser", "-u", self.run_as, "--", *command]
            else:
                command = ["su", self.run_as, "-s", "/bin/sh", "-c", shlex.join(command)]
        done = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({done.returncode}): {done.stderr.strip()}\n{log}"
            )


def start_cluster() -> PgCluster:
    """Create and start a cluster, or skip (fail on CI) when that is impossible."""
    bindir = find_pg_bin()
    if bindir is None:
        unavailable("PostgreSQL server binaries not found: install the 'postgresql' package")
    run_as = None
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            unavailable(
                "running as root and there is no 'postgres' user to run PostgreSQL as: "
                "create one (useradd --system postgres) or run the tests as a normal user"
            )
        run_as = "postgres"
    root = Path(tempfile.mkdtemp(prefix="finflow-pg-"))
    if run_as is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
    cluster = PgCluster(bindir=bindir, root=root, run_as=run_as)
    atexit.register(cluster.stop)  # also when the session is interrupted
    try:
        cluster.initdb()
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's PostgreSQL cluster (started on first use)."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def pg_url(pg_cluster: PgCluster) -> str:
    """``postgresql+psycopg://finflow@127.0.0.1:PORT/finflow_test`` (shared by the session)."""
    return pg_cluster.create_database("finflow_test")


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL for each test, on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'finflow.db'}"
    cluster: PgCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"test_{os.getpid()}_{next(_database_numbers)}")
