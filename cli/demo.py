"""``ledgerbridge demo``: the whole system against the two sandboxes on this machine.

Starts Redis (if none answers and ``redis-server`` is installed), both sandboxes, Celery
workers, beat and the callout receiver as child processes, seeds a realistic month, runs the
item-level sync and a full period close, and prints a report. Every child process is stopped on
exit or Ctrl-C.
"""

from __future__ import annotations

import os
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
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import redis
from rich.console import Console

from sandbox.acumatica import DEFAULT_PASSWORD, DEFAULT_TENANT, DEFAULT_USERNAME
from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET


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


def demo_env(opts: DemoOptions, *, zuora_url: str, acumatica_url: str, web_port: int) -> dict[str, str]:
    """The environment every demo process shares: one connection, ``demo``, on its own queue."""
    from cryptography.fernet import Fernet

    mapping = Path(__file__).resolve().parents[1] / "mapping.example.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBRIDGE_")}
    env.update(
        LEDGERBRIDGE_DATABASE_URL=f"sqlite:///{opts.workdir / 'ledger.db'}",
        LEDGERBRIDGE_REDIS_URL=opts.redis_url,
        LEDGERBRIDGE_SECRET_KEY=Fernet.generate_key().decode(),
        LEDGERBRIDGE_CONNECTION="demo",
        LEDGERBRIDGE_QUEUE="ledgerbridge-demo",
        LEDGERBRIDGE_ZUORA_BASE_URL=zuora_url,
        LEDGERBRIDGE_ZUORA_CLIENT_ID=DEFAULT_CLIENT_ID,
        LEDGERBRIDGE_ZUORA_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
        LEDGERBRIDGE_ZUORA_REQUESTS_PER_MINUTE="20000",
        LEDGERBRIDGE_ERP="acumatica",
        LEDGERBRIDGE_ACUMATICA_URL=acumatica_url,
        LEDGERBRIDGE_ACUMATICA_ENDPOINT="Default/24.200.001",
        LEDGERBRIDGE_ACUMATICA_TENANT=DEFAULT_TENANT,
        LEDGERBRIDGE_ACUMATICA_USERNAME=DEFAULT_USERNAME,
        LEDGERBRIDGE_ACUMATICA_PASSWORD=DEFAULT_PASSWORD,
        LEDGERBRIDGE_ACUMATICA_BRANCH="HQ",
        LEDGERBRIDGE_ACUMATICA_REQUESTS_PER_MINUTE="60000",
        LEDGERBRIDGE_ACUMATICA_MAX_CONCURRENT="8",
        LEDGERBRIDGE_MAPPING_FILE=str(mapping),
        LEDGERBRIDGE_CALLOUT_HMAC_SECRET=Fernet.generate_key().decode(),
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


def _clean_redis(url: str, connection: str, queue: str) -> None:
    """Forget a previous demo run's Redis state (its tokens, locks, queue), nothing else."""
    client = redis.Redis.from_url(url)
    try:
        keys = [key.decode() for key in client.scan_iter(f"ledgerbridge:{connection}:*", count=1000)]
        client.delete(queue, *keys)
    finally:
        client.close()


def _run_cli(stack: Stack, console: Console, *args: str, timeout: float) -> int:
    """Run a ledgerbridge command in the demo's environment, its output shown as it comes."""
    console.print(f"[dim]$ ledgerbridge {' '.join(args)}[/]")
    try:
        return subprocess.run(
            ledgerbridge_argv(*args), env=stack.env, timeout=timeout, check=False
        ).returncode
    except subprocess.TimeoutExpired:
        raise DemoError(f"`ledgerbridge {' '.join(args)}` did not finish within {timeout:.0f}s") from None


def _fire_callouts(zuora_url: str, count: int) -> list[str]:
    """Post new invoices in the sandbox tenant: each fires a signed 1110 callout to the receiver."""
    accounts = httpx.get(f"{zuora_url}/_sandbox/state/accounts", timeout=30).json()
    rows = accounts if isinstance(accounts, list) else accounts.get("records", accounts.get("data", []))
    ids: list[str] = []
    for i in range(count):
        account = rows[i % len(rows)]
        body = {
            "AccountId": account.get("Id") or account.get("id"),
            "Status": "Posted",
            "items": [
                {"ChargeName": "Demo add-on", "ChargeAmount": 25 + i, "AccountingCode": "Sales Revenue"}
            ],
        }
        response = httpx.post(f"{zuora_url}/_sandbox/records/invoices", json=body, timeout=30)
        response.raise_for_status()
        created = response.json()
        ids.append(str(created.get("Id") or created.get("id")))
    return ids


def _wait_pushed(database_url: str, ids: list[str], *, timeout: float) -> int:
    """Wait until the callout-driven invoices are marked in the ledger; returns how many are."""
    from shared.ledger.repo import Ledger

    ledger = Ledger.from_url(database_url)
    try:

        def marked() -> int:
            return sum(
                1
                for zuora_id in ids
                if (row := ledger.get_record("demo", "invoice", zuora_id)) is not None
                and row.state == "marked"
            )

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and marked() < len(ids):
            time.sleep(0.5)
        return marked()
    finally:
        ledger.dispose()


def run_demo(opts: DemoOptions, console: Console) -> int:
    """Run the whole demo; returns the exit code (0 all reconciled, 1 something needs a person)."""
    from shared.ledger.migrate import upgrade

    started = time.monotonic()
    if opts.workdir.exists():
        shutil.rmtree(opts.workdir)
    opts.workdir.mkdir(parents=True)
    stack = Stack(workdir=opts.workdir, env=dict(os.environ))
    redis_proc = ensure_redis(opts.redis_url, opts.workdir, console)
    if redis_proc is not None:
        stack.procs["redis-server"] = redis_proc
    with interrupts_stop(stack):
        zuora_port, acumatica_port, web_port = free_port(), free_port(), free_port()
        zuora_url, acumatica_url = f"http://127.0.0.1:{zuora_port}", f"http://127.0.0.1:{acumatica_port}"
        web_url = f"http://127.0.0.1:{web_port}"
        console.rule("[bold]ledgerbridge demo")
        console.print(f"work folder {opts.workdir} (ledger, logs of every process)")

        stack.spawn(
            "zuora-sandbox", ledgerbridge_argv("sandbox", "zuora", "--port", str(zuora_port), "--seed", "1")
        )
        stack.spawn(
            "acumatica-sandbox", ledgerbridge_argv("sandbox", "acumatica", "--port", str(acumatica_port))
        )
        wait_until(http_ready(f"{zuora_url}/_sandbox/health"), timeout=60, what="the Zuora sandbox start")
        wait_until(
            http_ready(f"{acumatica_url}/_sandbox/health"), timeout=60, what="the Acumatica sandbox start"
        )
        seeded = httpx.post(f"{zuora_url}/_sandbox/seed", json={"seed": 1, "sizes": opts.sizes}, timeout=300)
        seeded.raise_for_status()
        console.print(f"Zuora sandbox   {zuora_url}  seeded: {_seed_summary(seeded.json())}")
        console.print(f"Acumatica       {acumatica_url}  (Default/24.200.001, tenant Company)")

        stack.env = demo_env(opts, zuora_url=zuora_url, acumatica_url=acumatica_url, web_port=web_port)
        write_env_file(opts.workdir / "env", stack.env)
        _clean_redis(opts.redis_url, "demo", stack.env["LEDGERBRIDGE_QUEUE"])
        upgrade(stack.env["LEDGERBRIDGE_DATABASE_URL"])

        stack.spawn("web", [sys.executable, "-m", "uvicorn", "worker.web:app", "--host", "127.0.0.1",
                            "--port", str(web_port), "--log-level", "warning"])  # fmt: skip
        for i in range(opts.workers):
            stack.spawn(f"worker-{i}", [sys.executable, "-m", "celery", "-A", "worker.app", "worker",
                                        "-Q", stack.env["LEDGERBRIDGE_QUEUE"], "-n", f"demo{i}@%h",
                                        "--concurrency", str(opts.concurrency), "--loglevel", "INFO", "-E"])  # fmt: skip
        stack.spawn("beat", [sys.executable, "-m", "celery", "-A", "worker.app", "beat", "--loglevel", "INFO",
                             "--schedule", str(opts.workdir / "beat-schedule")])  # fmt: skip
        wait_until(http_ready(f"{web_url}/healthz"), timeout=60, what="the callout receiver start")
        stack.check_alive()
        callouts = {
            "url": f"{web_url}/zuora/callouts",
            "secret": stack.env["LEDGERBRIDGE_CALLOUT_HMAC_SECRET"],
        }
        httpx.post(f"{zuora_url}/_sandbox/callouts", json=callouts, timeout=30).raise_for_status()
        console.print(f"callout receiver {web_url}/zuora/callouts, {opts.workers} workers, beat")

        console.rule("item-level sync")
        sync_code = _run_cli(
            stack, console, "sync", "--wait", "--timeout", str(opts.timeout), timeout=opts.timeout + 30
        )
        stack.check_alive()
        console.print(f"posting {opts.callout_documents} new invoices in Zuora: each fires a signed callout")
        pushed_ids = _fire_callouts(zuora_url, opts.callout_documents)
        pushed = _wait_pushed(stack.env["LEDGERBRIDGE_DATABASE_URL"], pushed_ids, timeout=120)
        console.print(f"{pushed}/{len(pushed_ids)} pushed invoices posted to Acumatica and marked in Zuora")

        console.rule(f"period close: {opts.period}")
        close_code = _run_cli(stack, console, "close", opts.period, "--wait", "--timeout", str(opts.timeout),
                              timeout=opts.timeout + 30)  # fmt: skip
        stack.check_alive()
        ok = report(
            stack.env,
            console,
            acumatica_url=acumatica_url,
            web_url=web_url,
            elapsed=time.monotonic() - started,
        )
        return 0 if ok and sync_code == 0 and close_code == 0 and pushed == len(pushed_ids) else 1


def _seed_summary(body: Any) -> str:
    counts = body.get("counts", body) if isinstance(body, dict) else {}
    shown = [f"{v} {k}" for k, v in counts.items() if isinstance(v, int) and v]
    return ", ".join(shown) or "ok"


ITEM_TYPES = ("account", "invoice", "payment", "refund", "credit_memo", "debit_memo")
OPEN_STATES = ("pending", "posting", "failed", "parked")


def _money(value: Any) -> str:
    return f"{Decimal(str(value)):,.2f}"


def _erp_counts(acumatica_url: str) -> dict[str, int]:
    """What Acumatica holds, read from the sandbox: customers, AR documents by type, payments, GL batches."""
    counts: dict[str, int] = {}
    for entity in ("Customer", "Invoice", "Payment", "JournalTransaction"):
        rows = httpx.get(f"{acumatica_url}/_sandbox/state/{entity}", timeout=60).json()
        if entity in ("Invoice", "Payment"):
            for row in rows:
                label = f"{entity}:{row.get('Type')}"
                counts[label] = counts.get(label, 0) + 1
        else:
            counts[entity] = len(rows)
    return counts


def report(
    env: dict[str, str], console: Console, *, acumatica_url: str, web_url: str, elapsed: float
) -> bool:
    """Print the demo report; True when every document and journal entry is posted, marked and reconciled."""
    from rich.table import Table

    from shared.ledger.repo import Ledger

    ledger = Ledger.from_url(env["LEDGERBRIDGE_DATABASE_URL"])
    try:
        counts = ledger.counts_by_state("demo")
        runs = ledger.latest_close_runs("demo", limit=1)
    finally:
        ledger.dispose()
    erp = _erp_counts(acumatica_url)
    erp_for = {
        "account": erp.get("Customer", 0),
        "invoice": erp.get("Invoice:Invoice", 0),
        "debit_memo": erp.get("Invoice:Debit Memo", 0),
        "credit_memo": erp.get("Invoice:Credit Memo", 0),
        "payment": erp.get("Payment:Payment", 0),
        "refund": erp.get("Payment:Refund", 0),
    }

    console.rule("[bold]report")
    docs = Table(title="Item-level sync: Zuora -> Acumatica receivables", title_justify="left")
    for column in ("type", "in ledger", "posted + marked", "waiting or failed", "in Acumatica"):
        docs.add_column(column, justify="left" if column == "type" else "right")
    all_synced = True
    for kind in ITEM_TYPES:
        total = sum(n for (t, _s), n in counts.items() if t == kind)
        marked = counts.get((kind, "marked"), 0)
        waiting = sum(counts.get((kind, s), 0) for s in (*OPEN_STATES, "posted"))
        all_synced &= waiting == 0 and marked == total and erp_for[kind] == total
        docs.add_row(kind.replace("_", " "), str(total), str(marked), str(waiting), str(erp_for[kind]))
    console.print(docs)

    closed_ok = False
    if runs:
        run = runs[0]
        entries = counts.get(("journal_entry", "marked"), 0)
        posted_total = sum(n for (t, _s), n in counts.items() if t == "journal_entry")
        console.print(
            f"Period close [bold]{run.period_name}[/] (run {run.id}): [bold]{run.status}[/] at step {run.step}; "
            f"{entries}/{posted_total} summary journal entries posted to the GL and marked transferred in Zuora; "
            f"{erp.get('JournalTransaction', 0)} GL batches in Acumatica"
        )
        lines = (run.details.get("reconcile") or {}).get("lines", []) if isinstance(run.details, dict) else []
        recon = Table(
            title="Reconciliation per account and currency (Zuora = ledger = Acumatica)", title_justify="left"
        )
        for column in ("account", "currency", "debit", "credit", "match"):
            recon.add_column(column, justify="left" if column in ("account", "currency") else "right")
        for line in lines:
            same = (
                (line["zuora_debit"], line["zuora_credit"])
                == (line["ledger_debit"], line["ledger_credit"])
                == (
                    line["erp_debit"],
                    line["erp_credit"],
                )
            )
            recon.add_row(
                str(line["account"]),
                str(line["currency"]),
                _money(line["zuora_debit"]),
                _money(line["zuora_credit"]),
                "[green]yes[/]" if same else "[red]NO[/]",
            )
        console.print(recon)
        closed_ok = run.status == "done" and bool(lines) and entries == posted_total
    else:
        console.print("[red]no close run was recorded[/]")

    verdict = (
        "[green]everything posted once, marked and reconciled[/]"
        if all_synced and closed_ok
        else ("[red]something needs a person: see `ledgerbridge status` and `ledgerbridge close-status`[/]")
    )
    console.print(f"\n{verdict} in {elapsed:.0f}s.")
    console.print(
        "Where to look next: the ledger stays in the work folder. Load the demo's settings with\n"
        f"  set -a; . {Path(env['LEDGERBRIDGE_DATABASE_URL'].removeprefix('sqlite:///')).parent / 'env'}; set +a\n"
        "then:\n"
        "  ledgerbridge status                 per stream: mark, lag, counts by state; open close runs\n"
        "  ledgerbridge close-status           the close run, step by step\n"
        "  ledgerbridge explain INV00000001    any record's timeline, every API call it took\n"
        "In production, Flower (Procfile `flower`) lists every task and retry, and the web process\n"
        f"serves ledgerbridge's metrics at /metrics (this run: {web_url}/metrics)."
    )
    return all_synced and closed_ok
