"""``scripts/bench`` (``python -m bench``): ledgerbridge measured side by side with the obvious script.

Every scenario starts the two sandboxes as processes on this machine (so the cores are shared as
in production), sets their latency and licence knobs through their control planes, and runs two
things against the same seeded tenant:

* the **baseline** - a single-process sequential script that follows Zuora's item-level guide
  literally: Object Query pages, one ERP create per record, ``action/update`` marks in batches of
  50 (the memo PUTs one by one, as Actions do not take memos), no ledger. It is correct: every
  record is created once and marked, and the bench checks it. For the close, the baseline posts
  each summary entry and marks it with one PUT, one after the other;
* **ledgerbridge** - real Redis, 2 Celery worker processes, a migrated ledger, and
  ``ledgerbridge sync --wait`` / ``ledgerbridge close --wait`` as a user runs them. By default
  the shape is production's: a PostgreSQL ledger (a database per run on the local server,
  dropped after) and each worker the Procfile's own command line (prefork, its concurrency);
  ``--database sqlite`` and ``--pool threads|prefork`` choose others. Each scenario's report names
  its shape and what the fleet asked of the ledger per record (statements, round trips, commits,
  connection checkouts, pings: :mod:`shared.ledger.statements`).

Speed is reported as a ratio measured in the same run, never as an absolute claim. Figures come
from the sandboxes' request counters (calls, 429s, token requests), the ledger (states, audit
timestamps) and ``psutil`` (RSS sampled every ``RSS_INTERVAL`` seconds); correctness is checked
afterwards (every document exactly once in the ERP, every record marked in Zuora). The results
are printed as tables and written to a JSON file.

Sizes: ``--size tiny`` proves the machinery in seconds (the test suite runs it); ``--size full``
is the issue's set-up. Where a full-size baseline would take longer than the rest of the bench
together (20,000 records at ~9 records/s), it runs on a 1/20-scale tenant with the same mix and
seed, and the output says so.

Only the CLI's bench/demo commands, scripts and tests import the sandboxes (ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import psutil
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    import httpx

    from cli.demo_stack import Stack


SCENARIOS = ("backlog", "licence", "memory", "push", "close", "in_doubt", "fair_share", "scale_out")
Size = Literal["tiny", "full"]
RSS_INTERVAL = 0.5
SEED = 7
PERIOD = "December 2024"
# The mix of a realistic month (the demo's month, scaled): documents per 10,000.
MIX = {"invoices": 5700, "payments": 3475, "refunds": 250, "credit_memos": 380, "debit_memos": 195}
ACCOUNTS_PER_DOCUMENT = 0.075
BASELINE_SCALE = 20  # full-size baselines run on a 1/20-scale tenant (same mix, same seed)


class BenchError(RuntimeError):
    """A scenario could not run; the message says why."""


class _Demo:
    """``cli.demo_stack`` (the demo's processes and their environment), loaded on first use so
    that importing the benchmark loads none of the demo's machinery."""

    def __getattr__(self, name: str) -> Any:
        from cli import demo_stack as module

        return getattr(module, name)


demo = _Demo()


# -- sizes --------------------------------------------------------------------------------------


def tenant_sizes(documents: int, *, large_invoices: int = 1) -> dict[str, Any]:
    """Zuora sandbox sizes for ``documents`` documents in the realistic mix, customers included."""
    counts = {name: max(1, round(documents * share / 10_000)) for name, share in MIX.items()}
    counts["invoices"] += documents - sum(counts.values())  # exactly ``documents`` in total
    return {
        "accounts": max(2, round(documents * ACCOUNTS_PER_DOCUMENT)),
        **counts,
        "items_min": 1,
        "items_max": 4,
        "large_invoices": large_invoices,
        "tie_count": 150,
        "month": "2024-12",
        "period_names": "long",
    }


def record_count(sizes: Mapping[str, Any]) -> int:
    """Records the item-level sync moves for a tenant of ``sizes``: customers and documents."""
    return int(sizes["accounts"]) + sum(int(sizes[name]) for name in MIX)


@dataclass(frozen=True)
class Plan:
    """The sizes and durations of one bench run."""

    size: Size
    backlog_documents: int
    baseline_documents: int
    licence_seconds: float
    memory_documents: tuple[int, int]
    push_rate: float
    push_seconds: float
    push_invoices: int
    close_documents: int
    trial_balance_seconds: float
    journal_run_seconds: float
    in_doubt_documents: int
    fair_share_documents: int
    scale_out_documents: int

    @classmethod
    def for_size(cls, size: Size, duration_scale: float = 1.0) -> Plan:
        if size == "tiny":
            return cls(
                size=size,
                backlog_documents=60,
                baseline_documents=60,
                licence_seconds=12 * duration_scale,
                memory_documents=(40, 120),
                push_rate=10.0,
                push_seconds=3 * duration_scale,
                push_invoices=60,
                close_documents=60,
                trial_balance_seconds=0.5,
                journal_run_seconds=1.0,
                in_doubt_documents=60,
                fair_share_documents=10,
                scale_out_documents=40,
            )
        return cls(
            size=size,
            backlog_documents=20_000,
            baseline_documents=20_000 // BASELINE_SCALE,
            licence_seconds=300 * duration_scale,
            memory_documents=(10_000, 100_000),
            push_rate=50.0,
            push_seconds=60 * duration_scale,
            push_invoices=3_500,
            # With the GL segmented by region and account, a month of this tenant books ~500 entries.
            close_documents=1_510,
            trial_balance_seconds=5.0,
            journal_run_seconds=10.0,
            # A month of a small tenant, as a new user tried it.
            in_doubt_documents=328,
            # Five connections with this many new documents each arrive during the backlog.
            fair_share_documents=50,
            # At 2 s per Acumatica call, a minute or more of the largest fleet's work.
            scale_out_documents=4_000,
        )


PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"


def procfile_worker(procfile: Path = PROCFILE) -> tuple[dict[str, str], list[str]]:
    """The Procfile's ``worker`` command as ``(environment, celery arguments)``: the variables it
    sets and the arguments after ``celery``, each ``${NAME:-default}`` taken at its default."""
    import re
    import shlex

    for line in procfile.read_text().splitlines():
        if line.startswith("worker:"):
            words = shlex.split(line.removeprefix("worker:"))
            break
    else:
        raise BenchError(f"{procfile} has no worker command")
    words = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", w) for w in words]
    env: dict[str, str] = {}
    while words and "=" in words[0] and not words[0].startswith("-"):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    if not words or words[0] != "celery":
        raise BenchError(f"the Procfile's worker command does not run celery: {line}")
    return env, words[1:]


def procfile_concurrency(args: Sequence[str]) -> int:
    """The pool size the Procfile's worker arguments give (celery's own default is the CPU count)."""
    for i, arg in enumerate(args):
        if arg.startswith("--concurrency="):
            return int(arg.partition("=")[2])
        if arg in ("--concurrency", "-c") and i + 1 < len(args):
            return int(args[i + 1])
    return os.cpu_count() or 1


THREADS_CONCURRENCY = 16


@dataclass(frozen=True)
class Tuning:
    """How ledgerbridge is deployed for the bench. By default as in production: 2 workers, each
    the Procfile's own worker command line (prefork and its concurrency). ``pool="prefork"`` or
    ``"threads"`` runs the bench's own command line instead (``concurrency`` children or threads
    per worker)."""

    workers: int = 2
    concurrency: int = field(default_factory=lambda: procfile_concurrency(procfile_worker()[1]))
    pool: str = "procfile"
    erp_concurrency: int = 32  # fleet-wide Acumatica requests in flight when no licence limits them

    @classmethod
    def procfile(cls) -> Tuning:
        """The Procfile's worker command: prefork with its concurrency."""
        return cls()

    @classmethod
    def threads(cls) -> Tuning:
        """The bench's own earlier shape: 16 threads per worker. On SQLite and 2 cores the prefork
        children's extra processes cost more than the GIL there (push at 50/s: p50 0.6 s with 16
        threads vs 5.6 s with 4 prefork children per worker, measured on this machine)."""
        return cls(pool="threads", concurrency=THREADS_CONCURRENCY)

    def worker_command(self) -> tuple[dict[str, str], list[str]]:
        """``(environment, arguments after celery)`` of one worker, before its queue and name."""
        if self.pool == "procfile":
            env, args = procfile_worker()
            if procfile_concurrency(args) == self.concurrency:
                return env, args
            # Another pool size asked for (``--concurrency``): the Procfile's command with it instead.
            args = [a for a in args if not a.startswith("--concurrency=")]
            return env, [*args, f"--concurrency={self.concurrency}"]
        return {}, ["-A", "worker.app", "worker", "--pool", self.pool, "--concurrency", str(self.concurrency),
                    "--loglevel", "INFO"]  # fmt: skip

    @property
    def pool_kind(self) -> str:
        return "prefork" if self.pool == "procfile" else self.pool


# -- results ------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    target: str
    value: float | None
    met: bool | None
    unit: str = ""


@dataclass
class ScenarioResult:
    name: str
    setup: str
    status: str = "ok"  # ok | failed (a check failed) | error (could not run)
    rows: list[tuple[str, Any, Any]] = field(default_factory=list)  # (figure, ledgerbridge, baseline)
    targets: list[Target] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)

    def row(self, figure: str, ours: Any, baseline: Any = None) -> None:
        self.rows.append((figure, ours, baseline))

    def target(self, name: str, target: str, value: float | None, met: bool | None, unit: str = "") -> None:
        self.targets.append(Target(name, target, value, met, unit))
        if met is False and self.status == "ok":
            self.status = "missed"

    def check(self, name: str, ok: bool, detail: Any = None) -> None:
        self.checks[name] = {"ok": ok, "detail": detail}
        if not ok:
            self.status = "failed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "setup": self.setup,
            "status": self.status,
            "figures": self.figures,
            "targets": [t.__dict__ for t in self.targets],
            "checks": self.checks,
            "notes": self.notes,
        }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


# -- the sandboxes as processes -------------------------------------------------------------------


class Sandboxes:
    """The Zuora and Acumatica sandboxes as child processes, driven through their control planes."""

    def __init__(self, stack: Stack, *, zuora_pages: str = "sdk") -> None:
        self.stack = stack
        self.zuora_pages = zuora_pages
        zuora_port, acumatica_port = demo.free_port(), demo.free_port()
        self.zuora_url = f"http://127.0.0.1:{zuora_port}"
        self.acumatica_url = f"http://127.0.0.1:{acumatica_port}"
        stack.spawn(
            "zuora-sandbox",
            demo.ledgerbridge_argv("sandbox", "zuora", "--port", str(zuora_port), "--seed", "1"),
        )
        stack.spawn(
            "acumatica-sandbox", demo.ledgerbridge_argv("sandbox", "acumatica", "--port", str(acumatica_port))
        )
        import httpx

        self.http: httpx.Client = httpx.Client(timeout=600)
        demo.wait_until(
            demo.http_ready(f"{self.zuora_url}/_sandbox/health"), timeout=90, what="the Zuora sandbox start"
        )
        demo.wait_until(
            demo.http_ready(f"{self.acumatica_url}/_sandbox/health"),
            timeout=90,
            what="the Acumatica sandbox start",
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, url: str, body: Any = None) -> Any:
        response = self.http.request(method, url, json=body)
        if response.status_code >= 400:
            raise BenchError(f"{method} {url}: {response.status_code} {response.text[:300]}")
        return response.json()

    def zuora(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"{self.zuora_url}/_sandbox/{path}", body)

    def acumatica(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"{self.acumatica_url}/_sandbox/{path}", body)

    def prepare(
        self,
        sizes: Mapping[str, Any],
        *,
        zuora_config: Mapping[str, Any] | None = None,
        acumatica_config: Mapping[str, Any] | None = None,
    ) -> dict[str, int]:
        """A fresh tenant (``SEED`` and ``sizes``), a fresh Acumatica, the knobs set, counters zeroed."""
        seeded = self.zuora("POST", "seed", {"seed": SEED, "sizes": dict(sizes)})
        self.zuora("DELETE", "callouts")
        self.acumatica("POST", "reset", {"seed": True})
        base_zuora = {"latency_ms": 0, "trial_balance": {"pending_seconds": 0.2, "processing_seconds": 0.2},
                      "journal_run": {"pending_seconds": 0.2, "processing_seconds": 0.2},
                      "page_limits": self.zuora_pages}  # fmt: skip
        self.zuora("POST", "config", {**base_zuora, **(zuora_config or {})})
        base_acumatica = {"latency_ms": 0, "requests_per_minute": None, "max_concurrent": None}
        self.acumatica("POST", "config", {**base_acumatica, **(acumatica_config or {})})
        self.reset_counters()
        return dict(seeded.get("counts", {}))

    def reset_counters(self) -> None:
        self.zuora("POST", "requests/reset")
        self.acumatica("POST", "requests/reset")

    def counters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.zuora("GET", "requests"), self.acumatica("GET", "requests")

    def zuora_rows(self, table: str) -> list[dict[str, Any]]:
        return list(self.zuora("GET", f"state/{table}")["records"])

    def erp_rows(self, entity: str) -> list[dict[str, Any]]:
        return list(self.acumatica("GET", f"state/{entity}"))


def zuora_calls(counters: Mapping[str, Any]) -> dict[str, int]:
    """Zuora API calls by kind from the sandbox's counters (control-plane calls are not counted)."""
    counts: Mapping[str, int] = counters.get("counts", {})
    kinds: Counter[str] = Counter()
    for endpoint, n in counts.items():
        if "/oauth/token" in endpoint:
            kinds["token"] += n
        elif "/object-query/" in endpoint:
            kinds["object_query"] += n
        elif "/action/update" in endpoint:
            kinds["action_update"] += n
        elif endpoint.startswith("PUT /v1/credit-memos") or endpoint.startswith("PUT /v1/debit-memos"):
            kinds["memo_put"] += n
        else:
            kinds["other"] += n
    kinds["total"] = sum(counts.values())
    return dict(kinds)


def status_count(counters: Mapping[str, Any], status: int) -> int:
    total = 0
    for per in (counters.get("statuses") or {}).values():
        if isinstance(per, Mapping):
            total += int(per.get(str(status), 0))
    return total


def erp_figures(counters: Mapping[str, Any]) -> dict[str, Any]:
    """Acumatica licensed requests, 429s, logins from the sandbox's counters."""
    statuses = counters.get("statuses") or {}
    return {
        "requests": int(counters.get("requests", 0)),
        "declined": int(counters.get("declined_total", 0)),
        "status_429": int(statuses.get("429", 0)),
        "logins": int(counters.get("logins", 0)),
        "tokens_issued": int(counters.get("tokens_issued", 0)),
        "max_per_sliding_minute": int(counters.get("max_per_sliding_minute", 0)),
        "max_concurrent_observed": int(counters.get("max_concurrent_observed", 0)),
        "per_calendar_minute": counters.get("per_calendar_minute", {}),
    }


# -- correctness ----------------------------------------------------------------------------------

# Zuora table -> (status that is synced, the ERP entity, its natural-key field, the ERP type).
SYNCED = {
    "invoices": ("Posted", "Invoice", "CustomerOrder", "Invoice", "InvoiceNumber"),
    "debit-memos": ("Posted", "Invoice", "CustomerOrder", "Debit Memo", "MemoNumber"),
    "credit-memos": ("Posted", "Invoice", "CustomerOrder", "Credit Memo", "MemoNumber"),
    "payments": ("Processed", "Payment", "PaymentRef", "Payment", "PaymentNumber"),
    "refunds": ("Processed", "Payment", "PaymentRef", "Refund", "RefundNumber"),
}


def check_item_sync(sandboxes: Sandboxes, *, only: Mapping[str, set[str]] | None = None) -> dict[str, Any]:
    """Every synced Zuora document exactly once in the ERP and marked ``Yes`` in Zuora; every
    account a customer. ``only`` limits the check to these Zuora numbers per table."""
    problems: list[str] = []
    erp_keys: dict[tuple[str, str], Counter[str]] = {}
    for entity, key_field in (("Invoice", "CustomerOrder"), ("Payment", "PaymentRef")):
        for row in sandboxes.erp_rows(entity):
            erp_keys.setdefault((entity, str(row.get("Type"))), Counter())[str(row.get(key_field))] += 1
    documents = 0
    for table, (status, entity, _key, erp_type, number_field) in SYNCED.items():
        keys = erp_keys.get((entity, erp_type), Counter())
        duplicates = [k for k, n in keys.items() if n > 1]
        if duplicates:
            problems.append(
                f"{len(duplicates)} {erp_type} documents created more than once, e.g. {duplicates[:3]}"
            )
        wanted = [r for r in sandboxes.zuora_rows(table) if r.get("Status") == status]
        if only is not None:
            wanted = [r for r in wanted if str(r.get(number_field)) in only.get(table, set())]
        documents += len(wanted)
        missing = [str(r.get(number_field)) for r in wanted if keys.get(str(r.get(number_field)), 0) == 0]
        unmarked = [str(r.get(number_field)) for r in wanted if r.get("TransferredToAccounting") != "Yes"]
        if missing:
            problems.append(f"{len(missing)} {table} not in the ERP, e.g. {missing[:3]}")
        if unmarked:
            problems.append(f"{len(unmarked)} {table} not marked transferred, e.g. {unmarked[:3]}")
        if only is None and len(keys) != len(wanted):
            problems.append(f"the ERP has {len(keys)} {erp_type} documents, Zuora {len(wanted)} {table}")
    customers = Counter(str(r.get("CustomerID")) for r in sandboxes.erp_rows("Customer"))
    return {"ok": not problems, "problems": problems, "documents": documents, "customers": len(customers)}


# -- the ledgerbridge side ------------------------------------------------------------------------


class Fleet:
    """ledgerbridge's processes for one scenario: a fresh ledger and connection, workers, and
    optionally beat and the callout receiver. Redis keys of the run are deleted on stop."""

    def __init__(
        self,
        bench: Bench,
        sandboxes: Sandboxes,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.bench = bench
        self.name = name
        self.stack = demo.Stack(workdir=bench.workdir / name, env={})
        self.stack.workdir.mkdir(parents=True, exist_ok=True)
        self.connection = f"bench-{name}-{uuid.uuid4().hex[:6]}"
        # Connections stored in the ledger besides the fleet's own (their Redis keys go at stop).
        self.extra_connections: list[str] = []
        self.web_port = demo.free_port()
        opts = demo.DemoOptions(workdir=self.stack.workdir, redis_url=bench.redis_url, sizes={})
        base = demo.demo_env(opts, zuora_url=sandboxes.zuora_url, acumatica_url=sandboxes.acumatica_url,
                        web_port=self.web_port)  # fmt: skip
        base.update(
            LEDGERBRIDGE_CONNECTION=self.connection,
            LEDGERBRIDGE_QUEUE=f"ledgerbridge-{self.connection}",
            LEDGERBRIDGE_DATABASE_URL=bench.database_url(self.stack.workdir, self.connection),
            LEDGERBRIDGE_ACUMATICA_MAX_CONCURRENT=str(bench.tuning.erp_concurrency),
            LEDGERBRIDGE_ACUMATICA_REQUESTS_PER_MINUTE="1000000",
            LEDGERBRIDGE_ZUORA_REQUESTS_PER_MINUTE="40000",
            LEDGERBRIDGE_PULL_INTERVAL_SECONDS="3600",
            LEDGERBRIDGE_LOG_LEVEL="INFO",
            # Each process of the fleet counts its ledger statements into this folder.
            LEDGERBRIDGE_LEDGER_STATEMENTS_DIR=str(self.stack.workdir / "ledger-statements"),
        )
        base.update(env or {})
        self.stack.env = base
        self.env: dict[str, str] = base
        from shared.ledger.migrate import upgrade

        upgrade(base["LEDGERBRIDGE_DATABASE_URL"])

    @property
    def database_url(self) -> str:
        return self.env["LEDGERBRIDGE_DATABASE_URL"]

    def start_workers(self, *, count: int | None = None, separate: bool = False) -> None:
        """Start ``count`` workers (default: the tuning's). ``separate``: each as on a machine of
        its own: its own process group (every worker has one), environment, temporary folder and
        host name, so the workers share nothing but Redis and the ledger."""
        tuning = self.bench.tuning
        env, args = tuning.worker_command()
        expected = tuning.workers if count is None else count
        hosts: list[str] = []
        try:
            for i in range(expected):
                host = f"machine-{i}" if separate else os.uname().nodename
                own: dict[str, str] = {}
                if separate:
                    tmp = self.stack.workdir / host
                    tmp.mkdir(exist_ok=True)
                    own = {"TMPDIR": str(tmp)}
                self.stack.env = {**self.env, **env, **own}
                self.stack.spawn(
                    f"worker-{i}",
                    [sys.executable, "-m", "celery", *args, "-Q", self.env["LEDGERBRIDGE_QUEUE"],
                     "-n", f"{self.connection}-{i}@{host}", "--without-gossip", "--without-mingle"],
                )  # fmt: skip
                hosts.append(host)
        finally:
            self.stack.env = self.env
        self._wait_workers(hosts)

    def _wait_workers(self, hosts: Sequence[str]) -> None:
        from celery import Celery

        client = Celery(broker=self.bench.redis_url, backend=self.bench.redis_url)
        client.conf.broker_connection_retry_on_startup = True
        deadline = time.monotonic() + 90
        expected = len(hosts)
        try:
            while time.monotonic() < deadline:
                self.check_alive()
                replies = client.control.ping(
                    destination=[f"{self.connection}-{i}@{host}" for i, host in enumerate(hosts)], timeout=1.0
                )
                if len(replies or []) >= expected:
                    return
            raise BenchError(f"{expected} workers not ready within 90s; logs in {self.stack.workdir}")
        finally:
            client.close()

    def check_alive(self) -> None:
        """Raise when a long-running process (worker, beat, receiver) has exited."""
        for name, proc in self.stack.procs.items():
            if name.startswith(("worker-", "beat", "web")) and proc.poll() is not None:
                raise BenchError(
                    f"{name} exited with {proc.returncode}; see {self.stack.workdir / (name + '.log')}"
                )

    def start_beat(self) -> None:
        self.stack.spawn("beat", [sys.executable, "-m", "celery", "-A", "worker.app", "beat", "--loglevel", "INFO",
                                  "--schedule", str(self.stack.workdir / "beat-schedule")])  # fmt: skip

    def start_web(self) -> str:
        self.stack.spawn("web", [sys.executable, "-m", "uvicorn", "worker.web:app", "--host", "127.0.0.1",
                                 "--port", str(self.web_port), "--log-level", "warning"])  # fmt: skip
        url = f"http://127.0.0.1:{self.web_port}"
        demo.wait_until(demo.http_ready(f"{url}/healthz"), timeout=60, what="the callout receiver start")
        return url

    def cli(self, *args: str, timeout: float) -> tuple[int, float]:
        """Run a ledgerbridge command in this fleet's environment; (exit code, seconds)."""
        log = self.stack.workdir / "cli.log"
        with log.open("ab") as out:
            out.write(f"\n$ ledgerbridge {' '.join(args)}\n".encode())
            out.flush()
            started = time.monotonic()
            try:
                code = subprocess.run(
                    demo.ledgerbridge_argv(*args), env=self.env, stdout=out, stderr=subprocess.STDOUT,
                    timeout=timeout, check=False,
                ).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                raise BenchError(
                    f"`ledgerbridge {' '.join(args)}` did not finish within {timeout:.0f}s"
                ) from None
        return code, time.monotonic() - started

    def cli_background(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        proc: subprocess.Popen[bytes] = self.stack.spawn(name, demo.ledgerbridge_argv(*args))
        return proc

    def process_ids(self, sandboxes: Sandboxes) -> Callable[[], dict[str, int]]:
        """The live processes of this fleet and of the sandboxes by name, and the bench itself."""

        def procs() -> dict[str, int]:
            found = {n: p.pid for n, p in self.stack.procs.items() if p.poll() is None}
            found.update({n: p.pid for n, p in sandboxes.stack.procs.items() if p.poll() is None})
            found["bench"] = os.getpid()
            return found

        return procs

    def cli_monitored(
        self, sandboxes: Sandboxes, *args: str, timeout: float
    ) -> tuple[int, float, RssSampler]:
        """Run a ledgerbridge command as a child process while sampling every process of the
        fleet and the sandboxes (RSS, CPU); (exit code, seconds, the sampler)."""

        with RssSampler(self.process_ids(sandboxes)) as sampler:
            started = time.monotonic()
            proc = self.cli_background(args[0], *args)
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                raise BenchError(
                    f"`ledgerbridge {' '.join(args)}` did not finish within {timeout:.0f}s"
                ) from None
            seconds = time.monotonic() - started
        return code, seconds, sampler

    def statement_counts(self, *, wait: bool = True) -> dict[str, Any]:
        """What this fleet's processes asked of the ledger so far (summed over their files);
        ``wait`` lets running processes write their latest counts first."""
        from shared.ledger.statements import FLUSH_SECONDS, read_totals

        if wait:
            time.sleep(2 * FLUSH_SECONDS + 0.2)  # the processes write their counts twice a second
        return read_totals(Path(self.env["LEDGERBRIDGE_LEDGER_STATEMENTS_DIR"]))

    def ledger(self) -> Any:
        from shared.ledger.repo import Ledger

        return Ledger.from_url(self.database_url)

    def stop(self) -> None:
        """Stop every process; forget the run's Redis keys (and its PostgreSQL database, unless
        ``--keep``)."""
        self.stack.stop()
        import sqlalchemy as sa

        counted = self.statement_counts(wait=False)
        try:
            counted["records"] = states_total(ledger_counts(self))
        except sa.exc.SQLAlchemyError as exc:  # a scenario that failed may leave no ledger to count
            counted["records"] = None
            counted["records_error"] = f"{type(exc).__name__}: {exc}"
        self.bench.statements[self.name] = counted
        import redis
        from kombu.transport.redis import Channel

        from worker.app import PRIORITY_STEPS

        client = redis.Redis.from_url(self.bench.redis_url)
        try:
            keys = [
                key
                for connection in (self.connection, *self.extra_connections)
                for key in client.scan_iter(f"ledgerbridge:{connection}:*", count=1000)
            ]
            # The run's task results too (the result backend keeps them for days); they name the
            # connection in their kwargs, and the connection name is this run's own.
            markers = [f'"{c}"'.encode() for c in (self.connection, *self.extra_connections)]
            for key in client.scan_iter("celery-task-meta-*", count=2000):
                value = client.get(key)
                if value is not None and any(marker in value for marker in markers):
                    keys.append(key)
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
            # The queue's list and kombu's list per priority step (a scenario may stop mid-backlog).
            queue = self.env["LEDGERBRIDGE_QUEUE"]
            client.delete(queue, *(f"{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS if step))
        finally:
            client.close()
        if not self.bench.keep:
            self.bench.drop_database(self.database_url)


def ledger_counts(fleet: Fleet) -> dict[str, dict[str, int]]:
    ledger = fleet.ledger()
    try:
        counts = ledger.counts_by_state(fleet.connection)
    finally:
        ledger.dispose()
    out: dict[str, dict[str, int]] = {}
    for (kind, state), n in counts.items():
        out.setdefault(kind, {})[state] = n
    return out


def states_total(
    counts: Mapping[str, Mapping[str, int]], *states: str, kinds: Sequence[str] | None = None
) -> int:
    return sum(
        n
        for kind, per in counts.items()
        if kinds is None or kind in kinds
        for state, n in per.items()
        if not states or state in states
    )


# -- RSS sampling ---------------------------------------------------------------------------------


class RssSampler:
    """Samples named process trees every ``interval`` seconds: peak RSS (tree and largest
    process) and CPU seconds; and the whole machine's busy share, to show what else ran."""

    def __init__(self, procs: Callable[[], Mapping[str, int]], interval: float = RSS_INTERVAL) -> None:
        self._procs = procs
        self._interval = interval
        self._stop = threading.Event()
        self.peak_tree: dict[str, int] = {}
        self.peak_process: dict[str, int] = {}
        self._cpu: dict[str, dict[int, tuple[float, float]]] = {}
        self.samples = 0
        self.seconds = 0.0
        self.machine_busy: float | None = None
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._started = time.monotonic()
        self._times = psutil.cpu_times()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.seconds = time.monotonic() - self._started
        before, after = self._times, psutil.cpu_times()
        busy = (
            sum(after)
            - sum(before)
            - ((after.idle + getattr(after, "iowait", 0.0)) - (before.idle + getattr(before, "iowait", 0.0)))
        )
        total = sum(after) - sum(before)
        self.machine_busy = busy / total if total > 0 else None

    @property
    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds each named tree used while sampled (user + system, children included)."""
        return {
            name: round(sum(last - first for first, last in per.values()), 1)
            for name, per in self._cpu.items()
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self._interval)
        self._sample()

    def _sample(self) -> None:
        # One pass over the process table per sample (psutil's children() rescans it per call).
        info: dict[int, tuple[int, int, float]] = {}
        children: dict[int, list[int]] = {}
        for proc in psutil.process_iter(["ppid", "memory_info", "cpu_times"]):
            values = proc.info
            if values.get("memory_info") is None or values.get("cpu_times") is None:
                continue
            times = values["cpu_times"]
            info[proc.pid] = (values["ppid"] or 0, values["memory_info"].rss, times.user + times.system)
            children.setdefault(values["ppid"] or 0, []).append(proc.pid)
        for name, pid in self._procs().items():
            tree, todo = [], [pid]
            while todo:
                current = todo.pop()
                if current in info:
                    tree.append(current)
                    if name != "bench":  # the bench's own children are the processes named here
                        todo.extend(children.get(current, []))
            if not tree:
                continue
            sizes = [info[t][1] for t in tree]
            cpu = self._cpu.setdefault(name, {})
            for t in tree:
                used = info[t][2]
                cpu[t] = (cpu[t][0] if t in cpu else used, used)
            self.peak_tree[name] = max(self.peak_tree.get(name, 0), sum(sizes))
            self.peak_process[name] = max(self.peak_process.get(name, 0), *sizes)
        self.samples += 1


def cpu_split(sampler: RssSampler) -> dict[str, Any]:
    """Average cores used during a sampled run: ledgerbridge's processes, the sandboxes, the
    bench itself, and everything else on the machine (other jobs sharing it skew the figures)."""
    seconds = sampler.seconds or 1.0
    per = sampler.cpu_seconds
    ours = sum(v for n, v in per.items() if not n.endswith("-sandbox") and n != "bench")
    sandboxes = sum(v for n, v in per.items() if n.endswith("-sandbox"))
    bench = per.get("bench", 0.0)
    cores = os.cpu_count() or 1
    busy = (sampler.machine_busy or 0.0) * cores
    return {
        "ledgerbridge": round(ours / seconds, 2),
        "sandboxes": round(sandboxes / seconds, 2),
        "bench": round(bench / seconds, 2),
        "other": round(max(0.0, busy - (ours + sandboxes + bench) / seconds), 2),
        "machine_busy_share": rounded(sampler.machine_busy, 3),
        "by_process": {n: round(v / seconds, 2) for n, v in sorted(per.items())},
    }


def mb(value: float | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


# -- the baseline ---------------------------------------------------------------------------------


@dataclass
class BaselineRun:
    records: int = 0
    created: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)
    mark_calls: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    erp_errors: int = 0


def _settings_from(env: Mapping[str, str]) -> Any:
    from shared.settings import load_settings

    values = {
        k.removeprefix("LEDGERBRIDGE_").lower(): v for k, v in env.items() if k.startswith("LEDGERBRIDGE_")
    }
    return load_settings(**values)


class BaselineClients:
    """The baseline's ZuoraClient and AcumaticaErp: no audit, no ledger, no client-side limits
    (the obvious script does not know the licence)."""

    def __init__(self, bench: Bench, sandboxes: Sandboxes) -> None:
        from dataclasses import replace

        from shared.connections import default_connection
        from shared.erp.acumatica import AcumaticaErp
        from shared.mapping import load_mapping
        from shared.zuora.client import ZuoraClient

        self.connection = f"bench-baseline-{uuid.uuid4().hex[:6]}"
        opts = demo.DemoOptions(workdir=bench.workdir, redis_url=bench.redis_url, sizes={})
        env = demo.demo_env(
            opts, zuora_url=sandboxes.zuora_url, acumatica_url=sandboxes.acumatica_url, web_port=1
        )
        env["LEDGERBRIDGE_CONNECTION"] = self.connection
        settings = _settings_from(env)
        conn = default_connection(settings)
        assert conn.acumatica is not None
        import redis

        self.redis = redis.Redis.from_url(bench.redis_url)
        self.zuora = ZuoraClient(
            replace(conn.zuora, requests_per_minute=1_000_000, max_concurrent=1000),
            connection=conn.name,
            redis=self.redis,
        )
        self.erp = AcumaticaErp.from_target(
            replace(conn.acumatica, requests_per_minute=1_000_000, max_concurrent=1000),
            connection=conn.name,
            redis=self.redis,
        )
        assert settings.mapping_file is not None
        self.mapping = load_mapping(settings.mapping_file)

    def close(self) -> None:
        self.erp.close()
        self.zuora.close()
        keys = list(self.redis.scan_iter(f"ledgerbridge:{self.connection}:*", count=1000))
        if keys:
            self.redis.delete(*keys)
        self.redis.close()


def run_item_baseline(
    clients: BaselineClients, *, before: datetime, deadline: float | None = None
) -> BaselineRun:
    """The obvious script: per transaction type (customers first), Object Query pages of records
    updated before ``before`` (so the marks it writes do not bring records back), one ERP create
    per record, ``action/update`` marks in batches of 50 (memo PUTs one by one). Stops after the
    page in progress when ``deadline`` (monotonic) passes."""
    from shared.erp.base import Customer
    from shared.item_level.streams import SORT, select_streams
    from shared.mapping import (
        MappingError,
        customer_from_account,
        customer_id_of,
        document_from_credit_memo,
        document_from_debit_memo,
        document_from_invoice,
        payment_from_payment,
        payment_from_refund,
    )
    from shared.zuora.object_query import ObjectQuery, condition

    run = BaselineRun()
    started = time.monotonic()
    customers: dict[str, str] = {}
    erp, zuora, mapping = clients.erp, clients.zuora, clients.mapping

    def mark(stream: Any, ids: list[str]) -> None:
        if not ids:
            return
        if stream.mark_action_type:
            zuora.actions.update(
                stream.mark_action_type, [{"Id": i, "TransferredToAccounting": "Yes"} for i in ids]
            )
            run.mark_calls += 1
        else:
            put = (
                zuora.transfers.credit_memo
                if stream.mark_put == "credit_memo"
                else zuora.transfers.debit_memo
            )
            for zuora_id in ids:
                put(zuora_id, "Yes")
                run.mark_calls += 1
        ids.clear()

    for stream in select_streams():
        to_mark: list[str] = []
        query = ObjectQuery(
            stream.path,
            filters=(condition("updateddate", "LT", before), *stream.filters),
            sort=SORT,
            fields=stream.fields,
            expand=stream.expand,
        )
        for page in zuora.objects.pages(query):
            for row in page.data:
                record = dict(row)
                if stream.truncated(record, page.page_size):  # the expansion is cut at the page size
                    items: list[Any] = []
                    for item_page in zuora.objects.pages(stream.items_query(str(record["id"]))):
                        items.extend(item_page.data)
                    assert stream.items is not None
                    record[stream.items.key] = items
                try:
                    if stream.erp_method == "upsert_customer":
                        customer: Customer = customer_from_account(record, mapping)
                        erp.upsert_customer(customer)
                        customers[str(record["id"])] = customer_id_of(record)
                    else:
                        customer_id = customers[str(record["accountId"])]
                        if stream.name == "invoices":
                            erp.create_document(
                                document_from_invoice(record, None, mapping, customer_id=customer_id)
                            )
                        elif stream.name == "debit_memos":
                            erp.create_document(
                                document_from_debit_memo(
                                    record,
                                    None,
                                    mapping,
                                    customer_id=customer_id,
                                    code_names=zuora.accounting_codes.name_of,
                                )
                            )
                        elif stream.name == "credit_memos":
                            erp.create_document(
                                document_from_credit_memo(
                                    record,
                                    None,
                                    mapping,
                                    customer_id=customer_id,
                                    code_names=zuora.accounting_codes.name_of,
                                )
                            )
                        elif stream.name == "payments":
                            erp.create_payment(
                                payment_from_payment(record, mapping, (), customer_id=customer_id)
                            )
                        else:
                            erp.create_payment(
                                payment_from_refund(record, mapping, (), customer_id=customer_id)
                            )
                except (MappingError, KeyError, ValueError) as exc:
                    run.skipped.append(f"{stream.name} {record.get('id')}: {exc}")
                    continue
                run.created[stream.name] += 1
                run.records += 1
                if stream.marks:
                    to_mark.append(str(record["id"]))
                    if len(to_mark) >= 50:
                        mark(stream, to_mark)
                if deadline is not None and time.monotonic() >= deadline:
                    run.stopped_early = True
                    break
            if run.stopped_early:
                break
        mark(stream, to_mark)
        if run.stopped_early:
            break
    run.seconds = time.monotonic() - started
    return run


# -- the bench ------------------------------------------------------------------------------------


# The production ledger: the local PostgreSQL server (scripts/services starts it), a database per run.
DEFAULT_DATABASE = os.environ.get(
    "LEDGERBRIDGE_BENCH_DATABASE", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@dataclass
class Bench:
    plan: Plan
    tuning: Tuning
    workdir: Path
    redis_url: str
    console: Console
    database: str = DEFAULT_DATABASE
    keep: bool = False
    # Zuora's page limits in the sandbox: "sdk" (its OpenAPI document: Object Query 50, the v1
    # lists 40), the strictest of Zuora's sources, or "web" (its reference pages: 99 and 300).
    zuora_pages: str = "sdk"
    # What each fleet of the scenario running asked of the ledger, by fleet name (see Fleet.stop).
    statements: dict[str, dict[str, Any]] = field(default_factory=dict)

    def shape(self) -> dict[str, Any]:
        """What the scenario runs on: the ledger, the worker processes and their pool."""
        tuning = self.tuning
        env, args = tuning.worker_command()
        return {
            "ledger": "sqlite" if self.database == "sqlite" else "postgresql",
            "workers": tuning.workers,
            "pool": tuning.pool_kind,
            "concurrency": tuning.concurrency,
            "worker_command": " ".join([*(f"{k}={v}" for k, v in env.items()), "celery", *args]),
            "procfile": tuning.pool == "procfile",
            "zuora_page_limits": self.zuora_pages,
        }

    def shape_text(self) -> str:
        shape = self.shape()
        text = (
            f"{'PostgreSQL' if shape['ledger'] == 'postgresql' else 'SQLite'} ledger, {shape['workers']} workers "
            f"x {shape['pool']} {shape['concurrency']}"
        )
        text += (
            " (the Procfile's worker command)" if shape["procfile"] else " (the bench's own worker command)"
        )
        pages = "Object Query 50, lists 40" if self.zuora_pages == "sdk" else "Object Query 99, lists 300"
        return f"{text}; Zuora pages at most {pages}"

    def database_url(self, folder: Path, connection: str) -> str:
        """A fresh ledger: a SQLite file in ``folder``, or a new database on the PostgreSQL server
        ``self.database`` names (dropped again by :meth:`drop_database`)."""
        if self.database == "sqlite":
            return f"sqlite:///{folder / 'ledger.db'}"
        import sqlalchemy as sa

        name = "lb_bench_" + connection.replace("-", "_")
        admin = sa.create_engine(self.database, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        except sa.exc.OperationalError as exc:
            server = sa.make_url(self.database).render_as_string(hide_password=True)
            raise BenchError(
                f"the PostgreSQL server {server} did not answer ({exc.orig}); start it with scripts/services, "
                "or run the bench with --database sqlite"
            ) from None
        finally:
            admin.dispose()
        return str(sa.make_url(self.database).set(database=name).render_as_string(hide_password=False))

    def drop_database(self, url: str) -> None:
        if self.database == "sqlite":
            return
        import sqlalchemy as sa

        name = sa.make_url(url).database
        admin = sa.create_engine(self.database, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()

    @contextlib.contextmanager
    def sandboxes(self, name: str) -> Iterator[Sandboxes]:
        stack = demo.Stack(workdir=self.workdir / name, env=dict(os.environ))
        stack.workdir.mkdir(parents=True, exist_ok=True)
        sandboxes: Sandboxes | None = None
        try:
            sandboxes = Sandboxes(stack, zuora_pages=self.zuora_pages)
            yield sandboxes
        finally:
            if sandboxes is not None:
                sandboxes.close()
            stack.stop()

    @contextlib.contextmanager
    def fleet(self, sandboxes: Sandboxes, name: str, env: Mapping[str, str] | None = None) -> Iterator[Fleet]:
        fleet = Fleet(self, sandboxes, name, env=env)
        try:
            yield fleet
        finally:
            fleet.stop()

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(text)}", highlight=False)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def sandbox_now(sandboxes: Sandboxes) -> datetime:
    """The sandbox tenant's clock (it may run ahead of ours: ``POST /_sandbox/clock``)."""
    return datetime.fromtimestamp(float(sandboxes.zuora("GET", "health")["now"]), UTC)


# -- scenario: backlog ----------------------------------------------------------------------------

BACKLOG_ZUORA = {"latency_ms": 50}
CLOSE_SEGMENTS = ("Region", "Account")
BACKLOG_ACUMATICA = {"latency_ms": 100}


def scenario_backlog(bench: Bench) -> ScenarioResult:
    plan = bench.plan
    sizes = tenant_sizes(plan.backlog_documents, large_invoices=2 if plan.size == "full" else 1)
    sample = tenant_sizes(plan.baseline_documents, large_invoices=1)
    sampled = plan.baseline_documents != plan.backlog_documents
    result = ScenarioResult(
        "backlog",
        f"{record_count(sizes):,} records ({plan.backlog_documents:,} documents + {sizes['accounts']:,} customers), "
        "fresh ledger; Zuora 50 ms and Acumatica 100 ms per call; no licence limit",
    )
    with bench.sandboxes("backlog") as sb:
        # The baseline (on a 1/20-scale tenant at full size: same mix, seed and latencies).
        bench.say(f"backlog: baseline on {record_count(sample):,} records")
        sb.prepare(sample, zuora_config=BACKLOG_ZUORA, acumatica_config=BACKLOG_ACUMATICA)
        base = _baseline_item_run(bench, sb)
        z_base, a_base = sb.counters()
        base_check = check_item_sync(sb)
        result.check(
            "baseline: every document once in the ERP and marked", base_check["ok"], base_check["problems"]
        )

        # ledgerbridge on the full backlog.
        bench.say(f"backlog: ledgerbridge on {record_count(sizes):,} records")
        sb.prepare(sizes, zuora_config=BACKLOG_ZUORA, acumatica_config=BACKLOG_ACUMATICA)
        with bench.fleet(sb, "backlog") as fleet:
            fleet.start_workers()
            sb.reset_counters()
            code, seconds, sampler = fleet.cli_monitored(
                sb, "sync", "--wait", "--timeout", "7200", timeout=7300
            )
            z_ours, a_ours = sb.counters()
            counts = ledger_counts(fleet)
        ours_check = check_item_sync(sb)
        result.check("ledgerbridge: `sync --wait` exit code", code == 0, code)
        result.check(
            "ledgerbridge: every document once in the ERP and marked",
            ours_check["ok"],
            ours_check["problems"],
        )
        marked = states_total(counts, "marked")
        open_rows = states_total(counts) - marked
        result.check("ledgerbridge: every ledger row marked", open_rows == 0, counts)

    ours_rate = marked / seconds if seconds else None
    base_rate = base.records / base.seconds if base.seconds else None
    zo, zb = zuora_calls(z_ours), zuora_calls(z_base)
    ao, ab = erp_figures(a_ours), erp_figures(a_base)
    speedup = ratio(ours_rate, base_rate)
    result.row("records", f"{marked:,}", f"{base.records:,}" + (" (1/20 sample)" if sampled else ""))
    result.row("wall time (s)", round(seconds, 1), round(base.seconds, 1))
    result.row("records/s", rounded(ours_rate, 1), rounded(base_rate, 1))
    result.row("speed-up (ledgerbridge / baseline)", rounded(speedup, 1), None)
    result.row(
        "ERP calls/record",
        rounded(ratio(ao["requests"], marked), 3),
        rounded(ratio(ab["requests"], base.records), 3),
    )
    result.row(
        "Zuora calls/record",
        rounded(ratio(zo["total"], marked), 4),
        rounded(ratio(zb["total"], base.records), 4),
    )
    result.row("  Object Query pages", zo.get("object_query", 0), zb.get("object_query", 0))
    result.row("  action/update calls", zo.get("action_update", 0), zb.get("action_update", 0))
    result.row("  memo PUTs", zo.get("memo_put", 0), zb.get("memo_put", 0))
    result.row("Zuora token requests", zo.get("token", 0), zb.get("token", 0))
    result.row(
        "Acumatica logins / tokens", ao["logins"] + ao["tokens_issued"], ab["logins"] + ab["tokens_issued"]
    )
    cpu = cpu_split(sampler)
    result.row("CPU: ledgerbridge / sandboxes / other (cores)",
               f"{cpu['ledgerbridge']} / {cpu['sandboxes']} / {cpu['other']}", None)  # fmt: skip
    result.row("429s (Zuora / Acumatica)", f"{status_count(z_ours, 429)} / {ao['status_429']}",
               f"{status_count(z_base, 429)} / {ab['status_429']}")  # fmt: skip
    result.figures = {
        "records": marked,
        "seconds": round(seconds, 2),
        "records_per_second": rounded(ours_rate, 2),
        "baseline": {
            "records": base.records,
            "seconds": round(base.seconds, 2),
            "records_per_second": rounded(base_rate, 2),
            "sample": f"1/{BASELINE_SCALE}-scale tenant, same mix and seed" if sampled else None,
            "zuora_calls": zb,
            "erp": {k: v for k, v in ab.items() if k != "per_calendar_minute"},
            "skipped": base.skipped[:20],
        },
        "speedup": rounded(speedup, 2),
        "zuora_calls": zo,
        "erp": {k: v for k, v in ao.items() if k != "per_calendar_minute"},
        "ledger": counts,
        "zuora_429": status_count(z_ours, 429),
        "cpu": cpu_split(sampler),
    }
    if sampled:
        result.notes.append(
            f"The baseline ran on a 1/{BASELINE_SCALE}-scale tenant ({base.records:,} records, same mix, seed and "
            "latencies): at ~9 records/s the full backlog would take it over half an hour. Its rate is per record."
        )
    result.target(
        "speed-up vs baseline", ">= 10x", rounded(speedup, 1), None if speedup is None else speedup >= 10, "x"
    )
    erp_per = ratio(ao["requests"], marked)
    result.target(
        "ERP calls/record", "<= 1.02", rounded(erp_per, 3), None if erp_per is None else erp_per <= 1.02
    )
    z_per = ratio(zo["total"], marked)
    result.target(
        "Zuora calls/record", "<= 0.04", rounded(z_per, 4), None if z_per is None else z_per <= 0.04
    )
    tokens = zo.get("token", 0)
    allowed = max(1, math.ceil(seconds / (55 * 60)))
    result.target("Zuora token requests", f"<= {allowed} (1 per 55 min)", tokens, tokens <= allowed)
    return result


def _baseline_item_run(bench: Bench, sb: Sandboxes, *, deadline: float | None = None) -> BaselineRun:
    clients = BaselineClients(bench, sb)
    try:
        sb.reset_counters()
        return run_item_baseline(clients, before=sandbox_now(sb), deadline=deadline)
    finally:
        clients.close()


# -- scenario: licence-bound ------------------------------------------------------------------------

LICENCE = {"requests_per_minute": 150, "max_concurrent": 2}


def _window_rate(sb: Sandboxes, seconds: float, alive: Callable[[], None] | None = None) -> dict[str, Any]:
    """Wait for the first licensed request, then measure ``seconds`` of Acumatica traffic:
    requests per minute, 429 share and the sliding-minute peak."""
    deadline = time.monotonic() + 600
    while erp_figures(sb.acumatica("GET", "requests"))["requests"] == 0:
        if time.monotonic() > deadline:
            raise BenchError("no Acumatica request within 10 minutes")
        if alive is not None:
            alive()
        time.sleep(0.2)
    sb.acumatica("POST", "requests/reset")
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if alive is not None:
            alive()
        time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - started))))
    elapsed = time.monotonic() - started
    figures = erp_figures(sb.acumatica("GET", "requests"))
    requests = figures["requests"]
    figures["window_seconds"] = round(elapsed, 1)
    figures["requests_per_minute"] = round(requests / (elapsed / 60), 1)
    figures["share_429"] = round(figures["status_429"] / requests, 4) if requests else None
    return figures


def scenario_licence(bench: Bench) -> ScenarioResult:
    plan = bench.plan
    sizes = tenant_sizes(plan.backlog_documents, large_invoices=2 if plan.size == "full" else 1)
    window = plan.licence_seconds
    result = ScenarioResult(
        "licence",
        f"the backlog ({record_count(sizes):,} records); Acumatica licence 150 requests/min and 2 concurrent; "
        f"Zuora 50 ms, Acumatica 100 ms; measured over {window / 60:.1f} min",
    )
    acumatica = {**BACKLOG_ACUMATICA, **LICENCE}
    with bench.sandboxes("licence") as sb:
        bench.say(f"licence: baseline for {window:.0f}s")
        sb.prepare(sizes, zuora_config=BACKLOG_ZUORA, acumatica_config=acumatica)
        clients = BaselineClients(bench, sb)
        box: dict[str, Any] = {}

        def baseline() -> None:
            try:
                box["run"] = run_item_baseline(
                    clients, before=sandbox_now(sb), deadline=time.monotonic() + window + 5
                )
            except Exception as exc:  # reported, not raised: the window figures still stand
                box["error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=baseline, name="baseline", daemon=True)
        thread.start()
        base = _window_rate(sb, window)
        thread.join(timeout=120)
        clients.close()
        if "error" in box:
            result.notes.append(f"the baseline stopped with an error: {box['error']}")

        bench.say(f"licence: ledgerbridge for {window:.0f}s")
        sb.prepare(sizes, zuora_config=BACKLOG_ZUORA, acumatica_config=acumatica)
        env = {
            "LEDGERBRIDGE_ACUMATICA_REQUESTS_PER_MINUTE": "150",
            "LEDGERBRIDGE_ACUMATICA_MAX_CONCURRENT": "2",
        }
        with bench.fleet(sb, "licence", env=env) as fleet:
            fleet.start_workers()
            fleet.cli_background("sync", "sync")
            ours = _window_rate(sb, window, alive=fleet.check_alive)
            fleet.stack.stop()  # workers and the pull stop here; what is in the ledger stays
            counts = ledger_counts(fleet)
            lost = _nothing_lost(fleet, sb)
        result.check(
            "ledgerbridge: nothing lost (ledger and ERP agree, nothing parked)", lost["ok"], lost["problems"]
        )

    for label, fig in (("ledgerbridge", ours), ("baseline", base)):
        result.figures[label] = {k: v for k, v in fig.items()}
    result.figures["ledger"] = counts
    result.figures["reconciliation"] = lost
    limit = LICENCE["requests_per_minute"]
    result.row("requests/min over the window", ours["requests_per_minute"], base["requests_per_minute"])
    result.row(
        "share of the limit",
        f"{ours['requests_per_minute'] / limit:.1%}",
        f"{base['requests_per_minute'] / limit:.1%}",
    )
    result.row(
        "requests / 429s",
        f"{ours['requests']} / {ours['status_429']}",
        f"{base['requests']} / {base['status_429']}",
    )
    result.row("429 share", _pct(ours["share_429"]), _pct(base["share_429"]))
    result.row("most in any sliding minute", ours["max_per_sliding_minute"], base["max_per_sliding_minute"])
    result.row("most in flight at once", ours["max_concurrent_observed"], base["max_concurrent_observed"])
    result.row(
        "records posted in the window (customers first)", states_total(counts, "posted", "marked"), None
    )
    share = ours["requests_per_minute"] / limit
    result.target("requests/min vs limit", ">= 95 %", round(100 * share, 1), share >= 0.95, "%")
    s429 = ours["share_429"]
    result.target(
        "429 share",
        "< 1 %",
        None if s429 is None else round(100 * s429, 2),
        None if s429 is None else s429 < 0.01,
        "%",
    )
    result.target("nothing lost", "0", len(lost["problems"]), lost["ok"])
    if plan.size == "full" and window < 300:
        result.notes.append(f"window shortened to {window:.0f}s by --duration-scale")
    return result


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{value:.2%}"


def _nothing_lost(fleet: Fleet, sb: Sandboxes) -> dict[str, Any]:
    """After the fleet stopped: every ERP document has a ledger row that knows it (posted/marked,
    or posting - in doubt, settled by the lookup), no document twice, nothing parked."""
    from sqlmodel import select

    from shared.ledger.models import SyncRecord

    ledger = fleet.ledger()
    try:
        with ledger.reading() as session:
            rows = session.exec(select(SyncRecord).where(SyncRecord.connection == fleet.connection)).all()
            known = [(r.object_type, r.zuora_number, r.state, r.erp_ref) for r in rows]
    finally:
        ledger.dispose()
    by_number = {(kind, number): (state, ref) for kind, number, state, ref in known}
    kinds = {"Invoice": "invoice", "Debit Memo": "debit_memo", "Credit Memo": "credit_memo",
             "Payment": "payment", "Refund": "refund"}  # fmt: skip
    problems: list[str] = []
    documents = 0
    for entity, key_field, types in (
        ("Invoice", "CustomerOrder", ("Invoice", "Debit Memo", "Credit Memo")),
        ("Payment", "PaymentRef", ("Payment", "Refund")),  # a credit memo is an AR payment too
    ):
        seen: Counter[tuple[str, str]] = Counter()
        for row in sb.erp_rows(entity):
            if row.get("Type") not in types:
                continue
            kind = kinds[str(row.get("Type"))]
            number = str(row.get(key_field))
            seen[(kind, number)] += 1
            documents += 1
            state, ref = by_number.get((kind, number), (None, None))
            if state is None:
                problems.append(f"{kind} {number} is in the ERP but not in the ledger")
            elif state not in ("posted", "marked", "posting"):
                problems.append(f"{kind} {number} is in the ERP but {state} in the ledger")
            elif state != "posting" and ref != f"{row.get('Type')}/{row.get('ReferenceNbr')}":
                problems.append(
                    f"{kind} {number}: ledger says {ref}, the ERP {row.get('Type')}/{row.get('ReferenceNbr')}"
                )
        problems += [f"{kind} {number} created {n} times" for (kind, number), n in seen.items() if n > 1]
    parked = [f"{kind} {number}" for kind, number, state, _ in known if state == "parked"]
    if parked:
        problems.append(f"{len(parked)} rows parked, e.g. {parked[:3]}")
    return {
        "ok": not problems,
        "problems": problems[:20],
        "erp_documents": documents,
        "ledger_rows": len(known),
    }


# -- scenario: memory -----------------------------------------------------------------------------


def scenario_memory(bench: Bench) -> ScenarioResult:
    small, large = bench.plan.memory_documents
    result = ScenarioResult(
        "memory",
        f"{small:,} vs {large:,} documents, no latency, no licence limit; workers, beat, the callout receiver "
        f"and the `sync` process sampled every {RSS_INTERVAL}s",
    )
    peaks: dict[int, dict[str, Any]] = {}
    with bench.sandboxes("memory") as sb:
        for documents in (small, large):
            sizes = tenant_sizes(documents, large_invoices=2)
            bench.say(f"memory: ledgerbridge on {record_count(sizes):,} records")
            sb.prepare(sizes)
            with bench.fleet(sb, f"memory-{documents}") as fleet:
                fleet.start_workers()
                fleet.start_beat()
                fleet.start_web()

                def procs(fleet: Fleet = fleet) -> dict[str, int]:
                    wanted = ("worker-", "beat", "web", "sync")
                    return {
                        n: p.pid
                        for n, p in fleet.stack.procs.items()
                        if n.startswith(wanted) and p.poll() is None
                    }

                with RssSampler(procs) as sampler:
                    started = time.monotonic()
                    sync = fleet.cli_background("sync", "sync", "--wait", "--timeout", "7200")
                    while sync.poll() is None:
                        time.sleep(0.5)
                    seconds = time.monotonic() - started
                counts = ledger_counts(fleet)
                marked = states_total(counts, "marked")
                result.check(f"{documents:,}: sync --wait exit code", sync.returncode == 0, sync.returncode)
                result.check(
                    f"{documents:,}: every ledger row marked", marked == states_total(counts), counts
                )
                peaks[documents] = {
                    "records": marked,
                    "seconds": round(seconds, 1),
                    "records_per_second": round(marked / seconds, 1) if seconds else None,
                    "peak_rss_mb_tree": {n: mb(v) for n, v in sorted(sampler.peak_tree.items())},
                    "peak_rss_mb_process": {n: mb(v) for n, v in sorted(sampler.peak_process.items())},
                    "samples": sampler.samples,
                }
    result.figures = {str(k): v for k, v in peaks.items()}
    a, b = peaks[small], peaks[large]
    result.row("records", f"{a['records']:,}", f"{b['records']:,}")
    result.row("wall time (s) / records/s", f"{a['seconds']} / {a['records_per_second']}",
               f"{b['seconds']} / {b['records_per_second']}")  # fmt: skip
    worst = 0.0
    for name in sorted(set(a["peak_rss_mb_tree"]) | set(b["peak_rss_mb_tree"])):
        small_mb, large_mb = a["peak_rss_mb_tree"].get(name), b["peak_rss_mb_tree"].get(name)
        result.row(f"peak RSS MB: {name}", small_mb, large_mb)
        growth = ratio(large_mb, small_mb)
        if growth is not None:
            worst = max(worst, growth)
            result.target(
                f"{name}: peak RSS {large:,} / {small:,}", "<= 1.1", round(growth, 3), growth <= 1.1
            )
    result.figures["worst_growth"] = round(worst, 3)
    result.notes.append("columns are the two sizes (no baseline: the target is ledgerbridge's own growth). "
                        "A worker's RSS is its whole process tree (with --pool prefork: the pool children too).")  # fmt: skip
    return result


# -- scenario: push -------------------------------------------------------------------------------


def signed_callout(
    secret: str, event_code: str, object_id: str, account_id: str | None
) -> tuple[bytes, dict[str, str]]:
    """Zuora's callout with our documented template: HMAC-SHA256 hex over ``timestamp.body``."""
    import hashlib
    import hmac

    body = json.dumps({"eventCode": event_code, "objectId": object_id, "accountId": account_id},
                      separators=(",", ":")).encode()  # fmt: skip
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    signature = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    notification = uuid.uuid4().hex
    headers = {
        "Content-Type": "application/json",
        "X-Zuora-Timestamp": stamp,
        "X-Zuora-Signature": signature,
        "Zuora-Notification-Id": notification,
        "Zuora-Request-Id": uuid.uuid4().hex,
    }
    return body, headers


def fire_callouts(url: str, secret: str, targets: Sequence[tuple[str, str | None]], rate: float,
                  seconds: float, *, duplicate_every: int = 0) -> dict[str, Any]:  # fmt: skip
    """POST signed 1110 callouts at ``rate`` per second for ``seconds`` (one per target, in
    order). Every ``duplicate_every``-th notification is delivered twice (Zuora re-sends when a
    response is lost). Returns statuses and the send lag."""
    from concurrent.futures import ThreadPoolExecutor

    count = min(len(targets), int(rate * seconds))
    statuses: Counter[int] = Counter()
    lags: list[float] = []
    lock = threading.Lock()
    import httpx

    client = httpx.Client(timeout=30, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64))

    def send(body: bytes, headers: dict[str, str], due: float) -> None:
        lag = time.monotonic() - due
        try:
            status = client.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError:
            status = 0
        with lock:
            statuses[status] += 1
            lags.append(lag)

    started = time.monotonic()
    duplicates = 0
    with ThreadPoolExecutor(max_workers=32, thread_name_prefix="callout") as pool:
        for i in range(count):
            due = started + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            object_id, account_id = targets[i]
            body, headers = signed_callout(secret, "1110", object_id, account_id)
            pool.submit(send, body, headers, due)
            if duplicate_every and i % duplicate_every == duplicate_every - 1:
                again = dict(headers, **{"Zuora-Request-Id": uuid.uuid4().hex})
                pool.submit(send, body, again, due)
                duplicates += 1
    client.close()
    elapsed = time.monotonic() - started
    return {
        "sent": count,
        "duplicates_sent": duplicates,
        "seconds": round(elapsed, 2),
        "rate": round(count / elapsed, 1) if elapsed else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "max_send_lag_ms": round(1000 * max(lags), 1) if lags else None,
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def scenario_push(bench: Bench) -> ScenarioResult:
    plan = bench.plan
    count = int(plan.push_rate * plan.push_seconds)
    sizes = tenant_sizes(max(plan.push_invoices, count) * 10_000 // MIX["invoices"] + 1)
    result = ScenarioResult(
        "push",
        f"{plan.push_rate:.0f} signed callouts/s for {plan.push_seconds:.0f}s ({count:,} Invoice Posted callouts for "
        "invoices in the tenant, 1 in 50 delivered twice); Zuora 50 ms and Acumatica 100 ms per call; "
        "customers already synced",
    )
    with bench.sandboxes("push") as sb:
        sb.prepare(sizes, zuora_config=BACKLOG_ZUORA, acumatica_config=BACKLOG_ACUMATICA)
        invoices = [r for r in sb.zuora_rows("invoices") if r.get("Status") == "Posted"]
        targets = [(str(r["Id"]), str(r.get("AccountId"))) for r in invoices][:count]
        if len(targets) < count:
            raise BenchError(f"the tenant has {len(targets)} posted invoices, {count} wanted")
        with bench.fleet(sb, "push") as fleet:
            fleet.start_workers()
            web = fleet.start_web()
            bench.say("push: syncing customers first (the steady state a callout meets)")
            code, _ = fleet.cli("sync", "accounts", "--wait", "--timeout", "1800", timeout=1900)
            result.check("customers synced first", code == 0, code)
            sb.reset_counters()
            bench.say(f"push: {count:,} callouts at {plan.push_rate:.0f}/s")
            secret = fleet.env["LEDGERBRIDGE_CALLOUT_HMAC_SECRET"]
            with RssSampler(fleet.process_ids(sb)) as sampler:
                sent = fire_callouts(f"{web}/zuora/callouts", secret, targets, plan.push_rate, plan.push_seconds,
                                     duplicate_every=50)  # fmt: skip
                latencies, state = _wait_pushed(
                    fleet, [t[0] for t in targets], timeout=300 + plan.push_seconds
                )
            z_calls, a_calls = sb.counters()
            dupes = _erp_duplicates(sb)
    result.figures = {
        "sent": sent,
        "posted": len(latencies),
        "ledger_states": state,
        "p50_ms": _ms(percentile(latencies, 0.5)),
        "p90_ms": _ms(percentile(latencies, 0.9)),
        "p99_ms": _ms(percentile(latencies, 0.99)),
        "max_ms": _ms(max(latencies) if latencies else None),
        "mean_ms": _ms(statistics.fmean(latencies) if latencies else None),
        "erp_duplicates": dupes,
        "cpu": cpu_split(sampler),
        "zuora_calls": zuora_calls(z_calls),
        "erp": {k: v for k, v in erp_figures(a_calls).items() if k != "per_calendar_minute"},
    }
    f = result.figures
    result.row("callouts sent (rate/s)", f"{sent['sent']:,} ({sent['rate']})", None)
    result.row("receiver answers", json.dumps(sent["statuses"]), None)
    result.row("documents created", f"{len(latencies):,}", None)
    result.row("received -> created p50 / p90 (ms)", f"{f['p50_ms']} / {f['p90_ms']}", None)
    result.row("received -> created p99 / max (ms)", f"{f['p99_ms']} / {f['max_ms']}", None)
    result.row("duplicate documents in the ERP", dupes, None)
    cpu = f["cpu"]
    result.row("CPU: ledgerbridge / sandboxes / other (cores)",
               f"{cpu['ledgerbridge']} / {cpu['sandboxes']} / {cpu['other']}", None)  # fmt: skip
    result.check("every callout's invoice created", len(latencies) == count, f"{len(latencies)}/{count}")
    p99 = f["p99_ms"]
    result.target("received -> created p99", "<= 1000 ms", p99, None if p99 is None else p99 <= 1000, "ms")
    result.target("duplicates", "0", dupes, dupes == 0)
    result.notes.append("no baseline: Zuora's guide is pull-only; the target is absolute latency")
    return result


def _erp_duplicates(sb: Sandboxes) -> int:
    dupes = 0
    for entity, key_field in (
        ("Invoice", "CustomerOrder"),
        ("Payment", "PaymentRef"),
        ("Customer", "CustomerID"),
    ):
        seen = Counter((str(r.get("Type")), str(r.get(key_field))) for r in sb.erp_rows(entity))
        dupes += sum(n - 1 for n in seen.values() if n > 1)
    return dupes


def _wait_pushed(fleet: Fleet, ids: Sequence[str], *, timeout: float) -> tuple[list[float], dict[str, int]]:
    """Seconds from the callout's receipt (ledger) to the ERP create (the row's ``posted_at``),
    once every pushed invoice is posted or the timeout passes."""
    from sqlmodel import col, select

    from shared.ledger.models import CalloutNotification, SyncRecord

    wanted = set(ids)
    ledger = fleet.ledger()
    try:
        deadline = time.monotonic() + timeout
        while True:
            with ledger.reading() as session:
                rows = session.exec(
                    select(SyncRecord).where(
                        SyncRecord.connection == fleet.connection, SyncRecord.object_type == "invoice"
                    )
                ).all()
                posted = {
                    r.zuora_id: r.posted_at for r in rows if r.zuora_id in wanted and r.posted_at is not None
                }
                states = Counter(r.state for r in rows if r.zuora_id in wanted)
            if len(posted) >= len(wanted) or time.monotonic() > deadline:
                break
            fleet.check_alive()
            time.sleep(1.0)
        with ledger.reading() as session:
            callouts = session.exec(
                select(CalloutNotification).where(
                    CalloutNotification.connection == fleet.connection,
                    col(CalloutNotification.object_id).in_(list(wanted)),
                )
            ).all()
            first: dict[str, datetime] = {}
            for c in callouts:
                if c.object_id and (c.object_id not in first or c.received_at < first[c.object_id]):
                    first[c.object_id] = c.received_at
    finally:
        ledger.dispose()
    latencies = [
        (at - first[zid]).total_seconds() for zid, at in posted.items() if zid in first and at is not None
    ]
    return latencies, dict(states)


# -- scenario: close ------------------------------------------------------------------------------


def scenario_close(bench: Bench) -> ScenarioResult:
    plan = bench.plan
    sizes = tenant_sizes(plan.close_documents, large_invoices=1)
    tb, jr = plan.trial_balance_seconds, plan.journal_run_seconds
    timing = {
        "trial_balance": {"pending_seconds": tb / 5, "processing_seconds": tb * 4 / 5},
        "journal_run": {"pending_seconds": jr / 5, "processing_seconds": jr * 4 / 5},
    }
    # The GL segmentation rule splits entries by region and customer account (as tenants that book
    # receivables per customer do), so the run yields hundreds of entries, not a few dozen.
    zuora_config = {**BACKLOG_ZUORA, **timing, "segment_names": list(CLOSE_SEGMENTS)}
    result = ScenarioResult("close", "")
    with bench.sandboxes("close") as sb:
        bench.say("close: baseline (sequential post + mark of each entry)")
        sb.prepare(sizes, zuora_config=zuora_config, acumatica_config=BACKLOG_ACUMATICA)
        base = _close_baseline(bench, sb)
        bench.say("close: ledgerbridge")
        sb.prepare(sizes, zuora_config=zuora_config, acumatica_config=BACKLOG_ACUMATICA)
        with bench.fleet(sb, "close") as fleet:
            fleet.start_workers()
            code, seconds = fleet.cli("close", PERIOD, "--wait", "--timeout", "1800", timeout=1900)
            z_calls, _ = sb.counters()
            phases = _close_phases(fleet, {"trial_balance": tb, "journal_run": jr})
        journals = [r for r in sb.erp_rows("JournalTransaction")]
        entries = sb.zuora_rows("journal-entries")
    result.setup = (
        f"period {PERIOD} of a {plan.close_documents:,}-document tenant: {phases['entries']} summary journal entries; "
        f"trial balance {tb:.0f} s and journal run {jr:.0f} s in the sandbox; Zuora 50 ms, Acumatica 100 ms"
    )
    result.check("`close --wait` exit code", code == 0, code)
    marked = sum(1 for e in entries if e.get("transferredToAccounting") == "Yes")
    result.check("every entry posted once and marked", len(journals) == phases["entries"] and marked >= phases["entries"],
                 {"erp_batches": len(journals), "marked_in_zuora": marked})  # fmt: skip
    counts: Counter[str] = Counter()
    for endpoint, n in (z_calls.get("counts") or {}).items():
        if endpoint.startswith("GET /v1/accounting-periods/"):
            counts["trial_balance"] += n
        elif endpoint.startswith("GET /v1/journal-runs/"):
            counts["journal_run"] += n
    tb_jobs = max(1, phases["trial_balance_jobs"])
    polls_tb = counts["trial_balance"] / tb_jobs
    polls_jr = float(counts["journal_run"])
    post_rate = ratio(phases["entries"], phases["posting_seconds"])
    base_rate = ratio(base["entries"], base["seconds"])
    speedup = ratio(post_rate, base_rate)
    # Stricter still: our verifying and reconciling counted in, though the baseline does neither.
    whole = phases["posting_seconds"] + phases["verify_reconcile_seconds"]
    speedup_with_checks = ratio(ratio(phases["entries"], whole), base_rate)
    result.figures = {"wall_seconds": round(seconds, 1), **phases, "polls": dict(counts),
                      "polls_per_trial_balance": round(polls_tb, 1), "polls_per_journal_run": polls_jr,
                      "posting_entries_per_second": rounded(post_rate, 2), "baseline": base,
                      "posting_speedup": rounded(speedup, 2),
                      "posting_speedup_with_verify_reconcile": rounded(speedup_with_checks, 2)}  # fmt: skip
    result.row("entries", phases["entries"], base["entries"])
    result.row("wall time (s)", round(seconds, 1), None)
    result.row(
        "waiting (s) / sandbox job time (s)",
        f"{phases['waiting_seconds']} / {phases['sandbox_seconds']}",
        None,
    )
    result.row("posting + marking (s)", phases["posting_seconds"], round(base["seconds"], 2))
    result.row("then verifying + reconciling (s)", phases["verify_reconcile_seconds"], None)
    result.row("speed-up counting verify + reconcile", f"{rounded(speedup_with_checks, 2)}x", None)
    result.row("entries/s posted and marked", rounded(post_rate, 2), rounded(base_rate, 2))
    result.row("polls per trial balance / journal run", f"{polls_tb:.1f} / {polls_jr:.0f}", None)
    over = phases["waiting_seconds"] - phases["sandbox_seconds"]
    result.target("waiting - sandbox time", "<= 2 s", round(over, 2), over <= 2.0, "s")
    worst_polls = max(polls_tb, polls_jr)
    result.target("polls per async job", "<= 12", round(worst_polls, 1), worst_polls <= 12)
    result.target(
        "posting speed-up vs baseline",
        ">= 10x",
        rounded(speedup, 2),
        None if speedup is None else speedup >= 10,
        "x",
    )
    from shared.close.fanout import MAX_CONCURRENCY as MAX_CLOSE_CONCURRENCY

    result.notes.append(
        f"The sandbox books one summary entry per (transaction type, currency, {', '.join(CLOSE_SEGMENTS)}). "
        "Posting and marking run as many entries at a time as the Acumatica licence and the Zuora "
        f"concurrency limit allow (at most {MAX_CLOSE_CONCURRENCY}); the baseline posts and marks one "
        "entry after the other."
    )
    return result


def _close_baseline(bench: Bench, sb: Sandboxes) -> dict[str, Any]:
    """The obvious close: start a journal run, poll it every second, then post each entry to the
    GL and mark it with one PUT, one after the other. Only the posting loop is timed."""
    from shared.mapping import journal_from_summary_entry

    clients = BaselineClients(bench, sb)
    try:
        from shared.settings import DEFAULT_JOURNAL_TRANSACTION_TYPES

        types = clients.mapping.transaction_types or DEFAULT_JOURNAL_TRANSACTION_TYPES
        number = clients.zuora.journal_runs.create(PERIOD, date(2024, 12, 31), list(types))
        deadline = time.monotonic() + 600
        while not clients.zuora.journal_runs.get(number).completed:
            if time.monotonic() > deadline:
                raise BenchError(f"journal run {number} did not complete in 10 minutes")
            time.sleep(1.0)
        raw: list[dict[str, Any]] = []
        for page in clients.zuora.journal_entries.list_by_run(number):
            raw.extend(page.response.get("journalEntries") or [])
        started = time.monotonic()
        for entry in raw:
            clients.erp.post_journal(journal_from_summary_entry(entry, clients.mapping))
            clients.zuora.journal_entries.update_basic_information(
                str(entry["number"]), transferred_to_accounting="Yes"
            )
        seconds = time.monotonic() - started
        return {"entries": len(raw), "seconds": round(seconds, 2), "journal_run": number}
    finally:
        clients.close()


def _close_phases(fleet: Fleet, durations: Mapping[str, float]) -> dict[str, Any]:
    """Waiting and posting time of the close, read from the audit trail of its HTTP calls."""
    from sqlmodel import col, select

    from shared.ledger.models import AuditEvent, CloseRun

    ledger = fleet.ledger()
    try:
        with ledger.reading() as session:
            events = session.exec(
                select(AuditEvent).where(AuditEvent.connection == fleet.connection, AuditEvent.kind == "http")
                .order_by(col(AuditEvent.at))
            ).all()  # fmt: skip
            # `at` is when the answer was recorded; the request went out `duration_ms` before.
            calls = [
                (e.at, e.method or "", e.url or "", e.response_body or "",
                 e.at - timedelta(milliseconds=e.duration_ms or 0))
                for e in events
            ]  # fmt: skip
            run = session.exec(select(CloseRun).where(CloseRun.connection == fleet.connection)).first()
            entries = (
                len(ledger.records_for_close_run(run.id)) if run is not None and run.id is not None else 0
            )
    finally:
        ledger.dispose()
    jobs: list[tuple[str, datetime, datetime | None]] = []
    open_job: dict[str, datetime] = {}
    for at, method, url, response, _sent in calls:
        body = response.replace(" ", "")
        if method == "PUT" and ("/run-trial-balance" in url or url.endswith("/close")):
            open_job["trial_balance"] = at
        elif method == "POST" and url.endswith("/v1/journal-runs"):
            open_job["journal_run"] = at
        elif method == "GET" and "trial_balance" in open_job and "/v1/accounting-periods/" in url:
            if '"runTrialBalanceStatus":"Completed"' in body:
                jobs.append(("trial_balance", open_job.pop("trial_balance"), at))
        elif method == "GET" and "journal_run" in open_job and "/v1/journal-runs/" in url:  # noqa: SIM102
            if '"status":"Completed"' in body:
                jobs.append(("journal_run", open_job.pop("journal_run"), at))
    # The same work as the baseline's timed loop: from the first request that posts or marks an
    # entry (a Processing or Yes PUT in Zuora, a JournalTransaction write in the ERP) to the answer
    # of the last one. Verifying and reconciling (reads) come after it and are reported apart.
    writes = [
        c for c in calls
        if "/basic-information" in c[2] or (c[1] in ("PUT", "POST") and "JournalTransaction" in c[2])
    ]  # fmt: skip
    reads_after = [c for c in calls if writes and c[0] > writes[-1][0] and c[1] == "GET"]
    posting = (writes[-1][0] - min(c[4] for c in writes)).total_seconds() if writes else 0.0
    finishing = (reads_after[-1][0] - writes[-1][0]).total_seconds() if reads_after else 0.0
    waiting = sum((done - start).total_seconds() for _kind, start, done in jobs if done is not None)
    return {
        "entries": entries,
        "jobs": [
            {"job": kind, "seconds": round(((done or start) - start).total_seconds(), 2)}
            for kind, start, done in jobs
        ],
        "trial_balance_jobs": sum(1 for kind, _s, _d in jobs if kind == "trial_balance"),
        "waiting_seconds": round(waiting, 2),
        "sandbox_seconds": round(sum(durations[kind] for kind, _s, _d in jobs), 2),
        "worst_job_overshoot_seconds": round(
            max(
                (((done or start) - start).total_seconds() - durations[kind] for kind, start, done in jobs),
                default=0.0,
            ),
            2,
        ),
        "posting_seconds": round(posting, 2),
        "verify_reconcile_seconds": round(finishing, 2),
    }


# -- scenario: in doubt ---------------------------------------------------------------------------

# 3 % of ERP writes committed and their answer dropped, 2 % of ERP requests answered 500 unprocessed.
IN_DOUBT_FAULTS = (
    {"kind": "commit_then_drop", "method": "PUT", "share": 0.03},
    {"kind": "status", "status": 500, "method": "PUT", "share": 0.02},
    {"kind": "status", "status": 500, "method": "GET", "share": 0.02},
)


def scenario_in_doubt(bench: Bench) -> ScenarioResult:
    """The same month synced twice, without and with ERP faults that lose answers: how long a lost
    answer takes to settle, and what the faults cost ``sync --wait``."""
    from shared.item_level.queries import settle_times

    sizes = tenant_sizes(bench.plan.in_doubt_documents)
    result = ScenarioResult(
        "in_doubt",
        f"{record_count(sizes):,} records ({bench.plan.in_doubt_documents:,} documents), Zuora 50 ms and "
        "Acumatica 100 ms per call, the default 15-minute posting lease; `sync --wait` without faults (the "
        "second column), then with 3 % of ERP writes committed and their answer dropped and 2 % of ERP "
        "requests answered 500",
    )
    runs: dict[str, dict[str, Any]] = {}
    with bench.sandboxes("in_doubt") as sb:
        for label, faults in (("clean", ()), ("faults", IN_DOUBT_FAULTS)):
            bench.say(f"in_doubt: `sync --wait` {'with' if faults else 'without'} faults")
            sb.prepare(sizes, zuora_config=BACKLOG_ZUORA, acumatica_config=BACKLOG_ACUMATICA)
            sb.acumatica("POST", "faults", {"rules": list(faults), "replace": True, "seed": SEED})
            with bench.fleet(sb, f"in-doubt-{label}") as fleet:
                fleet.start_workers()
                sb.reset_counters()
                code, seconds = fleet.cli("sync", "--wait", "--timeout", "1800", timeout=1900)
                injected = dict(sb.acumatica("GET", "faults").get("injected", {}))
                ledger = fleet.ledger()
                try:
                    times = [t.total_seconds() for t in settle_times(ledger, fleet.connection)]
                finally:
                    ledger.dispose()
                counts = ledger_counts(fleet)
            sb.acumatica("DELETE", "faults")
            check = check_item_sync(sb)
            result.check(f"{label}: `sync --wait` exit code", code == 0, code)
            result.check(
                f"{label}: every document once in the ERP and marked", check["ok"], check["problems"]
            )
            open_rows = states_total(counts) - states_total(counts, "marked")
            result.check(f"{label}: every ledger row marked", open_rows == 0, counts)
            runs[label] = {
                "seconds": seconds,
                "times": times,
                "injected": injected,
                "records": states_total(counts),
            }

    clean, faulty = runs["clean"], runs["faults"]
    times = faulty["times"]
    p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
    slower = ratio(faulty["seconds"], clean["seconds"])
    result.row("records", f"{faulty['records']:,}", f"{clean['records']:,}")
    result.row("`sync --wait` wall time (s)", round(faulty["seconds"], 1), round(clean["seconds"], 1))
    result.row("wall time with faults / without", rounded(slower, 2), None)
    result.row(
        "answers lost and committed (commit then drop)", faulty["injected"].get("commit_then_drop", 0), 0
    )
    result.row("500s answered", faulty["injected"].get("status", 0), 0)
    result.row("records settled after a lost answer", len(times), len(clean["times"]))
    result.row("lost answer -> settled p50 / p99 / max (s)",
               f"{rounded(p50, 1)} / {rounded(p99, 1)} / {rounded(max(times, default=None), 1)}", None)  # fmt: skip
    result.figures = {
        "records": faulty["records"],
        "seconds_with_faults": round(faulty["seconds"], 2),
        "seconds_without_faults": round(clean["seconds"], 2),
        "slowdown": rounded(slower, 3),
        "faults_injected": faulty["injected"],
        "lost_answers_settled": len(times),
        "settle_seconds": {
            "p50": rounded(p50, 2),
            "p99": rounded(p99, 2),
            "max": rounded(max(times, default=None), 2),
        },
    }
    result.target(
        "lost answer -> settled, p99", "<= 30 s (the lease is 900 s)", rounded(p99, 1),
        None if p99 is None else p99 <= 30, "s",
    )  # fmt: skip
    result.target(
        "`sync --wait` with faults / without",
        "<= 1.5",
        rounded(slower, 2),
        None if slower is None else slower <= 1.5,
    )
    return result


# -- running and reporting ------------------------------------------------------------------------

RUNNERS: dict[str, Callable[[Bench], ScenarioResult]] = {
    "backlog": scenario_backlog,
    "licence": scenario_licence,
    "memory": scenario_memory,
    "push": scenario_push,
    "close": scenario_close,
    "in_doubt": scenario_in_doubt,
    "fair_share": lambda bench: _fleets().scenario_fair_share(bench),
    "scale_out": lambda bench: _fleets().scenario_scale_out(bench),
}


def _fleets() -> Any:
    """The scenarios of several connections and of a growing fleet (they build on this module)."""
    from bench import fleets

    return fleets


def run_bench(bench: Bench, scenarios: Sequence[str], *, out: Path, command: str) -> dict[str, Any]:
    """Run ``scenarios`` in order; print each one's table; write and return the JSON report."""
    import httpx

    report: dict[str, Any] = {
        "command": command,
        "size": bench.plan.size,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "tuning": bench.tuning.__dict__,
        "database": "sqlite" if bench.database == "sqlite" else "postgresql",
        "scenarios": {},
    }
    for name in scenarios:
        started = time.monotonic()
        bench.statements = {}
        try:
            result = RUNNERS[name](bench)
        except (BenchError, demo.DemoError, OSError, httpx.HTTPError, subprocess.SubprocessError) as exc:
            result = ScenarioResult(name, "", status="error")
            result.notes.append(f"{type(exc).__name__}: {exc}")
        result.figures["scenario_seconds"] = round(time.monotonic() - started, 1)
        result.setup = f"{result.setup}; {bench.shape_text()}" if result.setup else bench.shape_text()
        result.figures["shape"] = bench.shape()
        add_statement_rows(result, bench.statements)
        report["scenarios"][name] = result.as_dict()
        print_result(bench.console, result)
        out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


STATEMENTS_LISTED = 15


def add_statement_rows(result: ScenarioResult, fleets: Mapping[str, Mapping[str, Any]]) -> None:
    """What each fleet asked of the ledger, per ledger record of its run: statements, round trips,
    transactions, connection checkouts and pings; the figures keep the most frequent statements."""
    figures: dict[str, Any] = {}
    for fleet, counted in fleets.items():
        records = counted.get("records")
        by_statement = counted.get("by_statement", {})
        top = sorted(by_statement.items(), key=lambda item: (-item[1][1], -item[1][0], item[0]))
        per: dict[str, float | None] = {}
        for figure in ("statements", "round_trips", "commits", "checkouts", "pings"):
            per[figure] = rounded(ratio(counted.get(figure), records), 2)
        figures[fleet] = {
            **{k: v for k, v in counted.items() if k != "by_statement"},
            "per_record": per,
            "top_statements": [
                {"statement": text, "statements": n, "round_trips": trips}
                for text, (n, trips) in top[:STATEMENTS_LISTED]
            ],
        }
        suffix = "" if len(fleets) == 1 else f" ({fleet})"
        result.row(f"ledger statements/record{suffix}", per["statements"], None)
        result.row(f"ledger round trips/record{suffix}", per["round_trips"], None)
        result.row(
            f"ledger commits / checkouts / pings per record{suffix}",
            f"{per['commits']} / {per['checkouts']} / {per['pings']}",
            None,
        )
    result.figures["ledger_statements"] = figures


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def print_result(console: Console, result: ScenarioResult) -> None:
    colour = {"ok": "green", "missed": "yellow"}.get(result.status, "red")
    table = Table(title=f"[bold]{result.name}[/] [{colour}]{result.status}[/]", title_justify="left",
                  caption=escape(result.setup), caption_justify="left")  # fmt: skip
    second = "10k / 100k" if result.name == "memory" else "baseline"
    table.add_column("figure")
    table.add_column("ledgerbridge" if result.name != "memory" else "small", justify="right")
    table.add_column(second if result.name != "memory" else "large", justify="right")
    for figure, ours, base in result.rows:
        table.add_row(escape(figure), escape(_cell(ours)), escape(_cell(base)))
    console.print(table)
    if result.targets:
        targets = Table(show_header=True, box=None)
        for column in ("target", "wanted", "measured", "met"):
            targets.add_column(column)
        for t in result.targets:
            met = "-" if t.met is None else ("[green]yes[/]" if t.met else "[red]no[/]")
            targets.add_row(
                escape(t.name),
                escape(t.target),
                escape(_cell(t.value) + (f" {t.unit}" if t.unit else "")),
                met,
            )
        console.print(targets)
    for name, check in result.checks.items():
        if not check["ok"]:
            console.print(f"[red]check failed[/] {escape(name)}: {escape(str(check['detail'])[:500])}")
    for note in result.notes:
        console.print(f"[dim]note:[/] {escape(note)}")


def register(app: typer.Typer, console: Console, err: Console) -> None:
    """Add ``bench`` to ``app`` (``python -m bench``, ``scripts/bench``)."""

    @app.command("bench")
    def bench(  # noqa: PLR0917 - typer turns each parameter into an argument or option
        scenarios: Annotated[
            list[str] | None, typer.Argument(help=f"Scenarios to run ({', '.join(SCENARIOS)}); none = all.")
        ] = None,
        size: Annotated[
            str, typer.Option("--size", help="tiny (seconds, proves the machinery) or full.")
        ] = "full",
        out: Annotated[Path, typer.Option("--out", help="Where to write the JSON figures.")] = Path(
            "bench-results.json"
        ),
        duration_scale: Annotated[
            float,
            typer.Option("--duration-scale", help="Multiply the timed windows (licence, push) by this."),
        ] = 1.0,
        workdir: Annotated[
            Path | None,
            typer.Option("--workdir", help="Logs and ledgers of every process (default: a temp folder)."),
        ] = None,
        concurrency: Annotated[
            int | None,
            typer.Option(
                help="Celery pool size of each of the 2 workers (default: the Procfile's with --pool procfile, "
                f"else {THREADS_CONCURRENCY})."
            ),
        ] = None,
        pool: Annotated[
            str,
            typer.Option(
                help="procfile (the Procfile's worker command: prefork), or the bench's own command with "
                "prefork or threads."
            ),
        ] = Tuning.pool,
        database: Annotated[
            str,
            typer.Option(
                help="A PostgreSQL server URL (a database per run, dropped after; default: the local "
                "server, or LEDGERBRIDGE_BENCH_DATABASE), or sqlite (a file per run)."
            ),
        ] = DEFAULT_DATABASE,
        zuora_pages: Annotated[
            str,
            typer.Option(
                help="The sandbox's Zuora page limits: sdk (Zuora's OpenAPI document: Object Query 50, lists 40; "
                "the strictest) or web (its reference pages: 99 and 300)."
            ),
        ] = "sdk",
    ) -> None:
        """Measure ledgerbridge side by side with the obvious script against the sandboxes."""
        chosen = scenarios or list(SCENARIOS)
        unknown = [s for s in chosen if s not in SCENARIOS]
        if (
            unknown
            or size not in ("tiny", "full")
            or duration_scale <= 0
            or pool not in ("procfile", "prefork", "threads")
            or (concurrency is not None and concurrency < 1)
            or zuora_pages not in ("sdk", "web")
        ):
            err.print(f"[bold red]error:[/] unknown scenario {unknown}; one of {', '.join(SCENARIOS)}; "
                      "--size tiny|full; --duration-scale > 0; --pool procfile|prefork|threads; "
                      "--concurrency >= 1; --zuora-pages sdk|web")  # fmt: skip
            raise typer.Exit(2)
        folder = workdir or Path(tempfile.gettempdir()) / f"ledgerbridge-bench-{uuid.uuid4().hex[:6]}"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        redis_url = os.environ.get("LEDGERBRIDGE_REDIS_URL", "redis://127.0.0.1:6379/0")
        plan = Plan.for_size(size, duration_scale)  # type: ignore[arg-type]
        stack = demo.Stack(workdir=folder, env=dict(os.environ))
        try:
            redis_proc = demo.ensure_redis(redis_url, folder, console)
            if redis_proc is not None:
                stack.procs["redis-server"] = redis_proc
            runner = Bench(plan, tuning_for(pool, concurrency), folder, redis_url, console, database,
                           zuora_pages=zuora_pages)  # fmt: skip
            console.rule(f"[bold]ledgerbridge bench[/] ({size}; logs in {folder})")
            previous = signal.signal(signal.SIGTERM, _raise_interrupt)
            try:
                report = run_bench(runner, chosen, out=out, command="scripts/bench " + " ".join(sys.argv[1:]))
            finally:
                signal.signal(signal.SIGTERM, previous)
        finally:
            stack.stop()
        console.print(f"figures written to {out}")
        statuses = [s["status"] for s in report["scenarios"].values()]
        if any(s in ("failed", "error") for s in statuses):
            raise typer.Exit(1)


def tuning_for(pool: str, concurrency: int | None) -> Tuning:
    """The bench's deployment for ``--pool`` and ``--concurrency`` (None: the pool's default)."""
    from dataclasses import replace

    base = Tuning() if pool == "procfile" else replace(Tuning.threads(), pool=pool)
    return base if concurrency is None else replace(base, concurrency=concurrency)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
