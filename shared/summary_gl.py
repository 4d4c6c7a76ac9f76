"""The summary-GL close of one accounting period, as plain step functions over (zuora, erp, ledger).

A close run is a ledger row (:class:`~shared.ledger.models.CloseRun`) whose ``step`` names the
step to run next; each step is idempotent, records what it did in ``details[<step>]`` and returns
a small result:

* :class:`Done` ``(next_step)`` - the step is finished; ``next_step`` (or :data:`FINISHED`) is
  recorded as the run's step before anything else is enqueued;
* :class:`Wait` ``(seconds)`` - not ready yet (a Zuora job is running, a rate limit, a transient
  failure); run the same step again after ``seconds`` (the worker turns this into
  ``self.retry(countdown=...)``, never a sleep);
* :class:`Stop` ``(reason)`` - a person must act: the run becomes ``needs_attention`` with
  ``reason`` as its error, the reason goes to the run's timeline and to the notifier. Running the
  close again reopens the run at the stopped step (``post``/``mark``/``verify`` restart at
  ``check``, which re-validates and un-parks fixed entries).

A finished run is ``done`` (a dry run: ``dry_run``) and its step is :data:`FINISHED`.

The steps (:data:`STEPS`; a dry run follows :data:`DRY_RUN_STEPS`):

1. ``lookup`` - find the period by name with ZOQL (``Dec'16`` is escaped, zuora-api.md section
   5.2) and cache its id. A Closed period goes straight to ``journal_run`` only with
   ``allow_closed``; otherwise the close stops and says so. The mapping file is validated here,
   before anything changes in Zuora.
2. ``trial_balance`` - start a trial balance unless one already completed for the period, and
   poll ``GET /v1/accounting-periods/{id}`` (section 6.2). ``Error`` stops the close with Zuora's
   ``runTrialBalanceErrorMessage``; a stopped run never polls again.
3. ``close_period`` - close the period when Open (or PendingClose) and wait for the trial
   balance the close starts. A dry run leaves the period open.
4. ``journal_run`` - ``POST /v1/journal-runs`` with the configured transaction types and a
   deterministic Idempotency-Key (close run, attempt, period, types), so a retried start never
   makes a second run; poll until ``Completed``; stop on ``Error``, ``CancelInprogress``,
   ``Cancelled`` or ``DeleteInprogress`` (section 7.2).
5. ``fetch`` - every summary journal entry of the run, all pages, each upserted as a
   ``SyncRecord(object_type="journal_entry", zuora_id=<JE number>)`` in ``pending``.
6. ``check`` - debits equal credits (Decimal, exact), every accounting code and the currency are
   in the mapping file. A bad entry is parked with its reasons and the close stops before posting
   anything. A dry run stops here with a preview of what would be posted, then ``discard`` cancels
   its journal run (so the real close books the same transactions) and the run ends ``dry_run``.
7. ``post`` - per entry: ``transferredToAccounting=Processing`` in Zuora (a visible trail),
   ``pending -> posting`` committed, the ERP create, ``posting -> posted(erp_ref)`` committed. A
   row found in ``posting`` without an ERP reference is in doubt: the ERP is asked by natural key
   (the JE number) and the row moves to ``posted`` (found) or back to ``pending`` (not found).
   ``concurrency`` entries are in flight at a time (:func:`step_widths`), each on exactly this
   path. Each entry whose ``posted`` is committed is marked (step 8's path) by the same task
   while it posts the rest, so Zuora's marking overlaps the ERP's posting (``mark_while_posting``).
8. ``mark`` - per entry one ``PUT .../basic-information`` with ``transferredToAccounting=Yes``
   (section 8.4 has no bulk call), then ``posted -> marked``, ``mark_concurrency`` at a time:
   what the post step left unmarked. The entries that may be marked are recorded first (by
   either step), so after a crash each is re-read instead of being marked a second time.
9. ``verify`` - re-read every entry of the run: each must be ``Yes`` in Zuora and have an ERP
   reference in the ledger; any miss stops the close, loudly.
10. ``reconcile`` - per (ERP account, currency), Zuora's debit and credit totals for the run must
    equal the ledger's (what was posted) and the ERP's (read back), to the cent. Only then is the
    run ``done``; otherwise it needs attention with the differing lines.

Exactly once: only one process runs a step of a period's close at a time -
:class:`~shared.coordination.close_lock.CloseLock`, a Redis lock per (connection, period) held by
the *driver* (a token the chain's tasks carry). A task of an older chain finds a foreign token
and drops out; a close started for a period already being closed attaches to the running one; a
lock whose holder process died is taken over. Per entry,
the ledger's ``posting`` state (committed before the ERP call) and the in-doubt lookup make a
crash at any line harmless. :func:`stuck_runs` finds running closes nothing drives any more (for a
sweep that resumes them).

TEST-ONLY fault hook: when the environment variable ``LEDGERBRIDGE_TEST_CRASH_AT`` equals one of
the crash points named in :func:`crash_point` (``before:<step>``, ``after:<step>``,
``trial_balance:started``, ``close_period:closed``, ``journal_run:created``, ``posting:<n>``,
``posted:<n>``, ``marking:<n>``), the process SIGKILLs its whole process group - a worker started
in its own session dies at that exact line, as in a power cut. Never set it anywhere else.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import col, select

from shared.backoff import exponential, full_jitter
from shared.coordination.close_lock import CloseLock, LockLost
from shared.erp.base import ErpTarget, Journal, Totals
from shared.errors import ApiError, AuthFailed, NotFound, RateLimited, Rejected, Transient
from shared.exchange import audit_subject
from shared.ledger import states
from shared.ledger.models import CloseRun, CloseStatus, ObjectType, RecordSource, RecordState, SyncRecord
from shared.ledger.repo import Ledger
from shared.logs import log_context
from shared.mapping import Mapping as GlMapping
from shared.mapping import MappingError, MappingFileError, Unmapped, journal_from_summary_entry, load_mapping
from shared.notify import LogNotifier, Notice, Notifier
from shared.settings import Settings
from shared.zuora.client import ZuoraClient
from shared.zuora.journal import JournalEntry

log = logging.getLogger("ledgerbridge.close")

STEPS: tuple[str, ...] = (
    "lookup",
    "trial_balance",
    "close_period",
    "journal_run",
    "fetch",
    "check",
    "post",
    "mark",
    "verify",
    "reconcile",
)
DRY_RUN_STEPS: tuple[str, ...] = (*STEPS[:6], "discard")
FINISHED = "finished"
ALL_STEPS: tuple[str, ...] = (*STEPS, "discard")

JE = ObjectType.JOURNAL_ENTRY.value
POSTED_STATES = (RecordState.POSTED.value, RecordState.MARKED.value)

# Polling: ~0.5 s first, then 1, 1.5, 2 s, then 15 % of the time already waited but at least
# every POLL_FLOOR seconds (a job of a few seconds is seen within a second of its end; a long real
# Zuora job is read rarely), never more than POLL_CAP seconds apart.
POLL_SCHEDULE = (0.5, 1.0, 1.5, 2.0)
POLL_FLOOR = 1.0
POLL_SHARE = 0.15
MIN_POLL_DELAY = 0.05
POLL_CAP = 30.0
MAX_JOB_WAIT = 12 * 3600.0
# Transient failures (5xx, timeouts): exponential backoff, then a person is asked.
TRANSIENT_BASE = 2.0
TRANSIENT_CAP = 300.0
MAX_TRANSIENT_ATTEMPTS = 30
# A worker busy with another close of the same period: look again after this long.
BUSY_WAIT = 5.0
# A closed period whose first read shows the pre-close trial balance (same end time, never seen
# running) is read once more before that is taken as the close's own (Zuora may register the new
# one a moment late; the sandbox's fast jobs can end within the same second).
STALE_TRIAL_BALANCE_POLLS = 1
# How long one task may keep posting or marking before handing over to a fresh task.
STEP_BUDGET_SECONDS = 240.0
# Entries in flight in one step at most: a step runs in one worker process, and past about 20
# threads its interpreter lock, not the APIs, sets the pace (509 entries took 7.5 s to post at 32
# in flight against 5.6-6.0 s at 20, on 2 cores with Zuora at 50 ms and Acumatica at 100 ms).
MAX_CONCURRENCY = 20
# ``posted`` and ``marked`` are committed for this many entries at a time (see LateTransitions).
LATE_GROUP = 32

# A step renews its lock (and checks it still holds it) at most this often, not once per entry:
# entries are guarded against a second driver by the ledger's versioned transitions anyway.
HEARTBEAT_EVERY = 1.0

CRASH_ENV = "LEDGERBRIDGE_TEST_CRASH_AT"

# After a needs-attention stop at one of these steps, a resumed run starts over at ``check``:
# it re-validates and un-parks fixed entries; posted and marked entries are skipped.
_RESTART_AT_CHECK = frozenset({"post", "mark", "verify"})


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Done:
    """The step finished; the run moves on to ``next_step``."""

    next_step: str
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Wait:
    """Not ready: run the same step again in ``seconds``."""

    seconds: float
    reason: str = ""


@dataclass(frozen=True)
class Stop:
    """A person must act (``status`` needs_attention), or a dry run ended (``status`` dry_run)."""

    reason: str
    event: str = "close.needs_attention"
    status: str = CloseStatus.NEEDS_ATTENTION.value
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stale:
    """This task has nothing to do: another chain drives the run, or the run moved on."""

    reason: str


StepResult = Done | Wait | Stop
DriveResult = Done | Wait | Stop | Stale


class StopClose(Exception):
    """Raised inside a step to stop the close with :attr:`stop`."""

    def __init__(
        self,
        reason: str,
        *,
        event: str = "close.needs_attention",
        fields: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(reason)
        self.stop = Stop(reason, event=event, fields=dict(fields or {}))


# -- the test-only fault hook -----------------------------------------------------------------


def crash_point(point: str) -> None:
    """TEST-ONLY: SIGKILL this process group when ``LEDGERBRIDGE_TEST_CRASH_AT`` is ``point``.

    The integration tests start a worker in its own session with the variable set, to stop it at
    a deterministic line (see the module docstring). Not configuration: never set it in a
    deployment.
    """
    wanted = os.environ.get(CRASH_ENV)
    if wanted and wanted == point:
        log.warning("test fault hook: killing the worker", extra={"crash_point": point})
        os.killpg(os.getpgrp(), signal.SIGKILL)


# -- polling ----------------------------------------------------------------------------------


def poll_delay(polls: int, elapsed: float, *, cap: float = POLL_CAP) -> float:
    """Seconds before the next status read of an asynchronous Zuora job that has been read
    ``polls`` times over ``elapsed`` seconds: 0.5, 1, 1.5, 2, then 15 % of ``elapsed`` (at
    least 1 s), capped at ``cap``. A 10 s job costs 9 reads and is seen under a second late; a
    real tenant's hour-long trial balance is read about once a ``cap``."""
    if polls < len(POLL_SCHEDULE):
        delay = POLL_SCHEDULE[polls]
    else:
        delay = max(POLL_FLOOR, POLL_SHARE * max(elapsed, 0.0))
    return min(cap, delay)


def next_poll_in(polls: int, elapsed: float) -> float:
    """Seconds from now to the next status read, for a job read ``polls`` times and started
    ``elapsed`` seconds ago: the reads keep to :func:`poll_delay`'s schedule counted from the
    job's start, so the time each read and its task take does not add up over the wait. A job
    waited on for longer than the schedule (a worker was down) is read ``poll_delay`` apart."""
    due = poll_delay(0, 0.0)
    for n in range(1, polls + 1):
        due += poll_delay(n, due)
    if due < elapsed:
        return poll_delay(polls, elapsed)
    return max(MIN_POLL_DELAY, due - elapsed)


# -- the context --------------------------------------------------------------------------------


def _noop() -> None:
    return None


def throttled(call: Callable[[], None], every: float, clock: Callable[[], float]) -> Callable[[], None]:
    """``call`` at most once per ``every`` seconds of ``clock`` (the first call always runs); an
    exception leaves the next call due at once."""
    last: list[float] = []

    def run() -> None:
        now = clock()
        if last and now - last[0] < every:
            return
        call()
        last[:] = [now]

    return run


@dataclass
class CloseContext:
    """What the steps work with: the connection's Zuora client, ERP and ledger, the settings
    (mapping file, transaction types), a notifier, a clock, and the lock heartbeat."""

    connection: str
    zuora: ZuoraClient
    erp: ErpTarget
    ledger: Ledger
    settings: Settings
    notifier: Notifier = field(default_factory=LogNotifier)
    erp_name: str = "the ERP"
    clock: Callable[[], float] = time.time
    heartbeat: Callable[[], None] = _noop
    crash: Callable[[str], None] = crash_point
    step_budget: float = STEP_BUDGET_SECONDS
    # Entries posted at a time, and entries marked at a time (None: as many as posted); see
    # :func:`step_widths` for how a connection's limits give them.
    concurrency: int = 1
    mark_concurrency: int | None = None
    # The post step marks each entry it posts as soon as the entry is ``posted`` (False: the
    # mark step marks them all).
    mark_while_posting: bool = True
    _mapping: GlMapping | None = None

    @property
    def mark_width(self) -> int:
        """Entries marked at a time."""
        return self.concurrency if self.mark_concurrency is None else self.mark_concurrency

    def mapping(self) -> GlMapping:
        """The mapping file, read once per context; a missing or invalid file stops the close."""
        if self._mapping is None:
            path = self.settings.mapping_file
            if path is None:
                raise StopClose(
                    "LEDGERBRIDGE_MAPPING_FILE is not set: the close needs the mapping file to turn Zuora "
                    "accounting codes into ERP accounts. Set it, then run the close again."
                )
            try:
                self._mapping = load_mapping(path)
            except MappingFileError as exc:
                raise StopClose(f"{exc}. Fix the mapping file, then run the close again.") from None
        return self._mapping

    def transaction_types(self) -> tuple[str, ...]:
        """The mapping file's ``[journal] transaction_types``, else
        ``LEDGERBRIDGE_JOURNAL_TRANSACTION_TYPES``, else Zuora's Invoice Settlement list."""
        return tuple(self.mapping().transaction_types or self.settings.transaction_types)


# -- small helpers ----------------------------------------------------------------------------


def cli_arg(text: str) -> str:
    """``text`` quoted for a shell command line in a message (``"Dec'16"``)."""
    return json.dumps(text, ensure_ascii=False)


def _rerun(run: CloseRun, *, allow_closed: bool = False) -> str:
    """The command that runs this close again (the same kind, the same flags)."""
    flags = " --allow-closed" if allow_closed or _allow_closed(run) else ""
    flags += " --dry-run" if run.dry_run else ""
    return f"ledgerbridge close {cli_arg(run.period_name)}{flags}"


def _allow_closed(run: CloseRun) -> bool:
    return bool(run.allow_closed or run.details.get("allow_closed"))


def _state(run: CloseRun, step: str) -> dict[str, Any]:
    value = run.details.get(step)
    return dict(value) if isinstance(value, Mapping) else {}


def _save(ctx: CloseContext, run: CloseRun, step: str, **changes: Any) -> CloseRun:
    """Merge ``changes`` into ``details[step]`` and commit (only the lock holder writes)."""
    merged = {**_state(run, step), **changes}
    return ctx.ledger.update_close_run(run.id or 0, details_update={step: merged})


def _period_id(run: CloseRun) -> str:
    if not run.period_id:
        raise StopClose(f"close run {run.id} has no accounting period id; run the close again from the start")
    return run.period_id


def _numbers(run: CloseRun) -> list[str]:
    return [str(n) for n in _state(run, "fetch").get("numbers", [])]


def _skipped(run: CloseRun) -> dict[str, str]:
    return {str(k): str(v) for k, v in _state(run, "check").get("skipped", {}).items()}


def _to_post(run: CloseRun) -> list[str]:
    skipped = _skipped(run)
    return [n for n in _numbers(run) if n not in skipped]


def _rows(ledger: Ledger, connection: str, numbers: Sequence[str]) -> dict[str, SyncRecord]:
    """The ledger rows of these journal entries, by JE number (one query)."""
    if not numbers:
        return {}
    with ledger.session() as session:
        found = session.exec(
            select(SyncRecord).where(
                SyncRecord.connection == connection,
                SyncRecord.object_type == JE,
                col(SyncRecord.zuora_id).in_(list(numbers)),
            )
        ).all()
        return {row.zuora_id: row for row in found}


def _row(ctx: CloseContext, number: str, rows: Mapping[str, SyncRecord] | None = None) -> SyncRecord:
    """The entry's ledger row: from ``rows`` (read by the step in one query) when given, else read
    now. A stale row is safe: every transition checks the row's version."""
    row = rows.get(number) if rows is not None else ctx.ledger.get_record(ctx.connection, JE, number)
    if row is None:
        raise StopClose(f"journal entry {number} is not in the ledger; run the close again to re-fetch it")
    return row


def _wait_for_job(ctx: CloseContext, run: CloseRun, step: str, what: str) -> Wait:
    """Count one status read of the step's asynchronous job and say when to read again."""
    st = _state(run, step)
    now = ctx.clock()
    started = float(st.get("job_started_at") or now)
    polls = int(st.get("polls", 0)) + 1
    elapsed = now - started
    if elapsed > MAX_JOB_WAIT:
        raise StopClose(
            f"{what} has not finished after {elapsed / 3600:.1f} hours; look at it in Zuora, then run "
            f"`{_rerun(run)}` again"
        )
    _save(ctx, run, step, polls=polls, job_started_at=started, seen_running=True)
    return Wait(next_poll_in(polls, elapsed), f"waiting for {what}")


def _started(ctx: CloseContext, run: CloseRun, step: str) -> Wait:
    """The step just started its job: the first read comes after the first schedule delay."""
    return Wait(poll_delay(0, 0.0), "job started")


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def journal_payload(journal: Journal) -> dict[str, Any]:
    """The journal as stored in ``SyncRecord.posted_payload`` (exact Decimals): what was sent."""
    return {
        "natural_key": journal.natural_key,
        "date": journal.date.isoformat(),
        "post_period": journal.period,
        "currency": journal.currency,
        "ledger": journal.ledger,
        "branch": journal.branch,
        "description": journal.description,
        "lines": [
            {
                "account": line.account,
                "subaccount": line.subaccount,
                "debit": line.debit,
                "credit": line.credit,
                "description": line.description,
            }
            for line in journal.lines
        ],
    }


TotalsKey = tuple[str, str]


def entry_totals(payload: Mapping[str, Any], mapping: GlMapping) -> dict[TotalsKey, Totals]:
    """Debit/credit per (ERP account, ERP currency) of one Zuora entry, mapped like the journal
    that is posted (a negative amount counts on the other side). An unmapped code or currency is
    kept under ``"unmapped <name>"`` so it shows up as a difference instead of vanishing."""
    entry = JournalEntry.from_json(payload)
    try:
        currency = mapping.currency(entry.currency or "")
    except Unmapped:
        currency = f"unmapped {entry.currency}"
    totals: dict[TotalsKey, Totals] = {}
    for item in entry.items:
        code = item.accounting_code_name or ""
        try:
            account = mapping.account(code).account
        except Unmapped:
            account = f"unmapped {code}"
        debit_side = (item.type == "Debit") == (item.amount >= 0)
        amount = abs(item.amount)
        line = Totals(amount, Decimal(0)) if debit_side else Totals(Decimal(0), amount)
        totals[(account, currency)] = totals.get((account, currency), Totals()) + line
    return totals


def _add(into: dict[TotalsKey, Totals], more: Mapping[TotalsKey, Totals]) -> None:
    for key, value in more.items():
        into[key] = into.get(key, Totals()) + value


def totals_to_json(totals: Mapping[TotalsKey, Totals]) -> list[dict[str, Any]]:
    return [
        {"account": account, "currency": currency, "debit": t.debit, "credit": t.credit}
        for (account, currency), t in sorted(totals.items())
    ]


def totals_from_json(rows: Iterable[Mapping[str, Any]]) -> dict[TotalsKey, Totals]:
    return {
        (str(r["account"]), str(r["currency"])): Totals(Decimal(str(r["debit"])), Decimal(str(r["credit"])))
        for r in rows
    }


def check_entry(entry: JournalEntry, mapping: GlMapping) -> list[str]:
    """Every reason the entry cannot be posted (empty: it can): out of balance (exact Decimal
    comparison, in the transaction and - when given - the home currency), an unmapped accounting
    code or currency, an item that is neither Debit nor Credit, no items."""
    reasons: list[str] = []
    if not entry.items:
        reasons.append("it has no journal entry items")
    for item in entry.items:
        if item.type not in ("Debit", "Credit"):
            reasons.append(f"an item on {item.accounting_code_name!r} is {item.type!r}, not Debit or Credit")
    debit, credit = entry.totals()
    currency = entry.currency or "?"
    if debit != credit:
        reasons.append(
            f"out of balance: debits {debit} {currency} != credits {credit} {currency} "
            f"(difference {debit - credit})"
        )
    homes = [i.home_currency_amount for i in entry.items]
    if entry.items and all(h is not None for h in homes):
        home_debit = sum(
            (i.home_currency_amount or Decimal(0) for i in entry.items if i.type == "Debit"), Decimal(0)
        )
        home_credit = sum(
            (i.home_currency_amount or Decimal(0) for i in entry.items if i.type == "Credit"), Decimal(0)
        )
        if home_debit != home_credit:
            home = entry.home_currency or "home currency"
            reasons.append(
                f"out of balance in {home}: debits {home_debit} != credits {home_credit} "
                f"(difference {home_debit - home_credit})"
            )
    codes = sorted({item.accounting_code_name or "" for item in entry.items})
    for code in codes:
        try:
            mapping.account(code)
        except Unmapped as exc:
            reasons.append(str(exc))
    try:
        mapping.currency(entry.currency or "")
    except Unmapped as exc:
        reasons.append(str(exc))
    return reasons


# -- the steps --------------------------------------------------------------------------------


def step_lookup(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 1: find the period by name (ZOQL), cache its id; Closed needs ``allow_closed``."""
    ctx.mapping()  # a broken mapping file stops the close before anything changes in Zuora
    period = ctx.zuora.periods.find_by_name(run.period_name)
    if period is None:
        raise StopClose(
            f"there is no accounting period named {cli_arg(run.period_name)} in Zuora; check the name "
            "(it must match exactly, including case and apostrophes)"
        )
    details = {
        "period_id": period.id,
        "status": period.status,
        "start_date": period.start_date.isoformat() if period.start_date else None,
        "end_date": period.end_date.isoformat() if period.end_date else None,
    }
    ctx.ledger.update_close_run(run.id or 0, period_id=period.id)
    if period.status == "Closed":
        if not _allow_closed(run):
            raise StopClose(
                f"accounting period {cli_arg(run.period_name)} is already Closed in Zuora, so there is no "
                "trial balance to run and nothing to close. To run the journal run and post its entries "
                f"anyway, run `{_rerun(run, allow_closed=True)}`"
            )
        return Done("journal_run", {**details, "skipped": "period already Closed (--allow-closed)"})
    return Done("trial_balance", details)


def _trial_balance_error(run: CloseRun, message: str | None, *, after_close: bool) -> StopClose:
    text = message or "(Zuora gave no message)"
    if after_close:
        advice = (
            "The period is Closed; reopen it in Zuora, fix the cause (for example import the missing "
            f"exchange rate), then run `{_rerun(run)}` again."
        )
        where = "after closing it"
    else:
        advice = (
            "The period was not closed and nothing was posted or marked. Fix the cause in Zuora (for "
            f"example import the missing exchange rate), then run `{_rerun(run)}` again."
        )
        where = "before closing it"
    return StopClose(
        f"the trial balance of accounting period {cli_arg(run.period_name)} failed in Zuora {where}: "
        f"{text}. {advice}",
        event="close.trial_balance_error",
        fields={"period": run.period_name, "runTrialBalanceErrorMessage": message},
    )


def step_trial_balance(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 2: start a trial balance unless one completed, and wait for it; Error stops."""
    pid = _period_id(run)
    st = _state(run, "trial_balance")
    period = ctx.zuora.periods.get(pid)
    status = period.run_trial_balance_status
    if period.status == "Closed":
        return Done("close_period", {"skipped": "the period is already Closed"})
    if status in ("Pending", "Processing"):
        return _wait_for_job(ctx, run, "trial_balance", f"the trial balance of {run.period_name}")
    if period.trial_balance_completed:
        return Done(
            "close_period",
            {"completed_at": str(period.run_trial_balance_end), "ours": bool(st.get("requested"))},
        )
    if status == "Error" and (st.get("requested") or st.get("seen_running")):
        _save(ctx, run, "trial_balance", runTrialBalanceErrorMessage=period.run_trial_balance_error_message)
        raise _trial_balance_error(run, period.run_trial_balance_error_message, after_close=False)
    if period.status != "Open":
        raise StopClose(
            f"accounting period {cli_arg(run.period_name)} is {period.status} and its trial balance is "
            f"{status or 'not run'}; Zuora only runs a trial balance on an Open period. Reopen it or "
            f"finish the trial balance in Zuora, then run `{_rerun(run)}` again."
        )
    # Record the intent before the PUT: an Error seen after a crash is then known to be ours.
    run = _save(ctx, run, "trial_balance", requested=True, job_started_at=ctx.clock(), polls=0)
    try:
        ctx.zuora.periods.run_trial_balance(pid)
    except Rejected as exc:
        # A retried PUT after an unseen success is refused (already running): re-read first.
        period = ctx.zuora.periods.get(pid)
        if period.run_trial_balance_status not in ("Pending", "Processing", "Completed"):
            raise StopClose(
                f"Zuora refused to start a trial balance for {cli_arg(run.period_name)}: {exc}"
            ) from None
    ctx.crash("trial_balance:started")
    return _started(ctx, run, "trial_balance")


def step_close_period(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 3: close the period if Open (or PendingClose) and wait for the trial balance the
    close starts. A dry run leaves the period as it is."""
    pid = _period_id(run)
    if run.dry_run:
        return Done("journal_run", {"skipped": "dry run: the period is left open"})
    st = _state(run, "close_period")
    period = ctx.zuora.periods.get(pid)
    if period.status in ("Open", "PendingClose"):
        if period.run_trial_balance_status in ("Pending", "Processing"):
            return _wait_for_job(ctx, run, "close_period", f"the trial balance of {run.period_name}")
        run = _save(
            ctx,
            run,
            "close_period",
            requested=True,
            job_started_at=ctx.clock(),
            polls=0,
            previous_end=str(period.run_trial_balance_end),
        )
        try:
            ctx.zuora.periods.close(pid)
        except Rejected as exc:
            period = ctx.zuora.periods.get(pid)
            if period.status != "Closed":
                raise StopClose(
                    f"Zuora refused to close accounting period {cli_arg(run.period_name)}: {exc}. Nothing "
                    f"was posted or marked. Fix it in Zuora, then run `{_rerun(run)}` again."
                ) from None
        ctx.crash("close_period:closed")
        return _started(ctx, run, "close_period")
    status = period.run_trial_balance_status
    if status in ("Pending", "Processing"):
        return _wait_for_job(
            ctx, run, "close_period", f"the trial balance of closed period {run.period_name}"
        )
    if status == "Error":
        _save(ctx, run, "close_period", runTrialBalanceErrorMessage=period.run_trial_balance_error_message)
        raise _trial_balance_error(run, period.run_trial_balance_error_message, after_close=True)
    if (
        st.get("requested")
        and not st.get("seen_running")
        and status == "Completed"
        and str(period.run_trial_balance_end) == st.get("previous_end")
        and int(st.get("polls", 0)) < STALE_TRIAL_BALANCE_POLLS
    ):
        # Still the trial balance from before the close: the one the close starts may not show yet.
        return _wait_for_job(
            ctx, run, "close_period", f"the trial balance of closed period {run.period_name}"
        )
    return Done("journal_run", {"closed": True, "ours": bool(st.get("requested"))})


def step_journal_run(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 4: start the journal run (Idempotency-Key per close run and attempt) and wait."""
    st = _state(run, "journal_run")
    number = st.get("number")
    if not number:
        attempt = int(st.get("attempt", 1))
        types = list(ctx.transaction_types())
        end = _state(run, "lookup").get("end_date")
        if not end:
            raise StopClose(
                f"close run {run.id} does not know the period's end date; run it again from the start"
            )
        entry_date = _date(end)
        key = (
            "close.journal-run",
            str(run.id),
            str(attempt),
            run.period_name,
            entry_date.isoformat(),
            *types,
        )
        run = _save(ctx, run, "journal_run", attempt=attempt, transaction_types=types,
                    journal_entry_date=entry_date.isoformat())  # fmt: skip
        number = ctx.zuora.journal_runs.create(run.period_name, entry_date, types, idempotency_key=key)
        ctx.crash("journal_run:created")
        run = _save(ctx, run, "journal_run", number=number, job_started_at=ctx.clock(), polls=0)
        ctx.ledger.update_close_run(run.id or 0, journal_run_number=number)
        return _started(ctx, run, "journal_run")
    journal_run = ctx.zuora.journal_runs.get(str(number))
    if journal_run.completed:
        return Done(
            "fetch", {"status": journal_run.status, "total_entries": journal_run.total_journal_entry_count}
        )
    if journal_run.failed:
        raise StopClose(
            f"journal run {number} for accounting period {cli_arg(run.period_name)} ended with status "
            f"{journal_run.status} in Zuora; nothing was posted or marked. Look at the run in Zuora "
            f"(Finance > Journal Runs), fix the cause, then run `{_rerun(run)}` again: a new journal "
            "run is started.",
            event="close.journal_run_failed",
            fields={"journal_run": number, "status": journal_run.status},
        )
    return _wait_for_job(ctx, run, "journal_run", f"journal run {number}")


def _journal_run_number(run: CloseRun) -> str:
    number = _state(run, "journal_run").get("number")
    if not number:
        raise StopClose(f"close run {run.id} has no journal run; run the close again")
    return str(number)


def step_fetch(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 5: every summary journal entry of the run, all pages, into the ledger (pending)."""
    number = _journal_run_number(run)
    numbers: list[str] = []
    pages = 0
    for page in ctx.zuora.journal_entries.list_by_run(number):
        pages += 1
        if not run.dry_run:
            with ctx.ledger.session() as session:
                for entry in page.entries:
                    states.upsert_pulled(
                        session,
                        connection=ctx.connection,
                        object_type=JE,
                        zuora_id=entry.number,
                        zuora_number=entry.number,
                        zuora_updated=None,
                        payload=dict(entry.raw),
                        account_id=None,
                        source=RecordSource.CLOSE.value,
                        period_name=run.period_name,
                        close_run_id=run.id,
                    )
        numbers += [e.number for e in page.entries if e.number not in numbers]
    expected = _state(run, "journal_run").get("total_entries")
    if expected is not None and int(expected) > len(numbers):
        raise StopClose(
            f"journal run {number} reports {expected} journal entries but Zuora listed only {len(numbers)}; "
            f"nothing was posted. Run `{_rerun(run)}` again to re-read them."
        )
    return Done("check", {"journal_run": number, "numbers": numbers, "count": len(numbers), "pages": pages})


def _skip_reason(entry: JournalEntry) -> str | None:
    if entry.status == "Cancelled":
        return "Cancelled in Zuora"
    if entry.transferred_to_accounting == "Ignore":
        return "transferredToAccounting is Ignore in Zuora"
    return None


def _dry_run_entries(ctx: CloseContext, run: CloseRun) -> list[JournalEntry]:
    entries: list[JournalEntry] = []
    for page in ctx.zuora.journal_entries.list_by_run(_journal_run_number(run)):
        entries += page.entries
    return entries


def _preview(journal: Journal) -> dict[str, Any]:
    return {
        "number": journal.natural_key,
        "date": journal.date.isoformat(),
        "currency": journal.currency,
        "description": journal.description,
        "debit": journal.total_debit,
        "credit": journal.total_credit,
        "lines": journal_payload(journal)["lines"],
    }


def step_check(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 6: every entry balances and maps; bad entries are parked and the close stops before
    posting. Entries parked earlier that now pass are returned to pending. A dry run stops here
    with the preview of what would be posted."""
    mapping = ctx.mapping()
    if run.dry_run:
        entries = _dry_run_entries(ctx, run)
        rows: dict[str, SyncRecord] = {}
    else:
        rows = _rows(ctx.ledger, ctx.connection, _numbers(run))
        missing = [n for n in _numbers(run) if n not in rows]
        if missing:
            raise StopClose(
                f"journal entries {', '.join(missing)} are not in the ledger; run the close again"
            )
        entries = [JournalEntry.from_json(rows[n].payload) for n in _numbers(run)]
    skipped: dict[str, str] = {}
    bad: dict[str, list[str]] = {}
    preview: list[dict[str, Any]] = []
    for entry in entries:
        reason = _skip_reason(entry)
        if reason:
            skipped[entry.number] = reason
            continue
        row = rows.get(entry.number)
        if row is not None and row.state in POSTED_STATES:
            continue  # posted by this close already (a resumed run re-checks)
        reasons = check_entry(entry, mapping)
        if entry.transferred_to_accounting == "Yes" and (row is None or row.state not in POSTED_STATES):
            reasons.append(
                "Zuora already says transferredToAccounting=Yes but ledgerbridge never posted it: another "
                "tool may have posted it. Check the ERP; if it is there, leave this entry out of the close"
            )
        if not reasons:
            try:
                journal = journal_from_summary_entry(entry.raw, mapping)
            except MappingError as exc:
                reasons.append(exc.reason)
            else:
                preview.append(_preview(journal))
        if reasons:
            bad[entry.number] = reasons
    if run.dry_run:
        return _dry_run_stop(ctx, run, preview, bad, skipped)
    with ctx.ledger.session() as session:
        for number, row in rows.items():
            if number in skipped:
                continue
            if number in bad and row.state in (RecordState.PENDING.value, RecordState.FAILED.value):
                states.park(session, row.id or 0, "; ".join(bad[number]))
            elif number not in bad and row.state == RecordState.PARKED.value:
                states.replay(session, row.id or 0, reason=f"passed the check of close run {run.id}")
            elif number not in bad and row.state == RecordState.FAILED.value:
                states.retry(session, row.id or 0)
    details = {"entries": len(entries), "skipped": skipped, "bad": bad}
    if bad:
        _save(ctx, run, "check", **details)
        lines = "; ".join(f"{n}: {' / '.join(r)}" for n, r in sorted(bad.items()))
        posted = sum(1 for r in rows.values() if r.state in POSTED_STATES)
        already = f" ({posted} entries were posted earlier and stay posted)" if posted else ""
        raise StopClose(
            f"{len(bad)} of {len(entries)} journal entries of journal run {_journal_run_number(run)} cannot "
            f"be posted and were parked, so nothing of the run was posted{already}: {lines}. Fix the "
            f"mapping file or the entries in Zuora, then run `{_rerun(run)}` again.",
            event="close.entries_parked",
            fields={"parked": bad, "journal_run": _journal_run_number(run)},
        )
    return Done("post", details)


def _dry_run_stop(
    ctx: CloseContext,
    run: CloseRun,
    preview: list[dict[str, Any]],
    bad: dict[str, list[str]],
    skipped: dict[str, str],
) -> StepResult:
    totals: dict[str, dict[str, Decimal]] = {}
    for item in preview:
        cur = totals.setdefault(str(item["currency"]), {"debit": Decimal(0), "credit": Decimal(0)})
        cur["debit"] += item["debit"]
        cur["credit"] += item["credit"]
    return Done("discard", {"preview": preview, "bad": bad, "skipped": skipped, "totals": totals})


def step_discard(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Dry run only, after ``check``: cancel the dry run's journal run and wait until Zuora has
    released its transactions, so the real close journalizes them again (section 7.3)."""
    number = _state(run, "journal_run").get("number")
    if not number:
        return Done(FINISHED, {"cancelled": None})
    st = _state(run, "discard")
    journal_run = ctx.zuora.journal_runs.get(str(number))
    if journal_run.status == "Cancelled":
        return Done(FINISHED, {"cancelled": number})
    if journal_run.status == "CancelInprogress":
        return _wait_for_job(ctx, run, "discard", f"the cancellation of journal run {number}")
    if journal_run.status in ("Pending", "Completed", "Error") and not st.get("requested"):
        run = _save(ctx, run, "discard", requested=True, job_started_at=ctx.clock(), polls=0)
        try:
            ctx.zuora.journal_runs.cancel(str(number))
        except Rejected as exc:
            again = ctx.zuora.journal_runs.get(str(number))
            if again.status not in ("CancelInprogress", "Cancelled"):
                raise StopClose(f"the dry run could not cancel its journal run {number}: {exc}") from None
        return _started(ctx, run, "discard")
    if journal_run.status == "Processing":
        return _wait_for_job(ctx, run, "discard", f"journal run {number}")
    raise StopClose(
        f"the dry run's journal run {number} is {journal_run.status} after it was cancelled (an entry of it "
        "is transferred, or another process changed it); cancel it in Zuora before the real close"
    )


class LateTransitions:
    """The transitions a step may commit after the fact, for many entries in one transaction.

    ``posting -> posted`` and ``posted -> marked`` need not be committed before the step goes
    on: a crash before they commit leaves an entry ``posting`` (in doubt: the next try looks it
    up in the ERP and finds it) or ``posted`` (saved as in flight: re-read in Zuora before it is
    marked), both already handled. Committing them in groups of ``size`` spares the ledger a
    transaction (and, on SQLite, a turn at the write lock) per entry. Only ``pending -> posting``
    must commit before the ERP call, and does so on its own."""

    def __init__(self, ledger: Ledger, size: int = LATE_GROUP) -> None:
        self.ledger = ledger
        self.size = max(1, size)
        self._lock = threading.Lock()
        self._changes: list[tuple[Callable[[Any], object], Callable[[], None] | None]] = []

    def add(self, change: Callable[[Any], object], then: Callable[[], None] | None = None) -> None:
        """Queue ``change(session)``; the caller whose change fills a group commits the group.
        ``then()`` runs once the change is committed (never when its group fails)."""
        with self._lock:
            self._changes.append((change, then))
            if len(self._changes) < self.size:
                return
            group, self._changes = self._changes, []
        self._commit(group)

    def flush(self) -> None:
        """Commit whatever is queued (call before the step reads the rows or returns)."""
        with self._lock:
            group, self._changes = self._changes, []
        self._commit(group)

    def flush_quietly(self) -> None:
        """:meth:`flush` while another error is on its way out: a failure here is logged, and the
        rows it leaves behind are the in-doubt or in-flight ones the next try handles."""
        try:
            self.flush()
        except Exception:
            log.exception("could not commit the entries' last transitions; the next try looks them up")

    def _commit(self, group: Sequence[tuple[Callable[[Any], object], Callable[[], None] | None]]) -> None:
        if not group:
            return
        with self.ledger.session() as session:
            for change, _ in group:
                change(session)
        for _, then in group:
            if then is not None:
                then()


def step_widths(zuora_limit: int, erp_limit: int | None) -> tuple[int, int]:
    """Entries in flight in the post and in the mark step, from the requests each API lets the
    fleet run at once (``erp_limit`` None: the file export, one at a time).

    Posting an entry is one Zuora request, then one ERP request, so with as many entries as the
    smaller limit one API idles while the other works; twice that keeps both busy, and each API's
    own fleet limiter still caps its requests. Marking is Zuora requests only."""
    mark = max(1, min(MAX_CONCURRENCY, zuora_limit))
    if erp_limit is None:
        return 1, mark
    return max(1, min(MAX_CONCURRENCY, erp_limit + min(erp_limit, zuora_limit))), mark


def _each(
    ctx: CloseContext, numbers: Sequence[str], work: Callable[[str], None], deadline: float, *, width: int
) -> bool:
    """Run ``work`` on each of ``numbers``, ``width`` at a time (in the caller's thread when 1).
    The first ``width`` always run; a later one does not start once the step's budget is spent,
    nor after an error. The first error is raised once every started one has finished
    (StopClose before any other). True when every number was done."""
    width = max(1, width)
    stop = threading.Event()

    def one(position: int, number: str) -> bool:
        if stop.is_set() or (position >= width and ctx.clock() > deadline):
            return False
        try:
            work(number)
        except BaseException:
            stop.set()
            raise
        return True

    if width == 1:
        return all([one(position, number) for position, number in enumerate(numbers)])
    errors: list[BaseException] = []
    done = True
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="close") as pool:
        futures = [pool.submit(copy_context().run, one, i, n) for i, n in enumerate(numbers)]
        for future in futures:
            error = future.exception()
            if error is not None:
                errors.append(error)
            elif not future.result():
                done = False
    if errors:
        raise next((e for e in errors if isinstance(e, StopClose)), errors[0])
    return done


def _inflight(run: CloseRun) -> set[str]:
    """The entries whose ``Yes`` may have gone out without the ledger showing them marked."""
    raw = _state(run, "mark").get("inflight")
    return {raw} if isinstance(raw, str) else set(raw or [])


class _Marker:
    """Marks entries ``Yes`` in Zuora on the mark step's path (:func:`_mark_entry`) while the post
    step goes on, each once its ``posted`` is committed, ``width`` at a time: the Zuora requests
    of marking overlap the ERP requests of posting instead of waiting for the last entry to be
    posted.

    Best effort: the first failure stops it, and whatever it did not finish is the mark step's
    (the entries whose PUT went out are kept in flight there, so they are read before written).
    A simulated crash (a BaseException) is raised again by :meth:`close`."""

    def __init__(self, ctx: CloseContext, run: CloseRun, position: Mapping[str, int], width: int) -> None:
        """``width`` 0: marks nothing."""
        self.ctx = ctx
        self.run = run
        self.position = position
        self.late = LateTransitions(ctx.ledger)
        self.started: set[str] = set()  # a PUT may have gone out
        self.marked: set[str] = set()  # ``posted -> marked`` committed
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="close-mark") if width else None
        self._futures: list[Any] = []
        self._lock = threading.Lock()

    def submit(self, number: str, row: SyncRecord) -> None:
        if self._pool is None or self._stop.is_set():
            return
        future = self._pool.submit(copy_context().run, self._mark, number, row)
        with self._lock:
            self._futures.append(future)

    def _mark(self, number: str, row: SyncRecord) -> None:
        if self._stop.is_set():
            return
        try:
            _mark_entry(
                self.ctx,
                self.run,
                number,
                rows={number: row},
                position=self.position,
                recheck=set(),
                started=self.started,
                late=self.late,
                then=functools.partial(self.marked.add, number),
            )
        except Exception as exc:
            self._stop.set()
            log.warning(
                "journal entry %s: not marked transferred while posting (the mark step will): %s", number, exc
            )

    def close(self, *, quietly: bool = False) -> None:
        """Wait for the marks under way and commit their transitions; then raise a simulated
        crash one of them met, unless ``quietly`` (another error is on its way out: no new mark
        starts)."""
        if quietly:
            self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.late.flush_quietly()
        for future in self._futures:
            error = future.exception()
            if error is not None and not isinstance(error, Exception) and not quietly:
                raise error

    def unsure(self) -> set[str]:
        return self.started - self.marked


def step_post(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 7: post each entry to the ERP exactly once (see the module docstring); with
    ``concurrency`` > 1, that many entries at a time, each on its own exactly as alone. An entry
    posted here is marked here too as soon as its ``posted`` is committed (:class:`_Marker`)."""
    mapping = ctx.mapping()
    deadline = ctx.clock() + ctx.step_budget
    numbers = _to_post(run)
    rows = _rows(ctx.ledger, ctx.connection, numbers)
    for number in numbers:
        row = rows.get(number)
        if row is not None and row.state in (RecordState.PARKED.value, RecordState.FAILED.value):
            raise StopClose(
                f"journal entry {number} is {row.state} ({row.last_error}); fix it, then run "
                f"`{_rerun(run)}` again"
            )
    todo = [n for n in numbers if n not in rows or rows[n].state not in POSTED_STATES]
    position = {number: index for index, number in enumerate(numbers, start=1)}
    if not todo:
        return Done("mark", {"entries": len(numbers)})
    # Before any Yes is sent: a task that dies leaves these for the mark step to read first.
    earlier = _inflight(run)
    run = _save(ctx, run, "mark", inflight=sorted(earlier | set(todo)))
    late = LateTransitions(ctx.ledger)
    # Half the Zuora requests a step may run: the posting threads' Processing PUTs use the rest.
    marker = _Marker(ctx, run, position, max(1, ctx.mark_width // 2) if ctx.mark_while_posting else 0)

    def post(number: str) -> None:
        row = _row(ctx, number, rows)
        _post_entry(ctx, run, row, position[number], mapping, late=late, then=marker.submit)

    try:
        finished = _each(ctx, todo, post, deadline, width=ctx.concurrency)
        late.flush()
    except Exception:
        late.flush_quietly()
        marker.close()
        _save(ctx, run, "mark", inflight=sorted(earlier | marker.unsure()) or None)
        raise
    except BaseException:
        late.flush_quietly()
        marker.close(quietly=True)
        raise
    marker.close()
    _save(ctx, run, "mark", inflight=sorted(earlier | marker.unsure()) or None)
    if not finished:
        return Wait(0.0, "posted part of the entries in this task; continuing in a fresh one")
    return Done("mark", {"entries": len(numbers)})


def _post_entry(
    ctx: CloseContext,
    run: CloseRun,
    row: SyncRecord,
    index: int,
    mapping: GlMapping,
    *,
    late: LateTransitions,
    then: Callable[[str, SyncRecord], None] | None = None,
) -> None:
    """Post one entry: in doubt -> look it up; else Processing in Zuora, ``posting`` committed in
    the ledger, the one ERP call, ``posted`` with its reference (committed with ``late``, after
    which ``then(number, row)`` runs)."""
    number = row.zuora_id
    if row.state in POSTED_STATES:
        return
    ctx.heartbeat()
    with audit_subject(row.subject), log_context(record_id=number):
        if row.state == RecordState.POSTING.value:
            # In doubt: a worker died between committing `posting` and recording the reference.
            found = ctx.erp.find_document("journal", number)
            with ctx.ledger.session() as session:
                states.resume_in_doubt(
                    session,
                    row.id or 0,
                    found_erp_ref=found.key if found else None,
                    released=found.released if found else False,
                )
            if found is not None:
                return
            row = _row(ctx, number)
        try:
            journal = journal_from_summary_entry(row.payload, mapping)
        except MappingError as exc:
            with ctx.ledger.session() as session:
                states.park(session, row.id or 0, exc.reason)
            raise StopClose(
                f"journal entry {number} cannot be posted: {exc.reason}. Run `{_rerun(run)}` again after "
                "fixing it.",
                event="close.entries_parked",
                fields={"parked": {number: [exc.reason]}},
            ) from None
        # A visible trail in Zuora before the ERP sees anything (and Zuora refuses to cancel an
        # entry that is Processing, section 8.6).
        ctx.zuora.journal_entries.update_basic_information(number, transferred_to_accounting="Processing")
        # The row read just now: the transition's version check refuses it if another driver has
        # moved it since, and it saves reading it again.
        with ctx.ledger.session() as session:
            states.begin_posting(session, row, erp_payload=journal_payload(journal))
        ctx.crash(f"posting:{index}")
        try:
            ref = ctx.erp.post_journal(journal)
        except Rejected as exc:
            # The ERP refused the document: it certainly does not exist. A person must look.
            with ctx.ledger.session() as session:
                states.park(session, row.id or 0, f"{ctx.erp_name} refused it: {exc}")
            raise StopClose(
                f"{ctx.erp_name} refused journal entry {number}: {exc}. It was parked; fix the cause "
                f"(account, period, currency in the ERP), then run `{_rerun(run)}` again.",
                event="close.entries_parked",
                fields={"parked": {number: [str(exc)]}},
            ) from None
        # Transient / RateLimited / OutcomeUnknown propagate: the row stays `posting` (in doubt)
        # and the retried step looks the document up before creating it again.
        ctx.crash(f"posted:{index}")
        late.add(
            functools.partial(
                states.complete_posting,
                record=row,
                erp_ref=ref.key,
                erp_payload=journal_payload(journal),
                released=ref.released,
            ),
            then=None if then is None else functools.partial(then, number, row),
        )


def step_mark(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 8: ``transferredToAccounting=Yes`` per entry (one PUT each), then ``marked``.

    The entries about to be marked are saved as ``inflight`` before any PUT is sent; a task that
    finds entries in flight (the last one died around their PUTs) reads each of them that the
    ledger does not show marked before writing it. A task that ends normally clears the list."""
    deadline = ctx.clock() + ctx.step_budget
    numbers = _to_post(run)
    inflight = _inflight(run)
    rows = _rows(ctx.ledger, ctx.connection, numbers)
    for number in numbers:
        row = rows.get(number)
        state = row.state if row is not None else "missing from the ledger"
        if state not in POSTED_STATES:
            raise StopClose(
                f"journal entry {number} is {state}, not posted, so it cannot be marked transferred; "
                f"run `{_rerun(run)}` again"
            )
    todo = [n for n in numbers if rows[n].state != RecordState.MARKED.value]
    position = {number: index for index, number in enumerate(numbers, start=1)}
    if todo:
        run = _save(ctx, run, "mark", inflight=todo)  # before any PUT is sent
    started: set[str] = set()
    late = LateTransitions(ctx.ledger)
    work = functools.partial(
        _mark_entry, ctx, run, rows=rows, position=position, recheck=inflight, started=started, late=late
    )
    try:
        finished = _each(ctx, todo, work, deadline, width=ctx.mark_width)
        late.flush()
    except Exception:
        late.flush_quietly()
        # A clean failure: only the entries whose PUT may have gone out need a read next time.
        marked = _rows(ctx.ledger, ctx.connection, sorted(started))
        unsure = [n for n in sorted(started) if marked[n].state != RecordState.MARKED.value]
        _save(ctx, run, "mark", inflight=sorted(set(unsure) | (inflight & set(todo))))
        raise
    if not finished:
        _save(ctx, run, "mark", inflight=None)
        return Wait(0.0, "continuing in a fresh task")
    return Done("verify", {"entries": len(numbers), "inflight": None})


def _mark_entry(
    ctx: CloseContext,
    run: CloseRun,
    number: str,
    *,
    rows: Mapping[str, SyncRecord],
    position: Mapping[str, int],
    recheck: set[str],
    started: set[str],
    late: LateTransitions,
    then: Callable[[], None] | None = None,
) -> None:
    """Mark one entry Yes in Zuora, then ``marked`` in the ledger, committed with ``late`` (after
    which ``then()`` runs; ``recheck``: the entries a dead task had in flight, read before they
    are written)."""
    index = position[number]
    row = _row(ctx, number, rows)
    if row.state == RecordState.MARKED.value:
        return
    ctx.heartbeat()
    with audit_subject(row.subject), log_context(record_id=number):
        # The last run died around this PUT: read before writing, so it is never sent twice.
        already = (
            number in recheck and ctx.zuora.journal_entries.get(number).transferred_to_accounting == "Yes"
        )
        if not already:
            started.add(number)  # set.add is atomic: the threads of one step share this set
            try:
                ctx.zuora.journal_entries.update_basic_information(number, transferred_to_accounting="Yes")
            except Rejected as exc:
                if ctx.zuora.journal_entries.get(number).transferred_to_accounting != "Yes":
                    raise StopClose(
                        f"Zuora refused to mark journal entry {number} transferred (it is posted in "
                        f"{ctx.erp_name} as {row.erp_ref}): {exc}. Mark it Yes in Zuora, then run "
                        f"`{_rerun(run)}` again.",
                        event="close.verification_failed",
                    ) from None
            ctx.crash(f"marking:{index}")
        late.add(functools.partial(states.mark_transferred, record=row), then=then)


def step_verify(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 9: re-read the run; every entry must be Yes in Zuora and have an ERP reference."""
    mapping = ctx.mapping()
    number = _journal_run_number(run)
    seen: dict[str, JournalEntry] = {}
    for page in ctx.zuora.journal_entries.list_by_run(number):
        seen.update((e.number, e) for e in page.entries)
    expected = _to_post(run)
    skipped = _skipped(run)
    rows = _rows(ctx.ledger, ctx.connection, expected)
    misses: list[str] = []
    totals: dict[TotalsKey, Totals] = {}
    for je in expected:
        entry = seen.get(je)
        row = rows.get(je)
        if entry is None:
            misses.append(f"{je} is no longer in journal run {number} in Zuora")
        elif entry.status == "Cancelled":
            misses.append(f"{je} was cancelled in Zuora after it was posted")
        elif entry.transferred_to_accounting != "Yes":
            misses.append(
                f"{je} is transferredToAccounting={entry.transferred_to_accounting} in Zuora, not Yes"
            )
        if row is None or not row.erp_ref:
            misses.append(f"{je} has no ERP reference in the ledger")
        elif row.state != RecordState.MARKED.value:
            misses.append(f"{je} is {row.state} in the ledger, not marked")
        if entry is not None:
            _add(totals, entry_totals(entry.raw, mapping))
    for je, extra in sorted(seen.items()):
        if je not in expected and je not in skipped and _skip_reason(extra) is None:
            misses.append(f"{je} appeared in journal run {number} after it was fetched and was not posted")
    if misses:
        _save(ctx, run, "verify", misses=misses)
        raise StopClose(
            f"VERIFICATION FAILED for journal run {number} of {cli_arg(run.period_name)}: "
            f"{len(misses)} problem(s): {'; '.join(misses)}. Do not treat the period as transferred; "
            f"fix these, then run `{_rerun(run)}` again.",
            event="close.verification_failed",
            fields={"misses": misses, "journal_run": number},
        )
    return Done("reconcile", {"entries": len(expected), "zuora_totals": totals_to_json(totals), "misses": []})


def step_reconcile(ctx: CloseContext, run: CloseRun) -> StepResult:
    """Step 10: Zuora totals = ledger totals = ERP totals per (account, currency), to the cent."""
    expected = _to_post(run)
    zuora_rows = _state(run, "verify").get("zuora_totals")
    if zuora_rows is None:
        raise StopClose(f"close run {run.id} has no verified Zuora totals; run `{_rerun(run)}` again")
    zuora = totals_from_json(zuora_rows)
    ledger_totals: dict[TotalsKey, Totals] = {}
    for number, row in _rows(ctx.ledger, ctx.connection, expected).items():
        payload = row.posted_payload or {}
        currency = str(payload.get("currency"))
        for line in payload.get("lines", []):
            key = (str(line["account"]), currency)
            amount = Totals(Decimal(str(line["debit"])), Decimal(str(line["credit"])))
            ledger_totals[key] = ledger_totals.get(key, Totals()) + amount
        if not payload:
            ledger_totals[(f"no posted payload for {number}", "")] = Totals()
    erp = dict(ctx.erp.journal_totals(natural_keys=expected)) if expected else {}
    keys = sorted(set(zuora) | set(ledger_totals) | set(erp))
    lines: list[dict[str, Any]] = []
    differences: list[dict[str, Any]] = []
    for account, currency in keys:
        z = zuora.get((account, currency), Totals())
        led = ledger_totals.get((account, currency), Totals())
        e = erp.get((account, currency), Totals())
        line = {
            "account": account,
            "currency": currency,
            "zuora_debit": z.debit,
            "zuora_credit": z.credit,
            "ledger_debit": led.debit,
            "ledger_credit": led.credit,
            "erp_debit": e.debit,
            "erp_credit": e.credit,
        }
        lines.append(line)
        if not (z.debit == led.debit == e.debit and z.credit == led.credit == e.credit):
            differences.append(line)
    if differences:
        _save(ctx, run, "reconcile", lines=lines, differences=differences)
        shown = "; ".join(
            f"{d['account']} {d['currency']}: Zuora {d['zuora_debit']} Dr / {d['zuora_credit']} Cr, "
            f"ledger {d['ledger_debit']} Dr / {d['ledger_credit']} Cr, "
            f"{ctx.erp_name} {d['erp_debit']} Dr / {d['erp_credit']} Cr"
            for d in differences
        )
        raise StopClose(
            f"RECONCILIATION FAILED for {cli_arg(run.period_name)}: {len(differences)} account line(s) "
            f"differ between Zuora, the ledger and {ctx.erp_name}: {shown}. Find the cause in {ctx.erp_name} "
            f"(a changed or voided batch), then run `{_rerun(run)}` again.",
            event="close.reconciliation_failed",
            fields={"differences": differences},
        )
    return Done(FINISHED, {"lines": lines, "differences": [], "entries": len(expected)})


STEP_FUNCTIONS: dict[str, Callable[[CloseContext, CloseRun], StepResult]] = {
    "lookup": step_lookup,
    "trial_balance": step_trial_balance,
    "close_period": step_close_period,
    "journal_run": step_journal_run,
    "fetch": step_fetch,
    "check": step_check,
    "post": step_post,
    "mark": step_mark,
    "verify": step_verify,
    "reconcile": step_reconcile,
    "discard": step_discard,
}


# -- running a step ---------------------------------------------------------------------------


def steps_of(run: CloseRun) -> tuple[str, ...]:
    return DRY_RUN_STEPS if run.dry_run else STEPS


def _transient_wait(ctx: CloseContext, run: CloseRun, step: str, exc: ApiError) -> StepResult:
    info = run.details.get("transient") or {}
    attempts = int(info.get("attempts", 0)) + 1 if info.get("step") == step else 1
    ctx.ledger.update_close_run(
        run.id or 0,
        details_update={"transient": {"step": step, "attempts": attempts, "error": str(exc)[:1000]}},
    )
    if attempts > MAX_TRANSIENT_ATTEMPTS:
        return Stop(
            f"step {step} failed {attempts} times in a row with a temporary error, the last: {exc}. Check "
            f"that Zuora and {ctx.erp_name} are reachable, then run `{_rerun(run)}` again."
        )
    if isinstance(exc, RateLimited):
        return Wait(min(max(exc.retry_after, 1.0), TRANSIENT_CAP), f"rate limited: {exc}")
    delay = exponential(attempts, base=TRANSIENT_BASE, cap=TRANSIENT_CAP, floor=1.0, jitter=full_jitter)
    return Wait(delay, f"temporary failure ({exc}); retry {attempts}")


def run_step(ctx: CloseContext, run: CloseRun, step: str) -> StepResult:
    """Run one step and turn API errors into results (never raises for an API error): rate limits
    and transient failures wait with backoff; bad credentials, refusals and missing objects stop
    the close with the API's message. :class:`LockLost` propagates."""
    function = STEP_FUNCTIONS[step]
    with (
        audit_subject(f"close:{run.id}"),
        log_context(connection=ctx.connection, close_run=run.id, step=step),
    ):
        try:
            return function(ctx, run)
        except StopClose as stop:
            return stop.stop
        except (RateLimited, Transient) as exc:
            return _transient_wait(ctx, ctx.ledger.get_close_run(run.id or 0), step, exc)
        except AuthFailed as exc:
            return Stop(
                f"{exc.api} refused ledgerbridge's credentials during step {step}: {exc}. Fix the "
                f"connection's credentials, then run `{_rerun(run)}` again."
            )
        except (Rejected, NotFound) as exc:
            return Stop(f"step {step} of the close of {cli_arg(run.period_name)} failed: {exc}")


def _notice(ctx: CloseContext, run: CloseRun, stop: Stop) -> Notice:
    return Notice(
        event=stop.event,
        text=f"ledgerbridge close of {cli_arg(run.period_name)} on {ctx.connection} needs attention "
        f"(close run {run.id}): {stop.reason}",
        severity="error",
        subject=f"close:{run.id}",
        connection=ctx.connection,
        fields={"close_run": run.id, "period": run.period_name, "step": run.step, **stop.fields},
    )


def _completion(ctx: CloseContext, run: CloseRun) -> Notice:
    lines = _state(run, "reconcile").get("lines", [])
    by_currency: dict[str, dict[str, Decimal]] = {}
    for line in lines:
        cur = by_currency.setdefault(str(line["currency"]), {"debit": Decimal(0), "credit": Decimal(0)})
        cur["debit"] += Decimal(str(line["erp_debit"]))
        cur["credit"] += Decimal(str(line["erp_credit"]))
    count = len(_to_post(run))
    skipped = len(_skipped(run))
    totals = ", ".join(f"{c} {t['debit']} Dr / {t['credit']} Cr" for c, t in sorted(by_currency.items()))
    text = (
        f"ledgerbridge close of {cli_arg(run.period_name)} on {ctx.connection} is done (close run {run.id}): "
        f"{count} journal entries of journal run {run.journal_run_number} posted to {ctx.erp_name} and "
        f"marked transferred in Zuora"
        + (f", {skipped} skipped" if skipped else "")
        + f"; reconciled to the cent{': ' + totals if totals else ''}."
    )
    return Notice(
        event="close.completed",
        text=text,
        severity="info",
        subject=f"close:{run.id}",
        connection=ctx.connection,
        fields={
            "close_run": run.id,
            "period": run.period_name,
            "journal_run": run.journal_run_number,
            "entries": count,
            "skipped": skipped,
            "totals": by_currency,
        },
    )


def record_result(ctx: CloseContext, run: CloseRun, step: str, result: StepResult) -> CloseRun:
    """Commit a step's result on the run (and tell people when it stopped or finished)."""
    run_id = run.id or 0
    if isinstance(result, Done):
        current = ctx.ledger.get_close_run(run_id)
        merged = {**_state(current, step), **result.details, "done_at": dt.datetime.now(dt.UTC).isoformat()}
        merged.pop("stopped", None)
        update: dict[str, Any] = {step: merged}
        if current.details.get("transient"):
            update["transient"] = None
        status = None
        if result.next_step == FINISHED:
            status = CloseStatus.DRY_RUN.value if current.dry_run else CloseStatus.DONE.value
        updated = ctx.ledger.update_close_run(
            run_id, step=result.next_step, status=status, details_update=update, error=None
        )
        if result.next_step == FINISHED:
            ctx.ledger.note(f"close:{run_id}", f"close finished ({updated.status})", ctx.connection)
            if not updated.dry_run:
                ctx.notifier.send(_completion(ctx, updated))
        return updated
    if isinstance(result, Stop):
        updated = ctx.ledger.update_close_run(
            run_id,
            status=result.status,
            error=result.reason if result.status == CloseStatus.NEEDS_ATTENTION.value else None,
            details_update={
                step: {**_state(ctx.ledger.get_close_run(run_id), step), "stopped": result.reason}
            },
        )
        ctx.ledger.note(f"close:{run_id}", f"stopped at {step}: {result.reason}", ctx.connection)
        log.warning("close stopped", extra={"close_run": run_id, "step": step, "reason": result.reason})
        if result.status == CloseStatus.NEEDS_ATTENTION.value:
            ctx.notifier.send(_notice(ctx, updated, result))
        return updated
    return ctx.ledger.get_close_run(run_id)


def drive_step(ctx: CloseContext, lock: CloseLock, close_run_id: int, step: str, token: str) -> DriveResult:
    """What a step task does: take the lock as driver ``token``, run ``step`` if it is still the
    run's step, commit the result, and park or release the lock. Returns :class:`Stale` when this
    task has nothing to do (another driver, a finished run, a step already done)."""
    run = ctx.ledger.get_close_run(close_run_id)
    if run.status != CloseStatus.RUNNING.value:
        return Stale(f"close run {close_run_id} is {run.status}")
    outcome = lock.acquire(token, close_run_id)
    if outcome == "busy":
        return Wait(BUSY_WAIT, "another worker holds the close lock of this period")
    if outcome == "stale":
        return Stale(f"another driver holds the close lock of close run {close_run_id}")
    run = ctx.ledger.get_close_run(close_run_id)
    if run.status != CloseStatus.RUNNING.value or run.step != step:
        lock.release(token)
        return Stale(f"close run {close_run_id} is {run.status} at step {run.step}, not {step}")
    ctx.heartbeat = throttled(lambda: lock.heartbeat(token, close_run_id), HEARTBEAT_EVERY, ctx.clock)
    ctx.crash(f"before:{step}")
    try:
        try:
            result = run_step(ctx, run, step)
        except LockLost as exc:
            return Stale(str(exc))
        except SQLAlchemyError:
            raise  # the ledger is unreachable: nothing can be recorded; the task is retried
        except Exception as exc:
            # A bug or an unexpected failure: record it so the run does not hang in `running`.
            log.exception("close step crashed", extra={"close_run": close_run_id, "step": step})
            problem = f"{type(exc).__name__}: {exc}"
            result = Stop(f"step {step} failed unexpectedly: {problem}. Run `{_rerun(run)}` again.")
        record_result(ctx, run, step, result)
    except Exception:
        # Free the lock for the retry or a resume (a kill - no exception - leaves it to expire).
        lock.release(token)
        raise
    if isinstance(result, Wait):
        lock.park(token, close_run_id, result.seconds)
    elif isinstance(result, Done) and result.next_step != FINISHED:
        lock.park(token, close_run_id, 0.0)
    else:
        lock.release(token)
    ctx.crash(f"after:{step}")
    return result


@dataclass(frozen=True)
class Resumed:
    """The run is driven by the new token from ``step``."""

    step: str


def take_over(ctx: CloseContext, lock: CloseLock, close_run_id: int, token: str) -> Resumed | Wait | Stale:
    """What a resume does: become the run's driver (waiting while another live process runs a
    step of it) and return the step to run. A needs-attention run is reopened: its stopped step
    starts afresh (attempt + 1; post, mark and verify restart at check)."""
    run = ctx.ledger.get_close_run(close_run_id)
    if run.status not in (CloseStatus.RUNNING.value, CloseStatus.NEEDS_ATTENTION.value):
        return Stale(f"close run {close_run_id} is {run.status}")
    outcome = lock.acquire(token, close_run_id, takeover=True)
    if outcome != "acquired":
        return Wait(BUSY_WAIT, "another worker is running a step of this close")
    try:
        step = _reopen(ctx, close_run_id)
    except Exception:
        lock.release(token)
        raise
    if step == FINISHED:
        lock.release(token)
        return Stale(f"close run {close_run_id} has finished")
    lock.park(token, close_run_id, 0.0)
    return Resumed(step)


def _reopen(ctx: CloseContext, close_run_id: int) -> str:
    """The step a resumed run continues at; a needs-attention run is set running again."""
    run = ctx.ledger.get_close_run(close_run_id)
    if run.status != CloseStatus.NEEDS_ATTENTION.value:
        return run.step
    step = "check" if run.step in _RESTART_AT_CHECK else run.step
    previous = _state(run, run.step)
    update: dict[str, Any] = {step: {"attempt": int(previous.get("attempt", 1)) + 1}, "transient": None}
    if step != run.step:
        # The stopped step keeps what it recorded (the mark step's in-flight entry) but not the stop.
        update[run.step] = {k: v for k, v in previous.items() if k != "stopped"}
    ctx.ledger.update_close_run(
        close_run_id, step=step, status=CloseStatus.RUNNING.value, error=None, details_update=update
    )
    ctx.ledger.note(f"close:{close_run_id}", f"resumed at {step} after needing attention", ctx.connection)
    return step


def chain_alive(lock: CloseLock, close_run_id: int) -> bool:
    """Whether a live chain drives this run now (a new close of the period then attaches to it)."""
    holder = lock.holder()
    return holder is not None and holder.run_id == close_run_id and lock.holder_alive(holder)


def stuck_runs(
    ledger: Ledger,
    connection: str,
    lock_for: Callable[[str], CloseLock],
    *,
    stale_after: float = 900.0,
    now: dt.datetime | None = None,
) -> list[CloseRun]:
    """The connection's running close runs that nothing drives: unchanged for ``stale_after``
    seconds and no live chain on their lock (the worker died and nobody re-enqueued them, or Redis
    lost the queue). ``lock_for(period_name)`` builds the period's lock. A sweep resumes them."""
    now = now or dt.datetime.now(dt.UTC)
    stuck = []
    for run in ledger.latest_close_runs(connection, limit=100):
        if run.status != CloseStatus.RUNNING.value:
            continue
        if (now - run.updated_at).total_seconds() < stale_after:
            continue
        if not chain_alive(lock_for(run.period_name), run.id or 0):
            stuck.append(run)
    return stuck


def open_close(
    ledger: Ledger, connection: str, period_name: str, *, allow_closed: bool, dry_run: bool
) -> tuple[CloseRun, bool]:
    """The open close run of the period (real or dry), or a new one at ``lookup``; returns
    ``(run, created)``. ``allow_closed`` given again is remembered on an existing run."""
    run, created = ledger.open_close_run(connection, period_name, allow_closed, dry_run, step=STEPS[0])
    if not created and allow_closed and not _allow_closed(run):
        run = ledger.update_close_run(run.id or 0, details_update={"allow_closed": True})
    return run, created


# -- progress, for the CLI ------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """Counts of a run's journal entries by ledger state."""

    entries: int
    skipped: int
    posted: int
    marked: int
    parked: int
    in_doubt: int


def progress(ledger: Ledger, run: CloseRun) -> Progress:
    numbers = _to_post(run)
    rows = _rows(ledger, run.connection, numbers) if not run.dry_run else {}
    by_state: dict[str, int] = {}
    for row in rows.values():
        by_state[row.state] = by_state.get(row.state, 0) + 1
    return Progress(
        entries=len(numbers),
        skipped=len(_skipped(run)),
        posted=by_state.get(RecordState.POSTED.value, 0) + by_state.get(RecordState.MARKED.value, 0),
        marked=by_state.get(RecordState.MARKED.value, 0),
        parked=by_state.get(RecordState.PARKED.value, 0),
        in_doubt=by_state.get(RecordState.POSTING.value, 0),
    )
