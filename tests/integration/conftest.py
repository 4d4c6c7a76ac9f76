"""Fixtures for integration tests: sandboxes over loopback HTTP and real Celery worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from sandbox.server import ThreadedServer
from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sizes
from sandbox.zuora import create_app as create_zuora_app
from shared.ledger.migrate import upgrade

REPO = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


@pytest.fixture
def zuora_sandbox() -> Iterator[Callable[..., ThreadedServer]]:
    """Start Zuora sandboxes on free loopback ports: ``zuora_sandbox(seed=1, sizes=Sizes(...))``."""
    servers: list[ThreadedServer] = []

    def start(*, seed: int | None = 1, sizes: Sizes | None = None) -> ThreadedServer:
        server = ThreadedServer(create_zuora_app(seed=seed, sizes=sizes)).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@dataclass
class WorkerFleet:
    """Celery worker processes sharing one environment (broker, ledger, connection, queue)."""

    env: dict[str, str]
    queue: str
    log_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self, count: int = 1, *, concurrency: int = 1, timeout: float = 60.0
    ) -> list[subprocess.Popen[bytes]]:
        started = []
        for _ in range(count):
            name = f"w{len(self.procs)}-{uuid.uuid4().hex[:6]}@%h"
            log = open(self.log_dir / f"worker-{len(self.procs)}.log", "ab")  # noqa: SIM115 - closed with the process
            proc = subprocess.Popen(
                [
                    CELERY,
                    "-A",
                    "worker.app",
                    "worker",
                    "-Q",
                    self.queue,
                    "-n",
                    name,
                    "--concurrency",
                    str(concurrency),
                    "--pool",
                    "prefork",
                    "--without-gossip",
                    "--without-mingle",
                    "--loglevel",
                    "INFO",
                ],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.procs.append(proc)
            started.append(proc)
        self.wait_ready(len(self.procs), timeout=timeout)
        return started

    def wait_ready(self, expected: int, *, timeout: float) -> None:
        client = self.client()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = client.control.ping(timeout=0.5) or []
            if len(replies) >= expected:
                return
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"worker exited with {dead[0].returncode}; logs in {self.log_dir}")
        raise TimeoutError(f"{expected} workers not ready within {timeout}s; logs in {self.log_dir}")

    def client(self) -> Celery:
        app = Celery(broker=self.env["LEDGERBRIDGE_REDIS_URL"], backend=self.env["LEDGERBRIDGE_REDIS_URL"])
        app.conf.update(
            task_default_queue=self.queue,
            task_serializer="json",
            accept_content=["json"],
            result_serializer="json",
            broker_connection_retry_on_startup=True,
        )
        return app

    def send(self, name: str, **kwargs: Any) -> Any:
        return self.client().send_task(name, kwargs=kwargs, queue=self.queue)

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Kill a worker and its pool children (the whole process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=15)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    self.kill(proc)


@pytest.fixture
def worker_fleet(tmp_path, redis_url, connection_name) -> Iterator[Callable[..., WorkerFleet]]:
    """``worker_fleet(zuora_url=..., **extra_env)`` -> a WorkerFleet with a migrated SQLite ledger,
    a unique connection name and queue; every process is stopped at teardown."""
    fleets: list[WorkerFleet] = []

    def make(*, zuora_url: str, database_url: str | None = None, **extra: str) -> WorkerFleet:
        db_url = database_url or f"sqlite:///{tmp_path / 'ledger.db'}"
        upgrade(db_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBRIDGE_")}
        env.update(
            LEDGERBRIDGE_REDIS_URL=redis_url,
            LEDGERBRIDGE_DATABASE_URL=db_url,
            LEDGERBRIDGE_CONNECTION=connection_name,
            LEDGERBRIDGE_QUEUE=f"q-{connection_name}",
            LEDGERBRIDGE_ZUORA_BASE_URL=zuora_url,
            LEDGERBRIDGE_ZUORA_CLIENT_ID=DEFAULT_CLIENT_ID,
            LEDGERBRIDGE_ZUORA_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
            LEDGERBRIDGE_GL_EXPORT_DIR=str(tmp_path / "gl-export"),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        fleet = WorkerFleet(env=env, queue=env["LEDGERBRIDGE_QUEUE"], log_dir=tmp_path)
        fleets.append(fleet)
        return fleet

    yield make
    for fleet in fleets:
        fleet.stop()
