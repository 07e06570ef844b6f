"""Per-zone meaning of the CDP and AIA URLs: who can fetch each, under the lab's network rules.
"""

from __future__ import annotations

from collections.abc import Sequence

from lab.pki.urls import parse_url, url_scheme
from lab.protocols.network import Machine, Network
from lab.scenario.model import (
    CAKind,
    CASpec,
    CertSpec,
    MPSpec,
    NetworkSpec,
    Scenario,
    ScenarioInfo,
    Site,
)
from lab.tools.checkcert.profile import CLIENT_CA, Profile


def lab_network(profile: Profile) -> Network:
    """The lab's default reachability rules for the replay's hosts."""
    intranet = profile.intranet_fqdn or f"mp.{profile.ad_domain}"
    client_ca = CASpec(name=CLIENT_CA, kind=CAKind.ENTERPRISE,
                       host=f"lab-clients-ca.{profile.ad_domain}", domain=profile.ad_domain)
    scenario = Scenario(
        name="check-cert", file=None, info=ScenarioInfo(title="check-cert"), site=Site(),
        cas=(*(c.spec for c in profile.cas), client_ca),
        mp=MPSpec(intranet_fqdn=intranet, internet_fqdn=profile.internet_fqdn,
                  cert=CertSpec(issuer=CLIENT_CA)),
        network=NetworkSpec(), clients=())
    return Network(scenario)


def url_reach(url: str, network: Network, domain: str) -> tuple[list[str], str]:
    """(situations that can fetch ``url``, why) under the lab's default network rules."""
    from lab.results.grid import SITUATIONS

    scheme = url_scheme(url)
    if scheme not in ("http", "ldap"):
        why = {"https": "CRLs are fetched over plain HTTP or LDAP; the lab does not fetch "
                        "https:// CDPs",
               "file": "file:// (SMB) is not simulated"}.get(scheme, f"{scheme}: URL")
        return [], why
    try:
        parsed = parse_url(url)
    except ValueError:
        return [], "malformed URL"
    out: list[str] = []
    for sit in SITUATIONS:
        machine = Machine(sit.key, sit.zones[-1], sit.domain_joined, domain)
        ok = (network.can_reach_dc(machine) if scheme == "ldap" and not parsed.host
              else network.can_resolve(machine, parsed.host))
        if ok:
            out.append(sit.key)
    if scheme == "ldap" and not parsed.host:
        why = "ldap:/// needs a domain controller: domain-joined machines inside"
    else:
        why = network.rule(parsed.host).why
    return out, why


REACH_LABELS = {"intranet": "domain-joined intranet", "workgroup": "workgroup intranet",
                "vpn": "VPN", "internet": "internet"}


def reach_text(keys: Sequence[str]) -> str:
    if not keys:
        return "nobody"
    if len(keys) == len(REACH_LABELS):
        return "everyone"
    return ", ".join(REACH_LABELS[k] for k in keys)
