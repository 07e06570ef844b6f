"""Build a scenario's PKI: CA certificates, the MP's server certificate, client
certificates, CRLs, and the list of what each CA publishes where.

Keys and certificates come from the :class:`~lab.pki.cache.PKICache` when nothing that shaped
them has changed; CRLs are signed fresh at every build from the lab clock, so their
thisUpdate/nextUpdate always match the run's time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab import codes
from lab.clock import Clock
from lab.codes import Code
from lab.names import is_internal_name
from lab.pki.cache import PKICache, PrivateKey
from lab.pki.schedule import CrlIssue, CrlSchedule
from lab.pki.urls import cert_cdp_urls, delta_url, expand, expand_delta
from lab.scenario.model import EKU, CAKind, CASpec, CertSpec, Scenario

PROFILE_VERSION = "2"
"""Bumped whenever what a certificate carries changes, so cached certificates are reissued.
2: end-entity certificates as AD CS templates make them (reference §3.3c)."""
CA_VALIDITY = dt.timedelta(days=5 * 365)
LEAF_VALIDITY = dt.timedelta(days=365)
BACKDATE = dt.timedelta(days=1)
"""How far back a CA certificate's notBefore lies (the lab's choice for its CAs)."""
LEAF_BACKDATE = dt.timedelta(minutes=10)
"""AD CS sets an issued certificate's notBefore ``ClockSkewMinutes`` (default 10) before the
time of issue (reference §3.3c); the lab's public CA does the same [I]."""
RENEW_BEFORE = dt.timedelta(days=30)
# How far a cached certificate's explicit dates may drift from the dates asked for.
EXPLICIT_DATES_TOLERANCE = dt.timedelta(minutes=1)
CRL_VALIDITY = CASpec.crl_period
"""AD CS's default base CRL period is one week (reference §4.4a): ``[[ca]] crl_period``'s
default."""
DELTA_CRL_VALIDITY = CASpec.delta_period
"""AD CS's default delta CRL period is one day (reference §4.4a): ``delta_period``'s default."""

EKU_OIDS = {EKU.SERVER_AUTH: ExtendedKeyUsageOID.SERVER_AUTH,
            EKU.CLIENT_AUTH: ExtendedKeyUsageOID.CLIENT_AUTH}

APPLICATION_POLICIES_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.21.10")
"""szOID_APPLICATION_CERT_POLICIES: Application Policies, encoded as Certificate Policies with
one PolicyInformation per OID (MS-WCCE 2.2.2.7.7.3)."""


@dataclass(frozen=True)
class Template:
    """A duplicated (version 2) AD CS template as ConfigMgr's PKI example creates it."""

    name: str
    """Its display name (what certlm.msc's Certificate Template column shows)."""
    arc: int
    """The last arc of its OID under the forest's 1.3.6.1.4.1.311.21.8.x.y.z arc."""
    major: int = 100
    minor: int = 3


WEB_SERVER_TEMPLATE = Template("ConfigMgr Web Server Certificate", 1)
"""Duplicated from Web Server; subject supplied in the request (reference §3.3b)."""
CLIENT_TEMPLATE = Template("ConfigMgr Client Certificate", 2)
"""Duplicated from Workstation Authentication; subject built from AD: an empty subject and
the computer's DNS name in the SAN (reference §3.3b)."""


def template_oid(domain: str | None, template: Template) -> str:
    """The template's OID: AD CS gives each forest a random arc under 1.3.6.1.4.1.311.21.8;
    the lab derives it from the domain so that it is stable from run to run."""
    seed = hashlib.sha256((domain or "").lower().encode()).digest()
    forest = ".".join(str(int.from_bytes(seed[i:i + 3], "big")) for i in range(0, 18, 3))
    return f"1.3.6.1.4.1.311.21.8.{forest}.{template.arc}"


def template_extension(domain: str | None, template: Template) -> x509.MSCertificateTemplate:
    """Certificate Template Information: SEQUENCE {templateID, majorVersion, minorVersion}."""
    return x509.MSCertificateTemplate(x509.ObjectIdentifier(template_oid(domain, template)),
                                      template.major, template.minor)


def application_policies(usages: list[x509.ObjectIdentifier]) -> x509.UnrecognizedExtension:
    """Application Policies mirroring the EKU, as a version 2 template writes them."""
    value = x509.CertificatePolicies(
        [x509.PolicyInformation(u, None) for u in usages]).public_bytes()
    return x509.UnrecognizedExtension(APPLICATION_POLICIES_OID, value)


@dataclass(frozen=True)
class IssuedCert:
    """A leaf certificate with its key on disk."""

    label: str
    cert: x509.Certificate
    cert_pem: bytes
    key_path: Path
    """Private key (PEM, mode 0600). Never served."""
    chain_path: Path
    """Certificate followed by its issuing CAs below the root (what a server sends)."""
    cert_path: Path
    issuer: str
    revoked: bool

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def thumbprint(self) -> str:
        """SHA-1 thumbprint in upper-case hex, as Windows shows it."""
        return self.cert.fingerprint(hashes.SHA1()).hex().upper()


@dataclass(frozen=True)
class BuiltCA:
    spec: CASpec
    cert: x509.Certificate
    cert_pem: bytes
    key: PrivateKey
    cdp_urls: tuple[str, ...]
    """The CDP URLs this CA writes into the certificates it issues."""
    aia_urls: tuple[str, ...]
    crl: x509.CertificateRevocationList
    crl_der: bytes
    chain: tuple[x509.Certificate, ...] = ()
    """This CA's certificate, then its issuers up to the root."""
    delta_crl: x509.CertificateRevocationList | None = None
    delta_urls: tuple[str, ...] = ()

    @property
    def is_root(self) -> bool:
        return self.cert.issuer == self.cert.subject

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def cert_der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class Publication:
    """Something a CA publishes at a URL: its CRL (at each CDP) or its certificate (AIA)."""

    url: str
    kind: str
    """``crl`` or ``cacert``; ``missing``: a CRL withheld (check-cert's replay condition),
    served as nothing at all."""
    ca: str
    data: bytes
    """DER bytes."""

    @property
    def content_type(self) -> str:
        return "application/pkix-crl" if self.kind == "crl" else "application/pkix-cert"


@dataclass(frozen=True)
class IssuanceRefusal:
    """A CA declined to issue a certificate: a public CA plan's name limit, or a public CA
    asked for internal names (reference §3.7)."""

    label: str
    ca: str
    requested: tuple[str, ...]
    limit: int
    internal: tuple[str, ...] = ()
    """The internal names that made a public CA refuse (empty: the plan's limit did)."""

    @property
    def code(self) -> Code:
        return codes.LAB_CA_INTERNAL_NAME if self.internal else codes.LAB_CA_PLAN_NAME_LIMIT

    @property
    def message(self) -> str:
        if self.internal:
            names = ", ".join(self.internal)
            plural = len(self.internal) != 1
            return (f"{self.ca} refused the request: {names} {'are' if plural else 'is an'} "
                    f"internal name{'s' if plural else ''} (a single label or a top-level "
                    "domain that is not in the public DNS). Public CAs have not issued "
                    "certificates for internal names since the CA/Browser Forum's deadline "
                    "of 1 November 2015; use an intranet FQDN under a public domain, or an "
                    "enterprise CA for the intranet name")
        names = ", ".join(self.requested)
        return (f"{self.ca} refused the request: its plan allows {self.limit} "
                f"subject name{'s' if self.limit != 1 else ''} per certificate, "
                f"the request asked for {len(self.requested)} ({names})")


@dataclass(frozen=True)
class BuiltPKI:
    cas: Mapping[str, BuiltCA]
    mp: IssuedCert | None
    mp_refusal: IssuanceRefusal | None
    clients: Mapping[str, IssuedCert]
    """The first client certificate by client name (a client without one is absent)."""
    stores: Mapping[str, tuple[IssuedCert, ...]]
    """Every certificate in each client's Personal store, by client name."""
    publications: tuple[Publication, ...]
    """What the CAs have published at :attr:`built_at` (the scenario's start)."""
    built_at: dt.datetime
    stats: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    publisher: CrlPublisher | None = None
    """The CAs' CRL publication schedules (None: the publications never change)."""

    def publications_at(self, now: dt.datetime) -> tuple[Publication, ...]:
        """What the CAs have published at ``now``: each CA's latest base (and delta) CRL by
        its schedule, and the CA certificates."""
        if self.publisher is None:
            return self.publications
        return self.publisher.publications(now)

    def publication_key(self, now: dt.datetime) -> tuple[int, ...]:
        """Equal for two instants at which every CA's published CRLs are the same."""
        return () if self.publisher is None else self.publisher.key(now)

    def trust_pem(self, names: tuple[str, ...] | None = None) -> bytes:
        """The root CA certificates (all, or those named), concatenated: a trust store."""
        return b"".join(ca.cert_pem for name, ca in self.cas.items()
                        if ca.is_root and (names is None or name in names))

    def roots(self, names: tuple[str, ...] | None = None) -> tuple[x509.Certificate, ...]:
        return tuple(ca.cert for name, ca in self.cas.items()
                     if ca.is_root and (names is None or name in names))

    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """Issuing CAs below a root (what servers send along with their certificate)."""
        return tuple(ca.cert for ca in self.cas.values() if not ca.is_root)


@dataclass(frozen=True)
class _CAMaterial:
    spec: CASpec
    cert: x509.Certificate
    key: PrivateKey
    cdp_urls: tuple[str, ...]
    aia_urls: tuple[str, ...]
    chain: tuple[x509.Certificate, ...]
    """This CA's certificate, then its issuers up to the root."""


def _digest(*parts: object) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:40]


def _spki(key: PrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ).hex()


def _usable(cert: x509.Certificate | None, now: dt.datetime) -> bool:
    return (cert is not None and cert.not_valid_before_utc <= now
            and cert.not_valid_after_utc - RENEW_BEFORE > now)


def _ca_name(spec: CASpec) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, spec.name)]
    if spec.kind is CAKind.ENTERPRISE and spec.domain:
        # AD CS enterprise CA subjects carry the domain components: CN=..., DC=contoso, DC=local
        attrs += [x509.NameAttribute(NameOID.DOMAIN_COMPONENT, dc)
                  for dc in spec.domain.split(".")]
    else:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, spec.name))
    return x509.Name(list(reversed(attrs)))


def _cdp_ext(urls: tuple[str, ...]) -> x509.CRLDistributionPoints:
    # AD CS writes every URL into one DistributionPoint's fullName, in configured order.
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(u) for u in urls],
        relative_name=None, reasons=None, crl_issuer=None)])


def _aia_ext(urls: tuple[str, ...]) -> x509.AuthorityInformationAccess:
    return x509.AuthorityInformationAccess([
        x509.AccessDescription(x509.oid.AuthorityInformationAccessOID.CA_ISSUERS,
                               x509.UniformResourceIdentifier(u)) for u in urls])


def _key_usage(*, ca: bool, crl_sign: bool = True) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=not ca,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca,
        crl_sign=ca and crl_sign, encipher_only=False, decipher_only=False)


def _leaf_subject(common_name: str) -> x509.Name:
    """CN=<name>, or an empty subject when the name is longer than a CN may be (64 bytes):
    the DNS name then lives in the SAN only, as with AD CS "supply in the request"."""
    if 1 <= len(common_name.encode("utf-8")) <= 64:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    return x509.Name([])


def _client_subject(scenario: Scenario, spec: CertSpec, fqdn: str) -> str | None:
    """A client certificate's subject CN: the scenario's ``subject``; else none at all from an
    enterprise CA (Workstation Authentication builds the subject from AD with subject name
    format None and puts the DNS name into the SAN, reference §3.3b); else the FQDN (a
    public CA's request names it)."""
    if spec.subject:
        return spec.subject
    if scenario.ca(spec.issuer).kind is CAKind.ENTERPRISE:
        return None
    return fqdn


def _parents_first(specs: tuple[CASpec, ...]) -> list[CASpec]:
    by_name = {s.name: s for s in specs}
    ordered: list[CASpec] = []

    def visit(spec: CASpec) -> None:
        if spec in ordered:
            return
        if spec.parent is not None:
            visit(by_name[spec.parent])
        ordered.append(spec)

    for spec in specs:
        visit(spec)
    return ordered


CA_VERSION_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.21.1")
"""szOID_CERTSRV_CA_VERSION, certutil's "CA Version" (reference §4.4)."""
NEXT_CRL_PUBLISH_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.21.4")
"""szOID_CRL_NEXT_PUBLISH, certutil's "Next CRL Publish" (reference §4.4)."""
PUBLISHED_CRL_LOCATIONS_OID = x509.ObjectIdentifier("1.3.6.1.4.1.311.21.14")
"""szOID_CRL_SELF_CDP, certutil's "Published CRL Locations" (reference §4.4)."""
CRL_OVERLAP_MAX = dt.timedelta(hours=12)
"""AD CS's default CRL overlap: 10% of the CRL period, at most 12 hours (reference §4.4)."""


def _der_utctime(when: dt.datetime) -> bytes:
    body = when.astimezone(dt.UTC).strftime("%y%m%d%H%M%SZ").encode()
    return bytes([0x17, len(body)]) + body


def next_crl_publish(this_update: dt.datetime, next_update: dt.datetime) -> dt.datetime:
    """When AD CS publishes the next CRL: nextUpdate less the overlap (10% of the period, at
    most 12 hours), never before thisUpdate (reference §4.4, [I])."""
    overlap = min((next_update - this_update) / 10, CRL_OVERLAP_MAX)
    return max(this_update, next_update - max(overlap, dt.timedelta(0)))


def adcs_crl_extensions(builder: x509.CertificateRevocationListBuilder, m: _CAMaterial, *,
                        this_update: dt.datetime, next_update: dt.datetime,
                        delta_urls: tuple[str, ...] = (), delta_of: int | None = None,
                        next_publish: dt.datetime | None = None,
                        ) -> x509.CertificateRevocationListBuilder:
    """The extensions an AD CS CA writes into its CRLs besides the CRL number and the
    authority key identifier (reference §4.4): CA Version (V0.0: the CA's first key), Next CRL
    Publish, on a base CRL the Freshest CRL naming the delta locations, on a delta CRL the
    critical Delta CRL Indicator with its base's number, and Published CRL Locations (the
    LDAP location, AD CS's "Include in all CRLs"). A public CA's CRL gets only the standard
    ones (Freshest CRL, Delta CRL Indicator)."""
    adcs = m.spec.kind is CAKind.ENTERPRISE
    if adcs:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(CA_VERSION_OID, b"\x02\x01\x00"), critical=False)
        when = next_publish if next_publish is not None else next_crl_publish(this_update,
                                                                               next_update)
        builder = builder.add_extension(
            x509.UnrecognizedExtension(NEXT_CRL_PUBLISH_OID, _der_utctime(when)),
            critical=False)
    if delta_of is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
    elif delta_urls:
        builder = builder.add_extension(x509.FreshestCRL([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(u) for u in delta_urls],
            relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
    ldap = [u for u in m.cdp_urls if u.lower().startswith("ldap:")][:1]
    if delta_of is not None:
        ldap = [d for d in map(delta_url, ldap) if d is not None]
    if ldap and adcs:
        value = _cdp_ext(tuple(ldap)).public_bytes()
        builder = builder.add_extension(
            x509.UnrecognizedExtension(PUBLISHED_CRL_LOCATIONS_OID, value), critical=False)
    return builder


class _Builder:
    def __init__(self, scenario: Scenario, clock: Clock, cache: PKICache) -> None:
        self.scenario = scenario
        self.now = clock.now()
        self.cache = cache
        self.cas: dict[str, _CAMaterial] = {}
        self.revoked: dict[str, list[x509.Certificate]] = {}

    def _reuse(self, digest: str, not_before: dt.datetime | None = None,
               not_after: dt.datetime | None = None) -> x509.Certificate | None:
        """A cached certificate that still fits: valid for 30 more days, or (explicit
        dates) within a minute of the dates asked for. Explicit dates are relative to now and
        a scenario may play them against an hour's clock skew, so a certificate issued an hour
        ago for "expired an hour ago" no longer fits."""
        cert = self.cache.load_cert(digest)
        if cert is None:
            return None
        if not_before is None or not_after is None:
            return cert if _usable(cert, self.now) else None
        close = EXPLICIT_DATES_TOLERANCE
        if (abs(cert.not_valid_before_utc - not_before) < close
                and abs(cert.not_valid_after_utc - not_after) < close):
            return cert
        return None

    def build_ca(self, spec: CASpec) -> _CAMaterial:
        key = self.cache.key(f"ca-{spec.name}-{spec.host}")
        parent = self.cas[spec.parent] if spec.parent else None
        issuer_name = parent.cert.subject if parent else _ca_name(spec)
        issuer_key = parent.key if parent else key
        digest = _digest("ca", PROFILE_VERSION, spec.name, spec.kind, spec.host, spec.domain,
                         spec.crl_sign, _spki(key),
                         parent.cert.fingerprint(hashes.SHA256()).hex() if parent else None,
                         parent.cdp_urls if parent else None, parent.aia_urls if parent else None)
        cert = self._reuse(digest)
        if cert is None:
            builder = (
                x509.CertificateBuilder()
                .subject_name(_ca_name(spec)).issuer_name(issuer_name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(self.now - BACKDATE)
                .not_valid_after(self.now - BACKDATE + CA_VALIDITY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0 if parent else None),
                               critical=True)
                .add_extension(_key_usage(ca=True, crl_sign=spec.crl_sign), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
            )
            if parent is not None:
                builder = builder.add_extension(
                    x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),
                    critical=False)
                if parent.cdp_urls:
                    builder = builder.add_extension(_cdp_ext(parent.cdp_urls), critical=False)
                if parent.aia_urls:
                    builder = builder.add_extension(_aia_ext(parent.aia_urls), critical=False)
            cert = builder.sign(issuer_key, hashes.SHA256())
            self.cache.store_cert(digest, cert)
        chain = (cert, *parent.chain) if parent else (cert,)
        material = _CAMaterial(spec=spec, cert=cert, key=key, cdp_urls=expand(spec, spec.cdp),
                               aia_urls=expand(spec, spec.aia, aia=True), chain=chain)
        self.cas[spec.name] = material
        return material

    def issue(self, label: str, spec: CertSpec, *, subject_cn: str | None, default_eku: EKU,
              key_label: str, template: Template) -> IssuedCert:
        """Issue a leaf as its CA makes it (reference §3.3c): an enterprise CA through a
        version 2 template (Certificate Template Information and Application Policies, no
        Basic Constraints), a public CA with a critical Basic Constraints CA:FALSE. ``subject_cn``
        None means an empty subject (Workstation Authentication's "None" subject format)."""
        ca = self.cas[spec.issuer]
        kind = ca.spec.kind
        key = self.cache.key(key_label)
        eku = spec.eku if spec.eku is not None else (default_eku,)
        cdp = ca.cdp_urls if spec.cdp is None else expand(ca.spec, spec.cdp)
        explicit = spec.not_before is not None or spec.not_after is not None
        not_before = self.now + (spec.not_before if spec.not_before is not None
                                 else -LEAF_BACKDATE)
        not_after = (self.now + spec.not_after if spec.not_after is not None
                     else not_before + LEAF_VALIDITY)
        use_template = kind is CAKind.ENTERPRISE
        digest = _digest("leaf", PROFILE_VERSION, subject_cn, spec.san, [e.value for e in eku],
                         cdp, ca.aia_urls, ca.cert.fingerprint(hashes.SHA256()).hex(), _spki(key),
                         explicit, kind, template.name if use_template else None)
        cert = (self._reuse(digest, not_before, not_after) if explicit
                else self._reuse(digest))
        if cert is None:
            subject = _leaf_subject(subject_cn) if subject_cn is not None else x509.Name([])
            builder = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(ca.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before)
                .not_valid_after(not_after)
            )
            if kind is CAKind.PUBLIC:
                builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                                critical=True)
            builder = (
                builder.add_extension(_key_usage(ca=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca.key.public_key()), critical=False)
            )
            if spec.san:
                # RFC 5280 4.2.1.6: with an empty subject the SAN is critical.
                builder = builder.add_extension(
                    x509.SubjectAlternativeName([x509.DNSName(n) for n in spec.san]),
                    critical=len(subject) == 0)
            if eku:
                builder = builder.add_extension(
                    x509.ExtendedKeyUsage([EKU_OIDS[e] for e in eku]), critical=False)
            if use_template:
                builder = builder.add_extension(template_extension(ca.spec.domain, template),
                                                critical=False)
                if eku:
                    builder = builder.add_extension(
                        application_policies([EKU_OIDS[e] for e in eku]), critical=False)
            if cdp:
                builder = builder.add_extension(_cdp_ext(cdp), critical=False)
            if ca.aia_urls:
                builder = builder.add_extension(_aia_ext(ca.aia_urls), critical=False)
            cert = builder.sign(ca.key, hashes.SHA256())
            cert_path = self.cache.store_cert(digest, cert)
        else:
            cert_path = self.cache.cert_path(digest)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        # What the server sends: the certificate and its issuing CAs below the root.
        intermediates = [c for c in ca.chain if c.issuer != c.subject]
        chain_pem = pem + b"".join(c.public_bytes(serialization.Encoding.PEM)
                                   for c in intermediates)
        chain_path = self.cache.public_file(chain_pem)
        if spec.revoked:
            self.revoked.setdefault(spec.issuer, []).append(cert)
        return IssuedCert(label=label, cert=cert, cert_pem=pem,
                          key_path=self.cache.key_path(key_label), chain_path=chain_path,
                          cert_path=cert_path, issuer=spec.issuer, revoked=spec.revoked)

    def crl(self, m: _CAMaterial, *, number: int, this_update: dt.datetime,
            next_update: dt.datetime, next_publish: dt.datetime | None = None,
            delta_urls: tuple[str, ...] = (),
            delta_of: int | None = None) -> x509.CertificateRevocationList:
        """The base CRL (``delta_of`` None) or a delta CRL of base number ``delta_of``, with
        the number and dates its publication gives it (:mod:`lab.pki.schedule`).
        ``next_publish`` is the Next CRL Publish time its schedule gives."""
        spec = m.spec
        signer = self.cas[spec.crl_signer].key if spec.crl_signer else m.key
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(m.cert.subject)
            .last_update(this_update)
            .next_update(next_update)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                m.key.public_key()), critical=False)
        )
        builder = adcs_crl_extensions(builder, m, this_update=this_update,
                                      next_update=next_update, next_publish=next_publish,
                                      delta_urls=delta_urls, delta_of=delta_of)
        for revoked in self.revoked.get(spec.name, []):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(revoked.serial_number)
                .revocation_date(self.now - dt.timedelta(hours=1))
                .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
                .build())
        return builder.sign(signer, hashes.SHA256())

    def issue_crl(self, m: _CAMaterial, issue: CrlIssue,
                  delta_urls: tuple[str, ...]) -> x509.CertificateRevocationList:
        """The CRL of one publication of the CA's schedule."""
        return self.crl(m, number=issue.number, this_update=issue.this_update,
                        next_update=issue.next_update, next_publish=issue.next_publish,
                        delta_urls=() if issue.is_delta else delta_urls,
                        delta_of=issue.delta_of)


MAX_SIGNED_CRLS = 512
"""CRLs a publisher keeps signed (a bound: a long scenario asks for a few per step at most)."""


class CrlPublisher:
    """Every CA's CRLs over the scenario: which are published at an instant, signed the first
    time a server is asked for them (so a 30-day scenario signs only the CRLs it serves)."""

    def __init__(self, builder: _Builder, cas: Mapping[str, BuiltCA],
                 layout: tuple[tuple[str, str, str, str], ...],
                 schedules: Mapping[str, CrlSchedule]) -> None:
        self._builder = builder
        self._cas = cas
        self._layout = layout
        """(url, kind, ca, role): role ``base``, ``delta`` or ``cacert``."""
        self.schedules = schedules
        self._signed: dict[tuple[str, bool, int], x509.CertificateRevocationList] = {}
        self._views: dict[tuple[int, ...], tuple[Publication, ...]] = {}
        self.signed_count = 0
        """How many CRLs were signed after the build (the bench and tests count them)."""

    def crl(self, ca: str, issue: CrlIssue) -> x509.CertificateRevocationList:
        """The CRL of publication ``issue`` of CA ``ca`` (signed once)."""
        key = (ca, issue.is_delta, issue.index)
        got = self._signed.get(key)
        if got is None:
            built = self._cas[ca]
            got = self._builder.issue_crl(self._builder.cas[ca], issue, built.delta_urls)
            if len(self._signed) >= MAX_SIGNED_CRLS:
                self._signed.clear()
            self._signed[key] = got
            self.signed_count += 1
        return got

    def keep(self, ca: str, issue: CrlIssue, crl: x509.CertificateRevocationList) -> None:
        """Remember ``crl`` as publication ``issue`` of ``ca`` (signed by the build)."""
        self._signed[(ca, issue.is_delta, issue.index)] = crl

    def key(self, now: dt.datetime) -> tuple[int, ...]:
        out: list[int] = []
        for schedule in self.schedules.values():
            base, delta = schedule.current(now)
            out += [base.number, delta.number if delta is not None else 0]
        return tuple(out)

    def current(self, ca: str, now: dt.datetime) -> tuple[x509.CertificateRevocationList,
                                                          x509.CertificateRevocationList | None]:
        """CA ``ca``'s base and delta CRL on its distribution points at ``now``."""
        base, delta = self.schedules[ca].current(now)
        return self.crl(ca, base), (self.crl(ca, delta) if delta is not None else None)

    def publications(self, now: dt.datetime) -> tuple[Publication, ...]:
        key = self.key(now)
        got = self._views.get(key)
        if got is not None:
            return got
        data: dict[tuple[str, str], bytes] = {}
        for name, ca in self._cas.items():
            base, delta = self.current(name, now)
            data[(name, "base")] = base.public_bytes(serialization.Encoding.DER)
            data[(name, "delta")] = (delta.public_bytes(serialization.Encoding.DER)
                                     if delta is not None else b"")
            data[(name, "cacert")] = ca.cert_der
        got = tuple(Publication(url=url, kind=kind, ca=ca_name, data=data[(ca_name, role)])
                    for url, kind, ca_name, role in self._layout)
        if len(self._views) >= MAX_SIGNED_CRLS:
            self._views.clear()
        self._views[key] = got
        return got


def build_pki(scenario: Scenario, clock: Clock, cache: PKICache) -> BuiltPKI:
    """Build (or take from the cache) everything the scenario's PKI needs."""
    b = _Builder(scenario, clock, cache)
    keys_before, certs_before = cache.keys_generated, cache.certs_issued
    for spec in _parents_first(scenario.cas):
        material = b.build_ca(spec)
        if spec.revoked and spec.parent is not None:
            b.revoked.setdefault(spec.parent, []).append(material.cert)

    mp_spec = scenario.mp.cert
    mp: IssuedCert | None = None
    refusal: IssuanceRefusal | None = None
    issuer = scenario.ca(mp_spec.issuer)
    names = tuple(dict.fromkeys(n.lower() for n in mp_spec.san))
    internal = tuple(n for n in dict.fromkeys((*mp_spec.san, *(
        [mp_spec.subject] if mp_spec.subject else []))) if is_internal_name(n))
    if issuer.kind is CAKind.PUBLIC and internal:
        refusal = IssuanceRefusal(label="mp", ca=issuer.name, requested=mp_spec.san,
                                  limit=issuer.max_names or 0, internal=internal)
    elif issuer.max_names is not None and len(names) > issuer.max_names:
        refusal = IssuanceRefusal(label="mp", ca=issuer.name, requested=mp_spec.san,
                                  limit=issuer.max_names)
    else:
        subject = mp_spec.subject or (mp_spec.san[0] if mp_spec.san else
                                      scenario.mp.intranet_fqdn)
        mp = b.issue("mp", mp_spec, subject_cn=subject, default_eku=EKU.SERVER_AUTH,
                     key_label=f"mp-{scenario.mp.intranet_fqdn}", template=WEB_SERVER_TEMPLATE)

    stores: dict[str, tuple[IssuedCert, ...]] = {}
    for client in scenario.clients:
        stores[client.name] = tuple(
            b.issue(f"client:{client.name}:{i}", spec, subject_cn=_client_subject(scenario, spec,
                                                                                  client.fqdn),
                    default_eku=EKU.CLIENT_AUTH, template=CLIENT_TEMPLATE,
                    key_label=f"client-{client.fqdn}" + (f"-{i}" if i else ""))
            for i, spec in enumerate(client.certs))
    clients = {name: store[0] for name, store in stores.items() if store}
    # A sub CA that a scenario revokes would appear here; leaves are known now.
    layout: list[tuple[str, str, str, str]] = []
    cas: dict[str, BuiltCA] = {}
    schedules: dict[str, CrlSchedule] = {}
    faults = scenario.faults
    # A CRL fault replaces the bytes of the MP issuer's CRL at staging: that CA's CRL is then
    # what it last published (it does not republish during the scenario).
    faulty = (faults.crl_stale or faults.crl_foreign_signature or bool(faults.crl_huge)
              or bool(faults.crl_body))
    for spec in scenario.cas:
        m = b.cas[spec.name]
        delta_urls = expand_delta(spec) if spec.delta_period else ()
        schedule = CrlSchedule(spec, b.now, deltas=bool(delta_urls),
                               frozen=faulty and spec.name == scenario.mp.cert.issuer)
        schedules[spec.name] = schedule
        first_base, first_delta = schedule.current(b.now)
        crl = b.issue_crl(m, first_base, delta_urls)
        crl_der = crl.public_bytes(serialization.Encoding.DER)
        delta = b.issue_crl(m, first_delta, delta_urls) if first_delta is not None else None
        ca = BuiltCA(spec=spec, cert=m.cert, cert_pem=m.cert.public_bytes(
                         serialization.Encoding.PEM), key=m.key, cdp_urls=m.cdp_urls,
                     aia_urls=m.aia_urls, crl=crl, crl_der=crl_der, chain=m.chain,
                     delta_crl=delta if schedule.has_deltas else None,
                     delta_urls=delta_urls if schedule.has_deltas else ())
        cas[spec.name] = ca
        layout += [(u, "crl", spec.name, "base") for u in ca.cdp_urls]
        layout += [(u, "crl", spec.name, "delta") for u in ca.delta_urls]
        layout += [(u, "cacert", spec.name, "cacert") for u in ca.aia_urls]
    # Certificates with their own CDP list: the issuing CA publishes there too.
    known = {url for url, *_ in layout}
    for leaf in [mp, *(c for store in stores.values() for c in store)]:
        if leaf is None:
            continue
        for url in cert_cdp_urls(leaf.cert):
            if url not in known:
                layout.append((url, "crl", leaf.issuer, "base"))
                known.add(url)
    frozen_cas = MappingProxyType(cas)
    publisher = CrlPublisher(b, frozen_cas, tuple(layout), MappingProxyType(schedules))
    for name, ca in cas.items():  # publication 0: signed above, not again
        base_issue, delta_issue = schedules[name].current(b.now)
        publisher.keep(name, base_issue, ca.crl)
        if ca.delta_crl is not None and delta_issue is not None:
            publisher.keep(name, delta_issue, ca.delta_crl)
    publications = list(publisher.publications(b.now))

    stats = {"keys_generated": cache.keys_generated - keys_before,
             "certs_issued": cache.certs_issued - certs_before}
    return BuiltPKI(cas=frozen_cas, mp=mp, mp_refusal=refusal,
                    clients=MappingProxyType(clients), stores=MappingProxyType(stores),
                    publications=tuple(publications),
                    built_at=b.now, stats=MappingProxyType(stats), publisher=publisher)
