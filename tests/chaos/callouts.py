"""The chaos suite's stream of Zuora callouts: signed deliveries of real records, Zuora's duplicate
re-deliveries, deliveries with bad signatures and bodies that are not our template.

:func:`plan_callouts` lays out the deliveries (seeded, so every run sends the same stream);
:class:`CalloutSender` sends them over a given span of time as Zuora would: a delivery that gets
no answer or a 5xx is sent again after a pause (Zuora retries), the same bytes and headers each
time. Every refused delivery (bad signature or malformed) names an object id of its own that no
Zuora record has, so the suite can show, from the Zuora sandbox's request log, that nothing ever
asked Zuora for it.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx

from bench.scenarios import signed_callout
from shared.callouts import sign
from tests.integration.item_level.support import Zuora

Kind = Literal["valid", "duplicate", "bad_signature", "malformed"]

# Zuora table -> (the status a callout's record has, its event code).
EVENTS = {"invoices": "1110", "payments": "2120", "credit-memos": "2720", "debit-memos": "2820"}
SYNCED_STATUS = {"invoices": "Posted", "payments": "Processed", "refunds": "Processed",
                 "credit-memos": "Posted", "debit-memos": "Posted"}  # fmt: skip


@dataclass(frozen=True)
class Target:
    """What a valid callout names: an existing record (``object_id``), or a record the sender
    creates in Zuora just before the callout (``create``: an invoice, or an electronic payment of
    the oldest invoice it created and has not paid yet)."""

    event_code: str
    object_id: str | None = None
    account_id: str | None = None
    create: Literal["invoice", "payment"] | None = None


@dataclass
class Delivery:
    kind: Kind
    target: Target | None = None  # valid
    original: int | None = None  # duplicate: the index of the delivery it repeats
    body: bytes = b""  # refused ones: fixed at planning time
    headers: dict[str, str] = field(default_factory=dict)
    names: str | None = None  # refused ones: the fake object id the delivery names


def fake_id(rng: random.Random) -> str:
    """A Zuora-shaped id that no sandbox record has (the sandbox's ids start with 8ad0)."""
    return "8acf" + "".join(rng.choice("0123456789abcdef") for _ in range(28))


def _stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _headers(stamp: str, signature: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "X-Zuora-Timestamp": stamp,
        "Zuora-Notification-Id": uuid.uuid4().hex,
        "Zuora-Request-Id": uuid.uuid4().hex,
    }
    if signature is not None:
        headers["X-Zuora-Signature"] = signature
    return headers


def _template(event: str, object_id: str, account_id: str | None) -> bytes:
    return json.dumps({"eventCode": event, "objectId": object_id, "accountId": account_id},
                      separators=(",", ":")).encode()  # fmt: skip


def bad_signature(rng: random.Random, secret: str, variant: int) -> Delivery:
    """A delivery the receiver must refuse with 401: signed with another secret, unsigned, signed
    over other bytes, or signed correctly but eight days old."""
    names = fake_id(rng)
    body = _template(rng.choice(list(EVENTS.values())), names, None)
    now = datetime.now(UTC)
    stamp = _stamp(now)
    if variant == 0:
        headers = _headers(stamp, sign("not-" + secret, stamp, body))
    elif variant == 1:
        headers = _headers(stamp, None)
    elif variant == 2:
        headers = _headers(stamp, sign(secret, stamp, body.replace(b"accountId", b"accountID")))
    else:
        old = _stamp(now - timedelta(days=8))
        headers = _headers(old, sign(secret, old, body))
    return Delivery("bad_signature", body=body, headers=headers, names=names)


def malformed(rng: random.Random, secret: str, variant: int) -> Delivery:
    """A correctly signed delivery whose body is not our template (the receiver answers 400)."""
    names = fake_id(rng)
    template = _template("1110", names, None)
    bodies = (
        template[: len(template) // 2],  # cut short: not JSON
        _template("9999", names, None),  # an event we do not subscribe to
        json.dumps({"eventCode": "1110", "objectId": f"{names}';--"}).encode(),  # not a Zuora id
        json.dumps([{"eventCode": "1110", "objectId": names}]).encode(),  # not an object
        json.dumps({"objectId": names, "accountId": None}).encode(),  # no event code
    )
    body = bodies[variant % len(bodies)]
    stamp = _stamp(datetime.now(UTC))
    return Delivery("malformed", body=body, headers=_headers(stamp, sign(secret, stamp, body)), names=names)


def backlog_targets(zuora: Zuora) -> list[Target]:
    """A callout target for every synced document of the tenant that fires callouts (electronic
    payments; refunds by their source: 2410 of a payment, 2430 of a credit memo)."""
    targets = []
    for table, event in EVENTS.items():
        for row in zuora.rows(table):
            if row.get("Status") != SYNCED_STATUS[table]:
                continue
            if table == "payments" and row.get("Type") != "Electronic":
                continue  # external payments fire no callout (zuora-api.md 12.5)
            targets.append(Target(event, str(row["Id"]), row.get("AccountId")))
    for row in zuora.rows("refunds"):
        if row.get("Status") == SYNCED_STATUS["refunds"]:
            event = "2430" if row.get("SourceType") == "CreditMemo" else "2410"
            targets.append(Target(event, str(row["Id"]), row.get("AccountId")))
    return targets


@dataclass(frozen=True)
class CalloutMix:
    total: int = 1000
    duplicates: int = 300
    bad_signatures: int = 100
    malformed: int = 50
    new_invoices: int = 60
    new_payments: int = 30

    @property
    def valid(self) -> int:
        return self.total - self.duplicates - self.bad_signatures - self.malformed


def plan_callouts(
    rng: random.Random, existing: Sequence[Target], accounts: Sequence[str], secret: str, mix: CalloutMix
) -> list[Delivery]:
    """``mix.total`` deliveries in sending order: the valid ones name new records (created as they
    are sent) and existing ones (each once before any twice); the refused ones are fixed here,
    each naming an id of its own; every duplicate comes after the delivery it repeats."""
    new = [Target("1110", account_id=rng.choice(accounts), create="invoice") for _ in range(mix.new_invoices)]
    new += [Target("2120", create="payment") for _ in range(mix.new_payments)]
    pool = list(existing)
    rng.shuffle(pool)
    firsts = [Delivery("valid", target=t) for t in new]
    firsts += [Delivery("valid", target=pool[i % len(pool)]) for i in range(mix.valid - len(new))]
    firsts += [bad_signature(rng, secret, i % 4) for i in range(mix.bad_signatures)]
    firsts += [malformed(rng, secret, i) for i in range(mix.malformed)]
    rng.shuffle(firsts)
    keyed = [(float(i), d) for i, d in enumerate(firsts)]
    valid_positions = [i for i, d in enumerate(firsts) if d.kind == "valid"]
    for _ in range(mix.duplicates):
        original = rng.choice(valid_positions)
        keyed.append((rng.uniform(original + 0.01, len(firsts)), Delivery("duplicate", original=original)))
    keyed.sort(key=lambda item: item[0])
    final_index = {id(d): i for i, (_, d) in enumerate(keyed)}
    deliveries = [d for _, d in keyed]
    for delivery in deliveries:
        if delivery.kind == "duplicate":
            assert delivery.original is not None
            delivery.original = final_index[id(firsts[delivery.original])]
    return deliveries


@dataclass
class SendFigures:
    sent: Counter[str] = field(default_factory=Counter)  # deliveries by kind
    answers: Counter[str] = field(default_factory=Counter)  # final answer by kind/status
    attempts: int = 0
    retried: int = 0
    created: dict[str, list[str]] = field(default_factory=lambda: {"invoices": [], "payments": []})
    refused_ids: list[str] = field(default_factory=list)
    valid_ids: list[str] = field(default_factory=list)


class CalloutSender:
    """Sends planned deliveries to the receiver over ``seconds``, in a thread of its own."""

    def __init__(
        self, url: str, secret: str, zuora: Zuora, deliveries: list[Delivery], seconds: float
    ) -> None:
        self.url = url
        self.secret = secret
        self.zuora = zuora
        self.deliveries = deliveries
        self.seconds = seconds
        self.figures = SendFigures()
        self._sent: dict[int, tuple[bytes, dict[str, str]]] = {}
        self._created_invoices: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="callout-sender", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> CalloutSender:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(30)
            raise AssertionError(f"the callout sender did not finish within {timeout:.0f}s")
        if self.error is not None:
            raise AssertionError(f"the callout sender failed: {self.error!r}") from self.error

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    # -- sending ----------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            client = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=16))
            try:
                started = time.monotonic()
                with ThreadPoolExecutor(max_workers=8, thread_name_prefix="callout") as pool:
                    pending = []
                    for index, delivery in enumerate(self.deliveries):
                        if self._stop.is_set():
                            break
                        pause = started + index * self.seconds / len(self.deliveries) - time.monotonic()
                        if pause > 0:
                            self._stop.wait(pause)
                        body, headers = self._prepare(index, delivery)
                        pending.append(pool.submit(self._deliver, client, delivery.kind, body, headers))
                    for future in pending:
                        future.result()
            finally:
                client.close()
        except BaseException as exc:  # reported by join()
            self.error = exc

    def _prepare(self, index: int, delivery: Delivery) -> tuple[bytes, dict[str, str]]:
        if delivery.kind == "duplicate":
            assert delivery.original is not None
            body, headers = self._sent[delivery.original]
            # Zuora's re-delivery: the same notification, the same signed bytes, a new request id.
            headers = {**headers, "Zuora-Request-Id": uuid.uuid4().hex}
        elif delivery.kind == "valid":
            assert delivery.target is not None
            object_id, account_id = self._resolve(delivery.target)
            body, headers = signed_callout(self.secret, delivery.target.event_code, object_id, account_id)
            self.figures.valid_ids.append(object_id)
        else:
            body, headers = delivery.body, delivery.headers
            assert delivery.names is not None
            self.figures.refused_ids.append(delivery.names)
        self._sent[index] = (body, headers)
        self.figures.sent[delivery.kind] += 1
        return body, headers

    def _resolve(self, target: Target) -> tuple[str, str | None]:
        """The ids a valid callout names; a new record is created in Zuora first."""
        if target.create == "invoice":
            row = self.zuora.add("invoices", {"AccountId": target.account_id})
            self._created_invoices.append(str(row["Id"]))
            self.figures.created["invoices"].append(str(row["InvoiceNumber"]))
            return str(row["Id"]), target.account_id
        if target.create == "payment":
            if not self._created_invoices:  # none yet: one without a callout (the pull brings it)
                account = self.zuora.rows("accounts")[0]["Id"]
                self._created_invoices.append(str(self.zuora.add("invoices", {"AccountId": account})["Id"]))
            invoice = self._created_invoices.pop(0)
            row = self.zuora.add("payments", {"invoiceId": invoice, "Type": "Electronic"})
            self.figures.created["payments"].append(str(row["PaymentNumber"]))
            return str(row["Id"]), str(row["AccountId"])
        assert target.object_id is not None
        return target.object_id, target.account_id

    def _deliver(self, client: httpx.Client, kind: str, body: bytes, headers: dict[str, str]) -> None:
        """POST until an answer that is not a 5xx (Zuora retries those and lost answers), at most
        ``MAX_ATTEMPTS`` times, ``RETRY_PAUSE`` apart."""
        status = "no answer"
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if attempt > 1:
                with self._lock:
                    self.figures.retried += 1
                if self._stop.wait(RETRY_PAUSE):
                    break
            with self._lock:
                self.figures.attempts += 1
            try:
                response = client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError:
                continue
            status = str(response.status_code)
            if response.status_code < 500:
                break
        with self._lock:
            self.figures.answers[f"{kind}:{status}"] += 1


MAX_ATTEMPTS = 40
RETRY_PAUSE = 0.5


def summary(figures: SendFigures) -> dict[str, Any]:
    return {
        "sent": sum(figures.sent.values()),
        "duplicates": figures.sent["duplicate"],
        "bad_signatures": figures.sent["bad_signature"],
        "malformed": figures.sent["malformed"],
        "attempts": figures.attempts,
        "answers": dict(sorted(figures.answers.items())),
        "created_in_zuora": {k: len(v) for k, v in figures.created.items()},
    }


def expected_answers(figures: SendFigures) -> Callable[[str], bool]:
    """Whether an answer ``kind:status`` is what the receiver must give that kind."""
    wanted = {"valid": "200", "duplicate": "200", "bad_signature": "401", "malformed": "400"}

    def ok(answer: str) -> bool:
        kind, _, status = answer.partition(":")
        return wanted.get(kind) == status

    return ok
