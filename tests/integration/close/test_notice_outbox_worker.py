"""The close's notices through the outbox, with a real worker process, real Redis and a webhook
over loopback HTTP: the notice is in the ledger with the status it reports even while the webhook
fails; the worker retries it with backoff and delivers it once; ``ledgerbridge status`` shows what
is undelivered; a notice whose delivery was never enqueued is sent by the task beat runs."""

from __future__ import annotations

import json
import time

import pytest

from shared.ledger.notices import NewNotice

pytestmark = [pytest.mark.redis, pytest.mark.slow]

MESSAGE = "Error creating the trial balance: exchange rate from USD to GBP on 12/31/2024 is not available."


def test_a_notice_the_webhook_refuses_is_kept_retried_with_backoff_and_delivered_once(make_env):
    env = make_env()
    env.env["LEDGERBRIDGE_NOTIFY_RETRY_BASE_SECONDS"] = "0.5"
    env.env["LEDGERBRIDGE_NOTIFY_RETRY_MAX_SECONDS"] = "2"
    env.zuora_control("periods/December 2024/fail-trial-balance", {"message": MESSAGE})
    env.webhook.down = True
    env.worker.start()

    result = env.cli("close", "December 2024", "--wait", "--timeout", "60")

    assert result.returncode == 1, result.stdout + result.stderr
    run = env.ledger.latest_close_runs(env.connection)[0]
    assert run.status == "needs_attention"
    # Committed with the status, whatever the webhook does.
    (row,) = env.ledger.notices_of(f"close:{run.id}")
    assert (row.event, row.dedupe_key) == (
        "close.trial_balance_error",
        f"close:{run.id}:needs_attention:attempt-1",
    )
    # Refused three times: retried each time, after a wait that grows (0.5 s, 1 s, 2 s).
    env.wait_until(lambda: len(env.webhook.posts) >= 3, timeout=30)
    (row,) = env.ledger.notices_of(f"close:{run.id}")
    assert row.delivered_at is None
    assert row.attempts >= 3
    assert (row.last_error or "").startswith("WebhookNotifier: HTTP 500")

    status = env.cli("status", "--json")

    assert status.returncode == 0, status.stdout + status.stderr
    undelivered = json.loads(status.stdout)["undelivered_notices"]
    assert undelivered["count"] == 1
    assert undelivered["last_error"].startswith("WebhookNotifier: HTTP 500")
    table = env.cli("status")
    assert "notices: 1 undelivered, the oldest from" in " ".join(table.stdout.split())

    env.webhook.down = False
    (delivered,) = env.webhook.wait_for(1, timeout=30)
    time.sleep(3)  # longer than the longest retry wait: nothing else is sent

    assert len(env.webhook.received) == 1
    assert delivered["notice_id"] == row.id
    assert delivered["event"] == "close.trial_balance_error"
    assert delivered["text"].endswith(f"needs attention (close run {run.id}): {run.error}")
    assert {post["notice_id"] for post in env.webhook.posts} == {row.id}
    (row,) = env.ledger.notices_of(f"close:{run.id}")
    assert row.delivered_at is not None
    assert row.attempts == len(env.webhook.posts)
    assert env.ledger.undelivered_notices(env.connection).count == 0
    assert "notices: all delivered" in env.cli("status").stdout


def test_a_notice_whose_delivery_was_never_enqueued_is_sent_by_the_beat_task(make_env):
    env = make_env()
    env.worker.start()
    run_id = env.open()
    # A worker killed between the status commit and the enqueue leaves exactly this.
    notice = NewNotice(
        connection=env.connection,
        subject=f"close:{run_id}",
        event="close.completed",
        dedupe_key=f"close:{run_id}:done:attempt-1",
        payload={"text": f"close run {run_id} is done", "event": "close.completed", "fields": {}},
    )
    env.ledger.update_close_run(run_id, status="done", notice=lambda run: notice)
    (row,) = env.ledger.notices_of(f"close:{run_id}")

    first = env.celery.send_task("ledgerbridge.notices.deliver", kwargs={}, queue=env.queue)
    again = env.celery.send_task("ledgerbridge.notices.deliver", kwargs={}, queue=env.queue)
    env.task_ids += [first.id, again.id]

    assert first.get(timeout=30)["delivered"] == [row.id]
    assert again.get(timeout=30)["delivered"] == []
    assert [(n["notice_id"], n["text"]) for n in env.webhook.received] == [
        (row.id, f"close run {run_id} is done")
    ]
    assert env.ledger.notices_of(f"close:{run_id}")[0].delivered_at is not None
