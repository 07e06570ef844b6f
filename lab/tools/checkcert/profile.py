"""What the certificate says, and its clone: the profile the lab replays.

The certificate's profile (subject CN, SAN DNS names, EKUs or their absence, CDP URLs in order,
AIA URLs, validity relative to now) is cloned under a lab CA of the same kind (an AD CS
enterprise CA when the URLs or the issuer name show AD, a public CA when the CRL is on a public
web host; a two-tier PKI when the chain holds the issuing CA). :func:`replay_scenarios` turns
the profile into the replay's two scenarios (site CRL check on, off).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.clock import system_now
from lab.configmgr.ccmsetup import parse_ccmsetup
from lab.names import in_domain, is_dns_name, is_printable_url
from lab.pki.urls import (
    cert_aia_urls,
    cert_cdp_urls,
    cert_ocsp_urls,
    dn_domain,
    ldap_dn_parts,
    parse_url,
    url_host,
    url_scheme,
)
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
)
from lab.tools.checkcert.inputs import LoadedCert, public_key

SITE_CODE = "P01"
CLIENT_CA = "Lab-Clients-CA"
FALLBACK_DOMAIN = "corp.lab.local"

_CA_NAME_BAD = re.compile(r"[^A-Za-z0-9 ._()-]+")


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


def common_name(name: x509.Name) -> str | None:
    """The first non-empty CN of ``name``."""
    for attr in name.get_attributes_for_oid(NameOID.COMMON_NAME):
        if isinstance(attr.value, str) and attr.value:
            return attr.value
    return None


def _dns_ok(name: str) -> bool:
    """A DNS host name as a SAN may write it (a final dot allowed)."""
    return is_dns_name(name, allow_root_dot=True)


def subject_cn(cert: x509.Certificate) -> str | None:
    """The certificate's subject CN (see :func:`common_name`)."""
    return common_name(cert.subject)


def cert_ekus(cert: x509.Certificate) -> list[x509.ObjectIdentifier] | None:
    """The EKU OIDs, or None when there is no EKU extension."""
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return None


EKU_NAMES = {ExtendedKeyUsageOID.SERVER_AUTH: "Server Authentication",
             ExtendedKeyUsageOID.CLIENT_AUTH: "Client Authentication",
             ExtendedKeyUsageOID.CODE_SIGNING: "Code Signing",
             ExtendedKeyUsageOID.EMAIL_PROTECTION: "Secure Email",
             ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "Any Purpose"}


def eku_text(ekus: list[x509.ObjectIdentifier] | None) -> str:
    """``Server Authentication, Client Authentication`` (dotted OIDs for the unnamed)."""
    if ekus is None:
        return "(no EKU extension: any purpose)"
    return ", ".join(EKU_NAMES.get(o, o.dotted_string) for o in ekus) or "(empty)"


def _parent_domain(fqdn: str | None) -> str | None:
    if not fqdn or "." not in fqdn.strip("."):
        return None
    return fqdn.strip(".").split(".", 1)[1].lower()


def _name_domain(name: x509.Name) -> str | None:
    """The DC= components of a name, in display order (``CN=X,DC=contoso,DC=local``)."""
    dcs: list[str] = []
    for rdn in reversed(list(name.rdns)):
        for attr in rdn:
            if attr.oid == NameOID.DOMAIN_COMPONENT and isinstance(attr.value, str):
                dcs.append(attr.value)
    return ".".join(dcs).lower() if dcs else None


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
    ldap = [u for u in urls if url_scheme(u) == "ldap"]
    http_hosts = [url_host(u) for u in urls if url_scheme(u) == "http" and url_host(u)]
    ldap_domain = next((d for d in (dn_domain(ldap_dn_parts(u)) for u in ldap) if d), None)
    issuer_domain = _name_domain(issuer_name)
    intranet_domain = _parent_domain(intranet)
    if ldap or issuer_domain:
        kind = CAKind.ENTERPRISE
        domain = ldap_domain or issuer_domain or domain_hint or intranet_domain or FALLBACK_DOMAIN
        how = ("LDAP URLs" if ldap else "DC= components in the issuer name")
        why = f"an AD CS enterprise CA ({how}), AD domain {domain}"
    elif http_hosts and not any(in_domain(h, domain_hint or intranet_domain)
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
            parts = ldap_dn_parts(u)
            for i, (k, v) in enumerate(parts[:-1]):
                nxt = parts[i + 1]
                if (nxt[0] == "CN" and nxt[1].upper() == "CDP" and k == "CN" and i >= 1
                        and _dns_ok(v)):
                    short = v.lower()
        inside = [h for h in http_hosts if in_domain(h, domain)]
        host = (f"{short}.{domain}" if short else inside[0] if inside else f"ca.{domain}")
        if not _dns_ok(host):
            host = f"ca.{domain}"
    unusable = [u for u in urls if not _replayable(u)]
    if unusable:
        why += f"; URLs the lab cannot publish are left out of the clone: {', '.join(unusable)}"
    spec = CASpec(name=name, kind=kind, host=host, domain=domain,
                  cdp=tuple(u for u in cdp if _replayable(u)),
                  aia=tuple(u for u in aia if url_scheme(u) in ("http", "ldap", "file")
                            and _replayable(u)),
                  parent=parent)
    return CAProfile(spec, why)


def _replayable(url: str) -> bool:
    """Whether the lab can publish ``url`` (it parses, with a usable host and port)."""
    if not is_printable_url(url):
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
        key = public_key(issuer)
        if isinstance(key, rsa.RSAPublicKey) and algo is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algo)
            return True
        if isinstance(key, ec.EllipticCurvePublicKey) and algo is not None:
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algo))
            return True
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return False


def issuer_in(cert: x509.Certificate, pool: Sequence[x509.Certificate]
              ) -> x509.Certificate | None:
    """The certificate of ``pool`` that signed ``cert``, if any."""
    return next((c for c in pool if _signed_by(cert, c)), None)


def _clamp(when: dt.datetime) -> dt.datetime:
    low = dt.datetime(1950, 1, 2, tzinfo=dt.UTC)
    high = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)
    return min(max(when, low), high)


def _clone_san(cert: x509.Certificate) -> list[str]:
    """What the clone's SAN carries: DNS names, wildcards included."""
    return [n for n in (san_dns(cert) or []) if n.isascii()
            and (_dns_ok(n) or (n.startswith("*.") and _dns_ok(n[2:])))]


def _fqdns(cert: x509.Certificate, intranet: str | None, internet: str | None,
           notes: list[str]) -> tuple[str | None, str | None, str]:
    """(intranet FQDN, internet FQDN, where they came from): the options, else the
    certificate's host names in order."""
    names, cn = san_dns(cert), subject_cn(cert)
    hosts = [n for n in _clone_san(cert) if _dns_ok(n)]
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
    return intranet, internet, source


def _server_cas(loaded: LoadedCert, intranet: str | None, notes: list[str]) -> list[CAProfile]:
    """The issuing CA, under a lab root when the chain shows a two-tier PKI (root first)."""
    cert = loaded.cert
    issuer = issuer_in(cert, loaded.chain)
    two_tier = issuer is not None and issuer.issuer != issuer.subject
    domain_hint = (_name_domain(cert.issuer) or
                   next((d for u in cert_cdp_urls(cert) + cert_aia_urls(cert)
                         if url_scheme(u) == "ldap"
                         for d in [dn_domain(ldap_dn_parts(u))] if d), None))
    issuing_name = _sanitize_ca_name(common_name(cert.issuer), "Replay-CA")
    cas: list[CAProfile] = []
    if two_tier:
        assert issuer is not None
        root_name = _sanitize_ca_name(common_name(issuer.issuer), "Replay-Root-CA")
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
    cas.append(_derive_ca(cert, cert.issuer, intranet=intranet, name=issuing_name,
                          parent=cas[0].spec.name if cas else None, domain_hint=domain_hint))
    return cas


def _clone_eku(cert: x509.Certificate, notes: list[str]) -> tuple[EKU, ...]:
    """The EKUs the lab can write that keep the certificate's meaning."""
    eku_oids = cert_ekus(cert)
    if eku_oids is None or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku_oids:
        if eku_oids is not None:
            notes.append("anyExtendedKeyUsage is replayed as no EKU extension (both mean any "
                         "purpose to CryptoAPI)")
        return ()
    eku = tuple(e for o, e in ((ExtendedKeyUsageOID.SERVER_AUTH, EKU.SERVER_AUTH),
                               (ExtendedKeyUsageOID.CLIENT_AUTH, EKU.CLIENT_AUTH))
                if o in eku_oids)
    others = [o for o in eku_oids if o not in (ExtendedKeyUsageOID.SERVER_AUTH,
                                               ExtendedKeyUsageOID.CLIENT_AUTH)]
    if not eku:
        notes.append(f"the EKUs {eku_text(others)} are replayed as Client Authentication "
                     "(the lab writes Server and Client Authentication only; what matters, "
                     "no Server Authentication, is kept)")
        return (EKU.CLIENT_AUTH,)
    if others:
        notes.append(f"the EKUs {eku_text(others)} are not replayed (the lab writes "
                     "Server and Client Authentication only)")
    return eku


def _clone_subject(cert: x509.Certificate, dns: list[str], notes: list[str]) -> str | None:
    """The clone's subject CN (None: an empty subject, the SAN names the host)."""
    names = san_dns(cert)
    if names is not None and len(dns) != len(names):
        dropped = [n for n in names if n not in dns]
        notes.append(f"SAN DNS names the lab cannot write are dropped: {', '.join(dropped)}")
    if names is not None and not dns:
        notes.append("the SAN holds no DNS name: the clone has no SAN extension, so clients "
                     "match the CN instead (Windows would match nothing)")
    subject = subject_cn(cert)
    if subject is None:
        return "(no subject name)" if not dns else None
    if len(subject) > 64:
        notes.append("the subject CN is longer than 64 characters: replayed truncated")
        return subject[:64]
    return subject


def build_profile(loaded: LoadedCert, intranet: str | None, internet: str | None,
                  now: dt.datetime | None = None) -> Profile:
    """The replay's PKI and MP, derived from the certificate (see the module docstring)."""
    cert = loaded.cert
    now = now or system_now()
    notes: list[str] = []
    intranet, internet, source = _fqdns(cert, intranet, internet, notes)
    cas = _server_cas(loaded, intranet, notes)
    ad_domain = next((c.spec.domain for c in cas if c.spec.domain), None)
    ad_domain = ad_domain or _parent_domain(intranet) or FALLBACK_DOMAIN

    # The MP certificate's clone.
    eku = _clone_eku(cert, notes)
    dns = _clone_san(cert)
    subject = _clone_subject(cert, dns, notes)
    skip = None
    if intranet is None:
        skip = ("the certificate names no DNS host (no SAN DNS name, no CN that is a host "
                "name): give --intranet-fqdn (and --internet-fqdn) to replay it")
    nvb, nva = _clamp(cert.not_valid_before_utc), _clamp(cert.not_valid_after_utc)
    if nva <= nvb:
        skip = "the certificate's validity ends before it starts: the lab cannot issue it"
    mp_cert = CertSpec(issuer=cas[-1].spec.name,
                       san=tuple(dns) if san_dns(cert) is not None else (),
                       eku=eku, cdp=None, not_before=nvb - now, not_after=nva - now,
                       subject=subject)
    if cert_ocsp_urls(cert):
        notes.append("OCSP URLs are not replayed (the lab checks revocation with CRLs only)")
    return Profile(intranet_fqdn=intranet, internet_fqdn=internet, fqdn_source=source,
                   cas=cas, ad_domain=ad_domain, mp_cert=mp_cert, notes=notes, skip_reason=skip)


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
    from lab.results.grid import SITUATION_BY_KEY, situation_steps

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
            steps=situation_steps(sit)))
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
