"""A local Zuora Billing: a real HTTP server that behaves as the Zuora API notes (zuora-api.md) describe.

Layout (moto-style, the same room names as ``sandbox.acumatica``; sandbox/README.md): ``app``
(``create_app``, ``run``), ``routes`` (URL table) -> ``handlers`` (parse and render) -> ``backend/``
(state and rules, one module per API area, one method per Zuora operation); ``errors`` (real
bodies and statuses), ``control`` (``/_sandbox/...``), ``faults`` (fault injection), ``config``.
Zuora's own: ``pipeline`` (what the gateway does around every handler: limits, faults, tokens,
idempotency) over ``gateway`` (its counters and records), ``paging`` (cursors, query locators,
page URLs), ``seed`` (deterministic data), ``callouts`` (signed notifications).

    app = create_app(seed=7)                      # in-process (Starlette TestClient)
    ThreadedServer(app).start()                   # over loopback
    run(port=8081, seed=7)                        # ledgerbridge sandbox zuora --port 8081 --seed 7
"""

from .app import DEFAULT_SEED, create_app, run
from .backend import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxEvent, ZuoraBackend
from .config import JobTiming, SandboxConfig
from .seed import Sizes

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_SEED",
    "JobTiming",
    "SandboxConfig",
    "SandboxEvent",
    "Sizes",
    "ZuoraBackend",
    "create_app",
    "run",
]
