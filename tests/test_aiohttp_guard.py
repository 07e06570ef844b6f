"""The aiohttp internals lab/servers/iis.py relies on, checked on the installed aiohttp.

The lab's web servers accept any HTTP method token (``CCM_POST``), as IIS does, by giving each
connection aiohttp's pure-Python parser: :mod:`lab.servers.iis` is the one module that
reaches into aiohttp for it, and pyproject.toml pins aiohttp to the versions it was checked
on. When one of these tests fails, aiohttp changed under the lab: fix lab/servers/iis.py
before moving the pin.
"""

from __future__ import annotations

import asyncio
import inspect
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web, web_protocol
from aiohttp.http_parser import HttpRequestParser, HttpRequestParserPy
from packaging.requirements import Requirement
from packaging.version import Version

from lab.protocols.network import LOOPBACK
from lab.servers.harness import RunningLab
from lab.servers.iis import AnyMethodRunner, AnyMethodServer

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
FIX = "aiohttp changed under lab/servers/iis.py: update that module, then the pin in pyproject.toml"


def _pin() -> Requirement:
    dependencies = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["dependencies"]
    return next(Requirement(d) for d in dependencies if Requirement(d).name == "aiohttp")


def test_the_installed_aiohttp_is_inside_the_pinned_range() -> None:
    pin = _pin()
    assert pin.specifier, "pyproject.toml must pin aiohttp to a range (lab/servers/iis.py)"
    assert any(s.operator == "<" for s in pin.specifier), \
        "pyproject.toml must give aiohttp an upper bound (lab/servers/iis.py)"
    assert Version(aiohttp.__version__) in pin.specifier, (
        f"aiohttp {aiohttp.__version__} is installed, outside {pin}: lab/servers/iis.py was "
        "checked only inside that range")


def test_the_runner_hook_is_there() -> None:
    hook = getattr(web.AppRunner, "_make_server", None)
    assert hook is not None and inspect.iscoroutinefunction(hook), \
        f"web.AppRunner._make_server is gone or no longer a coroutine: {FIX}"
    assert list(inspect.signature(hook).parameters) == ["self"], \
        f"web.AppRunner._make_server takes other arguments now: {FIX}"


async def _echo(request: web.BaseRequest) -> web.StreamResponse:
    return web.Response(text=request.method)


async def test_the_server_keeps_its_loop_and_handler_arguments() -> None:
    loop = asyncio.get_running_loop()
    server = web.Server(_echo, loop=loop, keepalive_timeout=15.0)
    assert getattr(server, "_loop", None) is loop, f"web.Server._loop is gone: {FIX}"
    assert getattr(server, "_kwargs", None) == {"keepalive_timeout": 15.0}, \
        f"web.Server._kwargs no longer holds the RequestHandler's arguments: {FIX}"
    assert server.request_handler is _echo and callable(server.request_factory), \
        f"web.Server.request_handler or request_factory is gone: {FIX}"


def test_the_request_handler_and_the_python_parser_take_what_iis_gives() -> None:
    handler = inspect.signature(web_protocol.RequestHandler.__init__).parameters
    for name in ("manager", "loop", "max_line_size", "max_headers", "max_field_size"):
        assert name in handler, f"RequestHandler.__init__ has no {name!r}: {FIX}"
    assert handler["loop"].kind is inspect.Parameter.KEYWORD_ONLY, \
        f"RequestHandler.__init__'s loop is no longer keyword-only: {FIX}"
    parser = list(inspect.signature(HttpRequestParserPy.__init__).parameters)
    assert parser[:4] == ["self", "protocol", "loop", "limit"], \
        f"HttpRequestParserPy(protocol, loop, limit, ...) changed: {parser}: {FIX}"
    for name in ("max_line_size", "max_headers", "max_field_size", "payload_exception",
                 "auto_decompress"):
        assert name in parser, f"HttpRequestParserPy.__init__ has no {name!r}: {FIX}"
    assert "self._parser" in inspect.getsource(web_protocol.RequestHandler.data_received), \
        f"RequestHandler.data_received no longer feeds self._parser: {FIX}"


@pytest.fixture
async def any_method() -> AsyncIterator[tuple[AnyMethodRunner, int]]:
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", _echo)
    runner = AnyMethodRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        yield runner, runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def _send(port: int, head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


CCM_POST = b"CCM_POST /ccm_system/request HTTP/1.1\r\nHost: mp\r\nConnection: close\r\n\r\n"


async def test_connections_of_the_runner_take_any_method(
        any_method: tuple[AnyMethodRunner, int]) -> None:
    runner, port = any_method
    assert isinstance(runner.server, AnyMethodServer), \
        f"AnyMethodRunner no longer serves through AnyMethodServer: {FIX}"
    connection = runner.server()
    assert isinstance(getattr(connection, "_parser", None), HttpRequestParserPy), \
        f"the connection's parser is not the pure-Python one: {FIX}"
    reply = await _send(port, CCM_POST)
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n") and reply.endswith(b"\r\n\r\nCCM_POST"), \
        f"CCM_POST through lab/servers/iis.py got {reply[:200]!r}: {FIX}"


@pytest.mark.skipif(HttpRequestParser is HttpRequestParserPy,
                    reason="aiohttp runs without its C parser here")
async def test_a_plain_runner_still_refuses_ccm_post() -> None:
    """Why lab/servers/iis.py exists. If this fails, aiohttp's own parser takes any method
    token now and the module may be retired."""
    app = web.Application()
    app.router.add_route("*", "/{path:.*}", _echo)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        reply = await _send(runner.addresses[0][1], CCM_POST)
    finally:
        await runner.cleanup()
    assert reply.split(b"\r\n", 1)[0].endswith(b"400 Bad Request")


async def test_the_lab_servers_answer_ccm_post(lab: RunningLab) -> None:
    """End to end through the harness, nothing staged: the MP's IIS answers 503 and the CDP
    server 405 (a parser that refused the method would answer 400)."""
    for port, status in ((lab.ports.mp_http, b"503 Service Unavailable"),
                         (lab.ports.cdp, b"405 Method Not Allowed")):
        reply = await _send(port, CCM_POST)
        assert reply.startswith(b"HTTP/1.1 " + status + b"\r\n"), \
            f"CCM_POST to the lab's servers got {reply[:200]!r}: {FIX}"
