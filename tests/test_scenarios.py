"""The bundled scenarios reproduce every statement of the seed document.

One lab run over every bundled scenario (servers started once, keys from the session cache);
each test then reads the results. Each failing case is checked next to its passing twin.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from labtest import SCENARIOS

from lab import codes
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import StepResult
from lab.run import run_loaded
from lab.scenario.loader import load_all, load_scenario_text


@pytest.fixture(scope="module")
def bundled(certs_dir: Path) -> dict[str, ScenarioResult]:
    result: RunResult = asyncio.run(run_loaded(load_all([SCENARIOS]), certs=certs_dir))
    return {r.scenario.name: r for r in result.scenarios}


def steps(result: ScenarioResult, client: str | None = None) -> list[StepResult]:
    """The scenario's own steps (ccmexec's automatic ones after an install left out)."""
    return [s for c in result.clients if client in (None, c.name) for s in c.scenario_steps]


def test_every_bundled_expectation_is_met(bundled: dict[str, ScenarioResult]) -> None:
    assert len(bundled) >= 16
    missed = [f"{name}: {s.client} {s.name} expected {s.expected}, got {s.outcome} "
              f"{s.identifiers[:3]}" for name, r in bundled.items() for s in steps(r) if not s.met]
    assert missed == []
    # every failing scenario states an identifier, not just "fail"
    for r in bundled.values():
        for s in steps(r):
            if s.outcome == "fail":
                assert s.expected not in (None, "fail", "ok"), (r.scenario.name, s.name)


def test_every_identifier_a_step_gave_may_be_expected(
        bundled: dict[str, ScenarioResult]) -> None:
    # The loader refuses an ``expect`` outside lab.codes.EXPECTABLE; this is the other half:
    # nothing a step actually carries falls outside it.
    given = {i for r in bundled.values() for c in r.clients for s in c.steps
             for i in s.identifiers}
    assert {"CRYPT_E_REVOCATION_OFFLINE", "CERT_REV_FAILED", "403.13", "0X87D00281",
            "LAB_NO_INTERNET_MP", "500"} <= given
    assert sorted(given - codes.EXPECTABLE) == []


def test_openssl_agrees_with_the_windows_engine_everywhere(
        bundled: dict[str, ScenarioResult]) -> None:
    judged = [s for r in bundled.values() for s in steps(r) if s.openssl is not None]
    assert len(judged) > 40
    assert [s.name for s in judged if not s.openssl or not s.openssl.agrees] == []


# -- seed §2: two names ---------------------------------------------------------------------

def test_one_name_fails_on_the_internet_only(bundled: dict[str, ScenarioResult]) -> None:
    failing = steps(bundled["seed2-mp-cert-intranet-name-only"])
    assert [s.outcome for s in failing] == ["ok", "ok", "ok", "ok", "fail"]
    last = failing[-1]
    assert last.error is not None and last.error.name == "CERT_E_CN_NO_MATCH"
    assert last.error.hex == "0x800B010F"
    assert last.flags == 0x10
    assert last.winhttp_error is not None and last.winhttp_error.value == 12175
    assert last.openssl is not None and last.openssl.verify_code == 62
    assert "IBCM-Internet.public.com" in last.explanation
    assert "both FQDNs" in last.fix
    assert any("lpvStatusInformation is 0x10" in line.text for line in last.log)
    assert any(line.text.endswith("WINHTTP_CALLBACK_STATUS_FLAG_CERT_CN_INVALID is set")
               for line in last.log)
    twin = steps(bundled["seed2-mp-cert-both-names"])
    assert [s.outcome for s in twin] == ["ok"] * 5


def test_public_ca_plan_with_one_name(bundled: dict[str, ScenarioResult]) -> None:
    refused = bundled["seed2-public-ca-single-name-plan"]
    assert refused.pki.mp is None and refused.pki.mp_refusal is not None
    assert "allows 1 subject name" in refused.pki.mp_refusal.message
    step = steps(refused)[0]
    assert step.error is not None and step.error.name == "LAB_CA_PLAN_NAME_LIMIT"
    assert "ERROR_WINHTTP_CANNOT_CONNECT" in step.identifiers
    one_name = bundled["seed2-public-ca-single-name-internet-only"]
    assert steps(one_name, "PC01")[0].error.name == "CERT_E_CN_NO_MATCH"  # type: ignore[union-attr]
    assert [s.outcome for s in steps(one_name, "NB01")] == ["ok", "ok"]
    twin = bundled["seed2-public-ca-multi-name-plan"]
    assert twin.pki.mp is not None and twin.passed
    internet = steps(twin)[-1]
    assert internet.crl_check is True and internet.revocation is not None
    assert [u.result for u in internet.revocation.urls] == ["verified"]


# -- seed §3: ccmsetup options --------------------------------------------------------------

def test_smsmp_without_https_gets_403_4(bundled: dict[str, ScenarioResult]) -> None:
    install, register = steps(bundled["seed3-smsmp-without-https"])
    assert install.outcome == "ok"
    assert register.http_status == "403.4"
    assert register.target == "http://IBCM-Intra.contoso.local/ccm_system/request"
    assert register.error is not None and register.error.name == "CCM_E_BAD_HTTP_STATUS_CODE"
    assert {"403", "403.4", "0X87D00231"} <= set(register.identifiers)
    assert "SMSMP=https://IBCM-Intra.contoso.local" in register.fix
    texts = [line.text for line in register.log]
    assert "[CCMHTTP] ERROR INFO: StatusCode=403 StatusText=Forbidden" in texts
    twin = steps(bundled["seed3-smsmp-with-https"])
    assert twin[1].outcome == "ok" and twin[1].http_status == "200"


def test_without_usepkicert_no_https_mp(bundled: dict[str, ScenarioResult]) -> None:
    (step,) = steps(bundled["seed3-without-usepkicert"])
    assert step.error is not None and step.error.hex == "0x87D00269"
    assert "/UsePKICert" in step.fix
    assert step.target is None  # no connection is attempted


def test_internet_mp_learned_and_relearned(bundled: dict[str, ScenarioResult]) -> None:
    learned = steps(bundled["seed3-ccmhostname-learned-from-site"])
    assert [s.outcome for s in learned] == ["ok", "ok", "ok", "ok", "ok", "fail", "ok", "ok"]
    assert learned[3].mp == "IBCM-Internet.public.com"
    assert learned[5].error is not None and learned[5].error.name == "LAB_NO_INTERNET_MP"
    assert learned[7].mp == "IBCM-Internet.public.com"
    never = steps(bundled["seed3-ccmhostname-omitted-never-refreshed"])
    assert never[-1].error is not None and never[-1].error.name == "LAB_NO_INTERNET_MP"
    assert "CCMHOSTNAME=IBCM-Internet.public.com" in never[-1].fix


def test_install_needs_intranet_or_vpn(bundled: dict[str, ScenarioResult]) -> None:
    r = bundled["seed3-install-from-internet-or-vpn"]
    (internet,) = steps(r, "HOME01")
    assert internet.error is not None and internet.error.name == "LAB_INSTALL_FROM_INTERNET"
    assert "ERROR_WINHTTP_NAME_NOT_RESOLVED" in internet.identifiers
    vpn = steps(r, "HOME02")
    assert [s.outcome for s in vpn] == ["ok"] * 4
    assert vpn[0].connection == "intranet" and vpn[3].connection == "internet"


# -- seed §4: the CRL box -------------------------------------------------------------------

def test_internet_client_with_ldap_first_cdps(bundled: dict[str, ScenarioResult]) -> None:
    result = bundled["seed4-internet-client-ldap-cdp-crl-on"]
    r = steps(result)
    # /NoCRLCheck covers the bootstrap: the install and ccmexec's automatic registration and
    # first site refresh do not check the CRL, so the client's URL cache holds none when it
    # reaches the internet; from that refresh on the site's setting governs.
    auto = [s for s in result.steps if s.automatic]
    assert [(s.number, s.action, s.crl_check, s.options, s.outcome) for s in auto] == [
        ("1a", "register", False, 192, "ok"), ("1b", "location", False, 192, "ok")]
    assert [s.crl_check for s in r] == [False, True]
    assert [s.options for s in r] == [192, 63]
    last = r[1]
    assert last.error is not None and last.error.name == "CRYPT_E_REVOCATION_OFFLINE"
    assert last.flags == 0x1
    assert last.revocation is not None
    urls = last.revocation.urls
    assert [u.url.split(":", 1)[0] for u in urls] == ["ldap", "http"]
    assert urls[0].url.startswith("ldap:///CN=Contoso-CA,CN=ca01,CN=CDP,CN=Public%20Key%20")
    assert [u.result for u in urls] == ["failed", "failed"]
    assert [u.simulated_ms for u in urls] == [15000, 15000]
    assert [u.error.name for u in urls if u.error] == ["ERROR_DS_SERVER_DOWN",
                                                      "ERROR_WINHTTP_NAME_NOT_RESOLVED"]
    assert last.simulated_ms == 30000
    assert last.openssl is not None and last.openssl.verify_code == 3
    assert "Clients check the certificate revocation list" in last.fix
    assert any(line.text.startswith("Post to https://IBCM-Internet.public.com/ccm_system/request"
                                    " failed with 0x87d00231") for line in last.log)


def test_crl_box_cleared_twin(bundled: dict[str, ScenarioResult]) -> None:
    r = steps(bundled["seed4-internet-client-crl-check-off"])
    assert [s.outcome for s in r] == ["ok"] * 5
    assert r[4].crl_check is False and r[4].options == 31
    assert r[4].revocation is not None and not r[4].revocation.checked


def test_http_cdp_published_twin_waits_for_ldap_first(
        bundled: dict[str, ScenarioResult]) -> None:
    last = steps(bundled["seed4-internet-client-http-cdp-published"])[-1]
    assert last.outcome == "ok" and last.crl_check is True
    assert last.revocation is not None
    # the LDAP URL times out for the base CRL and again for the delta CRL it names
    assert [(u.result, u.simulated_ms, u.crl) for u in last.revocation.urls] == [
        ("failed", 15000, "base"), ("verified", 0, "base"),
        ("failed", 15000, "delta"), ("verified", 0, "delta")]
    assert "after 30 s" in last.explanation


def test_workgroup_client_and_domain_joined_neighbour(
        bundled: dict[str, ScenarioResult]) -> None:
    r = bundled["seed4-workgroup-intranet-ldap-cdp"]
    (wg,) = steps(r, "WG01")
    assert wg.error is not None and wg.error.name == "CRYPT_E_REVOCATION_OFFLINE"
    assert wg.revocation is not None
    assert "not domain-joined" in wg.revocation.urls[0].detail
    assert "workgroup" in wg.fix
    assert all(s.outcome == "ok" for s in steps(r, "PC01"))
    twin = steps(bundled["seed4-workgroup-crl-check-off"])
    assert [s.outcome for s in twin] == ["ok"] * 4


# -- expectations can fail: the negative control of the whole suite ------------------------

def test_a_wrong_expectation_is_reported_as_not_met(certs_dir: Path) -> None:
    text = (SCENARIOS / "seed4-internet-client-ldap-cdp-crl-on.toml").read_text()
    assert text.count('expect = "CRYPT_E_REVOCATION_OFFLINE"') == 1
    wrong = [
        text.replace('expect = "CRYPT_E_REVOCATION_OFFLINE"', 'expect = "ok"'),
        text.replace('expect = "CRYPT_E_REVOCATION_OFFLINE"', 'expect = "CRYPT_E_REVOKED"'),
        text.replace('expect = "CRYPT_E_REVOCATION_OFFLINE"', 'expect = "0x80092013"'),
        text.replace('expect = "CRYPT_E_REVOCATION_OFFLINE"', 'expect = "CERT_REV_FAILED"'),
        text.replace('expect = "CRYPT_E_REVOCATION_OFFLINE"', 'expect = "403.13"'),
    ]
    scenarios = [load_scenario_text(t, name=f"variant{i}") for i, t in enumerate(wrong)]
    result = asyncio.run(run_loaded(scenarios, certs=certs_dir))
    assert [r.passed for r in result.scenarios] == [False, False, True, True, False]
    assert result.exit_code == 1
