"""The Finance console: server-rendered pages for the people who run month-end, served by the
``web`` process under ``/console`` (sign-in and roles, the overview, close runs and their approval,
parked and failed records and their retry, reconciliation and the evidence pack).

Modules: :mod:`.app` (the routes), :mod:`.auth` (sessions, CSRF, sign-in), :mod:`.views` (what
the pages show, read from the ledger), :mod:`.steps` (a close run's steps), :mod:`.charts` (the
inline SVG chart); ``templates/`` and ``static/`` hold the pages and their stylesheet and script.
"""

from worker.console.app import PREFIX, ConsoleDeps, create_console

__all__ = ["PREFIX", "ConsoleDeps", "create_console"]
