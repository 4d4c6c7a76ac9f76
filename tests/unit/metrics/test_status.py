"""``ledgerbridge status`` at a glance: per stream the mark and its lag, counts by state and the
last error; the open close runs with their step; ``--json`` for scripts."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from cli.main import app
from shared import ports
from shared.ledger.repo import Ledger
from shared.metrics import format_lag, lag_seconds


def status(ledger: Ledger, *args: str):
    env: dict[str, str | None] = {
        k: None
        for k in os.environ
        if k.startswith("LEDGERBRIDGE_") and not k.startswith("LEDGERBRIDGE_TEST_")
    }
    env.update(
        LEDGERBRIDGE_DATABASE_URL=str(ledger.engine.url), LEDGERBRIDGE_CONNECTION="acme", COLUMNS="200"
    )
    ports.reset_for_tests()
    try:
        return CliRunner().invoke(app, ["status", *args], env=env)
    finally:
        ports.reset_for_tests()


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "-"),
        (0.4, "0s"),
        (119, "119s"),
        (120, "2m"),
        (7199, "119m"),
        (7200, "2h00m"),
        (90061, "25h01m"),
        (3 * 86400, "3d"),
    ],
)
def test_lag_is_shown_in_a_unit_that_reads_at_a_glance(seconds, shown):
    assert format_lag(seconds) == shown


def test_lag_is_now_minus_the_mark():
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert lag_seconds(now - timedelta(minutes=7), now) == 420.0
    assert lag_seconds(None, now) is None
    assert lag_seconds(now + timedelta(seconds=5), now) == 0.0  # a mark never lags negatively


def test_status_json_has_each_streams_lag_and_the_open_close_runs(ledger):
    mark = datetime.now(UTC) - timedelta(minutes=10)
    ledger.advance_mark("acme", "invoices", mark)
    ledger.finish_stream_run("acme", "invoices", status="failed", error="Zuora answered 503")
    stopped, _ = ledger.open_close_run("acme", "December 2024", step="check")
    ledger.update_close_run(stopped.id or 0, status="needs_attention", error="2 entries parked")
    finished, _ = ledger.open_close_run("acme", "November 2024")
    ledger.update_close_run(finished.id or 0, status="done")

    result = status(ledger, "--json")

    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    invoices = next(s for s in data["streams"] if s["stream"] == "invoices")
    assert 600 <= invoices["lag_seconds"] < 700
    assert invoices["last_error"] == "Zuora answered 503"
    assert next(s for s in data["streams"] if s["stream"] == "payments")["lag_seconds"] is None
    assert [(r["id"], r["period"], r["step"], r["status"], r["error"]) for r in data["close_runs"]] == [
        (stopped.id, "December 2024", "check", "needs_attention", "2 entries parked")
    ]


def test_status_table_shows_the_lag_and_the_open_close_runs_with_their_step(ledger):
    ledger.advance_mark("acme", "invoices", datetime.now(UTC) - timedelta(minutes=10))
    ledger.open_close_run("acme", "December 2024", step="journal_run")

    result = status(ledger)

    assert result.exit_code == 0, result.output
    assert "lag" in result.output
    assert "10m" in result.output
    assert "open close runs of connection acme" in result.output
    line = next(line for line in result.output.splitlines() if "December 2024" in line)
    assert "journal_run" in line and "running" in line


def test_status_without_open_close_runs_says_so(ledger):
    result = status(ledger)

    assert result.exit_code == 0, result.output
    assert "no open close runs" in result.output


def _undelivered_notice(ledger: Ledger, period: str, error: str | None) -> None:
    from shared.ledger.notices import NewNotice

    run, _ = ledger.open_close_run("acme", period, step="reconcile")
    key = f"close:{run.id}:done:attempt-1"
    notice = NewNotice(
        connection="acme", subject=f"close:{run.id}", event="close.completed", dedupe_key=key, payload={}
    )
    ledger.update_close_run(run.id or 0, status="done", notice=lambda changed: notice)
    if error is not None:
        (row,) = ledger.notices_of(f"close:{run.id}")
        claimed = ledger.claim_notice(row.id or 0, lease=60)
        assert claimed is not None
        ledger.notice_failed(row.id or 0, attempt=1, error=error, retry_at=datetime.now(UTC))


def test_status_shows_the_undelivered_notices_with_the_oldest_and_the_last_error(ledger):
    _undelivered_notice(ledger, "November 2024", None)
    _undelivered_notice(ledger, "December 2024", "HTTP 500: webhook down")
    oldest = ledger.undelivered_notices("acme").oldest
    assert oldest is not None

    table = status(ledger)
    as_json = status(ledger, "--json")

    assert table.exit_code == 0, table.output
    assert (
        f"notices: 2 undelivered, the oldest from {oldest:%Y-%m-%d %H:%M:%S}; last error: HTTP 500: webhook down"
        in table.output
    )
    assert json.loads(as_json.output)["undelivered_notices"] == {
        "count": 2,
        "oldest": oldest.isoformat(),
        "last_error": "HTTP 500: webhook down",
    }


def test_status_says_when_every_notice_is_delivered(ledger):
    result = status(ledger)

    assert "notices: all delivered" in result.output
    assert json.loads(status(ledger, "--json").output)["undelivered_notices"] == {
        "count": 0,
        "oldest": None,
        "last_error": None,
    }
