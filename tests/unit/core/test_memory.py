from __future__ import annotations

import threading

import psutil
import pytest

from shared.memory import HeapTrimmer, release_free_heap


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_trims_at_most_once_per_interval():
    calls: list[float] = []
    clock = Clock()
    trimmer = HeapTrimmer(lambda: calls.append(clock.now), every=1.0, clock=clock)

    assert trimmer() is True
    clock.now += 0.5
    assert trimmer() is False
    clock.now += 0.5
    assert trimmer() is True
    assert calls == [100.0, 101.0]


def test_without_malloc_trim_it_does_nothing():
    trimmer = HeapTrimmer(None)
    assert trimmer.available is False
    assert trimmer() is False


def test_a_thread_that_comes_while_another_trims_goes_on_at_once():
    inside, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow_trim() -> None:
        calls.append(1)
        inside.set()
        assert release.wait(10)

    trimmer = HeapTrimmer(slow_trim, every=0.0)
    first = threading.Thread(target=trimmer)
    first.start()
    try:
        assert inside.wait(10)
        assert trimmer() is False  # does not wait for the first thread
    finally:
        release.set()
        first.join(10)
    assert calls == [1]


def test_glibc_gives_freed_pages_between_live_chunks_back():
    if not release_free_heap.available:
        pytest.skip("this C library has no malloc_trim")
    me = psutil.Process()
    # 100 MB in 10 kB chunks (below the mmap threshold: they come from the heap), one in 50 kept:
    # free() alone cannot shrink a heap whose top is still in use.
    chunks = [bytearray(10_000) for _ in range(10_000)]
    kept = chunks[::50]
    del chunks
    before = me.memory_info().rss
    trimmer = HeapTrimmer(release_free_heap._trim)
    assert trimmer() is True
    after = me.memory_info().rss
    assert before - after > 50 * 2**20, (before, after)
    assert len(kept) == 200
