"""The failure catalogue: every bundled ``server-``, ``client-``, ``dmz-``, ``timing-`` and
``internet-only-`` scenario, step by step.

One lab run over the whole catalogue (servers started once, keys from the session cache);
each test then reads the concrete results of the failing client and of its passing twin:
the error's name and hex value, WinHTTP's flags, the MP's HTTP status with IIS substatus,
OpenSSL's judgement, the CDP URLs tried with their simulated time-outs, and the texts the
reader is shown. Each failing case is checked next to its passing twin.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from labtest import INTERNET, INTRA, LDAP_CDP, PKI_CDP, SCENARIOS

from lab.codes import flag_names
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import StepResult
from lab.run import run_loaded
from lab.scenario.loader import load_all, load_scenario_text

PREFIXES = ("server-", "client-", "dmz-", "timing-", "internet-only-")
CATALOGUE = sorted(p for p in SCENARIOS.glob("*.toml") if p.name.startswith(PREFIXES))

# client-cert-selection with a register step added for PC03, so that the MP's
# MP_RegistrationManager.log names the certificate CCMFIRSTCERT=1 made the client present.
SELECTION_REGISTER = "client-cert-selection+register"

ISSUING_CA_CDP = ("ldap:///CN=Contoso%20Issuing%20CA,CN=ca01,CN=CDP,CN=Public%20Key%20Services,"
                  "CN=Services,CN=Configuration,DC=contoso,DC=local?certificateRevocationList?"
                  "base?objectClass=cRLDistributionPoint")
ISSUING_CA_HTTP = "http://ca01.contoso.local/CertEnroll/Contoso%20Issuing%20CA.crl"
ROOT_CA_CDP = "http://pki.contoso.com/CertEnroll/Contoso%20Root%20CA.crl"
CONTOSO_HTTP = "http://ca01.contoso.local/CertEnroll/Contoso-CA.crl"
DELTA_LDAP = LDAP_CDP.replace("?certificateRevocationList?", "?deltaRevocationList?")
# Delta CRLs are on by default: next to every LDAP and HTTP CDP location, <CaName>+.crl.
CONTOSO_HTTP_DELTA = "http://ca01.contoso.local/CertEnroll/Contoso-CA+.crl"
PKI_DELTA = PKI_CDP.replace(".crl", "+.crl")


def _selection_with_register() -> str:
    text = (SCENARIOS / "client-cert-selection.toml").read_text()
    start = text.index('name = "PC03"')
    end = text.index("[[client]]", start)
    step = '[[client.step]]\naction = "register"\nlocation = "intranet"\nexpect = "ok"\n\n'
    return text[:end] + step + text[end:]


@pytest.fixture(scope="module")
def catalogue(certs_dir: Path) -> dict[str, ScenarioResult]:
    scenarios = [*load_all(CATALOGUE),
                 load_scenario_text(_selection_with_register(), name=SELECTION_REGISTER)]
    result: RunResult = asyncio.run(run_loaded(scenarios, certs=certs_dir))
    return {r.scenario.name: r for r in result.scenarios}


# ------------------------------------------------------------------------------------------
# helpers: read one client's steps, and the shapes every failure of a kind shares
# ------------------------------------------------------------------------------------------


def steps(result: ScenarioResult, client: str) -> list[StepResult]:
    """The client's own steps (ccmexec's automatic ones after an install left out)."""
    (found,) = [c for c in result.clients if c.name == client]
    return found.scenario_steps


def only(result: ScenarioResult, client: str) -> StepResult:
    (step,) = steps(result, client)
    return step


def texts(step: StepResult) -> list[str]:
    return [line.text for line in step.log]


def assert_tls_failure(step: StepResult, name: str, hex_code: str, flag: str,
                       flag_value: int) -> None:
    """CryptoAPI refused the MP's certificate: WinHTTP 12175 with exactly one flag."""
    assert step.outcome == "fail" and step.met
    assert step.error is not None
    assert (step.error.name, step.error.hex, step.error.kind) == (name, hex_code, "cryptoapi")
    assert step.winhttp_error is not None
    assert (step.winhttp_error.name, step.winhttp_error.value, step.winhttp_error.hex) == (
        "ERROR_WINHTTP_SECURE_FAILURE", 12175, "0x80072F8F")
    assert step.flags == flag_value
    assert flag_names(step.flags) == [flag]
    assert step.http_status is None  # no HTTP answer: the handshake was refused
    assert {name, hex_code.upper(), flag, f"WINHTTP_CALLBACK_STATUS_FLAG_{flag}",
            "ERROR_WINHTTP_SECURE_FAILURE", "12175", "0X80072F8F"} <= set(step.identifiers)
    assert f"{name} ({hex_code})" in step.explanation
    assert f"flags {flag} (0x{flag_value:x})" in step.explanation
    lines = texts(step)
    assert any(t.endswith("Code=12175, Text=ERROR_WINHTTP_SECURE_FAILURE") for t in lines)
    assert f"[CCMHTTP]            : lpvStatusInformation is 0x{flag_value:x}" in lines
    assert f"[CCMHTTP]            : WINHTTP_CALLBACK_STATUS_FLAG_{flag} is set" in lines
    assert step.fix != ""


def assert_iis_refusal(result: ScenarioResult, step: StepResult, label: str,
                       win32_status: int, *, agent: bool = True) -> None:
    """The MP's IIS refused the client certificate: 403.x, the client sees 0x87D0027E
    (and, when the ConfigMgr agent made the request, logs the status)."""
    assert step.outcome == "fail" and step.met
    assert step.http_status == label
    assert step.winhttp_error is None and step.flags == 0
    if agent:
        assert step.error is not None
        assert (step.error.name, step.error.hex) == ("CCM_E_BAD_HTTP_STATUS_CODE", "0x87D0027E")
        assert {"403", label, "CCM_E_BAD_HTTP_STATUS_CODE", "0X87D0027E"} <= set(step.identifiers)
        assert "[CCMHTTP] ERROR INFO: StatusCode=403 StatusText=Forbidden" in texts(step)
    else:
        # a browser shows the HTTP status, never a ConfigMgr code, and writes no client log
        assert step.error is None
        assert {"403", label} <= set(step.identifiers)
        assert "CCM_E_BAD_HTTP_STATUS_CODE" not in step.identifiers
        assert texts(step) == []
    # the MP side: the IIS log line with the substatus and sc-win32-status
    refused = [r for r in result.mp_records if r.status != 200]
    status, sub = label.split(".")
    assert refused != []
    assert {(r.status, r.substatus, r.win32_status) for r in refused} == {
        (int(status), int(sub), win32_status)}
    # the client's own TLS check of the MP passed: OpenSSL saw nothing wrong either
    assert step.openssl is not None
    assert (step.openssl.verify_code, step.openssl.agrees) == (0, True)


def assert_selection_failure(step: StepResult, hex_code: str, message: str) -> None:
    """Certificate selection failed: no connection at all, CCM_E_NO_CLIENT_PKI_CERT logged."""
    assert step.outcome == "fail" and step.met
    assert step.error is not None
    assert (step.error.name, step.error.hex, step.error.message) == (hex_code, hex_code, message)
    assert step.target is None and step.http_status is None and step.openssl is None
    assert step.flags == 0 and step.winhttp_error is None
    assert {hex_code.upper(), "CCM_E_NO_CLIENT_PKI_CERT"} <= set(step.identifiers)
    assert f"({hex_code} {message})" in step.explanation
    # the URL of the request the install step makes first; 192 is no quoted value: marked
    assert (f"Lab: [CCMHTTP] ERROR: URL=https://{INTRA}/SMS_MP/.sms_aut?MPLIST, Port=0, "
            "Options=192, Code=0, Text=CCM_E_NO_CLIENT_PKI_CERT") in texts(step)


def assert_passes(step: StepResult, *, crl_check: bool = False) -> None:
    assert step.outcome == "ok" and step.met
    assert step.error is None and step.winhttp_error is None and step.flags == 0
    assert step.identifiers == []
    assert step.crl_check is crl_check
    if step.target is not None:
        assert step.http_status == "200"
        assert step.openssl is not None
        assert (step.openssl.verify_code, step.openssl.agrees) == (0, True)


def assert_offline_with_twin(result: ScenarioResult, openssl_code: int, openssl_message: str,
                             url_result: str, detail: str) -> None:
    """PC01 (no /NoCRLCheck) gets CRYPT_E_REVOCATION_OFFLINE although both CDP URLs answered;
    PC02 (/NoCRLCheck) installs."""
    failing = only(result, "PC01")
    assert_tls_failure(failing, "CRYPT_E_REVOCATION_OFFLINE", "0x80092013", "CERT_REV_FAILED", 0x1)
    assert "CRYPT_E_REVOKED" not in failing.identifiers  # offline, never "revoked"
    assert (failing.crl_check, failing.options) == (True, 224)
    assert failing.crl_source == "ccmsetup without /NoCRLCheck (bootstrap: CRL checking on)"
    assert failing.openssl is not None
    assert (failing.openssl.verify_code, failing.openssl.verify_message,
            failing.openssl.agrees) == (openssl_code, openssl_message, True)
    rev = failing.revocation
    assert rev is not None and rev.checked and rev.status == "offline"
    assert [(u.url, u.result, u.simulated_ms, u.error) for u in rev.urls] == [
        (LDAP_CDP, url_result, 0, None), (CONTOSO_HTTP, url_result, 0, None)]
    assert all(detail in u.detail for u in rev.urls)
    assert failing.simulated_ms == 0  # both URLs answered: no time-out
    assert "No URL gave a good CRL" in failing.explanation
    assert "/NoCRLCheck" in failing.fix
    twin = only(result, "PC02")
    assert_passes(twin)
    assert twin.options == 192
    assert twin.revocation is not None and not twin.revocation.checked


# ------------------------------------------------------------------------------------------
# the whole catalogue
# ------------------------------------------------------------------------------------------

TESTED = {
    "server-ca-without-crlsign", "server-crl-expired", "server-crl-not-yet-valid",
    "server-crl-wrong-key", "server-delta-crl-unreachable", "server-delta-crl-double-escaping",
    "server-delta-crl-double-escaping-allowed", "server-mp-cert-expired",
    "server-mp-cert-expired-clock-behind",
    "server-mp-cert-no-server-auth", "server-mp-cert-renewed", "server-mp-cert-revoked",
    "server-mp-cert-wildcard", "server-mp-cert-wildcard-two-labels",
    "server-mp-cert-untrusted-root", "server-two-tier", "server-two-tier-issuing-ca-revoked",
    "server-two-tier-root-crl-internal",
    "client-cert-expired-clock-behind", "client-cert-revoked", "client-cert-selection",
    "client-cert-untrusted-issuer", "client-no-certificate", "dmz-mp-cannot-check-client-certs",
    "timing-all-cdps-unreachable", "timing-ldap-first-then-http", "internet-only-client",
}


def test_every_catalogue_scenario_has_its_test_here() -> None:
    assert {p.stem for p in CATALOGUE} == TESTED


def test_every_catalogue_expectation_is_met(catalogue: dict[str, ScenarioResult]) -> None:
    assert set(catalogue) == TESTED | {SELECTION_REGISTER}
    missed = [f"{name}: {s.client} {s.name} expected {s.expected}, got {s.outcome} "
              f"{s.identifiers[:3]}" for name, r in catalogue.items() for s in r.steps
              if not s.met]
    assert missed == []
    # a failing client next to a passing one in the same file, except where the twin is
    # its own file; and every failing step names what it expects (not just "fail")
    own_file_twins = {"server-mp-cert-expired": "fail", "server-mp-cert-no-server-auth": "fail",
                      "server-mp-cert-renewed": "ok", "server-two-tier": "ok",
                      "server-mp-cert-wildcard": "ok",
                      "timing-ldap-first-then-http": "ok",
                      "server-delta-crl-double-escaping-allowed": "ok"}
    for name, r in catalogue.items():
        own = [s for s in r.steps if not s.automatic]  # ccmexec's have no expect
        outcomes = {s.outcome for s in own}
        assert outcomes == ({own_file_twins[name]} if name in own_file_twins
                            else {"ok", "fail"}), name
        for s in own:
            if s.outcome == "fail":
                assert s.expected not in (None, "fail", "ok"), (name, s.name)


def test_openssl_never_disagrees_in_the_catalogue(catalogue: dict[str, ScenarioResult]) -> None:
    judged = [s for r in catalogue.values() for s in r.steps if s.openssl is not None]
    assert len(judged) >= 40
    assert [(s.client, s.name) for s in judged if s.openssl.agrees is False] == []  # type: ignore[union-attr]
    assert [n for r in catalogue.values() for s in r.steps for n in s.notes
            if "JUDGES DISAGREE" in n] == []
    # OpenSSL itself refused the MP in these cases (and agreed with the Windows engine)
    refused_by_openssl = {s.openssl.verify_code for s in judged if s.openssl.verify_code}  # type: ignore[union-attr]
    assert {3, 8, 10, 11, 12, 23, 26, 35} <= refused_by_openssl
    assert refused_by_openssl & {19, 20} != set()  # the untrusted root


# ------------------------------------------------------------------------------------------
# server side: the MP's certificate and its CA's CRLs
# ------------------------------------------------------------------------------------------


def test_server_mp_cert_revoked(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["server-mp-cert-revoked"]
    failing = only(r, "PC01")
    assert_tls_failure(failing, "CRYPT_E_REVOKED", "0x80092010", "CERT_REVOKED", 0x4)
    assert (failing.crl_check, failing.options) == (True, 224)
    assert failing.openssl is not None
    assert (failing.openssl.verify_code, failing.openssl.verify_message,
            failing.openssl.agrees) == (23, "certificate revoked", True)
    rev = failing.revocation
    assert rev is not None and rev.status == "revoked"
    (element,) = rev.elements
    assert (element.subject, element.status) == (f"CN={INTRA}", "revoked")
    assert element.serial == failing.chain[0].serial_number
    # the first good CRL (from the directory) wins; the HTTP URL is never tried; then the
    # delta CRL the base CRL names, the same way
    assert [(u.url, u.result, u.simulated_ms, u.crl) for u in rev.urls] == [
        (LDAP_CDP, "verified", 0, "base"), (CONTOSO_HTTP, "not_tried", 0, "base"),
        (DELTA_LDAP, "verified", 0, "delta"), (CONTOSO_HTTP_DELTA, "not_tried", 0, "delta")]
    assert "lists the MP certificate's serial number: it is revoked" in failing.explanation
    assert failing.fix.startswith("Issue a new server certificate to the MP")
    twin = only(r, "PC02")
    assert_passes(twin)
    assert twin.revocation is not None and not twin.revocation.checked
    assert twin.chain[0].serial_number == failing.chain[0].serial_number  # same certificate


def test_server_crl_expired(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["server-crl-expired"]
    assert_offline_with_twin(r, 12, "CRL has expired", "expired", "has passed")
    rev = only(r, "PC01").revocation
    assert rev is not None
    assert all(u.detail.startswith("nextUpdate ") for u in rev.urls)
    (next_update,) = {c.next_update_utc for c in rev.crls}  # one CRL, at both URLs
    now = dt.datetime.now(dt.UTC)
    assert next_update is not None
    assert now - dt.timedelta(hours=2) < next_update < now - dt.timedelta(minutes=30)


def test_server_crl_not_yet_valid(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["server-crl-not-yet-valid"]
    assert_offline_with_twin(r, 11, "CRL is not yet valid", "not_yet_valid", "is in the future")
    rev = only(r, "PC01").revocation
    assert rev is not None
    assert all(u.detail.startswith("thisUpdate ") for u in rev.urls)
    (this_update,) = {c.last_update_utc for c in rev.crls}  # one CRL, at both URLs
    now = dt.datetime.now(dt.UTC)
    assert now + dt.timedelta(hours=23) < this_update < now + dt.timedelta(hours=25)


def test_server_crl_wrong_key(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["server-crl-wrong-key"]
    assert_offline_with_twin(r, 8, "CRL signature failure", "invalid",
                             "the CRL's signature does not verify with the issuer's key")


def test_server_ca_without_crlsign(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["server-ca-without-crlsign"]
    assert_offline_with_twin(r, 35, "key usage does not include CRL signing", "invalid",
                             "the issuer's key usage does not include CRL signing")
    failing = only(r, "PC01")
    ca = failing.chain[1]
    assert ca.subject.rfc4514_string() == "CN=Contoso-CA,DC=contoso,DC=local"
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.crl_sign is False


@pytest.mark.parametrize("name", ["server-crl-expired", "server-crl-not-yet-valid",
                                  "server-crl-wrong-key", "server-ca-without-crlsign"])
def test_offline_fix_addresses_a_bad_crl_not_its_reachability(
        catalogue: dict[str, ScenarioResult], name: str) -> None:
    failing = only(catalogue[name], "PC01")
    assert failing.revocation is not None
    assert all(u.result != "failed" for u in failing.revocation.urls)  # every URL answered
    assert "where this client can reach it" not in failing.fix


def test_server_mp_cert_expired_and_renewed(catalogue: dict[str, ScenarioResult]) -> None:
    failing = only(catalogue["server-mp-cert-expired"], "PC01")
    assert_tls_failure(failing, "CERT_E_EXPIRED", "0x800B0101", "CERT_DATE_INVALID", 0x20)
    assert failing.openssl is not None
    assert (failing.openssl.verify_code, failing.openssl.verify_message,
            failing.openssl.agrees) == (10, "certificate has expired", True)
    # the CRL plays no part: the site does not check it and ccmsetup had /NoCRLCheck
    assert failing.crl_check is False
    assert failing.revocation is not None and not failing.revocation.checked
    assert "The certificate is outside its validity period." in failing.explanation
    now = dt.datetime.now(dt.UTC)
    expired = failing.chain[0].not_valid_after_utc
    assert now - dt.timedelta(days=2) < expired < now - dt.timedelta(hours=12)
    twin = only(catalogue["server-mp-cert-renewed"], "PC01")
    assert_passes(twin)
    assert twin.chain[0].not_valid_after_utc > now + dt.timedelta(days=300)


def test_server_mp_cert_expired_clock_behind(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["server-mp-cert-expired-clock-behind"]
    # PC01's clock is 2 h late: by its own time the MP's certificate (expired 1 h ago) is
    # still valid, and both judges, the Windows engine and OpenSSL, judge at that time
    skewed = only(r, "PC01")
    assert_passes(skewed)
    assert skewed.openssl is not None
    assert (skewed.openssl.verify_code, skewed.openssl.verify_message,
            skewed.openssl.agrees) == (0, "ok", True)
    assert skewed.notes == [] and "12175" not in "\n".join(texts(skewed))
    expired = skewed.chain[0].not_valid_after_utc
    served = [rec for rec in r.mp_records if rec.status == 200]
    assert served and all(expired < rec.time < expired + dt.timedelta(hours=1, minutes=5)
                          for rec in served)
    # PC02, on the right time, gets CERT_E_EXPIRED, and OpenSSL agrees (verify code 10)
    right_time = only(r, "PC02")
    assert_tls_failure(right_time, "CERT_E_EXPIRED", "0x800B0101", "CERT_DATE_INVALID", 0x20)
    assert right_time.openssl is not None
    assert (right_time.openssl.verify_code, right_time.openssl.verify_message,
            right_time.openssl.agrees) == (10, "certificate has expired", True)
    assert "The certificate is outside its validity period." in right_time.explanation
    assert [n for n in right_time.notes if "JUDGES DISAGREE" in n] == []


def test_server_mp_cert_wildcard_covers_one_label_only(
        catalogue: dict[str, ScenarioResult]) -> None:
    # *.public.com, internet FQDN IBCM-Internet.ibcm.public.com: two labels below, no match
    failing = steps(catalogue["server-mp-cert-wildcard-two-labels"], "PC01")
    assert [s.outcome for s in failing[:4]] == ["ok"] * 4
    roamed = failing[4]
    assert_tls_failure(roamed, "CERT_E_CN_NO_MATCH", "0x800B010F", "CERT_CN_INVALID", 0x10)
    assert roamed.error_message == ("the client asked for IBCM-Internet.ibcm.public.com, the "
                                    "certificate names IBCM-Intra.contoso.local, *.public.com")
    assert roamed.openssl is not None
    assert (roamed.openssl.verify_code, roamed.openssl.agrees) == (62, True)
    # twin: the internet FQDN one label below the wildcard, both judges accept
    twin = steps(catalogue["server-mp-cert-wildcard"], "PC01")
    assert [s.outcome for s in twin] == ["ok"] * 5
    assert twin[4].target is not None and "IBCM-Internet.public.com" in twin[4].target
    assert twin[4].openssl is not None
    assert (twin[4].openssl.verify_code, twin[4].openssl.agrees) == (0, True)


def test_server_mp_cert_no_server_auth(catalogue: dict[str, ScenarioResult]) -> None:
    failing = only(catalogue["server-mp-cert-no-server-auth"], "PC01")
    assert_tls_failure(failing, "CERT_E_WRONG_USAGE", "0x800B0110", "CERT_WRONG_USAGE", 0x40)
    assert failing.openssl is not None
    assert (failing.openssl.verify_code, failing.openssl.verify_message,
            failing.openssl.agrees) == (26, "unsuitable certificate purpose", True)
    assert "The certificate lacks the Server Authentication EKU." in failing.explanation
    assert "Web Server template" in failing.fix
    eku = failing.chain[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    twin = only(catalogue["server-mp-cert-renewed"], "PC01")
    assert_passes(twin)
    twin_eku = twin.chain[0].extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(twin_eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_server_mp_cert_untrusted_root(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["server-mp-cert-untrusted-root"]
    failing = only(r, "PC01")
    assert_tls_failure(failing, "CERT_E_UNTRUSTEDROOT", "0x800B0109", "INVALID_CA", 0x8)
    assert failing.openssl is not None and failing.openssl.agrees is True
    assert (failing.openssl.verify_code, failing.openssl.verify_message) in {
        (19, "self-signed certificate in certificate chain"),
        (20, "unable to get local issuer certificate")}
    assert ("the chain ends in CN=Litware-CA,DC=contoso,DC=local, which is not in the machine's "
            "Trusted Root Certification Authorities store") in failing.explanation
    assert "Trusted Root Certification Authorities" in failing.fix
    twin = only(r, "PC02")
    assert_passes(twin)
    assert twin.chain[0].issuer.rfc4514_string() == "CN=Litware-CA,DC=contoso,DC=local"
    assert twin.chain[0].serial_number == failing.chain[0].serial_number


def test_server_two_tier_issuing_ca_revoked(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["server-two-tier-issuing-ca-revoked"]
    failing = only(r, "PC01")
    assert_tls_failure(failing, "CRYPT_E_REVOKED", "0x80092010", "CERT_REVOKED", 0x4)
    assert failing.openssl is not None
    assert (failing.openssl.verify_code, failing.openssl.agrees) == (23, True)
    rev = failing.revocation
    assert rev is not None and rev.status == "revoked"
    # two elements, issuing CA first, the root never
    issuing = "CN=Contoso Issuing CA,DC=contoso,DC=local"
    root = "CN=Contoso Root CA,DC=contoso,DC=local"
    assert [(e.subject, e.issuer, e.status) for e in rev.elements] == [
        (issuing, root, "revoked"), (f"CN={INTRA}", issuing, "good")]
    assert rev.elements[0].error is not None
    assert rev.elements[0].error.name == "CRYPT_E_REVOKED"
    assert [(u.url, u.result) for u in rev.elements[0].urls] == [(ROOT_CA_CDP, "verified")]
    assert [(u.url, u.result) for u in rev.elements[1].urls] == [
        (ISSUING_CA_CDP, "verified"), (ISSUING_CA_HTTP, "not_tried")]
    assert rev.elements[0].serial == failing.chain[1].serial_number
    twin = only(r, "PC02")
    assert_passes(twin)
    assert twin.revocation is not None and not twin.revocation.checked
    # the passing twin with CRL checking on: both levels checked and good, the root excluded
    checked = only(catalogue["server-two-tier"], "PC01")
    assert_passes(checked, crl_check=True)
    assert checked.options == 224
    assert checked.revocation is not None
    assert [(e.subject, e.status) for e in checked.revocation.elements] == [
        (issuing, "good"), (f"CN={INTRA}", "good")]
    assert root not in [e.subject for e in checked.revocation.elements]


def test_two_tier_explanation_names_the_revoked_issuing_ca(
        catalogue: dict[str, ScenarioResult]) -> None:
    failing = only(catalogue["server-two-tier-issuing-ca-revoked"], "PC01")
    assert "MP certificate's serial number" not in failing.explanation
    assert "Contoso Issuing CA" in failing.explanation


def test_server_delta_crl_double_escaping(catalogue: dict[str, ScenarioResult]) -> None:
    """IIS at its default request filtering refuses the delta CRL's '+' with 404.11: the base
    CRL is good, the delta is missing, revocation is offline inside and outside; the twin,
    with double escaping allowed, gets both."""
    r = catalogue["server-delta-crl-double-escaping"]
    pc01 = steps(r, "PC01")
    assert [s.outcome for s in pc01] == ["ok", "fail", "fail"]
    for failing in pc01[1:]:
        assert_tls_failure(failing, "CRYPT_E_REVOCATION_OFFLINE", "0x80092013",
                           "CERT_REV_FAILED", 0x1)
        assert failing.openssl is not None
        assert (failing.openssl.verify_code, failing.openssl.agrees) == (0, True)
        rev = failing.revocation
        assert rev is not None and rev.status == "offline"
        (element,) = rev.elements
        assert element.delta_missing is True
        assert [(u.url, u.result, u.crl, u.http_status) for u in rev.urls] == [
            (PKI_CDP, "verified", "base", None), (PKI_DELTA, "failed", "delta", 404)]
        assert failing.simulated_ms == 0  # refused at once: no time-out
        assert "404.11" in failing.explanation
        assert failing.fix.startswith('On pki.contoso.com, select "Allow double escaping"')
    # the web server's IIS log: the base CRL 200, the delta CRL 404 with substatus 11
    assert {(rec.uri_stem, rec.status, rec.substatus) for rec in r.cdp_records
            if rec.host.startswith("pki.contoso.com")} == {
        ("/CertEnroll/Contoso-CA.crl", 200, 0), ("/CertEnroll/Contoso-CA+.crl", 404, 11)}
    twin = catalogue["server-delta-crl-double-escaping-allowed"]
    good = steps(twin, "PC01")
    assert [s.outcome for s in good] == ["ok"] * 3
    for step in good[1:]:
        assert_passes(step, crl_check=True)
        assert step.revocation is not None
        assert [(u.url, u.result, u.crl) for u in step.revocation.urls] == [
            (PKI_CDP, "verified", "base"), (PKI_DELTA, "verified", "delta")]
    assert {(rec.uri_stem, rec.status, rec.substatus) for rec in twin.cdp_records
            if rec.host.startswith("pki.contoso.com")} == {
        ("/CertEnroll/Contoso-CA.crl", 200, 0), ("/CertEnroll/Contoso-CA+.crl", 200, 0)}


def test_server_delta_crl_unreachable(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["server-delta-crl-unreachable"]
    pc01 = steps(r, "PC01")
    assert [s.outcome for s in pc01] == ["ok", "fail"]
    failing = pc01[1]
    assert failing.target == f"https://{INTERNET}/ccm_system/request"
    assert_tls_failure(failing, "CRYPT_E_REVOCATION_OFFLINE", "0x80092013", "CERT_REV_FAILED", 0x1)
    assert (failing.crl_check, failing.options) == (True, 63)
    # OpenSSL does not require delta CRLs: it accepts, and that is a known difference
    assert failing.openssl is not None
    assert (failing.openssl.verify_code, failing.openssl.verify_message,
            failing.openssl.agrees) == (0, "ok", True)
    assert not any("DISAGREE" in n.upper() for n in failing.notes)
    assert "judges disagree" not in failing.explanation.lower()
    assert "known difference, not a disagreement" in failing.explanation
    rev = failing.revocation
    assert rev is not None and rev.status == "offline"
    (element,) = rev.elements
    assert element.delta_missing is True
    assert [(u.url, u.result, u.simulated_ms) for u in element.urls] == [
        (PKI_CDP, "verified", 0)]
    assert [(u.url, u.result, u.simulated_ms) for u in element.delta_urls] == [
        (DELTA_LDAP, "failed", 15000)]
    (delta,) = element.delta_urls
    assert delta.error is not None
    assert (delta.error.name, delta.error.hex) == ("ERROR_DS_SERVER_DOWN", "0x8007203A")
    assert failing.simulated_ms == 15000
    assert f"{DELTA_LDAP} failed after 15 s: delta CRL:" in failing.explanation
    twin = steps(r, "PC02")
    assert [s.outcome for s in twin] == ["ok"] * 2
    assert_passes(twin[1], crl_check=True)
    assert twin[1].revocation is not None
    (good,) = twin[1].revocation.elements
    assert (good.status, good.delta_missing) == ("good", False)
    assert [(u.url, u.result) for u in (*good.urls, *good.delta_urls)] == [
        (PKI_CDP, "verified"), (DELTA_LDAP, "verified")]


def test_delta_crl_explanation_says_the_base_crl_was_good(
        catalogue: dict[str, ScenarioResult]) -> None:
    failing = steps(catalogue["server-delta-crl-unreachable"], "PC01")[1]
    assert "No URL gave a good CRL" not in failing.explanation
    assert "delta" in failing.fix.lower()
    assert any("known difference" in n for n in failing.notes) or \
        "known difference" in failing.explanation


def test_server_two_tier_root_crl_internal(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["server-two-tier-root-crl-internal"]
    failing = steps(r, "PC01")[-1]
    assert_tls_failure(failing, "CRYPT_E_REVOCATION_OFFLINE", "0x80092013", "CERT_REV_FAILED",
                       0x1)
    issuing = "CN=Contoso Issuing CA,DC=contoso,DC=local"
    rev = failing.revocation
    assert rev is not None
    # the issuing CA's certificate is the one whose revocation is unknown; the MP's is good
    assert [(e.subject, e.status) for e in rev.elements] == [
        (issuing, "offline"), (f"CN={INTRA}", "good")]
    assert (f"No URL gave a good CRL of Contoso Root CA, so the revocation of the issuing "
            f"CA's certificate ({issuing}) is unknown") in failing.explanation
    assert "The MP certificate's own CRL was good." in failing.explanation
    assert failing.fix.startswith(
        "Publish the CRL of Contoso Root CA over HTTP where clients on the internet reach it: "
        "a URL of the issuing CA certificate's CDP "
        "(http://rootca.contoso.local/CertEnroll/Contoso%20Root%20CA.crl) must resolve and "
        "answer from there. If no URL of that CDP can, have Contoso Root CA reissue the "
        "issuing CA certificate with a reachable HTTP URL in its CDP.")
    assert "reissue the MP certificate" not in failing.fix
    assert "Trade-off (it lowers security for every client): Clear" in failing.fix
    # the twin: the same refresh from the intranet, where the root's host answers
    for step in steps(r, "PC02")[1:]:  # installed with /NoCRLCheck
        assert_passes(step, crl_check=True)
    assert steps(r, "PC02")[-1].revocation is not None
    assert [e.status for e in steps(r, "PC02")[-1].revocation.elements] == ["good", "good"]


# ------------------------------------------------------------------------------------------
# client side: the client's certificate, judged by IIS on the MP or by certificate selection
# ------------------------------------------------------------------------------------------


def test_client_cert_revoked(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["client-cert-revoked"]
    failing = only(r, "PC01")
    assert_iis_refusal(r, failing, "403.13", 2148081680)  # CRYPT_E_REVOKED 0x80092010
    assert ("the MP answered HTTP 403.13 Client certificate revoked" in failing.explanation)
    # Workstation Authentication leaves the subject empty: the SAN names the certificate.
    assert ("IIS on the MP: (empty subject, DNS:PC01.contoso.local) is on its issuer's CRL."
            in failing.explanation)
    assert failing.fix == "Enrol a new client certificate: this one is on its CA's CRL."
    assert_passes(only(r, "PC02"))


def test_client_cert_untrusted_issuer(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["client-cert-untrusted-issuer"]
    failing = only(r, "PC01")
    assert_iis_refusal(r, failing, "403.16", 2148204809)  # CERT_E_UNTRUSTEDROOT 0x800B0109
    assert ("403.16 Client certificate is untrusted or invalid" in failing.explanation)
    assert ("(empty subject, DNS:PC01.contoso.local) does not chain to a root in the site's "
            "trusted root list" in failing.explanation)
    assert "trusted root list" in failing.fix
    issuers = {c.cert.issuer.rfc4514_string() for c in r.pki.stores["PC01"]}
    assert issuers == {"CN=Litware-CA,DC=contoso,DC=local"}
    assert_passes(only(r, "PC02"))
    assert {c.cert.issuer.rfc4514_string() for c in r.pki.stores["PC02"]} == {
        "CN=Contoso-CA,DC=contoso,DC=local"}


def test_client_no_certificate(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["client-no-certificate"]
    install, browse = steps(r, "PC01")
    assert r.pki.stores.get("PC01", ()) == ()
    assert_selection_failure(install, "0x87D00280", "Empty certificate store")
    assert install.expected == "CCM_E_NO_CLIENT_PKI_CERT"
    assert "/UsePKICert" not in install.fix and "Personal store" in install.fix
    # an admin's browser presents no certificate: IIS requires one
    assert browse.target == f"https://{INTRA}/SMS_MP/.sms_aut?MPLIST"
    assert_iis_refusal(r, browse, "403.7", 0, agent=False)
    assert "403.7 Client certificate required" in browse.explanation
    assert "the request carried no client certificate" in browse.explanation
    assert_passes(only(r, "PC02"))


def test_client_cert_selection(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["client-cert-selection"]
    none = only(r, "PC01")
    assert_selection_failure(none, "0x87D00281", "No certificate matching criteria specified")
    assert 'CCMCERTSEL="SubjectStr:Fabrikam"' in none.explanation
    several = only(r, "PC02")
    assert_selection_failure(several, "0x87D00282", "More than one certificate was found, "
                             "but 'select first cert' was not set")
    assert "2 certificates match" in several.explanation
    assert "CCMFIRSTCERT=1" in several.fix
    first = only(r, "PC03")
    assert_passes(first)
    assert "CCMFIRSTCERT=1 picks the one with the longest validity" in first.explanation
    narrowed = only(r, "PC04")
    assert_passes(narrowed)
    assert 'CCMCERTSEL="SubjectStr:contoso"' in narrowed.explanation
    # PC02 and PC03 hold the same pair: one default (1 year), one valid 700 days
    for name in ("PC02", "PC03"):
        lives = sorted(c.cert.not_valid_after_utc - c.cert.not_valid_before_utc
                       for c in r.pki.stores[name])
        assert len(lives) == 2 and lives[1] - lives[0] > dt.timedelta(days=300), name


def test_ccmfirstcert_presents_the_longest_valid_certificate(
        catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue[SELECTION_REGISTER]
    install, register = steps(r, "PC03")
    assert_passes(install)
    assert_passes(register)
    store = r.pki.stores["PC03"]
    longest = max(store, key=lambda c: c.cert.not_valid_after_utc)
    shorter = min(store, key=lambda c: c.cert.not_valid_after_utc)
    assert longest.cert.not_valid_after_utc > shorter.cert.not_valid_after_utc
    seen = [line.text for line in r.mp_log
            if line.text.startswith("Begin validation of Certificate [Thumbprint ")
            and line.text.endswith("'PC03.contoso.local'")]
    thumb = longest.cert.fingerprint(hashes.SHA1()).hex().upper()
    # ccmexec's automatic registration after the install, then the register step
    assert seen == [f"Begin validation of Certificate [Thumbprint {thumb}] issued to "
                    "'PC03.contoso.local'"] * 2
    assert shorter.cert.fingerprint(hashes.SHA1()).hex().upper() not in seen[0]
    # the twin without CCMFIRSTCERT=1 selects nothing and presents nothing
    without = only(r, "PC02")
    assert without.error is not None and without.error.hex == "0x87D00282"
    assert without.target is None


def test_client_cert_expired_clock_behind(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["client-cert-expired-clock-behind"]
    # PC01's clock is 2 h late: it still selects the certificate, IIS finds it expired
    skewed = only(r, "PC01")
    assert_iis_refusal(r, skewed, "403.17", 2148204801)  # CERT_E_EXPIRED 0x800B0101
    assert ("403.17 Client certificate has expired or is not yet valid" in skewed.explanation)
    assert ("(empty subject, DNS:PC01.contoso.local) is outside its validity period"
            in skewed.explanation)
    assert "check the computer's clock" in skewed.fix
    (refused,) = [rec for rec in r.mp_records if rec.status != 200]
    (cert,) = r.pki.stores["PC01"]
    expired = cert.cert.not_valid_after_utc
    assert refused.time - dt.timedelta(hours=2) < expired < refused.time
    # PC03 has the right time and the same kind of certificate: selection finds none
    right_time = only(r, "PC03")
    assert_selection_failure(right_time, "0x87D00281",
                             "No certificate matching criteria specified")
    assert "not time-valid by the computer's clock" in right_time.explanation
    # PC02, with a current certificate, installs
    assert_passes(only(r, "PC02"))
    assert {rec.status for rec in r.mp_records} == {200, 403}


# ------------------------------------------------------------------------------------------
# DMZ: the MP cannot check the client certificates' CRLs
# ------------------------------------------------------------------------------------------


def test_dmz_mp_cannot_check_client_certs(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["dmz-mp-cannot-check-client-certs"]
    failing = only(r, "PC01")
    # IIS reports the unreachable CRL as 403.13; win32 status says offline, not revoked
    # (the MP's record keeps what its check said; the W3C line writes 0, tests/test_logs.py)
    assert_iis_refusal(r, failing, "403.13", 2148081683)  # CRYPT_E_REVOCATION_OFFLINE
    assert ("IIS could not retrieve a CRL for (empty subject, DNS:PC01.contoso.local)"
            in failing.explanation)
    assert "although nothing is revoked" in failing.explanation
    assert (f"{LDAP_CDP}: ldap:/// needs a domain controller of the machine's own domain; "
            "the machine is not domain-joined") in failing.explanation
    assert ("ca01.contoso.local does not resolve from the dmz zone" in failing.explanation)
    assert "publish that CRL where the MP can reach it" in failing.fix
    # IIS waited out both retrieval time-outs before answering: the step took 30 s, and the
    # W3C line's time-taken says so
    assert failing.simulated_ms == 30000
    assert [r.time_taken_ms for r in r.mp_records if r.status == 403] == [30000]
    # the client's own checks were fine: no revocation checking, nothing revoked anywhere
    assert failing.crl_check is False and "CRYPT_E_REVOKED" not in failing.identifiers
    assert not any(c.revoked for s in r.pki.stores.values() for c in s)
    twin = only(r, "PC02")
    assert_passes(twin)
    # the DMZ reaches the published HTTP CDP at once, then waits out the CA's default delta
    # locations (ldap:/// and the CA host) before the delta CRL next to the base one
    assert twin.simulated_ms == 30000
    # (IIS keeps its verdict: the later requests of PC02 cost nothing)
    assert [r.time_taken_ms for r in r.mp_records if r.status == 200][:1] == [30000]
    assert not any([r.time_taken_ms for r in r.mp_records if r.status == 200][1:])
    (cert,) = r.pki.stores["PC02"]
    cdp = cert.cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for dp in cdp for n in (dp.full_name or [])] == [PKI_CDP]


# ------------------------------------------------------------------------------------------
# timing: simulated CDP retrieval time-outs
# ------------------------------------------------------------------------------------------


def test_timing_all_cdps_unreachable(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["timing-all-cdps-unreachable"]
    for client, times in (("PC01", [15000, 15000]), ("PC02", [10000, 5000])):
        pc = steps(r, client)
        assert [s.outcome for s in pc] == ["ok", "fail"], client
        failing = pc[1]
        assert_tls_failure(failing, "CRYPT_E_REVOCATION_OFFLINE", "0x80092013",
                           "CERT_REV_FAILED", 0x1)
        assert (failing.crl_check, failing.options) == (True, 63)
        assert failing.openssl is not None
        assert (failing.openssl.verify_code, failing.openssl.agrees) == (3, True)
        rev = failing.revocation
        assert rev is not None
        assert [(u.url, u.result, u.simulated_ms) for u in rev.urls] == [
            (LDAP_CDP, "failed", times[0]), (CONTOSO_HTTP, "failed", times[1])], client
        assert [u.error.name for u in rev.urls if u.error] == [
            "ERROR_DS_SERVER_DOWN", "ERROR_WINHTTP_NAME_NOT_RESOLVED"]
        assert [u.error.hex for u in rev.urls if u.error] == ["0x8007203A", "0x80072EE7"]
        assert rev.simulated_ms == failing.simulated_ms == sum(times)
        assert f"failed after {times[0] // 1000:g} s" in failing.explanation
        assert "Post to https://IBCM-Internet.public.com/ccm_system/request failed with " \
               "0x87d00231." in texts(failing)
    accumulative = steps(r, "PC02")[1].revocation
    assert accumulative is not None
    assert all(u.detail.endswith("(accumulative time-out)") for u in accumulative.urls)


def test_timing_ldap_first_then_http(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["timing-ldap-first-then-http"]
    # the base CRL, then the delta CRL it names (on by default), each after the LDAP URL's
    # time-out: 15 s + 15 s per URL, or 10 s + 5 s with the accumulative budget
    for client, (base, delta) in (("PC01", (15000, 15000)), ("PC02", (10000, 5000))):
        pc = steps(r, client)
        assert [s.outcome for s in pc] == ["ok"] * 2, client
        internet = pc[1]
        assert_passes(internet, crl_check=True)
        assert internet.options == 63
        assert internet.target == f"https://{INTERNET}/ccm_system/request"
        assert internet.revocation is not None
        assert [(u.url, u.result, u.simulated_ms, u.crl)
                for u in internet.revocation.urls] == [
            (LDAP_CDP, "failed", base, "base"), (PKI_CDP, "verified", 0, "base"),
            (DELTA_LDAP, "failed", delta, "delta"), (PKI_DELTA, "verified", 0, "delta")], client
        waited = base + delta
        assert internet.simulated_ms == waited
        assert (f"A good CRL came from {PKI_CDP} and a good delta CRL from {PKI_DELTA} after "
                f"{waited / 1000:g} s spent on unreachable URLs.") in internet.explanation


# ------------------------------------------------------------------------------------------
# internet-only clients (CCMALWAYSINF=1)
# ------------------------------------------------------------------------------------------


def test_internet_only_client(catalogue: dict[str, ScenarioResult]) -> None:
    r = catalogue["internet-only-client"]
    pc01 = steps(r, "PC01")
    assert [(s.action, s.location, s.outcome) for s in pc01] == [
        ("install", "intranet", "ok"), ("register", "intranet", "ok"),
        ("policy", "internet", "ok")]
    assert [s.connection for s in pc01] == ["internet"] * 3
    install, register, policy = pc01
    assert install.target is None  # installed from /source: media, no MP contacted
    assert "installed from the local media in /source:D:\\Client" in install.explanation
    # on the intranet, too, it talks to the internet FQDN and never to the intranet MP
    for s in (register, policy):
        assert s.target == f"https://{INTERNET}/ccm_system/request"
        assert s.mp == INTERNET
        assert_passes(s)
    assert "which it treats as internet" in register.explanation
    assert all(INTRA not in (s.target or "") and s.mp != INTRA for s in pc01)
    # PC02 has no CCMHOSTNAME: no internet MP even on the intranet; its SMSMP is never used
    pc02 = steps(r, "PC02")
    assert [s.outcome for s in pc02] == ["ok", "fail"]
    failing = pc02[1]
    assert failing.error is not None
    assert (failing.error.name, failing.error.kind, failing.error.numeric) == (
        "LAB_NO_INTERNET_MP", "lab", False)
    assert failing.identifiers == ["LAB_NO_INTERNET_MP"]
    assert (failing.connection, failing.target, failing.mp) == ("internet", None, None)
    assert f"Add CCMHOSTNAME={INTERNET}" in failing.fix
    assert all(s.mp != INTRA for s in pc02)
