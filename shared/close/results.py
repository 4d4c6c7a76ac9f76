"""The steps of a close by name, and what running one returns.

A step returns :class:`Done` (the run moves on), :class:`Wait` (run the same step again later) or
:class:`Stop` (a person must act, or a dry run ended); a step raises :class:`StopClose` where a
``return`` would be awkward. The driver adds :class:`Stale` for a task that has nothing to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.ledger.models import CloseRun, CloseStatus

if TYPE_CHECKING:
    from shared.close.state import StepState

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


def steps_of(run: CloseRun) -> tuple[str, ...]:
    """The steps this run goes through (a dry run ends with ``discard``)."""
    return DRY_RUN_STEPS if run.dry_run else STEPS


@dataclass(frozen=True)
class Done:
    """The step finished; the run moves on to ``next_step``. ``state``: what the step found, merged
    into its stored state (it must be the step's own state model)."""

    next_step: str
    state: StepState | None = None


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
