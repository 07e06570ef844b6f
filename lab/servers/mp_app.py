"""The mock management point: IIS in front of getauth.dll and ccmisapi.dll.

Two aiohttp applications, one route table, serve the staged scenario
(:class:`~lab.servers.state.Staged`); their middlewares are IIS in front of the routes:

* the IIS log: every request answered while a scenario is staged is recorded
  (:class:`~lab.servers.deployment.MpRecord`, the W3C log's fields); with nothing staged
  every request gets 503;
* the ``mp_status`` fault (:func:`lab.servers.faults.mp_refusal`);
* the HTTPS site (mutual TLS): IIS checks the client certificate first and refuses it with
  the substatus a real MP gives (403.7 no certificate, 403.16 untrusted, 403.17 expired,
  403.13 revoked *or its CRL could not be retrieved*; reference §8.3 and §10);
* the HTTP site: on an HTTPS-only MP every request gets 403.4 "SSL required";
* every answer says ``Server: Microsoft-IIS/10.0``, as IIS does, not aiohttp's name.

Behind IIS it answers ``GET /SMS_MP/.sms_aut?MPLIST`` and ``?MPCERT`` (reference §8.2) and
``CCM_POST /ccm_system/request``; IIS matches paths in any case. The message bodies are
*lab-shaped* XML, not the real multipart/zlib wire format; their element names are
documented in docs/scenario-format.md.
"""

from __future__ import annotations

import asyncio
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from xml.sax.saxutils import quoteattr

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler, Middleware
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from lab import codes
from lab.cryptoapi.chain import build_chain, has_usage
from lab.cryptoapi.revocation import check_chain
from lab.pki.display import issued_to as cert_issued_to
from lab.pki.display import subject_label
from lab.protocols.network import read_bounded
from lab.results.logline import LogLine, thread_id
from lab.results.records import MpRecord
from lab.servers.faults import mp_refusal
from lab.servers.routing import ROUTE_OPTIONS, STAGED, application
from lab.servers.state import CERT_VERDICTS_KEPT, ClientCertVerdict, Staged, Staging

MP_VERSION = "9128"
"""Product build reported in MPLIST (9128 = ConfigMgr 2403, reference §8.2)."""

MAX_BODY = 1024 * 1024
STEP_HEADER = "X-Lab-Step"

ENDPOINT_REPLIES = {
    "MP_ClientRegistration": "registration",
    "MP_LocationManager": "location",
    "MP_PolicyManager": "policy",
    "MP_HinvEndpoint": "inventory",
}


def _win32(code: codes.Code | None) -> int:
    return code.hresult if code is not None else 0


def _iis_error(status: codes.IisStatus) -> web.Response:
    body = (f"<html><head><title>{status.status} - Forbidden: Access is denied.</title></head>"
            f"<body><h1>{status.status} - Forbidden: Access is denied.</h1>"
            f"<h2>{status.text}</h2></body></html>")
    return web.Response(status=status.status, reason="Forbidden", text=body,
                        content_type="text/html")


async def _check_client_cert(staged: Staged, request: web.Request) -> ClientCertVerdict:
    """IIS's client-certificate checks, in its order, with the lab clock."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return ClientCertVerdict(403, 7, 0, "the request carried no client certificate")
    cached = staged.cert_cache.get(der)
    if (cached is not None and cached.until is not None and staged.deployment is not None
            and staged.deployment.clock.now() >= cached.until):
        # A CRL was published or expired since (or the certificate expired): judge again.
        del staged.cert_cache[der]
        cached = None
    if cached is None and der in staged.cert_checks:
        # Another request is checking this certificate right now: share its result (IIS
        # retrieves a CRL once, the others wait for it and pay no retrieval time).
        cached = await asyncio.shield(staged.cert_checks[der])
    if cached is not None:
        # IIS keeps the CRLs it retrieved: a second request costs no retrieval time.
        return ClientCertVerdict(cached.status, cached.substatus, cached.win32_status,
                                 cached.detail, crl_problem=cached.crl_problem)
    pending: asyncio.Future[ClientCertVerdict] = asyncio.get_running_loop().create_future()
    staged.cert_checks[der] = pending
    try:
        verdict = await _judge_client_cert(staged, x509.load_der_x509_certificate(der))
    except BaseException as e:
        pending.set_exception(e)
        pending.exception()  # retrieved: no "never retrieved" warning
        raise
    finally:
        staged.cert_checks.pop(der, None)
    deployment = staged.deployment
    if deployment is not None:
        now = deployment.clock.now()
        ends = [t for t in (deployment.next_change(now),
                            x509.load_der_x509_certificate(der).not_valid_after_utc)
                if t is not None and t > now]
        verdict = replace(verdict, until=min(ends) if ends else None)
    if len(staged.cert_cache) >= CERT_VERDICTS_KEPT:  # the oldest verdict goes first
        staged.cert_cache.pop(next(iter(staged.cert_cache)), None)
    staged.cert_cache[der] = verdict
    pending.set_result(verdict)
    return verdict


async def _judge_client_cert(staged: Staged, cert: x509.Certificate) -> ClientCertVerdict:
    deployment = staged.deployment
    assert deployment is not None and staged.retriever is not None
    now = deployment.clock.now()
    subject = subject_label(cert)
    pki = deployment.pki
    anchors = pki.roots(deployment.scenario.site.trusted_roots)
    chain, trusted = build_chain(cert, anchors, pki.intermediates())
    if not trusted:
        return ClientCertVerdict(
            403, 16, codes.CERT_E_UNTRUSTEDROOT.hresult,
            f"{subject} does not chain to a root in the site's trusted root list")
    if not has_usage(cert, ExtendedKeyUsageOID.CLIENT_AUTH):
        return ClientCertVerdict(403, 16, codes.CERT_E_WRONG_USAGE.hresult,
                                 f"{subject} is not valid for Client Authentication")
    if any(not (c.not_valid_before_utc <= now <= c.not_valid_after_utc) for c in chain):
        return ClientCertVerdict(403, 17, codes.CERT_E_EXPIRED.hresult,
                                 f"{subject} is outside its validity period")
    revocation = await check_chain(chain, staged.retriever, now)
    waited = revocation.simulated_ms
    deployment.clock.advance(waited)
    if revocation.status == "revoked":
        return ClientCertVerdict(403, 13, codes.CRYPT_E_REVOKED.hresult,
                                 f"{subject} is on its issuer's CRL", waited, crl_problem="revoked")
    if revocation.status in ("offline", "no_check"):
        failed = "; ".join(f"{u.url}: {u.detail}" for u in revocation.urls)
        unusable = [u.result for u in revocation.urls
                    if u.result in ("expired", "not_yet_valid", "invalid")]
        if unusable and not any(u.result == "failed" for u in revocation.urls):
            # Every URL answered: the CRL came but cannot be used (stale, early, bad).
            return ClientCertVerdict(
                403, 13, _win32(revocation.error),
                f"IIS retrieved the CRL for {subject} but cannot use it ({failed}); IIS "
                "reports this as 403.13 'revoked' although nothing is revoked", waited,
                crl_problem=unusable[0])
        return ClientCertVerdict(
            403, 13, _win32(revocation.error),
            f"IIS could not retrieve a CRL for {subject} ({failed}); IIS reports this as "
            "403.13 'revoked' although nothing is revoked", waited,
            crl_problem="unreachable")
    return ClientCertVerdict(200, 0, 0, f"{subject} accepted", waited)


def _mplist(staged: Staged) -> str:
    deployment = staged.deployment
    assert deployment is not None
    site = deployment.scenario.site
    fqdn = deployment.scenario.mp.intranet_fqdn
    ssl_state = codes.https_state(site.https_only, site.check_crl)
    return (f"<MPList><MP Name={quoteattr(fqdn.upper())} FQDN={quoteattr(fqdn)}>"
            f"<Version>{MP_VERSION}</Version><Capabilities SchemaVersion=\"1.0\">"
            f"<Property Name=\"SSLState\" Value=\"{ssl_state}\"/></Capabilities></MP></MPList>")


def _mpcert(staged: Staged) -> str:
    deployment = staged.deployment
    assert deployment is not None and deployment.pki.mp is not None
    mp = deployment.pki.mp
    return (f"<MPCERT><!-- lab-shaped: the real element names are not documented -->"
            f"<Certificate Thumbprint=\"{mp.thumbprint}\">{mp.der.hex().upper()}"
            f"</Certificate></MPCERT>")


def _client_id(request: web.Request) -> str:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    seed = (x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex() if der
            else request.remote or "anonymous")
    return f"GUID:{str(uuid.uuid5(uuid.NAMESPACE_URL, 'ibcm-lab:' + seed)).upper()}"


def _log_registration(staged: Staged, request: web.Request, root: ET.Element) -> None:
    """MP_RegistrationManager.log lines, shaped like the verified samples (reference §6.2 J)."""
    deployment = staged.deployment
    assert deployment is not None

    def log(text: str, severity: int = 1) -> None:
        staged.log.append(LogLine("MP_RegistrationManager.log", "MP_RegistrationManager", text,
                                 severity, deployment.clock.now(),
                                 thread_id("MP", "MP_RegistrationManager")))

    host = (root.findtext("SourceHost") or "").strip() or (request.remote or "?")
    log(f"Processing Registration request from Client '{host}'")
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if der:
        cert = x509.load_der_x509_certificate(der)
        issued_to = cert_issued_to(cert)
        thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()
        log(f"Begin validation of Certificate [Thumbprint {thumbprint}] issued to "
            f"'{issued_to}'")


def _ccm_reply(staged: Staged, request: web.Request, body: bytes) -> web.Response:
    deployment = staged.deployment
    assert deployment is not None
    if b"<!DOCTYPE" in body.upper():
        # The lab's messages never carry a DTD; refusing one up front keeps entity
        # expansion (a "billion laughs") from costing anything.
        return web.Response(status=400, text="malformed message (a DTD is not accepted)")
    try:
        root = ET.fromstring(body)
    except (ET.ParseError, LookupError, ValueError, UnicodeError):
        # not XML, or an encoding declaration Python cannot (or will not) decode
        return web.Response(status=400, text="malformed message")
    endpoint = (root.findtext("TargetEndpoint") or "").strip()
    kind = ENDPOINT_REPLIES.get(endpoint)
    if root.tag != "Msg" or kind is None:
        return web.Response(status=400, text="unknown target endpoint")
    if kind == "registration":
        _log_registration(staged, request, root)
        requested = (root.findtext("ClientID") or "").strip()
        client_id = requested if requested.startswith("GUID:") else _client_id(request)
        reply = (f"<ClientRegistrationReply ClientID={quoteattr(client_id)} "
                 f"ApprovalStatus=\"1\"/>")
    elif kind == "location":
        scenario = deployment.scenario
        site = scenario.site
        internet = scenario.mp.internet_fqdn
        mps = f"<MP FQDN={quoteattr(scenario.mp.intranet_fqdn)} Internet=\"0\"/>"
        if internet:
            mps += f"<MP FQDN={quoteattr(internet)} Internet=\"1\"/>"
        reply = (f"<LocationReply><Site Code=\"{site.code}\" "
                 f"SSLState=\"{codes.https_state(site.https_only, site.check_crl)}\"/>"
                 f"<ManagementPoints>{mps}</ManagementPoints></LocationReply>")
    elif kind == "policy":
        reply = "<PolicyReply Assignments=\"0\"/>"
    else:
        reply = "<InventoryReply Accepted=\"1\"/>"
    return web.Response(text=reply, content_type="text/xml")


# -- IIS: the log and the checks in front of the routes ---------------------------------------

@dataclass
class _Logged:
    """What IIS logs for one request besides its method, URL and headers."""

    status: int = 200
    substatus: int = 0
    win32: int = 0
    detail: str = "served"
    waited: int = 0
    crl_problem: str = ""


LOGGED = web.RequestKey("iis_logged", _Logged)


def _refuse(request: web.Request, response: web.Response, detail: str, *,
            substatus: int = 0, win32: int = 0) -> web.Response:
    """``response``, and why IIS gave it, for the log."""
    logged = request[LOGGED]
    logged.substatus, logged.win32, logged.detail = substatus, win32, detail
    return response


def _iis_log(*, secure: bool) -> Middleware:
    @web.middleware
    async def iis_log(request: web.Request, handler: Handler) -> web.StreamResponse:
        staged = request[STAGED]
        deployment = staged.deployment
        if deployment is None:
            return web.Response(status=503, text="Service Unavailable")
        logged = request[LOGGED] = _Logged()
        try:
            response = await handler(request)
            logged.status = response.status
            return response
        finally:
            staged.records.append(MpRecord(
                time=deployment.clock.now(), step=request.headers.get(STEP_HEADER),
                method=request.method, uri_stem=request.path,
                uri_query=request.query_string or "-",
                port=443 if secure else 80,
                client_ip=request.remote or "-",
                user_agent=request.headers.get("User-Agent", "-"),
                host=request.host, status=logged.status, substatus=logged.substatus,
                win32_status=logged.win32, detail=logged.detail,
                time_taken_ms=logged.waited, crl_problem=logged.crl_problem))

    return iis_log


@web.middleware
async def mp_status_fault(request: web.Request, handler: Handler) -> web.StreamResponse:
    refusal = mp_refusal(request[STAGED].faults)
    if refusal is None:
        return await handler(request)
    reason = "Internal Server Error" if refusal == 500 else None
    return _refuse(request, web.Response(status=refusal, reason=reason,
                                         text=f"{refusal} (lab fault mp_status)"),
                   f"the mp_status fault: every request gets {refusal}")


@web.middleware
async def ssl_required(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The HTTP site: on an HTTPS-only MP, IIS answers 403.4 (SSL required)."""
    deployment = request[STAGED].deployment
    assert deployment is not None
    if deployment.scenario.site.https_only:
        return _refuse(request, _iis_error(codes.IIS_SSL_REQUIRED),
                       "the MP is HTTPS only; IIS requires SSL", substatus=4)
    return await handler(request)


@web.middleware
async def client_certificate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The HTTPS site: IIS judges the client certificate before anything else."""
    verdict = await _check_client_cert(request[STAGED], request)
    request[LOGGED].waited = verdict.simulated_ms
    request[LOGGED].crl_problem = verdict.crl_problem
    if verdict.status != 200:
        return _refuse(request, _iis_error(
            codes.IIS_STATUSES[f"{verdict.status}.{verdict.substatus}"]),
            verdict.detail, substatus=verdict.substatus, win32=verdict.win32_status)
    return await handler(request)


# -- the routes ---------------------------------------------------------------------------------

def iis_path(path: str) -> str:
    """An aiohttp route path matching ``path`` as IIS does: in any case, and with its
    slashes also percent-encoded (``%2F``, which aiohttp's router leaves encoded)."""
    parts = (re.escape(part) for part in path.strip("/").split("/"))
    return "/{iis_path:(?i:" + "(?:/|%2f)".join(parts) + ")}"


async def sms_aut(request: web.Request) -> web.StreamResponse:
    """``GET /SMS_MP/.sms_aut?MPLIST`` and ``?MPCERT`` (and HEAD)."""
    staged = request[STAGED]
    assert staged.deployment is not None
    query = request.query_string.upper()
    if query == "MPLIST":
        return web.Response(text=_mplist(staged), content_type="text/xml")
    if query == "MPCERT" and staged.deployment.pki.mp is not None:
        return web.Response(text=_mpcert(staged), content_type="text/xml")
    return _refuse(request, web.Response(status=400, text="Bad Request"),
                   f"unknown .sms_aut query {query!r}")


async def ccm_request(request: web.Request) -> web.StreamResponse:
    """``CCM_POST /ccm_system/request``: one lab-shaped message, at most :data:`MAX_BODY`."""
    if (request.content_length or 0) > MAX_BODY:
        return _refuse(request, web.Response(status=413, text="Request Entity Too Large"),
                       "message too large (Content-Length)")
    try:
        body = await read_bounded(request.content, MAX_BODY + 1)
    except (HttpProcessingError, web.RequestPayloadError, ValueError) as e:
        return _refuse(request, web.Response(status=400, text="Bad Request"),
                       f"the body could not be read: {e}")
    if len(body) > MAX_BODY:
        return _refuse(request, web.Response(status=413, text="Request Entity Too Large"),
                       "message too large")
    response = _ccm_reply(request[STAGED], request, body)
    if response.status != 200:
        return _refuse(request, response, response.text or "bad message")
    return response


async def not_ccm_post(request: web.Request) -> web.StreamResponse:
    return _refuse(request, web.Response(status=405, text="Method Not Allowed"),
                   f"{request.method} is not CCM_POST")


async def not_found(request: web.Request) -> web.StreamResponse:
    return _refuse(request, web.Response(status=404, text="Not Found"),
                   "no such path on the MP", win32=2)


SMS_AUT = iis_path("/SMS_MP/.sms_aut")
CCM_REQUEST = iis_path("/ccm_system/request")
ROUTES = [
    web.get(SMS_AUT, sms_aut, **ROUTE_OPTIONS),  # and HEAD
    web.route("*", SMS_AUT, not_found, **ROUTE_OPTIONS),
    web.route("CCM_POST", CCM_REQUEST, ccm_request, **ROUTE_OPTIONS),
    web.route("*", CCM_REQUEST, not_ccm_post, **ROUTE_OPTIONS),
    web.route("*", "/{path:.*}", not_found, **ROUTE_OPTIONS),
]


SERVER_HEADER = "Microsoft-IIS/10.0"
"""The ``Server`` header of every MP answer: IIS 10 (Windows Server 2016 and later) as the
lab models it (docs/scenario-format.md, "The MP's side"), not aiohttp's own."""


async def _iis_server_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER_HEADER


def make_mp_app(staging: Staging, *, secure: bool) -> web.Application:
    """The MP's HTTPS (``secure=True``) or HTTP site."""
    site = client_certificate if secure else ssl_required
    app = application(staging, ROUTES, [_iis_log(secure=secure), mp_status_fault, site],
                      fallback=not_found)
    # A signal, not a middleware: it also reaches the answers aiohttp makes itself (an
    # exception in a handler) once a request has been routed.
    app.on_response_prepare.append(_iis_server_header)
    return app
