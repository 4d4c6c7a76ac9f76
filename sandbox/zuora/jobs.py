"""Asynchronous jobs (trial balances, journal runs, cancellations) driven by a clock or by polls.

A job's phase is derived lazily from the clock: nothing runs in the background, so a sandbox in a
test never races a thread, and moving the clock (``POST /_sandbox/clock``) finishes jobs at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import JobTiming

PENDING, PROCESSING, DONE = "Pending", "Processing", "Done"


@dataclass
class Job:
    """One asynchronous job; ``outcome`` ("Completed" | "Error") is fixed when it starts."""

    started_at: float
    timing: JobTiming
    outcome: str = "Completed"
    message: str | None = None
    polls: int = 0
    processing_at: float | None = None
    done_at: float | None = None

    def poll(self) -> None:
        """Count one status read (only matters in poll mode)."""
        self.polls += 1

    def phase(self, now: float) -> str:
        """Pending, Processing or Done at ``now``; records when each phase was first reached."""
        if self.done_at is not None:
            return DONE
        if self.timing.polls is None:
            processing = self.started_at + self.timing.pending_seconds
            done = processing + self.timing.processing_seconds
            if now >= done:
                self.processing_at, self.done_at = processing, done
                return DONE
            if now >= processing:
                self.processing_at = processing
                return PROCESSING
            return PENDING
        target = self.timing.polls
        if self.polls >= target:
            self.processing_at = self.processing_at if self.processing_at is not None else now
            self.done_at = now
            return DONE
        if target >= 2 and self.polls >= target - 1:
            if self.processing_at is None:
                self.processing_at = now
            return PROCESSING
        return PENDING
