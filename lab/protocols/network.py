"""The simulated network: zones, which host can be reached from where, and a resolver.

Only the network is simulated. A machine sits in a zone (intranet, internet, vpn, dmz). A
host name is reachable from a set of zones; the defaults follow the seed document:

* the MP's intranet FQDN: intranet and vpn;
* the MP's internet FQDN: internet, intranet and vpn;
* every name in the AD domain (the CA host included): intranet and vpn;
* every other name (a public CA's host, a CRL host published to the internet): everywhere;
* ``ldap:///`` (no host: "a domain controller of my own domain"): only a domain-joined
  machine in the intranet or on the VPN. The lab's domain has one DC, ``DC01.<domain>``
  (the name is the lab's; Windows finds a DC through DNS SRV records), played by the lab's
  LDAP server.

``[network.reachable]`` in a scenario overrides any of these per host. A reachable name maps
to the loopback port of the server playing it (:class:`HostMap`); an unreachable one is
refused as Windows would report it: the name does not resolve.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import StreamReader
from aiohttp.abc import AbstractResolver, ResolveResult

from lab.names import in_domain
from lab.scenario.model import ALL_ZONES, CAKind, Scenario, Zone

LOOPBACK = "127.0.0.1"
SIMULATED_DELAY_HEADER = "X-Lab-Simulated-Delay-Ms"
"""How a slow server tells the client how long its answer took (simulated, never slept)."""
HOSTLESS_LDAP = "ldap:///"
DC_NAME = "DC01"
"""The computer name of the lab's one domain controller (the lab's model: a real client
locates a DC of its domain through DNS, ``_ldap._tcp.dc._msdcs.<domain>``)."""

INSIDE = frozenset({Zone.INTRANET, Zone.VPN})


@dataclass(frozen=True)
class Machine:
    """A computer on the simulated network at one moment."""

    name: str
    zone: Zone
    domain_joined: bool
    domain: str | None = None

    def moved(self, zone: Zone) -> Machine:
        return Machine(self.name, zone, self.domain_joined, self.domain)


@dataclass(frozen=True)
class Rule:
    zones: frozenset[Zone]
    why: str
    """Why the host has these zones, in words (for explanations)."""


class Network:
    """Reachability of every host a scenario mentions."""

    def __init__(self, scenario: Scenario) -> None:
        self.domain = (scenario.ad_domain or "").lower() or None
        self._rules: dict[str, Rule] = {}
        for ca in scenario.cas:
            if ca.kind is CAKind.PUBLIC:
                self._rules[ca.host.lower()] = Rule(ALL_ZONES, f"the public CA {ca.name}'s host")
        mp = scenario.mp
        self._rules[mp.intranet_fqdn.lower()] = Rule(INSIDE, "the MP's intranet FQDN")
        if mp.internet_fqdn:
            zones = frozenset({Zone.INTERNET, Zone.INTRANET, Zone.VPN})
            if mp.internet_fqdn.lower() == mp.intranet_fqdn.lower():
                zones = zones | INSIDE
            self._rules[mp.internet_fqdn.lower()] = Rule(zones, "the MP's internet FQDN")
        self._dc_rule = Rule(INSIDE, "a domain controller of the machine's own domain")
        for host, zones in scenario.network.reachable.items():
            rule = Rule(zones, "set in [network.reachable]")
            if host == HOSTLESS_LDAP:
                self._dc_rule = rule
            else:
                self._rules[host] = rule

    def rule(self, host: str) -> Rule:
        """The reachability rule for ``host`` (explicit, MP, AD domain, or public)."""
        host = host.lower().rstrip(".")
        if host in self._rules:
            return self._rules[host]
        if in_domain(host, self.domain):
            return Rule(INSIDE, f"a name in the AD domain {self.domain}")
        return Rule(ALL_ZONES, "a public internet name")

    def can_resolve(self, machine: Machine, host: str) -> bool:
        return machine.zone in self.rule(host).zones

    def dc_rule(self) -> Rule:
        """Where a DC answers hostless ``ldap:///`` URLs (domain-joined machines only)."""
        return self._dc_rule

    def dc_host(self) -> str:
        """The FQDN of the DC a serverless ``ldap:///`` bind reaches: ``DC01.contoso.local``."""
        return f"{DC_NAME}.{self.domain}" if self.domain else DC_NAME

    def can_reach_dc(self, machine: Machine) -> bool:
        """Whether a hostless ``ldap:///`` URL finds a DC for ``machine``."""
        return machine.domain_joined and machine.zone in self._dc_rule.zones


class HostMap:
    """``(host, port)`` -> loopback port of the server playing that host."""

    def __init__(self) -> None:
        self._map: dict[tuple[str, int], int] = {}

    def set(self, host: str, port: int, loopback_port: int) -> None:
        self._map[(host.lower().rstrip("."), port)] = loopback_port

    def get(self, host: str, port: int) -> int | None:
        return self._map.get((host.lower().rstrip("."), port))

    def clear(self) -> None:
        self._map.clear()

    def items(self) -> Mapping[tuple[str, int], int]:
        return dict(self._map)


class NameNotResolved(OSError):
    """The zone-aware resolver refused a name (WinHTTP: ERROR_WINHTTP_NAME_NOT_RESOLVED)."""


class ZoneResolver(AbstractResolver):
    """aiohttp resolver for one machine: maps reachable names to their loopback server."""

    def __init__(self, network: Network, machine: Machine, hosts: HostMap) -> None:
        self.network = network
        self.machine = machine
        self.hosts = hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if not self.network.can_resolve(self.machine, host):
            raise NameNotResolved(
                socket.EAI_NONAME, f"{host} does not resolve from the {self.machine.zone} zone"
            )
        target = self.hosts.get(host, port)
        if target is None:
            raise ConnectionRefusedError(f"nothing in the lab listens for {host}:{port}")
        result: dict[str, Any] = {
            "hostname": host, "host": LOOPBACK, "port": target,
            "family": socket.AF_INET, "proto": 0, "flags": socket.AI_NUMERICHOST,
        }
        return [result]  # type: ignore[list-item]

    async def close(self) -> None:
        return None


async def read_bounded(content: StreamReader, limit: int) -> bytes:
    """A body (a request's or a response's), or its first ``limit`` bytes: one read() may
    return less, and a peer may send more than anyone should hold."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]
