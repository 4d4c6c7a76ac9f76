"""The console's pieces without HTTP: signed sessions, CSRF comparison, the sign-in redirect target,
the chart and the reason filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from shared.metrics import format_lag
from worker.console import auth
from worker.console.app import safe_next
from worker.console.charts import throughput_svg
from worker.console.views import Chart, reason_of

SECRET = "a console secret of more than thirty-two characters"
IDLE = timedelta(minutes=480)


def test_a_session_round_trips_and_expires_when_idle_or_too_old():
    signer = auth.Signer(SECRET)
    start = 1_800_000_000.0
    session = auth.new_session("ana", start)
    token = signer.dump(session)
    assert token.count(".") >= 2  # payload, timestamp, signature
    assert signer.load(token, idle=IDLE, now=start + 60) == session
    assert signer.load(token, idle=IDLE, now=start + IDLE.total_seconds() + 1) is None
    kept_alive = session.touched(start + 20 * 3600)
    assert signer.load(signer.dump(kept_alive), idle=IDLE, now=start + 23 * 3600) == kept_alive
    assert signer.load(signer.dump(kept_alive), idle=IDLE, now=start + 24 * 3600 + 1) is None  # MAX_SESSION
    assert auth.Signer(SECRET + "x").load(token, idle=IDLE, now=start) is None
    assert signer.load("", idle=IDLE, now=start) is None
    assert signer.load("garbage.token.value", idle=IDLE, now=start) is None


def test_the_sign_in_forms_token_lives_in_a_cookie_of_its_own():
    signer = auth.Signer(SECRET)
    cookie, token = signer.login_cookie()
    assert cookie != token
    assert signer.login_token(cookie) == token
    assert auth.Signer("another secret that is long enough!!").login_token(cookie) is None
    assert signer.login_token(None) is None
    # A session cookie is no sign-in cookie (different salts), and the reverse.
    assert signer.login_token(signer.dump(auth.new_session("ana", 1.0))) is None


def test_csrf_tokens_compare_exactly():
    assert auth.tokens_match("abc", "abc")
    assert not auth.tokens_match("abc", "abd")
    assert not auth.tokens_match("abc", "")
    assert not auth.tokens_match(None, "abc")
    assert not auth.tokens_match("", "")


def test_after_sign_in_only_a_console_path_is_followed():
    assert safe_next("/console/records?stream=invoices") == "/console/records?stream=invoices"
    for target in (
        None,
        "",
        "https://evil.example/console",
        "//evil.example/console",
        "/other",
        "/console/login",
        "/console\\@evil",
    ):
        assert safe_next(target) == "/console/"


def test_the_chart_draws_bars_and_a_lag_line_with_a_text_description():
    start = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
    posted = [0] * 24
    posted[3], posted[4] = 10, 5
    lag: list[float | None] = [None] * 24
    lag[3], lag[4] = 60.0, 7200.0
    svg = str(throughput_svg(Chart(start=start, posted=posted, lag=lag), label='a"b'))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<rect") == 2 and "<polyline" in svg
    assert "15 records posted in the last 24 hours" in svg and "2h00m" in svg
    assert 'a"b' not in svg  # the label is escaped
    empty = str(throughput_svg(Chart(start=start, posted=[0] * 24, lag=[None] * 24), label="x"))
    assert "<rect" not in empty and "0 records posted" in empty


def test_reasons_group_records_that_failed_the_same_way():
    one = reason_of("no ERP account mapped for accounting code 4999 on invoice INV-00012")
    two = reason_of("no ERP account mapped for accounting code 5001 on invoice INV-00987")
    assert one == two and "no ERP account mapped" in one
    assert reason_of(None) == "no reason recorded"
    assert (
        format_lag(None) == "-"
        and format_lag(45) == "45s"
        and format_lag(7260) == "2h01m"
        and format_lag(3 * 86400) == "3d"
    )


def test_the_chart_draws_hours_whose_median_lag_is_zero():
    from datetime import UTC, datetime

    from worker.console.charts import throughput_svg
    from worker.console.views import Chart

    svg = throughput_svg(
        Chart(start=datetime(2026, 12, 7, tzinfo=UTC), posted=[3, 0], lag=[0.0, None]), label="x"
    )

    assert svg.startswith("<svg") and "</svg>" in svg


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Decimal("9936"), "9,936.00"),
        (Decimal("1460.14"), "1,460.14"),
        (Decimal("12441.9"), "12,441.90"),
        (Decimal("0.125"), "0.125"),
        (Decimal("-60.00"), "-60.00"),
        (Decimal("0"), "0.00"),
        ("n/a", "n/a"),
    ],
)
def test_amounts_are_grouped_with_two_decimals_and_never_rounded(value, shown):
    from worker.console.views import money

    assert money(value) == shown
