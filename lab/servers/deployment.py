"""What the running lab serves for one scenario, and the in-process directory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from lab.clock import Clock
from lab.network import Machine, Network
from lab.pki.build import BuiltPKI, Publication
from lab.pki.urls import directory_key, parse_url
from lab.scenario.model import Faults, Scenario
from lab.servers.faults import published


class Directory:
    """An in-process stand-in for Active Directory's ``CN=Configuration`` objects.

    Holds what the CAs publish at ``ldap://`` URLs (``certificateRevocationList``,
    ``cACertificate``). *Whether* a machine may query it is decided by the network rules
    before a lookup is made (see :mod:`lab.cryptoapi.retrieval`).
    """

    def __init__(self, publications: tuple[Publication, ...] = (), *,
                 available: bool = True) -> None:
        self.available = available
        """False when no domain controller answers (the ``ldap_down`` fault)."""
        self._entries: dict[tuple[str, str], bytes] = {}
        for pub in publications:
            if pub.url.lower().startswith("ldap:"):
                self._entries[directory_key(pub.url)] = pub.data

    def search(self, dn: str, attribute: str) -> bytes | None:
        key = (dn.lower(), attribute.lower())
        if key in self._entries:
            return self._entries[key]
        # ";binary" is an LDAP transfer option, not part of the attribute name.
        return self._entries.get((key[0], key[1].split(";", 1)[0]))

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class MpRecord:
    """One request the mock MP answered: the fields an IIS W3C log line carries."""

    time: dt.datetime
    step: str | None
    """The lab's correlation id for the client step that sent it (``X-Lab-Step``)."""
    method: str
    uri_stem: str
    uri_query: str
    port: int
    client_ip: str
    user_agent: str
    host: str
    status: int
    substatus: int
    win32_status: int
    detail: str
    """Why the MP answered as it did (for explanations; not part of a real IIS log)."""
    time_taken_ms: int = 0
    """Simulated time the answer took: IIS's CRL retrieval time-outs for the client
    certificate (``time-taken`` in the W3C log)."""


@dataclass
class Deployment:
    """One scenario staged on the running servers."""

    scenario: Scenario
    pki: BuiltPKI
    network: Network
    clock: Clock
    directory: Directory = field(init=False)
    publications: tuple[Publication, ...] = field(init=False)
    """What the servers serve: the PKI's publications with the CRL faults applied."""
    http_publications: Mapping[tuple[str, str], Publication] = field(init=False)

    def __post_init__(self) -> None:
        faults = self.scenario.faults
        self.publications = published(self.pki, faults, self.clock.now(),
                                      self.scenario.mp.cert.issuer)
        self.directory = Directory(self.publications, available=not faults.ldap_down)
        http: dict[tuple[str, str], Publication] = {}
        for pub in self.publications:
            parsed = parse_url(pub.url)
            if parsed.scheme == "http":
                http[(f"{parsed.host}:{parsed.port}", parsed.path)] = pub
        self.http_publications = http

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

    def cdp_hosts(self) -> set[tuple[str, int]]:
        hosts: set[tuple[str, int]] = set()
        for host_port, _path in self.http_publications:
            host, port = host_port.rsplit(":", 1)
            hosts.add((host, int(port)))
        return hosts
