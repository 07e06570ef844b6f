"""The one module that reaches into aiohttp's internals: an application runner whose
connections accept every HTTP method token, as IIS does.

ConfigMgr clients talk ``CCM_POST`` (and ``BITS_POST``, ``PROPFIND``) to the MP. aiohttp's
fast C parser (llhttp) only knows the registered methods and answers 400 to any other, so the
lab's web servers parse their connections with aiohttp's pure-Python parser, which accepts any
RFC 9110 method token. Everything above the parser (the application, its routes and
middlewares) is aiohttp's public API.

What this relies on, pinned in pyproject.toml and checked by tests/test_aiohttp_guard.py:

* ``web.AppRunner._make_server()``: the hook that builds the runner's ``web.Server``;
* ``web.Server._loop`` and ``web.Server._kwargs``: what ``Server.__call__`` builds each
  connection's ``RequestHandler`` with;
* ``RequestHandler._parser``: the parser ``data_received`` feeds (set by ``BaseProtocol``);
* ``aiohttp.http_parser.HttpRequestParserPy`` and its keyword arguments, and
  ``web_protocol.MAX_MSG_QUEUE_SIZE`` when it exists.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_parser import HttpRequestParserPy
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

_PARSER_KWARGS = set(inspect.signature(HttpRequestParserPy.__init__).parameters)


class _AnyMethodRequestHandler(RequestHandler):
    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop,
                 **kwargs: Any) -> None:
        super().__init__(manager, loop=loop, **kwargs)
        options: dict[str, Any] = {
            "max_line_size": self.max_line_size,
            "max_headers": self.max_headers,
            "max_field_size": self.max_field_size,
            "payload_exception": RequestPayloadError,
            "auto_decompress": True,
        }
        queue = getattr(web_protocol, "MAX_MSG_QUEUE_SIZE", None)
        if queue is not None and "max_msg_queue_size" in _PARSER_KWARGS:
            options["max_msg_queue_size"] = queue
        self._parser = HttpRequestParserPy(
            self, loop, kwargs.get("read_bufsize", 2**16),
            **{k: v for k, v in options.items() if k in _PARSER_KWARGS})


class AnyMethodServer(web.Server):
    """``web.Server`` whose connections accept any method token (``CCM_POST``)."""

    def __call__(self) -> RequestHandler:
        return _AnyMethodRequestHandler(self, loop=self._loop, **self._kwargs)


class AnyMethodRunner(web.AppRunner):
    """``web.AppRunner`` for an application served by an :class:`AnyMethodServer`."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        return AnyMethodServer(made.request_handler, request_factory=made.request_factory,
                               loop=made._loop, **made._kwargs)
