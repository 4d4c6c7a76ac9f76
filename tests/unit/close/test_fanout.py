"""The fan-out on its own: many items at a time, never more than the width, within a budget; the
first error stops what has not started and is raised once the started ones have finished."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from shared.close.fanout import each

CURRENT = contextvars.ContextVar("current", default="unset")


class Crash(BaseException):
    """A simulated process death: not an Exception."""


def never_late() -> float:
    return 0.0


def test_width_one_runs_every_item_in_order_in_the_callers_thread():
    seen: list[tuple[int, str]] = []

    done = each(
        [1, 2, 3],
        lambda n: seen.append((n, threading.current_thread().name)),
        width=1,
        clock=never_late,
        deadline=1.0,
    )

    assert done is True
    assert seen == [(n, threading.current_thread().name) for n in (1, 2, 3)]


@pytest.mark.parametrize("width", [2, 5])
def test_runs_width_items_at_a_time_and_never_more(width):
    lock = threading.Lock()
    running = [0]
    most = [0]
    finished: list[int] = []

    def work(n: int) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
            finished.append(n)

    assert each(list(range(12)), work, width=width, clock=never_late, deadline=1.0) is True
    assert sorted(finished) == list(range(12))
    assert most[0] == width


def test_items_run_in_a_copy_of_the_callers_context():
    seen: list[str] = []
    token = CURRENT.set("the caller's")
    try:
        each([1, 2, 3], lambda n: seen.append(CURRENT.get()), width=3, clock=never_late, deadline=1.0)
    finally:
        CURRENT.reset(token)

    assert seen == ["the caller's"] * 3


@pytest.mark.parametrize("width", [1, 3])
def test_past_the_deadline_only_the_first_width_items_run(width):
    ran: list[int] = []

    done = each(list(range(10)), ran.append, width=width, clock=lambda: 100.0, deadline=1.0)

    assert done is False
    assert sorted(ran) == list(range(width))


def test_an_error_stops_the_items_not_yet_started_and_waits_for_the_started_ones():
    failed = threading.Event()
    ran: list[int] = []

    def work(n: int) -> None:
        if n == 1:
            failed.set()
            raise ValueError("item 1")
        if n == 0:
            failed.wait(5)
            time.sleep(0.05)  # item 1's error is recorded before this one ends
        ran.append(n)

    with pytest.raises(ValueError, match="item 1"):
        each(list(range(10)), work, width=2, clock=never_late, deadline=1.0)
    assert ran == [0]  # finished although the other failed; nothing after them started


def test_width_one_stops_at_the_first_error():
    ran: list[int] = []

    def work(n: int) -> None:
        if n == 2:
            raise ValueError("item 2")
        ran.append(n)

    with pytest.raises(ValueError, match="item 2"):
        each(list(range(5)), work, width=1, clock=never_late, deadline=1.0)
    assert ran == [0, 1]


@pytest.mark.parametrize(("raise_first", "expected"), [((), ValueError), ((KeyError,), KeyError)])
def test_of_several_errors_the_preferred_type_is_raised_else_the_first_in_item_order(raise_first, expected):
    both_started = threading.Barrier(2, timeout=5)

    def work(n: int) -> None:
        both_started.wait()
        if n == 0:
            time.sleep(0.02)  # raised last, but first in item order
            raise ValueError("item 0")
        raise KeyError("item 1")

    with pytest.raises(expected):
        each([0, 1], work, width=2, clock=never_late, deadline=1.0, raise_first=raise_first)


@pytest.mark.parametrize("width", [1, 3])
def test_a_simulated_crash_propagates(width):
    def work(n: int) -> None:
        if n == 1:
            raise Crash

    with pytest.raises(Crash):
        each([0, 1, 2], work, width=width, clock=never_late, deadline=1.0)


def test_no_items_is_done():
    assert each([], lambda n: None, width=4, clock=never_late, deadline=0.0) is True
