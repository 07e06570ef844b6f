"""The ``[faults]`` knobs: each bundled fault scenario gives its Windows-equivalent outcome next
to its twin, each knob is logged once, and bad knob values are refused."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from lab.results.runs import ScenarioResult
from lab.results.verdicts import StepResult
from lab.run import run_loaded
from lab.scenario.loader import load_all, load_scenario_text
from lab.scenario.model import Faults

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
PKI_CDP = "http://pki.contoso.com/CertEnroll/Contoso-CA.crl"


@pytest.fixture(scope="module")
def faults(certs_dir: Path) -> dict[str, ScenarioResult]:
    paths = sorted(SCENARIOS.glob("fault-*.toml"))
    result = asyncio.run(run_loaded(load_all(paths), certs=certs_dir))
    return {r.scenario.name: r for r in result.scenarios}


def step(r: ScenarioResult, client: str = "PC01") -> StepResult:
    # the client's one step of the scenario (ccmexec's automatic steps may follow it)
    (only,) = [s for c in r.clients if c.name == client for s in c.scenario_steps]
    return only


def offline_with_twin(r: ScenarioResult) -> StepResult:
    failing = step(r)
    assert failing.met and failing.error is not None
    assert (failing.error.name, failing.error.hex) == ("CRYPT_E_REVOCATION_OFFLINE",
                                                       "0x80092013")
    assert failing.flags == 0x1
    assert failing.openssl is not None and failing.openssl.agrees
    twin = step(r, "PC02")
    assert twin.outcome == "ok" and twin.met and twin.crl_check is False
    assert failing.revocation is not None
    return failing


def test_every_fault_scenario_meets_its_expectations(faults: dict[str, ScenarioResult]) -> None:
    assert len(faults) == 16
    assert [n for n, r in faults.items() if not r.passed] == []
    for name, r in faults.items():
        assert r.faults, name  # every fault scenario has a knob on, and says which


def test_cdp_down(faults: dict[str, ScenarioResult]) -> None:
    failing = offline_with_twin(faults["fault-cdp-down"])
    (url,) = failing.revocation.urls  # type: ignore[union-attr]
    assert (url.url, url.result, url.simulated_ms) == (PKI_CDP, "failed", 15000)
    assert url.error is not None and url.error.name == "ERROR_WINHTTP_CANNOT_CONNECT"
    assert faults["fault-cdp-down"].faults == ["cdp_down=true"]


def test_cdp_slow_and_its_twin(faults: dict[str, ScenarioResult]) -> None:
    failing = offline_with_twin(faults["fault-cdp-slow"])
    (url,) = failing.revocation.urls  # type: ignore[union-attr]
    assert url.error is not None and url.error.name == "ERROR_WINHTTP_TIMEOUT"
    assert url.simulated_ms == 15000 and "took 20 s to answer" in url.detail
    ok = step(faults["fault-cdp-slow-within-timeout"])
    # 5 s for the base CRL, 5 s for the delta CRL next to it on the same slow server
    assert ok.outcome == "ok" and ok.crl_check is True and ok.simulated_ms == 10000
    assert ok.revocation is not None
    assert [(u.result, u.simulated_ms, u.crl) for u in ok.revocation.urls] == [
        ("verified", 5000, "base"), ("verified", 5000, "delta")]


@pytest.mark.parametrize(("name", "status"), [("fault-cdp-404", 404), ("fault-cdp-500", 500)])
def test_cdp_http_errors(faults: dict[str, ScenarioResult], name: str, status: int) -> None:
    failing = offline_with_twin(faults[name])
    (url,) = failing.revocation.urls  # type: ignore[union-attr]
    assert url.result == "failed" and url.detail.startswith(f"HTTP {status}")
    assert url.simulated_ms == 0  # the server answered at once


def test_content_type_does_not_matter(faults: dict[str, ScenarioResult]) -> None:
    ok = step(faults["fault-cdp-content-type"])
    assert ok.outcome == "ok" and ok.crl_check is True
    assert ok.revocation is not None and ok.revocation.urls[0].result == "verified"


@pytest.mark.parametrize(("name", "detail", "openssl"), [
    ("fault-crl-truncated", "the response is not a CRL", 3),
    ("fault-crl-garbage", "the response is not a CRL", 3),
    ("fault-crl-foreign-signature", "the CRL's signature does not verify", 8),
    ("fault-crl-stale", "has passed", 12),
])
def test_bad_crl_contents(faults: dict[str, ScenarioResult], name: str, detail: str,
                          openssl: int) -> None:
    failing = offline_with_twin(faults[name])
    (url,) = failing.revocation.urls  # type: ignore[union-attr]
    assert url.result in ("invalid", "expired") and detail in url.detail
    assert failing.openssl is not None and failing.openssl.verify_code == openssl
    assert "cannot be used" in failing.fix  # the CRL itself, not its reachability


def test_huge_crl_is_still_good(faults: dict[str, ScenarioResult]) -> None:
    r = faults["fault-crl-huge"]
    ok = step(r)
    assert ok.outcome == "ok" and ok.crl_check is True
    assert ok.revocation is not None and ok.revocation.urls[0].result == "verified"
    assert ok.openssl is not None and ok.openssl.verify_code == 0
    assert r.faults == ["crl_huge=100000"]


def test_ldap_down_even_inside(faults: dict[str, ScenarioResult]) -> None:
    failing = offline_with_twin(faults["fault-ldap-down"])
    (url,) = failing.revocation.urls  # type: ignore[union-attr]
    assert url.url.startswith("ldap:///CN=Contoso-CA,")
    assert url.error is not None and url.error.name == "ERROR_DS_SERVER_DOWN"
    assert "ldap_down" in url.detail and failing.connection == "intranet"


def test_ldap_slow_and_its_twin(faults: dict[str, ScenarioResult]) -> None:
    r = faults["fault-ldap-slow"]
    failing = offline_with_twin(r)
    (url,) = failing.revocation.urls  # type: ignore[union-attr]
    assert url.url.startswith("ldap:///CN=Contoso-CA,")
    assert url.error is not None and (url.error.name, url.error.hex) == ("ERROR_TIMEOUT",
                                                                         "0x800705B4")
    assert url.error.verified is False  # the code is the lab's inference
    assert url.simulated_ms == 15000 and "took 20 s to answer the LDAP search" in url.detail
    assert url.detail.startswith("DC01.contoso.local (127.0.0.1:")
    assert r.faults == ["ldap_delay=20s"]
    # the DC really was asked: over LDAP, with the lab's delay control on its answer
    searches = [rec for rec in r.directory_log if rec.operation == "search"]
    assert searches and all(rec.result == "success" for rec in searches)
    # the twin: a DC that answers in 5 s gives the CRL after 5 s of simulated waiting
    ok = step(faults["fault-ldap-slow-within-timeout"])
    # 5 s for the base CRL and 5 s for the delta CRL (both from the DC), as much again for IIS
    # on the MP: it fetches the client certificate's CRLs (Contoso-Clients-CA, LDAP first)
    # from the same slow DC
    assert ok.outcome == "ok" and ok.crl_check is True and ok.simulated_ms == 20000
    assert ok.revocation is not None
    good, delta = ok.revocation.urls
    assert (good.result, good.simulated_ms) == ("verified", 5000)
    assert (delta.result, delta.simulated_ms, delta.crl) == ("verified", 5000, "delta")
    assert good.source.startswith("retrieved over LDAP from DC01.contoso.local (127.0.0.1:")
    assert good.source.endswith(" after 5 s")


def test_ldap_down_leaves_the_directory_unasked(faults: dict[str, ScenarioResult]) -> None:
    assert faults["fault-ldap-down"].directory_log == []
    # the twin: without the fault the same layout is answered over LDAP
    assert faults["fault-ldap-slow-within-timeout"].directory_log


def test_mp_down(faults: dict[str, ScenarioResult]) -> None:
    for client in ("PC01", "PC02"):
        s = step(faults["fault-mp-down"], client)
        assert s.met and s.error is not None
        assert (s.error.name, s.error.hex) == ("ERROR_WINHTTP_CANNOT_CONNECT", "0x80072EFD")
        assert s.http_status is None
    assert faults["fault-mp-down"].mp_records == []


def test_mp_500(faults: dict[str, ScenarioResult]) -> None:
    r = faults["fault-mp-500"]
    failing = step(r)
    assert failing.http_status == "500" and failing.error is not None
    assert failing.error.name == "CCM_E_BAD_HTTP_STATUS_CODE"
    texts = [line.text for line in failing.log]
    assert "[CCMHTTP] ERROR INFO: StatusCode=500 StatusText=Internal Server Error" in texts
    assert {(rec.status, rec.substatus) for rec in r.mp_records} == {(500, 0)}


def test_each_knob_is_logged_once(certs_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    text = (SCENARIOS / "fault-cdp-404.toml").read_text()
    scenario = load_scenario_text(text, name="logged-once")
    caplog.set_level(logging.WARNING, logger="ibcm-lab.faults")
    asyncio.run(run_loaded([scenario], certs=certs_dir))
    notes = [r.getMessage() for r in caplog.records if r.name == "ibcm-lab.faults"]
    assert notes == ["scenario logged-once: fault cdp_status=404 is on"]
    # the twin: without [faults] nothing is logged
    caplog.clear()
    plain = load_scenario_text(text.split("[faults]")[0] + text.split("cdp_status = 404", 1)[1],
                               name="no-faults")
    asyncio.run(run_loaded([plain], certs=certs_dir))
    assert [r for r in caplog.records if r.name == "ibcm-lab.faults"] == []


BASE = (SCENARIOS / "fault-cdp-404.toml").read_text()


@pytest.mark.parametrize(("bad", "key", "fragment"), [
    ("cdp_status = 200", "faults.cdp_status", "expected an HTTP error status from 400 to 599"),
    ("cdp_status = \"404\"", "faults.cdp_status", "expected an integer"),
    ('crl_body = "empty"', "faults.crl_body", "expected 'truncated' or 'garbage'"),
    ("crl_huge = 0", "faults.crl_huge", "expected a number of entries from 1 to 1000000"),
    ('cdp_delay = "-5s"', "faults.cdp_delay", "expected a positive delay"),
    ('cdp_delay = "slow"', "faults.cdp_delay", "expected a time relative to the run"),
    ('ldap_delay = "0s"', "faults.ldap_delay", "expected a positive delay"),
    ('ldap_delay = "-5s"', "faults.ldap_delay", "expected a positive delay"),
    ('ldap_delay = "slow"', "faults.ldap_delay", "expected a time relative to the run"),
    ("ldap_delay = 20", "faults.ldap_delay", "expected a string"),
    ("ldap_dealy = \"5s\"", "faults.ldap_dealy",
     "unknown key 'ldap_dealy' (did you mean 'ldap_delay'?)"),
    ('cdp_content_type = "html"', "faults.cdp_content_type", "expected a media type"),
    ("mp_down = 1", "faults.mp_down", "expected true or false"),
    ("cpd_down = true", "faults.cpd_down", "unknown key 'cpd_down' (did you mean 'cdp_down'?)"),
])
def test_bad_knob_values_are_refused(bad: str, key: str, fragment: str) -> None:
    from lab.errors import ScenarioError

    text = BASE.replace("cdp_status = 404", bad)
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text, file="f.toml")
    err = info.value
    assert err.key == key and fragment in err.message
    assert err.line == text.splitlines().index(bad) + 1
    # the twin: the bundled value loads
    assert load_scenario_text(BASE).faults == Faults(cdp_status=404)
