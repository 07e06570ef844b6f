"""What the MP's and the CDP server's aiohttp applications share: the staged scenario each
request is answered from, and the ways a request reaches a handler as it does on IIS."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from lab.servers.state import Staged, Staging

STAGED = web.RequestKey("staged", Staged)
"""The staged scenario a request is answered from, read once when the request arrives."""


async def ignore_expect(request: web.Request) -> None:
    """No ``100 Continue`` and no 417 for an ``Expect`` header: the request goes on to its
    handler (aiohttp's applications answer ``Expect`` themselves by default)."""
    return None


ROUTE_OPTIONS: Mapping[str, Any] = {"expect_handler": ignore_expect}
"""Every route of the lab's web servers takes these."""


def application(staging: Staging, routes: list[web.RouteDef],
                middlewares: list[Middleware], *, fallback: Handler) -> web.Application:
    """An application answering ``routes`` from ``staging.current``. ``fallback`` answers
    the asterisk-form target (``OPTIONS *``), which no route path can match."""

    @web.middleware
    async def snapshot(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[STAGED] = staging.current
        return await handler(request)

    @web.middleware
    async def every_target(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is not None:  # no route matched
            return await fallback(request)
        return await handler(request)

    app = web.Application(middlewares=[snapshot, *middlewares, every_target])
    app.add_routes(routes)
    return app
