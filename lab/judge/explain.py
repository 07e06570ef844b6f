"""The judge's words: what happened in a step, in plain words, and the fix.

Each :class:`~lab.results.observations.FailureKind` has one handler (:data:`HANDLERS`); a step
that went well gets its story from :meth:`Explainer.ok_story`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab import codes
from lab.codes import flag_names
from lab.pki.build import BuiltPKI
from lab.pki.urls import url_host
from lab.results.observations import (
    ChainVerdict,
    ElementStatus,
    FailureKind,
    RevocationResult,
    StepObservation,
)
from lab.results.records import MpAnswer
from lab.scenario.model import CAKind, ClientSpec, Scenario

SITE_BOX = ('"Clients check the certificate revocation list (CRL) for site systems" '
            "(Administration > Site Configuration > Sites > site Properties > "
            "Communication Security)")

TRADE_OFF = "Trade-off (it lowers security for every client):"
"""How a fix that weakens the check instead of repairing what is broken begins."""


class Rank(enum.IntEnum):
    """The order fixes are given in: repair first, weaken last (:func:`render_fixes`)."""

    RESTORE = 0
    """Restore, publish or republish the failing piece; correct a clock; import a root."""
    REISSUE = 1
    """Reissue or enrol a certificate."""
    CONFIGURE = 2
    """Change how the client is installed or configured (command line, store, network)."""
    TRADE_OFF = 3
    """Turn a check off (the site's CRL box, /NoCRLCheck): lowers security for every
    client, so never the first answer."""


@dataclass(frozen=True)
class Fix:
    rank: Rank
    text: str


def render_fixes(fixes: Iterable[Fix]) -> str:
    """The one place fixes are ordered: by :class:`Rank` (stable), duplicates dropped, each
    trade-off marked with :data:`TRADE_OFF`."""
    ordered = sorted(dict.fromkeys(fixes), key=lambda f: f.rank)
    return " ".join(f"{TRADE_OFF} {f.text}" if f.rank is Rank.TRADE_OFF else f.text
                    for f in ordered)


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def _san_dns(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in ext.value.get_values_for_type(x509.DNSName)]


def _lacks_client_auth(cert: x509.Certificate) -> bool:
    """An EKU extension without Client Authentication (no EKU at all means any usage)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH not in ext.value


def _duration(delta: dt.timedelta) -> str:
    seconds = int(abs(delta).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} s"


def _seconds(ms: int) -> str:
    s = ms / 1000
    return f"{s:g} s"


def _sentence(text: str) -> str:
    """``text`` with one full stop at its end."""
    text = text.strip().rstrip(".")
    return text + "." if text else ""


def _url_lines(rev: RevocationResult) -> str:
    parts = []
    for u in rev.urls:
        if u.result == "failed":
            parts.append(f"{u.url} failed after {_seconds(u.simulated_ms)}: {u.detail}")
        elif u.result == "not_tried":
            parts.append(f"{u.url} was not tried")
        else:
            parts.append(f"{u.url}: {u.result} ({u.detail})")
    return "; ".join(parts)


class Explainer:
    """The plain-words story of one step, and its fix: one handler per failure kind."""

    def __init__(self, scenario: Scenario, pki: BuiltPKI, client: ClientSpec,
                 obs: StepObservation, answer: MpAnswer | None) -> None:
        self.s = scenario
        self.pki = pki
        self.client = client
        self.obs = obs
        self.answer = answer
        self.who = (f"{client.name} ({'domain-joined' if client.domain_joined else 'workgroup'}, "
                    f"on the {obs.location}")
        self.who += ")" if obs.connection in ("", obs.location) else \
            f", which it treats as {obs.connection})"

    def crl_sentence(self) -> str:
        if self.obs.crl_check is None:
            return ""
        on = "on" if self.obs.crl_check else "off"
        return f"CRL checking is {on}, decided by {self.obs.crl_source}."

    def explain(self) -> tuple[str, str]:
        obs = self.obs
        if obs.outcome == "ok":
            return self.ok_story(), ""
        if obs.failure is None:
            return f"{self.who}: {obs.detail}.", ""
        text, fixes = HANDLERS[obs.failure](self)
        return text, render_fixes(fixes)

    def ok_story(self) -> str:
        obs = self.obs
        parts = [f"{self.who} {obs.action.value} step succeeded"]
        if obs.mp is not None:
            parts[0] += f" against {obs.mp.host} ({obs.mp.why})"
        parts[0] += "."
        if obs.crl_check is not None and obs.requests and any(r.secure for r in obs.requests):
            parts.append(self.crl_sentence())
            rev = next((r.verdict.revocation for r in obs.requests
                        if r.verdict is not None and r.verdict.revocation.checked), None)
            if rev is not None:
                waited = rev.simulated_ms
                good = next((u.url for u in rev.urls
                             if u.result == "verified" and u.crl == "base"), None)
                delta = next((u.url for u in rev.urls
                              if u.result == "verified" and u.crl == "delta"), None)
                if good:
                    parts.append(f"A good CRL came from {good}"
                                 + (f" and a good delta CRL from {delta}" if delta else "")
                                 + (f" after {_seconds(waited)} spent on unreachable URLs."
                                    if waited else "."))
        parts += obs.notes
        return " ".join(_sentence(p) for p in parts if p)

    # -- failure kinds ----------------------------------------------------------------------
    def tls(self) -> tuple[str, list[Fix]]:
        req = self.obs.failed_request
        assert req is not None and req.verdict is not None
        verdict = req.verdict
        first = verdict.error
        flags = ", ".join(flag_names(verdict.flags))
        head = (f"{self.who} connected to https://{req.host}/ and CryptoAPI rejected the MP's "
                f"certificate: {first.name if first else '?'} ({first.hex if first else ''}). "
                f"WinHTTP fails the request with ERROR_WINHTTP_SECURE_FAILURE (12175), "
                f"flags {flags} (0x{verdict.flags:x}).")
        cats = verdict.categories
        fixes: list[Fix] = []
        body: list[str] = []
        rev = verdict.revocation
        if "offline" in cats:
            body.append(self.crl_sentence())
            body.append(f"The CDP URLs, in order: {_url_lines(rev)}.")
            offline = [e for e in rev.elements if e.status in ("offline", "no_check")]
            if offline and all(e.delta_missing for e in offline):
                body.append("The base CRL is good, but it announces a delta CRL (Freshest CRL) "
                            "and no delta URL gave a good one, so revocation is unknown: "
                            "CryptoAPI says 'offline' and WinHTTP refuses the connection. "
                            "OpenSSL does not require delta CRLs, so its acceptance here is a "
                            "known difference, not a disagreement.")
                refused = [u for e in offline for u in e.delta_urls
                           if u.http_status == 404 and "+" in u.url]
                if refused:
                    host = url_host(refused[0].url) or "the CRL web server"
                    body.append(f"The web server {host} refused the delta CRL's name "
                                "(<CaName>+.crl): its "
                                "W3C log shows 404.11, request filtering's double-escaping "
                                "check, which the AD CS Best Practices Analyzer warns about.")
                    fixes.append(Fix(Rank.RESTORE,
                                     f"On {host}, select \"Allow double escaping\" in the CRL "
                                     "folder's Request Filtering settings "
                                     "(allowDoubleEscaping=true), or stop publishing delta CRLs "
                                     "so the base CRL stops announcing them."))
                else:
                    fixes.append(Fix(Rank.RESTORE,
                                     "Publish the delta CRL where clients reach it (the same "
                                     "place as the base CRL, e.g. over HTTP on the internet), or "
                                     "stop publishing delta CRLs so the base CRL stops "
                                     "announcing them."))
            else:
                body += self.offline_story(verdict, offline)
                fixes += self.offline_fix(verdict, offline)
        if "revoked" in cats:
            revoked = [e for e in rev.elements if e.status == "revoked"]
            leaf_subject = verdict.chain[0].subject.rfc4514_string() if verdict.chain else ""
            if revoked and all(e.subject == leaf_subject for e in revoked):
                body.append("The CA's CRL lists the MP certificate's serial number: it is "
                            "revoked.")
                fixes.append(Fix(Rank.REISSUE, "Issue a new server certificate to the MP and "
                                 "bind it to the HTTPS site in IIS."))
            else:
                names = ", ".join(e.subject for e in revoked if e.subject != leaf_subject)
                body.append(f"The issuing CA {names} is on its parent's CRL: every certificate "
                            "under it fails, the MP's included.")
                fixes.append(Fix(Rank.REISSUE,
                                 "Have the root issue a new certificate to the issuing CA (or "
                                 "a new issuing CA), publish it, and reissue the MP certificate "
                                 "under it."))
        if "name" in cats:
            problem = next(p for p in verdict.problems if p.category == "name")
            body.append(f"Name mismatch: {problem.detail}.")
            body += self.cn_sentence(verdict)
            body.append("An MP that serves both intranet and internet clients needs both FQDNs "
                        "in its certificate (seed §2).")
            fixes.append(self.name_fix())
        if "trust" in cats:
            problem = next(p for p in verdict.problems if p.category == "trust")
            body.append(f"Untrusted chain: {problem.detail}.")
            fixes.append(Fix(Rank.RESTORE, "Import the issuing root CA into the client's "
                             "Trusted Root Certification Authorities store (Computer account)."))
        for cat, msg in (("date", "The certificate is outside its validity period."),
                         ("usage", "The certificate lacks the Server Authentication EKU.")):
            if cat in cats:
                body.append(msg)
                fixes.append(Fix(Rank.REISSUE,
                                 "Reissue the MP certificate from a Web Server template "
                                 "(Server Authentication EKU, valid dates)."))
        return " ".join([head, *body]), fixes

    def _whose(self, verdict: ChainVerdict, element: ElementStatus) -> str:
        leaf = verdict.chain[0].subject.rfc4514_string() if verdict.chain else ""
        if element.subject == leaf:
            return "the MP certificate"
        return f"the issuing CA's certificate ({element.subject})"

    @staticmethod
    def _issuer_name(element: ElementStatus) -> str:
        """The CA that issued ``element``'s certificate, by its common name."""
        first = element.issuer.split(",", 1)[0]
        return first[3:] if first.upper().startswith("CN=") else element.issuer

    def offline_story(self, verdict: ChainVerdict,
                      offline: Sequence[ElementStatus]) -> list[str]:
        """Whose revocation could not be checked, and why."""
        leaf = verdict.chain[0].subject.rfc4514_string() if verdict.chain else ""
        cas = [e for e in offline if e.subject != leaf]
        early = any(u.result == "not_yet_valid" for e in offline for u in e.urls)
        skew = self.client.clock_skew
        clock = ([f"The client's clock runs {_duration(skew)} behind, so the CRL's thisUpdate "
                  "is in the client's future."] if early and skew < dt.timedelta(0) else [])
        if not cas:
            return [*clock, "No URL gave a good CRL, so revocation is unknown: CryptoAPI says "
                    "'offline' (not 'revoked') and WinHTTP refuses the connection."]
        parts = []
        leaf_good = any(e.subject == leaf and e.status == "good"
                        for e in verdict.revocation.elements)
        if leaf_good:
            parts.append("The MP certificate's own CRL was good.")
        for e in cas:
            parts.append(f"No URL gave a good CRL of {self._issuer_name(e)}, so the revocation "
                         f"of the issuing CA's certificate ({e.subject}) is unknown: CryptoAPI "
                         "says 'offline' (not 'revoked') for the whole chain and WinHTTP "
                         "refuses the connection.")
        if any(e.subject == leaf for e in offline):
            parts.append("No URL gave a good CRL for the MP certificate either.")
        return [*clock, *parts]

    def trade_offs(self) -> list[Fix]:
        """Turning CRL checking off: how, for where the client is in its life."""
        if self.obs.crl_source.startswith("the site"):
            return [Fix(Rank.TRADE_OFF,
                        f"Clear {SITE_BOX} so clients stop checking the CRL of site systems.")]
        return [Fix(Rank.TRADE_OFF,
                    "Add /NoCRLCheck to the ccmsetup command line for the bootstrap, and "
                    f"clear {SITE_BOX} for the rest of the client's life.")]

    def offline_fix(self, verdict: ChainVerdict,
                    offline: Sequence[ElementStatus]) -> list[Fix]:
        rev = verdict.revocation
        urls = [u for e in offline for u in (*e.urls, *e.delta_urls)] or list(rev.urls)
        bad = [u for u in urls if u.result in ("expired", "not_yet_valid", "invalid")]
        fixes: list[Fix] = []
        if bad and not any(u.result == "failed" for u in urls):
            # Every URL answered: the CRL itself is the problem, not where it is published.
            kinds = {u.result for u in bad}
            unusable = "The CRL reached the client but cannot be used"
            if "expired" in kinds:
                fixes.append(Fix(Rank.RESTORE,
                                 f"{unusable}: it has expired. Republish it on the CA "
                                 "(`certutil -crl`; start the CA first if it is switched off) "
                                 "and fix whatever stopped the scheduled publication."))
            if "not_yet_valid" in kinds:
                fixes += self.clock_fixes(offline)
            invalid = {u.detail for u in bad if u.result == "invalid"}
            if "the response is not a CRL" in invalid:
                fixes.append(Fix(Rank.RESTORE,
                                 f"{unusable}: the response is not a CRL. Make the CDP URL "
                                 "serve the CA's CRL file whole and unchanged (as `certutil "
                                 "-crl` writes it)."))
            if invalid - {"the response is not a CRL"}:
                fixes.append(Fix(Rank.REISSUE,
                                 f"{unusable}: its signature is not the issuing CA's. Have the "
                                 "CA sign its CRL with its own key, from a CA certificate whose "
                                 "key usage includes cRLSign (reissue the CA certificate if it "
                                 "lacks it)."))
            fixes.append(Fix(Rank.TRADE_OFF,
                             f"Until it is fixed, clearing {SITE_BOX} (and /NoCRLCheck at "
                             "install) lets clients connect without the check."))
            return fixes
        if any(u.result == "expired" for u in urls):
            # Some URLs were unreachable, the others served a CRL the CA never replaced:
            # reaching the unreachable ones would bring the same expired CRL.
            fixes.append(Fix(Rank.RESTORE,
                             "The CRL that reached the client has expired: start the CA if it "
                             "is switched off, republish the CRL (`certutil -crl`) and fix "
                             "whatever stopped the scheduled publication (a CA that publishes "
                             "nothing leaves its last CRL on the CDPs until its nextUpdate, "
                             "then every client fails)."))
            return fixes + self.trade_offs()
        leaf = verdict.chain[0].subject.rfc4514_string() if verdict.chain else ""
        where = self.obs.location.value
        for e in offline:
            if e.subject == leaf:
                continue
            ca = self._issuer_name(e)
            cdp = ", ".join(u.url for u in e.urls) or "none"
            fixes.append(Fix(Rank.RESTORE,
                             f"Publish the CRL of {ca} over HTTP where clients on the {where} "
                             "reach it: a URL of the issuing CA certificate's CDP "
                             f"({cdp}) must resolve and answer from there."))
            fixes.append(Fix(Rank.REISSUE,
                             f"If no URL of that CDP can, have {ca} reissue the issuing CA "
                             "certificate with a reachable HTTP URL in its CDP."))
        if any(e.subject == leaf for e in offline) or not offline:
            workgroup = not self.client.domain_joined and any(
                u.url.lower().startswith("ldap:///") for u in rev.urls)
            extra = (" A workgroup machine never reaches `ldap:///` (it has no domain "
                     "controller of its own)." if workgroup else "")
            fixes.append(Fix(Rank.RESTORE,
                             f"Publish the CRL over HTTP at a URL clients on the {where} "
                             "reach and reissue the MP certificate with that URL in its CDP "
                             f"(seed §4).{extra}"))
        return fixes + self.trade_offs()

    def clock_fixes(self, offline: Sequence[ElementStatus]) -> list[Fix]:
        """A CRL not yet valid: whose clock is wrong, the client's or the CA's."""
        fixes: list[Fix] = []
        skew = self.client.clock_skew
        if skew < dt.timedelta(0):
            fixes.append(Fix(Rank.RESTORE,
                             "The CRL reached the client but cannot be used: it is not yet "
                             f"valid by the client's clock, which runs {_duration(skew)} "
                             "behind. Correct the client's clock "
                             "(`w32tm /resync`, and check its time source)."))
        ahead = []
        for e in offline:
            name = self._issuer_name(e)
            if any(c.name == name and c.crl_this_update > dt.timedelta(0) for c in self.s.cas):
                ahead.append(name)
        if ahead or not fixes:
            who = " and ".join(dict.fromkeys(ahead)) or "the CA"
            fixes.append(Fix(Rank.RESTORE,
                             "The CRL reached the client but cannot be used: its thisUpdate "
                             f"is in the future. Correct the clock of {who}, then republish "
                             "the CRL (`certutil -crl`)."))
        return fixes

    def cn_sentence(self, verdict: ChainVerdict) -> list[str]:
        """Why the subject CN does not count when the SAN holds DNS names (reference §3.5)."""
        if not verdict.chain:
            return []
        cert = verdict.chain[0]
        cn, sans = _cn(cert.subject), _san_dns(cert)
        if not cn or not sans or cn.lower() in (s.lower() for s in sans):
            return []
        return [f"The subject CN {cn} does not count: when the SAN holds DNS names, Windows "
                "ignores the CN (reference §3.5)."]

    def name_fix(self) -> Fix:
        mp = self.s.mp
        names = " and ".join(n for n in (mp.intranet_fqdn, mp.internet_fqdn) if n)
        ca = self.s.ca(mp.cert.issuer)
        plan = ""
        if ca.kind is CAKind.PUBLIC and ca.max_names is not None and ca.max_names < 2:
            plan = (f" {ca.name}'s plan allows only {ca.max_names} name per certificate: "
                    "buy a plan that allows two (a multi-domain/SAN certificate).")
        return Fix(Rank.REISSUE,
                   f"Reissue the MP certificate with both FQDNs in the SAN: {names}.{plan}")

    def http(self) -> tuple[str, list[Fix]]:
        req = self.obs.failed_request
        assert req is not None
        label = self.answer.label if self.answer else str(req.status)
        status = codes.IIS_STATUSES.get(label)
        text = status.text if status else (req.reason or "")
        if self.obs.action.value == "browse-mplist":
            head = (f"{self.who}: the browser reached {req.url}, but the MP answered HTTP "
                    f"{label} {text}. The browser presents no computer certificate (it uses "
                    "the user's store), and an HTTPS-only MP requires one.")
            if self.answer is not None:
                head += f" IIS on the MP: {self.answer.detail}."
            return head, [Fix(Rank.CONFIGURE,
                              "Test the MP from the client agent's side instead (its logs), "
                              "or import a client certificate into the user's store for the "
                              "browser test; this answer alone does not mean the MP is "
                              "broken.")]
        head = (f"{self.who} reached {req.url}, but the MP answered HTTP {label} {text}. "
                "The client logs CCM_E_BAD_HTTP_STATUS_CODE (0x87D0027E) with the status"
                + (", and the post fails with 0x87D00231." if req.method == "CCM_POST" else "."))
        if label == "403.4":
            mp = self.obs.mp
            assert mp is not None
            return (head + f" The client used HTTP because it chose {mp.host} through {mp.why}; "
                    "the MP accepts HTTPS only, so IIS requires SSL. (How a client recovers "
                    "from this entry is not documented; the lab models that it does not.)",
                    [Fix(Rank.CONFIGURE,
                         f"Write SMSMP=https://{mp.host} on the ccmsetup command line: an MP "
                         "that accepts HTTPS only must be prefixed with https:// (seed §3).")])
        if self.answer is not None and self.answer.status == 403:
            head += f" IIS on the MP: {self.answer.detail}."
            unusable = {"expired": "has expired", "not_yet_valid": "is not yet valid",
                        "invalid": "does not verify"}.get(self.answer.crl_problem)
            if unusable:
                head += (f" The MP reaches the client certificates' CRL, but the CRL {unusable}: "
                         "IIS cannot tell whether the certificate is revoked and refuses it.")
            return head, self.client_cert_fix(label)
        return head, [Fix(Rank.RESTORE, "Check the MP's IIS log and MP logs for the cause.")]

    def client_cert_fix(self, label: str) -> list[Fix]:
        problem = self.answer.crl_problem if self.answer is not None else ""
        if label == "403.13":
            return {
                "revoked": [Fix(Rank.REISSUE, "Enrol a new client certificate: this one is on "
                                "its CA's CRL.")],
                "expired": [Fix(Rank.RESTORE,
                                "The client certificates' CRL reaches the MP but has expired: "
                                "republish it on their CA (`certutil -crl`) and fix whatever "
                                "stopped the scheduled publication.")],
                "not_yet_valid": [Fix(Rank.RESTORE,
                                      "The client certificates' CRL is not yet valid by the "
                                      "MP's clock: correct the clock of their CA, then "
                                      "republish the CRL (`certutil -crl`).")],
                "invalid": [Fix(Rank.REISSUE,
                                "The client certificates' CRL does not verify: have their CA "
                                "sign it with its own key, from a CA certificate whose key "
                                "usage includes cRLSign.")],
            }.get(problem, [
                Fix(Rank.RESTORE,
                    "If IIS could not reach the client certificate's CDP, let the MP reach it "
                    "(firewall, proxy or DNS from the MP's zone, reference §10), or publish that "
                    "CRL where the MP can reach it and enrol the client certificates again with "
                    "that URL in their CDP."),
                Fix(Rank.REISSUE, "If the certificate is revoked, enrol a new one.")])
        text = {
            "403.7": "Give the client a Client Authentication certificate and install with "
                     "/UsePKICert.",
            "403.16": "Issue the client certificate from a CA in the site's trusted root list, "
                      "or add its root to the list.",
            "403.17": "Renew the client certificate, and check the computer's clock: the client "
                      "selects its certificate by its own time, IIS judges it by the MP's.",
        }.get(label, "See the MP's IIS log.")
        return [Fix(Rank.REISSUE, text)]

    def connect(self) -> tuple[str, list[Fix]]:
        obs = self.obs
        req = obs.failed_request
        refusal = self.pki.mp_refusal
        if refusal is not None and req is not None and req.connect_error is \
                codes.ERROR_WINHTTP_CANNOT_CONNECT:
            if refusal.internal:
                return (f"The MP has no server certificate: {refusal.message}. Without a "
                        "certificate IIS has no HTTPS binding, so nothing answers on port 443 "
                        f"and {self.client.name} cannot connect (seed §2, reference §3.7).",
                        [Fix(Rank.REISSUE,
                             "Give the MP an intranet FQDN under a public domain the company "
                             "owns (for example IBCM-Intra.corp.public.com, resolved only "
                             "inside) and order both names from the public CA, or issue the MP "
                             "certificate from the enterprise CA, which may name "
                             "IBCM-Intra.contoso.local.")])
            return (f"The MP has no server certificate: {refusal.message}. Without a "
                    "certificate IIS has no HTTPS binding, so nothing answers on port 443 and "
                    f"{self.client.name} cannot connect. A certificate with only one of the "
                    "MP's names cannot serve both intranet and internet clients (seed §2).",
                    [Fix(Rank.REISSUE,
                         f"Choose a plan of {refusal.ca} that allows {len(refusal.requested)} "
                         "subject names (a multi-domain/SAN certificate), or use the enterprise "
                         "CA with an HTTP CDP published to the internet.")])
        detail = obs.detail
        mp = obs.mp
        text = f"{self.who} could not reach {mp.host if mp else 'the MP'}: {detail}."
        fix = "Check the host name and that the client is in a zone that can reach it."
        if mp is not None and "://" in mp.host:
            text += f" The host name {mp.host!r} still carries a scheme."
            fix = ("Give CCMHOSTNAME the internet FQDN alone, without https:// "
                   "(for example CCMHOSTNAME=" + mp.host.split("://", 1)[1] + ").")
        elif obs.connection == "intranet" and obs.location.value == "internet":
            fix = "Connect through the VPN, or configure an internet-facing MP."
        return text, [Fix(Rank.CONFIGURE, fix)]

    def install_from_internet(self) -> tuple[str, list[Fix]]:
        extra = " ".join(_sentence(n) for n in self.obs.notes)
        return (f"{self.who}: ConfigMgr does not support installing or upgrading a client "
                "directly from the internet or from an internet-based MP; a new IBCM client "
                f"needs a connection to the intranet (seed §3, supplement 1). {extra}".strip(),
                [Fix(Rank.CONFIGURE,
                     "Install while on the intranet, or connect through the VPN first. For an "
                     "internet-only client, install from media with /source:<path> and "
                     "CCMALWAYSINF=1.")])

    def no_internet_mp(self) -> tuple[str, list[Fix]]:
        internet = self.s.mp.internet_fqdn
        return (f"{self.who}: {self.obs.detail} (seed §3, supplement 2).",
                [Fix(Rank.CONFIGURE,
                     f"Add CCMHOSTNAME={internet or '<internet FQDN>'} to the ccmsetup command "
                     "line, or let the client run a site refresh on the intranet or VPN "
                     "first.")])

    def no_mp(self) -> tuple[str, list[Fix]]:
        return (f"{self.who}: {self.obs.detail} (0x87D00269 'Required management point not "
                "found').", [Fix(Rank.CONFIGURE, "Give SMSMP=https://<MP intranet FQDN> on the "
                                 "ccmsetup command line.")])

    def no_pki(self) -> tuple[str, list[Fix]]:
        return (f"{self.who}: {self.obs.detail}. The client has no PKI certificate to use "
                "(ccmsetup was run without /UsePKICert), so it has no usable MP (0x87D00269).",
                [Fix(Rank.CONFIGURE, "Add /UsePKICert to the ccmsetup command line (seed §3).")])

    def no_client_cert(self) -> tuple[str, list[Fix]]:
        error = self.obs.error
        text = (f"{self.who}: certificate selection failed: {self.obs.detail} "
                f"({error.hex if error else ''} {error.message if error else ''}). CCMHTTP logs "
                "Text=CCM_E_NO_CLIENT_PKI_CERT with Code=0: no connection is even attempted.")
        store = self.pki.stores.get(self.client.name, ())
        wrong_usage = [c for c in store if _lacks_client_auth(c.cert)]
        if error is codes.CCM_SEVERAL_CERTS:
            fix = Fix(Rank.CONFIGURE, "Add CCMFIRSTCERT=1 (the longest-valid certificate wins), "
                      "or narrow CCMCERTSEL so that one certificate matches.")
        elif store and len(wrong_usage) == len(store):
            names = ", ".join(c.cert.subject.rfc4514_string() or "(empty subject)"
                              for c in wrong_usage)
            text += (f" The store's certificate{'s' if len(store) > 1 else ''} ({names}) "
                     f"{'lack' if len(store) > 1 else 'lacks'} the Client Authentication EKU, "
                     "so selection never considers it (reference §3.2, §3.4).")
            fix = Fix(Rank.REISSUE,
                      "Enrol a certificate with Client Authentication (1.3.6.1.5.5.7.3.2) "
                      "in its EKU, from a Workstation Authentication template, into "
                      "the computer's Personal store.")
        elif error is codes.CCM_NO_MATCHING_CERT:
            fix = Fix(Rank.CONFIGURE,
                      "Correct CCMCERTSEL (Subject: is exact and case-sensitive, SubjectStr: is "
                      "a case-insensitive part), or enrol a valid certificate whose subject or "
                      "SAN names the computer; check the computer's clock.")
        else:
            fix = Fix(Rank.REISSUE,
                      "Enrol a Client Authentication certificate (Workstation Authentication "
                      "template) into the computer's Personal store before installing the "
                      "client.")
        return text, [fix]

    def not_installed(self) -> tuple[str, list[Fix]]:
        return (f"{self.who}: {self.obs.detail}.",
                [Fix(Rank.CONFIGURE, "Fix the install step first; later steps depend on it.")])

    def not_registered(self) -> tuple[str, list[Fix]]:
        if self.obs.earlier_fix:
            return (f"{self.who}: {self.obs.detail}.",
                    [Fix(Rank.RESTORE, "Fix the registration first (policy and inventory need "
                         f"a registered client): {self.obs.earlier_fix}")])
        return (f"{self.who}: {self.obs.detail}.",
                [Fix(Rank.CONFIGURE, "Fix the register step first; policy and inventory need "
                     "a registered client.")])


Handler = Callable[[Explainer], tuple[str, Sequence[Fix]]]

HANDLERS: Mapping[FailureKind, Handler] = MappingProxyType({
    FailureKind.TLS: Explainer.tls,
    FailureKind.HTTP: Explainer.http,
    FailureKind.CONNECT: Explainer.connect,
    FailureKind.INSTALL_FROM_INTERNET: Explainer.install_from_internet,
    FailureKind.NO_INTERNET_MP: Explainer.no_internet_mp,
    FailureKind.NO_MP: Explainer.no_mp,
    FailureKind.NO_PKI: Explainer.no_pki,
    FailureKind.NO_CLIENT_CERT: Explainer.no_client_cert,
    FailureKind.NOT_INSTALLED: Explainer.not_installed,
    FailureKind.NOT_REGISTERED: Explainer.not_registered,
})
"""Failure kind -> its handler: (explanation, fix). Every kind has one (a test checks)."""


def explain(scenario: Scenario, pki: BuiltPKI, client: ClientSpec, obs: StepObservation,
            answer: MpAnswer | None) -> tuple[str, str]:
    """(explanation, fix) of one step; the fix is empty when the step went well."""
    return Explainer(scenario, pki, client, obs, answer).explain()


__all__ = ["HANDLERS", "SITE_BOX", "TRADE_OFF", "Explainer", "Fix", "Rank", "explain",
           "render_fixes"]
