"""One run of ``ledgerbridge demo``: start the stack (:mod:`cli.demo_stack`), seed a realistic
month in the Zuora sandbox, run the item-level sync, fire signed callouts, close the period, and
print a report of what reached Acumatica, checked against the ledger and Zuora."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import redis
from rich.console import Console

from cli.demo_stack import (
    DEMO_USERS,
    DemoError,
    DemoOptions,
    Stack,
    demo_env,
    ensure_redis,
    free_port,
    http_ready,
    interrupts_stop,
    ledgerbridge_argv,
    wait_until,
    write_env_file,
)


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


def add_console_users(env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Make the demo's Finance console users (:data:`DEMO_USERS`) with ``ledgerbridge user add``,
    each with a password made for this run; returns ``{name: (role, password)}``."""
    users: dict[str, tuple[str, str]] = {}
    for name, role in DEMO_USERS:
        password = secrets.token_urlsafe(12)
        made = subprocess.run(
            ledgerbridge_argv("user", "add", name, "--role", role, "--password-stdin"),
            env=env,
            input=password + "\n",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if made.returncode != 0:
            raise DemoError(f"`ledgerbridge user add {name}` failed: {(made.stderr or made.stdout).strip()}")
        users[name] = (role, password)
    return users


ROLE_NOTES = {
    "approver": "approves or rejects closes",
    "preparer": "retries parked and failed records",
}


def print_console(
    console: Console, web_url: str, users: dict[str, tuple[str, str]], *, serving: bool
) -> None:
    """Where the Finance console is and whom to sign in as."""
    console.rule("Finance console")
    console.print(f"[bold]{web_url}/console/[/]")
    for index, (name, (role, password)) in enumerate(users.items()):
        lead = "sign in as" if index == 0 else "        or"
        note = ROLE_NOTES.get(role, role)
        console.print(f"  {lead} [bold]{name}[/] / [bold]{password}[/]  ({role}: {note})")
    if serving:
        console.print("The demo's processes stay up for the console until Ctrl-C.")
    else:
        console.print("It stops with the demo, now; `scripts/demo --serve` keeps everything up until Ctrl-C.")


def serve_until_interrupted(stack: Stack) -> None:
    """Keep the stack running (the console, workers, beat) until Ctrl-C or SIGTERM."""
    try:
        while True:
            stack.check_alive()
            time.sleep(1)
    except KeyboardInterrupt:
        return


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
        users = add_console_users(stack.env)

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
                              "--as", "preparer", timeout=opts.timeout + 30)  # fmt: skip
        stack.check_alive()
        ok = report(
            stack.env,
            console,
            acumatica_url=acumatica_url,
            web_url=web_url,
            elapsed=time.monotonic() - started,
        )
        # With approval on, the close rightly stops awaiting approval (its command exits 1 then).
        close_ok = close_code == 0 or (opts.approval != "none" and close_code == 1 and ok)
        code = 0 if ok and sync_code == 0 and close_ok and pushed == len(pushed_ids) else 1
        print_console(console, web_url, users, serving=opts.serve)
        if opts.serve:
            serve_until_interrupted(stack)
        return code


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
    awaiting = False
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
        if lines:
            console.print(recon)
        closed_ok = run.status == "done" and bool(lines) and entries == posted_total
        if run.status == "awaiting_approval":
            awaiting = True
            closed_ok = entries == 0  # nothing is posted before the approval
            console.print(
                f"The close awaits approval: sign in to the Finance console as an approver (below) and "
                f"approve close run {run.id}; it then posts, marks, verifies and reconciles."
            )
    else:
        console.print("[red]no close run was recorded[/]")

    if all_synced and closed_ok and awaiting:
        verdict = "[green]every document posted once and marked; the close awaits its approval[/]"
    elif all_synced and closed_ok:
        verdict = "[green]everything posted once, marked and reconciled[/]"
    else:
        verdict = (
            "[red]something needs a person: see `ledgerbridge status` and `ledgerbridge close-status`[/]"
        )
    console.print(f"\n{verdict} in {elapsed:.0f}s.")
    console.print(
        "Where to look next: the ledger stays in the work folder. Load the demo's settings with\n"
        f"  set -a; . {Path(env['LEDGERBRIDGE_DATABASE_URL'].removeprefix('sqlite:///')).parent / 'env'}; set +a\n"
        "then:\n"
        "  ledgerbridge status                 per stream: mark, lag, counts by state; open close runs\n"
        "  ledgerbridge close-status           the close run, step by step\n"
        "  ledgerbridge explain INV00000001    any record's timeline, every API call it took\n"
        '  ledgerbridge close evidence "December 2024" --out evidence.zip\n'
        "                                      the close's evidence pack (timeline, approvals, ...)\n"
        "In production, Flower (Procfile `flower`) lists every task and retry, and the web process\n"
        f"serves ledgerbridge's metrics at /metrics (this run: {web_url}/metrics)."
    )
    return all_synced and closed_ok
