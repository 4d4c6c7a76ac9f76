"""Value wrapping, record shape and PUT upsert (acumatica-api.md sections 3 and 4.1)."""

from __future__ import annotations

import pytest

from .conftest import BASE, wrap


# Sends an unwrapped field on purpose, to test the sandbox's own error handling.
@pytest.mark.vendor_contract_exempt
def test_unwrapped_scalar_is_400_with_model_state(api):
    response = api.client.put(f"{BASE}/Customer", json={"CustomerID": "C9", "CustomerName": {"value": "X"}})

    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "The request is invalid."
    assert list(body["modelState"]) == ["entity.CustomerID"]
    assert "StringValue" in body["modelState"]["entity.CustomerID"][0]
    assert api.backend.state("Customer") == []


# Sends an unwrapped field on purpose, to test the sandbox's own error handling.
@pytest.mark.vendor_contract_exempt
def test_unwrapped_field_in_a_detail_line_is_400_with_its_path(api):
    api.customer()
    body = wrap({"Customer": "C0001", "Hold": False})
    body["Details"] = [{"Account": "40000"}]

    response = api.client.put(f"{BASE}/Invoice", json=body)

    assert response.status_code == 400
    assert list(response.json()["modelState"]) == ["entity.Details[0].Account"]


# Sends a value its wrapper type does not allow on purpose, to test the sandbox's own error handling.
@pytest.mark.vendor_contract_exempt
def test_unconvertible_value_is_400(api):
    response = api.client.put(
        f"{BASE}/Customer",
        json={"CustomerID": {"value": "C9"}, "CreditLimit": {"value": "lots"}},
    )

    assert response.status_code == 400
    assert list(response.json()["modelState"]) == ["entity.CreditLimit.value"]


# Sends a field the entity's schema does not declare on purpose, to test the sandbox's own error handling.
@pytest.mark.vendor_contract_exempt
def test_unknown_fields_are_silently_ignored(api):
    response = api.put("Customer", {"CustomerID": "C9", "CustomerName": "Nine", "Nickname": "N"})

    assert response.status_code == 200
    assert "Nickname" not in response.json()


def test_null_fields_are_echoed_as_empty_objects(api):
    record = api.put("Customer", {"CustomerID": "C9", "CustomerName": "Nine"}).json()

    assert record["AccountRef"] == {}
    assert record["CustomerName"] == {"value": "Nine"}


def test_response_carries_system_properties(api):
    record = api.put("Customer", {"CustomerID": "C9", "CustomerName": "Nine"}).json()

    assert record["rowNumber"] == 1
    assert record["note"] == {"value": ""}
    assert record["custom"] == {}
    assert record["_links"]["self"] == f"{BASE}/Customer/{record['id']}"
    assert record["NoteID"] == {"value": record["id"]}


def test_date_only_field_is_midnight_with_the_server_offset(api):
    api.backend.config.update({"timezone_offset": "+03:00"})
    api.customer()

    record = api.invoice(Date="2025-06-10T00:00:00").json()

    assert record["Date"] == {"value": "2025-06-10T00:00:00+03:00"}


def test_post_period_is_read_back_as_mmyyyy_and_accepts_mm_dash_yyyy(api):
    api.customer()

    record = api.invoice(PostPeriod="07-2025").json()

    assert record["PostPeriod"] == {"value": "072025"}


def test_decimals_are_json_numbers(api):
    api.customer()

    record = api.invoice(amount=100).json()

    assert record["Amount"] == {"value": 100.0}
    assert isinstance(record["Amount"]["value"], float)


def test_customer_put_by_key_updates_the_same_record(api):
    first = api.put("Customer", {"CustomerID": "C9", "CustomerName": "Nine"}).json()

    second = api.put("Customer", {"CustomerID": "C9", "Email": "ap@nine.test"}).json()

    assert second["id"] == first["id"]
    assert second["CustomerName"] == {"value": "Nine"}
    assert second["Email"] == {"value": "ap@nine.test"}
    assert len(api.backend.state("Customer")) == 1


def test_put_by_id_updates_the_record(api):
    first = api.put("Customer", {"CustomerID": "C9", "CustomerName": "Nine"}).json()

    second = api.client.put(
        f"{BASE}/Customer", json={"id": first["id"], "CustomerName": {"value": "Renamed"}}
    )

    assert second.json()["CustomerName"] == {"value": "Renamed"}
    assert len(api.backend.state("Customer")) == 1


def test_put_by_filter_updates_the_matching_record(api):
    api.put("Customer", {"CustomerID": "C9", "CustomerName": "Nine", "AccountRef": "zuora-9"})

    updated = api.client.put(
        f"{BASE}/Customer",
        params={"$filter": "AccountRef eq 'zuora-9'"},
        json={"Email": {"value": "x@nine.test"}},
    )

    assert updated.json()["CustomerID"] == {"value": "C9"}
    assert updated.json()["Email"] == {"value": "x@nine.test"}


def test_if_none_match_on_existing_record_is_412(api):
    api.put("Customer", {"CustomerID": "C9", "CustomerName": "Nine"})

    response = api.client.put(
        f"{BASE}/Customer",
        json=wrap({"CustomerID": "C9", "CustomerName": "Again"}),
        headers={"If-None-Match": "*"},
    )

    assert response.status_code == 412
    assert api.backend.state_one("Customer", ["C9"])["CustomerName"] == "Nine"


def test_if_match_on_missing_record_is_412(api):
    response = api.client.put(
        f"{BASE}/Customer", json=wrap({"CustomerID": "C9", "CustomerName": "Nine"}), headers={"If-Match": "*"}
    )

    assert response.status_code == 412
    assert api.backend.state("Customer") == []


def test_get_by_key_returns_the_record(api):
    api.put("Customer", {"CustomerID": "C9", "CustomerName": "Nine"})

    response = api.get("Customer/C9")

    assert response.status_code == 200
    assert response.json()["CustomerName"] == {"value": "Nine"}


def test_get_by_missing_key_is_500_no_entity(api):
    response = api.get("Customer/NOPE")

    assert response.status_code == 500
    body = response.json()
    assert body["message"] == "An error has occurred."
    assert body["exceptionMessage"] == "No entity satisfies the condition."
    assert body["exceptionType"] == "PX.Api.ContractBased.NoEntitySatisfiesTheConditionException"


def test_linked_entity_is_returned_only_when_expanded(api):
    body = {"CustomerID": "C9", "CustomerName": "Nine", "MainContact": {"Email": "a@nine.test"}}

    plain = api.put("Customer", body).json()
    expanded = api.get("Customer/C9", **{"$expand": "MainContact"}).json()

    assert "MainContact" not in plain
    assert expanded["MainContact"]["Email"] == {"value": "a@nine.test"}
    assert "Address" not in expanded["MainContact"]


def test_customer_without_name_is_422_with_field_error(api):
    response = api.put("Customer", {"CustomerID": "C9"})

    assert response.status_code == 422
    body = response.json()
    assert (
        body["error"] == "Inserting  'Customer' record raised at least one error. Please review the errors."
    )
    assert body["CustomerName"] == {"error": "'Customer Name' cannot be empty."}


def test_delete_by_key_removes_the_record(api):
    api.put("Customer", {"CustomerID": "C9", "CustomerName": "Nine"})

    response = api.client.delete(f"{BASE}/Customer/C9")

    assert response.status_code == 204
    assert api.get("Customer/C9").status_code == 500


def test_reference_entities_get_by_key(api):
    assert api.get("Currency/EUR").json()["CurrencyID"] == {"value": "EUR"}
    assert api.get("Account/40000").json()["Type"] == {"value": "Income"}
    assert api.get("Subaccount/000000").json()["Active"] == {"value": True}
    period = api.get("FinancialPeriod/2025", **{"$expand": "Details"}).json()
    assert [line["FinancialPeriodID"]["value"] for line in period["Details"]][:2] == ["012025", "022025"]
    assert period["Details"][5]["Status"] == {"value": "Open"}


def test_account_put_upserts_and_validates_the_type_label(api):
    created = api.put("Account", {"AccountCD": "40500", "Description": "Add-ons", "Type": "Income"})
    bad = api.put("Account", {"AccountCD": "40600", "Type": "Revenue"})

    assert created.status_code == 200
    assert created.json()["Active"] == {"value": True}
    assert bad.status_code == 422
    assert bad.json()["Type"]["error"] == "The value 'Revenue' is not in the list of allowed values for Type."
