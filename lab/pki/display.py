"""How the lab names a certificate in messages.

A certificate from the Workstation Authentication template has an empty subject: its name is
in the Subject Alternative Name only (reference §3.3b). Messages then name the SAN's DNS names
instead of printing an empty string.
"""

from __future__ import annotations

from cryptography import x509


def san_dns_names(cert: x509.Certificate) -> list[str]:
    """The DNS names in the certificate's SAN (none when it has no SAN)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


def subject_label(cert: x509.Certificate) -> str:
    """The subject (RFC 4514), or ``(empty subject, SAN DNS:name)`` when it is empty."""
    subject = cert.subject.rfc4514_string()
    if subject:
        return subject
    names = ", ".join(f"DNS:{n}" for n in san_dns_names(cert)) or "no SAN"
    return f"(empty subject, {names})"


def issued_to(cert: x509.Certificate) -> str:
    """What Windows' "Issued To" column shows: the subject's CN, else the first SAN DNS name,
    else the whole subject [I]."""
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cns:
        return str(cns[0].value)
    names = san_dns_names(cert)
    return names[0] if names else cert.subject.rfc4514_string()
