"""The chaos suite's own Redis and PostgreSQL: servers it starts, restarts and stops itself.

Neither touches the machine's services (the developer's Redis on 6379, the cluster on 5432 that
other test runs use): each runs on a free port from a directory of its own, and is stopped and
deleted by ``close()`` whatever happened. initdb and postgres refuse to run as root, so on a
machine that runs the tests as root they run as the ``postgres`` user (``runuser``) from a
directory that user owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import psycopg
import redis


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")


def stop_group(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 15.0
) -> None:
    """Signal a child started in its own session (its whole process group), then make sure it is
    gone: SIGKILL after ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


class RedisServer:
    """A ``redis-server`` that keeps nothing on disk, on a free port; flushed and restarted at will."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError("the chaos suite needs redis-server on PATH (scripts/services installs it)")
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        _wait(self.answers, f"redis-server on port {self.port} start", 20)
        return self

    def answers(self) -> bool:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def flush(self) -> None:
        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()

    def restart(self, down_seconds: float = 1.0) -> None:
        """Stop the server (everything it held is gone: it keeps nothing on disk), stay down for
        ``down_seconds``, start it again on the same port."""
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def stop(self) -> None:
        stop_group(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()


def _postgres_tool(tool: str) -> str:
    """``tool`` (initdb, postgres, pg_ctl) from PATH, else from Debian's versioned directory
    (``/usr/lib/postgresql/<major>/bin``, newest major first), which is not on PATH."""
    found = shutil.which(tool)
    if found is not None:
        return found
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: -int(p.parent.name)):
        if (folder / tool).exists():
            return str(folder / tool)
    raise AssertionError(
        f"the chaos suite needs PostgreSQL's {tool} (on PATH or in /usr/lib/postgresql/*/bin)"
    )


class PostgresServer:
    """A PostgreSQL instance of its own: ``initdb`` into a temporary directory, ``postgres`` on a
    free loopback port with trust authentication, restarted with ``pg_ctl -m fast``."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: that is private to root, and the server may run as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="ledgerbridge-chaos-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._user = "postgres" if os.geteuid() == 0 else None

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _argv(self, tool: str, *args: str) -> list[str]:
        argv = [_postgres_tool(tool), *args]
        return ["runuser", "-u", self._user, "--", *argv] if self._user else argv

    def init(self) -> PostgresServer:
        self.sockets.mkdir()
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            for path in (self.root, self.sockets):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        subprocess.run(
            self._argv("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
                       "-E", "UTF8", "--locale", "C"),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        return self

    def start(self) -> PostgresServer:
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            self._argv(
                "postgres", "-D", str(self.data), "-p", str(self.port), "-k", str(self.sockets),
                "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=300",
            ),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        _wait(self.answers, f"PostgreSQL on port {self.port} start", 60)
        return self

    def answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"postgres exited with {self.proc.returncode}; see {self.log}")
        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres",
                                 connect_timeout=1):  # fmt: skip
                return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def restart(self) -> None:
        """``pg_ctl -m fast stop`` (every connection is cut), then start again on the same port."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            subprocess.run(
                self._argv("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop"),
                check=False, capture_output=True, timeout=60,
            )  # fmt: skip
        stop_group(self.proc, timeout=30)
        self.proc = None

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
