"""The control plane under ``/_sandbox`` (moto's ``moto_api``): reset, seed, config, faults,
state for assertions, request counters, period status, session expiry and the sandbox clock.

No authentication, no licence, not counted. Shaped like the Zuora sandbox's control plane
(``/health``, ``/reset``, ``/seed``, ``/state``, ``/faults``, ``/config``, ``/clock``,
``/tokens/expire``, ``/requests``). Errors are ``{"error": "..."}`` with 400 (bad input) or 404
(unknown entity or record).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sandbox.acumatica.backend import AcumaticaBackend
from sandbox.acumatica.config import ConfigError
from sandbox.acumatica.entities import ENTITIES
from sandbox.acumatica.faults import FaultError, FaultRule

Handler = Callable[[Request], Awaitable[Any]]


class _NotFound(LookupError):
    pass


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _guard(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            result = await handler(request)
        except _NotFound as exc:
            return _error(404, str(exc))
        except (ConfigError, FaultError, KeyError, TypeError, ValueError) as exc:
            return _error(400, str(exc) if not isinstance(exc, KeyError) else f"missing {exc}")
        return result if isinstance(result, Response) else JSONResponse(result)

    return endpoint


def _entity(request: Request) -> str:
    entity = str(request.path_params["entity"])
    if entity not in ENTITIES:
        raise _NotFound(f"unknown entity {entity!r}; known: {', '.join(ENTITIES)}")
    return entity


def control_router(backend: AcumaticaBackend) -> APIRouter:
    """The ``/_sandbox`` routes over ``backend``."""
    router = APIRouter(prefix="/_sandbox", include_in_schema=False)

    def add(method: str, path: str, handler: Handler) -> None:
        router.add_api_route(path, _guard(handler), methods=[method])

    async def health(request: Request) -> Any:
        return {"ok": True, "endpoint": backend.config.endpoint}

    async def reset(request: Request) -> Any:
        body = await _json(request)
        backend.reset(seed=bool(body.get("seed", True)))
        return {"reset": True}

    async def seed(request: Request) -> Any:
        return {"added": backend.seed(await _json(request))}

    async def get_config(request: Request) -> Any:
        return backend.config.public()

    async def set_config(request: Request) -> Any:
        backend.config.update(await _json(request))
        return backend.config.public()

    async def get_faults(request: Request) -> Any:
        return {"rules": backend.faults.rules(), "injected": dict(backend.faults.injected)}

    async def set_faults(request: Request) -> Any:
        body = await _json(request)
        raw_rules = body.get("rules", [])
        if not isinstance(raw_rules, list):
            raise ValueError("rules must be an array")
        seed_value = body.get("seed")
        if seed_value is not None and (isinstance(seed_value, bool) or not isinstance(seed_value, int)):
            raise ValueError("seed must be an integer")
        rules = [FaultRule.from_json(raw) for raw in raw_rules]
        backend.faults.add(rules, replace=bool(body.get("replace", False)), seed=seed_value)
        return {"rules": backend.faults.rules()}

    async def clear_faults(request: Request) -> Any:
        backend.faults.clear()
        return {"rules": []}

    async def state_summary(request: Request) -> Any:
        return backend.counts()["records"]

    async def state(request: Request) -> Any:
        return backend.state(_entity(request))

    async def state_record(request: Request) -> Any:
        entity = _entity(request)
        keys = [part for part in str(request.path_params["keys"]).replace("|", "/").split("/") if part]
        record = backend.state_one(entity, keys)
        if record is None:
            raise _NotFound(f"no {entity} with keys {keys}")
        return record

    async def requests(request: Request) -> Any:
        return backend.counts()

    async def reset_requests(request: Request) -> Any:
        backend.reset_counts()
        return backend.counts()

    def period_handler(status: str | None) -> Handler:
        async def handler(request: Request) -> Any:
            body = await _json(request)
            closed_in_ar = body.get("closed_in_ar")
            return backend.set_period_status(
                str(body["period"]),
                status or str(body["status"]),
                closed_in_ar=None if closed_in_ar is None else bool(closed_in_ar),
            )

        return handler

    async def expire_sessions(request: Request) -> Any:
        return {"expired": backend.expire_sessions()}

    async def clock(request: Request) -> Any:
        body = await _json(request)
        seconds = body.get("advance", body.get("seconds", 0))
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("advance must be a non-negative number of seconds")
        backend.advance_clock(float(seconds))
        return {"now": backend.now()}

    async def operations(request: Request) -> Any:
        return [
            {
                "id": op.id,
                "entity": op.entity,
                "action": op.action,
                "state": op.state,
                "polls_left": op.polls_left,
                "error": op.error,
            }
            for op in backend.operations.values()
        ]

    add("GET", "/health", health)
    add("POST", "/reset", reset)
    add("POST", "/seed", seed)
    add("GET", "/config", get_config)
    add("POST", "/config", set_config)
    add("GET", "/faults", get_faults)
    add("POST", "/faults", set_faults)
    add("DELETE", "/faults", clear_faults)
    add("GET", "/state", state_summary)
    add("GET", "/state/{entity}", state)
    add("GET", "/state/{entity}/{keys:path}", state_record)
    for path in ("/requests", "/counts"):
        add("GET", path, requests)
        add("POST", f"{path}/reset", reset_requests)
    add("POST", "/close-period", period_handler("Closed"))
    add("POST", "/open-period", period_handler("Open"))
    add("POST", "/period-status", period_handler(None))
    for path in ("/sessions/expire", "/tokens/expire"):
        add("POST", path, expire_sessions)
    add("POST", "/clock", clock)
    add("GET", "/operations", operations)
    return router
