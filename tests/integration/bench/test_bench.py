"""``scripts/bench`` at its tiny size: every scenario runs end to end against the sandboxes
(real processes, real Redis, real worker processes) and its correctness checks pass.

No timed assertions: a tiny run proves the machinery (start-up, knobs, baseline, ledgerbridge,
counters, checks, report), not the speed. The figures themselves are measured with
``scripts/bench --size full`` and published in the README.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from bench import scenarios as bench
from shared import callouts
from tests.conftest import POSTGRES_URL

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

# The server the tests' own databases are made on (the bench makes and drops one per run there).
POSTGRES_SERVER = POSTGRES_URL.rsplit("/", 1)[0] + "/postgres"


def run_tiny(tmp_path: Path, redis_url: str, scenario: str) -> dict[str, Any]:
    """One scenario at its tiny size, on the bench's default shape: the production one (a
    PostgreSQL ledger on the local server, the Procfile's worker command)."""
    runner = bench.Bench(
        plan=bench.Plan.for_size("tiny"),
        tuning=bench.Tuning(),
        workdir=tmp_path / "work",
        redis_url=redis_url,
        console=Console(width=140, record=True),
        database=POSTGRES_SERVER,
    )
    runner.workdir.mkdir()
    out = tmp_path / "bench.json"
    report = bench.run_bench(runner, [scenario], out=out, command=f"scripts/bench {scenario} --size tiny")
    assert json.loads(out.read_text()) == json.loads(json.dumps(report, default=str))
    return dict(report["scenarios"][scenario])


def failed_checks(result: dict[str, Any]) -> dict[str, Any]:
    return {name: check for name, check in result["checks"].items() if not check["ok"]}


# -- each scenario, tiny --------------------------------------------------------------------------


@pytest.mark.slow
def test_backlog_tiny_syncs_every_record_once_on_both_sides(tmp_path, redis_url):
    result = run_tiny(tmp_path, redis_url, "backlog")

    assert result["status"] in ("ok", "missed"), result["notes"]
    assert failed_checks(result) == {}
    figures = result["figures"]
    assert figures["records"] == figures["baseline"]["records"]  # the same tenant, the same records
    assert figures["records"] > 0
    assert figures["zuora_calls"]["token"] == 1
    assert figures["erp"]["requests"] >= figures["records"]
    assert {t["name"] for t in result["targets"]} == {
        "speed-up vs baseline",
        "ERP calls/record",
        "Zuora calls/record",
        "Zuora token requests",
    }


@pytest.mark.slow
def test_licence_tiny_loses_nothing_and_stays_in_the_licence(tmp_path, redis_url):
    result = run_tiny(tmp_path, redis_url, "licence")

    assert result["status"] in ("ok", "missed"), result["notes"]
    assert failed_checks(result) == {}
    ours = result["figures"]["ledgerbridge"]
    assert ours["requests"] > 0
    assert ours["max_concurrent_observed"] <= bench.LICENCE["max_concurrent"]
    assert result["figures"]["reconciliation"]["problems"] == []


@pytest.mark.slow
def test_memory_tiny_samples_every_process_at_both_sizes(tmp_path, redis_url):
    result = run_tiny(tmp_path, redis_url, "memory")

    assert failed_checks(result) == {}
    small, large = (str(n) for n in bench.Plan.for_size("tiny").memory_documents)
    for size in (small, large):
        peaks = result["figures"][size]["peak_rss_mb_tree"]
        assert set(peaks) == {"worker-0", "worker-1", "beat", "web", "sync"}
        assert all(v > 0 for v in peaks.values())
    assert len(result["targets"]) == 5


@pytest.mark.slow
def test_push_tiny_creates_every_invoice_once(tmp_path, redis_url):
    result = run_tiny(tmp_path, redis_url, "push")

    assert failed_checks(result) == {}
    figures = result["figures"]
    plan = bench.Plan.for_size("tiny")
    assert figures["posted"] == int(plan.push_rate * plan.push_seconds)
    assert figures["erp_duplicates"] == 0
    assert figures["sent"]["statuses"] == {
        "200": figures["sent"]["sent"] + figures["sent"]["duplicates_sent"]
    }
    assert figures["p99_ms"] is not None


@pytest.mark.slow
def test_close_tiny_posts_and_marks_every_entry(tmp_path, redis_url):
    result = run_tiny(tmp_path, redis_url, "close")

    assert failed_checks(result) == {}
    figures = result["figures"]
    assert figures["entries"] > 0
    assert figures["entries"] == figures["baseline"]["entries"]
    assert [j["job"] for j in figures["jobs"]] == ["trial_balance", "trial_balance", "journal_run"]
    assert figures["polls"]["journal_run"] >= 1
    # Timed like the baseline (posts and marks), with the verifying and reconciling reads after it.
    assert figures["posting_seconds"] > 0
    assert figures["verify_reconcile_seconds"] > 0
    assert figures["posting_speedup_with_verify_reconcile"] < figures["posting_speedup"]


@pytest.mark.slow
def test_in_doubt_tiny_settles_every_lost_answer_and_posts_each_document_once(tmp_path, redis_url):
    result = run_tiny(tmp_path, redis_url, "in_doubt")

    assert failed_checks(result) == {}
    figures = result["figures"]
    assert figures["records"] > 0
    assert set(figures["faults_injected"]) <= {"commit_then_drop", "status"}
    assert set(figures["settle_seconds"]) == {"p50", "p99", "max"}
    assert {t["name"] for t in result["targets"]} == {
        "lost answer -> settled, p99",
        "`sync --wait` with faults / without",
    }


@pytest.mark.slow
def test_fair_share_tiny_posts_every_newcomer_alone_and_beside_a_backlog_with_and_without_shares(
    tmp_path, redis_url
):
    result = run_tiny(tmp_path, redis_url, "fair_share")

    assert failed_checks(result) == {}
    figures = result["figures"]
    plan = bench.Plan.for_size("tiny")
    for run in (figures["alone"], figures["shared"]["newcomers"], figures["unshared"]["newcomers"]):
        assert set(run) == {f"small-{i}" for i in range(5)}
        assert all(0 < f["documents"] <= plan.fair_share_documents for f in run.values())
        assert all(0 < f["first"] <= f["p50"] <= f["p99"] <= f["max"] for f in run.values())
    assert figures["shared"]["backlog"]["tasks_in_the_broker_at_arrival"] >= 0
    assert {t["name"] for t in result["targets"]} == {
        "newcomers' p99 with the backlog, x alone (worst connection)",
        "backlog's rate while the newcomers are posted, share of its rate before",
    }


@pytest.mark.slow
def test_scale_out_tiny_syncs_with_each_fleet_size_within_the_licence_and_the_connections(
    tmp_path, redis_url
):
    result = run_tiny(tmp_path, redis_url, "scale_out")

    assert failed_checks(result) == {}
    points = result["figures"]["points"]
    assert [p["workers"] for p in points] == [2, 4, 6]
    for point in points:
        assert point["records"] > 0
        assert 0 < point["ledger_connections"]["peak_per_process_max"] <= result["figures"]["pool_size"]
        assert point["erp_max_concurrent_observed"] <= result["figures"]["licence"]["max_concurrent"]


# -- the pieces, without processes ----------------------------------------------------------------


def test_tenant_sizes_keeps_the_mix_and_the_exact_document_count():
    sizes = bench.tenant_sizes(20_000, large_invoices=2)

    assert sum(sizes[name] for name in bench.MIX) == 20_000
    assert sizes["accounts"] == 1_500
    assert bench.record_count(sizes) == 21_500
    assert sizes["payments"] == 6_950
    assert sizes["large_invoices"] == 2


def test_signed_callout_passes_the_receivers_signature_check():
    body, headers = bench.signed_callout("s3cret", "1110", "inv-1", "acc-1")
    expected = hmac.new(
        b"s3cret", headers["X-Zuora-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()

    assert headers["X-Zuora-Signature"] == expected
    callouts.verify_signature("s3cret", headers["X-Zuora-Timestamp"], body, headers["X-Zuora-Signature"])
    callouts.check_timestamp(headers["X-Zuora-Timestamp"], datetime.now(UTC), max_age=timedelta(days=1))
    parsed = callouts.parse_body(body)
    assert (parsed.event_code, parsed.object_id) == ("1110", "inv-1")


def test_zuora_calls_groups_the_sandbox_counters_by_kind():
    counters = {
        "counts": {
            "POST /oauth/token": 1,
            "GET /object-query/invoices": 5,
            "POST /v1/action/update": 3,
            "PUT /v1/credit-memos/{key}": 2,
            "PUT /v1/debit-memos/{key}": 1,
            "GET /v1/accounting-periods/{id}": 4,
        }
    }

    assert bench.zuora_calls(counters) == {
        "token": 1,
        "object_query": 5,
        "action_update": 3,
        "memo_put": 3,
        "other": 4,
        "total": 16,
    }


def test_percentile_is_the_nearest_rank():
    values = [float(v) for v in range(1, 101)]

    assert bench.percentile(values, 0.5) == 50.0
    assert bench.percentile(values, 0.99) == 99.0
    assert bench.percentile([], 0.5) is None


def test_bench_command_refuses_an_unknown_scenario(tmp_path):
    app = typer.Typer()
    bench.register(app, Console(), Console(stderr=True))

    @app.command("other")
    def other() -> None:  # a second command keeps typer's sub-command routing
        pass

    result = CliRunner().invoke(
        app, ["bench", "nonsense", "--size", "tiny", "--out", str(tmp_path / "x.json")]
    )

    assert result.exit_code == 2
    assert not (tmp_path / "x.json").exists()


def test_the_procfile_shape_runs_the_procfiles_worker_command(tmp_path):
    env, args = bench.procfile_worker()
    tuning = bench.Tuning.procfile()

    assert args[:3] == ["-A", "worker.app", "worker"]
    assert "-E" in args
    assert env == {"MALLOC_ARENA_MAX": "2"}
    assert tuning.pool_kind == "prefork"
    assert tuning.concurrency == bench.procfile_concurrency(args) == 4
    assert tuning.worker_command() == (env, args)
    assert "--concurrency=8" in bench.tuning_for("procfile", 8).worker_command()[1]
    assert bench.Tuning() == tuning == bench.tuning_for("procfile", None)
    threads = bench.tuning_for("threads", None)
    assert (threads.pool, threads.concurrency) == ("threads", 16)
    assert threads.worker_command()[1][-6:] == [
        "--pool",
        "threads",
        "--concurrency",
        "16",
        "--loglevel",
        "INFO",
    ]
    assert bench.tuning_for("prefork", 2).worker_command()[1][3:7] == [
        "--pool",
        "prefork",
        "--concurrency",
        "2",
    ]
    shaped = bench.Bench(
        plan=bench.Plan.for_size("tiny"),
        tuning=tuning,
        workdir=tmp_path,
        redis_url="redis://127.0.0.1:6379/0",
        console=Console(),
        database="postgresql://postgres@127.0.0.1/postgres",
    )
    assert shaped.shape_text() == (
        "PostgreSQL ledger, 2 workers x prefork 4 (the Procfile's worker command); "
        "Zuora pages at most Object Query 50, lists 40"
    )
    assert shaped.shape()["zuora_page_limits"] == "sdk"  # Zuora's strictest source, by default


def test_statement_rows_are_per_record_of_each_fleet():
    result = bench.ScenarioResult("backlog", "setup")
    counted = {"records": 10, "statements": 55, "round_trips": 80, "commits": 20, "checkouts": 21, "pings": 19,
               "by_statement": {"COMMIT": [0, 20], "SELECT 1": [5, 5]}}  # fmt: skip
    bench.add_statement_rows(result, {"backlog": counted})

    rows = {figure: ours for figure, ours, _base in result.rows}
    assert rows["ledger statements/record"] == 5.5
    assert rows["ledger round trips/record"] == 8.0
    assert rows["ledger commits / checkouts / pings per record"] == "2.0 / 2.1 / 1.9"
    top = result.figures["ledger_statements"]["backlog"]["top_statements"]
    assert [t["statement"] for t in top] == ["COMMIT", "SELECT 1"]
