"""CDP and AIA URLs as AD CS and public CAs write them into certificates.

AD CS templates (reference §4.1-4.3)::

    ldap:///CN=<CATruncatedName><CRLNameSuffix>,CN=<ServerShortName>,CN=CDP,
        CN=Public Key Services,CN=Services,<ConfigurationContainer><CDPObjectClass>
    http://<ServerDNSName>/CertEnroll/<CaName><CRLNameSuffix><DeltaCRLAllowed>.crl
    ldap:///CN=<CATruncatedName>,CN=AIA,CN=Public Key Services,CN=Services,
        <ConfigurationContainer><CAObjectClass>
    http://<ServerDNSName>/CertEnroll/<ServerDNSName>_<CaName><CertificateName>.crt

Spaces are percent-encoded in issued certificates (``CN=Public%20Key%20Services``,
``QA%20Venafi%20CA.crl``), as real AD CS certificates show.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from cryptography import x509

from lab.scenario.model import CAKind, CASpec


def _enc(text: str) -> str:
    """Percent-encode what AD CS encodes in URLs (spaces and other unsafe characters)."""
    return quote(text, safe="=,.-_()+:/!*'")


def config_dn(domain: str) -> str:
    """``CN=Configuration,DC=contoso,DC=local`` for ``contoso.local``."""
    return "CN=Configuration," + ",".join(f"DC={part}" for part in domain.split("."))


def short_name(host: str) -> str:
    """``ca01`` for ``ca01.contoso.local`` (AD CS ``<ServerShortName>``)."""
    return host.split(".", 1)[0]


def enterprise_ldap_cdp(ca: CASpec) -> str:
    assert ca.domain is not None
    dn = (f"CN={ca.name},CN={short_name(ca.host)},CN=CDP,CN=Public Key Services,"
          f"CN=Services,{config_dn(ca.domain)}")
    return f"ldap:///{_enc(dn)}?certificateRevocationList?base?objectClass=cRLDistributionPoint"


def enterprise_http_cdp(ca: CASpec) -> str:
    return f"http://{ca.host}/CertEnroll/{_enc(ca.name)}.crl"


def enterprise_ldap_aia(ca: CASpec) -> str:
    assert ca.domain is not None
    dn = f"CN={ca.name},CN=AIA,CN=Public Key Services,CN=Services,{config_dn(ca.domain)}"
    return f"ldap:///{_enc(dn)}?cACertificate?base?objectClass=certificationAuthority"


def enterprise_http_aia(ca: CASpec) -> str:
    return f"http://{ca.host}/CertEnroll/{ca.host}_{_enc(ca.name)}.crt"


def public_http_cdp(ca: CASpec) -> str:
    return f"http://{ca.host}/{_enc(ca.name.replace(' ', ''))}.crl"


def public_http_aia(ca: CASpec) -> str:
    return f"http://{ca.host}/{_enc(ca.name.replace(' ', ''))}.crt"


def delta_url(base: str) -> str | None:
    """The delta CRL location next to the base CRL location ``base`` (AD CS's
    ``<DeltaCRLAllowed>`` is ``+`` for the delta CRL, reference §4.2-4.3): an LDAP URL reads
    the CDP object's ``deltaRevocationList``, an HTTP URL ending in ``.crl`` names
    ``<name>+.crl``. None for any other URL (``file://``, or a name AD CS's template did not
    make)."""
    lowered = base.lower()
    if lowered.startswith("ldap:"):
        marker = "?certificaterevocationlist?"
        at = lowered.find(marker)
        if at < 0:
            return None
        return base[:at] + "?deltaRevocationList?" + base[at + len(marker):]
    if lowered.startswith("http:") and lowered.endswith(".crl") and "?" not in base:
        return base[: -len(".crl")] + "+.crl"
    return None


def expand_delta(ca: CASpec) -> tuple[str, ...]:
    """Delta CRL URLs (the base CRL's Freshest CRL), in CDP order.

    ``delta_cdp`` entries: ``"ldap"`` = the CDP object's ``deltaRevocationList``, ``"http"`` =
    ``<CaName>+.crl`` (AD CS's ``<DeltaCRLAllowed>`` suffix), or full URLs; an empty list =
    no delta CRLs. None (not given) = AD CS's default: an enterprise CA publishes delta CRLs
    (reference §4.4) and every LDAP and HTTP CDP location carries "Include in CRLs. Clients use
    this to find Delta CRL locations" (the default LDAP and HTTP entries, reference §4.2; the
    Microsoft guide ticks it for an added HTTP location too), so each gets its delta location;
    a public CA publishes none."""
    if ca.delta_cdp is None:
        if ca.kind is not CAKind.ENTERPRISE:
            return ()
        deltas = (delta_url(u) for u in expand(ca, ca.cdp))
        return tuple(dict.fromkeys(u for u in deltas if u is not None))
    urls: list[str] = []
    for entry in ca.delta_cdp:
        if entry == "ldap":
            found = delta_url(enterprise_ldap_cdp(ca))
            assert found is not None
            urls.append(found)
        elif entry == "http":
            base = (enterprise_http_cdp(ca) if ca.kind is CAKind.ENTERPRISE
                    else public_http_cdp(ca))
            urls.append(base[: -len(".crl")] + "+.crl")
        else:
            urls.append(entry)
    return tuple(urls)


DEFAULT_CDP = {CAKind.ENTERPRISE: ("ldap", "http"), CAKind.PUBLIC: ("http",)}
DEFAULT_AIA = {CAKind.ENTERPRISE: ("ldap", "http"), CAKind.PUBLIC: ("http",)}


def expand(ca: CASpec, entries: tuple[str, ...] | None, *, aia: bool = False) -> tuple[str, ...]:
    """Turn ``("ldap", "http", "http://x/y.crl")`` into the URLs written into certificates."""
    if entries is None:
        entries = (DEFAULT_AIA if aia else DEFAULT_CDP)[ca.kind]
    urls: list[str] = []
    for entry in entries:
        if entry == "ldap":
            urls.append(enterprise_ldap_aia(ca) if aia else enterprise_ldap_cdp(ca))
        elif entry == "http":
            if ca.kind is CAKind.ENTERPRISE:
                urls.append(enterprise_http_aia(ca) if aia else enterprise_http_cdp(ca))
            else:
                urls.append(public_http_aia(ca) if aia else public_http_cdp(ca))
        else:
            urls.append(entry)
    return tuple(urls)


@dataclass(frozen=True)
class ParsedUrl:
    """A CDP/AIA URL taken apart the way the lab's retrieval code needs it."""

    scheme: str
    """``ldap``, ``http`` or ``file`` (lower case)."""
    host: str
    """Lower-case host; empty for hostless ``ldap:///`` (a DC of the machine's own domain)."""
    port: int
    path: str
    """HTTP path (percent-encoded, as sent) or the LDAP DN (decoded)."""
    attribute: str
    """LDAP attribute (``certificateRevocationList``); empty for HTTP."""
    scope: str = ""
    """LDAP scope (``base``, ``one``, ``sub``; empty: base, RFC 4516's default)."""
    filter: str = ""
    """LDAP filter as the URL writes it (``objectClass=cRLDistributionPoint``); empty: any."""


def parse_url(url: str) -> ParsedUrl:
    """Take ``url`` apart; an LDAP URL as RFC 4516 writes it:
    ``ldap://host:port/dn?attributes?scope?filter?extensions`` (``ldap:///``: no host)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme == "ldap":
        dn = unquote(parts.path.lstrip("/"))
        fields = [unquote(f) for f in parts.query.split("?")] if parts.query else []
        fields += [""] * (3 - len(fields))
        attribute = fields[0].split(",", 1)[0]
        return ParsedUrl(scheme, host, parts.port or 389, dn, attribute, fields[1].lower(),
                         fields[2])
    default_port = {"http": 80, "https": 443}.get(scheme, 0)
    path = parts.path or "/"
    return ParsedUrl(scheme, host, parts.port or default_port, path, "")


def cert_cdp_urls(cert: x509.Certificate) -> tuple[str, ...]:
    """The CDP URLs of ``cert`` in certificate order (empty when it has no CDP extension)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return ()
    urls: list[str] = []
    for dp in ext:
        for name in dp.full_name or []:
            if isinstance(name, x509.UniformResourceIdentifier):
                urls.append(name.value)
    return tuple(urls)


def _access_urls(cert: x509.Certificate, method: x509.ObjectIdentifier) -> tuple[str, ...]:
    """The URI locations of ``cert``'s AIA extension with access ``method``, in order."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(d.access_location.value for d in ext
                 if d.access_method == method
                 and isinstance(d.access_location, x509.UniformResourceIdentifier))


def cert_aia_urls(cert: x509.Certificate) -> tuple[str, ...]:
    """The caIssuers URLs of ``cert``."""
    return _access_urls(cert, x509.oid.AuthorityInformationAccessOID.CA_ISSUERS)


def cert_ocsp_urls(cert: x509.Certificate) -> tuple[str, ...]:
    """The OCSP responder URLs of ``cert`` (its AIA extension's ``ocsp`` entries)."""
    return _access_urls(cert, x509.oid.AuthorityInformationAccessOID.OCSP)


def url_scheme(url: str) -> str:
    """``ldap`` for ``LDAP:///CN=...``: the scheme in lower case, empty when there is none."""
    return url.split(":", 1)[0].lower() if ":" in url else ""


def url_host(url: str) -> str:
    """The lower-case host of ``url``; empty for ``ldap:///`` and for a URL that does not
    parse."""
    try:
        return (urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


def ldap_dn_parts(url: str) -> list[tuple[str, str]]:
    """``[("CN", "Contoso-CA"), ("CN", "ca01"), ..., ("DC", "local")]``: the DN of an LDAP URL
    as (upper-case attribute, value) pairs; empty when the URL does not parse."""
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


def dn_domain(parts: Sequence[tuple[str, str]]) -> str | None:
    """``contoso.local`` from the ``DC=`` parts of :func:`ldap_dn_parts`, or None."""
    dcs = [v for k, v in parts if k == "DC" and v]
    return ".".join(dcs).lower() if dcs else None
