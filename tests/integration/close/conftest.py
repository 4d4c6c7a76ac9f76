"""Integration fixtures for the close: both sandboxes over loopback HTTP, a webhook receiver, a
ledger upgraded by the migrations, and real Celery worker processes on a queue of their own.

Every wait is bounded; every server and worker started here is stopped in a ``finally``; the
Redis keys a test created (its queue, its connection's keys, its task results) are deleted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sandbox import acumatica as acumatica_sandbox
from sandbox.server import ThreadedServer
from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from sandbox.zuora import create_app as zuora_app
from shared.close.driver import open_close
from shared.ledger.migrate import upgrade
from shared.ledger.models import CloseRun
from shared.ledger.repo import Ledger
from tests.support.crash import CRASH_ENV
from tests.unit.close.support import SMALL, write_mapping

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = ROOT / ".venv" / "bin"


class Webhook:
    """A loopback endpoint that records every JSON notice POSTed to it: ``posts`` all of them,
    ``received`` those it took (answered 200). While ``down`` it answers 500 to each."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.posts: list[dict[str, Any]] = []
        self.down = False
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> JSONResponse:
            body = json.loads(await request.body())
            self.posts.append(body)
            if self.down:
                return JSONResponse({"ok": False}, status_code=500)
            self.received.append(body)
            return JSONResponse({"ok": True})

        self.server = ThreadedServer(app).start()
        self.url = f"{self.server.url}/hook"

    def texts(self) -> list[str]:
        return [n["text"] for n in self.received]

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The notices taken, once there are ``count`` (notices are delivered after the commit of
        the status they report, by a task of their own)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.received) >= count, f"{len(self.received)} notices delivered, not {count}"
        return self.received


class Worker:
    """A real ``celery worker`` process (prefork, concurrency 1) in its own session. Started with
    ``crash_at``, it runs ``tests.support.crashing_app`` (the product's app plus a hook that kills
    the worker at that point of the close) instead of ``worker.app``."""

    def __init__(self, env: dict[str, str], queue: str, log: Path) -> None:
        self.env = env
        self.queue = queue
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, crash_at: str | None = None, timeout: float = 30.0) -> Worker:
        env = dict(self.env)
        env.pop(CRASH_ENV, None)
        app = "worker.app"
        if crash_at:
            env[CRASH_ENV] = crash_at
            app = "tests.support.crashing_app"
        offset = self.log.stat().st_size if self.log.exists() else 0
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                str(VENV_BIN / "celery"), "-A", app, "worker", "--concurrency=1", "--pool=prefork",
                "-Q", self.queue, "-n", f"{self.queue}-{uuid.uuid4().hex[:6]}@%h", "-l", "INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the crash hook kills this process group only
        )  # fmt: skip
        handle.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log.open("rb") as text:
                text.seek(offset)
                if b" ready." in text.read():
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"the worker did not start:\n{self.log.read_text(errors='replace')[-4000:]}")

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(15)
        except ProcessLookupError:
            pass
        self.proc = None


class CloseEnv:
    """One connection's world: sandboxes, webhook, ledger, env, worker, Celery sender."""

    def __init__(
        self, tmp_path: Path, redis_url: str, database_url: str, *, erp: str, sizes: Any = SMALL
    ) -> None:
        self.tmp = tmp_path
        self.connection = f"t{uuid.uuid4().hex[:10]}"
        self.queue = f"lbtest-{self.connection}"
        self.redis_url = redis_url
        self.redis = redis.Redis.from_url(redis_url)
        self.zuora_app = zuora_app(seed=7, sizes=sizes)
        self.zuora = ThreadedServer(self.zuora_app).start()
        self.acumatica_app = acumatica_sandbox.create_app()
        self.acumatica = ThreadedServer(self.acumatica_app).start()
        self.webhook = Webhook()
        self.database_url = database_url
        upgrade(database_url)
        self.ledger = Ledger.from_url(database_url)
        self.mapping = write_mapping(tmp_path / "mapping.toml")
        self.export_dir = tmp_path / "gl-export"
        self.erp = erp
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("LEDGERBRIDGE_")},
            "PYTHONPATH": str(ROOT),
            "LEDGERBRIDGE_CONNECTION": self.connection,
            "LEDGERBRIDGE_QUEUE": self.queue,
            "LEDGERBRIDGE_REDIS_URL": redis_url,
            "LEDGERBRIDGE_DATABASE_URL": database_url,
            "LEDGERBRIDGE_ZUORA_BASE_URL": self.zuora.url,
            "LEDGERBRIDGE_ZUORA_CLIENT_ID": DEFAULT_CLIENT_ID,
            "LEDGERBRIDGE_ZUORA_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
            "LEDGERBRIDGE_ERP": erp,
            "LEDGERBRIDGE_GL_EXPORT_DIR": str(self.export_dir),
            "LEDGERBRIDGE_ACUMATICA_URL": self.acumatica.url,
            "LEDGERBRIDGE_ACUMATICA_USERNAME": acumatica_sandbox.DEFAULT_USERNAME,
            "LEDGERBRIDGE_ACUMATICA_PASSWORD": acumatica_sandbox.DEFAULT_PASSWORD,
            "LEDGERBRIDGE_ACUMATICA_TENANT": acumatica_sandbox.DEFAULT_TENANT,
            "LEDGERBRIDGE_ACUMATICA_BRANCH": "HQ",
            "LEDGERBRIDGE_ACUMATICA_REQUESTS_PER_MINUTE": "60000",
            "LEDGERBRIDGE_ACUMATICA_MAX_CONCURRENT": "4",
            "LEDGERBRIDGE_MAPPING_FILE": str(self.mapping),
            "LEDGERBRIDGE_NOTIFY_WEBHOOK_URL": self.webhook.url,
            "LEDGERBRIDGE_LOG_LEVEL": "INFO",
        }
        self.worker = Worker(self.env, self.queue, tmp_path / "worker.log")
        self.celery = Celery("ledgerbridge-test", broker=redis_url, backend=redis_url)
        self.task_ids: list[str] = []

    # -- acting ------------------------------------------------------------------------------------

    def resume(self, run_id: int) -> None:
        """Enqueue ``ledgerbridge.close.resume`` as an engineer re-enqueueing the close would."""
        result = self.celery.send_task(
            "ledgerbridge.close.resume", kwargs={"close_run_id": run_id, "connection": self.connection},
            queue=self.queue,
        )  # fmt: skip
        self.task_ids.append(result.id)

    def open(self, period: str = "December 2024", **flags: Any) -> int:
        run, _ = open_close(
            self.ledger, self.connection, period, allow_closed=flags.get("allow_closed", False),
            dry_run=flags.get("dry_run", False),
        )  # fmt: skip
        return run.id or 0

    def cli(
        self, *args: str, timeout: float = 90.0, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ledgerbridge ...`` as a process with this world's environment."""
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT,
            env={**self.env, "COLUMNS": "200", **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def wait_status(
        self, run_id: int, statuses: tuple[str, ...] = ("done",), timeout: float = 60.0
    ) -> CloseRun:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.ledger.get_close_run(run_id)
            if run.status != "running" or run.status in statuses:
                return run
            time.sleep(0.1)
        raise AssertionError(
            f"close run {run_id} still {run.status} at {run.step} after {timeout}s:\n"
            + self.worker.log.read_text(errors="replace")[-4000:]
        )

    def wait_until(self, predicate: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout}s")

    # -- looking -----------------------------------------------------------------------------------

    def zuora_state(self, table: str) -> list[dict[str, Any]]:
        return httpx.get(f"{self.zuora.url}/_sandbox/state/{table}", timeout=10).json()["records"]

    def zuora_control(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.zuora.url}/_sandbox/{path}", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def acumatica_batches(self) -> list[dict[str, Any]]:
        return self.acumatica_app.state.backend.state("JournalTransaction")

    def audit(self, subject: str) -> list[Any]:
        return self.ledger.timeline(subject)

    # -- cleaning up -------------------------------------------------------------------------------

    def close(self) -> None:
        try:
            self.worker.stop()
        finally:
            for server in (self.zuora, self.acumatica, self.webhook.server):
                server.stop()
            self.ledger.dispose()
            self._clean_redis()
            self.redis.close()

    def _clean_redis(self) -> None:
        keys = [self.queue, f"_kombu.binding.{self.queue}", f"_kombu.binding_permanent.{self.queue}"]
        keys += list(self.redis.scan_iter(match=f"ledgerbridge:{self.connection}:*", count=500))
        keys += [f"celery-task-meta-{task_id}" for task_id in self.task_ids]
        for key in self.redis.scan_iter(match="celery-task-meta-*", count=500):
            value = self.redis.get(key) or b""
            if self.connection.encode() in value:
                keys.append(key)
        for tag, value in self.redis.hgetall("unacked").items():
            if self.queue.encode() in value:
                self.redis.hdel("unacked", tag)
                self.redis.zrem("unacked_index", tag)
        for priority_key in self.redis.scan_iter(match=f"{self.queue}*", count=500):
            keys.append(priority_key)
        if keys:
            self.redis.delete(*keys)


@pytest.fixture
def make_env(tmp_path, redis_url) -> Iterator[Any]:
    made: list[CloseEnv] = []

    def build(database_url: str | None = None, *, erp: str = "acumatica", **options: Any) -> CloseEnv:
        directory = tmp_path / f"env{len(made)}"
        directory.mkdir()
        env = CloseEnv(
            directory, redis_url, database_url or f"sqlite:///{directory / 'ledger.db'}", erp=erp, **options
        )
        made.append(env)
        return env

    try:
        yield build
    finally:
        for env in made:
            env.close()
