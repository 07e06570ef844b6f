"""Replay conditions: "our CRL moved". The user marks some of the certificate's CDP URLs as
unreachable from some zones, or as serving an expired CRL or none at all, and the replay shows
which clients then fail.

Flags (each may be repeated)::

    --url-unreachable URL[@ZONE,ZONE]   the URL's host does not resolve from these zones
                                        (default: every zone)
    --url-crl-expired URL               the URL serves a CRL whose nextUpdate has passed
    --url-crl-missing URL               the URL serves no CRL (HTTP 404, no LDAP object)
    --conditions FILE                   the same in TOML

The TOML file holds ``[[url]]`` tables::

    [[url]]
    url = "http://pki.contoso.com/CertEnroll/Contoso-CA.crl"
    state = "unreachable"          # or "crl-expired", "crl-missing"
    from = ["internet"]            # unreachable only; default: every zone

A URL must be one of the certificate's CDP URLs. "unreachable" applies to the URL's host (every
URL on that host) or, for a hostless ``ldap:///`` URL, to the domain controller.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from lab.errors import UsageError
from lab.pki.urls import parse_url
from lab.protocols.network import Network
from lab.scenario.model import NetworkSpec, Scenario, Zone

STATES = ("unreachable", "crl-expired", "crl-missing")
ZONES = tuple(z.value for z in Zone)
MAX_CONDITIONS_BYTES = 64 * 1024
HOSTLESS_LDAP = "ldap:///"


@dataclass(frozen=True)
class UrlCondition:
    """One URL's state in the replay."""

    url: str
    state: str
    """``unreachable``, ``crl-expired`` or ``crl-missing``."""
    zones: tuple[str, ...] = ZONES
    """Where it is unreachable (``unreachable`` only)."""
    origin: str = ""
    """Where the user said it: ``--url-unreachable`` or ``FILE: url[0]``."""

    def describe(self) -> str:
        if self.state == "unreachable":
            where = ("every zone" if set(self.zones) == set(ZONES)
                     else ", ".join(self.zones))
            return f"{self.url} unreachable from {where}"
        what = "an expired CRL" if self.state == "crl-expired" else "no CRL (404 / no object)"
        return f"{self.url} serves {what}"

    def as_dict(self) -> dict[str, object]:
        return {"url": self.url, "state": self.state,
                "from": list(self.zones) if self.state == "unreachable" else None}


def _zones(where: str, text: str) -> tuple[str, ...]:
    zones = tuple(z.strip().lower() for z in text.split(",") if z.strip())
    bad = [z for z in zones if z not in ZONES]
    if not zones or bad:
        raise UsageError(f"{where}: expected zones from {', '.join(ZONES)}, got {text!r}")
    return tuple(dict.fromkeys(zones))


def from_flag(option: str, value: str, state: str) -> UrlCondition:
    """A flag's ``URL`` or (``--url-unreachable``) ``URL@zone,zone``."""
    url, zones = value.strip(), ZONES
    if state == "unreachable" and "@" in url:
        head, _, tail = url.rpartition("@")
        if "/" not in tail:  # an "@" in the URL itself is followed by a path
            url, zones = head, _zones(option, tail)
    if not url:
        raise UsageError(f"{option}: expected a CDP URL, got {value!r}")
    return UrlCondition(url, state, zones, option)


def _line_of(text: str, needle: str, nth: int) -> int | None:
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[nth] if len(hits) > nth else None


def load_file(path: str) -> list[UrlCondition]:
    """The ``[[url]]`` tables of a conditions file; UsageError naming the key and line."""
    file = Path(path)
    try:
        if file.stat().st_size > MAX_CONDITIONS_BYTES:
            raise UsageError(f"{path}: larger than {MAX_CONDITIONS_BYTES} bytes")
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read the conditions file: "
                         f"{getattr(e, 'strerror', None) or e}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: {e}") from None
    extra = [k for k in doc if k != "url"]
    if extra:
        raise UsageError(f"{path}: {extra[0]}: expected only [[url]] tables")
    tables = doc.get("url", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise UsageError(f"{path}: url: expected [[url]] tables")
    out: list[UrlCondition] = []
    for i, t in enumerate(tables):
        line = _line_of(text, "[[url]]", i)
        where = f"{path}:{line}: url[{i}]" if line else f"{path}: url[{i}]"
        unknown = [k for k in t if k not in ("url", "state", "from")]
        if unknown:
            raise UsageError(f"{where}.{unknown[0]}: expected one of url, state, from")
        url, state, zones = t.get("url"), t.get("state"), t.get("from")
        if not isinstance(url, str) or not url.strip():
            raise UsageError(f"{where}.url: expected a CDP URL (a string)")
        if state not in STATES:
            raise UsageError(f"{where}.state: expected one of {', '.join(STATES)}, "
                             f"got {state!r}")
        if zones is not None and state != "unreachable":
            raise UsageError(f"{where}.from: only an 'unreachable' URL takes zones (a CRL "
                             "served expired or missing is so from everywhere)")
        if zones is not None and (not isinstance(zones, list)
                                  or not all(isinstance(z, str) for z in zones)):
            raise UsageError(f"{where}.from: expected a list of zones from {', '.join(ZONES)}")
        got = _zones(f"{where}.from", ",".join(zones)) if zones is not None else ZONES
        out.append(UrlCondition(url.strip(), state, got, where))
    return out


def check_urls(conditions: Sequence[UrlCondition], cdp_urls: Sequence[str]) -> None:
    """Every condition names one of the certificate's CDP URLs, each URL once."""
    seen: set[tuple[str, str]] = set()
    for c in conditions:
        if c.url not in cdp_urls:
            known = ", ".join(cdp_urls) or "none"
            raise UsageError(f"{c.origin}: {c.url!r} is not a CDP URL of the certificate "
                             f"(its CDP URLs: {known})")
        kind = "reach" if c.state == "unreachable" else "crl"
        if (c.url, kind) in seen:
            raise UsageError(f"{c.origin}: {c.url!r} is given twice")
        seen.add((c.url, kind))


def apply(scenarios: Sequence[Scenario], conditions: Sequence[UrlCondition]) -> list[Scenario]:
    """The replay scenarios with the conditions in place: unreachable hosts lose the zones in
    ``[network.reachable]``; expired and missing CRLs go into the per-URL fault ``crl_at``."""
    if not conditions:
        return list(scenarios)
    out = []
    for scenario in scenarios:
        network = Network(scenario)
        reachable: dict[str, frozenset[Zone]] = dict(scenario.network.reachable)
        for c in conditions:
            if c.state != "unreachable":
                continue
            host = parse_url(c.url).host
            key = host.lower() if host else HOSTLESS_LDAP
            if key in reachable:
                zones = reachable[key]
            else:
                zones = network.dc_rule().zones if not host else network.rule(host).zones
            reachable[key] = frozenset(zones - {Zone(z) for z in c.zones})
        crl_at = tuple((c.url, c.state.removeprefix("crl-")) for c in conditions
                       if c.state != "unreachable")
        out.append(dataclasses.replace(
            scenario, network=NetworkSpec(reachable=MappingProxyType(reachable)),
            faults=dataclasses.replace(scenario.faults, crl_at=crl_at)))
    return out
