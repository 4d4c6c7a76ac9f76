"""The retry decision and the error mapping, as tables (acumatica-api.md sections 4, 5 and 7)."""

from __future__ import annotations

import pytest

from shared.backoff import no_jitter
from shared.erp.acumatica_policy import Decision, RetryPolicy, decide, error_for
from shared.erp.errors import OutcomeUnknown
from shared.errors import AuthFailed, NotFound, RateLimited, Reason, Rejected, Transient

POLICY = RetryPolicy(max_attempts=4, base=1.0, cap=30.0, floor=0.0, max_inline_wait=20.0)


def http_error(exception_type: str, message: str) -> dict[str, str]:
    return {"message": "An error has occurred.", "exceptionType": exception_type, "exceptionMessage": message}


NO_ENTITY = http_error(
    "PX.Api.ContractBased.NoEntitySatisfiesTheConditionException", "No entity satisfies the condition."
)
KEY_NOT_FOUND = http_error(
    "System.Collections.Generic.KeyNotFoundException", "The given key was not present."
)
OPTIMIZER = http_error(
    "PX.Api.ContractBased.OptimizedExport.CannotOptimizeException",
    "Optimization cannot be performed.The following fields cause the error:\r\nX: View Y has BQL delegate",
)
SETUP = http_error("PX.Data.PXSetupNotEnteredException", "General Ledger Preferences form is not set up.")
LOCK = http_error("PX.Data.PXLockViolationException", "Another process has updated the 'ARInvoice' record.")
GENERIC = http_error("System.Exception", "Something broke.")


@pytest.mark.parametrize(
    ("status", "error", "body", "repeatable", "expected"),
    [
        # 429: declined, so anything repeats; exponential backoff, no Retry-After.
        (429, None, None, False, Decision(True, 1.0, "429: licence limit (no Retry-After)")),
        (429, None, None, True, Decision(True, 1.0, "429: licence limit (no Retry-After)")),
        # Nothing sent: repeat.
        (None, "connect", None, False, Decision(True, 1.0, "PUT: connection failed before sending")),
        # Sent, no answer: repeat a read, never a create (its outcome is unknown).
        (None, "timeout", None, True, Decision(True, 1.0, "PUT: timeout after sending")),
        (
            None,
            "timeout",
            None,
            False,
            Decision(False, 1.0, "PUT: timeout after sending; PUT is not repeated blindly", True),
        ),
        (
            None,
            "read",
            None,
            False,
            Decision(False, 1.0, "PUT: read after sending; PUT is not repeated blindly", True),
        ),
        # 5xx.
        (500, None, GENERIC, True, Decision(True, 1.0, "HTTP 500")),
        (500, None, GENERIC, False, Decision(False, 1.0, "HTTP 500; PUT is not repeated blindly", True)),
        (503, None, None, True, Decision(True, 1.0, "HTTP 503")),
        (504, None, None, False, Decision(False, 1.0, "HTTP 504; PUT is not repeated blindly", True)),
        (500, None, LOCK, False, Decision(True, 1.0, "500: lock violation, the change was rolled back")),
        # Deterministic 500s are final.
        (500, None, NO_ENTITY, True, Decision(False, 0.0, "HTTP 500 (not_found) is final")),
        (500, None, KEY_NOT_FOUND, True, Decision(False, 0.0, "HTTP 500 (deterministic) is final")),
        (500, None, OPTIMIZER, True, Decision(False, 0.0, "HTTP 500 (deterministic) is final")),
        (500, None, SETUP, True, Decision(False, 0.0, "HTTP 500 (deterministic) is final")),
        # Client errors are final.
        (400, None, None, True, Decision(False, 0.0, "HTTP 400 is final")),
        (403, None, None, True, Decision(False, 0.0, "HTTP 403 is final")),
        (404, None, None, True, Decision(False, 0.0, "HTTP 404 is final")),
        (412, None, None, False, Decision(False, 0.0, "HTTP 412 is final")),
        (422, None, None, False, Decision(False, 0.0, "HTTP 422 is final")),
    ],
)
def test_decide_first_attempt(status, error, body, repeatable, expected):
    decision = decide(
        1,
        status=status,
        error=error,
        body=body,
        method="PUT",
        repeatable=repeatable,
        policy=POLICY,
        jitter=no_jitter,
    )
    assert decision == expected


def test_decide_backs_off_exponentially_with_cap():
    waits = [
        decide(
            n,
            status=429,
            error=None,
            body=None,
            method="GET",
            repeatable=True,
            policy=RetryPolicy(max_attempts=10, base=1.0, cap=8.0, floor=0.0, max_inline_wait=60.0),
            jitter=no_jitter,
        ).wait
        for n in range(1, 7)
    ]
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_decide_uses_the_jitter_function():
    decision = decide(
        3,
        status=503,
        error=None,
        body=None,
        method="GET",
        repeatable=True,
        policy=POLICY,
        jitter=lambda ceiling: ceiling / 4,
    )
    assert decision == Decision(True, 1.0, "HTTP 503")


def test_decide_gives_up_after_max_attempts():
    decision = decide(
        4, status=429, error=None, body=None, method="GET", repeatable=True, policy=POLICY, jitter=no_jitter
    )
    assert decision == Decision(False, 8.0, "429: licence limit (no Retry-After); gave up after 4 attempts")


def test_decide_does_not_sleep_through_long_waits():
    policy = RetryPolicy(max_attempts=10, base=30.0, cap=300.0, floor=0.0, max_inline_wait=20.0)
    decision = decide(
        1, status=429, error=None, body=None, method="GET", repeatable=True, policy=policy, jitter=no_jitter
    )
    assert decision == Decision(
        False, 30.0, "429: licence limit (no Retry-After); wait 30.0s is too long to sleep inline"
    )


FINAL = Decision(False, 0.0, "final")


@pytest.mark.parametrize(
    ("status", "body", "decision", "error_type", "reasons"),
    [
        (
            422,
            {
                "error": "Inserting  'ARInvoice' record raised at least one error. Please review the errors.",
                "Details": [
                    {"Account": {"value": "99999", "error": "'Account' cannot be found in the system."}}
                ],
            },
            FINAL,
            Rejected,
            [
                Reason(
                    "record",
                    "Inserting  'ARInvoice' record raised at least one error. Please review the errors.",
                ),
                Reason("field", "'Account' cannot be found in the system.", "Details[1].Account"),
            ],
        ),
        (
            400,
            {"message": "The request is invalid.", "modelState": {"entity.Customer": ["bad"]}},
            FINAL,
            Rejected,
            [Reason("error", "The request is invalid."), Reason("invalid", "bad", "entity.Customer")],
        ),
        (
            403,
            {"message": "You have insufficient rights to access the Invoices and Memos (AR301000) form."},
            FINAL,
            Rejected,
            [
                Reason(
                    "error", "You have insufficient rights to access the Invoices and Memos (AR301000) form."
                )
            ],
        ),
        (
            401,
            {"message": "The user is not signed in."},
            FINAL,
            AuthFailed,
            [Reason("error", "The user is not signed in.")],
        ),
        (
            412,
            {"message": "Precondition failed."},
            FINAL,
            Rejected,
            [Reason("error", "Precondition failed.")],
        ),
        (
            500,
            NO_ENTITY,
            FINAL,
            NotFound,
            [Reason("NoEntitySatisfiesTheConditionException", "No entity satisfies the condition.")],
        ),
        (
            500,
            KEY_NOT_FOUND,
            FINAL,
            Rejected,
            [Reason("KeyNotFoundException", "The given key was not present.")],
        ),
        (
            500,
            SETUP,
            FINAL,
            Rejected,
            [Reason("PXSetupNotEnteredException", "General Ledger Preferences form is not set up.")],
        ),
        (
            500,
            GENERIC,
            Decision(False, 2.0, "HTTP 500; gave up"),
            Transient,
            [Reason("Exception", "Something broke.")],
        ),
        (502, None, Decision(False, 2.0, "HTTP 502; PUT is not repeated blindly", True), OutcomeUnknown, []),
        (429, None, Decision(False, 8.0, "429; gave up"), RateLimited, []),
    ],
)
def test_error_for_maps_status_to_type_with_reasons(status, body, decision, error_type, reasons):
    error = error_for(
        status=status,
        body=body,
        method="PUT",
        url="https://x/entity/Default/24.200.001/Invoice",
        decision=decision,
    )
    assert type(error) is error_type
    assert error.api == "acumatica"
    assert error.status == status
    assert list(error.reasons) == reasons


def test_error_for_rate_limited_carries_the_backoff_wait():
    error = error_for(status=429, body=None, method="GET", url="u", decision=Decision(False, 8.0, "429"))
    assert isinstance(error, RateLimited)
    assert error.retry_after == 8.0


def test_error_for_network_failure_on_a_create_is_outcome_unknown():
    decision = Decision(False, 1.0, "PUT: timeout after sending; PUT is not repeated blindly", True)
    error = error_for(status=None, body=None, method="PUT", url="u", decision=decision, error="timeout")
    assert isinstance(error, OutcomeUnknown)
    assert isinstance(error, Transient)
    assert error.in_doubt is True


def test_error_for_network_failure_on_a_read_is_transient_not_in_doubt():
    error = error_for(
        status=None, body=None, method="GET", url="u", decision=Decision(False, 4.0, "gave up"), error="read"
    )
    assert type(error) is Transient
