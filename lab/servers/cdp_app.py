"""The CDP/AIA web server: each CA's CRL and certificate, at exactly the URLs written into
the certificates, and nothing else (never a key, never a file outside the publications)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from lab.servers.faults import with_cdp_faults
from lab.servers.state import CdpState

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


def make_cdp_handler(state: CdpState) -> Handler:
    """The CDP/AIA web server's request handler (one for every CDP host of the lab)."""

    async def serve(request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="Method Not Allowed",
                                headers={"Allow": "GET, HEAD"})
        deployment = state.deployment
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
        if pub is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=pub.data, content_type=pub.content_type)

    return with_cdp_faults(
        lambda: state.deployment.faults if state.deployment is not None else None, serve)
