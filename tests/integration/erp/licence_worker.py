"""One worker process of the licence test (``test_acumatica_licence.py``), run as a script.

It builds an :class:`~shared.erp.acumatica.AcumaticaErp` the way ``shared.ports`` does (one per
process, the connection's Redis limits shared by the fleet), signals that it is ready, waits for
the go signal, then creates ``--count`` invoices for its own customer. Every create ends with the
invoice in Acumatica exactly once: a fleet-limit timeout or a licence 429 (nothing was
processed) is waited out and repeated; a lost answer (``OutcomeUnknown``) is looked up by natural
key before anything is repeated. The outcome is written as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repository root

from sandbox.acumatica import (
    DEFAULT_ENDPOINT,
    DEFAULT_PASSWORD,
    DEFAULT_TENANT,
    DEFAULT_USERNAME,
)
from shared.connections import AcumaticaTarget
from shared.erp.acumatica import AcumaticaErp
from shared.erp.base import ArDocument, ArLine
from shared.erp.errors import OutcomeUnknown
from shared.errors import RateLimited

MAX_TRIES = 20
START_WAIT = 60.0


def invoice(customer: str, number: str, today: dt.date) -> ArDocument:
    return ArDocument(
        kind="invoice",
        natural_key=number,
        customer_id=customer,
        date=today,
        currency="USD",
        description=f"Zuora {number}",
        lines=(ArLine(description="Pro plan", amount=Decimal("99.00"), account="40000", branch="HQ"),),
    )


def create_once(erp: AcumaticaErp, doc: ArDocument, events: Counter[str]) -> None:
    for _ in range(MAX_TRIES):
        try:
            erp.create_document(doc)
            return
        except RateLimited as exc:  # not processed by anyone: safe to repeat after the wait
            events["rate_limited"] += 1
            time.sleep(min(exc.retry_after, 5.0))
        except OutcomeUnknown:
            events["in_doubt"] += 1
            if erp.find_document("invoice", doc.natural_key, doc.customer_id) is not None:
                return
    raise RuntimeError(f"{doc.natural_key} was not created after {MAX_TRIES} tries")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--connection", required=True)
    parser.add_argument("--customer", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--requests-per-minute", type=int, required=True)
    parser.add_argument("--max-concurrent", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    client = redis.Redis.from_url(args.redis)
    target = AcumaticaTarget(
        url=args.url,
        endpoint=DEFAULT_ENDPOINT,
        username=DEFAULT_USERNAME,
        password=DEFAULT_PASSWORD,
        tenant=DEFAULT_TENANT,
        requests_per_minute=args.requests_per_minute,
        max_concurrent=args.max_concurrent,
    )
    erp = AcumaticaErp.from_target(target, connection=args.connection, redis=client)
    events: Counter[str] = Counter()
    today = dt.datetime.now(dt.UTC).date()
    go_key = f"ledgerbridge:{args.connection}:test:go"
    client.rpush(f"ledgerbridge:{args.connection}:test:ready", args.customer)
    deadline = time.monotonic() + START_WAIT
    while not client.exists(go_key):
        if time.monotonic() > deadline:
            raise TimeoutError("no go signal")
        time.sleep(0.01)
    started = time.time()
    try:
        for n in range(1, args.count + 1):
            create_once(erp, invoice(args.customer, f"{args.customer}-{n:04d}", today), events)
    finally:
        erp.close()
    result = {"customer": args.customer, "created": args.count, "events": dict(events)}
    result |= {"started": started, "finished": time.time()}
    Path(args.out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
