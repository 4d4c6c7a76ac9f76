"""Bad input on purpose: the mapping file loader (shared/mapping/file.py) and ``ledgerbridge
mapping check``.

Any bytes, any TOML document, any value in any table: :func:`load_mapping` returns a mapping
that says what the document says, or raises :class:`MappingFileError` whose every problem names
the file and the line, or the table and key, to fix - never a KeyError, TypeError, ValueError or
RecursionError of its own. The command turns that error into exit code 2 and a message, never a
traceback. (Loading writes nothing: there is nothing to half-write.)
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli.main import app
from shared import ports
from shared.mapping import ErpSection, JournalSection, Mapping, MappingFileError, load_mapping

TABLES = ("erp", "accounts", "payment_methods", "currencies", "journal")
VALID = """\
[erp]
branch = "HQ"
ledger = "ACTUAL"
[accounts]
"Accounts Receivable" = { account = "11000", subaccount = "000000" }
"Sales Revenue" = { account = "40000" }
[payment_methods]
CreditCard = { method = "CC", cash_account = "10200" }
[currencies]
USD = "USD"
[journal]
transaction_types = ["Invoice Item"]
"""

PROPERTY = settings(
    max_examples=150,
    deadline=None,  # each example writes and reads a file
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# -- a small TOML writer (the standard library only reads TOML) -----------------------------------


def toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, except that TOML also escapes DEL."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{ " + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + " }"


def toml_document(doc: dict[str, Any]) -> str:
    """Top-level keys first, then one ``[table]`` per dict value."""
    plain = [f"{toml_string(k)} = {toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [
        f"[{toml_string(k)}]\n" + "".join(f"{toml_string(kk)} = {toml_value(vv)}\n" for kk, vv in v.items())
        for k, v in doc.items()
        if isinstance(v, dict)
    ]
    return "\n".join(plain) + "\n" + "".join(tables)


# -- strategies -----------------------------------------------------------------------------------

texts = st.text(max_size=12) | st.sampled_from(["", " ", "HQ", "USD", "usd", "ÀÉÎ", "ΑΒΓ", "40000", "\t"])
scalars = (
    texts
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.dates()
    | st.datetimes(max_value=datetime(9999, 12, 31))
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=6,
)
accounts = st.fixed_dictionaries({}, optional={"account": values, "subaccount": values, "extra": values})
payment_methods = st.fixed_dictionaries(
    {}, optional={"method": values, "cash_account": values, "extra": values}
)
erp = st.fixed_dictionaries(
    {},
    optional={
        "branch": values,
        "ledger": values,
        "customer_class": values,
        "tax_accounting_code": values,
        "memo_item_account": st.sampled_from(["recognized_revenue", "deferred_revenue"]) | values,
        "extra": values,
    },
)
anything = st.fixed_dictionaries(
    {},
    optional={
        "erp": erp | values,
        "accounts": st.dictionaries(texts, accounts | values, max_size=3) | values,
        "payment_methods": st.dictionaries(texts, payment_methods | values, max_size=3) | values,
        "currencies": st.dictionaries(texts, texts | values, max_size=3) | values,
        "journal": st.fixed_dictionaries({}, optional={"transaction_types": values}) | values,
        "extra": values,
    },
)
# Documents close to a good file, so that loading also succeeds (and must then agree with them).
names = st.text(min_size=1, max_size=10)
plausible = st.fixed_dictionaries(
    {"erp": st.fixed_dictionaries({"branch": names}, optional={"ledger": names, "customer_class": names})},
    optional={
        "accounts": st.dictionaries(
            texts, st.fixed_dictionaries({"account": names}, optional={"subaccount": names}), max_size=3
        ),
        "payment_methods": st.dictionaries(
            texts, st.fixed_dictionaries({"method": names, "cash_account": names}), max_size=3
        ),
        "currencies": st.dictionaries(
            st.text(st.characters(categories=["Lu", "Ll"]), min_size=3, max_size=3)
            | st.sampled_from(["USD", "EUR", "JPY"]),
            names,
            max_size=3,
        ),
        "journal": st.fixed_dictionaries({}, optional={"transaction_types": st.lists(names, max_size=3)}),
    },
)
documents = plausible | anything


@st.composite
def damaged(draw: st.DrawFn) -> str:
    """The valid example with characters inserted, deleted or replaced."""
    text = VALID
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 3))
        insert = draw(st.text(max_size=4) | st.sampled_from(['"', "[", "]", "=", "\n", "{", "'''", "#"]))
        text = text[:at] + insert + text[at + cut :]
    return text


# -- what an error must say -----------------------------------------------------------------------

QUOTED = r'"(?:[^"\\]|\\.)*"'
NAME = rf"(?:{QUOTED}|[^\s\[\]\".:]+)"
PROBLEM = re.compile(rf"^(?P<path>.+?): \[(?P<table>{NAME})\](?: (?P<key>{NAME}))?")
# The fields a table of one fixed shape may name as missing.
FIELDS = {"erp": set(ErpSection.model_fields), "journal": set(JournalSection.model_fields)}


def unquote(name: str) -> str:
    """A name as an error shows it (bare, or a TOML basic string) back to the name itself."""
    return str(tomllib.loads(f"k = {name}")["k"]) if name.startswith('"') else name


def problems_of(error: MappingFileError, path: Path) -> list[str]:
    """The problems an error lists, one a line; each starts with the file's path."""
    message = str(error)
    lines = message.splitlines()[1:] if message.startswith("invalid mapping file:") else [message]
    assert lines, message
    for line in lines:
        assert line.strip().startswith(f"{path}: "), message
    return [line.strip() for line in lines]


def assert_names_what_to_fix(error: MappingFileError, path: Path, doc: dict[str, Any]) -> None:
    """A TOML or encoding error names the line; a validation error names the table, and the key
    within it when the problem is one entry: a key the file has, or a field the table needs."""
    message = str(error)
    if not message.startswith("invalid mapping file:"):
        assert "not valid TOML" in message or "not UTF-8" in message, message
        return
    for problem in problems_of(error, path):
        found = PROBLEM.match(problem)
        assert found is not None, problem
        table = unquote(found["table"])
        assert table in doc or table in TABLES, problem
        if found["key"] is not None:
            key = unquote(found["key"])
            assert isinstance(doc.get(table), dict), problem
            assert key in doc[table] or key in FIELDS.get(table, ()), problem


def assert_says_what_the_document_says(mapping: Mapping, doc: dict[str, Any]) -> None:
    assert mapping.erp.branch == doc["erp"]["branch"].strip()
    for code in mapping.currencies:
        assert len(code) == 3 and code.isascii() and code.isupper() and code.isalpha(), code
        assert mapping.currencies[code] == doc["currencies"][code].strip()
    for name, account in mapping.accounts.items():
        assert account.account == doc["accounts"][name]["account"].strip() != ""
    assert set(mapping.accounts) == set(doc.get("accounts", {}))
    assert set(mapping.payment_methods) == set(doc.get("payment_methods", {}))


# -- properties -----------------------------------------------------------------------------------


def test_any_bytes_load_or_raise_a_mapping_file_error_naming_the_file(tmp_path):
    path = tmp_path / "mapping.toml"

    @PROPERTY
    @given(content=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
    @example(content=b'[erp]\nbranch = "\xff"\n')  # not UTF-8: was a raw UnicodeDecodeError
    @example(content=b"x = " + b"[" * 3000 + b"]" * 3000)  # was a RecursionError
    @example(content=b"x = " + b"1" * 5000)  # was Python's own "Exceeds the limit" ValueError
    def check(content: bytes) -> None:
        path.write_bytes(content)
        try:
            load_mapping(path)
        except MappingFileError as exc:
            problems_of(exc, path)

    check()


def test_any_document_loads_as_written_or_names_the_table_and_key_to_fix(tmp_path):
    path = tmp_path / "mapping.toml"

    @PROPERTY
    @given(doc=documents)
    @example(doc={"erp": {"branch": "HQ"}, "currencies": {"ÀÉÎ": "USD"}})  # was accepted as ISO 4217
    @example(doc={"erp": {"branch": "HQ"}, "accounts": {"": {"\r": ""}}})  # a key's CR split the list
    @example(doc={"accounts": {"\x85": {}}})  # and so did a NEL
    def check(doc: dict[str, Any]) -> None:
        path.write_text(toml_document(doc), "utf-8")
        try:
            mapping = load_mapping(path)
        except MappingFileError as exc:
            assert_names_what_to_fix(exc, path, doc)
        else:
            assert_says_what_the_document_says(mapping, doc)

    check()


def test_a_damaged_file_names_the_line_or_the_key(tmp_path):
    path = tmp_path / "mapping.toml"

    @PROPERTY
    @given(text=damaged())
    def check(text: str) -> None:
        path.write_text(text, "utf-8")
        try:
            load_mapping(path)
        except MappingFileError as exc:
            message = str(exc)
            if "not valid TOML" in message:
                assert "line" in message or "end of document" in message, message
            else:
                assert all(PROBLEM.match(p) for p in problems_of(exc, path)), message

    check()


def test_mapping_check_exits_2_with_a_message_never_a_traceback(tmp_path):
    path = tmp_path / "mapping.toml"
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("LEDGERBRIDGE_")}
    env.update(
        COLUMNS="1000",
        LEDGERBRIDGE_ERP="file",
        LEDGERBRIDGE_GL_EXPORT_DIR=str(tmp_path / "gl"),
        LEDGERBRIDGE_DATABASE_URL=f"sqlite:///{tmp_path / 'ledger.db'}",
        LEDGERBRIDGE_ZUORA_BASE_URL="http://127.0.0.1:9",  # configured, never called
        LEDGERBRIDGE_ZUORA_CLIENT_ID="unused",
        LEDGERBRIDGE_ZUORA_CLIENT_SECRET="unused",
        LEDGERBRIDGE_MAPPING_FILE=str(path),
    )

    @settings(PROPERTY, max_examples=40)
    @given(content=documents.map(toml_document) | damaged() | st.text(max_size=200))
    @example(content="x = " + "[" * 3000 + "]" * 3000)
    def check(content: str) -> None:
        path.write_text(content, "utf-8")
        ports.reset_for_tests()
        try:
            result = CliRunner().invoke(app, ["mapping", "check"], env=env)
        finally:
            ports.reset_for_tests()

        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        assert result.exit_code in (0, 2), result.output
        if result.exit_code == 2:
            assert "error:" in result.output and str(path) in result.output.replace("\n", "")

    check()
