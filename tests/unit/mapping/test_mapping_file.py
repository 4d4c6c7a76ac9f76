"""The mapping file: validation errors name the file, table and key; nothing is guessed."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.erp.file_export import FileExportErp
from shared.mapping import (
    AccountMapping,
    MappingFileError,
    PaymentMethodMapping,
    Unmapped,
    check_mapping,
    load_mapping,
)

ROOT = Path(__file__).resolve().parents[3]

VALID = """
[erp]
branch = "HQ"
ledger = "ACTUAL"
customer_class = "DEFAULT"
[accounts]
"Accounts Receivable" = { account = "11000", subaccount = "000000" }
"Sales Revenue"       = { account = "40000" }
[payment_methods]
CreditCard = { method = "CC", cash_account = "10200" }
[currencies]
USD = "USD"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(text)
    return path


def test_load_mapping_reads_every_table(tmp_path):
    mapping = load_mapping(write(tmp_path, VALID))
    assert mapping.erp.branch == "HQ"
    assert mapping.erp.tax_accounting_code == "Sales Tax Payable"
    assert mapping.account("Sales Revenue") == AccountMapping(account="40000", subaccount=None)
    assert mapping.payment_method("CreditCard") == PaymentMethodMapping(method="CC", cash_account="10200")
    assert mapping.currency("USD") == "USD"
    assert mapping.transaction_types is None
    assert mapping.erp_accounts() == {"11000", "40000", "10200"}
    assert mapping.erp_currencies() == {"USD"}


def test_example_mapping_file_is_valid_and_covers_the_sandbox_codes():
    mapping = load_mapping(ROOT / "mapping.example.toml")
    for code in (
        "Accounts Receivable",
        "Sales Revenue",
        "Sales Tax Payable",
        "Cash",
        "Deferred Revenue",
        "Customer Cash on Account",
    ):
        mapping.account(code)
    assert {
        c: mapping.account(c).account
        for c in (
            "Accounts Receivable",
            "Sales Revenue",
            "Sales Tax Payable",
            "Cash",
            "Deferred Revenue",
            "Customer Cash on Account",
        )
    } == {
        "Accounts Receivable": "11000",
        "Sales Revenue": "40000",
        "Sales Tax Payable": "24000",
        "Cash": "10200",
        "Deferred Revenue": "23000",
        "Customer Cash on Account": "21000",
    }
    assert sorted(mapping.payment_methods) == sorted(
        ["CreditCard", "ACH", "PayPal", "Check", "Cash", "BankTransfer", "WireTransfer", "Other"]
    )
    assert sorted(mapping.currencies) == ["EUR", "GBP", "USD"]
    assert mapping.transaction_types is not None and "Invoice Item" in mapping.transaction_types


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (VALID.replace('branch = "HQ"\n', ""), "[erp] branch: Field required"),
        (
            VALID.replace('{ account = "40000" }', '{ acount = "40000" }'),
            '[accounts] "Sales Revenue".account: Field required',
        ),
        (
            VALID.replace('{ account = "40000" }', '{ acount = "40000" }'),
            '[accounts] "Sales Revenue".acount: Extra inputs are not permitted',
        ),
        (
            VALID.replace('{ account = "40000" }', '{ account = " " }'),
            '[accounts] "Sales Revenue".account: must not be empty',
        ),
        (
            VALID.replace('cash_account = "10200"', 'cash = "10200"'),
            "[payment_methods] CreditCard.cash_account: Field required",
        ),
        (
            VALID.replace('USD = "USD"', 'usd = "USD"'),
            "[currencies]: 'usd' is not an ISO 4217 currency code such as USD",
        ),
        (
            VALID + "[journal]\ntransaction_types = 'Invoice Item'\n",
            "[journal] transaction_types: Input should be a valid tuple",
        ),
        (VALID + "[extra]\nx = 1\n", "[extra]: Extra inputs are not permitted"),
    ],
)
def test_load_mapping_errors_name_file_table_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(MappingFileError) as info:
        load_mapping(path)
    assert f"{path}: {message}" in str(info.value)


def test_load_mapping_invalid_toml_names_the_file(tmp_path):
    path = write(tmp_path, "[erp\nbranch = 1")
    with pytest.raises(MappingFileError) as info:
        load_mapping(path)
    assert str(info.value).startswith(f"{path}: not valid TOML")


def test_load_mapping_missing_file_names_the_variable(tmp_path):
    with pytest.raises(MappingFileError) as info:
        load_mapping(tmp_path / "absent.toml")
    assert "LEDGERBRIDGE_MAPPING_FILE" in str(info.value)


@pytest.mark.parametrize(
    ("lookup", "kind", "key", "message"),
    [
        (
            lambda m: m.account("Deferred Revenue"),
            "account",
            "Deferred Revenue",
            "unmapped account 'Deferred Revenue': add it to [accounts] in the mapping file",
        ),
        (
            lambda m: m.account(""),
            "account",
            "",
            "unmapped account '' (blank): add it to [accounts] in the mapping file",
        ),
        (
            lambda m: m.payment_method("ACH"),
            "payment_method",
            "ACH",
            "unmapped payment method 'ACH': add it to [payment_methods] in the mapping file",
        ),
        (
            lambda m: m.currency("EUR"),
            "currency",
            "EUR",
            "unmapped currency 'EUR': add it to [currencies] in the mapping file",
        ),
        (
            lambda m: m.currency("usd"),
            "currency",
            "usd",
            "unmapped currency 'usd': add it to [currencies] in the mapping file",
        ),
    ],
)
def test_lookups_never_guess(tmp_path, lookup, kind, key, message):
    mapping = load_mapping(write(tmp_path, VALID))
    with pytest.raises(Unmapped) as info:
        lookup(mapping)
    assert (info.value.kind, info.value.key, str(info.value)) == (kind, key, message)
    assert info.value.reason == message


def test_check_mapping_asks_the_erp(tmp_path):
    mapping = load_mapping(write(tmp_path, VALID))

    class Recorder(FileExportErp):
        def check_reference_data(self, accounts, currencies, period=None):
            self.seen = (list(accounts), list(currencies), period)
            return ["account 99999 does not exist"]

    erp = Recorder(tmp_path / "out")
    assert check_mapping(mapping, erp, "2025-06") == ["account 99999 does not exist"]
    assert erp.seen == (["10200", "11000", "40000"], ["USD"], "2025-06")
