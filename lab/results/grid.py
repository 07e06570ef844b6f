"""The matrix's grid, as plain data: the dimensions (rows) and client situations (columns).

The sweep (:mod:`lab.matrix.sweep`) runs them and the reports label their output with them.
Kept apart from :mod:`lab.results.matrix` so that the command line can list them without
importing the lab (``ibcm-lab --help`` stays fast).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from lab.scenario.model import Action, Zone


@dataclass(frozen=True)
class Dimension:
    key: str
    title: str
    values: tuple[str, ...]
    labels: Mapping[str, str]
    """value -> what it means, for the legend and the HTML report."""
    extra: tuple[str, ...] = ()
    """Values taken when asked for (``--names wildcard``) but not swept by default, so the
    default grid keeps its size."""


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("cdp", "CDP layout", ("ldap", "ldap+http-intranet", "ldap+http-internet",
                                     "http-internet", "none"), MappingProxyType({
        "ldap": "LDAP only (ldap:///, the directory)",
        "ldap+http-intranet": "AD CS default: LDAP, then http://<CA host> (intranet only)",
        "ldap+http-internet": "LDAP, then an HTTP CDP published to the internet",
        "http-internet": "only an HTTP CDP published to the internet",
        "none": "no CDP extension",
    })),
    Dimension("site_crl", "site CRL check", ("on", "off"), MappingProxyType({
        "on": "Clients check the CRL for site systems: checked",
        "off": "Clients check the CRL for site systems: cleared",
    })),
    Dimension("nocrlcheck", "/NoCRLCheck", ("yes", "no"), MappingProxyType({
        "yes": "ccmsetup with /NoCRLCheck", "no": "ccmsetup without /NoCRLCheck"})),
    Dimension("names", "MP cert names", ("both", "intranet", "internet"), MappingProxyType({
        "both": "the MP certificate names both FQDNs",
        "intranet": "the MP certificate names the intranet FQDN only",
        "internet": "the MP certificate names the internet FQDN only",
        "wildcard": "the MP certificate names the intranet FQDN and *.public.com, which "
                    "covers the internet FQDN (one label)",
    }), extra=("wildcard",)),
    Dimension("smsmp", "SMSMP", ("https", "plain"), MappingProxyType({
        "https": "SMSMP=https://<intranet FQDN>", "plain": "SMSMP=<intranet FQDN> (no https://)"})),
    Dimension("ccmhostname", "CCMHOSTNAME", ("given", "omitted"), MappingProxyType({
        "given": "CCMHOSTNAME=<internet FQDN>", "omitted": "no CCMHOSTNAME"})),
)
DIMENSION_BY_KEY = {d.key: d for d in DIMENSIONS}


@dataclass(frozen=True)
class Situation:
    key: str
    title: str
    domain_joined: bool
    zones: tuple[Zone, Zone, Zone, Zone]
    """Where the install, register, location and policy steps happen."""


SITUATIONS: tuple[Situation, ...] = (
    Situation("intranet", "domain-joined, intranet", True, (Zone.INTRANET,) * 4),
    Situation("workgroup", "workgroup, intranet", False, (Zone.INTRANET,) * 4),
    Situation("vpn", "domain-joined, VPN", True, (Zone.VPN,) * 4),
    Situation("internet", "domain-joined, installed inside, then on the internet", True,
              (Zone.INTRANET, Zone.INTRANET, Zone.INTRANET, Zone.INTERNET)),
)
SITUATION_BY_KEY = {s.key: s for s in SITUATIONS}
ACTIONS = (Action.INSTALL, Action.REGISTER, Action.LOCATION, Action.POLICY)


__all__ = ["ACTIONS", "DIMENSIONS", "DIMENSION_BY_KEY", "SITUATIONS", "SITUATION_BY_KEY",
           "Dimension", "Situation"]
