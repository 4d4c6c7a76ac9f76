"""Connections closed without an answer: what both sandboxes' ``drop`` and ``commit_then_drop``
faults do.

A handler (or the Zuora gateway) answers with :func:`dropped`, a response marked with
:data:`DROP_HEADER`; :class:`ConnectionDropper`, the outermost ASGI middleware, swallows it and
aborts the TCP connection (uvicorn's transport, reached through the server's ``receive``
callable). Under Starlette's TestClient, which has no socket, it raises :class:`ConnectionDropped`
instead. A contract checker skips a marked response: it is never sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.responses import Response

from sandbox.contract import ASGIApp, Message, Receive, Scope, Send

DROP_HEADER = b"x-sandbox-drop-connection"


class ConnectionDropped(Exception):
    """Raised in-process (TestClient) where a real server would drop the connection."""


def dropped() -> Response:
    """A response ``ConnectionDropper`` turns into a connection closed without an answer."""
    return Response(status_code=200, headers={DROP_HEADER.decode(): "1"})


class ConnectionDropper:
    """Outermost ASGI middleware: turns a response marked with ``DROP_HEADER`` into a dropped
    connection; ``on_drop`` (if given) is called for each one."""

    def __init__(self, app: ASGIApp, *, on_drop: Callable[[], None] | None = None) -> None:
        self.app = app
        self.on_drop = on_drop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        dropping = False

        async def guarded_send(message: Message) -> None:
            nonlocal dropping
            if message["type"] == "http.response.start":
                dropping = any(name.lower() == DROP_HEADER for name, _ in message.get("headers", []))
            if not dropping:
                await send(message)

        await self.app(scope, receive, guarded_send)
        if dropping:
            if self.on_drop is not None:
                self.on_drop()
            await _abort(receive)


async def _abort(receive: Receive) -> None:
    """Close the client's TCP connection without a byte of response."""
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        raise ConnectionDropped("the sandbox dropped the connection without a response")
    transport.abort()
    # Let uvicorn see the connection is lost, so it neither logs nor tries to send a 500.
    for _ in range(100):
        if getattr(cycle, "disconnected", True):
            return
        await asyncio.sleep(0)
