"""The poll schedule of asynchronous Zuora jobs: few reads, little lateness."""

from __future__ import annotations

import pytest

from shared.close.polling import POLL_CAP, next_poll_in, poll_delay


def reads_until(duration: float) -> tuple[int, float]:
    """(status reads, seconds from the job's start to the read that sees it done)."""
    now, polls = 0.0, 0
    now += poll_delay(0, 0.0)
    while True:
        polls += 1
        if now >= duration:
            return polls, now
        now += poll_delay(polls, now)


def test_poll_delay_starts_at_half_a_second_then_reads_every_second():
    assert [poll_delay(n, 0.0) for n in range(6)] == [0.5, 1.0, 1.5, 2.0, 1.0, 1.0]


def test_poll_delay_grows_with_elapsed_time_up_to_the_cap():
    assert poll_delay(10, 50.0) == 7.5
    assert poll_delay(40, 3600.0) == POLL_CAP


@pytest.mark.parametrize("duration", [0.0, 0.4, 1.0, 2.5, 5.0, 10.0, 15.0])
def test_sandbox_length_job_takes_at_most_12_reads_and_is_seen_within_1_25_seconds(duration):
    polls, seen_at = reads_until(duration)
    assert polls <= 12
    assert seen_at - duration <= 1.25


def test_hour_long_job_is_read_rarely():
    polls, seen_at = reads_until(3600.0)
    assert polls <= 150
    assert seen_at - 3600.0 <= POLL_CAP


def test_reads_keep_to_the_schedule_counted_from_the_job_start():
    # Each read and its task take 0.08 s: the reads still land on the schedule's times.
    started, now, polls, reads = 0.0, poll_delay(0, 0.0), 0, []
    while now < 12.0:
        polls += 1
        reads.append(round(now - started, 2))
        now += 0.08
        now += next_poll_in(polls, now - started)
    assert reads == [0.5, 1.5, 3.0, 5.0, 6.0, 7.0, 8.05, 9.26, 10.65]


def test_a_job_waited_on_past_its_schedule_is_not_read_in_a_burst():
    # The worker was down for ten minutes after the second read.
    assert next_poll_in(2, 600.0) == poll_delay(2, 600.0) == 1.5
    assert next_poll_in(5, 600.0) == POLL_CAP
    assert next_poll_in(1, 1.49) == pytest.approx(0.05)
