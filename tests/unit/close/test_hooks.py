"""The named points of the close: a no-op in production, reached through ``hooks.on_point`` by a
context that was given nothing else; the tests' crash hook is installed only when asked for."""

from __future__ import annotations

import uuid

from shared.close import hooks
from shared.close.context import CloseContext
from shared.close.driver import Resumed, drive_step, take_over
from tests.support import crash


def test_nothing_is_installed_in_production():
    assert hooks.on_point is hooks._ignore
    assert hooks.reached("posting:1") is None


def test_a_context_given_no_hook_reports_each_point_to_on_point(harness, monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(hooks, "on_point", seen.append)
    ctx = CloseContext(
        connection=harness.connection,
        zuora=harness.zuora,
        erp=harness.erp,
        ledger=harness.ledger,
        settings=harness.settings,
        notifier=harness.notifier,
        clock=harness.clock,
    )
    run_id = harness.open()
    lock = harness.lock("December 2024", harness.new_process())
    token = uuid.uuid4().hex
    assert take_over(ctx, lock, run_id, token) == Resumed("lookup")

    drive_step(ctx, lock, run_id, "lookup", token)
    drive_step(ctx, lock, run_id, "trial_balance", token)

    assert seen == ["before:lookup", "after:lookup", "before:trial_balance", "trial_balance:started",
                    "after:trial_balance"]  # fmt: skip


def test_the_crash_hook_is_installed_only_when_the_variable_names_a_point(monkeypatch):
    monkeypatch.setattr(hooks, "on_point", hooks._ignore)

    assert crash.install_from_env({}) is None
    assert hooks.on_point is hooks._ignore

    assert crash.install_from_env({crash.CRASH_ENV: "posted:3"}) == "posted:3"
    assert hooks.on_point is not hooks._ignore
    hooks.reached("posted:2")  # another point: the process lives on
    hooks.reached("after:post")
