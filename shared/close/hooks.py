"""Named points the close passes, for code that must act at an exact line of it.

The close calls :func:`reached` with the name of each point it passes:

* ``before:<step>`` and ``after:<step>``: around each step task (:func:`~shared.close.driver.drive_step`);
* ``trial_balance:started``, ``close_period:closed``, ``journal_run:created``: right after the
  Zuora request that starts the job;
* ``posting:<n>`` (``posting`` committed, before the ERP call), ``posted:<n>`` (the ERP answered,
  before ``posted`` is committed), ``marking:<n>`` (the Yes PUT answered, before ``marked`` is
  committed), where ``n`` is the entry's position in the run (from 1).

Nothing is installed in production: :data:`on_point` ignores every point. The integration tests
set it in a worker process they start (``tests/support/crashing_app.py``) to kill the worker at
one point, as a power cut would; the in-process tests give a :class:`~shared.close.context.CloseContext`
a ``reached`` of their own instead.
"""

from __future__ import annotations

from collections.abc import Callable


def _ignore(point: str) -> None:
    return None


on_point: Callable[[str], None] = _ignore
"""Called with each point's name; replace it to act at a point (it must not return a value)."""


def reached(point: str) -> None:
    """The close is at ``point``: call the :data:`on_point` installed now."""
    on_point(point)
