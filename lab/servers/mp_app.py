"""The mock management point: IIS in front of getauth.dll and ccmisapi.dll.

Two applications share one :class:`~lab.servers.state.MpState`:

* the HTTPS site (mutual TLS): IIS checks the client certificate first and refuses it with
  the substatus a real MP gives (403.7 no certificate, 403.16 untrusted, 403.17 expired,
  403.13 revoked *or its CRL could not be retrieved*; fidelity §8.3 and §10);
* the HTTP site: on an HTTPS-only MP every request gets 403.4 "SSL required".

Behind IIS it answers ``GET /SMS_MP/.sms_aut?MPLIST`` and ``?MPCERT`` (fidelity §8.2) and
``CCM_POST /ccm_system/request``. The message bodies are *lab-shaped* XML, not the real
multipart/zlib wire format; their element names are documented in docs/scenario-format.md.
"""

from __future__ import annotations

import asyncio
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from xml.sax.saxutils import quoteattr

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from lab import codes
from lab.cryptoapi.chain import build_chain, has_usage
from lab.cryptoapi.revocation import check_chain
from lab.protocols.network import read_bounded
from lab.results.logline import LogLine, thread_id
from lab.results.records import MpRecord
from lab.servers.faults import mp_refusal
from lab.servers.state import ClientCertVerdict, MpState

MP_VERSION = "9128"
"""Product build reported in MPLIST (9128 = ConfigMgr 2403, fidelity §8.2)."""

MAX_BODY = 1024 * 1024
STEP_HEADER = "X-Lab-Step"

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

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


async def _check_client_cert(state: MpState, request: web.BaseRequest) -> ClientCertVerdict:
    """IIS's client-certificate checks, in its order, with the lab clock."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return ClientCertVerdict(403, 7, 0, "the request carried no client certificate")
    cached = state.cert_cache.get(der)
    if cached is None and der in state.cert_checks:
        # Another request is checking this certificate right now: share its result (IIS
        # retrieves a CRL once, the others wait for it and pay no retrieval time).
        cached = await asyncio.shield(state.cert_checks[der])
    if cached is not None:
        # IIS keeps the CRLs it retrieved: a second request costs no retrieval time.
        return ClientCertVerdict(cached.status, cached.substatus, cached.win32_status,
                                 cached.detail)
    pending: asyncio.Future[ClientCertVerdict] = asyncio.get_running_loop().create_future()
    state.cert_checks[der] = pending
    try:
        verdict = await _judge_client_cert(state, x509.load_der_x509_certificate(der))
    except BaseException as e:
        pending.set_exception(e)
        pending.exception()  # retrieved: no "never retrieved" warning
        raise
    finally:
        state.cert_checks.pop(der, None)
    state.cert_cache[der] = verdict
    pending.set_result(verdict)
    return verdict


async def _judge_client_cert(state: MpState, cert: x509.Certificate) -> ClientCertVerdict:
    deployment = state.deployment
    assert deployment is not None and state.retriever is not None
    now = deployment.clock.now()
    subject = cert.subject.rfc4514_string()
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
    revocation = await check_chain(chain, state.retriever, now)
    waited = revocation.simulated_ms
    deployment.clock.advance(waited)
    if revocation.status == "revoked":
        return ClientCertVerdict(403, 13, codes.CRYPT_E_REVOKED.hresult,
                                 f"{subject} is on its issuer's CRL", waited)
    if revocation.status in ("offline", "no_check"):
        failed = "; ".join(f"{u.url}: {u.detail}" for u in revocation.urls)
        return ClientCertVerdict(
            403, 13, _win32(revocation.error),
            f"IIS could not retrieve a CRL for {subject} ({failed}); IIS reports this as "
            "403.13 'revoked' although nothing is revoked", waited)
    return ClientCertVerdict(200, 0, 0, f"{subject} accepted", waited)


def _mplist(state: MpState) -> str:
    deployment = state.deployment
    assert deployment is not None
    site = deployment.scenario.site
    fqdn = deployment.scenario.mp.intranet_fqdn
    ssl_state = codes.https_state(site.https_only, site.check_crl)
    return (f"<MPList><MP Name={quoteattr(fqdn.upper())} FQDN={quoteattr(fqdn)}>"
            f"<Version>{MP_VERSION}</Version><Capabilities SchemaVersion=\"1.0\">"
            f"<Property Name=\"SSLState\" Value=\"{ssl_state}\"/></Capabilities></MP></MPList>")


def _mpcert(state: MpState) -> str:
    deployment = state.deployment
    assert deployment is not None and deployment.pki.mp is not None
    mp = deployment.pki.mp
    return (f"<MPCERT><!-- lab-shaped: the real element names are not documented -->"
            f"<Certificate Thumbprint=\"{mp.thumbprint}\">{mp.der.hex().upper()}"
            f"</Certificate></MPCERT>")


def _client_id(request: web.BaseRequest) -> str:
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    seed = (x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex() if der
            else request.remote or "anonymous")
    return f"GUID:{str(uuid.uuid5(uuid.NAMESPACE_URL, 'ibcm-lab:' + seed)).upper()}"


def _log_registration(state: MpState, request: web.BaseRequest, root: ET.Element) -> None:
    """MP_RegistrationManager.log lines, in the shapes of the verified samples (fidelity J)."""
    deployment = state.deployment
    assert deployment is not None

    def log(text: str, severity: int = 1) -> None:
        state.log.append(LogLine("MP_RegistrationManager.log", "MP_RegistrationManager", text,
                                 severity, deployment.clock.now(),
                                 thread_id("MP", "MP_RegistrationManager")))

    host = (root.findtext("SourceHost") or "").strip() or (request.remote or "?")
    log(f"Processing Registration request from Client '{host}'")
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if der:
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        issued_to = str(names[0].value) if names else cert.subject.rfc4514_string()
        thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()
        log(f"Begin validation of Certificate [Thumbprint {thumbprint}] issued to "
            f"'{issued_to}'")


def _ccm_reply(state: MpState, request: web.BaseRequest, body: bytes) -> web.Response:
    deployment = state.deployment
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
        _log_registration(state, request, root)
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


def make_mp_handler(state: MpState, *, secure: bool) -> Handler:
    """The MP's request handler for its HTTPS (``secure=True``) or HTTP site."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        deployment = state.deployment
        status, substatus, win32, detail, waited = 200, 0, 0, "served", 0
        try:
            if deployment is None:
                status, detail = 503, "no scenario is staged"
                return web.Response(status=503, text="Service Unavailable")
            site = deployment.scenario.site
            refusal = mp_refusal(deployment.faults)
            if refusal is not None:
                status, detail = refusal, f"the mp_status fault: every request gets {refusal}"
                reason = "Internal Server Error" if refusal == 500 else None
                return web.Response(status=refusal, reason=reason,
                                    text=f"{refusal} (lab fault mp_status)")
            if not secure and site.https_only:
                status, substatus, detail = 403, 4, "the MP is HTTPS only; IIS requires SSL"
                return _iis_error(codes.IIS_SSL_REQUIRED)
            if secure:
                verdict = await _check_client_cert(state, request)
                waited = verdict.simulated_ms
                if verdict.status != 200:
                    status, substatus = verdict.status, verdict.substatus
                    win32, detail = verdict.win32_status, verdict.detail
                    return _iis_error(codes.IIS_STATUSES[f"{status}.{substatus}"])
            path = request.path.lower()
            query = request.query_string.upper()
            if path == "/sms_mp/.sms_aut" and request.method in ("GET", "HEAD"):
                if query == "MPLIST":
                    return web.Response(text=_mplist(state), content_type="text/xml")
                if query == "MPCERT" and deployment.pki.mp is not None:
                    return web.Response(text=_mpcert(state), content_type="text/xml")
                status, detail = 400, f"unknown .sms_aut query {query!r}"
                return web.Response(status=400, text="Bad Request")
            if path == "/ccm_system/request":
                if request.method != "CCM_POST":
                    status, detail = 405, f"{request.method} is not CCM_POST"
                    return web.Response(status=405, text="Method Not Allowed")
                if (request.content_length or 0) > MAX_BODY:
                    status, detail = 413, "message too large (Content-Length)"
                    return web.Response(status=413, text="Request Entity Too Large")
                try:
                    body = await read_bounded(request.content, MAX_BODY + 1)
                except (HttpProcessingError, RequestPayloadError, ValueError) as e:
                    status, detail = 400, f"the body could not be read: {e}"
                    return web.Response(status=400, text="Bad Request")
                if len(body) > MAX_BODY:
                    status, detail = 413, "message too large"
                    return web.Response(status=413, text="Request Entity Too Large")
                response = _ccm_reply(state, request, body)
                status = response.status
                if status != 200:
                    detail = response.text or "bad message"
                return response
            status, substatus, win32, detail = 404, 0, 2, "no such path on the MP"
            return web.Response(status=404, text="Not Found")
        finally:
            if deployment is not None:
                state.records.append(MpRecord(
                    time=deployment.clock.now(), step=request.headers.get(STEP_HEADER),
                    method=request.method, uri_stem=request.path,
                    uri_query=request.query_string or "-",
                    port=443 if secure else 80,
                    client_ip=request.remote or "-",
                    user_agent=request.headers.get("User-Agent", "-"),
                    host=request.host, status=status, substatus=substatus,
                    win32_status=win32, detail=detail, time_taken_ms=waited))

    return handle
