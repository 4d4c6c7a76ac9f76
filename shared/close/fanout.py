"""Run one piece of work per item, several at a time, within a time budget: how the post and mark
steps keep many entries in flight, and how wide they go.

Nothing here knows about the close: :func:`each` takes any items, work, clock and deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import TypeVar

# Entries in flight in one step at most: a step runs in one worker process, and past about 20
# threads its interpreter lock, not the APIs, sets the pace (509 entries took 7.5 s to post at 32
# in flight against 5.6-6.0 s at 20, on 2 cores with Zuora at 50 ms and Acumatica at 100 ms).
MAX_CONCURRENCY = 20

T = TypeVar("T")


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


def each(
    items: Sequence[T],
    work: Callable[[T], None],
    *,
    width: int,
    clock: Callable[[], float],
    deadline: float,
    raise_first: tuple[type[Exception], ...] = (),
) -> bool:
    """Run ``work`` on each of ``items``, ``width`` at a time (in the caller's thread when 1; else
    in threads that each run in a copy of the caller's context variables).

    The first ``width`` items always run; a later one does not start once ``clock()`` is past
    ``deadline``, nor after any item raised. Returns True when every item ran. When items raised,
    the first error is raised once every started item has finished - the first of the
    ``raise_first`` types if any was raised, else the first in item order; a BaseException that
    is not an Exception (a simulated crash) is raised like any other."""
    width = max(1, width)
    stop = threading.Event()

    def one(position: int, item: T) -> bool:
        if stop.is_set() or (position >= width and clock() > deadline):
            return False
        try:
            work(item)
        except BaseException:
            stop.set()
            raise
        return True

    if width == 1:
        return all([one(position, item) for position, item in enumerate(items)])
    errors: list[BaseException] = []
    done = True
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="close") as pool:
        futures = [pool.submit(copy_context().run, one, i, item) for i, item in enumerate(items)]
        for future in futures:
            error = future.exception()
            if error is not None:
                errors.append(error)
            elif not future.result():
                done = False
    if errors:
        raise next((e for e in errors if isinstance(e, raise_first)), errors[0])
    return done
