"""Bad input on purpose: the manual summary journal entry validator (shared/journal_entry.py).

Any entry document - amounts as long digit strings, negative, zero, NaN or infinite, unbalanced
by less than a rounding step, unicode or unencodable names, fields missing, mistyped or extra -
is either created exactly once, balanced to the last digit and with every amount a plain decimal
string, or refused with :class:`InvalidEntry` listing problems that each name the field or item
to fix, and then nothing is sent to Zuora. Any entry file is read or refused with
:class:`EntryFileError`. Never another exception.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared import journal_entry as je
from shared.mapping import Mapping
from tests.unit.properties.support import zuora_client

MAPPING = Mapping.model_validate(
    {
        "erp": {"branch": "HQ"},
        "accounts": {
            "Accounts Receivable": {"account": "11000"},
            "Sales Revenue": {"account": "40000"},
            "Umsatzerlöse ✓": {"account": "40100"},
        },
        "currencies": {"USD": "USD", "EUR": "EUR"},
    }
)
CODES = sorted(MAPPING.accounts)
PERIOD = "December 2024"

PROPERTY = settings(
    max_examples=200,
    deadline=None,  # every example goes through the real client and its (in-memory) wire
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# What a problem starts with, besides a field of the entry: the totals, the period in Zuora.
PROBLEM_LEADS = ("unknown field", "the field name", "debits", "home-currency debits", "accounting period",
                 "there is no accounting period", *je.REQUIRED_FIELDS)  # fmt: skip
PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")


# -- Zuora's side ----------------------------------------------------------------------------------


def unescape_zoql(literal: str) -> str:
    """The value of a ZOQL string literal (backslash escapes, zuora-api.md section 5.2)."""
    escapes = {"\\": "\\", "'": "'", '"': '"', "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\":
            out.append(escapes[body[i + 1]])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


class Zuora:
    """Every period named in a query exists and is Open; a journal entry is created once."""

    def __init__(self) -> None:
        self.periods: dict[str, str] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/action/query":
            query = json.loads(request.content)["queryString"]
            name = unescape_zoql(re.search(r"where Name = ('.*')$", query, re.DOTALL)[1])  # type: ignore[index]
            period_id = f"p{len(self.periods) + 1}"
            self.periods[period_id] = name
            record = {"Id": period_id, "Name": name}
            return httpx.Response(200, json={"records": [record], "size": 1, "done": True})
        if path.startswith("/v1/accounting-periods/"):
            period_id = path.rsplit("/", 1)[1]
            body = {"id": period_id, "name": self.periods[period_id], "status": "Open", "success": True}
            return httpx.Response(200, json=body)
        if path == "/v1/journal-entries":
            return httpx.Response(200, json={"journalEntryNumber": "JE-00000001", "success": True})
        return httpx.Response(404, json={"success": False, "reasons": [{"code": 50000040, "message": path}]})


def created(sent: list[httpx.Request]) -> list[dict[str, Any]]:
    return [json.loads(r.content) for r in sent if r.url.path == "/v1/journal-entries"]


# -- strategies -----------------------------------------------------------------------------------

odd_text = st.text(st.characters(categories=["L", "N", "P", "Zs", "Cc", "Cs"]), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.decimals() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
good_amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999999"), places=2)
bad_amounts = st.one_of(
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            "sNaN",
            "-5",
            "0",
            "0E-20",
            "1e999999999",
            "1e-999999999",
            "1" * 40,
            "0." + "0" * 30 + "1",
            "12,50",
            " 7 ",
            "1E+2",
            "0.0000001",
        ]
    ),
    st.decimals(),
    st.integers(),
    st.floats(),
    st.from_regex(r"-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
    json_values,
)
sides = st.sampled_from(["Debit", "Credit"])


@st.composite
def items(draw: st.DrawFn, home: bool) -> list[Any]:
    """Pairs of a debit and a credit of the same amount (a balanced entry), then damage: an amount
    changed, a side flipped, a field dropped or added, an item that is not an object."""
    made: list[Any] = []
    for _ in range(draw(st.integers(1, 3))):
        amount = draw(good_amounts)
        for side in ("Debit", "Credit"):
            item: dict[str, Any] = {
                "accountingCodeName": draw(st.sampled_from(CODES)),
                "type": side,
                "amount": draw(st.sampled_from([amount, str(amount)])),
            }
            if home:
                item["homeCurrencyAmount"] = amount
            made.append(item)
    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(made) - 1))
        damage = draw(st.sampled_from(["amount", "home", "side", "drop", "add", "replace", "code"]))
        item = made[index]
        if not isinstance(item, dict):
            continue  # already replaced by something that is not an item
        if damage == "amount":
            item["amount"] = draw(bad_amounts | good_amounts)
        elif damage == "home":
            item["homeCurrencyAmount"] = draw(bad_amounts | good_amounts)
        elif damage == "side":
            item["type"] = draw(sides | odd_text | json_values)
        elif damage == "drop" and item:
            del item[draw(st.sampled_from(sorted(item)))]
        elif damage == "add":
            item[draw(st.sampled_from(["x__c", "extra", "accountingCodeType", "\ud800__c"]))] = draw(
                json_values | odd_text
            )
        elif damage == "code":
            item["accountingCodeName"] = draw(odd_text | json_values)
        else:
            made[index] = draw(json_values)
    return made


@st.composite
def entries(draw: st.DrawFn, home: bool) -> dict[str, Any]:
    """A good entry, then damage to its fields."""
    entry: dict[str, Any] = {
        "accountingPeriodName": PERIOD,
        "journalEntryDate": "2024-12-31",
        "currency": "USD",
        "journalEntryItems": draw(items(home)),
    }
    optional = {
        "notes": st.text(max_size=20) | json_values,
        "transferredToAccounting": st.sampled_from(["No", "Yes", "Maybe"]) | json_values,
        "segments": st.just([{"segmentName": "Region", "segmentValue": "US"}]) | json_values,
        "organizationLabel": st.text(max_size=8),
        "region__c": odd_text | json_values,
        "colour": json_values,
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), max_size=3, unique=True)):
        entry[name] = draw(optional[name])
    for name in draw(st.lists(st.sampled_from(sorted(entry)), max_size=3, unique=True)):
        change = draw(st.sampled_from(["drop", "replace"]))
        if change == "drop":
            del entry[name]
        elif name == "journalEntryDate":
            entry[name] = draw(
                st.sampled_from(["20241231", "2024-W52-2", "2024-02-30", "31/12/2024", 20241231])
                | odd_text
                | json_values
            )
        elif name == "accountingPeriodName":
            entry[name] = draw(
                st.sampled_from(["Dec'16", 'a "b" \\ c', "Open-Ended"]) | odd_text | json_values
            )
        else:
            entry[name] = draw(odd_text | json_values | st.sampled_from(["EUR", "JPY", "usd"]))
    return entry


# -- what a created entry must be ------------------------------------------------------------------


def assert_sent_entry_is_valid(body: dict[str, Any], home: bool) -> None:
    """The entry Zuora received: dated, in a mapped currency, accounts mapped, every amount a
    plain positive decimal string within Zuora's precision, debits equal to credits exactly."""
    assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", body["journalEntryDate"])
    assert body["currency"] in MAPPING.currencies
    totals = {"Debit": Fraction(0), "Credit": Fraction(0)}
    home_totals = {"Debit": Fraction(0), "Credit": Fraction(0)}
    for item in body["journalEntryItems"]:
        assert item["accountingCodeName"] in MAPPING.accounts
        for name, sums in (("amount", totals), ("homeCurrencyAmount", home_totals)):
            if name not in item:
                assert not (home and name == "homeCurrencyAmount")
                continue
            text = item[name]
            assert isinstance(text, str) and PLAIN_DECIMAL.fullmatch(text), text
            whole, _, fraction = text.partition(".")
            assert len(whole.lstrip("0")) <= 13 and len(fraction.rstrip("0")) <= 9, text
            assert Fraction(text) > 0
            sums[item["type"]] += Fraction(text)
    assert totals["Debit"] == totals["Credit"]
    assert home_totals["Debit"] == home_totals["Credit"]


def assert_problems_name_what_to_fix(problems: tuple[str, ...], entry: Any) -> None:
    """Each problem is one printable line that starts with the field it is about (a field of the
    entry, or a required one that is missing) or with the totals or the period."""
    assert problems
    # As the problems show them: a name that is empty, unprintable or edged with spaces by its repr.
    fields = [k if k.isprintable() and k.strip() == k != "" else repr(k) for k in entry]
    for problem in problems:
        problem.encode("utf-8")  # printable on a console: no lone surrogate from the input
        assert "\n" not in problem, problem
        assert problem.startswith(PROBLEM_LEADS) or any(
            problem.startswith((f"{k} ", f"{k}.", f"{k}[", f"{k}:")) for k in fields
        ), problem


# -- properties -----------------------------------------------------------------------------------


UNBALANCED_IN_THE_29TH_DIGIT = {
    "accountingPeriodName": PERIOD,
    "journalEntryDate": "2024-12-31",
    "currency": "USD",
    "journalEntryItems": [
        {"accountingCodeName": CODES[0], "type": "Debit", "amount": "10000000000000000000000000001"},
        {"accountingCodeName": CODES[1], "type": "Credit", "amount": "1E+28"},
    ],
}


def test_any_entry_is_created_once_and_balanced_or_refused_with_nothing_sent():
    zuora = Zuora()

    @PROPERTY
    @given(case=st.booleans().flatmap(lambda home: st.tuples(st.just(home), entries(home))))
    # Decimal's 28 digits rounded the debits to the credits: this was sent as balanced.
    @example(case=(False, UNBALANCED_IN_THE_29TH_DIGIT))
    # An accounting code that is not a string was sent as it was (False, [], a number).
    @example(case=(False, {**UNBALANCED_IN_THE_29TH_DIGIT, "journalEntryItems": [
        {"accountingCodeName": False, "type": "Debit", "amount": "1"},
        {"accountingCodeName": CODES[0], "type": "Credit", "amount": "1"},
    ]}))  # fmt: skip
    # NaN anywhere was a ValueError from the JSON codec, after validation had passed.
    @example(case=(False, {**UNBALANCED_IN_THE_29TH_DIGIT, "region__c": Decimal("NaN"), "journalEntryItems": [
        {"accountingCodeName": CODES[0], "type": "Debit", "amount": "1"},
        {"accountingCodeName": CODES[0], "type": "Credit", "amount": "1"},
    ]}))  # fmt: skip
    # Sent as "1E+2" and "1E-7": amounts go as plain decimal strings.
    @example(case=(False, {**UNBALANCED_IN_THE_29TH_DIGIT, "journalEntryItems": [
        {"accountingCodeName": CODES[0], "type": "Debit", "amount": Decimal("1E+2")},
        {"accountingCodeName": CODES[0], "type": "Debit", "amount": Decimal("1E-7")},
        {"accountingCodeName": CODES[1], "type": "Credit", "amount": Decimal("100.0000001")},
    ]}))  # fmt: skip
    def check(case: tuple[bool, dict[str, Any]]) -> None:
        home, entry = case
        sent: list[httpx.Request] = []
        with zuora_client(zuora, sent) as client:
            try:
                number = je.create_entry(client, entry, mapping=MAPPING, home_currency_amounts=home)
            except je.InvalidEntry as exc:
                assert_problems_name_what_to_fix(exc.problems, entry)
                assert created(sent) == []
            else:
                assert number == "JE-00000001"
                [body] = created(sent)
                assert_sent_entry_is_valid(body, home)

    check()


def test_validation_lists_problems_and_never_raises():
    @PROPERTY
    @given(entry=st.dictionaries(st.text(max_size=8), json_values, max_size=5) | entries(home=False))
    @example(entry={"transferredToAccounting": ["Yes"]})  # was TypeError: unhashable type: 'list'
    @example(entry={"journalEntryItems": [{"type": ["Debit"], "amount": 1}]})  # the same, for type
    @example(entry={"journalEntryItems": [{"type": "Debit", "amount": "1e999999999"}]})  # Overflow
    @example(entry={"\n": Decimal("Infinity")})  # a field name must not break the problem's line
    def check(entry: dict[str, Any]) -> None:
        for home in (False, True):
            problems = je.validate_entry(entry, mapping=MAPPING, home_currency_amounts=home)
            assert isinstance(problems, list)
            if problems:
                assert_problems_name_what_to_fix(tuple(problems), entry)

    check()


def test_any_entry_file_is_read_or_refused_with_an_entry_file_error(tmp_path):
    path: Path = tmp_path / "entry.json"

    @PROPERTY
    @given(
        content=st.binary(max_size=200)
        | st.text(max_size=200).map(str.encode)
        | st.sampled_from(
            [
                b'{"amount": NaN}',
                b'{"amount": Infinity}',
                b'{"a": "\\ud800"}',
                b"[" * 5000 + b"]" * 5000,
                b'{"amount": ' + b"1" * 5000 + b"}",
                b"\xef\xbb\xbf{}",
            ]
        )
    )
    @example(content=b'{"amount": ' + b"1" * 5000 + b"}")  # was Python's own "Exceeds the limit"
    @example(content=b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}")  # was a RecursionError
    def check(content: bytes) -> None:
        path.write_bytes(content)
        try:
            entry = je.read_entry_file(path)
        except je.EntryFileError as exc:
            assert str(exc).startswith(f"{path}: ")
        else:
            assert isinstance(entry, dict)
            je.validate_entry(entry, mapping=MAPPING, home_currency_amounts=False)

    check()
