"""Judge: turn what a client step observed into a result, compare it with the scenario's
expectation, and explain it in plain words with the fix."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography import x509

from lab import codes
from lab.client.agent import StepObservation
from lab.client.winhttp import HttpOutcome, OpenSslJudgement
from lab.codes import Code, flag_names
from lab.cryptoapi.revocation import RevocationResult
from lab.pki.build import BuiltPKI
from lab.results.logline import LogLine
from lab.scenario.model import CAKind, ClientSpec, Scenario, StepSpec

SITE_BOX = ('"Clients check the certificate revocation list (CRL) for site systems" '
            "(Administration > Site Configuration > Sites > site Properties > "
            "Communication Security)")


@dataclass(frozen=True)
class MpAnswer:
    """What the MP's IIS log says about the requests of one step (status and substatus)."""

    status: int
    substatus: int
    win32_status: int
    detail: str
    simulated_ms: int = 0
    """Simulated time the MP spent (IIS's CRL retrievals for the client certificate)."""

    @property
    def label(self) -> str:
        """``403.13``, or ``500`` when IIS gave no substatus."""
        return f"{self.status}.{self.substatus}" if self.substatus else str(self.status)


@dataclass
class StepResult:
    client: str
    index: int
    action: str
    location: str
    target: str | None
    outcome: str
    expected: str | None
    met: bool
    error: Code | None
    error_message: str
    winhttp_error: Code | None
    flags: int
    http_status: str | None
    openssl: OpenSslJudgement | None
    revocation: RevocationResult | None
    connection: str
    mp: str | None
    crl_check: bool | None
    crl_source: str
    options: int | None
    explanation: str
    fix: str
    identifiers: list[str]
    log: list[LogLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    simulated_ms: int = 0
    chain: tuple[x509.Certificate, ...] = ()
    """The server's chain as CryptoAPI built it (end entity first), when a handshake happened."""
    log_refs: list[str] = field(default_factory=list)
    """``path:line`` of the log lines to look at, filled in when logs are written."""

    @property
    def judges_agree(self) -> bool | None:
        return None if self.openssl is None else self.openssl.agrees

    @property
    def name(self) -> str:
        return f"{self.index + 1}-{self.action}@{self.location}"


def _identifiers(obs: StepObservation, answer: MpAnswer | None,
                 refusal_code: Code | None) -> set[str]:
    ids: set[str] = set(obs.extra_identifiers)
    if obs.error is not None:
        ids |= obs.error.identifiers()
    req = obs.failed_request
    if req is not None:
        if req.winhttp_error is not None:
            ids |= req.winhttp_error.identifiers()
        if req.verdict is not None:
            for p in req.verdict.problems:
                ids |= p.error.identifiers()
        for name in flag_names(req.flags):
            ids |= {name, f"WINHTTP_CALLBACK_STATUS_FLAG_{name}"}
        if req.status is not None and req.status != 200:
            ids.add(str(req.status))
    if answer is not None and answer.status != 200:
        ids |= {str(answer.status), answer.label}
    if refusal_code is not None:
        ids |= refusal_code.identifiers()
    return {i.upper() for i in ids}


def expectation_met(expected: str | None, outcome: str, identifiers: set[str]) -> bool:
    if expected is None:
        return True
    if expected in ("ok", "fail"):
        return outcome == expected
    return outcome == "fail" and expected.strip().upper() in identifiers


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


class _Explainer:
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
        method = getattr(self, f"_{obs.failure}", None)
        if method is None:
            return f"{self.who}: {obs.detail}.", ""
        text, fix = method()
        return text, fix

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
                good = next((u.url for u in rev.urls if u.result == "verified"), None)
                if good:
                    parts.append(f"A good CRL came from {good}"
                                 + (f" after {_seconds(waited)} spent on unreachable URLs."
                                    if waited else "."))
        parts += obs.notes
        return " ".join(p.rstrip(".") + "." for p in parts if p)

    # -- failure kinds ----------------------------------------------------------------------
    def _tls(self) -> tuple[str, str]:
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
                fixes.append("Publish the delta CRL where clients reach it (the same place as "
                             "the base CRL, e.g. over HTTP on the internet), or stop publishing "
                             "delta CRLs so the base CRL stops announcing them.")
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

    def _http(self) -> tuple[str, str]:
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

    def _connect(self) -> tuple[str, str]:
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

    def _install_from_internet(self) -> tuple[str, str]:
        extra = " ".join(n.rstrip(".") + "." for n in self.obs.notes)
        return (f"{self.who}: ConfigMgr does not support installing or upgrading a client "
                "directly from the internet or from an internet-based MP; a new IBCM client "
                f"needs a connection to the intranet (seed §3, supplement 1). {extra}".strip(),
                "Install while on the intranet, or connect through the VPN first. For an "
                "internet-only client, install from media with /source:<path> and "
                "CCMALWAYSINF=1.")

    def _no_internet_mp(self) -> tuple[str, str]:
        internet = self.s.mp.internet_fqdn
        return (f"{self.who}: {self.obs.detail} (seed §3, supplement 2).",
                f"Add CCMHOSTNAME={internet or '<internet FQDN>'} to the ccmsetup command "
                "line, or let the client run a site refresh on the intranet or VPN first.")

    def _no_mp(self) -> tuple[str, str]:
        return (f"{self.who}: {self.obs.detail} (0x87D00269 'Required management point not "
                "found').", "Give SMSMP=https://<MP intranet FQDN> on the ccmsetup command "
                "line.")

    def _no_pki(self) -> tuple[str, str]:
        return (f"{self.who}: {self.obs.detail}. The client has no PKI certificate to use "
                "(ccmsetup was run without /UsePKICert), so it has no usable MP (0x87D00269).",
                "Add /UsePKICert to the ccmsetup command line (seed §3).")

    def _no_client_cert(self) -> tuple[str, str]:
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

    def _not_installed(self) -> tuple[str, str]:
        return (f"{self.who}: {self.obs.detail}.",
                "Fix the install step first; later steps depend on it.")

    def _not_registered(self) -> tuple[str, str]:
        return (f"{self.who}: {self.obs.detail}.",
                "Fix the register step first; policy and inventory need a registered client.")


def mp_answer(records: list[tuple[int, int, int, str, int]]) -> MpAnswer | None:
    """The most telling MP answer of a step (the first refusal, else the last answer), with
    the simulated time all of the step's answers took."""
    if not records:
        return None
    refused = [r for r in records if r[0] != 200]
    status, sub, win32, detail, _ = refused[0] if refused else records[-1]
    return MpAnswer(status, sub, win32, detail, sum(r[4] for r in records))


def judge_step(scenario: Scenario, pki: BuiltPKI, client: ClientSpec, index: int,
               step: StepSpec, obs: StepObservation, answer: MpAnswer | None) -> StepResult:
    refusal_code = codes.LAB_CA_PLAN_NAME_LIMIT if (
        pki.mp_refusal is not None and obs.outcome == "fail" and obs.failure == "connect"
    ) else None
    ids = _identifiers(obs, answer, refusal_code)
    explanation, fix = _Explainer(scenario, pki, client, obs, answer).explain()
    req: HttpOutcome | None = obs.failed_request or (obs.requests[-1] if obs.requests else None)
    http_status: str | None = None
    if answer is not None:
        http_status = answer.label
    elif req is not None and req.status is not None:
        http_status = str(req.status)
    notes = [n for n in obs.notes if n not in explanation] if obs.outcome == "fail" else []
    openssl = req.openssl if req is not None else None
    if openssl is not None and not openssl.agrees:
        notes.append(f"JUDGES DISAGREE: OpenSSL says {openssl.verify_code} "
                     f"({openssl.verify_message}), the Windows engine says "
                     f"{obs.error.name if obs.error else 'ok'}")
    error = refusal_code if refusal_code is not None else obs.error
    message = obs.detail if refusal_code is None else (pki.mp_refusal.message
                                                       if pki.mp_refusal else obs.detail)
    return StepResult(
        client=client.name, index=index, action=step.action.value,
        location=step.location.value, target=obs.target, outcome=obs.outcome,
        expected=step.expect, met=expectation_met(step.expect, obs.outcome, ids),
        error=error, error_message=message,
        winhttp_error=req.winhttp_error if req is not None and obs.outcome == "fail" else None,
        flags=req.flags if req is not None and obs.outcome == "fail" else 0,
        http_status=http_status, openssl=openssl,
        revocation=(req.verdict.revocation if req is not None and req.verdict is not None
                    else None),
        connection=obs.connection, mp=obs.mp.host if obs.mp else None,
        crl_check=obs.crl_check, crl_source=obs.crl_source, options=obs.options,
        explanation=explanation, fix=fix, identifiers=sorted(ids), log=list(obs.log),
        notes=notes, simulated_ms=obs.simulated_ms + (answer.simulated_ms if answer else 0),
        chain=req.verdict.chain if req is not None and req.verdict is not None else (),
    )


__all__ = ["MpAnswer", "StepResult", "expectation_met", "judge_step", "mp_answer"]
