"""The streams as data: what each one queries, expands, feeds and how it is marked."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import shared.item_level.streams as s
from shared.item_level.streams import STREAM_NAMES, UnknownStream, get_stream, select_streams


def test_streams_cover_every_item_level_object_in_dependency_order():
    assert STREAM_NAMES == ("accounts", "invoices", "debit_memos", "credit_memos", "payments", "refunds")
    assert [x.name for x in select_streams()] == [
        "accounts",
        "invoices",
        "debit_memos",
        "credit_memos",
        "payments",
        "refunds",
    ]


def test_pull_query_reads_from_the_mark_ascending_99_at_a_time():
    since = datetime(2025, 5, 1, 12, 30, 5, tzinfo=UTC)
    params = s.INVOICES.query(since).params()
    assert ("pageSize", "99") in params
    assert ("sort[]", "updateddate.ASC") in params
    assert ("filter[]", "updateddate.GE:2025-05-01T12:30:05+00:00") in params
    assert ("filter[]", "status.EQ:Posted") in params
    assert ("expand[]", "invoiceitems") in params


def test_pull_query_without_mark_reads_everything():
    params = s.PAYMENTS.query(None).params()
    assert [v for k, v in params if k == "filter[]"] == ["status.EQ:Processed"]
    assert ("expand[]", "paymentmethod") in params
    assert ("expand[]", "paymentapplications") in params
    assert not any(k.endswith(".fields[]") for k, _ in params)  # not in Zuora's OpenAPI document


@pytest.mark.parametrize(
    ("name", "filters"),
    [
        ("accounts", []),
        ("invoices", ["status.EQ:Posted"]),
        ("debit_memos", ["status.EQ:Posted"]),
        ("credit_memos", ["status.EQ:Posted"]),
        ("payments", ["status.EQ:Processed"]),
        ("refunds", ["status.EQ:Processed"]),
    ],
)
def test_stream_filters(name, filters):
    assert list(get_stream(name).filters) == filters


@pytest.mark.parametrize(
    ("name", "method", "action_type", "put"),
    [
        ("accounts", "upsert_customer", None, None),
        ("invoices", "create_document", "Invoice", None),
        ("debit_memos", "create_document", None, "debit_memo"),
        ("credit_memos", "create_document", None, "credit_memo"),
        ("payments", "create_payment", "Payment", None),
        ("refunds", "create_payment", "Refund", None),
    ],
)
def test_stream_feeds_one_erp_method_and_is_marked_its_way(name, method, action_type, put):
    chosen = get_stream(name)
    assert (chosen.erp_method, chosen.mark_action_type, chosen.mark_put) == (method, action_type, put)
    assert chosen.marks == (name != "accounts")


def test_query_ids_uses_in_for_many_and_eq_for_one():
    one = s.ACCOUNTS.query_ids(["8ad0a"]).params()
    many = s.INVOICES.query_ids(["a1", "b2"]).params()
    assert [v for k, v in one if k == "filter[]"] == ["id.EQ:8ad0a"]
    assert [v for k, v in many if k == "filter[]"] == ["id.IN:[a1,b2]", "status.EQ:Posted"]
    unfiltered = s.INVOICES.query_ids(["a1"], with_filters=False).params()
    assert [v for k, v in unfiltered if k == "filter[]"] == ["id.EQ:a1"]


def test_query_ids_refuses_more_than_a_page():
    with pytest.raises(ValueError, match=r"1\.\.99"):
        s.ACCOUNTS.query_ids([str(i) for i in range(100)])


def test_truncated_when_expansion_reaches_the_page_size():
    assert s.INVOICES.truncated({"invoiceItems": [{}] * 99}, 99)
    assert not s.INVOICES.truncated({"invoiceItems": [{}] * 98}, 99)
    assert s.INVOICES.truncated({"invoiceItems": [{}] * 50}, 50)  # a tenant holding to the OpenAPI's 50
    assert not s.INVOICES.truncated({"invoiceItems": [{}] * 49}, 50)
    assert not s.PAYMENTS.truncated({"paymentApplications": [{}] * 120}, 99)


def test_items_query_filters_on_the_parent():
    params = s.CREDIT_MEMOS.items_query("cm1").params()
    assert ("filter[]", "creditmemoid.EQ:cm1") in params


def test_application_targets_read_invoice_or_debit_memo():
    # zuora-sdk ExpandedPaymentApplication: the amount is applyAmount (a payment's own total applied
    # is appliedAmount, which an application does not carry).
    row = {
        "paymentApplications": [
            {"invoiceId": "i1", "applyAmount": "10.00"},
            {"debitMemoId": "d1", "applyAmount": 5},
        ]
    }
    found = [(t.object_type, zid, amount) for t, zid, amount in s.PAYMENTS.application_targets(row)]
    assert found == [("invoice", "i1", "10.00"), ("debit_memo", "d1", 5)]


def test_refund_application_amounts_are_apply_amount_and_credit_memo_ones_amount():
    refund = {"refundApplications": [{"paymentId": "p1", "applyAmount": "7.50"}]}
    memo = {"creditMemoApplications": [{"invoiceId": "i1", "amount": "3.25"}]}
    assert [(zid, amount) for _, zid, amount in s.REFUNDS.application_targets(refund)] == [("p1", "7.50")]
    assert [(zid, amount) for _, zid, amount in s.CREDIT_MEMOS.application_targets(memo)] == [("i1", "3.25")]


def test_fires_callout_only_for_electronic_payments():
    assert s.PAYMENTS.fires_callout({"type": "Electronic"})
    assert not s.PAYMENTS.fires_callout({"type": "External"})
    assert s.INVOICES.fires_callout({})
    assert not s.ACCOUNTS.fires_callout({})


def test_events_map_to_streams():
    assert {code: st.name for code, st in s.BY_EVENT.items()} == {
        "1110": "invoices",
        "2820": "debit_memos",
        "2720": "credit_memos",
        "2710": "credit_memos",
        "2120": "payments",
        "2410": "refunds",
        "2430": "refunds",
    }


def test_stream_lookup_accepts_dashes_and_refuses_unknown_names():
    assert get_stream("credit-memos") is s.CREDIT_MEMOS
    with pytest.raises(UnknownStream, match="one of: accounts"):
        get_stream("orders")
