"""Paths, endpoint versions and discovery (acumatica-api.md section 1)."""

from __future__ import annotations

import warnings

import pytest

from sandbox.acumatica import create_app

from .conftest import BASE, CREDENTIALS, make_backend

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def test_discovery_lists_the_one_configured_endpoint(anonymous):
    response = anonymous.get("/entity")

    assert response.status_code == 200
    assert response.json() == {
        "version": {"acumaticaBuildVersion": "24.211.0001", "databaseVersion": "24.211.0001"},
        "endpoints": [
            {
                "name": "Default",
                "version": "24.200.001",
                "href": "http://testserver/entity/Default/24.200.001/",
            }
        ],
    }


def test_other_endpoint_version_is_404(api):
    response = api.client.get("/entity/Default/23.200.001/Customer")

    assert response.status_code == 404
    assert response.json() == {
        "message": "No HTTP resource was found that matches the request URI "
        "'http://testserver/entity/Default/23.200.001/Customer'."
    }


def test_configured_endpoint_version_is_the_only_one_served():
    client = TestClient(create_app(endpoint="Default/23.200.001"))
    client.post("/entity/auth/login", json=CREDENTIALS)

    assert client.get("/entity/Default/23.200.001/Currency").status_code == 200
    assert client.get("/entity/Default/24.200.001/Currency").status_code == 404


# Sends a path no endpoint definition has on purpose, to test the sandbox's own error handling.
@pytest.mark.vendor_contract_exempt
def test_unknown_entity_is_404(api):
    assert api.get("SalesOrder").status_code == 404


# Sends an action the definition does not declare on purpose, to test the sandbox's own error handling.
@pytest.mark.vendor_contract_exempt
def test_unknown_action_is_404(api):
    response = api.client.post(f"{BASE}/Invoice/VoidInvoice", json={"entity": {}})

    assert response.status_code == 404


def test_site_path_prefix_serves_the_api_under_the_virtual_directory():
    client = TestClient(create_app(site_path="/AcumaticaERP"))

    login = client.post("/AcumaticaERP/entity/auth/login", json=CREDENTIALS)
    listed = client.get("/AcumaticaERP/entity/Default/24.200.001/Currency", params={"$select": "CurrencyID"})
    bare = client.get("/entity/Default/24.200.001/Currency")

    assert login.status_code == 204
    assert listed.status_code == 200
    assert listed.json()[0]["_links"]["self"].startswith("/AcumaticaERP/entity/Default/24.200.001/Currency/")
    assert bare.status_code == 404


def test_site_path_prefix_appears_in_action_locations():
    backend = make_backend(site_path="/MyInstance")
    backend.add_customer("C0001")
    client = TestClient(create_app(backend))
    client.post("/MyInstance/entity/auth/login", json=CREDENTIALS)
    created = client.put(
        "/MyInstance/entity/Default/24.200.001/Invoice",
        json={
            "Customer": {"value": "C0001"},
            "Date": {"value": "2025-06-10T00:00:00"},
            "Hold": {"value": False},
        },
    ).json()

    started = client.post(
        "/MyInstance/entity/Default/24.200.001/Invoice/ReleaseInvoice", json={"entity": {"id": created["id"]}}
    )

    assert started.status_code == 202
    assert started.headers["location"].startswith(
        "/MyInstance/entity/Default/24.200.001/Invoice/ReleaseInvoice/status/"
    )


def test_ad_hoc_schema_is_an_empty_record_listing_the_custom_fields(api):
    api.customer()
    body = {
        "Customer": {"value": "C0001"},
        "Date": {"value": "2025-06-10T00:00:00"},
        "custom": {"Document": {"UsrZuoraId": {"type": "CustomStringField", "value": "8a8a"}}},
    }
    assert api.client.put(f"{BASE}/Invoice", json=body).status_code == 200

    schema = api.get("Invoice/$adHocSchema").json()

    assert schema["Amount"] == {}
    assert schema["Date"] == {}
    assert schema["Hold"] == {}
    assert schema["custom"] == {"Document": {"UsrZuoraId": {"type": "CustomStringField"}}}
