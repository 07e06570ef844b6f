"""Chain building and the SSL policy checks CryptoAPI applies to a server certificate.

The result lists every problem found, each as a CryptoAPI error with the WinHTTP
``SECURE_FAILURE`` flag it raises (reference §11.5), so a report can show all of them the way
WinHTTP's callback does (one ``... is set`` line per bit).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from lab import codes
from lab.codes import WinHttpFlag
from lab.names import host_matches
from lab.pki.display import subject_label
from lab.results.observations import ChainProblem, RevocationResult

USAGE_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "Server Authentication (1.3.6.1.5.5.7.3.1)",
    ExtendedKeyUsageOID.CLIENT_AUTH: "Client Authentication (1.3.6.1.5.5.7.3.2)",
}


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def build_chain(
    leaf: x509.Certificate,
    anchors: Sequence[x509.Certificate],
    pool: Sequence[x509.Certificate] = (),
) -> tuple[list[x509.Certificate], bool]:
    """Chain ``leaf`` to a trust anchor through ``pool``; returns (chain, trusted).

    An untrusted chain still contains every issuer that could be found, so the report can
    name the root that is not trusted.
    """
    chain = [leaf]
    current = leaf
    for _ in range(8):
        if _self_signed(current):
            trusted = any(a == current for a in anchors)
            return chain, trusted
        anchor = next((a for a in anchors if a.subject == current.issuer
                       and _signed_by(current, a)), None)
        if anchor is not None:
            chain.append(anchor)
            return chain, True
        candidate = next((c for c in pool if c.subject == current.issuer
                          and _signed_by(current, c)), None)
        if candidate is None:
            return chain, False
        chain.append(candidate)
        current = candidate
    return chain, False


def name_matches(host: str, cert: x509.Certificate) -> bool:
    """Does ``host`` match the certificate's SAN DNS names (or its CN when there is no SAN)?"""
    try:
        names = cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
                 if isinstance(a.value, str)]
    return host_in_names(host, names)


def host_in_names(host: str, names: Sequence[str]) -> bool:
    """Is ``host`` one of ``names`` (case and a trailing dot aside), or covered by a ``*.``
    wildcard one label deep (:func:`lab.names.host_matches`, reference §3.6)?"""
    return any(host_matches(host, name) for name in names)


def dns_names(cert: x509.Certificate) -> list[str]:
    try:
        return list(cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        return []


def has_usage(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> bool:
    try:
        ekus = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage in ekus or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in ekus


def policy_problems(
    chain: list[x509.Certificate], trusted: bool, *, now: dt.datetime,
    host: str | None, usage: x509.ObjectIdentifier,
) -> list[ChainProblem]:
    """Trust, validity, usage and (for servers) name problems of a built chain."""
    problems: list[ChainProblem] = []
    leaf = chain[0]
    if not trusted:
        top = chain[-1]
        if _self_signed(top):
            problems.append(ChainProblem(
                codes.CERT_E_UNTRUSTEDROOT, WinHttpFlag.INVALID_CA, "trust",
                f"the chain ends in {top.subject.rfc4514_string()}, which is not in the "
                "machine's Trusted Root Certification Authorities store"))
        else:
            problems.append(ChainProblem(
                codes.CERT_E_CHAINING, WinHttpFlag.INVALID_CA, "trust",
                f"the issuer {top.issuer.rfc4514_string()} could not be found"))
    for cert in chain:
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            problems.append(ChainProblem(
                codes.CERT_E_EXPIRED, WinHttpFlag.CERT_DATE_INVALID, "date",
                f"{subject_label(cert)} is valid from "
                f"{cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"))
            break
    if not has_usage(leaf, usage):
        problems.append(ChainProblem(
            codes.CERT_E_WRONG_USAGE, WinHttpFlag.CERT_WRONG_USAGE, "usage",
            f"the certificate's Enhanced Key Usage does not include "
            f"{USAGE_NAMES.get(usage, usage.dotted_string)}"))
    if host is not None and not name_matches(host, leaf):
        names = ", ".join(dns_names(leaf)) or leaf.subject.rfc4514_string()
        problems.append(ChainProblem(
            codes.CERT_E_CN_NO_MATCH, WinHttpFlag.CERT_CN_INVALID, "name",
            f"the client asked for {host}, the certificate names {names}"))
    return problems


def revocation_problems(result: RevocationResult) -> list[ChainProblem]:
    problems: list[ChainProblem] = []
    for element in result.elements:
        if element.status == "revoked":
            problems.append(ChainProblem(codes.CRYPT_E_REVOKED, WinHttpFlag.CERT_REVOKED,
                                         "revoked", f"{element.subject} is on its issuer's CRL"))
        elif element.status in ("offline", "no_check"):
            assert element.error is not None
            if element.delta_missing:
                detail = "the base CRL announces a delta CRL, and no delta URL gave a good one"
            elif element.status == "offline":
                detail = "no CDP URL gave a good CRL"
            else:
                detail = "the certificate has no CRL distribution point"
            problems.append(ChainProblem(element.error, WinHttpFlag.CERT_REV_FAILED, "offline",
                                         f"{element.subject}: {detail}",
                                         openssl_blind=element.delta_missing))
    return problems
