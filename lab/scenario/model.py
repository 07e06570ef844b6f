"""A scenario as frozen data: what the lab should set up and what each client should do.

Nothing here touches cryptography or the network: :mod:`lab.pki` builds certificates from
these specs, :mod:`lab.protocols.network` derives reachability, :mod:`lab.client` replays the steps.
The TOML spelling of every field is documented in ``docs/scenario-format.md``.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lab.configmgr.ccmsetup import CcmsetupCommand


class Zone(enum.StrEnum):
    """Where a machine sits on the simulated network."""

    INTRANET = "intranet"
    INTERNET = "internet"
    VPN = "vpn"
    """A machine on the internet tunnelled into the intranet."""
    DMZ = "dmz"


ALL_ZONES: frozenset[Zone] = frozenset(Zone)


class CAKind(enum.StrEnum):
    """What sort of certification authority a ``[[ca]]`` is."""

    ENTERPRISE = "enterprise"
    """An AD CS enterprise CA: LDAP CDP first, then HTTP on the CA host (AD CS defaults)."""
    PUBLIC = "public"
    """A public (commercial) CA: HTTP CDP and AIA on a public host."""


class Action(enum.StrEnum):
    """What a client step does."""

    INSTALL = "install"
    """ccmsetup bootstrap: contact the bootstrap MP (or use ``/source:``), install the agent."""
    REGISTER = "register"
    """First registration with the assigned MP (``CCM_POST /ccm_system/request``)."""
    LOCATION = "location"
    """Site refresh: MP list and security settings from the MP (LocationServices)."""
    POLICY = "policy"
    """Policy request to the MP."""
    INVENTORY = "inventory"
    """Hardware inventory upload to the MP."""
    BROWSE_MPLIST = "browse-mplist"
    """An admin opens ``https://<MP>/SMS_MP/.sms_aut?MPLIST`` in a browser on the machine:
    no computer certificate is presented (browsers use the user's store)."""
    CLEAR_INTERNET_FQDN = "clear-internet-fqdn"
    """An admin deletes the client's Internet FQDN (Control Panel > Configuration Manager >
    Network). The next site refresh sets it again while the site has an internet MP."""
    CLEAR_URL_CACHE = "clear-url-cache"
    """An admin runs ``certutil -urlcache * delete``: CryptoAPI's disk URL cache is emptied;
    the running agent keeps its memory copies (reference §5.2b)."""
    RESYNC_CHAIN_CACHE = "resync-chain-cache"
    """An admin runs ``certutil -setreg chain\\ChainCacheResyncFiletime @now``: nothing cached
    before now is used again, from memory or disk (reference §5.2b)."""
    RESTART_AGENT_HOST = "restart-agent-host"
    """An admin restarts the SMS Agent Host service (ccmexec): its memory URL cache goes,
    the disk cache stays (reference §5.2b)."""


class EKU(enum.StrEnum):
    """Extended key usages a scenario may name (``eku = ["server_auth"]``)."""

    SERVER_AUTH = "server_auth"
    CLIENT_AUTH = "client_auth"


@dataclass(frozen=True)
class ScenarioInfo:
    title: str
    """One line shown in reports and the demo."""
    description: str = ""
    """A paragraph: what the scenario shows."""
    source: str = ""
    """Where the behaviour comes from (``seed §4``)."""
    timezone: str = "UTC"
    """IANA time zone of the machines (``Asia/Tokyo``): CMTrace logs are written in it."""


@dataclass(frozen=True)
class Site:
    code: str = "P01"
    """Three-character site code."""
    check_crl: bool = True
    """"Clients check the certificate revocation list (CRL) for site systems"."""
    https_only: bool = True
    """"HTTPS only" (True) or "HTTPS or HTTP" (False) on the Communication Security tab."""
    trusted_roots: tuple[str, ...] | None = None
    """The site's trusted root CAs (certificate issuers list), by ``[[ca]]`` name: the MP
    refuses client certificates that chain elsewhere (403.16). None = every lab CA."""


@dataclass(frozen=True)
class CASpec:
    name: str
    """The CA's name (its common name, and ``<CaName>`` in AD CS URL templates)."""
    kind: CAKind
    host: str
    """FQDN of the CA host (enterprise) or the public CA's CRL/AIA web host."""
    domain: str | None = None
    """AD domain of an enterprise CA (``contoso.local``); None for a public CA."""
    cdp: tuple[str, ...] | None = None
    """Ordered CDP entries (``"ldap"``, ``"http"`` or full URLs); None = the kind's default."""
    aia: tuple[str, ...] | None = None
    """Ordered AIA entries, same rules as ``cdp``; None = the kind's default."""
    max_names: int | None = None
    """Public CA plan limit: how many DNS names one certificate may carry (None = no limit)."""
    parent: str | None = None
    """The CA that issued this CA's certificate (a two-tier PKI); None = a self-signed root."""
    crl_this_update: dt.timedelta = dt.timedelta(minutes=-10)
    """The CRL's thisUpdate, relative to the run's time (``"+1d"`` = not yet valid)."""
    crl_next_update: dt.timedelta = dt.timedelta(days=7)
    """The CRL's nextUpdate, relative to the run's time (``"-1h"`` = expired, not republished)."""
    crl_signer: str | None = None
    """Sign the CRL with another CA's key (a CRL "signed by the wrong key"); None = its own."""
    crl_sign: bool = True
    """Whether the CA certificate's key usage includes cRLSign."""
    delta_cdp: tuple[str, ...] | None = None
    """Where delta CRLs are published (written into the base CRL's Freshest CRL extension).
    None = AD CS's default: an enterprise CA publishes a delta CRL next to every LDAP and
    HTTP CDP location (``<CaName>+.crl``, ``deltaRevocationList``), a public CA none;
    an empty tuple = no delta CRLs (reference §4.4)."""
    iis_allow_double_escaping: bool = True
    """Request filtering's ``allowDoubleEscaping`` on the IIS that serves this CA's HTTP CDP
    locations. False (IIS's own default) refuses every URL with ``+`` (the delta CRL's
    file name) with 404.11; True is what Microsoft's deployment guide sets on the CRL web
    server (reference §8.4)."""
    revoked: bool = False
    """An issuing CA revoked by its parent (it appears on the parent's CRL)."""
    crl_period: dt.timedelta = dt.timedelta(days=7)
    """How often the CA publishes a base CRL (AD CS CRLPeriod: 1 week)."""
    crl_overlap: dt.timedelta | None = None
    """How far a base CRL's nextUpdate lies past the next publication (AD CS
    CRLOverlapPeriod); None = AD CS's default: 10 % of ``crl_period``, at most 12 hours."""
    delta_period: dt.timedelta = dt.timedelta(days=1)
    """How often the CA publishes a delta CRL (AD CS CRLDeltaPeriod: 1 day); 0 = none."""
    delta_overlap: dt.timedelta | None = None
    """The delta CRL's overlap (AD CS CRLDeltaOverlapPeriod); None = 10 % of
    ``delta_period``, at most 12 hours."""
    offline_from: dt.timedelta | None = None
    """The CA is switched off from this time after the scenario's start (``"+1d"``): it
    publishes nothing at or after it. None = it publishes on schedule throughout."""

    @property
    def crl_dates_fixed(self) -> bool:
        """Whether ``crl_this_update``/``crl_next_update`` were set away from their defaults:
        that CRL is the CA's last one (it does not republish during the scenario)."""
        return (self.crl_this_update != dt.timedelta(minutes=-10)
                or self.crl_next_update != dt.timedelta(days=7))


@dataclass(frozen=True)
class CertSpec:
    issuer: str
    """Name of the ``[[ca]]`` that issues the certificate."""
    san: tuple[str, ...] = ()
    """DNS names in the Subject Alternative Name, in order."""
    revoked: bool = False
    """Whether the issuer has revoked the certificate (it appears on the CA's CRL)."""
    eku: tuple[EKU, ...] | None = None
    """Extended key usages; None = the role's default (server or client authentication)."""
    cdp: tuple[str, ...] | None = None
    """CDP entries written into this certificate; None = what the issuing CA writes."""
    not_before: dt.timedelta | None = None
    """Validity start relative to the run's time (``"-400d"``); None = the lab's default."""
    not_after: dt.timedelta | None = None
    """Validity end relative to the run's time (``"-1d"`` = expired); None = the default."""
    subject: str | None = None
    """The subject's common name; None = the role's default (first SAN / the computer FQDN)."""


@dataclass(frozen=True)
class MPSpec:
    intranet_fqdn: str
    internet_fqdn: str | None
    """None: the site has no internet-facing MP."""
    cert: CertSpec
    zone: Zone = Zone.INTRANET
    """Where the MP itself sits (what it can reach when IIS checks client certificates)."""
    domain_joined: bool = True
    """Whether the MP can ask a DC of its domain (``ldap:///``)."""


@dataclass(frozen=True)
class StepSpec:
    action: Action
    location: Zone
    expect: str | None = None
    """``"ok"``, ``"fail"``, an identifier that must be among the step's failure identifiers,
    or None (no expectation: the step is only observed)."""
    at: dt.timedelta | None = None
    """When the step happens, from the scenario's start (``at = "+8d"``); None = see
    ``after``, else one second after the previous step of the file."""
    after: dt.timedelta | None = None
    """When the step happens, after the same client's previous step (``after = "36h"``)."""
    ccmexec_location: Zone | None = None
    """Install steps only: where the machine is when ccmexec starts after the install and
    registers and refreshes its site information on its own (None: where it was installed).
    Another zone models a machine that leaves as setup ends (a laptop shut and started at
    home)."""


@dataclass(frozen=True)
class UrlCacheStart:
    """A client's URL cache before its first step: filled by a chain check of the MP's
    certificate from ``filled_on``, ``at`` from the run's time (``[client.url_cache]``)."""

    filled_on: Zone
    at: dt.timedelta = dt.timedelta(0)


@dataclass(frozen=True)
class ClientSpec:
    name: str
    domain_joined: bool
    ccmsetup: CcmsetupCommand
    fqdn: str
    """The computer's FQDN (client certificate subject); defaults to ``<name>.<AD domain>``."""
    certs: tuple[CertSpec, ...]
    """Certificates in the computer's Personal store (``[client.cert]`` or
    ``[[client.cert]]``); empty with ``cert = false``."""
    steps: tuple[StepSpec, ...]
    trusted_roots: tuple[str, ...] | None = None
    """CAs in the computer's Trusted Root Certification Authorities store, by name;
    None = every lab root."""
    clock_skew: dt.timedelta = dt.timedelta(0)
    """How far the computer's clock is off (``"-2h"``): it judges certificate and CRL dates by
    its own clock."""
    url_retrieval: str = "per-url"
    """CryptoAPI's retrieval time-outs: ``per-url`` (15 s each) or ``accumulative``
    (20 s in all: 10 s, 5 s, 2.5 s, ...; CERT_CHAIN_REVOCATION_ACCUMULATIVE_TIMEOUT)."""
    url_cache: UrlCacheStart | None = None
    """CryptoAPI's URL cache before the first step: None = empty."""

    @property
    def cert(self) -> CertSpec | None:
        """The first certificate of the store (None when the store is empty)."""
        return self.certs[0] if self.certs else None


@dataclass(frozen=True)
class NetworkSpec:
    reachable: Mapping[str, frozenset[Zone]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    """Host name (lower case) -> zones it can be reached from, overriding the defaults.
    The key ``ldap:///`` overrides the zones where a domain controller answers hostless
    LDAP URLs (for domain-joined machines)."""


@dataclass(frozen=True)
class Faults:
    """Misbehaviour knobs (``[faults]``), each off by default, applied in lab/servers/faults.py."""

    cdp_down: bool = False
    """The CDP/AIA web server does not answer (connection refused)."""
    cdp_delay: dt.timedelta | None = None
    """The CDP web server answers after this long (simulated, against the 15 s time-out)."""
    cdp_status: int | None = None
    """The CDP web server answers every request with this HTTP status (404, 500)."""
    cdp_content_type: str | None = None
    """The CDP web server labels what it serves with this Content-Type."""
    crl_body: str | None = None
    """``truncated`` or ``garbage``: the CRL bytes served are cut in half or random."""
    crl_foreign_signature: bool = False
    """Every CRL is signed by a key of no CA in the scenario."""
    crl_huge: int | None = None
    """Add this many revoked entries to every CRL (100000: a huge CRL)."""
    crl_stale: bool = False
    """Every CRL was not republished: its nextUpdate passed an hour ago."""
    ldap_down: bool = False
    """No domain controller answers LDAP: every ldap:// URL fails."""
    ldap_delay: dt.timedelta | None = None
    """The DC answers LDAP searches after this long (simulated, against the 15 s time-out)."""
    mp_down: bool = False
    """Nothing listens on the MP's ports."""
    mp_status: int | None = None
    """The MP answers every request with this HTTP status (500)."""
    crl_at: tuple[tuple[str, str], ...] = ()
    """Per CDP URL: ``expired`` (the CRL served there is past its nextUpdate) or ``missing``
    (nothing is served there). Set by ``check-cert``'s replay conditions, not in TOML."""

    def active(self) -> list[str]:
        """The knobs that are on, as ``name=value``."""
        default = Faults()
        out = []
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value != getattr(default, name):
                shown = (f"{value.total_seconds():g}s" if isinstance(value, dt.timedelta)
                         else str(value).lower() if isinstance(value, bool) else value)
                out.append(f"{name}={shown}")
        return out


@dataclass(frozen=True)
class Scenario:
    name: str
    """Short name (the file stem)."""
    file: str | None
    """Path of the scenario file, if it came from one."""
    info: ScenarioInfo
    site: Site
    cas: tuple[CASpec, ...]
    mp: MPSpec
    network: NetworkSpec
    clients: tuple[ClientSpec, ...]
    faults: Faults = field(default_factory=Faults)

    def ca(self, name: str) -> CASpec:
        """The CA called ``name`` (the loader has checked that it exists)."""
        for ca in self.cas:
            if ca.name == name:
                return ca
        raise KeyError(f"There is no CA named {name!r}")

    @property
    def ad_domain(self) -> str | None:
        """The AD domain: the domain of the first enterprise CA."""
        for ca in self.cas:
            if ca.kind is CAKind.ENTERPRISE and ca.domain:
                return ca.domain
        return None
