from __future__ import annotations

from worker.tasks import upkeep


def test_for_each_connection_enqueues_the_task_once_per_connection(monkeypatch):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(upkeep.ports, "connection_names", lambda: ["acme-eu", "default"])
    monkeypatch.setattr(upkeep.app, "send_task", lambda name, kwargs: sent.append((name, kwargs)))

    result = upkeep.for_each_connection.run(task="ledgerbridge.pull.stream", kwargs={"stream": "invoices"})

    assert sent == [
        ("ledgerbridge.pull.stream", {"stream": "invoices", "connection": "acme-eu"}),
        ("ledgerbridge.pull.stream", {"stream": "invoices", "connection": "default"}),
    ]
    assert result == {"task": "ledgerbridge.pull.stream", "connections": ["acme-eu", "default"]}
