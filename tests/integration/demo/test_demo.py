"""The README's first command, at a small size: the demo runs end to end and reports success."""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[3]


# Command lines only the demo's child processes have.
DEMO_MARKERS = ("cli.main sandbox", "worker.web:app", "demo0@", "demo1@")


def test_demo_small_runs_sync_and_close_and_reconciles(tmp_path, redis_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBRIDGE_")}
    env.update(LEDGERBRIDGE_REDIS_URL=redis_url, COLUMNS="160", PYTHONUNBUFFERED="1")
    workdir = tmp_path / "demo"

    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "demo", "--scale", "0.04", "--workdir", str(workdir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    assert "everything posted once, marked and reconciled" in out
    assert re.search(r"done: close run \d+ of 'December 2024' posted, marked and reconciled", out)
    rows = dict(re.findall(r"│ (account|invoice|payment|refund|credit memo|debit memo)\s+│\s+(\d+) │", out))
    assert set(rows) == {"account", "invoice", "payment", "refund", "credit memo", "debit memo"}
    assert all(int(n) > 0 for n in rows.values())
    assert re.search(r"\d+/\d+ pushed invoices posted to Acumatica and marked in Zuora", out)
    assert re.search(r"^http://127\.0\.0\.1:\d+/console/$", out, re.MULTILINE)
    assert re.search(r"sign in as controller / \S{12,}  \(approver", out)
    assert re.search(r"or preparer / \S{12,}  \(preparer", out)
    for name in ("zuora-sandbox", "acumatica-sandbox", "web", "worker-0", "worker-1", "beat"):
        assert (workdir / f"{name}.log").exists()
    leftovers = [
        p for p in psutil.process_iter(["cmdline"]) if str(workdir) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == [], f"demo left processes running: {leftovers}"


class Cookies:
    """The console's cookies by hand: they are Secure, which an HTTP client's jar keeps for https
    (a browser sends them to http://127.0.0.1 too)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def take(self, response: httpx.Response) -> httpx.Response:
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            self.values[name.strip()] = rest.split(";", 1)[0]
        return response

    def header(self) -> dict[str, str]:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.values.items())}


def saved_settings(path: Path) -> dict[str, str]:
    """The demo's LEDGERBRIDGE_* settings from the shell file it writes in its work folder."""
    pairs = (shlex.split(line)[0].split("=", 1) for line in path.read_text().splitlines() if line.strip())
    return {name: value for name, value in pairs}


def csrf_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html[:2000]
    return found[1]


def test_demo_serve_keeps_the_console_up_with_a_close_awaiting_its_approver(tmp_path, redis_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBRIDGE_")}
    env.update(LEDGERBRIDGE_REDIS_URL=redis_url, COLUMNS="200", PYTHONUNBUFFERED="1", NO_COLOR="1")
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "demo", "--scale", "0.04", "--workdir", str(workdir), "--serve",
         "--approval", "close"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 600
        while not any("stay up for the console until Ctrl-C" in line for line in seen):
            assert proc.poll() is None, "".join(seen)[-4000:]
            assert time.monotonic() < deadline, "".join(seen)[-4000:]
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
        out = "".join(seen)
        assert "every document posted once and marked; the close awaits its approval" in out
        run_id = re.search(r"close run (\d+) started for 'December 2024' on demo", out)[1]
        url = re.search(r"^(http://127\.0\.0\.1:\d+)/console/$", out, re.MULTILINE)[1]
        password = re.search(r"sign in as controller / (\S+)", out)[1]

        # The printed approver signs in and approves the close from the console; it goes on to done.
        cookies = Cookies()
        form = cookies.take(httpx.get(f"{url}/console/login", timeout=10))
        signed_in = cookies.take(
            httpx.post(
                f"{url}/console/login",
                data={"username": "controller", "password": password, "csrf_token": csrf_token(form.text)},
                headers=cookies.header(),
                timeout=10,
            )
        )
        assert signed_in.status_code == 303, signed_in.text[:2000]
        page = httpx.get(f"{url}/console/closes/{run_id}", headers=cookies.header(), timeout=10)
        assert page.status_code == 200 and 'data-testid="approval"' in page.text
        approved = httpx.post(
            f"{url}/console/closes/{run_id}/approve",
            data={"csrf_token": csrf_token(page.text), "comment": "demo figures checked"},
            headers=cookies.header(),
            timeout=30,
        )
        assert approved.status_code in (200, 303), approved.text[:2000]
        settings = {**env, **saved_settings(workdir / "env")}

        def close_status() -> str:
            shown = subprocess.run(
                [sys.executable, "-m", "cli.main", "close-status", run_id],
                cwd=REPO,
                env=settings,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            return shown.stdout

        deadline = time.monotonic() + 120
        while "done: close run" not in (shown := close_status()) and time.monotonic() < deadline:
            time.sleep(1)
        status = shown
        assert f"done: close run {run_id} of 'December 2024' posted, marked and reconciled" in status
    finally:
        proc.send_signal(signal.SIGTERM)  # Ctrl-C's equivalent: the demo stops what it started
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0
    leftovers = [
        p for p in psutil.process_iter(["cmdline"]) if str(workdir) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == [], f"demo left processes running: {leftovers}"
