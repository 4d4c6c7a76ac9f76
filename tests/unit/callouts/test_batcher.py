"""CalloutBatcher: the receiver hands callouts on in batches, per connection, and a batch it
cannot send goes back to ``received`` for the sweep."""

from __future__ import annotations

import threading

import pytest

from shared.callouts import CalloutBatcher
from shared.ledger.repo import Ledger


class Sent:
    def __init__(self) -> None:
        self.batches: list[tuple[str, list[int]]] = []
        self.arrived = threading.Event()
        self.fail = False

    def __call__(self, connection: str, ids: list[int]) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.batches.append((connection, list(ids)))
        self.arrived.set()


def _record(ledger: Ledger, n: int, connection: str = "acme") -> int:
    row, _ = ledger.record_callout(
        connection, f"n-{n}", "1110", object_type="invoice", object_id=f"8ad0{n:04d}"
    )
    ledger.set_callout_state(row.id, "enqueued")
    return row.id


def test_callouts_of_one_window_go_in_one_batch_per_connection(ledger):
    sent = Sent()
    batcher = CalloutBatcher(sent, ledger, window=3600)  # only close() sends: no timing involved
    for i in (1, 2, 3):
        batcher.submit("acme", i)
    batcher.submit("globex", 4)
    batcher.close()
    assert sorted(sent.batches) == [("acme", [1, 2, 3]), ("globex", [4])]


def test_a_full_batch_is_sent_without_waiting_for_the_window(ledger):
    sent = Sent()
    batcher = CalloutBatcher(sent, ledger, window=3600, max_batch=3)
    for i in range(1, 5):
        batcher.submit("acme", i)
    assert sent.arrived.wait(10)
    assert sent.batches == [("acme", [1, 2, 3])]
    batcher.close()
    assert sent.batches == [("acme", [1, 2, 3]), ("acme", [4])]


def test_the_window_sends_a_partial_batch(ledger):
    sent = Sent()
    batcher = CalloutBatcher(sent, ledger, window=0.01)
    batcher.submit("acme", 7)
    assert sent.arrived.wait(10)  # bounded: the thread sends once the window has passed
    assert sent.batches == [("acme", [7])]
    batcher.close()
    assert sent.batches == [("acme", [7])]


def test_a_batch_that_cannot_be_sent_is_left_to_the_sweep(ledger):
    ids = [_record(ledger, n) for n in (1, 2)]
    sent = Sent()
    sent.fail = True
    batcher = CalloutBatcher(sent, ledger, window=3600)
    for i in ids:
        batcher.submit("acme", i)
    batcher.close()
    with ledger.session() as session:
        from shared.ledger.models import CalloutNotification

        rows = [session.get(CalloutNotification, i) for i in ids]
    assert [(r.state, r.error) for r in rows] == [("received", "enqueue failed: broker down")] * 2


def test_a_closed_batcher_refuses_more(ledger):
    batcher = CalloutBatcher(Sent(), ledger)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit("acme", 1)


def test_bad_knobs_are_refused(ledger):
    with pytest.raises(ValueError, match="window"):
        CalloutBatcher(Sent(), ledger, window=-1)
