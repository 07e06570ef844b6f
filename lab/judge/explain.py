"""The judge's words: what happened in a step, in plain words, and the fix.

Each :class:`~lab.results.observations.FailureKind` has one handler (:data:`HANDLERS`); a step
that went well gets its story from :meth:`Explainer.ok_story`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from lab import codes
from lab.codes import flag_names
from lab.pki.build import BuiltPKI
from lab.pki.urls import url_host
from lab.results.observations import FailureKind, RevocationResult, StepObservation
from lab.results.records import MpAnswer
from lab.scenario.model import CAKind, ClientSpec, Scenario

SITE_BOX = ('"Clients check the certificate revocation list (CRL) for site systems" '
            "(Administration > Site Configuration > Sites > site Properties > "
            "Communication Security)")


def _seconds(ms: int) -> str:
    s = ms / 1000
    return f"{s:g} s"


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
        return HANDLERS[obs.failure](self)

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
        return " ".join(p.rstrip(".") + "." for p in parts if p)

    # -- failure kinds ----------------------------------------------------------------------
    def tls(self) -> tuple[str, str]:
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
        fixes: list[str] = []
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
                    body.append(f"{host} refused the delta CRL's name (<CaName>+.crl): its "
                                "W3C log shows 404.11, request filtering's double-escaping "
                                "check, which the AD CS Best Practices Analyzer warns about.")
                    fixes.append(f"On {host}, select \"Allow double escaping\" in the CRL "
                                 "folder's Request Filtering settings (allowDoubleEscaping=true), "
                                 "or stop publishing delta CRLs so the base CRL stops announcing "
                                 "them.")
                else:
                    fixes.append("Publish the delta CRL where clients reach it (the same place "
                                 "as the base CRL, e.g. over HTTP on the internet), or stop "
                                 "publishing delta CRLs so the base CRL stops announcing them.")
            else:
                body.append("No URL gave a good CRL, so revocation is unknown: CryptoAPI says "
                            "'offline' (not 'revoked') and WinHTTP refuses the connection.")
                fixes.append(self.offline_fix(rev))
        if "revoked" in cats:
            revoked = [e for e in rev.elements if e.status == "revoked"]
            leaf_subject = verdict.chain[0].subject.rfc4514_string() if verdict.chain else ""
            if revoked and all(e.subject == leaf_subject for e in revoked):
                body.append("The CA's CRL lists the MP certificate's serial number: it is "
                            "revoked.")
                fixes.append("Issue a new server certificate to the MP and bind it to the "
                             "HTTPS site in IIS.")
            else:
                names = ", ".join(e.subject for e in revoked if e.subject != leaf_subject)
                body.append(f"The issuing CA {names} is on its parent's CRL: every certificate "
                            "under it fails, the MP's included.")
                fixes.append("Have the root issue a new certificate to the issuing CA (or a "
                             "new issuing CA), publish it, and reissue the MP certificate under "
                             "it.")
        if "name" in cats:
            problem = next(p for p in verdict.problems if p.category == "name")
            body.append(f"Name mismatch: {problem.detail}. An MP that serves both intranet "
                        "and internet clients needs both FQDNs in its certificate (seed §2).")
            fixes.append(self.name_fix())
        if "trust" in cats:
            problem = next(p for p in verdict.problems if p.category == "trust")
            body.append(f"Untrusted chain: {problem.detail}.")
            fixes.append("Import the issuing root CA into the client's Trusted Root "
                         "Certification Authorities store (Computer account).")
        for cat, msg in (("date", "The certificate is outside its validity period."),
                         ("usage", "The certificate lacks the Server Authentication EKU.")):
            if cat in cats:
                body.append(msg)
                fixes.append("Reissue the MP certificate from a Web Server template "
                             "(Server Authentication EKU, valid dates).")
        return " ".join([head, *body]), " ".join(dict.fromkeys(fixes))

    def offline_fix(self, rev: RevocationResult) -> str:
        bad = [u for u in rev.urls if u.result in ("expired", "not_yet_valid", "invalid")]
        if bad and not any(u.result == "failed" for u in rev.urls):
            # Every URL answered: the CRL itself is the problem, not where it is published.
            kinds = {u.result for u in bad}
            advice = []
            if "expired" in kinds:
                advice.append("republish the CRL on the CA (certutil -crl) and fix whatever "
                              "stopped the scheduled publication")
            if "not_yet_valid" in kinds:
                advice.append("correct the CA's clock, then republish the CRL")
            if "invalid" in kinds:
                advice.append("have the CA sign its CRL with its own key, from a CA certificate "
                              "whose key usage includes cRLSign (reissue the CA certificate if "
                              "it lacks it)")
            return ("The CRL reached the client but cannot be used: " + "; ".join(advice)
                    + f". Until then, clearing {SITE_BOX} (and /NoCRLCheck at install) lets "
                    "clients connect without the check.")
        if self.obs.crl_source.startswith("the site"):
            return (f"Clear {SITE_BOX} so clients stop checking the CRL of site systems, or "
                    "publish the CRL over HTTP at a URL clients reach from "
                    f"the {self.obs.location} and reissue the MP certificate with that URL in "
                    "its CDP (seed §4).")
        workgroup = not self.client.domain_joined and any(
            u.url.lower().startswith("ldap:///") for u in rev.urls)
        extra = (" A workgroup machine never reaches ldap:/// (it has no domain controller "
                 "of its own)." if workgroup else "")
        return ("Add /NoCRLCheck to the ccmsetup command line for the bootstrap, and clear "
                f"{SITE_BOX} for the rest of the client's life, or publish the CRL over HTTP "
                "where this client can reach it and reissue the MP certificate with that URL "
                f"(seed §4).{extra}")

    def name_fix(self) -> str:
        mp = self.s.mp
        names = " and ".join(n for n in (mp.intranet_fqdn, mp.internet_fqdn) if n)
        ca = self.s.ca(mp.cert.issuer)
        plan = ""
        if ca.kind is CAKind.PUBLIC and ca.max_names is not None and ca.max_names < 2:
            plan = (f" {ca.name}'s plan allows only {ca.max_names} name per certificate: "
                    "buy a plan that allows two (a multi-domain/SAN certificate).")
        return f"Reissue the MP certificate with both FQDNs in the SAN: {names}.{plan}"

    def http(self) -> tuple[str, str]:
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
            return head, ("Test the MP from the client agent's side instead (its logs), or "
                          "import a client certificate into the user's store for the browser "
                          "test; this answer alone does not mean the MP is broken.")
        head = (f"{self.who} reached {req.url}, but the MP answered HTTP {label} {text}. "
                "The client logs CCM_E_BAD_HTTP_STATUS_CODE (0x87D0027E) with the status"
                + (", and the post fails with 0x87D00231." if req.method == "CCM_POST" else "."))
        if label == "403.4":
            mp = self.obs.mp
            assert mp is not None
            return (head + f" The client used HTTP because it chose {mp.host} through {mp.why}; "
                    "the MP accepts HTTPS only, so IIS requires SSL. (How a client recovers "
                    "from this entry is not documented; the lab models that it does not.)",
                    f"Write SMSMP=https://{mp.host} on the ccmsetup command line: an MP that "
                    "accepts HTTPS only must be prefixed with https:// (seed §3).")
        if self.answer is not None and self.answer.status == 403:
            return (head + f" IIS on the MP: {self.answer.detail}.",
                    self.client_cert_fix(label))
        return head, "Check the MP's IIS log and MP logs for the cause."

    def client_cert_fix(self, label: str) -> str:
        return {
            "403.7": "Give the client a Client Authentication certificate and install with "
                     "/UsePKICert.",
            "403.13": "If the certificate is revoked, enrol a new one. If IIS could not reach "
                      "the client certificate's CDP, publish that CRL where the MP can reach it.",
            "403.16": "Issue the client certificate from a CA in the site's trusted root list, "
                      "or add its root to the list.",
            "403.17": "Renew the client certificate, and check the computer's clock: the client "
                       "selects its certificate by its own time, IIS judges it by the MP's.",
        }.get(label, "See the MP's IIS log.")

    def connect(self) -> tuple[str, str]:
        obs = self.obs
        req = obs.failed_request
        refusal = self.pki.mp_refusal
        if refusal is not None and req is not None and req.connect_error is \
                codes.ERROR_WINHTTP_CANNOT_CONNECT:
            return (f"The MP has no server certificate: {refusal.message}. Without a "
                    "certificate IIS has no HTTPS binding, so nothing answers on port 443 and "
                    f"{self.client.name} cannot connect. A certificate with only one of the "
                    "MP's names cannot serve both intranet and internet clients (seed §2).",
                    f"Choose a plan of {refusal.ca} that allows {len(refusal.requested)} "
                    "subject names (a multi-domain/SAN certificate), or use the enterprise CA "
                    "with an HTTP CDP published to the internet.")
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
        return text, fix

    def install_from_internet(self) -> tuple[str, str]:
        extra = " ".join(n.rstrip(".") + "." for n in self.obs.notes)
        return (f"{self.who}: ConfigMgr does not support installing or upgrading a client "
                "directly from the internet or from an internet-based MP; a new IBCM client "
                f"needs a connection to the intranet (seed §3, supplement 1). {extra}".strip(),
                "Install while on the intranet, or connect through the VPN first. For an "
                "internet-only client, install from media with /source:<path> and "
                "CCMALWAYSINF=1.")

    def no_internet_mp(self) -> tuple[str, str]:
        internet = self.s.mp.internet_fqdn
        return (f"{self.who}: {self.obs.detail} (seed §3, supplement 2).",
                f"Add CCMHOSTNAME={internet or '<internet FQDN>'} to the ccmsetup command "
                "line, or let the client run a site refresh on the intranet or VPN first.")

    def no_mp(self) -> tuple[str, str]:
        return (f"{self.who}: {self.obs.detail} (0x87D00269 'Required management point not "
                "found').", "Give SMSMP=https://<MP intranet FQDN> on the ccmsetup command "
                "line.")

    def no_pki(self) -> tuple[str, str]:
        return (f"{self.who}: {self.obs.detail}. The client has no PKI certificate to use "
                "(ccmsetup was run without /UsePKICert), so it has no usable MP (0x87D00269).",
                "Add /UsePKICert to the ccmsetup command line (seed §3).")

    def no_client_cert(self) -> tuple[str, str]:
        error = self.obs.error
        text = (f"{self.who}: certificate selection failed: {self.obs.detail} "
                f"({error.hex if error else ''} {error.message if error else ''}). CCMHTTP logs "
                "Text=CCM_E_NO_CLIENT_PKI_CERT with Code=0: no connection is even attempted.")
        if error is codes.CCM_SEVERAL_CERTS:
            fix = ("Add CCMFIRSTCERT=1 (the longest-valid certificate wins), or narrow "
                   "CCMCERTSEL so that one certificate matches.")
        elif error is codes.CCM_NO_MATCHING_CERT:
            fix = ("Correct CCMCERTSEL (Subject: is exact and case-sensitive, SubjectStr: is a "
                   "case-insensitive part), or enrol a valid certificate whose subject or SAN "
                   "names the computer; check the computer's clock.")
        else:
            fix = ("Enrol a Client Authentication certificate (Workstation Authentication "
                   "template) into the computer's Personal store before installing the client.")
        return text, fix

    def not_installed(self) -> tuple[str, str]:
        return (f"{self.who}: {self.obs.detail}.",
                "Fix the install step first; later steps depend on it.")

    def not_registered(self) -> tuple[str, str]:
        return (f"{self.who}: {self.obs.detail}.",
                "Fix the register step first; policy and inventory need a registered client.")


Handler = Callable[[Explainer], tuple[str, str]]

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


__all__ = ["HANDLERS", "SITE_BOX", "Explainer", "explain"]
