"""ledgerbridge's own metrics, in the Prometheus text format (``GET /metrics`` of the web app).

Two sources:

* **The ledger** (the truth, read at scrape time): records by connection, object type and state;
  per stream the high-water mark and the ``missed_by_mark`` / ``missed_by_push`` counters; the
  open close runs with their step.
* **Redis counters** of the HTTP exchanges every process makes: calls per (connection, API,
  status class), 429s per (connection, API), and token requests (Zuora OAuth, Acumatica sign-ins)
  per (connection, API). They are counted by the audit hook that ``shared/ports.py`` gives the API
  clients (:class:`~shared.audit_writer.AuditWriter`, one pipeline per batch of exchanges), so the
  clients themselves know nothing about metrics. Each
  connection's counters are one Redis hash, ``ledgerbridge:{connection}:metrics:api``.

Redis keeps nothing on disk here (ARCHITECTURE.md), so the API counters restart from zero after
a Redis flush or restart; Prometheus treats a counter that goes down as a reset, so ``rate()`` and
``increase()`` stay right. The ledger's series never reset.

Metric names (every series carries ``connection``):

=========================================================  =========================================
``ledgerbridge_records{object_type,state}``                gauge: ledger rows (every state, 0 too)
``ledgerbridge_missed_by_mark_total{stream}``              counter: records the marks missed
``ledgerbridge_missed_by_push_total{stream}``              counter: records the callouts missed
``ledgerbridge_stream_mark_timestamp_seconds{stream}``     gauge: the stream's high-water mark
``ledgerbridge_close_run_open{period,step,status,kind}``   gauge: 1 per open close run
``ledgerbridge_api_calls_total{api,status_class}``         counter: HTTP attempts (2xx..5xx, error)
``ledgerbridge_api_rate_limited_total{api}``               counter: answers with status 429
``ledgerbridge_token_requests_total{api}``                 counter: token requests and sign-ins
=========================================================  =========================================
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from redis.exceptions import RedisError
from sqlmodel import col, func, select

from shared.exchange import Exchange
from shared.ledger.models import (
    OPEN_CLOSE_STATUSES,
    CloseRun,
    ConnectionRow,
    ObjectType,
    StreamMark,
    SyncRecord,
)
from shared.ledger.repo import Ledger
from shared.ledger.states import STATES

log = logging.getLogger("ledgerbridge.metrics")

# The classic text format every Prometheus version reads (our names and labels are plain ASCII,
# so what generate_latest writes is exactly that format).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The token endpoints (zuora-api.md section 1.1; acumatica-api.md sections 2.1 and 2.2).
TOKEN_PATHS: dict[str, tuple[str, ...]] = {
    "zuora": ("/oauth/token",),
    "acumatica": ("/entity/auth/login", "/identity/connect/token"),
}
RATE_LIMITED = 429
NO_RESPONSE = "error"  # no HTTP answer at all: a timeout or a dropped connection


# -- counting HTTP exchanges in Redis -------------------------------------------------------------


def counters_key(connection: str) -> str:
    """The Redis hash holding a connection's API counters."""
    return f"ledgerbridge:{connection}:metrics:api"


def status_class(status: int | None) -> str:
    """``"2xx"`` .. ``"5xx"`` for an HTTP status, ``"error"`` when there was no answer."""
    if status is None:
        return NO_RESPONSE
    return f"{status // 100}xx"


def is_token_request(api: str, url: str) -> bool:
    """Whether the exchange asked for a token (or an Acumatica session): a sign-in."""
    path = urlsplit(url).path.rstrip("/")
    return any(path.endswith(suffix) for suffix in TOKEN_PATHS.get(api, ()))


def _fields(exchange: Exchange) -> list[str]:
    fields = [f"calls|{exchange.api}|{status_class(exchange.status)}"]
    if exchange.status == RATE_LIMITED:
        fields.append(f"rate_limited|{exchange.api}")
    if is_token_request(exchange.api, exchange.url):
        fields.append(f"tokens|{exchange.api}")
    return fields


def count_exchanges(redis: Any, exchanges: Iterable[Exchange]) -> None:
    """Add these HTTP exchanges to their connections' counters, in one pipeline. Never raises: a
    metric lost to a Redis outage must not turn an API call that happened into a failure."""
    counted = list(exchanges)
    totals: Counter[tuple[str, str]] = Counter(
        (exchange.connection, name) for exchange in counted for name in _fields(exchange)
    )
    if not totals:
        return
    try:
        pipe = redis.pipeline(transaction=False)
        for (connection, name), n in sorted(totals.items()):
            pipe.hincrby(counters_key(connection), name, n)
        pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("could not count %d API call(s) in Redis: %s", len(counted), exc)


@dataclass(frozen=True)
class ApiCounts:
    """A connection's API counters as read from Redis."""

    calls: dict[tuple[str, str], int] = field(default_factory=dict)  # (api, status class) -> n
    rate_limited: dict[str, int] = field(default_factory=dict)  # api -> n
    tokens: dict[str, int] = field(default_factory=dict)  # api -> n


def read_api_counts(redis: Any, connection: str) -> ApiCounts:
    """The connection's counters (empty when nothing was counted yet)."""
    raw = redis.hgetall(counters_key(connection)) or {}
    counts = ApiCounts()
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        number = int(value)
        parts = name.split("|")
        if parts[0] == "calls" and len(parts) == 3:
            counts.calls[(parts[1], parts[2])] = number
        elif parts[0] == "rate_limited" and len(parts) == 2:
            counts.rate_limited[parts[1]] = number
        elif parts[0] == "tokens" and len(parts) == 2:
            counts.tokens[parts[1]] = number
    return counts


# -- reading the ledger ---------------------------------------------------------------------------


def known_connections(ledger: Ledger, also: Iterable[str] = ()) -> list[str]:
    """Every connection the ledger knows (stored, or with records or marks), plus ``also``."""
    names = set(also)
    with ledger.reading() as session:
        names.update(session.exec(select(ConnectionRow.name)).all())
        names.update(session.exec(select(StreamMark.connection).distinct()).all())
        names.update(session.exec(select(SyncRecord.connection).distinct()).all())
    return sorted(n for n in names if n)


def open_close_runs(ledger: Ledger, connection: str) -> list[CloseRun]:
    """The connection's close runs that are not finished (running or needing attention), oldest
    first: a re-enqueued close resumes each at its ``step``."""
    with ledger.reading() as session:
        query = (
            select(CloseRun)
            .where(CloseRun.connection == connection, col(CloseRun.status).in_(OPEN_CLOSE_STATUSES))
            .order_by(col(CloseRun.id))
        )
        return list(session.exec(query).all())


def _record_counts(ledger: Ledger, connections: Sequence[str]) -> dict[tuple[str, str, str], int]:
    with ledger.reading() as session:
        query = (
            select(SyncRecord.connection, SyncRecord.object_type, SyncRecord.state, func.count())
            .where(col(SyncRecord.connection).in_(list(connections)))
            .group_by(col(SyncRecord.connection), col(SyncRecord.object_type), col(SyncRecord.state))
        )
        return {(c, t, s): int(n) for c, t, s, n in session.exec(query).all()}


def _streams(ledger: Ledger, connections: Sequence[str]) -> list[StreamMark]:
    with ledger.reading() as session:
        query = (
            select(StreamMark)
            .where(col(StreamMark.connection).in_(list(connections)))
            .order_by(col(StreamMark.connection), col(StreamMark.stream))
        )
        return list(session.exec(query).all())


def _open_runs(ledger: Ledger, connections: Sequence[str]) -> list[CloseRun]:
    with ledger.reading() as session:
        query = (
            select(CloseRun)
            .where(
                col(CloseRun.connection).in_(list(connections)),
                col(CloseRun.status).in_(OPEN_CLOSE_STATUSES),
            )
            .order_by(col(CloseRun.id))
        )
        return list(session.exec(query).all())


# -- the snapshot and its exposition --------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Everything one scrape reports."""

    connections: list[str]
    records: dict[tuple[str, str, str], int]  # (connection, object type, state) -> rows
    streams: list[StreamMark]
    close_runs: list[CloseRun]
    api: dict[str, ApiCounts]  # connection -> counters (absent when Redis could not be read)


def collect(ledger: Ledger, redis: Any | None, *, also: Iterable[str] = ()) -> Snapshot:
    """Read every metric for every known connection (see :func:`known_connections`). A Redis
    that cannot be read leaves the API counters out (logged) rather than failing the scrape."""
    connections = known_connections(ledger, also)
    api: dict[str, ApiCounts] = {}
    if redis is not None:
        try:
            for name in connections:
                api[name] = read_api_counts(redis, name)
        except (RedisError, OSError) as exc:
            log.warning("could not read the API counters from Redis: %s", exc)
            api = {}
    if not connections:
        return Snapshot([], {}, [], [], api)
    return Snapshot(
        connections=connections,
        records=_record_counts(ledger, connections),
        streams=_streams(ledger, connections),
        close_runs=_open_runs(ledger, connections),
        api=api,
    )


def _timestamp(value: datetime) -> float:
    return value.timestamp()


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        records = GaugeMetricFamily(
            "ledgerbridge_records",
            "Ledger rows by connection, object type and state.",
            labels=["connection", "object_type", "state"],
        )
        for connection in snap.connections:
            for object_type in ObjectType:
                for state in STATES:
                    n = snap.records.get((connection, object_type.value, state), 0)
                    records.add_metric([connection, object_type.value, state], n)
        yield records

        by_mark = CounterMetricFamily(
            "ledgerbridge_missed_by_mark",
            "Records a stream's high-water mark missed, found later by the mark audit (should stay 0).",
            labels=["connection", "stream"],
        )
        by_push = CounterMetricFamily(
            "ledgerbridge_missed_by_push",
            "Records whose callout never came, found later by a pull.",
            labels=["connection", "stream"],
        )
        marks = GaugeMetricFamily(
            "ledgerbridge_stream_mark_timestamp_seconds",
            "A stream's high-water mark (Unix time): everything Zuora updated before it is in the ledger.",
            labels=["connection", "stream"],
        )
        for row in snap.streams:
            by_mark.add_metric([row.connection, row.stream], row.missed_by_mark)
            by_push.add_metric([row.connection, row.stream], row.missed_by_push)
            if row.mark is not None:
                marks.add_metric([row.connection, row.stream], _timestamp(row.mark))
        yield by_mark
        yield by_push
        yield marks

        runs = GaugeMetricFamily(
            "ledgerbridge_close_run_open",
            "1 per close run that is not finished, with the step it is at.",
            labels=["connection", "period", "step", "status", "kind"],
        )
        for run in snap.close_runs:
            kind = "dry_run" if run.dry_run else "close"
            runs.add_metric([run.connection, run.period_name, run.step, run.status, kind], 1)
        yield runs

        calls = CounterMetricFamily(
            "ledgerbridge_api_calls",
            "HTTP attempts to Zuora and the ERP by status class (error: no answer).",
            labels=["connection", "api", "status_class"],
        )
        limited = CounterMetricFamily(
            "ledgerbridge_api_rate_limited",
            "HTTP answers with status 429.",
            labels=["connection", "api"],
        )
        tokens = CounterMetricFamily(
            "ledgerbridge_token_requests",
            "OAuth token requests and ERP sign-ins.",
            labels=["connection", "api"],
        )
        for connection, counts in sorted(snap.api.items()):
            for (api, klass), n in sorted(counts.calls.items()):
                calls.add_metric([connection, api, klass], n)
            for api, n in sorted(counts.rate_limited.items()):
                limited.add_metric([connection, api], n)
            for api, n in sorted(counts.tokens.items()):
                tokens.add_metric([connection, api], n)
        yield calls
        yield limited
        yield tokens


def render(snapshot: Snapshot) -> bytes:
    """The snapshot in the Prometheus text exposition format (version 0.0.4)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)


def exposition(ledger: Ledger, redis: Any | None, *, also: Iterable[str] = ()) -> bytes:
    """:func:`collect` then :func:`render`."""
    return render(collect(ledger, redis, also=also))


__all__ = [
    "CONTENT_TYPE",
    "ApiCounts",
    "Snapshot",
    "collect",
    "count_exchanges",
    "counters_key",
    "exposition",
    "is_token_request",
    "known_connections",
    "open_close_runs",
    "read_api_counts",
    "render",
    "status_class",
]


def lag_seconds(mark: datetime | None, now: datetime) -> float | None:
    """How far a stream's mark is behind ``now`` (None before its first mark). The mark stays at
    least the pull overlap behind the last run's start, so a healthy stream lags by about the
    overlap plus the pull interval."""
    return None if mark is None else round(max(0.0, (now - mark).total_seconds()), 3)


def format_lag(seconds: float | None) -> str:
    """A lag as people read it (``status`` and the console): 45s, 12m, 3h05m, 2d; ``-`` before a
    mark."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 120:
        return f"{whole}s"
    if whole < 2 * 3600:
        return f"{whole // 60}m"
    if whole < 2 * 86400:
        return f"{whole // 3600}h{(whole % 3600) // 60:02d}m"
    return f"{whole // 86400}d"
