"""The product's Celery app, for a worker that a test kills at a named point of the close.

``celery -A tests.support.crashing_app worker ...`` with ``LEDGERBRIDGE_TEST_CRASH_AT=<point>`` in
its environment runs the product's worker (:data:`worker.app.app`, every task as deployed) with
the hook of :mod:`tests.support.crash` installed. It is installed when Celery imports this module
in the worker's main process, before the pool's processes are forked from it, so they inherit it.
"""

from __future__ import annotations

from tests.support.crash import install_from_env
from worker.app import app

install_from_env()

__all__ = ["app"]
