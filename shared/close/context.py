"""What every step works with: :class:`CloseContext`, the run's journal entries in the ledger,
and the command that runs a close again (every message that asks a person to act names it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlmodel import col, select

from shared.close import hooks
from shared.close.results import StopClose
from shared.close.state import JournalRunState, closed_period_allowed, step_state
from shared.erp.base import ErpTarget
from shared.ledger.models import CloseRun, ObjectType, RecordState, SyncRecord
from shared.ledger.repo import Ledger
from shared.mapping import Mapping as GlMapping
from shared.mapping import MappingFileError, load_mapping
from shared.notify import LogNotifier, Notifier
from shared.outbox import RetryPolicy, deliver_due
from shared.settings import Settings
from shared.zuora.client import ZuoraClient

JE = ObjectType.JOURNAL_ENTRY.value
POSTED_STATES = (RecordState.POSTED.value, RecordState.MARKED.value)

# How long one task may keep posting or marking before handing over to a fresh task.
STEP_BUDGET_SECONDS = 240.0


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
    (mapping file, transaction types), a notifier, a clock, the lock heartbeat, and ``reached``,
    called at each named point of the close (:mod:`shared.close.hooks`). ``deliver_notices`` is
    called after a notice was committed to the outbox (a worker enqueues its delivery task; left
    None, the notices due are delivered at once through ``notifier``)."""

    connection: str
    zuora: ZuoraClient
    erp: ErpTarget
    ledger: Ledger
    settings: Settings
    notifier: Notifier = field(default_factory=LogNotifier)
    erp_name: str = "the ERP"
    clock: Callable[[], float] = time.time
    heartbeat: Callable[[], None] = _noop
    reached: Callable[[str], None] = hooks.reached
    step_budget: float = STEP_BUDGET_SECONDS
    # Entries posted at a time, and entries marked at a time (None: as many as posted); see
    # :func:`shared.close.fanout.step_widths` for how a connection's limits give them.
    concurrency: int = 1
    mark_concurrency: int | None = None
    # The post step marks each entry it posts as soon as the entry is ``posted`` (False: the
    # mark step marks them all).
    mark_while_posting: bool = True
    deliver_notices: Callable[[], None] | None = None
    # The connection's maker-checker rule (shared.close.approval): none, close or all.
    approval: str = "none"
    _mapping: GlMapping | None = None

    def notices_recorded(self) -> None:
        """A notice was committed to the outbox: have it delivered (never raises for a failed
        delivery; the outbox keeps the notice and beat tries again)."""
        if self.deliver_notices is not None:
            self.deliver_notices()
            return
        deliver_due(self.ledger, self.notifier, policy=RetryPolicy.from_settings(self.settings))

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


def cli_arg(text: str) -> str:
    """``text`` quoted for a shell command line in a message (``"Dec'16"``)."""
    return json.dumps(text, ensure_ascii=False)


def rerun(run: CloseRun, *, allow_closed: bool = False) -> str:
    """The command that runs this close again (the same kind, the same flags)."""
    flags = " --allow-closed" if allow_closed or closed_period_allowed(run) else ""
    flags += " --dry-run" if run.dry_run else ""
    return f"ledgerbridge close {cli_arg(run.period_name)}{flags}"


def period_id(run: CloseRun) -> str:
    """The Zuora id of the run's accounting period (found by the lookup step)."""
    if not run.period_id:
        raise StopClose(f"close run {run.id} has no accounting period id; run the close again from the start")
    return run.period_id


def journal_run_number(run: CloseRun) -> str:
    """The journal run the close started; stops the close when there is none."""
    number = step_state(run, JournalRunState).number
    if not number:
        raise StopClose(f"close run {run.id} has no journal run; run the close again")
    return number


def entry_rows(ledger: Ledger, connection: str, numbers: Sequence[str]) -> dict[str, SyncRecord]:
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


def entry_row(ctx: CloseContext, number: str, rows: Mapping[str, SyncRecord] | None = None) -> SyncRecord:
    """The entry's ledger row: from ``rows`` (read by the step in one query) when given, else read
    now. A stale row is safe: every transition checks the row's version."""
    row = rows.get(number) if rows is not None else ctx.ledger.get_record(ctx.connection, JE, number)
    if row is None:
        raise StopClose(f"journal entry {number} is not in the ledger; run the close again to re-fetch it")
    return row
