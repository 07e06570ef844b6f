"""``certutil -verify -urlfetch`` shaped traces (lab/report/certutil.py) of real lab runs."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes

from lab import codes
from lab.cli import main
from lab.errors import UsageError
from lab.report.certutil import TRACE_FILE, render_step_trace, render_trace, write_traces
from lab.results.observations import ElementStatus, RevocationResult, UrlAttempt
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import StepResult
from lab.run import run_loaded
from lab.scenario.loader import load_all, load_scenario_text

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
LDAP_CDP = "seed4-internet-client-ldap-cdp-crl-on"
HTTP_CDP = "seed4-internet-client-http-cdp-published"
INTRA = "IBCM-Intra.contoso.local"
LDAP_URL_START = "ldap:///CN=Contoso-CA,CN=ca01,CN=CDP,CN=Public%20Key%20Services,"
HTTP_URL = "http://ca01.contoso.local/CertEnroll/Contoso-CA.crl"
PUBLIC_HTTP_URL = "http://pki.contoso.com/CertEnroll/Contoso-CA.crl"
OFFLINE_TAIL = (
    "ERROR: Verifying leaf certificate revocation status returned The revocation function was "
    "unable to check revocation because the revocation server was offline. 0x80092013 "
    "(-2146885613 CRYPT_E_REVOCATION_OFFLINE)\n"
    "CertUtil: The revocation function was unable to check revocation because the revocation "
    "server was offline.\n")
SUCCESS_TAIL = ("Leaf certificate revocation check passed\n"
                "CertUtil: -verify command completed successfully.\n")


def scenario_text(title: str, *, revoked: bool = False, cdp: str = "", extra_ca: str = "",
                  expect: str = "ok") -> str:
    return f"""
[scenario]
title = "{title}"

[site]
check_crl = true

[[ca]]
name = "Contoso-CA"
kind = "enterprise"
host = "ca01.contoso.local"
domain = "contoso.local"
{cdp}
{extra_ca}

[mp]
intranet_fqdn = "{INTRA}"

[mp.cert]
issuer = "Contoso-CA"
revoked = {str(revoked).lower()}

[[client]]
name = "PC02"
ccmsetup = "ccmsetup.exe /UsePKICert SMSSITECODE=P01 SMSMP=https://{INTRA}"

[[client.step]]
action = "install"
location = "intranet"
expect = "{expect}"
"""


REVOKED = scenario_text("MP certificate revoked", revoked=True, expect="CRYPT_E_REVOKED")
# Two HTTP CDPs; the renderer test below replaces the engine's result with a stale first CRL.
TWO_HTTP_CDPS = scenario_text(
    "Two HTTP CDPs", cdp=f'cdp = ["http", "{PUBLIC_HTTP_URL}"]')


HTTP_CDP_INTRANET = "http-cdp-intranet"


def _on_the_intranet() -> str:
    """HTTP_CDP's client with its last step (inventory) on the intranet instead."""
    text = (SCENARIOS / f"{HTTP_CDP}.toml").read_text(encoding="utf-8")
    assert text.count('location = "internet"') == 1
    return text.replace('location = "internet"', 'location = "intranet"')


@pytest.fixture(scope="module")
def run(certs_dir: Path) -> RunResult:
    scenarios = load_all([SCENARIOS / f"{LDAP_CDP}.toml", SCENARIOS / f"{HTTP_CDP}.toml"])
    scenarios += [load_scenario_text(REVOKED, name="mp-cert-revoked"),
                  load_scenario_text(TWO_HTTP_CDPS, name="two-http-cdps"),
                  load_scenario_text(_on_the_intranet(), name=HTTP_CDP_INTRANET)]
    return asyncio.run(run_loaded(scenarios, certs=certs_dir))


@pytest.fixture(scope="module")
def results(run: RunResult) -> dict[str, ScenarioResult]:
    return {r.scenario.name: r for r in run.scenarios}


def step(results: dict[str, ScenarioResult], scenario: str, number: int) -> StepResult:
    """The scenario's step ``number`` (ccmexec's automatic steps left out)."""
    return [s for s in results[scenario].steps if not s.automatic][number - 1]


def in_order(text: str, *parts: str) -> bool:
    """Do ``parts`` occur in ``text`` in this order?"""
    at = 0
    for part in parts:
        found = text.find(part, at)
        if found < 0:
            return False
        at = found + len(part)
    return True


# -- the seed §4 internet step: both CDP URLs fail -----------------------------------------

def test_ldap_then_http_cdp_both_fail_on_the_internet(
        results: dict[str, ScenarioResult]) -> None:
    internet = step(results, LDAP_CDP, 2)
    assert internet.location == "internet" and internet.revocation is not None
    text = render_step_trace(internet)
    first = text.splitlines()[0]
    assert "not captured product output" in first
    assert "PC01" in first and "step 2 inventory" in first
    assert "https://IBCM-Internet.public.com/ccm_system/request" in first
    assert "on the internet" in first
    assert "ChainFlags = CERT_CHAIN_REVOCATION_CHECK_CHAIN_EXCLUDE_ROOT (0x40000000)" in text
    assert text.count('Failed "CDP" Time: 15') == 2
    assert in_order(
        text,
        "CertContext[0][0]:", "  Issuer: CN=Contoso-CA, DC=contoso, DC=local", "  NotBefore: ",
        "  NotAfter: ", f"  Subject: CN={INTRA}", "  Serial: ",
        f"  SubjectAltName: DNS Name={INTRA}, DNS Name=IBCM-Internet.public.com", "  Cert: ",
        "---------------- Certificate AIA ----------------",
        "---------------- Certificate CDP ----------------",
        'Failed "CDP" Time: 15',
        "    Error retrieving URL: The server is not operational. 0x8007203a (WIN32: 8250)",
        f"    [0.0] {LDAP_URL_START}",
        'Failed "CDP" Time: 15',
        "    Error retrieving URL: The server name or address could not be resolved "
        "0x80072ee7 (WIN32: 12007)",
        f"    [0.1] {HTTP_URL}",
        "CertContext[0][1]:",
        "(root: excluded from revocation checking, "
        "CERT_CHAIN_REVOCATION_CHECK_CHAIN_EXCLUDE_ROOT)")
    # the thumbprint is the SHA-1 of the certificate, lower-case hex as certutil prints it
    leaf = internet.chain[0]
    thumb = leaf.fingerprint(hashes.SHA1()).hex()
    assert f"  Cert: {thumb}\n" in text
    assert text.endswith(OFFLINE_TAIL)
    assert "completed successfully" not in text
    # AIA URLs are listed from the certificate with the lab's note, never with a status
    aia = text.split("Certificate AIA")[1].split("Certificate CDP")[0]
    assert "Lab: AIA retrieval is not traced" in aia
    assert "    [0] ldap:///CN=Contoso-CA,CN=AIA," in aia
    assert "    [1] http://ca01.contoso.local/CertEnroll/ca01.contoso.local_Contoso-CA.crt" in aia
    assert "Verified" not in aia and "Failed" not in aia


def test_http_cdp_published_to_the_internet_passes(results: dict[str, ScenarioResult]) -> None:
    text = render_step_trace(step(results, HTTP_CDP, 2))
    assert in_order(text, 'Failed "CDP" Time: 15', f"    [0.0] {LDAP_URL_START}",
                    'Verified "Base CRL (', f"    [0.1] {PUBLIC_HTTP_URL}")
    assert 'Verified "Base CRL (01)" Time: 0' in text
    assert "    CRL 01:\n    Issuer: CN=Contoso-CA, DC=contoso, DC=local\n" in text
    assert text.endswith(SUCCESS_TAIL)
    assert "ERROR:" not in text


def test_intranet_step_stops_at_the_first_good_crl(results: dict[str, ScenarioResult]) -> None:
    intranet = step(results, HTTP_CDP_INTRANET, 2)
    assert intranet.location == "intranet"
    text = render_step_trace(intranet)
    assert in_order(text, 'Verified "Base CRL (01)" Time: 0', f"    [0.0] {LDAP_URL_START}",
                    "Lab: Not retrieved (CryptoAPI stops at the first good CRL",
                    f"    [0.1] {PUBLIC_HTTP_URL}")
    assert "Failed" not in text
    assert text.endswith(SUCCESS_TAIL)


def test_revoked_mp_certificate(results: dict[str, ScenarioResult]) -> None:
    revoked = step(results, "mp-cert-revoked", 1)
    assert revoked.error is codes.CRYPT_E_REVOKED and revoked.met
    text = render_step_trace(revoked)
    assert 'Verified "Base CRL (' in text
    assert text.endswith(
        "ERROR: Verifying leaf certificate revocation status returned The certificate or "
        "signature has been revoked 0x80092010 (-2146885616 CRYPT_E_REVOKED)\n"
        "CertUtil: The certificate or signature has been revoked\n")


def test_expired_crl_on_the_first_cdp(results: dict[str, ScenarioResult]) -> None:
    # The engine's own result is replaced (the renderer is under test, not the engine): the
    # first HTTP CDP serves a stale CRL, the second does not resolve.
    real = step(results, "two-http-cdps", 1)
    assert len(real.chain) == 2
    leaf = real.chain[0]
    stale = UrlAttempt(HTTP_URL, "expired", None, "nextUpdate 2024-01-01 00:00 has passed", 0,
                       crl_number=3)
    unreachable = UrlAttempt(PUBLIC_HTTP_URL, "failed", codes.ERROR_WINHTTP_NAME_NOT_RESOLVED,
                             "pki.contoso.com does not resolve", 15_000)
    element = ElementStatus(leaf.subject.rfc4514_string(), real.chain[1].subject.rfc4514_string(),
                            leaf.serial_number, "offline", codes.CRYPT_E_REVOCATION_OFFLINE,
                            (stale, unreachable))
    fake = dataclasses.replace(real, outcome="fail", error=codes.CRYPT_E_REVOCATION_OFFLINE,
                               revocation=RevocationResult(True, (element,)))
    text = render_step_trace(fake)
    assert in_order(text, 'Expired "Base CRL (03)" Time: 0', f"    [0.0] {HTTP_URL}",
                    'Failed "CDP" Time: 15', "0x80072ee7 (WIN32: 12007)",
                    f"    [0.1] {PUBLIC_HTTP_URL}")
    assert text.endswith(OFFLINE_TAIL)


def test_expired_crl_from_the_engine(certs_dir: Path) -> None:
    """The same through the engine: the CA's CRL is past its nextUpdate on every CDP."""
    scenario = load_scenario_text(
        scenario_text("Stale CRL", extra_ca='crl_this_update = "-8d"\ncrl_next_update = "-1d"',
                      expect="CRYPT_E_REVOCATION_OFFLINE"), name="stale-crl")
    only = asyncio.run(run_loaded([scenario], certs=certs_dir)).scenarios[0].steps[0]
    assert only.met
    text = render_step_trace(only)
    assert in_order(text, 'Expired "Base CRL (', f"    [0.0] {LDAP_URL_START}",
                    'Expired "Base CRL (', f"    [0.1] {HTTP_URL}")
    assert text.endswith(OFFLINE_TAIL)


def test_two_tier_pki(certs_dir: Path) -> None:
    """Every element but the root has its CDP section; the root is excluded."""
    scenario = load_scenario_text(scenario_text(
        "Two tiers", extra_ca="""parent = "Contoso-Root"

[[ca]]
name = "Contoso-Root"
kind = "enterprise"
host = "root.contoso.local"
domain = "contoso.local"
cdp = ["http"]
"""), name="two-tier")
    only = asyncio.run(run_loaded([scenario], certs=certs_dir)).scenarios[0].steps[0]
    assert len(only.chain) == 3
    text = render_step_trace(only)
    assert in_order(text, "CertContext[0][0]:", f"  Subject: CN={INTRA}", 'Verified "Base CRL (',
                    "CertContext[0][1]:", "  Subject: CN=Contoso-CA, DC=contoso, DC=local",
                    "Certificate CDP", 'Verified "Base CRL (01)" Time: 0',
                    "    [0.0] http://root.contoso.local/CertEnroll/Contoso-Root.crl",
                    "CertContext[0][2]:", "  Subject: CN=Contoso-Root, DC=contoso, DC=local",
                    "(root: excluded from revocation checking")
    assert text.count("---------------- Certificate CDP ----------------") == 2
    assert text.endswith(SUCCESS_TAIL)


def test_delta_crls_in_the_base_crl_cdp_section(results: dict[str, ScenarioResult]) -> None:
    real = step(results, "two-http-cdps", 1)
    leaf = real.chain[0]
    base = UrlAttempt(HTTP_URL, "verified", None, "a good CRL", 0, crl_number=0x67E)
    delta = UrlAttempt("http://ca01.contoso.local/CertEnroll/Contoso-CA+.crl", "verified", None,
                       "delta CRL: a good CRL", 0, crl_number=0x680)
    element = ElementStatus(leaf.subject.rfc4514_string(), real.chain[1].subject.rfc4514_string(),
                            leaf.serial_number, "good", None,
                            (base, UrlAttempt(PUBLIC_HTTP_URL, "not_tried", None, "", 0)),
                            delta_urls=(delta,))
    text = render_step_trace(dataclasses.replace(real, revocation=RevocationResult(True,
                                                                                   (element,))))
    assert in_order(text, "---------------- Certificate CDP ----------------",
                    'Verified "Base CRL (067e)" Time: 0', f"    [0.0] {HTTP_URL}",
                    "Lab: Not retrieved", f"    [0.1] {PUBLIC_HTTP_URL}",
                    "---------------- Base CRL CDP ----------------",
                    'OK "Delta CRL (0680)" Time: 0',
                    "    [0.0] http://ca01.contoso.local/CertEnroll/Contoso-CA+.crl",
                    "---------------- Certificate OCSP ----------------",
                    '  No URLs "None" Time: 0', "  --------------------------------")
    assert text.endswith(SUCCESS_TAIL)


def test_no_cdp_extension(results: dict[str, ScenarioResult]) -> None:
    real = step(results, "two-http-cdps", 1)
    leaf = real.chain[0]
    element = ElementStatus(leaf.subject.rfc4514_string(), real.chain[1].subject.rfc4514_string(),
                            leaf.serial_number, "no_check", codes.CRYPT_E_NO_REVOCATION_CHECK, ())
    fake = dataclasses.replace(real, revocation=RevocationResult(True, (element,)))
    text = render_step_trace(fake)
    cdp = text.split("Certificate CDP ----------------\n")[1]
    assert cdp.startswith('  No URLs "None" Time: 0\n')
    assert text.endswith(
        "ERROR: Verifying leaf certificate revocation status returned The called function "
        "wasn't able to do a revocation check on the certificate or signature. 0x80092012 "
        "(-2146885614 CRYPT_E_NO_REVOCATION_CHECK)\n"
        "CertUtil: The called function wasn't able to do a revocation check on the certificate "
        "or signature.\n")


def test_a_non_revocation_failure_is_named_after_the_tail(
        results: dict[str, ScenarioResult]) -> None:
    real = step(results, HTTP_CDP_INTRANET, 2)
    fake = dataclasses.replace(real, outcome="fail", error=codes.CERT_E_CN_NO_MATCH)
    text = render_step_trace(fake)
    assert text.endswith(SUCCESS_TAIL + "Lab: the step failed with CERT_E_CN_NO_MATCH 0x800B010F, "
                         "which is not a revocation result (see the step's report)\n")


# -- a whole run -----------------------------------------------------------------------------

def test_render_trace_shows_every_step(run: RunResult) -> None:
    text = render_trace(run)
    headings = [line for line in text.splitlines() if line.startswith("== ")]
    assert len(headings) == sum(len(r.steps) for r in run.scenarios)
    assert headings[0] == f"== {LDAP_CDP} / PC01 / step 1 install @ intranet"
    assert headings[1] == (f"== {LDAP_CDP} / PC01 / step 1a register (automatic, ccmexec "
                           "start-up) @ intranet")
    assert headings[3] == f"== {LDAP_CDP} / PC01 / step 2 inventory @ internet"
    first = text.split("\n== ")[0]
    assert "CRL checking was off" in first and "/NoCRLCheck" in first
    assert in_order(text, f"== {LDAP_CDP} / PC01 / step 1b location (automatic, ccmexec "
                    "start-up) @ intranet",
                    f"== {LDAP_CDP} / PC01 / step 2 inventory @ internet", OFFLINE_TAIL,
                    f"== {HTTP_CDP} / PC01 / step 1 install @ intranet")


def test_write_traces(run: RunResult, tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = write_traces(run, out)
    assert paths == [out / r.scenario.name / c.name / TRACE_FILE
                     for r in run.scenarios for c in r.clients]
    ldap = (out / LDAP_CDP / "PC01" / TRACE_FILE).read_text(encoding="utf-8")
    assert ldap.startswith(f"== {LDAP_CDP} / PC01 / step 1 install @ intranet\n")
    assert OFFLINE_TAIL in ldap
    assert "mp-cert-revoked" not in ldap
    # atomic writes leave no temporary files behind; a second run replaces the files
    assert write_traces(run, out) == paths
    assert sorted(p.name for p in (out / LDAP_CDP / "PC01").iterdir()) == [TRACE_FILE]


def test_write_traces_to_an_unusable_folder(run: RunResult, tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(UsageError, match="cannot write"):
        write_traces(run, blocked)


def test_cli_run_trace(certs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(SCENARIOS / f"{LDAP_CDP}.toml"), "--trace",
                 "--certs", str(certs_dir)])
    out = capsys.readouterr().out
    assert code == 0
    assert in_order(out, "expectations met",
                    f"== {LDAP_CDP} / PC01 / step 2 inventory @ internet",
                    'Failed "CDP" Time: 15', 'Failed "CDP" Time: 15', OFFLINE_TAIL)
