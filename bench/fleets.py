"""Scenarios of one fleet serving several connections, and of a fleet growing.

- ``fair_share``: one connection with a backlog and a few connections with a few new documents
  each, arriving during it. Each newcomer's time from arrival to posted, beside the same
  connections alone and beside the same run with the fair share switched off
  (``LEDGERBRIDGE_FAIR_SHARE_BATCHES=0``); and the backlog's rate while they are posted.
- ``scale_out``: one API-latency-bound backlog synced by 2, 4 and 6 worker processes, each started
  as a machine of its own would start it (its own process group and environment), sharing only
  Redis and the PostgreSQL ledger: the throughput curve, the licence limits holding, and the
  ledger connections each process and the fleet hold.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bench.scenarios import (
    BACKLOG_ACUMATICA,
    BACKLOG_ZUORA,
    Bench,
    BenchError,
    Fleet,
    Sandboxes,
    ScenarioResult,
    check_item_sync,
    erp_figures,
    ledger_counts,
    percentile,
    ratio,
    record_count,
    rounded,
    states_total,
    status_count,
    tenant_sizes,
    zuora_calls,
)

# -- connections of one fleet ---------------------------------------------------------------------

SETTLED = frozenset({"marked", "parked", "failed"})


def _erp_duplicate_keys(sb: Sandboxes) -> list[str]:
    """The ERP documents (entity, type, natural key) created more than once. Rows without the key
    are not documents of their own: a credit memo read through the Payment entity (where its
    applications are made) has no PaymentRef; the credit memo is counted as an Invoice."""
    from collections import Counter

    found: list[str] = []
    for entity, key_field in (
        ("Invoice", "CustomerOrder"),
        ("Payment", "PaymentRef"),
        ("Customer", "CustomerID"),
    ):
        seen = Counter(
            (str(r.get("Type")), str(r[key_field])) for r in sb.erp_rows(entity) if r.get(key_field)
        )
        found += [f"{entity} {kind} {key} x{n}" for (kind, key), n in seen.items() if n > 1]
    return found


def add_connection(fleet: Fleet, name: str, sb: Sandboxes, *, erp_concurrency: int) -> None:
    """Store a connection to these sandboxes in the fleet's ledger (``connection add``)."""
    from cli.sandbox import sandbox_credentials

    c = sandbox_credentials()
    code, _ = fleet.cli(
        "connection", "add", name, "--erp", "acumatica",
        "--zuora-url", sb.zuora_url, "--zuora-client-id", c.zuora_client_id,
        "--zuora-client-secret", c.zuora_client_secret, "--zuora-requests-per-minute", "40000",
        "--acumatica-url", sb.acumatica_url, "--acumatica-tenant", c.acumatica_tenant,
        "--acumatica-username", c.acumatica_username, "--acumatica-password", c.acumatica_password,
        "--acumatica-branch", "HQ", "--acumatica-requests-per-minute", "1000000",
        "--acumatica-max-concurrent", str(erp_concurrency),
        timeout=120,
    )  # fmt: skip
    if code != 0:
        raise BenchError(
            f"`ledgerbridge connection add {name}` exited with {code}; see {fleet.stack.workdir}"
        )
    fleet.extra_connections.append(name)


def document_rows(
    fleet: Fleet, connection: str, *, customers: bool = False
) -> list[tuple[str, datetime | None]]:
    """(state, posted_at) of every document row of ``connection`` (and customer, with ``customers``)."""
    import sqlalchemy as sa
    from sqlmodel import col, select

    from shared.ledger.models import SyncRecord

    ledger = fleet.ledger()
    try:
        with ledger.reading() as session:
            rows = session.exec(
                select(SyncRecord.state, SyncRecord.posted_at).where(
                    SyncRecord.connection == connection,
                    sa.true() if customers else col(SyncRecord.object_type) != "account",
                )
            ).all()
    finally:
        ledger.dispose()
    return [(str(state), posted) for state, posted in rows]


def posted_count(fleet: Fleet, connection: str, *, customers: bool = False) -> int:
    return sum(1 for _, posted in document_rows(fleet, connection, customers=customers) if posted is not None)


def add_connections(
    fleet: Fleet, sandboxes: Mapping[str, Sandboxes], *, erp_concurrency: int
) -> dict[str, str]:
    """A connection of this fleet per sandbox pair, by label; their names are the fleet's own."""
    names = {label: f"{fleet.connection}-{label}" for label in sandboxes}
    for label, sb in sandboxes.items():
        add_connection(fleet, names[label], sb, erp_concurrency=erp_concurrency)
    return names


@dataclass
class Arrival:
    """Connections (label: name) whose new documents arrived at ``at`` (their pulls started then)."""

    at: datetime
    connections: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)


def arrive(fleet: Fleet, connections: Mapping[str, str]) -> Arrival:
    """Start each connection's pull now (``ledgerbridge sync --connection``), as beat would."""
    arrival = Arrival(datetime.now(UTC), dict(connections))
    for label, name in connections.items():
        arrival.procs[label] = fleet.cli_background(f"sync-{label}", "sync", "--connection", name)
    return arrival


def wait_settled(fleet: Fleet, arrival: Arrival, *, timeout: float) -> dict[str, list[float]]:
    """Wait until every arriving connection's pull ended and each of its documents is marked (or
    parked, failed); the seconds from arrival to posted of each document, by connection."""
    deadline = time.monotonic() + timeout
    while True:
        fleet.check_alive()
        rows = {label: document_rows(fleet, name) for label, name in arrival.connections.items()}
        pulled = all(proc.poll() is not None for proc in arrival.procs.values())
        if pulled and all(r and all(state in SETTLED for state, _ in r) for r in rows.values()):
            break
        if time.monotonic() > deadline:
            states = {name: sorted({state for state, _ in r}) for name, r in rows.items()}
            raise BenchError(f"the arriving connections did not settle within {timeout:.0f}s: {states}")
        time.sleep(0.5)
    failed = {name: proc.returncode for name, proc in arrival.procs.items() if proc.returncode != 0}
    if failed:
        raise BenchError(f"`ledgerbridge sync` exited with {failed}; see {fleet.stack.workdir}")
    return {
        label: sorted((posted - arrival.at).total_seconds() for _, posted in r if posted is not None)
        for label, r in rows.items()
    }


def broker_depth(fleet: Fleet) -> int:
    """Messages waiting in the fleet's queue, every priority (kombu keeps a list per priority)."""
    import redis

    client = redis.Redis.from_url(fleet.bench.redis_url)
    try:
        queue = fleet.env["LEDGERBRIDGE_QUEUE"]
        keys = list(client.scan_iter(match=f"{queue}*"))
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.execute_command("TYPE", key)  # type: ignore[no-untyped-call]
        lists = [k for k, kind in zip(keys, pipe.execute(), strict=True) if kind in (b"list", "list")]
        return sum(int(client.llen(key)) for key in lists)
    finally:
        client.close()


def latency_figures(seconds: Sequence[float]) -> dict[str, float | None]:
    return {
        "documents": len(seconds),
        "first": rounded(min(seconds) if seconds else None),
        "p50": rounded(percentile(seconds, 0.5)),
        "p99": rounded(percentile(seconds, 0.99)),
        "max": rounded(max(seconds) if seconds else None),
    }


# -- scenario: fair share -------------------------------------------------------------------------

SMALL_CONNECTIONS = 5
FAIR_SHARE_TARGET = 3.0  # a newcomer's p99 with a backlog running, at most this many times alone
BACKLOG_KEEPS = 0.5  # the backlog's rate while the newcomers are posted, at least this share of before
# The backlog's tenant is bound by its Acumatica licence, as production tenants are: it posts far
# slower than the pull reads, so its batches pile up in the broker (each newcomer has its own
# licence, unlimited here, as alone).
FAIR_BACKLOG_ACUMATICA = {"latency_ms": 100, "requests_per_minute": 1800, "max_concurrent": 8}
# The newcomers arrive once this many of the backlog's tasks wait in the broker (2,000 documents).
DEEP_QUEUE_TASKS = 40


def scenario_fair_share(bench: Bench) -> ScenarioResult:
    plan = bench.plan
    big_sizes = tenant_sizes(plan.backlog_documents, large_invoices=2 if plan.size == "full" else 1)
    small_sizes = tenant_sizes(plan.fair_share_documents)
    erp = bench.tuning.erp_concurrency
    licence = FAIR_BACKLOG_ACUMATICA
    deep = max(1, min(DEEP_QUEUE_TASKS, plan.backlog_documents // 500))
    result = ScenarioResult(
        "fair_share",
        f"one connection with a backlog of {record_count(big_sizes):,} records, its Acumatica licence "
        f"{licence['requests_per_minute']} requests/min and {licence['max_concurrent']} at once, and "
        f"{SMALL_CONNECTIONS} connections with {plan.fair_share_documents} new documents each, arriving once "
        f"{deep} of the backlog's tasks wait in the broker (each connection its own Zuora and Acumatica "
        "sandboxes); Zuora 50 ms and Acumatica 100 ms per call",
    )
    with contextlib.ExitStack() as sandboxes:
        big = sandboxes.enter_context(bench.sandboxes("fair-backlog"))
        smalls = {
            f"small-{i}": sandboxes.enter_context(bench.sandboxes(f"fair-small-{i}"))
            for i in range(SMALL_CONNECTIONS)
        }
        labels = list(smalls)

        def prepare_smalls() -> None:
            for sb in smalls.values():
                sb.prepare(small_sizes, zuora_config=BACKLOG_ZUORA, acumatica_config=BACKLOG_ACUMATICA)

        def check_smalls(run: str) -> None:
            for label, sb in smalls.items():
                checked = check_item_sync(sb)
                result.check(f"{run}: {label} every document once in the ERP and marked",
                             checked["ok"], checked["problems"])  # fmt: skip

        # The newcomers alone: the same fleet, no backlog.
        bench.say(f"fair_share: {SMALL_CONNECTIONS} connections alone")
        prepare_smalls()
        big.prepare(small_sizes, zuora_config=BACKLOG_ZUORA, acumatica_config=BACKLOG_ACUMATICA)  # not pulled
        with bench.fleet(big, "fair-alone") as fleet:
            names = add_connections(fleet, smalls, erp_concurrency=erp)
            fleet.start_workers()
            alone = wait_settled(fleet, arrive(fleet, names), timeout=600)
        check_smalls("alone")

        runs: dict[str, dict[str, Any]] = {}
        licensed = {
            "LEDGERBRIDGE_ACUMATICA_REQUESTS_PER_MINUTE": str(licence["requests_per_minute"]),
            "LEDGERBRIDGE_ACUMATICA_MAX_CONCURRENT": str(licence["max_concurrent"]),
        }
        for label, share in (("shared", None), ("unshared", "0")):
            text = (
                "with the fair share" if share is None else "without it (LEDGERBRIDGE_FAIR_SHARE_BATCHES=0)"
            )
            bench.say(
                f"fair_share: the backlog of {record_count(big_sizes):,} records and the newcomers, {text}"
            )
            prepare_smalls()
            big.prepare(big_sizes, zuora_config=BACKLOG_ZUORA, acumatica_config=licence)
            env = licensed if share is None else {**licensed, "LEDGERBRIDGE_FAIR_SHARE_BATCHES": share}
            with bench.fleet(big, f"fair-{label}", env=env) as fleet:
                names = add_connections(fleet, smalls, erp_concurrency=erp)
                fleet.start_workers()
                runs[label] = _with_backlog(fleet, names, deep)
            result.check(f"{label}: `sync` (the backlog's pull) exit code", runs[label]["code"] == 0,
                         runs[label]["code"])  # fmt: skip
            duplicates = _erp_duplicate_keys(big)
            result.check(
                f"{label}: the backlog's documents at most once in the ERP", not duplicates, duplicates
            )
            check_smalls(label)

    _fair_share_report(result, alone, runs, labels)
    return result


def _with_backlog(fleet: Fleet, names: Mapping[str, str], deep: int) -> dict[str, Any]:
    """Start the backlog's pull; once ``deep`` tasks wait in the broker (or its pull ended, or five
    minutes passed), the newcomers arrive; measure until they are posted and marked. The backlog
    is not waited for: at its licence's pace it would take the better part of an hour."""
    started = time.monotonic()
    pull = fleet.cli_background("sync-backlog", "sync")
    deadline = time.monotonic() + 300
    # (A backlog small enough for the workers to keep up with never queues: its pull's end will do.)
    while (queued := broker_depth(fleet)) < deep and pull.poll() is None and time.monotonic() < deadline:
        fleet.check_alive()
        time.sleep(0.5)
    before = posted_count(fleet, fleet.connection, customers=True)
    waited = time.monotonic() - started
    arrival = arrive(fleet, names)
    newcomers = wait_settled(fleet, arrival, timeout=1800)
    window = max(max(s) if s else 0.0 for s in newcomers.values())
    in_window = sum(
        1
        for _, posted in document_rows(fleet, fleet.connection, customers=True)
        if posted is not None and 0 <= (posted - arrival.at).total_seconds() <= window
    )
    queued_after = broker_depth(fleet)
    pull.wait(timeout=600)
    return {
        "code": pull.returncode,
        "newcomers": {label: latency_figures(s) for label, s in newcomers.items()},
        "all_newcomers": latency_figures(sorted(x for s in newcomers.values() for x in s)),
        "backlog": {
            "posted_before_arrival": before,
            "seconds_before_arrival": round(waited, 1),
            "records_per_second_before": rounded(ratio(before, waited), 1),
            "tasks_in_the_broker_at_arrival": queued,
            "tasks_in_the_broker_after": queued_after,
            "window_seconds": round(window, 2),
            "posted_in_window": in_window,
            "records_per_second_in_window": rounded(ratio(in_window, window), 1),
        },
    }


def _fair_share_report(
    result: ScenarioResult, alone: Mapping[str, list[float]], runs: Mapping[str, Mapping[str, Any]],
    labels: Sequence[str],
) -> None:  # fmt: skip
    alone_figures = {name: latency_figures(s) for name, s in alone.items()}
    alone_all = latency_figures(sorted(x for s in alone.values() for x in s))
    shared, unshared = runs["shared"], runs["unshared"]
    result.row("newcomers' documents: arrival -> posted, p50 / p99 (s)",
               f"{shared['all_newcomers']['p50']} / {shared['all_newcomers']['p99']}",
               f"alone {alone_all['p50']} / {alone_all['p99']}; without the fair share "
               f"{unshared['all_newcomers']['p50']} / {unshared['all_newcomers']['p99']}")  # fmt: skip
    worst = 0.0
    for name in labels:
        ours, by_itself, without = (shared["newcomers"][name], alone_figures[name],
                                    unshared["newcomers"][name])  # fmt: skip
        multiple = ratio(ours["p99"], by_itself["p99"])
        worst = max(worst, multiple or 0.0)
        result.row(f"  {name}: p50 / p99 (s), x alone",
                   f"{ours['p50']} / {ours['p99']} ({rounded(multiple, 1)}x)",
                   f"alone {by_itself['p50']} / {by_itself['p99']}; without {without['p50']} / {without['p99']}")  # fmt: skip
    sb, ub = shared["backlog"], unshared["backlog"]
    result.row("tasks waiting in the broker when the newcomers arrived", sb["tasks_in_the_broker_at_arrival"],
               ub["tasks_in_the_broker_at_arrival"])  # fmt: skip
    result.row("backlog: records/s before the newcomers arrived", sb["records_per_second_before"],
               ub["records_per_second_before"])  # fmt: skip
    result.row("backlog: records/s while the newcomers were posted",
               f"{sb['records_per_second_in_window']} ({sb['posted_in_window']} in {sb['window_seconds']} s)",
               f"{ub['records_per_second_in_window']} ({ub['posted_in_window']} in {ub['window_seconds']} s)")  # fmt: skip
    result.notes.append(
        "The baseline column is the same connections alone (no backlog) and the same run without the fair "
        "share (LEDGERBRIDGE_FAIR_SHARE_BATCHES=0: every connection's batches in one queue, first come first served)."
    )
    result.figures = {"alone": alone_figures, "alone_all": alone_all, "shared": dict(shared),
                      "unshared": dict(unshared)}  # fmt: skip
    result.target(
        "newcomers' p99 with the backlog, x alone (worst connection)",
        f"<= {FAIR_SHARE_TARGET:g}x",
        rounded(worst, 1),
        worst <= FAIR_SHARE_TARGET,
        "x",
    )
    keeps = ratio(sb["records_per_second_in_window"], sb["records_per_second_before"])
    result.target(
        "backlog's rate while the newcomers are posted, share of its rate before",
        f">= {BACKLOG_KEEPS:g}",
        rounded(keeps, 2),
        None if keeps is None else keeps >= BACKLOG_KEEPS,
    )


# -- scenario: scale out --------------------------------------------------------------------------

# API-latency bound: slow vendors, the fleet's CPU mostly waiting; the licence limits are set so
# that they bind only as the fleet grows.
SCALE_ZUORA = {"latency_ms": 200}
SCALE_ACUMATICA = {"latency_ms": 2000, "requests_per_minute": 4800, "max_concurrent": 160}
SCALE_WORKERS = (2, 4, 6)
# Each process's ledger connections at most (LEDGERBRIDGE_DATABASE_POOL_SIZE): 6 workers of 4
# processes at the default 10 could ask for 240, over a default PostgreSQL server's 100.
SCALE_POOL_SIZE = 3
CONNECTION_SAMPLE_SECONDS = 0.5


class ConnectionSampler:
    """Samples the ledger's connections (``pg_stat_activity``) by the process that opened them
    (each names itself: ``shared.ledger.db.application_name``), keeping each one's peak and the
    peak total."""

    def __init__(self, server_url: str, database: str) -> None:
        self.server_url = server_url
        self.database = database
        self.per_process: dict[str, int] = {}
        self.total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-connections", daemon=True)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(self.server_url, isolation_level="AUTOCOMMIT", pool_size=1)
        query = sa.text(
            "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = :db GROUP BY 1"
        )
        try:
            with engine.connect() as conn:
                while not self._stop.is_set():
                    counts = {str(a): int(n) for a, n in conn.execute(query, {"db": self.database})}
                    ours = {a: n for a, n in counts.items() if a.startswith("ledgerbridge pid ")}
                    for name, n in ours.items():
                        self.per_process[name] = max(self.per_process.get(name, 0), n)
                    self.total = max(self.total, sum(ours.values()))
                    self._stop.wait(CONNECTION_SAMPLE_SECONDS)
        finally:
            engine.dispose()

    def figures(self) -> dict[str, Any]:
        peaks = sorted(self.per_process.values())
        return {
            "processes": len(peaks),
            "peak_per_process_max": peaks[-1] if peaks else 0,
            "peak_per_process_p50": percentile([float(p) for p in peaks], 0.5),
            "peak_total": self.total,
        }


def _max_connections(server_url: str) -> int:
    import sqlalchemy as sa

    engine = sa.create_engine(server_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SHOW max_connections")).scalar_one())
    finally:
        engine.dispose()


def scenario_scale_out(bench: Bench) -> ScenarioResult:
    if bench.database == "sqlite":
        raise BenchError(
            "scale_out shares one PostgreSQL ledger between process groups: run it without --database sqlite"
        )
    import sqlalchemy as sa

    plan = bench.plan
    sizes = tenant_sizes(plan.scale_out_documents, large_invoices=1)
    licence = SCALE_ACUMATICA
    result = ScenarioResult(
        "scale_out",
        f"{record_count(sizes):,} records synced by {', '.join(map(str, SCALE_WORKERS))} worker processes, each "
        "started as on a machine of its own (own process group and environment), sharing Redis and the "
        f"PostgreSQL ledger; Zuora {SCALE_ZUORA['latency_ms']} ms, Acumatica {licence['latency_ms']} ms per call, "
        f"licence {licence['requests_per_minute']} requests/min and {licence['max_concurrent']} at once; "
        f"at most {SCALE_POOL_SIZE} ledger connections per process (LEDGERBRIDGE_DATABASE_POOL_SIZE)",
    )
    points: list[dict[str, Any]] = []
    with bench.sandboxes("scale-out") as sb:
        for workers in SCALE_WORKERS:
            bench.say(f"scale_out: {workers} worker processes on {record_count(sizes):,} records")
            sb.prepare(sizes, zuora_config=SCALE_ZUORA, acumatica_config=licence)
            env = {
                "LEDGERBRIDGE_DATABASE_POOL_SIZE": str(SCALE_POOL_SIZE),
                "LEDGERBRIDGE_ACUMATICA_REQUESTS_PER_MINUTE": str(licence["requests_per_minute"]),
                "LEDGERBRIDGE_ACUMATICA_MAX_CONCURRENT": str(licence["max_concurrent"]),
            }
            with bench.fleet(sb, f"scale-{workers}", env=env) as fleet:
                fleet.start_workers(count=workers, separate=True)
                sb.reset_counters()
                name = str(sa.make_url(fleet.database_url).database)
                with ConnectionSampler(bench.database, name) as connections:
                    code, seconds, sampler = fleet.cli_monitored(sb, "sync", "--wait", "--timeout", "7200",
                                                                 timeout=7300)  # fmt: skip
                z, a = sb.counters()
                counts = ledger_counts(fleet)
            checked = check_item_sync(sb)
            result.check(f"{workers} workers: `sync --wait` exit code", code == 0, code)
            result.check(f"{workers} workers: every document once in the ERP and marked",
                         checked["ok"], checked["problems"])  # fmt: skip
            marked = states_total(counts, "marked")
            erp = erp_figures(a)
            points.append({
                "workers": workers,
                "pool_processes": workers * bench.tuning.concurrency,
                "records": marked,
                "seconds": round(seconds, 1),
                "records_per_second": rounded(ratio(marked, seconds), 1),
                "erp_max_per_sliding_minute": erp["max_per_sliding_minute"],
                "erp_max_concurrent_observed": erp["max_concurrent_observed"],
                "erp_429": erp["status_429"],
                "zuora_429": status_count(z, 429),
                "zuora_calls_per_record": rounded(ratio(zuora_calls(z)["total"], marked), 4),
                "ledger_connections": connections.figures(),
                "cpu": {k: round(v, 1) for k, v in sampler.cpu_seconds.items()},
            })  # fmt: skip
    first = points[0]["records_per_second"]
    for p in points:
        lc = p["ledger_connections"]
        result.row(f"{p['workers']} workers ({p['pool_processes']} pool processes): records/s",
                   f"{p['records_per_second']} ({rounded(ratio(p['records_per_second'], first), 2)}x)",
                   f"{p['records']:,} in {p['seconds']} s")  # fmt: skip
        result.row("  Acumatica: max in a sliding minute / at once; 429s (ERP / Zuora)",
                   f"{p['erp_max_per_sliding_minute']} / {p['erp_max_concurrent_observed']}; "
                   f"{p['erp_429']} / {p['zuora_429']}", f"licence {licence['requests_per_minute']} / "
                   f"{licence['max_concurrent']}")  # fmt: skip
        result.row("  ledger connections: peak per process (max) / peak total",
                   f"{lc['peak_per_process_max']} / {lc['peak_total']}", f"{lc['processes']} processes")  # fmt: skip
        result.check(f"{p['workers']} workers: never over the licence",
                     p["erp_max_per_sliding_minute"] <= licence["requests_per_minute"]
                     and p["erp_max_concurrent_observed"] <= licence["max_concurrent"], p)  # fmt: skip
    server = _max_connections(bench.database)
    for p in points:
        result.check(f"{p['workers']} workers: ledger connections within the server's max_connections ({server})",
                     p["ledger_connections"]["peak_total"] < server, p["ledger_connections"])  # fmt: skip
    result.figures = {"points": points, "licence": dict(licence), "zuora": dict(SCALE_ZUORA),
                      "pool_size": SCALE_POOL_SIZE, "max_connections": server}  # fmt: skip
    return result
