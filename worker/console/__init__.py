"""The Finance console: server-rendered pages for the people who run month-end, served by the
``web`` process under ``/console`` (sign-in and roles, the overview, close runs and their approval,
parked and failed records and their retry, reconciliation and the evidence pack).

Modules: :mod:`.app` (the app, its errors, sign-in and the overview), :mod:`.closes` (close runs
and their approval, manual journal entries), :mod:`.records` (parked and failed records, periods
and their evidence), :mod:`.kit` (what the routes share: dependencies, sessions, CSRF, rendering,
the audit trail), :mod:`.auth` (sessions, CSRF tokens, sign-in), :mod:`.views` (what the pages
show, read from the ledger), :mod:`.charts` (the inline SVG chart); a close run's steps come from
:mod:`shared.close.step_lines`. ``templates/`` and ``static/`` hold the pages and their stylesheet
and script.
"""

from worker.console.app import PREFIX, ConsoleDeps, create_console

__all__ = ["PREFIX", "ConsoleDeps", "create_console"]
