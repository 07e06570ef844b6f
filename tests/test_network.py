"""Tests for lab.protocols.network: zones, reachability, overrides, the zone-aware resolver."""

from __future__ import annotations

import socket

import pytest
from labtest import INTERNET, INTRA, contoso, fabrikam, machine, scenario_toml

from lab.protocols.network import LOOPBACK, HostMap, NameNotResolved, Network, ZoneResolver
from lab.scenario.loader import load_scenario_text
from lab.scenario.model import ALL_ZONES, Zone

BASE = scenario_toml(title="test_network", cas=contoso() + fabrikam(), network="{network}")


def network(reachable: str = "") -> Network:
    section = f"[network.reachable]\n{reachable}" if reachable else ""
    return Network(load_scenario_text(BASE.replace("{network}", section), name="net"))


def reachable_from(net: Network, host: str) -> set[Zone]:
    return {z for z in Zone if net.can_resolve(machine(z), host)}


IN, E, V, D = Zone.INTRANET, Zone.INTERNET, Zone.VPN, Zone.DMZ

DEFAULTS = [
    (INTRA, {IN, V}, "the MP's intranet FQDN"),
    (INTERNET, {E, IN, V}, "the MP's internet FQDN"),
    ("ca01.contoso.local", {IN, V}, "a name in the AD domain contoso.local"),
    ("PC02.contoso.local", {IN, V}, "a name in the AD domain contoso.local"),
    ("contoso.local", {IN, V}, "a name in the AD domain contoso.local"),
    ("crl.fabrikam-trust.example", {IN, E, V, D}, "the public CA Fabrikam Public CA's host"),
    ("www.example.org", {IN, E, V, D}, "a public internet name"),
    # Not in the domain: a suffix match needs the dot.
    ("notcontoso.local", {IN, E, V, D}, "a public internet name"),
]


@pytest.mark.parametrize(("host", "zones", "why"), DEFAULTS, ids=[d[0] for d in DEFAULTS])
def test_default_reachability_per_zone(host: str, zones: set[Zone], why: str) -> None:
    net = network()
    assert reachable_from(net, host) == zones
    rule = net.rule(host)
    assert rule.zones == frozenset(zones)
    assert rule.why == why


@pytest.mark.parametrize("spelling", ["IBCM-INTRA.CONTOSO.LOCAL", "ibcm-intra.contoso.local.",
                                      "CA01.Contoso.Local."])
def test_host_names_are_case_insensitive_and_ignore_the_root_dot(spelling: str) -> None:
    net = network()
    assert reachable_from(net, spelling) == {IN, V}
    assert not net.can_resolve(machine(E), spelling)


def test_mp_without_internet_fqdn_has_no_internet_rule() -> None:
    text = BASE.replace("{network}", "").replace(f'internet_fqdn = "{INTERNET}"\n', "")
    net = Network(load_scenario_text(text, name="net"))
    # The internet name is then just another public name, the intranet one stays inside.
    assert net.rule(INTERNET).why == "a public internet name"
    assert reachable_from(net, INTRA) == {IN, V}


@pytest.mark.parametrize(("zone", "joined", "expected"), [
    (IN, True, True), (V, True, True), (E, True, False), (D, True, False),
    (IN, False, False), (V, False, False), (E, False, False), (D, False, False),
])
def test_hostless_ldap_needs_domain_joined_inside(zone: Zone, joined: bool, expected: bool) -> None:
    net = network()
    assert net.can_reach_dc(machine(zone, joined)) is expected
    assert net.dc_rule().zones == frozenset({IN, V})
    assert net.dc_rule().why == "a domain controller of the machine's own domain"


def test_reachable_overrides_replace_the_default_rules() -> None:
    net = network(
        '"ca01.contoso.local" = ["intranet", "internet"]\n'
        '"IBCM-Intra.contoso.local" = ["intranet"]\n'
        '"crl.fabrikam-trust.example" = ["internet"]\n'
        '"www.example.org" = []\n'
    )
    assert reachable_from(net, "ca01.contoso.local") == {IN, E}
    assert reachable_from(net, INTRA) == {IN}
    assert reachable_from(net, "crl.fabrikam-trust.example") == {E}
    assert reachable_from(net, "www.example.org") == set()
    assert net.rule("CA01.contoso.local").why == "set in [network.reachable]"
    # Twins: names without an override keep their defaults.
    assert reachable_from(net, "PC02.contoso.local") == {IN, V}
    assert reachable_from(net, INTERNET) == {E, IN, V}
    assert reachable_from(net, "other.example.org") == set(ALL_ZONES)
    assert net.can_reach_dc(machine(IN)) and not net.can_reach_dc(machine(E))


def test_hostless_ldap_override() -> None:
    net = network('"ldap:///" = ["intranet", "dmz"]\n')
    assert net.dc_rule().why == "set in [network.reachable]"
    assert net.can_reach_dc(machine(D)) is True
    assert net.can_reach_dc(machine(V)) is False
    assert net.can_reach_dc(machine(IN)) is True
    # A workgroup machine has no DC of its own, whatever the zones say.
    assert net.can_reach_dc(machine(D, domain_joined=False)) is False
    # "ldap:///" only overrides the DC rule, not a host called that.
    assert reachable_from(net, "ca01.contoso.local") == {IN, V}
    # Twin: without the override, the DMZ finds no DC.
    assert network().can_reach_dc(machine(D)) is False


def test_machine_moved_keeps_identity() -> None:
    m = machine(IN)
    moved = m.moved(E)
    assert (moved.name, moved.zone, moved.domain_joined, moved.domain) == (
        "PC01", E, True, "contoso.local")
    assert m.zone is IN


def test_host_map_normalises_names() -> None:
    hosts = HostMap()
    hosts.set("IBCM-Intra.contoso.local.", 443, 50443)
    assert hosts.get("ibcm-intra.contoso.local", 443) == 50443
    assert hosts.get("IBCM-INTRA.contoso.local.", 443) == 50443
    assert hosts.get("ibcm-intra.contoso.local", 80) is None
    assert hosts.items() == {("ibcm-intra.contoso.local", 443): 50443}
    hosts.clear()
    assert hosts.get("ibcm-intra.contoso.local", 443) is None


def resolver(zone: Zone, domain_joined: bool = True) -> ZoneResolver:
    hosts = HostMap()
    hosts.set(INTRA, 443, 50443)
    hosts.set(INTERNET, 443, 50443)
    hosts.set("ca01.contoso.local", 80, 50080)
    return ZoneResolver(network(), machine(zone, domain_joined), hosts)


async def test_resolver_maps_a_reachable_name_to_loopback() -> None:
    res = resolver(E)
    got = await res.resolve(INTERNET, 443, socket.AF_INET)
    assert len(got) == 1
    assert got[0]["host"] == LOOPBACK == "127.0.0.1"
    assert got[0]["port"] == 50443
    assert got[0]["hostname"] == INTERNET
    assert got[0]["family"] == socket.AF_INET
    # Same machine, moved inside: the CA host resolves to the CDP server's port.
    res.machine = res.machine.moved(IN)
    got = await res.resolve("ca01.contoso.local", 80)
    assert (got[0]["host"], got[0]["port"]) == ("127.0.0.1", 50080)
    await res.close()


async def test_resolver_refuses_an_unreachable_name() -> None:
    res = resolver(E)
    with pytest.raises(NameNotResolved) as info:
        await res.resolve(INTRA, 443)
    assert isinstance(info.value, OSError)
    assert info.value.errno == socket.EAI_NONAME
    assert info.value.strerror == f"{INTRA} does not resolve from the internet zone"
    with pytest.raises(NameNotResolved) as info:
        await res.resolve("ca01.contoso.local", 80)
    assert info.value.strerror == "ca01.contoso.local does not resolve from the internet zone"
    # Twin: the same name from the intranet.
    res.machine = res.machine.moved(IN)
    assert (await res.resolve(INTRA, 443))[0]["port"] == 50443


async def test_resolver_refuses_connection_for_a_reachable_unmapped_name() -> None:
    res = resolver(IN)
    with pytest.raises(ConnectionRefusedError,
                       match=r"^nothing in the lab listens for IBCM-Intra\.contoso\.local:80$"):
        await res.resolve(INTRA, 80)
    with pytest.raises(ConnectionRefusedError,
                       match=r"^nothing in the lab listens for www\.example\.org:80$"):
        await res.resolve("www.example.org", 80)
    # Twin: mapped port of the same name.
    assert (await res.resolve(INTRA, 443))[0]["port"] == 50443
