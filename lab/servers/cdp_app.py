"""The CDP/AIA web server: each CA's CRL and certificate, at exactly the URLs written into
the certificates, and nothing else (never a key, never a file outside the publications)."""

from __future__ import annotations

from aiohttp import web

from lab.servers.faults import cdp_faults
from lab.servers.routing import ROUTE_OPTIONS, STAGED, application
from lab.servers.state import Staging


async def publication(request: web.Request) -> web.StreamResponse:
    """GET and HEAD: the publication filed under the request's host, port and path."""
    deployment = request[STAGED].deployment
    host = (request.host or "").lower()
    if ":" not in host:
        host += ":80"
    pub = None
    if deployment is not None:
        path = request.rel_url.raw_path
        pub = deployment.http_publications.get((host, path))
        if pub is None and request.transport is not None:
            # Someone typing the lab's own loopback port (curl --resolve ...): the URL's
            # port in the certificate (80) is what the publication is filed under.
            own = request.transport.get_extra_info("sockname")
            name, _, port = host.rpartition(":")
            if own is not None and port == str(own[1]):
                pub = deployment.http_publications.get((f"{name}:80", path))
    if pub is None or pub.kind == "missing":  # check-cert's --url-crl-missing
        return web.Response(status=404, text="Not Found")
    return web.Response(body=pub.data, content_type=pub.content_type)


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
    return application(staging, ROUTES, [cdp_faults(lambda request: request[STAGED].faults)],
                       fallback=any_target)
