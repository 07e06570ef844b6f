"""The judge on hand-made observations: no servers, no client, no network.

Each test builds what a step saw (:mod:`lab.results.observations`) by hand, judges it with
:func:`lab.judge.verdict.judge_step` against a real scenario and its real PKI, and checks the
code, the identifiers, the explanation and the fix, word for word. Every
:class:`~lab.results.observations.FailureKind` is judged at least once, next to a passing twin:
the same step, gone well.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography import x509
from labtest import HTTP_CDP, INTERNET, INTRA, LDAP_CDP, SCENARIOS

from lab import codes
from lab.clock import Clock
from lab.codes import Code, WinHttpFlag
from lab.judge.explain import HANDLERS, TRADE_OFF, Explainer, render_fixes
from lab.judge.verdict import expectation_met, judge_step, mp_answer
from lab.pki.build import BuiltPKI, build_pki
from lab.pki.cache import PKICache
from lab.results.observations import (
    ChainProblem,
    ChainVerdict,
    ElementStatus,
    FailureKind,
    HttpOutcome,
    MpChoice,
    OpenSslJudgement,
    RevocationResult,
    StepObservation,
    UrlAttempt,
)
from lab.results.records import MpAnswer, MpRecord
from lab.results.verdicts import StepResult
from lab.scenario.loader import load_scenario
from lab.scenario.model import Action, ClientSpec, Scenario, StepSpec, Zone

SITE_BOX = ('"Clients check the certificate revocation list (CRL) for site systems" '
            "(Administration > Site Configuration > Sites > site Properties > "
            "Communication Security)")
SITE_SOURCE = ("the site's setting learned at the last site refresh (SSLState=63: CRL "
               "checking on)")
BOOTSTRAP = "ccmsetup without /NoCRLCheck (bootstrap: CRL checking on)"
LEARNED = "the internet MP learned from the site"
SMSMP_HTTPS = f"SMSMP=https://{INTRA}"
PUBLISHED = "http://pki.contoso.com/CertEnroll/Contoso-CA.crl"
REQUEST = "/ccm_system/request"
MPLIST = "/SMS_MP/.sms_aut?MPLIST"
PC01 = "PC01 (domain-joined, on the internet)"
PC01_INSIDE = "PC01 (domain-joined, on the intranet)"
SECURE_HEAD = ("WinHTTP fails the request with ERROR_WINHTTP_SECURE_FAILURE (12175), flags "
               "CERT_REV_FAILED (0x1).")


@dataclass(frozen=True)
class Case:
    """A real scenario, its real PKI and its first client: what the judge reads besides the
    observation."""

    scenario: Scenario
    pki: BuiltPKI
    client: ClientSpec

    @property
    def leaf(self) -> str:
        assert self.pki.mp is not None
        return self.pki.mp.cert.subject.rfc4514_string()

    @property
    def ca(self) -> str:
        return self.pki.cas["Contoso-CA"].cert.subject.rfc4514_string()

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        assert self.pki.mp is not None
        return (self.pki.mp.cert, self.pki.cas["Contoso-CA"].cert)

    def workgroup(self) -> Case:
        return dataclasses.replace(self, client=dataclasses.replace(self.client,
                                                                    domain_joined=False))


def _case(cache: PKICache, name: str) -> Case:
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    return Case(scenario, build_pki(scenario, Clock(), cache), scenario.clients[0])


@pytest.fixture(scope="module")
def crl_on(cache: PKICache) -> Case:
    """Two names, enterprise CA with its default CDPs (ldap:/// then http://ca01)."""
    return _case(cache, "seed4-internet-client-ldap-cdp-crl-on")


@pytest.fixture(scope="module")
def one_name_plan(cache: PKICache) -> Case:
    """A public CA whose plan allows one name: the MP certificate was refused."""
    return _case(cache, "seed2-public-ca-single-name-plan")


# -- hand-made observations ----------------------------------------------------------------

def observe(action: Action = Action.POLICY, location: Zone = Zone.INTERNET, *,
            connection: str | None = None, mp: MpChoice | None = None,
            crl_source: str = SITE_SOURCE, notes: tuple[str, ...] = (),
            requests: tuple[HttpOutcome, ...] = ()) -> StepObservation:
    obs = StepObservation(action, location)
    obs.connection = connection if connection is not None else location.value
    obs.mp = mp
    obs.crl_check, obs.crl_source, obs.options = True, crl_source, 63
    obs.notes.extend(notes)
    obs.requests.extend(requests)
    return obs


def request(url: str, *, method: str = "CCM_POST", status: int | None = None,
            reason: str | None = None, verdict: ChainVerdict | None = None,
            openssl: OpenSslJudgement | None = None, connect_error: Code | None = None,
            connect_detail: str = "", simulated_ms: int = 0) -> HttpOutcome:
    host = url.split("://", 1)[1].split("/", 1)[0]
    secure = url.startswith("https://")
    out = HttpOutcome(method, url, host, 443 if secure else 80, secure, secure,
                      connect_error=connect_error, connect_detail=connect_detail,
                      verdict=verdict, openssl=openssl, status=status, reason=reason,
                      simulated_ms=simulated_ms)
    return out


def tls_failure(obs: StepObservation, verdict: ChainVerdict,
                openssl: OpenSslJudgement | None = None, host: str = INTERNET) -> StepObservation:
    """``obs`` with one HTTPS request refused by CryptoAPI, as the client records it."""
    obs.requests.append(request(f"https://{host}{REQUEST}", verdict=verdict,
                                openssl=openssl or OpenSslJudgement(3, "unable to get "
                                                                    "certificate CRL",
                                                                    "offline", True),
                                simulated_ms=verdict.revocation.simulated_ms))
    obs.fail(FailureKind.TLS, verdict.error, "; ".join(p.detail for p in verdict.problems))
    return obs


def judge(case: Case, obs: StepObservation, expect: str | None = None,
          answer: MpAnswer | None = None, *, client: ClientSpec | None = None,
          scenario: Scenario | None = None) -> StepResult:
    return judge_step(scenario or case.scenario, case.pki, client or case.client, 3,
                      StepSpec(obs.action, obs.location, expect), obs, answer)


def offline(case: Case, *urls: UrlAttempt, delta_missing: bool = False) -> ChainVerdict:
    element = ElementStatus(case.leaf, case.ca, 1, "offline", codes.CRYPT_E_REVOCATION_OFFLINE,
                            tuple(urls), delta_missing=delta_missing)
    detail = ("the base CRL announces a delta CRL, and no delta URL gave a good one"
              if delta_missing else "no CDP URL gave a good CRL")
    problem = ChainProblem(codes.CRYPT_E_REVOCATION_OFFLINE, WinHttpFlag.CERT_REV_FAILED,
                           "offline", f"{case.leaf}: {detail}", openssl_blind=delta_missing)
    return ChainVerdict(case.chain, (problem,), RevocationResult(True, (element,)))


def failed(url: str, detail: str, ms: int = 15000) -> UrlAttempt:
    return UrlAttempt(url, "failed", codes.ERROR_WINHTTP_NAME_NOT_RESOLVED, detail, ms)


def succeeded(case: Case, failing: StepObservation, *, status: int = 200,
              revocation: RevocationResult | None = None) -> StepObservation:
    """The passing twin of ``failing``: the same step, its request answered 200."""
    obs = observe(failing.action, failing.location, connection=failing.connection,
                  mp=failing.mp, crl_source=failing.crl_source)
    if failing.mp is not None:
        scheme = "https" if failing.mp.https else "http"
        verdict = (ChainVerdict(case.chain, (), revocation or RevocationResult(False))
                   if failing.mp.https else None)
        obs.requests.append(request(f"{scheme}://{failing.mp.host}{REQUEST}", status=status,
                                    reason="OK", verdict=verdict,
                                    openssl=OpenSslJudgement(0, "ok", "ok", True)
                                    if failing.mp.https else None))
    return obs


def assert_twin(case: Case, failing: StepResult, twin_obs: StepObservation) -> StepResult:
    """The twin succeeds, meets ``ok``, has no fix, and does not meet the failing step's
    expectation."""
    twin = judge(case, twin_obs, "ok")
    assert (twin.outcome, twin.met, twin.fix, twin.error) == ("ok", True, "", None)
    assert twin.identifiers == []
    assert not expectation_met(failing.expected or "fail", twin.outcome, set(twin.identifiers))
    return twin


# -- the dispatch ----------------------------------------------------------------------------

def test_every_failure_kind_has_exactly_one_handler() -> None:
    assert set(HANDLERS) == set(FailureKind)
    for kind, handler in HANDLERS.items():
        assert getattr(Explainer, kind.value) is handler, kind


def test_failure_kinds_keep_their_short_names() -> None:
    assert [k.value for k in FailureKind] == [
        "tls", "http", "connect", "install_from_internet", "no_internet_mp", "no_mp",
        "no_pki", "no_client_cert", "not_installed", "not_registered"]


# -- TLS -------------------------------------------------------------------------------------

def test_tls_offline_on_the_internet_with_the_site_box(crl_on: Case) -> None:
    ldap = failed(LDAP_CDP, "DC01.contoso.local does not resolve from the internet zone")
    http = failed(HTTP_CDP, "ca01.contoso.local does not resolve from the internet zone")
    obs = tls_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)), offline(crl_on, ldap, http))
    got = judge(crl_on, obs, "CRYPT_E_REVOCATION_OFFLINE")
    assert got.error is codes.CRYPT_E_REVOCATION_OFFLINE
    assert got.winhttp_error is codes.ERROR_WINHTTP_SECURE_FAILURE
    assert (got.flags, got.http_status, got.met, got.mp) == (1, None, True, INTERNET)
    assert got.explanation == (
        f"{PC01} connected to https://{INTERNET}/ and CryptoAPI rejected the MP's certificate: "
        f"CRYPT_E_REVOCATION_OFFLINE (0x80092013). {SECURE_HEAD} CRL checking is on, decided "
        f"by {SITE_SOURCE}. The CDP URLs, in order: {LDAP_CDP} failed after 15 s: DC01.contoso."
        f"local does not resolve from the internet zone; {HTTP_CDP} failed after 15 s: ca01."
        "contoso.local does not resolve from the internet zone. No URL gave a good CRL, so "
        "revocation is unknown: CryptoAPI says 'offline' (not 'revoked') and WinHTTP refuses "
        "the connection.")
    # repair first; turning the check off last, marked as the trade-off it is
    assert got.fix == (
        "Publish the CRL over HTTP at a URL clients on the internet reach and reissue the MP "
        f"certificate with that URL in its CDP (seed §4). {TRADE_OFF} Clear {SITE_BOX} so "
        "clients stop checking the CRL of site systems.")
    assert {"CRYPT_E_REVOCATION_OFFLINE", "0X80092013", "ERROR_WINHTTP_SECURE_FAILURE",
            "12175", "CERT_REV_FAILED", "WINHTTP_CALLBACK_STATUS_FLAG_CERT_REV_FAILED"} <= \
        set(got.identifiers)
    assert got.revocation is obs.requests[0].verdict.revocation  # type: ignore[union-attr]
    assert got.simulated_ms == 30000 and got.chain == crl_on.chain
    assert got.judges_agree is True and got.notes == []
    assert got.name == "4-policy@internet"
    assert judge(crl_on, obs, "0x80092013").met
    assert not judge(crl_on, obs, "CRYPT_E_REVOKED").met
    assert not judge(crl_on, obs, "ok").met and judge(crl_on, obs, "fail").met
    # the twin: the published HTTP CDP answers after the LDAP URL timed out
    good = UrlAttempt(PUBLISHED, "verified", None, "a good CRL", 0, 7)
    rev = RevocationResult(True, (ElementStatus(crl_on.leaf, crl_on.ca, 1, "good", None,
                                                (ldap, good)),))
    twin = assert_twin(crl_on, got, succeeded(crl_on, obs, revocation=rev))
    assert twin.explanation == (
        f"{PC01} policy step succeeded against {INTERNET} ({LEARNED}). CRL checking is on, "
        f"decided by {SITE_SOURCE}. A good CRL came from {PUBLISHED} after 15 s spent on "
        "unreachable URLs.")
    assert twin.http_status == "200" and twin.winhttp_error is None and twin.flags == 0


def test_tls_offline_at_bootstrap_and_for_a_workgroup_machine(crl_on: Case) -> None:
    ldap = failed(LDAP_CDP, "no domain controller answers", 0)
    obs = tls_failure(observe(Action.INSTALL, Zone.INTRANET, mp=MpChoice(INTRA, True, SMSMP_HTTPS),
                              crl_source=BOOTSTRAP), offline(crl_on, ldap), host=INTRA)
    publish = ("Publish the CRL over HTTP at a URL clients on the intranet reach and reissue "
               "the MP certificate with that URL in its CDP (seed §4).")
    trade_off = (f" {TRADE_OFF} Add /NoCRLCheck to the ccmsetup command line for the "
                 f"bootstrap, and clear {SITE_BOX} for the rest of the client's life.")
    assert judge(crl_on, obs).fix == publish + trade_off
    workgroup = crl_on.workgroup()
    got = judge(workgroup, obs)
    assert got.fix == publish + (" A workgroup machine never reaches `ldap:///` (it has no "
                                 "domain controller of its own).") + trade_off
    assert got.explanation.startswith(
        f"PC01 (workgroup, on the intranet) connected to https://{INTRA}/ and CryptoAPI ")
    assert f"The CDP URLs, in order: {LDAP_CDP} failed after 0 s: no domain controller " \
        "answers." in got.explanation
    twin = assert_twin(workgroup, got, succeeded(workgroup, obs))
    assert twin.explanation == (
        f"PC01 (workgroup, on the intranet) install step succeeded against {INTRA} "
        f"({SMSMP_HTTPS}). CRL checking is on, decided by {BOOTSTRAP}.")


def test_tls_offline_because_the_crl_cannot_be_used(crl_on: Case) -> None:
    urls = (UrlAttempt(LDAP_CDP, "invalid", None, "the signature does not verify", 0, 3),
            UrlAttempt(HTTP_CDP, "expired", None, "nextUpdate 2026-01-01 00:00 has passed", 0, 3),
            UrlAttempt(PUBLISHED, "not_yet_valid", None, "thisUpdate is in the future", 0, 3))
    obs = tls_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)), offline(crl_on, *urls))
    got = judge(crl_on, obs)
    assert (f"The CDP URLs, in order: {LDAP_CDP}: invalid (the signature does not verify); "
            f"{HTTP_CDP}: expired (nextUpdate 2026-01-01 00:00 has passed); {PUBLISHED}: "
            "not_yet_valid (thisUpdate is in the future).") in got.explanation
    unusable = "The CRL reached the client but cannot be used"
    assert got.fix == (
        f"{unusable}: it has expired. Republish it on the CA (`certutil -crl`; start the CA "
        "first if it is switched off) and fix whatever stopped the scheduled publication. "
        f"{unusable}: its thisUpdate is in the "
        "future. Correct the clock of the CA, then republish the CRL (`certutil -crl`). "
        f"{unusable}: its signature is not the issuing CA's. Have the CA sign its CRL with its "
        "own key, from a CA certificate whose key usage includes cRLSign (reissue the CA "
        f"certificate if it lacks it). {TRADE_OFF} Until it is fixed, clearing {SITE_BOX} "
        "(and /NoCRLCheck at install) lets clients connect without the check.")
    # one URL unreachable besides, the other serving an expired CRL: the CA stopped
    # publishing (reaching the other URL would bring the same expired CRL)
    unreachable = tls_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)),
                              offline(crl_on, urls[1], failed(PUBLISHED, "refused")))
    assert judge(crl_on, unreachable).fix.startswith(
        "The CRL that reached the client has expired: start the CA if it is switched off")
    # unreachable besides a CRL with a bad signature: where the CRL is published is the
    # problem again
    bad_signature = tls_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)),
                                offline(crl_on, urls[0], failed(PUBLISHED, "refused")))
    assert judge(crl_on, bad_signature).fix.startswith("Publish the CRL over HTTP at a URL")


def test_tls_offline_for_a_missing_delta_crl_is_no_disagreement(crl_on: Case) -> None:
    base = UrlAttempt(HTTP_CDP, "verified", None, "a good CRL", 0, 5)
    verdict = offline(crl_on, base, delta_missing=True)
    assert verdict.openssl_visible == set()
    obs = tls_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)), verdict,
                      OpenSslJudgement(0, "ok", "ok", True))
    got = judge(crl_on, obs, "CRYPT_E_REVOCATION_OFFLINE")
    assert got.met and got.judges_agree is True and got.notes == []
    assert got.explanation.endswith(
        f"The CDP URLs, in order: {HTTP_CDP}: verified (a good CRL). The base CRL is good, but "
        "it announces a delta CRL (Freshest CRL) and no delta URL gave a good one, so "
        "revocation is unknown: CryptoAPI says 'offline' and WinHTTP refuses the connection. "
        "OpenSSL does not require delta CRLs, so its acceptance here is a known difference, "
        "not a disagreement.")
    assert got.fix == (
        "Publish the delta CRL where clients reach it (the same place as the base CRL, e.g. "
        "over HTTP on the internet), or stop publishing delta CRLs so the base CRL stops "
        "announcing them.")


def test_tls_judges_disagree_is_a_note(crl_on: Case) -> None:
    obs = tls_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)),
                      offline(crl_on, failed(HTTP_CDP, "refused")),
                      OpenSslJudgement(0, "ok", "ok", False))
    got = judge(crl_on, obs)
    assert got.judges_agree is False
    assert got.notes == ["JUDGES DISAGREE: OpenSSL says 0 (ok), the Windows engine says "
                         "CRYPT_E_REVOCATION_OFFLINE; the step's outcome is the Windows "
                         "engine's"]


def _revoked(case: Case, subject: str) -> ChainVerdict:
    good = UrlAttempt(HTTP_CDP, "verified", None, "a good CRL", 0, 9)
    element = ElementStatus(subject, case.ca, 1, "revoked", codes.CRYPT_E_REVOKED, (good,))
    problem = ChainProblem(codes.CRYPT_E_REVOKED, WinHttpFlag.CERT_REVOKED, "revoked",
                           f"{subject} is on its issuer's CRL")
    return ChainVerdict(case.chain, (problem,), RevocationResult(True, (element,)))


def test_tls_revoked_mp_certificate_and_revoked_issuing_ca(crl_on: Case) -> None:
    obs = tls_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)),
                      _revoked(crl_on, crl_on.leaf),
                      OpenSslJudgement(23, "certificate revoked", "revoked", True))
    got = judge(crl_on, obs, "CRYPT_E_REVOKED")
    assert got.met and got.error is codes.CRYPT_E_REVOKED and got.flags == 4
    assert got.explanation == (
        f"{PC01} connected to https://{INTERNET}/ and CryptoAPI rejected the MP's certificate: "
        "CRYPT_E_REVOKED (0x80092010). WinHTTP fails the request with "
        "ERROR_WINHTTP_SECURE_FAILURE (12175), flags CERT_REVOKED (0x4). The CA's CRL lists "
        "the MP certificate's serial number: it is revoked.")
    assert got.fix == ("Issue a new server certificate to the MP and bind it to the HTTPS "
                       "site in IIS.")
    assert "CERT_REVOKED" in got.identifiers and "0X80092010" in got.identifiers
    ca = tls_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)),
                     _revoked(crl_on, crl_on.ca))
    got = judge(crl_on, ca)
    assert got.explanation.endswith(
        f"The issuing CA {crl_on.ca} is on its parent's CRL: every certificate under it fails, "
        "the MP's included.")
    assert got.fix == ("Have the root issue a new certificate to the issuing CA (or a new "
                       "issuing CA), publish it, and reissue the MP certificate under it.")
    assert_twin(crl_on, got, succeeded(crl_on, ca))


def _name_problem(case: Case) -> ChainVerdict:
    return ChainVerdict(case.chain, (ChainProblem(
        codes.CERT_E_CN_NO_MATCH, WinHttpFlag.CERT_CN_INVALID, "name",
        f"the client asked for {INTERNET}, the certificate names {INTRA}"),))


def test_tls_name_mismatch_and_the_public_ca_plan(crl_on: Case, one_name_plan: Case) -> None:
    obs = tls_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)), _name_problem(crl_on),
                      OpenSslJudgement(62, "hostname mismatch", "name", True))
    got = judge(crl_on, obs, "CERT_E_CN_NO_MATCH")
    assert got.met and got.flags == 0x10 and got.revocation is not None
    assert got.revocation.status == "not_checked"
    assert got.explanation == (
        f"{PC01} connected to https://{INTERNET}/ and CryptoAPI rejected the MP's certificate: "
        "CERT_E_CN_NO_MATCH (0x800B010F). WinHTTP fails the request with "
        "ERROR_WINHTTP_SECURE_FAILURE (12175), flags CERT_CN_INVALID (0x10). Name mismatch: "
        f"the client asked for {INTERNET}, the certificate names {INTRA}. An MP that serves "
        "both intranet and internet clients needs both FQDNs in its certificate (seed §2).")
    assert got.fix == f"Reissue the MP certificate with both FQDNs in the SAN: {INTRA} and " \
        f"{INTERNET}."
    plan = judge(one_name_plan, obs)
    public_intra = one_name_plan.scenario.mp.intranet_fqdn  # a public CA names no .local host
    assert plan.fix == (
        f"Reissue the MP certificate with both FQDNs in the SAN: {public_intra} and {INTERNET}. "
        "Fabrikam Public CA's plan allows only 1 name per certificate: buy a plan that allows "
        "two (a multi-domain/SAN certificate).")
    assert_twin(crl_on, got, succeeded(crl_on, obs))


def test_tls_untrusted_expired_wrong_usage_together(crl_on: Case) -> None:
    problems = (
        ChainProblem(codes.CERT_E_EXPIRED, WinHttpFlag.CERT_DATE_INVALID, "date", "expired"),
        ChainProblem(codes.CERT_E_WRONG_USAGE, WinHttpFlag.CERT_WRONG_USAGE, "usage", "no EKU"),
        ChainProblem(codes.CERT_E_UNTRUSTEDROOT, WinHttpFlag.INVALID_CA, "trust",
                     "the chain ends in CN=Elsewhere, which is not in the machine's Trusted "
                     "Root Certification Authorities store"),
    )
    obs = tls_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)),
                      ChainVerdict(crl_on.chain, problems))
    got = judge(crl_on, obs, "CERT_E_UNTRUSTEDROOT")
    # the chain error CryptoAPI reports first, every flag lowest bit first
    assert got.met and got.error is codes.CERT_E_UNTRUSTEDROOT and got.flags == 0x68
    assert got.explanation == (
        f"{PC01} connected to https://{INTERNET}/ and CryptoAPI rejected the MP's certificate: "
        "CERT_E_UNTRUSTEDROOT (0x800B0109). WinHTTP fails the request with "
        "ERROR_WINHTTP_SECURE_FAILURE (12175), flags INVALID_CA, CERT_DATE_INVALID, "
        "CERT_WRONG_USAGE (0x68). Untrusted chain: the chain ends in CN=Elsewhere, which is "
        "not in the machine's Trusted Root Certification Authorities store. The certificate "
        "is outside its validity period. The certificate lacks the Server Authentication EKU.")
    # the reissue advice given once for both date and usage
    assert got.fix == (
        "Import the issuing root CA into the client's Trusted Root Certification Authorities "
        "store (Computer account). Reissue the MP certificate from a Web Server template "
        "(Server Authentication EKU, valid dates).")
    assert {"CERT_E_EXPIRED", "CERT_E_WRONG_USAGE", "CERT_DATE_INVALID", "CERT_WRONG_USAGE",
            "INVALID_CA"} <= set(got.identifiers)
    assert judge(crl_on, obs, "CERT_E_EXPIRED").met


# -- HTTP ------------------------------------------------------------------------------------

def _http_failure(obs: StepObservation, url: str, status: int, reason: str,
                  method: str = "CCM_POST") -> StepObservation:
    obs.requests.append(request(url, method=method, status=status, reason=reason,
                                openssl=(OpenSslJudgement(0, "ok", "ok", True)
                                         if url.startswith("https") else None),
                                verdict=None))
    obs.fail(FailureKind.HTTP, codes.CCM_E_BAD_HTTP_STATUS_CODE,
             f"the MP answered HTTP {status} {reason}")
    if method == "CCM_POST":
        obs.extra_identifiers.update(codes.CCM_TRANSIENT_ERROR.identifiers())
    return obs


def test_http_403_4_smsmp_without_https(crl_on: Case) -> None:
    why = f"SMSMP={INTRA}, written without https://, so HTTP"
    obs = _http_failure(observe(Action.REGISTER, Zone.INTRANET, mp=MpChoice(INTRA, False, why)),
                        f"http://{INTRA}{REQUEST}", 403, "Forbidden")
    answer = MpAnswer(403, 4, 5, "the MP accepts HTTPS only", 0)
    got = judge(crl_on, obs, "403.4", answer)
    assert got.met and got.error is codes.CCM_E_BAD_HTTP_STATUS_CODE
    assert (got.http_status, got.winhttp_error, got.flags) == ("403.4", None, 0)
    assert {"403", "403.4", "CCM_E_BAD_HTTP_STATUS_CODE", "0X87D0027E", "0X87D00231"} <= \
        set(got.identifiers)
    assert got.explanation == (
        f"{PC01_INSIDE} reached http://{INTRA}{REQUEST}, but the MP answered HTTP 403.4 SSL "
        "required. The client logs CCM_E_BAD_HTTP_STATUS_CODE (0x87D0027E) with the status, "
        f"and the post fails with 0x87D00231. The client used HTTP because it chose {INTRA} "
        f"through {why}; the MP accepts HTTPS only, so IIS requires SSL. (How a client "
        "recovers from this entry is not documented; the lab models that it does not.)")
    assert got.fix == (f"Write SMSMP=https://{INTRA} on the ccmsetup command line: an MP that "
                       "accepts HTTPS only must be prefixed with https:// (seed §3).")
    twin_obs = succeeded(crl_on, dataclasses.replace(obs, mp=MpChoice(INTRA, True,
                                                                      SMSMP_HTTPS)))
    twin = judge(crl_on, twin_obs, "ok", MpAnswer(200, 0, 0, "registered"))
    assert twin.met and twin.http_status == "200" and twin.fix == ""
    assert twin.explanation == (
        f"{PC01_INSIDE} register step succeeded against {INTRA} ({SMSMP_HTTPS}). CRL checking "
        f"is on, decided by {SITE_SOURCE}.")


@pytest.mark.parametrize(("substatus", "text", "fix"), [
    (7, "Client certificate required", "Give the client a Client Authentication certificate "
                                        "and install with /UsePKICert."),
    (13, "Client certificate revoked", "If IIS could not reach the client certificate's CDP, "
                                       "let the MP reach it (firewall, proxy or DNS from the "
                                       "MP's zone, reference §10), or publish that CRL where "
                                       "the MP can reach it and enrol the client certificates "
                                       "again with that URL in their CDP. If the certificate is "
                                       "revoked, enrol a new one."),
    (16, "Client certificate is untrusted or invalid", "Issue the client certificate from a CA "
                                                       "in the site's trusted root list, or add "
                                                       "its root to the list."),
    (17, "Client certificate has expired or is not yet valid",
     "Renew the client certificate, and check the computer's clock: the client selects its "
     "certificate by its own time, IIS judges it by the MP's."),
    (99, "Forbidden", "See the MP's IIS log."),
])
def test_http_403_client_certificate_answers(crl_on: Case, substatus: int, text: str,
                                             fix: str) -> None:
    obs = _http_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)),
                        f"https://{INTERNET}{MPLIST}", 403, "Forbidden", method="GET")
    answer = MpAnswer(403, substatus, 0, "IIS judged the client certificate", 2000)
    got = judge(crl_on, obs, f"403.{substatus}", answer)
    assert got.met and got.http_status == f"403.{substatus}" and got.simulated_ms == 2000
    assert got.explanation == (
        f"{PC01} reached https://{INTERNET}{MPLIST}, but the MP answered HTTP 403.{substatus} "
        f"{text}. The client logs CCM_E_BAD_HTTP_STATUS_CODE (0x87D0027E) with the status. "
        "IIS on the MP: IIS judged the client certificate.")
    assert got.fix == fix


def test_http_500_without_an_iis_record(crl_on: Case) -> None:
    obs = _http_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)),
                        f"https://{INTERNET}{REQUEST}", 500, "Internal Server Error")
    got = judge(crl_on, obs, "500")
    assert got.met and got.http_status == "500"
    assert got.explanation == (
        f"{PC01} reached https://{INTERNET}{REQUEST}, but the MP answered HTTP 500 Internal "
        "Server Error. The client logs CCM_E_BAD_HTTP_STATUS_CODE (0x87D0027E) with the "
        "status, and the post fails with 0x87D00231.")
    assert got.fix == "Check the MP's IIS log and MP logs for the cause."
    assert_twin(crl_on, got, succeeded(crl_on, obs))


def test_http_browser_without_a_computer_certificate(crl_on: Case) -> None:
    obs = _http_failure(observe(Action.BROWSE_MPLIST, Zone.INTRANET,
                                mp=MpChoice(INTRA, True, "the MP name the admin types into "
                                                         "the browser")),
                        f"https://{INTRA}{MPLIST}", 403, "Forbidden", method="GET")
    obs.error = None  # a browser shows the status, not a ConfigMgr code
    got = judge(crl_on, obs, "403.7", MpAnswer(403, 7, 5, "no client certificate was sent"))
    assert got.met and got.error is None and got.identifiers == ["403", "403.7"]
    assert got.explanation == (
        f"{PC01_INSIDE}: the browser reached https://{INTRA}{MPLIST}, but the MP answered HTTP "
        "403.7 Client certificate required. The browser presents no computer certificate (it "
        "uses the user's store), and an HTTPS-only MP requires one. IIS on the MP: no client "
        "certificate was sent.")
    assert got.fix == (
        "Test the MP from the client agent's side instead (its logs), or import a client "
        "certificate into the user's store for the browser test; this answer alone does not "
        "mean the MP is broken.")
    twin = assert_twin(crl_on, got, succeeded(crl_on, obs))
    assert twin.explanation.startswith(f"{PC01_INSIDE} browse-mplist step succeeded against "
                                       f"{INTRA} (the MP name the admin types")


# -- connect ---------------------------------------------------------------------------------

def _connect_failure(obs: StepObservation, url: str, error: Code, detail: str
                     ) -> StepObservation:
    obs.requests.append(request(url, connect_error=error, connect_detail=detail))
    obs.fail(FailureKind.CONNECT, error, detail)
    return obs


def test_connect_roaming_without_vpn(crl_on: Case) -> None:
    detail = f"{INTRA} does not resolve from the internet zone (the MP's intranet FQDN)"
    mp = MpChoice(INTRA, True, "the MP list learned at the last site refresh")
    obs = _connect_failure(observe(connection="intranet", mp=mp), f"https://{INTRA}{REQUEST}",
                           codes.ERROR_WINHTTP_NAME_NOT_RESOLVED, detail)
    got = judge(crl_on, obs, "ERROR_WINHTTP_NAME_NOT_RESOLVED")
    assert got.met and got.error is codes.ERROR_WINHTTP_NAME_NOT_RESOLVED
    assert got.winhttp_error is codes.ERROR_WINHTTP_NAME_NOT_RESOLVED and got.flags == 0
    assert {"12007", "0X80072EE7"} <= set(got.identifiers)
    assert got.explanation == (f"PC01 (domain-joined, on the internet, which it treats as "
                               f"intranet) could not reach {INTRA}: {detail}.")
    assert got.fix == "Connect through the VPN, or configure an internet-facing MP."
    assert got.connection == "intranet"
    assert_twin(crl_on, got, succeeded(crl_on, observe(Action.POLICY, Zone.VPN, mp=mp)))


def test_connect_host_name_with_a_scheme_and_the_plain_case(crl_on: Case) -> None:
    host = f"https://{INTERNET}"
    mp = MpChoice(host, True, f"CCMHOSTNAME={host}")
    obs = _connect_failure(observe(mp=mp), f"https://{host}{REQUEST}",
                           codes.ERROR_WINHTTP_NAME_NOT_RESOLVED, "https does not resolve")
    got = judge(crl_on, obs)
    assert got.explanation == (f"{PC01} could not reach {host}: https does not resolve. The "
                               f"host name {host!r} still carries a scheme.")
    assert got.fix == ("Give CCMHOSTNAME the internet FQDN alone, without https:// (for example "
                       f"CCMHOSTNAME={INTERNET}).")
    plain = _connect_failure(observe(mp=MpChoice(INTERNET, True, LEARNED)),
                             f"https://{INTERNET}{REQUEST}", codes.ERROR_WINHTTP_CANNOT_CONNECT,
                             f"nothing listens on {INTERNET}:443")
    got = judge(crl_on, plain, "ERROR_WINHTTP_CANNOT_CONNECT")
    assert got.met and got.error_message == f"nothing listens on {INTERNET}:443"
    assert got.fix == "Check the host name and that the client is in a zone that can reach it."
    assert_twin(crl_on, got, succeeded(crl_on, plain))


def test_connect_to_an_mp_whose_certificate_the_ca_refused(one_name_plan: Case) -> None:
    refusal = one_name_plan.pki.mp_refusal
    assert refusal is not None and one_name_plan.pki.mp is None
    assert refusal.message.startswith("Fabrikam Public CA refused the request: its plan allows "
                                      "1 subject name per certificate")
    obs = _connect_failure(observe(Action.INSTALL, Zone.INTRANET,
                                   mp=MpChoice(INTRA, True, SMSMP_HTTPS)),
                           f"https://{INTRA}{MPLIST}", codes.ERROR_WINHTTP_CANNOT_CONNECT,
                           f"nothing listens on {INTRA}:443")
    got = judge(one_name_plan, obs, "LAB_CA_PLAN_NAME_LIMIT")
    assert got.met and got.error is codes.LAB_CA_PLAN_NAME_LIMIT
    assert got.error_message == refusal.message
    assert got.winhttp_error is codes.ERROR_WINHTTP_CANNOT_CONNECT
    assert got.explanation == (
        f"The MP has no server certificate: {refusal.message}. Without a certificate IIS has no "
        "HTTPS binding, so nothing answers on port 443 and PC01 cannot connect. A certificate "
        "with only one of the MP's names cannot serve both intranet and internet clients "
        "(seed §2).")
    assert got.fix == ("Choose a plan of Fabrikam Public CA that allows 2 subject names (a "
                       "multi-domain/SAN certificate), or use the enterprise CA with an HTTP "
                       "CDP published to the internet.")
    # a name that does not resolve is not the refused certificate's fault
    unresolved = _connect_failure(observe(Action.INSTALL, Zone.INTRANET,
                                          mp=MpChoice(INTRA, True, SMSMP_HTTPS)),
                                  f"https://{INTRA}{MPLIST}",
                                  codes.ERROR_WINHTTP_NAME_NOT_RESOLVED, "no such name")
    got = judge(one_name_plan, unresolved)
    assert got.error is codes.LAB_CA_PLAN_NAME_LIMIT  # the step's code: the plan refused
    assert got.explanation == f"{PC01_INSIDE} could not reach {INTRA}: no such name."


# -- the client's own refusals ---------------------------------------------------------------

def _refused(kind: FailureKind, error: Code | None, detail: str, *,
             action: Action = Action.POLICY, location: Zone = Zone.INTERNET,
             notes: tuple[str, ...] = (), mp: MpChoice | None = None) -> StepObservation:
    obs = observe(action, location, notes=notes, mp=mp)
    obs.fail(kind, error, detail)
    return obs


def test_install_from_the_internet(crl_on: Case) -> None:
    note = (f"The ccmsetup bootstrap could not reach {INTRA}: {INTRA} does not resolve from the "
            "internet zone")
    obs = _refused(FailureKind.INSTALL_FROM_INTERNET, codes.LAB_INSTALL_FROM_INTERNET,
                   "the machine is on the internet without a VPN", action=Action.INSTALL,
                   notes=(note,))
    got = judge(crl_on, obs, "LAB_INSTALL_FROM_INTERNET")
    assert got.met and got.identifiers == ["LAB_INSTALL_FROM_INTERNET"]
    assert got.explanation == (
        f"{PC01}: ConfigMgr does not support installing or upgrading a client directly from "
        "the internet or from an internet-based MP; a new IBCM client needs a connection to "
        f"the intranet (seed §3, supplement 1). {note}.")
    assert got.notes == []  # told in the explanation already
    assert got.fix == ("Install while on the intranet, or connect through the VPN first. For an "
                       "internet-only client, install from media with /source:<path> and "
                       "CCMALWAYSINF=1.")
    twin_obs = succeeded(crl_on, observe(Action.INSTALL, Zone.VPN,
                                         mp=MpChoice(INTRA, True, SMSMP_HTTPS)))
    twin_obs.notes.append(f"The client agent was installed from the MP {INTRA}")
    twin = assert_twin(crl_on, got, twin_obs)
    assert twin.explanation == (
        f"PC01 (domain-joined, on the vpn) install step succeeded against {INTRA} "
        f"({SMSMP_HTTPS}). CRL checking is on, decided by {SITE_SOURCE}. The client agent was "
        f"installed from the MP {INTRA}.")
    assert twin.notes == []


def test_no_internet_mp(crl_on: Case) -> None:
    detail = ("the client is on the internet but knows no internet-facing MP: it was installed "
              "without CCMHOSTNAME")
    obs = _refused(FailureKind.NO_INTERNET_MP, codes.LAB_NO_INTERNET_MP, detail)
    got = judge(crl_on, obs, "LAB_NO_INTERNET_MP")
    assert got.met and got.target is None and got.mp is None
    assert got.explanation == f"{PC01}: {detail} (seed §3, supplement 2)."
    assert got.fix == (f"Add CCMHOSTNAME={INTERNET} to the ccmsetup command line, or let the "
                       "client run a site refresh on the intranet or VPN first.")
    no_name = dataclasses.replace(crl_on.scenario,
                                  mp=dataclasses.replace(crl_on.scenario.mp, internet_fqdn=None))
    assert judge(crl_on, obs, scenario=no_name).fix.startswith(
        "Add CCMHOSTNAME=<internet FQDN> to the ccmsetup command line")
    assert_twin(crl_on, got, succeeded(crl_on, observe(mp=MpChoice(INTERNET, True, LEARNED))))


def test_no_mp(crl_on: Case) -> None:
    detail = "no SMSMP was given and the machine cannot look the MP up in AD"
    obs = _refused(FailureKind.NO_MP, codes.CCM_MP_NOT_FOUND, detail, location=Zone.INTRANET)
    got = judge(crl_on, obs, "0x87D00269")
    assert got.met and got.error is codes.CCM_MP_NOT_FOUND
    assert got.explanation == (f"{PC01_INSIDE}: {detail} (0x87D00269 'Required management "
                               "point not found').")
    assert got.fix == "Give SMSMP=https://<MP intranet FQDN> on the ccmsetup command line."
    assert_twin(crl_on, got, succeeded(crl_on, observe(
        location=Zone.INTRANET, mp=MpChoice(INTRA, True, SMSMP_HTTPS))))


def test_no_pki(crl_on: Case) -> None:
    detail = (f"{INTRA} accepts HTTPS only, and without /UsePKICert the client filters out "
              "every HTTPS management point")
    obs = _refused(FailureKind.NO_PKI, codes.CCM_MP_NOT_FOUND, detail, action=Action.INSTALL,
                   location=Zone.INTRANET, mp=MpChoice(INTRA, True, SMSMP_HTTPS))
    got = judge(crl_on, obs, "0x87D00269")
    assert got.met and got.mp == INTRA
    assert got.explanation == (
        f"{PC01_INSIDE}: {detail}. The client has no PKI certificate to use (ccmsetup was run "
        "without /UsePKICert), so it has no usable MP (0x87D00269).")
    assert got.fix == "Add /UsePKICert to the ccmsetup command line (seed §3)."
    assert_twin(crl_on, got, succeeded(crl_on, obs))


@pytest.mark.parametrize(("error", "fix"), [
    (codes.CCM_SEVERAL_CERTS, "Add CCMFIRSTCERT=1 (the longest-valid certificate wins), or "
                              "narrow CCMCERTSEL so that one certificate matches."),
    (codes.CCM_NO_MATCHING_CERT, "Correct CCMCERTSEL (Subject: is exact and case-sensitive, "
                                 "SubjectStr: is a case-insensitive part), or enrol a valid "
                                 "certificate whose subject or SAN names the computer; check "
                                 "the computer's clock."),
    (codes.CCM_EMPTY_CERT_STORE, "Enrol a Client Authentication certificate (Workstation "
                                 "Authentication template) into the computer's Personal store "
                                 "before installing the client."),
])
def test_no_client_certificate(crl_on: Case, error: Code, fix: str) -> None:
    detail = "the selection found nothing usable"
    obs = _refused(FailureKind.NO_CLIENT_CERT, error,
                   f"{detail}, so the client cannot use PKI and filters out HTTPS management "
                   "points", mp=MpChoice(INTERNET, True, LEARNED))
    obs.extra_identifiers.update(codes.CCM_E_NO_CLIENT_PKI_CERT.identifiers())
    got = judge(crl_on, obs, "CCM_E_NO_CLIENT_PKI_CERT")
    assert got.met and got.error is error and error.name.upper() in got.identifiers
    assert got.explanation == (
        f"{PC01}: certificate selection failed: {obs.detail} ({error.hex} {error.message}). "
        "CCMHTTP logs Text=CCM_E_NO_CLIENT_PKI_CERT with Code=0: no connection is even "
        "attempted.")
    assert got.fix == fix
    assert_twin(crl_on, got, succeeded(crl_on, obs))


def test_not_installed_and_not_registered(crl_on: Case) -> None:
    detail = "no earlier install step succeeded, so there is no client agent"
    obs = _refused(FailureKind.NOT_INSTALLED, codes.LAB_CLIENT_NOT_INSTALLED, detail)
    got = judge(crl_on, obs, "LAB_CLIENT_NOT_INSTALLED")
    assert got.met and got.explanation == f"{PC01}: {detail}."
    assert got.fix == "Fix the install step first; later steps depend on it."
    assert_twin(crl_on, got, succeeded(crl_on, observe(mp=MpChoice(INTERNET, True, LEARNED))))
    detail = "the client is not registered with the site"
    obs = _refused(FailureKind.NOT_REGISTERED, codes.LAB_CLIENT_NOT_REGISTERED, detail,
                   action=Action.INVENTORY)
    got = judge(crl_on, obs, "LAB_CLIENT_NOT_REGISTERED")
    assert got.met and got.explanation == f"{PC01}: {detail}."
    assert got.fix == ("Fix the register step first; policy and inventory need a registered "
                       "client.")
    assert got.name == "4-inventory@internet"
    assert_twin(crl_on, got, succeeded(crl_on, observe(Action.INVENTORY,
                                                       mp=MpChoice(INTERNET, True, LEARNED))))


# -- every kind, once more, in one table -------------------------------------------------------

KIND_ERRORS: dict[FailureKind, Callable[[], tuple[Code | None, str]]] = {
    FailureKind.TLS: lambda: (codes.CRYPT_E_REVOCATION_OFFLINE, "CRYPT_E_REVOCATION_OFFLINE"),
    FailureKind.HTTP: lambda: (codes.CCM_E_BAD_HTTP_STATUS_CODE, "CCM_E_BAD_HTTP_STATUS_CODE"),
    FailureKind.CONNECT: lambda: (codes.ERROR_WINHTTP_TIMEOUT, "ERROR_WINHTTP_TIMEOUT"),
    FailureKind.INSTALL_FROM_INTERNET: lambda: (codes.LAB_INSTALL_FROM_INTERNET,
                                                "LAB_INSTALL_FROM_INTERNET"),
    FailureKind.NO_INTERNET_MP: lambda: (codes.LAB_NO_INTERNET_MP, "LAB_NO_INTERNET_MP"),
    FailureKind.NO_MP: lambda: (codes.CCM_MP_NOT_FOUND, "0X87D00269"),
    FailureKind.NO_PKI: lambda: (codes.CCM_MP_NOT_FOUND, "0X87D00269"),
    FailureKind.NO_CLIENT_CERT: lambda: (codes.CCM_NO_MATCHING_CERT, "0X87D00281"),
    FailureKind.NOT_INSTALLED: lambda: (codes.LAB_CLIENT_NOT_INSTALLED,
                                        "LAB_CLIENT_NOT_INSTALLED"),
    FailureKind.NOT_REGISTERED: lambda: (codes.LAB_CLIENT_NOT_REGISTERED,
                                         "LAB_CLIENT_NOT_REGISTERED"),
}


def test_the_table_covers_every_kind() -> None:
    assert set(KIND_ERRORS) == set(FailureKind)


@pytest.mark.parametrize("kind", list(FailureKind), ids=lambda k: k.value)
def test_every_kind_explains_with_a_fix_and_its_twin_passes(crl_on: Case,
                                                           kind: FailureKind) -> None:
    error, ident = KIND_ERRORS[kind]()
    mp = MpChoice(INTERNET, True, LEARNED)
    obs = observe(mp=mp)
    if kind is FailureKind.TLS:
        tls_failure(obs, offline(crl_on, failed(HTTP_CDP, "refused")))
    elif kind is FailureKind.HTTP:
        _http_failure(obs, f"https://{INTERNET}{REQUEST}", 404, "Not Found")
    elif kind is FailureKind.CONNECT:
        _connect_failure(obs, f"https://{INTERNET}{REQUEST}", codes.ERROR_WINHTTP_TIMEOUT,
                         "the connection timed out")
    else:
        obs.fail(kind, error, "it went wrong")
    got = judge(crl_on, obs, ident)
    assert got.outcome == "fail" and got.met and got.error is error
    assert got.explanation.startswith(PC01) and got.explanation.endswith(".")
    assert got.fix and got.fix.endswith(".")
    text, fixes = HANDLERS[kind](Explainer(crl_on.scenario, crl_on.pki, crl_on.client, obs,
                                           None))
    assert (got.explanation, got.fix) == (text, render_fixes(fixes))
    assert_twin(crl_on, got, succeeded(crl_on, obs))


def test_a_failure_without_a_kind_is_told_as_it_was_seen(crl_on: Case) -> None:
    obs = observe()
    obs.outcome, obs.detail = "fail", "something nobody classified"
    got = judge(crl_on, obs)
    assert (got.explanation, got.fix) == (f"{PC01}: something nobody classified.", "")


# -- the MP's answer and expectations -------------------------------------------------------------

def _record(status: int, substatus: int = 0, ms: int = 0) -> MpRecord:
    return MpRecord(Clock().now(), "s1", "GET", MPLIST, "", 443, "127.0.0.1", "ccmsetup",
                    INTRA, status, substatus, 0, f"answered {status}.{substatus}", ms)


def test_mp_answer_is_the_first_refusal_else_the_last_answer() -> None:
    assert mp_answer([]) is None
    ok = mp_answer([_record(200, ms=5), _record(200, ms=7)])
    assert ok == MpAnswer(200, 0, 0, "answered 200.0", 12) and ok.label == "200"
    refused = mp_answer([_record(200), _record(403, 13, 2000), _record(403, 7, 1)])
    assert refused is not None and refused.label == "403.13"
    assert refused.simulated_ms == 2001 and refused.detail == "answered 403.13"
    assert MpAnswer(500, 0, 0, "").label == "500"


def test_expectation_met() -> None:
    ids = {"CRYPT_E_REVOKED", "0X80092010"}
    assert expectation_met(None, "fail", ids) and expectation_met(None, "ok", set())
    assert expectation_met("ok", "ok", set()) and not expectation_met("ok", "fail", ids)
    assert expectation_met("fail", "fail", ids) and not expectation_met("fail", "ok", set())
    assert expectation_met(" crypt_e_revoked ", "fail", ids)
    assert expectation_met("0x80092010", "fail", ids)
    assert not expectation_met("CRYPT_E_REVOKED", "ok", ids)
    assert not expectation_met("CERT_E_EXPIRED", "fail", ids)
