"""Reference data of the sandbox tenant: chart of accounting codes, products, currencies, regions.

The demo's mapping file maps these accounting-code names to ERP accounts, so the names here are
the contract between the sandbox and a mapping (``ACCOUNTING_CODES``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class AccountingCode:
    """One GL accounting code as Zuora Finance reports it on journal-entry items (section 8.2) and
    ``GET /v1/accounting-codes`` lists it. Memo items refer to codes by ``id``."""

    name: str
    type: str
    gl_account_number: str
    gl_account_name: str

    @property
    def id(self) -> str:
        """A stable 32-hex id, as Zuora's ids look."""
        return hashlib.md5(f"accounting-code:{self.name}".encode(), usedforsecurity=False).hexdigest()

    @property
    def category(self) -> str:
        """The ``AccountingCodeCategory`` of the code's type (zuora-sdk: Assets, Liabilities, ...)."""
        return CATEGORIES[self.type]


ACCOUNTING_CODES: dict[str, AccountingCode] = {
    code.name: code
    for code in (
        AccountingCode("Accounts Receivable", "AccountsReceivable", "1200", "Accounts Receivable"),
        AccountingCode("Cash", "Cash", "1000", "Operating Cash"),
        AccountingCode("Undeposited Funds", "Cash", "1010", "Undeposited Funds"),
        AccountingCode("Customer Cash on Account", "CustomerCashOnAccount", "2150", "Customer Deposits"),
        AccountingCode("Sales Tax Payable", "SalesTaxPayable", "2200", "Sales Tax Payable"),
        AccountingCode("Deferred Revenue", "DeferredRevenue", "2400", "Deferred Revenue"),
        AccountingCode("Sales Revenue", "SalesRevenue", "4000", "Sales Revenue"),
        AccountingCode("Subscription Revenue", "SalesRevenue", "4010", "Subscription Revenue"),
        AccountingCode("Professional Services Revenue", "OtherRevenue", "4100", "Services Revenue"),
        AccountingCode("Late Fee Revenue", "OtherRevenue", "4900", "Other Income"),
    )
}

ACCOUNTING_CODES_BY_ID: dict[str, AccountingCode] = {code.id: code for code in ACCOUNTING_CODES.values()}

# zuora-sdk AccountingCodeType -> AccountingCodeCategory
CATEGORIES: dict[str, str] = {
    "AccountsReceivable": "Assets",
    "Cash": "Assets",
    "CustomerCashOnAccount": "Liabilities",
    "SalesTaxPayable": "Liabilities",
    "DeferredRevenue": "Liabilities",
    "SalesRevenue": "Revenue",
    "OtherRevenue": "Revenue",
}

RECEIVABLE = "Accounts Receivable"
SALES_TAX = "Sales Tax Payable"
CASH_ON_ACCOUNT = "Customer Cash on Account"
DEFERRED_REVENUE = "Deferred Revenue"


@dataclass(frozen=True)
class Product:
    """A chargeable product: invoice items are drawn from these."""

    sku: str
    name: str
    uom: str
    unit_price: Decimal  # in USD; other currencies scale by CURRENCY_PRICE_FACTOR
    accounting_code: str
    processing_type: str
    quantity: tuple[int, int]


PRODUCTS: tuple[Product, ...] = (
    Product(
        "SKU-PLAT-001",
        "Platform Subscription",
        "Each",
        Decimal("499.00"),
        "Subscription Revenue",
        "Recurring",
        (1, 1),
    ),
    Product(
        "SKU-SEAT-002", "User Seats", "Seat", Decimal("25.00"), "Subscription Revenue", "Recurring", (1, 60)
    ),
    Product(
        "SKU-SUPP-003",
        "Annual Support Plan",
        "Each",
        Decimal("1200.00"),
        "Deferred Revenue",
        "Recurring",
        (1, 1),
    ),
    Product("SKU-API-004", "API Calls", "1K Calls", Decimal("0.75"), "Sales Revenue", "Usage", (10, 4000)),
    Product("SKU-STOR-005", "Storage", "GB", Decimal("0.10"), "Sales Revenue", "Usage", (50, 9000)),
    Product(
        "SKU-ONB-006",
        "Onboarding Services",
        "Hour",
        Decimal("150.00"),
        "Professional Services Revenue",
        "OneTime",
        (1, 40),
    ),
    Product(
        "SKU-TRN-007",
        "Training Workshop",
        "Each",
        Decimal("2500.00"),
        "Professional Services Revenue",
        "OneTime",
        (1, 2),
    ),
)

LATE_FEE = Product(
    "SKU-FEE-900", "Late Payment Fee", "Each", Decimal("35.00"), "Late Fee Revenue", "OneTime", (1, 1)
)

# Price of one USD of list price in each currency, and the sales-tax rate charged there.
CURRENCY_PRICE_FACTOR: dict[str, Decimal] = {
    "USD": Decimal("1"),
    "EUR": Decimal("0.92"),
    "GBP": Decimal("0.79"),
}
TAX_RATES: dict[str, Decimal] = {"USD": Decimal("0.0825"), "EUR": Decimal("0.19"), "GBP": Decimal("0.20")}
# Home-currency (USD) value of one unit of each currency, for journal-entry homeCurrencyAmount.
FX_TO_HOME: dict[str, str] = {"USD": "1", "EUR": "1.08", "GBP": "1.27"}

# Bill-to countries per currency and the region segment each maps to.
COUNTRIES: dict[str, tuple[str, ...]] = {
    "USD": ("United States", "United States", "Canada"),
    "EUR": ("Germany", "France", "Netherlands", "Ireland"),
    "GBP": ("United Kingdom",),
}
REGIONS: dict[str, str] = {
    "United States": "North America",
    "Canada": "North America",
    "Germany": "EMEA",
    "France": "EMEA",
    "Netherlands": "EMEA",
    "Ireland": "EMEA",
    "United Kingdom": "UK",
}

COMPANY_WORDS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Wonka",
    "Gringotts",
    "Pied Piper",
    "Aperture",
    "Black Mesa",
    "Oscorp",
    "Dunder Mifflin",
)
COMPANY_SUFFIXES = ("Inc", "Ltd", "GmbH", "LLC", "SA", "BV", "plc", "Group")

# Payment methods: (type, electronic?) — electronic ones go through a gateway (section 11.3).
PAYMENT_METHOD_TYPES: tuple[tuple[str, bool], ...] = (
    ("CreditCard", True),
    ("CreditCard", True),
    ("ACH", True),
    ("PayPal", True),
    ("Check", False),
    ("WireTransfer", False),
    ("Cash", False),
)

# Journal-run transaction types enabled on an Invoice Item Settlement tenant (section 7.1).
ENABLED_TRANSACTION_TYPES: tuple[str, ...] = (
    "Invoice Item",
    "Taxation Item",
    "Revenue Event Item",
    "Debit Memo Item (Charge)",
    "Debit Memo Item (Tax)",
    "Credit Memo Item (Charge)",
    "Credit Memo Item (Tax)",
    "Credit Memo Application Item",
    "Electronic Payment Application Item",
    "External Payment Application Item",
    "Electronic Refund Application Item",
    "External Refund Application Item",
)

# Every type string Zuora knows (section 7.1); a known but disabled one is a different error.
ALL_TRANSACTION_TYPES: frozenset[str] = frozenset(
    {
        "Invoice Item",
        "Taxation Item",
        "Invoice Item Adjustment (Invoice)",
        "Invoice Item Adjustment (Tax)",
        "Invoice Adjustment",
        "Electronic Payment",
        "External Payment",
        "Electronic Refund",
        "External Refund",
        "Electronic Credit Balance Payment",
        "External Credit Balance Payment",
        "Electronic Credit Balance Refund",
        "External Credit Balance Refund",
        "Credit Balance Adjustment (Applied from Credit Balance)",
        "Credit Balance Adjustment (Transferred to Credit Balance)",
        "Revenue Event Item",
        "Debit Memo Item (Charge)",
        "Debit Memo Item (Tax)",
        "Credit Memo Item (Charge)",
        "Credit Memo Item (Tax)",
        "Credit Memo Application Item",
        "Electronic Payment Application",
        "External Payment Application",
        "Electronic Refund Application",
        "External Refund Application",
        "Electronic Payment Application Item",
        "External Payment Application Item",
        "Electronic Refund Application Item",
        "External Refund Application Item",
    }
)
