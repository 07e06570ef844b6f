"""The CDP/AIA web server: each CA's CRL and certificate, at exactly the URLs written into
the certificates, and nothing else (never a key, never a file outside the publications).

It plays IIS on the CRL web server (``http://<CA host>/CertEnroll/``, or the web server a
CA publishes to): request filtering comes first, as in IIS. With ``allowDoubleEscaping``
false (IIS's default) a URL whose path has a ``+``, as the delta CRL's ``<CaName>+.crl`` has,
or that unescapes differently twice, is refused with 404.11 (reference §8.4); each request is
recorded with its status and substatus for the web server's W3C log.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import web
from aiohttp.typedefs import Handler

from lab.results.records import MpRecord
from lab.servers.deployment import Deployment
from lab.servers.faults import cdp_faults
from lab.servers.routing import ROUTE_OPTIONS, STAGED, application
from lab.servers.state import Staging

URL_DOUBLE_ESCAPED = 11
"""IIS's substatus for a request refused as double escaped (404.11, reference §8.4)."""


@dataclass
class _Logged:
    substatus: int = 0
    detail: str = ""


LOGGED = web.RequestKey("cdp_logged", _Logged)


def double_escaped(raw_path: str) -> bool:
    """Whether IIS's request filtering (``allowDoubleEscaping=false``) refuses ``raw_path``:
    a ``+`` anywhere (IIS treats it as non-canonical, escaped as ``%2B`` too), or a path that
    unescapes to something else a second time (``%2541`` -> ``%41`` -> ``A``)."""
    once = unquote(raw_path)
    return "+" in once or unquote(once) != once


def _host_key(request: web.Request) -> str:
    host = (request.host or "").lower()
    return host if ":" in host else host + ":80"


def _own_port_key(request: web.Request, host: str) -> str | None:
    """Someone typing the lab's own loopback port (``curl --resolve ...``): the URL's port in
    the certificate (80) is what the publication is filed under."""
    if request.transport is None:
        return None
    own = request.transport.get_extra_info("sockname")
    name, _, port = host.rpartition(":")
    return f"{name}:80" if own is not None and port == str(own[1]) else None


def _allows_double_escaping(deployment: Deployment, host: str, request: web.Request) -> bool:
    setting = deployment.double_escaping.get(host)
    if setting is None:
        own = _own_port_key(request, host)
        setting = deployment.double_escaping.get(own) if own is not None else None
    return True if setting is None else setting


async def publication(request: web.Request) -> web.StreamResponse:
    """GET and HEAD: the publication filed under the request's host, port and path."""
    deployment = request[STAGED].deployment
    host = _host_key(request)
    pub = None
    if deployment is not None:
        path = request.rel_url.raw_path
        if double_escaped(path) and not _allows_double_escaping(deployment, host, request):
            logged = request.get(LOGGED)
            if logged is not None:
                logged.substatus = URL_DOUBLE_ESCAPED
                logged.detail = ("request filtering refused a double-escaped URL (a '+' in "
                                 "the path; allowDoubleEscaping is false)")
            return web.Response(status=404, text="Not Found")
        pub = deployment.http_publications.get((host, path))
        if pub is None or pub.kind == "missing":  # check-cert's --url-crl-missing
            own = _own_port_key(request, host)
            if own is not None:
                pub = deployment.http_publications.get((own, path))
    if pub is None or pub.kind == "missing":  # check-cert's --url-crl-missing
        return web.Response(status=404, text="Not Found")
    return web.Response(body=pub.data, content_type=pub.content_type)


@web.middleware
async def iis_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every request the web server answers (the W3C log's fields)."""
    staged = request[STAGED]
    deployment = staged.deployment
    logged = request[LOGGED] = _Logged()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        if deployment is not None:
            staged.cdp_records.append(MpRecord(
                time=deployment.clock.now(), step=None, method=request.method,
                uri_stem=request.path, uri_query=request.query_string or "-",
                port=80, client_ip=request.remote or "-",
                user_agent=request.headers.get("User-Agent", "-"), host=request.host,
                status=status, substatus=logged.substatus, win32_status=0,
                detail=logged.detail))


async def method_not_allowed(request: web.Request) -> web.StreamResponse:
    return web.Response(status=405, text="Method Not Allowed", headers={"Allow": "GET, HEAD"})


async def any_target(request: web.Request) -> web.StreamResponse:
    """The asterisk-form target (``OPTIONS *``): answered like any other path."""
    if request.method in ("GET", "HEAD"):
        return await publication(request)
    return await method_not_allowed(request)


ROUTES = [
    web.get("/{path:.*}", publication, **ROUTE_OPTIONS),  # and HEAD
    web.route("*", "/{path:.*}", method_not_allowed, **ROUTE_OPTIONS),
]


def make_cdp_app(staging: Staging) -> web.Application:
    """The CDP/AIA web server (one for every CDP host of the lab)."""
    return application(staging, ROUTES,
                       [iis_log, cdp_faults(lambda request: request[STAGED].faults)],
                       fallback=any_target)
