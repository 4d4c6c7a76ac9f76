"""Pulling a stream: Object Query pages behind a gap-proof high-water mark.

The loop (singer-sdk's incremental sync, at least once):

1. **Signpost.** The run starts at ``run_started``; the mark may never move past
   ``run_started - overlap`` (the *ceiling*): a record Zuora stamped before we looked but committed
   after (a late commit) is still inside the next run's window.
2. **Window.** Read ``updateddate.GE:(mark - overlap)`` - greater-or-*equal*, not greater
   (zuora-api.md section 9.5: ties at one second would be skipped) - sorted ``updateddate.ASC``,
   ``pageSize=99``, following each ``nextPage`` cursor verbatim.
3. **Page.** Complete item lists the expansion may have cut at the page size (section 9.3) and
   fetch the accounts the page's documents belong to that the ledger has never seen (one query
   per page, ``id.IN:[...]``), then upsert every row into the ledger in *one* transaction,
   de-duplicating on (id, updatedDate). Known rows never change state: a re-pull of a posted or
   marked record (marking bumps updatedDate) posts nothing.
4. **Then** dispatch the new rows for posting and move the mark to the page's last updatedDate
   (capped at the ceiling). A crash between the commit and the mark re-reads the page; a crash
   before the commit loses nothing either, because the mark did not move.
5. A complete run moves the mark to the ceiling: everything visible up to it is in the ledger.

So a record is caught when it shares its second with others across a page boundary (the cursor
is a keyset on (updatedDate, id), and the next window starts before the mark), commits late
inside the overlap, or is updated mid-run: a run reads only what was stamped before it started
(``updateddate.LE:<run_started>``), so the records it marks while it reads do not come round
again within it, and the next window, which starts below the ceiling, reads what changed.
Whatever the skew between our clock and Zuora's, nothing falls between runs: the mark never
passes the ceiling, which is below the bound. What slips through anyway - a commit later than the overlap - is counted by the mark
audit in :mod:`.sweep` (``missed_by_mark``, a metric that should stay 0).

A run reads at most ``max_pages`` pages and then returns a :class:`Resume` (the cursor and the
window), so a backfill of millions of records is a chain of bounded tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.item_level.context import ItemContext, ceiling
from shared.item_level.queries import known_zuora_ids, records_by_zuora_ids
from shared.item_level.streams import ACCOUNTS, Stream, content_digest
from shared.ledger.errors import TransitionConflict
from shared.ledger.models import RecordSource
from shared.ledger.states import FAILED, PARKED, PENDING, Pulled, upsert_pulled_page
from shared.logs import log_context
from shared.memory import release_free_heap
from shared.zuora.object_query import MAX_PAGE_SIZE
from shared.zuora.records import get_field, parse_datetime

log = logging.getLogger("ledgerbridge.item_level.pull")

Row = dict[str, Any]
UPSERT_ATTEMPTS = 3
# A row in one of these states may still be posted from its payload: complete its items.
_UNPOSTED = frozenset({PENDING, FAILED, PARKED})


class LockLost(Exception):
    """The stream's lock expired or was taken over (a flushed Redis): stop; the next run resumes
    from the mark."""


@dataclass(frozen=True)
class Resume:
    """Where a run that stopped at ``max_pages`` continues: the same window (``window_start``,
    ISO-8601 or None for "from the beginning"), the next cursor and the original signpost."""

    cursor: str
    run_started: str
    window_start: str | None = None
    backfill: bool = False
    advance: bool = True

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "run_started": self.run_started,
            "window_start": self.window_start,
            "backfill": self.backfill,
            "advance": self.advance,
        }


@dataclass(frozen=True)
class PageProgress:
    stream: str
    pages: int
    rows: int
    new: int
    last_updated: datetime | None
    window_start: datetime | None
    run_started: datetime


@dataclass
class Ingested:
    """What one ingest did: ledger ids of the rows that are new (to post), and how many of the
    stream's own new rows Zuora would have pushed."""

    rows: int = 0
    new_ids: list[int] = field(default_factory=list)
    record_ids: dict[str, int] = field(default_factory=dict)  # own rows: zuora id -> ledger id
    new_pushable: list[datetime | None] = field(default_factory=list)
    dependencies: int = 0


@dataclass
class PullResult:
    stream: str
    pages: int = 0
    rows: int = 0
    new: int = 0
    missed_by_push: int = 0
    mark: datetime | None = None
    resume: Resume | None = None
    stopped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "pages": self.pages,
            "rows": self.rows,
            "new": self.new,
            "missed_by_push": self.missed_by_push,
            "mark": self.mark.isoformat() if self.mark else None,
            "resume": self.resume.as_kwargs() if self.resume else None,
            "stopped": self.stopped,
        }


def updated_of(row: Mapping[str, Any]) -> datetime | None:
    """A row's ``updatedDate`` as an aware UTC datetime (Object Query sends the tenant offset)."""
    value = get_field(row, "updatedDate")
    if not isinstance(value, str) or not value.strip():
        return None
    parsed = parse_datetime(value, tz=UTC)
    return parsed.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# -- one page -------------------------------------------------------------------------------------


def complete_items(ctx: ItemContext, stream: Stream, rows: Sequence[Row]) -> int:
    """Replace item lists the expansion may have cut at the page size with the full list, for the
    rows that may still be posted; returns how many parents needed it (one query each)."""
    if stream.items is None:
        return 0
    cut = [r for r in rows if stream.truncated(r, ctx.zuora.objects.max_page_size)]
    if not cut:
        return 0
    known = records_by_zuora_ids(ctx.ledger, ctx.connection, stream.object_type, [str(r["id"]) for r in cut])
    fetched = 0
    for row in cut:
        existing = known.get(str(row["id"]))
        if existing is not None and existing.state not in _UNPOSTED:
            continue  # already posted: nothing will read the items again
        items: list[Row] = []
        for page in ctx.zuora.objects.pages(stream.items_query(str(row["id"]))):
            items.extend(page.data)
        row[stream.items.key] = items
        fetched += 1
    return fetched


def missing_accounts(ctx: ItemContext, stream: Stream, rows: Sequence[Row]) -> list[Row]:
    """The accounts of ``rows`` the ledger has never seen, fetched from Zuora (one query per 99),
    so the documents' customers can be posted before them (an upsert by key: safe to repeat)."""
    if not stream.depends_on_account:
        return []
    wanted = sorted({a for a in (stream.account_of(r) for r in rows) if a})
    if not wanted:
        return []
    unknown = sorted(set(wanted) - known_zuora_ids(ctx.ledger, ctx.connection, ACCOUNTS.object_type, wanted))
    found: list[Row] = []
    for start in range(0, len(unknown), MAX_PAGE_SIZE):
        chunk = unknown[start : start + MAX_PAGE_SIZE]
        for page in ctx.zuora.objects.pages(ACCOUNTS.query_ids(chunk)):
            found.extend(page.data)
    return found


def ingest_rows(
    ctx: ItemContext,
    stream: Stream,
    rows: Sequence[Row],
    *,
    source: str = RecordSource.PULL.value,
) -> Ingested:
    """Put fetched rows (and the accounts they need) into the ledger in one transaction.

    Returns the ledger ids of new rows - accounts first - for the caller to dispatch *after* this
    function returned (the transaction has committed by then)."""
    rows = [dict(r) for r in rows if get_field(r, "id")]
    complete_items(ctx, stream, rows)
    accounts = missing_accounts(ctx, stream, rows)
    result = Ingested(rows=len(rows), dependencies=len(accounts))
    batches: list[tuple[Stream, Sequence[Row], str]] = []
    if accounts:
        batches.append((ACCOUNTS, accounts, RecordSource.PULL.value))
    batches.append((stream, rows, source))
    for attempt in range(1, UPSERT_ATTEMPTS + 1):
        try:
            _upsert_page(ctx, stream, rows, batches, result)
            return result
        except TransitionConflict:
            # Another worker changed one of these rows (posted or marked it) between our read and
            # our write: the whole page rolled back. Read it again; nothing was half-written.
            if attempt == UPSERT_ATTEMPTS:
                raise
            log.info("page of %s changed underneath us; upserting it again", stream.name)
            result.new_ids.clear()
            result.record_ids.clear()
            result.new_pushable.clear()
    return result  # pragma: no cover - the loop returns or raises


def _upsert_page(
    ctx: ItemContext,
    stream: Stream,
    rows: Sequence[Row],
    batches: Sequence[tuple[Stream, Sequence[Row], str]],
    result: Ingested,
) -> None:
    now = ctx.now()
    with ctx.ledger.session() as session:
        for batch_stream, batch_rows, batch_source in batches:
            own = batch_stream is stream and batch_rows is rows
            pulled = [
                Pulled(
                    zuora_id=str(row["id"]),
                    zuora_number=batch_stream.number_of(row),
                    zuora_updated=updated_of(row),
                    payload=row,
                    account_id=batch_stream.account_of(row),
                    digest=content_digest(row),
                )
                for row in batch_rows
            ]
            upserted = upsert_pulled_page(
                session,
                connection=ctx.connection,
                object_type=batch_stream.object_type,
                rows=pulled,
                source=batch_source,
                now=now,
            )
            for row, one, (record_id, is_new) in zip(batch_rows, pulled, upserted, strict=True):
                if own:
                    result.record_ids[one.zuora_id] = record_id
                if is_new:
                    result.new_ids.append(record_id)
                    if own and batch_stream.fires_callout(row):
                        result.new_pushable.append(updated_of(row))


# -- the run --------------------------------------------------------------------------------------


def pull_stream(
    ctx: ItemContext,
    stream: Stream,
    *,
    since: datetime | None = None,
    resume: Resume | None = None,
    heartbeat: Callable[[], bool] | None = None,
    progress: Callable[[PageProgress], None] | None = None,
    max_pages: int | None = None,
) -> PullResult:
    """Pull ``stream`` from its mark (or from ``since``, a backfill; or continue ``resume``).

    ``heartbeat`` is called before each page and returns False when the run's lock is lost (the
    run stops with ``stopped="lock lost"``). The caller holds the stream's lock; see the module
    docstring for the guarantees. Raises the Zuora client's typed errors (the run is recorded as
    failed; the mark keeps what committed pages earned).
    """
    result = PullResult(stream=stream.name)
    with log_context(connection=ctx.connection, stream=stream.name):
        if resume is not None:
            run_started = datetime.fromisoformat(resume.run_started)
            window = _from_iso(resume.window_start)
            cursor: str | None = resume.cursor
            backfill = resume.backfill
            advance = resume.advance
            first_run = False
        else:
            run_started = ctx.now()
            row = ctx.ledger.start_stream_run(ctx.connection, stream.name, now=run_started)
            first_run = row.mark is None
            backfill = since is not None
            window = since if since is not None else (row.mark - ctx.options.overlap if row.mark else None)
            # A mark says "everything up to here is in the ledger". A --since later than the mark
            # leaves a gap behind it, so that run must not move the mark at all. (An earlier
            # --since, or one on a stream without a mark - the sync's horizon - may.)
            advance = not (since is not None and row.mark is not None and since > row.mark)
            cursor = None
        top = ceiling(run_started, ctx.options)
        # Records a pull finds before Zuora's callout reached us are not "missed by the push"
        # unless they are older than the grace; backfills and first runs predate the push.
        count_push = ctx.options.push_enabled and not backfill and not first_run
        push_before = run_started - ctx.options.push_grace
        limit = max_pages or ctx.options.max_pages
        try:
            # Only what was stamped before the run started: a record marked (or changed) while the
            # run reads would come round again at the end of it; the next window reads it once.
            for page in ctx.zuora.objects.pages(stream.query(window, before=run_started), cursor=cursor):
                if heartbeat is not None and not heartbeat():
                    result.stopped = "lock lost"
                    break
                ingested = ingest_rows(ctx, stream, page.data)
                if ingested.new_ids:
                    ctx.dispatch.post(ctx.connection, ingested.new_ids)
                missed = (
                    sum(1 for at in ingested.new_pushable if at is not None and at < push_before)
                    if count_push
                    else 0
                )
                if missed:
                    ctx.ledger.add_missed(ctx.connection, stream.name, by_push=missed)
                result.missed_by_push += missed
                result.pages += 1
                result.rows += ingested.rows
                result.new += len(ingested.new_ids)
                stamps = [u for u in (updated_of(r) for r in page.data) if u is not None]
                last = max(stamps) if stamps else None
                if last is not None and advance:
                    result.mark = ctx.ledger.advance_mark(ctx.connection, stream.name, min(last, top))
                if progress is not None:
                    progress(
                        PageProgress(
                            stream.name, result.pages, result.rows, result.new, last, window, run_started
                        )
                    )
                release_free_heap()  # the page is done with: a long pull stays at one page's memory
                if page.next_cursor and result.pages >= limit:
                    result.resume = Resume(
                        cursor=page.next_cursor,
                        run_started=run_started.isoformat(),
                        window_start=_iso(window),
                        backfill=backfill,
                        advance=advance,
                    )
                    break
        except Exception as exc:
            ctx.ledger.finish_stream_run(
                ctx.connection, stream.name, status="failed", error=str(exc)[:2000], pulled=result.rows
            )
            raise
        complete = result.resume is None and result.stopped is None
        if complete and advance and (window is None or window <= top):
            # Every record visible up to the ceiling is in the ledger now.
            result.mark = ctx.ledger.advance_mark(ctx.connection, stream.name, top)
        status = "ok" if result.stopped is None else "stopped"
        if result.resume is not None:
            status = "continuing"
        ctx.ledger.finish_stream_run(
            ctx.connection, stream.name, status=status, error=result.stopped, pulled=result.rows
        )
        log.info(
            "pulled %s: %d rows, %d new, %d pages, mark %s",
            stream.name,
            result.rows,
            result.new,
            result.pages,
            result.mark.isoformat() if result.mark else None,
        )
    return result


def fetch_by_ids(ctx: ItemContext, stream: Stream, zuora_ids: Sequence[str]) -> dict[str, Row]:
    """``{id: record}`` of the ones Zuora has among ``zuora_ids``, with the stream's expansions,
    whatever their status (the push path): list queries filtered on the ids, a page of ids each,
    so expanded children are cut at 99 as in the pull and ``complete_items`` applies unchanged."""
    unique = list(dict.fromkeys(zuora_ids))
    found: dict[str, Row] = {}
    for start in range(0, len(unique), MAX_PAGE_SIZE):
        chunk = unique[start : start + MAX_PAGE_SIZE]
        wanted = set(chunk)
        for page in ctx.zuora.objects.pages(stream.query_ids(chunk, with_filters=False)):
            for row in page.data:
                zuora_id = str(get_field(row, "id"))
                if zuora_id in wanted:
                    found[zuora_id] = dict(row)
    return found


def ids_of(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    return [str(get_field(r, "id")) for r in rows if get_field(r, "id")]
