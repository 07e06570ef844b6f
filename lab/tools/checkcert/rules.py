"""The lint: the certificate against ConfigMgr's PKI requirements, one function per rule.

The certificate is checked as a site system that runs IIS needs it (reference §3: Server
Authentication EKU, the intranet and internet FQDNs in the SAN, SHA-2, key size, validity) and
its CDP/AIA URLs are read per zone with the lab's own network rules (reference §4, seed §4: an
``ldap:///`` CDP works only for domain-joined machines inside). Every finding has a severity, a
code, a one-line reason, the fix and its source (:data:`~lab.tools.checkcert.catalogue.CATALOGUE`).

:data:`RULES` runs in order; each rule returns its findings (none, one or a few), and
:func:`lint` sorts them by severity, keeping that order within a severity. The CDP rules run
once for the certificate and once for its issuing CA certificate (:data:`CDP_RULES`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from lab.clock import system_now
from lab.cryptoapi.chain import host_in_names
from lab.pki.build import RENEW_BEFORE
from lab.pki.urls import cert_aia_urls, cert_cdp_urls, cert_ocsp_urls, url_host, url_scheme
from lab.protocols.network import Network
from lab.tools.checkcert.catalogue import CATALOGUE, ERROR, SEVERITY_ORDER, WARNING, Finding
from lab.tools.checkcert.inputs import LoadedCert, is_ca, public_key
from lab.tools.checkcert.profile import (
    Profile,
    cert_ekus,
    common_name,
    eku_text,
    issuer_in,
    san_dns,
    subject_cn,
)
from lab.tools.checkcert.reach import REACH_LABELS, lab_network, url_reach

REISSUE = "reissue it from a copy of the Web Server template"
SERVER_AUTH_FIX = f"{REISSUE} (EKU Server Authentication, 1.3.6.1.5.5.7.3.1)"


def finding(code: str, reason: str, fix: str, severity: str | None = None) -> Finding:
    """A finding at the catalogue's severity for ``code`` unless ``severity`` says otherwise."""
    return Finding(severity or CATALOGUE[code].severity, code, reason, fix)


@dataclass(frozen=True)
class Context:
    """What every rule may look at."""

    loaded: LoadedCert
    profile: Profile
    intranet_given: bool
    internet_given: bool
    now: dt.datetime
    network: Network
    issuer: x509.Certificate | None
    """The chain's certificate that signed this one, if any."""

    @property
    def cert(self) -> x509.Certificate:
        return self.loaded.cert

    @property
    def intermediate(self) -> x509.Certificate | None:
        """The issuer when it is an intermediate CA (not self-signed)."""
        issuer = self.issuer
        return issuer if issuer is not None and issuer.issuer != issuer.subject else None

    @property
    def names(self) -> list[str] | None:
        return san_dns(self.cert)

    @property
    def match_names(self) -> list[str]:
        """The names clients match: the SAN's DNS names, or the CN when there is no SAN."""
        names = self.names
        return names if names is not None else [n for n in [subject_cn(self.cert)] if n]

    @property
    def listed(self) -> str:
        return ", ".join(self.match_names) or "none"

    @property
    def where(self) -> str:
        return "SAN" if self.names is not None else "subject CN (there is no SAN)"

    @property
    def both(self) -> str:
        """The fix for every name finding."""
        return ("request a certificate with both FQDNs as SAN DNS names (intranet "
                f"{self.profile.intranet_fqdn or '<intranet FQDN>'}, internet "
                f"{self.profile.internet_fqdn or '<internet FQDN>'}) and bind it in IIS")


Findings = list[Finding]


# --- the kind of certificate ------------------------------------------------------------------

def subject_is_ca(ctx: Context) -> Findings:
    if not is_ca(ctx.cert):
        return []
    return [finding("subject-is-ca", f"{ctx.cert.subject.rfc4514_string()} is a CA certificate "
                    "(basic constraints CA=true); the file holds no end-entity certificate for "
                    "the MP", "check-cert the MP's own certificate (the one bound to IIS's "
                    "HTTPS binding)")]


def pfx_key(ctx: Context) -> Findings:
    loaded = ctx.loaded
    if loaded.form != "PKCS#12":
        return []
    if loaded.has_key is False:
        return [finding("pfx-no-private-key", "the PKCS#12 file holds the certificate without "
                        "its private key: IIS cannot bind it", "export it again with the "
                        "private key (Export-PfxCertificate, or the wizard's 'Yes, export the "
                        "private key')")]
    if loaded.key_matches is False:
        return [finding("pfx-key-mismatch", "the private key in the PKCS#12 file does not "
                        "belong to the certificate", "export the certificate together with its "
                        "own key")]
    return []


def chain_mismatch(ctx: Context) -> Findings:
    if not ctx.loaded.chain or ctx.issuer is not None:
        return []
    return [finding("chain-mismatch", f"none of the {len(ctx.loaded.chain)} other certificates "
                    f"issued this one (issuer {ctx.cert.issuer.rfc4514_string()})",
                    "give the issuing CA's certificate with --chain to replay the whole chain")]


# --- EKU --------------------------------------------------------------------------------------

def eku(ctx: Context) -> Findings:
    ekus = cert_ekus(ctx.cert)
    if ekus is None:
        return [finding("no-eku", "no Enhanced Key Usage extension: Windows accepts it for any "
                        "purpose, but ConfigMgr requires Server Authentication in the EKU",
                        SERVER_AUTH_FIX)]
    if ExtendedKeyUsageOID.SERVER_AUTH in ekus:
        return []
    if ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in ekus:
        return [finding("any-purpose-eku", "the EKU is Any Purpose, not Server Authentication",
                        SERVER_AUTH_FIX)]
    return [finding("no-server-auth", f"the EKU ({eku_text(ekus)}) lacks Server "
                    "Authentication: clients reject the MP with CERT_E_WRONG_USAGE",
                    SERVER_AUTH_FIX)]


# --- names ------------------------------------------------------------------------------------

def no_san(ctx: Context) -> Findings:
    if ctx.names is not None:
        return []
    return [finding("no-san", "no Subject Alternative Name: clients match the MP's name against "
                    f"the subject CN ({subject_cn(ctx.cert) or 'none'}) alone", ctx.both)]


def intranet_fqdn_in_san(ctx: Context) -> Findings:
    fqdn = ctx.profile.intranet_fqdn
    if not ctx.intranet_given or not fqdn or host_in_names(fqdn, ctx.match_names):
        return []
    return [finding("intranet-fqdn-not-in-san", f"intranet FQDN {fqdn} not in the {ctx.where} "
                    f"({ctx.listed}): intranet clients get CERT_E_CN_NO_MATCH", ctx.both)]


def internet_fqdn_in_san(ctx: Context) -> Findings:
    fqdn = ctx.profile.internet_fqdn
    if not ctx.internet_given or not fqdn or host_in_names(fqdn, ctx.match_names):
        return []
    return [finding("internet-fqdn-not-in-san", f"internet FQDN {fqdn} not in the {ctx.where} "
                    f"({ctx.listed}): internet clients get CERT_E_CN_NO_MATCH", ctx.both)]


def host_names(ctx: Context) -> Findings:
    """No name at all, or (no --internet-fqdn) a single name."""
    if not ctx.match_names:
        return [finding("no-host-name", "the certificate names no host (no SAN DNS name"
                        + (")" if ctx.names is not None else ", no subject CN)")
                        + ": every client gets CERT_E_CN_NO_MATCH", ctx.both)]
    if not ctx.internet_given and len(set(n.lower() for n in ctx.match_names)) <= 1:
        return [finding("single-san", f"one name only ({ctx.listed}): an MP that takes intranet "
                        "and internet clients needs both FQDNs in the SAN (seed §2)",
                        f"{ctx.both}; if the MP takes intranet clients only, ignore this (or "
                        "give --internet-fqdn to check the internet name)")]
    return []


def fqdn_from_san(ctx: Context) -> Findings:
    profile = ctx.profile
    if (ctx.intranet_given and ctx.internet_given) or not profile.intranet_fqdn:
        return []
    took = []
    if not ctx.intranet_given:
        took.append(f"intranet FQDN {profile.intranet_fqdn}")
    if not ctx.internet_given and profile.internet_fqdn:
        took.append(f"internet FQDN {profile.internet_fqdn}")
    if not took:
        return []
    return [finding("fqdn-from-san", f"took the {' and the '.join(took)} from the certificate's "
                    "names (first = intranet, second = internet)",
                    "give --intranet-fqdn and --internet-fqdn as the site system's properties "
                    "name them, to check exactly those")]


# --- signature and key ------------------------------------------------------------------------

def _signature(c: x509.Certificate, what: str) -> Findings:
    try:
        algo = c.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algo = None
    oid_name = c.signature_algorithm_oid.dotted_string
    if isinstance(algo, hashes.SHA1 | hashes.MD5):
        return [finding("signature-not-sha2", f"{what} is signed with {algo.name.upper()}: "
                        "Windows does not trust SHA-1-signed certificates",
                        "reissue it from a CA that signs with SHA-256 (AD CS: certutil -setreg "
                        "ca\\csp\\CNGHashAlgorithm SHA256, restart the CA, then reissue)")]
    if algo is None and not isinstance(public_key(c), ed25519.Ed25519PublicKey
                                       | ed448.Ed448PublicKey):
        return [finding("signature-unusual", f"{what} has a signature algorithm the lab cannot "
                        f"name ({oid_name})", "reissue it signed with SHA-256")]
    if algo is None:
        return [finding("signature-unusual", f"{what} is signed with {oid_name}, which Windows' "
                        "TLS stack may not accept for server certificates", "reissue it with "
                        "RSA or ECDSA signed with SHA-256")]
    return []


def signatures(ctx: Context) -> Findings:
    """The certificate's signature, then its issuing CA certificate's (two-tier chains)."""
    out = _signature(ctx.cert, "the certificate")
    if ctx.intermediate is not None:
        out += _signature(ctx.intermediate, "the issuing CA certificate "
                          f"{ctx.intermediate.subject.rfc4514_string()}")
    return out


def key(ctx: Context) -> Findings:
    pub = public_key(ctx.cert)
    if isinstance(pub, rsa.RSAPublicKey):
        if pub.key_size >= 2048:
            return []
        return [finding("key-too-small", f"{pub.key_size}-bit RSA key: below the 2048 bits "
                        "current PKI templates use" + (" and below Windows' 1024-bit minimum"
                                                       if pub.key_size < 1024 else ""),
                        "request a new certificate with a 2048-bit (or larger) key",
                        ERROR if pub.key_size < 1024 else WARNING)]
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return [finding("key-not-rsa", f"ECDSA key ({pub.curve.name}): check that every "
                        "ConfigMgr role and client OS in use accepts it; the replay uses the "
                        "lab's RSA 2048 key", "nothing, if your clients accept it; otherwise "
                        "reissue with an RSA 2048 key")]
    if pub is not None:
        kind = ("DSA" if isinstance(pub, dsa.DSAPublicKey) else type(pub).__name__)
        return [finding("key-not-rsa", f"{kind} key: IIS and ConfigMgr expect RSA (or ECDSA)",
                        "reissue with an RSA 2048 key", WARNING)]
    return []


def key_usage(ctx: Context) -> Findings:
    try:
        ku = ctx.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    if ku.digital_signature or ku.key_encipherment:
        return []
    return [finding("key-usage", "Key Usage allows neither digitalSignature nor "
                    "keyEncipherment: a TLS server key needs one of them (not replayed: the lab "
                    "writes both)", f"{REISSUE} (Key Usage: Digital Signature, Key Encipherment)")]


# --- validity ---------------------------------------------------------------------------------

def validity(ctx: Context) -> Findings:
    nvb, nva, now = ctx.cert.not_valid_before_utc, ctx.cert.not_valid_after_utc, ctx.now
    if nva < now:
        return [finding("expired", f"expired on {nva:%Y-%m-%d %H:%M} UTC: clients get "
                        "CERT_E_EXPIRED (flag CERT_DATE_INVALID)", "renew the certificate "
                        "(same names and template) and bind the new one in IIS")]
    if nvb > now:
        return [finding("not-yet-valid", f"valid only from {nvb:%Y-%m-%d %H:%M} UTC: clients "
                        "get CERT_E_EXPIRED until then (or the CA's clock is ahead)",
                        "wait, or check the CA's clock and reissue")]
    if nva - now < RENEW_BEFORE:
        days = (nva - now).days
        return [finding("expires-soon", f"expires on {nva:%Y-%m-%d} ({days} "
                        f"day{'s' if days != 1 else ''} left)", "renew it now and bind the new "
                        "certificate in IIS before it expires")]
    return []


# --- CDP, per zone ----------------------------------------------------------------------------

@dataclass(frozen=True)
class CdpView:
    """The CDP URLs of the MP certificate (``whose`` empty) or of its issuing CA certificate."""

    urls: list[str]
    reach: dict[str, tuple[list[str], str]]
    """URL -> (situations that can fetch it, why)."""
    whose: str
    internet_known: bool

    @property
    def prefix(self) -> str:
        return f"{self.whose}: " if self.whose else ""

    @property
    def target(self) -> str:
        return self.whose or "this certificate"

    @property
    def union(self) -> set[str]:
        """The situations that can fetch at least one URL."""
        return {k for keys, _ in self.reach.values() for k in keys}

    @property
    def ldap_only(self) -> bool:
        return all(url_scheme(u) == "ldap" and not url_host(u) for u in self.urls)

    @property
    def publish(self) -> str:
        """The fix for a CRL out of reach from the internet."""
        return ("publish the CRL at an HTTP URL reachable from the internet (for example "
                "http://pki.<public domain>/CertEnroll/<CA>.crl), add it to the "
                f"{'parent ' if self.whose else ''}CA's CDP extension ('Include in the CDP "
                f"extension of issued certificates') and reissue {self.target}; or clear "
                "'Clients check the certificate revocation list (CRL) for site systems' and "
                "install with /NoCRLCheck")


def no_cdp(view: CdpView) -> Findings:
    if view.urls:
        return []
    return [finding("no-cdp", f"{view.prefix}no CRL Distribution Points extension: a client "
                    "that checks the CRL gets CRYPT_E_NO_REVOCATION_CHECK", "reissue it from a "
                    "CA that writes an HTTP CDP every client can reach; or clear the site's CRL "
                    "box and install with /NoCRLCheck")]


def cdp_ldap_only(view: CdpView) -> Findings:
    if not view.urls or not view.ldap_only:
        return []
    return [finding("cdp-ldap-only", f"{view.prefix}LDAP-only CDP (ldap:///): only "
                    "domain-joined machines inside (intranet, VPN) can check revocation; "
                    "internet and workgroup clients get CRYPT_E_REVOCATION_OFFLINE while the "
                    "site checks the CRL", view.publish,
                    ERROR if view.internet_known else WARNING)]


def cdp_from_internet(view: CdpView) -> Findings:
    if (not view.urls or view.ldap_only or not view.internet_known
            or "internet" in view.union):
        return []
    why = "; ".join(dict.fromkeys(
        "ldap:/// needs a domain controller" if url_scheme(u) == "ldap" and not url_host(u)
        else f"{url_host(u)}: {w}" if url_host(u) else f"{url_scheme(u)}: {w}"
        for u, (_, w) in view.reach.items()))
    return [finding("cdp-not-reachable-from-internet", f"{view.prefix}no CDP URL is reachable "
                    f"from the internet ({why}): internet clients get CRYPT_E_REVOCATION_OFFLINE "
                    "while the site checks the CRL", view.publish)]


def cdp_for_workgroup(view: CdpView) -> Findings:
    if not view.urls or view.ldap_only or "workgroup" in view.union:
        return []
    return [finding("cdp-not-reachable-for-workgroup", f"{view.prefix}no CDP URL is reachable "
                    "by a workgroup machine on the intranet: it gets CRYPT_E_REVOCATION_OFFLINE "
                    "once the site checks the CRL (and at install without /NoCRLCheck)",
                    f"add an HTTP CDP on a host every client resolves and reissue "
                    f"{view.target}; or install with /NoCRLCheck and clear the site's CRL box")]


def cdp_retrieval_delay(view: CdpView) -> Findings:
    if not view.urls or view.ldap_only:
        return []
    delayed = []
    for sit in ("internet", "workgroup", "intranet", "vpn"):
        if sit == "internet" and not view.internet_known:
            continue
        first = next((i for i, u in enumerate(view.urls) if sit in view.reach[u][0]), None)
        if first:
            delayed.append(f"{REACH_LABELS[sit]} clients wait for {first} unreachable "
                           f"URL{'s' if first > 1 else ''} (up to {15 * first} s)")
    if not delayed:
        return []
    return [finding("cdp-retrieval-delay", f"{view.prefix}CDP order: " + "; ".join(delayed)
                    + " before reaching a URL that works", "list the URL every client reaches "
                    "first in the CA's CDP extension (only for certificates issued afterwards)")]


def cdp_schemes(view: CdpView) -> Findings:
    out = []
    for u in view.urls:
        if url_scheme(u) == "https":
            out.append(finding("cdp-https", f"{view.prefix}{u}: CRLs are fetched over plain "
                               "HTTP or LDAP; an https:// CDP needs its own server certificate "
                               "checked first", "publish the CRL at an http:// URL instead"))
        elif url_scheme(u) == "file":
            out.append(finding("cdp-file", f"{view.prefix}{u}: a file:// (SMB) CDP works at best "
                               "inside; the lab does not serve it", "clear 'Include in the CDP "
                               "extension' for the file:// location on the CA"))
    return out


CDP_RULES: tuple[Callable[[CdpView], Findings], ...] = (
    no_cdp, cdp_ldap_only, cdp_from_internet, cdp_for_workgroup, cdp_retrieval_delay,
    cdp_schemes)


def _cdp_findings(ctx: Context, cert: x509.Certificate, whose: str) -> Findings:
    urls = list(cert_cdp_urls(cert))
    reach = {u: url_reach(u, ctx.network, ctx.profile.ad_domain) for u in urls}
    view = CdpView(urls, reach, whose, ctx.profile.internet_fqdn is not None)
    return [f for rule in CDP_RULES for f in rule(view)]


def cdp(ctx: Context) -> Findings:
    return _cdp_findings(ctx, ctx.cert, "")


def issuing_ca_cdp(ctx: Context) -> Findings:
    """The issuing CA is checked against its parent's CRL, found through its own CDP."""
    if ctx.intermediate is None:
        return []
    return _cdp_findings(ctx, ctx.intermediate, "the issuing CA certificate "
                         f"{common_name(ctx.intermediate.subject) or ''}")


# --- AIA --------------------------------------------------------------------------------------

def aia_from_internet(ctx: Context) -> Findings:
    """AIA matters for fetching a missing intermediate: only when the issuer is known to be
    one."""
    aia = list(cert_aia_urls(ctx.cert))
    if not aia or ctx.profile.internet_fqdn is None or ctx.intermediate is None:
        return []
    union = {k for u in aia for k in url_reach(u, ctx.network, ctx.profile.ad_domain)[0]}
    if "internet" in union:
        return []
    return [finding("aia-not-reachable-from-internet", "no AIA URL is reachable from the "
                    "internet: an internet client that lacks the issuing CA certificate cannot "
                    "fetch it (harmless while IIS sends the chain)", "publish the CA certificate "
                    "at an internet HTTP URL in the CA's AIA extension, or make sure IIS sends "
                    "the chain")]


def aia_ocsp(ctx: Context) -> Findings:
    ocsp = cert_ocsp_urls(ctx.cert)
    if not ocsp:
        return []
    return [finding("aia-ocsp", f"OCSP responder {', '.join(ocsp)}: the lab replays CRL "
                    "checking only; Windows may ask the responder first", "make sure the "
                    "responder is reachable from every zone, as the CRL must be")]


RULES: tuple[Callable[[Context], Findings], ...] = (
    subject_is_ca, pfx_key, chain_mismatch,
    eku,
    no_san, intranet_fqdn_in_san, internet_fqdn_in_san, host_names, fqdn_from_san,
    signatures, key, key_usage,
    validity,
    cdp, issuing_ca_cdp, aia_from_internet, aia_ocsp,
)
"""Every rule, in the order its findings are listed within a severity."""


def lint(loaded: LoadedCert, profile: Profile, *, intranet_given: bool, internet_given: bool,
         now: dt.datetime | None = None) -> list[Finding]:
    """Every finding for ``loaded``, errors first (the rules' order within a severity)."""
    ctx = Context(loaded, profile, intranet_given, internet_given, now or system_now(),
                  lab_network(profile), issuer_in(loaded.cert, loaded.chain))
    out = [f for rule in RULES for f in rule(ctx)]
    out.sort(key=lambda f: SEVERITY_ORDER[f.severity])
    return out


__all__ = ["CDP_RULES", "RULES", "CdpView", "Context", "finding", "lint"]
