"""Maker-checker over the real processes: a close on a connection with approval on stops after its
check in a real worker, the CLI refuses the wrong people, and a second approver's approval sends
it on to post to the Acumatica sandbox, each entry once; the webhook hears each step."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.close.state import ApprovalState, step_state
from tests.integration.close.conftest import ROOT
from tests.integration.close.test_close_worker import assert_acumatica_holds_each_entry_once

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def _add_user(env, name: str, role: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "user", "add", name, "--role", role, "--password-stdin"],
        cwd=ROOT,
        env={**env.env, "COLUMNS": "200"},
        input="correct horse battery staple\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_close_waits_for_a_second_person_then_posts_what_was_approved(make_env):
    env = make_env()
    env.env["LEDGERBRIDGE_APPROVAL"] = "close"
    env.worker.start()
    for name, role in (("maya", "approver"), ("pat", "preparer"), ("sam", "approver")):
        _add_user(env, name, role)

    started = env.cli("close", "December 2024", "--wait", "--timeout", "60", "--as", "maya")

    assert started.returncode == 1, started.stdout + started.stderr
    run = env.ledger.latest_close_runs(env.connection)[0]
    assert run.status == "awaiting_approval"
    state = step_state(run, ApprovalState)
    assert state.started_by == "maya" and state.entries
    assert "awaiting approval:" in started.stderr
    assert f"ledgerbridge close-approve {run.id} --as NAME" in " ".join(started.stderr.split())
    assert env.acumatica_batches() == []
    assert [n["event"] for n in env.webhook.wait_for(1)] == ["close.awaiting_approval"]

    by_preparer = env.cli("close-approve", str(run.id), "--as", "pat")
    assert by_preparer.returncode == 2
    assert "pat is a preparer; deciding needs the approver or admin role" in by_preparer.stderr
    by_maker = env.cli("close-approve", str(run.id), "--as", "maya", "--comment", "mine")
    assert by_maker.returncode == 1
    assert "maya started close run" in by_maker.stderr and "another approver must" in by_maker.stderr
    assert env.ledger.get_close_run(run.id).status == "awaiting_approval"

    approved = env.cli("close-approve", str(run.id), "--as", "sam", "--comment", "ties to the register")

    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert f"close run {run.id} approved by sam" in approved.stdout
    run = env.wait_status(run.id)
    assert run.status == "done", run.error
    assert_acumatica_holds_each_entry_once(env, run)
    events = [n["event"] for n in env.webhook.wait_for(3)]
    assert events == ["close.awaiting_approval", "close.approved", "close.completed"]
    notes = [(e.actor, e.message) for e in env.audit(f"close:{run.id}") if e.actor]
    assert notes == [("sam", "attempt 1: approved by sam: ties to the register")]
