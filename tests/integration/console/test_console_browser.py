"""The Finance console in a real browser: Playwright drives Debian's chromium (``scripts/browser``
installs it; Playwright's own browser download is never used), headless, against the real stack:
both sandboxes over loopback HTTP, real Redis, a SQLite ledger (and PostgreSQL for the approval
story), a real Celery worker process and the web process (uvicorn, the Procfile's
``worker.web:app``) with the console's secret set. Users are made with ``ledgerbridge user add``;
closes are started with ``ledgerbridge close``.

The stories: signing in (and a wrong password refused); a close on a connection with approval on
stops awaiting approval, the user who started it is refused, a preparer cannot approve, a second
approver approves and the close goes on to done, and the period's evidence pack is downloaded and
read; an invoice parked for an unmapped accounting code is retried from its page by a preparer
once the mapping file has the code, and is posted. No page shows a secret of the connection.

A failing test leaves a screenshot and the HTML of each page it had open, and the processes'
logs, in ``LEDGERBRIDGE_TEST_ARTIFACTS/<test>/`` (default: the test's ``tmp_path/test-artifacts``),
and prints where.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from shared.ledger.models import RecordState, SyncRecord
from tests.integration.close.conftest import ROOT, CloseEnv
from tests.integration.console.test_evidence_pack import EXPECTED_FILES
from tests.support.browser import CHROMIUM_FLAGS, chromium_path
from tests.unit.close.support import write_mapping

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PERIOD = "December 2024"
UNMAPPED = "Subscription Revenue"
UVICORN = str(Path(sys.executable).with_name("uvicorn"))
WAIT_MS = 15_000

# Secrets of the stack's connection and processes: no page may show any of them.
CONSOLE_SECRET = "console-signing-secret-" + secrets.token_hex(16)
CALLOUT_SECRET = "callout-hmac-secret-" + secrets.token_hex(8)
METRICS_TOKEN = "metrics-token-" + secrets.token_hex(8)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(what: str, predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


class Web:
    """The web process (callout receiver and console) as the Procfile starts it, on a free port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [UVICORN, "worker.web:app", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for("the web process answering /console/login", self._answers, timeout=60)
        except AssertionError:
            self.stop()
            raise AssertionError(f"the web process did not start:\n{self.logs()}") from None

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the web process exited with {self.proc.returncode}:\n{self.logs()}")
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(self.url + "/console/login", timeout=2).status_code == 200
        return False

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)


class Stack:
    """One connection's world (:class:`CloseEnv`: sandboxes, ledger, worker) plus the web process
    and the console's users."""

    def __init__(self, env: CloseEnv, **extra_env: str) -> None:
        self.close_env = env
        self.connection = env.connection
        self.ledger = env.ledger
        env.env.update(
            LEDGERBRIDGE_CONSOLE_SECRET=CONSOLE_SECRET,
            LEDGERBRIDGE_CALLOUT_HMAC_SECRET=CALLOUT_SECRET,
            LEDGERBRIDGE_METRICS_TOKEN=METRICS_TOKEN,
            LEDGERBRIDGE_SECRET_KEY=Fernet.generate_key().decode(),
            **extra_env,
        )
        self.env = env.env
        self.passwords: dict[str, str] = {}
        self.web: Web | None = None

    def start(self) -> Stack:
        self.close_env.worker.start(timeout=60)
        self.web = Web(self.env, self.close_env.tmp / "web.log")
        return self

    @property
    def url(self) -> str:
        assert self.web is not None
        return self.web.url

    def cli(
        self, *args: str, stdin: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=ROOT,
            env={**self.env, "COLUMNS": "200"},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def add_user(self, name: str, role: str) -> str:
        password = secrets.token_urlsafe(18)
        made = self.cli("user", "add", name, "--role", role, "--password-stdin", stdin=password + "\n")
        assert made.returncode == 0, made.stdout + made.stderr
        self.passwords[name] = password
        return password

    def secrets(self) -> list[str]:
        """Every secret value this stack's processes hold that a page must never show."""
        values = [
            CONSOLE_SECRET,
            CALLOUT_SECRET,
            METRICS_TOKEN,
            self.env["LEDGERBRIDGE_SECRET_KEY"],
            self.env["LEDGERBRIDGE_ZUORA_CLIENT_SECRET"],
            *self.passwords.values(),
        ]
        return values

    def wait_run(self, run_id: int, status: str, timeout: float = 90) -> Any:
        def reached() -> Any:
            run = self.ledger.get_close_run(run_id)
            if run.status in ("needs_attention", "failed") and status not in ("needs_attention", "failed"):
                raise AssertionError(f"close run {run_id} {run.status}: {run.error}")
            return run if run.status == status else None

        try:
            return wait_for(f"close run {run_id} {status}", reached, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def logs(self) -> str:
        worker = self.close_env.worker.log
        text = worker.read_text(errors="replace")[-3000:] if worker.exists() else ""
        web = self.web.logs() if self.web is not None else ""
        return f"--- worker log ---\n{text}\n--- web log ---\n{web}"

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()


class Browser:
    """Headless Debian chromium through Playwright: one persistent profile (its own cookies) per
    console user, so several people can be signed in at once."""

    def __init__(self, playwright: Any, executable: str, base: Path, url: str) -> None:
        self.playwright = playwright
        self.executable = executable
        self.base = base
        self.url = url
        self.contexts: dict[str, Any] = {}
        self.pages: dict[str, Any] = {}

    def page(self, user: str) -> Any:
        """The page of ``user``'s own browser profile (opened on first use)."""
        if user not in self.pages:
            context = self.playwright.chromium.launch_persistent_context(
                str(self.base / f"profile-{user}"),
                executable_path=self.executable,
                headless=True,
                args=CHROMIUM_FLAGS,
                accept_downloads=True,
                downloads_path=str(self.base / f"downloads-{user}"),
            )
            context.set_default_timeout(WAIT_MS)
            self.contexts[user] = context
            self.pages[user] = context.pages[0] if context.pages else context.new_page()
        return self.pages[user]

    def sign_in(self, user: str, password: str) -> Any:
        page = self.page(user)
        page.goto(self.url + "/console/login")
        page.fill('input[name="username"]', user)
        page.fill('input[name="password"]', password)
        page.click('[data-testid="sign-in"]')
        page.wait_for_selector('[data-testid="overview"]')
        return page

    def keep(self, folder: Path) -> list[Path]:
        """A screenshot and the HTML of every open page, into ``folder``."""
        kept: list[Path] = []
        folder.mkdir(parents=True, exist_ok=True)
        for user, page in self.pages.items():
            with contextlib.suppress(Exception):
                shot = folder / f"{user}.png"
                page.screenshot(path=str(shot), full_page=True)
                kept.append(shot)
            with contextlib.suppress(Exception):
                html = folder / f"{user}.html"
                html.write_text(f"<!-- {page.url} -->\n" + page.content(), "utf-8")
                kept.append(html)
        return kept

    def close(self) -> None:
        for context in self.contexts.values():
            with contextlib.suppress(Exception):
                context.close()


@pytest.fixture
def chromium() -> str:
    return chromium_path()


@pytest.fixture
def ledger_url(request, tmp_path) -> str | None:
    """The stack's ledger: SQLite unless a test asks for PostgreSQL (``indirect`` parametrization);
    a database of its own, dropped after the stack is stopped."""
    if getattr(request, "param", "sqlite") == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return None


@pytest.fixture
def make_stack(tmp_path, redis_url, ledger_url) -> Iterator[Callable[..., Stack]]:
    made: list[tuple[CloseEnv, Stack]] = []

    def build(**extra_env: str) -> Stack:
        directory = tmp_path / f"stack{len(made)}"
        directory.mkdir()
        url = ledger_url or f"sqlite:///{directory / 'ledger.db'}"
        env = CloseEnv(directory, redis_url, url, erp="acumatica")
        stack = Stack(env, **extra_env)
        made.append((env, stack))
        return stack.start()

    try:
        yield build
    finally:
        for env, stack in made:
            try:
                stack.stop()
            finally:
                env.close()


class Browsers:
    """``browsers(stack)`` opens a :class:`Browser` on the stack's console; :meth:`keep` saves the
    pages' screenshots and HTML and the processes' logs for a failed test."""

    def __init__(self, playwright: Any, executable: str, tmp: Path, artifacts: Path) -> None:
        self.playwright = playwright
        self.executable = executable
        self.tmp = tmp
        self.artifacts = artifacts
        self.opened: list[tuple[Browser, Stack]] = []

    def __call__(self, stack: Stack) -> Browser:
        made = Browser(self.playwright, self.executable, self.tmp / f"browser{len(self.opened)}", stack.url)
        self.opened.append((made, stack))
        return made

    def keep(self) -> None:
        kept: list[Path] = []
        for index, (made, stack) in enumerate(self.opened):
            folder = self.artifacts / f"browser{index}"
            kept += made.keep(folder)
            (folder / "processes.log").write_text(stack.logs(), "utf-8")
            kept.append(folder / "processes.log")
        if kept:
            print(f"\nconsole test artifacts ({len(kept)} files): {self.artifacts}")

    def close(self) -> None:
        for made, _ in self.opened:
            made.close()


def artifacts_folder(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """Where a failed test's artifacts go: ``LEDGERBRIDGE_TEST_ARTIFACTS/<test>/``, else the
    test's ``tmp_path/test-artifacts``."""
    root = os.environ.get("LEDGERBRIDGE_TEST_ARTIFACTS")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    return Path(root) / name if root else tmp_path / "test-artifacts"


@pytest.fixture
def browser(request, chromium, make_stack, tmp_path) -> Iterator[Browsers]:
    """``browser(stack)``: a :class:`Browser` on the stack's console (closed at teardown)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: install the dev extras (pip install -e '.[dev]')")
    with sync_playwright() as playwright:
        browsers = Browsers(playwright, chromium, tmp_path, artifacts_folder(request, tmp_path))
        try:
            yield browsers
        finally:
            browsers.close()


def keeps_artifacts(test: Callable[..., None]) -> Callable[..., None]:
    """A browser test that, when it fails, keeps its pages and logs (:meth:`Browsers.keep`)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            test(*args, **kwargs)
        except BaseException:
            kwargs["browser"].keep()
            raise

    return run


def assert_no_secret(stack: Stack, page: Any) -> None:
    html = page.content()
    shown = [value for value in stack.secrets() if value in html]
    assert shown == [], f"{page.url} shows {len(shown)} secret value(s)"


def open_close_page(page: Any, stack: Stack, run_id: int) -> None:
    page.goto(f"{stack.url}/console/closes/{run_id}")
    page.wait_for_selector('[data-testid="close-run"]')


# -- the stories ------------------------------------------------------------------------------------


@keeps_artifacts
def test_sign_in_with_the_password_from_user_add_and_a_wrong_one_refused(make_stack, browser):
    stack = make_stack()
    password = stack.add_user("vera", "viewer")
    web = browser(stack)

    page = web.page("vera")
    page.goto(stack.url + "/console/")  # not signed in: sent to the sign-in form
    page.wait_for_selector('[data-testid="sign-in"]')
    assert "/console/login" in page.url
    page.fill('input[name="username"]', "vera")
    page.fill('input[name="password"]', password + "-wrong")
    page.click('[data-testid="sign-in"]')
    assert page.wait_for_selector('[data-testid="error"]').is_visible()
    assert page.query_selector('[data-testid="overview"]') is None

    page = web.sign_in("vera", password)

    assert page.inner_text('[data-testid="current-user"]').startswith("vera")
    assert stack.connection in page.inner_text('[data-testid="overview"]')
    assert_no_secret(stack, page)


@pytest.mark.parametrize(
    "ledger_url", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
@keeps_artifacts
def test_a_close_awaiting_approval_is_refused_to_its_preparer_approved_by_a_second_user_and_its_evidence_downloaded(
    make_stack, browser, tmp_path, ledger_url
):
    stack = make_stack(LEDGERBRIDGE_APPROVAL="close")
    users = {
        name: stack.add_user(name, role)
        for name, role in (("ana", "approver"), ("ben", "approver"), ("pat", "preparer"))
    }
    started = stack.cli("close", PERIOD, "--as", "ana")
    assert started.returncode in (0, 1), started.stdout + started.stderr
    run = stack.ledger.latest_close_runs(stack.connection)[0]
    run = stack.wait_run(run.id, "awaiting_approval")
    web = browser(stack)

    # The preparer of the close (ana started it) is refused: maker-checker.
    page = web.sign_in("ana", users["ana"])
    open_close_page(page, stack, run.id)
    assert "awaiting" in page.inner_text('[data-testid="close-status"]').lower()
    page.wait_for_selector('[data-testid="approval"]')
    page.fill('[data-testid="approval"] textarea[name="comment"]', "my own close")
    page.click('[data-testid="approve"]')
    refusal = page.wait_for_selector('[data-testid="error"]').inner_text()
    assert "ana started close run" in refusal
    assert stack.ledger.get_close_run(run.id).status == "awaiting_approval"
    assert_no_secret(stack, page)

    # A preparer's role does not approve: no approval button for pat, and a forged POST is refused.
    page = web.sign_in("pat", users["pat"])
    open_close_page(page, stack, run.id)
    assert page.query_selector('[data-testid="approve"]') is None
    token = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    forged = page.request.post(
        f"{stack.url}/console/closes/{run.id}/approve",
        form={"csrf_token": token or "", "comment": "looks fine"},
        max_redirects=0,
    )
    assert forged.status == 403, forged.status
    assert stack.ledger.get_close_run(run.id).status == "awaiting_approval"

    # A second approver approves; the close goes on and is done.
    page = web.sign_in("ben", users["ben"])
    open_close_page(page, stack, run.id)
    assert "ana" in page.inner_text('[data-testid="approval"]')  # who started it is shown
    page.fill('[data-testid="approval"] textarea[name="comment"]', "totals match the trial balance")
    page.click('[data-testid="approve"]')
    done = stack.wait_run(run.id, "done")

    def shows_done() -> bool:
        open_close_page(page, stack, run.id)
        return "done" in page.inner_text('[data-testid="close-status"]').lower()

    wait_for("the close page showing done", shows_done, timeout=30, interval=0.5)
    assert_no_secret(stack, page)

    # The evidence pack, downloaded by the browser.
    evidence_url = f"{stack.url}/console/periods/{stack.connection}/{PERIOD.replace(' ', '%20')}/evidence.zip"
    with page.expect_download() as download_info:
        page.evaluate("url => { window.location.href = url; }", evidence_url)
    download = download_info.value
    saved = tmp_path / "evidence.zip"
    download.save_as(str(saved))
    assert download.suggested_filename.endswith(".zip")
    with zipfile.ZipFile(saved) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    assert set(files) >= EXPECTED_FILES
    assert "generated by:  ben" in files["README.txt"].decode()
    approvals = list(csv.DictReader(io.StringIO(files["approvals.csv"].decode())))
    assert [(a["event"], a["by"]) for a in approvals] == [
        ("started", "ana"),
        ("approval requested", ""),
        ("approved", "ben"),
    ]
    assert approvals[2]["comment"] == "totals match the trial balance"
    timeline = list(csv.DictReader(io.StringIO(files["timeline.csv"].decode())))
    assert any(t["actor"] == "ben" and "approved by ben" in t["message"] for t in timeline)
    reconciliation = list(csv.DictReader(io.StringIO(files["reconciliation.csv"].decode())))
    assert len(reconciliation) == len(done.details["reconcile"]["lines"]) > 0
    assert {r["difference"] for r in reconciliation} == {"0.00"}
    assert files["mapping.toml"] == stack.close_env.mapping.read_bytes()
    for value in stack.secrets():
        assert all(value.encode() not in data for data in files.values()), "a secret is in the evidence pack"


def parked_invoice(stack: Stack) -> SyncRecord | None:
    from sqlmodel import select

    with stack.ledger.reading() as session:
        return session.exec(
            select(SyncRecord).where(
                SyncRecord.connection == stack.connection,
                SyncRecord.object_type == "invoice",
                SyncRecord.state == RecordState.PARKED.value,
            )
        ).first()


@keeps_artifacts
def test_a_record_parked_for_an_unmapped_code_is_retried_from_its_page_after_the_mapping_is_fixed(
    make_stack, browser
):
    stack = make_stack()
    write_mapping(stack.close_env.mapping, drop_accounts=[UNMAPPED])  # Finance forgot a code
    password = stack.add_user("pat", "preparer")
    viewer = stack.add_user("vera", "viewer")
    synced = stack.cli("sync", "accounts", "invoices", "--wait", "--timeout", "90", timeout=150)
    assert synced.returncode in (0, 1), synced.stdout + synced.stderr  # 1: records need a person
    record = wait_for("an invoice parked for its unmapped code", lambda: parked_invoice(stack), timeout=60)
    assert f"unmapped account '{UNMAPPED}'" in (record.last_error or "")
    web = browser(stack)

    # A viewer sees the record but cannot retry it.
    page = web.sign_in("vera", viewer)
    page.goto(f"{stack.url}/console/records/{stack.connection}/invoices/{record.zuora_id}")
    assert page.query_selector('[data-testid="retry"]') is None

    # Finance adds the code; a preparer finds the record in the list and retries it from its page.
    write_mapping(stack.close_env.mapping)
    page = web.sign_in("pat", password)
    page.goto(f"{stack.url}/console/records")
    row = page.locator('[data-testid="record-row"]', has_text=record.zuora_number or record.zuora_id).first
    row.locator("a").first.click()
    page.wait_for_selector('[data-testid="retry"]')
    assert f"/console/records/{stack.connection}/invoices/{record.zuora_id}" in page.url
    page.click('[data-testid="retry"]')
    result = page.wait_for_selector('[data-testid="retry-result"]').inner_text()
    assert "posted" in result.lower(), result

    posted = wait_for(
        "the retried invoice posted",
        lambda: (
            (row_now := stack.ledger.get_record(stack.connection, "invoice", record.zuora_id)) is not None
            and row_now.state in (RecordState.POSTED.value, RecordState.MARKED.value)
            and row_now
        ),
        timeout=60,
    )
    assert posted.erp_ref
    timeline = stack.ledger.timeline(record.subject)
    assert any(e.actor == "pat" for e in timeline), [e.message for e in timeline]
    assert_no_secret(stack, page)
