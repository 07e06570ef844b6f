"""Tests for the pytest plugin (lab/pytest_plugin.py).

The plugin is what ``pip install ibcm-lab`` registers through the ``pytest11`` entry point,
so the end-to-end tests run pytest in a subprocess (``pytester.runpytest_subprocess``) in a
temporary folder with no conftest.py: the installed entry point is what loads the plugin.
They run with ``-p no:asyncio -p no:aiohttp``, as for a user who installed only ibcm-lab, and
with ``--ibcm-certs`` at the session's certificate cache so no key is generated twice.
The fixtures are also used in-process here (this project runs asyncio tests in auto mode).
"""

from __future__ import annotations

import re
import socket
import threading
from pathlib import Path

import pytest
from labtest import SCENARIOS

from lab.pytest_plugin import ClientFactory, is_scenario_file, step_lines
from lab.scenario.loader import load_scenario
from lab.session import LabSession, StepMissed

pytest_plugins = ["pytester"]

SEED4 = SCENARIOS / "seed4-internet-client-ldap-cdp-crl-on.toml"
WITH_HTTPS = SCENARIOS / "seed3-smsmp-with-https.toml"
SEED4_IDS = [f"{SEED4.name}::PC01::{n}" for n in (
    "1-install@intranet", "2-inventory@internet")]
LAST_EXPECT = 'expect = "CRYPT_E_REVOCATION_OFFLINE"'


@pytest.fixture(scope="session")
def ibcm_certs(certs_dir: Path) -> Path:
    """The plugin's certificate cache for the in-process fixture tests: the session's."""
    return certs_dir


def run(pytester: pytest.Pytester, certs_dir: Path, *args: str) -> pytest.RunResult:
    """pytest in a subprocess in ``pytester.path``, as a user with only ibcm-lab installed."""
    assert not (pytester.path / "conftest.py").exists()
    # ``--option=value``: pytest decides the rootdir before it loads plugins, so the value of
    # a plugin's option given as a separate argument would count as a path.
    return pytester.runpytest_subprocess("-p", "no:asyncio", "-p", "no:aiohttp",
                                         f"--ibcm-certs={certs_dir}", *args)


def copy(pytester: pytest.Pytester, source: Path, name: str | None = None,
         replace: tuple[str, str] | None = None) -> Path:
    target = pytester.path / (name or source.name)
    text = source.read_text(encoding="utf-8")
    if replace is not None:
        assert replace[0] in text
        text = text.replace(*replace)
    target.write_text(text, encoding="utf-8")
    return target


def no_traceback(output: str) -> None:
    assert "Traceback" not in output
    assert "def " not in output
    assert "pytest_plugin.py" not in output


# ------------------------------------------------------------------------------------------
# Scenario files as test items
# ------------------------------------------------------------------------------------------


def test_scenario_file_without_conftest_passes_one_item_per_step(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IBCM_LAB_CERTS", raising=False)
    copy(pytester, SEED4)
    # TOML that is not a scenario is left alone.
    pytester.makepyprojecttoml('[project]\nname = "my-site"\nversion = "1.0"\n')
    (pytester.path / "other.toml").write_text('scenario = "not a table"\n[tool.x]\na = 1\n')
    (pytester.path / "broken-but-not-a-scenario.toml").write_text("[tool\n")
    # Plain pytest: no option at all (the keys go to pytest's cache folder).
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    for node in SEED4_IDS:
        assert f"{node} PASSED" in out
    assert not re.search(r"(pyproject|other|broken-but-not-a-scenario)\.toml[: ]", out)
    assert result.ret == 0
    assert list((pytester.path / ".pytest_cache" / "d" / "ibcm-lab-certs" / "keys").iterdir())


def test_wrong_expectation_fails_one_item_with_expected_actual_why_fix_and_log(
        pytester: pytest.Pytester, certs_dir: Path) -> None:
    path = copy(pytester, SEED4, replace=(LAST_EXPECT, 'expect = "CERT_E_CN_NO_MATCH"'))
    result = run(pytester, certs_dir, "--ibcm-logs=logs", "-rf", "--junitxml=junit.xml")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    no_traceback(out)
    line = step_lines(path.read_text())[(0, 1)]
    result.stdout.fnmatch_lines([
        f"*PC01 step 2: inventory @ internet  ({path.name}:{line})",
        "expected: CERT_E_CN_NO_MATCH",
        "actual:   fail CRYPT_E_REVOCATION_OFFLINE 0x80092013",
        "*identifiers: *",
        "why       PC01 (domain-joined, on the internet)*",
        "fix       Publish the CRL*",
        "evidence:",
        "  crl      failed        ldap:///*ERROR_DS_SERVER_DOWN",
        "open      *CcmMessaging.log:*",
    ])
    assert re.search(r"FAILED \S+::PC01::2-inventory@internet", out)
    ref = re.search(r"^open\s+(\S+):(\d+)$", out, re.MULTILINE)
    assert ref is not None
    log = Path(ref.group(1))
    assert log.is_relative_to(pytester.path / "logs" / path.stem / "PC01")
    opened = log.read_text(encoding="utf-8").splitlines()[int(ref.group(2)) - 1]
    assert 'type="3"' in opened and "ERROR" in opened
    # pytest's JUnit XML gets the one-line message
    junit = (pytester.path / "junit.xml").read_text(encoding="utf-8")
    assert ('message="expected CERT_E_CN_NO_MATCH, got fail CRYPT_E_REVOCATION_OFFLINE '
            '0x80092013"') in junit


def test_k_selects(pytester: pytest.Pytester,
                                                     certs_dir: Path) -> None:
    copy(pytester, SEED4)
    result = run(pytester, certs_dir, "-v", "-k", "inventory and not intranet")
    result.assert_outcomes(passed=1, deselected=1)
    assert f"{SEED4_IDS[1]} PASSED" in result.stdout.str()
    result = run(pytester, certs_dir, "-q", "-k", "PC01 and (install or location)",
                 SEED4_IDS[1])  # a node id on the command line narrows it further
    result.assert_outcomes(deselected=1)


def test_scenario_granularity_gives_one_item_per_file(pytester: pytest.Pytester,
                                                      certs_dir: Path) -> None:
    copy(pytester, SEED4, replace=(LAST_EXPECT, 'expect = "ok"'))
    copy(pytester, WITH_HTTPS)
    result = run(pytester, certs_dir, "-v", "--ibcm-granularity=scenario", "-rf")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert f"{WITH_HTTPS.name}::{WITH_HTTPS.stem} PASSED" in out
    assert f"{SEED4.name}::{SEED4.stem} FAILED" in out
    no_traceback(out)
    result.stdout.fnmatch_lines(["*PC01 step 2: inventory @ internet*", "expected: ok",
                                 "actual:   fail CRYPT_E_REVOCATION_OFFLINE 0x80092013"])
    # the same from the ini file
    pytester.makeini("[pytest]\nibcm_granularity = scenario\n")
    result = run(pytester, certs_dir, "--co", "-q")
    result.stdout.fnmatch_lines([f"{WITH_HTTPS.name}::{WITH_HTTPS.stem}",
                                 f"{SEED4.name}::{SEED4.stem}", "", "2 tests collected*"])


def test_bad_scenario_is_a_collection_error_with_file_line_key(pytester: pytest.Pytester,
                                                                certs_dir: Path) -> None:
    path = copy(pytester, SEED4, "bad-location.toml",
                replace=('location = "internet"', 'location = "home"'))
    line = path.read_text().splitlines().index('location = "home"') + 1
    (pytester.path / "bad-syntax.toml").write_text('[scenario]\ntitle = "unclosed\n')
    result = run(pytester, certs_dir)
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    no_traceback(out)
    result.stdout.fnmatch_lines_random([
        f"bad-location.toml:{line}: client[0].step[1].location: expected one of 'intranet', "
        "'internet', 'vpn', 'dmz', got 'home'",
        "bad-syntax.toml:2: TOML syntax error: *",
    ])
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_plugin_can_be_switched_off_and_testpaths_keeps_scenarios_out(
        pytester: pytest.Pytester, certs_dir: Path) -> None:
    # The layout of this project: scenarios/ next to tests/, testpaths = ["tests"].
    (pytester.path / "scenarios").mkdir()
    copy(pytester, SEED4, f"scenarios/{SEED4.name}")
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\ntestpaths = ["tests"]\n')
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_one.py").write_text("def test_one():\n    pass\n")
    result = run(pytester, certs_dir, "--co", "-q")
    result.stdout.fnmatch_lines(["tests/test_one.py::test_one", "1 test collected*"])
    result = run(pytester, certs_dir, "--co", "-q", "scenarios")
    result.stdout.fnmatch_lines(["scenarios/*::PC01::1-install@intranet", "2 tests collected*"])
    result = pytester.runpytest_subprocess("-p", "no:asyncio", "-p", "no:aiohttp",
                                           "-p", "no:ibcm_lab", "--co", "-q", "scenarios")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    # ibcm_collect = false: no scenario is collected (the fixtures stay)
    result = run(pytester, certs_dir, "-o", "ibcm_collect=false", "--co", "-q", "scenarios")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_this_projects_suite_does_not_collect_the_bundled_scenarios() -> None:
    import tomllib

    root = SCENARIOS.parent
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    assert config["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert config["project"]["entry-points"]["pytest11"] == {"ibcm_lab": "lab.pytest_plugin"}
    assert not [p for p in (root / "tests").rglob("*.toml") if is_scenario_file(p)]
    assert all(is_scenario_file(p) for p in SCENARIOS.glob("*.toml"))
    assert not is_scenario_file(root / "pyproject.toml")


# ------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------

FIXTURE_TESTS = '''
import socket
import threading
from pathlib import Path

import pytest

SEEN = {}


def test_drive_step_by_step(ibcm_lab, ibcm_client):
    staged = ibcm_lab(Path("SEED4"))
    assert staged.pki.mp is not None
    assert staged.hosts.get("IBCM-Intra.contoso.local", 443) == staged.ports.mp_https
    client = staged.client("PC01")
    assert client.step("install", "intranet").outcome == "ok"
    result = client.step("inventory", "internet")
    assert result.outcome == "fail" and "CRYPT_E_REVOCATION_OFFLINE" in result.identifiers
    SEEN["labs"] = [(staged.ports.mp_https, staged.scratch)]


def test_fails_midway(ibcm_client):
    client = ibcm_client("SEED4")
    SEEN["labs"].append((client.staged.ports.mp_https, client.staged.scratch))
    client.step("install", "intranet", expect="CRYPT_E_REVOKED")


def test_everything_is_gone_afterwards():
    assert len(SEEN["labs"]) == 2
    for port, scratch in SEEN["labs"]:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        assert not Path(scratch).exists()
    assert not [t for t in threading.enumerate() if t.name == "ibcm-lab-loop"]
'''


def test_fixtures_drive_a_client_and_clean_up_even_when_the_test_fails(
        pytester: pytest.Pytester, certs_dir: Path) -> None:
    copy(pytester, SEED4)
    pytester.makepyfile(test_fixtures=FIXTURE_TESTS.replace("SEED4", SEED4.name))
    result = run(pytester, certs_dir, "test_fixtures.py")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*StepMissed: PC01 step 1: install @ intranet",
                                 "*expected: CRYPT_E_REVOKED", "*actual:   ok"])


async def test_async_test_awaits_steps(ibcm_client: ClientFactory) -> None:
    client = ibcm_client(SEED4.read_text(encoding="utf-8"))  # TOML text
    assert (await client.astep("install", "intranet")).outcome == "ok"
    result = await client.astep("register", "intranet", expect="ok")
    assert result.met and result.identifiers == []
    with pytest.raises(StepMissed) as missed:
        await client.astep("policy", "intranet", expect="fail")
    assert "expected: fail" in str(missed.value)
    # ccmexec's registration and site refresh follow the install on their own
    assert [(r.action, r.automatic) for r in client.results] == [
        ("install", False), ("register", True), ("location", True), ("register", False),
        ("policy", False)]
    assert client.log and all(line.file for line in client.log)


def test_lab_session_stops_its_servers_on_an_exception(certs_dir: Path) -> None:
    scenario = load_scenario(WITH_HTTPS)
    with pytest.raises(RuntimeError, match="the test body failed"), \
            LabSession(certs_dir) as labs:
        staged = labs(scenario)  # a Scenario object
        client = staged.client()
        assert client.name == "PC01"
        assert client.step("install", "intranet", expect="ok").met
        with pytest.raises(ValueError, match="location: expected one of"):
            client.step("install", "home")
        with pytest.raises(ValueError, match="no client 'PC99'"):
            staged.client("PC99")
        port, scratch = staged.ports.mp_https, staged.scratch
        raise RuntimeError("the test body failed")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not scratch.exists()
    assert not [t for t in threading.enumerate() if t.name == "ibcm-lab-loop"]
    with pytest.raises(RuntimeError, match="closed"):
        labs(scenario)


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def test_is_scenario_file(tmp_path: Path) -> None:
    cases = {
        "s.toml": '[scenario]\ntitle = "x"\n',
        "syntax.toml": '[scenario]\ntitle = "x\n',
        "pyproject.toml": '[project]\nname = "x"\n',
        "string.toml": 'scenario = "x"\n',
        "nested.toml": '[tool.scenario]\ntitle = "x"\n',
        "s.txt": '[scenario]\ntitle = "x"\n',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    found = {name for name in cases if is_scenario_file(tmp_path / name)}
    assert found == {"s.toml", "syntax.toml"}


def test_step_lines() -> None:
    text = SEED4.read_text(encoding="utf-8")
    lines = step_lines(text)
    assert sorted(lines) == [(0, 0), (0, 1)]
    assert all(text.splitlines()[n - 1] == "[[client.step]]" for n in lines.values())
    two = '[[client]]\nname = "A"\n[[client.step]]\n[[client]]\n[[ client.step ]]\n'
    assert step_lines(two) == {(0, 0): 3, (1, 0): 5}
