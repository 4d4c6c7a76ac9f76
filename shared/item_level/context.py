"""What every item-level flow function works with: the ports of one connection and the knobs.

:class:`ItemContext` is built once per task from the composition root (``shared.ports``); tests
build it by hand with in-process clients. :class:`Dispatcher` is how a flow hands work to other
workers (``worker/tasks`` implements it with Celery; the tests' doubles in ``tests/support`` run
the work inline or record it), so no flow imports Celery. Dispatching happens only after the ledger transaction that makes the work
visible has committed: a lost message delays the work until the sweep finds the row, it never
loses it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from shared.erp.base import ErpTarget
from shared.ledger.models import utcnow
from shared.ledger.repo import Ledger
from shared.ledger.states import PENDING_GRACE
from shared.mapping import Mapping, load_mapping
from shared.settings import Settings, SettingsError
from shared.zuora.client import ZuoraClient

# Posting threads of one worker process at most, shared by all its tasks (the ERP's licence,
# ``LEDGERBRIDGE_ACUMATICA_MAX_CONCURRENT``, up to this). The ERP client's Redis limiter caps the
# fleet at the licence; this bounds one process. More did not post faster on 2 cores: the 21,500-
# record backlog ran at 78 records/s with 8 per process and 71 with 32 (the interpreter lock and
# the ledger's write turns, not the ERP, set the pace there).
MAX_POST_THREADS = 8
# The shortest wait for a document a payment or credit applies to that the ledger has not seen yet:
# short pull intervals would otherwise give up on it while a killed pull is being redone.
APPLY_WAIT_FLOOR_SECONDS = 600


class Dispatcher(Protocol):
    """Hands work to the fleet. Implementations must not raise for a lost broker: they log, and
    the sweep re-drives the rows later."""

    def post(self, connection: str, record_ids: Sequence[int], *, countdown: float = 0.0) -> None:
        """Post these ledger rows (``post_records``) soon."""
        ...

    def mark(self, connection: str, stream: str) -> None:
        """Mark the stream's posted rows transferred (``mark_stream``) soon; may be debounced."""
        ...

    def callouts(self, connection: str, callout_ids: Sequence[int]) -> None:
        """Process these received callouts (``process_callouts``) soon."""
        ...

    def waiting(self) -> int | None:
        """How many dispatched tasks wait to be taken (0 when none); None when it cannot tell."""
        ...


@dataclass(frozen=True)
class Options:
    """The item-level knobs (``LEDGERBRIDGE_*``, see :class:`~shared.settings.Settings`)."""

    overlap: timedelta = timedelta(minutes=5)
    posting_timeout: timedelta = timedelta(minutes=15)
    # A live worker that lost the ERP's answer looks the document up this soon, then at growing
    # intervals; not found, it is created again only ``in_doubt_quiet`` after the loss.
    in_doubt_first_look: timedelta = timedelta(seconds=2)
    in_doubt_quiet: timedelta = timedelta(seconds=120)
    sweep_grace: timedelta = PENDING_GRACE
    release: bool = False
    push_enabled: bool = False
    push_grace: timedelta = timedelta(minutes=2)
    erp_concurrency: int = 2
    max_rejections: int = 5
    short_wait: timedelta = timedelta(seconds=3)
    long_wait: timedelta = timedelta(minutes=10)
    mark_retry: timedelta = timedelta(minutes=5)
    # How long a payment, refund or credit memo waits for a document it applies to that the
    # ledger has not seen yet, before it is posted without that application.
    apply_wait: timedelta = timedelta(minutes=10)
    max_pages: int = 200

    @classmethod
    def from_settings(
        cls, settings: Settings, *, erp_concurrency: int = 2, push_enabled: bool | None = None
    ) -> Options:
        """The knobs from the environment; ``push_enabled`` (default: the default connection has a
        callout secret) says whether the connection's records also arrive by callout."""
        return cls(
            overlap=timedelta(seconds=settings.pull_overlap_seconds),
            posting_timeout=timedelta(seconds=settings.posting_timeout_seconds),
            in_doubt_quiet=timedelta(seconds=settings.in_doubt_quiet_seconds),
            sweep_grace=timedelta(seconds=settings.sweep_grace_seconds),
            release=settings.item_release,
            push_enabled=settings.callout_hmac_secret is not None if push_enabled is None else push_enabled,
            erp_concurrency=max(1, min(erp_concurrency, MAX_POST_THREADS)),
            long_wait=timedelta(seconds=max(settings.sweep_grace_seconds, 60)),
            mark_retry=timedelta(seconds=max(settings.sweep_grace_seconds, 30)),
            # A whole pull of the target's stream after the row came in ends the wait sooner
            # (planner._pulled_since); this bounds it when pulls keep failing (killed workers).
            apply_wait=timedelta(
                seconds=max(
                    APPLY_WAIT_FLOOR_SECONDS,
                    2 * max([settings.pull_interval_seconds, *settings.stream_intervals.values()]),
                )
            ),
            max_pages=settings.pull_max_pages,
        )

    @property
    def due_shift(self) -> timedelta:
        """How much earlier than the ledger's own ``next_attempt_at`` the sweep treats pending and
        posted rows as due. The ledger schedules them :data:`~shared.ledger.states.PENDING_GRACE`
        ahead; a shorter ``LEDGERBRIDGE_SWEEP_GRACE_SECONDS`` re-drives them sooner. Every time
        this package writes into ``next_attempt_at`` of a pending or posted row it adds the same
        shift, so a wait of ``d`` still lasts ``d`` under the shifted clock."""
        return max(timedelta(0), PENDING_GRACE - self.sweep_grace)


@dataclass
class ItemContext:
    """The ports and knobs of one connection for the item-level flows."""

    connection: str
    zuora: ZuoraClient
    erp: ErpTarget
    ledger: Ledger
    mapping: Mapping
    dispatch: Dispatcher
    options: Options = field(default_factory=Options)
    clock: Callable[[], datetime] = utcnow

    def now(self) -> datetime:
        return self.clock()

    def shifted(self, at: datetime) -> datetime:
        """``at`` on the ledger's clock for pending/posted rows (see :attr:`Options.due_shift`)."""
        return at + self.options.due_shift


_mapping_lock = threading.Lock()
_mappings: dict[tuple[str, float], Mapping] = {}


def mapping_from_settings(settings: Settings) -> Mapping:
    """The mapping file named by ``LEDGERBRIDGE_MAPPING_FILE``, read once per process and again
    when the file changes (its mtime). Raises :class:`SettingsError` when it is not set and
    :class:`~shared.mapping.MappingFileError` when it is invalid."""
    if settings.mapping_file is None:
        raise SettingsError(
            "LEDGERBRIDGE_MAPPING_FILE is not set: the item-level sync needs the mapping file to turn "
            "Zuora records into ERP documents"
        )
    path = Path(settings.mapping_file)
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = -1.0  # load_mapping names the missing file
    key = (str(path.resolve()), mtime)
    with _mapping_lock:
        found = _mappings.get(key)
        if found is None:
            found = load_mapping(path)
            _mappings.clear()
            _mappings[key] = found
        return found


def ceiling(run_started: datetime, options: Options) -> datetime:
    """The highest a mark may move in a run that started at ``run_started``."""
    return run_started - options.overlap
