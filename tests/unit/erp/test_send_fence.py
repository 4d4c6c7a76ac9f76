"""The send deadline (shared.erp.fence): a create never leaves after its posting claim ran out.

A posting row is claimed with a deadline; past it another worker may look the document up and
create it again. So a create queued past its deadline must not be sent, and one sent close to it
must stop waiting for the answer before the deadline.
"""

from __future__ import annotations

import httpx
import pytest

from shared.erp import fence
from shared.erp.errors import NotSent
from shared.errors import Transient

from .conftest import json_response


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_create_is_not_sent_once_too_little_of_its_claim_is_left(fake, make_client):
    route = fake.on("PUT", "Invoice", json_response(200, {"ReferenceNbr": {"value": "AR1"}}))
    client = make_client()
    clock = FakeClock()

    with fence.send_by(15.0, clock=clock):
        clock.now += 13.0  # e.g. queued for a concurrency slot: 2 s left, the reserve is 1.5 s
        with pytest.raises(NotSent, match="was not sent") as caught:
            client.put("Invoice", {"CustomerOrder": "INV1"}, repeatable=False)

    assert isinstance(caught.value, Transient)  # nothing was created: an ordinary retry later
    assert route.hits == 0
    assert fake.data_requests("PUT") == []


def test_a_create_near_its_deadline_waits_for_the_answer_only_until_the_reserve(fake, make_client):
    fake.on("PUT", "Invoice", json_response(200, {"ReferenceNbr": {"value": "AR1"}}))
    client = make_client(timeout=100.0)
    clock = FakeClock()

    with fence.send_by(20.0, clock=clock):
        clock.now += 10.0  # 10 s left, reserve 2 s: the answer must come within 8 s
        assert client.put("Invoice", {"CustomerOrder": "INV1"}, repeatable=False)["ReferenceNbr"] == "AR1"

    (sent,) = fake.data_requests("PUT")
    assert sent.extensions["timeout"]["read"] == pytest.approx(8.0)


def test_reads_and_upserts_by_key_are_not_fenced(fake, make_client):
    fake.on("GET", "Customer/C1", json_response(200, {"CustomerID": {"value": "C1"}}))
    fake.on("PUT", "Customer", json_response(200, {"CustomerID": {"value": "C1"}}))
    client = make_client()
    clock = FakeClock()

    with fence.send_by(5.0, clock=clock):
        clock.now += 60.0  # long past: lookups and repeatable upserts create nothing twice
        assert client.get_record("Customer", "C1")["CustomerID"] == "C1"
        assert client.put("Customer", {"CustomerID": "C1"}, repeatable=True)["CustomerID"] == "C1"


def test_outside_a_posting_creates_keep_the_client_timeout(fake, make_client):
    fake.on("PUT", "Invoice", json_response(200, {"ReferenceNbr": {"value": "AR1"}}))
    make_client(timeout=100.0).put("Invoice", {"CustomerOrder": "INV1"}, repeatable=False)

    (sent,) = fake.data_requests("PUT")
    assert sent.extensions["timeout"]["read"] == pytest.approx(100.0)
    assert fence.current() is None


def test_the_deadline_is_per_thread_of_control():
    import threading

    seen: list[fence.Deadline | None] = []
    with fence.send_by(30.0):
        thread = threading.Thread(target=lambda: seen.append(fence.current()))
        thread.start()
        thread.join(timeout=10)
        assert fence.current() is not None
    assert seen == [None]  # a posting thread's claim does not leak into another thread's calls
    assert fence.current() is None


def test_the_reserve_is_a_tenth_of_the_claim_and_at_least_a_second():
    assert fence.Deadline(at=0.0, reserve=0.0).reserve == 0.0
    with fence.send_by(900.0) as long_claim:
        assert long_claim.reserve == pytest.approx(90.0)
    with fence.send_by(5.0) as short_claim:
        assert short_claim.reserve == pytest.approx(fence.MIN_RESERVE)


def test_the_request_timeout_never_exceeds_the_client_default():
    clock = FakeClock()
    deadline = fence.Deadline(at=clock.now + 900.0, reserve=90.0, clock=clock)
    assert deadline.request_timeout(100.0, "PUT Invoice") == 100.0
    clock.now += 805.0  # 95 s left, 5 s beyond the reserve
    assert deadline.request_timeout(100.0, "PUT Invoice") == pytest.approx(5.0)
    clock.now += 4.5
    with pytest.raises(NotSent):
        deadline.request_timeout(100.0, "PUT Invoice")


def test_httpx_keeps_a_timeout_set_on_the_request():
    # The client relies on httpx honouring request.extensions["timeout"] over its own default.
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(204)

    with httpx.Client(transport=httpx.MockTransport(handler), timeout=100.0) as client:
        request = httpx.Request("PUT", "https://erp.example.com/x")
        request.extensions["timeout"] = httpx.Timeout(3.0).as_dict()
        client.send(request)
    assert seen[0]["read"] == 3.0
