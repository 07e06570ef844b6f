"""How the ConfigMgr client picks its PKI client certificate (reference §3.4, §1.3).

In order: certificates in the computer's Personal store that are time-valid (by the
computer's own clock) and have the Client Authentication capability; then ``CCMCERTSEL``
(``Subject:`` exact, case-sensitive on the subject; ``SubjectStr:`` partial, case-insensitive;
``SubjectAttr:OID = value``; SAN entries case-insensitive) or, without it, a subject or SAN that
contains the computer name; then, if several remain, ``CCMFIRSTCERT=1`` picks the one with the
longest validity, otherwise selection fails.

Not modelled: the client does not check its own certificate's revocation here (field reports
show revoked client certificates reaching IIS, which answers 403.13) [I].
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab import codes
from lab.codes import Code
from lab.configmgr.ccmsetup import CcmsetupCommand
from lab.cryptoapi.chain import dns_names, has_usage
from lab.pki.build import IssuedCert


@dataclass(frozen=True)
class Selection:
    cert: IssuedCert | None
    error: Code | None
    detail: str


def _subject_strings(cert: x509.Certificate) -> list[str]:
    cns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [cert.subject.rfc4514_string(), *cns]


def matches_criteria(cert: x509.Certificate, criteria: str) -> bool:
    kind, _, value = criteria.partition(":")
    kind = kind.strip().lower()
    sans = [n.lower() for n in dns_names(cert)]
    if kind == "subject":
        return value in _subject_strings(cert) or value.lower() in sans
    if kind == "subjectstr":
        needle = value.lower()
        return any(needle in s.lower() for s in _subject_strings(cert)) or \
            any(needle in s for s in sans)
    if kind == "subjectattr":
        oid, _, wanted = value.partition("=")
        try:
            attrs = cert.subject.get_attributes_for_oid(x509.ObjectIdentifier(oid.strip()))
        except ValueError:
            return False
        return any(str(a.value) == wanted.strip() for a in attrs)
    return False


def select_certificate(store: tuple[IssuedCert, ...], cmd: CcmsetupCommand, computer: str,
                       now: dt.datetime) -> Selection:
    if not store:
        return Selection(None, codes.CCM_EMPTY_CERT_STORE,
                         "the computer's Personal store holds no certificate")
    usable = [c for c in store
              if c.cert.not_valid_before_utc <= now <= c.cert.not_valid_after_utc
              and has_usage(c.cert, ExtendedKeyUsageOID.CLIENT_AUTH)]
    criteria = cmd.cert_selection
    if criteria:
        candidates = [c for c in usable if matches_criteria(c.cert, criteria)]
        rule = f"CCMCERTSEL=\"{criteria}\""
    else:
        name = computer.split(".", 1)[0].lower()
        candidates = [c for c in usable
                      if any(name in s.lower() for s in _subject_strings(c.cert))
                      or any(name in s.lower() for s in dns_names(c.cert))]
        rule = f"a subject containing the computer name {name!r}"
    if not candidates:
        skipped = len(store) - len(usable)
        why = (f" ({skipped} of {len(store)} not time-valid by the computer's clock or without "
               "Client Authentication)" if skipped else "")
        return Selection(None, codes.CCM_NO_MATCHING_CERT,
                         f"no certificate in the Personal store matches {rule}{why}")
    if len(candidates) > 1:
        if not cmd.first_cert:
            return Selection(None, codes.CCM_SEVERAL_CERTS,
                             f"{len(candidates)} certificates match {rule} and CCMFIRSTCERT=1 "
                             "was not given")
        best = max(candidates, key=lambda c: c.cert.not_valid_after_utc)
        return Selection(best, None, f"{len(candidates)} certificates match {rule}; "
                         "CCMFIRSTCERT=1 picks the one with the longest validity")
    return Selection(candidates[0], None, f"the certificate matching {rule}")
