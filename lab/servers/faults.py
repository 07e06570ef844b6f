"""The one place where a scenario's ``[faults]`` are applied to what the servers serve.

Each knob is off by default (see :class:`lab.scenario.model.Faults`); the harness logs every
active knob once when the scenario is staged. What the knobs do:

* CRL content (``crl_stale``, ``crl_foreign_signature``, ``crl_huge``, ``crl_body``): the
  published CRL bytes are replaced at staging time (:func:`published`), so the CDP web server
  and the directory serve the same faulty CRL;
* the CDP web server (``cdp_status``, ``cdp_content_type``, ``cdp_delay``): one aiohttp
  middleware in front of its routes (:func:`cdp_faults`);
* the MP (``mp_status``): one middleware in front of the MP's routes, behind its IIS log
  (:func:`mp_refusal`);
* the DC's LDAP service (``ldap_delay``): its search answers carry the delay
  (:mod:`lab.servers.ldap_app`);
* what is reachable (``cdp_down``, ``mp_down``, ``ldap_down``): the harness leaves the hosts
  unmapped (for ``ldap_down`` the DC's name and every ``ldap://host/``), so nothing answers.

A slow server is simulated: the CDP server's answer carries ``X-Lab-Simulated-Delay-Ms``, the
DC's SearchResultDone the lab's delay control
(:data:`lab.protocols.ldapwire.SIMULATED_DELAY_CONTROL`), and the client's retrieval turns
either into simulated time against its 15 s time-out (never slept).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from dataclasses import replace

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from lab.pki.build import BuiltPKI, Publication
from lab.protocols.network import SIMULATED_DELAY_HEADER
from lab.scenario.model import Faults

log = logging.getLogger("ibcm-lab.faults")

DELAY_HEADER = SIMULATED_DELAY_HEADER


def log_active(scenario: str, faults: Faults) -> list[str]:
    """Log each active knob once (at staging) and return them as ``name=value`` strings."""
    active = faults.active()
    for item in active:
        log.warning("scenario %s: fault %s is on", scenario, item)
    return active


# -- CRL content ------------------------------------------------------------------------------

def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(content)) + content


def _children(der: bytes) -> list[bytes]:
    """The encoded children of a DER SEQUENCE (each with its tag and length)."""
    i = 1
    length = der[i]
    i += 1
    if length & 0x80:
        count = length & 0x7F
        i += count
    out = []
    while i < len(der):
        start = i
        i += 1
        length = der[i]
        i += 1
        if length & 0x80:
            count = length & 0x7F
            length = int.from_bytes(der[i:i + count], "big")
            i += count
        i += length
        out.append(der[start:i])
    return out


def _integer(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big")
    return _tlv(0x02, raw)


def with_extra_entries(crl: x509.CertificateRevocationList, key: rsa.RSAPrivateKey,
                       count: int, when: dt.datetime) -> bytes:
    """``crl`` re-signed with ``count`` more revoked serial numbers (a huge CRL).

    Built directly in DER: cryptography's builder copies itself per entry, which makes a
    100,000-entry CRL take many seconds to build.
    """
    tbs = crl.tbs_certlist_bytes
    parts = _children(tbs)
    # TBSCertList: version, signature, issuer, thisUpdate, nextUpdate, [revoked], [0] exts
    head = parts[:5]
    existing = parts[5] if len(parts) > 5 and parts[5][0] == 0x30 else None
    tail = parts[6:] if existing is not None else parts[5:]
    entries = _children(existing) if existing is not None else []
    stamp = _tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode())
    base = 1 << 120  # far from any random lab serial number
    entries += [_tlv(0x30, _integer(base + i) + stamp) for i in range(count)]
    new_tbs = _tlv(0x30, b"".join(head) + _tlv(0x30, b"".join(entries)) + b"".join(tail))
    signature = key.sign(new_tbs, padding.PKCS1v15(), hashes.SHA256())
    algorithm = parts[1]
    return _tlv(0x30, new_tbs + algorithm + _tlv(0x03, b"\x00" + signature))


Signer = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _resign(crl: x509.CertificateRevocationList, signer: Signer,
            *, this_update: dt.datetime | None = None,
            next_update: dt.datetime | None = None) -> bytes:
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(crl.issuer)
               .last_update(this_update or crl.last_update_utc)
               .next_update(next_update or crl.next_update_utc or crl.last_update_utc))
    for ext in crl.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    for revoked in crl:
        builder = builder.add_revoked_certificate(revoked)
    return builder.sign(signer, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def published(pki: BuiltPKI, faults: Faults, now: dt.datetime,
              target: str) -> tuple[Publication, ...]:
    """The publications as the servers will serve them: the CRL faults apply to the CRL of
    ``target``, the CA that issued the MP's certificate (the CRL clients check); then the
    per-URL states of ``crl_at`` (an expired CRL, or none)."""
    return _per_url(_published(pki, faults, now, target), pki, faults, now)


def _per_url(publications: tuple[Publication, ...], pki: BuiltPKI, faults: Faults,
             now: dt.datetime) -> tuple[Publication, ...]:
    states = dict(faults.crl_at)
    if not states:
        return publications
    out: list[Publication] = []
    for p in publications:
        state = states.get(p.url) if p.kind == "crl" else None
        if state == "missing":
            # Kept in place (one entry per publication); the servers answer 404 / no object.
            p = replace(p, kind="missing", data=b"")
        elif state == "expired":
            p = replace(p, data=_resign(x509.load_der_x509_crl(p.data), pki.cas[p.ca].key,
                                        this_update=now - dt.timedelta(days=8),
                                        next_update=now - dt.timedelta(hours=1)))
        out.append(p)
    return tuple(out)


def _published(pki: BuiltPKI, faults: Faults, now: dt.datetime,
               target: str) -> tuple[Publication, ...]:
    if not (faults.crl_stale or faults.crl_foreign_signature or faults.crl_huge
            or faults.crl_body):
        return pki.publications
    faulty: dict[str, bytes] = {}
    for name, ca in pki.cas.items():
        if name != target:
            continue
        crl = ca.crl
        data = ca.crl_der
        if faults.crl_stale:
            data = _resign(crl, ca.key, this_update=now - dt.timedelta(days=8),
                           next_update=now - dt.timedelta(hours=1))
            crl = x509.load_der_x509_crl(data)
        if faults.crl_foreign_signature:
            data = _resign(crl, ec.generate_private_key(ec.SECP256R1()))
            crl = x509.load_der_x509_crl(data)
        if faults.crl_huge:
            data = with_extra_entries(crl, ca.key, faults.crl_huge, now - dt.timedelta(days=1))
        if faults.crl_body == "truncated":
            data = data[: max(1, len(data) // 2)]
        elif faults.crl_body == "garbage":
            data = os.urandom(len(data))
        faulty[name] = data
    return tuple(replace(p, data=faulty[p.ca])
                 if p.ca in faulty and p.kind == "crl" and p.data == pki.cas[p.ca].crl_der
                 else p for p in pki.publications)


# -- the CDP web server -------------------------------------------------------------------------

def cdp_faults(faults_of: Callable[[web.Request], Faults | None]) -> Middleware:
    """The CDP web server's middleware for its status, content type and delay knobs."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        faults = faults_of(request)
        if faults is None or not (faults.cdp_status or faults.cdp_content_type
                                  or faults.cdp_delay):
            return await handler(request)
        if faults.cdp_status:
            response: web.StreamResponse = web.Response(
                status=faults.cdp_status, text=f"{faults.cdp_status} (lab fault cdp_status)")
        else:
            response = await handler(request)
            if faults.cdp_content_type and isinstance(response, web.Response) and \
                    response.status == 200:
                response.content_type = faults.cdp_content_type
        if faults.cdp_delay:
            response.headers[DELAY_HEADER] = str(int(faults.cdp_delay.total_seconds() * 1000))
        return response

    return middleware


# -- the MP ---------------------------------------------------------------------------------------

def mp_refusal(faults: Faults | None) -> int | None:
    """The status every MP request gets (``mp_status``), or None."""
    return faults.mp_status if faults is not None else None
