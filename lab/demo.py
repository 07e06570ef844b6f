"""``ibcm-lab demo``: the seed document, scene by scene, with the lab as the witness.

Each scene sets up a failing configuration, shows what the client did and the evidence
(the CryptoAPI error, the per-URL CRL trace, the CCMHTTP log lines), says why, gives the fix,
and runs the passing twin to prove the fix.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from lab.errors import UsageError
from lab.report.text import WIDTH, evidence_lines, step_summary
from lab.run import RunResult, ScenarioResult
from lab.scenario.model import Scenario


@dataclass(frozen=True)
class Scene:
    section: str
    title: str
    failing: str
    passing: str
    change: str
    """What the passing twin changes, in one sentence."""


SCENES: tuple[Scene, ...] = (
    Scene("seed §2", "The MP's certificate needs two names",
          "seed2-mp-cert-intranet-name-only", "seed2-mp-cert-both-names",
          "The MP certificate's SAN lists both FQDNs."),
    Scene("seed §2", "A public CA plan that allows one name",
          "seed2-public-ca-single-name-plan", "seed2-public-ca-multi-name-plan",
          "The certificate is ordered on a plan that allows two names."),
    Scene("seed §3", "SMSMP needs https:// for an HTTPS-only MP",
          "seed3-smsmp-without-https", "seed3-smsmp-with-https",
          "SMSMP=https://IBCM-Intra.contoso.local."),
    Scene("seed §3", "/UsePKICert is not optional",
          "seed3-without-usepkicert", "seed3-smsmp-with-https",
          "ccmsetup is run with /UsePKICert."),
    Scene("seed §3, supplement 1", "Install from the intranet or through a VPN",
          "seed3-install-from-internet-or-vpn", "seed3-install-from-internet-or-vpn",
          "The second machine connects through the VPN before running ccmsetup."),
    Scene("seed §3, supplement 2", "CCMHOSTNAME is learned from the site",
          "seed3-ccmhostname-omitted-never-refreshed", "seed3-ccmhostname-learned-from-site",
          "The client does a site refresh on the intranet before it roams."),
    Scene("seed §4", "The CRL box and an internet client",
          "seed4-internet-client-ldap-cdp-crl-on", "seed4-internet-client-crl-check-off",
          "The site's \"Clients check the CRL for site systems\" box is cleared."),
    Scene("seed §4", "...or keep the box and publish the CRL over HTTP",
          "seed4-internet-client-ldap-cdp-crl-on", "seed4-internet-client-http-cdp-published",
          "The CA writes an internet-reachable HTTP CDP into the MP certificate."),
    Scene("seed §4", "A workgroup client on the intranet",
          "seed4-workgroup-intranet-ldap-cdp", "seed4-workgroup-crl-check-off",
          "/NoCRLCheck for the bootstrap and the site's CRL box cleared."),
)


def bundled_dir() -> Path:
    """The folder of bundled scenarios (``scenarios/`` in the source tree)."""
    return Path(str(files("lab.bundled")))


def demo_paths(scene: int | None = None) -> list[Path]:
    folder = bundled_dir()
    chosen = SCENES if scene is None else (_scene(scene),)
    names = dict.fromkeys(n for s in chosen for n in (s.failing, s.passing))
    return [folder / f"{name}.toml" for name in names]


def _scene(number: int) -> Scene:
    if not 1 <= number <= len(SCENES):
        raise UsageError(f"--scene expects a number from 1 to {len(SCENES)}, got {number}")
    return SCENES[number - 1]


def _para(text: str, indent: int = 4) -> list[str]:
    return textwrap.wrap(" ".join(text.split()), WIDTH, initial_indent=" " * indent,
                         subsequent_indent=" " * indent, break_on_hyphens=False)


def _setup(s: Scenario) -> list[str]:
    lines = ["  What was set up:"]
    for ca in s.cas:
        lines.append(f"    CA {ca.name} ({ca.kind.value}, {ca.host})")
    mp = s.mp
    lines.append(f"    MP {mp.intranet_fqdn} / {mp.internet_fqdn or '(no internet FQDN)'}; "
                 f"certificate from {mp.cert.issuer} naming {', '.join(mp.cert.san)}")
    lines.append(f"    Site {s.site.code}: {'HTTPS only' if s.site.https_only else 'HTTPS or HTTP'}"
                 f", clients check the CRL for site systems: "
                 f"{'yes' if s.site.check_crl else 'no'}")
    for c in s.clients:
        kind = "domain-joined" if c.domain_joined else "workgroup"
        lines.append(f"    Client {c.name} ({kind}): {c.ccmsetup.raw}")
    return lines


def _story(result: ScenarioResult, *, evidence: bool) -> list[str]:
    lines = _setup(result.scenario)
    lines.append("  What the clients did:")
    for client in result.clients:
        for step in client.steps:
            lines.append(f"    {client.name} {step.index + 1}. {step.action} from the "
                         f"{step.location}: {step_summary(step)}")
    failed = next((st for st in result.steps if st.outcome == "fail"), None)
    if failed is not None and evidence:
        lines.append("  Evidence:")
        lines += evidence_lines(failed, indent=4)
        lines.append("  Why:")
        lines += _para(failed.explanation)
        lines.append("  The fix:")
        lines += _para(failed.fix)
    return lines


def render_demo(run: RunResult, scene: int | None = None) -> str:
    by_name = {r.scenario.name: r for r in run.scenarios}
    numbered = list(enumerate(SCENES, start=1))
    if scene is not None:
        numbered = [(scene, _scene(scene))]
    out: list[str] = ["ibcm-lab demo: the seed document, reproduced on loopback", ""]
    for number, sc in numbered:
        failing, passing = by_name[sc.failing], by_name[sc.passing]
        out.append(f"Scene {number} of {len(SCENES)} - {sc.section}: {sc.title}")
        out.append("-" * min(WIDTH, len(out[-1])))
        out += _para(failing.scenario.info.description, indent=2)
        out += _story(failing, evidence=True)
        out.append(f"  Passing twin ({passing.scenario.name}): {sc.change}")
        twin_ok = passing.passed
        if sc.passing != sc.failing:
            out += [f"    {c.name} {st.index + 1}. {st.action} from the {st.location}: "
                    f"{step_summary(st)}" for c in passing.clients for st in c.steps]
        verdict = "met" if failing.passed and twin_ok else "NOT met"
        out.append(f"  Verdict: every expectation {verdict} in both scenarios.")
        out.append("")
    met = sum(1 for r in run.scenarios if r.passed)
    out.append(f"{met}/{len(run.scenarios)} scenarios behaved as the seed says "
               f"({run.wall_ms / 1000:.1f} s).")
    return "\n".join(out) + "\n"
