"""Reading the certificate under test: PEM, DER, PKCS#7 and PKCS#12 files.

PEM holds one or more certificates (the first that is not a CA is the subject, the others are
its chain); PKCS#12 is opened with the password given, or tried without one and with an empty
one (asking for it is the CLI's job). Files over :data:`MAX_FILE_BYTES` are refused unread.
Every unreadable input is a :class:`~lab.errors.UsageError` naming the file and what was
expected (exit 2).
"""

from __future__ import annotations

import bisect
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.utils import CryptographyDeprecationWarning

from lab import limits
from lab.errors import LimitExceeded, UsageError
from lab.tools.checkcert.pkcs12 import Unreadable, der_length, looks_like_pkcs12, survey

MAX_FILE_BYTES = limits.CERT_FILE_BYTES.default
"""A certificate is a few KB, a PKCS#12 file with a chain a few tens: anything over 1 MiB is
refused before it is read (``IBCM_LAB_LIMIT_CERT_FILE_BYTES`` raises it)."""
PASSWORD_ENV = "IBCM_LAB_PFX_PASSWORD"
"""Where the CLI finds a PKCS#12 password when none is given (the error text names it)."""
EXPECTED = "a certificate: PEM, DER, PKCS#7 (.p7b) or PKCS#12 (.pfx)"


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


def read_bytes(path: str) -> bytes:
    """The file's bytes, refused (UsageError) when missing, not a file, too large or empty."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file (expected {EXPECTED})") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not p.is_file():
        raise UsageError(f"{path}: not a regular file (expected {EXPECTED})")
    cap = limits.CERT_FILE_BYTES.value
    too_big = (f"{path}: the file is too large for a certificate ({{size}} bytes; the limit is "
               f"{cap // 1024} KiB, a certificate is a few KB; raise it with "
               f"{limits.CERT_FILE_BYTES.env}=N): expected {EXPECTED}")
    if st.st_size > cap:
        raise LimitExceeded(too_big.format(size=st.st_size), limit="cert_file_bytes")
    try:
        with p.open("rb") as f:
            data = f.read(cap + 1)
    except OSError as e:
        raise UsageError(f"{path}: cannot read it ({e.strerror or e})") from None
    if len(data) > cap:
        raise LimitExceeded(too_big.format(size=f"over {cap}"), limit="cert_file_bytes")
    if not data.strip():
        raise UsageError(f"{path}: the file is empty (expected {EXPECTED})")
    return data


def _touch(cert: x509.Certificate, path: str) -> x509.Certificate:
    """Parse the extensions now, so a malformed one is an input error, not a crash later, and
    hold each to the caps of :mod:`lab.limits` (the lint and the replay walk every name and
    URL of them)."""
    try:
        extensions = cert.extensions
        _ = cert.subject, cert.issuer
    except ValueError as e:
        raise UsageError(f"{path}: the certificate's extensions or names cannot be parsed "
                         f"({e})") from None
    for ext in extensions:
        value = ext.value
        if isinstance(value, x509.SubjectAlternativeName):
            limits.SAN_ENTRIES.check(f"{path}: the certificate's Subject Alternative Name "
                                     "holds", len(value))
        elif isinstance(value, x509.CRLDistributionPoints):
            limits.URLS_PER_EXTENSION.check(
                f"{path}: the certificate's CRL Distribution Points hold",
                sum(len(dp.full_name or ()) for dp in value))
        elif isinstance(value, x509.AuthorityInformationAccess):
            limits.URLS_PER_EXTENSION.check(
                f"{path}: the certificate's Authority Information Access holds", len(value))
        try:
            size = len(value.value if isinstance(value, x509.UnrecognizedExtension)
                       else value.public_bytes())
        except (NotImplementedError, ValueError):
            size = 0
        limits.EXTENSION_BYTES.check(
            f"{path}: the certificate's extension {ext.oid.dotted_string} takes", size)
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
    blocks = _pem_blocks(data)
    limits.CERTS_PER_FILE.check(f"{path}: the PEM file holds", len(blocks))
    for i, (label, block) in enumerate(blocks, start=1):
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
                             f"({short_error(e)})") from None
    if not certs:
        found = ", ".join(dict.fromkeys(labels)) or "no complete PEM block"
        raise UsageError(f"{path}: no certificate in this PEM file (found: {found}); "
                         f"expected {EXPECTED}")
    return certs


def short_error(e: BaseException) -> str:
    """The first line of an exception's text (160 characters at most), for one-line errors."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text[:160]


def _from_pkcs12(data: bytes, path: str, password: bytes | None
                 ) -> tuple[list[x509.Certificate], Any, x509.Certificate | None]:
    """(certificates, key or None, the key's certificate or None) of a PFX, opened with
    ``password``, or without one and then with the empty one."""
    attempts: list[bytes | None] = [password] if password is not None else [None, b""]
    try:
        # What OpenSSL would do, counted before it does it (lab.limits caps each count).
        survey(data, password if password is not None else b"", path, len(attempts))
    except Unreadable as e:
        raise UsageError(f"{path}: the PKCS#12 structure cannot be followed ({e}): refused "
                         f"unopened (expected {EXPECTED})") from None
    for attempt in attempts:
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, attempt)
        except (ValueError, TypeError, x509.InvalidVersion):
            continue
        except UnsupportedAlgorithm as e:
            raise UsageError(f"{path}: the PKCS#12 file uses an algorithm this system's "
                             f"OpenSSL cannot read ({short_error(e)}); re-export it with AES-256 "
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
    """A binary file: PKCS#12, DER or PKCS#7, told apart (or refused) by its structure."""
    announced = der_length(data)
    if announced is not None and announced > len(data):
        raise UsageError(f"{path}: truncated: the DER structure announces {announced} bytes, "
                         f"the file has {len(data)} (expected {EXPECTED})")
    if looks_like_pkcs12(data):
        certs, key, main = _from_pkcs12(data, path, password)
        return "PKCS#12", certs, key, main
    try:
        return "DER", [x509.load_der_x509_certificate(data)], None, None
    except x509.InvalidVersion as e:
        raise UsageError(f"{path}: not a valid certificate ({short_error(e)})") from None
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


def public_key(cert: x509.Certificate) -> Any:
    """The certificate's public key, or None when ``cryptography`` cannot read it."""
    try:
        return cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return None


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def read_certificates(path: str, password: bytes | None = None
                      ) -> tuple[str, list[x509.Certificate], Any, x509.Certificate | None]:
    """``(form, certificates, private key or None, the key's certificate or None)``."""
    data = read_bytes(path)
    with warnings.catch_warnings():
        # A non-positive serial number is parsed with a deprecation warning: not the user's
        # concern here, and a warning must not break the one-line error contract.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        # A BER-encoded PKCS#12 file is read with a UserWarning ("could not be parsed as DER").
        warnings.simplefilter("ignore", UserWarning)
        if b"-----BEGIN" in data:
            certs = _from_pem(data, path)
            result: tuple[str, list[x509.Certificate], Any, x509.Certificate | None] = (
                "PEM", certs, None, None)
        else:
            result = _binary_certs(data, path, password)
    limits.CERTS_PER_FILE.check(f"{path}: the file holds", len(result[1]))
    for cert in result[1]:
        _touch(cert, path)
    return result


def _public_der(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))


def load(path: str, *, password: bytes | None = None, chain: str | None = None) -> LoadedCert:
    """Read the certificate under test (and ``chain``) the way ``check-cert`` does."""
    form, certs, key, key_cert = read_certificates(path, password)
    subject = key_cert or next((c for c in certs if not is_ca(c)), certs[0])
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


__all__ = ["EXPECTED", "MAX_FILE_BYTES", "PASSWORD_ENV", "LoadedCert", "is_ca", "load",
           "public_key", "read_certificates", "short_error"]
