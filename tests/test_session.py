"""Tests for the Python API (lab/session.py), used as a script would: no plugin fixture.

Real labs (servers on loopback, real TLS handshakes); the only fixture is the suite's
certificate cache, so no key is generated twice.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from labtest import SCENARIOS

import lab
from lab.errors import ScenarioError
from lab.session import LabSession, StepMissed, describe_step, load_sources

SEED4 = SCENARIOS / "seed4-internet-client-ldap-cdp-crl-on.toml"
WITH_HTTPS = SCENARIOS / "seed3-smsmp-with-https.toml"
CRL_ON = "check_crl = true"
CRL_OFF = "check_crl = false"


def seed4_text(crl: str = CRL_ON) -> str:
    text = SEED4.read_text(encoding="utf-8")
    assert CRL_ON in text
    return text.replace(CRL_ON, crl)


def no_loop_thread() -> bool:
    return not [t for t in threading.enumerate() if t.name == "ibcm-lab-loop"]


def test_a_failing_step_and_its_passing_twin(certs_dir: Path) -> None:
    with LabSession(certs_dir) as labs:
        # The site checks the CRL: on the internet neither CDP answers.
        fails = labs.stage(seed4_text(CRL_ON)).client("pc01")  # not case-sensitive
        # The same site with the box cleared: the same step passes.
        passes = labs.stage(seed4_text(CRL_OFF)).client("PC01")
        for client in (fails, passes):
            assert client.name == "PC01"
            for action in ("install",):  # ccmexec registers and refreshes on its own
                assert client.step(action, "intranet", expect="ok").met
        failed = fails.step("inventory", "internet")
        passed = passes.step("inventory", "internet")

        assert failed.outcome == "fail"
        assert failed.error is not None and failed.error.name == "CRYPT_E_REVOCATION_OFFLINE"
        assert failed.error.hex == "0x80092013"
        assert {"CRYPT_E_REVOCATION_OFFLINE", "0X80092013"} <= set(failed.identifiers)
        assert failed.revocation is not None
        assert failed.name == "2-inventory@internet"
        assert passed.outcome == "ok" and passed.error is None
        assert passed.name == "2-inventory@internet"

        # With expect, a miss raises StepMissed (an AssertionError) and is still recorded.
        with pytest.raises(StepMissed) as missed:
            fails.step("inventory", "internet", expect="ok")
        assert isinstance(missed.value, AssertionError)
        assert str(missed.value).splitlines()[:3] == [
            "PC01 step 3: inventory @ internet", "expected: ok",
            "actual:   fail CRYPT_E_REVOCATION_OFFLINE 0x80092013"]
        assert passes.step("inventory", "internet", expect="ok").met
        assert [r.name for r in fails.results] == [
            "1-install@intranet", "1a-register@intranet", "1b-location@intranet",
            "2-inventory@internet", "3-inventory@internet"]
        assert fails.results[-1].expected == "ok" and not fails.results[-1].met
        assert describe_step(fails.results[-1], "my-site.toml:53").startswith(
            "PC01 step 3: inventory @ internet  (my-site.toml:53)")
        assert fails.log and all(line.file for line in fails.log)
        labs_ports = [s.ports.mp_https for s in labs.labs]
        scratches = [s.scratch for s in labs.labs]
    assert len(labs_ports) == 2 and len(set(labs_ports)) == 2
    for port in labs_ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not any(p.exists() for p in scratches)
    assert no_loop_thread()


def test_staged_lab_exposes_its_pki_hosts_and_ports(certs_dir: Path) -> None:
    with LabSession(certs_dir) as labs:
        staged = labs(WITH_HTTPS)  # a Path; labs(source) is labs.stage(source)
        assert staged.scenario.name == WITH_HTTPS.stem
        assert staged.pki.mp is not None
        assert staged.hosts.get("IBCM-Intra.contoso.local", 443) == staged.ports.mp_https
        assert staged.deployment.network is staged.network
        with pytest.raises(ValueError, match="action: expected one of"):
            staged.client().step("reboot", "intranet")
        # An expect no step can give is refused before the step runs, as the loader does.
        with pytest.raises(ValueError, match="did you mean 'CRYPT_E_REVOCATION_OFFLINE'"):
            staged.client().step("install", "intranet", expect="CRYPT_E_REVOCATION_OFLINE")
        assert staged.client().step("install", "intranet", expect="OK").met
        staged.close()
        with pytest.raises(RuntimeError, match="this lab is closed"):
            staged.client()


def test_run_gives_the_run_result_of_whole_scenarios(certs_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "a.toml").write_text(seed4_text(), encoding="utf-8")
    wrong = seed4_text().replace('expect = "CRYPT_E_REVOCATION_OFFLINE"', 'expect = "ok"')
    with LabSession(certs_dir) as labs:
        result = labs.run(folder, str(WITH_HTTPS))  # a folder, a str path
        assert [s.scenario.name for s in result.scenarios] == ["a", WITH_HTTPS.stem]
        assert result.passed and result.exit_code == 0
        steps = result.scenarios[0].steps
        assert [s.name for s in steps][-1] == "2-inventory@internet"
        assert [s.name for s in steps if s.automatic] == ["1a-register@intranet",
                                                          "1b-location@intranet"]
        assert steps[-1].error is not None
        assert steps[-1].error.name == "CRYPT_E_REVOCATION_OFFLINE"

        result = labs.run(wrong)  # TOML text
        assert not result.passed and result.exit_code == 1
        assert [s.name for s in result.scenarios[0].steps if not s.met] == [
            "2-inventory@internet"]
    assert no_loop_thread()
    with pytest.raises(RuntimeError, match="closed"):
        labs.run(WITH_HTTPS)


def test_install_runs_ccmexec_s_start_up_work_and_returns_it(certs_dir: Path) -> None:
    """As in a file: a good install is followed by ccmexec's registration and site refresh,
    in the install's ``followups`` and in ``results``; an install then an inventory works."""
    with LabSession(certs_dir) as labs:
        client = labs(WITH_HTTPS).client()
        installed = client.step("install", "intranet", expect="ok")
        assert installed.followups == client.results[1:]
        assert [(r.number, r.name, r.automatic, r.outcome, r.expected, r.met)
                for r in installed.followups] == [
            ("1a", "1a-register@intranet", True, "ok", None, True),
            ("1b", "1b-location@intranet", True, "ok", None, True)]
        assert installed.automatic is False and installed.number == "1"
        assert client.agent.state.registered and client.agent.state.refreshed
        inventory = client.step("inventory", "intranet", expect="ok")
        assert inventory.number == "2" and inventory.followups == []
        # the explicit register step is a re-registration now
        again = client.step("register", "intranet", expect="ok")
        texts = [line.text for line in again.log if line.file == "ClientIDManagerStartup.log"]
        assert texts[0] == "[RegTask] - Starting registration, attempt 1."
        assert texts[1].startswith("Lab: the client is already registered (ClientID GUID:")
        assert not any("Client is not registered" in t for t in texts)
        assert texts[-1].startswith("[RegTask] - Client is registered. Server assigned ")
        # the automatic registration's own lines: the new client's assignment, then RegTask
        first = [line.text for line in installed.followups[0].log
                 if line.file == "ClientIDManagerStartup.log"]
        assert first[:3] == [
            "RegEndPoint: Received notification for site assignment change from '<none>' "
            "to 'P01'.", "[RegTask] - Starting registration, attempt 1.",
            f"[RegTask] - Client is not registered. Sending registration request for "
            f"{client.agent.guid} ..."]
        # ccmexec starts 5 simulated seconds after the install's last line
        assert (installed.followups[0].log[0].time - installed.log[-1].time).total_seconds() \
            == 5


def test_the_session_works_inside_a_running_event_loop(certs_dir: Path) -> None:
    async def main() -> tuple[str, str]:
        with LabSession(certs_dir) as labs:
            client = labs(WITH_HTTPS).client()
            first = client.step("install", "intranet")  # a blocking call, on its own loop
            second = await client.astep("register", "intranet")
            return first.outcome, second.outcome

    assert asyncio.run(main()) == ("ok", "ok")
    assert no_loop_thread()


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="expected a Scenario, a path or TOML text"):
        load_sources([42])  # type: ignore[list-item]
    with pytest.raises(ScenarioError, match="no such file or folder"):
        load_sources([tmp_path / "missing.toml"])
    assert load_sources([]) == []


def test_the_api_is_exported_lazily_from_lab() -> None:
    assert lab.LabSession is LabSession and lab.StepMissed is StepMissed
    assert {"LabSession", "StagedLab", "LabClient", "StepMissed"} <= set(lab.__all__)


def test_importing_the_api_does_not_import_pytest() -> None:
    code = ("import sys\n"
            "import lab\n"
            "assert 'lab.session' not in sys.modules, 'import lab is not lazy'\n"
            "lab.LabSession\n"
            "import lab.session\n"
            "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest'))\n"
            "print(leaked)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
