"""The matrix's grid, as plain data: the dimensions (rows) and client situations (columns).

The sweep (:mod:`lab.matrix.sweep`) runs them and the reports label their output with them.
Kept apart from :mod:`lab.results.matrix` so that the command line can list them without
importing the lab (``ibcm-lab --help`` stays fast).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from lab.scenario.model import Action, StepSpec, Zone


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
    last_at: dt.timedelta | None = None
    """When the policy step happens, after the start (None: a second after the others)."""


WEEK_LATER = dt.timedelta(days=8)
"""When an internet client's policy step happens in the grid: eight days after its install on
the intranet, so that whatever CryptoAPI cached there (a CRL until its nextUpdate: a week and
its overlap; a delta CRL a day) has expired and the client must reach a CDP from the
internet. Right after the install it would still work from its URL cache (scenario
it-worked-yesterday)."""


SITUATIONS: tuple[Situation, ...] = (
    Situation("intranet", "domain-joined, intranet", True, (Zone.INTRANET,) * 4),
    Situation("workgroup", "workgroup, intranet", False, (Zone.INTRANET,) * 4),
    Situation("vpn", "domain-joined, VPN", True, (Zone.VPN,) * 4),
    Situation("internet", "domain-joined, installed inside, on the internet a week later", True,
              (Zone.INTRANET, Zone.INTRANET, Zone.INTRANET, Zone.INTERNET), WEEK_LATER),
)
SITUATION_BY_KEY = {s.key: s for s in SITUATIONS}
ACTIONS = (Action.INSTALL, Action.REGISTER, Action.LOCATION, Action.POLICY)


def situation_steps(sit: Situation) -> tuple[StepSpec, ...]:
    """A client's steps in ``sit``: :data:`ACTIONS` in its zones, the last at its time."""
    last = len(ACTIONS) - 1
    return tuple(StepSpec(a, z, at=sit.last_at if i == last else None)
                 for i, (a, z) in enumerate(zip(ACTIONS, sit.zones, strict=True)))


__all__ = ["ACTIONS", "DIMENSIONS", "DIMENSION_BY_KEY", "SITUATIONS", "SITUATION_BY_KEY",
           "WEEK_LATER", "Dimension", "Situation", "situation_steps"]
