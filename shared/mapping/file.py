"""The mapping file: its models, loading and validation, and the errors of mapping a record."""

from __future__ import annotations

import datetime as dt
import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.erp.base import ErpTarget

UnmappedKind = Literal["account", "payment_method", "currency"]
_TABLES: dict[str, str] = {
    "account": "accounts",
    "payment_method": "payment_methods",
    "currency": "currencies",
}


# -- errors ---------------------------------------------------------------------------------------


class MappingFileError(ValueError):
    """The mapping file is missing or invalid; the message names the file, table and key."""


class MappingError(Exception):
    """A Zuora record cannot be turned into an ERP document; ``reason`` is the parking reason."""

    @property
    def reason(self) -> str:
        return str(self)


class Unmapped(MappingError):
    """The mapping file has no entry for ``key`` in the table of ``kind``."""

    def __init__(self, kind: UnmappedKind, key: str, *, record: str | None = None) -> None:
        self.kind = kind
        self.key = key
        self.table = _TABLES[kind]
        where = f"{record}: " if record else ""
        shown = repr(key) if key else "'' (blank)"
        super().__init__(
            f"{where}unmapped {kind.replace('_', ' ')} {shown}: add it to [{self.table}] in the mapping file"
        )


class InconsistentRecord(MappingError):
    """The record itself is unusable: a field is missing, lines do not add up to the total, a
    journal entry does not balance."""


# -- the file -------------------------------------------------------------------------------------


def _strip(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AccountMapping(_Model):
    """An ERP GL account and optional subaccount."""

    account: str
    subaccount: str | None = None

    @field_validator("account")
    @classmethod
    def _account(cls, value: str) -> str:
        return _strip(value)

    @field_validator("subaccount")
    @classmethod
    def _subaccount(cls, value: str | None) -> str | None:
        return None if value is None else _strip(value)


class PaymentMethodMapping(_Model):
    """An ERP payment method and the cash account it pays into."""

    method: str
    cash_account: str

    @field_validator("method", "cash_account")
    @classmethod
    def _text(cls, value: str) -> str:
        return _strip(value)


MemoItemAccount = Literal["recognized_revenue", "deferred_revenue"]
# The accounting-code id field of a credit/debit memo item that names its GL account (memo items
# carry code ids, not an accountingCode: zuora-sdk ExpandedCreditMemoItem/ExpandedDebitMemoItem).
MEMO_ITEM_CODE_FIELDS: dict[str, str] = {
    "recognized_revenue": "recognizedRevenueAccountingCodeId",
    "deferred_revenue": "deferredRevenueAccountingCodeId",
}


class ErpSection(_Model):
    branch: str
    ledger: str = "ACTUAL"
    customer_class: str | None = None
    tax_accounting_code: str = "Sales Tax Payable"
    # Which code of a memo item is its line's account. An invoice item's accountingCode is its
    # charge's revenue code (Zuora: "for invoicing, the accounting code maps to an income or revenue
    # GL account"), which on a memo item is the recognized-revenue code (docs/vendor-notes.md).
    memo_item_account: MemoItemAccount = "recognized_revenue"

    @field_validator("branch", "ledger", "tax_accounting_code")
    @classmethod
    def _text(cls, value: str) -> str:
        return _strip(value)


class JournalSection(_Model):
    transaction_types: tuple[str, ...] | None = None


class Mapping(_Model):
    """The validated mapping file. Lookups raise :class:`Unmapped` for anything not listed."""

    erp: ErpSection
    accounts: dict[str, AccountMapping] = Field(default_factory=dict)
    payment_methods: dict[str, PaymentMethodMapping] = Field(default_factory=dict)
    currencies: dict[str, str] = Field(default_factory=dict)
    journal: JournalSection = Field(default_factory=JournalSection)

    @field_validator("currencies")
    @classmethod
    def _currencies(cls, value: dict[str, str]) -> dict[str, str]:
        for code, erp_code in value.items():
            if len(code) != 3 or not code.isascii() or not code.isalpha() or not code.isupper():
                raise ValueError(f"{code!r} is not an ISO 4217 currency code such as USD")
            if not erp_code.strip() or len(erp_code.strip()) > 5:
                raise ValueError(f"{code}: the ERP currency must be 1-5 characters, not {erp_code!r}")
        return {code: erp_code.strip() for code, erp_code in value.items()}

    def account(self, code_name: str, *, record: str | None = None) -> AccountMapping:
        found = self.accounts.get(code_name)
        if found is None:
            raise Unmapped("account", code_name, record=record)
        return found

    def payment_method(self, method_type: str, *, record: str | None = None) -> PaymentMethodMapping:
        found = self.payment_methods.get(method_type)
        if found is None:
            raise Unmapped("payment_method", method_type, record=record)
        return found

    def currency(self, code: str, *, record: str | None = None) -> str:
        found = self.currencies.get(code)
        if found is None:
            raise Unmapped("currency", code, record=record)
        return found

    @property
    def transaction_types(self) -> tuple[str, ...] | None:
        return self.journal.transaction_types

    def erp_accounts(self) -> set[str]:
        """Every ERP account the file names (GL accounts and cash accounts)."""
        return {a.account for a in self.accounts.values()} | {
            p.cash_account for p in self.payment_methods.values()
        }

    def erp_currencies(self) -> set[str]:
        return set(self.currencies.values())


def _key(name: str) -> str:
    """A table or key as TOML spells it: bare, or a basic string with every character that is not
    printable escaped (so a name holding a quote, a bracket or a line break is shown unambiguously,
    on its problem's one line)."""
    if name.replace("_", "").isalnum():
        return name
    quoted = json.dumps(name, ensure_ascii=False)  # escapes quotes, backslashes and C0 controls
    return "".join(
        ch if ch.isprintable() else f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"
        for ch in quoted
    )


def _location(path: Path, loc: tuple[int | str, ...]) -> str:
    if not loc:
        return f"{path}"
    table, *rest = (str(part) for part in loc)
    if not rest:
        return f"{path}: [{_key(table)}]"
    tail = "".join(f".{_key(part)}" for part in rest[1:])
    return f"{path}: [{_key(table)}] {_key(rest[0])}{tail}"


def load_mapping(path: Path | str) -> Mapping:
    """Read and validate the mapping file. :class:`MappingFileError` lists every problem, each
    naming the file, the table and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise MappingFileError(f"{path}: mapping file not found (LEDGERBRIDGE_MAPPING_FILE)") from None
    except OSError as exc:
        raise MappingFileError(f"{path}: cannot read the mapping file: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise MappingFileError(
            f"{path}: not UTF-8 text: byte 0x{exc.object[exc.start]:02x} on line {line}"
        ) from None
    except ValueError as exc:
        # TOMLDecodeError names the line; a plain ValueError is an integer longer than Python
        # reads (4,300 digits).
        raise MappingFileError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise MappingFileError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_location(path, tuple(err['loc']))}: {message}")
        raise MappingFileError("invalid mapping file:\n  " + "\n  ".join(problems)) from None


def check_mapping(mapping: Mapping, erp: ErpTarget, period: dt.date | str | None = None) -> list[str]:
    """Problems with the mapping in the ERP (``ledgerbridge mapping check``): every account and
    currency it names must exist and be active; ``period`` must be open."""
    return erp.check_reference_data(sorted(mapping.erp_accounts()), sorted(mapping.erp_currencies()), period)
