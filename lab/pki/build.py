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

from lab.clock import Clock
from lab.pki.cache import PKICache, PrivateKey
from lab.pki.urls import cert_cdp_urls, delta_url, expand, expand_delta
from lab.scenario.model import EKU, CAKind, CASpec, CertSpec, Scenario

PROFILE_VERSION = "1"
CA_VALIDITY = dt.timedelta(days=5 * 365)
LEAF_VALIDITY = dt.timedelta(days=365)
BACKDATE = dt.timedelta(days=1)
RENEW_BEFORE = dt.timedelta(days=30)
# How far a cached certificate's explicit dates may drift from the dates asked for.
EXPLICIT_DATES_TOLERANCE = dt.timedelta(minutes=1)
CRL_VALIDITY = CASpec.crl_next_update
"""AD CS's default base CRL period is one week (reference §4.4, [I]): ``[[ca]]
crl_next_update``'s default."""
DELTA_CRL_VALIDITY = dt.timedelta(days=1)
"""AD CS's default delta CRL period is one day (reference §4.4, [I])."""

EKU_OIDS = {EKU.SERVER_AUTH: ExtendedKeyUsageOID.SERVER_AUTH,
            EKU.CLIENT_AUTH: ExtendedKeyUsageOID.CLIENT_AUTH}


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
    """``crl`` or ``cacert``."""
    ca: str
    data: bytes
    """DER bytes."""

    @property
    def content_type(self) -> str:
        return "application/pkix-crl" if self.kind == "crl" else "application/pkix-cert"


@dataclass(frozen=True)
class IssuanceRefusal:
    """A CA declined to issue a certificate (a public CA plan's name limit)."""

    label: str
    ca: str
    requested: tuple[str, ...]
    limit: int

    @property
    def message(self) -> str:
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
    built_at: dt.datetime
    stats: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

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

    def issue(self, label: str, spec: CertSpec, *, subject_cn: str, default_eku: EKU,
              key_label: str) -> IssuedCert:
        ca = self.cas[spec.issuer]
        key = self.cache.key(key_label)
        eku = spec.eku if spec.eku is not None else (default_eku,)
        cdp = ca.cdp_urls if spec.cdp is None else expand(ca.spec, spec.cdp)
        explicit = spec.not_before is not None or spec.not_after is not None
        not_before = self.now + (spec.not_before if spec.not_before is not None else -BACKDATE)
        not_after = (self.now + spec.not_after if spec.not_after is not None
                     else not_before + LEAF_VALIDITY)
        digest = _digest("leaf", PROFILE_VERSION, subject_cn, spec.san, [e.value for e in eku],
                         cdp, ca.aia_urls, ca.cert.fingerprint(hashes.SHA256()).hex(), _spki(key),
                         explicit)
        cert = (self._reuse(digest, not_before, not_after) if explicit
                else self._reuse(digest))
        if cert is None:
            builder = (
                x509.CertificateBuilder()
                .subject_name(_leaf_subject(subject_cn))
                .issuer_name(ca.cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(not_before)
                .not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_key_usage(ca=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                               critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca.key.public_key()), critical=False)
            )
            if spec.san:
                builder = builder.add_extension(
                    x509.SubjectAlternativeName([x509.DNSName(n) for n in spec.san]),
                    critical=False)
            if eku:
                builder = builder.add_extension(
                    x509.ExtendedKeyUsage([EKU_OIDS[e] for e in eku]), critical=False)
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

    def crl_number(self, m: _CAMaterial) -> int:
        return max(1, int((self.now - m.cert.not_valid_before_utc) / dt.timedelta(days=1)))

    def crl(self, m: _CAMaterial, *, delta_urls: tuple[str, ...] = (),
            delta_of: int | None = None) -> x509.CertificateRevocationList:
        """The base CRL (``delta_of`` None) or a delta CRL of base number ``delta_of``."""
        spec = m.spec
        signer = self.cas[spec.crl_signer].key if spec.crl_signer else m.key
        number = self.crl_number(m)
        if delta_of is None:
            this_update, next_update = spec.crl_this_update, spec.crl_next_update
        else:
            number += 1
            this_update, next_update = dt.timedelta(minutes=-10), DELTA_CRL_VALIDITY
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(m.cert.subject)
            .last_update(self.now + this_update)
            .next_update(self.now + next_update)
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                m.key.public_key()), critical=False)
        )
        builder = adcs_crl_extensions(builder, m, this_update=self.now + this_update,
                                      next_update=self.now + next_update,
                                      delta_urls=delta_urls, delta_of=delta_of)
        for revoked in self.revoked.get(spec.name, []):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(revoked.serial_number)
                .revocation_date(self.now - dt.timedelta(hours=1))
                .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
                .build())
        return builder.sign(signer, hashes.SHA256())


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
    if issuer.max_names is not None and len(names) > issuer.max_names:
        refusal = IssuanceRefusal(label="mp", ca=issuer.name, requested=mp_spec.san,
                                  limit=issuer.max_names)
    else:
        subject = mp_spec.subject or (mp_spec.san[0] if mp_spec.san else
                                      scenario.mp.intranet_fqdn)
        mp = b.issue("mp", mp_spec, subject_cn=subject, default_eku=EKU.SERVER_AUTH,
                     key_label=f"mp-{scenario.mp.intranet_fqdn}")

    stores: dict[str, tuple[IssuedCert, ...]] = {}
    for client in scenario.clients:
        stores[client.name] = tuple(
            b.issue(f"client:{client.name}:{i}", spec, subject_cn=spec.subject or client.fqdn,
                    default_eku=EKU.CLIENT_AUTH,
                    key_label=f"client-{client.fqdn}" + (f"-{i}" if i else ""))
            for i, spec in enumerate(client.certs))
    clients = {name: store[0] for name, store in stores.items() if store}
    # A sub CA that a scenario revokes would appear here; leaves are known now.
    publications: list[Publication] = []
    cas: dict[str, BuiltCA] = {}
    for spec in scenario.cas:
        m = b.cas[spec.name]
        delta_urls = expand_delta(spec)
        crl = b.crl(m, delta_urls=delta_urls)
        crl_der = crl.public_bytes(serialization.Encoding.DER)
        delta = b.crl(m, delta_of=b.crl_number(m)) if delta_urls else None
        delta_der = (delta.public_bytes(serialization.Encoding.DER) if delta is not None
                     else b"")
        ca = BuiltCA(spec=spec, cert=m.cert, cert_pem=m.cert.public_bytes(
                         serialization.Encoding.PEM), key=m.key, cdp_urls=m.cdp_urls,
                     aia_urls=m.aia_urls, crl=crl, crl_der=crl_der, chain=m.chain,
                     delta_crl=delta, delta_urls=delta_urls)
        cas[spec.name] = ca
        publications += [Publication(url=u, kind="crl", ca=spec.name, data=crl_der)
                         for u in ca.cdp_urls]
        publications += [Publication(url=u, kind="crl", ca=spec.name, data=delta_der)
                         for u in delta_urls]
        publications += [Publication(url=u, kind="cacert", ca=spec.name, data=ca.cert_der)
                         for u in ca.aia_urls]
    # Certificates with their own CDP list: the issuing CA publishes there too.
    known = {p.url for p in publications}
    for leaf in [mp, *(c for store in stores.values() for c in store)]:
        if leaf is None:
            continue
        for url in cert_cdp_urls(leaf.cert):
            if url not in known:
                ca = cas[leaf.issuer]
                publications.append(Publication(url=url, kind="crl", ca=ca.name, data=ca.crl_der))
                known.add(url)

    stats = {"keys_generated": cache.keys_generated - keys_before,
             "certs_issued": cache.certs_issued - certs_before}
    return BuiltPKI(cas=MappingProxyType(cas), mp=mp, mp_refusal=refusal,
                    clients=MappingProxyType(clients), stores=MappingProxyType(stores),
                    publications=tuple(publications),
                    built_at=b.now, stats=MappingProxyType(stats))
