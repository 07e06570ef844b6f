"""The picture of a scenario's network for the training console: zones, the machines in
them, and which name answers from which zone.

Reachability is not drawn by hand: every cell comes from :class:`lab.protocols.network.Network`, the
same rules the simulated client's resolver and CRL retrieval apply. Where a machine is
*drawn* (its home zone) is only a picture: the intranet for the MP, the CA, the domain
controller and names of the AD domain; the DMZ for a CDP web server published to the
internet; the internet for a public CA.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from lab.pki.urls import expand
from lab.protocols.network import HOSTLESS_LDAP, Machine, Network
from lab.scenario.model import CAKind, Scenario, Zone

__all__ = ["ZONE_TITLES", "mp_cdp_urls", "topology"]

ZONE_TITLES = {Zone.INTRANET: "Intranet", Zone.VPN: "VPN", Zone.DMZ: "DMZ",
               Zone.INTERNET: "Internet"}
"""The zones, in the order the page draws them."""


def mp_cdp_urls(scenario: Scenario) -> tuple[str, ...]:
    """The CDP URLs written into the MP's certificate, in certificate order."""
    cert = scenario.mp.cert
    ca = scenario.ca(cert.issuer)
    return expand(ca, cert.cdp if cert.cdp is not None else ca.cdp)


def _client_zones(scenario: Scenario) -> list[str]:
    zones: list[str] = []
    for client in scenario.clients:
        for step in client.steps:
            if step.location.value not in zones:
                zones.append(step.location.value)
    return zones


def _home(network: Network, host: str, scenario: Scenario) -> Zone:
    public_hosts = {ca.host.lower() for ca in scenario.cas if ca.kind is CAKind.PUBLIC}
    if host.lower() in public_hosts:
        return Zone.INTERNET
    zones = network.rule(host).zones
    return Zone.INTRANET if Zone.INTERNET not in zones else Zone.DMZ


def topology(scenario: Scenario) -> dict[str, Any]:
    """Zones with their machines, the client's zones, and a reachability table whose rows
    are the names the client needs and whose columns are the zones."""
    network = Network(scenario)
    mp = scenario.mp
    machines: dict[Zone, list[dict[str, Any]]] = {z: [] for z in ZONE_TITLES}
    names = [mp.intranet_fqdn] + ([mp.internet_fqdn] if mp.internet_fqdn else [])
    machines[mp.zone].append({"role": "mp", "title": "Management point", "names": names,
                              "note": "HTTPS only" if scenario.site.https_only
                              else "HTTPS or HTTP"})
    if scenario.ad_domain:
        machines[Zone.INTRANET].append({
            "role": "dc", "title": "Domain controller",
            "names": [network.dc_host(), scenario.ad_domain],
            "note": "answers ldap:/// (domain-joined machines inside)"})
    client_issuers = {c.issuer for client in scenario.clients for c in client.certs}
    for ca in scenario.cas:
        jobs = [j for j, yes in (("the MP certificate", ca.name == mp.cert.issuer),
                                 ("client certificates", ca.name in client_issuers)) if yes]
        kind = "enterprise (AD CS)" if ca.kind is CAKind.ENTERPRISE else "public CA"
        machines[_home(network, ca.host, scenario)].append({
            "role": "ca", "title": f"CA: {ca.name}", "names": [ca.host],
            "note": kind + (f"; issues {' and '.join(jobs)}" if jobs else "")})
    urls = mp_cdp_urls(scenario)
    web_hosts: list[str] = []
    for url in urls:
        host = (urlsplit(url).hostname or "") if url.lower().startswith("http://") else ""
        if host and host not in web_hosts:
            web_hosts.append(host)
    for host in web_hosts:
        on_ca = any(ca.host.lower() == host.lower() for ca in scenario.cas)
        machines[_home(network, host, scenario)].append({
            "role": "cdp", "title": "CDP web server" + (" (IIS on the CA)" if on_ca else ""),
            "names": [host], "note": "serves the CRL over HTTP"})
    client_zones = _client_zones(scenario)
    for client in scenario.clients:
        where = [s.location for s in client.steps]
        for zone in dict.fromkeys(where):
            steps = [f"{i + 1}. {s.action.value}" for i, s in enumerate(client.steps)
                     if s.location is zone]
            machines[zone].append({
                "role": "client", "title": f"Client {client.name}", "names": [client.fqdn],
                "note": ("domain-joined" if client.domain_joined else "workgroup")
                + ": " + ", ".join(steps)})

    joined = all(c.domain_joined for c in scenario.clients) if scenario.clients else True
    rows: list[dict[str, Any]] = []

    def row(what: str, target: str, reach: dict[str, bool], why: str) -> None:
        rows.append({"what": what, "target": target, "reach": reach, "why": why})

    def by_name(host: str) -> dict[str, bool]:
        return {z.value: network.can_resolve(Machine("x", z, joined), host)
                for z in ZONE_TITLES}

    row("MP, intranet name", mp.intranet_fqdn, by_name(mp.intranet_fqdn),
        network.rule(mp.intranet_fqdn).why)
    if mp.internet_fqdn:
        row("MP, internet name", mp.internet_fqdn, by_name(mp.internet_fqdn),
            network.rule(mp.internet_fqdn).why)
    for n, url in enumerate(urls, start=1):
        what = f"CDP {n} of the MP certificate"
        if url.lower().startswith(HOSTLESS_LDAP):
            reach = {z.value: network.can_reach_dc(Machine("x", z, joined)) for z in ZONE_TITLES}
            why = network.dc_rule().why + ("" if joined else "; this client is in a workgroup")
            row(what, url, reach, why)
        else:
            host = urlsplit(url).hostname or ""
            row(what, url, by_name(host), network.rule(host).why)
    return {
        "zones": [{"key": z.value, "title": t, "machines": machines[z]}
                  for z, t in ZONE_TITLES.items()],
        "client_zones": client_zones,
        "columns": [{"key": z.value, "title": t} for z, t in ZONE_TITLES.items()],
        "rows": rows,
        "joined": joined,
    }
