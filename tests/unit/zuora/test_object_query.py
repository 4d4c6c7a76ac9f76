"""Object Query: declarative queries, cursor paging passed verbatim, loop guard (section 9)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import httpx
import pytest

from shared.errors import NotFound, Rejected
from shared.zuora.object_query import ObjectQuery, condition
from shared.zuora.paging import PagingLoop
from shared.zuora.records import get_field

CURSOR_2 = "W3sidmFsdWUiOiIyMDI0LTA3LTIxVDIyOjUxOjUwLTA3OjAwIn0sKys/Lz0="  # has + / = in it
CURSOR_3 = "MTA="


def invoices_query(**kw):
    return ObjectQuery(
        object="invoices",
        filters=(condition("updateddate", "GE", datetime(2025, 5, 1, tzinfo=UTC)), "status.EQ:Posted"),
        sort="updateddate.ASC",
        fields=("id", "updateddate", "amount"),
        expand=("invoiceitems",),
        **kw,
    )


def test_pages_follow_next_page_verbatim_as_cursor(make_client, router):
    route = router.get("/object-query/invoices").mock(
        side_effect=[
            httpx.Response(200, json={"data": [{"id": "i1"}, {"id": "i2"}], "nextPage": CURSOR_2}),
            httpx.Response(200, json={"data": [{"id": "i3"}], "nextPage": CURSOR_3}),
            httpx.Response(200, json={"data": [{"id": "i4"}]}),
        ]
    )

    pages = list(make_client().objects.pages(invoices_query(page_size=2)))

    assert [[r["id"] for r in p.data] for p in pages] == [["i1", "i2"], ["i3"], ["i4"]]
    assert [(p.cursor, p.next_cursor) for p in pages] == [
        (None, CURSOR_2),
        (CURSOR_2, CURSOR_3),
        (CURSOR_3, None),
    ]
    sent = [c.request.url.params for c in route.calls]
    assert [p.get("cursor") for p in sent] == [None, CURSOR_2, CURSOR_3]
    assert (
        b"cursor=W3sidmFsdWUiOiIyMDI0LTA3LTIxVDIyOjUxOjUwLTA3OjAwIn0sKys%2FLz0%3D"
        in route.calls[1].request.url.query
    )
    assert pages[2].response == {"data": [{"id": "i4"}]}


def test_query_parameters_on_the_wire(make_client, router):
    route = router.get("/object-query/invoices").mock(return_value=httpx.Response(200, json={"data": []}))
    list(make_client().objects.pages(invoices_query(page_size=50)))

    params = route.calls.last.request.url.params
    assert params.get_list("filter[]") == ["updateddate.GE:2025-05-01T00:00:00+00:00", "status.EQ:Posted"]
    assert params.get_list("sort[]") == ["updateddate.ASC"]
    assert params.get_list("fields[]") == ["id,updateddate,amount"]
    assert params.get_list("expand[]") == ["invoiceitems"]
    assert "invoiceitems.fields[]" not in params  # not a parameter of Zuora's OpenAPI document
    assert params["pageSize"] == "50"
    assert params["includeNullFields"] == "false"
    raw = route.calls.last.request.url.query
    assert b"%2B00%3A00" in raw  # '+' of the offset is percent-encoded, not a space


def test_spaces_are_sent_as_percent_20(make_client, router):
    route = router.get("/object-query/accounts").mock(return_value=httpx.Response(200, json={"data": []}))
    list(make_client().objects.pages(ObjectQuery(object="accounts", filters=("name.SW:Acme Co",))))
    assert b"name.SW%3AAcme%20Co" in route.calls.last.request.url.query


def test_same_cursor_twice_is_a_paging_loop(make_client, router):
    router.get("/object-query/payments").mock(
        side_effect=[
            httpx.Response(200, json={"data": [{"id": "p1"}], "nextPage": "Q1"}),
            httpx.Response(200, json={"data": [{"id": "p2"}], "nextPage": "Q1"}),
        ]
    )
    pages = make_client().objects.pages(ObjectQuery(object="payments"))
    assert next(pages).data == [{"id": "p1"}]
    assert next(pages).data == [{"id": "p2"}]
    with pytest.raises(PagingLoop):
        next(pages)


def test_pages_resume_from_a_kept_cursor(make_client, router):
    route = router.get("/object-query/refunds").mock(
        side_effect=[httpx.Response(200, json={"data": [{"id": "r9"}], "nextPage": "START"})]
    )
    pages = make_client().objects.pages(ObjectQuery(object="refunds"), cursor="START")
    assert next(pages).cursor == "START"
    with pytest.raises(PagingLoop):
        next(pages)  # the server pointed back at where we started
    assert route.calls[0].request.url.params["cursor"] == "START"


@pytest.mark.parametrize(
    "bad",
    [
        dict(object="invoices", page_size=0),
        dict(object="invoices", page_size=100),
        dict(object="widgets"),
        dict(object="invoice-items"),  # filter[] is required there
        dict(object="invoices", sort="updateddate"),
        dict(object="invoices", sort="updateddate.ASC,id.ASC"),
        dict(object="invoices", filters=("updateddate>2025",)),
    ],
)
def test_object_query_validates_before_sending(bad):
    with pytest.raises(ValueError):
        ObjectQuery(**bad)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("currency", "IN", ["CAD", "GBP"]), "currency.IN:[CAD,GBP]"),
        (("parentid", "EQ", None), "parentid.EQ:null"),
        (("crmid", "EQ", ""), "crmid.EQ:\x02\x03"),
        (("duedate", "lt", date(2025, 1, 31)), "duedate.LT:2025-01-31"),
        (
            ("updateddate", "GT", datetime(2025, 3, 13, 14, 30, 46, tzinfo=timezone(timedelta(hours=-7)))),
            "updateddate.GT:2025-03-13T14:30:46-07:00",
        ),
        (("ERPAccountId__c", "EQ", "ERP-1"), "ERPAccountId__c.EQ:ERP-1"),
    ],
)
def test_condition_renders_filter_values(args, expected):
    assert condition(*args) == expected


def test_condition_refuses_naive_datetimes_and_unknown_operators():
    with pytest.raises(ValueError):
        condition("updateddate", "GT", datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        condition("amount", "BETWEEN", 1)


def test_get_by_key_and_case_insensitive_custom_field(make_client, router):
    route = router.get("/object-query/accounts/A00000001").mock(
        return_value=httpx.Response(
            200, json={"id": "8ad0", "accountNumber": "A00000001", "eRPAccountId__c": "C-42"}
        )
    )
    account = make_client().objects.get(
        "accounts", "A00000001", fields=("id", "ERPAccountId__c"), expand=("billto",)
    )

    assert get_field(account, "ERPAccountId__c") == "C-42"
    params = route.calls.last.request.url.params
    assert params.get_list("fields[]") == ["id,ERPAccountId__c"]
    assert params.get_list("expand[]") == ["billto"]


def test_get_unknown_key_is_not_found(make_client, router):
    router.get("/object-query/invoices/nope").mock(
        return_value=httpx.Response(
            404, json={"reasons": [{"code": 50000040, "message": "not found"}], "requestId": "r"}
        )
    )
    with pytest.raises(NotFound):
        make_client().objects.get("invoices", "nope")


def test_get_quotes_the_key_into_one_path_segment(make_client, router):
    route = router.get(url__regex=r".*/object-query/invoices/.*").mock(
        return_value=httpx.Response(200, json={"id": "x"})
    )
    make_client().objects.get("invoices", "../v1/oops")
    assert route.calls.last.request.url.raw_path.startswith(b"/object-query/invoices/..%2Fv1%2Foops")


def _page_size_refused(limit: int) -> httpx.Response:
    return httpx.Response(
        400,
        json={"reasons": [{"code": "50000020", "message": f"pageSize must be between 1 and {limit}"}]},
    )


def test_a_400_naming_the_page_size_steps_down_to_50_and_is_remembered(
    make_client, router, fake_redis, connection_name, audit
):
    def answer(request: httpx.Request) -> httpx.Response:
        size = int(request.url.params["pageSize"])
        return _page_size_refused(50) if size > 50 else httpx.Response(200, json={"data": [{"id": "a1"}]})

    route = router.get("/object-query/accounts").mock(side_effect=answer)
    client = make_client()

    first = list(client.objects.pages(ObjectQuery(object="accounts")))
    second = list(client.objects.pages(ObjectQuery(object="accounts")))
    other_process = list(make_client().objects.pages(ObjectQuery(object="accounts")))

    assert [c.request.url.params["pageSize"] for c in route.calls] == ["99", "50", "50", "50"]
    assert [p.page_size for p in (*first, *second, *other_process)] == [50, 50, 50]
    assert client.objects.max_page_size == 50
    assert fake_redis.get(f"ledgerbridge:{connection_name}:zuora:page-limit:object-query") == b"50"
    assert [e.status for e in audit if "object-query" in e.url] == [400, 200, 200, 200]  # the refusal audited


def test_a_400_about_something_else_is_not_a_page_size_step(make_client, router):
    route = router.get("/object-query/accounts").mock(
        return_value=httpx.Response(
            400, json={"reasons": [{"code": "50000020", "message": "unknown field 'widget'"}]}
        )
    )
    with pytest.raises(Rejected, match="HTTP 400"):
        list(make_client().objects.pages(ObjectQuery(object="accounts")))
    assert route.call_count == 1


def test_journal_entry_list_steps_down_from_300_to_40(make_client, router):
    def answer(request: httpx.Request) -> httpx.Response:
        if int(request.url.params["pageSize"]) > 40:
            return _page_size_refused(40)
        return httpx.Response(200, json={"journalEntries": [], "success": True})

    route = router.get("/v1/journal-entries/journal-runs/JR-00000001").mock(side_effect=answer)

    pages = list(make_client().journal_entries.list_by_run("JR-00000001"))

    assert len(pages) == 1
    assert [c.request.url.params["pageSize"] for c in route.calls] == ["300", "40"]
