"""The summary-GL close, step by step, in-process over the Zuora and Acumatica sandboxes.

Every close here is driven by :class:`~tests.unit.close.support.Harness`: the same step functions,
lock and ledger transitions the Celery chain uses, with the sandbox's clock moved over each Wait.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from sandbox.zuora import Sizes
from shared.close.context import entry_rows
from shared.close.driver import Resumed, chain_alive, drive_step, stuck_runs, take_over
from shared.close.results import FINISHED, STEPS, Done, Stale, Wait
from shared.close.state import journal_numbers
from shared.ledger.models import RecordState
from shared.mapping import journal_from_summary_entry, load_mapping
from tests.unit.close.support import SMALL, Crash, unbalance, write_mapping


def run_entries(harness, run):
    return sorted(
        (e for e in harness.zuora_entries() if e["number"] in journal_numbers(run)), key=lambda e: e["number"]
    )


def expected_lines(entry, mapping):
    journal = journal_from_summary_entry(entry, mapping)
    return sorted((line.account, line.debit, line.credit) for line in journal.lines)


def batch_lines(harness, batch):
    if harness.erp_kind == "acumatica":
        return sorted(
            (d["Account"], Decimal(str(d.get("DebitAmount") or 0)), Decimal(str(d.get("CreditAmount") or 0)))
            for d in batch["Details"]
        )
    return sorted((r["account"], Decimal(r["debit"]), Decimal(r["credit"])) for r in batch["lines"])


def assert_closed_exactly_once(harness, run):
    """Every entry of the run: one ERP batch with the entry's lines, Yes in Zuora, marked in the
    ledger with its ERP reference; the notifier told Finance it is done."""
    mapping = load_mapping(harness.mapping_path)
    entries = run_entries(harness, run)
    assert run.status == "done"
    assert run.step == FINISHED
    assert run.error is None
    assert len(entries) == len(journal_numbers(run)) > 0
    rows = entry_rows(harness.ledger, harness.connection, [e["number"] for e in entries])
    for entry in entries:
        number = entry["number"]
        batches = harness.batches_for(number)
        assert len(batches) == 1, f"{number} is in the ERP {len(batches)} times"
        assert batch_lines(harness, batches[0]) == expected_lines(entry, mapping)
        assert entry["transferredToAccounting"] == "Yes"
        assert rows[number].state == RecordState.MARKED.value
        assert rows[number].erp_ref
        yes = [
            e
            for e in harness.requests("PUT", f"/v1/journal-entries/{number}/basic-information")
            if json.loads(e.request_body)["transferredToAccounting"] == "Yes" and e.status == 200
        ]
        assert len(yes) == 1, f"{number} was marked Yes {len(yes)} times"
    assert len(harness.erp_batches()) == len(entries)
    assert harness.notifier.sent[-1].event == "close.completed"


@pytest.mark.parametrize(("concurrency", "mark_concurrency"), [(1, None), (4, None), (1, 5), (6, 3)])
@pytest.mark.parametrize("erp", ["file", "acumatica"])
def test_close_posts_each_entry_once_marks_yes_and_reconciles(
    make_harness, erp, concurrency, mark_concurrency
):
    harness = make_harness(erp=erp)
    harness.concurrency = concurrency
    harness.mark_concurrency = mark_concurrency

    run = harness.close()

    assert_closed_exactly_once(harness, run)
    period = next(
        p for p in harness.zuora_backend.state("accounting-periods") if p["name"] == "December 2024"
    )
    assert period["status"] == "Closed"
    assert len(harness.zuora_runs()) == 1
    assert len(harness.requests("PUT", "/run-trial-balance")) == 1
    assert len(harness.requests("PUT", "/close")) == 1
    assert run.journal_run_number == harness.zuora_runs()[0]["number"]
    reconcile = run.details["reconcile"]
    assert reconcile["differences"] == []
    assert all(
        line["zuora_debit"] == line["ledger_debit"] == line["erp_debit"]
        and line["zuora_credit"] == line["ledger_credit"] == line["erp_credit"]
        for line in reconcile["lines"]
    )


def test_close_sends_the_configured_transaction_types_with_an_idempotency_key(make_harness):
    harness = make_harness(transaction_types="Invoice Item, Taxation Item")
    harness.mapping_path.write_text(
        harness.mapping_path.read_text().split("[journal]")[0], "utf-8"
    )  # no [journal] list: the variable applies

    run = harness.close()

    (create,) = harness.requests("POST", "/v1/journal-runs")
    body = json.loads(create.request_body)
    assert body == {
        "accountingPeriodName": "December 2024",
        "journalEntryDate": "2024-12-31",
        "transactionTypes": [{"type": "Invoice Item"}, {"type": "Taxation Item"}],
    }
    assert {k.lower(): v for k, v in create.request_headers.items()}["idempotency-key"].startswith("lb-")
    assert run.status == "done"
    assert {e["transactionType"] for e in run_entries(harness, run)} == {"Invoice Item", "Taxation Item"}


def test_close_completion_notice_has_counts_and_totals(harness):
    run = harness.close()

    (notice,) = harness.notifier.sent
    totals = notice.fields["totals"]
    count = len(journal_numbers(run))
    shown = ", ".join(f"{c} {t['debit']} Dr / {t['credit']} Cr" for c, t in sorted(totals.items()))
    assert notice.text == (
        f'ledgerbridge close of "December 2024" on {harness.connection} is done (close run {run.id}): '
        f"{count} journal entries of journal run {run.journal_run_number} posted to the GL file export and "
        f"marked transferred in Zuora; reconciled to the cent: {shown}."
    )
    assert notice.severity == "info"
    assert notice.fields["entries"] == count
    assert set(totals) == {"EUR", "USD"}
    assert all(t["debit"] == t["credit"] > 0 for t in totals.values())


def test_close_of_period_named_with_an_apostrophe_escapes_the_zoql_literal(make_harness):
    harness = make_harness(
        sizes=Sizes(**{**SMALL.__dict__, "month": "2016-12", "period_names": "apostrophe"})
    )

    run = harness.close("Dec'16")

    (query,) = harness.requests("POST", "/v1/action/query")
    assert json.loads(query.request_body)["queryString"] == (
        "select Id, Name, Status, StartDate, EndDate, FiscalYear, Notes from AccountingPeriod "
        "where Name = 'Dec\\'16'"
    )
    assert run.period_id == next(
        p["id"] for p in harness.zuora_backend.state("accounting-periods") if p["name"] == "Dec'16"
    )
    assert_closed_exactly_once(harness, run)
    assert harness.notifier.sent[0].text.startswith(
        f'ledgerbridge close of "Dec\'16" on {harness.connection} is done (close run {run.id}): '
    )


def test_close_of_an_unknown_period_says_so(harness):
    run = harness.close("Dec'99")

    assert run.status == "needs_attention"
    assert run.error == (
        'there is no accounting period named "Dec\'99" in Zuora; check the name (it must match exactly, '
        "including case and apostrophes)"
    )
    assert harness.zuora_runs() == []


def test_close_of_a_closed_period_stops_unless_allowed(harness):
    run = harness.close("November 2024")

    assert run.status == "needs_attention"
    assert run.error == (
        'accounting period "November 2024" is already Closed in Zuora, so there is no trial balance to run '
        "and nothing to close. To run the journal run and post its entries anyway, run "
        '`ledgerbridge close "November 2024" --allow-closed`'
    )
    assert harness.requests("PUT", "/run-trial-balance") == []
    assert harness.zuora_runs() == []
    assert harness.notifier.sent[0].text == (
        f'ledgerbridge close of "November 2024" on {harness.connection} needs attention '
        f"(close run {run.id}): {run.error}"
    )


def test_close_of_a_closed_period_with_allow_closed_goes_to_the_journal_run(harness):
    first = harness.close("November 2024")
    harness.open("November 2024", allow_closed=True)  # the same open run, now allowed

    run = harness.drive(first.id)

    assert run.status == "done"
    assert run.details["lookup"]["skipped"] == "period already Closed (--allow-closed)"
    assert "done_at" not in run.details.get("trial_balance", {})
    assert harness.requests("PUT", "/run-trial-balance") == []
    assert harness.requests("PUT", "/close") == []
    assert len(harness.zuora_runs()) == 1


def test_trial_balance_error_stops_before_closing_and_posts_nothing(harness):
    message = (
        "Error creating the trial balance: exchange rate from USD to GBP on 12/31/2024 is not available."
    )
    period = next(
        p for p in harness.zuora_backend.state("accounting-periods") if p["name"] == "December 2024"
    )
    harness.zuora_backend.fail_trial_balance(period["id"], message)

    run = harness.close()

    assert run.status == "needs_attention"
    assert run.step == "trial_balance"
    assert run.error == (
        f'the trial balance of accounting period "December 2024" failed in Zuora before closing it: {message.rstrip(".")}. '
        "The period was not closed and nothing was posted or marked. Fix the cause in Zuora (for example "
        'import the missing exchange rate), then run `ledgerbridge close "December 2024"` again.'
    )
    (notice,) = harness.notifier.sent
    assert notice.event == "close.trial_balance_error"
    assert notice.text == (
        f'ledgerbridge close of "December 2024" on {harness.connection} needs attention (close run {run.id}): '
        f"{run.error}"
    )
    assert notice.fields["runTrialBalanceErrorMessage"] == message
    assert run.details["trial_balance"]["runTrialBalanceErrorMessage"] == message
    assert harness.zuora_backend.state_record("accounting-periods", period["id"])["status"] == "Open"
    assert harness.zuora_runs() == []
    assert harness.erp_batches() == []
    assert harness.ledger.counts_by_state(harness.connection) == {}
    # A stopped run never polls again: a late task of its chain finds nothing to do.
    reads = len(harness.requests("GET", f"/v1/accounting-periods/{period['id']}"))
    late = drive_step(harness.context(), harness.lock("December 2024", harness.new_process()), run.id,
                         "trial_balance", "late-task")  # fmt: skip
    assert isinstance(late, Stale)
    assert len(harness.requests("GET", f"/v1/accounting-periods/{period['id']}")) == reads


def test_trial_balance_error_then_fixed_and_rerun_completes(harness):
    period = next(
        p for p in harness.zuora_backend.state("accounting-periods") if p["name"] == "December 2024"
    )
    harness.zuora_backend.fail_trial_balance(period["id"], "no rate", times=1)
    stopped = harness.close()
    assert stopped.status == "needs_attention"

    run = harness.drive(stopped.id)

    assert run.details["trial_balance"]["attempt"] == 2
    assert len(harness.requests("PUT", "/run-trial-balance")) == 2
    assert_closed_exactly_once(harness, run)


def test_trial_balance_error_after_closing_says_the_period_is_closed(harness):
    period = next(
        p for p in harness.zuora_backend.state("accounting-periods") if p["name"] == "December 2024"
    )

    run = harness.drive(
        harness.open(),
        on_point={
            "before:close_period": lambda: harness.zuora_backend.fail_trial_balance(
                period["id"], "FX missing"
            )
        },
    )

    assert run.status == "needs_attention"
    assert run.error == (
        'the trial balance of accounting period "December 2024" failed in Zuora after closing it: FX missing. '
        "The period is Closed; reopen it in Zuora, fix the cause (for example import the missing exchange "
        'rate), then run `ledgerbridge close "December 2024"` again.'
    )
    assert harness.zuora_runs() == []
    assert harness.erp_batches() == []


def test_journal_run_error_stops_and_posts_nothing(harness):
    harness.zuora_backend.fail_next_journal_runs(1, "Journal run failed: segment rule missing")

    run = harness.close()

    (journal_run,) = harness.zuora_runs()
    assert journal_run["status"] == "Error"
    assert run.status == "needs_attention"
    assert run.step == "journal_run"
    assert run.error == (
        f'journal run {journal_run["number"]} for accounting period "December 2024" ended with status Error in '
        "Zuora; nothing was posted or marked. Look at the run in Zuora (Finance > Journal Runs), fix the cause, "
        'then run `ledgerbridge close "December 2024"` again: a new journal run is started.'
    )
    assert [n.event for n in harness.notifier.sent] == ["close.journal_run_failed"]
    assert harness.notifier.sent[0].text.endswith(run.error)
    assert harness.erp_batches() == []
    assert harness.zuora_entries() == []
    assert harness.requests("PUT", "/basic-information") == []


def test_journal_run_error_then_rerun_starts_a_new_run_and_completes(harness):
    harness.zuora_backend.fail_next_journal_runs(1)
    stopped = harness.close()

    run = harness.drive(stopped.id)

    first, second = harness.zuora_runs()
    assert (first["status"], second["status"]) == ("Error", "Completed")
    assert run.journal_run_number == second["number"]
    keys = {
        {k.lower(): v for k, v in e.request_headers.items()}["idempotency-key"]
        for e in harness.requests("POST", "/v1/journal-runs")
    }
    assert len(keys) == 2
    assert_closed_exactly_once(harness, run)


def test_unbalanced_entry_is_parked_and_nothing_is_posted_or_marked(make_harness):
    harness = make_harness(tamper=unbalance("JE-00000002", "0.01"))

    run = harness.close()

    original = next(e for e in harness.zuora_entries() if e["number"] == "JE-00000002")
    debit = sum(Decimal(str(i["amount"])) for i in original["journalEntryItems"] if i["type"] == "Debit")
    currency = original["currency"]
    reason = (
        f"out of balance: debits {debit + Decimal('0.01')} {currency} != credits {debit} {currency} "
        "(difference 0.01)"
    )
    count = len(journal_numbers(run))
    assert run.status == "needs_attention"
    assert run.step == "check"
    assert run.error == (
        f"1 of {count} journal entries of journal run {run.journal_run_number} cannot be posted and were "
        f"parked, so nothing of the run was posted: JE-00000002: {reason}. Fix the mapping file or the entries "
        'in Zuora, then run `ledgerbridge close "December 2024"` again.'
    )
    assert [n.event for n in harness.notifier.sent] == ["close.entries_parked"]
    assert harness.notifier.sent[0].fields["parked"] == {"JE-00000002": [reason]}
    parked = harness.ledger.get_record(harness.connection, "journal_entry", "JE-00000002")
    assert (parked.state, parked.last_error) == ("parked", reason)
    assert harness.ledger.counts_by_state(harness.connection) == {
        ("journal_entry", "parked"): 1,
        ("journal_entry", "pending"): count - 1,
    }
    assert harness.erp_batches() == []
    assert {e["transferredToAccounting"] for e in harness.zuora_entries()} == {"No"}
    assert harness.requests("PUT", "/basic-information") == []


def test_unmapped_account_code_parks_its_entries_then_a_fixed_mapping_completes(make_harness, tmp_path):
    mapping = write_mapping(tmp_path / "partial.toml", drop_accounts=["Customer Cash on Account"])
    harness = make_harness(mapping=mapping)

    run = harness.close()

    with_code = sorted(
        e["number"]
        for e in run_entries(harness, run)
        if any(i["accountingCodeName"] == "Customer Cash on Account" for i in e["journalEntryItems"])
    )
    assert with_code
    reason = "unmapped account 'Customer Cash on Account': add it to [accounts] in the mapping file"
    listed = "; ".join(f"{n}: {reason}" for n in with_code)
    assert run.status == "needs_attention"
    assert run.error == (
        f"{len(with_code)} of {len(journal_numbers(run))} journal entries of journal run {run.journal_run_number} "
        f"cannot be posted and were parked, so nothing of the run was posted: {listed}. Fix the mapping file "
        'or the entries in Zuora, then run `ledgerbridge close "December 2024"` again.'
    )
    assert harness.erp_batches() == []
    assert {e["transferredToAccounting"] for e in harness.zuora_entries()} == {"No"}

    write_mapping(mapping)  # Finance adds the code
    run = harness.drive(run.id)

    assert_closed_exactly_once(harness, run)
    events = [n.event for n in harness.notifier.sent]
    assert events == ["close.entries_parked", "close.completed"]


def test_unmapped_currency_parks_the_entries_in_it(make_harness, tmp_path):
    harness = make_harness(mapping=write_mapping(tmp_path / "usd.toml", drop_currencies=["EUR"]))

    run = harness.close()

    eur = sorted(e["number"] for e in run_entries(harness, run) if e["currency"] == "EUR")
    parked = run.details["check"]["bad"]
    assert sorted(parked) == eur
    assert all(
        parked[n] == ["unmapped currency 'EUR': add it to [currencies] in the mapping file"] for n in eur
    )
    assert harness.erp_batches() == []


def test_missing_mapping_file_stops_before_touching_zuora(make_harness, tmp_path):
    harness = make_harness(mapping=tmp_path / "absent.toml")

    run = harness.close()

    assert run.status == "needs_attention"
    assert run.step == "lookup"
    assert run.error == (
        f"{tmp_path / 'absent.toml'}: mapping file not found (LEDGERBRIDGE_MAPPING_FILE). Fix the mapping file, "
        "then run the close again."
    )
    assert harness.requests("POST", "/v1/action/query") == []


CRASH_POINTS = [
    *(f"before:{step}" for step in STEPS),
    *(f"after:{step}" for step in STEPS[:-1]),
    "trial_balance:started",
    "close_period:closed",
    "journal_run:created",
    "posting:1",
    "posting:3",
    "posted:1",
    "posted:3",
    "marking:1",
    "marking:3",
]


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_at_any_point_then_resume_posts_and_marks_each_entry_once(make_harness, point, concurrency):
    harness = make_harness(erp="acumatica")
    harness.concurrency = concurrency  # 4: the crash lands while other entries of its chunk are in flight
    run_id = harness.open()

    with pytest.raises(Crash):
        harness.drive(run_id, crash_at=point)
    run = harness.drive(run_id)

    assert_closed_exactly_once(harness, run)
    assert len(harness.zuora_runs()) == 1
    assert len(harness.requests("PUT", "/run-trial-balance")) == 1
    assert len(harness.requests("PUT", "/close")) == 1


def test_crash_after_the_erp_create_is_resolved_by_natural_key_lookup(make_harness):
    harness = make_harness(erp="acumatica")
    run_id = harness.open()
    with pytest.raises(Crash):
        harness.drive(run_id, crash_at="posted:2")
    second = journal_numbers(harness.ledger.get_close_run(run_id))[1]
    in_doubt = harness.ledger.get_record(harness.connection, "journal_entry", second)
    assert (in_doubt.state, in_doubt.erp_ref) == ("posting", None)
    assert len(harness.batches_for(second)) == 1

    run = harness.drive(run_id)

    row = harness.ledger.get_record(harness.connection, "journal_entry", second)
    timeline = [e.message for e in harness.ledger.timeline(row.subject) if e.kind == "transition"]
    assert f"posting -> posted: in doubt; found in the ERP as {row.erp_ref}" in timeline
    assert_closed_exactly_once(harness, run)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_post_step_hands_over_to_a_fresh_task_when_its_budget_is_spent(harness, concurrency):
    harness.step_budget = -1.0
    harness.concurrency = concurrency

    run = harness.close()

    continuations = [r for step, r in harness.results if step == "post" and isinstance(r, Wait)]
    assert len(continuations) == -(-len(journal_numbers(run)) // concurrency) - 1  # one task per chunk
    assert all(r.seconds == 0.0 for r in continuations)
    assert_closed_exactly_once(harness, run)


def test_transient_zuora_failures_wait_with_backoff_then_complete(harness):
    from sandbox.zuora.faults import FaultRule

    harness.zuora_backend.gateway.add_faults(
        [
            FaultRule.parse(
                {"kind": "server_error", "endpoint": "GET /v1/journal-runs/*", "next": 6, "status": 503}
            )
        ],
        replace=True,
        seed=1,
    )

    run = harness.close()

    waits = [r for step, r in harness.results if step == "journal_run" and isinstance(r, Wait)]
    assert any(r.reason.startswith("temporary failure") for r in waits)
    assert "transient" not in run.details or run.details["transient"] is None
    assert_closed_exactly_once(harness, run)


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_mark_task_that_fails_after_a_put_went_out_reads_only_that_entry_before_writing(
    harness, concurrency
):
    from shared.errors import Transient

    harness.concurrency = concurrency
    harness.mark_while_posting = False  # the mark step marks every entry

    def lost_answer() -> None:
        # The PUT of the third entry went out, then the task failed (a Transient after sending).
        raise Transient("connection reset after the request was sent", api="zuora")

    run = harness.drive(harness.open(), on_point={"marking:3": lost_answer})

    assert_closed_exactly_once(harness, run)
    assert [r for step, r in harness.results if step == "mark" and not isinstance(r, Done)]
    assert run.details["mark"]["inflight"] is None
    third = journal_numbers(run)[2]
    reads = [e for e in harness.requests("GET", "/v1/journal-entries/") if "basic-information" not in e.url]
    assert [e.url.rsplit("/", 1)[1] for e in reads if "journal-runs" not in e.url] == [third]


def _yes_puts(harness) -> list[str]:
    return [
        e.url.split("/")[-2]
        for e in harness.requests("PUT", "/basic-information")
        if '"Yes"' in (e.request_body or "")
    ]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_the_post_step_marks_what_it_posts_and_leaves_the_mark_step_nothing(harness, concurrency):
    harness.concurrency = concurrency
    sent_before_the_mark_step: list[str] = []

    def mark_step_begins() -> None:
        sent_before_the_mark_step.extend(_yes_puts(harness))

    run = harness.drive(harness.open(), on_point={"before:mark": mark_step_begins})

    assert_closed_exactly_once(harness, run)
    numbers = journal_numbers(run)
    assert sorted(sent_before_the_mark_step) == sorted(numbers)
    assert sorted(_yes_puts(harness)) == sorted(numbers)
    assert run.details["mark"]["inflight"] is None


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_mark_that_fails_while_posting_is_left_to_the_mark_step_which_reads_it_first(harness, concurrency):
    from shared.errors import Transient

    harness.concurrency = concurrency

    def lost_answer() -> None:
        raise Transient("connection reset after the request was sent", api="zuora")

    run = harness.drive(harness.open(), on_point={"marking:3": lost_answer})

    assert_closed_exactly_once(harness, run)
    assert run.details["mark"]["inflight"] is None
    third = journal_numbers(run)[2]
    reads = [e for e in harness.requests("GET", "/v1/journal-entries/") if "basic-information" not in e.url]
    # Only the entry whose answer was lost is read; it was Yes already, so it is not sent again.
    assert [e.url.rsplit("/", 1)[1] for e in reads if "journal-runs" not in e.url] == [third]
    assert _yes_puts(harness).count(third) == 1


def test_verification_reports_an_entry_that_is_not_yes_in_zuora(harness):
    def unmark() -> None:
        harness.zuora_backend.configure({"override_transferred_permission": True})
        harness.zuora.journal_entries.update_basic_information("JE-00000003", transferred_to_accounting="No")

    run = harness.drive(harness.open(), on_point={"before:verify": unmark})

    assert run.status == "needs_attention"
    assert run.step == "verify"
    assert run.error == (
        f'VERIFICATION FAILED for journal run {run.journal_run_number} of "December 2024": 1 problem(s): '
        "JE-00000003 is transferredToAccounting=No in Zuora, not Yes. Do not treat the period as transferred; "
        'fix these, then run `ledgerbridge close "December 2024"` again.'
    )
    assert [n.event for n in harness.notifier.sent] == ["close.verification_failed"]


def test_reconciliation_reports_the_differing_account_lines(harness):
    def edit_the_gl() -> None:
        path = harness.export_dir / "2024-12" / "journal.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows[0]["debit"] = str(Decimal(rows[0]["debit"] or "0") + Decimal("0.01"))
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    run = harness.drive(harness.open(), on_point={"before:reconcile": edit_the_gl})

    (difference,) = run.details["reconcile"]["differences"]
    assert difference["erp_debit"] - difference["zuora_debit"] == Decimal("0.01")
    assert difference["ledger_debit"] == difference["zuora_debit"]
    assert run.status == "needs_attention"
    assert run.error.startswith(
        f'RECONCILIATION FAILED for "December 2024": 1 account line(s) differ between Zuora, the ledger and '
        f"the GL file export: {difference['account']} {difference['currency']}: Zuora "
        f"{difference['zuora_debit']} Dr / {difference['zuora_credit']} Cr, ledger {difference['ledger_debit']} "
        f"Dr / {difference['ledger_credit']} Cr, the GL file export {difference['erp_debit']} Dr / "
        f"{difference['erp_credit']} Cr."
    )
    assert [n.event for n in harness.notifier.sent] == ["close.reconciliation_failed"]


def test_dry_run_previews_posts_nothing_and_cancels_its_journal_run(harness):
    run = harness.close(dry_run=True)

    assert run.status == "dry_run"
    assert run.step == FINISHED
    preview = run.details["check"]["preview"]
    assert [p["number"] for p in preview] == journal_numbers(run)
    assert all(p["debit"] == p["credit"] > 0 for p in preview)
    (journal_run,) = harness.zuora_runs()
    assert journal_run["status"] == "Cancelled"
    assert harness.requests("PUT", "/close") == []
    assert harness.erp_batches() == []
    assert harness.ledger.counts_by_state(harness.connection) == {}
    assert harness.notifier.sent == []

    real = harness.close()

    assert len(journal_numbers(real)) == len(preview)
    assert_closed_exactly_once(harness, real)


def test_second_close_after_done_posts_nothing_again(harness):
    first = harness.close()
    batches = len(harness.erp_batches())

    second = harness.close()

    assert second.id != first.id
    assert second.status == "needs_attention"
    assert "is already Closed in Zuora" in second.error
    assert len(harness.erp_batches()) == batches


def test_chain_alive_while_a_live_driver_holds_the_lock(harness):
    run_id = harness.open()
    identity = harness.new_process()
    lock = harness.lock("December 2024", identity)
    cli = harness.lock("December 2024", harness.new_process())  # another process looks
    assert not chain_alive(cli, run_id)

    resumed = take_over(harness.context(), lock, run_id, "driver-1")
    assert resumed == Resumed("lookup")
    assert chain_alive(cli, run_id)

    harness.dead.add(identity)
    assert not chain_alive(cli, run_id)


def test_trial_balance_error_of_dec16_quotes_the_name_and_posts_nothing(make_harness):
    harness = make_harness(
        sizes=Sizes(**{**SMALL.__dict__, "month": "2016-12", "period_names": "apostrophe"})
    )
    period = next(p for p in harness.zuora_backend.state("accounting-periods") if p["name"] == "Dec'16")
    harness.zuora_backend.fail_trial_balance(period["id"], "FX rate missing")

    run = harness.close("Dec'16")

    assert run.error == (
        'the trial balance of accounting period "Dec\'16" failed in Zuora before closing it: FX rate missing. '
        "The period was not closed and nothing was posted or marked. Fix the cause in Zuora (for example "
        'import the missing exchange rate), then run `ledgerbridge close "Dec\'16"` again.'
    )
    assert harness.notifier.sent[0].text == (
        f'ledgerbridge close of "Dec\'16" on {harness.connection} needs attention (close run {run.id}): '
        f"{run.error}"
    )
    assert harness.erp_batches() == []
    assert harness.zuora_runs() == []
    assert harness.requests("PUT", "/basic-information") == []


def test_erp_refusal_parks_the_entry_then_a_fixed_mapping_resumes_and_posts_once(make_harness, tmp_path):
    mapping = tmp_path / "wrong.toml"
    write_mapping(mapping)
    text = mapping.read_text()
    mapping.write_text(text.replace('"Sales Tax Payable"             = { account = "24000"',
                                    '"Sales Tax Payable"             = { account = "99999"'))  # fmt: skip
    harness = make_harness(erp="acumatica", mapping=mapping)

    run = harness.close()

    assert run.status == "needs_attention"
    assert run.step == "post"
    parked = [
        r
        for r in entry_rows(harness.ledger, harness.connection, journal_numbers(run)).values()
        if r.state == "parked"
    ]
    assert len(parked) == 1
    assert parked[0].last_error.startswith("Acumatica refused it: ")
    assert run.error.startswith(f"Acumatica refused journal entry {parked[0].zuora_id}: ")
    assert run.error.endswith(
        "It was parked; fix the cause (account, period, currency in the ERP), then run "
        '`ledgerbridge close "December 2024"` again.'
    )
    posted_before = {b["Description"].split()[0] for b in harness.erp_batches()}
    assert parked[0].zuora_id not in posted_before

    write_mapping(mapping)  # the right account
    run = harness.drive(run.id)

    assert run.details["check"]["attempt"] == 2
    assert "stopped" not in run.details["post"]
    assert_closed_exactly_once(harness, run)


def test_each_async_job_is_polled_at_most_12_times_and_seen_within_2_seconds(harness):
    harness.zuora_backend.configure(
        {
            "trial_balance": {"pending_seconds": 3.0, "processing_seconds": 5.0},
            "journal_run": {"pending_seconds": 2.0, "processing_seconds": 4.0},
        }
    )

    run = harness.close()

    for step, duration in (("trial_balance", 8.0), ("close_period", 8.0), ("journal_run", 6.0)):
        waits = [r.seconds for s, r in harness.results if s == step and isinstance(r, Wait)]
        assert run.details[step]["polls"] <= 12
        assert duration <= sum(waits) <= duration + 2.0, (step, waits)
    assert run.status == "done"


def test_sweep_finds_running_runs_that_no_live_chain_drives(harness):
    import datetime as dt

    run_id = harness.open()
    with pytest.raises(Crash):
        harness.drive(run_id, crash_at="after:trial_balance")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=901)
    observer = harness.new_process()

    def stuck(now):
        return stuck_runs(harness.ledger, harness.connection, lambda p: harness.lock(p, observer), now=now)

    assert stuck(dt.datetime.now(dt.UTC)) == []  # too recent to call stuck
    assert [r.id for r in stuck(later)] == [run_id]
    run = harness.drive(run_id)
    assert run.status == "done"
    assert stuck(later + dt.timedelta(hours=1)) == []
