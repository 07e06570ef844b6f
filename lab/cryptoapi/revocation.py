"""A CryptoAPI-like revocation check.

Semantics (reference §5.1-5.2, docs/openssl-certutil.md §6):

* every certificate of the chain is checked except the root (``CERT_CHAIN_REVOCATION_CHECK_
  CHAIN_EXCLUDE_ROOT``), from the one below the root down to the end entity;
* its CDP URLs are tried in certificate order; the first good CRL wins and later URLs are
  not tried;
* an unreachable URL costs the per-URL time-out (simulated, never slept);
* a CRL whose nextUpdate has passed, or that is not yet valid, or whose signature or issuer
  does not check out, is not "good": the next URL is tried, and when none is good the
  verdict is CRYPT_E_REVOCATION_OFFLINE, never "revoked";
* a good base CRL whose Freshest CRL extension names delta CRLs needs a good delta CRL too
  (reference §4.4): its URLs are tried in that order, first good one wins, at the same cost
  per unreachable URL; with none good the verdict is CRYPT_E_REVOCATION_OFFLINE; every delta
  attempt is recorded (``UrlAttempt.crl == "delta"``) after the base CRL's URLs;
* a good CRL (base or delta) that lists the serial number gives CRYPT_E_REVOKED;
* a certificate with no CDP extension gives CRYPT_E_NO_REVOCATION_CHECK.
"""

from __future__ import annotations

import datetime as dt
import itertools

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from lab import codes
from lab.cryptoapi.retrieval import Retrieval, Retriever, load_crl
from lab.pki.display import subject_label
from lab.pki.urls import cert_cdp_urls
from lab.results.observations import ElementStatus, RevocationResult, UrlAttempt, crl_number


def _attempt(url: str, result: str, detail: str, got: Retrieval,
             number: int | None, crl: str = "base") -> UrlAttempt:
    """A URL whose bytes were retrieved, judged: over LDAP, the detail says from where."""
    source = got.detail if got.protocol == "ldap" else ""
    if got.cached:
        detail = f"{detail}; {got.detail}"
    return UrlAttempt(url, result, None, f"{detail}; {source}" if source else detail,
                      got.simulated_ms, number, source, got.origin, crl=crl)


def _failed(got: Retrieval, detail: str, crl: str = "base") -> UrlAttempt:
    """A URL that gave no bytes (unreachable, timed out, an HTTP error)."""
    return UrlAttempt(got.url, "failed", got.error, detail, got.simulated_ms,
                      origin=got.origin, crl=crl, http_status=got.http_status)


def _issuer_can_sign_crls(issuer: x509.Certificate) -> bool:
    try:
        ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ku.crl_sign


def freshest_urls(crl: x509.CertificateRevocationList) -> tuple[str, ...]:
    """Delta CRL URLs from a base CRL's Freshest CRL extension."""
    try:
        ext = crl.extensions.get_extension_for_class(x509.FreshestCRL).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(n.value for dp in ext for n in (dp.full_name or [])
                 if isinstance(n, x509.UniformResourceIdentifier))


def delta_base(crl: x509.CertificateRevocationList) -> int | None:
    """The base CRL number a delta CRL applies to (None for a base CRL)."""
    try:
        return crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number
    except x509.ExtensionNotFound:
        return None


def judge_crl(data: bytes, cert: x509.Certificate, issuer: x509.Certificate,
              now: dt.datetime) -> tuple[str, str, x509.CertificateRevocationList | None]:
    """Is ``data`` a good CRL for ``cert``? Returns (result, detail, parsed CRL)."""
    crl = load_crl(data)
    if crl is None:
        return "invalid", "the response is not a CRL", None
    if crl.issuer != cert.issuer:
        return "invalid", "the CRL was issued by another CA", crl
    key = issuer.public_key()
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)) or \
            not crl.is_signature_valid(key):
        return "invalid", "the CRL's signature does not verify with the issuer's key", crl
    if not _issuer_can_sign_crls(issuer):
        return "invalid", "the issuer's key usage does not include CRL signing", crl
    if crl.last_update_utc > now:
        when = f"{crl.last_update_utc:%Y-%m-%d %H:%M}"
        return "not_yet_valid", f"thisUpdate {when} is in the future", crl
    next_update = crl.next_update_utc
    if next_update is not None and next_update < now:
        return "expired", f"nextUpdate {next_update:%Y-%m-%d %H:%M} has passed", crl
    return "verified", "a good CRL", crl


async def check_element(
    cert: x509.Certificate, issuer: x509.Certificate, retriever: Retriever, now: dt.datetime,
    crls: list[x509.CertificateRevocationList],
) -> ElementStatus:
    urls = cert_cdp_urls(cert)
    subject = subject_label(cert)
    issuer_name = issuer.subject.rfc4514_string()
    if not urls:
        return ElementStatus(subject, issuer_name, cert.serial_number, "no_check",
                             codes.CRYPT_E_NO_REVOCATION_CHECK, ())
    attempts: list[UrlAttempt] = []
    good: x509.CertificateRevocationList | None = None
    for url in urls:
        if good is not None:
            attempts.append(UrlAttempt(url, "not_tried", None,
                                       "not tried: an earlier URL gave a good CRL", 0))
            continue
        got: Retrieval = await retriever.fetch(url)
        if got.data is None:
            attempts.append(_failed(got, got.detail))
            continue
        result, detail, crl = judge_crl(got.data, cert, issuer, now)
        number = crl_number(crl) if crl is not None else None
        if crl is not None:
            crls.append(crl)
        attempts.append(_attempt(url, result, detail, got, number))
        if result == "verified":
            good = crl
    if good is None:
        return ElementStatus(subject, issuer_name, cert.serial_number, "offline",
                             codes.CRYPT_E_REVOCATION_OFFLINE, tuple(attempts))
    delta_attempts, delta = await _delta(cert, issuer, good, retriever, now, crls)
    if freshest_urls(good) and delta is None:
        # The base CRL announces delta CRLs: without a good one, revocation is unknown.
        return ElementStatus(subject, issuer_name, cert.serial_number, "offline",
                             codes.CRYPT_E_REVOCATION_OFFLINE, tuple(attempts),
                             tuple(delta_attempts), delta_missing=True)
    for crl in (good, delta):
        if crl is not None and \
                crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            return ElementStatus(subject, issuer_name, cert.serial_number, "revoked",
                                 codes.CRYPT_E_REVOKED, tuple(attempts), tuple(delta_attempts))
    return ElementStatus(subject, issuer_name, cert.serial_number, "good", None, tuple(attempts),
                         tuple(delta_attempts))


async def _delta(cert: x509.Certificate, issuer: x509.Certificate,
                 base: x509.CertificateRevocationList, retriever: Retriever, now: dt.datetime,
                 crls: list[x509.CertificateRevocationList],
                 ) -> tuple[list[UrlAttempt], x509.CertificateRevocationList | None]:
    """Fetch the delta CRL a base CRL announces (Freshest CRL), first good one wins."""
    attempts: list[UrlAttempt] = []
    found: x509.CertificateRevocationList | None = None
    base_number = crl_number(base)
    for url in freshest_urls(base):
        if found is not None:
            attempts.append(UrlAttempt(url, "not_tried", None,
                                       "not tried: an earlier URL gave a good delta CRL", 0,
                                       crl="delta"))
            continue
        got = await retriever.fetch(url)
        if got.data is None:
            attempts.append(_failed(got, f"delta CRL: {got.detail}", "delta"))
            continue
        result, detail, crl = judge_crl(got.data, cert, issuer, now)
        if crl is not None and result == "verified":
            base_of = delta_base(crl)
            if base_of is None:
                result, detail = "invalid", "not a delta CRL (no Delta CRL Indicator)"
            elif base_number is not None and base_of > base_number:
                result, detail = "invalid", f"the delta needs base CRL {base_of}"
        if crl is not None:
            crls.append(crl)
        attempts.append(_attempt(url, result, f"delta CRL: {detail}", got,
                                 crl_number(crl) if crl is not None else None, "delta"))
        if result == "verified":
            found = crl
    return attempts, found


async def check_chain(chain: list[x509.Certificate], retriever: Retriever,
                      now: dt.datetime) -> RevocationResult:
    """Check ``chain`` (end entity first, root last): every element but the root, top-down."""
    crls: list[x509.CertificateRevocationList] = []
    elements: list[ElementStatus] = []
    pairs = list(itertools.pairwise(chain))
    for cert, issuer in reversed(pairs):
        elements.append(await check_element(cert, issuer, retriever, now, crls))
    return RevocationResult(checked=True, elements=tuple(elements), crls=tuple(crls))
