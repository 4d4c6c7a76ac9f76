"""The chaos suite's world: its own Redis and PostgreSQL, both sandboxes, a webhook, and
ledgerbridge's processes with one environment. ``chaos_world`` builds it and tears all of it
down afterwards, whatever the test did."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sandbox import acumatica as acumatica_sandbox
from sandbox.zuora import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sizes
from sandbox.zuora import create_app as zuora_app
from shared.ledger.migrate import upgrade
from tests.chaos.services import PostgresServer, RedisServer
from tests.chaos.stack import REPO, Fleet, Sandbox, Webhook


@dataclass
class ChaosWorld:
    tmp: Path
    redis: RedisServer
    postgres: PostgresServer
    database_url: str
    zuora: Sandbox
    acumatica: Sandbox
    webhook: Webhook
    fleet: Fleet
    secret: str

    @property
    def env(self) -> dict[str, str]:
        return self.fleet.env


def chaos_env(
    *, redis_url: str, database_url: str, zuora_url: str, acumatica_url: str, webhook_url: str, secret: str,
    tmp: Path, settings: dict[str, str],
) -> dict[str, str]:  # fmt: skip
    """One connection, ``chaos``, as the Procfile's processes would see it: the mapping file that
    serves both the item-level sync and the close, and the intervals ``settings`` shortens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERBRIDGE_")}
    env.update(
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(REPO),
        LEDGERBRIDGE_REDIS_URL=redis_url,
        LEDGERBRIDGE_DATABASE_URL=database_url,
        LEDGERBRIDGE_CONNECTION="chaos",
        LEDGERBRIDGE_QUEUE="ledgerbridge-chaos",
        LEDGERBRIDGE_ZUORA_BASE_URL=zuora_url,
        LEDGERBRIDGE_ZUORA_CLIENT_ID=DEFAULT_CLIENT_ID,
        LEDGERBRIDGE_ZUORA_CLIENT_SECRET=DEFAULT_CLIENT_SECRET,
        LEDGERBRIDGE_ERP="acumatica",
        LEDGERBRIDGE_ACUMATICA_URL=acumatica_url,
        LEDGERBRIDGE_ACUMATICA_ENDPOINT=acumatica_sandbox.DEFAULT_ENDPOINT,
        LEDGERBRIDGE_ACUMATICA_TENANT=acumatica_sandbox.DEFAULT_TENANT,
        LEDGERBRIDGE_ACUMATICA_USERNAME=acumatica_sandbox.DEFAULT_USERNAME,
        LEDGERBRIDGE_ACUMATICA_PASSWORD=acumatica_sandbox.DEFAULT_PASSWORD,
        LEDGERBRIDGE_ACUMATICA_BRANCH="HQ",
        LEDGERBRIDGE_MAPPING_FILE=str(REPO / "mapping.example.toml"),
        LEDGERBRIDGE_CALLOUT_HMAC_SECRET=secret,
        LEDGERBRIDGE_NOTIFY_WEBHOOK_URL=webhook_url,
        LEDGERBRIDGE_GL_EXPORT_DIR=str(tmp / "gl-export"),
        LEDGERBRIDGE_LOG_LEVEL="INFO",
    )
    env.update(settings)
    return env


@pytest.fixture
def chaos_world(tmp_path: Path) -> Iterator[Any]:
    """``chaos_world(sizes=..., seed=..., settings=...)`` -> a :class:`ChaosWorld` with its services
    and sandboxes up (no ledgerbridge process runs yet); everything is stopped and deleted at
    teardown, whatever the test did."""
    with ExitStack() as stack:

        def build(*, seed: int, sizes: dict[str, Any], settings: dict[str, str]) -> ChaosWorld:
            logs = tmp_path / "logs"
            logs.mkdir(exist_ok=True)
            zuora = stack.enter_context(
                closing(Sandbox("zuora", zuora_app(seed=seed, sizes=Sizes().with_changes(sizes))))
            )
            acumatica = stack.enter_context(closing(Sandbox("acumatica", acumatica_sandbox.create_app())))
            # Loading the sandboxes' contract checkers takes a while: meanwhile the services start.
            with ThreadPoolExecutor(max_workers=2) as pool:
                warming = [pool.submit(zuora.warm_up), pool.submit(acumatica.warm_up)]
                redis_server = stack.enter_context(closing(RedisServer(logs)))
                redis_server.start()
                postgres = stack.enter_context(closing(PostgresServer()))
                postgres.init().start()
                database_url = postgres.create_database("ledgerbridge")
                upgrade(database_url)
                for future in warming:
                    future.result(timeout=300)
            webhook = stack.enter_context(closing(Webhook()))
            secret = secrets.token_hex(16)
            env = chaos_env(
                redis_url=redis_server.url, database_url=database_url, zuora_url=zuora.url,
                acumatica_url=acumatica.url, webhook_url=webhook.url, secret=secret, tmp=tmp_path,
                settings=settings,
            )  # fmt: skip
            fleet = stack.enter_context(closing(Fleet(env, logs)))
            return ChaosWorld(
                tmp_path, redis_server, postgres, database_url, zuora, acumatica, webhook, fleet, secret
            )

        yield build
