"""The product's one JSON codec (exact amounts), and the ledger's column codecs (UTC datetimes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from shared.jsoncodec import dumps as dumps_json
from shared.jsoncodec import loads as loads_json
from shared.ledger.models import UtcDateTime


def test_dumps_json_writes_decimal_digits_exactly():
    value = {"amount": Decimal("0.10"), "lines": [Decimal("-1234567890.123456789"), 3], "n": "x"}
    text = dumps_json(value)
    assert text == '{"amount":0.10,"lines":[-1234567890.123456789,3],"n":"x"}'
    assert loads_json(text) == value
    assert isinstance(loads_json(text)["amount"], Decimal)


def test_loads_json_never_returns_float():
    assert loads_json('{"a": 0.1, "b": 1e2, "c": 7}') == {"a": Decimal("0.1"), "b": Decimal("1E+2"), "c": 7}


def test_dumps_json_does_not_touch_strings_that_look_like_markers():
    value = {"s": "\u0000decimal-0:", "d": Decimal("1.5")}
    assert loads_json(dumps_json(value)) == value


def test_dumps_json_refuses_nan_amount():
    with pytest.raises(ValueError, match="non-finite amount"):
        dumps_json({"a": Decimal("NaN")})


def test_dumps_json_writes_datetimes_as_iso():
    assert (
        dumps_json({"at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)}) == '{"at":"2024-01-02T03:04:05+00:00"}'
    )


def test_utc_datetime_refuses_naive_values():
    with pytest.raises(ValueError, match="naive datetime"):
        UtcDateTime().process_bind_param(datetime(2024, 1, 1), postgresql.dialect())


def test_utc_datetime_stores_naive_utc_on_sqlite_and_reads_back_aware():
    pst = timezone(timedelta(hours=-8))
    stored = UtcDateTime().process_bind_param(datetime(2024, 1, 1, 16, 0, tzinfo=pst), sqlite.dialect())
    assert stored == datetime(2024, 1, 2, 0, 0)
    assert UtcDateTime().process_result_value(stored, sqlite.dialect()) == datetime(2024, 1, 2, tzinfo=UTC)


def test_utc_datetime_converts_to_utc_on_postgres():
    pst = timezone(timedelta(hours=-8))
    stored = UtcDateTime().process_bind_param(datetime(2024, 1, 1, 16, 0, tzinfo=pst), postgresql.dialect())
    assert stored == datetime(2024, 1, 2, tzinfo=UTC)
    assert stored.tzinfo is UTC


def test_every_wire_and_column_uses_the_one_codec():
    from shared import jsoncodec
    from shared.erp import acumatica_wire
    from shared.ledger import db
    from shared.zuora import transport

    assert {transport.dumps, acumatica_wire.dumps, db.dumps_json} == {jsoncodec.dumps}
    assert {transport.loads, acumatica_wire.loads, db.loads_json} == {jsoncodec.loads}


def test_decimals_are_written_in_plain_notation():
    assert dumps_json([Decimal("1E+3"), Decimal("1E-8"), Decimal("0.00")]) == "[1000,0.00000001,0.00]"


def test_text_that_is_not_json_raises_the_codecs_decode_error():
    from shared.jsoncodec import DecodeError

    with pytest.raises(DecodeError) as raised:
        loads_json('{"a": 1,')
    assert isinstance(raised.value, ValueError)
