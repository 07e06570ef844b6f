"""``ibcm-lab check-cert``: lint an MP certificate, then replay it in the lab.

Two halves:

* **Lint.** The certificate is checked against ConfigMgr's PKI requirements for a site system
  that runs IIS (fidelity §3: Server Authentication EKU, the intranet and internet FQDNs in the
  SAN, SHA-2, key size, validity) and its CDP/AIA URLs are read per zone with the lab's own
  network rules (fidelity §4, seed §4: an ``ldap:///`` CDP works only for domain-joined machines
  inside). Every finding has a severity, a code, a one-line reason, the fix and its source.
  :data:`CATALOGUE` lists every code.

* **Replay.** The certificate's profile (subject CN, SAN DNS names, EKUs or their absence, CDP
  URLs in order, AIA URLs, validity relative to now) is cloned under a lab CA of the same kind
  (an AD CS enterprise CA when the URLs or the issuer name show AD, a public CA when the CRL is
  on a public web host; a two-tier PKI when the chain holds the issuing CA), the lab publishes
  the CRL at exactly the certificate's URLs, and four client situations (domain-joined on the
  intranet, workgroup on the intranet, on the VPN, installed inside then on the internet) run
  install, register, site refresh and policy against the lab's MP, with the site's CRL check
  on and off: eight cells in one lab run. ccmsetup carries ``/NoCRLCheck`` (the seed's line):
  the bootstrap never checks the CRL, the site's setting decides from the first site refresh.

Input: PEM (one or more certificates; the first that is not a CA is the subject, the others
are its chain), DER, PKCS#7 and PKCS#12 (password from ``--password``, ``--ask-password`` or
``$IBCM_LAB_PFX_PASSWORD``). Files over :data:`MAX_FILE_BYTES` are refused unread. Every
unreadable input is a :class:`~lab.errors.UsageError` naming the file and what was expected
(exit 2). Exit codes: 0 nothing at error level and every replay cell ok, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import datetime as dt
import getpass
import json
import os
import re
import sys
import textwrap
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.clock import Clock, system_now
from lab.configmgr.ccmsetup import parse_ccmsetup
from lab.cryptoapi.chain import host_in_names
from lab.errors import UsageError
from lab.pki.build import RENEW_BEFORE, build_pki
from lab.pki.cache import PKICache
from lab.pki.urls import cert_aia_urls, cert_cdp_urls, parse_url
from lab.protocols.network import Machine, Network
from lab.report.jsonout import step_dict
from lab.results.verdicts import StepResult
from lab.scenario.model import (
    EKU,
    CAKind,
    CASpec,
    CertSpec,
    ClientSpec,
    MPSpec,
    NetworkSpec,
    Scenario,
    ScenarioInfo,
    Site,
    StepSpec,
)

MAX_FILE_BYTES = 1024 * 1024
"""A certificate is a few KB, a PKCS#12 file with a chain a few tens: anything over 1 MiB is
refused before it is read."""
PASSWORD_ENV = "IBCM_LAB_PFX_PASSWORD"
EXPECTED = "a certificate: PEM, DER, PKCS#7 (.p7b) or PKCS#12 (.pfx)"
WIDTH = 100
SITE_CODE = "P01"
CLIENT_CA = "Lab-Clients-CA"
FALLBACK_DOMAIN = "corp.lab.local"

_DNS_NAME = re.compile(
    r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_CA_NAME_BAD = re.compile(r"[^A-Za-z0-9 ._()-]+")
_PKCS12_DATA_OID = bytes.fromhex("06092a864886f70d0107")  # pkcs7-data / signedData prefix

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}

# --------------------------------------------------------------------------------------------
# The findings catalogue
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    code: str
    severity: str
    """The usual severity; a few codes are raised at another level depending on the context
    (noted in ``title``)."""
    title: str
    source: str
    """Where the requirement comes from (fidelity reference section, seed section)."""


CATALOGUE: dict[str, Rule] = {r.code: r for r in (
    Rule("no-server-auth", ERROR, "the EKU extension lacks Server Authentication",
         "fidelity §3.1 (EKU must contain Server Authentication 1.3.6.1.5.5.7.3.1); "
         "replay: CERT_E_WRONG_USAGE, §11 item 5"),
    Rule("no-eku", WARNING, "no EKU extension (Windows accepts any purpose)",
         "fidelity §3.1"),
    Rule("any-purpose-eku", WARNING, "the EKU is anyExtendedKeyUsage, not Server "
         "Authentication", "fidelity §3.1"),
    Rule("intranet-fqdn-not-in-san", ERROR, "the MP's intranet FQDN is not in the certificate",
         "fidelity §3.1; seed §2; replay: CERT_E_CN_NO_MATCH"),
    Rule("internet-fqdn-not-in-san", ERROR, "the MP's internet FQDN is not in the SAN",
         "fidelity §3.1; seed §2; replay: CERT_E_CN_NO_MATCH"),
    Rule("no-host-name", ERROR, "no DNS name in the SAN, and no CN to fall back on",
         "fidelity §3.1; replay: CERT_E_CN_NO_MATCH"),
    Rule("single-san", WARNING, "one DNS name only, and no --internet-fqdn to say whether the "
         "MP takes internet clients (error when the SAN lacks a given internet FQDN)",
         "seed §2; fidelity §3.1, §3.3b"),
    Rule("no-san", WARNING, "no Subject Alternative Name: names are matched against the CN",
         "fidelity §3.1 (in practice both names go in the SAN), §3.3b"),
    Rule("fqdn-from-san", INFO, "the MP FQDNs were taken from the SAN (no --intranet-fqdn / "
         "--internet-fqdn)", "check-cert's assumption"),
    Rule("signature-not-sha2", ERROR, "signed with SHA-1 or MD5", "fidelity §3.3 (SHA-2; "
         "\"Windows doesn't trust certificates signed with SHA-1\"), §3.1"),
    Rule("signature-unusual", WARNING, "a signature algorithm Windows TLS may not accept",
         "fidelity §3.3"),
    Rule("key-too-small", WARNING, "RSA key under 2048 bits (error under 1024)",
         "fidelity §3.1 (no ConfigMgr limit: consult PKI/IIS documentation), §3.2/§12 item 5 "
         "(2048 bits); the 2048-bit floor and the 1024-bit block are outside the reference"),
    Rule("key-not-rsa", INFO, "an ECDSA or other non-RSA key (the replay uses RSA 2048)",
         "fidelity §3.1 (CNG/KSP v3 keys), §3.3b"),
    Rule("key-usage", WARNING, "Key Usage allows neither digitalSignature nor "
         "keyEncipherment", "RFC 5280 §4.2.1.3; Web Server template (fidelity §3.1); "
         "not replayed"),
    Rule("expired", ERROR, "the certificate has expired", "fidelity §5.3, §11 item 5 "
         "(CERT_E_EXPIRED, flag CERT_DATE_INVALID)"),
    Rule("not-yet-valid", ERROR, "the certificate is not valid yet", "fidelity §5.3, §11 item 5 "
         "(CERT_E_EXPIRED, flag CERT_DATE_INVALID)"),
    Rule("expires-soon", WARNING, "fewer than 30 days of validity left",
         "check-cert (the lab reissues its own certificates 30 days before expiry)"),
    Rule("subject-is-ca", ERROR, "the file holds CA certificates only",
         "fidelity §3.1 (a Web Server certificate for the MP)"),
    Rule("chain-mismatch", WARNING, "the chain given does not hold this certificate's issuer",
         "check-cert"),
    Rule("pfx-no-private-key", WARNING, "the PKCS#12 file holds no private key",
         "fidelity §3.1 (Personal store of the computer, bound to IIS's HTTPS binding)"),
    Rule("pfx-key-mismatch", ERROR, "the PKCS#12 private key does not belong to the "
         "certificate", "fidelity §3.1"),
    Rule("no-cdp", WARNING, "no CRL distribution point", "fidelity §2.4, §5.3 "
         "(CRYPT_E_NO_REVOCATION_CHECK when a client checks)"),
    Rule("cdp-ldap-only", ERROR, "every CDP URL is ldap:///: only domain-joined machines inside "
         "can check revocation (warning when no internet FQDN is known)",
         "seed §4; fidelity §2.4, §4.1-4.3"),
    Rule("cdp-not-reachable-from-internet", ERROR, "no CDP URL is reachable from the internet",
         "seed §4; fidelity §2.4, §4.1-4.3"),
    Rule("cdp-not-reachable-for-workgroup", WARNING, "no CDP URL is reachable by a workgroup "
         "machine on the intranet", "seed §4; fidelity §4.3"),
    Rule("cdp-retrieval-delay", INFO, "unreachable CDP URLs come before a reachable one: up to "
         "15 s each", "fidelity §5.1, §5.2"),
    Rule("cdp-https", WARNING, "an https:// CDP URL", "docs/scenario-format.md (CRLs are "
         "published over plain HTTP)"),
    Rule("cdp-file", INFO, "a file:// CDP URL", "fidelity §4.1 (AD CS does not put file:// in "
         "certificates by default)"),
    Rule("aia-not-reachable-from-internet", INFO, "no AIA URL is reachable from the internet",
         "fidelity §4.1, §5.2"),
    Rule("aia-ocsp", INFO, "an OCSP responder in the AIA (the lab models CRLs only)",
         "fidelity §5 (CRL retrieval only)"),
)}


@dataclass(frozen=True)
class Finding:
    severity: str
    code: str
    reason: str
    fix: str

    @property
    def source(self) -> str:
        return CATALOGUE[self.code].source

    def as_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "code": self.code, "reason": self.reason,
                "fix": self.fix, "source": self.source}


# --------------------------------------------------------------------------------------------
# Reading PEM, DER, PKCS#7 and PKCS#12
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedCert:
    """The certificate under test, its chain and where they came from."""

    file: str
    form: str
    """``PEM``, ``DER``, ``PKCS#7`` or ``PKCS#12``."""
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    """The other certificates of the file and of ``--chain``, in the order read."""
    has_key: bool | None = None
    """PKCS#12 only: whether the file holds a private key (None for other forms)."""
    key_matches: bool | None = None
    """PKCS#12 only: whether that key belongs to the certificate."""


def _read_bytes(path: str) -> bytes:
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file (expected {EXPECTED})") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not p.is_file():
        raise UsageError(f"{path}: not a regular file (expected {EXPECTED})")
    too_big = (f"{path}: the file is too large for a certificate ({{size}} bytes; the limit is "
               f"{MAX_FILE_BYTES // 1024} KiB, a certificate is a few KB): expected {EXPECTED}")
    if st.st_size > MAX_FILE_BYTES:
        raise UsageError(too_big.format(size=st.st_size))
    try:
        with p.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise UsageError(f"{path}: cannot read it ({e.strerror or e})") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(too_big.format(size=f"over {MAX_FILE_BYTES}"))
    if not data.strip():
        raise UsageError(f"{path}: the file is empty (expected {EXPECTED})")
    return data


def _der_length(data: bytes) -> int | None:
    """The total length the outer DER element announces (header included), or None."""
    if len(data) < 2 or data[0] != 0x30:
        return None
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if count == 0 or count > 4 or len(data) < 2 + count:
        return None
    return 2 + count + int.from_bytes(data[2:2 + count], "big")


def _looks_like_pkcs12(data: bytes) -> bool:
    """PFX ::= SEQUENCE { version INTEGER (3), authSafe ContentInfo (pkcs7 data), ... }."""
    if len(data) < 2 or data[0] != 0x30:
        return False
    header = 2 + (data[1] & 0x7F if data[1] >= 0x80 else 0)
    return (data[header:header + 3] == b"\x02\x01\x03"
            and _PKCS12_DATA_OID in data[header:header + 40])


def _touch(cert: x509.Certificate, path: str) -> x509.Certificate:
    """Parse the extensions now, so a malformed one is an input error, not a crash later."""
    try:
        _ = cert.extensions
        _ = cert.subject, cert.issuer
    except ValueError as e:
        raise UsageError(f"{path}: the certificate's extensions or names cannot be parsed "
                         f"({e})") from None
    return cert


def _pem_blocks(data: bytes) -> list[tuple[str, bytes]]:
    """Complete ``-----BEGIN X-----`` ... ``-----END X-----`` blocks, found in linear time
    (a regular expression with a back-reference goes quadratic on unterminated blocks)."""
    ends: dict[bytes, list[int]] = {}
    pos = data.find(b"-----END ")
    while pos >= 0:
        close = data.find(b"-----", pos + 9)
        if close < 0:
            break
        ends.setdefault(data[pos + 9:close], []).append(pos)
        pos = data.find(b"-----END ", close + 5)
    blocks: list[tuple[str, bytes]] = []
    pos = data.find(b"-----BEGIN ")
    while pos >= 0:
        close = data.find(b"-----", pos + 11)
        if close < 0:
            break
        label = data[pos + 11:close]
        candidates = ends.get(label, [])
        at = bisect.bisect_left(candidates, close)
        if re.fullmatch(rb"[A-Z0-9 #]+", label) and at < len(candidates):
            stop = candidates[at] + len(b"-----END ") + len(label) + 5
            blocks.append((label.decode("ascii"), data[pos:stop]))
            pos = data.find(b"-----BEGIN ", stop)
        else:
            pos = data.find(b"-----BEGIN ", close + 5)
    return blocks


def _from_pem(data: bytes, path: str) -> list[x509.Certificate]:
    certs: list[x509.Certificate] = []
    labels: list[str] = []
    for i, (label, block) in enumerate(_pem_blocks(data), start=1):
        labels.append(label)
        try:
            if label in ("CERTIFICATE", "X509 CERTIFICATE"):
                certs.append(x509.load_pem_x509_certificate(
                    block.replace(b"X509 CERTIFICATE", b"CERTIFICATE")))
            elif label == "PKCS7":
                certs.extend(pkcs7.load_pem_pkcs7_certificates(block))
        except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion) as e:
            raise UsageError(f"{path}: PEM block {i} ({label}) is not a valid "
                             f"{'certificate' if label != 'PKCS7' else 'PKCS#7 bundle'} "
                             f"({_short(e)})") from None
    if not certs:
        found = ", ".join(dict.fromkeys(labels)) or "no complete PEM block"
        raise UsageError(f"{path}: no certificate in this PEM file (found: {found}); "
                         f"expected {EXPECTED}")
    return certs


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:160]


MAX_PKCS12_ITERATIONS = 10_000_000


def _der_element(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of content, end) of the DER element at ``at``; ValueError if cut short."""
    if at + 2 > len(data):
        raise ValueError("truncated")
    tag, length, start = data[at], data[at + 1], at + 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or start + count > len(data):
            raise ValueError("bad length")
        length, start = int.from_bytes(data[start:start + count], "big"), start + count
    if start + length > len(data):
        raise ValueError("truncated")
    return tag, start, start + length


def _pkcs12_mac_iterations(data: bytes) -> int | None:
    """The iteration count of a PFX's macData (None when absent or unreadable)."""
    try:
        _, start, end = _der_element(data, 0)
        children = []
        while start < end:
            tag, c_start, c_end = _der_element(data, start)
            children.append((tag, c_start, c_end))
            start = c_end
        if len(children) < 3:
            return None
        _, m_start, m_end = children[2]  # macData ::= SEQUENCE {mac, macSalt, iterations}
        parts = []
        while m_start < m_end:
            tag, c_start, c_end = _der_element(data, m_start)
            parts.append((tag, c_start, c_end))
            m_start = c_end
        if len(parts) >= 3 and parts[2][0] == 0x02:
            return int.from_bytes(data[parts[2][1]:parts[2][2]], "big")
    except ValueError:
        return None
    return None


def _from_pkcs12(data: bytes, path: str, password: bytes | None
                 ) -> tuple[list[x509.Certificate], Any, x509.Certificate | None]:
    iterations = _pkcs12_mac_iterations(data)
    if iterations is not None and iterations > MAX_PKCS12_ITERATIONS:
        raise UsageError(f"{path}: the PKCS#12 file asks for {iterations} MAC iterations "
                         f"(more than {MAX_PKCS12_ITERATIONS}): refused, it would take "
                         "minutes to open; re-export it with a normal iteration count")
    attempts: list[bytes | None] = [password] if password is not None else [None, b""]
    for attempt in attempts:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, attempt)
        except (ValueError, TypeError, x509.InvalidVersion):
            continue
        except UnsupportedAlgorithm as e:
            raise UsageError(f"{path}: the PKCS#12 file uses an algorithm this system's "
                             f"OpenSSL cannot read ({_short(e)}); re-export it with AES-256 "
                             "encryption") from None
        certs = ([cert] if cert is not None else []) + list(extra)
        if not certs:
            raise UsageError(f"{path}: the PKCS#12 file holds no certificate "
                             f"(expected {EXPECTED})")
        return certs, key, cert
    if password is None:
        raise UsageError(f"{path}: the PKCS#12 file is password-protected: give the password "
                         f"with --password, the environment variable {PASSWORD_ENV} or "
                         "--ask-password")
    raise UsageError(f"{path}: wrong password or not a PKCS#12 file")


def _binary_certs(data: bytes, path: str, password: bytes | None
                  ) -> tuple[str, list[x509.Certificate], Any, x509.Certificate | None]:
    announced = _der_length(data)
    if announced is not None and announced > len(data):
        raise UsageError(f"{path}: truncated: the DER structure announces {announced} bytes, "
                         f"the file has {len(data)} (expected {EXPECTED})")
    if _looks_like_pkcs12(data):
        certs, key, main = _from_pkcs12(data, path, password)
        return "PKCS#12", certs, key, main
    try:
        return "DER", [x509.load_der_x509_certificate(data)], None, None
    except x509.InvalidVersion as e:
        raise UsageError(f"{path}: not a valid certificate ({_short(e)})") from None
    except ValueError:
        pass
    try:
        return "PKCS#7", list(pkcs7.load_der_pkcs7_certificates(data)), None, None
    except (ValueError, UnsupportedAlgorithm, x509.InvalidVersion):
        pass
    if announced is not None and announced < len(data):
        raise UsageError(f"{path}: not a certificate: {len(data) - announced} bytes follow "
                         f"the DER structure (expected {EXPECTED})")
    if announced is not None:
        raise UsageError(f"{path}: a DER structure, but not a certificate, PKCS#7 or PKCS#12 "
                         f"file (expected {EXPECTED})")
    text = data[:64]
    if all(32 <= b < 127 or b in (9, 10, 13) for b in text):
        raise UsageError(f"{path}: text without a '-----BEGIN CERTIFICATE-----' block "
                         f"(expected {EXPECTED})")
    raise UsageError(f"{path}: not a certificate (expected {EXPECTED})")


def _public_key(cert: x509.Certificate) -> Any:
    """The certificate's public key, or None when ``cryptography`` cannot read it."""
    try:
        return cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def read_certificates(path: str, password: bytes | None = None
                      ) -> tuple[str, list[x509.Certificate], Any, x509.Certificate | None]:
    """``(form, certificates, private key or None, the key's certificate or None)``."""
    data = _read_bytes(path)
    with warnings.catch_warnings():
        # A non-positive serial number is parsed with a deprecation warning: not the user's
        # concern here, and a warning must not break the one-line error contract.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        if b"-----BEGIN" in data:
            certs = _from_pem(data, path)
            result: tuple[str, list[x509.Certificate], Any, x509.Certificate | None] = (
                "PEM", certs, None, None)
        else:
            result = _binary_certs(data, path, password)
    for cert in result[1]:
        _touch(cert, path)
    return result


def _public_der(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def load(path: str, *, password: bytes | None = None, chain: str | None = None) -> LoadedCert:
    """Read the certificate under test (and ``chain``) the way ``check-cert`` does."""
    form, certs, key, key_cert = read_certificates(path, password)
    subject = key_cert or next((c for c in certs if not _is_ca(c)), certs[0])
    others = [c for c in certs if c is not subject]
    if chain is not None:
        others += read_certificates(chain, password)[1]
    seen: set[bytes] = {subject.fingerprint(hashes.SHA256())}
    unique: list[x509.Certificate] = []
    for c in others:
        fp = c.fingerprint(hashes.SHA256())
        if fp not in seen:
            seen.add(fp)
            unique.append(c)
    has_key = key_matches = None
    if form == "PKCS#12":
        has_key = key is not None
        if key is not None:
            try:
                key_matches = (_public_der(key.public_key())
                               == _public_der(subject.public_key()))
            except (ValueError, UnsupportedAlgorithm):
                key_matches = None
    return LoadedCert(file=path, form=form, cert=subject, chain=tuple(unique),
                      has_key=has_key, key_matches=key_matches)


# --------------------------------------------------------------------------------------------
# What the certificate says
# --------------------------------------------------------------------------------------------


def san_dns(cert: x509.Certificate) -> list[str] | None:
    """SAN DNS names, or None when there is no SAN extension."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    return [str(n) for n in ext.get_values_for_type(x509.DNSName)]


def subject_cn(cert: x509.Certificate) -> str | None:
    for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        if isinstance(attr.value, str) and attr.value:
            return attr.value
    return None


def _ekus(cert: x509.Certificate) -> list[x509.ObjectIdentifier] | None:
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


EKU_NAMES = {ExtendedKeyUsageOID.SERVER_AUTH: "Server Authentication",
             ExtendedKeyUsageOID.CLIENT_AUTH: "Client Authentication",
             ExtendedKeyUsageOID.CODE_SIGNING: "Code Signing",
             ExtendedKeyUsageOID.EMAIL_PROTECTION: "Secure Email",
             ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "Any Purpose"}


def _eku_text(ekus: list[x509.ObjectIdentifier] | None) -> str:
    if ekus is None:
        return "(no EKU extension: any purpose)"
    return ", ".join(EKU_NAMES.get(o, o.dotted_string) for o in ekus) or "(empty)"


def _ocsp_urls(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return []
    return [str(d.access_location.value) for d in ext
            if d.access_method == x509.oid.AuthorityInformationAccessOID.OCSP]


def _dns_ok(name: str) -> bool:
    return bool(_DNS_NAME.fullmatch(name))


def _parent_domain(fqdn: str | None) -> str | None:
    if not fqdn or "." not in fqdn.strip("."):
        return None
    return fqdn.strip(".").split(".", 1)[1].lower()


def _in_domain(host: str, domain: str | None) -> bool:
    host = host.lower().rstrip(".")
    return bool(domain) and (host == domain or host.endswith("." + str(domain)))


def _ldap_dn_parts(url: str) -> list[tuple[str, str]]:
    """``[("CN", "Contoso-CA"), ("CN", "ca01"), ..., ("DC", "local")]`` of an LDAP URL."""
    try:
        dn = unquote(urlsplit(url).path.lstrip("/"))
    except ValueError:
        return []
    parts: list[tuple[str, str]] = []
    for rdn in dn.split(","):
        if "=" in rdn:
            k, v = rdn.split("=", 1)
            parts.append((k.strip().upper(), v.strip()))
    return parts


def _dn_domain(parts: Sequence[tuple[str, str]]) -> str | None:
    dcs = [v for k, v in parts if k == "DC" and v]
    return ".".join(dcs).lower() if dcs else None


def _name_domain(name: x509.Name) -> str | None:
    """The DC= components of a name, in display order (``CN=X,DC=contoso,DC=local``)."""
    dcs: list[str] = []
    for rdn in reversed(list(name.rdns)):
        for attr in rdn:
            if attr.oid == NameOID.DOMAIN_COMPONENT and isinstance(attr.value, str):
                dcs.append(attr.value)
    return ".".join(dcs).lower() if dcs else None


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


def _host(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def _ca_display_name(name: x509.Name) -> str | None:
    for attr in name.get_attributes_for_oid(NameOID.COMMON_NAME):
        if isinstance(attr.value, str) and attr.value:
            return attr.value
    return None


def _first_sentence(text: str) -> str:
    m = re.search(r"(?<=[.!?])\s+(?=[A-Z(\"'])", text)
    return text[:m.start()] if m else text


# --------------------------------------------------------------------------------------------
# The replay profile: a lab CA of the same kind and the MP certificate's clone
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CAProfile:
    spec: CASpec
    why: str
    """How the kind, domain and host were derived, in words."""


@dataclass
class Profile:
    """Everything the replay needs, derived from the certificate and the options."""

    intranet_fqdn: str | None
    internet_fqdn: str | None
    fqdn_source: str
    """``options``, ``san`` or ``mixed``: where the FQDNs came from."""
    cas: list[CAProfile]
    """Server CAs, the root first (one or two)."""
    ad_domain: str
    mp_cert: CertSpec
    """The MP certificate's clone."""
    notes: list[str] = field(default_factory=list)
    """What the clone cannot reproduce, and assumptions."""
    skip_reason: str | None = None
    """Why there is no replay (no name to put the MP under, an impossible validity)."""


def _sanitize_ca_name(name: str | None, fallback: str) -> str:
    clean = _CA_NAME_BAD.sub("-", name or "").strip(" -.") or fallback
    return clean[:64]


def _derive_ca(issued: x509.Certificate, issuer_name: x509.Name, *, intranet: str | None,
               name: str, parent: str | None, domain_hint: str | None) -> CAProfile:
    """A lab CA whose kind, domain and host follow the URLs ``issued`` carries."""
    cdp, aia = list(cert_cdp_urls(issued)), list(cert_aia_urls(issued))
    urls = cdp + aia
    ldap = [u for u in urls if _scheme(u) == "ldap"]
    http_hosts = [_host(u) for u in urls if _scheme(u) == "http" and _host(u)]
    ldap_domain = next((d for d in (_dn_domain(_ldap_dn_parts(u)) for u in ldap) if d), None)
    issuer_domain = _name_domain(issuer_name)
    intranet_domain = _parent_domain(intranet)
    if ldap or issuer_domain:
        kind = CAKind.ENTERPRISE
        domain = ldap_domain or issuer_domain or domain_hint or intranet_domain or FALLBACK_DOMAIN
        how = ("LDAP URLs" if ldap else "DC= components in the issuer name")
        why = f"an AD CS enterprise CA ({how}), AD domain {domain}"
    elif http_hosts and not any(_in_domain(h, domain_hint or intranet_domain)
                                for h in http_hosts):
        kind = CAKind.PUBLIC
        domain = None
        why = f"a public CA (HTTP only, on the public host {http_hosts[0]})"
    else:
        kind = CAKind.ENTERPRISE
        domain = domain_hint or intranet_domain or FALLBACK_DOMAIN
        why = (f"a private CA on an AD host (HTTP only, {http_hosts[0]} is in {domain})"
               if http_hosts else
               f"a private CA without CDP or AIA URLs, replayed as an enterprise CA in {domain}")
    if kind is CAKind.PUBLIC:
        host = http_hosts[0]
    else:
        assert domain is not None
        short = None
        for u in ldap:
            parts = _ldap_dn_parts(u)
            for i, (k, v) in enumerate(parts[:-1]):
                nxt = parts[i + 1]
                if (nxt[0] == "CN" and nxt[1].upper() == "CDP" and k == "CN" and i >= 1
                        and _dns_ok(v)):
                    short = v.lower()
        inside = [h for h in http_hosts if _in_domain(h, domain)]
        host = (f"{short}.{domain}" if short else inside[0] if inside else f"ca.{domain}")
        if not _dns_ok(host):
            host = f"ca.{domain}"
    unusable = [u for u in urls if not _replayable(u)]
    if unusable:
        why += f"; URLs the lab cannot publish are left out of the clone: {', '.join(unusable)}"
    spec = CASpec(name=name, kind=kind, host=host, domain=domain,
                  cdp=tuple(u for u in cdp if _replayable(u)),
                  aia=tuple(u for u in aia if _scheme(u) in ("http", "ldap", "file")
                            and _replayable(u)),
                  parent=parent)
    return CAProfile(spec, why)


def _replayable(url: str) -> bool:
    """Whether the lab can publish ``url`` (it parses, with a usable host and port)."""
    if not url.isascii() or any(ord(c) < 0x21 for c in url):
        return False
    try:
        parse_url(url)
    except ValueError:
        return False
    return True


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s key signed ``cert`` (SHA-1 and MD5 signatures included, which
    ``verify_directly_issued_by`` refuses to check)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    try:
        algo = cert.signature_hash_algorithm
        key = _public_key(issuer)
        if isinstance(key, rsa.RSAPublicKey) and algo is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algo)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey) and algo is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algo))
            return True
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return False


def _issuer_in(cert: x509.Certificate, pool: Sequence[x509.Certificate]
               ) -> x509.Certificate | None:
    return next((c for c in pool if _signed_by(cert, c)), None)


def _clamp(when: dt.datetime) -> dt.datetime:
    low = dt.datetime(1950, 1, 2, tzinfo=dt.UTC)
    high = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)
    return min(max(when, low), high)


def build_profile(loaded: LoadedCert, intranet: str | None, internet: str | None,
                  now: dt.datetime | None = None) -> Profile:
    """The replay's PKI and MP, derived from the certificate (see the module docstring)."""
    cert = loaded.cert
    now = now or system_now()
    notes: list[str] = []
    names = san_dns(cert)
    # What the clone's SAN carries: DNS names, wildcards included.
    dns = [n for n in (names or []) if n.isascii()
           and (_dns_ok(n) or (n.startswith("*.") and _dns_ok(n[2:])))]
    cn = subject_cn(cert)
    hosts = [n for n in dns if _dns_ok(n)]
    candidates = hosts if names is not None else ([cn] if cn and _dns_ok(cn) else [])
    given = (intranet is not None, internet is not None)
    if intranet is None:
        intranet = next((n for n in candidates if internet is None
                         or n.lower() != internet.lower()), None)
    if internet is None:
        internet = next((n for n in candidates if intranet is None
                         or n.lower() != intranet.lower()), None)
    if intranet is None and internet is not None:
        intranet = internet
        notes.append(f"the certificate names one FQDN only ({internet}): the replay uses it "
                     "for the intranet MP too; give --intranet-fqdn to replay intranet clients "
                     "against the MP's intranet name")
    source = ("options" if all(given) else "san" if not any(given) else "mixed")

    issuer = _issuer_in(cert, loaded.chain)
    two_tier = issuer is not None and issuer.issuer != issuer.subject
    domain_hint = (_name_domain(cert.issuer) or
                   next((d for u in cert_cdp_urls(cert) + cert_aia_urls(cert)
                         if _scheme(u) == "ldap"
                         for d in [_dn_domain(_ldap_dn_parts(u))] if d), None))
    issuing_name = _sanitize_ca_name(_ca_display_name(cert.issuer), "Replay-CA")
    cas: list[CAProfile] = []
    if two_tier:
        assert issuer is not None
        root_name = _sanitize_ca_name(_ca_display_name(issuer.issuer), "Replay-Root-CA")
        if root_name.lower() in (issuing_name.lower(), CLIENT_CA.lower()):
            root_name = _sanitize_ca_name(root_name + " Root", "Replay-Root-CA")
        root = _derive_ca(issuer, issuer.issuer, intranet=intranet, name=root_name,
                          parent=None, domain_hint=domain_hint)
        cas.append(root)
        notes.append(f"two-tier PKI: the issuing CA {issuing_name} is replayed under a lab "
                     f"root {root_name} that publishes its CRL at the issuing CA "
                     "certificate's CDP URLs")
    elif issuer is None and loaded.chain:
        notes.append("the chain given does not hold this certificate's issuer: replayed as "
                     "issued directly by a root CA")
    if issuing_name.lower() == CLIENT_CA.lower():
        issuing_name = "Replay-CA"
    issuing = _derive_ca(cert, cert.issuer, intranet=intranet, name=issuing_name,
                         parent=cas[0].spec.name if cas else None, domain_hint=domain_hint)
    cas.append(issuing)
    ad_domain = next((c.spec.domain for c in cas if c.spec.domain), None)
    ad_domain = ad_domain or _parent_domain(intranet) or FALLBACK_DOMAIN

    # The MP certificate's clone.
    eku_oids = _ekus(cert)
    eku: tuple[EKU, ...]
    if eku_oids is None or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku_oids:
        eku = ()
        if eku_oids is not None:
            notes.append("anyExtendedKeyUsage is replayed as no EKU extension (both mean any "
                         "purpose to CryptoAPI)")
    else:
        eku = tuple(e for o, e in ((ExtendedKeyUsageOID.SERVER_AUTH, EKU.SERVER_AUTH),
                                   (ExtendedKeyUsageOID.CLIENT_AUTH, EKU.CLIENT_AUTH))
                    if o in eku_oids)
        others = [o for o in eku_oids if o not in (ExtendedKeyUsageOID.SERVER_AUTH,
                                                   ExtendedKeyUsageOID.CLIENT_AUTH)]
        if not eku:
            eku = (EKU.CLIENT_AUTH,)
            notes.append(f"the EKUs {_eku_text(others)} are replayed as Client Authentication "
                         "(the lab writes Server and Client Authentication only; what matters, "
                         "no Server Authentication, is kept)")
        elif others:
            notes.append(f"the EKUs {_eku_text(others)} are not replayed (the lab writes "
                         "Server and Client Authentication only)")
    if names is not None and len(dns) != len(names):
        dropped = [n for n in names if n not in dns]
        notes.append(f"SAN DNS names the lab cannot write are dropped: {', '.join(dropped)}")
    if names is not None and not dns:
        notes.append("the SAN holds no DNS name: the clone has no SAN extension, so clients "
                     "match the CN instead (Windows would match nothing)")
    subject = cn
    if subject is None:
        subject = "(no subject name)" if not dns else None
    elif len(subject) > 64:
        subject = subject[:64]
        notes.append("the subject CN is longer than 64 characters: replayed truncated")
    skip = None
    if intranet is None:
        skip = ("the certificate names no DNS host (no SAN DNS name, no CN that is a host "
                "name): give --intranet-fqdn (and --internet-fqdn) to replay it")
    nvb, nva = _clamp(cert.not_valid_before_utc), _clamp(cert.not_valid_after_utc)
    if nva <= nvb:
        skip = "the certificate's validity ends before it starts: the lab cannot issue it"
    mp_cert = CertSpec(issuer=issuing.spec.name, san=tuple(dns) if names is not None else (),
                       eku=eku, cdp=None, not_before=nvb - now, not_after=nva - now,
                       subject=subject)
    if _ocsp_urls(cert):
        notes.append("OCSP URLs are not replayed (the lab checks revocation with CRLs only)")
    return Profile(intranet_fqdn=intranet, internet_fqdn=internet, fqdn_source=source,
                   cas=cas, ad_domain=ad_domain, mp_cert=mp_cert, notes=notes, skip_reason=skip)


SITUATION_TITLES = {"intranet": "domain-joined, intranet", "workgroup": "workgroup, intranet",
                    "vpn": "domain-joined, VPN",
                    "internet": "installed inside, then on the internet"}


def ccmsetup_line(profile: Profile) -> str:
    line = (f"ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE={SITE_CODE} "
            f"SMSMP=https://{profile.intranet_fqdn}")
    if profile.internet_fqdn:
        line += f" CCMHOSTNAME={profile.internet_fqdn}"
    return line


def situations(profile: Profile) -> list[str]:
    """The situations replayed: the internet one only when an internet FQDN is known."""
    from lab.results.grid import SITUATIONS

    return [s.key for s in SITUATIONS if s.key != "internet" or profile.internet_fqdn]


def replay_scenarios(profile: Profile) -> list[Scenario]:
    """One scenario per site CRL setting (on, off), one client per situation."""
    from lab.results.grid import ACTIONS, SITUATION_BY_KEY

    assert profile.intranet_fqdn is not None
    client_ca = CASpec(name=CLIENT_CA, kind=CAKind.ENTERPRISE,
                       host=f"lab-clients-ca.{profile.ad_domain}", domain=profile.ad_domain)
    mp = MPSpec(intranet_fqdn=profile.intranet_fqdn, internet_fqdn=profile.internet_fqdn,
                cert=profile.mp_cert)
    command = parse_ccmsetup(ccmsetup_line(profile))
    clients = []
    for key in situations(profile):
        sit = SITUATION_BY_KEY[key]
        name = key.upper()[:12]
        fqdn = f"{name}.{profile.ad_domain}" if sit.domain_joined else name
        clients.append(ClientSpec(
            name=name, domain_joined=sit.domain_joined, ccmsetup=command, fqdn=fqdn,
            # Client certificates come from a separate, healthy CA: the question is the MP's
            # certificate, not IIS checking the clients'.
            certs=(CertSpec(issuer=CLIENT_CA, san=(fqdn,)),),
            steps=tuple(StepSpec(a, z) for a, z in zip(ACTIONS, sit.zones, strict=True))))
    scenarios = []
    for crl in (True, False):
        scenarios.append(Scenario(
            name=f"check-cert-site-crl-{'on' if crl else 'off'}", file=None,
            info=ScenarioInfo(title=f"check-cert replay, site CRL check {'on' if crl else 'off'}",
                              source="ibcm-lab check-cert"),
            site=Site(code=SITE_CODE, check_crl=crl, https_only=True),
            cas=(*(c.spec for c in profile.cas), client_ca), mp=mp, network=NetworkSpec(),
            clients=tuple(clients)))
    return scenarios


# --------------------------------------------------------------------------------------------
# Per-zone meaning of the CDP and AIA URLs
# --------------------------------------------------------------------------------------------


def _network(profile: Profile) -> Network:
    """The lab's default reachability rules for the replay's hosts."""
    intranet = profile.intranet_fqdn or f"mp.{profile.ad_domain}"
    client_ca = CASpec(name=CLIENT_CA, kind=CAKind.ENTERPRISE,
                       host=f"lab-clients-ca.{profile.ad_domain}", domain=profile.ad_domain)
    scenario = Scenario(
        name="check-cert", file=None, info=ScenarioInfo(title="check-cert"), site=Site(),
        cas=(*(c.spec for c in profile.cas), client_ca),
        mp=MPSpec(intranet_fqdn=intranet, internet_fqdn=profile.internet_fqdn,
                  cert=CertSpec(issuer=CLIENT_CA)),
        network=NetworkSpec(), clients=())
    return Network(scenario)


def url_reach(url: str, network: Network, domain: str) -> tuple[list[str], str]:
    """(situations that can fetch ``url``, why) under the lab's default network rules."""
    from lab.results.grid import SITUATIONS

    scheme = _scheme(url)
    if scheme not in ("http", "ldap"):
        why = {"https": "CRLs are fetched over plain HTTP or LDAP; the lab does not fetch "
                        "https:// CDPs",
               "file": "file:// (SMB) is not simulated"}.get(scheme, f"{scheme}: URL")
        return [], why
    try:
        parsed = parse_url(url)
    except ValueError:
        return [], "malformed URL"
    out: list[str] = []
    for sit in SITUATIONS:
        machine = Machine(sit.key, sit.zones[-1], sit.domain_joined, domain)
        ok = (network.can_reach_dc(machine) if scheme == "ldap" and not parsed.host
              else network.can_resolve(machine, parsed.host))
        if ok:
            out.append(sit.key)
    if scheme == "ldap" and not parsed.host:
        why = "ldap:/// needs a domain controller: domain-joined machines inside"
    else:
        why = network.rule(parsed.host).why
    return out, why


REACH_LABELS = {"intranet": "domain-joined intranet", "workgroup": "workgroup intranet",
                "vpn": "VPN", "internet": "internet"}


def _reach_text(keys: Sequence[str]) -> str:
    if not keys:
        return "nobody"
    if len(keys) == len(REACH_LABELS):
        return "everyone"
    return ", ".join(REACH_LABELS[k] for k in keys)


# --------------------------------------------------------------------------------------------
# The lint
# --------------------------------------------------------------------------------------------


def lint(loaded: LoadedCert, profile: Profile, *, intranet_given: bool, internet_given: bool,
         now: dt.datetime | None = None) -> list[Finding]:
    cert = loaded.cert
    now = now or system_now()
    out: list[Finding] = []

    def add(code: str, reason: str, fix: str, severity: str | None = None) -> None:
        out.append(Finding(severity or CATALOGUE[code].severity, code, reason, fix))

    reissue = "reissue it from a copy of the Web Server template"
    # --- the kind of certificate -----------------------------------------------------------
    if _is_ca(cert):
        add("subject-is-ca", f"{cert.subject.rfc4514_string()} is a CA certificate (basic "
            "constraints CA=true); the file holds no end-entity certificate for the MP",
            "check-cert the MP's own certificate (the one bound to IIS's HTTPS binding)")
    if loaded.form == "PKCS#12":
        if loaded.has_key is False:
            add("pfx-no-private-key", "the PKCS#12 file holds the certificate without its "
                "private key: IIS cannot bind it", "export it again with the private key "
                "(Export-PfxCertificate, or the wizard's 'Yes, export the private key')")
        elif loaded.key_matches is False:
            add("pfx-key-mismatch", "the private key in the PKCS#12 file does not belong to "
                "the certificate", "export the certificate together with its own key")
    if loaded.chain and _issuer_in(cert, loaded.chain) is None:
        add("chain-mismatch", f"none of the {len(loaded.chain)} other certificates issued "
            f"this one (issuer {cert.issuer.rfc4514_string()})",
            "give the issuing CA's certificate with --chain to replay the whole chain")

    # --- EKU --------------------------------------------------------------------------------
    ekus = _ekus(cert)
    if ekus is None:
        add("no-eku", "no Enhanced Key Usage extension: Windows accepts it for any purpose, "
            "but ConfigMgr requires Server Authentication in the EKU",
            f"{reissue} (EKU Server Authentication, 1.3.6.1.5.5.7.3.1)")
    elif ExtendedKeyUsageOID.SERVER_AUTH not in ekus:
        if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in ekus:
            add("any-purpose-eku", "the EKU is Any Purpose, not Server Authentication",
                f"{reissue} (EKU Server Authentication, 1.3.6.1.5.5.7.3.1)")
        else:
            add("no-server-auth", f"the EKU ({_eku_text(ekus)}) lacks Server Authentication: "
                "clients reject the MP with CERT_E_WRONG_USAGE",
                f"{reissue} (EKU Server Authentication, 1.3.6.1.5.5.7.3.1)")

    # --- names ------------------------------------------------------------------------------
    names = san_dns(cert)
    match_names = names if names is not None else [n for n in [subject_cn(cert)] if n]
    listed = ", ".join(match_names) or "none"
    where = "SAN" if names is not None else "subject CN (there is no SAN)"
    both = ("request a certificate with both FQDNs as SAN DNS names (intranet "
            f"{profile.intranet_fqdn or '<intranet FQDN>'}, internet "
            f"{profile.internet_fqdn or '<internet FQDN>'}) and bind it in IIS")
    if names is None:
        add("no-san", f"no Subject Alternative Name: clients match the MP's name against the "
            f"subject CN ({subject_cn(cert) or 'none'}) alone", both)
    if intranet_given and profile.intranet_fqdn and not host_in_names(
            profile.intranet_fqdn, match_names):
        add("intranet-fqdn-not-in-san", f"intranet FQDN {profile.intranet_fqdn} not in the "
            f"{where} ({listed}): intranet clients get CERT_E_CN_NO_MATCH", both)
    if internet_given and profile.internet_fqdn and not host_in_names(
            profile.internet_fqdn, match_names):
        add("internet-fqdn-not-in-san", f"internet FQDN {profile.internet_fqdn} not in the "
            f"{where} ({listed}): internet clients get CERT_E_CN_NO_MATCH", both)
    if not match_names:
        add("no-host-name", "the certificate names no host (no SAN DNS name"
            + (")" if names is not None else ", no subject CN)")
            + ": every client gets CERT_E_CN_NO_MATCH", both)
    elif not internet_given and len(set(n.lower() for n in match_names)) <= 1:
        add("single-san", f"one name only ({listed}): an MP that takes intranet and internet "
            "clients needs both FQDNs in the SAN (seed §2)",
            f"{both}; if the MP takes intranet clients only, ignore this (or give "
            "--internet-fqdn to check the internet name)")
    if not (intranet_given and internet_given) and profile.intranet_fqdn:
        took = []
        if not intranet_given:
            took.append(f"intranet FQDN {profile.intranet_fqdn}")
        if not internet_given and profile.internet_fqdn:
            took.append(f"internet FQDN {profile.internet_fqdn}")
        if took:
            add("fqdn-from-san", f"took the {' and the '.join(took)} from the certificate's "
                "names (first = intranet, second = internet)",
                "give --intranet-fqdn and --internet-fqdn as the site system's properties "
                "name them, to check exactly those")

    # --- signature and key ------------------------------------------------------------------
    def signature(c: x509.Certificate, what: str) -> None:
        try:
            algo = c.signature_hash_algorithm
        except UnsupportedAlgorithm:
            algo = None
        oid_name = c.signature_algorithm_oid.dotted_string
        if isinstance(algo, hashes.SHA1 | hashes.MD5):
            add("signature-not-sha2", f"{what} is signed with {algo.name.upper()}: "
                "Windows does not trust SHA-1-signed certificates",
                "reissue it from a CA that signs with SHA-256 (AD CS: certutil -setreg "
                "ca\\csp\\CNGHashAlgorithm SHA256, restart the CA, then reissue)")
        elif algo is None and not isinstance(_public_key(c), ed25519.Ed25519PublicKey
                                             | ed448.Ed448PublicKey):
            add("signature-unusual", f"{what} has a signature algorithm the lab cannot name "
                f"({oid_name})", "reissue it signed with SHA-256")
        elif algo is None:
            add("signature-unusual", f"{what} is signed with {oid_name}, which Windows' TLS "
                "stack may not accept for server certificates", "reissue it with RSA or "
                "ECDSA signed with SHA-256")

    signature(cert, "the certificate")
    issuer = _issuer_in(cert, loaded.chain)
    if issuer is not None and issuer.issuer != issuer.subject:
        signature(issuer, f"the issuing CA certificate {issuer.subject.rfc4514_string()}")
    key = _public_key(cert)
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            add("key-too-small", f"{key.key_size}-bit RSA key: below the 2048 bits current "
                "PKI templates use" + (" and below Windows' 1024-bit minimum"
                                       if key.key_size < 1024 else ""),
                "request a new certificate with a 2048-bit (or larger) key",
                ERROR if key.key_size < 1024 else WARNING)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        add("key-not-rsa", f"ECDSA key ({key.curve.name}): check that every ConfigMgr role and "
            "client OS in use accepts it; the replay uses the lab's RSA 2048 key",
            "nothing, if your clients accept it; otherwise reissue with an RSA 2048 key")
    elif key is not None:
        kind = ("DSA" if isinstance(key, dsa.DSAPublicKey) else type(key).__name__)
        add("key-not-rsa", f"{kind} key: IIS and ConfigMgr expect RSA (or ECDSA)",
            "reissue with an RSA 2048 key", WARNING)
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None and not (ku.digital_signature or ku.key_encipherment):
        add("key-usage", "Key Usage allows neither digitalSignature nor keyEncipherment: a TLS "
            "server key needs one of them (not replayed: the lab writes both)",
            f"{reissue} (Key Usage: Digital Signature, Key Encipherment)")

    # --- validity ---------------------------------------------------------------------------
    nvb, nva = cert.not_valid_before_utc, cert.not_valid_after_utc
    if nva < now:
        add("expired", f"expired on {nva:%Y-%m-%d %H:%M} UTC: clients get CERT_E_EXPIRED "
            "(flag CERT_DATE_INVALID)", "renew the certificate (same names and template) and "
            "bind the new one in IIS")
    elif nvb > now:
        add("not-yet-valid", f"valid only from {nvb:%Y-%m-%d %H:%M} UTC: clients get "
            "CERT_E_EXPIRED until then (or the CA's clock is ahead)",
            "wait, or check the CA's clock and reissue")
    elif nva - now < RENEW_BEFORE:
        days = (nva - now).days
        add("expires-soon", f"expires on {nva:%Y-%m-%d} ({days} day{'s' if days != 1 else ''} "
            "left)", "renew it now and bind the new certificate in IIS before it expires")

    # --- CDP and AIA, per zone --------------------------------------------------------------
    network = _network(profile)
    internet_known = profile.internet_fqdn is not None
    _cdp_findings(add, list(cert_cdp_urls(cert)), network, profile, internet_known, "")
    if issuer is not None and issuer.issuer != issuer.subject:
        # The issuing CA is checked against its parent's CRL, found through its own CDP.
        _cdp_findings(add, list(cert_cdp_urls(issuer)), network, profile, internet_known,
                      f"the issuing CA certificate {_ca_display_name(issuer.subject) or ''}")
    aia = list(cert_aia_urls(cert))
    # AIA matters for fetching a missing intermediate: only when the issuer is known to be one.
    intermediate = issuer is not None and issuer.issuer != issuer.subject
    if aia and internet_known and intermediate:
        aia_union = {k for u in aia for k in url_reach(u, network, profile.ad_domain)[0]}
        if "internet" not in aia_union:
            add("aia-not-reachable-from-internet", "no AIA URL is reachable from the internet: "
                "an internet client that lacks the issuing CA certificate cannot fetch it "
                "(harmless while IIS sends the chain)", "publish the CA certificate at an "
                "internet HTTP URL in the CA's AIA extension, or make sure IIS sends the chain")
    if _ocsp_urls(cert):
        add("aia-ocsp", f"OCSP responder {', '.join(_ocsp_urls(cert))}: the lab replays CRL "
            "checking only; Windows may ask the responder first", "make sure the responder is "
            "reachable from every zone, as the CRL must be")
    out.sort(key=lambda f: SEVERITY_ORDER[f.severity])
    return out


def _cdp_findings(add: Any, cdp: list[str], network: Network, profile: Profile,
                  internet_known: bool, whose: str) -> None:
    """CDP findings for the MP certificate (``whose`` empty) or its issuing CA certificate."""
    reach = {u: url_reach(u, network, profile.ad_domain) for u in cdp}
    prefix = f"{whose}: " if whose else ""
    target = whose or "this certificate"
    publish = ("publish the CRL at an HTTP URL reachable from the internet (for example "
               "http://pki.<public domain>/CertEnroll/<CA>.crl), add it to the "
               f"{'parent ' if whose else ''}CA's CDP extension ('Include in the CDP extension "
               f"of issued certificates') and reissue {target}; or clear 'Clients check the "
               "certificate revocation list (CRL) for site systems' and install with /NoCRLCheck")
    if not cdp:
        add("no-cdp", f"{prefix}no CRL Distribution Points extension: a client that checks the "
            "CRL gets CRYPT_E_NO_REVOCATION_CHECK", "reissue it from a CA that writes an HTTP "
            "CDP every client can reach; or clear the site's CRL box and install with "
            "/NoCRLCheck")
        return
    union = {k for keys, _ in reach.values() for k in keys}
    if all(_scheme(u) == "ldap" and not _host(u) for u in cdp):
        add("cdp-ldap-only", f"{prefix}LDAP-only CDP (ldap:///): only domain-joined machines "
            "inside (intranet, VPN) can check revocation; internet and workgroup clients get "
            "CRYPT_E_REVOCATION_OFFLINE while the site checks the CRL", publish,
            ERROR if internet_known else WARNING)
    else:
        if internet_known and "internet" not in union:
            why = "; ".join(dict.fromkeys(
                "ldap:/// needs a domain controller" if _scheme(u) == "ldap" and not _host(u)
                else f"{_host(u)}: {w}" if _host(u) else f"{_scheme(u)}: {w}"
                for u, (_, w) in reach.items()))
            add("cdp-not-reachable-from-internet", f"{prefix}no CDP URL is reachable from the "
                f"internet ({why}): internet clients get CRYPT_E_REVOCATION_OFFLINE while the "
                "site checks the CRL", publish)
        if "workgroup" not in union:
            add("cdp-not-reachable-for-workgroup", f"{prefix}no CDP URL is reachable by a "
                "workgroup machine on the intranet: it gets CRYPT_E_REVOCATION_OFFLINE once the "
                "site checks the CRL (and at install without /NoCRLCheck)",
                f"add an HTTP CDP on a host every client resolves and reissue {target}; or "
                "install with /NoCRLCheck and clear the site's CRL box")
        delayed = []
        for sit in ("internet", "workgroup", "intranet", "vpn"):
            if sit == "internet" and not internet_known:
                continue
            first = next((i for i, u in enumerate(cdp) if sit in reach[u][0]), None)
            if first:
                delayed.append(f"{REACH_LABELS[sit]} clients wait for {first} unreachable "
                               f"URL{'s' if first > 1 else ''} (up to {15 * first} s)")
        if delayed:
            add("cdp-retrieval-delay", f"{prefix}CDP order: " + "; ".join(delayed) + " before "
                "reaching a URL that works", "list the URL every client reaches first in the "
                "CA's CDP extension (only for certificates issued afterwards)")
    for u in cdp:
        if _scheme(u) == "https":
            add("cdp-https", f"{prefix}{u}: CRLs are fetched over plain HTTP or LDAP; an "
                "https:// CDP needs its own server certificate checked first",
                "publish the CRL at an http:// URL instead")
        elif _scheme(u) == "file":
            add("cdp-file", f"{prefix}{u}: a file:// (SMB) CDP works at best inside; the lab "
                "does not serve it", "clear 'Include in the CDP extension' for the file:// "
                "location on the CA")


# --------------------------------------------------------------------------------------------
# The replay
# --------------------------------------------------------------------------------------------


@dataclass
class Cell:
    situation: str
    site_crl: str
    """``on`` or ``off``."""
    outcome: str
    error: str | None
    error_hex: str | None
    failed_step: str | None
    """``4 (policy @ internet)`` for the first failing step."""
    detail: str
    """The failing step's error detail (``the client asked for X, the certificate names Y``)."""
    explanation: str
    fix: str
    crl: list[str]
    """The failing step's CDP retrievals, one line each (revocation failures only)."""
    steps: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"situation": self.situation, "title": SITUATION_TITLES[self.situation],
                "site_crl": self.site_crl, "outcome": self.outcome, "error": self.error,
                "error_code": self.error_hex, "failed_step": self.failed_step,
                "explanation": self.explanation, "fix": self.fix, "steps": self.steps}


def _cell(situation: str, site_crl: str, steps: Sequence[StepResult]) -> Cell:
    from lab.results.matrix import short_name

    failed = next((s for s in steps if s.outcome == "fail"), None)
    if failed is None:
        return Cell(situation, site_crl, "ok", None, None, None, "", "", "", [],
                    [step_dict(s) for s in steps])
    name = failed.error.name if failed.error is not None else short_name(failed)
    code = failed.error.hex if failed.error is not None and failed.error.numeric else None
    crl: list[str] = []
    # The CDP retrievals are the evidence of a revocation failure (the JSON steps hold them all).
    if (failed.revocation is not None and failed.revocation.checked
            and name.startswith("CRYPT_E_")):
        for u in failed.revocation.urls:
            err = f" {u.error.name}" if u.error else ""
            took = f" [{u.simulated_ms / 1000:g} s]" if u.simulated_ms else ""
            crl.append(f"{u.result:<10} {u.url}{took}{err}")
    return Cell(situation, site_crl, "fail", name, code,
                f"{failed.index + 1} ({failed.action} @ {failed.location})",
                failed.error_message, failed.explanation,
                failed.fix, crl, [step_dict(s) for s in steps])


def run_replay(profile: Profile, certs: str | Path) -> list[Cell] | None:
    """Build the clone, run the eight cells in one lab run, return them (CRL on first).
    None (and ``profile.skip_reason`` set) when the lab cannot issue the clone."""
    from lab.run import run_loaded

    scenarios = replay_scenarios(profile)
    try:
        build_pki(scenarios[0], Clock(), PKICache(certs))
    except ValueError as e:
        profile.skip_reason = f"the lab cannot issue a certificate with this profile ({_short(e)})"
        return None
    result = asyncio.run(run_loaded(scenarios, certs=certs))
    cells: list[Cell] = []
    for scenario_result, crl in zip(result.scenarios, ("on", "off"), strict=True):
        for key, client in zip(situations(profile), scenario_result.clients, strict=True):
            cells.append(_cell(key, crl, client.steps))
    return cells


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass
class Report:
    loaded: LoadedCert
    profile: Profile
    findings: list[Finding]
    replay: list[Cell] | None
    """None with ``--no-replay`` or when the replay was skipped (``profile.skip_reason``)."""
    reach: dict[str, tuple[list[str], str]]
    """CDP and AIA URL -> (situations that can fetch it, why)."""

    @property
    def exit_code(self) -> int:
        if any(f.severity == ERROR for f in self.findings):
            return 1
        if self.replay and any(c.outcome != "ok" for c in self.replay):
            return 1
        return 0


def check(loaded: LoadedCert, *, intranet: str | None = None, internet: str | None = None,
          replay: bool = True, certs: str | Path = "certs") -> Report:
    """Lint ``loaded`` and (unless ``replay`` is False) replay it in the lab."""
    now = system_now()
    profile = build_profile(loaded, intranet, internet, now)
    findings = lint(loaded, profile, intranet_given=intranet is not None,
                    internet_given=internet is not None, now=now)
    network = _network(profile)
    urls = list(cert_cdp_urls(loaded.cert)) + list(cert_aia_urls(loaded.cert))
    reach = {u: url_reach(u, network, profile.ad_domain) for u in urls}
    cells = None
    if replay and profile.skip_reason is None:
        cells = run_replay(profile, certs)
    return Report(loaded, profile, findings, cells, reach)


def _key_text(cert: x509.Certificate) -> str:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unreadable key"
    if isinstance(key, rsa.RSAPublicKey):
        text = f"RSA {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        text = f"ECDSA {key.curve.name}"
    else:
        text = type(key).__name__.replace("PublicKey", "").lstrip("_")
    try:
        algo = cert.signature_hash_algorithm
        signed = algo.name.upper() if algo is not None else "(no hash)"
    except UnsupportedAlgorithm:
        signed = cert.signature_algorithm_oid.dotted_string
    return f"{text}, signed with {signed}"


def report_dict(report: Report) -> dict[str, Any]:
    cert, profile = report.loaded.cert, report.profile
    names = san_dns(cert)
    return {
        "file": report.loaded.file,
        "form": report.loaded.form,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "san": names,
        "eku": None if _ekus(cert) is None else [o.dotted_string for o in _ekus(cert) or []],
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "key": _key_text(cert),
        "cdp": [{"url": u, "reachable_from": report.reach[u][0], "why": report.reach[u][1]}
                for u in cert_cdp_urls(cert)],
        "aia": [{"url": u, "reachable_from": report.reach[u][0], "why": report.reach[u][1]}
                for u in cert_aia_urls(cert)],
        "intranet_fqdn": profile.intranet_fqdn,
        "internet_fqdn": profile.internet_fqdn,
        "fqdn_source": profile.fqdn_source,
        "findings": [f.as_dict() for f in report.findings],
        "replay_setup": {
            "cas": [{"name": c.spec.name, "kind": c.spec.kind.value, "host": c.spec.host,
                     "domain": c.spec.domain, "parent": c.spec.parent,
                     "cdp": list(c.spec.cdp or ()), "aia": list(c.spec.aia or ()),
                     "why": c.why} for c in profile.cas],
            "ad_domain": profile.ad_domain,
            "ccmsetup": ccmsetup_line(profile) if profile.intranet_fqdn else None,
            "notes": profile.notes,
            "skipped": profile.skip_reason,
        },
        "replay": None if report.replay is None else [c.as_dict() for c in report.replay],
        "exit_code": report.exit_code,
    }


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, ensure_ascii=False) + "\n"


def _wrap(label: str, text: str, indent: int = 2, width: int = 10) -> list[str]:
    prefix = " " * indent + f"{label:<{width}}"
    return textwrap.wrap(text, WIDTH, initial_indent=prefix,
                         subsequent_indent=" " * (indent + width), break_on_hyphens=False,
                         break_long_words=False) or [prefix.rstrip()]


def render_text(report: Report) -> str:
    cert, profile = report.loaded.cert, report.profile
    lines = [f"check-cert {report.loaded.file} ({report.loaded.form})"]
    lines += _wrap("subject", cert.subject.rfc4514_string() or "(empty)")
    lines += _wrap("issuer", cert.issuer.rfc4514_string())
    names = san_dns(cert)
    lines += _wrap("SAN", ", ".join(names) if names else
                   "(no SAN extension)" if names is None else "(no DNS names)")
    lines += _wrap("EKU", _eku_text(_ekus(cert)))
    lines += _wrap("validity", f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} to "
                               f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    lines += _wrap("key", _key_text(cert))
    for label, urls in (("CDP", cert_cdp_urls(cert)), ("AIA", cert_aia_urls(cert))):
        if not urls:
            lines += _wrap(label, "(none)")
        for i, u in enumerate(urls, start=1):
            keys, why = report.reach[u]
            lines.append(f"  {label if i == 1 else '':<10}{i}. {u}")  # URLs stay whole
            lines += _wrap("", f"   reachable by {_reach_text(keys)} ({why})")
    lines += _wrap("MP", f"intranet {profile.intranet_fqdn or '(unknown)'}, internet "
                         f"{profile.internet_fqdn or '(none)'}"
                         + {"san": " (taken from the certificate)",
                            "mixed": " (partly taken from the certificate)"}.get(
                             profile.fqdn_source, ""))
    lines.append("")
    counts = {s: sum(1 for f in report.findings if f.severity == s) for s in SEVERITY_ORDER}
    lines.append(f"Findings: {counts[ERROR]} error(s), {counts[WARNING]} warning(s), "
                 f"{counts[INFO]} note(s)")
    for f in report.findings:
        lines += _wrap(f.severity.upper(), f"{f.code}: {f.reason}")
        lines += _wrap("", f"fix: {f.fix}")
        lines += _wrap("", f"source: {f.source}")
    if not report.findings:
        lines.append("  none")
    lines.append("")
    if profile.skip_reason is not None:
        lines.append(f"Replay skipped: {profile.skip_reason}")
    elif report.replay is None:
        lines.append("Replay skipped (--no-replay)")
    else:
        lines += _render_replay(report)
    lines.append("")
    failing = sum(1 for c in report.replay or [] if c.outcome != "ok")
    verdict = ("fine" if report.exit_code == 0 else
               f"{counts[ERROR]} error finding(s), {failing} failing replay cell(s)")
    lines.append(f"Result: {verdict} (exit {report.exit_code})")
    return "\n".join(lines) + "\n"


def _render_replay(report: Report) -> list[str]:
    profile = report.profile
    cells = report.replay or []
    lines = ["Replay in the lab (the same profile under a lab CA, on the lab's MP):"]
    for ca in profile.cas:
        lines += _wrap("CA", f"{ca.spec.name} on {ca.spec.host}: {ca.why}"
                       + (f", issued by {ca.spec.parent}" if ca.spec.parent else ""))
    lines += _wrap("ccmsetup", ccmsetup_line(profile))
    lines += _wrap("", "/NoCRLCheck covers the bootstrap only (seed §3, fidelity §2.3): from "
                       "the first site refresh the site's CRL setting decides")
    lines += _wrap("steps", "install, register, site refresh, policy; the internet client "
                            "installs and registers inside, then runs policy on the internet")
    lines += _wrap("not", "replayed: the signature hash, key size and key usage (the lab signs "
                          "with SHA-256 and its own RSA 2048 key) and the real CRL's contents "
                          "(the lab publishes a fresh, valid CRL at every URL)")
    for note in profile.notes:
        lines += _wrap("note", note)
    lines.append("")
    keys = list(dict.fromkeys(c.situation for c in cells))
    by = {(c.situation, c.site_crl): c for c in cells}
    col = 40
    lines.append(f"  {'situation':<{col}}{'site CRL check on':<32}site CRL check off")
    for key in keys:
        on, off = by[(key, "on")], by[(key, "off")]
        lines.append(f"  {SITUATION_TITLES[key]:<{col}}{on.error or 'ok':<32}"
                     f"{off.error or 'ok'}")
    if profile.internet_fqdn is None:
        lines += _wrap("note", "no internet FQDN (give --internet-fqdn): the internet client "
                               "is not replayed")
    # Cells failing the same way (same error, step, detail, CRL results and fix) are shown
    # once, with every cell they cover.
    groups: dict[tuple[Any, ...], list[Cell]] = {}
    for c in cells:
        if c.outcome != "ok":
            step = (c.failed_step or "").split(" @ ")[0]
            groups.setdefault((c.error, step, c.detail, tuple(c.crl), c.fix), []).append(c)
    for (error, step, detail, crl, fix), members in groups.items():
        first = members[0]
        code = f" {first.error_hex}" if first.error_hex and first.error_hex != error else ""
        where: dict[str, list[str]] = {}
        for m in members:
            where.setdefault(m.situation, []).append(m.site_crl)
        covered = "; ".join(f"{SITUATION_TITLES[k]} (site CRL {', '.join(v)})"
                            for k, v in where.items())
        lines.append("")
        lines += _wrap("FAIL", f"{error}{code} at step {step}{')' if '(' in step else ''}: "
                               f"{covered}", indent=2, width=6)
        lines += _wrap("why", _first_sentence(first.explanation), indent=6, width=6)
        if detail:
            lines += _wrap("", detail, indent=6, width=6)
        lines += [f"      {'crl':<6}{line}" for line in crl]
        if fix:
            lines += _wrap("fix", fix, indent=6, width=6)
    return lines


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


def _password(args: argparse.Namespace) -> bytes | None:
    if getattr(args, "password", None) is not None:
        return str(args.password).encode("utf-8")
    if getattr(args, "ask_password", False):
        try:
            return getpass.getpass(f"PKCS#12 password for {args.file}: ").encode("utf-8")
        except (EOFError, KeyboardInterrupt):
            raise UsageError("--ask-password: no password was entered") from None
    env = os.environ.get(PASSWORD_ENV)
    return env.encode("utf-8") if env is not None else None


def _fqdn(option: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not _dns_ok(value) or "." not in value.strip("."):
        raise UsageError(f"{option}: expected a fully qualified DNS host name "
                         f"(mp01.contoso.local), got {value!r}")
    return value.rstrip(".")


def cli_main(args: argparse.Namespace) -> int:
    """``ibcm-lab check-cert``; ``args.certs`` is already resolved by :mod:`lab.cli`."""
    intranet = _fqdn("--intranet-fqdn", args.intranet_fqdn)
    internet = _fqdn("--internet-fqdn", args.internet_fqdn)
    loaded = load(args.file, password=_password(args), chain=args.chain)
    report = check(loaded, intranet=intranet, internet=internet, replay=not args.no_replay,
                   certs=args.certs)
    sys.stdout.write(render_json(report) if args.format == "json" else render_text(report))
    return report.exit_code


__all__ = ["CATALOGUE", "MAX_FILE_BYTES", "PASSWORD_ENV", "Cell", "Finding", "LoadedCert",
           "Profile", "Report", "build_profile", "check", "cli_main", "lint", "load",
           "read_certificates", "render_json", "render_text", "replay_scenarios", "run_replay"]
