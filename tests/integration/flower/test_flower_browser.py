"""Flower, started with the Procfile's own command line, behind basic auth: a headless Chromium
logs in and finds a ledgerbridge task that a real worker ran; without credentials Flower answers
401.

Needs Debian's chromium (``scripts/browser`` installs it) and Playwright for Python (the dev
extras), which drives that binary; Playwright's own browser download is never used.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.browser import CHROMIUM_FLAGS, chromium_path

pytestmark = [pytest.mark.redis, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[3]
USER, PASSWORD = "ops", "s3cret-flower:pw"
TASK = "ledgerbridge.upkeep.prune_audit"


def procfile_command(process: str) -> str:
    for line in (REPO / "Procfile").read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() == process:
            return command.strip()
    raise AssertionError(f"the Procfile has no {process!r} entry")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def chromium() -> str:
    return chromium_path()


@dataclass
class Flower:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def flower_env(fleet_env: dict[str, str], db: Path, port: int) -> dict[str, str]:
    env = dict(fleet_env)
    env.update(
        LEDGERBRIDGE_FLOWER_BASIC_AUTH=f"{USER}:{PASSWORD}",
        LEDGERBRIDGE_FLOWER_DB=str(db),
        FLOWER_PORT=str(port),
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    )
    return env


@contextlib.contextmanager
def run_flower(env: dict[str, str], log: Path, *, timeout: float = 60.0) -> Iterator[Flower]:
    """Flower started by the Procfile's line through a shell, as Procfile runners do; stopped
    with SIGTERM (so it saves its state) and killed if it does not stop."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", "exec " + procfile_command("flower")],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Flower(f"http://127.0.0.1:{env['FLOWER_PORT']}", proc, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"flower exited with {proc.returncode}:\n{running.logs()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(running.url + "/", timeout=2).status_code == 401:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"flower did not answer within {timeout:.0f} s:\n{running.logs()}")
            time.sleep(0.2)
        yield running
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


@pytest.fixture
def fleet(worker_fleet):
    # prune_audit needs only the ledger; the Zuora URL just completes the default connection.
    return worker_fleet(zuora_url="http://127.0.0.1:9")


@pytest.fixture
def flower(tmp_path, fleet) -> Iterator[tuple[Flower, object]]:
    env = flower_env(fleet.env, tmp_path / "flower.db", free_port())
    with run_flower(env, tmp_path / "flower.log") as running:
        yield running, fleet


def test_flower_refuses_requests_without_the_basic_auth_credentials(flower):
    running, _ = flower

    anonymous = httpx.get(running.url + "/tasks", timeout=5)
    wrong = httpx.get(running.url + "/tasks", auth=(USER, "wrong"), timeout=5)
    right = httpx.get(running.url + "/tasks", auth=(USER, PASSWORD), timeout=5)

    assert (anonymous.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert anonymous.headers["www-authenticate"].startswith("Basic")


def test_flower_in_a_browser_shows_a_ledgerbridge_task_a_worker_ran(flower, chromium, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: install the dev extras (pip install -e '.[dev]')")

    running, fleet = flower
    fleet.start(1)
    result = fleet.send(TASK, retention_days=400)
    outcome = result.get(timeout=60)
    assert outcome["deleted"] == 0

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
            http_credentials={"username": USER, "password": PASSWORD},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(15_000)
            # Flower learns of the task from the worker's events; reload until it is listed.
            deadline = time.monotonic() + 60
            while True:
                response = page.goto(running.url + "/tasks")
                assert response is not None and response.status == 200
                try:
                    page.get_by_text(TASK).first.wait_for(timeout=5_000)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"{TASK} never appeared on Flower's tasks page:\n{running.logs()}"
                        ) from None
            assert page.get_by_text(result.id).count() >= 1

            detail = page.goto(f"{running.url}/task/{result.id}")
            assert detail is not None and detail.status == 200
            text = page.inner_text("body")
            assert TASK in text
            assert "SUCCESS" in text
        finally:
            context.close()


def test_flower_keeps_its_task_history_across_a_restart(tmp_path, fleet):
    env = flower_env(fleet.env, tmp_path / "flower.db", free_port())
    with run_flower(env, tmp_path / "flower-1.log") as first:
        fleet.start(1)
        result = fleet.send(TASK, retention_days=400)
        result.get(timeout=60)
        deadline = time.monotonic() + 30
        while result.id not in httpx.get(first.url + "/api/tasks", auth=(USER, PASSWORD), timeout=5).json():
            assert time.monotonic() < deadline, f"flower never saw task {result.id}:\n{first.logs()}"
            time.sleep(0.2)
    fleet.stop()

    with run_flower(env, tmp_path / "flower-2.log") as second:
        tasks = httpx.get(second.url + "/api/tasks", auth=(USER, PASSWORD), timeout=5).json()

    assert tasks[result.id]["name"] == TASK
    assert tasks[result.id]["state"] == "SUCCESS"
