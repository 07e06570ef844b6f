"""What the running lab serves for one scenario: publications, the directory's objects, and
the records the servers keep."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lab.clock import Clock
from lab.pki.build import BuiltPKI, Publication
from lab.pki.urls import parse_url
from lab.protocols.ldapwire import LDAP_PORT, dn_key
from lab.protocols.network import Machine, Network
from lab.scenario.model import Faults, Scenario
from lab.servers.faults import published

_OBJECT_CLASS = {"crl": "cRLDistributionPoint", "cacert": "certificationAuthority"}


@dataclass(frozen=True)
class DirectoryObject:
    """One object of ``CN=Configuration`` as the lab's DC holds it."""

    dn: str
    """The DN as the CA's URL spells it (``CN=Contoso-CA,CN=ca01,CN=CDP,...``)."""
    attributes: Mapping[str, tuple[bytes, ...]]
    """Attribute name (as AD spells it) -> values: ``objectClass``, ``cn`` and the binary
    ``certificateRevocationList`` / ``deltaRevocationList`` / ``cACertificate``."""

    def get(self, name: str) -> tuple[bytes, ...] | None:
        """The values of ``name`` (case-insensitive; an option such as ``;binary`` ignored)."""
        wanted = name.split(";", 1)[0].lower()
        for key, values in self.attributes.items():
            if key.lower() == wanted:
                return values
        return None


class Directory:
    """What the domain's DC holds for the CAs: the objects AD CS publishes in
    ``CN=Public Key Services,CN=Services,CN=Configuration,DC=...``.

    A CDP object ``CN=<CA>,CN=<host>,CN=CDP,...`` (objectClass cRLDistributionPoint) carries
    ``certificateRevocationList`` and, when the CA publishes delta CRLs there,
    ``deltaRevocationList``; an AIA object ``CN=<CA>,CN=AIA,...`` (certificationAuthority)
    carries ``cACertificate``. Built from the CAs' ``ldap://`` publications; the lab's LDAP
    server (:mod:`lab.servers.ldap_app`) answers searches from it. *Whether* a machine
    reaches the DC is decided by the network rules first (:mod:`lab.cryptoapi.retrieval`).
    """

    def __init__(self, publications: tuple[Publication, ...] = ()) -> None:
        objects: dict[str, tuple[str, dict[str, list[bytes]]]] = {}
        self._count = 0
        for pub in publications:
            if not pub.url.lower().startswith("ldap:") or pub.kind == "missing":
                continue
            parsed = parse_url(pub.url)
            key = dn_key(parsed.path)
            _dn, attrs = objects.setdefault(key, (parsed.path, {}))
            object_class = _OBJECT_CLASS.get(pub.kind, "top")
            name, _, value = parsed.filter.strip("()").partition("=")
            if name.strip().lower() == "objectclass" and value.strip() not in ("", "*"):
                object_class = value.strip()
            classes = attrs.setdefault("objectClass", [b"top"])
            if object_class.encode() not in classes:
                classes.append(object_class.encode())
            rdn = parsed.path.split(",", 1)[0].partition("=")[2]
            attrs.setdefault("cn", [rdn.encode()])
            attribute = parsed.attribute.split(";", 1)[0] or (
                "certificateRevocationList" if pub.kind == "crl" else "cACertificate")
            existing = next((k for k in attrs if k.lower() == attribute.lower()), None)
            if existing is None:
                self._count += 1
            attrs[existing or attribute] = [pub.data]  # one value: the last publication wins
        self._objects = {key: DirectoryObject(dn, MappingProxyType(
            {k: tuple(v) for k, v in attrs.items()})) for key, (dn, attrs) in objects.items()}

    def get(self, dn: str) -> DirectoryObject | None:
        """The object at ``dn`` (compared as a directory compares DNs), or None."""
        return self._objects.get(dn_key(dn))

    def search(self, dn: str, attribute: str) -> bytes | None:
        """The first value of ``attribute`` of the object at ``dn`` (``;binary`` ignored)."""
        obj = self.get(dn)
        values = obj.get(attribute) if obj is not None else None
        return values[0] if values else None

    def objects(self) -> tuple[DirectoryObject, ...]:
        return tuple(self._objects.values())

    def __len__(self) -> int:
        """How many (object, binary attribute) pairs the CAs published."""
        return self._count


@dataclass(frozen=True)
class PublishedView:
    """What the servers serve at one instant: the publications, the directory built from
    them, and the HTTP publications by ``(host:port, path)``."""

    publications: tuple[Publication, ...]
    directory: Directory
    http_publications: Mapping[tuple[str, str], Publication]

    @classmethod
    def of(cls, publications: tuple[Publication, ...]) -> PublishedView:
        http: dict[tuple[str, str], Publication] = {}
        for pub in publications:
            parsed = parse_url(pub.url)
            if parsed.scheme == "http":
                http[(f"{parsed.host}:{parsed.port}", parsed.path)] = pub
        return cls(publications, Directory(publications), MappingProxyType(http))


MAX_VIEWS = 64
"""Published views a deployment keeps (one per distinct set of current CRLs)."""


@dataclass
class Deployment:
    """One scenario staged on the running servers.

    What the servers serve follows the lab clock: :meth:`view` is what the CAs have published
    at the clock's current time (their CRL schedules, :mod:`lab.pki.schedule`), with the CRL
    faults applied; :attr:`publications`, :attr:`directory` and :attr:`http_publications`
    are that view's."""

    scenario: Scenario
    pki: BuiltPKI
    network: Network
    clock: Clock
    _faulty: Mapping[str, Publication] = field(init=False, repr=False)
    _views: dict[tuple[int, ...], PublishedView] = field(init=False, repr=False)
    double_escaping: Mapping[str, bool] = field(init=False)
    """``host:port`` -> whether the IIS there allows double escaping (request filtering's
    ``allowDoubleEscaping``; False refuses a ``+`` in the URL with 404.11)."""

    def __post_init__(self) -> None:
        faults = self.scenario.faults
        staged = published(self.pki, faults, self.clock.now(), self.scenario.mp.cert.issuer)
        # The CRL faults replace bytes once, at staging (a frozen CA's CRL never changes).
        self._faulty = MappingProxyType({
            new.url: new for new, old in zip(staged, self.pki.publications, strict=True)
            if new is not old})
        self._views = {}
        # One web server per host: it refuses '+' if any CA publishing there says so.
        escaping: dict[str, bool] = {}
        specs = {ca.name: ca for ca in self.scenario.cas}
        for pub in self.pki.publications:
            parsed = parse_url(pub.url)
            if parsed.scheme != "http":
                continue
            host_port = f"{parsed.host}:{parsed.port}"
            spec = specs.get(pub.ca)
            allowed = spec.iis_allow_double_escaping if spec is not None else True
            escaping[host_port] = escaping.get(host_port, True) and allowed
        self.double_escaping = MappingProxyType(escaping)

    def view(self, now: dt.datetime | None = None) -> PublishedView:
        """What the servers serve at ``now`` (default: the lab clock's current time)."""
        when = self.clock.now() if now is None else now
        key = self.pki.publication_key(when)
        got = self._views.get(key)
        if got is None:
            pubs = self.pki.publications_at(when)
            if self._faulty:
                pubs = tuple(self._faulty.get(p.url, p) if p.kind == "crl" else p for p in pubs)
            got = PublishedView.of(pubs)
            if len(self._views) >= MAX_VIEWS:
                self._views.clear()
            self._views[key] = got
        return got

    def next_change(self, now: dt.datetime) -> dt.datetime | None:
        """The next instant after ``now`` at which a CA publishes, or a CRL it published
        becomes valid or expires (None: nothing changes any more)."""
        publisher = self.pki.publisher
        if publisher is None:
            return None
        later = [t for s in publisher.schedules.values()
                 if (t := s.changes_after(now)) is not None]
        return min(later) if later else None

    @property
    def publications(self) -> tuple[Publication, ...]:
        """What the servers serve now: the CAs' current publications, CRL faults applied."""
        return self.view().publications

    @property
    def directory(self) -> Directory:
        return self.view().directory

    @property
    def http_publications(self) -> Mapping[tuple[str, str], Publication]:
        return self.view().http_publications

    @property
    def faults(self) -> Faults:
        return self.scenario.faults

    @property
    def mp_machine(self) -> Machine:
        """The MP as a machine on the network (``[mp] zone`` and ``domain_joined``)."""
        mp = self.scenario.mp
        return Machine("MP", mp.zone, mp.domain_joined, self.scenario.ad_domain)

    @property
    def mp_names(self) -> tuple[str, ...]:
        mp = self.scenario.mp
        return (mp.intranet_fqdn,) + ((mp.internet_fqdn,) if mp.internet_fqdn else ())

    def ldap_hosts(self) -> set[tuple[str, int]]:
        """Where the DC's LDAP service answers: the DC of the AD domain (serverless
        ``ldap:///`` binds) and the host of every ``ldap://host/`` publication."""
        hosts: set[tuple[str, int]] = set()
        if self.network.domain or any(p.url.lower().startswith("ldap:///")
                                      for p in self.publications):
            hosts.add((self.network.dc_host(), LDAP_PORT))
        for pub in self.publications:
            parsed = parse_url(pub.url)
            if parsed.scheme == "ldap" and parsed.host:
                hosts.add((parsed.host, parsed.port))
        return hosts

    def cdp_hosts(self) -> set[tuple[str, int]]:
        hosts: set[tuple[str, int]] = set()
        for host_port, _path in self.http_publications:
            host, port = host_port.rsplit(":", 1)
            hosts.add((host, int(port)))
        return hosts
