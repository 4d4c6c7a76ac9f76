"""ZOQL literals escape with a backslash (zuora-api.md section 5.2); queries follow queryMore."""

from __future__ import annotations

import json

import httpx
import pytest

from shared.errors import Rejected
from shared.zuora.zoql import accounting_period_by_name, quote


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("Dec'16", "'Dec\\'16'"),
        ("San Francisco's Finest", "'San Francisco\\'s Finest'"),
        ('say "hi"', "'say \\\"hi\\\"'"),
        ("back\\slash", "'back\\\\slash'"),
        ("\\'", "'\\\\\\''"),
        ("line\nbreak\ttab", "'line\\nbreak\\ttab'"),
        ("December 2024", "'December 2024'"),
        ("", "''"),
    ],
)
def test_quote_escapes_with_backslashes(value, literal):
    assert quote(value) == literal


def test_quote_dec16_exactly():
    assert quote("Dec'16") == r"'Dec\'16'"


def test_accounting_period_query_by_name():
    assert accounting_period_by_name("Dec'16") == (
        "select Id, Name, Status, StartDate, EndDate, FiscalYear, Notes from AccountingPeriod"
        r" where Name = 'Dec\'16'"
    )


def test_query_body_json_encodes_the_backslash(make_client, router):
    route = router.post("/v1/action/query").mock(
        return_value=httpx.Response(200, json={"records": [], "size": 0, "done": True})
    )
    list(make_client().zoql.query(accounting_period_by_name("Dec'16", ("Id",))))

    raw = route.calls.last.request.content.decode()
    assert raw == (
        '{"queryString":"select Id from AccountingPeriod where Name = \'Dec\\\\\'16\'",'
        '"conf":{"batchSize":2000}}'
    )
    assert "'Dec\\\\'16'" in raw  # JSON-escaped backslash, as section 5.2 shows
    assert json.loads(raw)["queryString"].endswith(r"Name = 'Dec\'16'")


def test_query_follows_query_locator(make_client, router):
    query = router.post("/v1/action/query").mock(
        return_value=httpx.Response(
            200, json={"records": [{"Id": "a"}, {"Id": "b"}], "size": 2, "done": False, "queryLocator": "L1"}
        )
    )
    more = router.post("/v1/action/queryMore").mock(
        side_effect=[
            httpx.Response(
                200, json={"records": [{"Id": "c"}], "size": 1, "done": False, "queryLocator": "L2"}
            ),
            httpx.Response(200, json={"records": [{"Id": "d"}], "size": 1, "done": True}),
        ]
    )

    ids = [r["Id"] for r in make_client().zoql.query("select Id from Invoice", batch_size=2)]

    assert ids == ["a", "b", "c", "d"]
    assert json.loads(query.calls.last.request.content) == {
        "queryString": "select Id from Invoice",
        "conf": {"batchSize": 2},
    }
    assert [json.loads(c.request.content) for c in more.calls] == [
        {"queryLocator": "L1", "conf": {"batchSize": 2}},
        {"queryLocator": "L2", "conf": {"batchSize": 2}},
    ]


def test_query_repeated_later_gets_a_fresh_idempotency_key(make_client, router):
    route = router.post("/v1/action/query").mock(
        return_value=httpx.Response(200, json={"records": [], "size": 0, "done": True})
    )
    client = make_client()
    list(client.zoql.query("select Id from Invoice"))
    list(client.zoql.query("select Id from Invoice"))

    first, second = (c.request.headers["Idempotency-Key"] for c in route.calls)
    assert first != second  # a later identical query must not get Zuora's 24 h replay


def test_query_locator_loop_is_refused(make_client, router):
    from shared.zuora.paging import PagingLoop

    router.post("/v1/action/query").mock(
        return_value=httpx.Response(200, json={"records": [], "size": 0, "done": False, "queryLocator": "L1"})
    )
    router.post("/v1/action/queryMore").mock(
        return_value=httpx.Response(200, json={"records": [], "size": 0, "done": False, "queryLocator": "L1"})
    )
    with pytest.raises(PagingLoop):
        list(make_client().zoql.query("select Id from Invoice"))


def test_query_without_records_is_rejected(make_client, router):
    router.post("/v1/action/query").mock(return_value=httpx.Response(200, json={"size": 3, "done": True}))
    with pytest.raises(Rejected):
        list(make_client().zoql.query("select Id from Invoice"))


@pytest.mark.parametrize(
    ("zoql", "batch"), [("SELECT Id FROM Invoice", 10), ("select Id from Invoice", 2001)]
)
def test_query_refuses_uppercase_keywords_and_oversized_batches(make_client, zoql, batch):
    with pytest.raises(ValueError):
        list(make_client().zoql.query(zoql, batch_size=batch))
