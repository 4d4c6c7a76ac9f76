"""What runs during a chaos run: both sandboxes and a webhook that records notices (threads of the
test process, which the chaos never touches), and ledgerbridge's own processes as the Procfile
runs them - Celery workers, beat and the callout receiver (``uvicorn worker.web:app``) - which the
chaos kills and restarts.

Every process is started in a session of its own and stopped (its whole process group) by
``close()``, whatever happened before.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request

from sandbox import acumatica as acumatica_sandbox
from sandbox.server import ThreadedServer
from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.chaos.request_log import RequestLog
from tests.chaos.services import free_port, stop_group
from tests.integration.item_level.support import Beat, sigkill, spawn_worker

REPO = Path(__file__).resolve().parents[2]


def _http_ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code < 500
    except httpx.HTTPError:
        return False


def wait_for(check: Any, *, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Sandbox:
    """One sandbox served over loopback from this process (a thread the chaos never touches),
    behind a :class:`RequestLog`. ``warm_up`` makes the requests that load its vendor-contract
    checker (zuora-sdk takes seconds to import), then zeroes its counters."""

    def __init__(self, kind: str, app: Any) -> None:
        self.kind = kind
        self.backend = app.state.backend
        self.log = RequestLog(app)
        self.server = ThreadedServer(self.log).start()
        self.url = self.server.url
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def warm_up(self) -> Sandbox:
        with httpx.Client(base_url=self.url, timeout=300) as client:
            if self.kind == "zuora":
                token = client.post(
                    "/oauth/token",
                    data={"client_id": DEFAULT_CLIENT_ID, "client_secret": DEFAULT_CLIENT_SECRET,
                          "grant_type": "client_credentials"},
                ).json()["access_token"]  # fmt: skip
                headers = {"Authorization": f"Bearer {token}", "Zuora-Version": "2025-08-12"}
                client.get(
                    "/object-query/accounts", params={"pageSize": "1"}, headers=headers
                ).raise_for_status()
                client.get("/v1/accounting-periods", headers=headers).raise_for_status()
                client.post("/_sandbox/tokens/expire").raise_for_status()
            else:
                login = client.post(
                    "/entity/auth/login",
                    json={"name": acumatica_sandbox.DEFAULT_USERNAME, "password": acumatica_sandbox.DEFAULT_PASSWORD,
                          "tenant": acumatica_sandbox.DEFAULT_TENANT},
                )  # fmt: skip
                login.raise_for_status()
                client.post("/entity/auth/logout", cookies=login.cookies)
            client.post("/_sandbox/requests/reset").raise_for_status()
        self.log.forget()
        return self

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = self.http.request(method, f"/_sandbox/{path}", json=body)
        if response.status_code >= 400:
            raise AssertionError(
                f"{self.kind} sandbox {method} {path}: {response.status_code} {response.text}"
            )
        return response.json()

    def state(self, table: str) -> list[dict[str, Any]]:
        """Rows of a table (Zuora) or records of an entity (Acumatica), as the sandbox holds them."""
        return list(self.backend.state(table))

    def requests_served(self) -> list[str]:
        """``"METHOD /path?query"`` of every API request served since the warm-up."""
        return self.log.lines()

    def close(self) -> None:
        self.http.close()
        self.server.stop()


class Webhook:
    """A loopback endpoint recording every notice POSTed to it (``LEDGERBRIDGE_NOTIFY_WEBHOOK_URL``),
    with the request's headers, so deliveries can be counted per notice."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self._lock = threading.Lock()
        app = FastAPI()

        @app.post("/hook")
        async def hook(request: Request) -> dict[str, bool]:
            body = json.loads(await request.body())
            with self._lock:
                self.received.append((dict(request.headers), body))
            return {"ok": True}

        self.server = ThreadedServer(app).start()
        self.url = f"{self.server.url}/hook"

    def notices(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self.server.stop()


class Web:
    """The callout receiver as the Procfile's ``web`` process: ``uvicorn worker.web:app``."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Web:
        log = open(self.log_dir / "web.log", "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "worker.web:app", "--host", "127.0.0.1", "--port", str(self.port),
             "--log-level", "warning"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        return self

    def wait_ready(self, timeout: float = 60) -> Web:
        wait_for(
            lambda: _http_ready(f"{self.url}/healthz"), timeout=timeout, what="the callout receiver start"
        )
        return self

    def kill(self) -> None:
        if self.proc is not None:
            sigkill(self.proc)

    def close(self) -> None:
        stop_group(self.proc)


class Fleet:
    """ledgerbridge's processes: workers (killed and replaced), beat and the receiver."""

    def __init__(self, env: dict[str, str], log_dir: Path, *, concurrency: int = 2) -> None:
        self.env = env
        self.log_dir = log_dir
        self.queue = env["LEDGERBRIDGE_QUEUE"]
        self.concurrency = concurrency
        self.workers: list[subprocess.Popen[bytes]] = []
        self.spawned = 0
        self.beat = Beat(env, log_dir)
        self.web = Web(env, log_dir)

    def spawn_worker(self) -> subprocess.Popen[bytes]:
        self.spawned += 1
        proc = spawn_worker(
            self.env, self.queue, self.log_dir, f"w{self.spawned}", concurrency=self.concurrency
        )
        self.workers.append(proc)
        return proc

    def live_workers(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.workers if p.poll() is None]

    def wait_workers_ready(self, timeout: float = 90) -> None:
        """Until every live worker's log says it is ready (or the timeout)."""

        def ready() -> bool:
            for number in range(1, self.spawned + 1):
                proc = self.workers[number - 1]
                if proc.poll() is not None:
                    continue
                log = self.log_dir / f"worker-w{number}.log"
                if not log.exists() or b" ready." not in log.read_bytes():
                    return False
            return True

        wait_for(ready, timeout=timeout, what="the workers to be ready")

    def kill_beat_and_restart(self) -> None:
        if self.beat.proc is not None:
            sigkill(self.beat.proc)
        self.beat = Beat(self.env, self.log_dir).start()

    def kill_web_and_restart(self) -> None:
        self.web.kill()
        self.web.start()

    def close(self) -> None:
        """Stop everything: TERM to each process group, KILL what is left."""
        procs = [*self.workers, self.beat.proc, self.web.proc]
        for proc in procs:
            if proc is not None and proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            stop_group(proc, timeout=10)
