"""The demo's processes: Redis if none answers, the sandboxes, Celery workers, beat and the callout
receiver as child processes in their own process groups, stopped together; and the environment
they share.

``ledgerbridge demo`` (:mod:`cli.demo_run`) and the benchmark (``bench/scenarios.py``) build on
it. Importing it starts nothing and imports no sandbox: :func:`demo_env` reads the sandboxes'
credentials through :mod:`cli.sandbox` when it is called.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from rich.console import Console


class DemoError(RuntimeError):
    """The demo cannot run here; the message says what to install or start."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise DemoError(f"{what} did not happen within {timeout:.0f}s")


def ensure_redis(url: str, workdir: Path, console: Console) -> subprocess.Popen[bytes] | None:
    """Ping Redis at ``url``; if nothing answers, start a local redis-server on that port."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
        return None
    except redis.ConnectionError:
        pass
    finally:
        client.close()
    server = shutil.which("redis-server")
    pool = client.connection_pool.connection_kwargs
    host, port = str(pool.get("host", "127.0.0.1")), int(pool.get("port", 6379))
    if server is None or host not in ("127.0.0.1", "localhost"):
        raise DemoError(
            f"no Redis answers at {url}. Start one (Debian/Ubuntu: `sudo apt-get install redis-server`, "
            "macOS: `brew install redis && redis-server`) or point LEDGERBRIDGE_REDIS_URL at a running server."
        )
    console.print(f"starting a local redis-server on port {port} (nothing answered at {url})")
    proc = subprocess.Popen(
        [
            server,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def answers() -> bool:
        probe = redis.Redis.from_url(url, socket_connect_timeout=0.5)
        try:
            return bool(probe.ping())
        except redis.ConnectionError:
            return False
        finally:
            probe.close()

    wait_until(answers, timeout=15, what="redis-server start")
    return proc


@dataclass
class Stack:
    """The child processes of one demo run, stopped together (process groups, TERM then KILL)."""

    workdir: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child process
        proc = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise DemoError(f"{name} exited with {proc.returncode}; see {self.workdir / (name + '.log')}")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


def ledgerbridge_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", *args]


def http_ready(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code < 500
        except httpx.HTTPError:
            return False

    return check


@contextmanager
def interrupts_stop(stack: Stack) -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the finally block cleans up either way."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        stack.stop()


# A realistic month for the sandbox tenant: a few hundred accounts, thousands of documents.
DEMO_SIZES: dict[str, Any] = {
    "accounts": 300,
    "invoices": 1800,
    "payments": 1100,
    "refunds": 80,
    "credit_memos": 120,
    "debit_memos": 60,
    "items_min": 1,
    "items_max": 4,
    "large_invoices": 2,
    "tie_count": 150,
    "month": "2024-12",
    "period_names": "long",
}
DEMO_PERIOD = "December 2024"
DEMO_CALLOUT_DOCUMENTS = 40
# The Finance console's users the demo makes (name, role), each with a password made for the run.
DEMO_USERS = (("controller", "approver"), ("preparer", "preparer"))


@dataclass(frozen=True)
class DemoOptions:
    workdir: Path
    redis_url: str
    sizes: dict[str, Any]
    period: str = DEMO_PERIOD
    callout_documents: int = DEMO_CALLOUT_DOCUMENTS
    workers: int = 2
    concurrency: int = 4
    timeout: float = 600.0
    # Keep the stack up after the report, for the Finance console, until Ctrl-C.
    serve: bool = False
    # The demo connection's maker-checker rule (LEDGERBRIDGE_APPROVAL): with "close" the period
    # close waits, after its check, for the demo's approver.
    approval: str = "none"


def demo_env(opts: DemoOptions, *, zuora_url: str, acumatica_url: str, web_port: int) -> dict[str, str]:
    """The environment every demo process shares: one connection, ``demo``, on its own queue."""
    from cryptography.fernet import Fernet

    from cli.sandbox import sandbox_credentials

    credentials = sandbox_credentials()
    mapping = Path(__file__).resolve().parents[1] / "mapping.example.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBRIDGE_")}
    env.update(
        LEDGERBRIDGE_DATABASE_URL=f"sqlite:///{opts.workdir / 'ledger.db'}",
        LEDGERBRIDGE_REDIS_URL=opts.redis_url,
        LEDGERBRIDGE_SECRET_KEY=Fernet.generate_key().decode(),
        LEDGERBRIDGE_CONNECTION="demo",
        LEDGERBRIDGE_QUEUE="ledgerbridge-demo",
        LEDGERBRIDGE_ZUORA_BASE_URL=zuora_url,
        LEDGERBRIDGE_ZUORA_CLIENT_ID=credentials.zuora_client_id,
        LEDGERBRIDGE_ZUORA_CLIENT_SECRET=credentials.zuora_client_secret,
        LEDGERBRIDGE_ZUORA_REQUESTS_PER_MINUTE="20000",
        LEDGERBRIDGE_ERP="acumatica",
        LEDGERBRIDGE_ACUMATICA_URL=acumatica_url,
        LEDGERBRIDGE_ACUMATICA_ENDPOINT="Default/24.200.001",
        LEDGERBRIDGE_ACUMATICA_TENANT=credentials.acumatica_tenant,
        LEDGERBRIDGE_ACUMATICA_USERNAME=credentials.acumatica_username,
        LEDGERBRIDGE_ACUMATICA_PASSWORD=credentials.acumatica_password,
        LEDGERBRIDGE_ACUMATICA_BRANCH="HQ",
        LEDGERBRIDGE_ACUMATICA_REQUESTS_PER_MINUTE="60000",
        LEDGERBRIDGE_ACUMATICA_MAX_CONCURRENT="8",
        LEDGERBRIDGE_MAPPING_FILE=str(mapping),
        LEDGERBRIDGE_CALLOUT_HMAC_SECRET=Fernet.generate_key().decode(),
        # Signs the Finance console's session cookies (made for this run only).
        LEDGERBRIDGE_CONSOLE_SECRET=secrets.token_urlsafe(48),
        LEDGERBRIDGE_APPROVAL=opts.approval,
        LEDGERBRIDGE_PULL_INTERVAL_SECONDS="30",
        LEDGERBRIDGE_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        # As in the Procfile: threaded workers keep to two malloc arenas, not one per thread.
        MALLOC_ARENA_MAX=os.environ.get("MALLOC_ARENA_MAX", "2"),
    )
    return env


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """The demo's LEDGERBRIDGE_* settings as a shell file, so its ledger can be inspected afterwards
    (sandbox credentials and a key made for this run only)."""
    lines = [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()) if k.startswith("LEDGERBRIDGE_")]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
