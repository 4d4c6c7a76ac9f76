from __future__ import annotations

import io
import json
import logging

from shared.exchange import REDACTED, audit_subject, current_subject, redact_body, redact_headers
from shared.logs import JsonFormatter, log_context


def test_redact_headers_hides_credentials_case_insensitively():
    headers = {"Authorization": "Bearer abc", "cookie": ".ASPXAUTH=x", "Zuora-Track-Id": "t1"}
    assert redact_headers(headers) == {"Authorization": REDACTED, "cookie": REDACTED, "Zuora-Track-Id": "t1"}


def test_redact_body_json_nested_secrets():
    body = json.dumps({"name": "api", "password": "pw", "nested": [{"access_token": "tok", "keep": 1}]})
    assert json.loads(redact_body(body)) == {
        "name": "api",
        "password": REDACTED,
        "nested": [{"access_token": REDACTED, "keep": 1}],
    }


def test_redact_body_keeps_amounts_exactly_as_sent():
    body = '{"amount":100.50,"long":12345678901234567890.123456789,"password":"pw","n":7}'
    assert redact_body(body) == (
        '{"amount":100.50,"long":12345678901234567890.123456789,"password":"' + REDACTED + '","n":7}'
    )


def test_redact_body_form_encoded_token_request():
    body = "grant_type=client_credentials&client_id=abc&client_secret=topsecret"
    redacted = redact_body(body)
    assert "topsecret" not in redacted
    assert "client_id=abc" in redacted


def test_redact_body_truncates_huge_bodies():
    redacted = redact_body("x" * 50_000)
    assert redacted is not None and len(redacted) < 20_100 and redacted.endswith("more chars]")


def test_audit_subject_is_scoped():
    assert current_subject.get() is None
    with audit_subject("invoice:1"):
        assert current_subject.get() == "invoice:1"
    assert current_subject.get() is None


def test_json_log_line_carries_context_fields():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ledgerbridge.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with log_context(connection="acme", stream="invoices"), log_context(record_id="8ad0"):
            logger.info("posted", extra={"erp_ref": "Invoice/AR000001"})
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["msg"] == "posted"
    assert (line["connection"], line["stream"], line["record_id"], line["erp_ref"]) == (
        "acme",
        "invoices",
        "8ad0",
        "Invoice/AR000001",
    )
