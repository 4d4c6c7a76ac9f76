"""What each step of a close has recorded, typed: one pydantic model per step.

A close run keeps each step's state in ``CloseRun.details[<step>]`` (a JSON column), beside three
entries of the run's own: ``run_attempt`` (which attempt of the run this is, :class:`AttemptState`),
``transient`` (the temporary failures in a row, :class:`TransientState`) and ``allow_closed`` (a
flag, :func:`closed_period_allowed`). Nothing else in the close touches
``details``: a step reads its state with :func:`step_state`, changes attributes (validated on
assignment; a misspelt name is an error, not a silent ``None``) and writes it back whole with
:func:`save_state`.

The stored shape is the one the close has always written, key for key: a model stores only the
fields that were read from the run or set since (``exclude_unset``), so a key a step never wrote
stays absent, and runs recorded before these models existed load as they are. A model refuses
keys it does not know (``extra="forbid"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.ledger.models import CloseRun

if TYPE_CHECKING:
    from shared.ledger.repo import Ledger


class Stored(BaseModel):
    """A part of ``CloseRun.details``, kept under :attr:`key`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    key: ClassVar[str]

    def stored(self) -> dict[str, Any]:
        """The JSON value written under :attr:`key`: the fields set so far, by their stored names."""
        return self.model_dump(mode="python", by_alias=True, exclude_unset=True)

    def merged(self, other: Self) -> Self:
        """This state with every field ``other`` has set taken from ``other`` (same model only)."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        return self.model_validate({**self.stored(), **other.stored()})

    def without(self, *names: str) -> Self:
        """This state with the fields ``names`` unset: absent from what is stored."""
        unknown = set(names) - set(type(self).model_fields)
        if unknown:
            raise AttributeError(f"{type(self).__name__} has no field {', '.join(sorted(unknown))}")
        data = self.model_dump(mode="python", by_alias=True, exclude_unset=True, exclude=set(names))
        return self.model_validate(data)


class _Part(BaseModel):
    """A value inside a step's state; every field is required, so each is always stored."""

    model_config = ConfigDict(extra="forbid")


class StepState(Stored):
    """What every step records: its attempt (1 until a person reruns a stopped close), when it
    finished, and why it stopped."""

    attempt: int = 1
    done_at: str | None = None
    stopped: str | None = None


class JobState(StepState):
    """A step that waits for an asynchronous Zuora job: how often and since when it was read."""

    job_started_at: float | None = None
    polls: int = 0
    seen_running: bool = False


class LookupState(StepState):
    key: ClassVar[str] = "lookup"
    period_id: str | None = None
    status: str | None = None
    start_date: str | None = None
    end_date: str | None = None
    skipped: str | None = None


class TrialBalanceState(JobState):
    key: ClassVar[str] = "trial_balance"
    requested: bool = False
    error_message: str | None = Field(default=None, alias="runTrialBalanceErrorMessage")
    completed_at: str | None = None
    ours: bool | None = None
    skipped: str | None = None


class ClosePeriodState(JobState):
    key: ClassVar[str] = "close_period"
    requested: bool = False
    previous_end: str | None = None
    error_message: str | None = Field(default=None, alias="runTrialBalanceErrorMessage")
    closed: bool | None = None
    ours: bool | None = None
    skipped: str | None = None


class JournalRunState(JobState):
    key: ClassVar[str] = "journal_run"
    transaction_types: list[str] | None = None
    journal_entry_date: str | None = None
    number: str | None = None
    status: str | None = None
    total_entries: int | None = None


class FetchState(StepState):
    key: ClassVar[str] = "fetch"
    journal_run: str | None = None
    numbers: list[str] = Field(default_factory=list)
    count: int | None = None
    pages: int | None = None


class PreviewLine(_Part):
    account: str
    subaccount: str | None
    debit: Decimal
    credit: Decimal
    description: str | None


class PreviewEntry(_Part):
    """One journal a dry run would post."""

    number: str
    date: str
    currency: str
    description: str | None
    debit: Decimal
    credit: Decimal
    lines: list[PreviewLine]


class DebitCredit(_Part):
    debit: Decimal
    credit: Decimal


class CheckState(StepState):
    key: ClassVar[str] = "check"
    entries: int | None = None
    skipped: dict[str, str] = Field(default_factory=dict)
    bad: dict[str, list[str]] = Field(default_factory=dict)
    preview: list[PreviewEntry] | None = None
    totals: dict[str, DebitCredit] | None = None


class PostState(StepState):
    key: ClassVar[str] = "post"
    entries: int | None = None


class MarkState(StepState):
    key: ClassVar[str] = "mark"
    # The entries whose Yes may have gone out without the ledger showing them marked.
    inflight: list[str] | None = None
    entries: int | None = None

    @field_validator("inflight", mode="before")
    @classmethod
    def _one_entry(cls, value: object) -> object:
        # Runs recorded before several entries were marked at once kept one number here.
        return [value] if isinstance(value, str) else value


class TotalsRow(_Part):
    account: str
    currency: str
    debit: Decimal
    credit: Decimal


class VerifyState(StepState):
    key: ClassVar[str] = "verify"
    entries: int | None = None
    zuora_totals: list[TotalsRow] | None = None
    misses: list[str] = Field(default_factory=list)


class ReconcileLine(_Part):
    account: str
    currency: str
    zuora_debit: Decimal
    zuora_credit: Decimal
    ledger_debit: Decimal
    ledger_credit: Decimal
    erp_debit: Decimal
    erp_credit: Decimal


class ReconcileState(StepState):
    key: ClassVar[str] = "reconcile"
    lines: list[ReconcileLine] = Field(default_factory=list)
    differences: list[ReconcileLine] = Field(default_factory=list)
    entries: int | None = None


class DiscardState(JobState):
    key: ClassVar[str] = "discard"
    requested: bool = False
    cancelled: str | None = None


class AttemptState(Stored):
    """The run's attempt: 1 from its opening; reopening a run that needed attention starts the next
    one (``started_at``, ISO 8601 UTC). Runs recorded before attempts were counted have none
    stored and are on attempt 1 until they are reopened."""

    key: ClassVar[str] = "run_attempt"
    number: int = 1
    started_at: str | None = None


class AccountTotal(_Part):
    """Debit and credit of one (ERP account, currency) over what a close will post."""

    account: str
    currency: str
    debit: Decimal
    credit: Decimal


class ApprovalDecision(_Part):
    """One person's decision on what a close will post (:mod:`shared.close.approval`)."""

    user: str
    decision: str  # approved | rejected
    comment: str
    at: str
    attempt: int
    # The fingerprint of each journal approved (none for a rejection).
    journals: list[str]


class ApprovalState(Stored):
    """Maker-checker (:mod:`shared.close.approval`): who started the close, and - when the
    connection asks for approval - what the close will post as the check left it (``entries``,
    ``totals``, their ``fingerprint``), when that was asked, on which attempt, every decision
    taken, and the fingerprint last approved (``approved``)."""

    key: ClassVar[str] = "approval"
    started_by: str | None = None
    requested_at: str | None = None
    attempt: int | None = None
    fingerprint: str | None = None
    entries: list[PreviewEntry] = Field(default_factory=list)
    totals: list[AccountTotal] = Field(default_factory=list)
    approved: str | None = None
    decisions: list[ApprovalDecision] = Field(default_factory=list)


class TransientState(Stored):
    """The temporary failures (5xx, timeouts, rate limits) of ``step`` in a row."""

    key: ClassVar[str] = "transient"
    step: str = ""
    attempts: int = 0
    error: str = ""


STATE_MODELS: dict[str, type[StepState]] = {
    model.key: model
    for model in (
        LookupState,
        TrialBalanceState,
        ClosePeriodState,
        JournalRunState,
        FetchState,
        CheckState,
        PostState,
        MarkState,
        VerifyState,
        ReconcileState,
        DiscardState,
    )
}

S = TypeVar("S", bound=Stored)


def stored_state(run: CloseRun, model: type[S]) -> S | None:
    """The state ``model`` stored in the run, or None when nothing (or null) is stored."""
    value = run.details.get(model.key)
    return model.model_validate(value) if isinstance(value, Mapping) else None


def step_state(run: CloseRun, model: type[S]) -> S:
    """The state ``model`` stored in the run; a fresh (empty) one when nothing is stored."""
    found = stored_state(run, model)
    return model() if found is None else found


def details_update(*states: Stored, cleared: Iterable[type[Stored]] = ()) -> dict[str, Any]:
    """The ``details_update`` of :meth:`Ledger.update_close_run` that writes each of ``states``
    whole under its key and stores null under the keys of ``cleared``."""
    update: dict[str, Any] = {state.key: state.stored() for state in states}
    update.update({model.key: None for model in cleared})
    return update


class _WithLedger(Protocol):
    @property
    def ledger(self) -> Ledger: ...


def save_state(ctx: _WithLedger, run: CloseRun, state: Stored) -> CloseRun:
    """Write ``state`` under its key of the run (replacing what was there) and commit; returns the
    run as stored now. Only the holder of the close lock writes."""
    return ctx.ledger.update_close_run(run.id or 0, details_update=details_update(state))


# The one entry of details that is not a dict: set when the close of an existing run is started
# again with --allow-closed (the run's column keeps the flag it was opened with).
_ALLOW_CLOSED = "allow_closed"


def closed_period_allowed(run: CloseRun) -> bool:
    """Whether the run may go on with an already Closed period."""
    return bool(run.allow_closed or run.details.get(_ALLOW_CLOSED))


def remember_allow_closed(ledger: Ledger, run: CloseRun) -> CloseRun:
    """Record that the run may go on with an already Closed period."""
    return ledger.update_close_run(run.id or 0, details_update={_ALLOW_CLOSED: True})


# -- what later steps read -------------------------------------------------------------------


def journal_numbers(run: CloseRun) -> list[str]:
    """The JE numbers the fetch step found, in Zuora's order."""
    return step_state(run, FetchState).numbers


def skipped_entries(run: CloseRun) -> dict[str, str]:
    """The entries the check step leaves out (Cancelled, Ignore), with the reason."""
    return step_state(run, CheckState).skipped


def entries_to_post(run: CloseRun) -> list[str]:
    """The JE numbers the close posts and marks: every fetched entry not skipped."""
    skipped = skipped_entries(run)
    return [number for number in journal_numbers(run) if number not in skipped]
