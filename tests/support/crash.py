"""Killing a worker at a named point of the close, as a power cut would (for the tests only).

:func:`install_from_env` puts a hook on :data:`shared.close.hooks.on_point` that SIGKILLs the
process group of the calling process when the close reaches the point named by
``LEDGERBRIDGE_TEST_CRASH_AT`` (one of the points in :mod:`shared.close.hooks`). A worker started
in its own session then dies at that exact line. ``tests/support/crashing_app.py`` installs it
in a Celery worker; only the tests read the variable, the product never does.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Mapping

from shared.close import hooks

CRASH_ENV = "LEDGERBRIDGE_TEST_CRASH_AT"

log = logging.getLogger("ledgerbridge.tests.crash")


def kill_at(point: str) -> Callable[[str], None]:
    """A hook that SIGKILLs this process group when the close reaches ``point``."""

    def hook(reached: str) -> None:
        if reached == point:
            log.warning("test fault hook: killing the worker", extra={"crash_point": point})
            os.killpg(os.getpgrp(), signal.SIGKILL)

    return hook


def install_from_env(environ: Mapping[str, str] = os.environ) -> str | None:
    """Install :func:`kill_at` for the point ``environ`` names, if any; returns that point."""
    point = environ.get(CRASH_ENV) or None
    if point is not None:
        hooks.on_point = kill_at(point)
    return point
