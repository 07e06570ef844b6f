"""ccmexec after setup: a successful install is followed by the client's own registration and
site refresh (reference §1.4d, §11.9), as automatic steps that every output shows, whose
failure reaches the later steps that need a registered client."""

from __future__ import annotations

import contextlib
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.cli.app import main
from lab.errors import ScenarioError
from lab.results.runs import RunResult, ScenarioResult
from lab.results.verdicts import StepResult
from lab.scenario.loader import load_scenario_text
from lab.session import LabSession

HEAD = """
[scenario]
title = "{title}"

[site]
code = "P01"
check_crl = false

[[ca]]
name = "Contoso-CA"
kind = "enterprise"
host = "ca01.contoso.local"
domain = "contoso.local"

[mp]
intranet_fqdn = "IBCM-Intra.contoso.local"
internet_fqdn = "IBCM-Internet.public.com"

[mp.cert]
issuer = "Contoso-CA"
san = ["IBCM-Intra.contoso.local", "IBCM-Internet.public.com"]

[[client]]
name = "PC01"
ccmsetup = "{line}"
"""
STEP = """
[[client.step]]
action = "{action}"
location = "{location}"
{extra}
"""
GOOD = ("ccmsetup.exe /UsePKICert /NoCRLCheck SMSSITECODE=P01 "
        "SMSMP=https://IBCM-Intra.contoso.local CCMHOSTNAME=IBCM-Internet.public.com")
HTTP_SMSMP = GOOD.replace("SMSMP=https://", "SMSMP=")
# An internet-only install from media, without /NoCRLCheck: ccmexec's registration on the
# internet checks the MP certificate's CRL, whose ldap:/// and intranet http:// CDPs no
# internet machine reaches.
MEDIA = ("ccmsetup.exe /source:D:\\\\Client /UsePKICert SMSSITECODE=P01 "
         "CCMHOSTNAME=IBCM-Internet.public.com CCMALWAYSINF=1")


def scenario(title: str, line: str, *steps: tuple[str, str, str]) -> str:
    """TOML text: ``steps`` are (action, location, extra lines such as ``expect = "ok"``)."""
    return HEAD.format(title=title, line=line) + "".join(
        STEP.format(action=a, location=z, extra=x) for a, z, x in steps)


SCENARIOS = {
    # install, then inventory: no register step needed
    "install-inventory": scenario(
        "install then inventory", GOOD,
        ("install", "intranet", 'expect = "ok"'), ("inventory", "intranet", 'expect = "ok"')),
    # seed §3: SMSMP without https:// makes ccmexec's registration get 403.4 at install time
    "http-smsmp-inventory": scenario(
        "install then inventory, SMSMP without https://", HTTP_SMSMP,
        ("install", "intranet", 'expect = "ok"'),
        ("inventory", "intranet", 'expect = "403.4"')),
    # seed §3 as the bundled file has it: the explicit register step still reports 403.4
    "http-smsmp-register": scenario(
        "install then register, SMSMP without https://", HTTP_SMSMP,
        ("install", "intranet", 'expect = "ok"'), ("register", "intranet", 'expect = "403.4"')),
    # CRL offline at ccmexec's registration, and its twin with /NoCRLCheck (site box clear)
    "media-crl-offline": scenario(
        "internet-only install from media, CRL checked at registration", MEDIA,
        ("install", "internet", 'expect = "ok"'),
        ("inventory", "internet", 'expect = "CRYPT_E_REVOCATION_OFFLINE"')),
    "media-nocrlcheck": scenario(
        "internet-only install from media with /NoCRLCheck", MEDIA.replace(
            "/UsePKICert", "/UsePKICert /NoCRLCheck"),
        ("install", "internet", 'expect = "ok"'), ("inventory", "internet", 'expect = "ok"')),
    # only the install has an expectation: the failed automatic steps do not fail the run
    "http-smsmp-install-only": scenario(
        "install only, SMSMP without https://", HTTP_SMSMP,
        ("install", "intranet", 'expect = "ok"')),
    # the laptop is shut as setup ends: ccmexec starts on the internet
    "left-as-setup-ended": scenario(
        "ccmexec starts at home", GOOD.replace(" CCMHOSTNAME=IBCM-Internet.public.com", ""),
        ("install", "intranet", 'ccmexec_location = "internet"\nexpect = "ok"'),
        ("policy", "internet", 'expect = "LAB_NO_INTERNET_MP"')),
}


@pytest.fixture(scope="module")
def run(certs_dir: Path) -> RunResult:
    with LabSession(certs_dir) as labs:
        return labs.run(*SCENARIOS.values())


@pytest.fixture(scope="module")
def results(run: RunResult) -> dict[str, ScenarioResult]:
    return dict(zip(SCENARIOS, run.scenarios, strict=True))


def pc01(result: ScenarioResult) -> list[StepResult]:
    return result.clients[0].steps


def summary(steps: list[StepResult]) -> list[tuple[str, str, str, bool]]:
    return [(s.name, s.outcome, s.error.name if s.error else "", s.automatic) for s in steps]


def test_every_expectation_is_met(run: RunResult) -> None:
    assert [(s.scenario.info.title, st.name) for s in run.scenarios for st in s.steps
            if not st.met] == []
    assert run.exit_code == 0


def test_install_then_inventory_works(results: dict[str, ScenarioResult]) -> None:
    assert summary(pc01(results["install-inventory"])) == [
        ("1-install@intranet", "ok", "", False),
        ("1a-register@intranet", "ok", "", True),
        ("1b-location@intranet", "ok", "", True),
        ("2-inventory@intranet", "ok", "", False)]


def test_a_failed_automatic_registration_fails_the_later_inventory_with_its_code(
        results: dict[str, ScenarioResult]) -> None:
    _, register, location, inventory = pc01(results["http-smsmp-inventory"])
    assert (register.automatic, register.outcome, register.http_status) == (True, "fail",
                                                                             "403.4")
    assert location.automatic and location.outcome == "fail"
    assert inventory.error is not None and inventory.error.name == "LAB_CLIENT_NOT_REGISTERED"
    assert inventory.error_message == (
        "the client is not registered with the site: the automatic registration after install "
        "(step 1a, ccmexec start-up) failed with CCM_E_BAD_HTTP_STATUS_CODE 0x87D0027E HTTP "
        "403.4, so the MP would not accept its messages")
    assert set(register.identifiers) <= set(inventory.identifiers)
    assert {"403.4", "CCM_E_BAD_HTTP_STATUS_CODE", "0X87D0027E",
            "LAB_CLIENT_NOT_REGISTERED"} <= set(inventory.identifiers)
    assert inventory.fix.startswith("Fix the registration first (policy and inventory need a "
                                    "registered client): Write SMSMP=https://")
    assert inventory.target is None  # nothing was sent
    # the passing twin: SMSMP=https:// registers at install time, the inventory arrives
    twin = pc01(results["install-inventory"])[-1]
    assert twin.outcome == "ok" and twin.identifiers == []


def test_the_explicit_register_step_still_reports_the_seed_s_403_4(
        results: dict[str, ScenarioResult]) -> None:
    steps = pc01(results["http-smsmp-register"])
    assert summary(steps) == [
        ("1-install@intranet", "ok", "", False),
        ("1a-register@intranet", "fail", "CCM_E_BAD_HTTP_STATUS_CODE", True),
        ("1b-location@intranet", "fail", "CCM_E_BAD_HTTP_STATUS_CODE", True),
        ("2-register@intranet", "fail", "CCM_E_BAD_HTTP_STATUS_CODE", False)]
    assert steps[-1].http_status == "403.4" and steps[-1].met
    # not registered yet, so it says what a new client says
    assert any(line.text.startswith("[RegTask] - Client is not registered. ")
               for line in steps[-1].log)


def test_crl_offline_at_the_automatic_registration_and_its_twin(
        results: dict[str, ScenarioResult]) -> None:
    install, register, _, inventory = pc01(results["media-crl-offline"])
    assert install.outcome == "ok" and install.target is None  # from media: no request
    assert register.error is not None and register.error.name == "CRYPT_E_REVOCATION_OFFLINE"
    assert register.crl_check is True and register.crl_source.startswith("ccmsetup without")
    assert inventory.error is not None and inventory.error.name == "LAB_CLIENT_NOT_REGISTERED"
    assert "failed with CRYPT_E_REVOCATION_OFFLINE 0x80092013" in inventory.error_message
    assert {"CRYPT_E_REVOCATION_OFFLINE", "0X80092013", "CERT_REV_FAILED"} <= set(
        inventory.identifiers)
    twin = pc01(results["media-nocrlcheck"])
    assert [s.outcome for s in twin] == ["ok"] * 4
    assert twin[1].crl_check is False and twin[-1].met


def test_failed_automatic_steps_do_not_fail_the_run(
        results: dict[str, ScenarioResult]) -> None:
    only = results["http-smsmp-install-only"]
    assert [s.outcome for s in pc01(only)] == ["ok", "fail", "fail"]
    assert only.passed and all(s.met for s in pc01(only))


def test_ccmexec_location_moves_the_start_up_work(results: dict[str, ScenarioResult]) -> None:
    steps = pc01(results["left-as-setup-ended"])
    assert summary(steps) == [
        ("1-install@intranet", "ok", "", False),
        ("1a-register@internet", "fail", "LAB_NO_INTERNET_MP", True),
        ("1b-location@internet", "fail", "LAB_NO_INTERNET_MP", True),
        ("2-policy@internet", "fail", "LAB_CLIENT_NOT_REGISTERED", False)]
    assert "LAB_NO_INTERNET_MP" in steps[-1].identifiers


def test_the_logs_show_ccmsetup_ending_and_ccmexec_starting(
        results: dict[str, ScenarioResult]) -> None:
    install, register, location, _ = pc01(results["install-inventory"])
    assert install.log[-1].text == "CcmSetup is exiting with return code 0"
    assert install.log[-1].file == "ccmsetup.log"
    first = register.log[0]
    assert (first.file, first.component) == ("CcmExec.log", "CcmExec")
    assert first.text.startswith("Lab: the SMS Agent Host (ccmexec) started after ccmsetup ")
    assert [ln.file for ln in register.log[1:4]] == ["ClientIDManagerStartup.log"] * 3
    assert location.log[-1].file == "LocationServices.log"
    assert location.log[-1].text.startswith("Lab: refreshed the management point list ")


def test_text_json_and_junit_show_the_automatic_steps(certs_dir: Path,
                                                      tmp_path: Path) -> None:
    path = tmp_path / "http-smsmp.toml"
    path.write_text(SCENARIOS["http-smsmp-inventory"], encoding="utf-8")

    def cli(*args: str) -> tuple[int, str]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["run", str(path), "--certs", str(certs_dir), *args])
        return code, out.getvalue()

    code, text = cli()
    assert code == 0
    lines = text.splitlines()
    assert ("    auto  1a. register (automatic, ccmexec start-up) @ intranet  FAIL "
            "CCM_E_BAD_HTTP_STATUS_CODE 0x87D0027E HTTP 403.4  (no expectation: not a step of "
            "the scenario)  [+00:00:06]") in lines
    assert any(line.startswith("    auto  1b. location (automatic, ccmexec start-up) @ ")
               for line in lines)
    assert lines[-1].startswith("1/1 scenarios passed, 2/2 expectations met")

    code, out = cli("--format", "json")
    steps = json.loads(out)["clients"][0]["steps"]
    assert [(s["number"], s["action"], s["automatic"], s["expected"], s["met"])
            for s in steps] == [("1", "install", False, "ok", True),
                                ("1a", "register", True, None, True),
                                ("1b", "location", True, None, True),
                                ("2", "inventory", False, "403.4", True)]

    report = tmp_path / "junit.xml"
    assert cli("--format", "junit", "--out", str(report))[0] == 0
    cases = ET.parse(report).getroot().iter("testcase")
    assert [c.get("name") for c in cases] == [
        "1-install@intranet", "1a-register@intranet", "1b-location@intranet",
        "2-inventory@intranet"]


def test_ccmexec_location_is_for_install_steps_only() -> None:
    text = scenario("bad", GOOD, ("install", "intranet", ""),
                    ("register", "intranet", 'ccmexec_location = "internet"'))
    with pytest.raises(ScenarioError) as info:
        load_scenario_text(text)
    assert "client[0].step[1].ccmexec_location" in str(info.value)
    assert "only an install step starts ccmexec" in str(info.value)
    with pytest.raises(ScenarioError, match="ccmexec_location: expected one of 'intranet'"):
        load_scenario_text(scenario("bad", GOOD, ("install", "intranet",
                                                  'ccmexec_location = "home"')))
    good = load_scenario_text(scenario("good", GOOD, ("install", "intranet",
                                                      'ccmexec_location = "VPN"')))
    assert good.clients[0].steps[0].ccmexec_location == "vpn"

