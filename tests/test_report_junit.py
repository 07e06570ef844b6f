"""The JUnit XML report (``--format junit``) of a run and of a matrix.

Both are validated against the JUnit schema of Jenkins' xUnit plugin (vendored in
tests/data/junit.xsd, its source and licence in its header) with ``xmlschema``, then checked
field by field: that schema types most attributes as plain strings, so the counts, times and
names are asserted here. A failing-expectation twin (a copy of a bundled scenario with a wrong
``expect``) gives exactly one ``<failure>``; the unchanged copy gives none.
"""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
from labtest import SCENARIOS

from lab.matrix.sweep import make_selection, run_matrix
from lab.report.junit import render_matrix_junit, render_run_junit, row_label, xml_text
from lab.results.matrix import MatrixResult, row_name
from lab.results.runs import RunResult
from lab.run import run_loaded
from lab.scenario.loader import load_all

XSD = Path(__file__).parent / "data" / "junit.xsd"
CRL_ON = SCENARIOS / "seed4-internet-client-ldap-cdp-crl-on.toml"
BUNDLED = [CRL_ON, SCENARIOS / "seed3-smsmp-without-https.toml",
           SCENARIOS / "server-mp-cert-revoked.toml"]
EXPECTED = 'expect = "CRYPT_E_REVOCATION_OFFLINE"'
WRONG = 'expect = "CRYPT_E_REVOKED"'
HOSTILE = '<script>alert(\\"x\\")</script> & \\u0001'
"""Markup, quotes and a control character, as TOML basic-string text."""
DECIMAL = re.compile(r"^\d+\.\d{3}$")
SMALL_MATRIX = {"cdp": ["ldap"], "names": ["both"], "smsmp": ["https"],
                "ccmhostname": ["given"], "nocrlcheck": ["yes"]}


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(XSD)


@pytest.fixture(scope="module")
def run(certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    """Three bundled scenarios, the failing-expectation twin, its unchanged copy and a copy
    whose title and description carry markup and a control character."""
    folder = tmp_path_factory.mktemp("junit-scenarios")
    text = CRL_ON.read_text(encoding="utf-8")
    assert text.count(EXPECTED) == 1
    (folder / "twin-wrong-expect.toml").write_text(text.replace(EXPECTED, WRONG),
                                                   encoding="utf-8")
    (folder / "twin-unchanged.toml").write_text(text, encoding="utf-8")
    hostile = text.replace('title = "', f'title = "{HOSTILE} ', 1)
    hostile = hostile.replace('description = """', f'description = """{HOSTILE}\n', 1)
    (folder / "hostile-text.toml").write_text(hostile, encoding="utf-8")
    scenarios = load_all([*BUNDLED, folder / "twin-wrong-expect.toml",
                          folder / "twin-unchanged.toml", folder / "hostile-text.toml"])
    return asyncio.run(run_loaded(scenarios, certs=certs_dir))


@pytest.fixture(scope="module")
def matrix(certs_dir: Path) -> MatrixResult:
    return run_matrix(make_selection(SMALL_MATRIX), certs=certs_dir, jobs=1)


def suites(xml: str) -> dict[str, ET.Element]:
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    return {s.get("name", ""): s for s in root.findall("testsuite")}


def check_counts(xml: str) -> None:
    """tests/failures/errors/skipped/time of every suite agree with its test cases."""
    root = ET.fromstring(xml)
    total_tests = total_failures = 0
    for suite in root.findall("testsuite"):
        cases = suite.findall("testcase")
        failures = [c for c in cases if c.find("failure") is not None]
        assert suite.get("tests") == str(len(cases))
        assert suite.get("failures") == str(len(failures))
        assert suite.get("errors") == "0" and suite.get("skipped") == "0"
        assert DECIMAL.match(suite.get("time", "")), suite.get("time")
        times = [float(c.get("time", "x")) for c in cases]
        assert all(DECIMAL.match(c.get("time", "")) for c in cases)
        assert float(suite.get("time", "0")) == pytest.approx(sum(times), abs=0.01)
        for case in cases:
            children = [child.tag for child in case]
            # Exactly one of: a failure (an expectation not met) or the story.
            assert children in (["failure"], ["system-out"]), children
            failure = case.find("failure")
            if failure is not None:
                assert failure.get("message") and failure.get("type") and failure.text
        total_tests += len(cases)
        total_failures += len(failures)
    assert root.get("tests") == str(total_tests)
    assert root.get("failures") == str(total_failures)


def test_run_junit_is_valid_against_the_jenkins_junit_schema(
        run: RunResult, schema: xmlschema.XMLSchema) -> None:
    xml = render_run_junit(run)
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuites')
    schema.validate(xml)
    check_counts(xml)


def test_run_junit_has_one_suite_per_scenario_and_one_case_per_step(run: RunResult) -> None:
    by_name = suites(render_run_junit(run))
    assert list(by_name) == [r.scenario.name for r in run.scenarios]
    for result in run.scenarios:
        suite = by_name[result.scenario.name]
        cases = suite.findall("testcase")
        assert [c.get("name") for c in cases] == [st.name for st in result.steps]
        assert [c.get("classname") for c in cases] == [
            f"{result.scenario.name}.{st.client}" for st in result.steps]
        assert [float(c.get("time", "x")) for c in cases] == [
            st.simulated_ms / 1000 for st in result.steps]
        props = {p.get("name"): p.get("value") for p in suite.iter("property")}
        assert props["title"] == xml_text(result.scenario.info.title)
        assert props["source"] == result.scenario.info.source


def test_an_expected_failure_is_a_passing_case_that_tells_its_story(run: RunResult) -> None:
    suite = suites(render_run_junit(run))[CRL_ON.stem]
    assert suite.get("failures") == "0"
    case = suite.find("testcase[@name='2-inventory@internet']")
    assert case is not None and case.get("time") == "30.000"
    assert case.find("failure") is None
    out = case.findtext("system-out") or ""
    assert "expected:  CRYPT_E_REVOCATION_OFFLINE" in out
    assert "actual:    FAIL CRYPT_E_REVOCATION_OFFLINE 0x80092013" in out
    assert "CcmMessaging.log: Post to https://IBCM-Internet.public.com/ccm_system/request " \
           "failed with 0x87d00231." in out
    assert "ERROR: Verifying leaf certificate revocation status returned" in out
    assert "fix:       Publish the CRL" in out


def test_the_failing_twin_has_one_failure_and_the_unchanged_copy_none(run: RunResult) -> None:
    by_name = suites(render_run_junit(run))
    wrong, same = by_name["twin-wrong-expect"], by_name["twin-unchanged"]
    assert same.get("failures") == "0" and not same.findall(".//failure")
    failures = wrong.findall(".//failure")
    assert wrong.get("failures") == "1" and len(failures) == 1
    case = wrong.find("testcase[failure]")
    assert case is not None and case.get("name") == "2-inventory@internet"
    assert case.get("classname") == "twin-wrong-expect.PC01"
    failure = failures[0]
    assert failure.get("type") == "CRYPT_E_REVOCATION_OFFLINE"
    message = failure.get("message", "")
    assert message.startswith("expected CRYPT_E_REVOKED, got FAIL CRYPT_E_REVOCATION_OFFLINE "
                              "0x80092013. PC01 (domain-joined, on the internet) connected")
    assert "Identifiers: " in message and "CERT_REV_FAILED" in message
    body = failure.text or ""
    for piece in ("expected:  CRYPT_E_REVOKED", "actual:    FAIL CRYPT_E_REVOCATION_OFFLINE",
                  "met:       NO", "fix:       Publish the CRL", "crl url:   failed",
                  "log lines of the step:", "E CcmMessaging.log: [CCMHTTP] ERROR: URL=",
                  "revocation trace (certutil -verify -urlfetch shape):",
                  "CertUtil: The revocation function was unable to check revocation"):
        assert piece in body, piece


def test_user_text_is_escaped_and_control_characters_dropped(run: RunResult) -> None:
    xml = render_run_junit(run)
    assert "\x01" not in xml
    suite = suites(xml)["hostile-text"]
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["title"].startswith('<script>alert("x")</script> & \ufffd ')
    assert (suite.findtext("system-out") or "").count('<script>alert("x")</script>') == 2
    assert "&lt;script&gt;" in xml


def test_matrix_junit_is_valid_and_has_a_suite_per_row_and_a_case_per_cell(
        matrix: MatrixResult, schema: xmlschema.XMLSchema) -> None:
    xml = render_matrix_junit(matrix)
    schema.validate(xml)
    check_counts(xml)
    by_name = suites(xml)
    assert list(by_name) == [row_label(r.config) for r in matrix.rows]
    assert len(by_name) == 2 and "cdp=ldap, site_crl=on, nocrlcheck=yes" in next(iter(by_name))
    failing = 0
    for row in matrix.rows:
        suite = by_name[row_label(row.config)]
        cases = {c.get("name"): c for c in suite.findall("testcase")}
        assert list(cases) == list(matrix.selection.situations)
        for key, cell in row.cells.items():
            case = cases[key]
            assert case.get("classname") == row_name(row.config)
            failure = case.find("failure")
            if cell.short == "ok":
                assert failure is None
                assert "4-policy@" in (case.findtext("system-out") or "")
                continue
            failing += 1
            assert failure is not None
            message = failure.get("message", "")
            assert message.startswith(f"{cell.short}: {cell.explanation}")
            assert "Identifiers: " in message
            assert failure.get("type") == "CRYPT_E_REVOCATION_OFFLINE"
            assert f"failing step {cell.failed_step}:" in (failure.text or "")
    # CRL on, LDAP-only CDP: the workgroup and internet clients cannot reach ldap:///.
    assert failing == 2


def test_the_schema_rejects_what_ci_systems_cannot_read(schema: xmlschema.XMLSchema) -> None:
    """The validator is not vacuous: a test case without a name, or an unknown element."""
    assert not schema.is_valid('<testsuites><testsuite name="a" tests="1" failures="0" '
                               'errors="0"><testcase classname="x"/></testsuite></testsuites>')
    assert not schema.is_valid('<testsuites><testsuite name="a" tests="1" failures="0" '
                               'errors="0"><case name="x"/></testsuite></testsuites>')
    assert schema.is_valid('<testsuites><testsuite name="a" tests="1" failures="0" '
                           'errors="0"><testcase name="x"/></testsuite></testsuites>')
