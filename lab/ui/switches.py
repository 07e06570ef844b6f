"""The training console's switches: what they are, how they become a scenario, the seed's
scenes as presets, and which switch fixes a failure.

The six switches that are matrix dimensions (CDP layout, the site's CRL box,
``/NoCRLCheck``, the MP certificate's names, ``SMSMP`` with or without ``https://``,
``CCMHOSTNAME``) are turned into a scenario by :func:`lab.matrix.scenario_for`, exactly as
``ibcm-lab matrix`` does; the console's other switches (the client's location and domain
membership, ``/UsePKICert``, the site refresh before roaming, the MP certificate's CA, a
revoked MP certificate, an expired CRL) adjust that scenario's frozen data afterwards. Every
value is checked: a bad one raises :class:`~lab.errors.SwitchError` naming the switch.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from lab.configmgr.ccmsetup import parse_ccmsetup
from lab.errors import SwitchError
from lab.matrix.sweep import scenario_for
from lab.results.grid import DIMENSIONS, WEEK_LATER, Situation
from lab.results.verdicts import StepResult
from lab.scenario.model import Action, CAKind, CASpec, Scenario, ScenarioInfo, Zone
from lab.tools.demo import SCENES

__all__ = ["GROUPS", "PRESETS", "SWITCHES", "SWITCH_BY_KEY", "Fix", "Preset", "Switch",
           "build_scenario", "defaults", "parse_switches", "scene_fix", "suggest_fix"]


@dataclass(frozen=True)
class Switch:
    key: str
    title: str
    """The control's label."""
    group: str
    """The fieldset it sits in (a key of :data:`GROUPS`)."""
    values: tuple[str, ...]
    labels: Mapping[str, str]
    default: str
    checkbox: str | None = None
    """For a two-valued switch shown as a checkbox: the value it has when ticked."""
    matrix: bool = False
    """A dimension of ``ibcm-lab matrix`` (turned into the scenario by ``scenario_for``)."""

    def as_json(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "group": self.group,
                "values": [{"value": v, "label": self.labels.get(v, v)} for v in self.values],
                "default": self.default, "checkbox": self.checkbox, "matrix": self.matrix}


GROUPS: Mapping[str, str] = MappingProxyType({
    "ca": "Enterprise CA and its CRL",
    "site": "Site: Communication Security",
    "mp": "MP server certificate",
    "ccmsetup": "ccmsetup command line",
    "client": "Client",
})
"""Fieldsets of the page, in order: key -> legend."""

_DIM = {d.key: d for d in DIMENSIONS}
_MATRIX_PLACE: Mapping[str, tuple[str, str, str, str | None]] = MappingProxyType({
    # key -> (group, label, default, value when ticked)
    "cdp": ("ca", "CDP layout written into the MP certificate", "ldap+http-intranet", None),
    "site_crl": ("site", "Clients check the CRL for site systems", "on", "on"),
    "nocrlcheck": ("ccmsetup", "/NoCRLCheck", "yes", "yes"),
    "names": ("mp", "Names in the certificate (SAN)", "both", None),
    "smsmp": ("ccmsetup", "SMSMP with https://", "https", "https"),
    "ccmhostname": ("ccmsetup", "CCMHOSTNAME=<internet FQDN>", "given", "given"),
})


def _dimension(key: str) -> Switch:
    group, title, default, checkbox = _MATRIX_PLACE[key]
    dim = _DIM[key]
    return Switch(key, title, group, dim.values, dim.labels, default, checkbox, matrix=True)


LOCATIONS: Mapping[str, tuple[Zone, Zone, Zone, Zone]] = MappingProxyType({
    # Where the install, register, location (site refresh) and policy steps happen.
    "intranet": (Zone.INTRANET,) * 4,
    "vpn": (Zone.VPN,) * 4,
    "internet": (Zone.INTRANET, Zone.INTRANET, Zone.INTRANET, Zone.INTERNET),
    "internet-install": (Zone.INTERNET,) * 4,
})

PUBLIC_CA = "Fabrikam Public CA"
PUBLIC_CA_HOST = "crl.fabrikam-trust.example"
PUBLIC_INTRA = "IBCM-Intra.corp.public.com"
"""The MP's intranet FQDN when a public CA issues its certificate: a name under a public
domain, resolved only inside (a public CA refuses .local names, reference §3.7)."""

SWITCHES: tuple[Switch, ...] = (
    _dimension("cdp"),
    Switch("crl_expired", "The CA's CRL expired (not republished)", "ca", ("no", "yes"),
           MappingProxyType({"no": "the CA publishes its CRL on schedule",
                             "yes": "the CRL's nextUpdate passed an hour ago"}),
           "no", "yes"),
    _dimension("site_crl"),
    _dimension("names"),
    Switch("mp_ca", "Issued by", "mp", ("enterprise", "public-one-name", "public-two-names"),
           MappingProxyType({
               "enterprise": "Contoso-CA (the enterprise CA)",
               "public-one-name": f"{PUBLIC_CA}, a plan that allows one name",
               "public-two-names": f"{PUBLIC_CA}, a plan that allows two names"}),
           "enterprise"),
    Switch("mp_revoked", "The CA revoked the MP certificate", "mp", ("no", "yes"),
           MappingProxyType({"no": "not revoked", "yes": "its serial is on the CA's CRL"}),
           "no", "yes"),
    Switch("usepkicert", "/UsePKICert", "ccmsetup", ("yes", "no"),
           MappingProxyType({"yes": "ccmsetup with /UsePKICert",
                             "no": "ccmsetup without /UsePKICert"}),
           "yes", "yes"),
    _dimension("nocrlcheck"),
    _dimension("smsmp"),
    _dimension("ccmhostname"),
    Switch("location", "Where the client is", "client", tuple(LOCATIONS),
           MappingProxyType({
               "intranet": "on the intranet",
               "vpn": "on the VPN",
               "internet": "installed on the intranet, on the internet a week later (what "
                           "it cached inside has expired)",
               "internet-install": "on the internet from the start (installs from there)"}),
           "intranet"),
    Switch("domain", "Domain-joined", "client", ("joined", "workgroup"),
           MappingProxyType({"joined": "joined to contoso.local",
                             "workgroup": "a workgroup machine"}),
           "joined", "joined"),
    Switch("refresh", "Site refresh before the last step", "client", ("yes", "no"),
           MappingProxyType({"yes": "a site refresh (LocationServices) after registering",
                             "no": "no site refresh: it leaves as setup ends, before ccmexec's "
                                   "first refresh"}),
           "yes", "yes"),
)
SWITCH_BY_KEY: Mapping[str, Switch] = MappingProxyType({s.key: s for s in SWITCHES})


def defaults() -> dict[str, str]:
    """Every switch at its default: the seed's ccmsetup line, AD CS's default CDPs, the
    site's CRL box ticked, a domain-joined client on the intranet."""
    return {s.key: s.default for s in SWITCHES}


def parse_switches(raw: object) -> dict[str, str]:
    """Validate switches sent by the page (a JSON object: key -> value); missing keys take
    their default. :class:`SwitchError` names the first bad key and what it takes."""
    if raw is None:
        return defaults()
    if not isinstance(raw, Mapping):
        raise SwitchError("switches", "an object of switch -> value", type(raw).__name__)
    out = defaults()
    for key, value in raw.items():
        switch = SWITCH_BY_KEY.get(key) if isinstance(key, str) else None
        if switch is None:
            raise SwitchError(str(key), "a known switch: " + ", ".join(SWITCH_BY_KEY))
        if not isinstance(value, str) or value not in switch.values:
            raise SwitchError(key, "one of " + ", ".join(switch.values), value)
        out[key] = value
    return out


# -- switches -> scenario ---------------------------------------------------------------------

def build_scenario(switches: Mapping[str, str]) -> Scenario:
    """The scenario the switches describe: :func:`lab.matrix.scenario_for` for the matrix
    dimensions and a client of the chosen location and membership, then the console's own
    switches applied to that frozen data."""
    sw = parse_switches(switches)
    joined = sw["domain"] == "joined"
    situation = Situation("pc01", SWITCH_BY_KEY["location"].labels[sw["location"]], joined,
                          LOCATIONS[sw["location"]],
                          WEEK_LATER if sw["location"] == "internet" else None)
    base = scenario_for({d.key: sw[d.key] for d in DIMENSIONS}, [situation])
    client = base.clients[0]
    command = client.ccmsetup
    if sw["usepkicert"] == "no":
        command = parse_ccmsetup(" ".join(t for t in command.raw.split(" ")
                                          if t.lower() != "/usepkicert"))
    steps = tuple(st for st in client.steps
                  if sw["refresh"] == "yes" or st.action is not Action.LOCATION)
    if sw["refresh"] == "no":
        # No site refresh at all: the machine leaves as setup ends, so ccmexec's own start-up
        # work (registration, site refresh) happens where the last step does.
        steps = tuple(dataclasses.replace(st, ccmexec_location=steps[-1].location)
                      if st.action is Action.INSTALL else st for st in steps)
    client = dataclasses.replace(client, ccmsetup=command, steps=steps)

    cas = list(base.cas)
    mp_cert = base.mp.cert
    mp = base.mp
    if sw["mp_ca"] != "enterprise":
        cas.append(CASpec(name=PUBLIC_CA, kind=CAKind.PUBLIC, host=PUBLIC_CA_HOST,
                          max_names=1 if sw["mp_ca"] == "public-one-name" else 2))
        intra = mp.intranet_fqdn
        mp_cert = dataclasses.replace(mp_cert, issuer=PUBLIC_CA, san=tuple(
            PUBLIC_INTRA if n == intra else n for n in mp_cert.san))
        mp = dataclasses.replace(mp, intranet_fqdn=PUBLIC_INTRA)
        client = dataclasses.replace(client, ccmsetup=parse_ccmsetup(
            client.ccmsetup.raw.replace(intra, PUBLIC_INTRA)))
    if sw["mp_revoked"] == "yes":
        mp_cert = dataclasses.replace(mp_cert, revoked=True)
    if sw["crl_expired"] == "yes":
        # As scenarios/server-crl-expired.toml: the CA stopped publishing a week ago.
        cas = [dataclasses.replace(ca, crl_this_update=dt.timedelta(days=-8),
                                   crl_next_update=dt.timedelta(hours=-1))
               if ca.name == mp_cert.issuer else ca for ca in cas]
    title = "; ".join(f"{SWITCH_BY_KEY[k].title}: {v}" for k, v in sw.items()
                      if v != SWITCH_BY_KEY[k].default) or "every switch at its default"
    return dataclasses.replace(
        base, name="console", file=None,
        info=ScenarioInfo(title=f"Training console: {title}", source="ibcm-lab ui"),
        cas=tuple(cas), mp=dataclasses.replace(mp, cert=mp_cert), clients=(client,))


# -- presets: the seed's scenes ---------------------------------------------------------------

@dataclass(frozen=True)
class Fix:
    changes: Mapping[str, str]
    """The switches to set."""
    label: str
    """What the change is, in words (the fix button says it)."""

    def as_json(self) -> dict[str, Any]:
        return {"changes": dict(self.changes), "label": self.label}


@dataclass(frozen=True)
class Preset:
    scene: int
    """The scene's number in ``ibcm-lab demo``."""
    section: str
    title: str
    switches: Mapping[str, str]
    """Every switch: the scene's failing configuration."""
    fix: Fix
    """The switches of the passing twin."""
    file: str
    """The bundled scenario the scene comes from."""

    def as_json(self) -> dict[str, Any]:
        return {"scene": self.scene, "section": self.section, "title": self.title,
                "switches": dict(self.switches), "fix": self.fix.as_json(), "file": self.file}


_QUIET = {"site_crl": "off"}
"""The seed's §2 and §3 scenes clear the CRL box, so that only the point they make fails."""

_SCENE_SWITCHES: tuple[tuple[dict[str, str], dict[str, str]], ...] = (
    # (failing configuration, what the passing twin changes), in demo.SCENES order
    ({**_QUIET, "names": "intranet", "location": "internet"}, {"names": "both"}),
    ({"mp_ca": "public-one-name"}, {"mp_ca": "public-two-names"}),
    ({**_QUIET, "smsmp": "plain"}, {"smsmp": "https"}),
    ({**_QUIET, "usepkicert": "no"}, {"usepkicert": "yes"}),
    ({**_QUIET, "location": "internet-install"}, {"location": "vpn"}),
    ({**_QUIET, "ccmhostname": "omitted", "refresh": "no", "location": "internet"},
     {"refresh": "yes"}),
    ({"location": "internet"}, {"site_crl": "off"}),
    ({"location": "internet"}, {"cdp": "ldap+http-internet"}),
    ({"domain": "workgroup", "cdp": "ldap", "nocrlcheck": "no", "ccmhostname": "omitted"},
     {"nocrlcheck": "yes", "site_crl": "off"}),
)


def _presets() -> tuple[Preset, ...]:
    if len(_SCENE_SWITCHES) != len(SCENES):  # pragma: no cover - caught by the tests
        raise RuntimeError("lab.ui.switches: one preset per scene of lab.tools.demo.SCENES")
    out = []
    for number, (scene, (failing, twin)) in enumerate(zip(SCENES, _SCENE_SWITCHES,
                                                          strict=True), start=1):
        out.append(Preset(number, scene.section, scene.title,
                          MappingProxyType({**defaults(), **failing}),
                          Fix(MappingProxyType(twin), scene.change), scene.failing))
    return tuple(out)


PRESETS: tuple[Preset, ...] = _presets()


def scene_fix(scene: int | None, switches: Mapping[str, str]) -> Fix | None:
    """The scene's passing twin, while the switches still are the scene's configuration."""
    if scene is None or not 1 <= scene <= len(PRESETS):
        return None
    preset = PRESETS[scene - 1]
    return preset.fix if dict(switches) == dict(preset.switches) else None


# -- which switch fixes a failure --------------------------------------------------------------

def suggest_fix(switches: Mapping[str, str], step: StepResult) -> Fix | None:
    """The switch change that removes the failure of ``step`` (the first failing step), in
    the order the lab's own fix text gives; None when no switch fixes it."""
    ids = set(step.identifiers)
    sw = switches
    rev = step.revocation
    if "LAB_CA_PLAN_NAME_LIMIT" in ids:
        return Fix({"mp_ca": "public-two-names"},
                   "Order the MP certificate on a plan that allows two names.")
    if "LAB_INSTALL_FROM_INTERNET" in ids:
        return Fix({"location": "vpn"}, "Connect through the VPN before running ccmsetup.")
    if "0X87D00269" in ids and sw["usepkicert"] == "no":
        return Fix({"usepkicert": "yes"}, "Run ccmsetup with /UsePKICert.")
    if "403.4" in ids and sw["smsmp"] == "plain":
        return Fix({"smsmp": "https"}, "Write SMSMP=https://<intranet FQDN>.")
    if "LAB_NO_INTERNET_MP" in ids:
        return Fix({"ccmhostname": "given"}, "Add CCMHOSTNAME=<internet FQDN> to ccmsetup.")
    if "CERT_E_CN_NO_MATCH" in ids and sw["names"] != "both":
        return Fix({"names": "both"}, "Reissue the MP certificate with both FQDNs in the SAN.")
    if "CRYPT_E_REVOKED" in ids and sw["mp_revoked"] == "yes":
        return Fix({"mp_revoked": "no"}, "Issue a new MP certificate (not revoked).")
    offline = {"CRYPT_E_REVOCATION_OFFLINE", "CRYPT_E_NO_REVOCATION_CHECK"} & ids
    if offline:
        if sw["crl_expired"] == "yes" and rev is not None \
                and any(u.result == "expired" for u in rev.urls):
            return Fix({"crl_expired": "no"}, "Republish the CA's CRL (certutil -crl).")
        # Repair first (lab.judge.explain.render_fixes): publish the CRL where every client
        # reaches it; turning the check off is the trade-off, offered only after that.
        if sw["cdp"] in ("ldap", "ldap+http-intranet", "none"):
            return Fix({"cdp": "ldap+http-internet"},
                       "Publish the CRL over HTTP on the internet and reissue the MP "
                       "certificate with that URL in its CDP.")
        trade_off = "Trade-off (it lowers security for every client): "
        if step.crl_source.startswith("the site"):
            if sw["site_crl"] == "on":
                return Fix({"site_crl": "off"}, trade_off + "clear the site's \"Clients "
                           "check the CRL for site systems\" box.")
        elif sw["nocrlcheck"] == "no":
            change = {"nocrlcheck": "yes"}
            label = trade_off + "add /NoCRLCheck for the bootstrap"
            if sw["site_crl"] == "on":
                change["site_crl"] = "off"
                label += " and clear the site's CRL box"
            return Fix(change, label + ".")
    return None
