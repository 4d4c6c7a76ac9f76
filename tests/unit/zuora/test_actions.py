"""action/update: chunks of at most 50, one result per object, row failures reported not raised."""

from __future__ import annotations

import json

import httpx
import pytest

from shared.errors import Reason, Transient
from shared.zuora.actions import RowResult


def echo_results(fail_ids=frozenset()):
    def handle(request: httpx.Request) -> httpx.Response:
        objects = json.loads(request.content)["objects"]
        return httpx.Response(
            200,
            json=[
                {
                    "Success": False,
                    "Errors": [{"Code": "INVALID_VALUE", "Message": f"{o['Id']} is not Posted"}],
                }
                if o["Id"] in fail_ids
                else {"Success": True, "Id": o["Id"]}
                for o in objects
            ],
        )

    return handle


def test_update_splits_into_chunks_of_50_and_keeps_order(make_client, router):
    route = router.post("/v1/action/update").mock(side_effect=echo_results(fail_ids={"inv-7", "inv-60"}))
    objects = [{"Id": f"inv-{i}", "TransferredToAccounting": "Yes"} for i in range(120)]

    results = make_client().actions.update("Invoice", objects)

    bodies = [json.loads(c.request.content) for c in route.calls]
    assert [len(b["objects"]) for b in bodies] == [50, 50, 20]
    assert {b["type"] for b in bodies} == {"Invoice"}
    assert [o["Id"] for b in bodies for o in b["objects"]] == [f"inv-{i}" for i in range(120)]
    assert len(results) == 120
    assert [r.index for r in results] == list(range(120))
    assert [r.id for r in results if not r.success] == ["inv-7", "inv-60"]
    assert results[7] == RowResult(
        index=7, id="inv-7", success=False, errors=(Reason("INVALID_VALUE", "inv-7 is not Posted"),)
    )
    assert results[8] == RowResult(index=8, id="inv-8", success=True)


def test_update_chunks_get_distinct_idempotency_keys(make_client, router):
    route = router.post("/v1/action/update").mock(side_effect=echo_results())
    objects = [{"Id": f"p-{i}", "TransferredToAccounting": "Yes"} for i in range(51)]
    client = make_client()

    client.actions.update("Payment", objects, idempotency_key=("mark", "payments", "run-1"))
    client.actions.update("Payment", objects, idempotency_key=("mark", "payments", "run-1"))

    keys = [c.request.headers["Idempotency-Key"] for c in route.calls]
    assert keys[0] != keys[1]
    assert keys[:2] == keys[2:]


def test_update_result_count_mismatch_is_transient(make_client, router):
    router.post("/v1/action/update").mock(
        return_value=httpx.Response(200, json=[{"Success": True, "Id": "a"}])
    )
    with pytest.raises(Transient):
        make_client().actions.update("Invoice", [{"Id": "a"}, {"Id": "b"}])


@pytest.mark.parametrize(
    ("type_", "objects"),
    [
        ("CreditMemo", [{"Id": "c"}]),
        ("DebitMemo", [{"Id": "d"}]),
        ("Invoice", [{"TransferredToAccounting": "Yes"}]),
    ],
)
def test_update_refuses_memos_and_objects_without_id(make_client, type_, objects):
    with pytest.raises(ValueError):
        make_client().actions.update(type_, objects)


def test_update_of_nothing_sends_nothing(make_client, router):
    route = router.post("/v1/action/update")
    assert make_client().actions.update("Invoice", []) == []
    assert route.call_count == 0


def test_actions_query_runs_zoql(make_client, router):
    router.post("/v1/action/query").mock(
        return_value=httpx.Response(
            200, json={"records": [{"Id": "i1", "TransferredToAccounting": "No"}], "done": True}
        )
    )
    rows = list(
        make_client().actions.query("select Id, TransferredToAccounting from Invoice where Status = 'Posted'")
    )
    assert rows == [{"Id": "i1", "TransferredToAccounting": "No"}]
