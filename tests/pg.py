"""A private PostgreSQL server for the tests: initdb in a temporary folder, a free port.

Tests that read from a database use a real server, never a stand-in. When the suite runs
as root (CI containers), the server runs as the `postgres` system user, since PostgreSQL
refuses to run as root. It logs every statement, so tests can check what the project
asked the database to do (pushdown).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mpc.demo.federation import free_port


@dataclass(frozen=True)
class Postgres:
    url: str  # SQLAlchemy URL of an empty database
    log: Path  # the server's log, with every statement

    def statements(self) -> str:
        return self.log.read_text(errors="replace")


def _bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(
        f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed: `apt-get install postgresql` "
                           "(.ci/run does it)")
    return found


def _as_postgres_user(folder: Path) -> tuple[Callable[[], None] | None, dict[str, str]]:
    if os.geteuid() != 0:
        return None, dict(os.environ)
    user = pwd.getpwnam("postgres")
    for path in (folder, *folder.rglob("*")):
        os.chown(path, user.pw_uid, user.pw_gid)

    def demote() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return demote, {**os.environ, "HOME": user.pw_dir}


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """Start a server; yield its URL and log; stop it afterwards."""
    # A folder of its own: pytest's temporary folders are closed to other users.
    folder = Path(tempfile.mkdtemp(prefix="mpc-pg-"))
    data, sockets = folder / "data", folder / "sockets"
    data.mkdir(parents=True)
    sockets.mkdir()
    demote, env = _as_postgres_user(folder)
    run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True, env=env,  # noqa: E731
                                      preexec_fn=demote, timeout=120)
    port = free_port()
    run(_bin("initdb"), "-D", str(data), "-U", "mpc", "--auth=trust", "-E", "UTF8",
        "--no-sync")
    run(_bin("pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "server.log"), "-o",
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c log_statement=all", "start")
    try:
        run(_bin("psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "mpc", "-d", "postgres",
            "-c", "CREATE DATABASE mpc_test")
        yield Postgres(f"postgresql+psycopg://mpc@127.0.0.1:{port}/mpc_test",
                       folder / "server.log")
    finally:
        run(_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
