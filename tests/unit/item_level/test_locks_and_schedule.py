"""The per-(connection, stream) lock and the beat schedule of the item-level sync."""

from __future__ import annotations

import os
from datetime import timedelta

import psutil
import pytest

from shared.coordination.identity import machine, process_alive, this_process
from shared.coordination.run_lock import RunLock, lock_key
from shared.settings import SettingsError, load_settings
from worker.schedule import beat_schedule, item_level_schedule


def test_second_holder_is_refused_until_the_first_releases(fake_redis):
    first = RunLock(fake_redis, "c1", "pull:invoices", ttl=60)
    second = RunLock(fake_redis, "c1", "pull:invoices", ttl=60)
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()


def test_a_lock_whose_holder_died_on_this_host_is_taken_at_once(fake_redis):
    # A worker SIGKILLed mid-run would otherwise keep the run (a stream's marking, say) locked for the TTL.
    key = lock_key("c1", "mark:refunds")
    dead = f"{machine()}|{os.getpid()}|0.0|nonce"  # this pid, another start time: a recycled pid
    fake_redis.set(key, dead, px=300_000)
    lock = RunLock(fake_redis, "c1", "mark:refunds", ttl=300)
    assert lock.acquire()
    assert fake_redis.get(key) != dead.encode()
    assert lock.extend()


@pytest.mark.parametrize(
    "holder",
    [
        pytest.param(lambda: "|".join(map(str, this_process())) + "|nonce", id="alive-here"),
        pytest.param(lambda: f"elsewhere/pid:[1]|{os.getpid()}|0.0|nonce", id="another-host"),
        pytest.param(lambda: "a-plain-token", id="foreign-format"),
    ],
)
def test_a_lock_whose_holder_may_be_alive_is_left_to_it(fake_redis, holder):
    key = lock_key("c1", "mark:refunds")
    fake_redis.set(key, holder(), px=300_000)
    assert not RunLock(fake_redis, "c1", "mark:refunds", ttl=300).acquire()


def test_a_live_holder_stays_alive_when_the_wall_clock_is_stepped(fake_redis, monkeypatch):
    # NTP or a resumed VM steps the clock: every process's wall-clock creation time moves with it.
    key = lock_key("c1", "mark:refunds")
    fake_redis.set(key, "|".join(map(str, this_process())) + "|nonce", px=300_000)
    stepped = psutil.Process.create_time
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: stepped(self) + 30.0)

    assert process_alive(*this_process())
    assert not RunLock(fake_redis, "c1", "mark:refunds", ttl=300).acquire()


def test_a_holder_recorded_with_a_wall_clock_start_is_still_understood():
    # Written by a release that recorded psutil's creation time: alive when it matches.
    host, pid, _ = this_process()
    created = psutil.Process(pid).create_time()
    assert process_alive(host, pid, created)
    assert not process_alive(host, pid, created - 3600)


def test_locks_of_other_streams_and_connections_are_independent(fake_redis):
    assert RunLock(fake_redis, "c1", "pull:invoices", ttl=60).acquire()
    assert RunLock(fake_redis, "c1", "pull:payments", ttl=60).acquire()
    assert RunLock(fake_redis, "c2", "pull:invoices", ttl=60).acquire()


def test_extend_reports_a_lock_lost_to_a_flush(fake_redis):
    lock = RunLock(fake_redis, "c1", "pull:invoices", ttl=60)
    assert lock.acquire()
    assert lock.extend()
    fake_redis.flushdb()
    assert not lock.extend()
    lock.release()  # nothing to release, no error


def test_extend_resets_the_ttl(fake_redis):
    lock = RunLock(fake_redis, "c1", "pull:invoices", ttl=60)
    lock.acquire()
    fake_redis.pexpire(lock_key("c1", "pull:invoices"), 1000)
    assert lock.extend()
    assert fake_redis.pttl(lock_key("c1", "pull:invoices")) > 50_000


def test_schedule_pulls_every_stream_and_polls_external_payments():
    settings = load_settings(
        pull_interval_seconds=240, external_payments_poll_seconds=60, sweep_interval_seconds=30
    )
    entries = item_level_schedule(settings)
    pulls = {name: e for name, e in entries.items() if name.startswith("pull-")}
    assert sorted(pulls) == [
        "pull-accounts",
        "pull-credit_memos",
        "pull-debit_memos",
        "pull-invoices",
        "pull-payments",
        "pull-refunds",
    ]
    # Every entry is fanned out to each connection by ledgerbridge.upkeep.for_each_connection.
    assert all(e["task"] == "ledgerbridge.upkeep.for_each_connection" for e in entries.values())
    assert all(e["kwargs"]["task"] == "ledgerbridge.pull.stream" for e in pulls.values())
    assert pulls["pull-invoices"]["schedule"] == timedelta(seconds=240)
    assert pulls["pull-invoices"]["kwargs"]["kwargs"] == {"stream": "invoices"}
    assert entries["poll-external-payments"]["kwargs"]["kwargs"] == {"stream": "payments"}
    assert entries["poll-external-payments"]["schedule"] == timedelta(seconds=60)
    assert entries["sweep-item-level"]["kwargs"]["task"] == "ledgerbridge.upkeep.sweep"
    assert entries["sweep-item-level"]["schedule"] == timedelta(seconds=30)
    assert entries["audit-marks"]["kwargs"]["task"] == "ledgerbridge.upkeep.audit_marks"
    assert entries["sweep-close-runs"]["kwargs"]["task"] == "ledgerbridge.close.sweep"
    assert entries["sweep-close-runs"]["schedule"] == timedelta(seconds=300)
    assert entries["sweep-close-runs"]["kwargs"]["kwargs"] == {"stale_after": 900}


def test_every_entry_expires_within_its_interval():
    entries = beat_schedule(load_settings())
    for name, entry in entries.items():
        assert entry["options"]["expires"] > 0, name
        if isinstance(entry["schedule"], timedelta):
            assert entry["options"]["expires"] <= entry["schedule"].total_seconds(), name


def test_per_stream_intervals_override_the_default():
    entries = item_level_schedule(load_settings(pull_stream_intervals="invoices=60,credit-memos=900"))
    assert entries["pull-invoices"]["schedule"] == timedelta(seconds=60)
    assert entries["pull-credit_memos"]["schedule"] == timedelta(seconds=900)
    assert entries["pull-payments"]["schedule"] == timedelta(seconds=300)


def test_unknown_stream_in_the_intervals_names_the_variable():
    with pytest.raises(SettingsError, match="LEDGERBRIDGE_PULL_STREAM_INTERVALS: unknown stream 'orders'"):
        item_level_schedule(load_settings(pull_stream_intervals="orders=60"))


def test_close_sweep_resumes_runs_stale_for_the_configured_time_and_looks_at_least_as_often():
    settings = load_settings(sweep_interval_seconds=3, close_stale_seconds=20)

    entry = item_level_schedule(settings)["sweep-close-runs"]

    assert entry["kwargs"] == {"task": "ledgerbridge.close.sweep", "kwargs": {"stale_after": 20}}
    assert entry["schedule"] == timedelta(seconds=20)


def test_beat_delivers_the_notices_left_undelivered_as_often_as_it_sweeps():
    from worker.schedule import beat_schedule

    entry = beat_schedule(load_settings(sweep_interval_seconds=7))["deliver-notices"]

    assert (entry["task"], entry["kwargs"], entry["schedule"]) == (
        "ledgerbridge.notices.deliver",
        {},
        timedelta(seconds=7),
    )
    assert entry["options"]["expires"] <= entry["schedule"].total_seconds()
