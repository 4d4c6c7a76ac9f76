"""Handing the heap a process has freed back to the operating system.

glibc's ``malloc`` keeps what a process frees in its arenas for later use and returns only the
free top of each arena. A worker that streams pages and posts batches for a long time frees
everything it allocated, yet its resident size creeps up with the length of the run: the free
chunks left between live ones stay resident. ``malloc_trim(0)`` gives every whole free page of
every arena back (``madvise(MADV_DONTNEED)``), so a process's resident size follows what it holds
now, not what it once held (docs/architecture.md, "Item-level pull").

:func:`release_free_heap` does that at most once per :data:`TRIM_INTERVAL_SECONDS` in a process;
workers call it after each task and pulls after each page. Where the C library has no
``malloc_trim`` (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable

TRIM_INTERVAL_SECONDS = 1.0


def _libc_trim() -> Callable[[], object] | None:
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # pragma: no cover - every CPython host can open its own symbols
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


class HeapTrimmer:
    """Calls ``trim`` at most once per ``every`` seconds of ``clock``, from any thread; the
    threads that come while one trims, or too soon after, go on at once."""

    def __init__(
        self,
        trim: Callable[[], object] | None,
        every: float = TRIM_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trim = trim
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None

    @property
    def available(self) -> bool:
        return self._trim is not None

    def __call__(self) -> bool:
        """True when this call trimmed."""
        if self._trim is None or not self._lock.acquire(blocking=False):
            return False
        try:
            now = self._clock()
            if self._last is not None and now - self._last < self._every:
                return False
            self._last = now
            self._trim()
            return True
        finally:
            self._lock.release()


release_free_heap = HeapTrimmer(_libc_trim())
