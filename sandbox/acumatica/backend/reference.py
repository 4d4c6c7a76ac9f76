"""The instance's reference data: the default tenant (``seed_defaults``) and what the control plane
adds (``POST /_sandbox/seed``): accounts, subaccounts, currencies, branches, ledgers, payment
methods, financial years and customers, stored as if entered on their screens."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sandbox.acumatica.entities import ACCOUNT_TYPES, ENTITIES, EntitySpec, label_to_code
from sandbox.acumatica.records import Row, convert

from .ledger import financial_year
from .state import ZERO, InstanceState

DEFAULT_ACCOUNTS: tuple[tuple[str, str, str, bool], ...] = (
    # AccountCD, Description, Type code, CashAccount
    ("10100", "Petty Cash", "A", True),
    ("10200", "Company Checking Account", "A", True),
    ("10400", "Payment Gateway Clearing", "A", True),
    ("11000", "Accounts Receivable", "A", False),
    ("12000", "Unbilled Receivables", "A", False),
    ("20000", "Accounts Payable", "L", False),
    ("21000", "Accrued Liabilities", "L", False),
    ("23000", "Deferred Revenue", "L", False),
    ("24000", "Sales Tax Payable", "L", False),
    ("25000", "Customer Deposits", "L", False),
    ("40000", "Subscription Revenue", "I", False),
    ("41000", "Services Revenue", "I", False),
    ("42000", "Usage Revenue", "I", False),
    ("49000", "Sales Discounts", "I", False),
    ("60000", "Operating Expenses", "E", False),
    ("68000", "Bad Debt Expense", "E", False),
    ("69000", "Payment Processing Fees", "E", False),
    ("70000", "Foreign Exchange Gain/Loss", "E", False),
)


class Reference(InstanceState):
    """Seeding: ``seed_defaults``, ``seed`` and one ``add_*`` per kind of reference record."""

    def seed_defaults(self) -> None:
        """A small, realistic tenant: chart of accounts, USD/EUR/GBP, branch HQ, ledger ACTUAL,
        customer class DEFAULT, payment methods, terms, and four open financial years."""
        with self._lock:
            for code, description, kind, cash in DEFAULT_ACCOUNTS:
                self.add_account(code, description, kind, cash_account=cash)
            self.add_subaccount("000000", "Default subaccount")
            self.add_currency("USD", "US Dollar", "$")
            self.add_currency("EUR", "Euro", "€")
            self.add_currency("GBP", "Pound Sterling", "£")
            self.add_currency("CAD", "Canadian Dollar", "$", active=False)
            self.add_branch("HQ", "Headquarters")
            self.add_ledger("ACTUAL", "Actual ledger", "Actual", "USD")
            self.customer_classes["DEFAULT"] = {
                "currency": "USD",
                "terms": "30D",
                "ar_account": "11000",
                "sales_account": "40000",
            }
            self.terms.update({"30D": 30, "15D": 15, "60D": 60, "COD": 0})
            self.add_payment_method("CHECK", "10200")
            self.add_payment_method("WIRE", "10200")
            self.add_payment_method("CARD", "10400")
            self.add_payment_method("CASH", "10100")
            # The methods mapping.example.toml maps Zuora's payment method types to.
            for method in ("CC", "ACH", "EFT", "PAYPAL", "OTHER"):
                self.add_payment_method(method, "10200")
            year = datetime.fromtimestamp(self.now(), self.config.tz).year
            for each in range(year - 2, year + 2):
                self.add_financial_year(each, status="Open")

    def seed(self, payload: dict[str, Any]) -> dict[str, int]:
        """Add reference data and customers from a control-plane payload (see ``control``)."""
        added: Counter[str] = Counter()
        with self._lock:
            for item in payload.get("accounts", []):
                self.add_account(
                    str(item["AccountCD"]),
                    str(item.get("Description", item["AccountCD"])),
                    str(item.get("Type", "Asset")),
                    cash_account=bool(item.get("CashAccount", False)),
                    active=bool(item.get("Active", True)),
                    currency=item.get("CurrencyID"),
                )
                added["accounts"] += 1
            for item in payload.get("subaccounts", []):
                self.add_subaccount(
                    str(item["SubaccountCD"]),
                    str(item.get("Description", "")),
                    active=bool(item.get("Active", True)),
                )
                added["subaccounts"] += 1
            for item in payload.get("currencies", []):
                self.add_currency(
                    str(item["CurrencyID"]),
                    str(item.get("Description", item["CurrencyID"])),
                    str(item.get("CurrencySymbol", "")),
                    precision=int(item.get("DecimalPrecision", 2)),
                    active=bool(item.get("Active", True)),
                )
                added["currencies"] += 1
            for item in payload.get("branches", []):
                if isinstance(item, str):
                    self.add_branch(item)
                else:
                    self.add_branch(
                        str(item["BranchID"]),
                        str(item.get("Name", "")),
                        active=bool(item.get("Active", True)),
                    )
                added["branches"] += 1
            for item in payload.get("ledgers", []):
                self.add_ledger(
                    str(item["LedgerID"]),
                    str(item.get("Description", "")),
                    str(item.get("Type", "Actual")),
                    str(item.get("Currency", "USD")),
                )
                added["ledgers"] += 1
            for item in payload.get("payment_methods", []):
                self.add_payment_method(str(item["PaymentMethodID"]), str(item["CashAccount"]))
                added["payment_methods"] += 1
            for item in payload.get("years", []):
                if isinstance(item, dict):
                    self.add_financial_year(int(item["year"]), status=str(item.get("status", "Open")))
                else:
                    self.add_financial_year(int(item))
                added["years"] += 1
            for item in payload.get("customers", []):
                values = {
                    key: value for key, value in item.items() if key not in ("CustomerID", "CustomerName")
                }
                self.add_customer(str(item["CustomerID"]), item.get("CustomerName"), **values)
                added["customers"] += 1
        return dict(added)

    def _store_plain(self, spec: EntitySpec, values: dict[str, Any]) -> Row:
        row = Row(values=dict(values))
        stamp = self._now_dt()
        created, modified = spec.obj.field("CreatedDateTime"), spec.obj.field("LastModifiedDateTime")
        if created is not None:
            row.values.setdefault(created.key, stamp)
        if modified is not None:
            row.values[modified.key] = stamp
        existing = self._by_key(spec, self._key_of(spec, row))
        if existing is not None:
            existing.values.update(row.values)
            return existing
        self._save(spec, row)
        return row

    def add_account(
        self,
        code: str,
        description: str,
        kind: str = "A",
        *,
        cash_account: bool = False,
        active: bool = True,
        currency: str | None = None,
    ) -> None:
        """An account of the chart (``kind``: a type code or label; anything else is an Asset)."""
        kind = label_to_code(ACCOUNT_TYPES, kind) or "A"
        with self._lock:
            self.sequences["AccountID"] += 1
            self._store_plain(
                ENTITIES["Account"],
                {
                    "AccountCD": code,
                    "AccountID": 1000 + self.sequences["AccountID"],
                    "Active": active,
                    "CashAccount": cash_account,
                    "CurrencyID": currency,
                    "Description": description,
                    "Type": kind,
                    "PostOption": "Summary",
                    "Secured": False,
                    "UseDefaultSubaccount": False,
                    "ChartOfAccountsOrder": int(code[0]) if code[:1].isdigit() else 0,
                },
            )

    def add_subaccount(self, code: str, description: str, *, active: bool = True) -> None:
        """A subaccount."""
        with self._lock:
            self.sequences["SubaccountID"] += 1
            self._store_plain(
                ENTITIES["Subaccount"],
                {
                    "SubaccountCD": code,
                    "SubaccountID": 100 + self.sequences["SubaccountID"],
                    "Active": active,
                    "Description": description,
                    "Secured": False,
                },
            )

    def add_currency(
        self, code: str, description: str, symbol: str = "", *, precision: int = 2, active: bool = True
    ) -> None:
        """A currency (an inactive one is refused on documents)."""
        with self._lock:
            self._store_plain(
                ENTITIES["Currency"],
                {
                    "CurrencyID": code,
                    "Description": description,
                    "CurrencySymbol": symbol,
                    "DecimalPrecision": precision,
                    "Active": active,
                    "UseForAccounting": active,
                },
            )

    def add_branch(self, branch_id: str, name: str = "", *, active: bool = True) -> None:
        """A branch documents and login may name."""
        with self._lock:
            self.branches[branch_id] = {"name": name or branch_id, "active": active}

    def add_ledger(
        self, ledger_id: str, description: str, kind: str = "Actual", currency: str = "USD"
    ) -> None:
        """A ledger GL batches may post to."""
        with self._lock:
            self._store_plain(
                ENTITIES["Ledger"],
                {"LedgerID": ledger_id, "Description": description, "Type": kind, "Currency": currency},
            )

    def add_payment_method(self, method: str, cash_account: str, *, active: bool = True) -> None:
        """A payment method and the cash account a payment defaults to with it."""
        with self._lock:
            self.payment_methods[method] = {"cash_account": cash_account, "active": active}

    def add_financial_year(self, year: int, *, status: str = "Open") -> None:
        """A calendar year of twelve monthly periods, each with ``status``."""
        with self._lock:
            header, periods = financial_year(year, status)
            row = self._store_plain(ENTITIES["FinancialPeriod"], header)
            row.collections["periods"] = periods

    def add_customer(self, customer_id: str, name: str | None = None, **values: Any) -> None:
        """A customer as if created on AR303000 (defaults from class DEFAULT)."""
        with self._lock:
            klass = self.customer_classes.get(values.get("CustomerClass", "DEFAULT"), {})
            self.sequences["BAccountID"] += 1
            row_values = {
                "CustomerID": customer_id,
                "CustomerName": name or customer_id,
                "CustomerClass": "DEFAULT",
                "CurrencyID": klass.get("currency", "USD"),
                "Terms": klass.get("terms", "30D"),
                "Status": "A",
                "CreditLimit": ZERO,
                "BAccountID": 5000 + self.sequences["BAccountID"],
            }
            for name_, value in values.items():
                spec_field = ENTITIES["Customer"].obj.field(name_)
                if spec_field is None:
                    raise ValueError(f"Customer has no field {name_!r}")
                stored = value
                if spec_field.labels is not None and isinstance(value, str):
                    stored = label_to_code(spec_field.labels, value) or value
                row_values[spec_field.key] = convert(spec_field.kind, stored, self.config.tz)
            row = self._store_plain(ENTITIES["Customer"], row_values)
            row.values["NoteID"] = row.id
